/*
 * Runtime generations: see runtime.h.
 *
 * Connection counters per listener name live in a small process-wide
 * registry (entries are never freed; there are as many as listener names
 * ever configured), so max_connections holds across workers and across
 * reloads that keep a listener's name.
 */
#include "proxy/runtime.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/error.h"
#include "protocols/mongodb/session.h"
#include "protocols/bolt/session.h"
#include "protocols/postgres/session.h"
#include "protocols/redis/session.h"
#include "protocols/tcp/session.h"

typedef struct active_entry {
    char name[64];
    _Atomic int64_t active;
    struct active_entry *next;
} active_entry;

static pthread_mutex_t g_active_lock = PTHREAD_MUTEX_INITIALIZER;
static active_entry *g_active;
static _Atomic uint64_t g_generation;

static _Atomic int64_t *active_counter(const char *name)
{
    pthread_mutex_lock(&g_active_lock);
    active_entry *e = g_active;
    while (e && strcmp(e->name, name) != 0)
        e = e->next;
    if (!e && (e = calloc(1, sizeof(*e))) != NULL) {
        snprintf(e->name, sizeof(e->name), "%s", name);
        e->next = g_active;
        g_active = e;
    }
    pthread_mutex_unlock(&g_active_lock);
    return e ? &e->active : NULL;
}

const tg_protocol_ops *tg_runtime_protocol_ops(tg_protocol p)
{
    switch (p) {
    case TG_PROTO_TCP:
        return &tg_tcp_protocol;
    case TG_PROTO_POSTGRES:
        return &tg_pg_protocol;
    case TG_PROTO_REDIS:
        return &tg_redis_protocol;
    case TG_PROTO_MONGODB:
        return &tg_mongo_protocol;
    case TG_PROTO_BOLT:
        return &tg_bolt_protocol;
    default:
        return NULL;
    }
}

static int listener_setup(tg_listener_rt *l, const tg_listener_config *cfg, char *err,
                          size_t errlen)
{
    l->cfg = cfg;
    l->ops = tg_runtime_protocol_ops(cfg->protocol);
    if (!l->ops) {
        snprintf(err, errlen, "listener %s: protocol %s is not implemented yet", cfg->name,
                 tg_protocol_name(cfg->protocol));
        return TG_ECONFIG;
    }
    uint16_t port;
    if (tg_config_split_address(cfg->backend.address, l->backend_host, sizeof(l->backend_host),
                                &port) < 0) {
        snprintf(err, errlen, "listener %s: bad backend address %s", cfg->name,
                 cfg->backend.address);
        return TG_ECONFIG;
    }
    snprintf(l->backend_port, sizeof(l->backend_port), "%u", port);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&l->backend_addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&l->backend_addr;
    if (inet_pton(AF_INET, l->backend_host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        l->backend_numeric = true;
    } else if (inet_pton(AF_INET6, l->backend_host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        l->backend_numeric = true;
    }
    snprintf(l->backend_server_name, sizeof(l->backend_server_name), "%s",
             cfg->backend.server_name ? cfg->backend.server_name : l->backend_host);

    if (cfg->tls.mode != TG_TLS_DISABLE &&
        tg_tls_ctx_new_server(cfg->tls.cert_file, cfg->tls.key_file, &l->client_tls, err, errlen) <
            0)
        return TG_ECONFIG;
    if (cfg->backend.tls != TG_BACKEND_TLS_DISABLE &&
        tg_tls_ctx_new_client(cfg->backend.tls, cfg->backend.ca_file, &l->backend_tls, err,
                              errlen) < 0)
        return TG_ECONFIG;
    if (l->ops->listener_init && l->ops->listener_init(cfg, &l->proto_state, err, errlen) < 0)
        return TG_ECONFIG;
    l->active = active_counter(cfg->name);
    if (!l->active) {
        snprintf(err, errlen, "out of memory");
        return TG_ENOMEM;
    }
    return 0;
}

static void runtime_free(tg_runtime *rt)
{
    for (size_t i = 0; i < rt->n_listeners; i++) {
        tg_tls_ctx_free(rt->listeners[i].client_tls);
        tg_tls_ctx_free(rt->listeners[i].backend_tls);
        if (rt->listeners[i].proto_state && rt->listeners[i].ops->listener_free)
            rt->listeners[i].ops->listener_free(rt->listeners[i].proto_state);
    }
    free(rt->listeners);
    tg_jwt_verifier_free(rt->jwt);
    tg_config_free(rt->cfg);
    free(rt);
}

int tg_runtime_new(tg_config *cfg, tg_runtime **out, char *err, size_t errlen)
{
    tg_runtime *rt = calloc(1, sizeof(*rt));
    if (!rt) {
        tg_config_free(cfg);
        snprintf(err, errlen, "out of memory");
        return TG_ENOMEM;
    }
    rt->cfg = cfg;
    atomic_init(&rt->refs, 1);
    rt->generation = atomic_fetch_add(&g_generation, 1) + 1;
    const tg_jwt_config *j = &cfg->jwt;
    if (j->hs256_secret.data || j->public_key.data || j->jwks.data) {
        if (tg_jwt_verifier_new(j, &cfg->sni, &rt->jwt, err, errlen) < 0)
            goto fail;
    }
    rt->listeners = calloc(cfg->n_listeners, sizeof(*rt->listeners));
    if (!rt->listeners) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    rt->n_listeners = cfg->n_listeners;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        if (listener_setup(&rt->listeners[i], &cfg->listeners[i], err, errlen) < 0)
            goto fail;
    }
    *out = rt;
    return 0;
fail:
    runtime_free(rt);
    return TG_ECONFIG;
}

void tg_runtime_ref(tg_runtime *rt)
{
    atomic_fetch_add_explicit(&rt->refs, 1, memory_order_relaxed);
}

void tg_runtime_unref(tg_runtime *rt)
{
    if (rt && atomic_fetch_sub_explicit(&rt->refs, 1, memory_order_acq_rel) == 1)
        runtime_free(rt);
}

const tg_listener_rt *tg_runtime_listener(const tg_runtime *rt, const char *name)
{
    for (size_t i = 0; i < rt->n_listeners; i++) {
        if (strcmp(rt->listeners[i].cfg->name, name) == 0)
            return &rt->listeners[i];
    }
    return NULL;
}
