/*
 * Unit tests for protocols/mongodb/codec.c.
 *
 *   pymongo's real messages (data/pymongo_N_what.bin, made by data/capture.py)
 *        --split at every byte--> decoders (NEED_MORE until whole, then the same frames)
 *        --> parsed views (OP_QUERY hello, OP_MSG find/insert/update/delete/aggregate)
 *        --> rebuilt with tg_mongo_build_msg: byte for byte the same
 *   lying lengths, bad flags, bad sections, bad documents --> refused, each with its reason
 *   builders --> decode --> parse: decode(encode(x)) == x; failed builds leave the buffer alone
 *   CRC-32C --> RFC 3720's vectors; table and SSE4.2 paths agree
 *
 * Every decoder and parser call on a hand-made message works on an exact-size
 * heap copy, so a read past the bytes handed in shows up under AddressSanitizer.
 * The data files are read relative to tests/ (ctest's working directory) or the tree's top.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/mongodb/codec.h"
#include "proxy/error.h"

#include "tests/unit/support/codec_input.h"

#define DATA_DIR "unit/protocols/mongodb/data/"

/* ---- helpers ---- */

/* A growable byte string for hand-made messages. */
typedef struct bb {
    uint8_t *b;
    size_t n, cap;
} bb;

static void bb_put(bb *x, const void *p, size_t n)
{
    if (x->n + n > x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 256;
        while (cap < x->n + n)
            cap *= 2;
        x->b = realloc(x->b, cap);
        assert_non_null(x->b);
        x->cap = cap;
    }
    if (n)
        memcpy(x->b + x->n, p, n);
    x->n += n;
}

static void bb_u8(bb *x, uint8_t v)
{
    bb_put(x, &v, 1);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void bb_u32(bb *x, uint32_t v)
{
    uint8_t p[4];
    put32(p, v);
    bb_put(x, p, 4);
}

static void bb_cstr(bb *x, const char *s)
{
    bb_put(x, s, strlen(s) + 1);
}

static void bb_doc(bb *x, const bson_t *d)
{
    bb_put(x, bson_get_data(d), d->len);
}

/* Starts a message: header with a length placeholder. */
static void bb_header(bb *x, int32_t op_code)
{
    x->n = 0;
    bb_u32(x, 0);
    bb_u32(x, 7); /* requestID */
    bb_u32(x, 0); /* responseTo */
    bb_u32(x, (uint32_t)op_code);
}

/* Patches messageLength. */
static void bb_finish(bb *x)
{
    put32(x->b, (uint32_t)x->n);
}

/* A kind 1 section: size patched over identifier and documents. */
static void bb_seq(bb *x, const char *id, const bson_t *const *docs, size_t n)
{
    bb_u8(x, 1);
    size_t at = x->n;
    bb_u32(x, 0);
    bb_cstr(x, id);
    for (size_t i = 0; i < n; i++)
        bb_doc(x, docs[i]);
    put32(x->b + at, (uint32_t)(x->n - at));
}

static uint8_t *load(const char *name, size_t *n)
{
    char path[256];
    snprintf(path, sizeof(path), DATA_DIR "%s", name);
    return read_data_file(path, n);
}

/* The decoders with a maximum length (ctx: a uint32_t). */
static ssize_t decode_frame(const uint8_t *p, size_t n, void *max)
{
    tg_mongo_frame f;
    return tg_mongo_decode(p, n, *(const uint32_t *)max, &f);
}

static ssize_t decode_header(const uint8_t *p, size_t n, void *max)
{
    tg_mongo_header h;
    return tg_mongo_decode_header(p, n, *(const uint32_t *)max, &h);
}

static ssize_t decode_copy(const uint8_t *p, size_t n, uint32_t max)
{
    return decode_exact(decode_frame, &max, p, n);
}

static ssize_t header_copy(const uint8_t *p, size_t n, uint32_t max)
{
    return decode_exact(decode_header, &max, p, n);
}

/*
 * A valid message: every proper prefix needs more, the whole message (alone
 * and followed by more bytes) decodes to its size; returns the frame over p.
 */
static tg_mongo_frame expect_frame(const uint8_t *p, size_t n, uint32_t max)
{
    expect_prefixes(decode_frame, &max, p, n, n, (ssize_t)n);
    expect_prefixes(decode_header, &max, p, n, 16, 16);
    uint8_t *more = malloc(n + 20);
    assert_non_null(more);
    memcpy(more, p, n);
    memset(more + n, 0xee, 20);
    tg_mongo_frame f;
    assert_int_equal(tg_mongo_decode(more, n + 20, max, &f), (ssize_t)n);
    assert_ptr_equal(f.bytes.base, more);
    assert_int_equal(f.bytes.len, n);
    assert_ptr_equal(f.body.base, more + 16);
    assert_int_equal(f.body.len, n - 16);
    free(more);
    assert_int_equal(tg_mongo_decode(p, n, max, &f), (ssize_t)n);
    return f;
}

/* Parses the message in x from an exact copy; returns the parser's result and reason. */
static int parse_msg_copy(const bb *x, bson_validate_flags_t v, const char **reason)
{
    uint8_t *d = dup_exact(x->b, x->n);
    tg_mongo_frame f;
    assert_int_equal(tg_mongo_decode(d, x->n, UINT32_MAX, &f), (ssize_t)x->n);
    tg_mongo_msg m;
    *reason = "(none)";
    int rc = tg_mongo_parse_msg(&f, v, &m, reason);
    free(d);
    return rc;
}

static int parse_query_copy(const bb *x, const char **reason)
{
    uint8_t *d = dup_exact(x->b, x->n);
    tg_mongo_frame f;
    assert_int_equal(tg_mongo_decode(d, x->n, UINT32_MAX, &f), (ssize_t)x->n);
    tg_mongo_query q;
    *reason = "(none)";
    int rc = tg_mongo_parse_query(&f, TG_MONGO_VALIDATE_REQUEST, &q, reason);
    free(d);
    return rc;
}

static int parse_reply_copy(const bb *x, const char **reason)
{
    uint8_t *d = dup_exact(x->b, x->n);
    tg_mongo_frame f;
    assert_int_equal(tg_mongo_decode(d, x->n, UINT32_MAX, &f), (ssize_t)x->n);
    tg_mongo_reply r;
    *reason = "(none)";
    int rc = tg_mongo_parse_reply(&f, TG_MONGO_VALIDATE_REPLY, &r, reason);
    free(d);
    return rc;
}

#define assert_refused(rc, reason, want)                                                           \
    do {                                                                                           \
        assert_int_equal((rc), TG_EPROTO);                                                         \
        assert_string_equal((reason), (want));                                                     \
    } while (0)

static void assert_slice_str(tg_slice s, const char *str)
{
    if (!tg_slice_eq_str(s, str))
        fail_msg("slice \"%.*s\" != \"%s\"", (int)s.len, s.base ? (const char *)s.base : "", str);
}

/* The string value of key in a borrowed document ("" when absent or not a string). */
static const char *doc_str(tg_slice raw, const char *key)
{
    bson_t d;
    bson_iter_t it;
    assert_true(tg_mongo_doc(raw, &d));
    if (!bson_iter_init_find(&it, &d, key) || !BSON_ITER_HOLDS_UTF8(&it))
        return "";
    return bson_iter_utf8(&it, NULL);
}

static bson_t *cmd(void)
{
    return BCON_NEW("insert", BCON_UTF8("orders"), "ordered", BCON_BOOL(true), "$db",
                    BCON_UTF8("app"));
}

/* A valid OP_MSG: flags, body, then the given sequences (x is reset). */
static void msg_with(bb *x, uint32_t flags, const bson_t *body)
{
    bb_header(x, OP_MSG);
    bb_u32(x, flags);
    bb_u8(x, 0);
    bb_doc(x, body);
}

/* ---- names ---- */

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(tg_mongo_opcode_name(OP_MSG), "OP_MSG");
    assert_string_equal(tg_mongo_opcode_name(2013), "OP_MSG");
    assert_string_equal(tg_mongo_opcode_name(OP_QUERY), "OP_QUERY");
    assert_string_equal(tg_mongo_opcode_name(OP_REPLY), "OP_REPLY");
    assert_string_equal(tg_mongo_opcode_name(OP_COMPRESSED), "OP_COMPRESSED");
    assert_int_equal(OP_COMPRESSED, 2012);
    assert_int_equal(OP_QUERY, 2004);
    assert_int_equal(OP_REPLY, 1);
    assert_string_equal(tg_mongo_opcode_name(0), "unknown");
    assert_string_equal(tg_mongo_opcode_name(2014), "unknown");
    assert_string_equal(tg_mongo_opcode_name(-1), "unknown");
    assert_string_equal(tg_mongo_error_name(13), "Unauthorized");
    assert_string_equal(tg_mongo_error_name(18), "AuthenticationFailed");
    assert_string_equal(tg_mongo_error_name(TG_MONGO_ERR_UNSUPPORTED_OP_QUERY_COMMAND),
                        "UnsupportedOpQueryCommand");
    assert_int_equal(TG_MONGO_ERR_REAUTHENTICATION_REQUIRED, 391);
    assert_string_equal(tg_mongo_error_name(462), "IngressRequestRateLimitExceeded");
    assert_null(tg_mongo_error_name(0));
    assert_null(tg_mongo_error_name(14));
}

/* ---- framing ---- */

static const char *const pymongo_files[] = {
    "pymongo_0_op_query_ismaster.bin", "pymongo_1_op_msg_find.bin",
    "pymongo_2_op_msg_insert.bin",     "pymongo_3_op_msg_update.bin",
    "pymongo_4_op_msg_delete.bin",     "pymongo_5_op_msg_insert_moretocome.bin",
    "pymongo_6_op_msg_aggregate.bin",  "pymongo_7_op_msg_endsessions.bin",
};
#define N_PYMONGO (sizeof(pymongo_files) / sizeof(pymongo_files[0]))

static void test_decode_pymongo_frames(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_PYMONGO; i++) {
        size_t n;
        uint8_t *p = load(pymongo_files[i], &n);
        tg_mongo_frame f = expect_frame(p, n, TG_MONGO_MAX_MESSAGE_PREAUTH);
        assert_int_equal(f.header.message_length, n);
        assert_int_equal(f.header.response_to, 0);
        assert_int_equal(f.header.op_code, i == 0 ? OP_QUERY : OP_MSG);
        /* Just below its own size as the maximum: refused at 4 bytes. */
        assert_int_equal(decode_copy(p, 4, (uint32_t)n - 1), TG_ETOOBIG);
        assert_int_equal(decode_copy(p, n, (uint32_t)n), (ssize_t)n);
        free(p);
    }
}

/* A receiver of a stream of messages: the frames' sizes so far, and where it stopped. */
typedef struct receiver {
    size_t *sizes;
    size_t n_frames, max_frames, off;
} receiver;

