/*
 * Tests for proxy/sliding_window.c: the estimate, taking under a limit, rolling
 * into a new second, and totals from the registry (other processes' counts).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "proxy/sliding_window.h"

static void test_estimate(void **state)
{
    (void)state;
    /* At the start of a window the previous one counts whole, at its end not at all. */
    assert_int_equal(tg_sliding_window_estimate(100, 7, 0, 1000), 107);
    assert_int_equal(tg_sliding_window_estimate(100, 7, 250, 1000), 82);
    assert_int_equal(tg_sliding_window_estimate(100, 7, 500, 1000), 57);
    assert_int_equal(tg_sliding_window_estimate(100, 7, 999, 1000), 7);
    assert_int_equal(tg_sliding_window_estimate(100, 7, 1000, 1000), 7);
    assert_int_equal(tg_sliding_window_estimate(100, 7, 5000, 1000), 7); /* clamped */
    assert_int_equal(tg_sliding_window_estimate(3, 0, 500, 1000), 1);    /* rounds down */
    assert_int_equal(tg_sliding_window_estimate(5, 5, 0, 0), 5);
    /* Large counts do not overflow. */
    uint64_t big = (uint64_t)1 << 50;
    assert_int_equal(tg_sliding_window_estimate(big, 0, 500, 1000), big / 2);
}

static uint64_t take_n(tg_sliding_window *w, uint64_t limit, uint64_t now, int n)
{
    uint64_t ok = 0;
    for (int i = 0; i < n; i++)
        ok += tg_sliding_window_take(w, limit, now);
    return ok;
}

static void test_take_local(void **state)
{
    (void)state;
    tg_sliding_window w;
    uint64_t t = 1000000, window; /* second 1000 */
    tg_sliding_window_init(&w, t);
    assert_int_equal(atomic_load(&w.index), 1000);
    assert_int_equal(take_n(&w, 0, t, 50), 50); /* no limit */
    tg_sliding_window_init(&w, t);
    assert_int_equal(take_n(&w, 10, t + 5, 20), 10);
    assert_int_equal(tg_sliding_window_flush(&w, t + 10, &window), 10);
    assert_int_equal(window, 1000);
    assert_int_equal(atomic_load(&w.cur), 10); /* ours, until the registry says more */
    assert_int_equal(take_n(&w, 10, t + 40, 5), 0);
    /* A state made long ago and never flushed: what it admitted counts in now's window. */
    tg_sliding_window_init(&w, 0);
    assert_int_equal(take_n(&w, 10, t + 5, 20), 10);
    assert_int_equal(tg_sliding_window_flush(&w, t + 10, &window), 10);
    assert_int_equal(window, 1000);
    assert_int_equal(atomic_load(&w.index), 1000);
    assert_int_equal(atomic_load(&w.prev), 0);
    assert_int_equal(atomic_load(&w.cur), 10);
    assert_int_equal(take_n(&w, 10, t + 20, 20), 0);
}

static void test_slides_into_next_second(void **state)
{
    (void)state;
    tg_sliding_window w;
    uint64_t t = 2000000, window;
    tg_sliding_window_init(&w, t); /* at second 2000 */
    assert_int_equal(take_n(&w, 100, t + 100, 100), 100);
    /* Half-way through the next second, before the flusher rolled the state: the unflushed
     * 100 count whole (which window they belong to is not known yet). */
    assert_int_equal(take_n(&w, 100, t + 1500, 10), 0);
    /* The flush rolls: they belonged to second 2000, and weigh 50 now. */
    assert_int_equal(tg_sliding_window_flush(&w, t + 1500, &window), 100);
    assert_int_equal(window, 2000);
    assert_int_equal(atomic_load(&w.index), 2001);
    assert_int_equal(atomic_load(&w.prev), 100);
    assert_int_equal(atomic_load(&w.cur), 0);
    assert_int_equal(take_n(&w, 100, t + 1500, 100), 50);
    assert_int_equal(tg_sliding_window_flush(&w, t + 1600, &window), 50);
    assert_int_equal(window, 2001);
    /* At 1.9 s the previous second weighs 10 %: 10 + 50, so 40 more pass. */
    assert_int_equal(take_n(&w, 100, t + 1900, 100), 40);
    /* Two seconds later, with no flush in between (registry down), what was never
     * flushed still counts whole (the stricter view); the second before is gone. */
    assert_int_equal(tg_sliding_window_flush(&w, t + 3950, &window), 40);
    assert_int_equal(window, 2003);
    assert_int_equal(atomic_load(&w.prev), 0);
    assert_int_equal(take_n(&w, 100, t + 3950, 200), 60);
    /* Flushed in time from then on, two seconds later it is all gone. */
    assert_int_equal(tg_sliding_window_flush(&w, t + 4950, &window), 60);
    assert_int_equal(tg_sliding_window_flush(&w, t + 5950, &window), 0);
    assert_int_equal(take_n(&w, 100, t + 5999, 200), 100);
}

static void test_registry_totals(void **state)
{
    (void)state;
    tg_sliding_window w;
    uint64_t t = 5000000, window;
    tg_sliding_window_init(&w, t);
    assert_int_equal(take_n(&w, 100, t + 10, 10), 10);
    assert_int_equal(tg_sliding_window_flush(&w, t + 100, &window), 10);
    /* Other processes counted 80 more in this second. */
    tg_sliding_window_observe(&w, window, 90);
    assert_int_equal(atomic_load(&w.cur), 90);
    assert_int_equal(take_n(&w, 100, t + 200, 50), 10);
    /* An older, smaller total does not lower what is known. */
    tg_sliding_window_observe(&w, window, 20);
    assert_int_equal(atomic_load(&w.cur), 90);
    /* A total for the previous second raises prev; one for a window long gone is ignored. */
    (void)tg_sliding_window_flush(&w, t + 1000, &window);
    assert_int_equal(atomic_load(&w.prev), 100);
    tg_sliding_window_observe(&w, 5000, 400);
    assert_int_equal(atomic_load(&w.prev), 400);
    tg_sliding_window_observe(&w, 4000, 9999);
    assert_int_equal(atomic_load(&w.prev), 400);
    assert_int_equal(atomic_load(&w.cur), 0);
    /* 400 in the last second, 1 ms into this one: nothing passes under 100. */
    assert_int_equal(take_n(&w, 100, t + 1001, 10), 0);
}

/* n messages at once stay under the limit all together, or none is counted. */
static void test_take_n_all_or_none(void **state)
{
    (void)state;
    tg_sliding_window w;
    uint64_t t = 1000000;
    tg_sliding_window_init(&w, t);
    assert_true(tg_sliding_window_take_n(&w, 10, t, 6));
    assert_false(tg_sliding_window_take_n(&w, 10, t, 5)); /* 4 left: none counted */
    assert_true(tg_sliding_window_take_n(&w, 10, t, 4));
    assert_int_equal(take_n(&w, 10, t, 1), 0);
    assert_int_equal(atomic_load(&w.unflushed), 10);
    assert_true(tg_sliding_window_take_n(&w, 0, t, 100)); /* no limit */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_estimate),           cmocka_unit_test(test_take_local),
        cmocka_unit_test(test_take_n_all_or_none), cmocka_unit_test(test_slides_into_next_second),
        cmocka_unit_test(test_registry_totals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
