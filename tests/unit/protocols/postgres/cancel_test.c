/*
 * Tests for protocols/postgres/cancel.c: register / lookup / unregister, keys
 * confined to their listener, growth and shrinkage over many sessions, and
 * four threads registering, looking up and unregistering for a second:
 *
 *   thread i: register(listener-i, backend {i, n}) -> proxy
 *             lookup(listener-i, proxy) == {i, n}; lookup(listener-(i+1), proxy) fails
 *             ... keep up to 64 live, unregister the oldest ...
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "protocols/postgres/cancel.h"
#include "proxy/error.h"

static void register_lookup_unregister(void **state)
{
    (void)state;
    tg_pg_cancel_key backend = {.pid = 4242, .key = -17};
    tg_pg_cancel_key proxy = {0, 0}, got = {0, 0};

    assert_int_equal(tg_pg_cancel_register("pg-main", backend, &proxy), 0);
    assert_true(proxy.pid > 0);
    assert_true(tg_pg_cancel_lookup("pg-main", proxy, &got));
    assert_int_equal(got.pid, 4242);
    assert_int_equal(got.key, -17);

    tg_pg_cancel_unregister(proxy);
    assert_false(tg_pg_cancel_lookup("pg-main", proxy, &got));
    tg_pg_cancel_unregister(proxy); /* twice: ignored */
}

static void other_listener_fails(void **state)
{
    (void)state;
    tg_pg_cancel_key backend = {.pid = 1, .key = 2};
    tg_pg_cancel_key proxy, got = {0, 0};

    assert_int_equal(tg_pg_cancel_register("tenant-a", backend, &proxy), 0);
    assert_false(tg_pg_cancel_lookup("tenant-b", proxy, &got));
    assert_false(tg_pg_cancel_lookup("tenant-", proxy, &got));   /* prefix */
    assert_false(tg_pg_cancel_lookup("tenant-aa", proxy, &got)); /* extension */
    assert_false(tg_pg_cancel_lookup("", proxy, &got));
    assert_int_equal(got.pid, 0);
    assert_true(tg_pg_cancel_lookup("tenant-a", proxy, &got));
    tg_pg_cancel_unregister(proxy);
}

static void unknown_key_fails(void **state)
{
    (void)state;
    tg_pg_cancel_key backend = {.pid = 7, .key = 8};
    tg_pg_cancel_key proxy, got;

    assert_false(tg_pg_cancel_lookup("l", (tg_pg_cancel_key){.pid = 1, .key = 1}, &got));
    assert_int_equal(tg_pg_cancel_register("l", backend, &proxy), 0);
    tg_pg_cancel_key near = proxy;
    near.key ^= 1;
    assert_false(tg_pg_cancel_lookup("l", near, &got));
    near = proxy;
    near.pid = proxy.pid == 1 ? 2 : proxy.pid - 1;
    assert_false(tg_pg_cancel_lookup("l", near, &got));
    assert_false(tg_pg_cancel_lookup("l", (tg_pg_cancel_key){.pid = 0, .key = 0}, &got));
    assert_false(tg_pg_cancel_lookup("l", (tg_pg_cancel_key){.pid = -1, .key = proxy.key}, &got));
    tg_pg_cancel_unregister(near); /* unknown: ignored, the real key survives */
    assert_true(tg_pg_cancel_lookup("l", proxy, &got));
    tg_pg_cancel_unregister(proxy);
}

static void listener_names_are_bounded(void **state)
{
    (void)state;
    char name[65];
    tg_pg_cancel_key proxy, got;
    tg_pg_cancel_key backend = {.pid = 3, .key = 3};

    memset(name, 'n', 63);
    name[63] = '\0'; /* 63 bytes + NUL fits */
    assert_int_equal(tg_pg_cancel_register(name, backend, &proxy), 0);
    assert_true(tg_pg_cancel_lookup(name, proxy, &got));
    name[63] = 'n';
    name[64] = '\0'; /* 64 bytes: would be truncated, so refused */
    assert_false(tg_pg_cancel_lookup(name, proxy, &got));
    tg_pg_cancel_key other;
    assert_int_equal(tg_pg_cancel_register(name, backend, &other), TG_EINVAL);
    assert_int_equal(tg_pg_cancel_register(NULL, backend, &other), TG_EINVAL);
    assert_false(tg_pg_cancel_lookup(NULL, proxy, &got));
    tg_pg_cancel_unregister(proxy);
}

