/*
 * Unit tests for protocols/redis/codec.c.
 *
 *   requests --every prefix--> NEED_MORE until whole, then the same argv
 *   pipelines --split at every byte--> the same commands in order
 *   lengths over a limit --> refused after exactly the header line, body never needed
 *   replies (every RESP2/RESP3 type) --every prefix--> reply_size, then a tg_resp_next walk
 *   writers --> decode / measure --> the same values
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

#include "protocols/redis/codec.h"
#include "proxy/error.h"

#include "tests/unit/support/codec_input.h"

/* A string literal and its length (NULs inside count). */
#define W(lit) (const uint8_t *)(lit), sizeof(lit) - 1

static const tg_resp_limits def = TG_RESP_LIMITS_DEFAULT;
static const tg_resp_limits pre = TG_RESP_LIMITS_PREAUTH;

/* ---- helpers ---- */

/* The request decoder with limits and room for cap arguments (at most 64). */
typedef struct req_ctx {
    const tg_resp_limits *lim;
    uint32_t cap;
} req_ctx;

static ssize_t decode_req(const uint8_t *p, size_t n, void *ctx)
{
    const req_ctx *c = ctx;
    tg_slice argv[64];
    uint32_t argc = 0;
    return tg_resp_decode_request(p, n, c->lim, argv, c->cap < 64 ? c->cap : 64, &argc);
}

static ssize_t measure_reply(const uint8_t *p, size_t n, void *lim)
{
    tg_resp_type t;
    return tg_resp_reply_size(p, n, lim, &t);
}

static ssize_t req_copy(const uint8_t *p, size_t n, const tg_resp_limits *lim, uint32_t cap)
{
    req_ctx c = {lim, cap};
    return decode_exact(decode_req, &c, p, n);
}

static ssize_t reply_copy(const uint8_t *p, size_t n, const tg_resp_limits *lim)
{
    return decode_exact(measure_reply, (void *)lim, p, n);
}

static void assert_slice_str(tg_slice s, const char *str)
{
    if (!tg_slice_eq_str(s, str))
        fail_msg("slice \"%.*s\" != \"%s\"", (int)s.len, s.base ? (const char *)s.base : "", str);
}

static void assert_slice_in(tg_slice s, const uint8_t *base, size_t len)
{
    assert_true(s.base >= base && s.len <= len && (size_t)(s.base - base) <= len - s.len);
}

/*
 * A valid request: every proper prefix needs more; the whole request (alone
 * and followed by another command) decodes to want[0..n_want).
 */
static void expect_request(const uint8_t *p, size_t n, const tg_resp_limits *lim,
                           const char *const *want, uint32_t n_want)
{
    req_ctx c = {lim, 64};
    expect_prefixes(decode_req, &c, p, n, n, (ssize_t)n);
    uint8_t *d = malloc(n + 14);
    assert_non_null(d);
    memcpy(d, p, n);
    memcpy(d + n, "*1\r\n$4\r\nPING\r\n", 14);
    for (int more = 0; more < 2; more++) {
        size_t len = more ? n + 14 : n;
        uint8_t *in = dup_exact(d, len);
        tg_slice argv[64];
        uint32_t argc = 999;
        assert_int_equal(tg_resp_decode_request(in, len, lim, argv, 64, &argc), (ssize_t)n);
        assert_int_equal(argc, n_want);
        for (uint32_t k = 0; k < argc; k++) {
            assert_slice_in(argv[k], in, n);
            assert_slice_str(argv[k], want[k]);
        }
        free(in);
    }
    free(d);
}

/* An invalid request: NEED_MORE below `at` bytes, err from `at` on. */
static void expect_request_error(const uint8_t *p, size_t n, const tg_resp_limits *lim, size_t at,
                                 ssize_t err)
{
    req_ctx c = {lim, 64};
    expect_prefixes(decode_req, &c, p, n, at, err);
}

/* A valid reply: every proper prefix needs more; the whole (and with more after) measures n. */
static void expect_reply(const uint8_t *p, size_t n, const tg_resp_limits *lim, tg_resp_type type)
{
    expect_prefixes(measure_reply, (void *)lim, p, n, n, (ssize_t)n);
    uint8_t *d = malloc(n + 5);
    assert_non_null(d);
    memcpy(d, p, n);
    memcpy(d + n, "+OK\r\n", 5);
    tg_resp_type t = TG_RESP_END;
    assert_int_equal(tg_resp_reply_size(d, n + 5, lim, &t), (ssize_t)n);
    assert_int_equal(t, type);
    free(d);
}

static void expect_reply_error(const uint8_t *p, size_t n, const tg_resp_limits *lim, size_t at,
                               ssize_t err)
{
    expect_prefixes(measure_reply, (void *)lim, p, n, at, err);
}

/* ---- requests: multibulk ---- */

static void test_multibulk(void **state)
{
    (void)state;
    const char *set[] = {"SET", "k", "value"};
    expect_request(W("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n"), &def, set, 3);
    const char *empty[] = {"GET", ""};
    expect_request(W("*2\r\n$3\r\nGET\r\n$0\r\n\r\n"), &def, empty, 2);
    /* Binary-safe: CRLF and quotes inside a bulk are payload. */
    const char *bin[] = {"ECHO", "a\r\nb\"'"};
    expect_request(W("*2\r\n$4\r\nECHO\r\n$6\r\na\r\nb\"'\r\n"), &def, bin, 2);
    /* A NUL in a payload. */
    uint8_t nul[] = "*1\r\n$3\r\na\0b\r\n";
    uint8_t *d = dup_exact(nul, sizeof(nul) - 1);
    tg_slice argv[2];
    uint32_t argc;
    assert_int_equal(tg_resp_decode_request(d, sizeof(nul) - 1, &def, argv, 2, &argc),
                     (ssize_t)sizeof(nul) - 1);
    assert_int_equal(argc, 1);
    assert_int_equal(argv[0].len, 3);
    assert_memory_equal(argv[0].base, "a\0b", 3);
    free(d);
}

static void test_multibulk_empty_and_null(void **state)
{
    (void)state;
    /* Redis ignores *0; consumed with no arguments. */
    expect_request(W("*0\r\n"), &def, NULL, 0);
    /* A null or negative count is no request. */
    expect_request_error(W("*-1\r\n"), &def, 2, TG_EPROTO);
    expect_request_error(W("*-10\r\n"), &def, 2, TG_EPROTO);
}

