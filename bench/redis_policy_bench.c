/*
 * Micro-benchmark of the Redis policy (policy/redis_policy.c): the cost of one
 * tg_redis_judge() per command (lookup, arity, key specs, roles), and of one
 * tg_redis_lookup() alone, single-threaded, on the built-in table.
 *
 *   for each command line: calibrate a loop to ~seconds (bench/microbench.h), then
 *     tg_redis_judge(table, argv, argc)   x N  -> ns/judge
 *     tg_redis_lookup(table, argv, argc)  x N  -> ns/lookup
 *
 * Prints a Markdown table. A benchmark, not a test: nothing is asserted.
 *
 *   build/redis_policy_bench [seconds per measurement, default 0.3]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/microbench.h"
#include "policy/redis_policy.h"

#define MAX_ARGS 32

typedef struct {
    const char *name;
    const char *args[MAX_ARGS]; /* NULL-terminated */
    bool scripts;
} bench_case;

static const bench_case cases[] = {
    {"GET", {"GET", "user:1000:profile", NULL}, false},
    {"get (lower case)", {"get", "user:1000:profile", NULL}, false},
    {"SET k v EX 60", {"SET", "session:abc", "payload", "EX", "60", NULL}, false},
    {"MSET (10 keys)",
     {"MSET", "k0", "v",  "k1", "v",  "k2", "v",  "k3", "v",  "k4", "v",
      "k5",   "v",  "k6", "v",  "k7", "v",  "k8", "v",  "k9", "v",  NULL},
     false},
    {"EVAL (2 keys)", {"EVAL", "return 1", "2", "k1", "k2", "a1", NULL}, true},
    {"ZUNIONSTORE (3 keys)",
     {"ZUNIONSTORE", "d", "3", "a", "b", "c", "WEIGHTS", "1", "2", "3", NULL},
     false},
    {"XREADGROUP",
     {"XREADGROUP", "GROUP", "g", "c", "COUNT", "10", "STREAMS", "s1", ">", NULL},
     false},
    {"OBJECT ENCODING", {"OBJECT", "ENCODING", "k", NULL}, false},
    {"SCAN 0 COUNT 100", {"SCAN", "0", "COUNT", "100", NULL}, false},
    {"FLUSHALL (denied)", {"FLUSHALL", NULL}, false},
};

static volatile uint32_t sink;

/* One measurement: judges (or lookups alone) of one command line. */
typedef struct judge_run {
    const tg_redis_table *t;
    const tg_slice *argv;
    uint32_t argc;
    const tg_redis_judge_opts *o;
    bool lookup_only;
} judge_run;

static void run_judges(void *ctx, long iters)
{
    const judge_run *r = ctx;
    uint8_t roles[MAX_ARGS];
    tg_redis_verdict v;
    tg_redis_verdict_init(&v, roles, MAX_ARGS);
    for (long i = 0; i < iters; i++) {
        if (r->lookup_only)
            sink += tg_redis_lookup(r->t, r->argv, r->argc) != NULL;
        else
            sink += (uint32_t)tg_redis_judge(r->t, r->argv, r->argc, r->o, &v) + v.nkeys;
    }
}

int main(int argc, char **argv)
{
    double seconds = tg_mb_seconds_arg(argc, argv);
    const tg_mb mb = {CLOCK_MONOTONIC, 1};
    double b0 = tg_mb_now_ns(mb.clock);
    tg_redis_table *t = tg_redis_table_builtin();
    double build_us = (tg_mb_now_ns(mb.clock) - b0) / 1e3;
    if (!t) {
        fprintf(stderr, "redis_policy_bench: could not build the table\n");
        return 1;
    }
    printf("built-in table: %u commands, built in %.0f us\n\n", tg_redis_table_count(t), build_us);
    printf("| command | verdict | keys | ns/judge | ns/lookup |\n");
    printf("|---|---|---:|---:|---:|\n");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const bench_case *c = &cases[i];
        tg_slice av[MAX_ARGS];
        uint32_t ac = 0;
        while (c->args[ac]) {
            av[ac] = tg_slice_str(c->args[ac]);
            ac++;
        }
        tg_redis_judge_opts o = {c->scripts, tg_slice_str("t:{bench}:")};
        uint8_t roles[MAX_ARGS];
        tg_redis_verdict v;
        tg_redis_verdict_init(&v, roles, MAX_ARGS);
        tg_redis_judge(t, av, ac, &o, &v);
        judge_run jr = {t, av, ac, &o, false}, lr = {t, av, ac, &o, true};
        double judge = tg_mb_measure(&mb, run_judges, &jr, seconds);
        double lookup = tg_mb_measure(&mb, run_judges, &lr, seconds);
        printf("| %s | %s | %u | %.1f | %.1f |\n", c->name, tg_redis_verdict_name(v.kind),
               (unsigned)v.nkeys, judge, lookup);
    }
    tg_redis_table_free(t);
    return 0;
}
