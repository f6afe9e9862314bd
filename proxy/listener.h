/*
 * Listening sockets, one per (listener, worker), all bound to the same
 * address with SO_REUSEPORT so the kernel spreads connections over the
 * workers without any lock in user space.
 *
 *   main thread: tg_listen_socket() x workers --fd--> worker mailbox
 *   worker:      tg_listener_open(fd) --uv_tcp_open + uv_listen--> accept --> tg_conn_accept
 *
 * Sockets are created and bound on the main thread so that a bind error
 * (address in use, bad address) is reported at startup or reload before any
 * worker changes state. libuv 1.44 has no SO_REUSEPORT flag, hence the raw
 * socket.
 */
#ifndef TG_PROXY_LISTENER_H
#define TG_PROXY_LISTENER_H

#include <stddef.h>
#include <uv.h>

#include "proxy/metrics.h"
#include "proxy/runtime.h"

typedef struct tg_worker tg_worker;

typedef struct tg_listener {
    uv_tcp_t tcp;
    tg_worker *worker;
    char name[64];
    char listen[288];
    const tg_listener_rt *rt; /* in worker->rt; replaced on reload */
    tg_listener_stats *stats; /* this listener's shard for this worker */
    struct tg_listener *next;
} tg_listener;

/*
 * Creates a non-blocking TCP socket with SO_REUSEADDR and SO_REUSEPORT,
 * bound to address ("host:port", numeric or a resolvable name) and listening.
 * Returns 0 and the fd, or a negative TG_E* code with a message in err.
 */
__attribute__((warn_unused_result)) int tg_listen_socket(const char *address, int *fd, char *err,
                                                         size_t errlen);

/*
 * Starts accepting on fd (taking ownership) on the worker's loop. Returns 0
 * and the listener in *out, or a negative TG_E* (the fd is closed then).
 */
__attribute__((warn_unused_result)) int tg_listener_open(tg_worker *w, const tg_listener_rt *rt,
                                                         int fd, tg_listener **out);

/* Stops accepting and frees the listener once its handle is closed. */
void tg_listener_close(tg_listener *l);

#endif