static void test_multibulk_malformed_numbers(void **state)
{
    (void)state;
    expect_request_error(W("*+1\r\n$1\r\na\r\n"), &def, 2, TG_EPROTO);
    expect_request_error(W("*01\r\n$1\r\na\r\n"), &def, 3, TG_EPROTO);
    expect_request_error(W("*\r\n"), &def, 2, TG_EPROTO);
    expect_request_error(W("*1x\r\n"), &def, 3, TG_EPROTO);
    expect_request_error(W("*1\rX"), &def, 4, TG_EPROTO);
    expect_request_error(W("*1\n"), &def, 3, TG_EPROTO);
    expect_request_error(W("* 1\r\n"), &def, 2, TG_EPROTO);
    /* Overflow is refused at the digit that overflows, not at the end of the line. */
    expect_request_error(W("*9223372036854775808\r\n"), &def, 20, TG_EPROTO);
    expect_request_error(W("*1\r\n$99999999999999999999\r\n"), &def, 24, TG_EPROTO);
    /* INT64_MAX itself is a number, just too big. */
    expect_request_error(W("*9223372036854775807\r\n"), &def, 22, TG_ETOOBIG);
    expect_request_error(W("*1\r\n$-1\r\n"), &def, 6, TG_EPROTO);
    expect_request_error(W("*1\r\n$+3\r\nabc\r\n"), &def, 6, TG_EPROTO);
    expect_request_error(W("*1\r\n$03\r\nabc\r\n"), &def, 7, TG_EPROTO);
    expect_request_error(W("*1\r\n$\r\n"), &def, 6, TG_EPROTO);
    /* Each argument must be a bulk string. */
    expect_request_error(W("*1\r\n:1\r\n"), &def, 5, TG_EPROTO);
    expect_request_error(W("*2\r\n$1\r\na\r\n+b\r\n"), &def, 12, TG_EPROTO);
}

static void test_multibulk_missing_crlf(void **state)
{
    (void)state;
    expect_request_error(W("*1\r\n$3\r\nabcX\r\n"), &def, 12, TG_EPROTO);
    expect_request_error(W("*1\r\n$3\r\nabc\rX"), &def, 13, TG_EPROTO);
    expect_request_error(W("*1\r\n$3\r\nabcd\r\n"), &def, 12, TG_EPROTO);
}

static void test_request_limits(void **state)
{
    (void)state;
    /* Too many arguments: refused once "*17\r\n" is in, before any argument. */
    expect_request_error(W("*17\r\n"), &pre, 5, TG_ETOOBIG);
    /* A bulk too big: refused once its header line is in; the body is never awaited. */
    expect_request_error(W("*2\r\n$4\r\nAUTH\r\n$16385\r\n"), &pre, 22, TG_ETOOBIG);
    expect_request_error(W("*1\r\n$536870913\r\n"), &def, 16, TG_ETOOBIG);
    expect_request_error(W("*1048577\r\n"), &def, 10, TG_ETOOBIG);
    /* Exactly the limits pass. */
    tg_resp_limits lim = pre;
    lim.max_bulk = 3;
    lim.max_args = 2;
    const char *ok[] = {"abc", "de"};
    expect_request(W("*2\r\n$3\r\nabc\r\n$2\r\nde\r\n"), &lim, ok, 2);
    expect_request_error(W("*2\r\n$3\r\nabc\r\n$4\r\nde"), &lim, 17, TG_ETOOBIG);
    expect_request_error(W("*3\r\n"), &lim, 4, TG_ETOOBIG);
    /* A 16 KiB bulk before auth is fine. */
    size_t n = 4 + 8 + 16384 + 2;
    uint8_t *big = malloc(n);
    assert_non_null(big);
    memcpy(big, "*1\r\n$16384\r\n", 12);
    memset(big + 12, 'x', 16384);
    memcpy(big + 12 + 16384, "\r\n", 2);
    assert_int_equal(req_copy(big, n, &pre, 1), (ssize_t)n);
    assert_int_equal(req_copy(big, n - 1, &pre, 1), TG_NEED_MORE);
    free(big);
}

static void test_argv_capacity(void **state)
{
    (void)state;
    const uint8_t in[] = "*5\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n$1\r\ne\r\n";
    size_t n = sizeof(in) - 1;
    uint8_t *d = dup_exact(in, n);
    tg_slice argv[5] = {{0}};
    uint32_t argc = 0;
    /* Incomplete: NEED_MORE, not ELIMIT (the caller grows argv only for a whole request). */
    assert_int_equal(tg_resp_decode_request(d, n - 1, &def, argv, 2, &argc), TG_NEED_MORE);
    assert_int_equal(tg_resp_decode_request(d, n, &def, argv, 2, &argc), TG_ELIMIT);
    assert_int_equal(argc, 5);
    assert_slice_str(argv[0], "a");
    assert_slice_str(argv[1], "b");
    assert_null(argv[2].base);
    assert_int_equal(tg_resp_decode_request(d, n, &def, argv, argc, &argc), (ssize_t)n);
    assert_int_equal(argc, 5);
    assert_slice_str(argv[4], "e");
    /* A capacity of zero with no argument array. */
    assert_int_equal(tg_resp_decode_request(d, n, &def, NULL, 0, &argc), TG_ELIMIT);
    assert_int_equal(argc, 5);
    free(d);
    /* Inline the same way. */
    const uint8_t line[] = "a b c\r\n";
    d = dup_exact(line, 7);
    assert_int_equal(tg_resp_decode_request(d, 7, &def, argv, 1, &argc), TG_ELIMIT);
    assert_int_equal(argc, 3);
    assert_slice_str(argv[0], "a");
    assert_int_equal(tg_resp_decode_request(d, 7, &def, argv, 3, &argc), 7);
    assert_slice_str(argv[2], "c");
    free(d);
    /* Errors beat capacity: a malformed tail is EPROTO even with a small argv. */
    assert_int_equal(req_copy(W("*3\r\n$1\r\na\r\n$1\r\nb\r\n:1\r\n"), &def, 1), TG_EPROTO);
}

/* ---- requests: inline ---- */

