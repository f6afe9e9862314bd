/*
 * The admin HTTP server (admin.listen): GET /metrics, /healthz, /readyz, the
 * sidecar probe names /startup, /liveness, /readiness, and POST /quitquitquit.
 *
 *   accept --read--> bounded buffer --tg_http_parse_request--> route --> response --> close
 *
 * It runs on the main thread's loop, never on a worker's, so a scrape cannot
 * delay traffic. One request per connection (Connection: close); requests
 * larger than 8 KiB or slower than 5 s are dropped; unknown paths are 404,
 * methods other than GET/HEAD (POST for /quitquitquit) are 405.
 *
 *   /healthz, /liveness   200 while the main loop runs
 *   /startup              200 once started: the server only starts after every
 *                         listener is bound and the workers run
 *   /readyz, /readiness   200, or 503 with a reason (backend probes, draining)
 *   POST /quitquitquit    drain and exit, as SIGTERM does (so a Job can end its
 *                         sidecar); 404 unless enabled by the quit callback
 */
#ifndef TG_PROXY_ADMIN_H
#define TG_PROXY_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "proxy/metrics.h"

/*
 * Readiness callback: returns true when the proxy should receive traffic; may
 * write a one-line reason (e.g. "backend pg 127.0.0.1:5432 unreachable",
 * "draining") into why (whylen bytes) when it returns false.
 */
typedef bool (*tg_admin_ready_fn)(void *ud, char *why, size_t whylen);

/*
 * POST /quitquitquit: returns false when the endpoint is disabled (the request
 * then gets 404); true once the drain has started (or was already running).
 */
typedef bool (*tg_admin_quit_fn)(void *ud);

typedef struct tg_admin tg_admin;

/*
 * Binds `listen` ("host:port") on loop and starts serving. metrics is
 * borrowed for the server's life; ready and quit (either may be NULL) get ud. Returns 0 and the
 * server in *out, or a negative TG_E* code with a message in err.
 */
__attribute__((warn_unused_result)) int tg_admin_start(uv_loop_t *loop, const char *listen,
                                                       tg_metrics *metrics, tg_admin_ready_fn ready,
                                                       tg_admin_quit_fn quit, void *ud,
                                                       tg_admin **out, char *err, size_t errlen);

/* The port the server is bound to (useful after binding port 0). */
int tg_admin_port(const tg_admin *a);

/* Stops listening and closes open admin connections; frees the server once its handles are closed.
 */
void tg_admin_stop(tg_admin *a);

#endif
