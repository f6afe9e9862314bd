/*
 * Tenant authentication for sessions: see auth.h.
 *
 * Per connection (allocated at the first authentication, hung on the pair):
 *
 *   token --verify--> identity --registry--> answer now --> decide
 *                                   '--> PENDING: req in flight, token hash + identity kept
 *                                         answer --> kept; the client side is redispatched
 *   same token again --answer kept for its hash--> decide (the token is not verified twice)
 *
 *   admitted: tenant + jti (what registry events match) and the tenant's slot
 */
#include "proxy/auth.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "proxy/error.h"
#include "proxy/log.h"
#include "proxy/metrics.h"
#include "proxy/registry.h"
#include "proxy/worker.h"

typedef struct auth_state {
    tg_registry_req *req; /* a lookup in flight */
    bool answered;        /* `answer` is the registry's reply for token_hash */
    XXH128_hash_t token_hash;
    tg_identity pending_id; /* the verified identity of that token */
    tg_registry_answer answer;
    bool have_record; /* the registry's record from the last successful authentication */
    tg_tenant_record record;
    bool admitted;
    char tenant[TG_TENANT_MAX + 1];
    char jti[sizeof(((tg_identity *)0)->jti)];
    tg_tenant_slot *slot;
} auth_state;

static auth_state *state_of(tg_conn *c)
{
    void **p = tg_conn_auth_state(c);
    if (!*p)
        *p = calloc(1, sizeof(auth_state));
    return *p;
}

/* The SNI host's slug ("<slug>.<suffix>", DNS rules: case-insensitive, one trailing dot), as
 * jwt.c reads it for the token's slug claim; "" when the host does not end with the suffix. */
static void sni_slug(const char *host, const char *suffix, char out[TG_TENANT_MAX + 1])
{
    out[0] = '\0';
    if (!host || !suffix)
        return;
    if (suffix[0] == '.')
        suffix++;
    size_t hl = strlen(host), sl = strlen(suffix);
    if (hl > 0 && host[hl - 1] == '.')
        hl--;
    if (hl < sl + 2 || host[hl - sl - 1] != '.' || strncasecmp(host + hl - sl, suffix, sl) != 0)
        return;
    size_t n = hl - sl - 1;
    if (n > TG_TENANT_MAX || memchr(host, '.', n))
        return;
    memcpy(out, host, n);
    out[n] = '\0';
}

/* In the pair's context: the message that carries the token is read again. */
static int resume(tg_conn *c, void *session, void *arg)
{
    (void)session;
    (void)arg;
    tg_conn_redispatch(c, TG_SIDE_CLIENT);
    return 0;
}

static void on_lookup(void *ud, const tg_registry_answer *a)
{
    tg_conn *c = ud;
    auth_state *st = *tg_conn_auth_state(c);
    st->req = NULL;
    st->answered = true;
    st->answer = *a;
    tg_conn_call(c, resume, NULL);
}

/* The registry's verdict on a verified identity. */
static tg_jwt_result decide(tg_conn *c, auth_state *st, const tg_identity *id,
                            const tg_registry_answer *a)
{
    const tg_config *cfg = tg_conn_runtime(c)->cfg;
    if (!a->ok)
        return TG_JWT_REGISTRY_UNAVAILABLE;
    if (a->revoked)
        return TG_JWT_REVOKED;
    switch (tg_tenant_record_verdict(&a->tenant, cfg->tenants.require_registered)) {
    case TG_ADMIT_OK:
        break;
    case TG_ADMIT_SUSPENDED:
        return TG_JWT_SUSPENDED;
    case TG_ADMIT_UNREGISTERED:
        return TG_JWT_UNREGISTERED;
    case TG_ADMIT_INVALID:
        return TG_JWT_TENANT_INVALID;
    }
    if (a->tenant.slug[0]) {
        char slug[TG_TENANT_MAX + 1];
        sni_slug(tg_conn_sni(c), cfg->sni.suffix, slug);
        if (slug[0] && strcasecmp(slug, a->tenant.slug) != 0)
            return TG_JWT_SLUG_MISMATCH;
    }
    (void)id;
    st->have_record = true;
    st->record = a->tenant;
    return TG_JWT_OK;
}