/* Decodes what is complete in buf[off..have); every frame's view must parse whole. */
static void receive(const uint8_t *buf, size_t have, void *ctx)
{
    receiver *r = ctx;
    for (;;) {
        tg_mongo_frame f;
        ssize_t rc = tg_mongo_decode(buf + r->off, have - r->off, TG_MONGO_MAX_MESSAGE_DEFAULT, &f);
        assert_true(rc >= 0);
        if (rc == 0)
            return;
        /* Views of every frame parse whole, whatever the chunking. */
        const char *why = NULL;
        if (f.header.op_code == OP_MSG) {
            tg_mongo_msg m;
            assert_int_equal(tg_mongo_parse_msg(&f, TG_MONGO_VALIDATE_REQUEST, &m, &why), 0);
        } else {
            tg_mongo_query q;
            assert_int_equal(tg_mongo_parse_query(&f, TG_MONGO_VALIDATE_REQUEST, &q, &why), 0);
        }
        assert_true(r->n_frames < r->max_frames);
        r->sizes[r->n_frames++] = (size_t)rc;
        r->off += (size_t)rc;
    }
}

static void test_decode_stream_every_split(void **state)
{
    (void)state;
    bb s = {0};
    size_t want[N_PYMONGO];
    for (size_t i = 0; i < N_PYMONGO; i++) {
        size_t n;
        uint8_t *p = load(pymongo_files[i], &n);
        bb_put(&s, p, n);
        want[i] = n;
        free(p);
    }
    for (size_t cut = 0; cut <= s.n; cut++) {
        size_t got[N_PYMONGO + 1];
        receiver r = {got, 0, N_PYMONGO + 1, 0};
        feed_split(receive, &r, s.b, s.n, cut);
        assert_int_equal(r.off, s.n);
        assert_int_equal(r.n_frames, N_PYMONGO);
        for (size_t i = 0; i < N_PYMONGO; i++)
            assert_int_equal(got[i], want[i]);
    }
    free(s.b);
}

static void test_decode_bad_lengths(void **state)
{
    (void)state;
    static const uint32_t bad[] = {0, 1, 4, 15, 0x80000000u, 0x80000010u, 0xffffffffu, 0xfffffff0u};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t m[20];
        put32(m, bad[i]);
        put32(m + 4, 1);
        put32(m + 8, 0);
        put32(m + 12, OP_MSG);
        memset(m + 16, 0, 4);
        /* Refused once the four length bytes are in, whatever the maximum. */
        for (size_t k = 0; k <= sizeof(m); k++) {
            ssize_t want = k < 4 ? TG_NEED_MORE : TG_EPROTO;
            assert_int_equal(decode_copy(m, k, UINT32_MAX), want);
            assert_int_equal(header_copy(m, k, UINT32_MAX), want);
            assert_int_equal(decode_copy(m, k, TG_MONGO_MAX_MESSAGE_DEFAULT), want);
        }
    }
}

static void test_decode_too_big(void **state)
{
    (void)state;
    const uint32_t maxima[] = {16, 1000, TG_MONGO_MAX_MESSAGE_PREAUTH, TG_MONGO_MAX_MESSAGE_DEFAULT,
                               INT32_MAX};
    for (size_t i = 0; i < sizeof(maxima) / sizeof(maxima[0]); i++) {
        uint32_t max = maxima[i];
        uint8_t m[16] = {0};
        put32(m + 12, OP_MSG);
        if (max < INT32_MAX) {
            /* max + 1: refused at 4 bytes, without the announced bytes. */
            put32(m, max + 1);
            for (size_t k = 0; k <= sizeof(m); k++) {
                ssize_t want = k < 4 ? TG_NEED_MORE : TG_ETOOBIG;
                assert_int_equal(decode_copy(m, k, max), want);
                assert_int_equal(header_copy(m, k, max), want);
            }
        }
        /* Exactly max: the header decodes, the frame waits for its bytes. */
        put32(m, max);
        assert_int_equal(header_copy(m, 16, max), 16);
        assert_int_equal(decode_copy(m, 16, max), max == 16 ? 16 : TG_NEED_MORE);
    }
    /* The pre-authentication maximum is much lower than the default. */
    assert_true(TG_MONGO_MAX_MESSAGE_PREAUTH * 100 < TG_MONGO_MAX_MESSAGE_DEFAULT);
}

static void test_decode_header_early(void **state)
{
    (void)state;
    /* An OP_COMPRESSED announcing 1 MB: the header says so before any body byte. */
    uint8_t m[16];
    put32(m, 1000000);
    put32(m + 4, 42);
    put32(m + 8, 0xffffffffu);
    put32(m + 12, OP_COMPRESSED);
    tg_mongo_header h;
    assert_int_equal(tg_mongo_decode_header(m, 16, TG_MONGO_MAX_MESSAGE_DEFAULT, &h), 16);
    assert_int_equal(h.message_length, 1000000);
    assert_int_equal(h.request_id, 42);
    assert_int_equal(h.response_to, -1);
    assert_int_equal(h.op_code, OP_COMPRESSED);
    assert_int_equal(decode_copy(m, 16, TG_MONGO_MAX_MESSAGE_DEFAULT), TG_NEED_MORE);
    /* The header writer is the reader's inverse. */
    uint8_t w[16];
    tg_mongo_write_header(w, &h);
    assert_memory_equal(w, m, 16);
    h = (tg_mongo_header){16, INT32_MIN, INT32_MAX, -5};
    tg_mongo_write_header(w, &h);
    tg_mongo_header h2;
    assert_int_equal(tg_mongo_decode_header(w, 16, 16, &h2), 16);
    assert_int_equal(h2.request_id, INT32_MIN);
    assert_int_equal(h2.response_to, INT32_MAX);
    assert_int_equal(h2.op_code, -5);
    /* A bare 16-byte message is a frame; its opcode is the parsers' business. */
    tg_mongo_frame f = expect_frame(w, 16, 16);
    assert_int_equal(f.body.len, 0);
    tg_mongo_msg msg;
    assert_int_equal(tg_mongo_parse_msg(&f, TG_MONGO_VALIDATE_REQUEST, &msg, NULL), TG_EINVAL);
    tg_mongo_query q;
    assert_int_equal(tg_mongo_parse_query(&f, TG_MONGO_VALIDATE_REQUEST, &q, NULL), TG_EINVAL);
    tg_mongo_reply r;
    assert_int_equal(tg_mongo_parse_reply(&f, TG_MONGO_VALIDATE_REPLY, &r, NULL), TG_EINVAL);
}

/* ---- the pymongo messages ---- */

static void test_parse_pymongo_hello(void **state)
{
    (void)state;
    size_t n;
    uint8_t *p = load("pymongo_0_op_query_ismaster.bin", &n);
    tg_mongo_frame f = expect_frame(p, n, TG_MONGO_MAX_MESSAGE_PREAUTH);
    tg_mongo_query q;
    const char *why = NULL;
    assert_int_equal(tg_mongo_parse_query(&f, TG_MONGO_VALIDATE_REQUEST, &q, &why), 0);
    assert_int_equal(q.flags, 0);
    assert_slice_str(q.full_collection_name, "admin.$cmd");
    assert_int_equal(q.number_to_skip, 0);
    assert_int_equal(q.number_to_return, -1);
    assert_null(q.return_fields_selector.base);
    assert_int_equal(q.return_fields_selector.len, 0);
    assert_ptr_equal(q.query.base + q.query.len, p + n);
    bson_t d;
    bson_iter_t it;
    assert_true(tg_mongo_doc(q.query, &d));
    assert_true(bson_iter_init(&it, &d) && bson_iter_next(&it));
    assert_string_equal(bson_iter_key(&it), "ismaster");
    assert_true(bson_iter_init_find(&it, &d, "client"));
    assert_true(BSON_ITER_HOLDS_DOCUMENT(&it));
    /* Not an OP_MSG. */
    tg_mongo_msg m;
    assert_int_equal(tg_mongo_parse_msg(&f, TG_MONGO_VALIDATE_REQUEST, &m, &why), TG_EINVAL);
    free(p);
}

static tg_mongo_msg parse_file(const char *name, uint8_t **keep)
{
    size_t n;
    uint8_t *p = load(name, &n);
    tg_mongo_frame f = expect_frame(p, n, TG_MONGO_MAX_MESSAGE_PREAUTH);
    tg_mongo_msg m;
    const char *why = NULL;
    int rc = tg_mongo_parse_msg(&f, TG_MONGO_VALIDATE_REQUEST, &m, &why);
    if (rc != 0)
        fail_msg("%s: %d %s", name, rc, why);
    /* Every slice lies inside the frame. */
    assert_true(m.body.base >= p + 21 && m.body.base + m.body.len <= p + n);
    for (uint32_t i = 0; i < m.n_seqs; i++) {
        assert_true(m.seqs[i].identifier.base > p + 21);
        assert_true(m.seqs[i].docs.base + m.seqs[i].docs.len <= p + n);
    }
    *keep = p;
    return m;
}