static void test_inline(void **state)
{
    (void)state;
    const char *ping[] = {"PING"};
    expect_request(W("PING\r\n"), &def, ping, 1);
    expect_request(W("PING\n"), &def, ping, 1);
    const char *set[] = {"SET", "k", "v"};
    expect_request(W("  SET  k\tv  \r\n"), &def, set, 3);
    expect_request(W("SET k v\n"), &def, set, 3);
    /* Empty and blank lines: consumed, no arguments. */
    expect_request(W("\r\n"), &def, NULL, 0);
    expect_request(W("\n"), &def, NULL, 0);
    expect_request(W("  \t \r\n"), &def, NULL, 0);
    /* Quotes that need no unescaping stay slices of the input. */
    const char *q[] = {"SET", "a b", "c \"d\"", ""};
    expect_request(W("SET \"a b\" 'c \"d\"' \"\"\r\n"), &def, q, 4);
    const char *sq[] = {"x'y", "\\n"};
    expect_request(W("\"x'y\" \\n\r\n"), &def, sq, 2);
    /* A line starting with '$' or ':' is inline, as in Redis. */
    const char *dollar[] = {"$3", "abc"};
    expect_request(W("$3 abc\r\n"), &def, dollar, 2);
}

static void test_inline_refused(void **state)
{
    (void)state;
    /* Backslashes inside quotes would need unescaping. */
    expect_request_error(W("SET \"a\\\"b\"\r\n"), &def, 12, TG_EPROTO);
    expect_request_error(W("SET 'a\\'b'\r\n"), &def, 12, TG_EPROTO);
    expect_request_error(W("SET \"\\x41\"\r\n"), &def, 12, TG_EPROTO);
    /* Quotes in the middle of a word (sdssplitargs would concatenate). */
    expect_request_error(W("SET a\"b c\"\r\n"), &def, 12, TG_EPROTO);
    /* A closing quote must be followed by a blank or the end. */
    expect_request_error(W("SET \"ab\"c\r\n"), &def, 11, TG_EPROTO);
    /* Unbalanced. */
    expect_request_error(W("SET \"abc\r\n"), &def, 10, TG_EPROTO);
    expect_request_error(W("SET 'abc\n"), &def, 9, TG_EPROTO);
    /* NUL, stray CR, VT and FF. */
    expect_request_error(W("GET a\0b\r\n"), &def, 9, TG_EPROTO);
    expect_request_error(W("GET a\rb\r\n"), &def, 9, TG_EPROTO);
    expect_request_error(W("GET a\r\r\n"), &def, 8, TG_EPROTO);
    expect_request_error(W("GET\va\r\n"), &def, 7, TG_EPROTO);
    expect_request_error(W("GET \fa\r\n"), &def, 8, TG_EPROTO);
    expect_request_error(W("GET \"a\0\"\r\n"), &def, 10, TG_EPROTO);
    /* Too many words before auth. */
    expect_request_error(W("a b c d e f g h i j k l m n o p q\r\n"), &pre, 35, TG_ETOOBIG);
    const char *sixteen[] = {"a", "b", "c", "d", "e", "f", "g", "h",
                             "i", "j", "k", "l", "m", "n", "o", "p"};
    expect_request(W("a b c d e f g h i j k l m n o p\r\n"), &pre, sixteen, 16);
}

static void test_inline_limit(void **state)
{
    (void)state;
    tg_resp_limits lim = def;
    lim.max_inline = 8;
    const char *ok[] = {"12345678"};
    expect_request(W("12345678\r\n"), &lim, ok, 1);
    expect_request(W("12345678\n"), &lim, ok, 1);
    /* Nine bytes: over the limit once the line is in... */
    expect_request_error(W("123456789\n"), &lim, 10, TG_ETOOBIG);
    /* ...or once max_inline + 2 bytes hold no newline. */
    expect_request_error(W("1234567890abcdef"), &lim, 10, TG_ETOOBIG);
    expect_request_error(W("12345678\r\r\n"), &lim, 10, TG_ETOOBIG);

    /* Redis's own 64 KiB (PROTO_INLINE_MAX_SIZE). */
    size_t n = TG_RESP_INLINE_MAX + 2;
    uint8_t *line = malloc(n + 1);
    assert_non_null(line);
    memset(line, 'x', n + 1);
    line[3] = ' ';
    assert_int_equal(req_copy(line, n - 1, &def, 4), TG_NEED_MORE);
    assert_int_equal(req_copy(line, n, &def, 4), TG_ETOOBIG);
    line[n - 2] = '\r';
    line[n - 1] = '\n';
    assert_int_equal(req_copy(line, n, &def, 4), (ssize_t)n);
    line[n - 2] = 'x';
    line[n - 1] = '\r';
    line[n] = '\n';
    assert_int_equal(req_copy(line, n + 1, &def, 4), TG_ETOOBIG);
    free(line);
}

/* ---- pipelines ---- */

static const uint8_t pipeline[] = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
                                  "PING\r\n"
                                  "*0\r\n"
                                  "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
                                  "\r\n"
                                  "ECHO 'a b'\n"
                                  "*1\r\n$4\r\nQUIT\r\n";
static const char *const pipeline_cmds[] = {"SET k v", "PING", "", "GET k", "", "ECHO a b", "QUIT"};

/* What a receiver of the pipeline got so far: "arg arg" strings, and where it stopped. */
typedef struct drained {
    char got[16][64];
    size_t n_got, off;
} drained;

/* Decodes what is complete in buf[off..len), appending the commands to d. */
static void drain(const uint8_t *buf, size_t len, void *ctx)
{
    drained *d = ctx;
    for (;;) {
        tg_slice argv[8];
        uint32_t argc;
        ssize_t rc = tg_resp_decode_request(buf + d->off, len - d->off, &def, argv, 8, &argc);
        assert_true(rc >= 0);
        if (rc == 0)
            return;
        assert_true(d->n_got < 16);
        char *s = d->got[d->n_got++];
        s[0] = 0;
        for (uint32_t i = 0; i < argc; i++) {
            if (i)
                strcat(s, " ");
            strncat(s, (const char *)argv[i].base, argv[i].len);
        }
        d->off += (size_t)rc;
    }
}

