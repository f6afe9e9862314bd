/*
 * Micro-benchmark of the per-tenant limiter on the data path
 * (proxy/tenant_count.c): what a session pays per request for its tenant's
 * limits, with each kind of limit switched on in turn, on one thread and with
 * two threads (two workers) counting against the same tenant at once.
 *
 *   per case: take a slot with the case's limits (set so high that nothing is
 *   ever refused), then calibrate a loop to ~seconds (bench/microbench.h) of
 *     per read:    inflight_limited, then per request of it
 *                    tg_tenant_count_message(slot, &read's clock) + inflight_full
 *                  then inflight_add + inflight_give (when a byte limit is set)
 *   with 1 and 16 requests per read, on one thread and on two at once
 *   -> ns per request (CPU time of the thread; with 2 threads, the slower's)
 *
 * Set against the proxy's CPU time per request in bench.py's report (about
 * 10 us per pgbench -S transaction or redis -P 1 request, 1 us per request at
 * redis -P 16), this is the limiter's share of the data path. Prints a
 * Markdown table. A benchmark, not a test: nothing is asserted.
 *
 *   build/tenant_limits_bench [seconds per measurement, default 0.3]
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench/microbench.h"
#include "proxy/tenant_count.h"

typedef struct bench_case {
    const char *name;
    tg_tenant_limits lim;
} bench_case;

/* Never reached: the cost of checking, not of refusing. */
#define HIGH 1000000000u

static const bench_case cases[] = {
    {"no limits", {0}},
    {"messages_per_second", {.messages_per_second = HIGH, .burst = HIGH}},
    {"+ global_messages_per_second",
     {.messages_per_second = HIGH, .burst = HIGH, .global_messages_per_second = HIGH}},
    {"+ max_inflight_bytes",
     {.messages_per_second = HIGH,
      .burst = HIGH,
      .global_messages_per_second = HIGH,
      .max_inflight_bytes = HIGH}},
};

static volatile uint32_t sink;

typedef struct run_ctx {
    tg_tenant_slot *slot;
    long batch;               /* requests per client read */
    pthread_barrier_t *start; /* two threads: both begin together */
    double ns;                /* result */
    double seconds;
} run_ctx;

/*
 * Requests as a session counts them, `batch` per client read (1: redis -P 1 or a
 * pgbench transaction; 16: redis -P 16): per request the rate check, at the read's
 * time (tg_tenant_clock, read once per read), and the in-flight check of a 40-byte
 * request; per read, the bytes sent and answered published once.
 */
static void run_requests(void *ctx, long iters)
{
    run_ctx *r = ctx;
    tg_tenant_slot *s = r->slot;
    uint32_t local = 0;
    tg_tenant_lease lease = {0}; /* one session's */
    for (long i = 0; i < iters; i += r->batch) {
        tg_tenant_clock clock = TG_TENANT_CLOCK_UNREAD;
        bool limited = tg_tenant_count_inflight_limited(s);
        for (long j = 0; j < r->batch; j++) {
            local += (uint32_t)tg_tenant_count_message(s, &lease, &clock);
            if (limited)
                local += tg_tenant_count_inflight_full(s, 40 * (uint64_t)j);
        }
        if (limited) {
            tg_tenant_count_inflight_add(s, 40 * (uint64_t)r->batch);
            tg_tenant_count_inflight_give(s, 40 * (uint64_t)r->batch);
        }
    }
    sink += local; /* once per run: no cache line shared by the two threads per request */
}

static void *thread_main(void *arg)
{
    run_ctx *r = arg;
    const tg_mb mb = {CLOCK_THREAD_CPUTIME_ID, 3};
    if (r->start)
        pthread_barrier_wait(r->start);
    r->ns = tg_mb_measure(&mb, run_requests, r, r->seconds);
    return NULL;
}

/* ns per request on the slower of two threads counting the same slot at once. */
static double two_threads(tg_tenant_slot *slot, long batch, double seconds)
{
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    run_ctx two[2] = {{slot, batch, &start, 0, seconds}, {slot, batch, &start, 0, seconds}};
    pthread_t th;
    if (pthread_create(&th, NULL, thread_main, &two[1]) != 0) {
        fprintf(stderr, "tenant_limits_bench: pthread_create failed\n");
        exit(1);
    }
    thread_main(&two[0]);
    pthread_join(th, NULL);
    pthread_barrier_destroy(&start);
    return two[0].ns > two[1].ns ? two[0].ns : two[1].ns;
}

int main(int argc, char **argv)
{
    double seconds = tg_mb_seconds_arg(argc, argv);
    printf("Per-tenant limiter cost per request (tg_tenant_count_message and the in-flight "
           "counters, CPU time, %.2f s per cell)\n\n",
           seconds);
    printf("| limits set | ns/request, 1 per read | 16 per read | 2 threads on one tenant, 1 per "
           "read | 2 threads, 16 per read |\n");
    printf("|---|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tg_tenant_slot *slot;
        if (tg_tenant_count_take("bench", "acme", &cases[i].lim, 0, &slot) != 0) {
            fprintf(stderr, "tenant_limits_bench: could not take a slot\n");
            return 1;
        }
        run_ctx one = {slot, 1, NULL, 0, seconds}, pipelined = {slot, 16, NULL, 0, seconds};
        thread_main(&one);
        thread_main(&pipelined);

        double two1 = two_threads(slot, 1, seconds), two16 = two_threads(slot, 16, seconds);
        tg_tenant_count_give(slot);
        printf("| %s | %.1f | %.1f | %.1f | %.1f |\n", cases[i].name, one.ns, pipelined.ns, two1,
               two16);
    }
    return 0;
}