/* The documents of a sequence, counted by iteration; checks it matches seq.count. */
static uint32_t iterate_seq(const tg_mongo_seq *s)
{
    tg_slice cur = s->docs, doc;
    uint32_t k = 0;
    int rc;
    while ((rc = tg_mongo_seq_next(&cur, &doc)) == 1) {
        bson_t d;
        assert_true(tg_mongo_doc(doc, &d));
        assert_true(bson_validate(&d, TG_MONGO_VALIDATE_REQUEST, NULL));
        k++;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(k, s->count);
    return k;
}

static void test_parse_pymongo_msgs(void **state)
{
    (void)state;
    uint8_t *p;
    tg_slice name;

    tg_mongo_msg m = parse_file("pymongo_1_op_msg_find.bin", &p);
    assert_int_equal(m.flags, 0);
    assert_int_equal(m.n_seqs, 0);
    assert_int_equal(tg_mongo_msg_command(&m, &name), 0);
    assert_slice_str(name, "find");
    assert_string_equal(doc_str(m.body, "find"), "orders");
    assert_string_equal(doc_str(m.body, "$db"), "app");
    free(p);

    m = parse_file("pymongo_2_op_msg_insert.bin", &p);
    assert_int_equal(m.flags, 0);
    assert_int_equal(m.n_seqs, 1);
    assert_slice_str(m.seqs[0].identifier, "documents");
    assert_int_equal(iterate_seq(&m.seqs[0]), 2);
    assert_int_equal(tg_mongo_msg_command(&m, &name), 0);
    assert_slice_str(name, "insert");
    tg_slice cur = m.seqs[0].docs, doc;
    assert_int_equal(tg_mongo_seq_next(&cur, &doc), 1);
    assert_string_equal(doc_str(doc, "item"), "abc");
    assert_int_equal(tg_mongo_seq_next(&cur, &doc), 1);
    assert_string_equal(doc_str(doc, "item"), "xyz");
    assert_int_equal(tg_mongo_seq_next(&cur, &doc), 0);
    free(p);

    m = parse_file("pymongo_3_op_msg_update.bin", &p);
    assert_int_equal(m.n_seqs, 1);
    assert_slice_str(m.seqs[0].identifier, "updates");
    assert_int_equal(iterate_seq(&m.seqs[0]), 1);
    free(p);

    m = parse_file("pymongo_4_op_msg_delete.bin", &p);
    assert_int_equal(m.n_seqs, 1);
    assert_slice_str(m.seqs[0].identifier, "deletes");
    assert_int_equal(iterate_seq(&m.seqs[0]), 1);
    free(p);

    /* w: 0 -- pymongo sets moreToCome and expects no reply. */
    m = parse_file("pymongo_5_op_msg_insert_moretocome.bin", &p);
    assert_int_equal(m.flags, TG_MONGO_MSG_MORE_TO_COME);
    assert_int_equal(m.n_seqs, 1);
    assert_int_equal(iterate_seq(&m.seqs[0]), 1);
    free(p);

    m = parse_file("pymongo_6_op_msg_aggregate.bin", &p);
    assert_int_equal(m.n_seqs, 0);
    assert_int_equal(tg_mongo_msg_command(&m, &name), 0);
    assert_slice_str(name, "aggregate");
    free(p);

    m = parse_file("pymongo_7_op_msg_endsessions.bin", &p);
    assert_int_equal(tg_mongo_msg_command(&m, &name), 0);
    assert_slice_str(name, "endSessions");
    assert_string_equal(doc_str(m.body, "$db"), "admin");
    free(p);
}

/* Parsed, rebuilt with the same header and flags: the very bytes pymongo sent. */
static void test_rebuild_pymongo_msgs(void **state)
{
    (void)state;
    for (size_t i = 1; i < N_PYMONGO; i++) {
        size_t n;
        uint8_t *p = load(pymongo_files[i], &n);
        tg_mongo_frame f;
        assert_int_equal(tg_mongo_decode(p, n, UINT32_MAX, &f), (ssize_t)n);
        tg_mongo_msg m;
        assert_int_equal(tg_mongo_parse_msg(&f, TG_MONGO_VALIDATE_REQUEST, &m, NULL), 0);
        bson_t body;
        assert_true(tg_mongo_doc(m.body, &body));
        tg_buf out = {0};
        assert_int_equal(tg_mongo_build_msg(&out, f.header.request_id, f.header.response_to,
                                            m.flags, &body, m.seqs, m.n_seqs),
                         0);
        assert_int_equal(out.len, n);
        assert_memory_equal(out.data, p, n);
        tg_buf_free(&out);
        free(p);
    }
}

/* ---- malformed OP_MSG ---- */

static void test_msg_flags(void **state)
{
    (void)state;
    bson_t *body = cmd();
    bb x = {0};
    const char *why;

    /* flagBits missing or short. */
    for (size_t k = 0; k < 4; k++) {
        bb_header(&x, OP_MSG);
        bb_put(&x, "\0\0\0", k);
        bb_finish(&x);
        assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                       "OP_MSG without flagBits");
    }
    /* Each unknown required bit (2-15) is refused, as MongoDB's IllegalOpMsgFlag. */
    for (unsigned bit = 2; bit < 16; bit++) {
        msg_with(&x, 1u << bit, body);
        bb_finish(&x);
        assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                       "unknown required OP_MSG flag bit");
    }
    /* Known bits and unknown optional bits (17-31) are accepted and reported as sent. */
    const uint32_t ok[] = {0,
                           TG_MONGO_MSG_MORE_TO_COME,
                           TG_MONGO_MSG_EXHAUST_ALLOWED,
                           TG_MONGO_MSG_MORE_TO_COME | TG_MONGO_MSG_EXHAUST_ALLOWED,
                           1u << 17,
                           1u << 31,
                           0xfffe0000u | TG_MONGO_MSG_MORE_TO_COME};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        msg_with(&x, ok[i], body);
        bb_finish(&x);
        tg_mongo_frame f;
        assert_int_equal(tg_mongo_decode(x.b, x.n, UINT32_MAX, &f), (ssize_t)x.n);
        tg_mongo_msg m;
        assert_int_equal(tg_mongo_parse_msg(&f, TG_MONGO_VALIDATE_REQUEST, &m, &why), 0);
        assert_int_equal(m.flags, ok[i]);
    }
    free(x.b);
    bson_destroy(body);
}

static void test_msg_sections(void **state)
{
    (void)state;
    bson_t *body = cmd();
    bson_t *doc = BCON_NEW("_id", BCON_INT32(1));
    const bson_t *docs[] = {doc, doc};
    bb x = {0};
    const char *why;

    /* Flags only: zero kind 0 sections. */
    bb_header(&x, OP_MSG);
    bb_u32(&x, 0);
    bb_finish(&x);
    assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                   "OP_MSG without a body section");

    /* A kind 1 section and no body. */
    bb_header(&x, OP_MSG);
    bb_u32(&x, 0);
    bb_seq(&x, "documents", docs, 2);
    bb_finish(&x);
    assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                   "OP_MSG without a body section");

    /* Two bodies. */
    msg_with(&x, 0, body);
    bb_u8(&x, 0);
    bb_doc(&x, body);
    bb_finish(&x);
    assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                   "more than one body section");

    /* Two bodies around a sequence. */
    msg_with(&x, 0, body);
    bb_seq(&x, "documents", docs, 1);
    bb_u8(&x, 0);
    bb_doc(&x, body);
    bb_finish(&x);
    assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                   "more than one body section");

    /* Unknown section kinds. */
    const uint8_t kinds[] = {2, 3, 0x7f, 0x80, 0xff};
    for (size_t i = 0; i < sizeof(kinds); i++) {
        msg_with(&x, 0, body);
        bb_u8(&x, kinds[i]);
        bb_doc(&x, doc);
        bb_finish(&x);
        assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                       "unknown OP_MSG section kind");
    }

    /* Trailing bytes after a valid message. */
    msg_with(&x, 0, body);
    bb_u8(&x, 0);
    bb_finish(&x);
    assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                   "more than one body section");
    msg_with(&x, 0, body);
    bb_u8(&x, 1);
    bb_finish(&x);
    assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                   "document sequence size missing");
    msg_with(&x, 0, body);
    bb_put(&x, "\x01\x07\x00", 3);
    bb_finish(&x);
    assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                   "document sequence size missing");
    msg_with(&x, 0, body);
    bb_u8(&x, 9);
    bb_finish(&x);
    assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                   "unknown OP_MSG section kind");

    /* A kind 0 byte with no document, or a cut size. */
    for (size_t k = 0; k < 4; k++) {
        bb_header(&x, OP_MSG);
        bb_u32(&x, 0);
        bb_u8(&x, 0);
        bb_put(&x, "\x10\0\0", k);
        bb_finish(&x);
        assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                       "document size missing");
    }

    /* The sequence before the body is fine (MongoDB does not fix the order). */
    bb_header(&x, OP_MSG);
    bb_u32(&x, 0);
    bb_seq(&x, "documents", docs, 2);
    bb_u8(&x, 0);
    bb_doc(&x, body);
    bb_finish(&x);
    assert_int_equal(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), 0);

    free(x.b);
    bson_destroy(doc);
    bson_destroy(body);
}

/* A message whose body document's int32 size is replaced by `size`. */
static int body_size_lie(uint32_t size, const char **why)
{
    bson_t *body = cmd();
    bb x = {0};
    msg_with(&x, 0, body);
    put32(x.b + 21, size);
    bb_finish(&x);
    int rc = parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, why);
    free(x.b);
    bson_destroy(body);
    return rc;
}

static void test_msg_document_sizes(void **state)
{
    (void)state;
    bson_t *body = cmd();
    uint32_t real = body->len;
    bson_destroy(body);
    const char *why;

    assert_int_equal(body_size_lie(real, &why), 0);
    assert_refused(body_size_lie(real + 1, &why), why, "document size beyond its container");
    assert_refused(body_size_lie(INT32_MAX, &why), why, "document size beyond its container");
    assert_refused(body_size_lie(0x80000000u, &why), why, "negative document size");
    assert_refused(body_size_lie(0xffffffffu, &why), why, "negative document size");
    assert_refused(body_size_lie(0xfffffffbu, &why), why, "negative document size");
    for (uint32_t s = 0; s < 5; s++)
        assert_refused(body_size_lie(s, &why), why, "document size below 5");
    /* Shorter than its elements: a lie the walker catches wherever it lands. */
    for (uint32_t s = 5; s < real; s++)
        assert_int_equal(body_size_lie(s, &why), TG_EPROTO);
    /* One byte short leaves no room for the last byte of $db's string. */
    assert_refused(body_size_lie(real - 1, &why), why, "invalid string size");
}

static void test_msg_sequence_sizes(void **state)
{
    (void)state;
    bson_t *body = cmd();
    bson_t *doc = BCON_NEW("_id", BCON_INT32(1));
    const bson_t *docs[] = {doc, doc};
    bb x = {0};
    const char *why;

    msg_with(&x, 0, body);
    size_t at = x.n + 1; /* the sequence's size field */
    bb_seq(&x, "documents", docs, 2);
    bb_finish(&x);
    uint32_t real = get32(x.b + at);
    assert_int_equal(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), 0);

    struct {
        uint32_t size;
        const char *why;
    } lies[] = {
        {0, "document sequence size below 5"},
        {4, "document sequence size below 5"},
        {5, "document sequence identifier not NUL-terminated"},
        {9, "document sequence identifier not NUL-terminated"},
        {real + 1, "document sequence beyond the message"},
        {INT32_MAX, "document sequence beyond the message"},
        {0x80000000u, "negative document sequence size"},
        {0xffffffffu, "negative document sequence size"},
        {real - 1, "document size beyond its container"},
        {real - (uint32_t)doc->len + 1, "document size missing"},
        /* Ends right after the first document: the second is then a bad section kind. */
        {real - (uint32_t)doc->len, "unknown OP_MSG section kind"},
    };
    for (size_t i = 0; i < sizeof(lies) / sizeof(lies[0]); i++) {
        put32(x.b + at, lies[i].size);
        assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why, lies[i].why);
    }

    /* A document's own size lying inside the sequence. */
    put32(x.b + at, real);
    size_t d0 = at + 4 + strlen("documents") + 1;
    put32(x.b + d0, doc->len + 1);
    assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                   "document ends before its size");
    put32(x.b + d0 + doc->len, doc->len + 1);
    put32(x.b + d0, doc->len);
    assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                   "document size beyond its container");
    put32(x.b + d0 + doc->len, 0x80000000u);
    assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                   "negative document size");

    /* The identifier running to the end of the message without its NUL. */
    msg_with(&x, 0, body);
    bb_u8(&x, 1);
    bb_u32(&x, 4 + 9);
    bb_put(&x, "documents", 9);
    bb_finish(&x);
    assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                   "document sequence identifier not NUL-terminated");

    /* An empty sequence is legal (MongoDB reads documents until the size is used). */
    msg_with(&x, 0, body);
    bb_seq(&x, "documents", NULL, 0);
    bb_finish(&x);
    assert_int_equal(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), 0);

    free(x.b);
    bson_destroy(doc);
    bson_destroy(body);
}

