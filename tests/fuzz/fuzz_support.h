/*
 * What the codec fuzz targets share: the invariant check that aborts (so
 * libFuzzer records the input), the "slice inside the input" check,
 * exact-size heap copies (so AddressSanitizer sees a read one byte past the
 * bytes handed to a decoder), and the incremental decoders' prefix rule.
 *
 *   data --dup_exact--> decoder --> check(...) / check_slice(view, base, consumed)
 *   first n bytes gave `want` --check_prefixes--> each proper prefix: NEED_MORE
 *                                                 (or the same error)
 */
#ifndef TG_TESTS_FUZZ_FUZZ_SUPPORT_H
#define TG_TESTS_FUZZ_FUZZ_SUPPORT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "proxy/error.h"
#include "proxy/slice.h"

/* Aborts unless cond holds: an invariant was broken. */
static inline void check(int cond)
{
    if (!cond)
        abort();
}

/* s is empty (NULL base) or lies within base[0..len). */
static inline void check_slice(tg_slice s, const uint8_t *base, size_t len)
{
    if (!s.base) {
        check(s.len == 0);
        return;
    }
    check(s.base >= base && s.len <= len && (size_t)(s.base - base) <= len - s.len);
}

/* A heap copy of p[0..n) of exactly n bytes (1 when n is 0); the caller frees it. */
static inline uint8_t *dup_exact(const uint8_t *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    check(d != NULL);
    if (n)
        memcpy(d, p, n);
    return d;
}

/* A decoder under test: its result for p[0..n) (bytes consumed, TG_NEED_MORE or an error). */
typedef ssize_t (*fuzz_decode_fn)(const uint8_t *p, size_t n, void *ctx);

/*
 * The prefix rule of an incremental decoder that gave `want` for buf[0..n)
 * (n bytes consumed, or an error found within them): every proper prefix,
 * as an exact copy, needs more -- or gives the same error. Prefixes up to
 * 256 bytes are all tried, longer inputs about `samples` of them.
 */
static inline void check_prefixes(fuzz_decode_fn decode, void *ctx, const uint8_t *buf, size_t n,
                                  ssize_t want, size_t samples)
{
    size_t step = n > 256 ? n / samples : 1;
    for (size_t i = 0; i < n; i += step) {
        uint8_t *d = dup_exact(buf, i);
        ssize_t rc = decode(d, i, ctx);
        free(d);
        check(rc == TG_NEED_MORE || (want < 0 && rc == want));
    }
}

#endif
