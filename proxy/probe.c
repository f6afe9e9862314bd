/*
 * Backend reachability probes for /readyz (see probe.h), on the main loop.
 *
 *   tick (uv_timer, every interval) --> for each target without an attempt in flight:
 *
 *   attempt: timeout timer started
 *            numeric host? --yes--> uv_tcp_connect --> on_connect --> finish(ok | error)
 *                          --no---> uv_getaddrinfo --> on_resolved --^        ^
 *            timeout timer fires ------------------------------------------> finish("timed out")
 *
 *   finish: record the result in the target (if it still has one), close the
 *           attempt's timer and socket, cancel its lookup; the attempt is freed
 *           once its handles are closed and its lookup has called back.
 *
 * A name resolving to several addresses is tried address by address (a new
 * socket each), all within the one timeout.
 *
 * Targets and attempts are separate structs: a target points to its attempt
 * in flight and the attempt points back. tg_probe_set_targets frees the old
 * targets at once after cutting that link (and aborting the attempt), so a
 * late callback only ever touches its attempt, never a freed target. The
 * probe itself is freed by tg_probe_stop once its tick timer and every
 * attempt are gone.
 */
#include "proxy/probe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/error.h"

#define MIN_INTERVAL_MS 100
#define DEFAULT_TIMEOUT_MS 1000

typedef struct attempt attempt;

typedef struct target {
    char *name;
    char *address;
    char host[256];
    int port;
    bool valid;  /* the address split into host and port */
    bool probed; /* at least one attempt finished */
    bool ok;     /* the last finished attempt connected */
    char why[128];
    attempt *inflight; /* NULL when idle */
} target;

struct attempt {
    tg_probe *p;
    target *t; /* NULL once the target was replaced: the result is dropped */
    attempt *prev, *next;
    uv_timer_t timer;
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_getaddrinfo_t gai;
    struct addrinfo *addrs;     /* resolved addresses, freed with the attempt */
    struct addrinfo *next_addr; /* the next one to try when a connect fails */
    int open_handles;           /* handles initialized and not yet closed */
    bool tcp_inited;
    bool resolving; /* uv_getaddrinfo has not called back yet */
    bool done;
};

struct tg_probe {
    uv_loop_t *loop;
    uv_timer_t tick;
    unsigned interval_ms, timeout_ms;
    target *targets;
    size_t n;
    attempt *attempts; /* every attempt not yet freed, finished or not */
    bool stopping;
    bool tick_closed;
};

int tg_probe_split_hostport(const char *address, char *host, size_t hostlen, int *port)
{
    const char *h, *he, *colon;
    if (!address || hostlen == 0)
        return TG_EINVAL;
    if (address[0] == '[') {
        h = address + 1;
        he = strchr(h, ']');
        if (!he || he[1] != ':')
            return TG_EINVAL;
        colon = he + 1;
    } else {
        h = address;
        colon = strrchr(address, ':');
        if (!colon)
            return TG_EINVAL;
        he = colon;
        if (memchr(h, ':', (size_t)(he - h)))
            return TG_EINVAL; /* a bare IPv6 address must be bracketed */
    }
    size_t n = (size_t)(he - h);
    if (n + 1 > hostlen)
        return TG_EINVAL;
    const char *ps = colon + 1;
    if (*ps == '\0')
        return TG_EINVAL;
    long v = 0;
    for (const char *c = ps; *c; c++) {
        if (*c < '0' || *c > '9' || c - ps >= 5)
            return TG_EINVAL;
        v = v * 10 + (*c - '0');
    }
    if (v > 65535)
        return TG_EINVAL;
    memcpy(host, h, n);
    host[n] = '\0';
    *port = (int)v;
    return 0;
}

static void probe_maybe_free(tg_probe *p)
{
    if (!p->stopping || !p->tick_closed || p->attempts)
        return;
    free(p);
}

