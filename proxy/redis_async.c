/*
 * One async hiredis connection on a libuv loop: see redis_async.h.
 *
 *   tg_redis_async ----ac----> redisAsyncContext (hiredis) --ev--> uv_poll (libuv adapter)
 *        |  timer (deadline; its close callback frees the struct)
 *        '- trampolines: {rc, cb, ud} handed to hiredis as each command's privdata
 *
 * Every hiredis callback goes through a trampoline that knows the connection.
 * A command's callback runs exactly once, so that whatever its privdata owns is
 * released: with the reply, or with NULL when hiredis frees its context (the
 * connection was lost, or closed -- after tg_redis_async_close only NULL is
 * passed on). One-shot trampolines are freed by their one call; subscription
 * trampolines (called for every message) live as long as the struct, and stay
 * silent after the close.
 *
 * When things are freed:
 *   - the context: by hiredis itself after a failed connect or a lost
 *     connection (rc->ac is cleared in the connect/disconnect callbacks), or by
 *     tg_redis_async_close (deferred by hiredis when called inside one of its
 *     callbacks, until that returns);
 *   - the struct: in the timer's close callback (a later loop phase: hiredis is
 *     done with the context by then), once the resolver has called back and no
 *     one-shot trampoline is pending. Nothing is freed inside a hiredis callback
 *     that its caller still uses.
 */
#include "proxy/redis_async.h"

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/error.h"

#define RA_WHY_MAX 160

typedef struct trampoline {
    struct tg_redis_async *rc;
    tg_redis_async_reply_cb cb;
    void *ud;
    bool persistent;
    struct trampoline *next; /* persistent ones, freed with the struct */
} trampoline;

/* A command given before there was a hiredis context (the name was being resolved). */
typedef struct queued {
    struct queued *next;
    trampoline *t;
    char *cmd; /* RESP, from redisFormatCommandArgv */
    int len;
} queued;

struct tg_redis_async {
    uv_loop_t *loop;
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    redisAsyncContext *ac; /* NULL once freed (by hiredis or by close) */
    tg_redis_async_state_cb cb;
    void *ud;
    char host[256];
    uint16_t port;
    char *user;
    char *password;
    size_t password_len;
    trampoline *persistent;
    queued *queue, **queue_tail; /* commands waiting for the context, in order */
    uint32_t pending;            /* one-shot trampolines whose callback has not run */
    bool resolving;
    bool timer_open;
    bool ready;
    bool failed; /* a status < 0 was reported */
    bool closed;
};

static void release_memory(tg_redis_async *rc)
{
    while (rc->persistent) {
        trampoline *t = rc->persistent;
        rc->persistent = t->next;
        free(t);
    }
    if (rc->password) {
        OPENSSL_cleanse(rc->password, rc->password_len);
        free(rc->password);
    }
    free(rc->user);
    free(rc);
}

static void maybe_free(tg_redis_async *rc)
{
    if (rc->closed && !rc->timer_open && !rc->resolving && rc->pending == 0)
        release_memory(rc);
}

static void on_timer_closed(uv_handle_t *h)
{
    tg_redis_async *rc = h->data;
    rc->timer_open = false;
    maybe_free(rc);
}

/* Commands that never reached hiredis: their callbacks run now, with NULL. */
static void drain_queue(tg_redis_async *rc)
{
    queued *q;
    while ((q = rc->queue) != NULL) {
        rc->queue = q->next;
        rc->pending--;
        if (q->t->cb)
            q->t->cb(q->t->ud, NULL);
        free(q->t);
        redisFreeCommand(q->cmd);
        free(q);
    }
    rc->queue_tail = &rc->queue;
}

/* Reports a failure once; the owner closes. */
static void fail(tg_redis_async *rc, int status, const char *why)
{
    if (rc->closed || rc->failed)
        return;
    drain_queue(rc);
    rc->failed = true;
    rc->ready = false;
    uv_timer_stop(&rc->timer);
    rc->cb(rc->ud, status, why);
}

/* ---- hiredis callbacks ------------------------------------------------------------------- */

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    trampoline *t = priv;
    tg_redis_async *rc = t->rc;
    (void)ac;
    if (t->persistent) {
        if (!rc->closed && t->cb)
            t->cb(t->ud, reply);
        return;
    }
    rc->pending--;
    if (t->cb)
        t->cb(t->ud, rc->closed ? NULL : reply);
    free(t);
}

