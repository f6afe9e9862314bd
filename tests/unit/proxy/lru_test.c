/*
 * Unit tests for proxy/lru.c.
 *
 *   capacities --> 0 and above the maximum refused, odd sizes round the buckets up
 *   keys that share `key`, or `key` and `check` --> distinct entries (all three parts compared)
 *   insert past capacity --> the least recently used is evicted, touch changes who that is
 *   remove --> the slot is reused before a fresh one, nothing is evicted meanwhile
 *   random operations on small indexes with colliding buckets --> the same answers as a
 *       reference model (a list ordered by last use), a consistent list and chains, and
 *       every payload still beside its key
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "proxy/error.h"
#include "proxy/lru.h"

/* A caller's entry: the index's part, then a payload. */
typedef struct entry {
    tg_lru_slot slot;
    uint64_t payload;
    char tag;
} entry;

static tg_lru_key K(uint64_t key, uint64_t check, uint64_t len)
{
    return (tg_lru_key){key, check, len};
}

static uint32_t find(const tg_lru *l, tg_lru_key k)
{
    return tg_lru_find(l, k.key, k.check, k.len);
}

static uint32_t insert(tg_lru *l, tg_lru_key k, bool *evicted)
{
    assert_int_equal(find(l, k), TG_LRU_NIL);
    return tg_lru_insert(l, &k, evicted);
}

/* The list from head to tail is consistent both ways and holds `live` slots. */
static void check_list(const tg_lru *l)
{
    uint32_t n = 0, prev = TG_LRU_NIL;
    for (uint32_t i = l->head; i != TG_LRU_NIL; i = tg_lru_slot_of(l, i)->next) {
        assert_true(i < l->capacity);
        assert_int_equal(tg_lru_slot_of(l, i)->prev, prev);
        assert_int_equal(find(l, tg_lru_slot_of(l, i)->k), i);
        prev = i;
        assert_true(++n <= l->capacity);
    }
    assert_int_equal(l->tail, prev);
    assert_int_equal(n, tg_lru_count(l));
}

static void test_init(void **state)
{
    (void)state;
    tg_lru l;
    assert_int_equal(tg_lru_init(&l, 0, sizeof(entry)), TG_EINVAL);
    /* entries too small for the index's part, or misaligned */
    assert_int_equal(tg_lru_init(&l, 4, sizeof(tg_lru_slot) - 8), TG_EINVAL);
    assert_int_equal(tg_lru_init(&l, 4, sizeof(tg_lru_slot) + 1), TG_EINVAL);
    assert_int_equal(tg_lru_init(&l, 4, sizeof(tg_lru_slot)), 0);
    tg_lru_destroy(&l);
    assert_int_equal(tg_lru_init(&l, TG_LRU_MAX_CAPACITY + 1, sizeof(entry)), TG_EINVAL);
    assert_int_equal(tg_lru_init(&l, 5, sizeof(entry)), 0);
    assert_int_equal(l.capacity, 5);
    for (uint32_t i = 0; i < 5; i++) {
        const entry *e = tg_lru_entry(&l, i);
        assert_true(e->payload == 0 && e->tag == 0); /* zeroed */
        assert_ptr_equal(e, (const char *)l.entries + i * sizeof(entry));
    }
    assert_int_equal(l.mask, 7);
    assert_int_equal(tg_lru_count(&l), 0);
    assert_int_equal(tg_lru_oldest(&l), TG_LRU_NIL);
    assert_int_equal(find(&l, K(1, 2, 3)), TG_LRU_NIL);
    tg_lru_destroy(&l);
    assert_int_equal(tg_lru_init(&l, 1, sizeof(entry)), 0);
    assert_int_equal(l.mask, 0);
    tg_lru_destroy(&l);
}

static void test_all_parts_compared(void **state)
{
    (void)state;
    tg_lru l;
    assert_int_equal(tg_lru_init(&l, 8, sizeof(entry)), 0);
    bool ev;
    uint32_t a = insert(&l, K(42, 1, 10), &ev);
    uint32_t b = insert(&l, K(42, 2, 10), &ev); /* same key, other check */
    uint32_t c = insert(&l, K(42, 1, 11), &ev); /* same key and check, other length */
    uint32_t d = insert(&l, K(50, 1, 10), &ev); /* same bucket (50 & 7 == 42 & 7) */
    assert_false(ev);
    assert_true(a != b && b != c && c != d && a != d);
    assert_int_equal(find(&l, K(42, 1, 10)), a);
    assert_int_equal(find(&l, K(42, 2, 10)), b);
    assert_int_equal(find(&l, K(42, 1, 11)), c);
    assert_int_equal(find(&l, K(50, 1, 10)), d);
    assert_int_equal(find(&l, K(42, 2, 11)), TG_LRU_NIL);
    assert_int_equal(find(&l, K(43, 1, 10)), TG_LRU_NIL);
    assert_int_equal(tg_lru_count(&l), 4);
    check_list(&l);
    tg_lru_destroy(&l);
}