static void test_msg_identifiers(void **state)
{
    (void)state;
    bson_t *body = cmd();
    bson_t *doc = BCON_NEW("_id", BCON_INT32(1));
    const bson_t *docs[] = {doc};
    bb x = {0};
    const char *why;

    msg_with(&x, 0, body);
    bb_seq(&x, "", docs, 1);
    bb_finish(&x);
    assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                   "empty document sequence identifier");

    msg_with(&x, 0, body);
    bb_seq(&x, "doc\xff", docs, 1);
    bb_finish(&x);
    assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                   "document sequence identifier not UTF-8");

    msg_with(&x, 0, body);
    bb_seq(&x, "documents", docs, 1);
    bb_seq(&x, "documents", docs, 1);
    bb_finish(&x);
    assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                   "duplicate document sequence");

    /* A body field with the identifier's name (the scoper would see one, MongoDB 40433). */
    bson_t *dup = BCON_NEW("insert", BCON_UTF8("orders"), "documents", "[", "{", "}", "]", "$db",
                           BCON_UTF8("app"));
    msg_with(&x, 0, dup);
    bb_seq(&x, "documents", docs, 1);
    bb_finish(&x);
    assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                   "field both in the body and a document sequence");
    /* Same with the body after the sequence. */
    bb_header(&x, OP_MSG);
    bb_u32(&x, 0);
    bb_seq(&x, "documents", docs, 1);
    bb_u8(&x, 0);
    bb_doc(&x, dup);
    bb_finish(&x);
    assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                   "field both in the body and a document sequence");
    /* A prefix of a key is not the key. */
    msg_with(&x, 0, dup);
    bb_seq(&x, "document", docs, 1);
    bb_seq(&x, "documentsX", docs, 1);
    bb_finish(&x);
    assert_int_equal(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), 0);
    bson_destroy(dup);

    /* Up to TG_MONGO_MAX_SEQUENCES sequences; one more is refused. */
    msg_with(&x, 0, body);
    for (int i = 0; i < TG_MONGO_MAX_SEQUENCES; i++) {
        char id[8];
        snprintf(id, sizeof(id), "s%d", i);
        bb_seq(&x, id, docs, 1);
    }
    bb_finish(&x);
    assert_int_equal(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), 0);
    bb_seq(&x, "one_more", docs, 1);
    bb_finish(&x);
    assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                   "too many document sequences");

    free(x.b);
    bson_destroy(doc);
    bson_destroy(body);
}

static void test_msg_checksum(void **state)
{
    (void)state;
    bson_t *body = cmd();
    bson_t *doc = BCON_NEW("_id", BCON_INT32(1), "v", BCON_UTF8("x"));
    tg_mongo_seq seq = {tg_slice_str("documents"), {bson_get_data(doc), doc->len}, 0};
    tg_buf out = {0};
    assert_int_equal(tg_mongo_build_msg(&out, 5, 0, TG_MONGO_MSG_CHECKSUM_PRESENT, body, &seq, 1),
                     0);
    const char *why;
    bb x = {0};
    bb_put(&x, out.data, out.len);
    assert_int_equal(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), 0);
    tg_mongo_frame f;
    assert_int_equal(tg_mongo_decode(x.b, x.n, UINT32_MAX, &f), (ssize_t)x.n);
    tg_mongo_msg m;
    assert_int_equal(tg_mongo_parse_msg(&f, TG_MONGO_VALIDATE_REQUEST, &m, &why), 0);
    assert_int_equal(m.checksum, get32(x.b + x.n - 4));
    assert_int_equal(m.checksum, tg_mongo_crc32c_portable(0, x.b, x.n - 4));
    assert_int_equal(m.n_seqs, 1);
    assert_int_equal(m.seqs[0].count, 1);

    /* Every single-bit change after the length field is caught. */
    for (size_t i = 4; i < x.n; i++) {
        if (i >= 12 && i < 16)
            continue; /* the opcode: no longer an OP_MSG */
        for (int bit = 0; bit < 8; bit++) {
            x.b[i] ^= (uint8_t)(1u << bit);
            int rc = parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why);
            if (rc != TG_EPROTO)
                fail_msg("flip at byte %zu bit %d accepted", i, bit);
            if (i >= 20)
                assert_string_equal(why, "OP_MSG checksum mismatch");
            x.b[i] ^= (uint8_t)(1u << bit);
        }
    }

    /* Flagged, but the message ends after the body: its last 4 bytes are taken as the CRC. */
    msg_with(&x, TG_MONGO_MSG_CHECKSUM_PRESENT, body);
    bb_finish(&x);
    assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                   "OP_MSG checksum mismatch");
    /* Flagged with fewer than 4 bytes after flagBits. */
    for (size_t k = 0; k < 4; k++) {
        bb_header(&x, OP_MSG);
        bb_u32(&x, TG_MONGO_MSG_CHECKSUM_PRESENT);
        bb_put(&x, "\0\0\0", k);
        bb_finish(&x);
        assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                       "OP_MSG checksum missing");
    }
    /* A right checksum over flags only: still no body. */
    bb_header(&x, OP_MSG);
    bb_u32(&x, TG_MONGO_MSG_CHECKSUM_PRESENT);
    bb_u32(&x, 0);
    bb_finish(&x);
    put32(x.b + x.n - 4, tg_mongo_crc32c(0, x.b, x.n - 4));
    assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                   "OP_MSG without a body section");
    /* A checksum present but not flagged: trailing bytes. */
    x.n = 0;
    bb_put(&x, out.data, out.len);
    put32(x.b + 16, 0);
    assert_int_equal(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), TG_EPROTO);

    free(x.b);
    tg_buf_free(&out);
    bson_destroy(doc);
    bson_destroy(body);
}

/* ---- documents ---- */

/* A document with `levels` documents nested in a chain below it ({a: {a: ... {}}}). */
static void deep_doc(bb *x, unsigned levels, uint8_t type)
{
    x->n = 0;
    for (unsigned i = 0; i < levels; i++) {
        /* Document i's size, then the element that holds document i + 1. */
        bb_u32(x, 5 + 8 * (levels - i));
        uint8_t el[3] = {type, type == 0x04 ? '0' : 'a', 0};
        bb_put(x, el, 3);
    }
    bb_put(x, "\x05\0\0\0\0", 5);
    for (unsigned i = 0; i < levels; i++)
        bb_u8(x, 0);
}

static ssize_t check_copy(const uint8_t *p, size_t n, bson_validate_flags_t v, const char **why)
{
    uint8_t *d = dup_exact(p, n);
    *why = "(none)";
    ssize_t rc = tg_mongo_check_doc(d, n, v, why);
    free(d);
    return rc;
}

static void test_doc_depth(void **state)
{
    (void)state;
    bb x = {0};
    const char *why;
    const uint8_t types[] = {0x03, 0x04};
    for (size_t t = 0; t < 2; t++) {
        deep_doc(&x, TG_MONGO_MAX_DEPTH, types[t]);
        assert_int_equal(check_copy(x.b, x.n, TG_MONGO_VALIDATE_REQUEST, &why), (ssize_t)x.n);
        deep_doc(&x, TG_MONGO_MAX_DEPTH + 1, types[t]);
        assert_int_equal(check_copy(x.b, x.n, TG_MONGO_VALIDATE_REQUEST, &why), TG_EPROTO);
        assert_string_equal(why, "documents nested too deep");
    }
    /*
     * Far deeper than any stack would take if bson_validate ran first (it
     * recurses per level): refused by the walk, without recursion.
     */
    deep_doc(&x, 1000000, 0x03);
    assert_int_equal(check_copy(x.b, x.n, BSON_VALIDATE_NONE, &why), TG_EPROTO);
    assert_string_equal(why, "documents nested too deep");

    /* Inside an OP_MSG body. */
    deep_doc(&x, 100000, 0x03);
    bb m = {0};
    bb_header(&m, OP_MSG);
    bb_u32(&m, 0);
    bb_u8(&m, 0);
    bb_put(&m, x.b, x.n);
    bb_finish(&m);
    assert_refused(parse_msg_copy(&m, TG_MONGO_VALIDATE_REQUEST, &why), why,
                   "documents nested too deep");

    /* Code with scope nests too: scope in scope in scope... */
    bson_t *inner = BCON_NEW("x", BCON_INT32(1));
    for (int level = 0; level <= TG_MONGO_MAX_DEPTH; level++) {
        bson_t *outer = bson_new();
        assert_true(bson_append_code_with_scope(outer, "c", -1, "f()", inner));
        if (level == TG_MONGO_MAX_DEPTH - 1)
            assert_int_equal(check_copy(bson_get_data(outer), outer->len, BSON_VALIDATE_UTF8, &why),
                             (ssize_t)outer->len);
        bson_destroy(inner);
        inner = outer;
    }
    assert_int_equal(check_copy(bson_get_data(inner), inner->len, BSON_VALIDATE_UTF8, &why),
                     TG_EPROTO);
    assert_string_equal(why, "documents nested too deep");
    bson_destroy(inner);
    free(m.b);
    free(x.b);
}

/* {k: <elem>} with a raw element of the given type and value bytes. */
static void raw_doc(bb *x, uint8_t type, const char *key, const void *value, size_t n)
{
    x->n = 0;
    bb_u32(x, 0);
    bb_u8(x, type);
    bb_cstr(x, key);
    bb_put(x, value, n);
    bb_u8(x, 0);
    put32(x->b, (uint32_t)x->n);
}

