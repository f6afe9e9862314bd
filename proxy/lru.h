/*
 * tg_lru: the index of a bounded LRU cache keyed by hashes the caller
 * computes -- a fixed-capacity hash table and an intrusive LRU list over an
 * array of the caller's entries.
 *
 *   (key, check, len) ──buckets[key & mask]──chain──> entry i: [tg_lru_slot | caller's payload]
 *   head ──next──> ... ──> tail      (most recently used first; the tail is evicted)
 *
 * The caller's entry type starts with a tg_lru_slot and carries its payload
 * inline after it (the SQL guard's verdicts, the Cypher cache's kind and
 * pointer to a rewritten text it owns); the index allocates `capacity` of
 * them, `entry_size` bytes apart, so that a hit reads one entry, not an
 * index record and a payload elsewhere. Entries are numbered
 * 0..capacity-1; insertion takes one tg_lru_remove() freed, else one never
 * used, else evicts the least recently used. The caller releases what its
 * payload owns when tg_lru_insert reports an eviction, or before
 * tg_lru_remove.
 *
 * A lookup compares all three parts of the key: `key` picks the bucket,
 * `check` is a second, independent hash and `len` the hashed text's length,
 * so that a collision of one hash alone never serves another text's entry.
 *
 * tg_lru_find and tg_lru_touch (with their steps) are inline: they are a
 * cache hit's whole cost. An index belongs to one thread.
 */
#ifndef TG_PROXY_LRU_H
#define TG_PROXY_LRU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* No slot. */
#define TG_LRU_NIL UINT32_MAX
/* The largest capacity tg_lru_init accepts. */
#define TG_LRU_MAX_CAPACITY (UINT32_C(1) << 30)

/* What identifies an entry: two independent hashes and the hashed text's length. */
typedef struct tg_lru_key {
    uint64_t key, check, len;
} tg_lru_key;

/* The first member of every entry: the index's part. */
typedef struct tg_lru_slot {
    tg_lru_key k;
    uint32_t prev, next; /* LRU list */
    uint32_t chain;      /* next entry of the same bucket, or of the free list */
} tg_lru_slot;

typedef struct tg_lru {
    uint32_t capacity, mask;
    uint32_t used; /* entries handed out at least once: 0..used-1 */
    uint32_t live; /* entries holding a key */
    uint32_t head, tail;
    uint32_t free_list;     /* entries freed by tg_lru_remove, linked through chain */
    uint32_t *buckets;      /* mask + 1 of them */
    unsigned char *entries; /* capacity of them, zeroed at first */
    size_t entry_size;
} tg_lru;

/*
 * Sets up an empty index of capacity entries (1..TG_LRU_MAX_CAPACITY) of
 * entry_size bytes each: the size of the caller's entry type, whose first
 * member is a tg_lru_slot. Returns 0, TG_EINVAL or TG_ENOMEM (l is then
 * empty and needs no destroy).
 */
__attribute__((warn_unused_result)) int tg_lru_init(tg_lru *l, uint32_t capacity,
                                                    size_t entry_size);

/* Frees the index and its entries (not what their payloads point to). */
void tg_lru_destroy(tg_lru *l);

/* Entry i (< capacity): the caller casts it to its entry type. */
static inline void *tg_lru_entry(const tg_lru *l, uint32_t i)
{
    return l->entries + (size_t)i * l->entry_size;
}

/* Entry i's index part. */
static inline tg_lru_slot *tg_lru_slot_of(const tg_lru *l, uint32_t i)
{
    return (tg_lru_slot *)tg_lru_entry(l, i);
}

/*
 * The entry holding the key (key, check, len), or TG_LRU_NIL. Does not
 * change the LRU order. (Scalars, not a tg_lru_key: a hash result goes
 * straight from registers to the compare.)
 */
static inline uint32_t tg_lru_find(const tg_lru *l, uint64_t key, uint64_t check, uint64_t len)
{
    uint32_t i = l->buckets[key & l->mask];
    while (i != TG_LRU_NIL) {
        const tg_lru_slot *s = tg_lru_slot_of(l, i);
        if (s->k.key == key && s->k.check == check && s->k.len == len)
            return i;
        i = s->chain;
    }
    return TG_LRU_NIL;
}

/* Takes entry i (holding a key) out of the LRU list (a step of touch, insert and remove). */
static inline void tg_lru_unlink(tg_lru *l, uint32_t i)
{
    tg_lru_slot *s = tg_lru_slot_of(l, i);
    if (s->prev != TG_LRU_NIL)
        tg_lru_slot_of(l, s->prev)->next = s->next;
    else
        l->head = s->next;
    if (s->next != TG_LRU_NIL)
        tg_lru_slot_of(l, s->next)->prev = s->prev;
    else
        l->tail = s->prev;
    s->prev = s->next = TG_LRU_NIL;
}

/* Puts entry i (out of the list) at the front: most recently used (a step of touch and insert). */
static inline void tg_lru_push_front(tg_lru *l, uint32_t i)
{
    tg_lru_slot *s = tg_lru_slot_of(l, i);
    s->prev = TG_LRU_NIL;
    s->next = l->head;
    if (l->head != TG_LRU_NIL)
        tg_lru_slot_of(l, l->head)->prev = i;
    l->head = i;
    if (l->tail == TG_LRU_NIL)
        l->tail = i;
}

/* Marks entry i (holding a key) most recently used. */
static inline void tg_lru_touch(tg_lru *l, uint32_t i)
{
    if (l->head == i)
        return;
    tg_lru_unlink(l, i);
    tg_lru_push_front(l, i);
}

/*
 * Adds k (not in the index: tg_lru_find first) as the most recently used
 * entry and returns its number. When every entry is taken, the least
 * recently used one is evicted and reused: *evicted is then true and the
 * caller releases its old payload before writing the new one.
 */
uint32_t tg_lru_insert(tg_lru *l, const tg_lru_key *k, bool *evicted);

/* Removes entry i's key; the entry goes to the free list. */
void tg_lru_remove(tg_lru *l, uint32_t i);

/* The least recently used entry, or TG_LRU_NIL when the index is empty. */
static inline uint32_t tg_lru_oldest(const tg_lru *l)
{
    return l->tail;
}

/* The number of entries holding a key. */
static inline uint32_t tg_lru_count(const tg_lru *l)
{
    return l->live;
}

#endif
