/*
 * libFuzzer target for the Redis RESP codec (protocols/redis/codec.c).
 *
 *   data --exact-size heap copy--> loop of tg_resp_decode_request (two limit sets)
 *                                    --> argv re-encoded --> decoded again: same argv
 *                              \--> loop of tg_resp_reply_size (two limit sets)
 *                                    --> tg_resp_next walk of each reply --> each element
 *                                        re-encoded by the writers and read back
 *                              \--> raw tg_resp_next walk from the first byte
 *
 * Invariants: decoders return > 0, TG_NEED_MORE, TG_EPROTO, TG_ETOOBIG (and
 * TG_ELIMIT for a request with more arguments than argv holds); a consumed
 * count is <= the bytes given; every slice lies inside the consumed bytes;
 * every proper prefix of a decoded value needs more, and a prefix of a
 * refused input needs more or gives the same error; what passes the small
 * limits passes the default ones with the same size; a multibulk request
 * re-encodes to exactly its input bytes and an inline one to a multibulk
 * request with the same argv; the tg_resp_next walk of a measured reply ends
 * exactly at its size; every element re-encoded decodes to the same element.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/redis/codec.h"
#include "proxy/error.h"

#include "fuzz_support.h"

#define SMALL_ARGV 4

static const tg_resp_limits small = {
    .max_args = 6, .max_bulk = 16, .max_inline = 24, .max_depth = 4, .max_reply_elems = 12};

static bool slice_eq(tg_slice a, tg_slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.base, b.base, a.len) == 0);
}

static bool is_error(ssize_t rc)
{
    return rc == TG_EPROTO || rc == TG_ETOOBIG;
}

/* ---- requests ---- */

static ssize_t request(const uint8_t *buf, size_t len, const tg_resp_limits *lim, tg_slice **argv,
                       uint32_t *cap, uint32_t *argc)
{
    ssize_t rc = tg_resp_decode_request(buf, len, lim, *argv, *cap, argc);
    check(rc > 0 || rc == TG_NEED_MORE || is_error(rc) || rc == TG_ELIMIT);
    if (rc == TG_ELIMIT) {
        check(*argc > *cap && *argc <= lim->max_args);
        free(*argv);
        *cap = *argc;
        *argv = malloc(sizeof(tg_slice) * *cap);
        check(*argv != NULL);
        rc = tg_resp_decode_request(buf, len, lim, *argv, *cap, argc);
        check(rc > 0);
    }
    return rc;
}

static ssize_t decode_request(const uint8_t *p, size_t n, void *lim)
{
    tg_slice argv[SMALL_ARGV];
    uint32_t argc;
    return tg_resp_decode_request(p, n, lim, argv, SMALL_ARGV, &argc);
}

static void fuzz_requests(const uint8_t *buf, size_t size, const tg_resp_limits *lim, tg_buf *out)
{
    uint32_t cap = SMALL_ARGV, argc;
    tg_slice *argv = malloc(sizeof(tg_slice) * cap);
    check(argv != NULL);
    size_t off = 0;
    for (int k = 0; off < size; k++) {
        const uint8_t *b = buf + off;
        size_t left = size - off;
        ssize_t rc = request(b, left, lim, &argv, &cap, &argc);
        if (k < 4)
            check_prefixes(decode_request, (void *)lim, b, rc > 0 ? (size_t)rc : left, rc, 64);
        if (rc <= 0)
            break;
        size_t n = (size_t)rc;
        check(n <= left && argc <= lim->max_args);
        for (uint32_t i = 0; i < argc; i++) {
            check_slice(argv[i], b, n);
            if (b[0] == '*')
                check(argv[i].len <= lim->max_bulk);
            else
                check(!memchr(argv[i].base, '\n', argv[i].len) && argv[i].len <= n);
        }
        {
            /* Larger limits accept it too, with the same size and argv. */
            tg_resp_limits def = TG_RESP_LIMITS_DEFAULT;
            tg_slice *again = malloc(sizeof(tg_slice) * (argc ? argc : 1));
            check(again != NULL);
            uint32_t argc2;
            check(tg_resp_decode_request(b, left, &def, again, argc, &argc2) == rc);
            check(argc2 == argc);
            for (uint32_t i = 0; i < argc; i++)
                check(again[i].base == argv[i].base && again[i].len == argv[i].len);
            /* decode(encode(argv)) == argv; a multibulk request is its own encoding. */
            out->len = 0;
            check(tg_resp_write_request(out, argv, argc) == 0);
            if (b[0] == '*')
                check(out->len == n && memcmp(out->data, b, n) == 0);
            uint8_t *enc = dup_exact(out->data, out->len);
            check(tg_resp_decode_request(enc, out->len, &def, again, argc, &argc2) ==
                  (ssize_t)out->len);
            check(argc2 == argc);
            for (uint32_t i = 0; i < argc; i++)
                check(slice_eq(again[i], argv[i]));
            free(enc);
            free(again);
        }
        off += n;
    }
    free(argv);
}

/* ---- replies ---- */

