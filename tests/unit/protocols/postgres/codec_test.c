/*
 * Unit tests for protocols/postgres/codec.c.
 *
 *   real frames --split at every byte--> decoders (NEED_MORE until whole, then the same result)
 *   bad lengths --> refused after exactly the bytes that carry them
 *   bodies --> parsed views (valid and malformed)
 *   builders --> decode --> parse: decode(encode(x)) == x; failed builds leave the buffer alone
 *
 * Every decoder call works on an exact-size heap copy of the prefix, so a
 * read past the bytes handed in shows up under AddressSanitizer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "protocols/postgres/codec.h"
#include "proxy/error.h"

#include "tests/unit/support/codec_input.h"

/* ---- helpers ---- */

typedef struct bytes {
    uint8_t b[16384];
    size_t n;
} bytes;

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A typed frame: type, length = 4 + body, body. */
static bytes *typed(uint8_t type, const void *body, size_t len)
{
    static bytes f;
    assert_true(len + 5 <= sizeof(f.b));
    f.b[0] = type;
    put32(f.b + 1, (uint32_t)(len + 4));
    if (len)
        memcpy(f.b + 5, body, len);
    f.n = len + 5;
    return &f;
}
#define TYPED(t, lit) typed((t), (lit), sizeof(lit) - 1)

/* An untyped first packet: length = 8 + body, code, body. */
static bytes *untyped(uint32_t code, const void *body, size_t len)
{
    static bytes f;
    assert_true(len + 8 <= sizeof(f.b));
    put32(f.b, (uint32_t)(len + 8));
    put32(f.b + 4, code);
    if (len)
        memcpy(f.b + 8, body, len);
    f.n = len + 8;
    return &f;
}
#define UNTYPED(c, lit) untyped((c), (lit), sizeof(lit) - 1)

/* The decoders with a maximum length (ctx: a uint32_t). */
static ssize_t decode_msg(const uint8_t *p, size_t n, void *max)
{
    tg_pg_msg m;
    return tg_pg_decode(p, n, *(const uint32_t *)max, &m);
}

static ssize_t decode_startup(const uint8_t *p, size_t n, void *max)
{
    tg_pg_startup s;
    return tg_pg_decode_startup(p, n, *(const uint32_t *)max, &s);
}

static ssize_t decode_copy(const uint8_t *p, size_t n, uint32_t max)
{
    return decode_exact(decode_msg, &max, p, n);
}

static ssize_t startup_copy(const uint8_t *p, size_t n, uint32_t max)
{
    return decode_exact(decode_startup, &max, p, n);
}

/*
 * A valid typed frame: every proper prefix needs more, the whole frame (alone
 * and followed by more bytes) decodes to its size, type and body.
 */
static tg_pg_msg expect_frame(const uint8_t *p, size_t n, uint32_t max)
{
    expect_prefixes(decode_msg, &max, p, n, n, (ssize_t)n);
    uint8_t *more = malloc(n + 7);
    assert_non_null(more);
    memcpy(more, p, n);
    memcpy(more + n, "Q\0\0\0\x04xy", 7);
    tg_pg_msg m;
    assert_int_equal(tg_pg_decode(more, n + 7, max, &m), (ssize_t)n);
    assert_int_equal(m.type, p[0]);
    assert_int_equal(m.size, n);
    assert_ptr_equal(m.body.base, more + 5);
    assert_int_equal(m.body.len, n - 5);
    free(more);
    tg_pg_msg out;
    assert_int_equal(tg_pg_decode(p, n, max, &out), (ssize_t)n);
    return out;
}

/* An invalid typed frame: NEED_MORE below `at` bytes, then err for every longer prefix. */
static void expect_frame_error(const uint8_t *p, size_t n, uint32_t max, size_t at, ssize_t err)
{
    expect_prefixes(decode_msg, &max, p, n, at, err);
}

static tg_pg_startup expect_startup(const uint8_t *p, size_t n, uint32_t max)
{
    expect_prefixes(decode_startup, &max, p, n, n, (ssize_t)n);
    tg_pg_startup s;
    assert_int_equal(tg_pg_decode_startup(p, n, max, &s), (ssize_t)n);
    assert_int_equal(s.size, n);
    /* Bytes after the packet (the client's next message) do not change the result. */
    uint8_t *more = malloc(n + 5);
    assert_non_null(more);
    memcpy(more, p, n);
    memcpy(more + n, "Q\0\0\0\x04", 5);
    tg_pg_startup s2;
    assert_int_equal(tg_pg_decode_startup(more, n + 5, max, &s2), (ssize_t)n);
    assert_int_equal(s2.code, s.code);
    assert_int_equal(s2.params.len, s.params.len);
    free(more);
    return s;
}

static void expect_startup_error(const uint8_t *p, size_t n, uint32_t max, size_t at, ssize_t err)
{
    expect_prefixes(decode_startup, &max, p, n, at, err);
}

static tg_pg_msg msg_of(uint8_t type, const void *body, size_t len)
{
    return (tg_pg_msg){type, {(const uint8_t *)body, len}, len + 5};
}
#define MSG(t, lit) msg_of((t), (lit), sizeof(lit) - 1)

static void assert_slice_str(tg_slice s, const char *str)
{
    if (!tg_slice_eq_str(s, str))
        fail_msg("slice \"%.*s\" != \"%s\"", (int)s.len, s.base ? (const char *)s.base : "", str);
}

/* ---- framing ---- */

static const uint8_t parse_body[] = {'s', '1', 0, 'S', 'E', 'L', 'E', 'C', 'T', ' ',
                                     '$', '1', 0, 0,   1,   0,   0,   0,   23};
static const uint8_t bind_body[] = {0, 's', '1', 0, 0, 0, 0, 1, 0, 0, 0, 1, '1', 0, 0};
static const uint8_t describe_body[] = {'P', 0};
static const uint8_t execute_body[] = {0, 0, 0, 0, 0};
static const uint8_t datarow_body[] = {0, 2, 0, 0, 0, 1, '1', 0xff, 0xff, 0xff, 0xff};
static const uint8_t error_body[] = "SERROR\0VERROR\0C42501\0Mtenantgate: denied\0\0";

static void test_decode_valid_frames(void **state)
{
    (void)state;
    struct {
        uint8_t type;
        const uint8_t *body;
        size_t len;
    } frames[] = {
        {'Q', (const uint8_t *)"SELECT 1", 9},
        {'P', parse_body, sizeof(parse_body)},
        {'B', bind_body, sizeof(bind_body)},
        {'D', describe_body, sizeof(describe_body)},
        {'E', execute_body, sizeof(execute_body)},
        {'S', NULL, 0},
        {'H', NULL, 0},
        {'X', NULL, 0},
        {'D', datarow_body, sizeof(datarow_body)},
        {'E', error_body, sizeof(error_body) - 1},
        {'Z', (const uint8_t *)"I", 1},
    };
    for (size_t i = 0; i < sizeof(frames) / sizeof(frames[0]); i++) {
        bytes *f = typed(frames[i].type, frames[i].body, frames[i].len);
        bytes copy = *f;
        tg_pg_msg m = expect_frame(copy.b, copy.n, 1 << 20);
        assert_int_equal(m.type, frames[i].type);
        assert_int_equal(m.body.len, frames[i].len);
        if (frames[i].len)
            assert_memory_equal(m.body.base, frames[i].body, frames[i].len);
    }
}