static void test_pipeline_split_everywhere(void **state)
{
    (void)state;
    size_t n = sizeof(pipeline) - 1, want = sizeof(pipeline_cmds) / sizeof(pipeline_cmds[0]);
    for (size_t split = 0; split <= n; split++) {
        drained d = {.n_got = 0, .off = 0};
        feed_split(drain, &d, pipeline, n, split);
        assert_int_equal(d.off, n);
        assert_int_equal(d.n_got, want);
        for (size_t i = 0; i < want; i++)
            assert_string_equal(d.got[i], pipeline_cmds[i]);
    }
}

/* ---- replies ---- */

static void test_reply_resp2(void **state)
{
    (void)state;
    expect_reply(W("+OK\r\n"), &def, TG_RESP_SIMPLE);
    expect_reply(W("+\r\n"), &def, TG_RESP_SIMPLE);
    expect_reply(W("-ERR unknown command 'x'\r\n"), &def, TG_RESP_ERROR);
    expect_reply(W(":0\r\n"), &def, TG_RESP_INTEGER);
    expect_reply(W(":-9223372036854775808\r\n"), &def, TG_RESP_INTEGER);
    expect_reply(W(":+9223372036854775807\r\n"), &def, TG_RESP_INTEGER);
    expect_reply(W("$5\r\nhello\r\n"), &def, TG_RESP_BULK);
    expect_reply(W("$0\r\n\r\n"), &def, TG_RESP_BULK);
    expect_reply(W("$4\r\n\r\n\r\n\r\n"), &def, TG_RESP_BULK);
    expect_reply(W("$-1\r\n"), &def, TG_RESP_BULK);
    expect_reply(W("*-1\r\n"), &def, TG_RESP_ARRAY);
    expect_reply(W("*0\r\n"), &def, TG_RESP_ARRAY);
    expect_reply(W("*2\r\n$1\r\na\r\n:1\r\n"), &def, TG_RESP_ARRAY);
    expect_reply(W("*3\r\n*2\r\n+a\r\n$-1\r\n*0\r\n*-1\r\n"), &def, TG_RESP_ARRAY);
    /* SCAN: cursor and keys. */
    expect_reply(W("*2\r\n$1\r\n0\r\n*2\r\n$5\r\nt:a:k\r\n$5\r\nt:a:j\r\n"), &def, TG_RESP_ARRAY);
}

static void test_reply_resp3(void **state)
{
    (void)state;
    expect_reply(W("_\r\n"), &def, TG_RESP_NULL);
    expect_reply(W("#t\r\n"), &def, TG_RESP_BOOL);
    expect_reply(W("#f\r\n"), &def, TG_RESP_BOOL);
    const char *doubles[] = {",1.5\r\n",  ",inf\r\n",     ",-inf\r\n",     ",nan\r\n",
                             ",1e10\r\n", ",-1.5E-3\r\n", ",+0.25e+2\r\n", ",3\r\n"};
    for (size_t i = 0; i < sizeof(doubles) / sizeof(doubles[0]); i++)
        expect_reply((const uint8_t *)doubles[i], strlen(doubles[i]), &def, TG_RESP_DOUBLE);
    expect_reply(W("(3492890328409238509324850943850943825024385\r\n"), &def, TG_RESP_BIGNUM);
    expect_reply(W("(-1\r\n"), &def, TG_RESP_BIGNUM);
    expect_reply(W("!21\r\nSYNTAX invalid syntax\r\n"), &def, TG_RESP_BLOB_ERROR);
    expect_reply(W("=15\r\ntxt:Some string\r\n"), &def, TG_RESP_VERBATIM);
    expect_reply(W("=4\r\nmkd:\r\n"), &def, TG_RESP_VERBATIM);
    expect_reply(W("%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n"), &def, TG_RESP_MAP);
    expect_reply(W("%0\r\n"), &def, TG_RESP_MAP);
    expect_reply(W("~2\r\n+a\r\n+b\r\n"), &def, TG_RESP_SET);
    expect_reply(W(">3\r\n$7\r\nmessage\r\n$6\r\nt:a:ch\r\n$3\r\nmsg\r\n"), &def, TG_RESP_PUSH);
    /* HELLO 3 reply. */
    expect_reply(W("%3\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n$7\r\nmodules\r\n*"
                   "0\r\n"),
                 &def, TG_RESP_MAP);
}

static void test_reply_attributes(void **state)
{
    (void)state;
    /* The specification's example: an attribute, then the array it describes. */
    expect_reply(W("|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n"
                   "*2\r\n:2039123\r\n:9543892\r\n"),
                 &def, TG_RESP_ARRAY);
    /* Inside an aggregate, before one element: the element still counts once. */
    expect_reply(W("*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n"), &def, TG_RESP_ARRAY);
    /* Two attributes in a row, an empty one, one before a scalar at the top. */
    expect_reply(W("|1\r\n+a\r\n+b\r\n|0\r\n:7\r\n"), &def, TG_RESP_INTEGER);
    /* An attribute whose value is an aggregate with its own attribute. */
    expect_reply(W("|1\r\n+a\r\n*1\r\n|1\r\n+x\r\n+y\r\n+b\r\n$1\r\nv\r\n"), &def, TG_RESP_BULK);
    /* An attribute needs a value after it. */
    expect_reply_error(W("*?\r\n|1\r\n+a\r\n+b\r\n.\r\n"), &def, 19, TG_EPROTO);
    expect_reply_error(W("|?\r\n"), &def, 2, TG_EPROTO);
}

