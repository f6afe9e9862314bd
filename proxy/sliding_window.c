/*
 * The shared sliding window: see sliding_window.h.
 */
#include "proxy/sliding_window.h"

#include <stddef.h>

uint64_t tg_sliding_window_estimate(uint64_t prev, uint64_t cur, uint64_t elapsed_ms,
                                    uint64_t window_ms)
{
    if (window_ms == 0)
        return cur;
    if (elapsed_ms > window_ms)
        elapsed_ms = window_ms;
    /* prev * (W - elapsed) / W without overflow for any realistic count (< 2^44) */
    uint64_t weighted = prev / window_ms * (window_ms - elapsed_ms) +
                        prev % window_ms * (window_ms - elapsed_ms) / window_ms;
    return weighted + cur;
}

void tg_sliding_window_init(tg_sliding_window *w, uint64_t now_ms)
{
    atomic_init(&w->index, now_ms / TG_SLIDING_WINDOW_MS);
    atomic_init(&w->prev, 0);
    atomic_init(&w->cur, 0);
    atomic_init(&w->unflushed, 0);
}

bool tg_sliding_window_take(tg_sliding_window *w, uint64_t limit, uint64_t now_ms)
{
    return tg_sliding_window_take_n(w, limit, now_ms, 1);
}

bool tg_sliding_window_take_n(tg_sliding_window *w, uint64_t limit, uint64_t now_ms, uint32_t n)
{
    if (limit == 0)
        return true;
    uint64_t now_index = now_ms / TG_SLIDING_WINDOW_MS;
    uint64_t index = atomic_load_explicit(&w->index, memory_order_relaxed);
    uint64_t prev = atomic_load_explicit(&w->prev, memory_order_relaxed);
    uint64_t cur = atomic_load_explicit(&w->cur, memory_order_relaxed);
    uint64_t mine = atomic_load_explicit(&w->unflushed, memory_order_relaxed);
    /* Not rolled into now's window yet: what was counted becomes the previous window, except
     * our unflushed messages, which may be from either and count whole (the stricter view). */
    if (now_index == index + 1) {
        prev = cur;
        cur = 0;
    } else if (now_index > index + 1) {
        prev = cur = 0;
    }
    uint64_t est = tg_sliding_window_estimate(prev, cur + mine, now_ms % TG_SLIDING_WINDOW_MS,
                                              TG_SLIDING_WINDOW_MS);
    if (est + n > limit)
        return false;
    atomic_fetch_add_explicit(&w->unflushed, n, memory_order_relaxed);
    return true;
}

uint64_t tg_sliding_window_flush(tg_sliding_window *w, uint64_t now_ms, uint64_t *window)
{
    uint64_t now_index = now_ms / TG_SLIDING_WINDOW_MS;
    uint64_t index = atomic_load_explicit(&w->index, memory_order_relaxed);
    uint64_t taken = atomic_exchange_explicit(&w->unflushed, 0, memory_order_relaxed);
    *window = index;
    if (now_index == index + 1) {
        uint64_t cur = atomic_load_explicit(&w->cur, memory_order_relaxed);
        /* What was counted belongs to the window that ended; the registry's reply for it
         * raises prev further if other processes counted more. */
        atomic_store_explicit(&w->prev, cur + taken, memory_order_relaxed);
        atomic_store_explicit(&w->cur, 0, memory_order_relaxed);
        atomic_store_explicit(&w->index, now_index, memory_order_relaxed);
    } else if (now_index > index + 1) {
        /* Nothing flushed for two windows or more: take() counted these in now's. */
        *window = now_index;
        atomic_store_explicit(&w->prev, 0, memory_order_relaxed);
        atomic_store_explicit(&w->cur, taken, memory_order_relaxed);
        atomic_store_explicit(&w->index, now_index, memory_order_relaxed);
    } else {
        /* Our own messages stay counted until the registry's total includes them. */
        atomic_fetch_add_explicit(&w->cur, taken, memory_order_relaxed);
    }
    return taken;
}

void tg_sliding_window_observe(tg_sliding_window *w, uint64_t window, uint64_t total)
{
    uint64_t index = atomic_load_explicit(&w->index, memory_order_relaxed);
    _Atomic uint64_t *slot = window == index ? &w->cur : window + 1 == index ? &w->prev : NULL;
    if (!slot)
        return;
    uint64_t seen = atomic_load_explicit(slot, memory_order_relaxed);
    while (total > seen && !atomic_compare_exchange_weak_explicit(
                               slot, &seen, total, memory_order_relaxed, memory_order_relaxed)) {
    }
}
