/*
 * Tests for proxy/token_bucket.c: a bucket of `burst` tokens refilled at `rate`
 * per second, in GCRA form, fed with explicit times.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>

#include "proxy/token_bucket.h"

#define MS 1000000LL
#define S 1000000000LL

/* How many of n messages at time t pass. */
static int take_n(tg_token_bucket *b, tg_token_bucket_rate r, int64_t t, int n)
{
    int ok = 0;
    for (int i = 0; i < n; i++)
        ok += tg_token_bucket_take(b, r, t);
    return ok;
}

static void test_rate_make(void **state)
{
    (void)state;
    tg_token_bucket_rate r = tg_token_bucket_rate_make(0, 0);
    assert_int_equal(r.interval_ns, 0); /* unlimited */
    r = tg_token_bucket_rate_make(10, 0);
    assert_int_equal(r.interval_ns, 100 * MS);
    assert_int_equal(r.tolerance_ns, 9 * 100 * MS); /* burst defaults to one second's worth */
    r = tg_token_bucket_rate_make(10, 1);
    assert_int_equal(r.tolerance_ns, 0);
    r = tg_token_bucket_rate_make(2000000000u, 0); /* faster than 1/ns: clamped, no zero */
    assert_int_equal(r.interval_ns, 1);
    r = tg_token_bucket_rate_make(1, 100000000); /* the largest burst: no overflow */
    assert_true(r.tolerance_ns > 0);
}

static void test_unlimited(void **state)
{
    (void)state;
    tg_token_bucket b;
    tg_token_bucket_init(&b);
    assert_int_equal(take_n(&b, tg_token_bucket_rate_make(0, 0), 1, 100000), 100000);
}

static void test_burst_then_rate(void **state)
{
    (void)state;
    tg_token_bucket b;
    tg_token_bucket_init(&b);
    tg_token_bucket_rate r = tg_token_bucket_rate_make(10, 5);
    int64_t t = 1000 * S;
    /* A full bucket lets the burst through at once, and not one more. */
    assert_int_equal(take_n(&b, r, t, 20), 5);
    assert_false(tg_token_bucket_take(&b, r, t + 99 * MS));
    assert_true(tg_token_bucket_wait_ns(&b, r, t + 99 * MS) > 0);
    /* One token per 100 ms afterwards. */
    assert_true(tg_token_bucket_take(&b, r, t + 100 * MS));
    assert_false(tg_token_bucket_take(&b, r, t + 150 * MS));
    assert_true(tg_token_bucket_take(&b, r, t + 200 * MS));
    assert_int_equal(tg_token_bucket_wait_ns(&b, r, t + 250 * MS), 50 * MS);
    /* Over a long stretch at full speed the rate holds: 10 per second. */
    int64_t start = t + 300 * MS;
    int passed = 0;
    for (int64_t now = start; now < start + 10 * S; now += MS)
        passed += tg_token_bucket_take(&b, r, now);
    assert_in_range(passed, 99, 101);
    /* Idle long enough, the bucket is full again, never fuller. */
    assert_int_equal(take_n(&b, r, start + 100 * S, 20), 5);
}

static void test_burst_one(void **state)
{
    (void)state;
    tg_token_bucket b;
    tg_token_bucket_init(&b);
    tg_token_bucket_rate r = tg_token_bucket_rate_make(1, 1);
    assert_true(tg_token_bucket_take(&b, r, 5 * S));
    assert_false(tg_token_bucket_take(&b, r, 5 * S + 999 * MS));
    assert_true(tg_token_bucket_take(&b, r, 6 * S));
}

static void test_changed_rate(void **state)
{
    (void)state;
    /* A bucket shared by sessions keeps its state when the registry changes the rate: what
     * was taken stays owed (as time), and the bucket is never fuller than its new size. */
    tg_token_bucket b;
    tg_token_bucket_init(&b);
    int64_t t = 10 * S;
    assert_int_equal(take_n(&b, tg_token_bucket_rate_make(2, 2), t, 10), 2); /* owes 1 s */
    tg_token_bucket_rate fast = tg_token_bucket_rate_make(100, 100);
    assert_int_equal(take_n(&b, fast, t, 200), 0);
    assert_int_equal(take_n(&b, fast, t + 10 * MS, 200), 1);
    assert_int_equal(take_n(&b, fast, t + 2 * S, 200), 100);
}

typedef struct {
    tg_token_bucket *b;
    int passed;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *a = p;
    tg_token_bucket_rate r = tg_token_bucket_rate_make(1000, 1000);
    for (int i = 0; i < 100000; i++)
        a->passed += tg_token_bucket_take(a->b, r, 42 * S);
    return NULL;
}

static void test_threads_share_one_bucket(void **state)
{
    (void)state;
    /* Four threads at one instant: exactly the burst passes, whatever the interleaving. */
    tg_token_bucket b;
    tg_token_bucket_init(&b);
    pthread_t t[4];
    worker_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (worker_arg){&b, 0};
        assert_int_equal(pthread_create(&t[i], NULL, worker, &a[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        total += a[i].passed;
    }
    assert_int_equal(total, 1000);
}

/* n tokens at once pass only when the last of them would pass alone; none are taken otherwise. */
static void test_take_n_all_or_none(void **state)
{
    (void)state;
    tg_token_bucket_rate r = tg_token_bucket_rate_make(10, 5); /* 100 ms apart, 5 at once */
    tg_token_bucket b;
    tg_token_bucket_init(&b);
    int64_t t = 10 * S;
    assert_true(tg_token_bucket_take_n(&b, r, t, 3));
    assert_false(tg_token_bucket_take_n(&b, r, t, 3)); /* 2 left: none taken */
    assert_true(tg_token_bucket_take_n(&b, r, t, 2));
    assert_int_equal(take_n(&b, r, t, 1), 0);
    /* 300 ms later 3 have come back, exactly as for single takes */
    assert_false(tg_token_bucket_take_n(&b, r, t + 300 * MS, 4));
    assert_true(tg_token_bucket_take_n(&b, r, t + 300 * MS, 3));
    assert_int_equal(take_n(&b, r, t + 300 * MS, 1), 0);
    /* unlimited */
    assert_true(tg_token_bucket_take_n(&b, tg_token_bucket_rate_make(0, 0), t, 1000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rate_make),          cmocka_unit_test(test_unlimited),
        cmocka_unit_test(test_burst_then_rate),    cmocka_unit_test(test_burst_one),
        cmocka_unit_test(test_changed_rate),       cmocka_unit_test(test_threads_share_one_bucket),
        cmocka_unit_test(test_take_n_all_or_none),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