/* Writes e again with the writers that exist for its type; false when there is none. */
static bool reencode(const tg_resp_elem *e, tg_buf *out)
{
    out->len = 0;
    switch (e->type) {
    case TG_RESP_BULK:
        if (e->streamed)
            return false;
        if (e->is_null)
            check(tg_resp_write_null(out, 2) == 0);
        else
            check(tg_resp_write_bulk(out, e->data) == 0);
        return true;
    case TG_RESP_NULL:
        check(tg_resp_write_null(out, 3) == 0);
        return true;
    case TG_RESP_INTEGER:
        check(tg_resp_write_integer(out, e->integer) == 0);
        return true;
    case TG_RESP_SIMPLE: {
        char *s = malloc(e->data.len + 1);
        check(s != NULL);
        memcpy(s, e->data.base, e->data.len);
        s[e->data.len] = 0;
        bool ok = !memchr(s, 0, e->data.len); /* a NUL would cut the C string */
        if (ok)
            check(tg_resp_write_simple(out, s) == 0);
        free(s);
        return ok;
    }
    case TG_RESP_ARRAY:
        if (e->streamed)
            return false;
        if (e->is_null)
            check(tg_resp_write_null_array(out, 2) == 0);
        else
            check(tg_resp_write_array(out, e->count) == 0);
        return true;
    case TG_RESP_MAP:
        if (e->streamed)
            return false;
        check(tg_resp_write_map(out, e->count) == 0);
        return true;
    case TG_RESP_SET:
        if (e->streamed)
            return false;
        check(tg_resp_write_set(out, e->count) == 0);
        return true;
    case TG_RESP_PUSH:
        if (e->streamed)
            return false;
        check(tg_resp_write_push(out, e->count) == 0);
        return true;
    default:
        return false;
    }
}

static void check_elem(const tg_resp_elem *e, const uint8_t *b, size_t n, tg_buf *out)
{
    check(e->size == n && n >= 3);
    check((uint8_t)e->type == b[0]);
    check_slice(e->data, b, n);
    if (e->is_null || e->streamed)
        check(e->count == 0);
    if (!reencode(e, out))
        return;
    tg_resp_elem g;
    check(tg_resp_next(out->data, out->len, &g) == (ssize_t)out->len);
    check(g.type == e->type && g.is_null == e->is_null && g.streamed == e->streamed);
    check(g.count == e->count && g.integer == e->integer);
    if (e->type != TG_RESP_INTEGER) /* ':+1' and ':01' are not canonical */
        check(slice_eq(g.data, e->data));
    if (e->type != TG_RESP_INTEGER)
        check(out->len == n && memcmp(out->data, b, n) == 0);
}

static ssize_t measure_reply(const uint8_t *p, size_t n, void *lim)
{
    tg_resp_type t;
    return tg_resp_reply_size(p, n, lim, &t);
}

static void fuzz_replies(const uint8_t *buf, size_t size, const tg_resp_limits *lim, tg_buf *out)
{
    tg_resp_limits def = TG_RESP_LIMITS_DEFAULT;
    size_t off = 0;
    for (int k = 0; off < size; k++) {
        const uint8_t *b = buf + off;
        size_t left = size - off;
        tg_resp_type t = TG_RESP_END;
        ssize_t rc = tg_resp_reply_size(b, left, lim, &t);
        check(rc > 0 || rc == TG_NEED_MORE || is_error(rc));
        if (k < 4)
            check_prefixes(measure_reply, (void *)lim, b, rc > 0 ? (size_t)rc : left, rc, 64);
        if (rc <= 0)
            break;
        size_t n = (size_t)rc;
        check(n <= left && n >= 3);
        check(t != TG_RESP_ATTR && t != TG_RESP_END && t != TG_RESP_CHUNK);
        tg_resp_type t2;
        check(tg_resp_reply_size(b, left, &def, &t2) == rc && t2 == t);
        /* The element walk covers the reply exactly. */
        size_t pos = 0;
        while (pos < n) {
            tg_resp_elem e;
            ssize_t en = tg_resp_next(b + pos, n - pos, &e);
            check(en > 0 && (size_t)en <= n - pos);
            check_elem(&e, b + pos, (size_t)en, out);
            if (e.type == TG_RESP_BULK || e.type == TG_RESP_BLOB_ERROR ||
                e.type == TG_RESP_VERBATIM || e.type == TG_RESP_CHUNK)
                check(e.data.len <= lim->max_bulk);
            pos += (size_t)en;
        }
        check(pos == n);
        off += n;
    }
}

/* tg_resp_next from the first byte, as far as it goes. */
static void fuzz_walk(const uint8_t *buf, size_t size, tg_buf *out)
{
    size_t off = 0;
    while (off < size) {
        tg_resp_elem e;
        ssize_t rc = tg_resp_next(buf + off, size - off, &e);
        check(rc > 0 || rc == TG_NEED_MORE || is_error(rc));
        if (rc <= 0)
            return;
        check((size_t)rc <= size - off);
        check_elem(&e, buf + off, (size_t)rc, out);
        off += (size_t)rc;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = dup_exact(data, size);
    tg_buf out = {0};
    tg_resp_limits def = TG_RESP_LIMITS_DEFAULT;

    fuzz_requests(buf, size, &def, &out);
    fuzz_requests(buf, size, &small, &out);
    fuzz_replies(buf, size, &def, &out);
    fuzz_replies(buf, size, &small, &out);
    fuzz_walk(buf, size, &out);

    tg_buf_free(&out);
    free(buf);
    return 0;
}
