/*
 * Unit tests for proxy/arena.c.
 *
 *   caller's block --> aligned, used first, never freed by the arena
 *   allocations --> 16-byte aligned, disjoint, writable (AddressSanitizer checks the bounds)
 *   past the caller's block --> malloc'd blocks, big requests in one block, release frees all
 *   ceiling --> over_cap, sticky; absurd sizes --> over_cap, never a wrapped size
 *   release --> the arena starts again from init
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "proxy/arena.h"

static bool aligned16(const void *p)
{
    return ((uintptr_t)p & 15) == 0;
}

static bool inside(const void *p, size_t n, const void *base, size_t len)
{
    uintptr_t a = (uintptr_t)p, b = (uintptr_t)base;
    return a >= b && n <= len && a - b <= len - n;
}

static void test_caller_block_first(void **state)
{
    (void)state;
    unsigned char buf[256 + 15] = {0};
    /* a misaligned start: the arena aligns it */
    unsigned char *start = buf + (aligned16(buf + 1) ? 2 : 1);
    tg_arena a;
    tg_arena_init(&a, start, 200, 0);
    void *p = tg_arena_alloc(&a, 1);
    void *q = tg_arena_alloc(&a, 17);
    assert_non_null(p);
    assert_non_null(q);
    assert_true(aligned16(p));
    assert_true(aligned16(q));
    assert_true(inside(p, 16, start, 200));
    assert_true(inside(q, 32, start, 200));
    assert_ptr_equal((unsigned char *)q, (unsigned char *)p + 16);
    assert_null(a.blocks);
    assert_int_equal(a.used, 48);
    /* what no longer fits goes to a malloc'd block */
    void *r = tg_arena_alloc(&a, 200);
    assert_non_null(r);
    assert_false(inside(r, 1, start, 200));
    assert_non_null(a.blocks);
    memset(r, 0xab, 200);
    assert_false(tg_arena_failed(&a));
    tg_arena_release(&a);
    assert_null(a.blocks);
}

static void test_no_caller_block(void **state)
{
    (void)state;
    tg_arena a;
    tg_arena_init(&a, NULL, 0, 0);
    /* a block too small to align into counts as none */
    unsigned char raw[32];
    unsigned char *odd = raw;
    while (((uintptr_t)odd & 15) != 1)
        odd++;
    tg_arena b;
    tg_arena_init(&b, odd, 8, 0);
    assert_int_equal(b.left, 0);
    assert_null(b.cur);
    unsigned char *prev = NULL;
    size_t total = 0;
    for (int i = 0; i < 2000; i++) {
        size_t n = (size_t)(i % 97) + 1;
        unsigned char *p = tg_arena_alloc(&a, n);
        assert_non_null(p);
        assert_true(aligned16(p));
        memset(p, i & 0xff, n);
        if (prev)
            assert_true(p != prev);
        prev = p;
        total += (n + 15) & ~(size_t)15;
    }
    assert_int_equal(a.used, total);
    /* one request larger than any block so far: a block of its own size class */
    unsigned char *big = tg_arena_alloc(&a, (size_t)1 << 20);
    assert_non_null(big);
    memset(big, 1, (size_t)1 << 20);
    tg_arena_release(&a);
    assert_null(a.blocks);
    assert_null(a.cur);
    assert_int_equal(a.left, 0);
}

static void test_values_survive_growth(void **state)
{
    (void)state;
    unsigned char buf[64];
    tg_arena a;
    tg_arena_init(&a, buf, sizeof(buf), 0);
    uint32_t *v[500];
    for (uint32_t i = 0; i < 500; i++) {
        v[i] = tg_arena_alloc(&a, 100 * sizeof(uint32_t));
        assert_non_null(v[i]);
        for (uint32_t k = 0; k < 100; k++)
            v[i][k] = i * 1000 + k;
    }
    for (uint32_t i = 0; i < 500; i++)
        for (uint32_t k = 0; k < 100; k++)
            assert_int_equal(v[i][k], i * 1000 + k);
    tg_arena_release(&a);
}

static void test_ceiling(void **state)
{
    (void)state;
    tg_arena a;
    tg_arena_init(&a, NULL, 0, 64);
    assert_non_null(tg_arena_alloc(&a, 30)); /* 32 */
    assert_non_null(tg_arena_alloc(&a, 32)); /* 64: exactly the ceiling */
    assert_false(tg_arena_failed(&a));
    assert_null(tg_arena_alloc(&a, 1));
    assert_true(a.over_cap);
    assert_false(a.nomem);
    assert_true(tg_arena_failed(&a));
    /* sticky: nothing more, however small */
    assert_null(tg_arena_alloc(&a, 0));
    assert_int_equal(a.used, 64);
    tg_arena_release(&a);

    /* released, the arena starts again */
    tg_arena_init(&a, NULL, 0, 64);
    assert_false(tg_arena_failed(&a));
    assert_non_null(tg_arena_alloc(&a, 64));
    tg_arena_release(&a);
}

static void test_absurd_sizes(void **state)
{
    (void)state;
    static const size_t sizes[] = {SIZE_MAX, SIZE_MAX - 15, SIZE_MAX / 2, SIZE_MAX / 4 + 1};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        tg_arena a;
        tg_arena_init(&a, NULL, 0, 0);
        /* refused as a property of the input, never rounded up past zero */
        assert_null(tg_arena_alloc(&a, sizes[i]));
        assert_true(a.over_cap);
        assert_false(a.nomem);
        assert_null(a.blocks);
        tg_arena_release(&a);
    }
}

static void test_zero_size(void **state)
{
    (void)state;
    tg_arena a;
    tg_arena_init(&a, NULL, 0, 0);
    void *p = tg_arena_alloc(&a, 0);
    void *q = tg_arena_alloc(&a, 1);
    assert_non_null(q);
    /* a zero-byte allocation takes no room */
    if (p)
        assert_true(aligned16(p));
    assert_int_equal(a.used, 16);
    assert_false(tg_arena_failed(&a));
    tg_arena_release(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_caller_block_first),    cmocka_unit_test(test_no_caller_block),
        cmocka_unit_test(test_values_survive_growth), cmocka_unit_test(test_ceiling),
        cmocka_unit_test(test_absurd_sizes),          cmocka_unit_test(test_zero_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
