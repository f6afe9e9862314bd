/*
 * Unit tests for protocols/bolt/codec.c and protocols/bolt/packstream.c.
 *
 *   captured JS driver streams (data/, made by data/capture.mjs)
 *       --byte by byte--> handshake, frames, messages: the expected message sequence,
 *                         every message re-encoded to the same bytes
 *   handshakes --> negotiation tables (ranges, preference, manifest), bad preambles
 *   every PackStream type and width --> builder --> decoder --> builder: same values, same bytes
 *   malformed PackStream (reserved markers, lying sizes, truncation, bad keys, bombs) --> refused
 *   message shapes per version and sender --> accepted / refused
 *   builders (RUN rewrite, auth replacement, replies, routing table, big messages) --> decode
 *
 * Decoders work on exact-size heap copies, so a read past the bytes handed in
 * shows up under AddressSanitizer. Values are written in a small literal
 * notation (lit()) so that each case reads like the message it is:
 *   null true false 42 -1.5 "text" #0102# [a, b] {key: v} S10["q", {}, {}]
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/bolt/codec.h"
#include "protocols/bolt/packstream.h"
#include "proxy/error.h"

#include "tests/unit/support/codec_input.h"

#define V44 TG_BOLT_V(4, 4)
#define V50 TG_BOLT_V(5, 0)
#define V51 TG_BOLT_V(5, 1)
#define V52 TG_BOLT_V(5, 2)
#define V53 TG_BOLT_V(5, 3)
#define V54 TG_BOLT_V(5, 4)
#define V55 TG_BOLT_V(5, 5)
#define V56 TG_BOLT_V(5, 6)
#define CLIENT TG_BOLT_FROM_CLIENT
#define SERVER TG_BOLT_FROM_SERVER

static const uint16_t supported[] = TG_BOLT_SUPPORTED;
static const tg_ps_limits def = TG_PS_LIMITS_DEFAULT;

/* ---- helpers ---- */

/* Hex digits (spaces ignored) into a fresh heap buffer; *n gets the length. */
static uint8_t *hex(const char *s, size_t *n)
{
    uint8_t *out = malloc(strlen(s) / 2 + 1);
    assert_non_null(out);
    size_t k = 0;
    int hi = -1;
    for (; *s; s++) {
        int v;
        if (*s >= '0' && *s <= '9')
            v = *s - '0';
        else if (*s >= 'a' && *s <= 'f')
            v = *s - 'a' + 10;
        else if (*s >= 'A' && *s <= 'F')
            v = *s - 'A' + 10;
        else
            continue;
        if (hi < 0) {
            hi = v;
        } else {
            out[k++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
    assert_int_equal(hi, -1);
    *n = k;
    return out;
}

/* ---- the literal notation, written with the PackStream builder ---- */

typedef struct lit_parser {
    const char *p;
    tg_ps_builder *b;
} lit_parser;

static void lit_ws(lit_parser *l)
{
    while (*l->p == ' ' || *l->p == '\n' || *l->p == ',' || *l->p == ':')
        l->p++;
}

/* Counts the items before the bracket closing at p (p is just after the opening one). */
static uint32_t lit_count(const char *p, char close)
{
    int depth = 0;
    uint32_t n = 0;
    bool in_item = false;
    for (; *p; p++) {
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++)
                if (*p == '\\')
                    p++;
            in_item = true;
            continue;
        }
        if (depth == 0 && *p == close)
            break;
        if (*p == '[' || *p == '{')
            depth++;
        else if (*p == ']' || *p == '}')
            depth--;
        if (depth == 0 && *p == ',') {
            if (in_item)
                n++;
            in_item = false;
        } else if (*p != ' ' && *p != '\n' && !(depth == 0 && *p == ':')) {
            in_item = true;
        }
    }
    return n + (in_item ? 1 : 0);
}

static void lit_value(lit_parser *l);

static void lit_string(lit_parser *l)
{
    char buf[4096];
    size_t n = 0;
    for (l->p++; *l->p != '"'; l->p++) {
        assert_true(*l->p && n < sizeof(buf));
        if (*l->p == '\\' && l->p[1] == 'x') {
            buf[n++] = (char)strtol((char[]){l->p[2], l->p[3], 0}, NULL, 16);
            l->p += 3;
        } else {
            buf[n++] = *l->p;
        }
    }
    l->p++;
    tg_ps_put_string(l->b, buf, n);
}

static void lit_value(lit_parser *l)
{
    lit_ws(l);
    const char *p = l->p;
    if (*p == '"') {
        lit_string(l);
    } else if (*p == '#') {
        uint8_t buf[1024];
        size_t n = 0;
        for (p++; *p != '#'; p += 2)
            buf[n++] = (uint8_t)strtol((char[]){p[0], p[1], 0}, NULL, 16);
        l->p = p + 1;
        tg_ps_put_bytes(l->b, buf, n);
    } else if (*p == '[' || *p == '{') {
        char close = *p == '[' ? ']' : '}';
        uint32_t n = lit_count(p + 1, close);
        if (*p == '[')
            tg_ps_put_list(l->b, n);
        else
            tg_ps_put_map(l->b, n); /* items of a dictionary are its key: value entries */
        l->p++;
        for (;;) {
            lit_ws(l);
            if (*l->p == close) {
                l->p++;
                break;
            }
            if (close == '}' && *l->p != '"') {
                /* A bare key. */
                const char *s = l->p;
                while ((*l->p >= 'a' && *l->p <= 'z') || (*l->p >= 'A' && *l->p <= 'Z') ||
                       (*l->p >= '0' && *l->p <= '9') || *l->p == '_' || *l->p == '.')
                    l->p++;
                assert_true(l->p > s);
                tg_ps_put_string(l->b, s, (size_t)(l->p - s));
                lit_value(l);
            } else {
                lit_value(l);
            }
        }
    } else if (*p == 'S') {
        uint8_t tag = (uint8_t)strtol((char[]){p[1], p[2], 0}, NULL, 16);
        assert_true(p[3] == '[');
        tg_ps_put_struct(l->b, tag, lit_count(p + 4, ']'));
        l->p = p + 4;
        for (;;) {
            lit_ws(l);
            if (*l->p == ']') {
                l->p++;
                break;
            }
            lit_value(l);
        }
    } else if (strncmp(p, "null", 4) == 0) {
        tg_ps_put_null(l->b);
        l->p += 4;
    } else if (strncmp(p, "true", 4) == 0) {
        tg_ps_put_bool(l->b, true);
        l->p += 4;
    } else if (strncmp(p, "false", 5) == 0) {
        tg_ps_put_bool(l->b, false);
        l->p += 5;
    } else {
        char *end;
        long long i = strtoll(p, &end, 10);
        if (*end == '.' || *end == 'e') {
            tg_ps_put_float(l->b, strtod(p, &end));
        } else {
            assert_true(end > p);
            tg_ps_put_int(l->b, i);
        }
        l->p = end;
    }
}

/* The PackStream encoding of one literal, appended to out (cleared first). */
static void lit(tg_buf *out, const char *text)
{
    tg_ps_builder b;
    out->len = 0;
    tg_ps_begin(&b, out);
    lit_parser l = {text, &b};
    lit_value(&l);
    lit_ws(&l);
    assert_int_equal(*l.p, 0);
    if (tg_ps_end(&b) != 0)
        fail_msg("literal does not build: %s", text);
}

/* Decodes bytes (exact-size copy) with limits; the copy is kept in *keep for the doc's slices. */
static int decode(tg_ps_doc *d, const uint8_t *p, size_t n, const tg_ps_limits *lim, uint8_t **keep)
{
    uint8_t *c = dup_exact(p, n);
    int rc = tg_ps_decode(d, c, n, lim);
    if (keep)
        *keep = c;
    else
        free(c);
    return rc;
}

/* Result of decoding and checking the message written as a literal. */
static int msg_rc(const char *text, uint16_t version, unsigned flags, tg_bolt_dir dir,
                  const char **why)
{
    tg_buf buf = {0};
    tg_ps_doc d;
    tg_bolt_msg m;
    tg_ps_doc_init(&d);
    lit(&buf, text);
    uint8_t *c = dup_exact(buf.data, buf.len);
    int rc = tg_bolt_decode_msg(&d, c, buf.len, &def, version, flags, dir, &m, why);
    free(c);
    tg_ps_doc_free(&d);
    tg_buf_free(&buf);
    return rc;
}

static void expect_msg(const char *text, uint16_t version, unsigned flags, tg_bolt_dir dir,
                       int want)
{
    const char *why = NULL;
    int rc = msg_rc(text, version, flags, dir, &why);
    if (rc != want)
        fail_msg("%s in %d.%d from %s: %d (%s), want %d", text, TG_BOLT_MAJOR(version),
                 TG_BOLT_MINOR(version), dir == CLIENT ? "client" : "server", rc, why ? why : "-",
                 want);
    if (rc < 0)
        assert_non_null(why);
}

static int ps_rc_hex(const char *h, const tg_ps_limits *lim)
{
    size_t n;
    uint8_t *p = hex(h, &n);
    tg_ps_doc d;
    tg_ps_doc_init(&d);
    int rc = decode(&d, p, n, lim, NULL);
    tg_ps_doc_free(&d);
    free(p);
    return rc;
}

static void expect_ps(const char *h, int want)
{
    int rc = ps_rc_hex(h, &def);
    if (rc != want)
        fail_msg("%s: %d, want %d", h, rc, want);
}

/* ---- handshake ---- */

static void test_handshake_capture(void **state)
{
    (void)state;
    size_t n;
    uint8_t *data = read_data_file("unit/protocols/bolt/data/v56_basic_0.client.bin", &n);
    for (size_t i = 0; i < TG_BOLT_HANDSHAKE_SIZE; i++) {
        uint8_t *c = dup_exact(data, i);
        tg_bolt_handshake hs;
        assert_int_equal(tg_bolt_decode_handshake(c, i, &hs), TG_NEED_MORE);
        free(c);
    }
    tg_bolt_handshake hs;
    assert_int_equal(tg_bolt_decode_handshake(data, n, &hs), TG_BOLT_HANDSHAKE_SIZE);
    /* neo4j-driver 5.28: manifest v1, 5.8..5.0, 4.4..4.2, 3.0 */
    assert_int_equal(hs.proposals[0], 0x000001FF);
    assert_int_equal(hs.proposals[1], 0x00080805);
    assert_int_equal(hs.proposals[2], 0x00020404);
    assert_int_equal(hs.proposals[3], 0x00000003);
    assert_int_equal(tg_bolt_negotiate(&hs, supported, TG_BOLT_N_SUPPORTED, 0), V56);
    assert_int_equal(
        tg_bolt_negotiate(&hs, supported, TG_BOLT_N_SUPPORTED, TG_BOLT_NEGOTIATE_MANIFEST),
        TG_BOLT_MANIFEST_V1);
    uint8_t reply[4];
    tg_bolt_version_reply(V56, reply);
    assert_memory_equal(reply, "\x00\x00\x06\x05", 4);
    tg_bolt_version_reply(TG_BOLT_MANIFEST_V1, reply);
    assert_memory_equal(reply, "\x00\x00\x01\xFF", 4);
    tg_bolt_version_reply(0, reply);
    assert_memory_equal(reply, "\x00\x00\x00\x00", 4);

    /* Our own handshake towards a backend writes the same bytes for the same proposals. */
    tg_buf out = {0};
    uint32_t props[4] = {0x000001FF, tg_bolt_proposal(TG_BOLT_V(5, 8), 8), tg_bolt_proposal(V44, 2),
                         tg_bolt_proposal(TG_BOLT_V(3, 0), 0)};
    assert_int_equal(tg_bolt_write_handshake(&out, props), 0);
    assert_int_equal(out.len, 20);
    assert_memory_equal(out.data, data, 20);
    tg_buf_free(&out);
    free(data);
}

static void test_handshake_bad_preamble(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
        size_t refused_at; /* bytes after which it is refused */
    } cases[] = {
        {"GET / HTTP/1.1\r\n", 16, 1},
        {"\x16\x03\x01\x02\x00", 5, 1}, /* TLS ClientHello */
        {"\x60\x61", 2, 2},
        {"\x60\x60\xB0\x18", 4, 4},
        {"\x00\x00\x00\x00", 4, 1},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        for (size_t i = 0; i <= cases[k].len; i++) {
            uint8_t *c = dup_exact((const uint8_t *)cases[k].bytes, i);
            tg_bolt_handshake hs;
            ssize_t rc = tg_bolt_decode_handshake(c, i, &hs);
            free(c);
            if (rc != (i < cases[k].refused_at ? TG_NEED_MORE : TG_EPROTO))
                fail_msg("case %zu at %zu: %zd", k, i, rc);
        }
    }
}

