/*
 * A bounded cache whose entries expire: what the tenant registry answered
 * (tenant records, revoked token ids), remembered per worker.
 *
 *   get(key, now, ttl) --fresh--> value (moved to the front)
 *                      --older than ttl--> dropped, NULL
 *   put(key, value, now) --full--> the least recently used entry is evicted
 *
 * Keys are short strings (at most TG_TTL_CACHE_KEY_MAX bytes), values fixed-size
 * blobs copied in. A hash table with chaining plus an LRU list; it never grows
 * past its capacity, whatever the keys. One thread (no locks). Time comes from
 * the caller, in milliseconds.
 */
#ifndef TG_PROXY_TTL_CACHE_H
#define TG_PROXY_TTL_CACHE_H

#include <stddef.h>
#include <stdint.h>

#define TG_TTL_CACHE_KEY_MAX 160

typedef struct tg_ttl_cache tg_ttl_cache;

/* A cache of at most capacity (>= 1) values of value_size bytes. Returns NULL when out of memory.
 */
tg_ttl_cache *tg_ttl_cache_new(uint32_t capacity, size_t value_size);

/* Frees the cache and every value. NULL is fine. */
void tg_ttl_cache_free(tg_ttl_cache *c);

/*
 * The value stored under key less than ttl_ms before now_ms, or NULL. An older
 * entry is dropped. The pointer is valid until the next put, remove or clear.
 */
void *tg_ttl_cache_get(tg_ttl_cache *c, const char *key, size_t keylen, uint64_t now_ms,
                       uint64_t ttl_ms);

/*
 * Stores a copy of value under key, stamped now_ms, replacing an older value;
 * evicts the least recently used entry when full. Returns 0, TG_EINVAL (key
 * too long) or TG_ENOMEM.
 */
__attribute__((warn_unused_result)) int tg_ttl_cache_put(tg_ttl_cache *c, const char *key,
                                                         size_t keylen, const void *value,
                                                         uint64_t now_ms);

/* Drops the entry under key, if any. */
void tg_ttl_cache_remove(tg_ttl_cache *c, const char *key, size_t keylen);

/* Drops every entry. */
void tg_ttl_cache_clear(tg_ttl_cache *c);

/* Entries held now (expired ones included until they are looked up or evicted). */
uint32_t tg_ttl_cache_count(const tg_ttl_cache *c);

#endif
