/*
 * UTF-8 validation (see utf8.h): ASCII eight bytes at a time, everything
 * else one character at a time through tg_utf8_next.
 */
#include "proxy/utf8.h"

#include <string.h>

bool tg_utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        /* ASCII runs eight bytes at a time. */
        if (n - i >= 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if ((w & 0x8080808080808080ull) == 0) {
                i += 8;
                continue;
            }
        }
        size_t k = tg_utf8_next(s + i, n - i);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}
