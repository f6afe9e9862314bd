/*
 * The tenant registry client: one per worker, on the worker's loop.
 *
 *   auth --lookup(tenant, jti)--> cache (TTL, per worker) --hit--> answer now
 *                                       | miss
 *                                       v
 *        cmd connection: HGETALL <prefix>tenant:<id>  [+ ZSCORE <prefix>revoked <jti>]
 *                                       | reply (or timeout / connection lost: error)
 *                                       v
 *                          cached, answer -> cb (the session is redispatched)
 *
 *   sub connection: SUBSCRIBE <prefix>events
 *        "tenant <id>" --> drop the cache entry, read the hash again --> hooks->tenant_changed
 *                          (closes the tenant's sessions unless it may still run; new limits)
 *        "jti <jti>"   --> drop it, ZSCORE again --> revoked: hooks->jti_revoked
 *        "all"         --> as after a reconnect:
 *        (re)subscribed --> the caches are cleared (invalidations may have been
 *                           missed) and hooks->resync asks again for every open
 *                           session (tg_registry_recheck), closing what changed
 *
 * Why per worker, not on the main loop: a lookup is asked for and answered on
 * the thread that runs the session, so nothing crosses threads -- no mailbox,
 * no lock, no reference counting of sessions across threads -- and each worker
 * receives the invalidations itself and closes its own sessions. The costs are
 * two Redis connections per worker (a handful per process) and a cache per
 * worker (a tenant is fetched once per worker per TTL).
 *
 * Trust in the cache: while the subscription is live, a cached answer is
 * authoritative until its TTL (every change is followed by an invalidation).
 * While it is not, on_registry_failure decides: `deny` asks the registry
 * afresh (and refuses when it cannot), `cached` still uses answers younger
 * than the TTL. Sessions already open stay open while the registry is down;
 * they are checked again once it is back.
 *
 * Revocation set: a sorted set <prefix>revoked whose members are jtis, scored
 * by the token's exp (unix seconds): entries whose score has passed are of no
 * use (the token is expired anyway) and are trimmed by whoever revokes
 * (ZREMRANGEBYSCORE ... -inf <now>); a jti counts as revoked while its score
 * is in the future.
 *
 * Global rate windows: the registry client of worker 0 flushes every
 * global_messages_per_second window of the process every 100 ms (INCRBY
 * <prefix>rate:<listener>:<tenant>:<second> + PEXPIRE) and feeds the totals
 * back (proxy/sliding_window.h).
 *
 * Ownership: a registry belongs to its worker; a request to the session that
 * made it, which gets exactly one callback or cancels it first.
 */
#ifndef TG_PROXY_REGISTRY_H
#define TG_PROXY_REGISTRY_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "proxy/config.h"
#include "proxy/metrics.h"
#include "proxy/tenant_record.h"

typedef struct tg_registry tg_registry;
typedef struct tg_registry_req tg_registry_req;

/* What the registry says about one authentication. */
typedef struct tg_registry_answer {
    bool ok;                 /* false: no answer (registry unavailable); the rest is unset */
    tg_tenant_record tenant; /* the tenant's record */
    bool revoked;            /* the token's jti is revoked */
} tg_registry_answer;

/* A lookup's answer, later. Runs on the worker's loop, never inside tg_registry_lookup. */
typedef void (*tg_registry_cb)(void *ud, const tg_registry_answer *a);

/* What the registry tells its worker. */
typedef struct tg_registry_hooks {
    void *ud;
    /* The tenant's hash was read after an invalidation or a resync. */
    void (*tenant_changed)(void *ud, const char *tenant, const tg_tenant_record *rec);
    /* The jti is revoked (read after an invalidation or a resync). */
    void (*jti_revoked)(void *ud, const char *jti);
    /* The caches were cleared: ask again for every open session (tg_registry_recheck). */
    void (*resync)(void *ud);
} tg_registry_hooks;

/*
 * A registry client for cfg (cfg->registry.address set) on loop; it connects
 * at once and reconnects with backoff. flush_windows: this one flushes the
 * process's global rate windows. stats: the worker's registry shard. Copies
 * what it needs from cfg. Returns NULL when out of memory.
 */
tg_registry *tg_registry_new(uv_loop_t *loop, const tg_tenants_config *cfg,
                             const tg_registry_hooks *hooks, bool flush_windows,
                             tg_registry_stats *stats);

/*
 * True when cfg names the same registry (address, credentials, prefix, timeout) as r
 * uses, so that a reload can keep r (with tg_registry_configure).
 */
bool tg_registry_same_server(const tg_registry *r, const tg_tenants_config *cfg);

/* Takes the policy part of a reloaded config (TTL, failure mode, limits...). */
void tg_registry_configure(tg_registry *r, const tg_tenants_config *cfg);

/* The policy part in use: require_registered, the default limits. */
const tg_tenants_config *tg_registry_policy(const tg_registry *r);

/*
 * Looks up tenant and jti ("" = none). Returns 0 with *now filled (from the
 * cache, or unavailable), or 1 with *req set: cb(ud, answer) follows later
 * unless tg_registry_cancel(*req) comes first.
 */
int tg_registry_lookup(tg_registry *r, const char *tenant, const char *jti, tg_registry_answer *now,
                       tg_registry_cb cb, void *ud, tg_registry_req **req);

/* The requester goes away (its session closes): no callback; req is invalid afterwards. */
void tg_registry_cancel(tg_registry_req *req);

/*
 * Reads tenant (and jti, when not "") again unless a read started since the
 * last resync is on its way; the hooks report what it finds. For resyncs.
 */
void tg_registry_recheck(tg_registry *r, const char *tenant, const char *jti);

/* True while lookups and invalidations both work. */
bool tg_registry_up(const tg_registry *r);

/* Closes the connections and timers; pending requests get no callback. r is invalid afterwards. */
void tg_registry_close(tg_registry *r);

#endif