static void test_doc_elements(void **state)
{
    (void)state;
    bb x = {0};
    const char *why;

    struct {
        uint8_t type;
        const char *key;
        const char *value;
        size_t n;
        bson_validate_flags_t flags;
        const char *why; /* NULL: accepted */
    } cases[] = {
        {0x02, "s", "\x02\0\0\0a\0", 6, TG_MONGO_VALIDATE_REQUEST, NULL},
        {0x02, "s", "\x01\0\0\0\0", 5, TG_MONGO_VALIDATE_REQUEST, NULL},
        {0x02, "s", "\x00\0\0\0\0", 5, TG_MONGO_VALIDATE_REQUEST, "invalid string size"},
        {0x02, "s",
         "\xff\xff\xff\xff"
         "a\0",
         6, TG_MONGO_VALIDATE_REQUEST, "invalid string size"},
        {0x02, "s", "\x03\0\0\0a\0", 6, TG_MONGO_VALIDATE_REQUEST, "invalid string size"},
        {0x02, "s", "\x02\0\0\0ab", 6, TG_MONGO_VALIDATE_REQUEST, "invalid string size"},
        /*
         * Invalid UTF-8 (libbson 1.23's bson_validate lets "\xff" through), an
         * overlong NUL, a surrogate, an embedded NUL: refused for requests, kept
         * for replies (structure only); a NUL is kept with _ALLOW_NULL.
         */
        {0x02, "s", "\x02\0\0\0\xff\0", 6, TG_MONGO_VALIDATE_REQUEST,
         "string not UTF-8 or holding a NUL"},
        {0x02, "s",
         "\x03\0\0\0\xe9"
         "a\0",
         7, TG_MONGO_VALIDATE_REQUEST, "string not UTF-8 or holding a NUL"},
        {0x02, "s", "\x02\0\0\0\xff\0", 6, TG_MONGO_VALIDATE_REPLY, NULL},
        {0x02, "s", "\x03\0\0\0\xc0\x80\0", 7, TG_MONGO_VALIDATE_REQUEST,
         "string not UTF-8 or holding a NUL"},
        {0x02, "s", "\x04\0\0\0\xed\xa0\x80\0", 8, TG_MONGO_VALIDATE_REQUEST,
         "string not UTF-8 or holding a NUL"},
        {0x02, "s", "\x05\0\0\0\xf4\x90\x80\x80\0", 9, TG_MONGO_VALIDATE_REQUEST,
         "string not UTF-8 or holding a NUL"},
        {0x02, "s", "\x05\0\0\0\xf0\x9f\x98\x80\0", 9, TG_MONGO_VALIDATE_REQUEST, NULL},
        {0x02, "s", "\x04\0\0\0a\0b\0", 8, TG_MONGO_VALIDATE_REQUEST,
         "string not UTF-8 or holding a NUL"},
        {0x02, "s", "\x04\0\0\0a\0b\0", 8, TG_MONGO_VALIDATE_REPLY, NULL},
        {0x02, "s", "\x04\0\0\0a\0b\0", 8, BSON_VALIDATE_UTF8 | BSON_VALIDATE_UTF8_ALLOW_NULL,
         NULL},
        {0x02, "\xff", "\x02\0\0\0a\0", 6, TG_MONGO_VALIDATE_REQUEST, "element name not UTF-8"},
        {0x02, "\xff", "\x02\0\0\0a\0", 6, TG_MONGO_VALIDATE_REPLY,
         "document refused by bson_validate"},
        {0x0d, "js", "\x02\0\0\0\xff\0", 6, TG_MONGO_VALIDATE_REQUEST,
         "string not UTF-8 or holding a NUL"},
        {0x0e, "sym", "\x02\0\0\0\xff\0", 6, TG_MONGO_VALIDATE_REQUEST,
         "string not UTF-8 or holding a NUL"},
        {0x0c, "ptr",
         "\x02\0\0\0\xff\0"
         "0123456789ab",
         18, TG_MONGO_VALIDATE_REQUEST, "string not UTF-8 or holding a NUL"},
        {0x0c, "ptr",
         "\x02\0\0\0n\0"
         "0123456789ab",
         18, TG_MONGO_VALIDATE_REQUEST, NULL},
        {0x0c, "ptr",
         "\x02\0\0\0n\0"
         "0123456789a",
         17, TG_MONGO_VALIDATE_REQUEST, "invalid DBPointer"},
        {0x0b, "re", "\xff\0i\0", 4, TG_MONGO_VALIDATE_REQUEST, "regular expression not UTF-8"},
        {0x08, "b", "\x01", 1, TG_MONGO_VALIDATE_REQUEST, NULL},
        {0x08, "b", "\x02", 1, TG_MONGO_VALIDATE_REQUEST, "invalid boolean"},
        {0x08, "b", "", 0, TG_MONGO_VALIDATE_REQUEST, "invalid boolean"},
        {0x10, "i", "\x01\0\0", 3, TG_MONGO_VALIDATE_REQUEST, "element runs past its document"},
        {0x12, "l", "\x01\0\0\0\0\0\0\0", 8, TG_MONGO_VALIDATE_REQUEST, NULL},
        {0x12, "l", "\x01\0\0\0\0\0\0", 7, TG_MONGO_VALIDATE_REQUEST,
         "element runs past its document"},
        {0x13, "d", "0123456789abcdef", 16, TG_MONGO_VALIDATE_REQUEST, NULL},
        {0x07, "o", "0123456789ab", 12, TG_MONGO_VALIDATE_REQUEST, NULL},
        {0x07, "o", "0123456789a", 11, TG_MONGO_VALIDATE_REQUEST, "element runs past its document"},
        {0x0a, "n", "", 0, TG_MONGO_VALIDATE_REQUEST, NULL},
        {0xff, "min", "", 0, TG_MONGO_VALIDATE_REQUEST, NULL},
        {0x7f, "max", "", 0, TG_MONGO_VALIDATE_REQUEST, NULL},
        {0x14, "x", "", 0, TG_MONGO_VALIDATE_REQUEST, "unknown BSON element type"},
        {0x20, "x", "\0\0\0\0", 4, TG_MONGO_VALIDATE_REQUEST, "unknown BSON element type"},
        {0x05, "bin",
         "\x02\0\0\0\x00"
         "ab",
         7, TG_MONGO_VALIDATE_REQUEST, NULL},
        {0x05, "bin",
         "\x03\0\0\0\x00"
         "ab",
         7, TG_MONGO_VALIDATE_REQUEST, "invalid binary size"},
        {0x05, "bin",
         "\xff\xff\xff\x7f\x00"
         "ab",
         7, TG_MONGO_VALIDATE_REQUEST, "invalid binary size"},
        {0x05, "bin",
         "\xff\xff\xff\xff\x00"
         "ab",
         7, TG_MONGO_VALIDATE_REQUEST, "invalid binary size"},
        {0x05, "bin", "\x00\0\0", 3, TG_MONGO_VALIDATE_REQUEST, "invalid binary size"},
        {0x0b, "re", "a\0i\0", 4, TG_MONGO_VALIDATE_REQUEST, NULL},
        {0x0b, "re", "a\0i", 3, TG_MONGO_VALIDATE_REQUEST, "invalid regular expression"},
        {0x03, "d", "\x05\0\0\0\0", 5, TG_MONGO_VALIDATE_REQUEST, NULL},
        {0x03, "d", "\x06\0\0\0\0", 5, TG_MONGO_VALIDATE_REQUEST,
         "embedded document size outside its container"},
        {0x03, "d", "\x04\0\0\0\0", 5, TG_MONGO_VALIDATE_REQUEST,
         "embedded document size outside its container"},
        {0x03, "d", "\xff\xff\xff\xff\0", 5, TG_MONGO_VALIDATE_REQUEST,
         "embedded document size outside its container"},
        {0x03, "d", "\x05\0\0\0\x01", 5, TG_MONGO_VALIDATE_REQUEST, "document not NUL-terminated"},
        {0x04, "a",
         "\x0c\0\0\0\x10"
         "0\0\x01\0\0\0\0",
         12, TG_MONGO_VALIDATE_REQUEST, NULL},
        /* Code with scope: total 4 + code "x" (6) + empty scope (5) = 15. */
        {0x0f, "c", "\x0f\0\0\0\x02\0\0\0x\0\x05\0\0\0\0", 15, TG_MONGO_VALIDATE_REQUEST, NULL},
        {0x0f, "c", "\x10\0\0\0\x02\0\0\0x\0\x05\0\0\0\0", 15, TG_MONGO_VALIDATE_REQUEST,
         "invalid code with scope"},
        {0x0f, "c", "\x0f\0\0\0\x02\0\0\0x\0\x06\0\0\0\0", 15, TG_MONGO_VALIDATE_REQUEST,
         "invalid code with scope"},
        {0x0f, "c", "\x0f\0\0\0\x07\0\0\0x\0\x05\0\0\0\0", 15, TG_MONGO_VALIDATE_REQUEST,
         "invalid code with scope"},
        {0x0f, "c", "\x0f\0\0\0\x02\0\0\0\xff\0\x05\0\0\0\0", 15, TG_MONGO_VALIDATE_REQUEST,
         "string not UTF-8 or holding a NUL"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        raw_doc(&x, cases[i].type, cases[i].key, cases[i].value, cases[i].n);
        ssize_t rc = check_copy(x.b, x.n, cases[i].flags, &why);
        if (cases[i].why == NULL) {
            if (rc != (ssize_t)x.n)
                fail_msg("case %zu refused: %s", i, why);
        } else {
            if (rc != TG_EPROTO || strcmp(why, cases[i].why) != 0)
                fail_msg("case %zu: rc %zd, \"%s\", expected \"%s\"", i, rc, why, cases[i].why);
        }
    }

    /* A key without its NUL: the bytes run into the terminator. */
    x.n = 0;
    bb_put(&x,
           "\x09\0\0\0\x0a"
           "ab",
           8);
    bb_u8(&x, 0);
    assert_int_equal(check_copy(x.b, x.n, TG_MONGO_VALIDATE_REQUEST, &why), (ssize_t)x.n);
    x.n = 0;
    bb_put(&x,
           "\x07\0\0\0\x0a"
           "a",
           6);
    bb_u8(&x, 1);
    assert_int_equal(check_copy(x.b, x.n, TG_MONGO_VALIDATE_REQUEST, &why), TG_EPROTO);
    assert_string_equal(why, "element name not NUL-terminated");
    /* A NUL type byte before the end. */
    x.n = 0;
    bb_put(&x, "\x07\0\0\0\0\0\0", 7);
    assert_int_equal(check_copy(x.b, x.n, TG_MONGO_VALIDATE_REQUEST, &why), TG_EPROTO);
    assert_string_equal(why, "document ends before its size");
    /* Missing terminator. */
    x.n = 0;
    bb_put(&x, "\x05\0\0\0\x01", 5);
    assert_int_equal(check_copy(x.b, x.n, TG_MONGO_VALIDATE_REQUEST, &why), TG_EPROTO);
    assert_string_equal(why, "document not NUL-terminated");
    /* Fewer than 4 bytes. */
    for (size_t k = 0; k < 4; k++) {
        assert_int_equal(check_copy((const uint8_t *)"\x05\0\0", k, BSON_VALIDATE_NONE, &why),
                         TG_EPROTO);
        assert_string_equal(why, "document size missing");
    }
    /* The size is the document's; what follows is the caller's. */
    x.n = 0;
    bb_put(&x, "\x05\0\0\0\0garbage", 12);
    assert_int_equal(check_copy(x.b, x.n, BSON_VALIDATE_NONE, &why), 5);
    free(x.b);
}

/* Invalid BSON inside a sequence document is refused just as in the body. */
static void test_msg_invalid_bson(void **state)
{
    (void)state;
    bson_t *body = cmd();
    bb x = {0}, d = {0};
    const char *why;
    raw_doc(&d, 0x02, "s", "\x02\0\0\0\xff\0", 6);
    msg_with(&x, 0, body);
    bb_u8(&x, 1);
    size_t at = x.n;
    bb_u32(&x, 0);
    bb_cstr(&x, "documents");
    bb_put(&x, d.b, d.n);
    put32(x.b + at, (uint32_t)(x.n - at));
    bb_finish(&x);
    assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                   "string not UTF-8 or holding a NUL");
    /* The same bytes as a reply pass (structure only). */
    assert_int_equal(parse_msg_copy(&x, TG_MONGO_VALIDATE_REPLY, &why), 0);
    /* And in the body. */
    bb_header(&x, OP_MSG);
    bb_u32(&x, 0);
    bb_u8(&x, 0);
    bb_put(&x, d.b, d.n);
    bb_finish(&x);
    assert_refused(parse_msg_copy(&x, TG_MONGO_VALIDATE_REQUEST, &why), why,
                   "string not UTF-8 or holding a NUL");
    /* An empty body parses; it has no command name. */
    bb_header(&x, OP_MSG);
    bb_u32(&x, 0);
    bb_u8(&x, 0);
    bb_put(&x, "\x05\0\0\0\0", 5);
    bb_finish(&x);
    tg_mongo_frame f;
    assert_int_equal(tg_mongo_decode(x.b, x.n, UINT32_MAX, &f), (ssize_t)x.n);
    tg_mongo_msg m;
    assert_int_equal(tg_mongo_parse_msg(&f, TG_MONGO_VALIDATE_REQUEST, &m, &why), 0);
    tg_slice name;
    assert_int_equal(tg_mongo_msg_command(&m, &name), TG_EPROTO);
    free(d.b);
    free(x.b);
    bson_destroy(body);
}

