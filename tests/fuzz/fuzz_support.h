/*
 * What the codec fuzz targets share: the invariant check that aborts (so
 * libFuzzer records the input), the "slice inside the input" check, and
 * exact-size heap copies (so AddressSanitizer sees a read one byte past the
 * bytes handed to a decoder).
 *
 *   data --dup_exact--> decoder --> check(...) / check_slice(view, base, consumed)
 */
#ifndef TG_TESTS_FUZZ_FUZZ_SUPPORT_H
#define TG_TESTS_FUZZ_FUZZ_SUPPORT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

#endif
