/*
 * Unit tests for the tg_admin module: proxy/http.c (request-head parser, fed
 * every input split at every byte boundary), proxy/admin.c (a real server on
 * 127.0.0.1 with its loop in a thread, spoken to with blocking sockets) and
 * proxy/probe.c (reachable, refused, unresolvable and replaced targets).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "proxy/admin.h"
#include "proxy/error.h"
#include "proxy/http.h"
#include "proxy/probe.h"

/* ---- parser ---- */

/* Parses an exact-size heap copy, so ASan catches any read past len. */
static ssize_t parse(const char *s, size_t len, tg_http_request *r)
{
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, s, len);
    ssize_t n = tg_http_parse_request(copy, len, r);
    if (n > 0) {
        /* Rebase the slices onto s so callers can compare them after the copy is gone. */
        tg_slice *slices[] = {&r->method, &r->target, &r->path, &r->query, &r->headers};
        for (size_t i = 0; i < sizeof(slices) / sizeof(slices[0]); i++) {
            if (slices[i]->base) {
                assert_true(slices[i]->base >= copy);
                assert_true(slices[i]->base + slices[i]->len <= copy + n);
                slices[i]->base = (const uint8_t *)s + (slices[i]->base - copy);
            }
        }
    }
    free(copy);
    return n;
}

/* Parses s whole, and asserts every proper prefix gives NEED_MORE or the same error. */
static ssize_t parse_split(const char *s, size_t len, tg_http_request *r)
{
    ssize_t whole = parse(s, len, r);
    for (size_t i = 0; i < len; i++) {
        tg_http_request tmp;
        ssize_t part = parse(s, i, &tmp);
        if (whole > 0 && i < (size_t)whole)
            assert_int_equal(part, TG_NEED_MORE);
        else if (whole > 0)
            assert_int_equal(part, whole); /* trailing bytes after the head */
        else
            assert_true(part == TG_NEED_MORE || part == whole);
    }
    return whole;
}

#define PARSE(lit, r) parse_split((lit), sizeof(lit) - 1, (r))

static void valid_requests(void **state)
{
    (void)state;
    tg_http_request r;
    static const char get[] = "GET /metrics HTTP/1.1\r\nHost: localhost:9187\r\n"
                              "User-Agent: Prometheus/2.0\r\nAccept: */*\r\n\r\n";
    assert_int_equal(PARSE(get, &r), sizeof(get) - 1);
    assert_true(tg_slice_eq_str(r.method, "GET"));
    assert_true(tg_slice_eq_str(r.path, "/metrics"));
    assert_true(tg_slice_eq_str(r.target, "/metrics"));
    assert_null(r.query.base);
    assert_int_equal(r.version_minor, 1);
    assert_int_equal(r.header_count, 3);
    assert_false(r.has_content_length);
    assert_true(tg_slice_eq_str(
        r.headers, "Host: localhost:9187\r\nUser-Agent: Prometheus/2.0\r\nAccept: */*\r\n"));

    static const char minimal[] = "HEAD / HTTP/1.0\r\n\r\n";
    assert_int_equal(PARSE(minimal, &r), sizeof(minimal) - 1);
    assert_true(tg_slice_eq_str(r.method, "HEAD"));
    assert_true(tg_slice_eq_str(r.path, "/"));
    assert_int_equal(r.version_minor, 0);
    assert_int_equal(r.header_count, 0);
    assert_int_equal(r.headers.len, 0);

    /* Trailing bytes (a pipelined request or a body) are not consumed. */
    static const char trailing[] = "GET /healthz HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\n";
    assert_int_equal(PARSE(trailing, &r), strlen("GET /healthz HTTP/1.1\r\n\r\n"));

    /* HTAB and obs-text in values, OWS trimmed, odd but legal tokens. */
    static const char odd[] = "M-SEARCH /a/b.c HTTP/1.1\r\nX-A:\t v\xc3\xa9 \t\r\nx-b:\r\n"
                              "Content-Length:  12 \r\n\r\n";
    assert_int_equal(PARSE(odd, &r), sizeof(odd) - 1);
    assert_true(tg_slice_eq_str(r.method, "M-SEARCH"));
    assert_true(r.has_content_length);
    assert_int_equal(r.content_length, 12);
    assert_int_equal(r.header_count, 3);

    static const char maxcl[] = "GET / HTTP/1.1\r\ncontent-LENGTH: 18446744073709551615\r\n\r\n";
    assert_int_equal(PARSE(maxcl, &r), sizeof(maxcl) - 1);
    assert_true(r.content_length == UINT64_MAX);

    static const char te[] = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_int_equal(PARSE(te, &r), sizeof(te) - 1);
    assert_true(r.has_transfer_encoding);
}

