/*
 * The connection pair: one client stream, one backend stream, and the
 * protocol session between them.
 *
 *             read (chunk)          ops->on_data            stage        uv_write
 *   client ---------------> [rd] ----------------> session ------> [backend stage] ----> backend
 *   client <--------------- [client stage] <------ session <------ [rd] <--------------- backend
 *
 * Reads land in reference-counted chunks; the session forwards slices of them
 * (tg_conn_forward: no copy) or sends bytes of its own (tg_conn_send: copied).
 * What a callback stages is written with one vectored write per side when the
 * callback returns. Backpressure per direction: the backend stops being read
 * while more than the listener's high_water_bytes wait toward the client; the
 * client stops being read while either queue is over it (its reads may queue
 * local replies toward itself); each resumes below a quarter of it. Memory per
 * connection stays bounded whatever the peers do. TLS (either side) sits between the socket and the
 * session.
 *
 * Lifecycle: accepted -> (client TLS) -> session on_open -> (backend connect,
 * backend TLS) -> established -> finish/abort -> handles closed -> freed in the
 * last close callback. Deadlines (handshake, backend connect, idle) share one
 * timer per connection.
 */
#ifndef TG_PROXY_CONN_H
#define TG_PROXY_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/config.h"
#include "proxy/listener.h"
#include "proxy/metrics.h"
#include "proxy/protocol.h"
#include "proxy/runtime.h"

typedef struct tg_worker tg_worker;

/* Accepts one pending connection on l. Errors are logged and cost only that connection. */
void tg_conn_accept(tg_listener *l);

/* Aborts every connection of the worker (drain deadline, stop). */
void tg_conn_abort_all(tg_worker *w);

/*
 * Stages len bytes that lie inside the data of the current on_data call for
 * side `to`, without copying (the chunk is pinned until written).
 * Returns 0, TG_EINVAL when p is not inside that data, or TG_ENOMEM.
 */
__attribute__((warn_unused_result)) int tg_conn_forward(tg_conn *c, tg_side_id to, const uint8_t *p,
                                                        size_t len);

/* Stages a copy of len bytes for side `to`. Returns 0 or TG_ENOMEM. */
__attribute__((warn_unused_result)) int tg_conn_send(tg_conn *c, tg_side_id to, const void *p,
                                                     size_t len);

/* Starts connecting to the listener's backend; on_backend_ready follows. Returns 0 or TG_E*. */
__attribute__((warn_unused_result)) int tg_conn_connect_backend(tg_conn *c);

/*
 * Switches the client side to TLS once the message being handled is consumed,
 * after what is staged so far has been sent in plaintext (PostgreSQL's 'S'
 * answer to SSLRequest). Call from on_data for the client. Returns 0, or
 * TG_EINVAL when the listener has no certificate or TLS is already on.
 */
__attribute__((warn_unused_result)) int tg_conn_start_client_tls(tg_conn *c);

/* True when the client side speaks TLS. */
bool tg_conn_client_tls(const tg_conn *c);

/*
 * Asks for on_data to run again over the bytes of `side` that the session
 * left unconsumed (e.g. a client's pipelined queries that waited for the
 * backend to become ready). Runs once the current callback returns.
 */
void tg_conn_redispatch(tg_conn *c, tg_side_id side);

/*
 * Runs fn(c, session, arg) as a callback of c for an event from outside the
 * pair on the worker's loop (e.g. the reply of a control connection the
 * session started): what fn sends is written, redispatches run, and a negative
 * return aborts the connection. Does nothing once c is closing. Not from
 * inside another callback of c.
 */
void tg_conn_call(tg_conn *c, int (*fn)(tg_conn *c, void *session, void *arg), void *arg);

/*
 * In delay_ms (0 cancels), ops->on_expire runs (it sends the protocol's error
 * and finishes the connection), or the connection is aborted when the
 * protocol has none. Token expiry and session timeouts use it.
 */
void tg_conn_set_expiry(tg_conn *c, uint64_t delay_ms);

/* The handshake phase is over: the handshake deadline no longer applies. */
void tg_conn_established(tg_conn *c);

/* Sends EOF to side `to` once what is queued for it has been written. */
void tg_conn_shutdown(tg_conn *c, tg_side_id to);

/* Stops reading, writes what is queued, then closes (bounded by a deadline). */
void tg_conn_finish(tg_conn *c);

/* Closes both sides now; reason goes to the debug log. */
void tg_conn_abort(tg_conn *c, const char *reason);

/* The SNI host name the client sent over TLS, or NULL. */
const char *tg_conn_sni(const tg_conn *c);

/* The client's address as "ip:port" (for logs). */
const char *tg_conn_peer(const tg_conn *c);

/* The listener's configuration and metric shard, and the connection's runtime. */
const tg_listener_config *tg_conn_config(const tg_conn *c);
tg_listener_stats *tg_conn_stats(const tg_conn *c);
const tg_runtime *tg_conn_runtime(const tg_conn *c);
/* What the protocol's listener_init built for this connection's listener. */
void *tg_conn_lrt_state(const tg_conn *c);
tg_worker *tg_conn_worker(const tg_conn *c);

#endif
