/*
 * Strict UTF-8 validation (RFC 3629, Unicode's "well-formed" table 3-7).
 *
 *   bytes ──tg_utf8_valid──> well-formed or not (ASCII runs 8 bytes at a time)
 *   bytes ──tg_utf8_next───> length of the character at the front (1-4), or 0
 *
 * Refused: stray continuation bytes, C0/C1 and other overlong forms,
 * surrogates (U+D800..U+DFFF), code points above U+10FFFF, F5..FF, and
 * sequences cut short by the end of the input. NUL is a well-formed
 * character here; protocols that forbid it check for it themselves.
 *
 * One validator for every protocol and policy that must decide whether bytes
 * are text (BSON strings and names, PackStream strings, Cypher literals), so
 * that no two of them can disagree about what a backend would accept.
 */
#ifndef TG_PROXY_UTF8_H
#define TG_PROXY_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The length (1-4) of the well-formed UTF-8 character at the front of p
 * (n > 0 bytes available), or 0 when the bytes there are not one.
 */
static inline size_t tg_utf8_next(const uint8_t *p, size_t n)
{
    uint8_t c = p[0];
    if (c < 0x80)
        return 1;
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else {
        return 0; /* continuation byte, C0/C1 overlong, F5.. */
    }
    if (n < need || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t k = 2; k < need; k++)
        if ((p[k] & 0xC0) != 0x80)
            return 0;
    return need;
}

/* True when s[0..n) is well-formed UTF-8 (NUL bytes included). */
bool tg_utf8_valid(const uint8_t *s, size_t n);

#endif