static uint16_t negotiate4(uint32_t a, uint32_t b, uint32_t c, uint32_t d, unsigned flags)
{
    tg_bolt_handshake hs = {{a, b, c, d}};
    return tg_bolt_negotiate(&hs, supported, TG_BOLT_N_SUPPORTED, flags);
}

static void test_negotiate(void **state)
{
    (void)state;
    /* Exact versions. */
    assert_int_equal(negotiate4(0x00000404, 0, 0, 0, 0), V44);
    assert_int_equal(negotiate4(0x00000005, 0, 0, 0, 0), V50);
    assert_int_equal(negotiate4(0x00000605, 0, 0, 0, 0), V56);
    /* 5.5 is never agreed (Neo4j does not speak it), 5.7+ and 4.3- are not ours. */
    assert_int_equal(negotiate4(0x00000505, 0, 0, 0, 0), 0);
    assert_int_equal(negotiate4(0x00000705, 0x00000304, 0x00000003, 0, 0), 0);
    /* Ranges: the highest supported version inside. */
    assert_int_equal(negotiate4(0x00080805, 0, 0, 0, 0), V56);
    assert_int_equal(negotiate4(0x00010505, 0, 0, 0, 0), V54);
    assert_int_equal(negotiate4(0x00020204, 0x00000404, 0, 0, 0), V44);
    assert_int_equal(negotiate4(0x00090405, 0, 0, 0, 0), V54); /* range below minor 0 */
    assert_int_equal(negotiate4(0x00010805, 0, 0, 0, 0), 0);   /* 5.8..5.7 */
    assert_int_equal(negotiate4(0x00FF0805, 0, 0, 0, 0), V56);
    /* The client's order wins over ours. */
    assert_int_equal(negotiate4(0x00000404, 0x00000605, 0, 0, 0), V44);
    assert_int_equal(negotiate4(0x00000304, 0x00000204, 0x00000104, 0x00000005, 0), V50);
    /* Placeholders and reserved bits are skipped. */
    assert_int_equal(negotiate4(0, 0, 0, 0x00000404, 0), V44);
    assert_int_equal(negotiate4(0x01000605, 0x00000404, 0, 0, 0), V44);
    assert_int_equal(negotiate4(0, 0, 0, 0, 0), 0);
    /* Manifest v1 only when asked for; other manifest versions never. */
    assert_int_equal(negotiate4(0x000001FF, 0x00000404, 0, 0, 0), V44);
    assert_int_equal(negotiate4(0x000001FF, 0x00000404, 0, 0, TG_BOLT_NEGOTIATE_MANIFEST),
                     TG_BOLT_MANIFEST_V1);
    assert_int_equal(negotiate4(0x000002FF, 0x00000404, 0, 0, TG_BOLT_NEGOTIATE_MANIFEST), V44);
    assert_int_equal(negotiate4(0x000001FF, 0, 0, 0, 0), 0);
    /* An empty supported set matches nothing. */
    tg_bolt_handshake hs = {{0x00000404, 0, 0, 0}};
    assert_int_equal(tg_bolt_negotiate(&hs, supported, 0, 0), 0);
}

static void test_manifest(void **state)
{
    (void)state;
    tg_buf out = {0};
    assert_int_equal(tg_bolt_write_manifest(&out, supported, TG_BOLT_N_SUPPORTED, 0), 0);
    size_t n;
    uint8_t *want = hex("000001FF 03 00000605 00040405 00000404 00", &n);
    assert_int_equal(out.len, n);
    assert_memory_equal(out.data, want, n);
    free(want);
    /* Any order, duplicates, capabilities as a varint. */
    const uint16_t some[] = {V50, V44, V52, V51, V52};
    out.len = 0;
    assert_int_equal(tg_bolt_write_manifest(&out, some, 5, 300), 0);
    want = hex("000001FF 02 00020205 00000404 AC02", &n);
    assert_int_equal(out.len, n);
    assert_memory_equal(out.data, want, n);
    free(want);
    assert_int_equal(tg_bolt_write_manifest(&out, some, 0, 0), TG_EINVAL);
    tg_buf_free(&out);

    /* The JS driver's choice after our fake server's manifest: 5.6, no capabilities. */
    uint8_t *data = read_data_file("unit/protocols/bolt/data/v56_route_0.client.bin", &n);
    const uint8_t *choice = data + TG_BOLT_HANDSHAKE_SIZE;
    for (size_t i = 0; i < 5; i++) {
        uint8_t *c = dup_exact(choice, i);
        uint16_t v;
        uint64_t caps;
        assert_int_equal(
            tg_bolt_decode_manifest_choice(c, i, supported, TG_BOLT_N_SUPPORTED, 0, &v, &caps),
            TG_NEED_MORE);
        free(c);
    }
    uint16_t v = 0;
    uint64_t caps = 1;
    assert_int_equal(
        tg_bolt_decode_manifest_choice(choice, 5, supported, TG_BOLT_N_SUPPORTED, 0, &v, &caps), 5);
    assert_int_equal(v, V56);
    assert_int_equal(caps, 0);
    free(data);

    static const struct {
        const char *hex;
        uint64_t offered;
        ssize_t want;
    } cases[] = {
        {"00000404 00", 0, 5},
        {"00000404 AC02", 300, 6},
        {"00000404 FFFFFFFFFFFFFFFFFF01", UINT64_MAX, 14},
        {"00000505 00", 0, TG_EPROTO},                            /* not offered */
        {"00000705 00", 0, TG_EPROTO},                            /* not ours */
        {"00010605 00", 0, TG_EPROTO},                            /* a range */
        {"01000605 00", 0, TG_EPROTO},                            /* reserved */
        {"00000404 01", 0, TG_EPROTO},                            /* capability not offered */
        {"00000404 8000", 1, TG_EPROTO},                          /* not minimal */
        {"00000404 FFFFFFFFFFFFFFFFFF02", UINT64_MAX, TG_EPROTO}, /* > 64 bits */
        {"00000404 FFFFFFFFFFFFFFFFFF81", UINT64_MAX, TG_EPROTO}, /* 11 bytes */
        {"00000404 8080", 1, TG_NEED_MORE},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        uint8_t *p = hex(cases[k].hex, &n);
        uint8_t *c = dup_exact(p, n);
        ssize_t rc = tg_bolt_decode_manifest_choice(c, n, supported, TG_BOLT_N_SUPPORTED,
                                                    cases[k].offered, &v, &caps);
        if (rc != cases[k].want)
            fail_msg("%s: %zd, want %zd", cases[k].hex, rc, cases[k].want);
        free(c);
        free(p);
    }
}

static void test_version_reply(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t refused_at;
        uint16_t version;
    } cases[] = {
        {"\x00\x00\x04\x04", 5, V44}, {"\x00\x00\x06\x05", 5, V56},
        {"\x00\x00\x00\x00", 5, 0},   {"HTTP", 1, 0},
        {"\x00\x01\x04\x04", 2, 0},   {"\x00\x00\x01\xFF", 4, 0},
        {"\x00\x00\x01\x00", 4, 0},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        for (size_t i = 0; i <= 4; i++) {
            uint8_t *c = dup_exact((const uint8_t *)cases[k].bytes, i);
            uint16_t v = 0xFFFF;
            ssize_t rc = tg_bolt_decode_version_reply(c, i, &v);
            free(c);
            ssize_t want = i >= cases[k].refused_at ? TG_EPROTO : i < 4 ? TG_NEED_MORE : 4;
            if (rc != want)
                fail_msg("case %zu at %zu: %zd, want %zd", k, i, rc, want);
            if (rc == 4)
                assert_int_equal(v, cases[k].version);
        }
    }
}

/* ---- captured streams ---- */

typedef struct capture {
    const char *file;
    size_t skip; /* handshake bytes before the first message */
    uint16_t version;
    tg_bolt_dir dir;
    const uint8_t *sigs; /* expected message signatures, 0-terminated */
} capture;

static const uint8_t v56_basic_client[] = {
    TG_BOLT_HELLO, TG_BOLT_LOGON,     TG_BOLT_TELEMETRY, TG_BOLT_RUN,
    TG_BOLT_PULL,  TG_BOLT_TELEMETRY, TG_BOLT_BEGIN,     TG_BOLT_RUN,
    TG_BOLT_PULL,  TG_BOLT_COMMIT,    TG_BOLT_TELEMETRY, TG_BOLT_RUN,
    TG_BOLT_PULL,  TG_BOLT_RESET,     TG_BOLT_GOODBYE,   0};
static const uint8_t v56_basic_server[] = {TG_BOLT_SUCCESS, TG_BOLT_SUCCESS, TG_BOLT_SUCCESS,
                                           TG_BOLT_SUCCESS, TG_BOLT_RECORD,  TG_BOLT_SUCCESS,
                                           TG_BOLT_SUCCESS, TG_BOLT_SUCCESS, TG_BOLT_SUCCESS,
                                           TG_BOLT_RECORD,  TG_BOLT_RECORD,  TG_BOLT_SUCCESS,
                                           TG_BOLT_SUCCESS, TG_BOLT_SUCCESS, TG_BOLT_FAILURE,
                                           TG_BOLT_IGNORED, TG_BOLT_SUCCESS, 0};
static const uint8_t v44_bearer_client[] = {TG_BOLT_HELLO, TG_BOLT_RUN, TG_BOLT_PULL,
                                            TG_BOLT_GOODBYE, 0};
static const uint8_t v44_bearer_server[] = {TG_BOLT_SUCCESS, TG_BOLT_SUCCESS, TG_BOLT_RECORD,
                                            TG_BOLT_SUCCESS, 0};
static const uint8_t v56_route_client[] = {
    TG_BOLT_HELLO, TG_BOLT_LOGON, TG_BOLT_ROUTE,   TG_BOLT_TELEMETRY,
    TG_BOLT_RUN,   TG_BOLT_PULL,  TG_BOLT_GOODBYE, 0};
static const uint8_t v56_route_server[] = {TG_BOLT_SUCCESS, TG_BOLT_SUCCESS, TG_BOLT_SUCCESS,
                                           TG_BOLT_SUCCESS, TG_BOLT_SUCCESS, TG_BOLT_RECORD,
                                           TG_BOLT_RECORD,  TG_BOLT_SUCCESS, 0};

static const capture captures[] = {
    {"unit/protocols/bolt/data/v56_basic_0.client.bin", 20, V56, CLIENT, v56_basic_client},
    {"unit/protocols/bolt/data/v56_basic_0.server.bin", 4, V56, SERVER, v56_basic_server},
    {"unit/protocols/bolt/data/v44_bearer_0.client.bin", 20, V44, CLIENT, v44_bearer_client},
    {"unit/protocols/bolt/data/v44_bearer_0.server.bin", 4, V44, SERVER, v44_bearer_server},
    {"unit/protocols/bolt/data/v56_route_0.client.bin", 25, V56, CLIENT, v56_route_client},
    {"unit/protocols/bolt/data/v56_route_0.server.bin", 10, V56, SERVER, v56_route_server},
};

/*
 * Decodes, checks and re-encodes one framed message at buf; returns its
 * signature (0 for a NOOP).
 */
static uint8_t one_message(const uint8_t *buf, const tg_bolt_frame *f, const capture *c)
{
    if (f->len == 0)
        return 0;
    uint8_t *msg = malloc(f->len);
    assert_non_null(msg);
    tg_bolt_frame_copy(buf, f, msg);
    tg_slice s;
    if (tg_bolt_frame_slice(buf, f, &s)) {
        assert_ptr_equal(s.base, buf + 2);
        assert_memory_equal(s.base, msg, f->len);
    }
    tg_ps_doc d;
    tg_ps_doc_init(&d);
    tg_bolt_msg m;
    const char *why = NULL;
    int rc = tg_bolt_decode_msg(&d, msg, f->len, &def, c->version, 0, c->dir, &m, &why);
    if (rc != 0)
        fail_msg("%s: message refused: %s", c->file, why);
    /* Re-encoded field by field (smallest forms), the drivers' bytes come back. */
    tg_buf out = {0};
    tg_bolt_builder b;
    tg_bolt_begin(&b, &out, m.signature, m.n_fields);
    for (uint32_t k = 0; k < m.n_fields; k++)
        tg_ps_put_value(&b.ps, &d, m.field[k]);
    assert_int_equal(tg_bolt_end(&b), 0);
    assert_int_equal(out.len, f->size);
    assert_memory_equal(out.data, buf, f->size);
    tg_buf_free(&out);
    tg_ps_doc_free(&d);
    free(msg);
    return m.signature;
}

