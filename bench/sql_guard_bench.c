/*
 * Micro-benchmark of the SQL guard (policy/sql_guard.c): the cost of one
 * tg_sql_guard_check() per statement text, uncached (parse + walk every time)
 * and cached (a warm verdict cache), single-threaded.
 *
 *   for each statement: calibrate a loop to ~seconds (bench/microbench.h), then
 *     uncached: tg_sql_guard_check(g, NULL, text)        x N  -> ns/check
 *     cached:   tg_sql_guard_check(g, cache, text)       x N  -> ns/check
 *
 * A statement is one fixed text, or a template whose '#' become new numbers
 * and '@' new string literals on every check (VARIANTS texts in rotation), as
 * pgbench and most applications send them in the simple query protocol. The
 * "served by" column says how the cached run got its verdicts: by exact text,
 * by shape (the normalized key: literals blanked), or by a parse (the
 * normalizer refused the text, or the verdict depends on a literal's value).
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

#include "bench/microbench.h"
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

static const char *kind_name(tg_sql_verdict_kind k)
{
    return k == TG_SQL_ALLOW ? "ALLOW" : k == TG_SQL_REWRITE ? "REWRITE" : "DENY";
}

/* Texts of a template: '#' and '@' filled anew in each (e.g. a new aid every time). */
#define VARIANTS 4096

typedef struct {
    const char *name;
    const char *text;     /* a fixed text, or NULL */
    const char *template; /* or a template */
    char *variants[VARIANTS];
    size_t lens[VARIANTS];
} bench_case;

/* Fills c->variants from c->template (or the fixed text); returns 0, or -1 out of memory. */
static int make_variants(bench_case *c)
{
    const char *t = c->text ? c->text : c->template;
    size_t slots = 0;
    for (const char *p = t; *p; p++)
        slots += (*p == '#' || *p == '@') && !c->text;
    for (int i = 0; i < VARIANTS; i++) {
        size_t cap = strlen(t) + slots * 16 + 1, o = 0;
        char *s = malloc(cap);
        if (!s)
            return -1;
        unsigned slot = 0;
        for (const char *p = t; *p; p++) {
            uint32_t r = ((uint32_t)i * 2654435761u + slot++ * 40503u) % 1000000u + 1;
            if (!c->text && *p == '#')
                o += (size_t)snprintf(s + o, cap - o, "%u", (unsigned)r);
            else if (!c->text && *p == '@')
                o += (size_t)snprintf(s + o, cap - o, "'v%u'", (unsigned)r);
            else
                s[o++] = *p;
        }
        s[o] = '\0';
        c->variants[i] = s;
        c->lens[i] = o;
    }
    return 0;
}

/* One measurement: checks of case c's texts in rotation (cache may be NULL). */
typedef struct check_run {
    const tg_sql_guard *g;
    tg_sql_cache *cache;
    const bench_case *c;
    tg_sql_verdict_kind kind; /* of the last check */
} check_run;

static void run_checks(void *ctx, long iters)
{
    check_run *r = ctx;
    tg_sql_verdict v = {0};
    for (long i = 0; i < iters; i++)
        tg_sql_guard_check(r->g, r->cache, r->c->variants[i % VARIANTS], r->c->lens[i % VARIANTS],
                           &v);
    r->kind = v.kind;
}

/* How the cached run got its verdicts, from the cache's counters. */
static const char *served_by(const tg_sql_cache_counters *st)
{
    uint64_t total = st->hits + st->misses;
    if (st->misses * 2 > total)
        return st->norm_refused * 2 > st->misses ? "parse (normalizer refused)"
                                                 : "parse (verdict reads a literal)";
    return st->norm_hits * 2 > st->hits ? "shape" : "exact text";
}

