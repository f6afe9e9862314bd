/*
 * Per-tenant limits: see tenant_count.h. Chained hash table keyed by
 * "listener\0tenant", sized for many tenants; buckets are fixed (the table
 * does not resize: chains stay short for the session counts a proxy holds).
 *
 *   g_lock guards: the table, count, refs, max_connections, listener_max
 *   atomics (any thread, no lock): the bucket, its rate, the window, in-flight bytes
 *
 * refs = count (sessions) + references handed to window flushes; a slot is
 * unlinked and freed when refs reaches 0.
 */
#include "proxy/tenant_count.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "proxy/error.h"
#include "proxy/token_bucket.h"

#define TG_TENANT_BUCKETS 4096

struct tg_tenant_slot {
    struct tg_tenant_slot *next;
    uint64_t hash;
    uint32_t count; /* sessions */
    uint32_t refs;  /* sessions + flushes in flight */
    uint32_t max_connections;
    uint32_t listener_max;
    _Atomic int64_t interval_ns; /* the bucket's rate; 0: no messages_per_second */
    _Atomic int64_t tolerance_ns;
    _Atomic uint32_t global_limit; /* global_messages_per_second; 0: none */
    _Atomic uint64_t inflight_max; /* 0: no max_inflight_bytes */
    _Atomic uint64_t inflight;
    tg_token_bucket bucket;
    tg_sliding_window window;
    size_t listener_len;
    char key[]; /* listener, NUL, tenant, NUL */
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static tg_tenant_slot *g_buckets[TG_TENANT_BUCKETS];

static uint64_t key_hash(const char *listener, size_t ll, const char *tenant, size_t tl)
{
    return XXH64(tenant, tl, XXH64(listener, ll, 0));
}

/* The link to (listener, tenant)'s slot; *link is NULL when absent. Called with g_lock held. */
static tg_tenant_slot **find(const char *listener, const char *tenant, size_t ll, size_t tl,
                             uint64_t h)
{
    tg_tenant_slot **link = &g_buckets[h % TG_TENANT_BUCKETS];
    while (*link && !((*link)->hash == h && (*link)->listener_len == ll &&
                      memcmp((*link)->key, listener, ll + 1) == 0 &&
                      strcmp((*link)->key + ll + 1, tenant) == 0))
        link = &(*link)->next;
    return link;
}

/* Stores the limits the slot's checks read. Called with g_lock held (or on a new slot). */
static void set_limits(tg_tenant_slot *s, const tg_tenant_limits *lim)
{
    tg_token_bucket_rate r = tg_token_bucket_rate_make(lim->messages_per_second, lim->burst);
    s->max_connections = lim->max_connections;
    atomic_store_explicit(&s->interval_ns, r.interval_ns, memory_order_relaxed);
    atomic_store_explicit(&s->tolerance_ns, r.tolerance_ns, memory_order_relaxed);
    atomic_store_explicit(&s->global_limit, lim->global_messages_per_second, memory_order_relaxed);
    atomic_store_explicit(&s->inflight_max, lim->max_inflight_bytes, memory_order_relaxed);
}

int tg_tenant_count_take(const char *listener, const char *tenant, const tg_tenant_limits *lim,
                         uint32_t listener_max, tg_tenant_slot **out)
{
    size_t ll = strlen(listener), tl = strlen(tenant);
    uint64_t h = key_hash(listener, ll, tenant, tl);
    int rc = 0;
    pthread_mutex_lock(&g_lock);
    tg_tenant_slot **link = find(listener, tenant, ll, tl, h);
    tg_tenant_slot *s = *link;
    if (!s) {
        s = calloc(1, sizeof(*s) + ll + tl + 2);
        if (!s) {
            rc = TG_ENOMEM;
            goto out;
        }
        s->hash = h;
        s->listener_len = ll;
        memcpy(s->key, listener, ll + 1);
        memcpy(s->key + ll + 1, tenant, tl + 1);
        tg_token_bucket_init(&s->bucket);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME_COARSE, &ts);
        tg_sliding_window_init(&s->window,
                               (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
        atomic_init(&s->inflight, 0);
        *link = s;
    }
    if (lim->max_connections && s->count >= lim->max_connections) {
        rc = TG_ELIMIT;
        if (s->refs == 0) { /* just made for nothing */
            *link = s->next;
            free(s);
        }
        goto out;
    }
    s->count++;
    s->refs++;
    s->listener_max = listener_max;
    set_limits(s, lim);
    *out = s;
out:
    pthread_mutex_unlock(&g_lock);
    return rc;
}

/* Drops one reference; called with g_lock held. */
static void unref_locked(tg_tenant_slot *s)
{
    if (--s->refs > 0)
        return;
    tg_tenant_slot **link = &g_buckets[s->hash % TG_TENANT_BUCKETS];
    while (*link && *link != s)
        link = &(*link)->next;
    if (*link)
        *link = s->next;
    free(s);
}

void tg_tenant_count_give(tg_tenant_slot *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&g_lock);
    s->count--;
    unref_locked(s);
    pthread_mutex_unlock(&g_lock);
}

void tg_tenant_count_unref(tg_tenant_slot *s)
{
    pthread_mutex_lock(&g_lock);
    unref_locked(s);
    pthread_mutex_unlock(&g_lock);
}

/* How many messages a session may prepay at once: 1 ms worth, a quarter of the burst. */
static uint32_t lease_size(uint64_t per_ms, uint64_t quarter)
{
    uint64_t n = per_ms < quarter ? per_ms : quarter;
    return n < 1 ? 1 : n > TG_TENANT_LEASE_MAX ? TG_TENANT_LEASE_MAX : (uint32_t)n;
}

/* The bucket's part: the lease first, then n prepaid at once or else one. */
static bool take_bucket(tg_tenant_slot *s, tg_token_bucket_rate r, tg_tenant_lease *lease,
                        int64_t now_ns)
{
    if (lease && lease->bucket) {
        lease->bucket--;
        return true;
    }
    uint64_t burst = (uint64_t)(r.tolerance_ns / r.interval_ns) + 1;
    uint32_t n = lease ? lease_size(1000000 / (uint64_t)r.interval_ns, burst / 4) : 1;
    if (n > 1 && tg_token_bucket_take_n(&s->bucket, r, now_ns, n)) {
        lease->bucket = n - 1;
        return true;
    }
    return tg_token_bucket_take(&s->bucket, r, now_ns);
}

/* The global window's part, the same way; a lease holds only within its fixed window. */
static bool take_window(tg_tenant_slot *s, uint32_t global, tg_tenant_lease *lease, uint64_t now_ms)
{
    uint64_t index = now_ms / TG_SLIDING_WINDOW_MS;
    if (lease && lease->window && lease->window_index == index) {
        lease->window--;
        return true;
    }
    uint32_t n = lease ? lease_size(global / TG_SLIDING_WINDOW_MS, global / 4) : 1;
    if (n > 1 && tg_sliding_window_take_n(&s->window, global, now_ms, n)) {
        lease->window = n - 1;
        lease->window_index = index;
        return true;
    }
    if (lease)
        lease->window = 0;
    return tg_sliding_window_take(&s->window, global, now_ms);
}

tg_tenant_rate tg_tenant_count_message(tg_tenant_slot *s, tg_tenant_lease *lease,
                                       tg_tenant_clock *clk)
{
    tg_token_bucket_rate r = {atomic_load_explicit(&s->interval_ns, memory_order_relaxed),
                              atomic_load_explicit(&s->tolerance_ns, memory_order_relaxed)};
    uint32_t global = atomic_load_explicit(&s->global_limit, memory_order_relaxed);
    if (r.interval_ns == 0 && global == 0)
        return TG_TENANT_PASS;
    tg_tenant_clock now = TG_TENANT_CLOCK_UNREAD;
    if (!clk)
        clk = &now;
    struct timespec ts;
    if (r.interval_ns) {
        if (!clk->mono_ns && !(lease && lease->bucket)) {
            clock_gettime(CLOCK_MONOTONIC, &ts);
            clk->mono_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
        }
        if (!take_bucket(s, r, lease, clk->mono_ns))
            return TG_TENANT_RATE_LIMITED;
    }
    if (global) {
        /* Wall-clock seconds: every process must agree where a window starts. */
        if (!clk->wall_ms) {
            clock_gettime(CLOCK_REALTIME_COARSE, &ts);
            clk->wall_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
        }
        if (!take_window(s, global, lease, clk->wall_ms))
            return TG_TENANT_GLOBAL_LIMITED;
    }
    return TG_TENANT_PASS;
}

bool tg_tenant_count_inflight_limited(const tg_tenant_slot *s)
{
    return atomic_load_explicit(&s->inflight_max, memory_order_relaxed) != 0;
}

void tg_tenant_count_inflight_add(tg_tenant_slot *s, uint64_t n)
{
    if (n)
        atomic_fetch_add_explicit(&s->inflight, n, memory_order_relaxed);
}

void tg_tenant_count_inflight_give(tg_tenant_slot *s, uint64_t n)
{
    if (n)
        atomic_fetch_sub_explicit(&s->inflight, n, memory_order_relaxed);
}

bool tg_tenant_count_inflight_full(const tg_tenant_slot *s, uint64_t n)
{
    uint64_t max = atomic_load_explicit(&s->inflight_max, memory_order_relaxed);
    if (!max)
        return false;
    uint64_t cur = atomic_load_explicit(&s->inflight, memory_order_relaxed);
    return n > max || cur > max - n;
}

void tg_tenant_count_update(const char *tenant, const tg_tenant_record *rec,
                            const tg_tenant_limits *defaults)
{
    pthread_mutex_lock(&g_lock);
    for (size_t b = 0; b < TG_TENANT_BUCKETS; b++) {
        for (tg_tenant_slot *s = g_buckets[b]; s; s = s->next) {
            if (strcmp(s->key + s->listener_len + 1, tenant) != 0)
                continue;
            tg_tenant_limits lim = tg_tenant_record_limits(rec, defaults, s->listener_max);
            set_limits(s, &lim);
        }
    }
    pthread_mutex_unlock(&g_lock);
}

void tg_tenant_count_each_window(void (*fn)(void *ud, tg_tenant_slot *s, tg_sliding_window *w,
                                            const char *listener, const char *tenant),
                                 void *ud)
{
    pthread_mutex_lock(&g_lock);
    for (size_t b = 0; b < TG_TENANT_BUCKETS; b++) {
        for (tg_tenant_slot *s = g_buckets[b]; s; s = s->next) {
            if (!atomic_load_explicit(&s->global_limit, memory_order_relaxed))
                continue;
            s->refs++;
            fn(ud, s, &s->window, s->key, s->key + s->listener_len + 1);
        }
    }
    pthread_mutex_unlock(&g_lock);
}

const char *tg_tenant_count_listener(const tg_tenant_slot *s)
{
    return s->key;
}

const char *tg_tenant_count_tenant(const tg_tenant_slot *s)
{
    return s->key + s->listener_len + 1;
}

int tg_tenant_count_acquire(const char *listener, const char *tenant, uint32_t max)
{
    tg_tenant_limits lim = {.max_connections = max};
    tg_tenant_slot *s;
    return tg_tenant_count_take(listener, tenant, &lim, max, &s);
}

void tg_tenant_count_release(const char *listener, const char *tenant)
{
    size_t ll = strlen(listener), tl = strlen(tenant);
    uint64_t h = key_hash(listener, ll, tenant, tl);
    pthread_mutex_lock(&g_lock);
    tg_tenant_slot *s = *find(listener, tenant, ll, tl, h);
    if (s) {
        s->count--;
        unref_locked(s);
    }
    pthread_mutex_unlock(&g_lock);
}
