/*
 * The bump arena (see arena.h).
 *
 *   alloc(size): round up to 16 ──fits in cur/left?──yes──> bump cur
 *                                        │no
 *                                        └──> malloc a block (header + at least size,
 *                                             next_size doubling) ──> push on `blocks`, bump
 *
 * The caller's first block is aligned up to 16 bytes and never freed here.
 */
#include "proxy/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct tg_arena_block {
    tg_arena_block *next;
    size_t size;
};

#define ARENA_ALIGN 16
#define ARENA_FIRST_BLOCK 16384
#define ARENA_MAX_BLOCK ((size_t)1 << 22)
/* Larger requests are refused outright: the block-size doubling below cannot overflow. */
#define ARENA_MAX_REQUEST (SIZE_MAX / 4)

void tg_arena_init(tg_arena *a, void *buf, size_t len, size_t cap)
{
    memset(a, 0, sizeof(*a));
    /* align the caller's block */
    uintptr_t p = (uintptr_t)buf, q = (p + ARENA_ALIGN - 1) & ~(uintptr_t)(ARENA_ALIGN - 1);
    if (buf && len > q - p) {
        a->cur = (unsigned char *)q;
        a->left = len - (q - p);
    }
    a->next_size = ARENA_FIRST_BLOCK;
    a->cap = cap;
}

void *tg_arena_alloc(tg_arena *a, size_t size)
{
    if (a->nomem || a->over_cap)
        return NULL;
    if (size > ARENA_MAX_REQUEST) {
        a->over_cap = true;
        return NULL;
    }
    size = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (a->cap && a->used + size > a->cap) {
        a->over_cap = true;
        return NULL;
    }
    if (size > a->left) {
        size_t hdr = (sizeof(tg_arena_block) + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
        size_t bsize = a->next_size;
        while (bsize < size + hdr)
            bsize *= 2;
        tg_arena_block *b = malloc(bsize);
        if (!b) {
            a->nomem = true;
            return NULL;
        }
        b->next = a->blocks;
        b->size = bsize;
        a->blocks = b;
        a->cur = (unsigned char *)b + hdr;
        a->left = bsize - hdr;
        if (a->next_size < ARENA_MAX_BLOCK)
            a->next_size *= 2;
    }
    void *r = a->cur;
    a->cur += size;
    a->left -= size;
    a->used += size;
    return r;
}

void tg_arena_release(tg_arena *a)
{
    while (a->blocks) {
        tg_arena_block *next = a->blocks->next;
        free(a->blocks);
        a->blocks = next;
    }
    a->cur = NULL;
    a->left = 0;
}
