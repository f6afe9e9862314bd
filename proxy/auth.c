/*
 * Tenant authentication for sessions: see auth.h.
 */
#include "proxy/auth.h"

#include <string.h>
#include <time.h>

#include "proxy/log.h"
#include "proxy/metrics.h"
#include "proxy/worker.h"

tg_jwt_result tg_auth_tenant(tg_conn *c, const char *token, size_t len, tg_identity *id)
{
    const tg_runtime *rt = tg_conn_runtime(c);
    tg_listener_stats *stats = tg_conn_stats(c);
    const char *listener = tg_conn_config(c)->name;
    tg_jwt_result r = TG_JWT_UNKNOWN_KEY; /* no key configured: nothing can verify */
    memset(id, 0, sizeof(*id));
    if (rt->jwt)
        r = tg_jwt_verify(rt->jwt, tg_conn_worker(c)->jwt_cache, token, len, (int64_t)time(NULL),
                          tg_conn_sni(c), id);
    if (r == TG_JWT_OK) {
        TG_STAT_ADD(stats->auth_ok, 1);
        tg_log(TG_LOG_INFO, "authenticated", TG_FB("audit", true), TG_FS("listener", listener),
               TG_FS("tenant", id->tenant), TG_FS("client", tg_conn_peer(c)), TG_FEND);
    } else {
        TG_STAT_ADD(stats->auth_failed[r], 1);
        tg_log(TG_LOG_WARN, "authentication failed", TG_FB("audit", true),
               TG_FS("listener", listener), TG_FS("client", tg_conn_peer(c)),
               TG_FS("reason", tg_jwt_result_label(r)), TG_FEND);
    }
    return r;
}
