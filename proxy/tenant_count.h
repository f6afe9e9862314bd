/*
 * Per-(listener, tenant) limits, process-wide: one noisy tenant cannot take
 * every backend connection or starve the others (SPEC §6, invariant 5).
 *
 *   session authenticates --take(listener, tenant, limits)--> slot (count < max_connections?)
 *   every request --message(slot, session's lease)--> the lease's prepaid messages, else
 *                                    token bucket (messages_per_second, burst)
 *                                    + sliding window (global_messages_per_second)
 *   request about to go --inflight_full?--> refused; sent, answered: counted by the session,
 *       published per read (inflight_add / inflight_give): bytes in flight (max_inflight_bytes)
 *   session closes --give(slot)
 *   registry says the tenant's limits changed --update(tenant, record)--> every listener's slot
 *
 * A slot is shared by every session of the tenant on that listener in this
 * process, whichever worker runs it: the connection count under the table's
 * mutex (taken when a session authenticates and closes, never per message),
 * everything per message with atomics (a lock-free GCRA bucket, counters),
 * which at high rates a session updates once per lease of up to 16 messages.
 * With no limit set, a message costs two relaxed loads. Slots disappear when
 * their last session closes, so the table holds only tenants with open sessions.
 */
#ifndef TG_PROXY_TENANT_COUNT_H
#define TG_PROXY_TENANT_COUNT_H

#include <stdbool.h>
#include <stdint.h>

#include "proxy/config.h"
#include "proxy/sliding_window.h"
#include "proxy/tenant_record.h"

typedef struct tg_tenant_slot tg_tenant_slot;

/*
 * Takes a session slot for tenant on listener when fewer than
 * lim->max_connections are taken (0 = unlimited), and sets the slot's limits
 * to *lim (the newest session's view applies to all of them). listener_max is
 * the listener's own per-tenant limit, kept to recompute limits on update.
 * Returns 0 with the slot in *out, TG_ELIMIT when the tenant is at its limit,
 * or TG_ENOMEM.
 */
__attribute__((warn_unused_result)) int
tg_tenant_count_take(const char *listener, const char *tenant, const tg_tenant_limits *lim,
                     uint32_t listener_max, tg_tenant_slot **out);

/* Gives back a slot taken with tg_tenant_count_take; s is invalid afterwards. */
void tg_tenant_count_give(tg_tenant_slot *s);

/* X(name): what the per-message check says. */
typedef enum {
    TG_TENANT_PASS,
    TG_TENANT_RATE_LIMITED,   /* messages_per_second (this process) */
    TG_TENANT_GLOBAL_LIMITED, /* global_messages_per_second (every process) */
} tg_tenant_rate;

/*
 * The clocks the rate limits read, shared by the messages of one batch (the
 * requests of one client read arrived together): zeroed (TG_TENANT_CLOCK_UNREAD)
 * at the start of the batch, read by the first message that needs them. A
 * pipeline of 16 commands then reads the clock once rather than 16 times,
 * which is most of what a limit costs per message (bench/tenant_limits_bench).
 */
typedef struct tg_tenant_clock {
    int64_t mono_ns;  /* CLOCK_MONOTONIC (token bucket); 0: not read yet */
    uint64_t wall_ms; /* CLOCK_REALTIME_COARSE (global window); 0: not read yet */
} tg_tenant_clock;

#define TG_TENANT_CLOCK_UNREAD ((tg_tenant_clock){0, 0})

/*
 * What one session has prepaid of its tenant's rate limits. At a high rate a
 * session takes up to 1 ms worth of the rate (at most a quarter of the burst,
 * at most TG_TENANT_LEASE_MAX messages) from the shared bucket, and as much
 * from the global window, in one update instead of one per message, so that
 * workers serving the same tenant touch the shared counters once per batch
 * rather than bouncing their cache line on every message. Prepaid messages
 * are spent (counted) when taken: a session that closes loses what it still
 * holds, and a window's lease ends with its fixed window. At low rates (below
 * 2,000 messages per second) a lease is one message: exact as without one.
 * Zero-initialised: nothing prepaid. One session's, never shared.
 */
#define TG_TENANT_LEASE_MAX 16

typedef struct tg_tenant_lease {
    uint32_t bucket;       /* messages prepaid in the token bucket */
    uint32_t window;       /* messages counted ahead in the global window... */
    uint64_t window_index; /* ...during this fixed window (wall ms / 1000) */
} tg_tenant_lease;

/*
 * Counts one message of the slot's tenant against its rate limits, at the
 * batch's time (clk; NULL: now), spending the session's lease first (NULL:
 * no lease, one shared update per message). Any thread.
 */
tg_tenant_rate tg_tenant_count_message(tg_tenant_slot *s, tg_tenant_lease *lease,
                                       tg_tenant_clock *clk);

/*
 * Request bytes in flight (max_inflight_bytes). While the slot has a limit
 * (limited), a session counts what it sends and what gets answered, and
 * publishes the sums with add / give once per read rather than per request,
 * so the shared counter's cache line is not bounced between workers on every
 * message; full() checks a request against it (plus what the caller has
 * counted and not published yet). The count is only as exact as that: the
 * limit bounds memory and backend queues, it is not a per-byte quota.
 */
bool tg_tenant_count_inflight_limited(const tg_tenant_slot *s);
void tg_tenant_count_inflight_add(tg_tenant_slot *s, uint64_t n);
void tg_tenant_count_inflight_give(tg_tenant_slot *s, uint64_t n);

/* True when n more bytes would take the tenant over its max_inflight_bytes (0: never). */
bool tg_tenant_count_inflight_full(const tg_tenant_slot *s, uint64_t n);

/*
 * The registry changed the tenant's record: every listener's slot of it gets
 * the limits tg_tenant_record_limits(rec, defaults, that listener's own limit).
 * Open sessions stay (a lower max_connections applies to new ones).
 */
void tg_tenant_count_update(const char *tenant, const tg_tenant_record *rec,
                            const tg_tenant_limits *defaults);

/*
 * Calls fn for every slot with a global_messages_per_second limit, holding a
 * reference for the callee: fn must give it back with tg_tenant_count_unref
 * (e.g. once the registry has answered the flush it started). Called by the
 * registry client that flushes windows; fn must not block.
 */
void tg_tenant_count_each_window(void (*fn)(void *ud, tg_tenant_slot *s, tg_sliding_window *w,
                                            const char *listener, const char *tenant),
                                 void *ud);

/* Drops a reference handed out by tg_tenant_count_each_window. */
void tg_tenant_count_unref(tg_tenant_slot *s);

/* The slot's listener and tenant names. */
const char *tg_tenant_count_listener(const tg_tenant_slot *s);
const char *tg_tenant_count_tenant(const tg_tenant_slot *s);

/*
 * Name-based forms for sessions that keep no slot: take a slot for tenant on
 * listener when fewer than max are taken (max 0 = unlimited; returns 0,
 * TG_ELIMIT or TG_ENOMEM) and give it back.
 */
__attribute__((warn_unused_result)) int tg_tenant_count_acquire(const char *listener,
                                                                const char *tenant, uint32_t max);
void tg_tenant_count_release(const char *listener, const char *tenant);

#endif
