/*
 * The rewritten-statement LRU (see cypher_cache.h).
 *
 *   index (proxy/lru.h): (key, check, len) ──> entry i, LRU order, eviction
 *   entry i: kind + a malloc'd copy of the value, freed on eviction or replacement
 *
 * On top of the index's entry count, the cache keeps a byte budget over the
 * values: a put first evicts from the tail until its value fits.
 */
#include "policy/cypher_cache.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/error.h"
#include "proxy/lru.h"

/* An entry: the index's part, then the verdict and its value. */
typedef struct cache_entry {
    tg_lru_slot slot;
    uint8_t kind;
    char *value; /* malloc'd, value_len bytes; NULL when empty */
    size_t value_len;
} cache_entry;

struct tg_cypher_cache {
    tg_lru index; /* of cache_entry */
    size_t bytes, max_bytes;
    uint64_t hits, misses, evictions, too_big;
};

tg_cypher_cache *tg_cypher_cache_new(uint32_t entries, size_t max_bytes)
{
    if (entries == 0 || entries > (UINT32_C(1) << 28))
        return NULL;
    tg_cypher_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->max_bytes = max_bytes ? max_bytes : (size_t)entries * 512;
    if (c->max_bytes < ((size_t)1 << 20) && !max_bytes)
        c->max_bytes = (size_t)1 << 20;
    if (tg_lru_init(&c->index, entries, sizeof(cache_entry)) != 0) {
        free(c);
        return NULL;
    }
    return c;
}

void tg_cypher_cache_free(tg_cypher_cache *c)
{
    if (!c)
        return;
    for (uint32_t i = 0; i < c->index.used; i++)
        free(((cache_entry *)tg_lru_entry(&c->index, i))->value);
    tg_lru_destroy(&c->index);
    free(c);
}

void tg_cypher_cache_stats(const tg_cypher_cache *c, tg_cypher_cache_counters *out)
{
    memset(out, 0, sizeof(*out));
    if (!c)
        return;
    out->capacity = c->index.capacity;
    out->entries = tg_lru_count(&c->index);
    out->bytes = c->bytes;
    out->max_bytes = c->max_bytes;
    out->hits = c->hits;
    out->misses = c->misses;
    out->evictions = c->evictions;
    out->too_big = c->too_big;
}

/* Frees entry i's value (it is being evicted, removed or replaced). */
static void release(tg_cypher_cache *c, uint32_t i)
{
    cache_entry *v = tg_lru_entry(&c->index, i);
    c->bytes -= v->value_len;
    free(v->value);
    v->value = NULL;
    v->value_len = 0;
}

bool tg_cypher_cache_get(tg_cypher_cache *c, const tg_cypher_cache_key *k, uint8_t *kind,
                         const char **value, size_t *value_len)
{
    uint32_t i = tg_lru_find(&c->index, k->key, k->check, k->len);
    if (i == TG_LRU_NIL) {
        c->misses++;
        return false;
    }
    c->hits++;
    tg_lru_touch(&c->index, i);
    const cache_entry *v = tg_lru_entry(&c->index, i);
    *kind = v->kind;
    *value = v->value ? v->value : "";
    *value_len = v->value_len;
    return true;
}

int tg_cypher_cache_put(tg_cypher_cache *c, const tg_cypher_cache_key *k, uint8_t kind,
                        const char *value, size_t value_len)
{
    if (value_len > c->max_bytes / 4) {
        c->too_big++;
        return TG_ELIMIT;
    }
    char *copy = NULL;
    if (value_len) {
        copy = malloc(value_len);
        if (!copy)
            return TG_ENOMEM;
        memcpy(copy, value, value_len);
    }
    uint32_t i = tg_lru_find(&c->index, k->key, k->check, k->len);
    if (i != TG_LRU_NIL) {
        /* replaced: its slot is free for the new value, no eviction needed */
        release(c, i);
        tg_lru_remove(&c->index, i);
    }
    /* make room: the byte budget first, then (in tg_lru_insert) a slot */
    while (tg_lru_count(&c->index) && c->bytes + value_len > c->max_bytes) {
        uint32_t t = tg_lru_oldest(&c->index);
        release(c, t);
        tg_lru_remove(&c->index, t);
        c->evictions++;
    }
    bool evicted;
    i = tg_lru_insert(&c->index, k, &evicted);
    if (evicted) {
        release(c, i);
        c->evictions++;
    }
    cache_entry *v = tg_lru_entry(&c->index, i);
    v->kind = kind;
    v->value = copy;
    v->value_len = value_len;
    c->bytes += value_len;
    return 0;
}