static void test_reply_streamed(void **state)
{
    (void)state;
    expect_reply(W("$?\r\n;4\r\nHell\r\n;5\r\no wor\r\n;1\r\nd\r\n;0\r\n"), &def, TG_RESP_BULK);
    expect_reply(W("$?\r\n;0\r\n"), &def, TG_RESP_BULK);
    expect_reply(W("*?\r\n:1\r\n:2\r\n.\r\n"), &def, TG_RESP_ARRAY);
    expect_reply(W("*?\r\n.\r\n"), &def, TG_RESP_ARRAY);
    expect_reply(W("%?\r\n+a\r\n:1\r\n+b\r\n*?\r\n$?\r\n;1\r\nx\r\n;0\r\n.\r\n.\r\n"), &def,
                 TG_RESP_MAP);
    expect_reply(W("~?\r\n+a\r\n.\r\n"), &def, TG_RESP_SET);
    expect_reply(W(">?\r\n+x\r\n.\r\n"), &def, TG_RESP_PUSH);
    expect_reply(W("*2\r\n*?\r\n.\r\n$?\r\n;0\r\n"), &def, TG_RESP_ARRAY);
    /* A map's end after a key and no value. */
    expect_reply_error(W("%?\r\n+a\r\n.\r\n"), &def, 11, TG_EPROTO);
    /* '.' outside a streamed aggregate, a chunk outside a streamed string. */
    expect_reply_error(W(".\r\n"), &def, 3, TG_EPROTO);
    expect_reply_error(W("*1\r\n.\r\n"), &def, 7, TG_EPROTO);
    expect_reply_error(W(";1\r\na\r\n"), &def, 7, TG_EPROTO);
    expect_reply_error(W("*?\r\n;1\r\na\r\n"), &def, 11, TG_EPROTO);
    /* A streamed string holds only chunks. */
    expect_reply_error(W("$?\r\n+x\r\n"), &def, 8, TG_EPROTO);
    expect_reply_error(W("$?\r\n;-1\r\n"), &def, 6, TG_EPROTO);
    expect_reply_error(W("$?x\r\n"), &def, 3, TG_EPROTO);
    expect_reply_error(W("!?\r\n"), &def, 2, TG_EPROTO);
    expect_reply_error(W(".x\r\n"), &def, 2, TG_EPROTO);
    /* A streamed string's chunks add up against max_bulk. */
    tg_resp_limits lim = def;
    lim.max_bulk = 4;
    expect_reply(W("$?\r\n;2\r\nab\r\n;2\r\ncd\r\n;0\r\n"), &lim, TG_RESP_BULK);
    expect_reply_error(W("$?\r\n;2\r\nab\r\n;3\r\ncde\r\n;0\r\n"), &lim, 16, TG_ETOOBIG);
    expect_reply_error(W("$?\r\n;5\r\nabcde\r\n"), &lim, 8, TG_ETOOBIG);
}

static void test_reply_malformed(void **state)
{
    (void)state;
    expect_reply_error(W("?\r\n"), &def, 1, TG_EPROTO);
    expect_reply_error(W("\r\n"), &def, 1, TG_EPROTO);
    expect_reply_error(W("+a\nb\r\n"), &def, 6, TG_EPROTO);
    expect_reply_error(W("+ab\rc\r\n"), &def, 5, TG_EPROTO);
    expect_reply_error(W("#x\r\n"), &def, 4, TG_EPROTO);
    expect_reply_error(W("#\r\n"), &def, 3, TG_EPROTO);
    expect_reply_error(W("_x\r\n"), &def, 4, TG_EPROTO);
    expect_reply_error(W(",1.\r\n"), &def, 5, TG_EPROTO);
    expect_reply_error(W(",.5\r\n"), &def, 5, TG_EPROTO);
    expect_reply_error(W(",1e\r\n"), &def, 5, TG_EPROTO);
    expect_reply_error(W(",\r\n"), &def, 3, TG_EPROTO);
    expect_reply_error(W(",infinity\r\n"), &def, 11, TG_EPROTO);
    expect_reply_error(W(":1.5\r\n"), &def, 6, TG_EPROTO);
    expect_reply_error(W(":\r\n"), &def, 3, TG_EPROTO);
    expect_reply_error(W(":-\r\n"), &def, 4, TG_EPROTO);
    expect_reply_error(W(":9223372036854775808\r\n"), &def, 22, TG_EPROTO);
    expect_reply_error(W(":-9223372036854775809\r\n"), &def, 23, TG_EPROTO);
    expect_reply_error(W("(1a\r\n"), &def, 5, TG_EPROTO);
    expect_reply_error(W("=3\r\nabc\r\n"), &def, 4, TG_EPROTO);
    expect_reply_error(W("=4\r\nabcd\r\n"), &def, 10, TG_EPROTO);
    expect_reply_error(W("$3\r\nabcd\r\n"), &def, 8, TG_EPROTO);
    expect_reply_error(W("$3\r\nabc\n\r\n"), &def, 8, TG_EPROTO);
    expect_reply_error(W("$-2\r\n"), &def, 3, TG_EPROTO);
    expect_reply_error(W("$-1x\r\n"), &def, 4, TG_EPROTO);
    expect_reply_error(W("$01\r\nx\r\n"), &def, 3, TG_EPROTO);
    expect_reply_error(W("*-2\r\n"), &def, 3, TG_EPROTO);
    expect_reply_error(W("%-1\r\n"), &def, 2, TG_EPROTO);
    expect_reply_error(W("!-1\r\n"), &def, 2, TG_EPROTO);
    expect_reply_error(W("*2\r\n:1\r\n?\r\n"), &def, 9, TG_EPROTO);
}

static void test_reply_limits(void **state)
{
    (void)state;
    tg_resp_limits lim = def;
    lim.max_bulk = 5;
    expect_reply(W("$5\r\nhello\r\n"), &lim, TG_RESP_BULK);
    /* Refused once the header line is in. */
    expect_reply_error(W("$6\r\nhello!\r\n"), &lim, 4, TG_ETOOBIG);
    expect_reply_error(W("!6\r\n"), &lim, 4, TG_ETOOBIG);
    expect_reply_error(W("*1\r\n=6\r\n"), &lim, 8, TG_ETOOBIG);
    expect_reply_error(W("$536870913\r\n"), &def, 12, TG_ETOOBIG);
    /* Lines. */
    lim = def;
    lim.max_inline = 4;
    expect_reply(W("+abcd\r\n"), &lim, TG_RESP_SIMPLE);
    expect_reply_error(W("+abcde\r\n"), &lim, 6, TG_ETOOBIG);
    expect_reply_error(W("-abcd\r\r\n"), &lim, 7, TG_EPROTO);
    expect_reply_error(W("-abcde"), &lim, 6, TG_ETOOBIG);
    /* Elements, counted over the whole reply (map pairs twice). */
    lim = def;
    lim.max_reply_elems = 4;
    expect_reply(W("*2\r\n*2\r\n:1\r\n:2\r\n:3\r\n"), &lim, TG_RESP_ARRAY);
    expect_reply_error(W("*2\r\n*3\r\n:1\r\n:2\r\n:3\r\n:4\r\n"), &lim, 8, TG_ETOOBIG);
    expect_reply_error(W("%3\r\n"), &lim, 4, TG_ETOOBIG);
    expect_reply(W("%2\r\n:1\r\n:2\r\n:3\r\n:4\r\n"), &lim, TG_RESP_MAP);
    expect_reply_error(W("|1\r\n+a\r\n+b\r\n*3\r\n"), &lim, 16, TG_ETOOBIG);
    expect_reply_error(W("*?\r\n:1\r\n:2\r\n:3\r\n:4\r\n:5\r\n.\r\n"), &lim, 24, TG_ETOOBIG);
    expect_reply(W("*?\r\n:1\r\n:2\r\n:3\r\n:4\r\n.\r\n"), &lim, TG_RESP_ARRAY);
}