/* A printable, bounded copy of a Redis error text (servers do not echo passwords in AUTH
 * errors; the text is still kept short and clean for logs). */
static void error_text(const redisReply *r, const char *what, char *out, size_t cap)
{
    char text[96];
    size_t n = 0;
    for (size_t i = 0; r && r->str && i < r->len && n + 1 < sizeof(text); i++) {
        char ch = r->str[i];
        text[n++] = (ch >= 0x20 && ch < 0x7f) ? ch : '?';
    }
    text[n] = '\0';
    snprintf(out, cap, "%s: %s", what, text);
}

static void on_auth(void *ud, const redisReply *r)
{
    tg_redis_async *rc = ud;
    if (!r || rc->closed)
        return; /* lost (the disconnect callback reports it) or closed */
    if (r->type == REDIS_REPLY_ERROR) {
        char why[RA_WHY_MAX];
        error_text(r, "AUTH refused", why, sizeof(why));
        fail(rc, TG_EAUTH, why);
        return;
    }
    rc->ready = true;
    uv_timer_stop(&rc->timer);
    rc->cb(rc->ud, 0, NULL);
}

static int send_argv(tg_redis_async *rc, tg_redis_async_reply_cb cb, void *ud, int argc,
                     const char **argv, const size_t *argvlen)
{
    if (!rc->ac || rc->closed || rc->failed)
        return TG_EIO;
    trampoline *t = calloc(1, sizeof(*t));
    if (!t)
        return TG_ENOMEM;
    *t = (trampoline){.rc = rc, .cb = cb, .ud = ud};
    if (redisAsyncCommandArgv(rc->ac, on_reply, t, argc, argv, argvlen) != REDIS_OK) {
        free(t);
        return TG_EIO;
    }
    rc->pending++;
    return 0;
}

static void on_ready_soon(uv_timer_t *t)
{
    tg_redis_async *rc = t->data;
    if (rc->closed || rc->failed)
        return;
    rc->ready = true;
    rc->cb(rc->ud, 0, NULL);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    tg_redis_async *rc = ac->data;
    if (status != REDIS_OK) {
        char why[RA_WHY_MAX];
        snprintf(why, sizeof(why), "connect: %s", ac->errstr[0] ? ac->errstr : "failed");
        rc->ac = NULL; /* hiredis frees it when this returns */
        fail(rc, TG_EIO, why);
        return;
    }
    if (!rc->password) {
        /* Told from the timer, not from here: hiredis goes on using the context after this
         * callback, so the owner must not be able to close it now. */
        uv_timer_start(&rc->timer, on_ready_soon, 0, 0);
    }
    /* With a password, on_auth says ready (AUTH was queued first, at connect). */
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    tg_redis_async *rc = ac->data;
    char why[RA_WHY_MAX];
    snprintf(why, sizeof(why), "%s",
             status == REDIS_OK ? "closed" : (ac->errstr[0] ? ac->errstr : "connection lost"));
    rc->ac = NULL; /* hiredis frees it when this returns */
    fail(rc, rc->ready ? TG_ECLOSED : TG_EIO, why);
}

/*
 * hiredis 0.14's libuv adapter returns at once when libuv reports a poll error
 * (status < 0: what a refused connect or a reset gives, after which libuv stops
 * the handle), so hiredis would never learn and a connect would only end at its
 * deadline. Every (re)start of the adapter's uv_poll goes through poll_events
 * instead, which -- as hiredis 1.x's adapter does -- hands an error to hiredis
 * as the events it waited for; hiredis then finds the socket error itself. The
 * adapter's bookkeeping (events, cleanup, attach) is kept as is.
 */
static void poll_events(uv_poll_t *handle, int status, int events)
{
    redisLibuvEvents *p = handle->data;
    int ev = status < 0 ? p->events : events;
    if (p->context && (ev & UV_READABLE))
        redisAsyncHandleRead(p->context);
    if (p->context && (ev & UV_WRITABLE))
        redisAsyncHandleWrite(p->context);
}

static void poll_restart(void *privdata)
{
    redisLibuvEvents *p = privdata;
    if (p->events)
        uv_poll_start(&p->handle, p->events, poll_events);
}

