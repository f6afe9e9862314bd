/*
 * SASL client for backend authentication (SCRAM-SHA-256), over GNU SASL.
 *
 *   server first/continue data --tg_scram_step--> client data to send --> ... --> done
 *
 * tenantgate authenticates to backends with its own service credentials;
 * PostgreSQL and MongoDB both speak SCRAM-SHA-256, so this wrapper is shared.
 * The final server signature is verified: a backend that cannot prove it
 * knows the password is refused.
 */
#ifndef TG_PROXY_SCRAM_H
#define TG_PROXY_SCRAM_H

#include <stddef.h>
#include <stdint.h>

typedef struct tg_scram tg_scram;

/*
 * Initializes GNU SASL once per process (call from the main thread before
 * workers start). Returns 0 or TG_EIO.
 */
__attribute__((warn_unused_result)) int tg_scram_global_init(void);

/* A SCRAM-SHA-256 client for user/password. Returns 0 or a negative TG_E*. */
__attribute__((warn_unused_result)) int tg_scram_client_new(const char *user, const char *password,
                                                            tg_scram **out);
void tg_scram_free(tg_scram *s);

/*
 * One SASL step: `in` is the server's data (empty for the first step). On
 * success *out (malloc'd, caller frees; may be NULL with *out_len 0) is what to
 * send. Returns 1 when the exchange is complete and the server verified, 0
 * when more steps follow, or TG_EAUTH.
 */
__attribute__((warn_unused_result)) int tg_scram_step(tg_scram *s, const uint8_t *in, size_t in_len,
                                                      uint8_t **out, size_t *out_len);

/*
 * MD5 password response for PostgreSQL: "md5" + hex(md5(hex(md5(password + user)) + salt)),
 * NUL-terminated into out (36 bytes).
 */
void tg_pg_md5_password(const char *user, const char *password, const uint8_t salt[4],
                        char out[36]);

#endif
