/*
 * Worker threads: see worker.h.
 *
 *   APPLY rt, fds  -> keep listeners whose fd is -1, close those the runtime dropped,
 *                     open the new fds; new connections use rt from now on.
 *   DRAIN          -> close listeners; the loop exits after the last connection.
 *   STOP           -> close listeners, abort connections; the loop exits.
 *
 * The loop ends by itself once every handle is closed (the wake-up async
 * handle is closed last), then the thread signals `exited` on the main loop.
 */
#include "proxy/worker.h"

#include <stdlib.h>
#include <unistd.h>

#include "proxy/auth.h"
#include "proxy/conn.h"
#include "proxy/error.h"
#include "proxy/log.h"

#define TG_POOL_MAX_FREE 64

static void close_listeners(tg_worker *w)
{
    while (w->listeners) {
        tg_listener *l = w->listeners;
        w->listeners = l->next;
        tg_listener_close(l);
    }
}

/* A draining worker tells the main thread when its last connection is gone; only STOP ends
 * the loop, so the main thread never posts to a worker whose wake-up handle is closed. */
static void maybe_exit(tg_worker *w)
{
    if (w->n_conns != 0)
        return;
    if (w->stopping && !uv_is_closing((uv_handle_t *)&w->wake)) {
        uv_close((uv_handle_t *)&w->wake, NULL);
    } else if (w->draining && !atomic_load(&w->drained)) {
        atomic_store(&w->drained, true);
        uv_async_send(w->notify);
    }
}

static void hook_tenant_changed(void *ud, const char *tenant, const tg_tenant_record *rec)
{
    tg_auth_tenant_changed(ud, tenant, rec);
}

static void hook_jti_revoked(void *ud, const char *jti)
{
    tg_auth_jti_revoked(ud, jti);
}

static void hook_resync(void *ud)
{
    tg_auth_resync(ud);
}

/* Keeps, replaces, makes or closes the registry client for the new generation's config. */
static void apply_registry(tg_worker *w, const tg_tenants_config *t)
{
    tg_registry *old = w->registry;
    if (old && t->registry.address && tg_registry_same_server(old, t)) {
        tg_registry_configure(old, t);
        return;
    }
    w->registry = NULL;
    if (t->registry.address) {
        tg_registry_hooks hooks = {
            .ud = w,
            .tenant_changed = hook_tenant_changed,
            .jti_revoked = hook_jti_revoked,
            .resync = hook_resync,
        };
        w->registry = tg_registry_new(&w->loop, t, &hooks, w->id == 0,
                                      tg_metrics_registry(w->metrics, w->id));
        if (!w->registry)
            tg_log(TG_LOG_ERROR, "out of memory starting the tenant registry client", TG_FEND);
    }
    tg_registry_close(old); /* its waiting sessions hear "unavailable" */
}

static void apply(tg_worker *w, tg_runtime *rt, int *fds)
{
    /* Keep or close what runs now. */
    tg_listener **link = &w->listeners;
    while (*link) {
        tg_listener *l = *link;
        const tg_listener_rt *nl = tg_runtime_listener(rt, l->name);
        if (nl && fds[nl - rt->listeners] < 0) {
            l->rt = nl;
            link = &l->next;
        } else {
            *link = l->next;
            tg_listener_close(l);
        }
    }
    /* Open what is new. */
    for (size_t i = 0; i < rt->n_listeners; i++) {
        if (fds[i] < 0)
            continue;
        tg_listener *l;
        if (tg_listener_open(w, &rt->listeners[i], fds[i], &l) == 0) {
            l->next = w->listeners;
            w->listeners = l;
        }
    }
    if (!w->jwt_cache && rt->cfg->jwt.cache_size)
        w->jwt_cache = tg_jwt_cache_new(rt->cfg->jwt.cache_size);
    apply_registry(w, &rt->cfg->tenants);
    tg_runtime *old = w->rt;
    w->rt = rt; /* the command's reference moves here */
    if (old)
        tg_runtime_unref(old);
}

