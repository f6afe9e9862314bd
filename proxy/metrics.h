/*
 * Counters and histograms for /metrics (Prometheus text format, SPEC §7).
 *
 *   worker 0 --writes--> shard[listener "pg"][0] \
 *   worker 1 --writes--> shard[listener "pg"][1]  +--> tg_metrics_render (sums shards)
 *
 * Every (listener, worker) pair has its own tg_listener_stats shard, written
 * by that worker thread only, so an update is a relaxed load and store of an
 * atomic (a plain mov on x86): no locked instruction and no shared cache line
 * on the data path. The admin thread reads shards with relaxed loads and sums
 * them. Shards are created at listener setup (under a mutex, off the data
 * path), keyed by listener name so they survive reloads, and live until
 * tg_metrics_free.
 */
#ifndef TG_PROXY_METRICS_H
#define TG_PROXY_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/jwt.h"
#include "proxy/protocol.h"

/* Why a message or connection was refused; X(name) gives the metric label. Protocols add rows. */
#define TG_REJECT_MAP(X)                                                                           \
    X(policy)                                                                                      \
    X(malformed)                                                                                   \
    X(too_large)                                                                                   \
    X(unauthenticated)                                                                             \
    X(max_connections)                                                                             \
    X(tls_required)                                                                                \
    X(rate_limit)        /* tenants.limits.messages_per_second */                                  \
    X(global_rate_limit) /* tenants.limits.global_messages_per_second */                           \
    X(inflight_bytes)    /* tenants.limits.max_inflight_bytes */

typedef enum {
#define TG_REJECT_ENUM(name) TG_REJECT_##name,
    TG_REJECT_MAP(TG_REJECT_ENUM)
#undef TG_REJECT_ENUM
        TG_REJECT_COUNT
} tg_reject_reason;

/* Upper bounds of histogram buckets, in microseconds (+Inf is implicit). */
#define TG_HIST_BOUNDS_US                                                                          \
    {                                                                                              \
        100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000,     \
            2500000, 5000000, 10000000                                                             \
    }
#define TG_HIST_BUCKETS 16

typedef struct tg_histogram {
    _Atomic uint64_t buckets[TG_HIST_BUCKETS + 1]; /* last one is +Inf; not cumulative */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_us;
} tg_histogram;

/* One listener's counters as seen by one worker. Only that worker writes it. */
typedef struct tg_listener_stats {
    _Atomic uint64_t conns_open; /* gauge */
    _Atomic uint64_t conns_total;
    _Atomic uint64_t bytes_client_in;
    _Atomic uint64_t bytes_client_out;
    _Atomic uint64_t bytes_backend_in;
    _Atomic uint64_t bytes_backend_out;
    _Atomic uint64_t messages_forwarded;
    _Atomic uint64_t messages_rewritten;
    _Atomic uint64_t messages_rejected[TG_REJECT_COUNT];
    _Atomic uint64_t auth_ok;
    _Atomic uint64_t auth_failed[TG_JWT_RESULT_COUNT];
    _Atomic uint64_t backend_connect_errors;
    tg_histogram backend_connect;   /* backend connect latency */
    tg_histogram backend_roundtrip; /* request -> first reply byte, where a protocol measures it */
    /* The command table new sessions start with, for protocols that load one from the backend
     * (Redis): see tg_metrics_set_command_table. */
    _Atomic uint64_t table_stamp; /* 0: none loaded yet */
    _Atomic uint64_t table_commands;
    _Atomic uint64_t table_from_backend; /* 1: the backend's own table; 0: the built-in one */
} tg_listener_stats;

/* Adds n to a counter of a shard this thread owns (single writer: no locked instruction). */
#define TG_STAT_ADD(counter, n)                                                                    \
    atomic_store_explicit(&(counter),                                                              \
                          atomic_load_explicit(&(counter), memory_order_relaxed) + (uint64_t)(n),  \
                          memory_order_relaxed)
