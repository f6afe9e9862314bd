/*
 * Micro-benchmark of the Redis policy (policy/redis_policy.c): the cost of one
 * tg_redis_judge() per command (lookup, arity, key specs, roles), and of one
 * tg_redis_lookup() alone, single-threaded, on the built-in table.
 *
 *   for each command line: calibrate a loop to ~TIME_TARGET, then
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

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static volatile uint32_t sink;

static double run(const tg_redis_table *t, const tg_slice *argv, uint32_t argc,
                  const tg_redis_judge_opts *o, long iters, bool lookup_only)
{
    uint8_t roles[MAX_ARGS];
    tg_redis_verdict v;
    tg_redis_verdict_init(&v, roles, MAX_ARGS);
    double t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        if (lookup_only)
            sink += tg_redis_lookup(t, argv, argc) != NULL;
        else
            sink += (uint32_t)tg_redis_judge(t, argv, argc, o, &v) + v.nkeys;
    }
    return (now_ns() - t0) / (double)iters;
}

static double measure(const tg_redis_table *t, const tg_slice *argv, uint32_t argc,
                      const tg_redis_judge_opts *o, double seconds, bool lookup_only)
{
    long iters = 1000;
    for (;;) {
        double ns = run(t, argv, argc, o, iters, lookup_only);
        if (ns * (double)iters >= seconds * 1e9 || iters > (1L << 30))
            return ns;
        iters *= 4;
    }
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 0.3;
    if (seconds <= 0)
        seconds = 0.3;
    double b0 = now_ns();
    tg_redis_table *t = tg_redis_table_builtin();
    double build_us = (now_ns() - b0) / 1e3;
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
        double judge = measure(t, av, ac, &o, seconds, false);
        double lookup = measure(t, av, ac, &o, seconds, true);
        printf("| %s | %s | %u | %.1f | %.1f |\n", c->name, tg_redis_verdict_name(v.kind),
               (unsigned)v.nkeys, judge, lookup);
    }
    tg_redis_table_free(t);
    return 0;
}