static void test_reply_depth(void **state)
{
    (void)state;
    /* 100k nested arrays: refused at max_depth + 1, no recursion, no waiting. */
    size_t levels = 100000, n = levels * 4 + 4;
    uint8_t *deep = malloc(n);
    assert_non_null(deep);
    for (size_t i = 0; i < levels; i++)
        memcpy(deep + i * 4, "*1\r\n", 4);
    memcpy(deep + levels * 4, ":1\r\n", 4);
    assert_int_equal(reply_copy(deep, n, &def), TG_ETOOBIG);
    assert_int_equal(reply_copy(deep, TG_RESP_DEPTH_CAP * 4, &def), TG_NEED_MORE);
    assert_int_equal(reply_copy(deep, TG_RESP_DEPTH_CAP * 4 + 4, &def), TG_ETOOBIG);
    /* Exactly the limit passes; one more level fails; a larger max_depth is clamped. */
    tg_resp_limits lim = def;
    lim.max_depth = 3;
    expect_reply(W("*1\r\n*1\r\n*1\r\n:1\r\n"), &lim, TG_RESP_ARRAY);
    expect_reply_error(W("*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n"), &lim, 16, TG_ETOOBIG);
    expect_reply_error(W("*1\r\n|1\r\n*1\r\n%1\r\n"), &lim, 16, TG_ETOOBIG);
    lim.max_depth = UINT32_MAX;
    assert_int_equal(reply_copy(deep, n, &lim), TG_ETOOBIG);
    /* The nesting that fits: the whole value. */
    memcpy(deep + (TG_RESP_DEPTH_CAP)*4, ":1\r\n", 4);
    assert_int_equal(reply_copy(deep, TG_RESP_DEPTH_CAP * 4 + 4, &def),
                     (ssize_t)(TG_RESP_DEPTH_CAP * 4 + 4));
    /* Empty and null aggregates do not nest. */
    for (size_t i = 0; i < 1000; i++)
        memcpy(deep + i * 4, "*2\r\n", 4);
    free(deep);
    expect_reply(W("*3\r\n*0\r\n*-1\r\n%0\r\n"), &lim, TG_RESP_ARRAY);
}

static void test_reply_large_array(void **state)
{
    (void)state;
    /* One pass: a million elements measured in one call (no rescans within the call). */
    size_t count = 1000000, n = 10 + count * 4;
    uint8_t *big = malloc(n);
    assert_non_null(big);
    memcpy(big, "*1000000\r\n", 10);
    for (size_t i = 0; i < count; i++)
        memcpy(big + 10 + i * 4, ":7\r\n", 4);
    tg_resp_type t;
    assert_int_equal(tg_resp_reply_size(big, n, &def, &t), (ssize_t)n);
    assert_int_equal(t, TG_RESP_ARRAY);
    assert_int_equal(tg_resp_reply_size(big, n - 1, &def, &t), TG_NEED_MORE);
    free(big);
}

static void test_reply_pipeline(void **state)
{
    (void)state;
    const uint8_t in[] = "+OK\r\n"
                         ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n"
                         "|1\r\n+a\r\n+b\r\n$?\r\n;1\r\nz\r\n;0\r\n"
                         "*?\r\n%1\r\n+k\r\n_\r\n.\r\n"
                         ":5\r\n";
    const tg_resp_type want[] = {TG_RESP_SIMPLE, TG_RESP_PUSH, TG_RESP_BULK, TG_RESP_ARRAY,
                                 TG_RESP_INTEGER};
    size_t n = sizeof(in) - 1;
    for (size_t split = 0; split <= n; split++) {
        size_t off = 0, k = 0;
        for (int pass = 0; pass < 2; pass++) {
            size_t len = pass ? n : split;
            uint8_t *d = dup_exact(in, len);
            for (;;) {
                tg_resp_type t;
                ssize_t rc = tg_resp_reply_size(d + off, len - off, &def, &t);
                assert_true(rc >= 0);
                if (rc == 0)
                    break;
                assert_int_equal(t, want[k++]);
                off += (size_t)rc;
            }
            free(d);
        }
        assert_int_equal(off, n);
        assert_int_equal(k, 5);
    }
}

/* ---- element walk ---- */

