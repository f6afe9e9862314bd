/*
 * The bounded TTL cache: see ttl_cache.h.
 *
 *   buckets[hash % nbuckets] --> entry --next--> entry ...     (chains)
 *   lru_head (most recent) <--> entry <--> ... <--> lru_tail   (eviction order)
 *
 * Each entry is one allocation: header, value, then the key. The bucket count
 * is the capacity rounded up to a power of two, so chains stay short; keys are
 * hashed with XXH3 seeded per cache.
 */
#include "proxy/ttl_cache.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "proxy/error.h"

typedef struct entry {
    struct entry *next;          /* chain */
    struct entry *newer, *older; /* LRU list */
    uint64_t stored_ms;
    uint64_t hash;
    uint32_t keylen;
    _Alignas(16) uint8_t data[]; /* value_size bytes of value, then the key */
} entry;

struct tg_ttl_cache {
    entry **buckets;
    uint64_t mask;
    uint64_t seed;
    entry *newest, *oldest;
    uint32_t count, capacity;
    size_t value_size;
};

tg_ttl_cache *tg_ttl_cache_new(uint32_t capacity, size_t value_size)
{
    if (capacity == 0)
        capacity = 1;
    tg_ttl_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    uint64_t n = 16;
    while (n < capacity)
        n <<= 1;
    c->buckets = calloc(n, sizeof(entry *));
    if (!c->buckets) {
        free(c);
        return NULL;
    }
    c->mask = n - 1;
    c->seed = (uint64_t)(uintptr_t)c * 0x9e3779b97f4a7c15ull;
    c->capacity = capacity;
    c->value_size = value_size;
    return c;
}

static const uint8_t *entry_key(const tg_ttl_cache *c, const entry *e)
{
    return e->data + c->value_size;
}

/* The link that points at key's entry (*link NULL when absent). */
static entry **find(tg_ttl_cache *c, const char *key, size_t keylen, uint64_t h)
{
    entry **link = &c->buckets[h & c->mask];
    while (*link && !((*link)->hash == h && (*link)->keylen == keylen &&
                      memcmp(entry_key(c, *link), key, keylen) == 0))
        link = &(*link)->next;
    return link;
}

static void lru_unlink(tg_ttl_cache *c, entry *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        c->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        c->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void lru_push(tg_ttl_cache *c, entry *e)
{
    e->newer = NULL;
    e->older = c->newest;
    if (c->newest)
        c->newest->newer = e;
    c->newest = e;
    if (!c->oldest)
        c->oldest = e;
}

/* Unlinks the entry at *link from its chain and the LRU list, and frees it. */
static void drop(tg_ttl_cache *c, entry **link)
{
    entry *e = *link;
    *link = e->next;
    lru_unlink(c, e);
    c->count--;
    free(e);
}

void *tg_ttl_cache_get(tg_ttl_cache *c, const char *key, size_t keylen, uint64_t now_ms,
                       uint64_t ttl_ms)
{
    if (keylen > TG_TTL_CACHE_KEY_MAX)
        return NULL;
    uint64_t h = XXH3_64bits_withSeed(key, keylen, c->seed);
    entry **link = find(c, key, keylen, h);
    entry *e = *link;
    if (!e)
        return NULL;
    /* now_ms before stored_ms (a clock that went back) counts as expired: fail closed */
    if (now_ms < e->stored_ms || now_ms - e->stored_ms >= ttl_ms) {
        drop(c, link);
        return NULL;
    }
    lru_unlink(c, e);
    lru_push(c, e);
    return e->data;
}

int tg_ttl_cache_put(tg_ttl_cache *c, const char *key, size_t keylen, const void *value,
                     uint64_t now_ms)
{
    if (keylen > TG_TTL_CACHE_KEY_MAX)
        return TG_EINVAL;
    uint64_t h = XXH3_64bits_withSeed(key, keylen, c->seed);
    entry **link = find(c, key, keylen, h);
    entry *e = *link;
    if (e) {
        memcpy(e->data, value, c->value_size);
        e->stored_ms = now_ms;
        lru_unlink(c, e);
        lru_push(c, e);
        return 0;
    }
    if (c->count >= c->capacity) {
        entry *victim = c->oldest;
        drop(c, find(c, (const char *)entry_key(c, victim), victim->keylen, victim->hash));
        link = find(c, key, keylen, h); /* the chain may have changed */
    }
    e = malloc(sizeof(*e) + c->value_size + keylen);
    if (!e)
        return TG_ENOMEM;
    memcpy(e->data, value, c->value_size);
    memcpy(e->data + c->value_size, key, keylen);
    e->keylen = (uint32_t)keylen;
    e->hash = h;
    e->stored_ms = now_ms;
    e->next = NULL;
    *link = e;
    lru_push(c, e);
    c->count++;
    return 0;
}

void tg_ttl_cache_remove(tg_ttl_cache *c, const char *key, size_t keylen)
{
    if (keylen > TG_TTL_CACHE_KEY_MAX)
        return;
    uint64_t h = XXH3_64bits_withSeed(key, keylen, c->seed);
    entry **link = find(c, key, keylen, h);
    if (*link)
        drop(c, link);
}

void tg_ttl_cache_clear(tg_ttl_cache *c)
{
    for (uint64_t i = 0; i <= c->mask; i++) {
        while (c->buckets[i]) {
            entry *e = c->buckets[i];
            c->buckets[i] = e->next;
            free(e);
        }
    }
    c->newest = c->oldest = NULL;
    c->count = 0;
}

void tg_ttl_cache_free(tg_ttl_cache *c)
{
    if (!c)
        return;
    tg_ttl_cache_clear(c);
    free(c->buckets);
    free(c);
}

uint32_t tg_ttl_cache_count(const tg_ttl_cache *c)
{
    return c->count;
}
