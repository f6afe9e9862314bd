/*
 * The tenant registry client: see registry.h for the picture and the policy.
 *
 *   lookups ----> fetches in flight (oldest first) --HGETALL/ZSCORE on cmd--> replies in order
 *                   ^ waiters (sessions) join a fetch for the same (tenant, jti)
 *   tick (100 ms): the oldest fetch older than timeout_ms -> cmd is dropped and reopened,
 *                  every fetch fails (waiters: "unavailable"); reconnects with backoff;
 *                  flushes the global rate windows (worker 0)
 *   sub: SUBSCRIBE confirmation -> subscribed (a resync); messages -> invalidations
 *
 * A fetch asks for what its first requester needed (the tenant's hash, the jti's
 * revocation, or both), caches the answers, hands them to its waiters and, for
 * invalidations and resyncs, to the hooks. Replies on one connection come in the
 * order the commands went, so a later fetch's answer always lands after an
 * earlier one's: the cache ends with the newest.
 *
 * Lifetimes: a waiter belongs to its session until its callback (then it is
 * freed) or tg_registry_cancel. A fetch is answered (waiters, hooks) when its
 * last reply comes or when the command connection is dropped, whichever is
 * first, and freed once every command of it has called back (with a reply, or
 * with NULL: tg_redis_async calls each one exactly once).
 */
#include "proxy/registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "proxy/error.h"
#include "proxy/jwt.h"
#include "proxy/log.h"
#include "proxy/redis_async.h"
#include "proxy/tenant_count.h"
#include "proxy/ttl_cache.h"

#define REG_TICK_MS 100
#define REG_BACKOFF_MIN_MS 100
#define REG_BACKOFF_MAX_MS 2000
#define REG_HASH_ELEMENTS_MAX 4096 /* field/value elements of a tenant hash we read */
#define REG_JTI_MAX 128
#define REG_KEY_MAX 320
#define REG_WINDOW_TTL_MS 3000 /* rate window keys outlive the two seconds they are read */

typedef struct fetch fetch;

struct tg_registry_req {
    tg_registry_req *prev, *next; /* the fetch's waiters */
    fetch *f;
    tg_registry_cb cb;
    void *ud;
    tg_registry_answer partial; /* what the cache already knew */
    bool have_tenant, have_jti;
};

struct fetch {
    fetch *prev, *next; /* in flight, oldest first */
    tg_registry *r;
    uint64_t sent_ms;
    uint64_t epoch;
    bool want_tenant, want_jti;
    bool notify; /* report to the hooks (invalidation, resync) */
    bool failed;
    bool answered; /* waiters and hooks have been told; off the in-flight list */
    int due;       /* commands whose callback has not run */
    tg_tenant_record rec;
    bool revoked;
    tg_registry_req *waiters;
    char tenant[TG_TENANT_MAX + 1];
    char jti[REG_JTI_MAX + 1];
};

/* One connection of the two, with its reconnect schedule. */
typedef struct reg_link {
    tg_redis_async *rc;
    bool ready;
    uint64_t retry_at; /* loop ms; 0: open now */
    uint32_t backoff_ms;
    bool was_up; /* for logging transitions once */
} reg_link;

struct tg_registry {
    uv_loop_t *loop;
    uv_timer_t tick;
    tg_registry_hooks hooks;
    tg_registry_stats *stats;
    bool flush_windows;
    /* the server (fixed for the registry's life) */
    char *address;
    char host[256];
    uint16_t port;
    char *user;
    char *password;
    size_t password_len;
    char prefix[80];
    uint32_t timeout_ms;
    /* the policy (tg_registry_configure) */
    tg_tenants_config policy; /* only the value fields are used; strings are not owned */
    /* state */
    reg_link cmd, sub;
    bool subscribed;
    bool closing;
    uint64_t epoch; /* resyncs so far */
    fetch *oldest, *newest;
    tg_ttl_cache *tenants;   /* tenant -> tg_tenant_record */
    tg_ttl_cache *jtis;      /* jti -> bool revoked */
    tg_ttl_cache *rechecked; /* "t:<tenant>" / "j:<jti>" asked again since the last resync */
    char events_channel[96];
};