/* Walks a stream whose first `avail` bytes have arrived; returns the messages seen. */
static size_t walk(const uint8_t *data, size_t avail, const capture *c, tg_bolt_scan *scan,
                   size_t *consumed, uint8_t *sigs, size_t max)
{
    size_t k = 0;
    while (*consumed < avail) {
        tg_bolt_frame f;
        ssize_t rc = tg_bolt_decode_frame(data + *consumed, avail - *consumed,
                                          TG_BOLT_MAX_MSG_DEFAULT, scan, &f);
        assert_true(rc >= 0);
        if (rc == TG_NEED_MORE)
            break;
        assert_int_equal((size_t)rc, f.size);
        uint8_t sig = one_message(data + *consumed, &f, c);
        if (sig) {
            assert_true(k < max);
            sigs[k++] = sig;
        }
        *consumed += (size_t)rc;
    }
    return k;
}

/* What a receiver of a capture has seen (walk without a scan, resuming at `consumed`). */
typedef struct stream_seen {
    const capture *c;
    size_t consumed, got;
    uint8_t sigs[64];
} stream_seen;

static void walk_fed(const uint8_t *data, size_t avail, void *ctx)
{
    stream_seen *w = ctx;
    w->got += walk(data, avail, w->c, NULL, &w->consumed, w->sigs + w->got, 64 - w->got);
}

static void test_capture_streams(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof(captures) / sizeof(captures[0]); k++) {
        const capture *c = &captures[k];
        size_t n;
        uint8_t *file = read_data_file(c->file, &n);
        const uint8_t *data = file + c->skip;
        n -= c->skip;
        size_t want = strlen((const char *)c->sigs);

        /* All at once. */
        uint8_t sigs[64];
        size_t consumed = 0;
        assert_int_equal(walk(data, n, c, NULL, &consumed, sigs, 64), want);
        assert_int_equal(consumed, n);
        assert_memory_equal(sigs, c->sigs, want);

        /* One byte at a time, each arrival in an exact-size copy, resuming with a scan. */
        tg_bolt_scan scan = {0, 0, 0};
        size_t got = 0;
        consumed = 0;
        for (size_t avail = 1; avail <= n; avail++) {
            uint8_t *copy = dup_exact(data, avail);
            got += walk(copy, avail, c, &scan, &consumed, sigs + got, 64 - got);
            free(copy);
        }
        assert_int_equal(got, want);
        assert_int_equal(consumed, n);
        assert_memory_equal(sigs, c->sigs, want);

        /* Split in two at every byte, no scan. */
        for (size_t cut = 0; cut <= n; cut++) {
            stream_seen seen = {c, 0, 0, {0}};
            feed_split(walk_fed, &seen, data, n, cut);
            assert_int_equal(seen.got, want);
            assert_int_equal(seen.consumed, n);
            assert_memory_equal(seen.sigs, c->sigs, want);
        }
        free(file);
    }
}

/* What the driver put into its first RUN: every parameter type, read back through the doc. */
static void test_capture_run_values(void **state)
{
    (void)state;
    size_t n;
    uint8_t *file = read_data_file("unit/protocols/bolt/data/v56_basic_0.client.bin", &n);
    const uint8_t *p = file + 20;
    size_t left = n - 20;
    tg_ps_doc d;
    tg_ps_doc_init(&d);
    for (;;) {
        tg_bolt_frame f;
        ssize_t rc = tg_bolt_decode_frame(p, left, TG_BOLT_MAX_MSG_DEFAULT, NULL, &f);
        assert_true(rc > 0);
        tg_slice s;
        assert_true(tg_bolt_frame_slice(p, &f, &s));
        tg_bolt_msg m;
        assert_int_equal(tg_bolt_decode_msg(&d, s.base, s.len, &def, V56, 0, CLIENT, &m, NULL), 0);
        if (m.signature == TG_BOLT_RUN)
            break;
        p += rc;
        left -= (size_t)rc;
    }
    tg_bolt_msg m;
    assert_int_equal(tg_bolt_check(&d, V56, 0, CLIENT, &m, NULL), 0);
    assert_true(
        tg_ps_is_str(&d, m.field[0], "MATCH (p:Person {name: $name})-[r]->(q) RETURN p, r"));
    uint32_t params = m.field[1];
#define PARAM(k) tg_ps_map_get(&d, params, tg_slice_str(k))
    assert_true(tg_ps_is_str(&d, PARAM("unicode"),
                             "Gr\xC3\xB6\xC3\x9F"
                             "enma\xC3\x9Fst\xC3\xA4"
                             "be \xE2\x9C\x93 \xF0\x9D\x84\x9E"));
    assert_int_equal(d.v[PARAM("i64")].u.i, 9007199254740993LL);
    assert_int_equal(d.v[PARAM("min")].u.i, INT64_MIN);
    assert_int_equal(d.v[PARAM("neg")].u.i, -17);
    assert_true(isnan(d.v[PARAM("nan")].u.f));
    assert_int_equal(d.v[PARAM("bytes")].type, TG_PS_T_BYTES);
    assert_memory_equal(d.v[PARAM("bytes")].u.s.base, "\x01\x02\x03\xFF", 4);
    assert_int_equal(d.v[PARAM("long")].count, 20);
    uint32_t dtz = PARAM("dtz");
    assert_int_equal(d.v[dtz].tag, TG_BOLT_S_DATE_TIME_ZONE_ID);
    assert_true(tg_ps_is_str(&d, tg_ps_child(&d, dtz, 2), "Europe/Paris"));
    uint32_t p3 = PARAM("p3");
    assert_int_equal(d.v[p3].tag, TG_BOLT_S_POINT_3D);
    assert_true(d.v[tg_ps_child(&d, p3, 3)].u.f == 34.0);
    assert_int_equal(PARAM("absent"), 0);
#undef PARAM
    assert_true(tg_ps_is_str(&d, tg_ps_map_get(&d, m.field[2], tg_slice_str("db")), "neo4j"));
    tg_ps_doc_free(&d);
    free(file);
}

/* ---- framing ---- */

static void test_frames(void **state)
{
    (void)state;
    tg_bolt_frame f;
    size_t n;
    /* NOOPs before, between and after messages. */
    uint8_t *p = hex("0000 0002 B00F 0000 0000 0000 0003 B1 70 A0 0000 0000", &n);
    size_t pos = 0;
    int noops = 0, msgs = 0;
    while (pos < n) {
        ssize_t rc = tg_bolt_decode_frame(p + pos, n - pos, 16, NULL, &f);
        assert_true(rc > 0);
        if (f.len == 0) {
            assert_int_equal(rc, 2);
            assert_int_equal(f.chunks, 0);
            noops++;
        } else {
            msgs++;
        }
        pos += (size_t)rc;
    }
    assert_int_equal(noops, 4);
    assert_int_equal(msgs, 2);
    free(p);

    /* A message in three chunks, decoded at every prefix, with and without a scan. */
    p = hex("0001 B3 0002 10 81 0003 61 A0 A0 0000", &n);
    tg_bolt_scan scan = {0, 0, 0};
    for (size_t i = 0; i <= n; i++) {
        uint8_t *c = dup_exact(p, i);
        ssize_t a = tg_bolt_decode_frame(c, i, 100, &scan, &f);
        ssize_t b = tg_bolt_decode_frame(c, i, 100, NULL, &f);
        assert_int_equal(a, i < n ? TG_NEED_MORE : (ssize_t)n);
        assert_int_equal(a, b);
        free(c);
    }
    assert_int_equal(f.len, 6);
    assert_int_equal(f.chunks, 3);
    tg_slice s;
    assert_false(tg_bolt_frame_slice(p, &f, &s));
    uint8_t msg[6];
    tg_bolt_frame_copy(p, &f, msg);
    assert_memory_equal(msg, "\xB3\x10\x81\x61\xA0\xA0", 6);
    tg_ps_doc d;
    tg_ps_doc_init(&d);
    tg_bolt_msg m;
    assert_int_equal(tg_bolt_decode_msg(&d, msg, 6, &def, V56, 0, CLIENT, &m, NULL), 0);
    assert_int_equal(m.signature, TG_BOLT_RUN);
    tg_ps_doc_free(&d);
    free(p);

    /* Too big: refused at the chunk header, before its data; limits count message bytes. */
    p = hex("000B 0102030405060708090A0B 0000", &n);
    for (size_t i = 0; i <= n; i++) {
        uint8_t *c = dup_exact(p, i);
        assert_int_equal(tg_bolt_decode_frame(c, i, 10, NULL, &f),
                         i < 2 ? TG_NEED_MORE : TG_ETOOBIG);
        assert_int_equal(tg_bolt_decode_frame(c, i, 11, NULL, &f),
                         i < n ? TG_NEED_MORE : (ssize_t)n);
        free(c);
    }
    free(p);
    p = hex("0006 010203040506 0005 0102030405 0000", &n);
    for (size_t i = 0; i <= n; i++) {
        uint8_t *c = dup_exact(p, i);
        assert_int_equal(tg_bolt_decode_frame(c, i, 10, NULL, &f),
                         i < 10 ? TG_NEED_MORE : TG_ETOOBIG);
        free(c);
    }
    free(p);
    /* The largest chunk header the wire allows, against the pre-auth limit. */
    p = hex("FFFF", &n);
    assert_int_equal(tg_bolt_decode_frame(p, n, TG_BOLT_MAX_MSG_PREAUTH, NULL, &f), TG_ETOOBIG);
    assert_int_equal(tg_bolt_decode_frame(p, n, TG_BOLT_MAX_MSG_DEFAULT, NULL, &f), TG_NEED_MORE);
    free(p);

    /* A zero chunk inside a message ends it early: the first part is a truncated value. */
    p = hex("0002 B3 10 0000 0004 81 61 A0 A0 0000", &n);
    ssize_t rc = tg_bolt_decode_frame(p, n, 100, NULL, &f);
    assert_int_equal(rc, 6);
    tg_ps_doc_init(&d);
    const char *why = NULL;
    assert_int_equal(tg_bolt_decode_msg(&d, p + 2, f.len, &def, V56, 0, CLIENT, &m, &why),
                     TG_EPROTO);
    assert_non_null(why);
    assert_int_equal(tg_bolt_decode_frame(p + rc, n - (size_t)rc, 100, NULL, &f), 8);
    assert_int_equal(tg_bolt_decode_msg(&d, p + rc + 2, f.len, &def, V56, 0, CLIENT, &m, &why),
                     TG_EPROTO);
    tg_ps_doc_free(&d);
    free(p);
}

static void test_write_chunked(void **state)
{
    (void)state;
    uint8_t msg[300];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (uint8_t)(i * 7);
    tg_buf out = {0};
    for (size_t max = 1; max <= 301; max += 37) {
        out.len = 0;
        assert_int_equal(tg_bolt_write_chunked(&out, msg, sizeof(msg), max), 0);
        tg_bolt_frame f;
        assert_int_equal(tg_bolt_decode_frame(out.data, out.len, 1000, NULL, &f), (ssize_t)out.len);
        assert_int_equal(f.len, sizeof(msg));
        assert_int_equal(f.chunks, (sizeof(msg) + max - 1) / max);
        uint8_t back[300];
        tg_bolt_frame_copy(out.data, &f, back);
        assert_memory_equal(back, msg, sizeof(msg));
    }
    out.len = 0;
    assert_int_equal(tg_bolt_write_chunked(&out, msg, 0, 0), TG_EINVAL);
    assert_int_equal(tg_bolt_write_noop(&out), 0);
    assert_int_equal(out.len, 2);
    tg_buf_free(&out);
}

/* ---- PackStream values ---- */