static void test_seq_next(void **state)
{
    (void)state;
    tg_slice cur, doc;
    cur = (tg_slice){NULL, 0};
    assert_int_equal(tg_mongo_seq_next(&cur, &doc), 0);
    const uint8_t two[] = {5, 0, 0, 0, 0, 5, 0, 0, 0, 0};
    cur = (tg_slice){two, sizeof(two)};
    assert_int_equal(tg_mongo_seq_next(&cur, &doc), 1);
    assert_ptr_equal(doc.base, two);
    assert_int_equal(tg_mongo_seq_next(&cur, &doc), 1);
    assert_ptr_equal(doc.base, two + 5);
    assert_int_equal(tg_mongo_seq_next(&cur, &doc), 0);
    const uint8_t *bad[] = {(const uint8_t *)"\x05\0\0\0", (const uint8_t *)"\x04\0\0\0\0",
                            (const uint8_t *)"\x06\0\0\0\0", (const uint8_t *)"\x05\0\0\0\x01"};
    const size_t lens[] = {4, 5, 5, 5};
    for (size_t i = 0; i < 4; i++) {
        cur = (tg_slice){bad[i], lens[i]};
        assert_int_equal(tg_mongo_seq_next(&cur, &doc), TG_EPROTO);
    }
    bson_t b;
    assert_false(tg_mongo_doc((tg_slice){NULL, 0}, &b));
    assert_false(tg_mongo_doc((tg_slice){two, 4}, &b));
    assert_false(tg_mongo_doc((tg_slice){two, 6}, &b));
}

/* ---- OP_QUERY ---- */

static void query_with(bb *x, uint32_t flags, const char *coll, const bson_t *q, const bson_t *sel)
{
    bb_header(x, OP_QUERY);
    bb_u32(x, flags);
    bb_cstr(x, coll);
    bb_u32(x, 0);
    bb_u32(x, 0xffffffffu);
    if (q)
        bb_doc(x, q);
    if (sel)
        bb_doc(x, sel);
    bb_finish(x);
}

static void test_query(void **state)
{
    (void)state;
    bson_t *hello = BCON_NEW("isMaster", BCON_INT32(1), "helloOk", BCON_BOOL(true));
    bson_t *sel = BCON_NEW("x", BCON_INT32(1));
    bb x = {0};
    const char *why;

    query_with(&x, 4 /* SlaveOk, as libmongoc sends it */, "admin.$cmd", hello, sel);
    tg_mongo_frame f = expect_frame(x.b, x.n, TG_MONGO_MAX_MESSAGE_PREAUTH);
    tg_mongo_query q;
    assert_int_equal(tg_mongo_parse_query(&f, TG_MONGO_VALIDATE_REQUEST, &q, &why), 0);
    assert_int_equal(q.flags, 4);
    assert_int_equal(q.number_to_return, -1);
    assert_slice_str(q.full_collection_name, "admin.$cmd");
    assert_int_equal(q.query.len, hello->len);
    assert_memory_equal(q.query.base, bson_get_data(hello), hello->len);
    assert_int_equal(q.return_fields_selector.len, sel->len);
    assert_memory_equal(q.return_fields_selector.base, bson_get_data(sel), sel->len);

    /* Every known flag bit alone is accepted; reserved ones are not. */
    for (unsigned bit = 0; bit < 32; bit++) {
        query_with(&x, 1u << bit, "admin.$cmd", hello, NULL);
        int rc = parse_query_copy(&x, &why);
        if (bit >= 1 && bit <= 7)
            assert_int_equal(rc, 0);
        else
            assert_refused(rc, why, "reserved OP_QUERY flag bit");
    }

    for (size_t k = 0; k < 4; k++) {
        bb_header(&x, OP_QUERY);
        bb_put(&x, "\0\0\0", k);
        bb_finish(&x);
        assert_refused(parse_query_copy(&x, &why), why, "OP_QUERY without flags");
    }
    bb_header(&x, OP_QUERY);
    bb_u32(&x, 0);
    bb_put(&x, "admin.$cmd", 10);
    bb_finish(&x);
    assert_refused(parse_query_copy(&x, &why), why, "collection name not NUL-terminated");
    query_with(&x, 0, "", hello, NULL);
    assert_refused(parse_query_copy(&x, &why), why, "empty collection name");
    query_with(&x, 0, "admin.\xc3", hello, NULL);
    assert_refused(parse_query_copy(&x, &why), why, "collection name not UTF-8");
    for (size_t k = 0; k < 8; k++) {
        bb_header(&x, OP_QUERY);
        bb_u32(&x, 0);
        bb_cstr(&x, "admin.$cmd");
        bb_put(&x, "\0\0\0\0\0\0\0", k);
        bb_finish(&x);
        assert_refused(parse_query_copy(&x, &why), why, "numberToSkip or numberToReturn missing");
    }
    query_with(&x, 0, "admin.$cmd", NULL, NULL);
    assert_refused(parse_query_copy(&x, &why), why, "document size missing");
    /* Trailing bytes: after the query they are a selector that is not one; after it, refused. */
    query_with(&x, 0, "admin.$cmd", hello, NULL);
    bb_put(&x, "\x01\x02", 2);
    bb_finish(&x);
    assert_refused(parse_query_copy(&x, &why), why, "document size missing");
    query_with(&x, 0, "admin.$cmd", hello, sel);
    bb_u8(&x, 0);
    bb_finish(&x);
    assert_refused(parse_query_copy(&x, &why), why, "bytes after returnFieldsSelector");
    /* A lying query size. */
    query_with(&x, 0, "admin.$cmd", hello, NULL);
    put32(x.b + x.n - hello->len, hello->len + 1);
    assert_refused(parse_query_copy(&x, &why), why, "document size beyond its container");
    put32(x.b + x.n - hello->len, 0xfffffff0u);
    assert_refused(parse_query_copy(&x, &why), why, "negative document size");
    /* Invalid UTF-8 in the query. */
    bb d = {0};
    raw_doc(&d, 0x02, "isMaster", "\x02\0\0\0\xfe\0", 6);
    bb_header(&x, OP_QUERY);
    bb_u32(&x, 0);
    bb_cstr(&x, "admin.$cmd");
    bb_u32(&x, 0);
    bb_u32(&x, 1);
    bb_put(&x, d.b, d.n);
    bb_finish(&x);
    assert_refused(parse_query_copy(&x, &why), why, "string not UTF-8 or holding a NUL");

    free(d.b);
    free(x.b);
    bson_destroy(sel);
    bson_destroy(hello);
}

/* ---- OP_REPLY ---- */

static void test_reply(void **state)
{
    (void)state;
    bson_t *hello = BCON_NEW("ismaster", BCON_BOOL(true), "maxWireVersion", BCON_INT32(17), "ok",
                             BCON_DOUBLE(1.0));
    tg_buf out = {0};
    assert_int_equal(tg_buf_append(&out, "pre", 3), 0);
    assert_int_equal(tg_mongo_build_reply(&out, 99, 1804289383, 8, hello), 0);
    tg_mongo_frame f = expect_frame(out.data + 3, out.len - 3, TG_MONGO_MAX_MESSAGE_PREAUTH);
    assert_int_equal(f.header.op_code, OP_REPLY);
    assert_int_equal(f.header.request_id, 99);
    assert_int_equal(f.header.response_to, 1804289383);
    tg_mongo_reply r;
    const char *why;
    assert_int_equal(tg_mongo_parse_reply(&f, TG_MONGO_VALIDATE_REPLY, &r, &why), 0);
    assert_int_equal(r.response_flags, 8);
    assert_int_equal(r.cursor_id, 0);
    assert_int_equal(r.starting_from, 0);
    assert_int_equal(r.number_returned, 1);
    assert_int_equal(r.docs.len, hello->len);
    assert_memory_equal(r.docs.base, bson_get_data(hello), hello->len);
    assert_int_equal(tg_mongo_build_reply(&out, 1, 2, 0, NULL), TG_EINVAL);

    /* Hand-made replies: counts that lie, short fields. */
    bb x = {0};
    const char *want[] = {"fewer documents than numberReturned", NULL,
                          "more documents than numberReturned", "negative numberReturned"};
    const int32_t counts[] = {2, 1, 0, -1};
    for (size_t i = 0; i < 4; i++) {
        bb_header(&x, OP_REPLY);
        bb_u32(&x, 0);
        bb_u32(&x, 0xdeadbeefu);
        bb_u32(&x, 0x80000000u); /* cursorID, negative */
        bb_u32(&x, 0);
        bb_u32(&x, (uint32_t)counts[i]);
        bb_doc(&x, hello);
        bb_finish(&x);
        int rc = parse_reply_copy(&x, &why);
        if (want[i])
            assert_refused(rc, why, want[i]);
        else
            assert_int_equal(rc, 0);
    }
    tg_mongo_frame g;
    assert_int_equal(tg_mongo_decode(x.b, x.n, UINT32_MAX, &g), (ssize_t)x.n);
    assert_int_equal(g.header.op_code, OP_REPLY);
    tg_mongo_reply r2;
    bb_header(&x, OP_REPLY);
    bb_u32(&x, 0);
    bb_u32(&x, 0xdeadbeefu);
    bb_u32(&x, 0x80000000u);
    bb_u32(&x, 0);
    bb_u32(&x, 1);
    bb_doc(&x, hello);
    bb_finish(&x);
    assert_int_equal(tg_mongo_decode(x.b, x.n, UINT32_MAX, &g), (ssize_t)x.n);
    assert_int_equal(tg_mongo_parse_reply(&g, TG_MONGO_VALIDATE_REPLY, &r2, &why), 0);
    assert_true(r2.cursor_id == INT64_MIN + 0xdeadbeef);
    for (size_t k = 0; k < 20; k++) {
        bb_header(&x, OP_REPLY);
        for (size_t j = 0; j < k; j++)
            bb_u8(&x, 0);
        bb_finish(&x);
        assert_refused(parse_reply_copy(&x, &why), why, "OP_REPLY fields missing");
    }
    free(x.b);
    tg_buf_free(&out);
    bson_destroy(hello);
}

