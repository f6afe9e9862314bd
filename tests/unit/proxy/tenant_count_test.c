/*
 * Tests for proxy/tenant_count.c's per-message check: a session's lease of
 * prepaid messages (tg_tenant_lease) never lets a tenant past its limits, is
 * exact at low rates, and takes many messages per shared update at high ones.
 * Time comes from the batch clock (tg_tenant_clock), so nothing waits.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "proxy/tenant_count.h"

#define S_NS 1000000000LL

static tg_tenant_slot *slot_with(const char *tenant, tg_tenant_limits lim)
{
    tg_tenant_slot *s;
    assert_int_equal(tg_tenant_count_take("l", tenant, &lim, 0, &s), 0);
    return s;
}

/* Messages that pass of n sent at (mono_ns, wall_ms) with lease (NULL: none). */
static int send(tg_tenant_slot *s, tg_tenant_lease *lease, int64_t mono_ns, uint64_t wall_ms, int n)
{
    int ok = 0;
    for (int i = 0; i < n; i++) {
        tg_tenant_clock clk = {mono_ns, wall_ms};
        ok += tg_tenant_count_message(s, lease, &clk) == TG_TENANT_PASS;
    }
    return ok;
}

/* Below 2,000 messages per second a lease is one message: the same count as none. */
static void test_low_rate_is_exact(void **state)
{
    (void)state;
    tg_tenant_slot *s = slot_with("low", (tg_tenant_limits){.messages_per_second = 5, .burst = 5});
    tg_tenant_lease lease = {0};
    assert_int_equal(send(s, &lease, 10 * S_NS, 0, 8), 5);
    assert_int_equal(lease.bucket, 0);
    assert_int_equal(send(s, NULL, 10 * S_NS + S_NS / 5, 0, 3), 1); /* one came back */
    tg_tenant_count_give(s);
}

/* At a high rate two sessions prepay 16 at a time; together they never pass more than the
 * bucket holds, and what they still hold was taken from it. */
static void test_high_rate_leases_share_the_bucket(void **state)
{
    (void)state;
    tg_tenant_slot *s =
        slot_with("high", (tg_tenant_limits){.messages_per_second = 100000, .burst = 1000});
    tg_tenant_lease a = {0}, b = {0};
    int64_t t = 10 * S_NS;
    assert_int_equal(send(s, &a, t, 0, 1), 1);
    assert_int_equal(a.bucket, TG_TENANT_LEASE_MAX - 1);
    int ok = 1;
    for (int i = 0; i < 600; i++)
        ok += send(s, &a, t, 0, 1) + send(s, &b, t, 0, 1);
    assert_int_equal(ok + (int)a.bucket + (int)b.bucket, 1000);
    assert_true(ok >= 1000 - 2 * (TG_TENANT_LEASE_MAX - 1));
    assert_int_equal(send(s, NULL, t, 0, 1), 0);
    tg_tenant_count_give(s);
}

/* The global window's lease holds only within its fixed window (a second). */
static void test_window_lease_ends_with_its_second(void **state)
{
    (void)state;
    tg_tenant_slot *s = slot_with("glob", (tg_tenant_limits){.global_messages_per_second = 100000});
    tg_tenant_lease lease = {0};
    uint64_t ms = 5000000; /* second 5000 */
    assert_int_equal(send(s, &lease, 1, ms, 1), 1);
    assert_int_equal(lease.window, TG_TENANT_LEASE_MAX - 1);
    assert_int_equal(lease.window_index, 5000);
    assert_int_equal(send(s, &lease, 1, ms + 10, 3), 3);
    assert_int_equal(lease.window, TG_TENANT_LEASE_MAX - 4);
    assert_int_equal(send(s, &lease, 1, ms + 1000, 1), 1); /* the next second: a new lease */
    assert_int_equal(lease.window_index, 5001);
    assert_int_equal(lease.window, TG_TENANT_LEASE_MAX - 1);
    tg_tenant_count_give(s);
}

/* A small window limit leases one message at a time: exact. */
static void test_small_window_is_exact(void **state)
{
    (void)state;
    tg_tenant_slot *s = slot_with("small", (tg_tenant_limits){.global_messages_per_second = 10});
    tg_tenant_lease lease = {0};
    assert_int_equal(send(s, &lease, 1, 7000000, 15), 10);
    assert_int_equal(lease.window, 0);
    tg_tenant_count_give(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_low_rate_is_exact),
        cmocka_unit_test(test_high_rate_leases_share_the_bucket),
        cmocka_unit_test(test_window_lease_ends_with_its_second),
        cmocka_unit_test(test_small_window_is_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