/* Encodes a literal, checks the exact bytes, decodes, re-encodes: the same bytes. */
static void expect_encoding(const char *text, const char *want_hex)
{
    tg_buf out = {0};
    lit(&out, text);
    size_t n;
    uint8_t *want = hex(want_hex, &n);
    if (out.len != n || memcmp(out.data, want, n) != 0)
        fail_msg("%s: %zu bytes, want %s", text, out.len, want_hex);
    tg_ps_doc d;
    tg_ps_doc_init(&d);
    uint8_t *keep;
    assert_int_equal(decode(&d, out.data, out.len, &def, &keep), 0);
    tg_buf again = {0};
    tg_ps_builder b;
    tg_ps_begin(&b, &again);
    tg_ps_put_value(&b, &d, 0);
    assert_int_equal(tg_ps_end(&b), 0);
    assert_int_equal(again.len, n);
    assert_memory_equal(again.data, want, n);
    assert_int_equal(tg_ps_raw(&d, 0).len, n);
    tg_buf_free(&again);
    tg_ps_doc_free(&d);
    free(keep);
    free(want);
    tg_buf_free(&out);
}

static void test_ps_scalars(void **state)
{
    (void)state;
    expect_encoding("null", "C0");
    expect_encoding("true", "C3");
    expect_encoding("false", "C2");
    /* Integers in their smallest form, at every boundary. */
    expect_encoding("0", "00");
    expect_encoding("42", "2A");
    expect_encoding("127", "7F");
    expect_encoding("-1", "FF");
    expect_encoding("-16", "F0");
    expect_encoding("-17", "C8 EF");
    expect_encoding("-128", "C8 80");
    expect_encoding("-129", "C9 FF7F");
    expect_encoding("128", "C9 0080");
    expect_encoding("32767", "C9 7FFF");
    expect_encoding("-32768", "C9 8000");
    expect_encoding("32768", "CA 00008000");
    expect_encoding("-32769", "CA FFFF7FFF");
    expect_encoding("2147483647", "CA 7FFFFFFF");
    expect_encoding("-2147483648", "CA 80000000");
    expect_encoding("2147483648", "CB 0000000080000000");
    expect_encoding("-2147483649", "CB FFFFFFFF7FFFFFFF");
    expect_encoding("9223372036854775807", "CB 7FFFFFFFFFFFFFFF");
    expect_encoding("-9223372036854775808", "CB 8000000000000000");
    /* Floats (the specification's 1.23), signed zero, infinity. */
    expect_encoding("1.23", "C1 3FF3AE147AE147AE");
    expect_encoding("-0.0", "C1 8000000000000000");
    expect_encoding("1e999", "C1 7FF0000000000000");
    /* Strings: tiny, 8, 16 bit sizes; UTF-8 counted in bytes. */
    expect_encoding("\"\"", "80");
    expect_encoding("\"A\"", "81 41");
    expect_encoding("\"ABCDEFGHIJKLMNOPQRSTUVWXYZ\"",
                    "D0 1A 4142434445464748494A4B4C4D4E4F505152535455565758595A");
    expect_encoding("\"Gr\\xC3\\xB6\\xC3\\x9Fenma\\xC3\\x9Fst\\xC3\\xA4be\"",
                    "D0 12 47 72 C3 B6 C3 9F 65 6E 6D 61 C3 9F 73 74 C3 A4 62 65");
    expect_encoding("\"a\\x00b\"", "83 610062"); /* NUL is a code point */
    /* Bytes have no tiny form. */
    expect_encoding("##", "CC 00");
    expect_encoding("#010203#", "CC 03 010203");
    /* Containers. */
    expect_encoding("[]", "90");
    expect_encoding("[1, 2, 3]", "93 010203");
    expect_encoding("[1, 2.0, \"three\"]", "93 01 C1 4000000000000000 85 7468726565");
    expect_encoding("{}", "A0");
    expect_encoding("{one: \"eins\"}", "A1 836F6E65 8465696E73");
    expect_encoding("S4E[]", "B0 4E");
    expect_encoding("S58[4326, 1.5, 2.5]", "B3 58 C9 10E6 C1 3FF8000000000000 C1 4004000000000000");
}

/* Large sizes and counts: 8/16/32-bit headers, built, decoded, compared, re-encoded. */
static void test_ps_sizes(void **state)
{
    (void)state;
    static const uint32_t sizes[] = {15, 16, 255, 256, 65535, 65536};
    tg_buf out = {0};
    tg_ps_doc d;
    tg_ps_doc_init(&d);
    char *big = malloc(70000);
    assert_non_null(big);
    memset(big, 'x', 70000);
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        uint32_t n = sizes[k];
        for (int kind = 0; kind < 4; kind++) {
            out.len = 0;
            tg_ps_builder b;
            tg_ps_begin(&b, &out);
            if (kind == 0) {
                tg_ps_put_string(&b, big, n);
            } else if (kind == 1) {
                tg_ps_put_bytes(&b, big, n);
            } else if (kind == 2) {
                tg_ps_put_list(&b, n);
                for (uint32_t i = 0; i < n; i++)
                    tg_ps_put_int(&b, i);
            } else {
                tg_ps_put_map(&b, n);
                for (uint32_t i = 0; i < n; i++) {
                    char key[16];
                    int kl = snprintf(key, sizeof(key), "k%u", i);
                    tg_ps_put_string(&b, key, (size_t)kl);
                    tg_ps_put_null(&b);
                }
            }
            assert_int_equal(tg_ps_end(&b), 0);
            /* The header width follows the size: tiny, 8, 16 or 32 bits. */
            uint8_t m = out.data[0];
            static const uint8_t tiny[] = {0x80, 0, 0x90, 0xA0}, m8[] = {0xD0, 0xCC, 0xD4, 0xD8};
            if (n < 16 && tiny[kind])
                assert_int_equal(m, tiny[kind] | n);
            else
                assert_int_equal(m, m8[kind] + (n > 0xFFFF ? 2 : n > 0xFF ? 1 : 0));
            uint8_t *keep;
            assert_int_equal(decode(&d, out.data, out.len, &def, &keep), 0);
            if (kind < 2)
                assert_int_equal(d.v[0].u.s.len, n);
            else
                assert_int_equal(d.v[0].count, n);
            tg_buf again = {0};
            tg_ps_begin(&b, &again);
            tg_ps_put_value(&b, &d, 0);
            assert_int_equal(tg_ps_end(&b), 0);
            assert_int_equal(again.len, out.len);
            assert_memory_equal(again.data, out.data, out.len);
            tg_buf_free(&again);
            free(keep);
        }
    }
    /* A 32-bit string size. */
    out.len = 0;
    tg_ps_builder b;
    tg_ps_begin(&b, &out);
    tg_ps_put_string(&b, big, 65536);
    assert_int_equal(tg_ps_end(&b), 0);
    assert_int_equal(out.data[0], TG_PS_STRING_32);
    free(big);
    tg_ps_doc_free(&d);
    tg_buf_free(&out);
}

/* Wider encodings than needed decode to the same values; re-encoding makes them minimal. */
static void test_ps_non_minimal(void **state)
{
    (void)state;
    static const struct {
        const char *wide, *narrow;
    } cases[] = {
        {"C8 2A", "2A"},
        {"C9 002A", "2A"},
        {"CA 0000002A", "2A"},
        {"CB 000000000000002A", "2A"},
        {"CB FFFFFFFFFFFFFFFF", "FF"},
        {"D0 01 61", "81 61"},
        {"D1 0001 61", "81 61"},
        {"D2 00000001 61", "81 61"},
        {"CD 0001 07", "CC 01 07"},
        {"CE 00000001 07", "CC 01 07"},
        {"D4 01 01", "91 01"},
        {"D5 0001 01", "91 01"},
        {"D6 00000001 01", "91 01"},
        {"D8 01 8161 01", "A1 8161 01"},
        {"D9 0001 8161 01", "A1 8161 01"},
        {"DA 00000001 D0 01 61 C8 01", "A1 8161 01"},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        size_t nw, nn;
        uint8_t *w = hex(cases[k].wide, &nw), *nar = hex(cases[k].narrow, &nn);
        tg_ps_doc a, b;
        tg_ps_doc_init(&a);
        tg_ps_doc_init(&b);
        uint8_t *ka, *kb;
        assert_int_equal(decode(&a, w, nw, &def, &ka), 0);
        assert_int_equal(decode(&b, nar, nn, &def, &kb), 0);
        assert_true(tg_ps_equal(&a, 0, &b, 0));
        tg_buf out = {0};
        tg_ps_builder bl;
        tg_ps_begin(&bl, &out);
        tg_ps_put_value(&bl, &a, 0);
        assert_int_equal(tg_ps_end(&bl), 0);
        assert_int_equal(out.len, nn);
        assert_memory_equal(out.data, nar, nn);
        /* A raw copy keeps the wide bytes. */
        out.len = 0;
        tg_ps_begin(&bl, &out);
        tg_ps_put_raw(&bl, &a, 0);
        assert_int_equal(tg_ps_end(&bl), 0);
        assert_int_equal(out.len, nw);
        assert_memory_equal(out.data, w, nw);
        tg_buf_free(&out);
        tg_ps_doc_free(&a);
        tg_ps_doc_free(&b);
        free(ka);
        free(kb);
        free(w);
        free(nar);
    }
}

/* The flat document: children, siblings, raw spans, lookups, equality. */
static void test_ps_doc(void **state)
{
    (void)state;
    tg_buf out = {0};
    lit(&out, "S10[\"RETURN $x\", {x: [1, {y: null}], z: #00#}, {db: \"neo4j\"}]");
    tg_ps_doc d;
    tg_ps_doc_init(&d);
    uint8_t *keep;
    assert_int_equal(decode(&d, out.data, out.len, &def, &keep), 0);
    /* Preorder: root, query, params, "x", [..], 1, {..}, "y", null, "z", bytes, extra, "db",
     * "neo4j" */
    assert_int_equal(d.n, 14);
    assert_int_equal(d.v[0].next, 14);
    uint32_t params = tg_ps_child(&d, 0, 1);
    assert_int_equal(params, 2);
    assert_int_equal(d.v[params].next, 11);
    uint32_t x = tg_ps_map_get(&d, params, tg_slice_str("x"));
    assert_int_equal(x, 4);
    assert_int_equal(tg_ps_child(&d, x, 0), 5);
    assert_int_equal(tg_ps_child(&d, x, 1), 6);
    assert_int_equal(tg_ps_child(&d, x, 2), 0);
    assert_int_equal(tg_ps_map_get(&d, x, tg_slice_str("y")), 0); /* not a dictionary */
    assert_int_equal(tg_ps_map_get(&d, params, tg_slice_str("missing")), 0);
    tg_slice raw = tg_ps_raw(&d, x);
    assert_int_equal(raw.len, 1 + 1 + 1 + 2 + 1); /* 92 01 A1 81 79 C0 */
    assert_memory_equal(raw.base, "\x92\x01\xA1\x81\x79\xC0", 6);
    assert_int_equal(tg_ps_raw(&d, 13).len, 6); /* the last value runs to the end */
    assert_true(tg_ps_is_str(&d, tg_ps_child(&d, 0, 0), "RETURN $x"));
    assert_false(tg_ps_is_str(&d, params, "RETURN $x"));
    assert_false(tg_ps_equal(&d, params, &d, tg_ps_child(&d, 0, 2)));
    assert_true(tg_ps_equal(&d, x, &d, x));
    assert_int_equal(tg_ps_child(&d, 99, 0), 0);
    assert_int_equal(tg_ps_raw(&d, 99).len, 0);
    /* Trimming frees a grown document; decoding again works. */
    tg_ps_doc_trim(&d, 1);
    assert_null(d.v);
    assert_int_equal(decode(&d, out.data, out.len, &def, NULL), 0);
    tg_ps_doc_trim(&d, 1u << 20);
    assert_non_null(d.v);
    tg_ps_doc_free(&d);
    free(keep);
    tg_buf_free(&out);
}

