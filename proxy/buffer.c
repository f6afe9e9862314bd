/*
 * Chunk pool and growable buffers: see buffer.h.
 */
#include "proxy/buffer.h"

#include <stdlib.h>
#include <string.h>

#include "proxy/error.h"

void tg_chunk_pool_init(tg_chunk_pool *pool, uint32_t max_free)
{
    memset(pool, 0, sizeof(*pool));
    pool->max_free = max_free;
}

void tg_chunk_pool_destroy(tg_chunk_pool *pool)
{
    while (pool->free) {
        tg_chunk *c = pool->free;
        pool->free = c->next_free;
        free(c);
    }
    pool->n_free = 0;
}

tg_chunk *tg_chunk_get(tg_chunk_pool *pool, size_t min_cap)
{
    tg_chunk *c;
    if (min_cap <= TG_CHUNK_SIZE && pool->free) {
        c = pool->free;
        pool->free = c->next_free;
        pool->n_free--;
    } else {
        size_t cap = min_cap <= TG_CHUNK_SIZE ? TG_CHUNK_SIZE : min_cap;
        if (cap > UINT32_MAX)
            return NULL;
        c = malloc(sizeof(*c) + cap);
        if (!c)
            return NULL;
        c->cap = (uint32_t)cap;
        c->pool = pool;
    }
    c->refs = 1;
    c->next_free = NULL;
    pool->live++;
    return c;
}

void tg_chunk_unref(tg_chunk *c)
{
    if (--c->refs > 0)
        return;
    tg_chunk_pool *pool = c->pool;
    pool->live--;
    if (c->cap == TG_CHUNK_SIZE && pool->n_free < pool->max_free) {
        c->next_free = pool->free;
        pool->free = c;
        pool->n_free++;
    } else {
        free(c);
    }
}

uint8_t *tg_buf_reserve(tg_buf *b, size_t n)
{
    if (n > SIZE_MAX - b->len)
        return NULL;
    size_t need = b->len + n;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need)
            cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        uint8_t *p = realloc(b->data, cap);
        if (!p)
            return NULL;
        b->data = p;
        b->cap = cap;
    }
    return b->data + b->len;
}

int tg_buf_append(tg_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    uint8_t *dst = tg_buf_reserve(b, n);
    if (!dst)
        return TG_ENOMEM;
    memcpy(dst, p, n);
    b->len += n;
    return 0;
}

void tg_buf_free(tg_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