static void test_eviction_order(void **state)
{
    (void)state;
    tg_lru l;
    assert_int_equal(tg_lru_init(&l, 3, sizeof(entry)), 0);
    bool ev;
    uint32_t s1 = insert(&l, K(1, 1, 1), &ev);
    uint32_t s2 = insert(&l, K(2, 2, 2), &ev);
    uint32_t s3 = insert(&l, K(3, 3, 3), &ev);
    assert_false(ev);
    assert_int_equal(tg_lru_oldest(&l), s1);
    /* using 1 makes 2 the oldest */
    tg_lru_touch(&l, find(&l, K(1, 1, 1)));
    assert_int_equal(tg_lru_oldest(&l), s2);
    uint32_t s4 = insert(&l, K(4, 4, 4), &ev);
    assert_true(ev);
    assert_int_equal(s4, s2); /* the evicted entry's slot */
    assert_int_equal(find(&l, K(2, 2, 2)), TG_LRU_NIL);
    assert_int_equal(find(&l, K(1, 1, 1)), s1);
    assert_int_equal(tg_lru_oldest(&l), s3);
    assert_int_equal(tg_lru_count(&l), 3);
    /* touching the head changes nothing */
    tg_lru_touch(&l, s4);
    assert_int_equal(l.head, s4);
    check_list(&l);
    tg_lru_destroy(&l);
}

static void test_remove_reuses_slot(void **state)
{
    (void)state;
    tg_lru l;
    assert_int_equal(tg_lru_init(&l, 2, sizeof(entry)), 0);
    bool ev;
    uint32_t a = insert(&l, K(1, 0, 0), &ev);
    uint32_t b = insert(&l, K(2, 0, 0), &ev);
    tg_lru_remove(&l, a);
    assert_int_equal(tg_lru_count(&l), 1);
    assert_int_equal(find(&l, K(1, 0, 0)), TG_LRU_NIL);
    assert_int_equal(tg_lru_oldest(&l), b);
    /* the freed slot comes back, with no eviction although every slot was used once */
    uint32_t c = insert(&l, K(3, 0, 0), &ev);
    assert_false(ev);
    assert_int_equal(c, a);
    assert_int_equal(find(&l, K(2, 0, 0)), b);
    /* removing the last entries empties the list */
    tg_lru_remove(&l, b);
    tg_lru_remove(&l, c);
    assert_int_equal(tg_lru_count(&l), 0);
    assert_int_equal(tg_lru_oldest(&l), TG_LRU_NIL);
    assert_int_equal(l.head, TG_LRU_NIL);
    check_list(&l);
    tg_lru_destroy(&l);
}

/* ---- against a reference model ---- */

#define MODEL_MAX 16

/* Entries in order of last use, most recent first. */
typedef struct model {
    tg_lru_key k[MODEL_MAX];
    uint32_t n, cap;
} model;

static int model_find(const model *m, tg_lru_key k)
{
    for (uint32_t i = 0; i < m->n; i++)
        if (memcmp(&m->k[i], &k, sizeof(k)) == 0)
            return (int)i;
    return -1;
}

static void model_take(model *m, int i)
{
    memmove(&m->k[i], &m->k[i + 1], (m->n - (uint32_t)i - 1) * sizeof(m->k[0]));
    m->n--;
}

static void model_front(model *m, tg_lru_key k)
{
    memmove(&m->k[1], &m->k[0], m->n * sizeof(m->k[0]));
    m->k[0] = k;
    m->n++;
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static uint64_t payload_of(tg_lru_key k)
{
    return k.key * 1000003 + k.check * 31 + k.len;
}

static void test_against_model(void **state)
{
    (void)state;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (uint32_t cap = 1; cap <= MODEL_MAX; cap++) {
        tg_lru l;
        assert_int_equal(tg_lru_init(&l, cap, sizeof(entry)), 0);
        model m = {.n = 0, .cap = cap};
        for (int step = 0; step < 4000; step++) {
            /* few distinct keys, many sharing a bucket, a check or a length */
            uint64_t r = rnd(&seed);
            tg_lru_key k = K((r % 6) * 8, (r >> 8) % 2, (r >> 16) % 2);
            int op = (int)((r >> 24) % 3);
            uint32_t i = find(&l, k);
            int mi = model_find(&m, k);
            assert_int_equal(i != TG_LRU_NIL, mi >= 0);
            if (i != TG_LRU_NIL) {
                /* the payload stayed with its key through the index's moves */
                const entry *e = tg_lru_entry(&l, i);
                assert_true(e->payload == payload_of(k) && e->tag == 'p');
            }
            if (op == 0 && i != TG_LRU_NIL) {
                tg_lru_touch(&l, i);
                model_take(&m, mi);
                model_front(&m, k);
            } else if (op == 1 && i != TG_LRU_NIL) {
                tg_lru_remove(&l, i);
                model_take(&m, mi);
            } else if (i == TG_LRU_NIL) {
                bool ev;
                uint32_t oldest = tg_lru_oldest(&l);
                uint32_t got = tg_lru_insert(&l, &k, &ev);
                assert_int_equal(ev, m.n == m.cap);
                if (ev) {
                    assert_int_equal(got, oldest);
                    m.n--;
                }
                entry *e = tg_lru_entry(&l, got);
                e->payload = payload_of(k);
                e->tag = 'p';
                model_front(&m, k);
            }
            assert_int_equal(tg_lru_count(&l), m.n);
            /* the list order is the model's */
            uint32_t j = l.head;
            for (uint32_t x = 0; x < m.n; x++, j = tg_lru_slot_of(&l, j)->next)
                assert_memory_equal(&tg_lru_slot_of(&l, j)->k, &m.k[x], sizeof(tg_lru_key));
            assert_int_equal(j, TG_LRU_NIL);
        }
        check_list(&l);
        tg_lru_destroy(&l);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init),           cmocka_unit_test(test_all_parts_compared),
        cmocka_unit_test(test_eviction_order), cmocka_unit_test(test_remove_reuses_slot),
        cmocka_unit_test(test_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
