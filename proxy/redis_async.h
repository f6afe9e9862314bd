/*
 * One asynchronous hiredis connection on a libuv loop: the part every control
 * connection to a redis-server shares (the tenant registry's, and short-lived
 * ones such as per-tenant ACL provisioning).
 *
 *   open --host is a name--> uv_getaddrinfo --+
 *     |                                       v
 *     '--numeric------------------------> redisAsyncConnect (non-blocking), libuv adapter
 *                                             | AUTH [user] password (when one is set), then
 *                                             | the commands given so far, in order
 *                                             v
 *                        connected, AUTH +OK (or connected, without a password) --> cb(0): ready
 *   timer (timeout_ms, until ready) ---------> cb(TG_ETIMEOUT)
 *   refused / reset / AUTH refused ----------> cb(TG_EIO / TG_EAUTH)
 *   ready, then the server goes away --------> cb(TG_ECLOSED)
 *
 * Nothing here blocks the loop: names are resolved by libuv's thread pool and
 * hiredis connects non-blocking to the address found. The hiredis 0.14 libuv
 * adapter drops poll errors (a refused connect would only end at the
 * timeout); every poll start goes through a handler that hands the error to
 * hiredis, as hiredis 1.x's adapter does.
 *
 * Ownership: the connection belongs to its opener, who calls
 * tg_redis_async_close exactly once (also after a failure). A command's
 * callback runs exactly once, with the reply or with NULL when the connection
 * is lost or closed first (then possibly inside tg_redis_async_close, or right
 * after the hiredis callback that closed it), so that what it owns can be
 * released; subscription callbacks and state callbacks stay silent after the
 * close. The memory is released once
 * libuv and hiredis are done with it, never inside one of their callbacks.
 * The password is copied and zeroed when released; it never reaches a log.
 */
#ifndef TG_PROXY_REDIS_ASYNC_H
#define TG_PROXY_REDIS_ASYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include <hiredis/hiredis.h>

typedef struct tg_redis_async tg_redis_async;

/* Where to connect and how to log in. Everything is copied by tg_redis_async_open. */
typedef struct tg_redis_async_target {
    const char *host; /* IP address or DNS name (no brackets) */
    uint16_t port;
    const char *user;     /* AUTH <user> <password>; NULL: AUTH <password> */
    const char *password; /* NULL: no AUTH */
    size_t password_len;
    uint32_t timeout_ms; /* until ready (resolve, connect, AUTH); 0: no deadline */
} tg_redis_async_target;

/*
 * The connection's news: status 0 once ready; a negative TG_E* code (with a
 * short reason, no secrets) when it could not get ready or, once ready, was
 * lost. At most one of each, on the loop's thread, never inside
 * tg_redis_async_open or after tg_redis_async_close. A failed connection
 * serves nothing more: close it.
 */
typedef void (*tg_redis_async_state_cb)(void *ud, int status, const char *why);

/*
 * A reply (owned by hiredis, valid during the call), or NULL when the
 * connection was lost before it came.
 */
typedef void (*tg_redis_async_reply_cb)(void *ud, const redisReply *reply);

/*
 * Starts connecting to t on loop. Returns the connection, or NULL with *err
 * set (TG_ENOMEM, TG_EIO: nothing started, no callback).
 */
tg_redis_async *tg_redis_async_open(uv_loop_t *loop, const tg_redis_async_target *t,
                                    tg_redis_async_state_cb cb, void *ud, int *err);

/* True once ready and not lost or closed. */
bool tg_redis_async_ready(const tg_redis_async *rc);

/*
 * Sends a command (argv/argvlen are copied). Before the connection is ready
 * it is queued behind the AUTH (pipelined: a short-lived connection costs one
 * round trip); should the connection fail, its callback gets NULL. cb(ud,
 * reply) follows exactly once. Returns 0, or TG_EIO once the connection has
 * failed or is closed, TG_ENOMEM (no callback either way).
 */
__attribute__((warn_unused_result)) int tg_redis_async_command(tg_redis_async *rc,
                                                               tg_redis_async_reply_cb cb, void *ud,
                                                               int argc, const char **argv,
                                                               const size_t *argvlen);

/*
 * SUBSCRIBE channel: cb(ud, reply) runs with the subscription's confirmation
 * and then with every message (arrays as Redis sends them), and once with NULL
 * if the connection is lost. Returns 0 or TG_EIO (not ready).
 */
__attribute__((warn_unused_result)) int tg_redis_async_subscribe(tg_redis_async *rc,
                                                                 const char *channel,
                                                                 tg_redis_async_reply_cb cb,
                                                                 void *ud);

/*
 * Closes the connection: pending commands' callbacks get NULL (now, or once the
 * hiredis callback running now returns); no state or subscription callback runs
 * afterwards. rc is invalid afterwards.
 */
void tg_redis_async_close(tg_redis_async *rc);

#endif