static void test_decode_pipeline(void **state)
{
    (void)state;
    uint8_t in[256];
    size_t n = 0;
    const uint8_t types[] = {'P', 'B', 'D', 'E', 'S'};
    const uint8_t *bodies[] = {parse_body, bind_body, describe_body, execute_body, NULL};
    const size_t lens[] = {sizeof(parse_body), sizeof(bind_body), sizeof(describe_body),
                           sizeof(execute_body), 0};
    for (size_t i = 0; i < 5; i++) {
        bytes *f = typed(types[i], bodies[i], lens[i]);
        memcpy(in + n, f->b, f->n);
        n += f->n;
    }
    size_t off = 0, k = 0;
    while (off < n) {
        tg_pg_msg m;
        ssize_t rc = tg_pg_decode(in + off, n - off, 1 << 20, &m);
        assert_true(rc > 0);
        assert_int_equal(m.type, types[k]);
        assert_int_equal(m.body.len, lens[k]);
        assert_true(tg_pg_frontend_type_known(m.type));
        off += (size_t)rc;
        k++;
    }
    assert_int_equal(k, 5);
    assert_int_equal(off, n);
}

static void test_decode_length_below_4(void **state)
{
    (void)state;
    for (uint32_t len = 0; len < 4; len++) {
        uint8_t f[16] = {'Q'};
        put32(f + 1, len);
        expect_frame_error(f, sizeof(f), 1 << 20, 5, TG_EPROTO);
    }
    /* Length exactly 4: an empty body. */
    uint8_t sync[5] = {'S', 0, 0, 0, 4};
    tg_pg_msg m = expect_frame(sync, 5, 1 << 20);
    assert_int_equal(m.body.len, 0);
}

static void test_decode_too_big(void **state)
{
    (void)state;
    /* Announced length above the maximum: refused after the 5 header bytes. */
    uint8_t f[70] = {'Q'};
    put32(f + 1, 65);
    expect_frame_error(f, sizeof(f), 64, 5, TG_ETOOBIG);
    /* Exactly the maximum is fine. */
    memset(f + 5, 'x', 59);
    f[64] = 0;
    put32(f + 1, 64);
    tg_pg_msg m = expect_frame(f, 65, 64);
    assert_int_equal(m.body.len, 60);
    /* A maximum of 0 refuses even an empty body. */
    uint8_t sync[5] = {'S', 0, 0, 0, 4};
    expect_frame_error(sync, 5, 0, 5, TG_ETOOBIG);
}

static void test_decode_huge_length(void **state)
{
    (void)state;
    uint8_t f[5] = {'D'};
    put32(f + 1, 0x7fffffff);
    expect_frame_error(f, 5, 64u << 20, 5, TG_ETOOBIG);
    /* Allowed by a permissive maximum: it waits, it does not fail. */
    assert_int_equal(decode_copy(f, 5, UINT32_MAX), TG_NEED_MORE);
    put32(f + 1, 0x80000000u);
    expect_frame_error(f, 5, UINT32_MAX, 5, TG_EPROTO);
    put32(f + 1, 0xffffffffu);
    expect_frame_error(f, 5, UINT32_MAX, 5, TG_EPROTO);
    expect_frame_error(f, 5, 64, 5, TG_EPROTO);
}

/* ---- startup ---- */

static void test_startup_ssl_gssenc(void **state)
{
    (void)state;
    bytes ssl = *untyped(TG_PG_SSL_REQUEST_CODE, NULL, 0);
    tg_pg_startup s = expect_startup(ssl.b, ssl.n, TG_PG_MAX_STARTUP);
    assert_int_equal(s.code, TG_PG_SSL_REQUEST_CODE);
    assert_int_equal(s.size, 8);
    assert_int_equal(s.params.len, 0);
    static const uint8_t wire[] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
    assert_memory_equal(ssl.b, wire, 8);

    bytes gss = *untyped(TG_PG_GSSENC_REQUEST_CODE, NULL, 0);
    s = expect_startup(gss.b, gss.n, TG_PG_MAX_STARTUP);
    assert_int_equal(s.code, TG_PG_GSSENC_REQUEST_CODE);

    /* Wrong sizes are refused once the code is in, without waiting for the body. */
    bytes bad = *UNTYPED(TG_PG_SSL_REQUEST_CODE, "abcd");
    expect_startup_error(bad.b, bad.n, TG_PG_MAX_STARTUP, 8, TG_EPROTO);
    bad = *UNTYPED(TG_PG_GSSENC_REQUEST_CODE, "a");
    expect_startup_error(bad.b, bad.n, TG_PG_MAX_STARTUP, 8, TG_EPROTO);
}

static void test_startup_cancel(void **state)
{
    (void)state;
    uint8_t body[8];
    put32(body, 4242);
    put32(body + 4, 0xdeadbeef);
    bytes c = *untyped(TG_PG_CANCEL_REQUEST_CODE, body, 8);
    tg_pg_startup s = expect_startup(c.b, c.n, TG_PG_MAX_STARTUP);
    assert_int_equal(s.code, TG_PG_CANCEL_REQUEST_CODE);
    assert_int_equal(s.size, 16);
    assert_int_equal(s.cancel_pid, 4242);
    assert_int_equal(s.cancel_key, 0xdeadbeefu);

    bytes bad = *untyped(TG_PG_CANCEL_REQUEST_CODE, body, 4);
    expect_startup_error(bad.b, bad.n, TG_PG_MAX_STARTUP, 8, TG_EPROTO);
    uint8_t longer[12] = {0};
    bad = *untyped(TG_PG_CANCEL_REQUEST_CODE, longer, 12);
    expect_startup_error(bad.b, bad.n, TG_PG_MAX_STARTUP, 8, TG_EPROTO);
}

static const char startup_params[] = "user\0alice\0database\0app\0application_name\0psql\0";

