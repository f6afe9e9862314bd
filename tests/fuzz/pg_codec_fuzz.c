/*
 * libFuzzer target for the PostgreSQL codec (protocols/postgres/codec.c).
 *
 *   data --exact-size heap copy--> tg_pg_decode_startup --(ok)--> rebuild, compare bytes
 *                              \                           \--> typed stream after it
 *                               \--> loop of tg_pg_decode (two maxima) --> every parse_* view
 *                                                                      --> rebuild, compare
 *
 * Invariants: decoders return > 0, TG_NEED_MORE, TG_EPROTO or TG_ETOOBIG; a
 * consumed count is <= the bytes given (and <= the maximum + 1); every slice
 * lies inside the consumed frame; every proper prefix of a decoded frame needs
 * more, and a prefix of a refused input needs more or gives the same error;
 * startup parameters of an accepted 3.x packet iterate without error; a view
 * that accepts a body re-encodes to the same body (Query, Parse, Notification,
 * Auth, ReadyForQuery, BackendKeyData, ParameterStatus, password, cancel,
 * StartupMessage byte for byte; ErrorResponse field for field).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/postgres/codec.h"
#include "proxy/byteorder.h"
#include "proxy/error.h"

#include "fuzz_support.h"

#define MAX_PAIRS 2500 /* a 10000-byte packet holds at most 2498 pairs */

/* A NUL-terminated heap copy of a slice (views' strings hold no NUL). */
static char *cstr(tg_slice s)
{
    char *c = malloc(s.len + 1);
    check(c != NULL);
    if (s.len)
        memcpy(c, s.base, s.len);
    c[s.len] = 0;
    return c;
}

/* out holds exactly one typed message of `type` whose body equals `body`. */
static void check_rebuilt(const tg_buf *out, uint8_t type, tg_slice body)
{
    check(out->len == body.len + 5);
    check(out->data[0] == type);
    check(tg_load_be32(out->data + 1) == body.len + 4);
    check(body.len == 0 || memcmp(out->data + 5, body.base, body.len) == 0);
}

static int slice_eq(tg_slice a, tg_slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.base, b.base, a.len) == 0);
}

/* ---- startup ---- */

static ssize_t decode_startup(const uint8_t *p, size_t n, void *ctx)
{
    (void)ctx;
    tg_pg_startup s;
    return tg_pg_decode_startup(p, n, TG_PG_MAX_STARTUP, &s);
}

static void rebuild_startup(const uint8_t *buf, const tg_pg_startup *s, tg_buf *out)
{
    const char *names[MAX_PAIRS], *values[MAX_PAIRS];
    size_t n = 0;
    tg_slice cur = s->params, name, value;
    int rc;
    while ((rc = tg_pg_startup_next(&cur, &name, &value)) == 1) {
        check(name.len > 0);
        check_slice(name, s->params.base, s->params.len);
        check_slice(value, s->params.base, s->params.len);
        if (n < MAX_PAIRS) {
            names[n] = cstr(name);
            values[n] = cstr(value);
        }
        n++;
    }
    check(rc == 0); /* decode_startup validated the pairs */
    if (n <= MAX_PAIRS) {
        out->len = 0;
        check(tg_pg_build_startup(out, s->code, names, values, n) == 0);
        check(out->len == s->size && memcmp(out->data, buf, s->size) == 0);
    }
    for (size_t i = 0; i < n && i < MAX_PAIRS; i++) {
        free((void *)names[i]);
        free((void *)values[i]);
    }
}

static ssize_t fuzz_startup(const uint8_t *buf, size_t size, tg_buf *out)
{
    tg_pg_startup s;
    ssize_t rc = tg_pg_decode_startup(buf, size, TG_PG_MAX_STARTUP, &s);
    check(rc > 0 || rc == TG_NEED_MORE || rc == TG_EPROTO || rc == TG_ETOOBIG);
    if (rc > 0) {
        size_t n = (size_t)rc;
        check(n <= size && n <= TG_PG_MAX_STARTUP && n >= 8 && s.size == n);
        check(tg_load_be32(buf) == n && tg_load_be32(buf + 4) == s.code);
        check_slice(s.params, buf + 8, n - 8);
        if (s.code == TG_PG_SSL_REQUEST_CODE || s.code == TG_PG_GSSENC_REQUEST_CODE) {
            check(n == 8);
        } else if (s.code == TG_PG_CANCEL_REQUEST_CODE) {
            check(n == 16);
            out->len = 0;
            check(tg_pg_build_cancel(out, (int32_t)s.cancel_pid, (int32_t)s.cancel_key) == 0);
            check(out->len == 16 && memcmp(out->data, buf, 16) == 0);
        } else if (s.code >> 16 == 3) {
            check(buf[n - 1] == 0 && s.params.base == buf + 8 && s.params.len == n - 9);
            rebuild_startup(buf, &s, out);
        }
    }
    check_prefixes(decode_startup, NULL, buf, rc > 0 ? (size_t)rc : size, rc, 128);
    return rc;
}