/* ---- building OP_MSG ---- */

static void roundtrip(uint32_t flags, const bson_t *body, const tg_mongo_seq *seqs, size_t n)
{
    tg_buf out = {0};
    assert_int_equal(tg_buf_append(&out, "xyz", 3), 0);
    assert_int_equal(tg_mongo_build_msg(&out, 1234, -7, flags, body, seqs, n), 0);
    tg_mongo_frame f = expect_frame(out.data + 3, out.len - 3, UINT32_MAX);
    assert_int_equal(f.header.request_id, 1234);
    assert_int_equal(f.header.response_to, -7);
    assert_int_equal(f.header.op_code, OP_MSG);
    tg_mongo_msg m;
    const char *why = NULL;
    int rc = tg_mongo_parse_msg(&f, TG_MONGO_VALIDATE_REQUEST, &m, &why);
    if (rc != 0)
        fail_msg("rebuilt message refused: %s", why);
    assert_int_equal(m.flags, flags);
    assert_int_equal(m.body.len, body->len);
    assert_memory_equal(m.body.base, bson_get_data(body), body->len);
    assert_int_equal(m.n_seqs, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(m.seqs[i].identifier.len, seqs[i].identifier.len);
        assert_memory_equal(m.seqs[i].identifier.base, seqs[i].identifier.base,
                            seqs[i].identifier.len);
        assert_int_equal(m.seqs[i].docs.len, seqs[i].docs.len);
        if (seqs[i].docs.len)
            assert_memory_equal(m.seqs[i].docs.base, seqs[i].docs.base, seqs[i].docs.len);
        iterate_seq(&m.seqs[i]);
    }
    if (flags & TG_MONGO_MSG_CHECKSUM_PRESENT)
        assert_int_equal(m.checksum, tg_mongo_crc32c(0, out.data + 3, out.len - 3 - 4));
    tg_buf_free(&out);
}

static void test_build_msg(void **state)
{
    (void)state;
    bson_t *body = cmd();
    bson_t *d1 = BCON_NEW("_id", BCON_INT32(1), "name", BCON_UTF8("ä"));
    bson_t *d2 = BCON_NEW("_id", BCON_INT32(2), "tags", "[", BCON_UTF8("a"), "]");
    bb docs = {0};
    bb_doc(&docs, d1);
    bb_doc(&docs, d2);
    tg_mongo_seq seqs[TG_MONGO_MAX_SEQUENCES + 1];
    seqs[0] = (tg_mongo_seq){tg_slice_str("documents"), {docs.b, docs.n}, 0};
    seqs[1] = (tg_mongo_seq){tg_slice_str("nsInfo"), {bson_get_data(d1), d1->len}, 0};
    seqs[2] = (tg_mongo_seq){tg_slice_str("empty"), {NULL, 0}, 0};

    const uint32_t flags[] = {0,
                              TG_MONGO_MSG_CHECKSUM_PRESENT,
                              TG_MONGO_MSG_MORE_TO_COME,
                              TG_MONGO_MSG_EXHAUST_ALLOWED,
                              TG_MONGO_MSG_CHECKSUM_PRESENT | TG_MONGO_MSG_MORE_TO_COME,
                              1u << 20};
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        for (size_t n = 0; n <= 3; n++)
            roundtrip(flags[i], body, seqs, n);

    /* Rewriting a request: checksum dropped, exhaustAllowed cleared, sequence kept. */
    tg_buf out = {0};
    assert_int_equal(
        tg_mongo_build_msg(&out, 1, 0, TG_MONGO_MSG_CHECKSUM_PRESENT | TG_MONGO_MSG_EXHAUST_ALLOWED,
                           body, seqs, 1),
        0);
    tg_mongo_frame f;
    assert_int_equal(tg_mongo_decode(out.data, out.len, UINT32_MAX, &f), (ssize_t)out.len);
    tg_mongo_msg m;
    assert_int_equal(tg_mongo_parse_msg(&f, TG_MONGO_VALIDATE_REQUEST, &m, NULL), 0);
    bson_t b;
    assert_true(tg_mongo_doc(m.body, &b));
    tg_buf again = {0};
    uint32_t nf = m.flags & ~(TG_MONGO_MSG_CHECKSUM_PRESENT | TG_MONGO_MSG_EXHAUST_ALLOWED);
    assert_int_equal(tg_mongo_build_msg(&again, 2, 0, nf, &b, m.seqs, m.n_seqs), 0);
    assert_int_equal(again.len, out.len - 4);
    assert_int_equal(get32(again.data + 16), 0);
    /* Same sections, byte for byte. */
    assert_memory_equal(again.data + 20, out.data + 20, again.len - 20);
    tg_buf_free(&again);
    tg_buf_free(&out);

    /* Up to the maximum number of sequences. */
    for (int i = 0; i < TG_MONGO_MAX_SEQUENCES + 1; i++) {
        static char ids[TG_MONGO_MAX_SEQUENCES + 1][8];
        snprintf(ids[i], sizeof(ids[i]), "s%d", i);
        seqs[i] = (tg_mongo_seq){tg_slice_str(ids[i]), {bson_get_data(d1), d1->len}, 0};
    }
    roundtrip(0, body, seqs, TG_MONGO_MAX_SEQUENCES);

    free(docs.b);
    bson_destroy(d2);
    bson_destroy(d1);
    bson_destroy(body);
}

static void assert_build_refused(const bson_t *body, uint32_t flags, const tg_mongo_seq *seqs,
                                 size_t n)
{
    tg_buf out = {0};
    assert_int_equal(tg_buf_append(&out, "abc", 3), 0);
    assert_int_equal(tg_mongo_build_msg(&out, 1, 0, flags, body, seqs, n), TG_EINVAL);
    assert_int_equal(out.len, 3);
    assert_memory_equal(out.data, "abc", 3);
    tg_buf_free(&out);
}

static void test_build_msg_refused(void **state)
{
    (void)state;
    bson_t *body = cmd();
    bson_t *d1 = BCON_NEW("_id", BCON_INT32(1));
    tg_slice doc = {bson_get_data(d1), d1->len};
    tg_mongo_seq s[TG_MONGO_MAX_SEQUENCES + 1];
    for (int i = 0; i <= TG_MONGO_MAX_SEQUENCES; i++) {
        static char ids[TG_MONGO_MAX_SEQUENCES + 1][8];
        snprintf(ids[i], sizeof(ids[i]), "s%d", i);
        s[i] = (tg_mongo_seq){tg_slice_str(ids[i]), doc, 0};
    }

    assert_build_refused(NULL, 0, NULL, 0);
    for (unsigned bit = 2; bit < 16; bit++)
        assert_build_refused(body, 1u << bit, NULL, 0);
    assert_build_refused(body, 0, NULL, 1);
    assert_build_refused(body, 0, s, TG_MONGO_MAX_SEQUENCES + 1);

    tg_mongo_seq bad = {tg_slice_str(""), doc, 0};
    assert_build_refused(body, 0, &bad, 1);
    bad.identifier = (tg_slice){(const uint8_t *)"do\0c", 4};
    assert_build_refused(body, 0, &bad, 1);
    bad.identifier = tg_slice_str("do\xff");
    assert_build_refused(body, 0, &bad, 1);
    bad.identifier = tg_slice_str("ordered"); /* a body field */
    assert_build_refused(body, 0, &bad, 1);
    bad.identifier = (tg_slice){NULL, 3};
    assert_build_refused(body, 0, &bad, 1);
    tg_mongo_seq twice[2] = {{tg_slice_str("documents"), doc, 0},
                             {tg_slice_str("documents"), doc, 0}};
    assert_build_refused(body, 0, twice, 2);
    /* Documents not framed as documents. */
    bad.identifier = tg_slice_str("documents");
    bad.docs = (tg_slice){doc.base, doc.len - 1};
    assert_build_refused(body, 0, &bad, 1);
    bad.docs = (tg_slice){(const uint8_t *)"\x04\0\0\0", 4};
    assert_build_refused(body, 0, &bad, 1);
    bad.docs = (tg_slice){NULL, 5};
    assert_build_refused(body, 0, &bad, 1);

    bson_destroy(d1);
    bson_destroy(body);
}

/* ---- error replies ---- */

/* Checks an error document field by field, in MongoDB's order, and returns its errmsg. */
static const char *check_error_doc(tg_slice raw, int32_t code, const char *code_name)
{
    bson_t d;
    bson_iter_t it;
    assert_true(tg_mongo_doc(raw, &d));
    assert_true(bson_validate(&d, TG_MONGO_VALIDATE_REQUEST, NULL));
    assert_true(bson_iter_init(&it, &d));
    assert_true(bson_iter_next(&it));
    assert_string_equal(bson_iter_key(&it), "ok");
    assert_true(BSON_ITER_HOLDS_DOUBLE(&it));
    assert_true(bson_iter_double(&it) == 0.0);
    assert_true(bson_iter_next(&it));
    assert_string_equal(bson_iter_key(&it), "errmsg");
    assert_true(BSON_ITER_HOLDS_UTF8(&it));
    const char *msg = bson_iter_utf8(&it, NULL);
    assert_true(bson_iter_next(&it));
    assert_string_equal(bson_iter_key(&it), "code");
    assert_true(BSON_ITER_HOLDS_INT32(&it));
    assert_int_equal(bson_iter_int32(&it), code);
    assert_true(bson_iter_next(&it));
    assert_string_equal(bson_iter_key(&it), "codeName");
    assert_string_equal(bson_iter_utf8(&it, NULL), code_name);
    assert_false(bson_iter_next(&it));
    return msg;
}