static void open_cmd(tg_registry *r);
static void open_sub(tg_registry *r);

/* ---- small helpers -------------------------------------------------------------------------- */

static uint64_t now_ms(const tg_registry *r)
{
    return uv_now(r->loop);
}

static uint64_t ttl_ms(const tg_registry *r)
{
    return (uint64_t)r->policy.cache_ttl_s * 1000;
}

static void count_lookup(tg_registry *r, tg_registry_lookup_result res)
{
    if (r->stats)
        TG_STAT_ADD(r->stats->lookups[res], 1);
}

static tg_registry_lookup_result result_of(const tg_registry_answer *a)
{
    if (!a->ok)
        return TG_REGISTRY_LOOKUP_error;
    if (a->revoked)
        return TG_REGISTRY_LOOKUP_revoked;
    switch (a->tenant.status) {
    case TG_TENANT_ACTIVE:
        return TG_REGISTRY_LOOKUP_active;
    case TG_TENANT_SUSPENDED:
        return TG_REGISTRY_LOOKUP_suspended;
    case TG_TENANT_UNKNOWN:
        return TG_REGISTRY_LOOKUP_unknown;
    case TG_TENANT_INVALID:
        break;
    }
    return TG_REGISTRY_LOOKUP_invalid;
}

static bool is_up(const tg_registry *r)
{
    return r->cmd.ready && r->subscribed;
}

/* Publishes the up/down state to metrics and logs transitions. */
static void update_up(tg_registry *r, const char *why)
{
    bool up = is_up(r);
    if (r->stats)
        atomic_store_explicit(&r->stats->up, up ? 1 : 0, memory_order_relaxed);
    if (up && !r->cmd.was_up) {
        tg_log(TG_LOG_INFO, "tenant registry connected", TG_FS("address", r->address), TG_FEND);
    } else if (!up && r->cmd.was_up) {
        tg_log(
            TG_LOG_WARN, "tenant registry unavailable", TG_FS("address", r->address),
            TG_FS("error", why ? why : "connection lost"),
            TG_FS("on_registry_failure",
                  r->policy.on_registry_failure == TG_REGISTRY_FAILURE_CACHED ? "cached" : "deny"),
            TG_FEND);
    }
    r->cmd.was_up = up;
}

/* ---- fetches -------------------------------------------------------------------------------- */

static void fetch_unlink(tg_registry *r, fetch *f)
{
    if (f->prev)
        f->prev->next = f->next;
    else
        r->oldest = f->next;
    if (f->next)
        f->next->prev = f->prev;
    else
        r->newest = f->prev;
    f->prev = f->next = NULL;
}

/* Hands the fetch's outcome to its waiters and the hooks (it is already unlinked). */
static void fetch_answer(tg_registry *r, fetch *f)
{
    f->answered = true;
    uint64_t now = now_ms(r);
    if (!f->failed) {
        if (f->want_tenant &&
            tg_ttl_cache_put(r->tenants, f->tenant, strlen(f->tenant), &f->rec, now) < 0)
            tg_ttl_cache_remove(r->tenants, f->tenant, strlen(f->tenant));
        if (f->want_jti && tg_ttl_cache_put(r->jtis, f->jti, strlen(f->jti), &f->revoked, now) < 0)
            tg_ttl_cache_remove(r->jtis, f->jti, strlen(f->jti));
    }
    /* Waiters may cancel one another from their callbacks (a kick closes a session): each
     * is taken off the list before its callback runs. */
    tg_registry_req *q;
    while ((q = f->waiters) != NULL) {
        f->waiters = q->next;
        if (f->waiters)
            f->waiters->prev = NULL;
        tg_registry_answer a = q->partial;
        a.ok = !f->failed;
        if (a.ok && !q->have_tenant)
            a.tenant = f->rec;
        if (a.ok && !q->have_jti)
            a.revoked = f->revoked;
        count_lookup(r, result_of(&a));
        tg_registry_cb cb = q->cb;
        void *ud = q->ud;
        free(q);
        cb(ud, &a);
    }
    if (f->notify && !f->failed && !r->closing) {
        if (f->want_tenant && r->hooks.tenant_changed)
            r->hooks.tenant_changed(r->hooks.ud, f->tenant, &f->rec);
        if (f->want_jti && f->revoked && r->hooks.jti_revoked)
            r->hooks.jti_revoked(r->hooks.ud, f->jti);
    }
}