static void test_startup_v3_params(void **state)
{
    (void)state;
    bytes p =
        *UNTYPED(TG_PG_PROTOCOL(3, 0), "user\0alice\0database\0app\0application_name\0psql\0\0");
    tg_pg_startup s = expect_startup(p.b, p.n, TG_PG_MAX_STARTUP);
    assert_int_equal(s.code, 196608);
    assert_int_equal(s.params.len, sizeof(startup_params) - 1);
    assert_memory_equal(s.params.base, startup_params, s.params.len);

    tg_slice cur = s.params, name, value;
    assert_int_equal(tg_pg_startup_next(&cur, &name, &value), 1);
    assert_slice_str(name, "user");
    assert_slice_str(value, "alice");
    assert_int_equal(tg_pg_startup_next(&cur, &name, &value), 1);
    assert_slice_str(name, "database");
    assert_slice_str(value, "app");
    assert_int_equal(tg_pg_startup_next(&cur, &name, &value), 1);
    assert_slice_str(name, "application_name");
    assert_slice_str(value, "psql");
    assert_int_equal(tg_pg_startup_next(&cur, &name, &value), 0);
    assert_int_equal(tg_pg_startup_next(&cur, &name, &value), 0);

    /* No parameters at all: only the final NUL. */
    bytes empty = *untyped(TG_PG_PROTOCOL(3, 0), "", 1);
    s = expect_startup(empty.b, empty.n, TG_PG_MAX_STARTUP);
    assert_int_equal(s.params.len, 0);
    cur = s.params;
    assert_int_equal(tg_pg_startup_next(&cur, &name, &value), 0);

    /* An empty value is a value. */
    bytes ev = *UNTYPED(TG_PG_PROTOCOL(3, 0), "options\0\0\0");
    s = expect_startup(ev.b, ev.n, TG_PG_MAX_STARTUP);
    cur = s.params;
    assert_int_equal(tg_pg_startup_next(&cur, &name, &value), 1);
    assert_slice_str(name, "options");
    assert_int_equal(value.len, 0);
    assert_int_equal(tg_pg_startup_next(&cur, &name, &value), 0);
}

static void test_startup_other_versions(void **state)
{
    (void)state;
    /* 3.2 (and _pq_ options) decode like 3.0; the session negotiates. */
    bytes p = *UNTYPED(TG_PG_PROTOCOL(3, 2), "user\0bob\0_pq_.x\0y\0\0");
    tg_pg_startup s = expect_startup(p.b, p.n, TG_PG_MAX_STARTUP);
    assert_int_equal(s.code, 0x00030002);
    /* Other majors come back with their code and unvalidated params. */
    p = *UNTYPED(TG_PG_PROTOCOL(2, 0), "garbage-without-nul");
    s = expect_startup(p.b, p.n, TG_PG_MAX_STARTUP);
    assert_int_equal(s.code, 0x00020000);
    assert_int_equal(s.params.len, 19);
    p = *untyped(TG_PG_PROTOCOL(4, 0), NULL, 0);
    s = expect_startup(p.b, p.n, TG_PG_MAX_STARTUP);
    assert_int_equal(s.code, 0x00040000);
    assert_int_equal(s.params.len, 0);
    /* An unknown request code is returned as such. */
    p = *untyped(80877199, NULL, 0);
    s = expect_startup(p.b, p.n, TG_PG_MAX_STARTUP);
    assert_int_equal(s.code, 80877199);
}

static void test_startup_malformed(void **state)
{
    (void)state;
    const uint32_t v3 = TG_PG_PROTOCOL(3, 0);
    /* Missing final NUL (the last byte is a value's NUL, so the pair list ends early). */
    bytes p = *UNTYPED(v3, "user\0alice\0");
    expect_startup_error(p.b, p.n, TG_PG_MAX_STARTUP, p.n, TG_EPROTO);
    /* Not NUL-terminated at all. */
    p = *UNTYPED(v3, "user\0alice");
    expect_startup_error(p.b, p.n, TG_PG_MAX_STARTUP, p.n, TG_EPROTO);
    /* Odd pair: a name without its value. */
    p = *UNTYPED(v3, "user\0alice\0database\0\0");
    expect_startup_error(p.b, p.n, TG_PG_MAX_STARTUP, p.n, TG_EPROTO);
    /* Empty name inside the list (two terminators, or a leading empty name). */
    p = *UNTYPED(v3, "user\0alice\0\0\0");
    expect_startup_error(p.b, p.n, TG_PG_MAX_STARTUP, p.n, TG_EPROTO);
    p = *UNTYPED(v3, "\0alice\0\0");
    expect_startup_error(p.b, p.n, TG_PG_MAX_STARTUP, p.n, TG_EPROTO);
    /* A 3.x packet with no room for the final NUL: refused at the code. */
    p = *untyped(v3, NULL, 0);
    expect_startup_error(p.b, p.n, TG_PG_MAX_STARTUP, 8, TG_EPROTO);
    /* Length below 8: refused at the length. */
    for (uint32_t len = 0; len < 8; len++) {
        uint8_t f[12] = {0};
        put32(f, len);
        put32(f + 4, v3);
        expect_startup_error(f, sizeof(f), TG_PG_MAX_STARTUP, 4, TG_EPROTO);
    }
    /* Huge and negative lengths. */
    uint8_t f[8];
    put32(f, 0x80000000u);
    put32(f + 4, v3);
    expect_startup_error(f, 8, TG_PG_MAX_STARTUP, 4, TG_EPROTO);
    put32(f, 0x7fffffff);
    expect_startup_error(f, 8, TG_PG_MAX_STARTUP, 4, TG_ETOOBIG);
}

static void test_startup_oversized(void **state)
{
    (void)state;
    /* The maximum is clamped to TG_PG_MAX_STARTUP whatever the caller asks for. */
    uint8_t f[8];
    put32(f, TG_PG_MAX_STARTUP + 1);
    put32(f + 4, TG_PG_PROTOCOL(3, 0));
    expect_startup_error(f, 8, UINT32_MAX, 4, TG_ETOOBIG);
    /* A lower caller maximum applies. */
    put32(f, 200);
    expect_startup_error(f, 8, 100, 4, TG_ETOOBIG);
    /* Exactly TG_PG_MAX_STARTUP is fine. */
    static uint8_t body[TG_PG_MAX_STARTUP - 8];
    memcpy(body, "options", 8);
    memset(body + 8, 'x', sizeof(body) - 10);
    body[sizeof(body) - 2] = 0;
    body[sizeof(body) - 1] = 0;
    bytes big = *untyped(TG_PG_PROTOCOL(3, 0), body, sizeof(body));
    assert_int_equal(big.n, TG_PG_MAX_STARTUP);
    assert_int_equal(startup_copy(big.b, big.n, UINT32_MAX), TG_PG_MAX_STARTUP);
    assert_int_equal(startup_copy(big.b, big.n - 1, UINT32_MAX), TG_NEED_MORE);
}

static void test_startup_next(void **state)
{
    (void)state;
    tg_slice name, value;
    static const char ok[] = "a\0b\0";
    tg_slice cur = {(const uint8_t *)ok, 4};
    assert_int_equal(tg_pg_startup_next(&cur, &name, &value), 1);
    assert_slice_str(name, "a");
    assert_slice_str(value, "b");
    assert_int_equal(cur.len, 0);
    assert_int_equal(tg_pg_startup_next(&cur, &name, &value), 0);

    const char *bad[] = {"a\0", "a", "\0b\0", "a\0b"};
    const size_t bad_len[] = {2, 1, 3, 3};
    for (size_t i = 0; i < 4; i++) {
        cur = (tg_slice){(const uint8_t *)bad[i], bad_len[i]};
        tg_slice before = cur;
        assert_int_equal(tg_pg_startup_next(&cur, &name, &value), TG_EPROTO);
        assert_ptr_equal(cur.base, before.base);
        assert_int_equal(cur.len, before.len);
    }
    /* The second pair is the broken one. */
    static const char second[] = "a\0b\0c";
    cur = (tg_slice){(const uint8_t *)second, 5};
    assert_int_equal(tg_pg_startup_next(&cur, &name, &value), 1);
    assert_int_equal(tg_pg_startup_next(&cur, &name, &value), TG_EPROTO);
}