/* ---- typed messages and their views ---- */

static void fuzz_views(const tg_pg_msg *m, tg_buf *out)
{
    const uint8_t *b = m->body.base;
    size_t bl = m->body.len;
    tg_pg_msg t = *m;

    tg_slice sql;
    t.type = PqMsg_Query;
    if (tg_pg_parse_query(&t, &sql) == 0) {
        check_slice(sql, b, bl);
        out->len = 0;
        check(tg_pg_build_query(out, (const char *)sql.base, sql.len) == 0);
        check_rebuilt(out, PqMsg_Query, m->body);
    }

    tg_pg_parse p;
    t.type = PqMsg_Parse;
    if (tg_pg_parse_parse(&t, &p) == 0) {
        check_slice(p.name, b, bl);
        check_slice(p.query, b, bl);
        check_slice(p.param_types, b, bl);
        out->len = 0;
        check(tg_pg_build_parse(out, p.name, (const char *)p.query.base, p.query.len,
                                p.param_types) == 0);
        check_rebuilt(out, PqMsg_Parse, m->body);
    }

    tg_pg_error_fields f;
    t.type = PqMsg_ErrorResponse;
    if (tg_pg_parse_error(&t, &f) == 0) {
        check_slice(f.severity, b, bl);
        check_slice(f.severity_plain, b, bl);
        check_slice(f.sqlstate, b, bl);
        check_slice(f.message, b, bl);
        /* The four fields through the primitives... */
        tg_pg_builder bld;
        out->len = 0;
        tg_pg_begin(&bld, out, PqMsg_NoticeResponse);
        const uint8_t codes[4] = {'S', 'V', 'C', 'M'};
        const tg_slice vals[4] = {f.severity, f.severity_plain, f.sqlstate, f.message};
        for (size_t i = 0; i < 4; i++) {
            tg_pg_put_u8(&bld, codes[i]);
            tg_pg_put_cstr(&bld, (const char *)vals[i].base, vals[i].len);
        }
        tg_pg_put_u8(&bld, 0);
        check(tg_pg_end(&bld) == 0);
        tg_pg_msg again;
        check(tg_pg_decode(out->data, out->len, UINT32_MAX, &again) == (ssize_t)out->len);
        tg_pg_error_fields g;
        check(tg_pg_parse_error(&again, &g) == 0);
        check(slice_eq(f.severity, g.severity) && slice_eq(f.severity_plain, g.severity_plain) &&
              slice_eq(f.sqlstate, g.sqlstate) && slice_eq(f.message, g.message));
        /* ...and through the convenience builder (V repeats S). */
        char *sev = cstr(f.severity), *code = cstr(f.sqlstate), *msg = cstr(f.message);
        out->len = 0;
        check(tg_pg_build_error(out, PqMsg_ErrorResponse, sev, code, msg) == 0);
        check(tg_pg_decode(out->data, out->len, UINT32_MAX, &again) == (ssize_t)out->len);
        check(tg_pg_parse_error(&again, &g) == 0);
        check(slice_eq(f.severity, g.severity) && slice_eq(f.severity, g.severity_plain) &&
              slice_eq(f.sqlstate, g.sqlstate) && slice_eq(f.message, g.message));
        free(sev);
        free(code);
        free(msg);
    }

    tg_pg_notification n;
    t.type = PqMsg_NotificationResponse;
    if (tg_pg_parse_notification(&t, &n) == 0) {
        check_slice(n.channel, b, bl);
        check_slice(n.payload, b, bl);
        out->len = 0;
        check(tg_pg_build_notification(out, n.pid, n.channel, n.payload) == 0);
        check_rebuilt(out, PqMsg_NotificationResponse, m->body);
    }

    int32_t code;
    tg_slice data;
    t.type = PqMsg_AuthenticationRequest;
    if (tg_pg_parse_auth(&t, &code, &data) == 0) {
        check_slice(data, b, bl);
        out->len = 0;
        check(tg_pg_build_auth(out, code, data.base, data.len) == 0);
        check_rebuilt(out, PqMsg_AuthenticationRequest, m->body);
    }

    char status;
    t.type = PqMsg_ReadyForQuery;
    if (tg_pg_parse_ready(&t, &status) == 0) {
        check(status == 'I' || status == 'T' || status == 'E');
        out->len = 0;
        check(tg_pg_build_ready(out, status) == 0);
        check_rebuilt(out, PqMsg_ReadyForQuery, m->body);
    }

    int32_t pid, key;
    t.type = PqMsg_BackendKeyData;
    if (tg_pg_parse_backend_key(&t, &pid, &key) == 0) {
        out->len = 0;
        check(tg_pg_build_backend_key(out, pid, key) == 0);
        check_rebuilt(out, PqMsg_BackendKeyData, m->body);
    }

    tg_slice name, value;
    t.type = PqMsg_ParameterStatus;
    if (tg_pg_parse_parameter_status(&t, &name, &value) == 0) {
        check_slice(name, b, bl);
        check_slice(value, b, bl);
        char *cn = cstr(name), *cv = cstr(value);
        out->len = 0;
        check(tg_pg_build_parameter_status(out, cn, cv) == 0);
        check_rebuilt(out, PqMsg_ParameterStatus, m->body);
        free(cn);
        free(cv);
    }

    tg_slice pw;
    t.type = PqMsg_PasswordMessage;
    if (tg_pg_parse_password(&t, &pw) == 0) {
        check_slice(pw, b, bl);
        check(pw.len + 1 == bl);
        out->len = 0;
        check(tg_pg_build_password(out, b, bl) == 0);
        check_rebuilt(out, PqMsg_PasswordMessage, m->body);
    }

    /* A DataRow walk through the reader: it never leaves the body. */
    tg_pg_reader r = tg_pg_reader_init(m->body);
    int16_t cols = tg_pg_get_i16(&r);
    for (int16_t i = 0; i < cols && !r.failed; i++) {
        int32_t len = tg_pg_get_i32(&r);
        if (len >= 0) {
            tg_slice v = tg_pg_get_bytes(&r, len);
            check_slice(v, b, bl);
        }
        check(r.p >= b && r.p <= r.end);
    }
    check(r.p >= b && r.p <= r.end);

    /* The known-type tables are exactly the documented sets. */
    check(tg_pg_frontend_type_known(m->type) ==
          (m->type != 0 && strchr("BCDEFHPQSXfpdc", m->type) != NULL));
    check(tg_pg_backend_type_known(m->type) ==
          (m->type != 0 && strchr("123ACDEGHIKNRSTVWZnstvdc", m->type) != NULL));
}