/* One command of a fetch has called back; the last one answers it (unless the connection
 * was dropped first and that answered it) and frees it. */
static void fetch_reply_done(fetch *f)
{
    if (--f->due > 0)
        return;
    if (!f->answered) {
        fetch_unlink(f->r, f);
        fetch_answer(f->r, f);
    }
    free(f);
}

static void on_hgetall(void *ud, const redisReply *reply)
{
    fetch *f = ud;
    if (!reply || f->answered) {
        f->failed = true;
    } else if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2 != 0) {
        /* WRONGTYPE and the like: nothing we can trust */
        f->failed = true;
        tg_log(TG_LOG_WARN, "tenant registry: unexpected reply to HGETALL",
               TG_FS("tenant", f->tenant), TG_FI("type", reply->type), TG_FEND);
    } else if (reply->elements > REG_HASH_ELEMENTS_MAX) {
        memset(&f->rec, 0, sizeof(f->rec));
        f->rec.status = TG_TENANT_INVALID;
    } else {
        /* Only our fields are handed to the parser: everything else in the hash is the
         * control plane's own business. */
        static const char *const ours[] = {"status",
                                           "slug",
                                           "max_connections",
                                           "messages_per_second",
                                           "burst",
                                           "global_messages_per_second",
                                           "max_inflight_bytes"};
        tg_slice fields[16], values[16];
        size_t n = 0;
        bool bad = false;
        for (size_t i = 0; i + 1 < reply->elements && !bad; i += 2) {
            const redisReply *k = reply->element[i], *v = reply->element[i + 1];
            if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
                bad = true;
                break;
            }
            tg_slice ks = {(const uint8_t *)k->str, k->len};
            for (size_t o = 0; o < sizeof(ours) / sizeof(ours[0]); o++) {
                if (tg_slice_eq_str(ks, ours[o]) && n < 16) {
                    fields[n] = ks;
                    values[n] = (tg_slice){(const uint8_t *)v->str, v->len};
                    n++;
                }
            }
        }
        if (bad) {
            memset(&f->rec, 0, sizeof(f->rec));
            f->rec.status = TG_TENANT_INVALID;
        } else if (reply->elements > 0 && n == 0) {
            /* a hash without any field of ours: no status, so INVALID (fail closed) */
            tg_slice none = tg_slice_str("");
            tg_tenant_record_parse(&none, &none, 1, &f->rec);
        } else {
            tg_tenant_record_parse(fields, values, n, &f->rec);
        }
    }
    fetch_reply_done(f);
}

static void on_zscore(void *ud, const redisReply *reply)
{
    fetch *f = ud;
    if (!reply || f->answered) {
        f->failed = true;
    } else if (reply->type == REDIS_REPLY_NIL) {
        f->revoked = false;
    } else if (reply->type == REDIS_REPLY_STRING) {
        f->revoked = true; /* a member: revoked (whatever its score; an old one can only be
                              expired anyway) */
    } else {
        f->failed = true;
        tg_log(TG_LOG_WARN, "tenant registry: unexpected reply to ZSCORE",
               TG_FI("type", reply->type), TG_FEND);
    }
    fetch_reply_done(f);
}

