#include "proxy/ring.h"

#include <stdlib.h>
#include <string.h>

#include "proxy/error.h"

int tg_ring_reserve(void **buf, size_t size, size_t *cap, size_t *head, size_t len, size_t min_cap)
{
    if (len < *cap)
        return 0;
    size_t ncap = *cap ? 2 * *cap : min_cap;
    unsigned char *n = malloc(ncap * size);
    if (!n)
        return TG_ENOMEM;
    if (len) { /* full: the elements run from head to the end, then from 0 */
        size_t first = *cap - *head;
        memcpy(n, (unsigned char *)*buf + *head * size, first * size);
        memcpy(n + first * size, *buf, (len - first) * size);
    }
    free(*buf);
    *buf = n;
    *cap = ncap;
    *head = 0;
    return 0;
}
