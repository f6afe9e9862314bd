/*
 * Tests for proxy/ttl_cache.c: expiry, replacement, LRU eviction at capacity,
 * removal, and many keys through a small cache (bounded whatever the keys).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "proxy/error.h"
#include "proxy/ttl_cache.h"

typedef struct value {
    int n;
    char text[24];
} value;

static void put(tg_ttl_cache *c, const char *key, int n, uint64_t now)
{
    value v = {.n = n};
    snprintf(v.text, sizeof(v.text), "v%d", n);
    assert_int_equal(tg_ttl_cache_put(c, key, strlen(key), &v, now), 0);
}

static int get(tg_ttl_cache *c, const char *key, uint64_t now, uint64_t ttl)
{
    value *v = tg_ttl_cache_get(c, key, strlen(key), now, ttl);
    return v ? v->n : -1;
}

static void test_ttl(void **state)
{
    (void)state;
    tg_ttl_cache *c = tg_ttl_cache_new(8, sizeof(value));
    assert_non_null(c);
    put(c, "acme", 1, 1000);
    assert_int_equal(get(c, "acme", 1000, 500), 1);
    assert_int_equal(get(c, "acme", 1499, 500), 1);
    assert_int_equal(get(c, "acme", 1500, 500), -1); /* expired at exactly ttl */
    assert_int_equal(tg_ttl_cache_count(c), 0);      /* and dropped */
    put(c, "acme", 2, 2000);
    assert_int_equal(get(c, "acme", 1999, 500), -1); /* a clock that went back: expired */
    put(c, "acme", 3, 3000);
    assert_int_equal(get(c, "acme", 3000, 0), -1); /* ttl 0: nothing is ever fresh */
    put(c, "other", 4, 4000);
    assert_int_equal(get(c, "acme", 4000, 100000), -1);
    assert_int_equal(get(c, "other", 4001, 100000), 4);
    tg_ttl_cache_free(c);
}

static void test_replace_and_remove(void **state)
{
    (void)state;
    tg_ttl_cache *c = tg_ttl_cache_new(4, sizeof(value));
    put(c, "a", 1, 0);
    put(c, "a", 2, 10); /* replaced, restamped */
    assert_int_equal(tg_ttl_cache_count(c), 1);
    assert_int_equal(get(c, "a", 100, 95), 2);
    value *v = tg_ttl_cache_get(c, "a", 1, 100, 1000);
    assert_string_equal(v->text, "v2");
    tg_ttl_cache_remove(c, "a", 1);
    tg_ttl_cache_remove(c, "never", 5);
    assert_int_equal(get(c, "a", 100, 1000), -1);
    /* Keys are bytes with a length: "ab" and "a" are different keys, as are prefixes. */
    put(c, "ab", 5, 0);
    put(c, "a", 6, 0);
    assert_int_equal(get(c, "ab", 1, 1000), 5);
    assert_int_equal(get(c, "a", 1, 1000), 6);
    tg_ttl_cache_clear(c);
    assert_int_equal(tg_ttl_cache_count(c), 0);
    assert_int_equal(get(c, "ab", 1, 1000), -1);
    /* Too long a key is refused, never truncated into another key. */
    char big[TG_TTL_CACHE_KEY_MAX + 2];
    memset(big, 'k', sizeof(big));
    value x = {0};
    assert_int_equal(tg_ttl_cache_put(c, big, sizeof(big), &x, 0), TG_EINVAL);
    assert_null(tg_ttl_cache_get(c, big, sizeof(big), 0, 1000));
    assert_int_equal(tg_ttl_cache_put(c, big, TG_TTL_CACHE_KEY_MAX, &x, 0), 0);
    tg_ttl_cache_free(c);
}

static void test_lru_eviction(void **state)
{
    (void)state;
    tg_ttl_cache *c = tg_ttl_cache_new(3, sizeof(value));
    put(c, "a", 1, 0);
    put(c, "b", 2, 0);
    put(c, "c", 3, 0);
    assert_int_equal(get(c, "a", 1, 1000), 1); /* a is now the most recent */
    put(c, "d", 4, 2);                         /* evicts b, the least recently used */
    assert_int_equal(tg_ttl_cache_count(c), 3);
    assert_int_equal(get(c, "b", 3, 1000), -1);
    assert_int_equal(get(c, "a", 3, 1000), 1);
    assert_int_equal(get(c, "c", 3, 1000), 3);
    assert_int_equal(get(c, "d", 3, 1000), 4);
    put(c, "c", 33, 4); /* replacing refreshes its place: a goes next */
    put(c, "e", 5, 5);
    assert_int_equal(get(c, "a", 6, 1000), -1);
    assert_int_equal(get(c, "c", 6, 1000), 33);
    tg_ttl_cache_free(c);
}

static void test_many_keys_stay_bounded(void **state)
{
    (void)state;
    tg_ttl_cache *c = tg_ttl_cache_new(100, sizeof(value));
    char key[32];
    for (int i = 0; i < 100000; i++) {
        snprintf(key, sizeof(key), "tenant-%d", i);
        put(c, key, i, (uint64_t)i);
        assert_true(tg_ttl_cache_count(c) <= 100);
    }
    /* Exactly the last 100 remain. */
    int found = 0;
    for (int i = 0; i < 100000; i++) {
        snprintf(key, sizeof(key), "tenant-%d", i);
        int n = get(c, key, 100000, 1000000);
        if (n >= 0) {
            assert_int_equal(n, i);
            assert_true(i >= 99900);
            found++;
        }
    }
    assert_int_equal(found, 100);
    tg_ttl_cache_free(c);
    tg_ttl_cache_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ttl),
        cmocka_unit_test(test_replace_and_remove),
        cmocka_unit_test(test_lru_eviction),
        cmocka_unit_test(test_many_keys_stay_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
