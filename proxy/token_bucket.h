/*
 * A token bucket that every worker thread of a process can take from at once,
 * without a lock: messages_per_second with a burst, per (listener, tenant).
 *
 *   take(now) --tat = max(stored, now)--> tat - now > tolerance ? refuse
 *                                                               : stored = tat + interval (CAS)
 *
 * It is the GCRA formulation (the "generic cell rate algorithm" of ATM traffic
 * shaping): instead of a token count and a refill time, one 64-bit theoretical
 * arrival time (tat) in nanoseconds. A message is allowed when the bucket
 * would not be empty: tat is at most `tolerance` ahead of now, where tolerance
 * = (burst - 1) * interval and interval = 1 s / rate. Allowing it pushes tat one
 * interval further. It is exactly a bucket of `burst` tokens refilled at `rate`
 * per second, and one compare-and-swap is the whole update, so workers share
 * one bucket per tenant: a tenant's rate does not depend on how the kernel
 * spread its connections over the workers (a per-worker bucket with the rate
 * split N ways would give a tenant with one connection 1/N of its rate).
 * Pure arithmetic: time comes from the caller.
 */
#ifndef TG_PROXY_TOKEN_BUCKET_H
#define TG_PROXY_TOKEN_BUCKET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* How fast a bucket refills and how much it holds, in GCRA terms. interval_ns 0: unlimited. */
typedef struct tg_token_bucket_rate {
    int64_t interval_ns;  /* 1 s / messages per second */
    int64_t tolerance_ns; /* (burst - 1) * interval_ns */
} tg_token_bucket_rate;

typedef struct tg_token_bucket {
    _Atomic int64_t tat; /* theoretical arrival time of the next message, ns; 0: full */
} tg_token_bucket;

/*
 * The rate for `per_second` messages per second with a bucket of `burst`
 * (0: one second's worth). per_second 0: unlimited.
 */
tg_token_bucket_rate tg_token_bucket_rate_make(uint32_t per_second, uint32_t burst);

/* A full bucket. */
void tg_token_bucket_init(tg_token_bucket *b);

/*
 * Takes one token at now_ns (a monotonic clock, > 0). Returns true when the
 * message may pass. Lock-free; any thread.
 */
bool tg_token_bucket_take(tg_token_bucket *b, tg_token_bucket_rate r, int64_t now_ns);

/*
 * Takes n >= 1 tokens at once at now_ns, all or none: true when all n could
 * pass now (n messages at the same instant). One compare-and-swap for n
 * messages: a session prepays a few tokens (proxy/tenant_count.h, leases).
 */
bool tg_token_bucket_take_n(tg_token_bucket *b, tg_token_bucket_rate r, int64_t now_ns, uint32_t n);

/* Nanoseconds until a token will be available at now_ns (0: one is available now). */
int64_t tg_token_bucket_wait_ns(const tg_token_bucket *b, tg_token_bucket_rate r, int64_t now_ns);

#endif
