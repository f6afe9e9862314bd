/*
 * The rewritten-statement LRU (see cypher_cache.h).
 *
 *   buckets[key & mask] ──chain──> entries[i] (key, check, len, kind, value*)
 *   head ──prev/next──> ... ──> tail   (most recently used first)
 *
 * Entry slots are allocated once; values are malloc'd per entry and freed on
 * eviction or replacement.
 */
#include "policy/cypher_cache.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/error.h"

#define NIL UINT32_MAX

typedef struct entry {
    uint64_t key, check, len;
    uint32_t prev, next; /* LRU list */
    uint32_t chain;      /* next entry of the same bucket */
    uint8_t kind;
    char *value;
    size_t value_len;
} entry;

struct tg_cypher_cache {
    uint32_t capacity, used, mask;
    uint32_t head, tail;
    uint32_t free_list; /* slots freed by a byte-budget eviction, linked through chain */
    uint32_t live;
    uint32_t *buckets;
    entry *entries;
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
    uint32_t nb = 1;
    while (nb < entries)
        nb <<= 1;
    c->capacity = entries;
    c->mask = nb - 1;
    c->head = c->tail = c->free_list = NIL;
    c->max_bytes = max_bytes ? max_bytes : (size_t)entries * 512;
    if (c->max_bytes < ((size_t)1 << 20) && !max_bytes)
        c->max_bytes = (size_t)1 << 20;
    c->buckets = malloc((size_t)nb * sizeof(uint32_t));
    c->entries = calloc(entries, sizeof(entry));
    if (!c->buckets || !c->entries) {
        tg_cypher_cache_free(c);
        return NULL;
    }
    for (uint32_t i = 0; i < nb; i++)
        c->buckets[i] = NIL;
    return c;
}

void tg_cypher_cache_free(tg_cypher_cache *c)
{
    if (!c)
        return;
    if (c->entries)
        for (uint32_t i = 0; i < c->used; i++)
            free(c->entries[i].value);
    free(c->buckets);
    free(c->entries);
    free(c);
}

void tg_cypher_cache_stats(const tg_cypher_cache *c, tg_cypher_cache_counters *out)
{
    memset(out, 0, sizeof(*out));
    if (!c)
        return;
    out->capacity = c->capacity;
    out->entries = c->live;
    out->bytes = c->bytes;
    out->max_bytes = c->max_bytes;
    out->hits = c->hits;
    out->misses = c->misses;
    out->evictions = c->evictions;
    out->too_big = c->too_big;
}

static void lru_unlink(tg_cypher_cache *c, uint32_t i)
{
    entry *e = &c->entries[i];
    if (e->prev != NIL)
        c->entries[e->prev].next = e->next;
    else
        c->head = e->next;
    if (e->next != NIL)
        c->entries[e->next].prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NIL;
}

static void lru_push_front(tg_cypher_cache *c, uint32_t i)
{
    entry *e = &c->entries[i];
    e->prev = NIL;
    e->next = c->head;
    if (c->head != NIL)
        c->entries[c->head].prev = i;
    c->head = i;
    if (c->tail == NIL)
        c->tail = i;
}

static uint32_t find(const tg_cypher_cache *c, const tg_cypher_cache_key *k)
{
    for (uint32_t i = c->buckets[k->key & c->mask]; i != NIL; i = c->entries[i].chain) {
        const entry *e = &c->entries[i];
        if (e->key == k->key && e->check == k->check && e->len == k->len)
            return i;
    }
    return NIL;
}

static void bucket_remove(tg_cypher_cache *c, uint32_t i)
{
    uint32_t *link = &c->buckets[c->entries[i].key & c->mask];
    while (*link != NIL && *link != i)
        link = &c->entries[*link].chain;
    if (*link == i)
        *link = c->entries[i].chain;
}

/* Removes entry i from the bucket and LRU lists and frees its value. */
static void drop(tg_cypher_cache *c, uint32_t i)
{
    entry *e = &c->entries[i];
    lru_unlink(c, i);
    bucket_remove(c, i);
    c->bytes -= e->value_len;
    free(e->value);
    e->value = NULL;
    e->value_len = 0;
    c->live--;
}

bool tg_cypher_cache_get(tg_cypher_cache *c, const tg_cypher_cache_key *k, uint8_t *kind,
                         const char **value, size_t *value_len)
{
    uint32_t i = find(c, k);
    if (i == NIL) {
        c->misses++;
        return false;
    }
    c->hits++;
    lru_unlink(c, i);
    lru_push_front(c, i);
    *kind = c->entries[i].kind;
    *value = c->entries[i].value ? c->entries[i].value : "";
    *value_len = c->entries[i].value_len;
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
    uint32_t i = find(c, k);
    if (i != NIL)
        drop(c, i);
    /* make room: the byte budget first, then a slot */
    while (c->live && c->bytes + value_len > c->max_bytes) {
        uint32_t t = c->tail;
        drop(c, t);
        c->entries[t].chain = c->free_list;
        c->free_list = t;
        c->evictions++;
    }
    if (i != NIL) {
        /* reuse the replaced entry's slot */
    } else if (c->free_list != NIL) {
        i = c->free_list;
        c->free_list = c->entries[i].chain;
    } else if (c->used < c->capacity) {
        i = c->used++;
    } else {
        i = c->tail;
        drop(c, i);
        c->evictions++;
    }
    entry *e = &c->entries[i];
    e->key = k->key;
    e->check = k->check;
    e->len = k->len;
    e->kind = kind;
    e->value = copy;
    e->value_len = value_len;
    e->chain = c->buckets[k->key & c->mask];
    c->buckets[k->key & c->mask] = i;
    lru_push_front(c, i);
    c->bytes += value_len;
    c->live++;
    return 0;
}