static void test_next_walk(void **state)
{
    (void)state;
    const uint8_t in[] = "|1\r\n+ttl\r\n:-3\r\n"
                         "%2\r\n"
                         "$5\r\nt:a:k\r\n*?\r\n#t\r\n,2.5\r\n.\r\n"
                         "=8\r\ntxt:abcd\r\n$?\r\n;2\r\nhi\r\n;0\r\n";
    size_t n = sizeof(in) - 1;
    uint8_t *d = dup_exact(in, n);
    assert_int_equal(tg_resp_reply_size(d, n, &def, NULL), (ssize_t)n);
    struct {
        tg_resp_type type;
        uint64_t count;
        const char *data;
        bool streamed;
    } want[] = {
        {TG_RESP_ATTR, 1, "", false},      {TG_RESP_SIMPLE, 0, "ttl", false},
        {TG_RESP_INTEGER, 0, "-3", false}, {TG_RESP_MAP, 2, "", false},
        {TG_RESP_BULK, 0, "t:a:k", false}, {TG_RESP_ARRAY, 0, "", true},
        {TG_RESP_BOOL, 0, "t", false},     {TG_RESP_DOUBLE, 0, "2.5", false},
        {TG_RESP_END, 0, "", false},       {TG_RESP_VERBATIM, 0, "txt:abcd", false},
        {TG_RESP_BULK, 0, "", true},       {TG_RESP_CHUNK, 0, "hi", false},
        {TG_RESP_CHUNK, 0, "", false},
    };
    size_t off = 0, k = 0;
    while (off < n) {
        tg_resp_elem e;
        /* Each element alone, as an exact copy: every prefix needs more. */
        ssize_t rc = tg_resp_next(d + off, n - off, &e);
        assert_true(rc > 0);
        for (size_t i = 0; i < (size_t)rc; i++) {
            uint8_t *p = dup_exact(d + off, i);
            tg_resp_elem pe;
            assert_int_equal(tg_resp_next(p, i, &pe), TG_NEED_MORE);
            free(p);
        }
        assert_int_equal(e.size, (size_t)rc);
        assert_true(k < sizeof(want) / sizeof(want[0]));
        assert_int_equal(e.type, want[k].type);
        assert_int_equal(e.count, want[k].count);
        assert_int_equal(e.streamed, want[k].streamed);
        assert_slice_str(e.data, want[k].data);
        if (e.data.len)
            assert_slice_in(e.data, d + off, (size_t)rc);
        if (e.type == TG_RESP_INTEGER)
            assert_int_equal(e.integer, -3);
        if (e.type == TG_RESP_BOOL)
            assert_int_equal(e.integer, 1);
        off += (size_t)rc;
        k++;
    }
    assert_int_equal(k, sizeof(want) / sizeof(want[0]));
    free(d);

    /* Nulls. */
    const char *nulls[] = {"$-1\r\n", "*-1\r\n", "_\r\n"};
    for (size_t i = 0; i < 3; i++) {
        tg_resp_elem e;
        assert_int_equal(tg_resp_next((const uint8_t *)nulls[i], strlen(nulls[i]), &e),
                         (ssize_t)strlen(nulls[i]));
        assert_true(e.is_null);
        assert_int_equal(e.count, 0);
    }
    tg_resp_elem e;
    assert_int_equal(tg_resp_next(W(":-9223372036854775808\r\n"), &e), 23);
    assert_true(e.integer == INT64_MIN);
    assert_int_equal(tg_resp_next(W("#f\r\n"), &e), 4);
    assert_int_equal(e.integer, 0);
    assert_int_equal(tg_resp_next(W("*3\r\n"), &e), 4);
    assert_false(e.is_null);
    /* tg_resp_next applies no limits beyond overflow. */
    assert_int_equal(tg_resp_next(W("*9223372036854775807\r\n"), &e), 22);
    assert_int_equal(e.count, INT64_MAX);
    assert_int_equal(tg_resp_next(W("$9223372036854775807\r\n"), &e), TG_ETOOBIG);
    assert_int_equal(tg_resp_next(W("$10\r\n"), &e), TG_NEED_MORE);
    assert_int_equal(tg_resp_next(W("x"), &e), TG_EPROTO);
    assert_int_equal(tg_resp_next((const uint8_t *)"", 0, &e), TG_NEED_MORE);
}

/* ---- writers ---- */

static void test_write_request_round_trip(void **state)
{
    (void)state;
    const uint8_t bin[] = {'a', 0, '\r', '\n', 'b'};
    tg_slice argv[] = {tg_slice_str("SET"), tg_slice_str(""), {bin, sizeof(bin)}};
    tg_buf out = {0};
    assert_int_equal(tg_resp_write_request(&out, argv, 3), 0);
    const uint8_t want[] = "*3\r\n$3\r\nSET\r\n$0\r\n\r\n$5\r\na\0\r\nb\r\n";
    assert_int_equal(out.len, sizeof(want) - 1);
    assert_memory_equal(out.data, want, out.len);
    tg_slice back[3];
    uint32_t argc;
    assert_int_equal(tg_resp_decode_request(out.data, out.len, &def, back, 3, &argc),
                     (ssize_t)out.len);
    assert_int_equal(argc, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(back[i].len, argv[i].len);
        if (argv[i].len)
            assert_memory_equal(back[i].base, argv[i].base, argv[i].len);
    }
    /* Zero arguments: "*0\r\n", which decodes to nothing. */
    out.len = 0;
    assert_int_equal(tg_resp_write_request(&out, NULL, 0), 0);
    assert_int_equal(out.len, 4);
    assert_int_equal(tg_resp_decode_request(out.data, out.len, &def, back, 3, &argc), 4);
    assert_int_equal(argc, 0);
    tg_buf_free(&out);
}

static void test_write_bulk(void **state)
{
    (void)state;
    char h[32];
    assert_int_equal(tg_resp_bulk_header(h, 0), 4);
    assert_memory_equal(h, "$0\r\n", 4);
    assert_int_equal(tg_resp_bulk_header(h, 1234567), 10);
    assert_memory_equal(h, "$1234567\r\n", 10);
    assert_int_equal(tg_resp_bulk_header(h, SIZE_MAX), SIZE_MAX > UINT32_MAX ? 23 : 13);

    tg_buf out = {0};
    assert_int_equal(tg_resp_write_bulk2(&out, tg_slice_str("t:acme:"), tg_slice_str("user:1")), 0);
    assert_int_equal(tg_resp_write_bulk(&out, tg_slice_str("")), 0);
    assert_int_equal(tg_resp_write_bulk2(&out, tg_slice_str("p:"), tg_slice_str("")), 0);
    const char want[] = "$13\r\nt:acme:user:1\r\n$0\r\n\r\n$2\r\np:\r\n";
    assert_int_equal(out.len, sizeof(want) - 1);
    assert_memory_equal(out.data, want, out.len);
    /* Scatter/gather: header + prefix + value + CRLF equals the copying writer's bytes. */
    size_t hl = tg_resp_bulk_header(h, 13);
    assert_int_equal(hl, 5);
    assert_memory_equal(out.data, h, hl);
    tg_resp_elem e;
    assert_int_equal(tg_resp_next(out.data, out.len, &e), 20);
    assert_int_equal(e.type, TG_RESP_BULK);
    assert_slice_str(e.data, "t:acme:user:1");
    tg_buf_free(&out);
}

