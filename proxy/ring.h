/*
 * Growth of the FIFO rings the sessions keep of replies they expect (an array
 * of `cap` elements holding `len` of them from index `head`, wrapping).
 *
 * Ownership: *buf is malloc'd by tg_ring_reserve and freed by the caller.
 */
#ifndef TG_PROXY_RING_H
#define TG_PROXY_RING_H

#include <stddef.h>

/*
 * Makes room for one more element of `size` bytes: when the ring is full
 * (len == *cap), *buf becomes a new array of twice the capacity (min_cap the
 * first time) with the elements moved, in order, to index 0 (*head = 0).
 * Returns 0, or TG_ENOMEM with the ring unchanged.
 */
int tg_ring_reserve(void **buf, size_t size, size_t *cap, size_t *head, size_t len, size_t min_cap);

#endif
