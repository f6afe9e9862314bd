/*
 * The timing loop of the micro-benchmarks (sql_guard_bench, redis_policy_bench,
 * cypher_bench, mongo_scope_bench): how many times to run the code under
 * test, and what one run costs.
 *
 *   tg_mb_measure(m, body, ctx, seconds):
 *     iters = 16; body(ctx, iters) timed, iters x4, until one run takes
 *       >= 10% of seconds / rounds                     (also warms caches)
 *     then `rounds` runs of ~seconds / rounds each  -> the fastest, in ns per iteration
 *
 * The benchmark supplies body(ctx, iters), which runs the code under test
 * iters times (one indirect call per batch, not per iteration), and the
 * clock: CLOCK_THREAD_CPUTIME_ID counts only this thread's CPU time, so a
 * busy machine does not inflate it; CLOCK_MONOTONIC counts wall time. The
 * best of several rounds is the least disturbed estimate. Benchmarks print
 * tables; nothing here asserts a timing.
 */
#ifndef TG_BENCH_MICROBENCH_H
#define TG_BENCH_MICROBENCH_H

#include <stdlib.h>
#include <time.h>

/* Runs the code under test iters times. */
typedef void (*tg_mb_body)(void *ctx, long iters);

/* How a benchmark measures: its clock and the number of rounds (the fastest is kept). */
typedef struct tg_mb {
    clockid_t clock;
    int rounds;
} tg_mb;

/* The clock's time in ns. */
static inline double tg_mb_now_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* ns per iteration of one run of iters iterations. */
static inline double tg_mb_run(const tg_mb *m, tg_mb_body body, void *ctx, long iters)
{
    double t0 = tg_mb_now_ns(m->clock);
    body(ctx, iters);
    return (tg_mb_now_ns(m->clock) - t0) / (double)iters;
}

/* Calibrates the iteration count to about `seconds` in all, then measures: ns per iteration. */
static inline double tg_mb_measure(const tg_mb *m, tg_mb_body body, void *ctx, double seconds)
{
    int rounds = m->rounds > 0 ? m->rounds : 1;
    double budget = seconds * 1e9 / rounds;
    long iters = 16;
    double per = tg_mb_run(m, body, ctx, iters);
    while (per * (double)iters < budget * 0.1 && iters < (1L << 30)) {
        iters *= 4;
        per = tg_mb_run(m, body, ctx, iters);
    }
    long target = (long)(budget / (per > 1 ? per : 1));
    if (target < iters)
        target = iters;
    double best = tg_mb_run(m, body, ctx, target);
    for (int r = 1; r < rounds; r++) {
        double again = tg_mb_run(m, body, ctx, target);
        best = again < best ? again : best;
    }
    return best;
}

/* The benchmark's one argument: seconds per measurement (default 0.3). */
static inline double tg_mb_seconds_arg(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 0.3;
    return seconds > 0 ? seconds : 0.3;
}

#endif