static void poll_add_read(void *privdata)
{
    redisLibuvAddRead(privdata);
    poll_restart(privdata);
}

static void poll_del_read(void *privdata)
{
    redisLibuvDelRead(privdata);
    poll_restart(privdata);
}

static void poll_add_write(void *privdata)
{
    redisLibuvAddWrite(privdata);
    poll_restart(privdata);
}

static void poll_del_write(void *privdata)
{
    redisLibuvDelWrite(privdata);
    poll_restart(privdata);
}

/* Connects (non-blocking) to the numeric address ip. Returns 0 or < 0 with why. */
static int start_connect(tg_redis_async *rc, const char *ip, char *why, size_t whylen)
{
    redisAsyncContext *ac = redisAsyncConnect(ip, rc->port);
    if (!ac) {
        snprintf(why, whylen, "out of memory");
        return TG_ENOMEM;
    }
    if (ac->err) {
        snprintf(why, whylen, "connect: %s", ac->errstr);
        redisAsyncFree(ac);
        return TG_EIO;
    }
    if (redisLibuvAttach(ac, rc->loop) != REDIS_OK) {
        snprintf(why, whylen, "cannot watch the socket");
        redisAsyncFree(ac);
        return TG_EIO;
    }
    ac->ev.addRead = poll_add_read;
    ac->ev.delRead = poll_del_read;
    ac->ev.addWrite = poll_add_write;
    ac->ev.delWrite = poll_del_write;
    ac->data = rc;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    rc->ac = ac;
    /* hiredis writes once connected, in order: AUTH first, then what was given meanwhile. */
    if (rc->password) {
        const char *argv[3];
        size_t len[3];
        int n = 0;
        argv[n] = "AUTH";
        len[n++] = 4;
        if (rc->user) {
            argv[n] = rc->user;
            len[n++] = strlen(rc->user);
        }
        argv[n] = rc->password;
        len[n++] = rc->password_len;
        if (send_argv(rc, on_auth, rc, n, argv, len) < 0) {
            snprintf(why, whylen, "cannot queue AUTH");
            return TG_ENOMEM;
        }
    }
    queued *q;
    while ((q = rc->queue) != NULL) {
        rc->queue = q->next;
        if (redisAsyncFormattedCommand(ac, on_reply, q->t, q->cmd, (size_t)q->len) != REDIS_OK) {
            rc->pending--;
            if (q->t->cb)
                q->t->cb(q->t->ud, NULL);
            free(q->t);
        }
        redisFreeCommand(q->cmd);
        free(q);
    }
    rc->queue_tail = &rc->queue;
    return 0;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    tg_redis_async *rc = req->data;
    rc->resolving = false;
    if (rc->closed) {
        uv_freeaddrinfo(res);
        maybe_free(rc);
        return;
    }
    char why[RA_WHY_MAX], ip[64] = "";
    if (status < 0 || !res) {
        snprintf(why, sizeof(why), "cannot resolve %.80s: %s", rc->host,
                 status < 0 ? uv_strerror(status) : "no address");
        uv_freeaddrinfo(res);
        fail(rc, TG_EIO, why);
        return;
    }
    if (res->ai_family == AF_INET6)
        uv_ip6_name((const struct sockaddr_in6 *)(void *)res->ai_addr, ip, sizeof(ip));
    else
        uv_ip4_name((const struct sockaddr_in *)(void *)res->ai_addr, ip, sizeof(ip));
    uv_freeaddrinfo(res);
    int r = start_connect(rc, ip, why, sizeof(why));
    if (r < 0)
        fail(rc, r, why);
}

static void on_timeout(uv_timer_t *t)
{
    fail(t->data, TG_ETIMEOUT, "timed out");
}

/* ---- public -------------------------------------------------------------------------------- */

