/*
 * Tests for proxy/tenant_record.c: registry hashes parsed fail-closed, limits
 * merged from defaults, the listener and the hash, verdicts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "proxy/tenant_record.h"

/* Parses "field", "value", ... (NULL-terminated). */
static tg_tenant_record parse(const char *first, ...)
{
    tg_slice f[16], v[16];
    size_t n = 0;
    va_list ap;
    va_start(ap, first);
    for (const char *k = first; k && n < 16; k = va_arg(ap, const char *)) {
        f[n] = tg_slice_str(k);
        v[n] = tg_slice_str(va_arg(ap, const char *));
        n++;
    }
    va_end(ap);
    tg_tenant_record r;
    tg_tenant_record_parse(f, v, n, &r);
    return r;
}

static void test_parse(void **state)
{
    (void)state;
    tg_tenant_record r = parse(NULL);
    assert_int_equal(r.status, TG_TENANT_UNKNOWN);
    r = parse("status", "active", NULL);
    assert_int_equal(r.status, TG_TENANT_ACTIVE);
    assert_int_equal(r.overrides, 0);
    assert_string_equal(r.slug, "");
    r = parse("status", "suspended", "slug", "acme-eu", "plan", "gold", NULL);
    assert_int_equal(r.status, TG_TENANT_SUSPENDED);
    assert_string_equal(r.slug, "acme-eu");
    r = parse("messages_per_second", "50", "status", "active", "max_connections", "0",
              "max_inflight_bytes", "4294967295", NULL);
    assert_int_equal(r.status, TG_TENANT_ACTIVE);
    assert_int_equal(r.overrides, TG_LIMIT_MESSAGES_PER_SECOND | TG_LIMIT_MAX_CONNECTIONS |
                                      TG_LIMIT_MAX_INFLIGHT_BYTES);
    assert_int_equal(r.limits.messages_per_second, 50);
    assert_int_equal(r.limits.max_connections, 0);
    assert_int_equal(r.limits.max_inflight_bytes, UINT32_MAX);
}

static void test_parse_fail_closed(void **state)
{
    (void)state;
    static const char *const bad[][4] = {
        {"slug", "acme", NULL, NULL},                 /* no status */
        {"status", "Active", NULL, NULL},             /* case matters */
        {"status", "active ", NULL, NULL},            /* no trimming */
        {"status", "deleted", NULL, NULL},            /* unknown status */
        {"status", "", NULL, NULL},                   /* empty */
        {"status", "active", "slug", "a.b"},          /* not a slug */
        {"status", "active", "slug", ""},             /* empty slug */
        {"status", "active", "burst", "-1"},          /* signed */
        {"status", "active", "burst", "010"},         /* leading zero */
        {"status", "active", "burst", "4294967296"},  /* > 2^32 - 1 */
        {"status", "active", "burst", "12345678901"}, /* 11 digits */
        {"status", "active", "burst", "1e3"},         /* not decimal */
        {"status", "active", "max_connections", ""},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tg_tenant_record r = bad[i][2] ? parse(bad[i][0], bad[i][1], bad[i][2], bad[i][3], NULL)
                                       : parse(bad[i][0], bad[i][1], NULL);
        if (r.status != TG_TENANT_INVALID)
            fail_msg("case %zu parsed as %d", i, (int)r.status);
        assert_int_equal(r.overrides, 0);
        assert_int_equal(tg_tenant_record_verdict(&r, false), TG_ADMIT_INVALID);
    }
    /* A status with an embedded NUL is not "active". */
    tg_slice f = tg_slice_str("status"), v = {(const uint8_t *)"active\0x", 8};
    tg_tenant_record r;
    tg_tenant_record_parse(&f, &v, 1, &r);
    assert_int_equal(r.status, TG_TENANT_INVALID);
}

static void test_limits(void **state)
{
    (void)state;
    tg_tenant_limits defaults = {.max_connections = 10,
                                 .messages_per_second = 100,
                                 .burst = 200,
                                 .global_messages_per_second = 1000,
                                 .max_inflight_bytes = 1 << 20};
    /* No record (no registry): defaults, with the listener's own connection limit first. */
    tg_tenant_limits l = tg_tenant_record_limits(NULL, &defaults, 0);
    assert_memory_equal(&l, &defaults, sizeof(l));
    l = tg_tenant_record_limits(NULL, &defaults, 3);
    assert_int_equal(l.max_connections, 3);
    /* The hash wins over both. */
    tg_tenant_record r = parse("status", "active", "max_connections", "50", NULL);
    l = tg_tenant_record_limits(&r, &defaults, 3);
    assert_int_equal(l.max_connections, 50);
    assert_int_equal(l.messages_per_second, 100);
    assert_int_equal(l.burst, 200);
    /* A rate without a burst: the default burst (sized for the default rate) is dropped. */
    r = parse("status", "active", "messages_per_second", "5", NULL);
    l = tg_tenant_record_limits(&r, &defaults, 0);
    assert_int_equal(l.messages_per_second, 5);
    assert_int_equal(l.burst, 0);
    r = parse("status", "active", "messages_per_second", "5", "burst", "1",
              "global_messages_per_second", "0", "max_inflight_bytes", "64", NULL);
    l = tg_tenant_record_limits(&r, &defaults, 0);
    assert_int_equal(l.burst, 1);
    assert_int_equal(l.global_messages_per_second, 0); /* 0 in the hash lifts the limit */
    assert_int_equal(l.max_inflight_bytes, 64);
}

static void test_verdict(void **state)
{
    (void)state;
    tg_tenant_record r = parse("status", "active", NULL);
    assert_int_equal(tg_tenant_record_verdict(&r, true), TG_ADMIT_OK);
    r = parse("status", "suspended", NULL);
    assert_int_equal(tg_tenant_record_verdict(&r, false), TG_ADMIT_SUSPENDED);
    r = parse(NULL);
    assert_int_equal(tg_tenant_record_verdict(&r, false), TG_ADMIT_OK);
    assert_int_equal(tg_tenant_record_verdict(&r, true), TG_ADMIT_UNREGISTERED);
    assert_string_equal(tg_tenant_record_verdict_str(TG_ADMIT_SUSPENDED), "tenant suspended");
    assert_string_equal(tg_tenant_record_verdict_str(TG_ADMIT_UNREGISTERED),
                        "tenant not registered");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_fail_closed),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_verdict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