/* Starts a fetch; returns it (in flight), or NULL when nothing could be sent. */
static fetch *fetch_start(tg_registry *r, const char *tenant, const char *jti, bool want_tenant,
                          bool want_jti, bool notify)
{
    if (!r->cmd.ready || r->closing)
        return NULL;
    fetch *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->r = r;
    snprintf(f->tenant, sizeof(f->tenant), "%s", tenant);
    snprintf(f->jti, sizeof(f->jti), "%s", jti);
    f->want_tenant = want_tenant;
    f->want_jti = want_jti;
    f->notify = notify;
    f->epoch = r->epoch;
    f->sent_ms = now_ms(r);
    char key[REG_KEY_MAX];
    int rc = 0;
    if (want_tenant) {
        int kl = snprintf(key, sizeof(key), "%stenant:%s", r->prefix, tenant);
        const char *argv[2] = {"HGETALL", key};
        size_t len[2] = {7, (size_t)kl};
        rc = tg_redis_async_command(r->cmd.rc, on_hgetall, f, 2, argv, len);
        if (rc == 0)
            f->due++;
    }
    if (rc == 0 && want_jti) {
        int kl = snprintf(key, sizeof(key), "%srevoked", r->prefix);
        const char *argv[3] = {"ZSCORE", key, f->jti};
        size_t len[3] = {6, (size_t)kl, strlen(f->jti)};
        rc = tg_redis_async_command(r->cmd.rc, on_zscore, f, 3, argv, len);
        if (rc == 0)
            f->due++;
    }
    if (f->due == 0) { /* nothing went out */
        free(f);
        return NULL;
    }
    f->prev = r->newest;
    if (r->newest)
        r->newest->next = f;
    else
        r->oldest = f;
    r->newest = f;
    if (rc < 0) /* half sent: its answer is a failure, once the half that went out is back */
        f->failed = true;
    return f;
}

/* Answers every fetch in flight with a failure (waiters: unavailable); each is freed when
 * its commands have called back. */
static void fail_fetches(tg_registry *r)
{
    fetch *f;
    while ((f = r->oldest) != NULL) {
        fetch_unlink(r, f);
        f->failed = true;
        fetch_answer(r, f);
    }
}

/* ---- connections ---------------------------------------------------------------------------- */

static void schedule_retry(tg_registry *r, reg_link *l)
{
    l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : REG_BACKOFF_MIN_MS;
    if (l->backoff_ms > REG_BACKOFF_MAX_MS)
        l->backoff_ms = REG_BACKOFF_MAX_MS;
    l->retry_at = now_ms(r) + l->backoff_ms;
}

/* The command connection is gone (or unusable): drop it, fail what waits on it, retry later. */
static void cmd_down(tg_registry *r, const char *why)
{
    bool was_ready = r->cmd.ready;
    r->cmd.ready = false;
    tg_redis_async_close(r->cmd.rc);
    r->cmd.rc = NULL;
    schedule_retry(r, &r->cmd);
    update_up(r, why);
    if (was_ready)
        tg_log(TG_LOG_DEBUG, "tenant registry command connection closed",
               TG_FS("error", why ? why : ""), TG_FEND);
    fail_fetches(r);
}

static void sub_down(tg_registry *r, const char *why)
{
    r->sub.ready = false;
    r->subscribed = false;
    tg_redis_async_close(r->sub.rc);
    r->sub.rc = NULL;
    schedule_retry(r, &r->sub);
    update_up(r, why);
}

/* The caches may miss invalidations: clear them and check every open session again. */
static void resync(tg_registry *r)
{
    r->epoch++;
    tg_ttl_cache_clear(r->tenants);
    tg_ttl_cache_clear(r->jtis);
    tg_ttl_cache_clear(r->rechecked);
    if (r->hooks.resync && !r->closing)
        r->hooks.resync(r->hooks.ud);
}

