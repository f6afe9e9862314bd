/*
 * Micro-benchmark of the SQL guard (policy/sql_guard.c): the cost of one
 * tg_sql_guard_check() per statement text, uncached (parse + walk every time)
 * and cached (a hit in a warm verdict cache), single-threaded.
 *
 *   for each statement: calibrate a loop to ~TIME_TARGET, then
 *     uncached: tg_sql_guard_check(g, NULL, text)        x N  -> ns/check
 *     cached:   tg_sql_guard_check(g, cache, text)       x N  -> ns/check
 *
 * Prints a Markdown table. A benchmark, not a test: nothing is asserted.
 *
 *   build/sql_guard_bench [seconds per measurement, default 0.3]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy/sql_guard.h"

static const char big_join[] =
    "WITH recent AS (SELECT o.id, o.user_id, o.amount, o.created_at FROM orders o "
    "WHERE o.created_at > now() - interval '7 days' AND o.status IN ('paid', 'shipped')), "
    "totals AS (SELECT user_id, sum(amount) AS total, count(*) AS n FROM recent GROUP BY user_id) "
    "SELECT u.id, u.email, a.city, t.total, t.n, p.name AS plan, "
    "rank() OVER (PARTITION BY a.city ORDER BY t.total DESC) AS city_rank, "
    "coalesce(s.last_login, u.created_at) AS seen "
    "FROM users u JOIN addresses a ON a.user_id = u.id AND a.is_primary "
    "JOIN totals t ON t.user_id = u.id "
    "LEFT JOIN subscriptions sub ON sub.user_id = u.id AND sub.ends_at > now() "
    "LEFT JOIN plans p ON p.id = sub.plan_id "
    "LEFT JOIN LATERAL (SELECT max(l.at) AS last_login FROM logins l WHERE l.user_id = u.id) s "
    "ON true "
    "WHERE u.deleted_at IS NULL AND t.total > $1 AND u.tenant_id = "
    "current_setting('app.tenant_id')::uuid "
    "ORDER BY t.total DESC, u.id LIMIT 50 OFFSET $2";

static const char tpcb_script[] =
    "BEGIN;"
    "UPDATE pgbench_accounts SET abalance = abalance + -1234 WHERE aid = 48271;"
    "SELECT abalance FROM pgbench_accounts WHERE aid = 48271;"
    "UPDATE pgbench_tellers SET tbalance = tbalance + -1234 WHERE tid = 7;"
    "UPDATE pgbench_branches SET bbalance = bbalance + -1234 WHERE bid = 1;"
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
    "VALUES (7, 1, 48271, -1234, CURRENT_TIMESTAMP);"
    "END;";

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static const char *kind_name(tg_sql_verdict_kind k)
{
    return k == TG_SQL_ALLOW ? "ALLOW" : k == TG_SQL_REWRITE ? "REWRITE" : "DENY";
}

/* Texts for "a new pgbench -S statement each time": the aid varies, as in -M simple. */
#define VARIANTS 4096
static char *variants[VARIANTS];

typedef struct {
    const char *name;
    const char *text; /* NULL: the pgbench variants */
} bench_case;

/* ns per check of `iters` checks of case c (cache may be NULL). */
static double run(const tg_sql_guard *g, tg_sql_cache *cache, const bench_case *c, long iters,
                  tg_sql_verdict_kind *kind)
{
    tg_sql_verdict v;
    size_t len = c->text ? strlen(c->text) : 0;
    double t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        const char *s = c->text ? c->text : variants[i % VARIANTS];
        tg_sql_guard_check(g, cache, s, c->text ? len : strlen(s), &v);
    }
    double t1 = now_ns();
    *kind = v.kind;
    return (t1 - t0) / (double)iters;
}

/* Calibrates the iteration count to about `seconds`, then measures. */
static double measure(const tg_sql_guard *g, tg_sql_cache *cache, const bench_case *c,
                      double seconds, tg_sql_verdict_kind *kind)
{
    long iters = 64;
    double per = run(g, cache, c, iters, kind); /* also warms the cache */
    while (per * (double)iters < seconds * 1e9 * 0.1 && iters < (1L << 30)) {
        iters *= 4;
        per = run(g, cache, c, iters, kind);
    }
    long target = (long)(seconds * 1e9 / (per > 1 ? per : 1));
    if (target < iters)
        target = iters;
    return run(g, cache, c, target, kind);
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 0.3;
    if (seconds <= 0)
        seconds = 0.3;
    for (int i = 0; i < VARIANTS; i++) {
        variants[i] = malloc(96);
        if (!variants[i])
            return 1;
        snprintf(variants[i], 96, "SELECT abalance FROM pgbench_accounts WHERE aid = %d;",
                 (int)((i * 2654435761u) % 1000000u) + 1);
    }
    /* ~4 KiB: long enough for the depth pre-check (pg_query_scan) to run */
    static char bulk[8192];
    strcpy(bulk, "INSERT INTO events (tenant_id, kind, payload, at) VALUES ");
    for (int i = 0; strlen(bulk) < 4000; i++)
        snprintf(bulk + strlen(bulk), sizeof(bulk) - strlen(bulk), "%s($1, 'click', '{}', now())",
                 i ? "," : "");

    const bench_case cases[] = {
        {"simple select", "SELECT id, name FROM users WHERE id = $1"},
        {"pgbench -S select", "SELECT abalance FROM pgbench_accounts WHERE aid = 48271;"},
        {"pgbench -S, new aid each time", NULL},
        {"big join (CTEs, 6 joins, window)", big_join},
        {"multi-statement (pgbench TPC-B script)", tpcb_script},
        {"bulk INSERT, 4 KiB (depth pre-check)", bulk},
        {"SET app.tenant_id (denied)", "SET app.tenant_id = 'other'"},
        {"LISTEN (rewrite verdict)", "LISTEN orders"},
    };

    tg_sql_guard_config cfg = {"app.tenant_id", false, NULL, NULL, NULL};
    tg_sql_guard *g = tg_sql_guard_new(&cfg);
    if (!g)
        return 1;
    printf("SQL guard cost per statement (ns per tg_sql_guard_check, one thread, %.2f s per "
           "cell)\n\n",
           seconds);
    printf("| statement | bytes | verdict | uncached ns | cached ns | uncached/cached |\n");
    printf("|---|---:|---|---:|---:|---:|\n");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const bench_case *c = &cases[i];
        tg_sql_cache *cache = tg_sql_cache_new(1024);
        if (!cache)
            return 1;
        tg_sql_verdict_kind k1, k2;
        double unc = measure(g, NULL, c, seconds, &k1);
        double cac = measure(g, cache, c, seconds, &k2);
        tg_sql_cache_counters st;
        tg_sql_cache_stats(cache, &st);
        size_t bytes = c->text ? strlen(c->text) : strlen(variants[0]);
        printf("| %s | %zu | %s | %.0f | %.0f%s | %.1fx |\n", c->name, bytes, kind_name(k1), unc,
               cac, st.hits ? "" : " (all misses)", unc / cac);
        tg_sql_cache_free(cache);
    }
    tg_sql_guard_free(g);
    for (int i = 0; i < VARIANTS; i++)
        free(variants[i]);
    return 0;
}
