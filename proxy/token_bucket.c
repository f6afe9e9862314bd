/*
 * The lock-free token bucket: see token_bucket.h.
 */
#include "proxy/token_bucket.h"

#define NS_PER_S 1000000000LL

tg_token_bucket_rate tg_token_bucket_rate_make(uint32_t per_second, uint32_t burst)
{
    tg_token_bucket_rate r = {0, 0};
    if (per_second == 0)
        return r;
    if (burst == 0)
        burst = per_second;
    r.interval_ns = NS_PER_S / per_second;
    if (r.interval_ns == 0)
        r.interval_ns = 1;
    r.tolerance_ns = (int64_t)(burst - 1) * r.interval_ns; /* <= 1e8 * 1e9: no overflow */
    return r;
}

void tg_token_bucket_init(tg_token_bucket *b)
{
    atomic_init(&b->tat, 0);
}

bool tg_token_bucket_take(tg_token_bucket *b, tg_token_bucket_rate r, int64_t now_ns)
{
    return tg_token_bucket_take_n(b, r, now_ns, 1);
}

bool tg_token_bucket_take_n(tg_token_bucket *b, tg_token_bucket_rate r, int64_t now_ns, uint32_t n)
{
    if (r.interval_ns == 0)
        return true;
    /* the last of the n messages must conform: tat + (n - 1) intervals within tolerance */
    int64_t ahead = (int64_t)(n - 1) * r.interval_ns;
    int64_t stored = atomic_load_explicit(&b->tat, memory_order_relaxed);
    for (;;) {
        int64_t tat = stored > now_ns ? stored : now_ns;
        if (tat - now_ns > r.tolerance_ns - ahead)
            return false;
        if (atomic_compare_exchange_weak_explicit(&b->tat, &stored, tat + ahead + r.interval_ns,
                                                  memory_order_relaxed, memory_order_relaxed))
            return true;
        /* another thread took some meanwhile: stored holds its value, decide again */
    }
}

int64_t tg_token_bucket_wait_ns(const tg_token_bucket *b, tg_token_bucket_rate r, int64_t now_ns)
{
    if (r.interval_ns == 0)
        return 0;
    int64_t tat = atomic_load_explicit(&b->tat, memory_order_relaxed);
    int64_t ahead = tat - now_ns - r.tolerance_ns;
    return ahead > 0 ? ahead : 0;
}