/* Many live keys at once: growth, distinct keys, every one found, then shrink to nothing. */
static void many_live_keys(void **state)
{
    (void)state;
    enum { N = 20000 };
    tg_pg_cancel_key *proxies = calloc(N, sizeof(*proxies));
    assert_non_null(proxies);

    for (int i = 0; i < N; i++) {
        tg_pg_cancel_key backend = {.pid = i + 1, .key = -i};
        assert_int_equal(tg_pg_cancel_register(i % 2 ? "odd" : "even", backend, &proxies[i]), 0);
        assert_true(proxies[i].pid > 0);
    }
    for (int i = 0; i < N; i++) {
        tg_pg_cancel_key got;
        assert_true(tg_pg_cancel_lookup(i % 2 ? "odd" : "even", proxies[i], &got));
        assert_int_equal(got.pid, i + 1);
        assert_int_equal(got.key, -i);
        assert_false(tg_pg_cancel_lookup(i % 2 ? "even" : "odd", proxies[i], &got));
    }
    /* Remove in an interleaved order so backward shifts cross many runs. */
    for (int i = 0; i < N; i += 3)
        tg_pg_cancel_unregister(proxies[i]);
    for (int i = 0; i < N; i++) {
        tg_pg_cancel_key got;
        assert_int_equal(tg_pg_cancel_lookup(i % 2 ? "odd" : "even", proxies[i], &got), i % 3 != 0);
        if (i % 3 != 0)
            assert_int_equal(got.pid, i + 1);
    }
    for (int i = 0; i < N; i++)
        if (i % 3 != 0)
            tg_pg_cancel_unregister(proxies[i]);
    for (int i = 0; i < N; i++) {
        tg_pg_cancel_key got;
        assert_false(tg_pg_cancel_lookup(i % 2 ? "odd" : "even", proxies[i], &got));
    }
    free(proxies);
}

/* 100k sessions come and go; under ASan this shows nothing is left behind. */
static void register_unregister_cycles(void **state)
{
    (void)state;
    tg_pg_cancel_key keep;
    assert_int_equal(tg_pg_cancel_register("keep", (tg_pg_cancel_key){9, 9}, &keep), 0);
    for (int i = 0; i < 100000; i++) {
        tg_pg_cancel_key proxy, got;
        tg_pg_cancel_key backend = {.pid = i + 1, .key = i};
        assert_int_equal(tg_pg_cancel_register("cycle", backend, &proxy), 0);
        assert_true(tg_pg_cancel_lookup("cycle", proxy, &got));
        assert_int_equal(got.pid, i + 1);
        tg_pg_cancel_unregister(proxy);
        assert_false(tg_pg_cancel_lookup("cycle", proxy, &got));
    }
    tg_pg_cancel_key got;
    assert_true(tg_pg_cancel_lookup("keep", keep, &got));
    assert_int_equal(got.key, 9);
    tg_pg_cancel_unregister(keep);
}

/* ---- four threads for a second ---- */

enum { THREADS = 4, LIVE = 64 };

typedef struct worker {
    int id;
    long ops;
    long errors; /* cmocka asserts belong to the main thread: count instead */
} worker;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    char mine[16], theirs[16];
    snprintf(mine, sizeof(mine), "listener-%d", w->id);
    snprintf(theirs, sizeof(theirs), "listener-%d", (w->id + 1) % THREADS);

    tg_pg_cancel_key live[LIVE];
    int32_t live_backend_key[LIVE];
    int n = 0;
    int32_t seq = 0;
    double end = now() + 1.0;

    while (now() < end) {
        if (n == LIVE) { /* retire the oldest half */
            for (int i = 0; i < LIVE / 2; i++) {
                tg_pg_cancel_unregister(live[i]);
                tg_pg_cancel_key got;
                if (tg_pg_cancel_lookup(mine, live[i], &got))
                    w->errors++;
            }
            memmove(live, live + LIVE / 2, sizeof(live[0]) * (LIVE / 2));
            memmove(live_backend_key, live_backend_key + LIVE / 2,
                    sizeof(live_backend_key[0]) * (LIVE / 2));
            n = LIVE / 2;
        }
        tg_pg_cancel_key backend = {.pid = w->id + 1, .key = seq};
        if (tg_pg_cancel_register(mine, backend, &live[n]) != 0) {
            w->errors++;
            continue;
        }
        live_backend_key[n++] = seq++;
        /* Every live key of this thread still resolves to its own backend key. */
        for (int i = 0; i < n; i++) {
            tg_pg_cancel_key got;
            if (!tg_pg_cancel_lookup(mine, live[i], &got) || got.pid != w->id + 1 ||
                got.key != live_backend_key[i])
                w->errors++;
            if (tg_pg_cancel_lookup(theirs, live[i], &got))
                w->errors++;
        }
        w->ops++;
    }
    for (int i = 0; i < n; i++)
        tg_pg_cancel_unregister(live[i]);
    return NULL;
}

static void concurrent_threads(void **state)
{
    (void)state;
    pthread_t threads[THREADS];
    worker workers[THREADS];
    for (int i = 0; i < THREADS; i++) {
        workers[i] = (worker){.id = i};
        assert_int_equal(pthread_create(&threads[i], NULL, worker_main, &workers[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(workers[i].errors, 0);
        assert_true(workers[i].ops > 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(register_lookup_unregister),
        cmocka_unit_test(other_listener_fails),
        cmocka_unit_test(unknown_key_fails),
        cmocka_unit_test(listener_names_are_bounded),
        cmocka_unit_test(many_live_keys),
        cmocka_unit_test(register_unregister_cycles),
        cmocka_unit_test(concurrent_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
