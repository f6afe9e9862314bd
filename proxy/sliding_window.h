/*
 * A rate limit shared by several tenantgate processes through the registry:
 * global_messages_per_second, as a sliding window over fixed one-second windows
 * counted in Redis.
 *
 *   message --take()--> estimate = prev * (W - elapsed) / W + cur + unflushed < limit ?
 *                                  unflushed++ : refuse
 *   flush (every ~100 ms, the registry client):
 *       roll(now): a new fixed window began -> what was unflushed belongs to the old one
 *       INCRBY <prefix>rate:<listener>:<tenant>:<window> <taken unflushed>; PEXPIRE ...
 *       --reply (the total of every process)--> observe(window, total)
 *
 * The counts of other processes arrive with each flush reply, so every process
 * decides locally, never waiting for Redis on the data path; the price is that
 * all processes together may overshoot the limit by what they admit between two
 * flushes. The window state is shared by a process's workers (atomics; the flusher
 * is one thread at a time per state). Pure arithmetic: time comes from the caller.
 */
#ifndef TG_PROXY_SLIDING_WINDOW_H
#define TG_PROXY_SLIDING_WINDOW_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define TG_SLIDING_WINDOW_MS 1000 /* the fixed windows are seconds: a limit per second */

typedef struct tg_sliding_window {
    _Atomic uint64_t index;     /* the fixed window (now_ms / W) that prev and cur are about */
    _Atomic uint64_t prev;      /* every process's count in window index - 1 */
    _Atomic uint64_t cur;       /* every process's count in window index, as last seen */
    _Atomic uint64_t unflushed; /* admitted here and not yet added in the registry */
} tg_sliding_window;

/*
 * The sliding-window count: prev weighted by the part of the previous fixed
 * window that still lies in the sliding one, plus cur. elapsed_ms is the time
 * into the current fixed window (clamped to window_ms).
 */
uint64_t tg_sliding_window_estimate(uint64_t prev, uint64_t cur, uint64_t elapsed_ms,
                                    uint64_t window_ms);

/* An empty window state for the fixed window of now_ms. */
void tg_sliding_window_init(tg_sliding_window *w, uint64_t now_ms);

/*
 * Counts one message at now_ms when the estimate stays under limit (0:
 * unlimited, always true). Returns true when the message may pass. Any thread.
 * Until the flusher has rolled the state into now's fixed window, the counts
 * are read as if it had: cur becomes the previous window, and what is not
 * flushed yet counts whole in the current one.
 */
bool tg_sliding_window_take(tg_sliding_window *w, uint64_t limit, uint64_t now_ms);

/* Counts n >= 1 messages at once, all or none (true: all n stay under limit). */
bool tg_sliding_window_take_n(tg_sliding_window *w, uint64_t limit, uint64_t now_ms, uint32_t n);

/*
 * Flusher: moves the state to now's fixed window when one has begun. Returns
 * the messages admitted and not yet flushed (taken: unflushed is now 0) and the
 * window they belong to in *window: the old one when it rolled into the next
 * (they may be from either; the old one is the usual case at a 100 ms flush),
 * now's when the state was older than that (take() counted them in now's).
 */
uint64_t tg_sliding_window_flush(tg_sliding_window *w, uint64_t now_ms, uint64_t *window);

/*
 * Flusher: the registry's total for fixed window `window` (an INCRBY reply).
 * Raises cur (or prev, for the window before) to it; stale windows are ignored.
 */
void tg_sliding_window_observe(tg_sliding_window *w, uint64_t window, uint64_t total);

#endif