static void attempt_maybe_free(attempt *a)
{
    if (a->open_handles > 0 || a->resolving)
        return;
    tg_probe *p = a->p;
    if (a->prev)
        a->prev->next = a->next;
    else
        p->attempts = a->next;
    if (a->next)
        a->next->prev = a->prev;
    uv_freeaddrinfo(a->addrs);
    free(a);
    probe_maybe_free(p);
}

static void on_attempt_handle_closed(uv_handle_t *h)
{
    attempt *a = h->data;
    a->open_handles--;
    attempt_maybe_free(a);
}

/* Ends an attempt once: records the result (when its target still exists) and releases it. */
static void finish(attempt *a, bool ok, const char *why)
{
    if (a->done)
        return;
    a->done = true;
    target *t = a->t;
    if (t) {
        t->probed = true;
        t->ok = ok;
        snprintf(t->why, sizeof(t->why), "%s", ok ? "" : why);
        t->inflight = NULL;
        a->t = NULL;
    }
    uv_timer_stop(&a->timer);
    uv_close((uv_handle_t *)&a->timer, on_attempt_handle_closed);
    if (a->tcp_inited)
        uv_close((uv_handle_t *)&a->tcp, on_attempt_handle_closed);
    if (a->resolving)
        uv_cancel((uv_req_t *)&a->gai); /* may fail when already running; on_resolved follows */
    attempt_maybe_free(a);
}

static void on_timeout(uv_timer_t *timer)
{
    finish(timer->data, false, "timed out");
}

static void connect_to(attempt *a, const struct sockaddr *sa);

/* The failed socket is closed; tries the next resolved address unless the attempt ended. */
static void on_tcp_closed_retry(uv_handle_t *h)
{
    attempt *a = h->data;
    a->open_handles--;
    if (a->done) {
        attempt_maybe_free(a);
        return;
    }
    struct addrinfo *ai = a->next_addr;
    a->next_addr = ai->ai_next;
    connect_to(a, ai->ai_addr);
}

static void on_connect(uv_connect_t *req, int status)
{
    attempt *a = req->data;
    if (a->done)
        return; /* closed under us: status is UV_ECANCELED */
    if (status < 0 && a->next_addr) {
        /* Another address of the same name ("localhost" is ::1 and 127.0.0.1): new socket. */
        a->tcp_inited = false;
        uv_close((uv_handle_t *)&a->tcp, on_tcp_closed_retry);
        return;
    }
    finish(a, status == 0, status == 0 ? NULL : uv_strerror(status));
}

static void connect_to(attempt *a, const struct sockaddr *sa)
{
    int rc = uv_tcp_init(a->p->loop, &a->tcp);
    if (rc < 0) {
        finish(a, false, uv_strerror(rc));
        return;
    }
    a->tcp.data = a;
    a->tcp_inited = true;
    a->open_handles++;
    a->creq.data = a;
    rc = uv_tcp_connect(&a->creq, &a->tcp, sa, on_connect);
    if (rc < 0)
        finish(a, false, uv_strerror(rc));
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    attempt *a = req->data;
    a->resolving = false;
    a->addrs = res; /* freed with the attempt */
    if (a->done) {
        attempt_maybe_free(a);
        return;
    }
    if (status < 0 || !res) {
        finish(a, false, status < 0 ? uv_strerror(status) : "no address");
        return;
    }
    a->next_addr = res->ai_next;
    connect_to(a, res->ai_addr);
}

