/* proxy/ring.c: growing a full, wrapped FIFO ring keeps its elements in order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "proxy/ring.h"

static void test_grows_wrapped_ring_in_order(void **state)
{
    (void)state;
    int *ring = NULL;
    size_t cap = 0, head = 0, len = 0;
    int next_in = 0, next_out = 0;
    /* push 3, pop 2, push 5: the ring of 4 wraps, then must double */
    for (int round = 0; round < 200; round++) {
        int pushes = round % 2 ? 5 : 3, pops = round % 2 ? 3 : 2;
        for (int i = 0; i < pushes; i++) {
            assert_int_equal(tg_ring_reserve((void **)&ring, sizeof(*ring), &cap, &head, len, 4),
                             0);
            assert_true(len < cap);
            ring[(head + len) % cap] = next_in++;
            len++;
        }
        for (int i = 0; i < pops; i++) {
            assert_int_equal(ring[head], next_out++);
            head = (head + 1) % cap;
            len--;
        }
    }
    while (len) {
        assert_int_equal(ring[head], next_out++);
        head = (head + 1) % cap;
        len--;
    }
    assert_int_equal(next_in, next_out);
    free(ring);
}

static void test_first_reserve_allocates_min_cap(void **state)
{
    (void)state;
    uint64_t *ring = NULL;
    size_t cap = 0, head = 0;
    assert_int_equal(tg_ring_reserve((void **)&ring, sizeof(*ring), &cap, &head, 0, 16), 0);
    assert_non_null(ring);
    assert_int_equal(cap, 16);
    uint64_t *same = ring;
    assert_int_equal(tg_ring_reserve((void **)&ring, sizeof(*ring), &cap, &head, 15, 16), 0);
    assert_ptr_equal(ring, same); /* room left: nothing moves */
    free(ring);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grows_wrapped_ring_in_order),
        cmocka_unit_test(test_first_reserve_allocates_min_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