static void on_cmd_state(void *ud, int status, const char *why)
{
    tg_registry *r = ud;
    if (status < 0) {
        if (!r->cmd.ready && r->cmd.backoff_ms == 0)
            tg_log(TG_LOG_WARN, "tenant registry connect failed", TG_FS("address", r->address),
                   TG_FS("error", why ? why : ""), TG_FEND);
        cmd_down(r, why);
        return;
    }
    r->cmd.ready = true;
    r->cmd.backoff_ms = 0;
    if (r->stats)
        TG_STAT_ADD(r->stats->reconnects, 1);
    update_up(r, NULL);
    if (r->subscribed)
        resync(r); /* invalidations seen while lookups were impossible found nothing to read */
}

static bool reply_is(const redisReply *e, const char *s)
{
    size_t n = strlen(s);
    return e->type == REDIS_REPLY_STRING && e->len == n && memcmp(e->str, s, n) == 0;
}

/* An invalidation: "tenant <id>", "jti <jti>" or "all". */
static void on_event(tg_registry *r, const char *p, size_t n)
{
    if (r->stats)
        TG_STAT_ADD(r->stats->events, 1);
    if (n == 3 && memcmp(p, "all", 3) == 0) {
        resync(r);
        return;
    }
    if (n > 7 && memcmp(p, "tenant ", 7) == 0 && tg_tenant_valid(p + 7, n - 7)) {
        char tenant[TG_TENANT_MAX + 1];
        memcpy(tenant, p + 7, n - 7);
        tenant[n - 7] = '\0';
        tg_ttl_cache_remove(r->tenants, tenant, n - 7);
        /* A new read, never joined to one that may have started before the change. */
        (void)fetch_start(r, tenant, "", true, false, true);
        return;
    }
    if (n > 4 && n - 4 <= REG_JTI_MAX && memcmp(p, "jti ", 4) == 0) {
        char jti[REG_JTI_MAX + 1];
        for (size_t i = 4; i < n; i++) {
            if (p[i] <= 0x20 || p[i] >= 0x7f)
                goto unknown;
        }
        memcpy(jti, p + 4, n - 4);
        jti[n - 4] = '\0';
        tg_ttl_cache_remove(r->jtis, jti, n - 4);
        (void)fetch_start(r, "", jti, false, true, true);
        return;
    }
unknown:
    tg_log(TG_LOG_WARN, "tenant registry: unknown event ignored", TG_FI("length", n), TG_FEND);
}

static void on_sub_message(void *ud, const redisReply *reply)
{
    tg_registry *r = ud;
    if (!reply) /* lost: the state callback follows */
        return;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
        return;
    const redisReply *kind = reply->element[0], *payload = reply->element[2];
    if (reply_is(kind, "subscribe")) {
        r->subscribed = true;
        r->sub.backoff_ms = 0;
        update_up(r, NULL);
        resync(r);
    } else if (reply_is(kind, "message") && payload->type == REDIS_REPLY_STRING) {
        on_event(r, payload->str, payload->len);
    }
}

static void on_sub_state(void *ud, int status, const char *why)
{
    tg_registry *r = ud;
    if (status < 0) {
        sub_down(r, why);
        return;
    }
    r->sub.ready = true;
    if (tg_redis_async_subscribe(r->sub.rc, r->events_channel, on_sub_message, r) < 0)
        sub_down(r, "cannot subscribe");
}

static tg_redis_async *open_link(tg_registry *r, tg_redis_async_state_cb cb)
{
    tg_redis_async_target t = {
        .host = r->host,
        .port = r->port,
        .user = r->user,
        .password = r->password,
        .password_len = r->password_len,
        .timeout_ms = r->timeout_ms,
    };
    int err;
    return tg_redis_async_open(r->loop, &t, cb, r, &err);
}

static void open_cmd(tg_registry *r)
{
    r->cmd.rc = open_link(r, on_cmd_state);
    if (!r->cmd.rc)
        schedule_retry(r, &r->cmd);
}