/* Starts an attempt for t unless one is in flight. Failures are recorded as the target's result. */
static void start_attempt(tg_probe *p, target *t)
{
    if (t->inflight || p->stopping)
        return;
    if (!t->valid) {
        t->probed = true;
        t->ok = false;
        snprintf(t->why, sizeof(t->why), "invalid address");
        return;
    }
    attempt *a = calloc(1, sizeof(*a));
    if (!a) {
        t->probed = true;
        t->ok = false;
        snprintf(t->why, sizeof(t->why), "out of memory");
        return;
    }
    a->p = p;
    a->t = t;
    t->inflight = a;
    a->next = p->attempts;
    if (p->attempts)
        p->attempts->prev = a;
    p->attempts = a;

    uv_timer_init(p->loop, &a->timer); /* cannot fail for a valid loop */
    a->timer.data = a;
    a->open_handles++;
    uv_timer_start(&a->timer, on_timeout, p->timeout_ms, 0);

    struct sockaddr_storage ss;
    if (uv_ip4_addr(t->host, t->port, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(t->host, t->port, (struct sockaddr_in6 *)&ss) == 0) {
        connect_to(a, (const struct sockaddr *)&ss);
        return;
    }
    char port[8];
    snprintf(port, sizeof(port), "%d", t->port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    a->gai.data = a;
    int rc = uv_getaddrinfo(p->loop, &a->gai, on_resolved, t->host, port, &hints);
    if (rc < 0) {
        finish(a, false, uv_strerror(rc));
        return;
    }
    a->resolving = true;
}

static void on_tick(uv_timer_t *timer)
{
    tg_probe *p = timer->data;
    for (size_t i = 0; i < p->n; i++)
        start_attempt(p, &p->targets[i]);
}

tg_probe *tg_probe_start(uv_loop_t *loop, unsigned interval_ms, unsigned timeout_ms)
{
    tg_probe *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->loop = loop;
    p->interval_ms = interval_ms < MIN_INTERVAL_MS ? MIN_INTERVAL_MS : interval_ms;
    p->timeout_ms = timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS;
    uv_timer_init(loop, &p->tick);
    p->tick.data = p;
    uv_timer_start(&p->tick, on_tick, p->interval_ms, p->interval_ms);
    return p;
}

/* Detaches and aborts t's attempt in flight, then frees t's strings. */
static void target_release(target *t)
{
    attempt *a = t->inflight;
    if (a) {
        a->t = NULL;
        t->inflight = NULL;
        finish(a, false, "replaced");
    }
    free(t->name);
    free(t->address);
}

int tg_probe_set_targets(tg_probe *p, const char *const *names, const char *const *addresses,
                         size_t n)
{
    target *fresh = n ? calloc(n, sizeof(*fresh)) : NULL;
    if (n && !fresh)
        return TG_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        fresh[i].name = strdup(names[i] ? names[i] : "");
        fresh[i].address = strdup(addresses[i] ? addresses[i] : "");
        if (!fresh[i].name || !fresh[i].address) {
            for (size_t j = 0; j <= i; j++)
                target_release(&fresh[j]);
            free(fresh);
            return TG_ENOMEM;
        }
        fresh[i].valid = tg_probe_split_hostport(fresh[i].address, fresh[i].host,
                                                 sizeof(fresh[i].host), &fresh[i].port) == 0;
    }
    for (size_t i = 0; i < p->n; i++)
        target_release(&p->targets[i]);
    free(p->targets);
    p->targets = fresh;
    p->n = n;
    for (size_t i = 0; i < n; i++)
        start_attempt(p, &p->targets[i]);
    return 0;
}

bool tg_probe_all_ok(const tg_probe *p, char *why, size_t whylen)
{
    for (size_t i = 0; i < p->n; i++) {
        const target *t = &p->targets[i];
        if (t->probed && t->ok)
            continue;
        if (why && whylen)
            snprintf(why, whylen, "%s %s: %s", t->name, t->address,
                     t->probed ? t->why : "not probed yet");
        return false;
    }
    return true;
}

static void on_tick_closed(uv_handle_t *h)
{
    tg_probe *p = h->data;
    p->tick_closed = true;
    probe_maybe_free(p);
}

void tg_probe_stop(tg_probe *p)
{
    if (!p || p->stopping)
        return;
    p->stopping = true;
    for (size_t i = 0; i < p->n; i++)
        target_release(&p->targets[i]);
    free(p->targets);
    p->targets = NULL;
    p->n = 0;
    uv_timer_stop(&p->tick);
    uv_close((uv_handle_t *)&p->tick, on_tick_closed);
}
