/*
 * How the codec tests (tests/unit/protocols/<p>/codec_test.c) hand input to
 * a decoder: always as an exact-size heap copy, so that a read one byte past
 * what was handed in shows up under AddressSanitizer, and cut at every byte.
 *
 *   bytes --dup_exact--> copy of exactly n bytes
 *   bytes --expect_prefixes--> decode(copy of p[0..i)) for i = 0..n:
 *                              TG_NEED_MORE below `at` bytes, `want` from there on
 *   stream --feed_split(cut)--> feed(copy of the first cut bytes), feed(copy of all of it):
 *                               a receiver that got the stream in two reads split at cut
 *   data/ file --read_data_file--> its bytes (tests run from tests/ or the tree's top)
 *
 * A decoder is wrapped as decode_fn(p, n, ctx): ctx carries its limits and
 * receives its view when the test wants one. Header-only, for cmocka tests.
 */
#ifndef TG_TESTS_UNIT_SUPPORT_CODEC_INPUT_H
#define TG_TESTS_UNIT_SUPPORT_CODEC_INPUT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "proxy/error.h"

/* A heap copy of p[0..n) of exactly n bytes (1 when n is 0); the caller frees it. */
static inline uint8_t *dup_exact(const uint8_t *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    assert_non_null(d);
    if (n)
        memcpy(d, p, n);
    return d;
}

/* A decoder under test: its result for p[0..n) (bytes consumed, TG_NEED_MORE or an error). */
typedef ssize_t (*decode_fn)(const uint8_t *p, size_t n, void *ctx);

/* decode's result on an exact-size copy of p[0..n). */
static inline ssize_t decode_exact(decode_fn decode, void *ctx, const uint8_t *p, size_t n)
{
    uint8_t *d = dup_exact(p, n);
    ssize_t rc = decode(d, n, ctx);
    free(d);
    return rc;
}

/*
 * Asserts that decode, on an exact copy of every prefix p[0..i) for i = 0..n,
 * returns TG_NEED_MORE while i < at and want from then on. A failure names
 * the cut and the input's first bytes.
 */
static inline void expect_prefixes(decode_fn decode, void *ctx, const uint8_t *p, size_t n,
                                   size_t at, ssize_t want)
{
    for (size_t i = 0; i <= n; i++) {
        ssize_t rc = decode_exact(decode, ctx, p, i), w = i < at ? TG_NEED_MORE : want;
        if (rc != w) {
            char hex[3 * 24 + 1] = "";
            for (size_t k = 0; k < n && k < 24; k++)
                snprintf(hex + 3 * k, sizeof(hex) - 3 * k, "%02x ", p[k]);
            fail_msg("%zu-byte input (%s%s) cut at %zu: %zd, want %zd", n, hex, n > 24 ? "..." : "",
                     i, rc, w);
        }
    }
}

/* A receiver under test: takes p[0..n), the stream so far (an exact-size copy). */
typedef void (*feed_fn)(const uint8_t *p, size_t n, void *ctx);

/*
 * The stream p[0..n) arriving in two reads split at cut: feed gets an exact
 * copy of the first cut bytes, then one of all n (a receiver resumes where
 * it stopped, as with a buffer that grew).
 */
static inline void feed_split(feed_fn feed, void *ctx, const uint8_t *p, size_t n, size_t cut)
{
    uint8_t *first = dup_exact(p, cut);
    feed(first, cut, ctx);
    free(first);
    uint8_t *all = dup_exact(p, n);
    feed(all, n, ctx);
    free(all);
}

/*
 * The bytes of a test data file (at most 64 KiB, not empty), by its path
 * under tests/: ctest runs in tests/, a developer often at the tree's top.
 * The caller frees them.
 */
static inline uint8_t *read_data_file(const char *path, size_t *n)
{
    char other[512];
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(other, sizeof(other), "tests/%s", path);
        f = fopen(other, "rb");
    }
    if (!f)
        fail_msg("cannot open %s (run from tests/ or the top of the tree)", path);
    uint8_t *buf = malloc(65536);
    assert_non_null(buf);
    *n = fread(buf, 1, 65536, f);
    fclose(f);
    assert_true(*n > 0 && *n < 65536);
    return buf;
}

#endif
