/*
 * The LRU index (see lru.h): set-up, insertion with eviction, removal.
 *
 *   insert(k): a slot from   the free list ──> never used (used++) ──> the tail (evicted)
 *              then          chained at the head of buckets[k.key & mask], front of the LRU list
 *   remove(i): out of the LRU list and its bucket chain, onto the free list
 *
 * Entries are reached by number, entry_size bytes apart (tg_lru_slot_of).
 */
#include "proxy/lru.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/error.h"

int tg_lru_init(tg_lru *l, uint32_t capacity, size_t entry_size)
{
    memset(l, 0, sizeof(*l));
    if (capacity == 0 || capacity > TG_LRU_MAX_CAPACITY || entry_size < sizeof(tg_lru_slot) ||
        entry_size % _Alignof(tg_lru_slot) != 0 || entry_size > SIZE_MAX / capacity)
        return TG_EINVAL;
    uint32_t nb = 1;
    while (nb < capacity)
        nb <<= 1;
    l->buckets = malloc((size_t)nb * sizeof(uint32_t));
    l->entries = calloc(capacity, entry_size);
    if (!l->buckets || !l->entries) {
        tg_lru_destroy(l);
        return TG_ENOMEM;
    }
    for (uint32_t i = 0; i < nb; i++)
        l->buckets[i] = TG_LRU_NIL;
    l->capacity = capacity;
    l->entry_size = entry_size;
    l->mask = nb - 1;
    l->head = l->tail = l->free_list = TG_LRU_NIL;
    return 0;
}

void tg_lru_destroy(tg_lru *l)
{
    free(l->buckets);
    free(l->entries);
    memset(l, 0, sizeof(*l));
}

/* Takes entry i out of its bucket's chain. */
static void bucket_remove(tg_lru *l, uint32_t i)
{
    tg_lru_slot *s = tg_lru_slot_of(l, i);
    uint32_t *link = &l->buckets[s->k.key & l->mask];
    while (*link != TG_LRU_NIL && *link != i)
        link = &tg_lru_slot_of(l, *link)->chain;
    if (*link == i)
        *link = s->chain;
}

uint32_t tg_lru_insert(tg_lru *l, const tg_lru_key *k, bool *evicted)
{
    uint32_t i;
    *evicted = false;
    if (l->free_list != TG_LRU_NIL) {
        i = l->free_list;
        l->free_list = tg_lru_slot_of(l, i)->chain;
    } else if (l->used < l->capacity) {
        i = l->used++;
    } else {
        i = l->tail; /* evict the least recently used */
        tg_lru_unlink(l, i);
        bucket_remove(l, i);
        l->live--;
        *evicted = true;
    }
    tg_lru_slot *s = tg_lru_slot_of(l, i);
    s->k = *k;
    s->chain = l->buckets[k->key & l->mask];
    l->buckets[k->key & l->mask] = i;
    tg_lru_push_front(l, i);
    l->live++;
    return i;
}

void tg_lru_remove(tg_lru *l, uint32_t i)
{
    tg_lru_unlink(l, i);
    bucket_remove(l, i);
    tg_lru_slot_of(l, i)->chain = l->free_list;
    l->free_list = i;
    l->live--;
}
