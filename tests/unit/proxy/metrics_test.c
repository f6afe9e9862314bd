/*
 * Unit tests for proxy/metrics.c: shards per (listener, worker), sums across
 * shards, cumulative histogram buckets, label escaping and the rendered text.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/metrics.h"

/* Renders m into a NUL-terminated string the caller frees. */
static char *render(tg_metrics *m)
{
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(tg_metrics_render(m, &out, &len), 0);
    assert_non_null(out);
    assert_int_equal(strlen(out), len);
    return out;
}

/* Asserts that text contains line as a whole line. */
static void assert_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++) {
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return;
    }
    fail_msg("missing line: %s", line);
}

static void same_name_same_shard(void **state)
{
    (void)state;
    tg_metrics *m = tg_metrics_new(4);
    assert_non_null(m);
    tg_listener_stats *a = tg_metrics_listener(m, "pg", "postgres", 1);
    tg_listener_stats *b = tg_metrics_listener(m, "pg", "postgres", 1);
    tg_listener_stats *c = tg_metrics_listener(m, "pg", "postgres", 2);
    tg_listener_stats *d = tg_metrics_listener(m, "redis", "redis", 1);
    assert_non_null(a);
    assert_ptr_equal(a, b);
    assert_ptr_not_equal(a, c);
    assert_ptr_not_equal(a, d);
    /* Shards of different workers never share a cache line. */
    assert_int_equal((uintptr_t)a % 64, 0);
    assert_int_equal((uintptr_t)c % 64, 0);
    assert_null(tg_metrics_listener(m, "pg", "postgres", 4)); /* no such worker */
    /* Many listeners: earlier pointers stay valid while the registry grows. */
    char name[16];
    for (int i = 0; i < 50; i++) {
        snprintf(name, sizeof(name), "l%d", i);
        assert_non_null(tg_metrics_listener(m, name, "redis", 0));
    }
    assert_ptr_equal(tg_metrics_listener(m, "pg", "postgres", 1), a);
    TG_STAT_ADD(a->conns_total, 1);
    tg_metrics_free(m);
}

static void counters_sum_across_shards(void **state)
{
    (void)state;
    tg_metrics *m = tg_metrics_new(3);
    for (uint32_t w = 0; w < 3; w++) {
        tg_listener_stats *s = tg_metrics_listener(m, "pg", "postgres", w);
        TG_STAT_ADD(s->conns_total, 10 + w);
        TG_STAT_ADD(s->conns_open, 2);
        TG_STAT_ADD(s->bytes_client_in, 100);
        TG_STAT_ADD(s->bytes_backend_out, 7);
        TG_STAT_ADD(s->messages_forwarded, 5);
        TG_STAT_ADD(s->messages_rewritten, 1);
        TG_STAT_ADD(s->messages_rejected[TG_REJECT_policy], 3);
        TG_STAT_ADD(s->auth_ok, 4);
        TG_STAT_ADD(s->auth_failed[TG_JWT_EXPIRED], 1);
        TG_STAT_ADD(s->backend_connect_errors, 2);
    }
    TG_STAT_SUB(tg_metrics_listener(m, "pg", "postgres", 0)->conns_open, 1);
    char *text = render(m);
    assert_line(text, "tenantgate_connections_total{listener=\"pg\",protocol=\"postgres\"} 33");
    assert_line(text, "tenantgate_connections_open{listener=\"pg\",protocol=\"postgres\"} 5");
    assert_line(text, "tenantgate_bytes_total{listener=\"pg\",direction=\"client_in\"} 300");
    assert_line(text, "tenantgate_bytes_total{listener=\"pg\",direction=\"client_out\"} 0");
    assert_line(text, "tenantgate_bytes_total{listener=\"pg\",direction=\"backend_out\"} 21");
    assert_line(text, "tenantgate_messages_forwarded_total{listener=\"pg\"} 15");
    assert_line(text, "tenantgate_messages_rewritten_total{listener=\"pg\"} 3");
    assert_line(text, "tenantgate_messages_rejected_total{listener=\"pg\",reason=\"policy\"} 9");
    assert_line(text, "tenantgate_messages_rejected_total{listener=\"pg\",reason=\"too_large\"} 0");
    assert_line(text, "tenantgate_auth_total{listener=\"pg\",result=\"ok\"} 12");
    assert_line(text, "tenantgate_auth_failures_total{listener=\"pg\",reason=\"expired\"} 3");
    assert_line(text, "tenantgate_auth_failures_total{listener=\"pg\",reason=\"bad_signature\"} 0");
    assert_null(strstr(text, "reason=\"ok\""));
    assert_line(text, "tenantgate_backend_connect_errors_total{listener=\"pg\"} 6");
    free(text);
    tg_metrics_free(m);
}