static void test_ps_malformed(void **state)
{
    (void)state;
    /* Reserved markers, alone and inside a list. */
    static const char *const reserved[] = {"C4", "C5", "C6", "C7", "CF", "D3", "D7", "DB",
                                           "DC", "DD", "DE", "DF", "E0", "E7", "EF"};
    for (size_t k = 0; k < sizeof(reserved) / sizeof(reserved[0]); k++) {
        char buf[32];
        expect_ps(reserved[k], TG_EPROTO);
        snprintf(buf, sizeof(buf), "92 01 %s", reserved[k]);
        expect_ps(buf, TG_EPROTO);
    }
    /* Empty, truncated, trailing. */
    expect_ps("", TG_EPROTO);
    expect_ps("C1 000000", TG_EPROTO);
    expect_ps("C9 00", TG_EPROTO);
    expect_ps("CB 00000000000000", TG_EPROTO);
    expect_ps("D0", TG_EPROTO);
    expect_ps("D1 00", TG_EPROTO);
    expect_ps("D0 05 6162", TG_EPROTO);
    expect_ps("85 6162", TG_EPROTO);
    expect_ps("CC 04 010203", TG_EPROTO);
    expect_ps("B1", TG_EPROTO);    /* no tag */
    expect_ps("B1 10", TG_EPROTO); /* no field */
    expect_ps("92 01", TG_EPROTO);
    expect_ps("A1 8161", TG_EPROTO);
    expect_ps("D4", TG_EPROTO);
    expect_ps("01 01", TG_EPROTO);
    expect_ps("90 C0", TG_EPROTO);
    /* Lengths lying: beyond the bytes left, or beyond 2^31 - 1. */
    expect_ps("D6 7FFFFFFF 01 02 03 04 05", TG_EPROTO);
    expect_ps("D6 FFFFFFFF", TG_EPROTO);
    expect_ps("DA 7FFFFFFF 8161 01", TG_EPROTO);
    expect_ps("D2 7FFFFFFF 61", TG_EPROTO);
    expect_ps("D2 80000000", TG_EPROTO);
    expect_ps("CE FFFFFFFF 00", TG_EPROTO);
    expect_ps("D5 0003 01 02", TG_EPROTO);
    expect_ps("92 D4 05 01 01", TG_EPROTO); /* nested: 5 items announced, 2 bytes left */
    expect_ps("A2 8161 01", TG_EPROTO);     /* 2 entries need at least 4 bytes */
    /* Structures: tags 0..127 only; at most 15 fields by construction. */
    expect_ps("B0 80", TG_EPROTO);
    expect_ps("B0 FF", TG_EPROTO);
    expect_ps("B0 7F", 0);
    /* Keys: strings, unique (small and large dictionaries). */
    expect_ps("A1 01 01", TG_EPROTO);
    expect_ps("A1 C0 01", TG_EPROTO);
    expect_ps("A1 90 01", TG_EPROTO);
    expect_ps("A1 B0 44 01", TG_EPROTO);
    expect_ps("91 A1 8161 A1 01 01", TG_EPROTO);
    expect_ps("A2 8161 01 8161 02", TG_EPROTO);
    expect_ps("A2 8161 01 D0 01 61 02", TG_EPROTO); /* same key, wider encoding */
    expect_ps("A2 8161 01 8162 02", 0);
    expect_ps("A2 80 01 80 02", TG_EPROTO);
    {
        char buf[512] = "D8 14";
        for (int i = 0; i < 20; i++) {
            char e[16];
            snprintf(e, sizeof(e), " 82 6B%02X 01", i == 19 ? 3 : i);
            strcat(buf, e);
        }
        expect_ps(buf, TG_EPROTO);
        buf[strlen(buf) - 5] = '4';
        buf[strlen(buf) - 4] = '0';
        expect_ps(buf, 0);
    }
    /* UTF-8: invalid bytes, overlong forms, surrogates, above U+10FFFF, cut sequences. */
    expect_ps("81 FF", TG_EPROTO);
    expect_ps("81 80", TG_EPROTO);
    expect_ps("82 C0 80", TG_EPROTO);
    expect_ps("82 C1 BF", TG_EPROTO);
    expect_ps("83 E0 80 80", TG_EPROTO);
    expect_ps("83 ED A0 80", TG_EPROTO);
    expect_ps("84 F0 80 80 80", TG_EPROTO);
    expect_ps("84 F4 90 80 80", TG_EPROTO);
    expect_ps("84 F5 80 80 80", TG_EPROTO);
    expect_ps("82 E2 82", TG_EPROTO);
    expect_ps("89 61616161616161 E2 82", TG_EPROTO);
    expect_ps("83 E2 82 AC", 0);
    expect_ps("84 F0 9D 84 9E", 0);
    expect_ps("83 ED 9F BF", 0);
    expect_ps("84 F4 8F BF BF", 0);
    expect_ps("A1 81 FF 01", TG_EPROTO); /* in a key too */
}

static void test_ps_limits(void **state)
{
    (void)state;
    /* A nesting bomb: 1000 nested lists. */
    size_t n = 1001;
    uint8_t *p = malloc(n);
    assert_non_null(p);
    memset(p, 0x91, n - 1);
    p[n - 1] = 0x01;
    tg_ps_doc d;
    tg_ps_doc_init(&d);
    assert_int_equal(decode(&d, p, n, &def, NULL), TG_ETOOBIG);
    assert_int_equal(d.n, 0);
    /* Exactly max_depth containers are fine, one more is not; maps and structures count too. */
    tg_ps_limits lim = {.max_depth = 5, .max_values = 100};
    assert_int_equal(decode(&d, p + n - 6, 6, &lim, NULL), 0);
    assert_int_equal(decode(&d, p + n - 7, 7, &lim, NULL), TG_ETOOBIG);
    assert_int_equal(ps_rc_hex("91 A1 8161 B1 44 91 91 01", &lim), 0);
    assert_int_equal(ps_rc_hex("91 A1 8161 B1 44 91 91 91 01", &lim), TG_ETOOBIG);
    /* The hard cap applies whatever the limit says. */
    lim = (tg_ps_limits){.max_depth = 100000, .max_values = 1000};
    assert_int_equal(decode(&d, p, n, &lim, NULL), TG_ETOOBIG);
    assert_int_equal(decode(&d, p + n - TG_PS_DEPTH_CAP - 1, TG_PS_DEPTH_CAP + 1, &lim, NULL), 0);
    free(p);

    /* A count that cannot fit fails at its header, before any allocation grows. */
    tg_ps_doc_free(&d);
    assert_int_equal(ps_rc_hex("D6 7FFFFFFF 00000000000000000000", &def), TG_EPROTO);
    tg_ps_doc_init(&d);
    size_t hn;
    uint8_t *h = hex("92 D6 00100000 01", &hn);
    assert_int_equal(decode(&d, h, hn, &def, NULL), TG_EPROTO);
    assert_true(d.cap <= 64);
    free(h);

    /* max_values: judged when a header announces more than the limit allows. */
    lim = (tg_ps_limits){.max_depth = 8, .max_values = 10};
    assert_int_equal(ps_rc_hex("99 010203040506070809", &lim), 0);
    assert_int_equal(ps_rc_hex("9A 0102030405060708090A", &lim), TG_ETOOBIG);
    assert_int_equal(ps_rc_hex("A5 8161 01 8162 02 8163 03 8164 04 8165 05", &lim), TG_ETOOBIG);
    assert_int_equal(ps_rc_hex("A4 8161 01 8162 02 8163 03 8164 04", &lim), 0);
    /* Pre-auth limits refuse a RECORD-sized list. */
    tg_buf out = {0};
    tg_ps_builder b;
    tg_ps_begin(&b, &out);
    tg_ps_put_list(&b, 300);
    for (int i = 0; i < 300; i++)
        tg_ps_put_int(&b, i);
    assert_int_equal(tg_ps_end(&b), 0);
    tg_ps_limits pre = TG_PS_LIMITS_PREAUTH;
    assert_int_equal(decode(&d, out.data, out.len, &pre, NULL), TG_ETOOBIG);
    assert_int_equal(decode(&d, out.data, out.len, &def, NULL), 0);
    tg_buf_free(&out);
    tg_ps_doc_free(&d);
}

static void test_ps_builder_errors(void **state)
{
    (void)state;
    tg_buf out = {0};
    assert_int_equal(tg_buf_append(&out, "keep", 4), 0);
    tg_ps_builder b;
    /* A non-string key. */
    tg_ps_begin(&b, &out);
    tg_ps_put_map(&b, 1);
    tg_ps_put_int(&b, 1);
    tg_ps_put_int(&b, 2);
    assert_int_equal(tg_ps_end(&b), TG_EINVAL);
    assert_int_equal(out.len, 4);
    /* Missing values, missing root, two roots. */
    tg_ps_begin(&b, &out);
    tg_ps_put_list(&b, 2);
    tg_ps_put_int(&b, 1);
    assert_int_equal(tg_ps_end(&b), TG_EINVAL);
    tg_ps_begin(&b, &out);
    assert_int_equal(tg_ps_end(&b), TG_EINVAL);
    tg_ps_begin(&b, &out);
    tg_ps_put_int(&b, 1);
    tg_ps_put_int(&b, 2);
    assert_int_equal(tg_ps_end(&b), TG_EINVAL);
    /* Invalid UTF-8, tags above 127, more than 15 fields, a NULL string. */
    tg_ps_begin(&b, &out);
    tg_ps_put_string(&b, "\xC0\x80", 2);
    assert_int_equal(tg_ps_end(&b), TG_EINVAL);
    tg_ps_begin(&b, &out);
    tg_ps_put_struct(&b, 0x80, 0);
    assert_int_equal(tg_ps_end(&b), TG_EINVAL);
    tg_ps_begin(&b, &out);
    tg_ps_put_struct(&b, 0x10, 16);
    assert_int_equal(tg_ps_end(&b), TG_EINVAL);
    tg_ps_begin(&b, &out);
    tg_ps_put_str(&b, NULL);
    assert_int_equal(tg_ps_end(&b), TG_EINVAL);
    /* Nesting deeper than the builder's stack. */
    tg_ps_begin(&b, &out);
    for (int i = 0; i <= TG_PS_DEPTH_CAP; i++)
        tg_ps_put_list(&b, 1);
    assert_int_equal(tg_ps_end(&b), TG_EINVAL);
    assert_int_equal(out.len, 4);
    assert_memory_equal(out.data, "keep", 4);
    /* Edits: duplicate edit keys, a non-dictionary source. */
    tg_ps_edit edits[2] = {{tg_slice_str("a"), TG_PS_EDIT_DROP, {NULL, 0}, 0},
                           {tg_slice_str("a"), TG_PS_EDIT_SET_INT, {NULL, 0}, 1}};
    tg_ps_begin(&b, &out);
    tg_ps_put_map_edit(&b, NULL, 0, edits, 2);
    assert_int_equal(tg_ps_end(&b), TG_EINVAL);
    tg_ps_doc d;
    tg_ps_doc_init(&d);
    uint8_t one = 1;
    assert_int_equal(tg_ps_decode(&d, &one, 1, &def), 0);
    tg_ps_begin(&b, &out);
    tg_ps_put_map_edit(&b, &d, 0, edits, 1);
    assert_int_equal(tg_ps_end(&b), TG_EINVAL);
    assert_int_equal(out.len, 4);
    tg_ps_doc_free(&d);
    tg_buf_free(&out);
}

static void test_ps_map_edit(void **state)
{
    (void)state;
    tg_buf src = {0};
    lit(&src, "{a: 1, tenant: \"evil\", b: [2], c: null}");
    tg_ps_doc d, e;
    tg_ps_doc_init(&d);
    tg_ps_doc_init(&e);
    uint8_t *keep;
    assert_int_equal(decode(&d, src.data, src.len, &def, &keep), 0);
    tg_ps_edit edits[] = {
        {tg_slice_str("tenant"), TG_PS_EDIT_SET_STR, tg_slice_str("t1"), 0},
        {tg_slice_str("c"), TG_PS_EDIT_DROP, {NULL, 0}, 0},
        {tg_slice_str("new"), TG_PS_EDIT_SET_INT, {NULL, 0}, -5},
        {tg_slice_str("gone"), TG_PS_EDIT_DROP, {NULL, 0}, 0},
        {tg_slice_str("nil"), TG_PS_EDIT_SET_NULL, {NULL, 0}, 0},
    };
    tg_buf out = {0};
    tg_ps_builder b;
    tg_ps_begin(&b, &out);
    tg_ps_put_map_edit(&b, &d, 0, edits, 5);
    assert_int_equal(tg_ps_end(&b), 0);
    tg_buf want = {0};
    lit(&want, "{a: 1, tenant: \"t1\", b: [2], new: -5, nil: null}");
    assert_int_equal(out.len, want.len);
    assert_memory_equal(out.data, want.data, want.len);
    /* From nothing. */
    out.len = 0;
    tg_ps_begin(&b, &out);
    tg_ps_put_map_edit(&b, NULL, 0, edits, 5);
    assert_int_equal(tg_ps_end(&b), 0);
    lit(&want, "{tenant: \"t1\", new: -5, nil: null}");
    assert_int_equal(out.len, want.len);
    assert_memory_equal(out.data, want.data, want.len);
    tg_ps_doc_free(&d);
    tg_ps_doc_free(&e);
    free(keep);
    tg_buf_free(&want);
    tg_buf_free(&out);
    tg_buf_free(&src);
}