#define TG_STAT_SUB(counter, n)                                                                    \
    atomic_store_explicit(&(counter),                                                              \
                          atomic_load_explicit(&(counter), memory_order_relaxed) - (uint64_t)(n),  \
                          memory_order_relaxed)

/* X(name): how a registry lookup ended; the metric label is the name. */
#define TG_REGISTRY_LOOKUP_MAP(X)                                                                  \
    X(active)    /* the tenant's hash says active */                                               \
    X(suspended) /* ... suspended */                                                               \
    X(unknown)   /* no hash */                                                                     \
    X(invalid)   /* a hash tenantgate cannot read */                                               \
    X(revoked)   /* the token's jti is in the revocation set */                                    \
    X(error)     /* no answer: registry down, timed out, refused */

typedef enum {
#define TG_REGISTRY_LOOKUP_ENUM(name) TG_REGISTRY_LOOKUP_##name,
    TG_REGISTRY_LOOKUP_MAP(TG_REGISTRY_LOOKUP_ENUM)
#undef TG_REGISTRY_LOOKUP_ENUM
        TG_REGISTRY_LOOKUP_COUNT
} tg_registry_lookup_result;

/* The tenant registry as one worker sees it (proxy/registry.c); only that worker writes it. */
typedef struct tg_registry_stats {
    _Atomic uint64_t configured; /* gauge: 1 when tenants.registry is set */
    _Atomic uint64_t up;         /* gauge: 1 while lookups and invalidations both work */
    _Atomic uint64_t lookups[TG_REGISTRY_LOOKUP_COUNT];
    _Atomic uint64_t cache_hits;
    _Atomic uint64_t cache_misses;
    _Atomic uint64_t events; /* invalidations received */
    _Atomic uint64_t reconnects;
    _Atomic uint64_t kicks[TG_KICK_COUNT];
} tg_registry_stats;

typedef struct tg_metrics tg_metrics;

/* A registry for `workers` worker threads. Returns NULL when out of memory. */
tg_metrics *tg_metrics_new(uint32_t workers);
void tg_metrics_free(tg_metrics *m);

/*
 * The shard of listener `name` (protocol label `protocol`) for `worker`,
 * created on first use. Thread-safe; not for the data path. The pointer stays
 * valid until tg_metrics_free. Returns NULL when out of memory.
 */
tg_listener_stats *tg_metrics_listener(tg_metrics *m, const char *name, const char *protocol,
                                       uint32_t worker);

/*
 * Records, in a shard this thread owns, that the listener's new sessions now use a
 * command table of `commands` rows, from the backend or built in. Rendered as
 * tenantgate_command_table_commands{listener, source="backend"|"builtin"} from
 * the shard written last (whichever worker loaded the table); nothing is rendered
 * for a listener that has not loaded one. Called once per load, not per message.
 */
void tg_metrics_set_command_table(tg_listener_stats *s, uint64_t commands, bool from_backend);

/*
 * The registry shard of `worker` (NULL when out of range). Rendered as
 * tenantgate_registry_up (the lowest over workers that have a registry),
 * tenantgate_registry_lookups_total{result}, tenantgate_registry_cache_hits_total,
 * tenantgate_registry_cache_misses_total, tenantgate_registry_events_total,
 * tenantgate_registry_reconnects_total and tenantgate_sessions_kicked_total{reason}.
 */
tg_registry_stats *tg_metrics_registry(tg_metrics *m, uint32_t worker);

/* Records one observation in a histogram owned by this thread. */
void tg_histogram_observe(tg_histogram *h, uint64_t usec);

/*
 * Renders every metric (listener shards summed, plus process metrics: CPU
 * seconds, resident memory, open fds, start time) as Prometheus text.
 * Returns 0 and a malloc'd buffer in *out and *len, or TG_ENOMEM.
 */
__attribute__((warn_unused_result)) int tg_metrics_render(tg_metrics *m, char **out, size_t *len);

#endif
