/*
 * Per-tenant Redis ACL users (redis.allow_scripts): their names, secrets and
 * the ACL SETUSER request that (re)creates one, and the provisioning itself
 * over a short control connection on the worker's loop.
 *
 *   session: tenant verified, its ACL user not yet known to the listener
 *     --tg_redis_acl_provision--> resolve backend host (uv_getaddrinfo; skipped when numeric)
 *     --> hiredis async connect, libuv adapter on the worker's loop (a uv_poll on its fd)
 *     --> AUTH <service user> <password>; ACL SETUSER <user> reset on >secret resetkeys
 *         ~P* resetchannels &P* -@all +cmd ...   (pipelined; P = glob-escaped prefix)
 *     --> both +OK: tenant remembered by the listener, cb(0) | error, timeout: cb(< 0)
 *     --> control connection closed
 *   session --"AUTH <user> <secret>"--> its own backend connection (never as the service user)
 *
 * Nothing here blocks: hiredis connects non-blocking to a numeric address, and
 * names are resolved with uv_getaddrinfo. The whole exchange is bounded by the
 * listener's timeouts.connect_ms. The secret and the service password are never
 * logged; Redis error texts are logged with the secret blanked (ACL SETUSER
 * quotes a rule it refuses).
 *
 * Ownership: a tg_redis_acl belongs to the listener state (one per listener and
 * config generation, shared by the workers); a request belongs to the session
 * that started it, which either receives exactly one callback or cancels it
 * before its connection is freed. Pure helpers (names, secrets, the SETUSER
 * arguments) are at the top and are unit-tested.
 */
#ifndef TG_PROTOCOLS_REDIS_ACL_H
#define TG_PROTOCOLS_REDIS_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "policy/redis_policy.h"
#include "proxy/config.h"
#include "proxy/slice.h"

/* Hex digits of a derived secret (HMAC-SHA256), without the NUL. */
#define TG_REDIS_ACL_SECRET_LEN 64
/* Longest ACL user name built from redis.acl_user_template. */
#define TG_REDIS_ACL_USER_MAX 255

/* ---- pure helpers ------------------------------------------------------------------------ */

/*
 * Writes tpl with every "{tenant}" replaced by tenant into out (cap bytes,
 * NUL-terminated). Returns the length, or TG_EINVAL when it does not fit.
 */
int tg_redis_acl_user_name(const char *tpl, const char *tenant, char *out, size_t cap);

/*
 * The tenant's ACL password: lowercase hex of HMAC-SHA256(key, "tenantgate redis
 * acl user" NUL tenant) into out (NUL-terminated). The label keeps the value
 * distinct from any other use of the same key (e.g. PostgreSQL's tenant_sig).
 */
void tg_redis_acl_secret(const uint8_t *key, size_t keylen, const char *tenant,
                         char out[TG_REDIS_ACL_SECRET_LEN + 1]);

/* Arguments of one ACL SETUSER request, in the form redisCommandArgv takes. */
typedef struct tg_redis_acl_argv {
    uint32_t argc;
    const char **argv; /* argc pointers into the same allocation */
    size_t *len;       /* argc lengths */
    size_t bytes;      /* size of the allocation (zeroed when freed: it holds the secret) */
} tg_redis_acl_argv;

/*
 * Fills *a with "ACL SETUSER <user> reset on ><secret> resetkeys ~<P>* resetchannels
 * &<P>* -@all" followed by "+<name>" for every command of table t that
 * tg_redis_acl_grants(), in table order, where P is prefix with Redis's glob
 * characters escaped (tg_redis_escape_glob). Everything is copied into one
 * allocation. Returns 0, TG_EINVAL (an unsealed table) or TG_ENOMEM.
 */
__attribute__((warn_unused_result)) int
tg_redis_acl_setuser_argv(const tg_redis_table *t, const char *user, const char *secret,
                          tg_slice prefix, tg_redis_acl_argv *a);

/* Zeroes and frees what tg_redis_acl_setuser_argv allocated; *a is empty afterwards. */
void tg_redis_acl_argv_free(tg_redis_acl_argv *a);

/* ---- the listener's ACL users ------------------------------------------------------------ */

typedef struct tg_redis_acl tg_redis_acl;

/*
 * A new ACL-user state for listener cfg (borrowed, as is table t; both must
 * outlive it). Returns NULL with a message in err when out of memory or the
 * listener's address cannot be split.
 */
tg_redis_acl *tg_redis_acl_new(const tg_listener_config *cfg, const tg_redis_table *t, char *err,
                               size_t errlen);

void tg_redis_acl_free(tg_redis_acl *a);

/*
 * The tenant's ACL user name and secret (out-parameters as above). Returns 0 or
 * TG_EINVAL (the name does not fit).
 */
__attribute__((warn_unused_result)) int
tg_redis_acl_credentials(const tg_redis_acl *a, const char *tenant,
                         char user[TG_REDIS_ACL_USER_MAX + 1],
                         char secret[TG_REDIS_ACL_SECRET_LEN + 1]);

/* True when this listener has provisioned the tenant's ACL user (any worker, this generation). */
bool tg_redis_acl_known(tg_redis_acl *a, const char *tenant);

/* Forgets that the tenant was provisioned (the backend refused its AUTH: e.g. Redis restarted). */
void tg_redis_acl_forget(tg_redis_acl *a, const char *tenant);

typedef struct tg_redis_acl_req tg_redis_acl_req;

/*
 * Called once per request on the loop's thread: status 0 (the user is
 * provisioned and known) or a negative TG_E* code with a short reason (no
 * secrets). The request is gone when it runs.
 */
typedef void (*tg_redis_acl_cb)(void *ud, int status, const char *why);

/*
 * Starts provisioning the tenant's ACL user on loop (the caller's worker loop).
 * cb(ud, ...) follows later, never inside this call. Returns the request, or
 * NULL with *err set (TG_ENOMEM, TG_EIO: nothing was started, no callback).
 */
tg_redis_acl_req *tg_redis_acl_provision(tg_redis_acl *a, uv_loop_t *loop, const char *tenant,
                                         tg_redis_acl_cb cb, void *ud, int *err);

/*
 * The caller is no longer interested (its session is closing): the control
 * connection is closed, cb will not run, and q is invalid afterwards. Only
 * before cb has run.
 */
void tg_redis_acl_cancel(tg_redis_acl_req *q);

#endif
