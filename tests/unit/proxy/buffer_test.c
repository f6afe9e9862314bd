/*
 * Tests for proxy/buffer.c: pooled chunks are reused up to the pool's bound,
 * oversized chunks are freed, references keep a chunk alive, and tg_buf grows.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/buffer.h"
#include "proxy/error.h"

static void chunks_are_reused(void **state)
{
    (void)state;
    tg_chunk_pool pool;
    tg_chunk_pool_init(&pool, 2);
    tg_chunk *a = tg_chunk_get(&pool, 0);
    assert_non_null(a);
    assert_int_equal(a->cap, TG_CHUNK_SIZE);
    assert_int_equal(pool.live, 1);
    tg_chunk_unref(a);
    assert_int_equal(pool.live, 0);
    assert_int_equal(pool.n_free, 1);
    tg_chunk *b = tg_chunk_get(&pool, 100);
    assert_ptr_equal(a, b); /* from the free list */
    tg_chunk_unref(b);
    tg_chunk_pool_destroy(&pool);
}

static void pool_is_bounded(void **state)
{
    (void)state;
    tg_chunk_pool pool;
    tg_chunk_pool_init(&pool, 2);
    tg_chunk *c[5];
    for (int i = 0; i < 5; i++)
        c[i] = tg_chunk_get(&pool, 0);
    for (int i = 0; i < 5; i++)
        tg_chunk_unref(c[i]);
    assert_int_equal(pool.n_free, 2);
    assert_int_equal(pool.live, 0);
    tg_chunk_pool_destroy(&pool);
}

static void oversized_chunks_are_not_kept(void **state)
{
    (void)state;
    tg_chunk_pool pool;
    tg_chunk_pool_init(&pool, 8);
    tg_chunk *big = tg_chunk_get(&pool, 10 * TG_CHUNK_SIZE);
    assert_non_null(big);
    assert_true(big->cap >= 10 * TG_CHUNK_SIZE);
    memset(big->data, 0xab, big->cap); /* ASan: the whole capacity is usable */
    tg_chunk_unref(big);
    assert_int_equal(pool.n_free, 0);
    tg_chunk_pool_destroy(&pool);
}

static void references_keep_chunks_alive(void **state)
{
    (void)state;
    tg_chunk_pool pool;
    tg_chunk_pool_init(&pool, 0);
    tg_chunk *a = tg_chunk_get(&pool, 0);
    tg_chunk_ref(a);
    tg_chunk_unref(a);
    assert_int_equal(pool.live, 1);
    a->data[0] = 1; /* still ours */
    tg_chunk_unref(a);
    assert_int_equal(pool.live, 0);
    tg_chunk_pool_destroy(&pool);
}

static void buf_grows(void **state)
{
    (void)state;
    tg_buf b = {0};
    for (int i = 0; i < 10000; i++)
        assert_int_equal(tg_buf_append(&b, "0123456789", 10), 0);
    assert_int_equal(b.len, 100000);
    assert_memory_equal(b.data + 99990, "0123456789", 10);
    assert_int_equal(tg_buf_append(&b, "", 0), 0);
    tg_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(chunks_are_reused),
        cmocka_unit_test(pool_is_bounded),
        cmocka_unit_test(oversized_chunks_are_not_kept),
        cmocka_unit_test(references_keep_chunks_alive),
        cmocka_unit_test(buf_grows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