static void open_sub(tg_registry *r)
{
    r->sub.rc = open_link(r, on_sub_state);
    if (!r->sub.rc)
        schedule_retry(r, &r->sub);
}

/* ---- global rate windows -------------------------------------------------------------------- */

typedef struct window_flush {
    tg_tenant_slot *slot; /* one reference */
    tg_sliding_window *w;
    uint64_t window;
} window_flush;

static void on_incrby(void *ud, const redisReply *reply)
{
    window_flush *wf = ud;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer >= 0)
        tg_sliding_window_observe(wf->w, wf->window, (uint64_t)reply->integer);
    tg_tenant_count_unref(wf->slot);
    free(wf);
}

static void on_ignored(void *ud, const redisReply *reply)
{
    (void)ud;
    (void)reply;
}

static void flush_window(void *ud, tg_tenant_slot *s, tg_sliding_window *w, const char *listener,
                         const char *tenant)
{
    tg_registry *r = ud;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    window_flush *wf = malloc(sizeof(*wf));
    if (!wf) {
        tg_tenant_count_unref(s);
        return;
    }
    wf->slot = s;
    wf->w = w;
    uint64_t delta = tg_sliding_window_flush(w, now, &wf->window);
    char key[REG_KEY_MAX], num[24], ttl[24];
    int kl = snprintf(key, sizeof(key), "%srate:%s:%s:%llu", r->prefix, listener, tenant,
                      (unsigned long long)wf->window);
    int nl = snprintf(num, sizeof(num), "%llu", (unsigned long long)delta);
    int tl = snprintf(ttl, sizeof(ttl), "%d", REG_WINDOW_TTL_MS);
    const char *incr[3] = {"INCRBY", key, num};
    size_t incr_len[3] = {6, (size_t)kl, (size_t)nl};
    const char *exp[3] = {"PEXPIRE", key, ttl};
    size_t exp_len[3] = {7, (size_t)kl, (size_t)tl};
    if (tg_redis_async_command(r->cmd.rc, on_incrby, wf, 3, incr, incr_len) < 0) {
        tg_tenant_count_unref(s);
        free(wf);
        return;
    }
    if (tg_redis_async_command(r->cmd.rc, on_ignored, NULL, 3, exp, exp_len) < 0) {
        /* the key then expires with the next flush's PEXPIRE, or never holds more than one
         * second's count: nothing to undo */
    }
}

/* ---- the tick ------------------------------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
    tg_registry *r = t->data;
    uint64_t now = now_ms(r);
    if (r->oldest && now - r->oldest->sent_ms > r->timeout_ms) {
        tg_log(TG_LOG_WARN, "tenant registry timed out", TG_FS("address", r->address),
               TG_FI("timeout_ms", r->timeout_ms), TG_FEND);
        cmd_down(r, "timed out");
    }
    if (!r->cmd.rc && now >= r->cmd.retry_at)
        open_cmd(r);
    if (!r->sub.rc && now >= r->sub.retry_at)
        open_sub(r);
    if (r->flush_windows && r->cmd.ready)
        tg_tenant_count_each_window(flush_window, r);
}

/* ---- public --------------------------------------------------------------------------------- */

/* Frees what tg_registry_new allocated (any of it may be NULL) and r itself. */
static void registry_free(tg_registry *r)
{
    tg_ttl_cache_free(r->tenants);
    tg_ttl_cache_free(r->jtis);
    tg_ttl_cache_free(r->rechecked);
    free(r->address);
    free(r->user);
    if (r->password)
        OPENSSL_cleanse(r->password, r->password_len);
    free(r->password);
    free(r);
}