static void histogram_buckets_cumulative(void **state)
{
    (void)state;
    tg_metrics *m = tg_metrics_new(2);
    tg_listener_stats *s0 = tg_metrics_listener(m, "r", "redis", 0);
    tg_listener_stats *s1 = tg_metrics_listener(m, "r", "redis", 1);
    tg_histogram_observe(&s0->backend_connect, 50);       /* <= 100us */
    tg_histogram_observe(&s0->backend_connect, 100);      /* boundary: le="0.0001" */
    tg_histogram_observe(&s1->backend_connect, 101);      /* <= 250us */
    tg_histogram_observe(&s1->backend_connect, 2000000);  /* <= 2.5s */
    tg_histogram_observe(&s1->backend_connect, 99000000); /* +Inf */
    assert_int_equal(atomic_load(&s0->backend_connect.buckets[0]), 2);
    assert_int_equal(atomic_load(&s1->backend_connect.buckets[TG_HIST_BUCKETS]), 1);

    char *text = render(m);
    assert_line(text, "# TYPE tenantgate_backend_connect_seconds histogram");
    assert_line(text, "tenantgate_backend_connect_seconds_bucket{listener=\"r\",le=\"0.0001\"} 2");
    assert_line(text, "tenantgate_backend_connect_seconds_bucket{listener=\"r\",le=\"0.00025\"} 3");
    assert_line(text, "tenantgate_backend_connect_seconds_bucket{listener=\"r\",le=\"1\"} 3");
    assert_line(text, "tenantgate_backend_connect_seconds_bucket{listener=\"r\",le=\"2.5\"} 4");
    assert_line(text, "tenantgate_backend_connect_seconds_bucket{listener=\"r\",le=\"10\"} 4");
    assert_line(text, "tenantgate_backend_connect_seconds_bucket{listener=\"r\",le=\"+Inf\"} 5");
    assert_line(text, "tenantgate_backend_connect_seconds_count{listener=\"r\"} 5");
    assert_line(text, "tenantgate_backend_connect_seconds_sum{listener=\"r\"} 101.000251");
    assert_line(text, "tenantgate_backend_roundtrip_seconds_bucket{listener=\"r\",le=\"+Inf\"} 0");
    assert_line(text, "tenantgate_backend_roundtrip_seconds_sum{listener=\"r\"} 0");

    /* Buckets never decrease along le. */
    const char *p = text;
    uint64_t prev = 0;
    const char *key = "tenantgate_backend_connect_seconds_bucket{";
    while ((p = strstr(p, key)) != NULL) {
        const char *v = strchr(p, '}');
        uint64_t cur = strtoull(v + 2, NULL, 10);
        assert_true(cur >= prev);
        prev = cur;
        p = v;
    }
    assert_int_equal(prev, 5);
    free(text);
    tg_metrics_free(m);
}

