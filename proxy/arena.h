/*
 * tg_arena: a bump allocator for per-message scratch.
 *
 *   caller's block (often on the stack) ──full──> malloc'd block (16 KiB, doubling
 *   up to 4 MiB) ──full──> ... ──tg_arena_release──> every malloc'd block freed at once
 *
 * Nothing is freed on its own: a message's (or a statement's) analysis
 * allocates, then releases the arena once. Allocations are aligned to 16
 * bytes, enough for any scalar or struct. An optional ceiling (`cap`) bounds
 * the bytes handed out, so that one input's analysis has a fixed memory
 * ceiling; reaching it is a property of the input (over_cap), not a lack of
 * memory (nomem), and callers report the two differently.
 *
 * Used by the SQL guard (protobuf-c unpacking) and the Cypher rewriter (token
 * arrays and syntax trees). An arena belongs to one thread.
 */
#ifndef TG_PROXY_ARENA_H
#define TG_PROXY_ARENA_H

#include <stdbool.h>
#include <stddef.h>

typedef struct tg_arena_block tg_arena_block;

typedef struct tg_arena {
    unsigned char *cur; /* next free byte of the current block */
    size_t left;        /* bytes left in the current block */
    tg_arena_block *blocks;
    size_t next_size; /* size of the next malloc'd block */
    size_t used;      /* bytes handed out so far */
    size_t cap;       /* ceiling of `used` (0: none) */
    bool nomem;       /* a malloc failed (transient) */
    bool over_cap;    /* the ceiling was reached, or a size was absurd (a property of the input) */
} tg_arena;

/*
 * Starts an arena over buf (len bytes, borrowed until tg_arena_release; may
 * be NULL/0) with a ceiling of cap bytes (0: none).
 */
void tg_arena_init(tg_arena *a, void *buf, size_t len, size_t cap);

/*
 * size bytes, 16-byte aligned, valid until tg_arena_release(a); NULL (and
 * nomem or over_cap set) on failure. Once failed, every later call fails.
 * A zero-byte request may return NULL without failing (there is nothing to
 * point at).
 */
__attribute__((warn_unused_result)) void *tg_arena_alloc(tg_arena *a, size_t size);

/* Frees the malloc'd blocks; the arena may be initialised again afterwards. */
void tg_arena_release(tg_arena *a);

/* True when an allocation has failed (for either reason). */
static inline bool tg_arena_failed(const tg_arena *a)
{
    return a->nomem || a->over_cap;
}

#endif