/* ---- message types ---- */

static void test_type_known(void **state)
{
    (void)state;
    const char *fe = "BCDEFHPQSXfpdc";
    const char *be = "123ACDEGHIKNRSTVWZnstvdc";
    for (int t = 0; t < 256; t++) {
        bool in_fe = t != 0 && strchr(fe, t) != NULL;
        bool in_be = t != 0 && strchr(be, t) != NULL;
        assert_int_equal(tg_pg_frontend_type_known((uint8_t)t), in_fe);
        assert_int_equal(tg_pg_backend_type_known((uint8_t)t), in_be);
    }
}

/* ---- reader ---- */

static void test_reader(void **state)
{
    (void)state;
    static const uint8_t body[] = {0x7f, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x01,
                                   'h',  'i',  0,    0,    'x',  'y'};
    tg_pg_reader r = tg_pg_reader_init((tg_slice){body, sizeof(body)});
    assert_int_equal(tg_pg_get_u8(&r), 0x7f);
    assert_int_equal(tg_pg_get_i16(&r), -2);
    assert_int_equal(tg_pg_get_i32(&r), (int32_t)-2147483647);
    tg_slice s = tg_pg_get_cstr(&r);
    assert_slice_str(s, "hi");
    s = tg_pg_get_cstr(&r);
    assert_int_equal(s.len, 0);
    assert_non_null(s.base);
    assert_false(r.failed);
    s = tg_pg_get_bytes(&r, 2);
    assert_int_equal(s.len, 2);
    assert_memory_equal(s.base, "xy", 2);
    assert_true(tg_pg_reader_done(&r));
    /* Past the end: fails, zeroes, stays failed. */
    assert_int_equal(tg_pg_get_u8(&r), 0);
    assert_true(r.failed);
    assert_false(tg_pg_reader_done(&r));

    r = tg_pg_reader_init((tg_slice){body, 3});
    assert_int_equal(tg_pg_get_i32(&r), 0);
    assert_true(r.failed);
    assert_int_equal(tg_pg_get_u8(&r), 0); /* sticky even though a byte is left */

    r = tg_pg_reader_init((tg_slice){body + 7, 2}); /* "hi" without its NUL */
    s = tg_pg_get_cstr(&r);
    assert_null(s.base);
    assert_int_equal(s.len, 0);
    assert_true(r.failed);

    r = tg_pg_reader_init((tg_slice){body, 4});
    s = tg_pg_get_bytes(&r, -1);
    assert_true(r.failed);
    r = tg_pg_reader_init((tg_slice){body, 4});
    s = tg_pg_get_bytes(&r, 5);
    assert_true(r.failed);
    assert_int_equal(s.len, 0);
    r = tg_pg_reader_init((tg_slice){body, 4});
    s = tg_pg_get_bytes(&r, 4);
    assert_true(tg_pg_reader_done(&r));
    r = tg_pg_reader_init((tg_slice){body, 4});
    assert_int_equal(tg_pg_get_i16(&r), 0x7fff);
    assert_int_equal(tg_pg_get_i16(&r), (int16_t)-384);
    r = tg_pg_reader_init((tg_slice){body, 1});
    assert_int_equal(tg_pg_get_i16(&r), 0);
    assert_true(r.failed);
}

/* ---- parsed views ---- */

static void test_parse_query(void **state)
{
    (void)state;
    tg_slice sql;
    tg_pg_msg m = MSG('Q', "SELECT 1\0");
    assert_int_equal(tg_pg_parse_query(&m, &sql), 0);
    assert_slice_str(sql, "SELECT 1");
    m = MSG('Q', "\0");
    assert_int_equal(tg_pg_parse_query(&m, &sql), 0);
    assert_int_equal(sql.len, 0);

    const tg_pg_msg bad[] = {MSG('Q', ""), MSG('Q', "SELECT 1"), MSG('Q', "SELECT 1\0\0"),
                             MSG('Q', "SELECT 1\0; DROP\0")};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(tg_pg_parse_query(&bad[i], &sql), TG_EPROTO);
    m = MSG('P', "SELECT 1\0");
    assert_int_equal(tg_pg_parse_query(&m, &sql), TG_EINVAL);
}

