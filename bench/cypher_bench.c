/*
 * Micro-benchmark of the Cypher rewriter (policy/cypher_rewrite.c): the cost
 * of one tg_cypher_rewrite() per statement, uncached (lex, parse, check,
 * scope, print, re-parse and verify every time) and cached (a warm cache:
 * two XXH3 passes over the text, a lookup and a copy of the rewrite),
 * single-threaded.
 *
 *   for each statement and mode: calibrate a loop to ~seconds, then
 *     uncached: tg_cypher_rewrite(rw, NULL, tenant, text)    x N  -> us/statement
 *     cached:   tg_cypher_rewrite(rw, cache, tenant, text)   x N  -> us/statement
 *
 * Goals (issue 6): <= 1 us cached and <= 20 us uncached for a typical
 * 3-clause query. Times are the thread's CPU time. Prints a Markdown table.
 * A benchmark, not a test: nothing is asserted.
 *
 *   build/cypher_bench [seconds per measurement, default 0.3]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy/cypher_rewrite.h"

/*
 * The thread's CPU time: on a machine shared with other work, wall time
 * would count the time this thread waited for a core.
 */
static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

typedef struct bench_case {
    const char *name;
    tg_cypher_isolation mode;
    const char *text;
} bench_case;

/* ns per rewrite over `iters` rewrites (cache may be NULL). */
static double run(const tg_cypher_rewriter *rw, tg_cypher_cache *cache, const bench_case *c,
                  long iters, tg_cypher_result *r)
{
    size_t len = strlen(c->text);
    double t0 = now_ns();
    for (long i = 0; i < iters; i++)
        tg_cypher_rewrite(rw, cache, "acme", c->text, len, r);
    return (now_ns() - t0) / (double)iters;
}

/* Calibrates the iteration count to about `seconds`, then measures. */
static double measure(const tg_cypher_rewriter *rw, tg_cypher_cache *cache, const bench_case *c,
                      double seconds, tg_cypher_result *r)
{
    long iters = 16;
    double per = run(rw, cache, c, iters, r); /* also warms the cache */
    while (per * (double)iters < seconds * 1e9 * 0.1 && iters < (1L << 30)) {
        iters *= 4;
        per = run(rw, cache, c, iters, r);
    }
    long target = (long)(seconds * 1e9 / (per > 1 ? per : 1));
    if (target < iters)
        target = iters;
    return run(rw, cache, c, target, r);
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 0.3;
    if (seconds <= 0)
        seconds = 0.3;
    static const char three_clause[] =
        "MATCH (u:User {id: $id})-[:FOLLOWS]->(f:User) WITH f ORDER BY f.name LIMIT 20 "
        "RETURN f.name, f.email";
    static const bench_case cases[] = {
        {"typical 3-clause query (MATCH, WITH, RETURN)", TG_CYPHER_ISOLATION_PROPERTY,
         three_clause},
        {"same, label mode", TG_CYPHER_ISOLATION_LABEL, three_clause},
        {"same, database mode", TG_CYPHER_ISOLATION_DATABASE, three_clause},
        {"lookup by id", TG_CYPHER_ISOLATION_PROPERTY, "MATCH (n:User {id: $id}) RETURN n"},
        {"MERGE a relationship", TG_CYPHER_ISOLATION_PROPERTY,
         "MATCH (a:User {id: $a}), (b:User {id: $b}) MERGE (a)-[r:FOLLOWS]->(b) "
         "ON CREATE SET r.since = datetime() RETURN r"},
        {"recommendation (4 patterns, NOT pattern, aggregation)", TG_CYPHER_ISOLATION_PROPERTY,
         "MATCH (u:Customer {id: $id})-[:BOUGHT]->(p:Product)<-[:BOUGHT]-(other:Customer)"
         "-[:BOUGHT]->(rec:Product) WHERE NOT (u)-[:BOUGHT]->(rec) "
         "RETURN rec.name, count(*) AS score ORDER BY score DESC LIMIT 5"},
        {"batch upsert (UNWIND, MERGE, SET +=)", TG_CYPHER_ISOLATION_PROPERTY,
         "UNWIND $rows AS row MERGE (p:Product {sku: row.sku}) SET p += row.props "
         "WITH p, row MATCH (c:Category {name: row.category}) MERGE (p)-[:IN]->(c)"},
        {"refused (CALL db.labels())", TG_CYPHER_ISOLATION_PROPERTY, "CALL db.labels()"},
    };

    printf("Cypher rewriter cost per statement (us of thread CPU time per tg_cypher_rewrite, "
           "%.2f s per cell)\n\n",
           seconds);
    printf("| statement | mode | bytes in | bytes out | verdict | uncached us | cached us | "
           "uncached/cached |\n");
    printf("|---|---|---:|---:|---|---:|---:|---:|\n");
    static const char *const modes[] = {"property", "label", "database"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const bench_case *c = &cases[i];
        tg_cypher_rewrite_config cfg = {.isolation = c->mode};
        tg_cypher_rewriter *rw = tg_cypher_rewrite_new(&cfg);
        tg_cypher_cache *cache = tg_cypher_cache_new(1024, 0);
        if (!rw || !cache)
            return 1;
        tg_cypher_result r;
        tg_cypher_result_init(&r);
        double unc = measure(rw, NULL, c, seconds, &r);
        double cac = measure(rw, cache, c, seconds, &r);
        printf("| %s | %s | %zu | %zu | %s | %.2f | %.3f | %.0fx |\n", c->name, modes[c->mode],
               strlen(c->text), r.kind == TG_CYPHER_DENY ? (size_t)0 : r.text.len,
               tg_cypher_verdict_name(r.kind), unc / 1000.0, cac / 1000.0, unc / cac);
        tg_cypher_result_free(&r);
        tg_cypher_cache_free(cache);
        tg_cypher_rewrite_free(rw);
    }
    return 0;
}
