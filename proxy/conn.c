/*
 * The connection pair: see conn.h for the picture.
 *
 * Each side owns:
 *   - rd:    the chunk holding unconsumed plaintext [rd_start, rd_end); reads
 *            append at rd_end, the session consumes from rd_start. When the
 *            session leaves a partial message and the chunk is full, the
 *            partial bytes move to a bigger chunk (grown geometrically, bounded
 *            by what the protocol accepts). An empty rd is given back after
 *            each read, so an idle connection holds no buffer at all.
 *   - stage: slices waiting to be written, each pinning its chunk. Flushed
 *            with one uv_write (or encrypted first, for a TLS side) after
 *            every callback into the session.
 *   - out_pending: bytes staged or in uv_write and not yet completed; the
 *            backpressure signal.
 *
 * Closing: abort() closes the two TCP handles and the timer; libuv cancels
 * in-flight writes and connects (their callbacks see `closing` and only
 * release memory); the struct is freed when the last handle's close callback
 * has run, never earlier.
 */
#include "proxy/conn.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/buffer.h"
#include "proxy/error.h"
#include "proxy/log.h"
#include "proxy/tls.h"
#include "proxy/worker.h"

#define TG_READ_MIN_ROOM 4096      /* smallest read buffer handed to libuv */
#define TG_FINISH_DEADLINE_MS 5000 /* flushing before close may take this long */
#define TG_TLS_RECORD_BUF (16 * 1024 + 512)

typedef struct stage_entry {
    tg_chunk *chunk; /* one reference */
    const uint8_t *base;
    size_t len;
} stage_entry;

typedef struct tg_side {
    uv_tcp_t tcp;
    tg_tls *tls;
    tg_chunk *rd;
    uint32_t rd_start, rd_end;
    stage_entry *stage;
    uint32_t n_stage, cap_stage;
    tg_chunk *copy; /* chunk that tg_conn_send copies into; one reference */
    uint32_t copy_len;
    size_t out_pending;
    uint32_t writes_in_flight; /* uv_write requests not completed */
    uv_shutdown_t shutdown_req;
    bool handle_open;   /* uv_tcp_init done: must be closed */
    bool ready;         /* connected (and TLS established): writes may go out */
    bool reading;       /* uv_read_start active */
    bool paused;        /* stopped by backpressure */
    bool eof_in;        /* the peer ended its stream */
    bool shutdown_want; /* send EOF once drained */
    bool shutdown_sent;
    bool shutdown_done; /* the FIN has gone out */
    bool tls_sniff;     /* client side, tls.mode allow: the first byte decides */
} tg_side;

typedef struct write_req {
    uv_write_t req;
    tg_conn *conn;
    tg_side_id to;
    size_t bytes;
    uint32_t n;
    tg_chunk *chunks[];
} write_req;

struct tg_conn {
    tg_side side[2];
    uv_timer_t timer;
    uv_connect_t connect_req;
    uv_getaddrinfo_t *gai; /* in flight when non-NULL; freed by its callback */
    tg_worker *worker;
    tg_runtime *rt; /* one reference */
    const tg_listener_rt *lrt;
    tg_listener_stats *stats;
    const tg_protocol_ops *ops;
    tg_conn *prev, *next;
    uint64_t accepted_at, connect_started_at, last_activity, finish_deadline;
    uint64_t expiry_at;       /* loop time when ops->on_expire runs; 0 = none */
    tg_chunk *dispatch_chunk; /* the chunk whose bytes on_data is looking at */
    uint32_t dispatch_end;
    unsigned handles_open;
    uint8_t redispatch; /* bit per side: run the session again over its unconsumed bytes */
    bool tls_upgrade;   /* switch the client side to TLS once the current message is consumed */
    bool counted;       /* holds a slot of lrt->active */
    bool established;
    bool connecting;
    bool finishing;
    bool closing;
    char peer[64];
    _Alignas(16) uint8_t session[];
};

static void conn_close(tg_conn *c);
static void flush_all(tg_conn *c);
static void dispatch(tg_conn *c, tg_side_id from);
static void read_start(tg_conn *c, tg_side_id sid);
static void arm_timer(tg_conn *c);

static tg_side_id side_id(const tg_conn *c, const tg_side *s)
{
    return s == &c->side[TG_SIDE_CLIENT] ? TG_SIDE_CLIENT : TG_SIDE_BACKEND;
}

static uint32_t high_water(const tg_conn *c)
{
    return c->lrt->cfg->high_water_bytes;
}

/* ---- accounting and flow control ---------------------------------------- */

/*
 * Backpressure per direction. Reading a side feeds the queue toward the other side;
 * reading the client may also queue local replies toward the client itself. So the
 * client stops reading while either queue is above high water, the backend only while
 * the queue toward the client is; each resumes once the queues it feeds are at or below
 * a quarter of it. (Pausing both reads when either queue is full deadlocks with a
 * backend that finishes writing before it reads again, as database servers do: the
 * proxy would stop draining the very backend whose reading it waits for.)
 */