/* ---- message shapes ---- */

static void test_msg_requests(void **state)
{
    (void)state;
    /* HELLO: auth inside up to 5.0, never from 5.1 (LOGON carries it). */
    const char *hello_auth = "S01[{user_agent: \"a/1\", scheme: \"basic\", principal: \"u\", "
                             "credentials: \"p\", routing: {address: \"h:1\"}}]";
    expect_msg(hello_auth, V44, 0, CLIENT, 0);
    expect_msg(hello_auth, V50, 0, CLIENT, 0);
    expect_msg(hello_auth, V51, 0, CLIENT, TG_EPROTO);
    expect_msg("S01[{user_agent: \"a/1\", routing: null}]", V51, 0, CLIENT, 0);
    expect_msg("S01[{user_agent: \"a/1\", patch_bolt: [\"utc\"]}]", V44, 0, CLIENT, 0);
    expect_msg("S01[{user_agent: \"a/1\", patch_bolt: [\"utc\"]}]", V50, 0, CLIENT, TG_EPROTO);
    expect_msg("S01[{user_agent: \"a/1\", patch_bolt: [1]}]", V44, 0, CLIENT, TG_EPROTO);
    expect_msg("S01[{user_agent: \"a/1\", bolt_agent: {product: \"x/1\"}}]", V53, 0, CLIENT, 0);
    expect_msg("S01[{user_agent: \"a/1\", bolt_agent: {product: \"x/1\"}}]", V52, 0, CLIENT,
               TG_EPROTO);
    expect_msg("S01[{user_agent: \"a/1\", bolt_agent: {product: 1}}]", V53, 0, CLIENT, TG_EPROTO);
    expect_msg("S01[{notifications_disabled_categories: [\"HINT\"]}]", V52, 0, CLIENT, 0);
    expect_msg("S01[{notifications_disabled_categories: [\"HINT\"]}]", V55, 0, CLIENT, TG_EPROTO);
    expect_msg("S01[{notifications_disabled_classifications: [\"HINT\"]}]", V56, 0, CLIENT, 0);
    expect_msg("S01[{notifications_disabled_classifications: [\"HINT\"]}]", V54, 0, CLIENT,
               TG_EPROTO);
    expect_msg("S01[{user_agent: 5}]", V56, 0, CLIENT, TG_EPROTO);
    expect_msg("S01[{user_agent: \"a/1\", unknown: 1}]", V56, 0, CLIENT, TG_EPROTO);
    expect_msg("S01[]", V56, 0, CLIENT, TG_EPROTO);
    expect_msg("S01[{}, {}]", V56, 0, CLIENT, TG_EPROTO);
    expect_msg("S01[\"a/1\", {}]", V44, 0, CLIENT, TG_EPROTO); /* Bolt 1/2 INIT */
    /* LOGON / LOGOFF from 5.1. */
    expect_msg("S6A[{scheme: \"bearer\", credentials: \"jwt\"}]", V51, 0, CLIENT, 0);
    expect_msg("S6A[{scheme: \"bearer\", credentials: \"jwt\"}]", V50, 0, CLIENT, TG_EPROTO);
    expect_msg("S6A[{scheme: \"basic\", principal: \"u\", credentials: 1}]", V56, 0, CLIENT,
               TG_EPROTO);
    expect_msg("S6A[{scheme: \"basic\", imp_user: \"admin\"}]", V56, 0, CLIENT, TG_EPROTO);
    expect_msg("S6B[]", V51, 0, CLIENT, 0);
    expect_msg("S6B[]", V44, 0, CLIENT, TG_EPROTO);
    expect_msg("S6B[{}]", V56, 0, CLIENT, TG_EPROTO);
    /* RUN. */
    expect_msg("S10[\"RETURN 1\", {}, {}]", V44, 0, CLIENT, 0);
    expect_msg("S10[\"RETURN $x\", {x: 1, y: [S44[1]]}, {db: \"neo4j\", mode: \"r\", bookmarks: "
               "[\"b\"], tx_timeout: 5, tx_metadata: {a: 1}, imp_user: null}]",
               V56, 0, CLIENT, 0);
    expect_msg("S10[\"RETURN 1\", {}, {db: null, tx_metadata: null}]", V56, 0, CLIENT, 0);
    expect_msg("S10[\"RETURN 1\", {}]", V56, 0, CLIENT, TG_EPROTO);
    expect_msg("S10[\"RETURN 1\", {}, {}, {}]", V56, 0, CLIENT, TG_EPROTO);
    expect_msg("S10[1, {}, {}]", V56, 0, CLIENT, TG_EPROTO);
    expect_msg("S10[\"RETURN 1\", [], {}]", V56, 0, CLIENT, TG_EPROTO);
    expect_msg("S10[\"RETURN 1\", {}, null]", V56, 0, CLIENT, TG_EPROTO);
    expect_msg("S10[\"RETURN 1\", {}, {db: 1}]", V56, 0, CLIENT, TG_EPROTO);
    expect_msg("S10[\"RETURN 1\", {}, {bookmarks: [1]}]", V56, 0, CLIENT, TG_EPROTO);
    expect_msg("S10[\"RETURN 1\", {}, {tx_timeout: \"5\"}]", V56, 0, CLIENT, TG_EPROTO);
    expect_msg("S10[\"RETURN 1\", {}, {database: \"x\"}]", V56, 0, CLIENT, TG_EPROTO);
    expect_msg("S10[\"RETURN 1\", {}, {notifications_minimum_severity: \"OFF\"}]", V52, 0, CLIENT,
               0);
    expect_msg("S10[\"RETURN 1\", {}, {notifications_minimum_severity: \"OFF\"}]", V51, 0, CLIENT,
               TG_EPROTO);
    /* Graph entities are replies, never parameters. */
    expect_msg("S10[\"RETURN $n\", {n: S4E[1, [\"L\"], {}, \"4:x:1\"]}, {}]", V56, 0, CLIENT,
               TG_EPROTO);
    expect_msg("S10[\"RETURN $n\", {n: [S52[1, 1, 2, \"T\", {}, \"a\", \"b\", \"c\"]]}, {}]", V56,
               0, CLIENT, TG_EPROTO);
    /* BEGIN, COMMIT, ROLLBACK. */
    expect_msg("S11[{db: \"neo4j\", imp_user: \"u\", mode: \"w\"}]", V44, 0, CLIENT, 0);
    expect_msg("S11[{qid: 1}]", V44, 0, CLIENT, TG_EPROTO);
    expect_msg("S12[]", V44, 0, CLIENT, 0);
    expect_msg("S13[]", V56, 0, CLIENT, 0);
    expect_msg("S13[{}]", V56, 0, CLIENT, TG_EPROTO);
    /* PULL / DISCARD need n. */
    expect_msg("S3F[{n: -1}]", V44, 0, CLIENT, 0);
    expect_msg("S3F[{n: 1000, qid: 7}]", V56, 0, CLIENT, 0);
    expect_msg("S3F[{qid: 7}]", V56, 0, CLIENT, TG_EPROTO);
    expect_msg("S3F[{n: \"all\"}]", V56, 0, CLIENT, TG_EPROTO);
    expect_msg("S3F[]", V56, 0, CLIENT, TG_EPROTO);
    expect_msg("S2F[{n: -1, qid: -1}]", V56, 0, CLIENT, 0);
    expect_msg("S2F[{n: -1, db: \"x\"}]", V56, 0, CLIENT, TG_EPROTO);
    /* TELEMETRY from 5.4. */
    expect_msg("S54[2]", V54, 0, CLIENT, 0);
    expect_msg("S54[2]", V53, 0, CLIENT, TG_EPROTO);
    expect_msg("S54[\"2\"]", V56, 0, CLIENT, TG_EPROTO);
    /* ROUTE: routing context, bookmarks, extra {db, imp_user}. */
    expect_msg("S66[{address: \"h:1\"}, [], {db: \"neo4j\"}]", V44, 0, CLIENT, 0);
    expect_msg("S66[{address: \"h:1\"}, [\"b1\"], {imp_user: null}]", V56, 0, CLIENT, 0);
    expect_msg("S66[{address: \"h:1\"}, [], \"neo4j\"]", V44, 0, CLIENT, TG_EPROTO); /* 4.3 */
    expect_msg("S66[{}, [1], {}]", V56, 0, CLIENT, TG_EPROTO);
    expect_msg("S66[{}, [], {mode: \"r\"}]", V56, 0, CLIENT, TG_EPROTO);
    /* GOODBYE, RESET; replies and unknown signatures from a client. */
    expect_msg("S02[]", V44, 0, CLIENT, 0);
    expect_msg("S0F[]", V56, 0, CLIENT, 0);
    expect_msg("S0E[]", V56, 0, CLIENT, TG_EPROTO); /* ACK_FAILURE: Bolt 1/2 */
    expect_msg("S2F[]", V56, 0, CLIENT, TG_EPROTO); /* DISCARD_ALL: Bolt 1-3 */
    expect_msg("S70[{}]", V56, 0, CLIENT, TG_EPROTO);
    expect_msg("S55[]", V56, 0, CLIENT, TG_EPROTO);
    /* Not a structure at all. */
    expect_msg("{}", V56, 0, CLIENT, TG_EPROTO);
    expect_msg("1", V56, 0, CLIENT, TG_EPROTO);
    /* Versions this codec does not know. */
    expect_msg("S0F[]", TG_BOLT_V(4, 3), 0, CLIENT, TG_EINVAL);
    expect_msg("S0F[]", TG_BOLT_V(5, 7), 0, CLIENT, TG_EINVAL);
}

