/*
 * Reference-counted byte chunks, pooled per worker.
 *
 *   socket --read into--> chunk --slices forwarded (ref)--> uv_write --write cb (unref)--> pool
 *
 * A chunk is filled by one reader and may be pinned by several in-flight
 * writes that reference slices of it, so forwarding a message never copies
 * it. A chunk goes back to its worker's pool when the last reference drops;
 * the pool keeps a bounded number of standard-size chunks and frees the rest
 * (and every oversized chunk), so memory that grew for one huge message is
 * returned, not kept. Pools and chunks belong to one worker thread.
 */
#ifndef TG_PROXY_BUFFER_H
#define TG_PROXY_BUFFER_H

#include <stddef.h>
#include <stdint.h>

/* Size of a standard chunk: one read of up to this many bytes. */
#define TG_CHUNK_SIZE (64 * 1024)

typedef struct tg_chunk_pool tg_chunk_pool;

typedef struct tg_chunk {
    uint32_t refs;
    uint32_t cap;               /* bytes in data[] */
    struct tg_chunk *next_free; /* pool free-list link */
    tg_chunk_pool *pool;
    uint8_t data[];
} tg_chunk;

struct tg_chunk_pool {
    tg_chunk *free;
    uint32_t n_free;
    uint32_t max_free; /* standard chunks kept for reuse */
    uint64_t live;     /* chunks handed out and not yet returned (for tests and metrics) */
};

/* Sets up an empty pool keeping at most max_free idle chunks. */
void tg_chunk_pool_init(tg_chunk_pool *pool, uint32_t max_free);

/* Frees the idle chunks. Chunks still referenced must be released first. */
void tg_chunk_pool_destroy(tg_chunk_pool *pool);

/*
 * Returns a chunk with room for at least min_cap bytes (TG_CHUNK_SIZE when
 * min_cap is smaller) and one reference owned by the caller, or NULL when out
 * of memory.
 */
tg_chunk *tg_chunk_get(tg_chunk_pool *pool, size_t min_cap);

/* Adds a reference. */
static inline void tg_chunk_ref(tg_chunk *c)
{
    c->refs++;
}

/* Drops a reference; the last one returns the chunk to its pool. */
void tg_chunk_unref(tg_chunk *c);

/* A growable byte buffer owned by one holder; for messages built locally. */
typedef struct tg_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} tg_buf;

/* Appends n bytes. Returns 0 or TG_ENOMEM (the buffer is unchanged then). */
__attribute__((warn_unused_result)) int tg_buf_append(tg_buf *b, const void *p, size_t n);

/* Makes room for n more bytes and returns where they go (len is not changed), or NULL. */
uint8_t *tg_buf_reserve(tg_buf *b, size_t n);

/* Frees the storage; the buffer is empty and reusable afterwards. */
void tg_buf_free(tg_buf *b);

#endif
