/*
 * The admin HTTP server (see admin.h), on the main thread's loop.
 *
 *   listen --on_connection--> conn (tcp + 5 s timer) --on_read--> buf[8 KiB]
 *        --tg_http_parse_request--> NEED_MORE: keep reading
 *                                   error:     400 / 431
 *                                   head:      route --> 200 / 404 / 405 / 503
 *        --respond: uv_read_stop, uv_write(head, body)--> on_written --> uv_shutdown
 *        --> on_shutdown: read and discard until the client's EOF (lingering close)
 *        --> conn_close --> (tcp, timer closed) --> free
 *
 * One request per connection, always "Connection: close" with a
 * Content-Length. The 5 s timer runs from accept to close, so a client that
 * neither sends nor reads cannot hold a connection longer than that. A
 * connection is freed only in the close callback of its last handle; the
 * response's buffers live in the conn, so they stay valid until the write
 * callback (which libuv runs, with UV_ECANCELED, before the close callback
 * when tg_admin_stop closes a connection mid-write).
 *
 * tg_admin_stop closes the listener and every connection; the tg_admin is
 * freed once the listener and all connections are closed.
 */
#include "proxy/admin.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/error.h"
#include "proxy/http.h"
#include "proxy/log.h"
#include "proxy/probe.h"

#define ADMIN_TIMEOUT_MS 5000
#define ADMIN_MAX_CONNS 64
#define ADMIN_BACKLOG 64

typedef struct admin_conn admin_conn;

struct tg_admin {
    uv_loop_t *loop;
    uv_tcp_t server;
    tg_metrics *metrics;
    tg_admin_ready_fn ready;
    tg_admin_quit_fn quit;
    void *ud;
    int port;
    admin_conn *conns; /* open or closing connections */
    size_t nconns;
    bool stopping;
    bool server_closed;
};

struct admin_conn {
    tg_admin *a;
    admin_conn *prev, *next;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    int open_handles;
    bool closing;
    bool responded;
    size_t len;
    uint8_t buf[TG_HTTP_HEAD_MAX];
    char head[256];  /* status line and headers of the response */
    char small[320]; /* a short body ("ok\n", "not ready: ...\n") */
    char *big;       /* a malloc'd body (metrics), freed with the conn */
};

/* ---- lifecycle ---- */

static void admin_maybe_free(tg_admin *a)
{
    if (a->stopping && a->server_closed && !a->conns)
        free(a);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    admin_conn *c = h->data;
    if (--c->open_handles > 0)
        return;
    tg_admin *a = c->a;
    if (c->prev)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    a->nconns--;
    free(c->big);
    free(c);
    admin_maybe_free(a);
}

static void conn_close(admin_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
}

static void on_conn_timeout(uv_timer_t *t)
{
    conn_close(t->data);
}

static void on_drain_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    admin_conn *c = h->data;
    *buf = uv_buf_init((char *)c->buf, sizeof(c->buf)); /* the request is no longer needed */
}

static void on_drain_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    if (nread < 0)
        conn_close(s->data); /* the client's EOF: now closing loses nothing */
}

/*
 * Our FIN is out. Closing now could reset the connection if the client sent
 * bytes we never read (a body, the rest of an oversized head), and a reset can
 * destroy the response before the client reads it; so read and discard until
 * the client closes, or the connection timer fires.
 */
static void on_shutdown(uv_shutdown_t *req, int status)
{
    admin_conn *c = req->data;
    if (status < 0 || c->closing ||
        uv_read_start((uv_stream_t *)&c->tcp, on_drain_alloc, on_drain_read) < 0)
        conn_close(c);
}

static void on_written(uv_write_t *req, int status)
{
    admin_conn *c = req->data;
    if (status < 0 || c->closing) {
        conn_close(c);
        return;
    }
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
        conn_close(c);
}

/* ---- responses ---- */

/*
 * Queues one response: status, content type, extra header lines (each ending
 * in CRLF), and a body borrowed from the conn (c->small or c->big). For HEAD,
 * Content-Length describes the body that is not sent.
 */
static void respond(admin_conn *c, int status, const char *reason, const char *type,
                    const char *extra, const char *body, size_t body_len, bool send_body)
{
    c->responded = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    int n = snprintf(c->head, sizeof(c->head),
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n"
                     "Connection: close\r\n"
                     "%s\r\n",
                     status, reason, type, body_len, extra);
    if (n < 0 || (size_t)n >= sizeof(c->head)) {
        conn_close(c);
        return;
    }
    uv_buf_t bufs[2] = {uv_buf_init(c->head, (unsigned)n),
                        uv_buf_init((char *)body, (unsigned)body_len)};
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, send_body && body_len ? 2 : 1,
                 on_written) < 0)
        conn_close(c);
}