static void test_error_replies(void **state)
{
    (void)state;
    tg_buf out = {0};
    tg_mongo_frame f;
    tg_mongo_msg m;
    const char *why;

    /* The rejection, exactly as libbson would encode it. */
    assert_int_equal(tg_mongo_build_reject(&out, 11, 1681692777, "command dropDatabase"), 0);
    f = expect_frame(out.data, out.len, TG_MONGO_MAX_MESSAGE_PREAUTH);
    assert_int_equal(f.header.request_id, 11);
    assert_int_equal(f.header.response_to, 1681692777);
    assert_int_equal(tg_mongo_parse_msg(&f, TG_MONGO_VALIDATE_REQUEST, &m, &why), 0);
    assert_int_equal(m.flags, 0);
    assert_int_equal(m.n_seqs, 0);
    assert_string_equal(check_error_doc(m.body, 13, "Unauthorized"),
                        "tenantgate: command dropDatabase");
    bson_t *want =
        BCON_NEW("ok", BCON_DOUBLE(0.0), "errmsg", BCON_UTF8("tenantgate: command dropDatabase"),
                 "code", BCON_INT32(13), "codeName", BCON_UTF8("Unauthorized"));
    assert_int_equal(m.body.len, want->len);
    assert_memory_equal(m.body.base, bson_get_data(want), want->len);
    bson_destroy(want);

    out.len = 0;
    assert_int_equal(tg_mongo_build_auth_failed(&out, 12, 3, "token expired"), 0);
    f = expect_frame(out.data, out.len, TG_MONGO_MAX_MESSAGE_PREAUTH);
    assert_int_equal(tg_mongo_parse_msg(&f, TG_MONGO_VALIDATE_REQUEST, &m, &why), 0);
    assert_string_equal(check_error_doc(m.body, 18, "AuthenticationFailed"),
                        "tenantgate: token expired");

    /* OP_REPLY for a refused OP_QUERY. */
    out.len = 0;
    assert_int_equal(tg_mongo_build_error_reply(
                         &out, 13, 4, TG_MONGO_ERR_UNSUPPORTED_OP_QUERY_COMMAND, "OP_QUERY find"),
                     0);
    f = expect_frame(out.data, out.len, TG_MONGO_MAX_MESSAGE_PREAUTH);
    tg_mongo_reply r;
    assert_int_equal(tg_mongo_parse_reply(&f, TG_MONGO_VALIDATE_REQUEST, &r, &why), 0);
    assert_int_equal(r.number_returned, 1);
    assert_int_equal(r.response_flags, 0);
    assert_string_equal(check_error_doc(r.docs, 352, "UnsupportedOpQueryCommand"),
                        "tenantgate: OP_QUERY find");

    /* The bare document. */
    out.len = 0;
    assert_int_equal(
        tg_mongo_build_error_doc(&out, TG_MONGO_ERR_REAUTHENTICATION_REQUIRED, "token expired"), 0);
    assert_int_equal(tg_mongo_check_doc(out.data, out.len, TG_MONGO_VALIDATE_REQUEST, &why),
                     (ssize_t)out.len);
    check_error_doc((tg_slice){out.data, out.len}, 391, "ReauthenticationRequired");

    /* Reasons that are not clean UTF-8 come out as valid UTF-8 with '?'. */
    out.len = 0;
    assert_int_equal(tg_mongo_build_error_msg(&out, 1, 2, 13,
                                              "bad \xff\xfe name \xc3\xa9 ok "
                                              "\xe2\x82 \xed\xa0\x80 \xc0\xaf"),
                     0);
    f = expect_frame(out.data, out.len, UINT32_MAX);
    assert_int_equal(tg_mongo_parse_msg(&f, TG_MONGO_VALIDATE_REQUEST, &m, &why), 0);
    assert_string_equal(check_error_doc(m.body, 13, "Unauthorized"),
                        "tenantgate: bad ?? name \xc3\xa9 ok ?? ??? ??");

    /* Long reasons are cut at TG_MONGO_REASON_MAX bytes, on a character boundary. */
    char *big = malloc(TG_MONGO_REASON_MAX + 100);
    assert_non_null(big);
    memset(big, 'a', TG_MONGO_REASON_MAX + 99);
    big[TG_MONGO_REASON_MAX + 99] = 0;
    out.len = 0;
    assert_int_equal(tg_mongo_build_reject(&out, 1, 2, big), 0);
    f = expect_frame(out.data, out.len, UINT32_MAX);
    assert_int_equal(tg_mongo_parse_msg(&f, TG_MONGO_VALIDATE_REQUEST, &m, &why), 0);
    const char *msg = check_error_doc(m.body, 13, "Unauthorized");
    assert_int_equal(strlen(msg), strlen("tenantgate: ") + TG_MONGO_REASON_MAX);
    memcpy(big + TG_MONGO_REASON_MAX - 1, "\xc3\xa9", 3); /* a 2-byte character across the cut */
    out.len = 0;
    assert_int_equal(tg_mongo_build_reject(&out, 1, 2, big), 0);
    f = expect_frame(out.data, out.len, UINT32_MAX);
    assert_int_equal(tg_mongo_parse_msg(&f, TG_MONGO_VALIDATE_REQUEST, &m, &why), 0);
    msg = check_error_doc(m.body, 13, "Unauthorized");
    assert_int_equal(strlen(msg), strlen("tenantgate: ") + TG_MONGO_REASON_MAX - 1);
    free(big);

    /* Unknown codes and NULL reasons are refused; the buffer is left as it was. */
    out.len = 0;
    assert_int_equal(tg_buf_append(&out, "keep", 4), 0);
    assert_int_equal(tg_mongo_build_error_msg(&out, 1, 2, 12345, "x"), TG_EINVAL);
    assert_int_equal(tg_mongo_build_error_reply(&out, 1, 2, 0, "x"), TG_EINVAL);
    assert_int_equal(tg_mongo_build_error_doc(&out, -1, "x"), TG_EINVAL);
    assert_int_equal(tg_mongo_build_reject(&out, 1, 2, NULL), TG_EINVAL);
    assert_int_equal(tg_mongo_build_auth_failed(&out, 1, 2, NULL), TG_EINVAL);
    assert_int_equal(tg_mongo_build_error_doc(&out, 13, NULL), TG_EINVAL);
    assert_int_equal(out.len, 4);
    assert_int_equal(tg_mongo_build_reject(&out, 1, 2, ""), 0);
    f = expect_frame(out.data + 4, out.len - 4, UINT32_MAX);
    assert_int_equal(tg_mongo_parse_msg(&f, TG_MONGO_VALIDATE_REQUEST, &m, &why), 0);
    assert_string_equal(check_error_doc(m.body, 13, "Unauthorized"), "tenantgate: ");
    tg_buf_free(&out);
}

/* ---- CRC-32C ---- */

/* Bit by bit from the definition: reflected, polynomial 0x82F63B78, inverted in and out. */
static uint32_t crc32c_bitwise(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    }
    return ~c;
}

static void test_crc32c(void **state)
{
    (void)state;
    /* RFC 3720, B.4 (the CRC as a number; the RFC lists its bytes little-endian). */
    uint8_t buf[48];
    memset(buf, 0, 32);
    assert_int_equal(tg_mongo_crc32c(0, buf, 32), 0x8a9136aa);
    assert_int_equal(tg_mongo_crc32c_portable(0, buf, 32), 0x8a9136aa);
    memset(buf, 0xff, 32);
    assert_int_equal(tg_mongo_crc32c(0, buf, 32), 0x62a8ab43);
    assert_int_equal(tg_mongo_crc32c_portable(0, buf, 32), 0x62a8ab43);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    assert_int_equal(tg_mongo_crc32c(0, buf, 32), 0x46dd794e);
    assert_int_equal(tg_mongo_crc32c_portable(0, buf, 32), 0x46dd794e);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    assert_int_equal(tg_mongo_crc32c(0, buf, 32), 0x113fdb5c);
    assert_int_equal(tg_mongo_crc32c_portable(0, buf, 32), 0x113fdb5c);
    static const uint8_t iscsi_read[48] = {
        0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
        0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    assert_int_equal(tg_mongo_crc32c(0, iscsi_read, 48), 0xd9963a56);
    assert_int_equal(tg_mongo_crc32c_portable(0, iscsi_read, 48), 0xd9963a56);
    /* The common check value, and nothing. */
    assert_int_equal(tg_mongo_crc32c(0, "123456789", 9), 0xe3069283);
    assert_int_equal(tg_mongo_crc32c(0, "", 0), 0);
    assert_int_equal(tg_mongo_crc32c(0, NULL, 0), 0);

    /* The table is the definition: every byte value, alone. */
    for (int b = 0; b < 256; b++) {
        uint8_t one = (uint8_t)b;
        assert_int_equal(tg_mongo_crc32c_portable(0, &one, 1), crc32c_bitwise(&one, 1));
    }
    /* Both paths agree at every length and alignment, and chain. */
    uint8_t data[512 + 8];
    uint32_t seed = 12345;
    for (size_t i = 0; i < sizeof(data); i++) {
        seed = seed * 1103515245u + 12345u;
        data[i] = (uint8_t)(seed >> 16);
    }
    for (size_t align = 0; align < 8; align++) {
        for (size_t n = 0; n <= 512; n += (n < 40 ? 1 : 37)) {
            uint32_t want = crc32c_bitwise(data + align, n);
            assert_int_equal(tg_mongo_crc32c_portable(0, data + align, n), want);
            assert_int_equal(tg_mongo_crc32c(0, data + align, n), want);
        }
    }
    for (size_t cut = 0; cut <= 100; cut++) {
        uint32_t whole = tg_mongo_crc32c(0, data, 100);
        assert_int_equal(tg_mongo_crc32c(tg_mongo_crc32c(0, data, cut), data + cut, 100 - cut),
                         whole);
        assert_int_equal(
            tg_mongo_crc32c_portable(tg_mongo_crc32c(0, data, cut), data + cut, 100 - cut), whole);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_decode_pymongo_frames),
        cmocka_unit_test(test_decode_stream_every_split),
        cmocka_unit_test(test_decode_bad_lengths),
        cmocka_unit_test(test_decode_too_big),
        cmocka_unit_test(test_decode_header_early),
        cmocka_unit_test(test_parse_pymongo_hello),
        cmocka_unit_test(test_parse_pymongo_msgs),
        cmocka_unit_test(test_rebuild_pymongo_msgs),
        cmocka_unit_test(test_msg_flags),
        cmocka_unit_test(test_msg_sections),
        cmocka_unit_test(test_msg_document_sizes),
        cmocka_unit_test(test_msg_sequence_sizes),
        cmocka_unit_test(test_msg_identifiers),
        cmocka_unit_test(test_msg_checksum),
        cmocka_unit_test(test_doc_depth),
        cmocka_unit_test(test_doc_elements),
        cmocka_unit_test(test_msg_invalid_bson),
        cmocka_unit_test(test_seq_next),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_reply),
        cmocka_unit_test(test_build_msg),
        cmocka_unit_test(test_build_msg_refused),
        cmocka_unit_test(test_error_replies),
        cmocka_unit_test(test_crc32c),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