static void test_msg_replies(void **state)
{
    (void)state;
    expect_msg("S70[{}]", V44, 0, SERVER, 0);
    expect_msg("S70[{fields: [\"x\"], t_first: 1, qid: 0, future_key: [1, {}]}]", V56, 0, SERVER,
               0);
    expect_msg("S70[{has_more: \"yes\"}]", V56, 0, SERVER, TG_EPROTO);
    expect_msg("S70[{fields: [1]}]", V56, 0, SERVER, TG_EPROTO);
    expect_msg("S70[{qid: \"1\"}]", V56, 0, SERVER, TG_EPROTO);
    expect_msg("S70[]", V56, 0, SERVER, TG_EPROTO);
    expect_msg("S7F[{code: \"Neo.ClientError.Security.Forbidden\", message: \"no\"}]", V56, 0,
               SERVER, 0);
    expect_msg("S7F[{message: \"no\"}]", V56, 0, SERVER, TG_EPROTO);
    expect_msg("S7F[{code: 1, message: \"no\"}]", V56, 0, SERVER, TG_EPROTO);
    expect_msg("S7E[]", V56, 0, SERVER, 0);
    expect_msg("S7E[{}]", V56, 0, SERVER, TG_EPROTO);
    expect_msg("S71[[1, \"a\", null]]", V56, 0, SERVER, 0);
    expect_msg("S71[{}]", V56, 0, SERVER, TG_EPROTO);
    expect_msg("S10[\"RETURN 1\", {}, {}]", V56, 0, SERVER, TG_EPROTO);

    /* Graph entities: 4.4 and 5.x shapes. */
    const char *node44 = "S71[[S4E[1, [\"L\"], {a: 1}]]]";
    const char *node5 = "S71[[S4E[1, [\"L\"], {a: 1}, \"4:x:1\"]]]";
    expect_msg(node44, V44, 0, SERVER, 0);
    expect_msg(node44, V50, 0, SERVER, TG_EPROTO);
    expect_msg(node5, V56, 0, SERVER, 0);
    expect_msg(node5, V44, 0, SERVER, TG_EPROTO);
    expect_msg("S71[[S4E[1, [1], {}, \"4:x:1\"]]]", V56, 0, SERVER, TG_EPROTO);
    expect_msg("S71[[S4E[1, [], {}, null]]]", V56, 0, SERVER, TG_EPROTO);
    expect_msg("S71[[S52[1, 2, 3, \"T\", {}]]]", V44, 0, SERVER, 0);
    expect_msg("S71[[S52[1, 2, 3, \"T\", {}, \"e\", \"s\", \"t\"]]]", V50, 0, SERVER, 0);
    expect_msg("S71[[S52[1, 2, 3, \"T\", {}]]]", V56, 0, SERVER, TG_EPROTO);
    expect_msg("S71[[S52[1, 2, \"3\", \"T\", {}]]]", V44, 0, SERVER, TG_EPROTO);
    expect_msg("S71[[S72[1, \"T\", {}]]]", V44, 0, SERVER, 0);
    expect_msg("S71[[S72[1, \"T\", {}, \"e\"]]]", V56, 0, SERVER, 0);
    /* Paths: lists of the right structures and indices in range. */
#define PATH_FMT                                                                                   \
    "S71[[S50[[S4E[1, [], {}, \"a\"], S4E[2, [], {}, \"b\"]], [S72[7, \"T\", {}, \"r\"]], %s]]]"
    static const struct {
        const char *indices;
        int want;
    } paths[] = {
        {"[1, 1]", 0},
        {"[1, 1, -1, 0]", 0},
        {"[]", 0},
        {"[1]", TG_EPROTO},
        {"[0, 1]", TG_EPROTO},
        {"[2, 1]", TG_EPROTO},
        {"[-2, 1]", TG_EPROTO},
        {"[1, 2]", TG_EPROTO},
        {"[1, -1]", TG_EPROTO},
        {"[1, \"1\"]", TG_EPROTO},
        {"[-9223372036854775808, 0]", TG_EPROTO},
    };
    for (size_t k = 0; k < sizeof(paths) / sizeof(paths[0]); k++) {
        char buf[512];
        snprintf(buf, sizeof(buf), PATH_FMT, paths[k].indices);
        expect_msg(buf, V56, 0, SERVER, paths[k].want);
    }
    expect_msg("S71[[S50[[], [], []]]]", V56, 0, SERVER, TG_EPROTO);
    expect_msg("S71[[S50[[S4E[1, [], {}, \"a\"]], [S4E[2, [], {}, \"b\"]], []]]]", V56, 0, SERVER,
               TG_EPROTO);
    expect_msg("S71[[S50[[S72[7, \"T\", {}, \"r\"]], [], []]]]", V56, 0, SERVER, TG_EPROTO);

    /* Temporal and spatial values, both directions. */
    static const char *const values[] = {
        "S44[19782]",
        "S54[45296000000123, 3600]",
        "S74[45296000000123]",
        "S64[1709210096, 123]",
        "S45[14, 3, 3723, 500]",
        "S58[4326, 13.4, 52.5]",
        "S59[4979, 13.4, 52.5, 34.0]",
    };
    for (size_t k = 0; k < sizeof(values) / sizeof(values[0]); k++) {
        char buf[256];
        snprintf(buf, sizeof(buf), "S71[[%s]]", values[k]);
        expect_msg(buf, V44, 0, SERVER, 0);
        expect_msg(buf, V56, 0, SERVER, 0);
        snprintf(buf, sizeof(buf), "S10[\"RETURN $v\", {v: %s}, {}]", values[k]);
        expect_msg(buf, V44, 0, CLIENT, 0);
        expect_msg(buf, V53, 0, CLIENT, 0);
    }
    expect_msg("S71[[S44[\"2024-02-29\"]]]", V56, 0, SERVER, TG_EPROTO);
    expect_msg("S71[[S44[1, 2]]]", V56, 0, SERVER, TG_EPROTO);
    expect_msg("S71[[S58[4326, 1, 2]]]", V56, 0, SERVER, TG_EPROTO); /* coordinates are floats */
    expect_msg("S71[[S59[4979, 1.0, 2.0]]]", V56, 0, SERVER, TG_EPROTO);
    expect_msg("S71[[S5A[1]]]", V56, 0, SERVER, TG_EPROTO);  /* unknown structure */
    expect_msg("S71[[S70[{}]]]", V56, 0, SERVER, TG_EPROTO); /* a message inside a message */
    /* DateTime: I/i in 5.x and in 4.4 with the utc patch; F/f in 4.4 without it. */
    static const struct {
        const char *v;
        uint16_t version;
        unsigned flags;
        int want;
    } dt[] = {
        {"S49[1, 2, 3600]", V50, 0, 0},
        {"S69[1, 2, \"Europe/Paris\"]", V56, 0, 0},
        {"S46[1, 2, 3600]", V50, 0, TG_EPROTO},
        {"S66[1, 2, \"Europe/Paris\"]", V56, 0, TG_EPROTO},
        {"S46[1, 2, 3600]", V44, 0, 0},
        {"S66[1, 2, \"Europe/Paris\"]", V44, 0, 0},
        {"S49[1, 2, 3600]", V44, 0, TG_EPROTO},
        {"S69[1, 2, \"Europe/Paris\"]", V44, 0, TG_EPROTO},
        {"S49[1, 2, 3600]", V44, TG_BOLT_PATCH_UTC, 0},
        {"S69[1, 2, \"Europe/Paris\"]", V44, TG_BOLT_PATCH_UTC, 0},
        {"S46[1, 2, 3600]", V44, TG_BOLT_PATCH_UTC, TG_EPROTO},
        {"S69[1, 2, 3]", V56, 0, TG_EPROTO},
    };
    for (size_t k = 0; k < sizeof(dt) / sizeof(dt[0]); k++) {
        char buf[256];
        snprintf(buf, sizeof(buf), "S71[[%s]]", dt[k].v);
        expect_msg(buf, dt[k].version, dt[k].flags, SERVER, dt[k].want);
        snprintf(buf, sizeof(buf), "S10[\"RETURN $v\", {v: [%s]}, {}]", dt[k].v);
        expect_msg(buf, dt[k].version, dt[k].flags, CLIENT, dt[k].want);
    }
}

/* ---- builders ---- */

/* Decodes the single chunked message in out into d (bytes in *keep) and checks it into *m. */
static void decode_built(const tg_buf *out, tg_ps_doc *d, uint8_t **keep, uint16_t version,
                         tg_bolt_dir dir, tg_bolt_msg *m)
{
    tg_bolt_frame f;
    assert_int_equal(tg_bolt_decode_frame(out->data, out->len, TG_BOLT_MAX_MSG_DEFAULT, NULL, &f),
                     (ssize_t)out->len);
    *keep = malloc(f.len);
    assert_non_null(*keep);
    tg_bolt_frame_copy(out->data, &f, *keep);
    const char *why = NULL;
    int rc = tg_bolt_decode_msg(d, *keep, f.len, &def, version, 0, dir, m, &why);
    if (rc != 0)
        fail_msg("built message refused: %s", why);
}

static void test_build_replies(void **state)
{
    (void)state;
    tg_buf out = {0};
    tg_ps_doc d;
    tg_ps_doc_init(&d);
    tg_bolt_msg m;
    uint8_t *keep;

    static const uint8_t empty[] = {TG_BOLT_GOODBYE,  TG_BOLT_RESET,  TG_BOLT_COMMIT,
                                    TG_BOLT_ROLLBACK, TG_BOLT_LOGOFF, TG_BOLT_IGNORED};
    for (size_t k = 0; k < sizeof(empty); k++) {
        out.len = 0;
        assert_int_equal(tg_bolt_build_empty(&out, empty[k]), 0);
        assert_int_equal(out.len, 6);
        uint8_t want[6] = {0, 2, 0xB0, empty[k], 0, 0};
        assert_memory_equal(out.data, want, 6);
        decode_built(&out, &d, &keep, V56, empty[k] == TG_BOLT_IGNORED ? SERVER : CLIENT, &m);
        assert_int_equal(m.signature, empty[k]);
        free(keep);
    }

    out.len = 0;
    assert_int_equal(tg_bolt_build_success(&out), 0);
    assert_memory_equal(out.data, "\x00\x03\xB1\x70\xA0\x00\x00", 7);

    out.len = 0;
    assert_int_equal(tg_bolt_build_failure(&out, "Neo.ClientError.Security.Forbidden",
                                           "tenantgate: USE is not allowed"),
                     0);
    decode_built(&out, &d, &keep, V44, SERVER, &m);
    assert_int_equal(m.signature, TG_BOLT_FAILURE);
    assert_true(tg_ps_is_str(&d, tg_ps_map_get(&d, m.field[0], tg_slice_str("code")),
                             "Neo.ClientError.Security.Forbidden"));
    assert_true(tg_ps_is_str(&d, tg_ps_map_get(&d, m.field[0], tg_slice_str("message")),
                             "tenantgate: USE is not allowed"));
    free(keep);
    out.len = 0;
    assert_int_equal(tg_bolt_build_failure(&out, "X", "\xFF"), TG_EINVAL);
    assert_int_equal(out.len, 0);

    /* ROUTE answer: the same bytes the fake server gave the JS driver (which routed with it). */
    out.len = 0;
    assert_int_equal(tg_bolt_build_route_success(&out, 300, "neo4j", "127.0.0.1:7688"), 0);
    decode_built(&out, &d, &keep, V56, SERVER, &m);
    uint32_t rt = tg_ps_map_get(&d, m.field[0], tg_slice_str("rt"));
    assert_int_equal(d.v[tg_ps_map_get(&d, rt, tg_slice_str("ttl"))].u.i, 300);
    assert_true(tg_ps_is_str(&d, tg_ps_map_get(&d, rt, tg_slice_str("db")), "neo4j"));
    uint32_t servers = tg_ps_map_get(&d, rt, tg_slice_str("servers"));
    assert_int_equal(d.v[servers].count, 3);
    static const char *const roles[] = {"WRITE", "READ", "ROUTE"};
    for (uint32_t k = 0; k < 3; k++) {
        uint32_t s = tg_ps_child(&d, servers, k);
        assert_true(tg_ps_is_str(&d, tg_ps_map_get(&d, s, tg_slice_str("role")), roles[k]));
        uint32_t addrs = tg_ps_map_get(&d, s, tg_slice_str("addresses"));
        assert_int_equal(d.v[addrs].count, 1);
        assert_true(tg_ps_is_str(&d, tg_ps_child(&d, addrs, 0), "127.0.0.1:7688"));
    }
    free(keep);
    out.len = 0;
    assert_int_equal(tg_bolt_build_route_success(&out, 10, NULL, "h:1"), 0);
    decode_built(&out, &d, &keep, V44, SERVER, &m);
    rt = tg_ps_map_get(&d, m.field[0], tg_slice_str("rt"));
    assert_int_equal(d.v[rt].count, 2);
    free(keep);

    out.len = 0;
    assert_int_equal(tg_bolt_build_logon(&out, "svc", "secret"), 0);
    decode_built(&out, &d, &keep, V51, CLIENT, &m);
    assert_true(tg_ps_is_str(&d, tg_ps_map_get(&d, m.field[0], tg_slice_str("scheme")), "basic"));
    free(keep);

    tg_ps_doc_free(&d);
    tg_buf_free(&out);
}

/* The first message with this signature in a captured client stream, decoded into d. */
static void captured(const char *file, size_t skip, uint16_t version, uint8_t sig, tg_ps_doc *d,
                     uint8_t **keep, tg_bolt_msg *m)
{
    size_t n;
    uint8_t *data = read_data_file(file, &n);
    size_t pos = skip;
    for (;;) {
        tg_bolt_frame f;
        ssize_t rc = tg_bolt_decode_frame(data + pos, n - pos, TG_BOLT_MAX_MSG_DEFAULT, NULL, &f);
        assert_true(rc > 0);
        *keep = malloc(f.len);
        assert_non_null(*keep);
        tg_bolt_frame_copy(data + pos, &f, *keep);
        assert_int_equal(tg_bolt_decode_msg(d, *keep, f.len, &def, version, 0, CLIENT, m, NULL), 0);
        if (m->signature == sig)
            break;
        free(*keep);
        pos += (size_t)rc;
    }
    free(data);
}