int main(int argc, char **argv)
{
    double seconds = tg_mb_seconds_arg(argc, argv);
    const tg_mb mb = {CLOCK_MONOTONIC, 1};
    /* ~4 KiB: long enough for the depth pre-check (pg_query_scan) to run */
    static char bulk[8192], bulk_values[8192];
    strcpy(bulk, "INSERT INTO events (tenant_id, kind, payload, at) VALUES ");
    for (int i = 0; strlen(bulk) < 4000; i++)
        snprintf(bulk + strlen(bulk), sizeof(bulk) - strlen(bulk), "%s($1, 'click', '{}', now())",
                 i ? "," : "");
    strcpy(bulk_values, "INSERT INTO events (tenant_id, kind, n, at) VALUES ");
    for (int i = 0; strlen(bulk_values) < 3000; i++)
        snprintf(bulk_values + strlen(bulk_values), sizeof(bulk_values) - strlen(bulk_values),
                 "%s(#, @, #, now())", i ? "," : "");

    static bench_case cases[] = {
        {"simple select", "SELECT id, name FROM users WHERE id = $1", NULL, {0}, {0}},
        {"pgbench -S select",
         "SELECT abalance FROM pgbench_accounts WHERE aid = 48271;",
         NULL,
         {0},
         {0}},
        {"pgbench -S, new aid each time",
         NULL,
         "SELECT abalance FROM pgbench_accounts WHERE aid = #;",
         {0},
         {0}},
        {"pgbench TPC-B statement, new values each time",
         NULL,
         "UPDATE pgbench_accounts SET abalance = abalance + # WHERE aid = #;",
         {0},
         {0}},
        {"big join (CTEs, 6 joins, window)", big_join, NULL, {0}, {0}},
        {"multi-statement (pgbench TPC-B script)", tpcb_script, NULL, {0}, {0}},
        {"bulk INSERT, 4 KiB (depth pre-check)", bulk, NULL, {0}, {0}},
        {"bulk INSERT, ~6 KiB, 512 literals, new values each time", NULL, bulk_values, {0}, {0}},
        {"SELECT with a comment, new id each time",
         NULL,
         "SELECT name FROM users WHERE id = # -- app:users",
         {0},
         {0}},
        {"set_config(application_name), new value each time",
         NULL,
         "SELECT set_config('application_name', @, false)",
         {0},
         {0}},
        {"SET app.tenant_id (denied)", "SET app.tenant_id = 'other'", NULL, {0}, {0}},
        {"SET app.tenant_id, new value each time (denied)",
         NULL,
         "SET app.tenant_id = @",
         {0},
         {0}},
        {"LISTEN (rewrite verdict)", "LISTEN orders", NULL, {0}, {0}},
    };

    tg_sql_guard_config cfg = {"app.tenant_id", false, NULL, NULL, NULL};
    tg_sql_guard *g = tg_sql_guard_new(&cfg);
    if (!g)
        return 1;
    printf("SQL guard cost per statement (ns per tg_sql_guard_check, one thread, %.2f s per "
           "cell)\n\n",
           seconds);
    printf("| statement | bytes | verdict | uncached ns | cached ns | served by | "
           "uncached/cached |\n");
    printf("|---|---:|---|---:|---:|---|---:|\n");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bench_case *c = &cases[i];
        if (make_variants(c) != 0)
            return 1;
        tg_sql_cache *cache = tg_sql_cache_new(1024);
        if (!cache)
            return 1;
        check_run unc_run = {g, NULL, c, TG_SQL_DENY}, cac_run = {g, cache, c, TG_SQL_DENY};
        double unc = tg_mb_measure(&mb, run_checks, &unc_run, seconds);
        double cac = tg_mb_measure(&mb, run_checks, &cac_run, seconds);
        tg_sql_cache_counters st;
        tg_sql_cache_stats(cache, &st);
        printf("| %s | %zu | %s | %.0f | %.0f | %s | %.1fx |\n", c->name, c->lens[0],
               kind_name(unc_run.kind), unc, cac, served_by(&st), unc / cac);
        tg_sql_cache_free(cache);
        for (int j = 0; j < VARIANTS; j++)
            free(c->variants[j]);
    }
    tg_sql_guard_free(g);
    return 0;
}