static const char text_plain[] = "text/plain; charset=utf-8";

static void respond_text(admin_conn *c, int status, const char *reason, const char *extra,
                         bool send_body, const char *text)
{
    snprintf(c->small, sizeof(c->small), "%s", text);
    respond(c, status, reason, text_plain, extra, c->small, strlen(c->small), send_body);
}

static void respond_readyz(admin_conn *c, bool send_body)
{
    tg_admin *a = c->a;
    char why[256] = "";
    bool ready = a->ready ? a->ready(a->ud, why, sizeof(why)) : true;
    if (ready) {
        respond_text(c, 200, "OK", "", send_body, "ready\n");
        return;
    }
    why[sizeof(why) - 1] = '\0';
    for (char *p = why; *p; p++) { /* keep the reason on one printable line */
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    }
    snprintf(c->small, sizeof(c->small), "not ready: %s\n", why[0] ? why : "unknown");
    respond(c, 503, "Service Unavailable", text_plain, "", c->small, strlen(c->small), send_body);
}

static void respond_metrics(admin_conn *c, bool send_body)
{
    size_t len = 0;
    if (tg_metrics_render(c->a->metrics, &c->big, &len) < 0) {
        c->big = NULL;
        respond_text(c, 500, "Internal Server Error", "", send_body, "out of memory\n");
        return;
    }
    respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", "", c->big, len, send_body);
}

/* The GET/HEAD paths; the sidecar names are aliases that Kubernetes manifests use. */
typedef enum { PATH_NONE, PATH_METRICS, PATH_LIVE, PATH_STARTUP, PATH_READY, PATH_QUIT } admin_path;

static admin_path path_of(tg_slice path)
{
    static const struct {
        const char *path;
        admin_path id;
    } paths[] = {
        {"/metrics", PATH_METRICS},   {"/healthz", PATH_LIVE}, {"/liveness", PATH_LIVE},
        {"/startup", PATH_STARTUP},   {"/readyz", PATH_READY}, {"/readiness", PATH_READY},
        {"/quitquitquit", PATH_QUIT},
    };
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        if (tg_slice_eq_str(path, paths[i].path))
            return paths[i].id;
    }
    return PATH_NONE;
}