tg_registry *tg_registry_new(uv_loop_t *loop, const tg_tenants_config *cfg,
                             const tg_registry_hooks *hooks, bool flush_windows,
                             tg_registry_stats *stats)
{
    const tg_registry_config *rc = &cfg->registry;
    tg_registry *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->loop = loop;
    r->hooks = *hooks;
    r->stats = stats;
    r->flush_windows = flush_windows;
    r->timeout_ms = rc->timeout_ms ? rc->timeout_ms : 1000;
    snprintf(r->prefix, sizeof(r->prefix), "%s", rc->key_prefix ? rc->key_prefix : "tenantgate:");
    snprintf(r->events_channel, sizeof(r->events_channel), "%sevents", r->prefix);
    r->address = strdup(rc->address);
    r->user = rc->user ? strdup(rc->user) : NULL;
    if (rc->password.data) {
        r->password = malloc(rc->password.len + 1);
        if (r->password) {
            memcpy(r->password, rc->password.data, rc->password.len);
            r->password[rc->password.len] = '\0';
            r->password_len = rc->password.len;
        }
    }
    r->tenants = tg_ttl_cache_new(cfg->cache_size, sizeof(tg_tenant_record));
    r->jtis = tg_ttl_cache_new(cfg->cache_size, sizeof(bool));
    r->rechecked = tg_ttl_cache_new(cfg->cache_size, 1);
    if (!r->address || (rc->user && !r->user) || (rc->password.data && !r->password) ||
        !r->tenants || !r->jtis || !r->rechecked ||
        tg_config_split_address(rc->address, r->host, sizeof(r->host), &r->port) < 0 ||
        uv_timer_init(loop, &r->tick) < 0) {
        registry_free(r);
        return NULL;
    }
    r->tick.data = r;
    tg_registry_configure(r, cfg);
    if (stats) {
        atomic_store_explicit(&stats->configured, 1, memory_order_relaxed);
        atomic_store_explicit(&stats->up, 0, memory_order_relaxed);
    }
    uv_timer_start(&r->tick, on_tick, REG_TICK_MS, REG_TICK_MS);
    open_cmd(r);
    open_sub(r);
    return r;
}

bool tg_registry_same_server(const tg_registry *r, const tg_tenants_config *cfg)
{
    const tg_registry_config *c = &cfg->registry;
    const char *prefix = c->key_prefix ? c->key_prefix : "tenantgate:";
    bool same_user = (!c->user && !r->user) || (c->user && r->user && !strcmp(c->user, r->user));
    bool same_pw = (!c->password.data && !r->password) ||
                   (c->password.data && r->password && c->password.len == r->password_len &&
                    CRYPTO_memcmp(c->password.data, r->password, r->password_len) == 0);
    return c->address && strcmp(c->address, r->address) == 0 && same_user && same_pw &&
           strcmp(prefix, r->prefix) == 0 &&
           (c->timeout_ms ? c->timeout_ms : 1000) == r->timeout_ms;
}

void tg_registry_configure(tg_registry *r, const tg_tenants_config *cfg)
{
    r->policy = *cfg;
    memset(&r->policy.registry, 0, sizeof(r->policy.registry)); /* strings are not ours */
}

const tg_tenants_config *tg_registry_policy(const tg_registry *r)
{
    return &r->policy;
}