tg_jwt_result tg_auth_tenant(tg_conn *c, const char *token, size_t len, tg_identity *id)
{
    const tg_runtime *rt = tg_conn_runtime(c);
    tg_listener_stats *stats = tg_conn_stats(c);
    const char *listener = tg_conn_config(c)->name;
    tg_worker *w = tg_conn_worker(c);
    tg_jwt_result r = TG_JWT_UNKNOWN_KEY; /* no key configured: nothing can verify */
    memset(id, 0, sizeof(*id));
    auth_state *st = state_of(c);
    if (!st) {
        r = TG_JWT_INTERNAL;
        goto out;
    }
    XXH128_hash_t h = XXH3_128bits(token, len);
    bool same = XXH128_isEqual(h, st->token_hash);
    if (st->req) {
        if (same)
            return TG_JWT_PENDING;
        tg_registry_cancel(st->req); /* another token: the old question no longer matters */
        st->req = NULL;
    }
    st->have_record = false;
    if (st->answered && same) {
        st->answered = false;
        *id = st->pending_id;
        r = decide(c, st, id, &st->answer);
        goto out;
    }
    st->answered = false;
    if (rt->jwt)
        r = tg_jwt_verify(rt->jwt, w->jwt_cache, token, len, (int64_t)time(NULL), tg_conn_sni(c),
                          id);
    if (r != TG_JWT_OK || !w->registry)
        goto out;
    tg_registry_answer now;
    tg_registry_req *req;
    if (tg_registry_lookup(w->registry, id->tenant, id->jti, &now, on_lookup, c, &req) == 1) {
        st->req = req;
        st->token_hash = h;
        st->pending_id = *id;
        memset(id, 0, sizeof(*id));
        return TG_JWT_PENDING;
    }
    r = decide(c, st, id, &now);
out:
    if (r == TG_JWT_OK) {
        TG_STAT_ADD(stats->auth_ok, 1);
        tg_log(TG_LOG_INFO, "authenticated", TG_FB("audit", true), TG_FS("listener", listener),
               TG_FS("tenant", id->tenant), TG_FS("client", tg_conn_peer(c)), TG_FEND);
    } else {
        TG_STAT_ADD(stats->auth_failed[r], 1);
        /* A verified token refused by the registry names its tenant; a bad token does not. */
        tg_log(TG_LOG_WARN, "authentication failed", TG_FB("audit", true),
               TG_FS("listener", listener), TG_FS("client", tg_conn_peer(c)),
               TG_FS("tenant", id->tenant[0] ? id->tenant : NULL),
               TG_FS("reason", tg_jwt_result_label(r)), TG_FEND);
        memset(id, 0, sizeof(*id));
    }
    return r;
}

/* The listener's own per-tenant connection limit (0: none). */
static uint32_t listener_tenant_max(const tg_listener_config *l)
{
    switch (l->protocol) {
    case TG_PROTO_POSTGRES:
        return l->postgres.max_connections_per_tenant;
    case TG_PROTO_REDIS:
        return l->redis.max_connections_per_tenant;
    default:
        return 0;
    }
}