static void query_string(void **state)
{
    (void)state;
    tg_http_request r;
    static const char q[] = "GET /metrics?name[]=a&b=%20?c HTTP/1.1\r\n\r\n";
    assert_int_equal(PARSE(q, &r), sizeof(q) - 1);
    assert_true(tg_slice_eq_str(r.path, "/metrics"));
    assert_true(tg_slice_eq_str(r.query, "name[]=a&b=%20?c"));
    assert_true(tg_slice_eq_str(r.target, "/metrics?name[]=a&b=%20?c"));

    static const char empty[] = "GET /readyz? HTTP/1.1\r\n\r\n";
    assert_int_equal(PARSE(empty, &r), sizeof(empty) - 1);
    assert_true(tg_slice_eq_str(r.path, "/readyz"));
    assert_non_null(r.query.base);
    assert_int_equal(r.query.len, 0);
}

static void malformed(void **state)
{
    (void)state;
#define B(lit)                                                                                     \
    {                                                                                              \
        (lit), sizeof(lit) - 1                                                                     \
    }
    static const struct {
        const char *s;
        size_t len;
    } bad[] = {
        B("GET /metrics HTTP/1.1\nHost: a\r\n\r\n"),         /* bare LF */
        B("GET /metrics HTTP/1.1\r\nHost: a\n\n"),           /* bare LF */
        B("GET /metrics HTTP/1.1\rHost: a\r\n\r\n"),         /* CR without LF */
        B("GET /met\x01rics HTTP/1.1\r\n\r\n"),              /* control byte */
        B("GET /metrics HTTP/1.1\r\nX: a\x7f\r\n\r\n"),      /* DEL */
        B("GET /metrics HTTP/1.1\r\nX: a\x00\r\n\r\n"),      /* NUL */
        B("GET /m\xc3\xa9 HTTP/1.1\r\n\r\n"),                /* raw non-ASCII in the target */
        B("GET /m#frag HTTP/1.1\r\n\r\n"),                   /* fragment */
        B("GET /metrics HTTP/1.1\r\nHost : a\r\n\r\n"),      /* space before colon */
        B("GET /metrics HTTP/1.1\r\nHost: a\r\n b\r\n\r\n"), /* obs-fold */
        B("GET /metrics HTTP/1.1\r\nNoColon\r\n\r\n"),
        B("GET /metrics HTTP/1.1\r\n: empty-name\r\n\r\n"),
        B("GET /metrics HTTP/1.1\r\nX(y): z\r\n\r\n"), /* not a token */
        B("GET /metrics\r\n\r\n"),                     /* HTTP/0.9 */
        B("GET /metrics HTTP/2.0\r\n\r\n"),
        B("GET /metrics HTTP/1.10\r\n\r\n"),
        B("GET /metrics HTTP/1.x\r\n\r\n"),
        B("GET /metrics http/1.1\r\n\r\n"),
        B("GET /metrics HTTP/1.1 \r\n\r\n"),
        B("GET  /metrics HTTP/1.1\r\n\r\n"),
        B("GET /metrics  HTTP/1.1\r\n\r\n"),
        B(" GET /metrics HTTP/1.1\r\n\r\n"),
        B("GET\t/metrics HTTP/1.1\r\n\r\n"),
        B("GET http://a/metrics HTTP/1.1\r\n\r\n"), /* absolute-form */
        B("OPTIONS * HTTP/1.1\r\n\r\n"),
        B("GET HTTP/1.1\r\n\r\n"),
        B("/metrics HTTP/1.1\r\n\r\n"),
        B("\r\nGET / HTTP/1.1\r\n\r\n"), /* leading empty line */
        B("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"),
        B("GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
        B("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n"),
        B("GET / HTTP/1.1\r\nContent-Length: +1\r\n\r\n"),
        B("GET / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n"),
        B("GET / HTTP/1.1\r\nContent-Length:\r\n\r\n"),
        B("GET / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n"),
        B("GET / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n"), /* 2^64 */
        B("GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n"),
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tg_http_request r;
        ssize_t n = parse_split(bad[i].s, bad[i].len, &r);
        if (n != TG_EPROTO)
            fail_msg("case %zu: got %zd, want TG_EPROTO", i, n);
    }
}

/* A request whose head is exactly `total` bytes, padded with X-Pad headers of <= 100 bytes. */
static char *head_of_size(size_t total)
{
    static const char start[] = "GET /metrics HTTP/1.1\r\n";
    char *s = malloc(total + 1);
    size_t len = strlen(start);
    memcpy(s, start, len);
    while (total - len - 2 > 0) {
        size_t left = total - len - 2; /* room before the final CRLF */
        size_t line = left > 100 ? 100 : left;
        if (left - line > 0 && left - line < 9)
            line = left - 9; /* leave room for one more minimal header */
        assert_true(line >= 9);
        memcpy(s + len, "X-Pad: ", 7);
        memset(s + len + 7, 'p', line - 9);
        memcpy(s + len + line - 2, "\r\n", 2);
        len += line;
    }
    memcpy(s + len, "\r\n", 3);
    assert_int_equal(strlen(s), total);
    return s;
}

static void oversized(void **state)
{
    (void)state;
    tg_http_request r;
    char *exact = head_of_size(TG_HTTP_HEAD_MAX);
    assert_int_equal(parse(exact, TG_HTTP_HEAD_MAX, &r), TG_HTTP_HEAD_MAX);
    /* Every prefix is NEED_MORE (checked on a sample of lengths to keep the test fast). */
    for (size_t i = 0; i < TG_HTTP_HEAD_MAX; i += 97)
        assert_int_equal(parse(exact, i, &r), TG_NEED_MORE);
    free(exact);

    char *over = head_of_size(TG_HTTP_HEAD_MAX + 1);
    assert_int_equal(parse(over, TG_HTTP_HEAD_MAX + 1, &r), TG_ETOOBIG);
    assert_int_equal(parse(over, TG_HTTP_HEAD_MAX, &r), TG_ETOOBIG);
    assert_int_equal(parse(over, TG_HTTP_HEAD_MAX - 1, &r), TG_NEED_MORE);
    free(over);

    /* One line over TG_HTTP_LINE_MAX is refused as soon as it is seen, CRLF or not. */
    size_t n = TG_HTTP_LINE_MAX + 64;
    char *line = malloc(n);
    memcpy(line, "GET /", 5);
    memset(line + 5, 'a', n - 5);
    assert_int_equal(parse(line, n, &r), TG_ETOOBIG);
    assert_int_equal(parse(line, TG_HTTP_LINE_MAX - 2, &r), TG_NEED_MORE);
    assert_int_equal(parse(line, TG_HTTP_LINE_MAX - 1, &r), TG_ETOOBIG);
    free(line);

    /* A request line of exactly TG_HTTP_LINE_MAX bytes with its CRLF is fine. */
    char *fit = malloc(TG_HTTP_LINE_MAX + 2);
    memcpy(fit, "GET /", 5);
    memset(fit + 5, 'a', TG_HTTP_LINE_MAX - 5 - 11);
    memcpy(fit + TG_HTTP_LINE_MAX - 11, " HTTP/1.1\r\n\r\n", 13);
    assert_int_equal(parse(fit, TG_HTTP_LINE_MAX + 2, &r), TG_HTTP_LINE_MAX + 2);
    free(fit);
}

/* ---- admin server ---- */

typedef struct server_fixture {
    uv_loop_t loop;
    uv_async_t stop;
    tg_metrics *metrics;
    tg_admin *admin;
    pthread_t thread;
    atomic_bool ready;
    int port;
    int idle_fd; /* a client left open across the server's stop, or -1 */
} server_fixture;

static bool fixture_ready(void *ud, char *why, size_t whylen)
{
    server_fixture *f = ud;
    if (atomic_load(&f->ready))
        return true;
    snprintf(why, whylen, "backend pg 127.0.0.1:1 unreachable\nsecond line");
    return false;
}

static void on_stop(uv_async_t *h)
{
    server_fixture *f = h->data;
    tg_admin_stop(f->admin);
    uv_close((uv_handle_t *)h, NULL);
}

static void *loop_thread(void *arg)
{
    server_fixture *f = arg;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    return NULL;
}

static int server_setup(void **state)
{
    server_fixture *f = calloc(1, sizeof(*f));
    f->idle_fd = -1;
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->metrics = tg_metrics_new(1);
    tg_listener_stats *s = tg_metrics_listener(f->metrics, "pg", "postgres", 0);
    TG_STAT_ADD(s->conns_total, 7);
    atomic_store(&f->ready, true);
    char err[256] = "";
    int rc = tg_admin_start(&f->loop, "127.0.0.1:0", f->metrics, fixture_ready, NULL, f, &f->admin,
                            err, sizeof(err));
    if (rc != 0)
        fail_msg("tg_admin_start: %s", err);
    f->port = tg_admin_port(f->admin);
    assert_true(f->port > 0);
    uv_async_init(&f->loop, &f->stop, on_stop);
    f->stop.data = f;
    assert_int_equal(pthread_create(&f->thread, NULL, loop_thread, f), 0);
    *state = f;
    return 0;
}

static int server_teardown(void **state)
{
    server_fixture *f = *state;
    uv_async_send(&f->stop);
    pthread_join(f->thread, NULL);
    /* Every handle closed and the admin freed: the loop closes cleanly. */
    assert_int_equal(uv_loop_close(&f->loop), 0);
    if (f->idle_fd >= 0)
        close(f->idle_fd);
    tg_metrics_free(f->metrics);
    free(f);
    return 0;
}

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void send_all(int fd, const char *s, size_t len)
{
    while (len > 0) {
        ssize_t w = send(fd, s, len, MSG_NOSIGNAL);
        assert_true(w > 0);
        s += w;
        len -= (size_t)w;
    }
}

/* Reads until EOF; returns a malloc'd NUL-terminated response. */
static char *read_all(int fd)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1 == cap)
            buf = realloc(buf, cap *= 2);
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    close(fd);
    return buf;
}

