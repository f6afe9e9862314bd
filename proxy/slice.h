/*
 * tg_slice: the common currency for bytes that someone else owns.
 *
 * A slice borrows: it never frees what it points to. Its layout matches
 * uv_buf_t and struct iovec (pointer, then length) so that a list of slices
 * can be handed to vectored writes without copying.
 */
#ifndef TG_PROXY_SLICE_H
#define TG_PROXY_SLICE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct tg_slice {
    const uint8_t *base;
    size_t len;
} tg_slice;

/* A slice over a NUL-terminated string (without the NUL). */
static inline tg_slice tg_slice_str(const char *s)
{
    return (tg_slice){(const uint8_t *)s, strlen(s)};
}

/* True when the slice holds exactly the bytes of the string s. */
static inline int tg_slice_eq_str(tg_slice a, const char *s)
{
    size_t n = strlen(s);
    return a.len == n && (n == 0 || memcmp(a.base, s, n) == 0);
}

#endif