static ssize_t decode_msg(const uint8_t *p, size_t n, void *max_len)
{
    tg_pg_msg m;
    return tg_pg_decode(p, n, *(const uint32_t *)max_len, &m);
}

static void fuzz_stream(const uint8_t *buf, size_t size, uint32_t max_len, tg_buf *out)
{
    size_t off = 0;
    bool first = true;
    while (off < size) {
        tg_pg_msg m;
        ssize_t rc = tg_pg_decode(buf + off, size - off, max_len, &m);
        check(rc > 0 || rc == TG_NEED_MORE || rc == TG_EPROTO || rc == TG_ETOOBIG);
        if (first) {
            /* Prefixes of the first frame (exact copies): NEED_MORE or the same error. */
            check_prefixes(decode_msg, &max_len, buf + off, rc > 0 ? (size_t)rc : size - off, rc,
                           64);
            first = false;
        }
        if (rc <= 0) {
            if (rc < 0)
                check(size - off >= 5); /* errors only once the length is in */
            return;
        }
        size_t n = (size_t)rc;
        check(n <= size - off && n >= 5);
        check(m.size == n && m.type == buf[off]);
        check(m.body.base == buf + off + 5 && m.body.len == n - 5);
        check(tg_load_be32(buf + off + 1) == n - 1 && n - 1 <= max_len);
        fuzz_views(&m, out);
        off += n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = dup_exact(data, size);
    tg_buf out = {0};

    ssize_t rc = fuzz_startup(buf, size, &out);
    if (rc > 0) /* a client's stream: first packet, then typed messages */
        fuzz_stream(buf + rc, size - (size_t)rc, 1 << 20, &out);
    fuzz_stream(buf, size, 1 << 20, &out);
    fuzz_stream(buf, size, 64, &out);

    tg_buf_free(&out);
    free(buf);
    return 0;
}