static void on_wake(uv_async_t *a)
{
    tg_worker *w = a->data;
    uv_mutex_lock(&w->mailbox_lock);
    tg_worker_cmd *cmd = w->mailbox;
    w->mailbox = NULL;
    uv_mutex_unlock(&w->mailbox_lock);

    while (cmd) {
        tg_worker_cmd *next = cmd->next;
        switch (cmd->kind) {
        case TG_WORKER_APPLY:
            if (w->draining || w->stopping) {
                for (size_t i = 0; i < cmd->rt->n_listeners; i++)
                    if (cmd->fds[i] >= 0)
                        close(cmd->fds[i]);
                tg_runtime_unref(cmd->rt);
            } else {
                apply(w, cmd->rt, cmd->fds);
            }
            break;
        case TG_WORKER_DRAIN:
            w->draining = true;
            close_listeners(w);
            break;
        case TG_WORKER_STOP:
            w->stopping = true;
            close_listeners(w);
            tg_conn_abort_all(w);
            tg_registry_close(w->registry); /* after the sessions: none waits on it now */
            w->registry = NULL;
            break;
        }
        free(cmd->fds);
        free(cmd);
        cmd = next;
    }
    maybe_exit(w);
}

void tg_worker_conn_closed(tg_worker *w)
{
    if (w->n_conns == 0)
        maybe_exit(w);
}

static void worker_main(void *arg)
{
    tg_worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    atomic_store(&w->exited, true);
    uv_async_send(w->notify);
}

int tg_worker_start(tg_worker *w, uint32_t id, tg_metrics *metrics, uv_async_t *notify)
{
    w->id = id;
    w->metrics = metrics;
    w->notify = notify;
    tg_chunk_pool_init(&w->pool, TG_POOL_MAX_FREE);
    if (uv_loop_init(&w->loop) < 0)
        return TG_EIO;
    if (uv_mutex_init(&w->mailbox_lock) < 0) {
        uv_loop_close(&w->loop);
        return TG_EIO;
    }
    if (uv_async_init(&w->loop, &w->wake, on_wake) < 0)
        goto fail;
    w->wake.data = w;
    if (uv_thread_create(&w->thread, worker_main, w) < 0) {
        uv_close((uv_handle_t *)&w->wake, NULL);
        uv_run(&w->loop, UV_RUN_DEFAULT);
        goto fail;
    }
    return 0;
fail:
    uv_mutex_destroy(&w->mailbox_lock);
    uv_loop_close(&w->loop);
    return TG_EIO;
}

void tg_worker_post(tg_worker *w, tg_worker_cmd *cmd)
{
    cmd->next = NULL;
    uv_mutex_lock(&w->mailbox_lock);
    tg_worker_cmd **tail = &w->mailbox;
    while (*tail)
        tail = &(*tail)->next;
    *tail = cmd;
    uv_mutex_unlock(&w->mailbox_lock);
    uv_async_send(&w->wake);
}

void tg_worker_join(tg_worker *w)
{
    uv_thread_join(&w->thread);
    /* Commands that arrived after the loop ended. */
    tg_worker_cmd *cmd = w->mailbox;
    while (cmd) {
        tg_worker_cmd *next = cmd->next;
        if (cmd->kind == TG_WORKER_APPLY) {
            for (size_t i = 0; i < cmd->rt->n_listeners; i++)
                if (cmd->fds[i] >= 0)
                    close(cmd->fds[i]);
            tg_runtime_unref(cmd->rt);
        }
        free(cmd->fds);
        free(cmd);
        cmd = next;
    }
    w->mailbox = NULL;
    if (w->rt)
        tg_runtime_unref(w->rt);
    w->rt = NULL;
    tg_jwt_cache_free(w->jwt_cache);
    tg_sql_cache_free(w->sql_cache);
    tg_cypher_cache_free(w->cypher_cache);
    tg_chunk_pool_destroy(&w->pool);
    uv_loop_close(&w->loop);
    uv_mutex_destroy(&w->mailbox_lock);
}