static void test_parse_parse(void **state)
{
    (void)state;
    tg_pg_parse p;
    tg_pg_msg m = msg_of('P', parse_body, sizeof(parse_body));
    assert_int_equal(tg_pg_parse_parse(&m, &p), 0);
    assert_slice_str(p.name, "s1");
    assert_slice_str(p.query, "SELECT $1");
    assert_int_equal(p.param_types.len, 6);
    assert_memory_equal(p.param_types.base, "\0\1\0\0\0\x17", 6);

    m = MSG('P', "\0SELECT 1\0\0\0");
    assert_int_equal(tg_pg_parse_parse(&m, &p), 0);
    assert_int_equal(p.name.len, 0);
    assert_int_equal(p.param_types.len, 2);

    const tg_pg_msg bad[] = {
        MSG('P', ""),
        MSG('P', "s1\0"),
        MSG('P', "s1\0SELECT 1\0"),              /* no count */
        MSG('P', "s1\0SELECT 1\0\0"),            /* half a count */
        MSG('P', "s1\0SELECT 1\0\0\1\0\0\0"),    /* one OID announced, three bytes given */
        MSG('P', "s1\0SELECT 1\0\0\0x"),         /* trailing byte */
        MSG('P', "s1\0SELECT 1\0\xff\xff"),      /* negative count */
        MSG('P', "s1\0SELECT 1\0\0\1\0\0\0\0\0") /* one OID and a stray byte */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(tg_pg_parse_parse(&bad[i], &p), TG_EPROTO);
    m = MSG('Q', "\0SELECT 1\0\0\0");
    assert_int_equal(tg_pg_parse_parse(&m, &p), TG_EINVAL);
}

static void test_parse_error(void **state)
{
    (void)state;
    tg_pg_error_fields f;
    tg_pg_msg m = msg_of('E', error_body, sizeof(error_body) - 1);
    assert_int_equal(tg_pg_parse_error(&m, &f), 0);
    assert_slice_str(f.severity, "ERROR");
    assert_slice_str(f.severity_plain, "ERROR");
    assert_slice_str(f.sqlstate, "42501");
    assert_slice_str(f.message, "tenantgate: denied");

    /* Other fields are skipped; absent ones are empty; NoticeResponse too. */
    m = MSG('N', "SNOTICE\0Dsome detail\0Mhello\0\0");
    assert_int_equal(tg_pg_parse_error(&m, &f), 0);
    assert_slice_str(f.severity, "NOTICE");
    assert_int_equal(f.severity_plain.len, 0);
    assert_int_equal(f.sqlstate.len, 0);
    assert_slice_str(f.message, "hello");
    m = MSG('E', "\0");
    assert_int_equal(tg_pg_parse_error(&m, &f), 0);

    const tg_pg_msg bad[] = {
        MSG('E', ""),                 /* no terminator */
        MSG('E', "SERROR\0"),         /* no terminator */
        MSG('E', "SERROR"),           /* unterminated value */
        MSG('E', "S"),                /* code without value */
        MSG('E', "SERROR\0\0x"),      /* bytes after the terminator */
        MSG('E', "\0\0"),             /* bytes after the terminator */
        MSG('N', "MERROR\0Chello\0"), /* no terminator */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(tg_pg_parse_error(&bad[i], &f), TG_EPROTO);
    m = MSG('Q', "\0");
    assert_int_equal(tg_pg_parse_error(&m, &f), TG_EINVAL);
}

static void test_parse_notification(void **state)
{
    (void)state;
    tg_pg_notification n;
    tg_pg_msg m = MSG('A', "\0\0\x30\x39jobs\0payload\0");
    assert_int_equal(tg_pg_parse_notification(&m, &n), 0);
    assert_int_equal(n.pid, 12345);
    assert_slice_str(n.channel, "jobs");
    assert_slice_str(n.payload, "payload");
    m = MSG('A', "\0\0\0\1c\0\0");
    assert_int_equal(tg_pg_parse_notification(&m, &n), 0);
    assert_int_equal(n.payload.len, 0);

    const tg_pg_msg bad[] = {MSG('A', ""), MSG('A', "\0\0\0"), MSG('A', "\0\0\0\1c\0"),
                             MSG('A', "\0\0\0\1c\0p"), MSG('A', "\0\0\0\1c\0p\0x")};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(tg_pg_parse_notification(&bad[i], &n), TG_EPROTO);
    m = MSG('N', "\0\0\0\1c\0\0");
    assert_int_equal(tg_pg_parse_notification(&m, &n), TG_EINVAL);
}

static void test_parse_auth(void **state)
{
    (void)state;
    int32_t code;
    tg_slice data;
    tg_pg_msg m = MSG('R', "\0\0\0\0");
    assert_int_equal(tg_pg_parse_auth(&m, &code, &data), 0);
    assert_int_equal(code, TG_PG_AUTH_OK);
    assert_int_equal(data.len, 0);
    m = MSG('R', "\0\0\0\3");
    assert_int_equal(tg_pg_parse_auth(&m, &code, &data), 0);
    assert_int_equal(code, TG_PG_AUTH_CLEARTEXT);
    m = MSG('R', "\0\0\0\5salt");
    assert_int_equal(tg_pg_parse_auth(&m, &code, &data), 0);
    assert_int_equal(code, TG_PG_AUTH_MD5);
    assert_slice_str(data, "salt");
    m = MSG('R', "\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0");
    assert_int_equal(tg_pg_parse_auth(&m, &code, &data), 0);
    assert_int_equal(code, TG_PG_AUTH_SASL);
    assert_int_equal(data.len, 34);
    m = MSG('R', "\0\0\0\x0br=abc,s=xyz,i=4096");
    assert_int_equal(tg_pg_parse_auth(&m, &code, &data), 0);
    assert_int_equal(code, TG_PG_AUTH_SASL_CONTINUE);
    assert_slice_str(data, "r=abc,s=xyz,i=4096");

    const tg_pg_msg bad[] = {
        MSG('R', ""),
        MSG('R', "\0\0\0"),
        MSG('R', "\0\0\0\0x"),                    /* AuthenticationOk with data */
        MSG('R', "\0\0\0\3x"),                    /* cleartext with data */
        MSG('R', "\0\0\0\5abc"),                  /* MD5 salt too short */
        MSG('R', "\0\0\0\5abcde"),                /* MD5 salt too long */
        MSG('R', "\0\0\0\x0a\0"),                 /* SASL with no mechanism */
        MSG('R', "\0\0\0\x0aSCRAM-SHA-256\0"),    /* SASL list without terminator */
        MSG('R', "\0\0\0\x0aSCRAM-SHA-256\0\0x"), /* SASL list with trailing bytes */
        MSG('R', "\0\0\0\x0aSCRAM-SHA-256"),      /* SASL name without NUL */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(tg_pg_parse_auth(&bad[i], &code, &data), TG_EPROTO);
    m = MSG('p', "\0\0\0\0");
    assert_int_equal(tg_pg_parse_auth(&m, &code, &data), TG_EINVAL);
}

static void test_parse_small_views(void **state)
{
    (void)state;
    char st = 0;
    tg_pg_msg m = MSG('Z', "T");
    assert_int_equal(tg_pg_parse_ready(&m, &st), 0);
    assert_int_equal(st, 'T');
    m = MSG('Z', "E");
    assert_int_equal(tg_pg_parse_ready(&m, &st), 0);
    assert_int_equal(st, 'E');
    const tg_pg_msg bad_ready[] = {MSG('Z', ""), MSG('Z', "X"), MSG('Z', "II"), MSG('Z', "\0")};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(tg_pg_parse_ready(&bad_ready[i], &st), TG_EPROTO);

    int32_t pid, key;
    m = MSG('K', "\0\0\x04\xd2\xff\xff\xff\xfe");
    assert_int_equal(tg_pg_parse_backend_key(&m, &pid, &key), 0);
    assert_int_equal(pid, 1234);
    assert_int_equal(key, -2);
    m = MSG('K', "\0\0\x04\xd2\xff\xff\xff");
    assert_int_equal(tg_pg_parse_backend_key(&m, &pid, &key), TG_EPROTO);
    m = MSG('K', "\0\0\x04\xd2\xff\xff\xff\xfe\0");
    assert_int_equal(tg_pg_parse_backend_key(&m, &pid, &key), TG_EPROTO);

    tg_slice name, value;
    m = MSG('S', "TimeZone\0UTC\0");
    assert_int_equal(tg_pg_parse_parameter_status(&m, &name, &value), 0);
    assert_slice_str(name, "TimeZone");
    assert_slice_str(value, "UTC");
    const tg_pg_msg bad_ps[] = {MSG('S', ""), MSG('S', "TimeZone\0"), MSG('S', "TimeZone\0UTC"),
                                MSG('S', "TimeZone\0UTC\0x")};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(tg_pg_parse_parameter_status(&bad_ps[i], &name, &value), TG_EPROTO);

    tg_slice pw;
    m = MSG('p', "eyJhbGciOi.x.y\0");
    assert_int_equal(tg_pg_parse_password(&m, &pw), 0);
    assert_slice_str(pw, "eyJhbGciOi.x.y");
    m = MSG('p', "\0");
    assert_int_equal(tg_pg_parse_password(&m, &pw), 0);
    assert_int_equal(pw.len, 0);
    const tg_pg_msg bad_pw[] = {MSG('p', ""), MSG('p', "secret"), MSG('p', "secret\0\0"),
                                MSG('p', "sec\0ret\0")};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(tg_pg_parse_password(&bad_pw[i], &pw), TG_EPROTO);

    /* Views refuse a message of another type. */
    m = MSG('I', "I");
    assert_int_equal(tg_pg_parse_ready(&m, &st), TG_EINVAL);
    m = MSG('Z', "\0\0\x04\xd2\xff\xff\xff\xfe");
    assert_int_equal(tg_pg_parse_backend_key(&m, &pid, &key), TG_EINVAL);
    m = MSG('P', "TimeZone\0UTC\0");
    assert_int_equal(tg_pg_parse_parameter_status(&m, &name, &value), TG_EINVAL);
    m = MSG('Q', "x\0");
    assert_int_equal(tg_pg_parse_password(&m, &pw), TG_EINVAL);
}

/* ---- builders: decode(encode(x)) == x ---- */

/* Decodes the one typed message that starts at out->data + off and ends the buffer. */
static tg_pg_msg decode_built(const tg_buf *out, size_t off)
{
    assert_true(out->len > off);
    tg_pg_msg m = expect_frame(out->data + off, out->len - off, 1 << 20);
    return m;
}

static void test_build_error(void **state)
{
    (void)state;
    tg_buf out = {0};
    assert_int_equal(tg_pg_build_error(&out, 'E', "ERROR", "42501", "tenantgate: no"), 0);
    tg_pg_msg m = decode_built(&out, 0);
    assert_int_equal(m.type, 'E');
    tg_pg_error_fields f;
    assert_int_equal(tg_pg_parse_error(&m, &f), 0);
    assert_slice_str(f.severity, "ERROR");
    assert_slice_str(f.severity_plain, "ERROR");
    assert_slice_str(f.sqlstate, "42501");
    assert_slice_str(f.message, "tenantgate: no");
    /* Exactly the wire bytes PostgreSQL would send. */
    bytes *want = TYPED('E', "SERROR\0VERROR\0C42501\0Mtenantgate: no\0\0");
    assert_int_equal(out.len, want->n);
    assert_memory_equal(out.data, want->b, want->n);

    size_t off = out.len;
    assert_int_equal(tg_pg_build_error(&out, 'N', "WARNING", "01000", ""), 0);
    m = decode_built(&out, off);
    assert_int_equal(m.type, 'N');
    assert_int_equal(tg_pg_parse_error(&m, &f), 0);
    assert_slice_str(f.severity, "WARNING");
    assert_int_equal(f.message.len, 0);
    tg_buf_free(&out);
}

static void test_build_auth_ready_key_status(void **state)
{
    (void)state;
    tg_buf out = {0};
    int32_t code;
    tg_slice data;
    assert_int_equal(tg_pg_build_auth(&out, TG_PG_AUTH_CLEARTEXT, NULL, 0), 0);
    tg_pg_msg m = decode_built(&out, 0);
    assert_int_equal(tg_pg_parse_auth(&m, &code, &data), 0);
    assert_int_equal(code, TG_PG_AUTH_CLEARTEXT);
    assert_int_equal(data.len, 0);
    assert_int_equal(out.len, 9);

    size_t off = out.len;
    assert_int_equal(tg_pg_build_auth(&out, TG_PG_AUTH_MD5, "s4lt", 4), 0);
    m = decode_built(&out, off);
    assert_int_equal(tg_pg_parse_auth(&m, &code, &data), 0);
    assert_int_equal(code, TG_PG_AUTH_MD5);
    assert_slice_str(data, "s4lt");

    off = out.len;
    assert_int_equal(tg_pg_build_auth(&out, TG_PG_AUTH_SASL, "SCRAM-SHA-256\0", 15), 0);
    m = decode_built(&out, off);
    assert_int_equal(tg_pg_parse_auth(&m, &code, &data), 0);
    assert_int_equal(code, TG_PG_AUTH_SASL);
    assert_int_equal(data.len, 15);

    const char statuses[] = {'I', 'T', 'E'};
    for (size_t i = 0; i < 3; i++) {
        off = out.len;
        assert_int_equal(tg_pg_build_ready(&out, statuses[i]), 0);
        m = decode_built(&out, off);
        char st;
        assert_int_equal(tg_pg_parse_ready(&m, &st), 0);
        assert_int_equal(st, statuses[i]);
    }

    const int32_t vals[][2] = {{1234, 5678}, {-1, INT32_MIN}, {INT32_MAX, 0}};
    for (size_t i = 0; i < 3; i++) {
        off = out.len;
        assert_int_equal(tg_pg_build_backend_key(&out, vals[i][0], vals[i][1]), 0);
        m = decode_built(&out, off);
        int32_t pid, key;
        assert_int_equal(tg_pg_parse_backend_key(&m, &pid, &key), 0);
        assert_int_equal(pid, vals[i][0]);
        assert_int_equal(key, vals[i][1]);
    }

    off = out.len;
    assert_int_equal(tg_pg_build_parameter_status(&out, "server_version", "15.4"), 0);
    m = decode_built(&out, off);
    tg_slice name, value;
    assert_int_equal(tg_pg_parse_parameter_status(&m, &name, &value), 0);
    assert_slice_str(name, "server_version");
    assert_slice_str(value, "15.4");
    tg_buf_free(&out);
}

static void test_build_negotiate(void **state)
{
    (void)state;
    tg_buf out = {0};
    const tg_slice opts[] = {tg_slice_str("_pq_.a"), tg_slice_str("_pq_.bee")};
    assert_int_equal(tg_pg_build_negotiate(&out, 0, opts, 2), 0);
    tg_pg_msg m = decode_built(&out, 0);
    assert_int_equal(m.type, 'v');
    assert_true(tg_pg_backend_type_known(m.type));
    tg_pg_reader r = tg_pg_reader_init(m.body);
    assert_int_equal(tg_pg_get_i32(&r), 0);
    assert_int_equal(tg_pg_get_i32(&r), 2);
    assert_slice_str(tg_pg_get_cstr(&r), "_pq_.a");
    assert_slice_str(tg_pg_get_cstr(&r), "_pq_.bee");
    assert_true(tg_pg_reader_done(&r));

    size_t off = out.len;
    assert_int_equal(tg_pg_build_negotiate(&out, 2, NULL, 0), 0);
    m = decode_built(&out, off);
    r = tg_pg_reader_init(m.body);
    assert_int_equal(tg_pg_get_i32(&r), 2);
    assert_int_equal(tg_pg_get_i32(&r), 0);
    assert_true(tg_pg_reader_done(&r));
    tg_buf_free(&out);
}

static void test_build_query_parse(void **state)
{
    (void)state;
    tg_buf out = {0};
    assert_int_equal(tg_pg_build_query(&out, "SELECT 1", 8), 0);
    bytes *want = TYPED('Q', "SELECT 1\0");
    assert_int_equal(out.len, want->n);
    assert_memory_equal(out.data, want->b, want->n);
    tg_pg_msg m = decode_built(&out, 0);
    tg_slice sql;
    assert_int_equal(tg_pg_parse_query(&m, &sql), 0);
    assert_slice_str(sql, "SELECT 1");

    size_t off = out.len;
    assert_int_equal(tg_pg_build_query(&out, "", 0), 0);
    m = decode_built(&out, off);
    assert_int_equal(tg_pg_parse_query(&m, &sql), 0);
    assert_int_equal(sql.len, 0);

    /* Parse with types, taken raw from a parsed message: the bytes come back identical. */
    tg_pg_parse p;
    tg_pg_msg src = msg_of('P', parse_body, sizeof(parse_body));
    assert_int_equal(tg_pg_parse_parse(&src, &p), 0);
    off = out.len;
    assert_int_equal(
        tg_pg_build_parse(&out, p.name, (const char *)p.query.base, p.query.len, p.param_types), 0);
    assert_int_equal(out.len - off, sizeof(parse_body) + 5);
    assert_memory_equal(out.data + off + 5, parse_body, sizeof(parse_body));
    m = decode_built(&out, off);
    tg_pg_parse q;
    assert_int_equal(tg_pg_parse_parse(&m, &q), 0);
    assert_slice_str(q.name, "s1");
    assert_slice_str(q.query, "SELECT $1");
    assert_int_equal(q.param_types.len, 6);

    /* Unnamed statement, no types: an empty slice means a count of 0. */
    off = out.len;
    assert_int_equal(
        tg_pg_build_parse(&out, (tg_slice){NULL, 0}, "SELECT 2", 8, (tg_slice){NULL, 0}), 0);
    m = decode_built(&out, off);
    assert_int_equal(tg_pg_parse_parse(&m, &q), 0);
    assert_int_equal(q.name.len, 0);
    assert_slice_str(q.query, "SELECT 2");
    assert_int_equal(q.param_types.len, 2);
    assert_memory_equal(q.param_types.base, "\0\0", 2);
    tg_buf_free(&out);
}

static void test_build_startup_cancel(void **state)
{
    (void)state;
    tg_buf out = {0};
    const char *names[] = {"user", "database", "options"};
    const char *values[] = {"app", "appdb", "-c app.tenant_id=acme"};
    assert_int_equal(tg_pg_build_startup(&out, TG_PG_PROTOCOL(3, 0), names, values, 3), 0);
    tg_pg_startup s = expect_startup(out.data, out.len, TG_PG_MAX_STARTUP);
    assert_int_equal(s.code, TG_PG_PROTOCOL(3, 0));
    tg_slice cur = s.params, name, value;
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(tg_pg_startup_next(&cur, &name, &value), 1);
        assert_slice_str(name, names[i]);
        assert_slice_str(value, values[i]);
    }
    assert_int_equal(tg_pg_startup_next(&cur, &name, &value), 0);
    bytes *want = UNTYPED(TG_PG_PROTOCOL(3, 0),
                          "user\0app\0database\0appdb\0options\0-c app.tenant_id=acme\0\0");
    assert_int_equal(out.len, want->n);
    assert_memory_equal(out.data, want->b, want->n);

    size_t off = out.len;
    assert_int_equal(tg_pg_build_startup(&out, TG_PG_PROTOCOL(3, 0), NULL, NULL, 0), 0);
    s = expect_startup(out.data + off, out.len - off, TG_PG_MAX_STARTUP);
    assert_int_equal(s.params.len, 0);
    assert_int_equal(s.size, 9);

    off = out.len;
    assert_int_equal(tg_pg_build_cancel(&out, 77, (int32_t)0xcafef00d), 0);
    assert_int_equal(out.len - off, 16);
    s = expect_startup(out.data + off, 16, TG_PG_MAX_STARTUP);
    assert_int_equal(s.code, TG_PG_CANCEL_REQUEST_CODE);
    assert_int_equal(s.cancel_pid, 77);
    assert_int_equal(s.cancel_key, 0xcafef00du);
    tg_buf_free(&out);
}

static void test_build_password_sasl_notification(void **state)
{
    (void)state;
    tg_buf out = {0};
    assert_int_equal(tg_pg_build_password(&out, "md5abc\0", 7), 0);
    tg_pg_msg m = decode_built(&out, 0);
    tg_slice pw;
    assert_int_equal(tg_pg_parse_password(&m, &pw), 0);
    assert_slice_str(pw, "md5abc");

    size_t off = out.len;
    assert_int_equal(tg_pg_build_sasl_initial(&out, "SCRAM-SHA-256", "n,,n=,r=abc", 11), 0);
    m = decode_built(&out, off);
    assert_int_equal(m.type, 'p');
    tg_pg_reader r = tg_pg_reader_init(m.body);
    assert_slice_str(tg_pg_get_cstr(&r), "SCRAM-SHA-256");
    int32_t n = tg_pg_get_i32(&r);
    assert_int_equal(n, 11);
    assert_memory_equal(tg_pg_get_bytes(&r, n).base, "n,,n=,r=abc", 11);
    assert_true(tg_pg_reader_done(&r));

    off = out.len;
    assert_int_equal(tg_pg_build_sasl_initial(&out, "SCRAM-SHA-256", NULL, 0), 0);
    m = decode_built(&out, off);
    r = tg_pg_reader_init(m.body);
    assert_slice_str(tg_pg_get_cstr(&r), "SCRAM-SHA-256");
    assert_int_equal(tg_pg_get_i32(&r), -1);
    assert_true(tg_pg_reader_done(&r));

    off = out.len;
    assert_int_equal(tg_pg_build_sasl_initial(&out, "PLAIN", "", 0), 0);
    m = decode_built(&out, off);
    r = tg_pg_reader_init(m.body);
    assert_slice_str(tg_pg_get_cstr(&r), "PLAIN");
    assert_int_equal(tg_pg_get_i32(&r), 0);
    assert_true(tg_pg_reader_done(&r));

    off = out.len;
    assert_int_equal(
        tg_pg_build_notification(&out, -5, tg_slice_str("jobs"), tg_slice_str("{\"id\":1}")), 0);
    m = decode_built(&out, off);
    tg_pg_notification note;
    assert_int_equal(tg_pg_parse_notification(&m, &note), 0);
    assert_int_equal(note.pid, -5);
    assert_slice_str(note.channel, "jobs");
    assert_slice_str(note.payload, "{\"id\":1}");
    tg_buf_free(&out);
}

static void test_builder_primitives(void **state)
{
    (void)state;
    /* A Bind built by hand equals the real frame. */
    tg_buf out = {0};
    tg_pg_builder b;
    tg_pg_begin(&b, &out, 'B');
    tg_pg_put_cstr(&b, "", 0);
    tg_pg_put_cstr(&b, "s1xx", 2);
    tg_pg_put_i16(&b, 0);
    tg_pg_put_i16(&b, 1);
    tg_pg_put_i32(&b, 1);
    tg_pg_put_bytes(&b, "1", 1);
    tg_pg_put_i16(&b, 0);
    assert_false(b.failed);
    assert_int_equal(tg_pg_end(&b), 0);
    bytes *want = typed('B', bind_body, sizeof(bind_body));
    assert_int_equal(out.len, want->n);
    assert_memory_equal(out.data, want->b, want->n);

    size_t off = out.len;
    tg_pg_begin(&b, &out, 'D');
    tg_pg_put_i16(&b, -2);
    tg_pg_put_i32(&b, INT32_MIN);
    tg_pg_put_u8(&b, 0xab);
    assert_int_equal(tg_pg_end(&b), 0);
    tg_pg_msg m = decode_built(&out, off);
    tg_pg_reader r = tg_pg_reader_init(m.body);
    assert_int_equal(tg_pg_get_i16(&r), -2);
    assert_int_equal(tg_pg_get_i32(&r), INT32_MIN);
    assert_int_equal(tg_pg_get_u8(&r), 0xab);
    assert_true(tg_pg_reader_done(&r));

    /* Empty body. */
    off = out.len;
    tg_pg_begin(&b, &out, 'S');
    assert_int_equal(tg_pg_end(&b), 0);
    assert_int_equal(out.len - off, 5);
    assert_memory_equal(out.data + off, "S\0\0\0\4", 5);
    tg_buf_free(&out);
}

/* ---- failed builds leave the buffer as it was ---- */

static tg_buf prefilled(void)
{
    tg_buf out = {0};
    assert_int_equal(tg_pg_build_query(&out, "SELECT 1", 8), 0);
    return out;
}

static void assert_unchanged(const tg_buf *out)
{
    bytes *want = TYPED('Q', "SELECT 1\0");
    assert_int_equal(out->len, want->n);
    assert_memory_equal(out->data, want->b, want->n);
}

static void test_builder_failure_leaves_buffer(void **state)
{
    (void)state;
    tg_buf out = prefilled();

    assert_int_equal(tg_pg_build_query(&out, "SELECT 1\0; x", 12), TG_EINVAL);
    assert_unchanged(&out);
    assert_int_equal(tg_pg_build_ready(&out, 'X'), TG_EINVAL);
    assert_unchanged(&out);
    assert_int_equal(tg_pg_build_error(&out, 'Q', "ERROR", "42501", "m"), TG_EINVAL);
    assert_unchanged(&out);
    assert_int_equal(tg_pg_build_error(&out, 'E', "ERROR", "42501", NULL), TG_EINVAL);
    assert_unchanged(&out);
    assert_int_equal(tg_pg_build_parameter_status(&out, NULL, "v"), TG_EINVAL);
    assert_unchanged(&out);
    const tg_slice opts[] = {tg_slice_str("_pq_.ok"), {(const uint8_t *)"a\0b", 3}};
    assert_int_equal(tg_pg_build_negotiate(&out, 0, opts, 2), TG_EINVAL);
    assert_unchanged(&out);
    assert_int_equal(tg_pg_build_negotiate(&out, 0, NULL, 1), TG_EINVAL);
    assert_unchanged(&out);

    const tg_slice no_name = {NULL, 0};
    const tg_slice bad_types[] = {{(const uint8_t *)"\0", 1},
                                  {(const uint8_t *)"\xff\xff", 2},
                                  {(const uint8_t *)"\0\1\0\0\0", 5},
                                  {(const uint8_t *)"\0\1\0\0\0\0\0", 7},
                                  {(const uint8_t *)"\0\0\0", 3}};
    for (size_t i = 0; i < sizeof(bad_types) / sizeof(bad_types[0]); i++) {
        assert_int_equal(tg_pg_build_parse(&out, no_name, "SELECT 1", 8, bad_types[i]), TG_EINVAL);
        assert_unchanged(&out);
    }
    assert_int_equal(
        tg_pg_build_parse(&out, (tg_slice){(const uint8_t *)"a\0b", 3}, "SELECT 1", 8, no_name),
        TG_EINVAL);
    assert_unchanged(&out);
    assert_int_equal(tg_pg_build_parse(&out, no_name, "SEL\0ECT", 7, no_name), TG_EINVAL);
    assert_unchanged(&out);

    const char *names[] = {"user", ""};
    const char *values[] = {"app", "x"};
    assert_int_equal(tg_pg_build_startup(&out, TG_PG_PROTOCOL(3, 0), names, values, 2), TG_EINVAL);
    assert_unchanged(&out);
    const char *nulls[] = {"user", NULL};
    assert_int_equal(tg_pg_build_startup(&out, TG_PG_PROTOCOL(3, 0), nulls, nulls, 2), TG_EINVAL);
    assert_unchanged(&out);
    static char big[TG_PG_MAX_STARTUP];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    const char *bn[] = {"options"};
    const char *bv[] = {big};
    assert_int_equal(tg_pg_build_startup(&out, TG_PG_PROTOCOL(3, 0), bn, bv, 1), TG_EINVAL);
    assert_unchanged(&out);

    assert_int_equal(
        tg_pg_build_notification(&out, 1, (tg_slice){(const uint8_t *)"c\0", 2}, tg_slice_str("p")),
        TG_EINVAL);
    assert_unchanged(&out);
    assert_int_equal(tg_pg_build_sasl_initial(&out, NULL, "x", 1), TG_EINVAL);
    assert_unchanged(&out);

    /* Primitives: the first failure sticks; end() undoes the whole message. */
    tg_pg_builder b;
    tg_pg_begin(&b, &out, 'Q');
    tg_pg_put_cstr(&b, "a\0b", 3);
    assert_true(b.failed);
    assert_int_equal(b.err, TG_EINVAL);
    tg_pg_put_bytes(&b, "more", 4);
    tg_pg_put_i32(&b, 1);
    assert_int_equal(tg_pg_end(&b), TG_EINVAL);
    assert_unchanged(&out);
    tg_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_valid_frames),
        cmocka_unit_test(test_decode_pipeline),
        cmocka_unit_test(test_decode_length_below_4),
        cmocka_unit_test(test_decode_too_big),
        cmocka_unit_test(test_decode_huge_length),
        cmocka_unit_test(test_startup_ssl_gssenc),
        cmocka_unit_test(test_startup_cancel),
        cmocka_unit_test(test_startup_v3_params),
        cmocka_unit_test(test_startup_other_versions),
        cmocka_unit_test(test_startup_malformed),
        cmocka_unit_test(test_startup_oversized),
        cmocka_unit_test(test_startup_next),
        cmocka_unit_test(test_type_known),
        cmocka_unit_test(test_reader),
        cmocka_unit_test(test_parse_query),
        cmocka_unit_test(test_parse_parse),
        cmocka_unit_test(test_parse_error),
        cmocka_unit_test(test_parse_notification),
        cmocka_unit_test(test_parse_auth),
        cmocka_unit_test(test_parse_small_views),
        cmocka_unit_test(test_build_error),
        cmocka_unit_test(test_build_auth_ready_key_status),
        cmocka_unit_test(test_build_negotiate),
        cmocka_unit_test(test_build_query_parse),
        cmocka_unit_test(test_build_startup_cancel),
        cmocka_unit_test(test_build_password_sasl_notification),
        cmocka_unit_test(test_builder_primitives),
        cmocka_unit_test(test_builder_failure_leaves_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