/* The command table gauge: absent until a load, then the latest load whatever the worker. */
static void command_table_latest(void **state)
{
    (void)state;
    tg_metrics *m = tg_metrics_new(2);
    tg_listener_stats *r0 = tg_metrics_listener(m, "r", "redis", 0);
    tg_listener_stats *r1 = tg_metrics_listener(m, "r", "redis", 1);
    assert_non_null(tg_metrics_listener(m, "pg", "postgres", 0));
    char *text = render(m);
    assert_line(text, "# TYPE tenantgate_command_table_commands gauge");
    assert_null(strstr(text, "tenantgate_command_table_commands{"));
    free(text);
    tg_metrics_set_command_table(r1, 366, false);
    text = render(m);
    assert_line(text, "tenantgate_command_table_commands{listener=\"r\",source=\"builtin\"} 366");
    assert_null(strstr(text, "tenantgate_command_table_commands{listener=\"pg\""));
    free(text);
    /* a reload: another worker loads the backend's table; only the latest is shown */
    tg_metrics_set_command_table(r0, 240, true);
    text = render(m);
    assert_line(text, "tenantgate_command_table_commands{listener=\"r\",source=\"backend\"} 240");
    assert_null(strstr(text, "source=\"builtin\""));
    free(text);
    tg_metrics_free(m);
}

static void label_escaping(void **state)
{
    (void)state;
    tg_metrics *m = tg_metrics_new(1);
    tg_listener_stats *s = tg_metrics_listener(m, "a\"b\\c\nd", "pro\"to", 0);
    TG_STAT_ADD(s->conns_total, 1);
    char *text = render(m);
    assert_line(
        text,
        "tenantgate_connections_total{listener=\"a\\\"b\\\\c\\nd\",protocol=\"pro\\\"to\"} 1");
    /* No raw newline leaks into a sample line. */
    assert_null(strstr(text, "c\nd"));
    free(text);
    tg_metrics_free(m);
}

static void render_shape(void **state)
{
    (void)state;
    tg_metrics *m = tg_metrics_new(1);
    char *text = render(m); /* no listeners yet: families and process metrics only */
    assert_line(text, "# TYPE tenantgate_connections_open gauge");
    assert_line(text, "# HELP tenantgate_connections_total Client connections accepted.");
    assert_line(text, "# TYPE tenantgate_connections_total counter");
    assert_line(text, "# TYPE tenantgate_auth_failures_total counter");
    assert_line(text, "# TYPE process_cpu_seconds_total counter");
    assert_line(text, "# TYPE process_resident_memory_bytes gauge");
    assert_line(text, "# TYPE process_open_fds gauge");
    assert_line(text, "# TYPE process_start_time_seconds gauge");
    /* The version is the project's (set by CMake), so only the series' shape is fixed. */
    const char *bi = strstr(text, "\ntenantgate_build_info{version=\"");
    assert_non_null(bi);
    assert_non_null(strstr(bi, "\"} 1\n"));
    assert_non_null(strstr(text, "\nprocess_resident_memory_bytes "));
    assert_non_null(strstr(text, "\nprocess_open_fds "));
    assert_int_equal(text[strlen(text) - 1], '\n');

    /* Every non-comment line is "name[{labels}] value"; each family is declared once. */
    tg_listener_stats *s = tg_metrics_listener(m, "pg", "postgres", 0);
    TG_STAT_ADD(s->conns_total, 1);
    free(text);
    text = render(m);
    size_t types = 0;
    for (char *line = text; *line; line = strchr(line, '\n') + 1) {
        assert_non_null(strchr(line, '\n'));
        if (strncmp(line, "# TYPE ", 7) == 0)
            types++;
        if (line[0] == '#')
            continue;
        char *sp = strchr(line, ' ');
        assert_non_null(sp);
        assert_true(sp < strchr(line, '\n'));
    }
    assert_int_equal(types, 17);
    assert_int_equal(strstr(text, "# TYPE tenantgate_connections_open gauge") -
                         strstr(text, "# HELP tenantgate_connections_open"),
                     strlen("# HELP tenantgate_connections_open Client connections open now.\n"));
    free(text);
    tg_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(same_name_same_shard),
        cmocka_unit_test(counters_sum_across_shards),
        cmocka_unit_test(histogram_buckets_cumulative),
        cmocka_unit_test(command_table_latest),
        cmocka_unit_test(label_escaping),
        cmocka_unit_test(render_shape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