static void update_flow(tg_conn *c)
{
    if (c->closing)
        return;
    size_t hw = high_water(c), lw = hw / 4;
    size_t to_client = c->side[TG_SIDE_CLIENT].out_pending;
    size_t to_backend = c->side[TG_SIDE_BACKEND].out_pending;
    for (int i = 0; i < 2; i++) {
        tg_side *s = &c->side[i];
        bool congested, relieved;
        if (i == TG_SIDE_CLIENT) {
            congested = to_client > hw || to_backend > hw;
            relieved = to_client <= lw && to_backend <= lw;
        } else {
            congested = to_client > hw;
            relieved = to_client <= lw;
        }
        if (congested && s->reading) {
            uv_read_stop((uv_stream_t *)&s->tcp);
            s->reading = false;
            s->paused = true;
        } else if (relieved && s->paused) {
            s->paused = false;
            read_start(c, (tg_side_id)i);
        }
    }
}

/* Closes when nothing is left to do: both streams ended and delivered, or a finish drained. */
static void check_done(tg_conn *c)
{
    if (c->closing)
        return;
    tg_side *cl = &c->side[TG_SIDE_CLIENT], *be = &c->side[TG_SIDE_BACKEND];
    bool drained = cl->out_pending == 0 && be->out_pending == 0;
    if (c->finishing && drained) {
        conn_close(c);
        return;
    }
    bool backend_done = !be->handle_open || (be->eof_in && be->shutdown_done);
    if (cl->eof_in && cl->shutdown_done && backend_done && drained)
        conn_close(c);
    else if (cl->eof_in && !be->handle_open && drained)
        conn_close(c);
}

/* ---- writing ------------------------------------------------------------- */

static int stage_push(tg_side *s, tg_chunk *chunk, const uint8_t *base, size_t len)
{
    if (s->n_stage == s->cap_stage) {
        uint32_t cap = s->cap_stage ? s->cap_stage * 2 : 8;
        stage_entry *st = realloc(s->stage, cap * sizeof(*st));
        if (!st)
            return TG_ENOMEM;
        s->stage = st;
        s->cap_stage = cap;
    }
    /* Adjacent slices of one chunk become one iovec. */
    if (s->n_stage > 0) {
        stage_entry *last = &s->stage[s->n_stage - 1];
        if (last->chunk == chunk && last->base + last->len == base) {
            last->len += len;
            s->out_pending += len;
            return 0;
        }
    }
    tg_chunk_ref(chunk);
    s->stage[s->n_stage++] = (stage_entry){chunk, base, len};
    s->out_pending += len;
    return 0;
}

static void stage_clear(tg_side *s)
{
    for (uint32_t i = 0; i < s->n_stage; i++) {
        s->out_pending -= s->stage[i].len;
        tg_chunk_unref(s->stage[i].chunk);
    }
    s->n_stage = 0;
}

static void do_shutdown(tg_conn *c, tg_side *s);

static void on_write(uv_write_t *req, int status)
{
    write_req *w = (write_req *)req;
    tg_conn *c = w->conn;
    tg_side *s = &c->side[w->to];
    for (uint32_t i = 0; i < w->n; i++)
        tg_chunk_unref(w->chunks[i]);
    s->out_pending -= w->bytes;
    s->writes_in_flight--;
    free(w);
    if (c->closing)
        return;
    if (status < 0) {
        tg_conn_abort(c, uv_strerror(status));
        return;
    }
    if (s->shutdown_want && !s->shutdown_sent && s->out_pending == 0)
        do_shutdown(c, s);
    update_flow(c);
    check_done(c);
}

static void count_out(tg_conn *c, tg_side_id to, size_t n)
{
    if (to == TG_SIDE_CLIENT)
        TG_STAT_ADD(c->stats->bytes_client_out, n);
    else
        TG_STAT_ADD(c->stats->bytes_backend_out, n);
}

/*
 * Writes n bufs that pin the given chunks (their references move here) and
 * count in out_pending. When nothing is queued in libuv, the bytes are first
 * written synchronously (uv_try_write): in the common case the socket takes
 * them all, and no request, callback or allocation is needed. What is left
 * goes to uv_write.
 */
static int submit_write(tg_conn *c, tg_side_id to, uv_buf_t *bufs, tg_chunk **chunks, uint32_t n,
                        size_t bytes)
{
    tg_side *s = &c->side[to];
    uint32_t first = 0;
    if (s->writes_in_flight == 0) {
        int w = uv_try_write((uv_stream_t *)&s->tcp, bufs, n);
        if (w < 0 && w != UV_EAGAIN) {
            for (uint32_t i = 0; i < n; i++)
                tg_chunk_unref(chunks[i]);
            s->out_pending -= bytes;
            return TG_EIO;
        }
        size_t done = w > 0 ? (size_t)w : 0;
        count_out(c, to, done);
        s->out_pending -= done;
        bytes -= done;
        while (first < n && done >= bufs[first].len) {
            done -= bufs[first].len;
            tg_chunk_unref(chunks[first]);
            first++;
        }
        if (first == n)
            return 0;
        bufs[first].base += done;
        bufs[first].len -= done;
        n -= first;
    }
    write_req *w = malloc(sizeof(*w) + n * sizeof(tg_chunk *));
    if (!w) {
        for (uint32_t i = 0; i < n; i++)
            tg_chunk_unref(chunks[first + i]);
        s->out_pending -= bytes;
        return TG_ENOMEM;
    }
    w->conn = c;
    w->to = to;
    w->bytes = bytes;
    w->n = n;
    memcpy(w->chunks, chunks + first, n * sizeof(tg_chunk *));
    int r = uv_write(&w->req, (uv_stream_t *)&s->tcp, bufs + first, n, on_write);
    if (r < 0) {
        for (uint32_t i = 0; i < n; i++)
            tg_chunk_unref(w->chunks[i]);
        free(w);
        s->out_pending -= bytes;
        return TG_EIO;
    }
    s->writes_in_flight++;
    count_out(c, to, bytes);
    return 0;
}

