/*
 * Backend reachability for /readyz: a TCP connect to every backend address,
 * repeated on a timer on the main loop.
 *
 *   timer --> uv_getaddrinfo/uv_tcp_connect per target --> ok / failed (timeout) --> state
 *
 * A target is reachable when its last attempt connected within the timeout.
 * Nothing is sent; the connection is closed at once.
 */
#ifndef TG_PROXY_PROBE_H
#define TG_PROXY_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

typedef struct tg_probe tg_probe;

/* Starts probing on loop every interval_ms, each attempt bounded by timeout_ms. Returns NULL on
 * OOM. */
tg_probe *tg_probe_start(uv_loop_t *loop, unsigned interval_ms, unsigned timeout_ms);

/*
 * Replaces the target list (names and "host:port" addresses are copied) and
 * probes the new targets at once. Returns 0 or TG_ENOMEM.
 */
__attribute__((warn_unused_result)) int
tg_probe_set_targets(tg_probe *p, const char *const *names, const char *const *addresses, size_t n);

/*
 * True when every target's last probe succeeded (and each has been probed at
 * least once). Otherwise writes the first failing "name address: reason" into why.
 */
bool tg_probe_all_ok(const tg_probe *p, char *why, size_t whylen);

/* Stops the timer and in-flight probes; frees itself once its handles are closed. */
void tg_probe_stop(tg_probe *p);

/*
 * Splits "host:port" or "[v6-address]:port" into host (NUL-terminated, at
 * most hostlen bytes with the NUL) and port (0-65535). Returns 0 or
 * TG_EINVAL. Shared with the admin server's listen address.
 */
__attribute__((warn_unused_result)) int tg_probe_split_hostport(const char *address, char *host,
                                                                size_t hostlen, int *port);

#endif