static void test_write_scalars(void **state)
{
    (void)state;
    tg_buf out = {0};
    assert_int_equal(tg_resp_write_simple(&out, "OK"), 0);
    assert_int_equal(tg_resp_write_integer(&out, 0), 0);
    assert_int_equal(tg_resp_write_integer(&out, INT64_MIN), 0);
    assert_int_equal(tg_resp_write_integer(&out, INT64_MAX), 0);
    assert_int_equal(tg_resp_write_integer(&out, -42), 0);
    assert_int_equal(tg_resp_write_null(&out, 2), 0);
    assert_int_equal(tg_resp_write_null(&out, 3), 0);
    assert_int_equal(tg_resp_write_null_array(&out, 2), 0);
    assert_int_equal(tg_resp_write_null_array(&out, 3), 0);
    assert_int_equal(tg_resp_write_array(&out, 2), 0);
    assert_int_equal(tg_resp_write_map(&out, 1), 0);
    assert_int_equal(tg_resp_write_set(&out, 0), 0);
    assert_int_equal(tg_resp_write_push(&out, 3), 0);
    const char want[] = "+OK\r\n:0\r\n:-9223372036854775808\r\n:9223372036854775807\r\n:-42\r\n"
                        "$-1\r\n_\r\n*-1\r\n_\r\n*2\r\n%1\r\n~0\r\n>3\r\n";
    assert_int_equal(out.len, sizeof(want) - 1);
    assert_memory_equal(out.data, want, out.len);
    /* Read back element by element. */
    const int64_t ints[] = {0, INT64_MIN, INT64_MAX, -42};
    size_t off = 0;
    tg_resp_elem e;
    off += (size_t)tg_resp_next(out.data, out.len, &e);
    assert_slice_str(e.data, "OK");
    for (size_t i = 0; i < 4; i++) {
        ssize_t rc = tg_resp_next(out.data + off, out.len - off, &e);
        assert_true(rc > 0);
        assert_int_equal(e.type, TG_RESP_INTEGER);
        assert_true(e.integer == ints[i]);
        off += (size_t)rc;
    }
    for (size_t i = 0; i < 4; i++) {
        off += (size_t)tg_resp_next(out.data + off, out.len - off, &e);
        assert_true(e.is_null);
    }
    const tg_resp_type aggs[] = {TG_RESP_ARRAY, TG_RESP_MAP, TG_RESP_SET, TG_RESP_PUSH};
    const uint64_t counts[] = {2, 1, 0, 3};
    for (size_t i = 0; i < 4; i++) {
        off += (size_t)tg_resp_next(out.data + off, out.len - off, &e);
        assert_int_equal(e.type, aggs[i]);
        assert_int_equal(e.count, counts[i]);
    }
    assert_int_equal(off, out.len);
    /* Refusals leave the buffer alone. */
    size_t len = out.len;
    assert_int_equal(tg_resp_write_simple(&out, "a\r\nb"), TG_EINVAL);
    assert_int_equal(tg_resp_write_null(&out, 1), TG_EINVAL);
    assert_int_equal(tg_resp_write_null_array(&out, 4), TG_EINVAL);
    assert_int_equal(out.len, len);
    tg_buf_free(&out);
}

static void test_write_errors(void **state)
{
    (void)state;
    tg_buf out = {0};
    assert_int_equal(tg_resp_write_reject(&out, "NOPERM", "FLUSHALL is\r\nnot allowed\n"), 0);
    const char want[] = "-NOPERM tenantgate: FLUSHALL is  not allowed \r\n";
    assert_int_equal(out.len, sizeof(want) - 1);
    assert_memory_equal(out.data, want, out.len);
    /* The line is one well-formed error reply. */
    tg_resp_type t;
    assert_int_equal(tg_resp_reply_size(out.data, out.len, &def, &t), (ssize_t)out.len);
    assert_int_equal(t, TG_RESP_ERROR);
    out.len = 0;
    assert_int_equal(
        tg_resp_write_error(&out, "EXECABORT", "Transaction discarded because of previous errors."),
        0);
    assert_int_equal(tg_resp_write_error(&out, "ERR", ""), 0);
    assert_int_equal(tg_resp_write_reject(&out, "WRONGPASS", "token expired"), 0);
    const char want2[] = "-EXECABORT Transaction discarded because of previous errors.\r\n"
                         "-ERR\r\n-WRONGPASS tenantgate: token expired\r\n";
    assert_int_equal(out.len, sizeof(want2) - 1);
    assert_memory_equal(out.data, want2, out.len);
    size_t len = out.len;
    assert_int_equal(tg_resp_write_error(&out, "", "x"), TG_EINVAL);
    assert_int_equal(tg_resp_write_error(&out, "NO PERM", "x"), TG_EINVAL);
    assert_int_equal(tg_resp_write_error(&out, "ERR\r\n+OK", "x"), TG_EINVAL);
    assert_int_equal(tg_resp_write_reject(&out, "nope", "x"), TG_EINVAL);
    assert_int_equal(tg_resp_write_reject(&out, "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFG", "x"),
                     TG_EINVAL);
    assert_int_equal(out.len, len);
    tg_buf_free(&out);
}

static void test_type_names(void **state)
{
    (void)state;
    assert_string_equal(tg_resp_type_name(TG_RESP_BULK), "bulk string");
    assert_string_equal(tg_resp_type_name(TG_RESP_ATTR), "attribute");
    assert_string_equal(tg_resp_type_name(TG_RESP_END), "end of streamed aggregate");
    assert_string_equal(tg_resp_type_name((tg_resp_type)'x'), "unknown");
    assert_int_equal(TG_RESP_PUSH, '>');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multibulk),
        cmocka_unit_test(test_multibulk_empty_and_null),
        cmocka_unit_test(test_multibulk_malformed_numbers),
        cmocka_unit_test(test_multibulk_missing_crlf),
        cmocka_unit_test(test_request_limits),
        cmocka_unit_test(test_argv_capacity),
        cmocka_unit_test(test_inline),
        cmocka_unit_test(test_inline_refused),
        cmocka_unit_test(test_inline_limit),
        cmocka_unit_test(test_pipeline_split_everywhere),
        cmocka_unit_test(test_reply_resp2),
        cmocka_unit_test(test_reply_resp3),
        cmocka_unit_test(test_reply_attributes),
        cmocka_unit_test(test_reply_streamed),
        cmocka_unit_test(test_reply_malformed),
        cmocka_unit_test(test_reply_limits),
        cmocka_unit_test(test_reply_depth),
        cmocka_unit_test(test_reply_large_array),
        cmocka_unit_test(test_reply_pipeline),
        cmocka_unit_test(test_next_walk),
        cmocka_unit_test(test_write_request_round_trip),
        cmocka_unit_test(test_write_bulk),
        cmocka_unit_test(test_write_scalars),
        cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_type_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
