/*
 * A bounded LRU of rewritten Cypher statements, owned by one thread (one per
 * worker), keyed by hashes the caller computes (policy/cypher_rewrite.c:
 * XXH3 of the statement text, seeded with the rewriter's identity and, in
 * label mode, the tenant).
 *
 *   (key, check, len) ──bucket chain──> entry ──> verdict kind + value bytes
 *                                         │          (the rewritten text, or a refusal reason)
 *                                         └─ LRU list, most recent first; evicted from the
 *                                            tail when the entry count or the byte budget
 *                                            would be exceeded
 *
 * The index is the one the SQL guard's verdict cache uses (proxy/lru.h): a
 * hash over a fixed slot array, an intrusive LRU list, a second independent
 * hash (`check`) and the text length compared on lookup, so that a key
 * collision alone never serves another statement's rewrite. Unlike the
 * guard's verdicts, values here have variable length, so the cache also
 * keeps a byte budget; a value larger than a quarter of the budget is not
 * stored.
 */
#ifndef TG_POLICY_CYPHER_CACHE_H
#define TG_POLICY_CYPHER_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/lru.h"

typedef struct tg_cypher_cache tg_cypher_cache;

/* What identifies a cached statement: two independent hashes and the text's length. */
typedef tg_lru_key tg_cypher_cache_key;

/*
 * A cache of at most `entries` statements (> 0) whose values total at most
 * max_bytes (0: 512 bytes per entry, at least 1 MiB). NULL when out of memory
 * or entries is 0.
 */
tg_cypher_cache *tg_cypher_cache_new(uint32_t entries, size_t max_bytes);
void tg_cypher_cache_free(tg_cypher_cache *c);

/* Counters, for metrics and tests (all zero when c is NULL). */
typedef struct tg_cypher_cache_counters {
    uint32_t capacity, entries;
    size_t bytes, max_bytes;
    uint64_t hits, misses, evictions, too_big;
} tg_cypher_cache_counters;
void tg_cypher_cache_stats(const tg_cypher_cache *c, tg_cypher_cache_counters *out);

/*
 * Looks k up. On a hit: returns true, marks the entry most recently used and
 * sets *kind and *value / *value_len (borrowed: valid until the next put on
 * c). Counts a hit or a miss.
 */
bool tg_cypher_cache_get(tg_cypher_cache *c, const tg_cypher_cache_key *k, uint8_t *kind,
                         const char **value, size_t *value_len);

/*
 * Stores (a copy of) value under k, replacing any entry of the same key and
 * evicting least recently used entries as needed. Returns 0, TG_ELIMIT when
 * the value is too large to be cached (nothing stored) or TG_ENOMEM.
 */
int tg_cypher_cache_put(tg_cypher_cache *c, const tg_cypher_cache_key *k, uint8_t kind,
                        const char *value, size_t value_len);

#endif
