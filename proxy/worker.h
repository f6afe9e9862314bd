/*
 * Worker threads: one libuv loop each, owning its listeners and connections.
 *
 *   main thread --tg_worker_post(cmd)--> mailbox (mutex) --uv_async--> worker loop
 *        ^                                                                 |
 *        +------------- drained / exited (uv_async on main loop) <---------+
 *
 * Nothing is shared between workers on the data path: each has its own
 * chunk pool, JWT cache and metric shards. The mailbox is the only lock, and
 * only reloads, drains and stops touch it. With tenants.registry, each worker
 * also has its own registry client (proxy/registry.h: why per worker), made
 * and kept across reloads by APPLY, closed by STOP.
 */
#ifndef TG_PROXY_WORKER_H
#define TG_PROXY_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "proxy/buffer.h"
#include "proxy/jwt.h"
#include "proxy/listener.h"
#include "proxy/metrics.h"
#include "proxy/registry.h"
#include "policy/cypher_cache.h"
#include "policy/sql_guard.h"
#include "proxy/runtime.h"

typedef struct tg_conn tg_conn;

typedef enum {
    TG_WORKER_APPLY, /* switch to a new runtime: open, keep or close listeners */
    TG_WORKER_DRAIN, /* stop accepting; exit once the last connection closes */
    TG_WORKER_STOP,  /* close every connection now and exit */
} tg_worker_cmd_kind;

typedef struct tg_worker_cmd {
    tg_worker_cmd_kind kind;
    tg_runtime *rt; /* APPLY: one reference, owned by the command */
    int *fds;       /* APPLY: fds[i] for rt->listeners[i]; -1 keeps the worker's current socket */
    struct tg_worker_cmd *next;
} tg_worker_cmd;

typedef struct tg_worker {
    uint32_t id;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wake;
    uv_mutex_t mailbox_lock;
    tg_worker_cmd *mailbox; /* FIFO, guarded by mailbox_lock */
    tg_runtime *rt;         /* current generation for new connections; one reference */
    tg_listener *listeners;
    tg_conn *conns; /* every open connection (intrusive list in conn.c) */
    uint32_t n_conns;
    tg_chunk_pool pool;
    tg_jwt_cache *jwt_cache;
    tg_sql_cache *sql_cache;       /* PostgreSQL guard verdicts; created by the first pg session */
    tg_cypher_cache *cypher_cache; /* Bolt: rewritten Cypher; created by the first bolt session */
    tg_metrics *metrics;
    tg_registry *registry; /* tenants.registry's client on this loop; NULL: none */
    bool draining;
    bool stopping;
    _Atomic bool drained; /* draining and no connection left */
    _Atomic bool exited;  /* the loop has ended; safe to join */
    uv_async_t *notify;   /* on the main loop: signalled when drained or exited changes */
} tg_worker;

/*
 * Initializes w (its loop and mailbox) and starts its thread. The first
 * command posted should be APPLY. notify (on the main loop) is signalled from
 * the worker thread when it has drained and when it has exited. Returns 0 or
 * a negative TG_E* code.
 */
__attribute__((warn_unused_result)) int tg_worker_start(tg_worker *w, uint32_t id,
                                                        tg_metrics *metrics, uv_async_t *notify);

/* Posts a command (taking ownership of cmd) and wakes the worker. Any thread; never after
 * the worker has been sent STOP. */

void tg_worker_post(tg_worker *w, tg_worker_cmd *cmd);

/* Joins the thread and frees what the worker owns. Call after it has exited. */
void tg_worker_join(tg_worker *w);

/* Called by conn.c when a connection closes, so a draining worker can exit. */
void tg_worker_conn_closed(tg_worker *w);

#endif