static bool contains(const tg_buf *b, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i + n <= b->len; i++)
        if (memcmp(b->data + i, s, n) == 0)
            return true;
    return false;
}

static void test_build_rewrites(void **state)
{
    (void)state;
    static const char *jwt = "eyJhbGciOiJIUzI1NiJ9";
    tg_ps_doc d, r;
    tg_ps_doc_init(&d);
    tg_ps_doc_init(&r);
    tg_bolt_msg m, rm;
    uint8_t *keep, *rkeep;
    tg_buf out = {0};

    /* RUN: new query, the tenant parameter added, db mapped; everything else as sent. */
    captured("unit/protocols/bolt/data/v56_basic_0.client.bin", 20, V56, TG_BOLT_RUN, &d, &keep,
             &m);
    tg_ps_edit pe[] = {{tg_slice_str("__tg_tenant"), TG_PS_EDIT_SET_STR, tg_slice_str("t1"), 0}};
    tg_ps_edit ee[] = {{tg_slice_str("db"), TG_PS_EDIT_SET_STR, tg_slice_str("tenant-t1"), 0}};
    const char *q = "MATCH (p:Person {name: $name, tenant_id: $__tg_tenant}) RETURN p";
    assert_int_equal(tg_bolt_build_run(&out, &d, &m, tg_slice_str(q), pe, 1, ee, 1), 0);
    decode_built(&out, &r, &rkeep, V56, CLIENT, &rm);
    assert_int_equal(rm.signature, TG_BOLT_RUN);
    assert_true(tg_ps_is_str(&r, rm.field[0], q));
    assert_int_equal(r.v[rm.field[1]].count, d.v[m.field[1]].count + 1);
    assert_true(
        tg_ps_is_str(&r, tg_ps_map_get(&r, rm.field[1], tg_slice_str("__tg_tenant")), "t1"));
    uint32_t j = m.field[1] + 1;
    for (uint32_t k = 0; k < d.v[m.field[1]].count; k++) {
        uint32_t there = tg_ps_map_get(&r, rm.field[1], d.v[j].u.s);
        assert_true(there != 0 && tg_ps_equal(&d, j + 1, &r, there));
        j = d.v[j + 1].next;
    }
    assert_true(tg_ps_is_str(&r, tg_ps_map_get(&r, rm.field[2], tg_slice_str("db")), "tenant-t1"));
    assert_int_equal(r.v[rm.field[2]].count, 1);
    free(rkeep);

    /* An attacker's parameter of the reserved name is overwritten in place, never duplicated. */
    tg_buf atk = {0};
    lit(&atk, "S10[\"RETURN 1\", {__tg_tenant: \"victim\", a: 1}, {}]");
    tg_ps_doc a;
    tg_ps_doc_init(&a);
    tg_bolt_msg am;
    assert_int_equal(tg_bolt_decode_msg(&a, atk.data, atk.len, &def, V56, 0, CLIENT, &am, NULL), 0);
    out.len = 0;
    assert_int_equal(tg_bolt_build_run(&out, &a, &am, tg_slice_str("RETURN 1"), pe, 1, NULL, 0), 0);
    decode_built(&out, &r, &rkeep, V56, CLIENT, &rm);
    assert_int_equal(r.v[rm.field[1]].count, 2);
    assert_true(
        tg_ps_is_str(&r, tg_ps_map_get(&r, rm.field[1], tg_slice_str("__tg_tenant")), "t1"));
    assert_false(contains(&out, "victim"));
    free(rkeep);
    tg_ps_doc_free(&a);
    tg_buf_free(&atk);
    /* Only a RUN can be rebuilt as one. */
    out.len = 0;
    assert_int_equal(tg_bolt_build_run(&out, &d,
                                       &(tg_bolt_msg){.signature = TG_BOLT_BEGIN, .n_fields = 1},
                                       tg_slice_str("x"), NULL, 0, NULL, 0),
                     TG_EINVAL);
    /* An invalid query string is refused and nothing is written. */
    assert_int_equal(tg_bolt_build_run(&out, &d, &m, tg_slice_str("\xC3"), NULL, 0, NULL, 0),
                     TG_EINVAL);
    assert_int_equal(out.len, 0);
    free(keep);

    /* HELLO 4.4 with a bearer JWT: the service's basic credentials instead, the rest kept. */
    captured("unit/protocols/bolt/data/v44_bearer_0.client.bin", 20, V44, TG_BOLT_HELLO, &d, &keep,
             &m);
    out.len = 0;
    assert_int_equal(tg_bolt_build_auth(&out, &d, &m, "neo4j", "service-pw"), 0);
    assert_false(contains(&out, jwt));
    decode_built(&out, &r, &rkeep, V44, CLIENT, &rm);
    assert_int_equal(rm.signature, TG_BOLT_HELLO);
    uint32_t x = rm.field[0];
    assert_true(tg_ps_is_str(&r, tg_ps_map_get(&r, x, tg_slice_str("scheme")), "basic"));
    assert_true(tg_ps_is_str(&r, tg_ps_map_get(&r, x, tg_slice_str("principal")), "neo4j"));
    assert_true(tg_ps_is_str(&r, tg_ps_map_get(&r, x, tg_slice_str("credentials")), "service-pw"));
    assert_true(tg_ps_is_str(&r, tg_ps_map_get(&r, x, tg_slice_str("user_agent")),
                             "tenantgate-capture/1.0"));
    assert_int_equal(r.v[tg_ps_map_get(&r, x, tg_slice_str("patch_bolt"))].count, 1);
    free(rkeep);
    free(keep);

    /* LOGON 5.6 with basic auth carrying the JWT as password. */
    captured("unit/protocols/bolt/data/v56_basic_0.client.bin", 20, V56, TG_BOLT_LOGON, &d, &keep,
             &m);
    out.len = 0;
    assert_int_equal(tg_bolt_build_auth(&out, &d, &m, "neo4j", "service-pw"), 0);
    assert_false(contains(&out, jwt));
    assert_false(contains(&out, "alice"));
    decode_built(&out, &r, &rkeep, V56, CLIENT, &rm);
    assert_int_equal(r.v[rm.field[0]].count, 3);
    free(rkeep);
    /* Not for other messages. */
    assert_int_equal(
        tg_bolt_build_auth(&out, &d, &(tg_bolt_msg){.signature = TG_BOLT_RUN}, "u", "p"),
        TG_EINVAL);
    free(keep);

    /* BEGIN with db mapped and imp_user dropped. */
    captured("unit/protocols/bolt/data/v56_basic_0.client.bin", 20, V56, TG_BOLT_BEGIN, &d, &keep,
             &m);
    tg_ps_edit be[] = {{tg_slice_str("db"), TG_PS_EDIT_SET_STR, tg_slice_str("tenant-t1"), 0},
                       {tg_slice_str("imp_user"), TG_PS_EDIT_DROP, {NULL, 0}, 0}};
    out.len = 0;
    assert_int_equal(tg_bolt_build_edited(&out, &d, &m, be, 2), 0);
    decode_built(&out, &r, &rkeep, V56, CLIENT, &rm);
    assert_int_equal(rm.signature, TG_BOLT_BEGIN);
    assert_true(tg_ps_is_str(&r, tg_ps_map_get(&r, rm.field[0], tg_slice_str("db")), "tenant-t1"));
    assert_int_equal(r.v[rm.field[0]].count, d.v[m.field[0]].count);
    free(rkeep);
    free(keep);

    tg_ps_doc_free(&d);
    tg_ps_doc_free(&r);
    tg_buf_free(&out);
}

/* A message above 65,535 bytes is split into full chunks in place. */
static void test_build_large(void **state)
{
    (void)state;
    size_t qlen = 3 * TG_BOLT_MAX_CHUNK + 1000;
    char *query = malloc(qlen);
    assert_non_null(query);
    for (size_t i = 0; i < qlen; i++)
        query[i] = (char)('a' + i % 26);
    tg_buf out = {0};
    assert_int_equal(tg_buf_append(&out, "prev", 4), 0);
    tg_bolt_builder b;
    tg_bolt_begin(&b, &out, TG_BOLT_RUN, 3);
    tg_ps_put_string(&b.ps, query, qlen);
    tg_ps_put_map(&b.ps, 0);
    tg_ps_put_map(&b.ps, 0);
    assert_int_equal(tg_bolt_end(&b), 0);
    assert_memory_equal(out.data, "prev", 4);
    const uint8_t *frame = out.data + 4;
    size_t flen = out.len - 4;
    tg_bolt_frame f;
    assert_int_equal(tg_bolt_decode_frame(frame, flen, TG_BOLT_MAX_MSG_DEFAULT, NULL, &f),
                     (ssize_t)flen);
    size_t msg_len = 2 + 5 + qlen + 2; /* struct header, STRING_32 header, query, two maps */
    assert_int_equal(f.len, msg_len);
    assert_int_equal(f.chunks, 4);
    /* Every chunk but the last is full. */
    size_t pos = 0;
    for (int k = 0; k < 3; k++) {
        assert_int_equal((frame[pos] << 8) | frame[pos + 1], TG_BOLT_MAX_CHUNK);
        pos += 2 + TG_BOLT_MAX_CHUNK;
    }
    uint8_t *msg = malloc(f.len);
    assert_non_null(msg);
    tg_bolt_frame_copy(frame, &f, msg);
    tg_ps_doc d;
    tg_ps_doc_init(&d);
    tg_bolt_msg m;
    assert_int_equal(tg_bolt_decode_msg(&d, msg, f.len, &def, V56, 0, CLIENT, &m, NULL), 0);
    assert_int_equal(d.v[m.field[0]].u.s.len, qlen);
    assert_memory_equal(d.v[m.field[0]].u.s.base, query, qlen);
    /* A message of exactly one full chunk, and one byte more. */
    for (size_t extra = 0; extra < 2; extra++) {
        out.len = 0;
        size_t n = TG_BOLT_MAX_CHUNK - 2 - 3 - 2 + extra; /* STRING_16 header */
        tg_bolt_begin(&b, &out, TG_BOLT_RUN, 3);
        tg_ps_put_string(&b.ps, query, n);
        tg_ps_put_map(&b.ps, 0);
        tg_ps_put_map(&b.ps, 0);
        assert_int_equal(tg_bolt_end(&b), 0);
        assert_int_equal(tg_bolt_decode_frame(out.data, out.len, TG_BOLT_MAX_MSG_DEFAULT, NULL, &f),
                         (ssize_t)out.len);
        assert_int_equal(f.chunks, 1 + extra);
        assert_int_equal(f.len, TG_BOLT_MAX_CHUNK + extra);
    }
    /* A failed message build leaves the buffer as it was. */
    out.len = 0;
    assert_int_equal(tg_buf_append(&out, "prev", 4), 0);
    tg_bolt_begin(&b, &out, TG_BOLT_RUN, 3);
    tg_ps_put_string(&b.ps, query, 10);
    assert_int_equal(tg_bolt_end(&b), TG_EINVAL);
    assert_int_equal(out.len, 4);
    tg_ps_doc_free(&d);
    free(msg);
    free(query);
    tg_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_capture),
        cmocka_unit_test(test_handshake_bad_preamble),
        cmocka_unit_test(test_negotiate),
        cmocka_unit_test(test_manifest),
        cmocka_unit_test(test_version_reply),
        cmocka_unit_test(test_capture_streams),
        cmocka_unit_test(test_capture_run_values),
        cmocka_unit_test(test_frames),
        cmocka_unit_test(test_write_chunked),
        cmocka_unit_test(test_ps_scalars),
        cmocka_unit_test(test_ps_sizes),
        cmocka_unit_test(test_ps_non_minimal),
        cmocka_unit_test(test_ps_doc),
        cmocka_unit_test(test_ps_malformed),
        cmocka_unit_test(test_ps_limits),
        cmocka_unit_test(test_ps_builder_errors),
        cmocka_unit_test(test_ps_map_edit),
        cmocka_unit_test(test_msg_requests),
        cmocka_unit_test(test_msg_replies),
        cmocka_unit_test(test_build_replies),
        cmocka_unit_test(test_build_rewrites),
        cmocka_unit_test(test_build_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