tg_redis_async *tg_redis_async_open(uv_loop_t *loop, const tg_redis_async_target *t,
                                    tg_redis_async_state_cb cb, void *ud, int *err)
{
    tg_redis_async *rc = calloc(1, sizeof(*rc));
    if (!rc || snprintf(rc->host, sizeof(rc->host), "%s", t->host) >= (int)sizeof(rc->host)) {
        free(rc);
        *err = rc ? TG_EINVAL : TG_ENOMEM;
        return NULL;
    }
    rc->loop = loop;
    rc->queue_tail = &rc->queue;
    rc->port = t->port;
    rc->cb = cb;
    rc->ud = ud;
    if ((t->user && !(rc->user = strdup(t->user))) ||
        (t->password && !(rc->password = malloc(t->password_len + 1)))) {
        release_memory(rc);
        *err = TG_ENOMEM;
        return NULL;
    }
    if (t->password) {
        memcpy(rc->password, t->password, t->password_len);
        rc->password[t->password_len] = '\0';
        rc->password_len = t->password_len;
    }
    if (uv_timer_init(loop, &rc->timer) < 0) {
        release_memory(rc);
        *err = TG_EIO;
        return NULL;
    }
    rc->timer.data = rc;
    rc->timer_open = true;
    if (t->timeout_ms)
        uv_timer_start(&rc->timer, on_timeout, t->timeout_ms, 0);

    struct in6_addr any;
    bool numeric =
        uv_inet_pton(AF_INET, rc->host, &any) == 0 || uv_inet_pton(AF_INET6, rc->host, &any) == 0;
    char why[RA_WHY_MAX];
    int r;
    if (numeric) {
        r = start_connect(rc, rc->host, why, sizeof(why));
    } else {
        char port[8];
        snprintf(port, sizeof(port), "%u", (unsigned)rc->port);
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        rc->gai.data = rc;
        r = uv_getaddrinfo(loop, &rc->gai, on_resolved, rc->host, port, &hints) < 0 ? TG_EIO : 0;
        rc->resolving = r == 0;
    }
    if (r < 0) {
        rc->cb = NULL;
        tg_redis_async_close(rc);
        *err = r;
        return NULL;
    }
    return rc;
}

bool tg_redis_async_ready(const tg_redis_async *rc)
{
    return rc && rc->ready && !rc->failed && !rc->closed;
}

int tg_redis_async_command(tg_redis_async *rc, tg_redis_async_reply_cb cb, void *ud, int argc,
                           const char **argv, const size_t *argvlen)
{
    if (!rc || rc->closed || rc->failed)
        return TG_EIO;
    if (rc->ac)
        return send_argv(rc, cb, ud, argc, argv, argvlen);
    /* Still resolving: kept in order until there is a context. */
    queued *q = calloc(1, sizeof(*q));
    trampoline *t = calloc(1, sizeof(*t));
    if (!q || !t) {
        free(q);
        free(t);
        return TG_ENOMEM;
    }
    q->len = redisFormatCommandArgv(&q->cmd, argc, argv, argvlen);
    if (q->len < 0) {
        free(q);
        free(t);
        return TG_ENOMEM;
    }
    *t = (trampoline){.rc = rc, .cb = cb, .ud = ud};
    q->t = t;
    *rc->queue_tail = q;
    rc->queue_tail = &q->next;
    rc->pending++;
    return 0;
}

int tg_redis_async_subscribe(tg_redis_async *rc, const char *channel, tg_redis_async_reply_cb cb,
                             void *ud)
{
    if (!tg_redis_async_ready(rc) || !rc->ac)
        return TG_EIO;
    trampoline *t = calloc(1, sizeof(*t));
    if (!t)
        return TG_ENOMEM;
    *t = (trampoline){.rc = rc, .cb = cb, .ud = ud, .persistent = true, .next = rc->persistent};
    rc->persistent = t; /* freed with the struct: hiredis may call it from several lists */
    if (redisAsyncCommand(rc->ac, on_reply, t, "SUBSCRIBE %s", channel) != REDIS_OK)
        return TG_EIO;
    return 0;
}

void tg_redis_async_close(tg_redis_async *rc)
{
    if (!rc || rc->closed)
        return;
    rc->closed = true;
    rc->ready = false;
    if (rc->ac) {
        redisAsyncContext *ac = rc->ac;
        rc->ac = NULL;
        redisAsyncFree(ac); /* deferred by hiredis when inside one of its callbacks */
    }
    drain_queue(rc);
    if (rc->resolving)
        uv_cancel((uv_req_t *)&rc->gai);
    uv_timer_stop(&rc->timer);
    if (rc->timer_open && !uv_is_closing((uv_handle_t *)&rc->timer))
        uv_close((uv_handle_t *)&rc->timer, on_timer_closed);
    else
        maybe_free(rc);
}