int tg_auth_admit(tg_conn *c, const tg_identity *id, tg_tenant_slot **slot)
{
    auth_state *st = state_of(c);
    if (!st)
        return TG_ENOMEM;
    const tg_listener_config *l = tg_conn_config(c);
    if (st->admitted && strcmp(st->tenant, id->tenant) == 0) {
        snprintf(st->jti, sizeof(st->jti), "%s", id->jti); /* a new token of the same tenant */
        *slot = st->slot;
        return 0;
    }
    uint32_t own = listener_tenant_max(l);
    tg_tenant_limits lim = tg_tenant_record_limits(st->have_record ? &st->record : NULL,
                                                   &tg_conn_runtime(c)->cfg->tenants.limits, own);
    tg_tenant_slot *s;
    int r = tg_tenant_count_take(l->name, id->tenant, &lim, own, &s);
    if (r < 0)
        return r;
    tg_tenant_count_give(st->slot);
    st->slot = s;
    st->admitted = true;
    snprintf(st->tenant, sizeof(st->tenant), "%s", id->tenant);
    snprintf(st->jti, sizeof(st->jti), "%s", id->jti);
    *slot = s;
    return 0;
}

void tg_auth_conn_closed(tg_conn *c)
{
    void **p = tg_conn_auth_state(c);
    auth_state *st = *p;
    if (!st)
        return;
    tg_registry_cancel(st->req);
    tg_tenant_count_give(st->slot);
    free(st);
    *p = NULL;
}

/* ---- registry events ------------------------------------------------------------------------ */

static void kick(tg_worker *w, tg_conn *c, const auth_state *st, tg_kick_reason reason)
{
    static const char *const labels[] = {
#define TG_KICK_LABEL(name, label, desc) label,
        TG_KICK_MAP(TG_KICK_LABEL)
#undef TG_KICK_LABEL
    };
    tg_registry_stats *rs = tg_metrics_registry(w->metrics, w->id);
    if (rs)
        TG_STAT_ADD(rs->kicks[reason], 1);
    tg_log(TG_LOG_INFO, "session ended by the tenant registry", TG_FB("audit", true),
           TG_FS("listener", tg_conn_config(c)->name), TG_FS("tenant", st->tenant),
           TG_FS("client", tg_conn_peer(c)), TG_FS("reason", labels[reason]), TG_FEND);
    tg_conn_kick(c, reason);
}

void tg_auth_tenant_changed(tg_worker *w, const char *tenant, const tg_tenant_record *rec)
{
    bool updated = false;
    for (tg_conn *c = tg_conn_first(w), *next; c; c = next) {
        next = tg_conn_next(c); /* a kick closes c only */
        auth_state *st = *tg_conn_auth_state(c);
        if (!st || !st->admitted || strcmp(st->tenant, tenant) != 0)
            continue;
        const tg_config *cfg = tg_conn_runtime(c)->cfg;
        if (!updated) {
            tg_tenant_count_update(tenant, rec, &cfg->tenants.limits);
            updated = true;
        }
        switch (tg_tenant_record_verdict(rec, cfg->tenants.require_registered)) {
        case TG_ADMIT_OK:
            st->record = *rec;
            break;
        case TG_ADMIT_SUSPENDED:
            kick(w, c, st, TG_KICK_SUSPENDED);
            break;
        case TG_ADMIT_UNREGISTERED:
            kick(w, c, st, TG_KICK_UNREGISTERED);
            break;
        case TG_ADMIT_INVALID:
            kick(w, c, st, TG_KICK_INVALID);
            break;
        }
    }
}

void tg_auth_jti_revoked(tg_worker *w, const char *jti)
{
    for (tg_conn *c = tg_conn_first(w), *next; c; c = next) {
        next = tg_conn_next(c);
        auth_state *st = *tg_conn_auth_state(c);
        if (st && st->admitted && st->jti[0] && strcmp(st->jti, jti) == 0)
            kick(w, c, st, TG_KICK_REVOKED);
    }
}

void tg_auth_resync(tg_worker *w)
{
    if (!w->registry)
        return;
    for (tg_conn *c = tg_conn_first(w); c; c = tg_conn_next(c)) {
        auth_state *st = *tg_conn_auth_state(c);
        if (st && st->admitted)
            tg_registry_recheck(w->registry, st->tenant, st->jti);
    }
}