/* Sends what the TLS engine of side s has produced. The bytes count as pending until written. */
static int send_ciphertext(tg_conn *c, tg_side_id to)
{
    tg_side *s = &c->side[to];
    size_t n;
    while ((n = tg_tls_pending_out(s->tls)) > 0) {
        tg_chunk *ch = tg_chunk_get(&c->worker->pool, n);
        if (!ch)
            return TG_ENOMEM;
        size_t got = tg_tls_take_out(s->tls, ch->data, ch->cap);
        uv_buf_t buf = uv_buf_init((char *)ch->data, (unsigned)got);
        s->out_pending += got;
        int r = submit_write(c, to, &buf, &ch, 1, got);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Writes everything staged for side `to`, encrypting first on a TLS side. */
static int flush_side(tg_conn *c, tg_side_id to)
{
    tg_side *s = &c->side[to];
    if (s->copy) {
        tg_chunk_unref(s->copy); /* staged slices keep it alive; later sends take a new one */
        s->copy = NULL;
        s->copy_len = 0;
    }
    if (s->n_stage == 0 || !s->ready)
        return 0;
    if (s->tls) {
        int r = 0;
        for (uint32_t i = 0; i < s->n_stage && r == 0; i++)
            r = tg_tls_write(s->tls, s->stage[i].base, s->stage[i].len);
        stage_clear(s);
        return r < 0 ? r : send_ciphertext(c, to);
    }
    uint32_t n = s->n_stage;
    size_t bytes = 0;
    uv_buf_t small[16];
    tg_chunk *small_chunks[16];
    uv_buf_t *bufs = n <= 16 ? small : malloc(n * sizeof(uv_buf_t));
    tg_chunk **chunks = n <= 16 ? small_chunks : malloc(n * sizeof(tg_chunk *));
    if (!bufs || !chunks) {
        if (bufs != small)
            free(bufs);
        if (chunks != small_chunks)
            free(chunks);
        return TG_ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        bufs[i] = uv_buf_init((char *)s->stage[i].base, (unsigned)s->stage[i].len);
        chunks[i] = s->stage[i].chunk;
        bytes += s->stage[i].len;
    }
    s->n_stage = 0; /* references move to submit_write; out_pending stays */
    int r = submit_write(c, to, bufs, chunks, n, bytes);
    if (bufs != small)
        free(bufs);
    if (chunks != small_chunks)
        free(chunks);
    return r;
}

static void flush_all(tg_conn *c)
{
    if (c->closing)
        return;
    for (int i = 0; i < 2; i++) {
        if (flush_side(c, (tg_side_id)i) < 0) {
            tg_conn_abort(c, "write failed");
            return;
        }
        tg_side *s = &c->side[i];
        if (s->shutdown_want && !s->shutdown_sent && s->out_pending == 0)
            do_shutdown(c, s);
    }
    update_flow(c);
    check_done(c); /* synchronous writes may have finished everything */
}

int tg_conn_forward(tg_conn *c, tg_side_id to, const uint8_t *p, size_t len)
{
    tg_chunk *ch = c->dispatch_chunk;
    if (!ch || p < ch->data || len > c->dispatch_end || p > ch->data + c->dispatch_end - len)
        return TG_EINVAL;
    if (len == 0)
        return 0;
    return stage_push(&c->side[to], ch, p, len);
}

int tg_conn_send(tg_conn *c, tg_side_id to, const void *p, size_t len)
{
    tg_side *s = &c->side[to];
    const uint8_t *src = p;
    while (len > 0) {
        if (!s->copy || s->copy_len == s->copy->cap) {
            if (s->copy)
                tg_chunk_unref(s->copy);
            s->copy = tg_chunk_get(&c->worker->pool, len);
            s->copy_len = 0;
            if (!s->copy)
                return TG_ENOMEM;
        }
        size_t n = s->copy->cap - s->copy_len;
        if (n > len)
            n = len;
        uint8_t *dst = s->copy->data + s->copy_len;
        memcpy(dst, src, n);
        s->copy_len += (uint32_t)n;
        int r = stage_push(s, s->copy, dst, n);
        if (r < 0)
            return r;
        src += n;
        len -= n;
    }
    return 0;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    tg_conn *c = req->handle->data;
    if (c->closing)
        return;
    c->side[(uv_tcp_t *)req->handle == &c->side[0].tcp ? 0 : 1].shutdown_done = true;
    if (status < 0 && status != UV_ENOTCONN) {
        tg_conn_abort(c, uv_strerror(status));
        return;
    }
    check_done(c);
}

static void do_shutdown(tg_conn *c, tg_side *s)
{
    if (!s->ready || !s->handle_open)
        return;
    s->shutdown_sent = true;
    if (s->tls) {
        tg_tls_shutdown(s->tls);
        if (send_ciphertext(c, side_id(c, s)) < 0) {
            tg_conn_abort(c, "tls shutdown failed");
            return;
        }
    }
    if (uv_shutdown(&s->shutdown_req, (uv_stream_t *)&s->tcp, on_shutdown) < 0)
        tg_conn_abort(c, "shutdown failed");
}

void tg_conn_shutdown(tg_conn *c, tg_side_id to)
{
    tg_side *s = &c->side[to];
    if (s->shutdown_want)
        return;
    s->shutdown_want = true;
    if (!c->closing && s->out_pending == 0 && s->n_stage == 0)
        do_shutdown(c, s);
}

/* ---- reading ------------------------------------------------------------- */

/*
 * Makes sure rd has at least `want` free bytes after rd_end, moving the
 * unconsumed bytes to a new chunk if needed. Returns 0 or TG_ENOMEM.
 */
static int rd_reserve(tg_conn *c, tg_side *s, size_t want)
{
    if (s->rd && s->rd_start == s->rd_end && s->rd->refs == 1)
        s->rd_start = s->rd_end = 0;
    if (s->rd && s->rd->cap - s->rd_end >= want)
        return 0;
    size_t keep = s->rd ? s->rd_end - s->rd_start : 0;
    if (s->rd && s->rd->refs == 1 && s->rd->cap - keep >= want) {
        memmove(s->rd->data, s->rd->data + s->rd_start, keep);
        s->rd_start = 0;
        s->rd_end = (uint32_t)keep;
        return 0;
    }
    /* A partial message outgrew its chunk: grow geometrically so a large
     * message is copied O(log n) times, not once per read. */
    size_t cap = keep + want;
    if (s->rd && keep > s->rd->cap / 2 && cap < (size_t)s->rd->cap * 2)
        cap = (size_t)s->rd->cap * 2;
    tg_chunk *n = tg_chunk_get(&c->worker->pool, cap);
    if (!n)
        return TG_ENOMEM;
    if (keep)
        memcpy(n->data, s->rd->data + s->rd_start, keep);
    if (s->rd)
        tg_chunk_unref(s->rd);
    s->rd = n;
    s->rd_start = 0;
    s->rd_end = (uint32_t)keep;
    return 0;
}

/* Gives rd back when it holds nothing unconsumed: idle connections keep no buffer. */
static void rd_release_if_empty(tg_side *s)
{
    if (s->rd && s->rd_start == s->rd_end) {
        tg_chunk_unref(s->rd);
        s->rd = NULL;
        s->rd_start = s->rd_end = 0;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    tg_conn *c = h->data;
    tg_side *s = (uv_tcp_t *)h == &c->side[0].tcp ? &c->side[0] : &c->side[1];
    (void)suggested;
    if (s->tls) {
        /* Ciphertext goes to a scratch chunk; plaintext lands in rd after decryption. */
        tg_chunk *ch = tg_chunk_get(&c->worker->pool, 0);
        *buf = ch ? uv_buf_init((char *)ch->data, ch->cap) : uv_buf_init(NULL, 0);
        return;
    }
    if (rd_reserve(c, s, TG_READ_MIN_ROOM) < 0) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init((char *)s->rd->data + s->rd_end, s->rd->cap - s->rd_end);
}

static int start_client_tls_now(tg_conn *c);

/* Runs the session over the unconsumed bytes of side `from` until it stops consuming. */
static void dispatch_side(tg_conn *c, tg_side_id from)
{
    tg_side *s = &c->side[from];
    while (!c->closing && s->rd && s->rd_start < s->rd_end) {
        c->dispatch_chunk = s->rd;
        c->dispatch_end = s->rd_end;
        ssize_t n = c->ops->on_data(c, c->session, from, s->rd->data + s->rd_start,
                                    s->rd_end - s->rd_start);
        c->dispatch_chunk = NULL;
        if (c->closing)
            return;
        if (n < 0 || (size_t)n > s->rd_end - s->rd_start) {
            tg_conn_abort(c, n < 0 ? tg_strerror((int)n) : "session consumed too much");
            return;
        }
        s->rd_start += (uint32_t)n;
        if (c->tls_upgrade && from == TG_SIDE_CLIENT) {
            /* The protocol's "go ahead" leaves in plaintext; what follows is TLS. */
            c->tls_upgrade = false;
            if (flush_side(c, TG_SIDE_CLIENT) < 0 || start_client_tls_now(c) < 0)
                tg_conn_abort(c, "tls setup failed");
            return;
        }
        if (n == 0)
            break;
    }
}

/* Sides whose session asked to look at their buffered bytes again (tg_conn_redispatch). */
static void run_redispatch(tg_conn *c)
{
    while (!c->closing && c->redispatch) {
        tg_side_id sid = (c->redispatch & 1) ? TG_SIDE_CLIENT : TG_SIDE_BACKEND;
        c->redispatch &= (uint8_t) ~(1u << sid);
        dispatch_side(c, sid);
    }
}

static void dispatch(tg_conn *c, tg_side_id from)
{
    dispatch_side(c, from);
    run_redispatch(c);
    flush_all(c);
}

void tg_conn_redispatch(tg_conn *c, tg_side_id side)
{
    c->redispatch |= (uint8_t)(1u << side);
}

void tg_conn_call(tg_conn *c, int (*fn)(tg_conn *c, void *session, void *arg), void *arg)
{
    if (c->closing)
        return;
    if (fn(c, c->session, arg) < 0) {
        tg_conn_abort(c, "session error");
        return;
    }
    run_redispatch(c);
    flush_all(c);
}

static void side_ready(tg_conn *c, tg_side_id sid);

/* Moves plaintext out of the TLS engine of side `from` into rd and dispatches it. */
static void pump_tls(tg_conn *c, tg_side_id from)
{
    tg_side *s = &c->side[from];
    if (!tg_tls_handshake_done(s->tls)) {
        int r = tg_tls_handshake(s->tls);
        if (send_ciphertext(c, from) < 0 || r < 0) {
            tg_log(TG_LOG_INFO, "tls handshake failed", TG_FS("listener", c->lrt->cfg->name),
                   TG_FS("side", from == TG_SIDE_CLIENT ? "client" : "backend"),
                   TG_FS("peer", c->peer), TG_FS("error", tg_tls_last_error(s->tls)), TG_FEND);
            if (from == TG_SIDE_BACKEND)
                TG_STAT_ADD(c->stats->backend_connect_errors, 1);
            tg_conn_abort(c, "tls handshake failed");
            return;
        }
        if (r == TG_NEED_MORE)
            return;
        if (from == TG_SIDE_BACKEND) {
            side_ready(c, from);
            if (c->closing)
                return;
        }
    }
    for (;;) {
        if (rd_reserve(c, s, TG_READ_MIN_ROOM) < 0) {
            tg_conn_abort(c, "out of memory");
            return;
        }
        ssize_t n = tg_tls_read(s->tls, s->rd->data + s->rd_end, s->rd->cap - s->rd_end);
        if (n == TG_NEED_MORE)
            break;
        if (n == TG_ECLOSED) {
            s->eof_in = true;
            break;
        }
        if (n < 0) {
            tg_conn_abort(c, "tls error");
            return;
        }
        s->rd_end += (uint32_t)n;
        dispatch(c, from);
        if (c->closing)
            return;
    }
    /* Renegotiation-free TLS 1.3 still sends records (tickets, key updates) on reads. */
    if (send_ciphertext(c, from) < 0)
        tg_conn_abort(c, "write failed");
}

static void handle_eof(tg_conn *c, tg_side_id from)
{
    tg_side *s = &c->side[from];
    s->eof_in = true;
    if (s->reading) {
        uv_read_stop((uv_stream_t *)&s->tcp);
        s->reading = false;
    }
    s->paused = false;
    if (!c->ops->on_eof) {
        tg_conn_finish(c);
        return;
    }
    if (c->ops->on_eof(c, c->session, from) < 0) {
        tg_conn_abort(c, "session refused eof");
        return;
    }
    flush_all(c);
    check_done(c);
}

static void count_in(tg_conn *c, tg_side_id from, size_t n)
{
    if (from == TG_SIDE_CLIENT)
        TG_STAT_ADD(c->stats->bytes_client_in, n);
    else
        TG_STAT_ADD(c->stats->bytes_backend_in, n);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    tg_conn *c = stream->data;
    tg_side_id from = (uv_tcp_t *)stream == &c->side[0].tcp ? TG_SIDE_CLIENT : TG_SIDE_BACKEND;
    tg_side *s = &c->side[from];

    if (s->tls) {
        /* buf is a scratch chunk from on_alloc (or NULL when that failed). */
        tg_chunk *scratch =
            buf->base ? (tg_chunk *)((uint8_t *)buf->base - offsetof(tg_chunk, data)) : NULL;
        int r = 0;
        if (nread > 0)
            r = tg_tls_feed(s->tls, (const uint8_t *)buf->base, (size_t)nread);
        if (scratch)
            tg_chunk_unref(scratch);
        if (nread > 0) {
            c->last_activity = uv_now(stream->loop);
            count_in(c, from, (size_t)nread);
            if (r < 0) {
                tg_conn_abort(c, "out of memory");
                return;
            }
            pump_tls(c, from);
            if (!c->closing && s->eof_in)
                handle_eof(c, from);
            else
                rd_release_if_empty(s);
            return;
        }
    } else if (nread > 0) {
        c->last_activity = uv_now(stream->loop);
        count_in(c, from, (size_t)nread);
        s->rd_end += (uint32_t)nread;
        if (s->tls_sniff) {
            /* tls.mode allow without a protocol upgrade: a TLS record starts with 0x16. */
            s->tls_sniff = false;
            if (s->rd->data[s->rd_start] == 0x16) {
                if (start_client_tls_now(c) < 0)
                    tg_conn_abort(c, "tls setup failed");
                return;
            }
        }
        dispatch(c, from);
        if (!c->closing)
            rd_release_if_empty(s);
        return;
    }

    if (nread == 0) { /* EAGAIN: nothing read, not EOF */
        if (!s->tls)
            rd_release_if_empty(s);
        return;
    }
    if (nread == UV_ENOBUFS) {
        tg_conn_abort(c, "out of memory");
        return;
    }
    if (!s->tls)
        rd_release_if_empty(s);
    if (nread == UV_EOF) {
        handle_eof(c, from);
        return;
    }
    tg_conn_abort(c, uv_strerror((int)nread));
}

static void read_start(tg_conn *c, tg_side_id sid)
{
    tg_side *s = &c->side[sid];
    if (s->reading || s->paused || s->eof_in || c->closing || c->finishing)
        return;
    if (uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read) < 0) {
        tg_conn_abort(c, "read start failed");
        return;
    }
    s->reading = true;
}

/* ---- TLS toward the client ----------------------------------------------- */

/* Wraps the client side in TLS; bytes already read (and unconsumed) are ciphertext. */
static int start_client_tls_now(tg_conn *c)
{
    tg_side *s = &c->side[TG_SIDE_CLIENT];
    if (!c->lrt->client_tls || s->tls)
        return TG_EINVAL;
    s->tls = tg_tls_new(c->lrt->client_tls, NULL);
    if (!s->tls)
        return TG_ENOMEM;
    if (s->rd && s->rd_end > s->rd_start) {
        if (tg_tls_feed(s->tls, s->rd->data + s->rd_start, s->rd_end - s->rd_start) < 0)
            return TG_ENOMEM;
        s->rd_start = s->rd_end;
    }
    rd_release_if_empty(s);
    pump_tls(c, TG_SIDE_CLIENT);
    return 0;
}

int tg_conn_start_client_tls(tg_conn *c)
{
    if (!c->lrt->client_tls || c->side[TG_SIDE_CLIENT].tls)
        return TG_EINVAL;
    c->tls_upgrade = true; /* done by dispatch once the request is consumed */
    return 0;
}

bool tg_conn_client_tls(const tg_conn *c)
{
    return c->side[TG_SIDE_CLIENT].tls != NULL;
}

const char *tg_conn_sni(const tg_conn *c)
{
    const tg_tls *t = c->side[TG_SIDE_CLIENT].tls;
    return t ? tg_tls_sni(t) : NULL;
}

/* ---- backend connect ------------------------------------------------------ */

/* A side can be written to: flush what was staged meanwhile, then tell the session. */
static void side_ready(tg_conn *c, tg_side_id sid)
{
    c->side[sid].ready = true;
    if (sid == TG_SIDE_BACKEND) {
        c->connecting = false;
        tg_histogram_observe(&c->stats->backend_connect,
                             (uv_now(&c->worker->loop) - c->connect_started_at) * 1000);
        if (c->ops->on_backend_ready && c->ops->on_backend_ready(c, c->session) < 0) {
            tg_conn_abort(c, "session refused backend");
            return;
        }
    }
    run_redispatch(c);
    flush_all(c);
}

static void backend_failed(tg_conn *c, const char *why)
{
    TG_STAT_ADD(c->stats->backend_connect_errors, 1);
    tg_log(TG_LOG_WARN, "backend connect failed", TG_FS("listener", c->lrt->cfg->name),
           TG_FS("backend", c->lrt->cfg->backend.address), TG_FS("error", why), TG_FEND);
    tg_conn_abort(c, "backend connect failed");
}

static void on_connect(uv_connect_t *req, int status)
{
    tg_conn *c = req->data;
    if (c->closing)
        return;
    if (status < 0) {
        backend_failed(c, uv_strerror(status));
        return;
    }
    tg_side *s = &c->side[TG_SIDE_BACKEND];
    uv_tcp_nodelay(&s->tcp, 1);
    read_start(c, TG_SIDE_BACKEND);
    if (c->lrt->backend_tls) {
        s->tls = tg_tls_new(c->lrt->backend_tls, c->lrt->backend_server_name);
        if (!s->tls) {
            tg_conn_abort(c, "out of memory");
            return;
        }
        pump_tls(c, TG_SIDE_BACKEND); /* sends the ClientHello */
        return;
    }
    side_ready(c, TG_SIDE_BACKEND);
}

static void start_connect(tg_conn *c, const struct sockaddr *addr)
{
    c->connect_req.data = c;
    int r = uv_tcp_connect(&c->connect_req, &c->side[TG_SIDE_BACKEND].tcp, addr, on_connect);
    if (r < 0)
        backend_failed(c, uv_strerror(r));
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    tg_conn *c = req->data;
    free(req);
    c->gai = NULL;
    if (c->closing) {
        uv_freeaddrinfo(res);
        if (--c->handles_open == 0) {
            tg_runtime_unref(c->rt);
            free(c);
        }
        return;
    }
    c->handles_open--;
    if (status < 0 || !res) {
        backend_failed(c, status < 0 ? uv_strerror(status) : "no address");
        uv_freeaddrinfo(res);
        return;
    }
    start_connect(c, res->ai_addr);
    uv_freeaddrinfo(res);
}

int tg_conn_connect_backend(tg_conn *c)
{
    tg_side *s = &c->side[TG_SIDE_BACKEND];
    if (s->handle_open)
        return TG_EINVAL;
    if (uv_tcp_init(&c->worker->loop, &s->tcp) < 0)
        return TG_EIO;
    s->tcp.data = c;
    s->handle_open = true;
    c->handles_open++;
    c->connecting = true;
    c->connect_started_at = uv_now(&c->worker->loop);
    arm_timer(c);
    if (c->lrt->backend_numeric) {
        start_connect(c, (const struct sockaddr *)&c->lrt->backend_addr);
        return 0;
    }
    c->gai = malloc(sizeof(*c->gai));
    if (!c->gai)
        return TG_ENOMEM;
    c->gai->data = c;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int r = uv_getaddrinfo(&c->worker->loop, c->gai, on_resolved, c->lrt->backend_host,
                           c->lrt->backend_port, &hints);
    if (r < 0) {
        free(c->gai);
        c->gai = NULL;
        return TG_EIO;
    }
    c->handles_open++; /* the resolver callback must run before the struct is freed */
    return 0;
}

/* ---- deadlines ------------------------------------------------------------ */

static uint64_t min_deadline(uint64_t a, uint64_t b)
{
    return a == 0 ? b : (b == 0 || a < b) ? a : b;
}

/*
 * The handshake deadline applies until the session is established and, on a TLS
 * client side, until the client's TLS handshake is complete: a session (tcp) may be
 * established as soon as the backend answers, and a client that never finishes its
 * handshake must not hold the connection (and its backend connection) forever.
 */
static bool handshaking(const tg_conn *c)
{
    const tg_tls *tls = c->side[TG_SIDE_CLIENT].tls;
    return !c->established || (tls && !tg_tls_handshake_done(tls));
}

/* The earliest deadline that applies now (0 = none). */
static uint64_t next_deadline(const tg_conn *c)
{
    const tg_timeouts_config *t = &c->lrt->cfg->timeouts;
    uint64_t d = 0;
    if (handshaking(c) && t->handshake_ms)
        d = min_deadline(d, c->accepted_at + t->handshake_ms);
    if (c->connecting && t->connect_ms)
        d = min_deadline(d, c->connect_started_at + t->connect_ms);
    if (t->idle_s)
        d = min_deadline(d, c->last_activity + (uint64_t)t->idle_s * 1000);
    if (c->finishing)
        d = min_deadline(d, c->finish_deadline);
    if (c->expiry_at)
        d = min_deadline(d, c->expiry_at);
    return d;
}

static void on_timer(uv_timer_t *timer)
{
    tg_conn *c = timer->data;
    uint64_t now = uv_now(timer->loop);
    const tg_timeouts_config *t = &c->lrt->cfg->timeouts;
    const char *why = NULL;
    if (c->expiry_at && now >= c->expiry_at && !c->finishing) {
        c->expiry_at = 0;
        if (c->ops->on_expire) {
            c->ops->on_expire(c, c->session); /* sends the protocol's error, then finishes */
            if (!c->closing && !c->finishing)
                tg_conn_finish(c);
            flush_all(c);
        } else {
            tg_conn_abort(c, "session expired");
        }
        if (!c->closing)
            arm_timer(c);
        return;
    }
    if (handshaking(c) && t->handshake_ms && now >= c->accepted_at + t->handshake_ms)
        why = "handshake timeout";
    else if (c->connecting && t->connect_ms && now >= c->connect_started_at + t->connect_ms)
        why = "backend connect timeout";
    else if (t->idle_s && now >= c->last_activity + (uint64_t)t->idle_s * 1000)
        why = "idle timeout";
    else if (c->finishing && now >= c->finish_deadline)
        why = "finish timeout";
    if (why) {
        if (c->connecting)
            TG_STAT_ADD(c->stats->backend_connect_errors, 1);
        tg_log(TG_LOG_INFO, "connection timed out", TG_FS("listener", c->lrt->cfg->name),
               TG_FS("peer", c->peer), TG_FS("reason", why), TG_FEND);
        tg_conn_abort(c, why);
        return;
    }
    arm_timer(c);
}

/* (Re)arms the one timer for the nearest deadline; activity only moves a deadline later,
 * so the timer is not touched per read: when it fires early it re-arms itself. */
static void arm_timer(tg_conn *c)
{
    uint64_t d = next_deadline(c);
    if (d == 0) {
        uv_timer_stop(&c->timer);
        return;
    }
    uint64_t now = uv_now(&c->worker->loop);
    uv_timer_start(&c->timer, on_timer, d > now ? d - now : 0, 0);
}

void tg_conn_established(tg_conn *c)
{
    c->established = true;
}

void tg_conn_set_expiry(tg_conn *c, uint64_t delay_ms)
{
    c->expiry_at = delay_ms ? uv_now(&c->worker->loop) + delay_ms : 0;
    if (!c->closing)
        arm_timer(c);
}

/* ---- lifecycle ------------------------------------------------------------ */

static void on_handle_closed(uv_handle_t *h)
{
    tg_conn *c = h->data;
    if (--c->handles_open > 0)
        return;
    tg_runtime_unref(c->rt);
    free(c);
}

static void side_release(tg_side *s)
{
    stage_clear(s);
    free(s->stage);
    s->stage = NULL;
    if (s->copy)
        tg_chunk_unref(s->copy);
    s->copy = NULL;
    if (s->rd)
        tg_chunk_unref(s->rd);
    s->rd = NULL;
    tg_tls_free(s->tls);
    s->tls = NULL;
}

static void conn_close(tg_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    tg_worker *w = c->worker;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->n_conns--;
    TG_STAT_SUB(c->stats->conns_open, 1);
    if (c->counted)
        atomic_fetch_sub_explicit(c->lrt->active, 1, memory_order_relaxed);
    if (c->ops->on_close)
        c->ops->on_close(c, c->session);
    if (c->gai)
        uv_cancel((uv_req_t *)c->gai);
    for (int i = 0; i < 2; i++) {
        tg_side *s = &c->side[i];
        if (s->handle_open)
            uv_close((uv_handle_t *)&s->tcp, on_handle_closed);
    }
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    /* Write callbacks (cancelled by uv_close) release their own chunks; the rest goes now. */
    side_release(&c->side[0]);
    side_release(&c->side[1]);
    tg_worker_conn_closed(w);
}

void tg_conn_abort(tg_conn *c, const char *reason)
{
    if (c->closing)
        return;
    if (tg_log_enabled(TG_LOG_DEBUG))
        tg_log(TG_LOG_DEBUG, "connection closed", TG_FS("listener", c->lrt->cfg->name),
               TG_FS("peer", c->peer), TG_FS("reason", reason), TG_FEND);
    conn_close(c);
}

void tg_conn_finish(tg_conn *c)
{
    if (c->closing || c->finishing)
        return;
    c->finishing = true;
    for (int i = 0; i < 2; i++) {
        tg_side *s = &c->side[i];
        if (s->reading) {
            uv_read_stop((uv_stream_t *)&s->tcp);
            s->reading = false;
        }
        s->paused = false;
    }
    c->finish_deadline = uv_now(&c->worker->loop) + TG_FINISH_DEADLINE_MS;
    flush_all(c);
    arm_timer(c);
    check_done(c);
}

void tg_conn_abort_all(tg_worker *w)
{
    while (w->conns)
        tg_conn_abort(w->conns, "shutting down");
}

static void format_peer(tg_conn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (uv_tcp_getpeername(&c->side[TG_SIDE_CLIENT].tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            uv_ip4_name(a, ip, sizeof(ip));
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            uv_ip6_name(a, ip, sizeof(ip));
            port = ntohs(a->sin6_port);
        }
    }
    snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, port);
}

void tg_conn_accept(tg_listener *l)
{
    tg_worker *w = l->worker;
    const tg_listener_rt *lrt = l->rt;
    const tg_protocol_ops *ops = lrt->ops;
    tg_conn *c = calloc(1, sizeof(*c) + ops->session_size);
    if (!c) {
        tg_log(TG_LOG_ERROR, "out of memory accepting a connection", TG_FS("listener", l->name),
               TG_FEND);
        return;
    }
    c->worker = w;
    c->rt = w->rt;
    tg_runtime_ref(c->rt);
    c->lrt = lrt;
    c->ops = ops;
    c->stats = l->stats;
    tg_side *cl = &c->side[TG_SIDE_CLIENT];
    if (uv_tcp_init(&w->loop, &cl->tcp) < 0) {
        tg_runtime_unref(c->rt);
        free(c);
        return;
    }
    cl->tcp.data = c;
    cl->handle_open = true;
    cl->ready = true;
    if (uv_timer_init(&w->loop, &c->timer) < 0) {
        /* Close the one handle we have; the struct goes in its callback. */
        c->handles_open = 1;
        c->closing = true;
        uv_close((uv_handle_t *)&cl->tcp, on_handle_closed);
        return;
    }
    c->timer.data = c;
    c->handles_open = 2;

    /* Link first so that every path below can use conn_close(). */
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->n_conns++;
    TG_STAT_ADD(c->stats->conns_open, 1);
    TG_STAT_ADD(c->stats->conns_total, 1);
    c->accepted_at = c->last_activity = uv_now(&w->loop);

    if (uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&cl->tcp) < 0) {
        conn_close(c);
        return;
    }
    int64_t n = atomic_fetch_add_explicit(lrt->active, 1, memory_order_relaxed);
    c->counted = true;
    if (n >= (int64_t)lrt->cfg->max_connections) {
        TG_STAT_ADD(c->stats->messages_rejected[TG_REJECT_max_connections], 1);
        tg_log(TG_LOG_WARN, "max_connections reached", TG_FS("listener", l->name),
               TG_FI("max_connections", lrt->cfg->max_connections), TG_FEND);
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&cl->tcp, 1);
    format_peer(c);
    arm_timer(c);

    if (lrt->client_tls && !ops->own_tls_upgrade) {
        if (lrt->cfg->tls.mode == TG_TLS_REQUIRE) {
            if (start_client_tls_now(c) < 0) {
                tg_conn_abort(c, "tls setup failed");
                return;
            }
        } else {
            cl->tls_sniff = true;
        }
    }
    read_start(c, TG_SIDE_CLIENT);
    if (c->closing)
        return;
    if (ops->on_open && ops->on_open(c, c->session) < 0) {
        tg_conn_abort(c, "session refused connection");
        return;
    }
    flush_all(c);
}

const char *tg_conn_peer(const tg_conn *c)
{
    return c->peer;
}

const tg_listener_config *tg_conn_config(const tg_conn *c)
{
    return c->lrt->cfg;
}

tg_listener_stats *tg_conn_stats(const tg_conn *c)
{
    return c->stats;
}

void *tg_conn_lrt_state(const tg_conn *c)
{
    return c->lrt->proto_state;
}

const tg_runtime *tg_conn_runtime(const tg_conn *c)
{
    return c->rt;
}

tg_worker *tg_conn_worker(const tg_conn *c)
{
    return c->worker;
}