static void route(admin_conn *c, const tg_http_request *req)
{
    bool get = tg_slice_eq_str(req->method, "GET");
    bool head = tg_slice_eq_str(req->method, "HEAD");
    bool post = tg_slice_eq_str(req->method, "POST");
    admin_path p = path_of(req->path);

    if (p == PATH_NONE) {
        respond_text(c, 404, "Not Found", "", !head, "not found\n");
    } else if (p == PATH_QUIT && !post) {
        respond_text(c, 405, "Method Not Allowed", "Allow: POST\r\n", !head,
                     "method not allowed\n");
    } else if (p != PATH_QUIT && !get && !head) {
        respond_text(c, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n", true,
                     "method not allowed\n");
    } else if ((req->has_content_length && req->content_length > 0) || req->has_transfer_encoding) {
        respond_text(c, 400, "Bad Request", "", !head, "request bodies are not accepted\n");
    } else if (p == PATH_QUIT) {
        /* The drain stops the admin server last, so this answer still goes out. */
        if (c->a->quit && c->a->quit(c->a->ud))
            respond_text(c, 200, "OK", "", true, "draining\n");
        else
            respond_text(c, 404, "Not Found", "", true, "not found\n");
    } else if (p == PATH_METRICS) {
        respond_metrics(c, get);
    } else if (p == PATH_LIVE || p == PATH_STARTUP) {
        /* Answering at all proves the loop runs, and it only starts once the listeners are up. */
        respond_text(c, 200, "OK", "", get, p == PATH_LIVE ? "ok\n" : "started\n");
    } else {
        respond_readyz(c, get);
    }
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    admin_conn *c = h->data;
    /* Room 0 makes libuv report UV_ENOBUFS; it cannot happen since a full buffer is answered. */
    *buf = uv_buf_init((char *)c->buf + c->len, (unsigned)(sizeof(c->buf) - c->len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    admin_conn *c = s->data;
    if (nread == 0 || c->closing || c->responded)
        return; /* 0 is EAGAIN */
    if (nread < 0) {
        conn_close(c); /* EOF or error before a full head: nobody to answer */
        return;
    }
    c->len += (size_t)nread;
    tg_http_request req;
    ssize_t r = tg_http_parse_request(c->buf, c->len, &req);
    if (r == TG_NEED_MORE)
        return;
    if (r == TG_ETOOBIG)
        respond_text(c, 431, "Request Header Fields Too Large", "", true,
                     "request head too large\n");
    else if (r < 0)
        respond_text(c, 400, "Bad Request", "", true, "bad request\n");
    else
        route(c, &req);
}

static void on_dropped_closed(uv_handle_t *h)
{
    free(h);
}

static void on_connection(uv_stream_t *server, int status)
{
    tg_admin *a = server->data;
    if (status < 0 || a->stopping)
        return;
    admin_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        /* Accept and drop, so the backlog does not fill with a connection we cannot serve. */
        uv_tcp_t *drop = malloc(sizeof(*drop));
        if (drop && uv_tcp_init(a->loop, drop) == 0) {
            (void)uv_accept(server, (uv_stream_t *)drop);
            uv_close((uv_handle_t *)drop, on_dropped_closed);
        } else {
            free(drop);
        }
        return;
    }
    c->a = a;
    uv_tcp_init(a->loop, &c->tcp);
    uv_timer_init(a->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    c->next = a->conns;
    if (a->conns)
        a->conns->prev = c;
    a->conns = c;
    a->nconns++;

    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 || a->nconns > ADMIN_MAX_CONNS) {
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_conn_timeout, ADMIN_TIMEOUT_MS, 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
        conn_close(c);
}

/* ---- start / stop ---- */

static void on_server_closed(uv_handle_t *h)
{
    tg_admin *a = h->data;
    a->server_closed = true;
    admin_maybe_free(a);
}

int tg_admin_start(uv_loop_t *loop, const char *listen, tg_metrics *metrics,
                   tg_admin_ready_fn ready, tg_admin_quit_fn quit, void *ud, tg_admin **out,
                   char *err, size_t errlen)
{
    char host[64];
    int port = 0;
    struct sockaddr_storage ss;
    if (tg_probe_split_hostport(listen, host, sizeof(host), &port) < 0) {
        snprintf(err, errlen, "admin.listen: expected host:port or [v6]:port, got \"%s\"",
                 listen ? listen : "");
        return TG_ECONFIG;
    }
    const char *ip = host;
    if (strcmp(host, "localhost") == 0)
        ip = "127.0.0.1";
    else if (host[0] == '\0' || strcmp(host, "*") == 0)
        ip = "0.0.0.0";
    if (uv_ip4_addr(ip, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(ip, port, (struct sockaddr_in6 *)&ss) != 0) {
        snprintf(err, errlen, "admin.listen: \"%s\" is not an IP address (or localhost)", host);
        return TG_ECONFIG;
    }

    tg_admin *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "admin: out of memory");
        return TG_ENOMEM;
    }
    a->loop = loop;
    a->metrics = metrics;
    a->ready = ready;
    a->quit = quit;
    a->ud = ud;
    int rc = uv_tcp_init(loop, &a->server);
    if (rc < 0) {
        free(a);
        snprintf(err, errlen, "admin: %s", uv_strerror(rc));
        return TG_EIO;
    }
    a->server.data = a;
    rc = uv_tcp_bind(&a->server, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&a->server, ADMIN_BACKLOG, on_connection);
    if (rc == 0) {
        struct sockaddr_storage bound;
        int blen = sizeof(bound);
        rc = uv_tcp_getsockname(&a->server, (struct sockaddr *)&bound, &blen);
        if (rc == 0)
            a->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                        : ((struct sockaddr_in *)&bound)->sin_port);
    }
    if (rc < 0) {
        snprintf(err, errlen, "admin: cannot listen on %s: %s", listen, uv_strerror(rc));
        /* The handle is initialized: it must be closed, and a is freed in its close callback. */
        a->stopping = true;
        uv_close((uv_handle_t *)&a->server, on_server_closed);
        return TG_EIO;
    }
    tg_log(TG_LOG_INFO, "admin listening", TG_FS("listen", listen), TG_FI("port", a->port),
           TG_FEND);
    *out = a;
    return 0;
}

int tg_admin_port(const tg_admin *a)
{
    return a->port;
}

void tg_admin_stop(tg_admin *a)
{
    if (!a || a->stopping)
        return;
    a->stopping = true;
    uv_close((uv_handle_t *)&a->server, on_server_closed);
    for (admin_conn *c = a->conns; c; c = c->next)
        conn_close(c);
    admin_maybe_free(a);
}