static char *request(int port, const char *req, size_t len)
{
    int fd = connect_to(port);
    send_all(fd, req, len);
    return read_all(fd);
}

#define REQUEST(f, lit) request((f)->port, (lit), sizeof(lit) - 1)

/* The body of a response (after CRLF CRLF), and a check of Content-Length against it. */
static const char *body_of(const char *resp, bool head)
{
    const char *b = strstr(resp, "\r\n\r\n");
    assert_non_null(b);
    b += 4;
    const char *cl = strstr(resp, "Content-Length: ");
    assert_non_null(cl);
    assert_true(cl < b);
    size_t n = strtoul(cl + 16, NULL, 10);
    assert_int_equal(strlen(b), head ? 0 : n);
    assert_non_null(strstr(resp, "\r\nConnection: close\r\n"));
    return b;
}

static void admin_routes(void **state)
{
    server_fixture *f = *state;
    char *r = REQUEST(f, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_non_null(strstr(r, "Content-Type: text/plain; version=0.0.4"));
    const char *b = body_of(r, false);
    assert_non_null(
        strstr(b, "tenantgate_connections_total{listener=\"pg\",protocol=\"postgres\"} 7\n"));
    assert_non_null(strstr(b, "tenantgate_build_info{version="));
    free(r);

    r = REQUEST(f, "HEAD /metrics?x=1 HTTP/1.0\r\n\r\n");
    assert_true(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
    body_of(r, true);
    free(r);

    r = REQUEST(f, "GET /healthz HTTP/1.1\r\n\r\n");
    assert_true(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_string_equal(body_of(r, false), "ok\n");
    free(r);

    r = REQUEST(f, "GET /readyz HTTP/1.1\r\n\r\n");
    assert_true(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_string_equal(body_of(r, false), "ready\n");
    free(r);

    atomic_store(&f->ready, false);
    r = REQUEST(f, "GET /readyz HTTP/1.1\r\n\r\n");
    assert_true(strncmp(r, "HTTP/1.1 503 Service Unavailable\r\n", 34) == 0);
    assert_string_equal(body_of(r, false),
                        "not ready: backend pg 127.0.0.1:1 unreachable second line\n");
    free(r);
    atomic_store(&f->ready, true);

    r = REQUEST(f, "GET /nope HTTP/1.1\r\n\r\n");
    assert_true(strncmp(r, "HTTP/1.1 404 Not Found\r\n", 24) == 0);
    body_of(r, false);
    free(r);

    r = REQUEST(f, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_true(strncmp(r, "HTTP/1.1 405 Method Not Allowed\r\n", 33) == 0);
    assert_non_null(strstr(r, "\r\nAllow: GET, HEAD\r\n"));
    body_of(r, false);
    free(r);

    r = REQUEST(f, "GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    assert_true(strncmp(r, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
    free(r);
}

static void admin_bad_requests(void **state)
{
    server_fixture *f = *state;
    char *r = REQUEST(f, "GET /metrics HTTP/1.1\nHost: x\n\n");
    assert_true(strncmp(r, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
    body_of(r, false);
    free(r);

    size_t n = 3 * TG_HTTP_HEAD_MAX;
    char *big = malloc(n);
    memcpy(big, "GET /metrics HTTP/1.1\r\n", 23);
    for (size_t i = 23; i + 100 <= n; i += 100) {
        memcpy(big + i, "X-Pad: ", 7);
        memset(big + i + 7, 'p', 91);
        memcpy(big + i + 98, "\r\n", 2);
    }
    int fd = connect_to(f->port);
    /* The server answers after 8 KiB and closes; the rest of our send may fail. */
    send(fd, big, TG_HTTP_HEAD_MAX + 100, MSG_NOSIGNAL);
    r = read_all(fd);
    assert_true(strncmp(r, "HTTP/1.1 431 ", 13) == 0);
    free(r);
    free(big);

    /* A request split over several writes. */
    fd = connect_to(f->port);
    send_all(fd, "GET /hea", 8);
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    send_all(fd, "lthz HTTP/1.1\r", 14);
    nanosleep(&ts, NULL);
    send_all(fd, "\n\r\n", 3);
    r = read_all(fd);
    assert_true(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
    free(r);

    /* A client that closes without a full request gets nothing and costs nothing. */
    fd = connect_to(f->port);
    send_all(fd, "GET /", 5);
    close(fd);

    /* An idle connection is still open when the server stops (teardown closes it). */
    fd = connect_to(f->port);
    send_all(fd, "GET /metrics HTTP/1.1\r\n", 23);
    r = REQUEST(f, "GET /healthz HTTP/1.1\r\n\r\n"); /* the server is still serving others */
    assert_true(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
    free(r);
    f->idle_fd = fd;
}

static void admin_bad_listen(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    tg_metrics *m = tg_metrics_new(1);
    tg_admin *a = NULL;
    char err[256];
    assert_int_equal(tg_admin_start(&loop, "nohost", m, NULL, NULL, NULL, &a, err, sizeof(err)),
                     TG_ECONFIG);
    assert_int_equal(
        tg_admin_start(&loop, "example.com:80", m, NULL, NULL, NULL, &a, err, sizeof(err)),
        TG_ECONFIG);
    assert_int_equal(
        tg_admin_start(&loop, "127.0.0.1:99999", m, NULL, NULL, NULL, &a, err, sizeof(err)),
        TG_ECONFIG);
    /* A taken port: the listener handle is closed and freed once the loop runs. */
    assert_int_equal(
        tg_admin_start(&loop, "127.0.0.1:0", m, NULL, NULL, NULL, &a, err, sizeof(err)), 0);
    char listen[64];
    snprintf(listen, sizeof(listen), "localhost:%d", tg_admin_port(a));
    tg_admin *b = NULL;
    assert_int_equal(tg_admin_start(&loop, listen, m, NULL, NULL, NULL, &b, err, sizeof(err)),
                     TG_EIO);
    assert_non_null(strstr(err, "cannot listen"));
    /* IPv6 where the host has it. */
    if (tg_admin_start(&loop, "[::1]:0", m, NULL, NULL, NULL, &b, err, sizeof(err)) == 0)
        tg_admin_stop(b);
    tg_admin_stop(a);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    tg_metrics_free(m);
}

/* ---- probe ---- */

static int listening_socket(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t len = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* Runs the loop until every target has a result or 5 s passed. */
static void run_until_probed(uv_loop_t *loop, tg_probe *p, const char *needle)
{
    char why[256];
    for (int i = 0; i < 500; i++) {
        why[0] = '\0';
        if (tg_probe_all_ok(p, why, sizeof(why)))
            return;
        if (needle && strstr(why, needle))
            return;
        uv_run(loop, UV_RUN_NOWAIT);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static void probe_targets(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    int up_port, down_port;
    int up = listening_socket(&up_port);
    int down = listening_socket(&down_port);
    close(down); /* nothing listens there any more: connection refused */

    char up_addr[64], up_name[64], down_addr[64];
    snprintf(up_addr, sizeof(up_addr), "127.0.0.1:%d", up_port);
    snprintf(up_name, sizeof(up_name), "localhost:%d", up_port);
    snprintf(down_addr, sizeof(down_addr), "127.0.0.1:%d", down_port);

    tg_probe *p = tg_probe_start(&loop, 100, 1000);
    assert_non_null(p);
    char why[256];
    assert_true(tg_probe_all_ok(p, why, sizeof(why))); /* no targets */

    const char *names[] = {"pg", "redis", "bad"};
    const char *addrs[] = {up_addr, down_addr, "no-port"};
    assert_int_equal(tg_probe_set_targets(p, names, addrs, 3), 0);
    assert_false(tg_probe_all_ok(p, why, sizeof(why)));
    /* Replacing targets while their attempts are in flight. */
    assert_int_equal(tg_probe_set_targets(p, names, addrs, 2), 0);
    run_until_probed(&loop, p, "redis");
    assert_false(tg_probe_all_ok(p, why, sizeof(why)));
    assert_non_null(strstr(why, "redis 127.0.0.1:"));
    assert_null(strstr(why, "not probed yet"));

    const char *names2[] = {"pg", "pg-by-name"};
    const char *addrs2[] = {up_addr, up_name};
    assert_int_equal(tg_probe_set_targets(p, names2, addrs2, 2), 0);
    run_until_probed(&loop, p, NULL);
    if (!tg_probe_all_ok(p, why, sizeof(why)))
        fail_msg("not ok: %s", why);

    /* An invalid address is reported, not probed. */
    const char *names3[] = {"bad"};
    const char *addrs3[] = {"[::1"};
    assert_int_equal(tg_probe_set_targets(p, names3, addrs3, 1), 0);
    assert_false(tg_probe_all_ok(p, why, sizeof(why)));
    assert_string_equal(why, "bad [::1: invalid address");

    /* Stop with attempts in flight; everything is freed once the loop drains. */
    assert_int_equal(tg_probe_set_targets(p, names2, addrs2, 2), 0);
    tg_probe_stop(p);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    close(up);
}

static void split_hostport(void **state)
{
    (void)state;
    char host[64];
    int port;
    assert_int_equal(tg_probe_split_hostport("127.0.0.1:5432", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 5432);
    assert_int_equal(tg_probe_split_hostport("[::1]:0", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 0);
    assert_int_equal(tg_probe_split_hostport("db.example.com:65535", host, sizeof(host), &port), 0);
    assert_int_equal(tg_probe_split_hostport(":80", host, sizeof(host), &port), 0);
    assert_string_equal(host, "");
    static const char *const bad[] = {"",        "host",   "host:",   "host:65536", "host:-1",
                                      "host:1a", "::1:80", "[::1]80", "[::1",       "h:000001"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(tg_probe_split_hostport(bad[i], host, sizeof(host), &port), TG_EINVAL);
    assert_int_equal(tg_probe_split_hostport("abcdef:1", host, 4, &port), TG_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_requests),
        cmocka_unit_test(query_string),
        cmocka_unit_test(malformed),
        cmocka_unit_test(oversized),
        cmocka_unit_test_setup_teardown(admin_routes, server_setup, server_teardown),
        cmocka_unit_test_setup_teardown(admin_bad_requests, server_setup, server_teardown),
        cmocka_unit_test(admin_bad_listen),
        cmocka_unit_test(probe_targets),
        cmocka_unit_test(split_hostport),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