int tg_registry_lookup(tg_registry *r, const char *tenant, const char *jti, tg_registry_answer *now,
                       tg_registry_cb cb, void *ud, tg_registry_req **req)
{
    memset(now, 0, sizeof(*now));
    *req = NULL;
    if (r->closing) {
        count_lookup(r, TG_REGISTRY_LOOKUP_error);
        return 0;
    }
    uint64_t t = now_ms(r);
    bool trusted = r->subscribed || r->policy.on_registry_failure == TG_REGISTRY_FAILURE_CACHED;
    const tg_tenant_record *rec =
        trusted ? tg_ttl_cache_get(r->tenants, tenant, strlen(tenant), t, ttl_ms(r)) : NULL;
    const bool *revoked =
        trusted && jti[0] ? tg_ttl_cache_get(r->jtis, jti, strlen(jti), t, ttl_ms(r)) : NULL;
    bool have_tenant = rec != NULL, have_jti = !jti[0] || revoked != NULL;
    if (rec)
        now->tenant = *rec;
    if (revoked)
        now->revoked = *revoked;
    if (have_tenant && have_jti) {
        now->ok = true;
        if (r->stats)
            TG_STAT_ADD(r->stats->cache_hits, 1);
        count_lookup(r, result_of(now));
        return 0;
    }
    if (r->stats)
        TG_STAT_ADD(r->stats->cache_misses, 1);
    if (!r->cmd.ready || strlen(jti) > REG_JTI_MAX) {
        memset(now, 0, sizeof(*now));
        count_lookup(r, TG_REGISTRY_LOOKUP_error);
        return 0;
    }
    /* Join a fetch for the same pair that asks at least what is missing. */
    fetch *f = r->oldest;
    while (f && !(strcmp(f->tenant, tenant) == 0 && strcmp(f->jti, jti) == 0 &&
                  (have_tenant || f->want_tenant) && (have_jti || f->want_jti)))
        f = f->next;
    if (!f)
        f = fetch_start(r, tenant, jti, !have_tenant, !have_jti, false);
    tg_registry_req *q = f ? calloc(1, sizeof(*q)) : NULL;
    if (!q) {
        memset(now, 0, sizeof(*now));
        count_lookup(r, TG_REGISTRY_LOOKUP_error);
        return 0;
    }
    q->f = f;
    q->cb = cb;
    q->ud = ud;
    q->partial = *now;
    q->have_tenant = have_tenant;
    q->have_jti = have_jti;
    q->next = f->waiters;
    if (f->waiters)
        f->waiters->prev = q;
    f->waiters = q;
    *req = q;
    return 1;
}

void tg_registry_cancel(tg_registry_req *q)
{
    if (!q)
        return;
    fetch *f = q->f;
    if (q->prev)
        q->prev->next = q->next;
    else
        f->waiters = q->next;
    if (q->next)
        q->next->prev = q->prev;
    free(q);
}

/* True the first time key is seen since the last resync. */
static bool first_recheck(tg_registry *r, char kind, const char *name)
{
    char key[REG_JTI_MAX + 3];
    int n = snprintf(key, sizeof(key), "%c:%s", kind, name);
    if (tg_ttl_cache_get(r->rechecked, key, (size_t)n, 0, UINT64_MAX))
        return false;
    uint8_t one = 1;
    if (tg_ttl_cache_put(r->rechecked, key, (size_t)n, &one, 0) < 0) {
        /* out of memory: it may be asked again, which is harmless */
    }
    return true;
}

void tg_registry_recheck(tg_registry *r, const char *tenant, const char *jti)
{
    if (!r->cmd.ready || r->closing || strlen(jti) > REG_JTI_MAX)
        return;
    bool need_tenant = first_recheck(r, 't', tenant);
    bool need_jti = jti[0] && first_recheck(r, 'j', jti);
    if (need_tenant || need_jti)
        (void)fetch_start(r, need_tenant ? tenant : "", need_jti ? jti : "", need_tenant, need_jti,
                          true);
}

bool tg_registry_up(const tg_registry *r)
{
    return r && is_up(r);
}

static void on_tick_closed(uv_handle_t *h)
{
    registry_free(h->data);
}

void tg_registry_close(tg_registry *r)
{
    if (!r || r->closing)
        return;
    r->closing = true;
    r->cmd.ready = false;
    r->subscribed = false;
    tg_redis_async_close(r->cmd.rc);
    tg_redis_async_close(r->sub.rc);
    r->cmd.rc = r->sub.rc = NULL;
    if (r->stats) {
        atomic_store_explicit(&r->stats->up, 0, memory_order_relaxed);
        atomic_store_explicit(&r->stats->configured, 0, memory_order_relaxed);
    }
    fail_fetches(r); /* waiters learn the registry is gone (a reload replaced it) */
    uv_timer_stop(&r->tick);
    uv_close((uv_handle_t *)&r->tick, on_tick_closed);
}
