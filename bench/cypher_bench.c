/*
 * Micro-benchmark of the Cypher rewriter (policy/cypher_rewrite.c): the cost
 * of one tg_cypher_rewrite() per statement, uncached (lex, parse, check,
 * scope, print, re-parse and verify every time) and cached (a warm cache:
 * two XXH3 passes over the text, a lookup and a copy of the rewrite),
 * single-threaded.
 *
 *   for each statement and mode: calibrate a loop to ~seconds (bench/microbench.h), then
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

#include "bench/microbench.h"
#include "policy/cypher_rewrite.h"

typedef struct bench_case {
    const char *name;
    tg_cypher_isolation mode;
    const char *text;
} bench_case;

/* One measurement: rewrites of case c's statement (cache may be NULL). */
typedef struct rewrite_run {
    const tg_cypher_rewriter *rw;
    tg_cypher_cache *cache;
    const bench_case *c;
    tg_cypher_result *r; /* the last rewrite's result */
} rewrite_run;

static void run_rewrites(void *ctx, long iters)
{
    rewrite_run *x = ctx;
    size_t len = strlen(x->c->text);
    for (long i = 0; i < iters; i++)
        tg_cypher_rewrite(x->rw, x->cache, "acme", x->c->text, len, x->r);
}

int main(int argc, char **argv)
{
    double seconds = tg_mb_seconds_arg(argc, argv);
    /* the thread's CPU time: on a shared machine, wall time would count waits for a core */
    const tg_mb mb = {CLOCK_THREAD_CPUTIME_ID, 1};
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
        rewrite_run unc_run = {rw, NULL, c, &r}, cac_run = {rw, cache, c, &r};
        double unc = tg_mb_measure(&mb, run_rewrites, &unc_run, seconds);
        double cac = tg_mb_measure(&mb, run_rewrites, &cac_run, seconds);
        printf("| %s | %s | %zu | %zu | %s | %.2f | %.3f | %.0fx |\n", c->name, modes[c->mode],
               strlen(c->text), r.kind == TG_CYPHER_DENY ? (size_t)0 : r.text.len,
               tg_cypher_verdict_name(r.kind), unc / 1000.0, cac / 1000.0, unc / cac);
        tg_cypher_result_free(&r);
        tg_cypher_cache_free(cache);
        tg_cypher_rewrite_free(rw);
    }
    return 0;
}
