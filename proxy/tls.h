/*
 * TLS over memory BIOs (OpenSSL 3), with no sockets in sight.
 *
 *   network bytes --tg_tls_feed--> [rbio] SSL [wbio] --tg_tls_take_out--> network
 *   plaintext    <--tg_tls_read--        SSL        <--tg_tls_write-- plaintext
 *
 * The connection layer moves ciphertext between the libuv stream and this
 * engine; the protocol session only ever sees plaintext. The same engine
 * serves both sides: server side for clients (certificate, TLS 1.2 minimum,
 * SNI captured for the tenant check) and client side toward backends
 * (`require` encrypts without verifying, `verify-full` checks the chain
 * against a CA file and the host name).
 */
#ifndef TG_PROXY_TLS_H
#define TG_PROXY_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proxy/config.h"

typedef struct tg_tls_ctx tg_tls_ctx; /* an SSL_CTX: shared, reference counted by OpenSSL */
typedef struct tg_tls tg_tls;         /* one connection's TLS state */

/* Server context from PEM cert (chain) and key files. Returns 0 or TG_ETLS with err. */
__attribute__((warn_unused_result)) int tg_tls_ctx_new_server(const char *cert_file,
                                                              const char *key_file,
                                                              tg_tls_ctx **out, char *err,
                                                              size_t errlen);

/* Client context for backends: mode require or verify-full (ca_file required for verify-full). */
__attribute__((warn_unused_result)) int tg_tls_ctx_new_client(tg_backend_tls_mode mode,
                                                              const char *ca_file, tg_tls_ctx **out,
                                                              char *err, size_t errlen);

/* Drops this reference; connections created from it keep the context alive. NULL is fine. */
void tg_tls_ctx_free(tg_tls_ctx *ctx);

/*
 * New connection state. server_name: for a client-side ctx, the SNI to send
 * and (verify-full) the name to verify; ignored for a server-side ctx.
 * Returns NULL when out of memory.
 */
tg_tls *tg_tls_new(tg_tls_ctx *ctx, const char *server_name);
void tg_tls_free(tg_tls *t);

/* Hands ciphertext received from the network to the engine. Returns 0 or TG_ENOMEM. */
__attribute__((warn_unused_result)) int tg_tls_feed(tg_tls *t, const uint8_t *data, size_t len);

/*
 * Advances the handshake. Returns 1 when complete, TG_NEED_MORE (0) when it
 * waits for the peer (send what tg_tls_take_out yields), or TG_ETLS.
 */
__attribute__((warn_unused_result)) int tg_tls_handshake(tg_tls *t);

bool tg_tls_handshake_done(const tg_tls *t);

/*
 * Reads decrypted bytes into buf. Returns the count (> 0), TG_NEED_MORE (0)
 * when nothing is available yet, TG_ECLOSED on close_notify, or TG_ETLS.
 * Drives the handshake if it is not complete.
 */
__attribute__((warn_unused_result)) ssize_t tg_tls_read(tg_tls *t, uint8_t *buf, size_t cap);

/* Encrypts all len bytes (output appears in tg_tls_take_out). Returns 0 or TG_ETLS/TG_ENOMEM. */
__attribute__((warn_unused_result)) int tg_tls_write(tg_tls *t, const uint8_t *data, size_t len);

/* Bytes of ciphertext waiting to be sent to the network. */
size_t tg_tls_pending_out(const tg_tls *t);

/* Moves up to cap bytes of pending ciphertext into buf; returns the count. */
size_t tg_tls_take_out(tg_tls *t, uint8_t *buf, size_t cap);

/* Queues a close_notify alert (send what tg_tls_take_out yields). */
void tg_tls_shutdown(tg_tls *t);

/* The SNI host name the client sent (server side), or NULL. Valid until tg_tls_free. */
const char *tg_tls_sni(const tg_tls *t);

/* A short description of the last failure for logs ("certificate verify failed"). */
const char *tg_tls_last_error(const tg_tls *t);

#endif
