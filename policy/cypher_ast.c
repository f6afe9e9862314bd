/*
 * The Cypher syntax tree's arena and helpers (see cypher_ast.h).
 *
 *   caller's block (stack) ──full──> malloc'd block (16 KiB, doubling) ──> ... ──release──> free
 * all
 *
 * Nothing in a tree is freed on its own: a statement's analysis allocates,
 * then releases the arena once.
 */
#include "policy/cypher_ast.h"

#include <stdlib.h>
#include <string.h>

struct tg_cypher_arena_block {
    tg_cypher_arena_block *next;
    size_t size;
};

#define ARENA_ALIGN 16
#define ARENA_FIRST_BLOCK 16384
#define ARENA_MAX_BLOCK ((size_t)1 << 22)

void tg_cypher_arena_init(tg_cypher_arena *a, void *buf, size_t len, size_t cap)
{
    memset(a, 0, sizeof(*a));
    /* align the caller's block */
    uintptr_t p = (uintptr_t)buf, q = (p + ARENA_ALIGN - 1) & ~(uintptr_t)(ARENA_ALIGN - 1);
    if (buf && len > q - p) {
        a->cur = (unsigned char *)q;
        a->left = len - (q - p);
    }
    a->next_size = ARENA_FIRST_BLOCK;
    a->cap = cap;
}

void *tg_cypher_arena_alloc(tg_cypher_arena *a, size_t size)
{
    if (a->nomem || a->over_cap)
        return NULL;
    if (size > SIZE_MAX / 4) {
        a->over_cap = true;
        return NULL;
    }
    size = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (a->cap && a->used + size > a->cap) {
        a->over_cap = true;
        return NULL;
    }
    if (size > a->left) {
        size_t hdr = (sizeof(tg_cypher_arena_block) + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
        size_t bsize = a->next_size;
        while (bsize < size + hdr)
            bsize *= 2;
        tg_cypher_arena_block *b = malloc(bsize);
        if (!b) {
            a->nomem = true;
            return NULL;
        }
        b->next = a->blocks;
        b->size = bsize;
        a->blocks = b;
        a->cur = (unsigned char *)b + hdr;
        a->left = bsize - hdr;
        if (a->next_size < ARENA_MAX_BLOCK)
            a->next_size *= 2;
    }
    void *r = a->cur;
    a->cur += size;
    a->left -= size;
    a->used += size;
    return r;
}

void tg_cypher_arena_release(tg_cypher_arena *a)
{
    while (a->blocks) {
        tg_cypher_arena_block *next = a->blocks->next;
        free(a->blocks);
        a->blocks = next;
    }
    a->cur = NULL;
    a->left = 0;
}

tg_cypher_node *tg_cypher_node_new(tg_cypher_arena *a, tg_cypher_kind k, uint32_t offset)
{
    tg_cypher_node *n = tg_cypher_arena_alloc(a, sizeof(*n));
    if (!n)
        return NULL;
    memset(n, 0, sizeof(*n));
    n->kind = (uint8_t)k;
    n->offset = offset;
    return n;
}

static const char *const kind_names[] = {
#define TG_CYPHER_NAME(n, s) s,
    TG_CYPHER_KIND_MAP(TG_CYPHER_NAME)
#undef TG_CYPHER_NAME
};

static const char *const op_spellings[] = {
#define TG_CYPHER_NAME(n, s) s,
    TG_CYPHER_OP_MAP(TG_CYPHER_NAME)
#undef TG_CYPHER_NAME
};

const char *tg_cypher_kind_name(unsigned kind)
{
    return kind < TG_CYPHER_KIND_COUNT ? kind_names[kind] : "?";
}

const char *tg_cypher_op_spelling(unsigned op)
{
    return op < TG_CYPHER_NUM_OPS ? op_spellings[op] : "";
}

size_t tg_cypher_list_len(const tg_cypher_node *n)
{
    size_t c = 0;
    for (; n; n = n->next)
        c++;
    return c;
}

void tg_cypher_list_append(tg_cypher_node **head, tg_cypher_node *node)
{
    while (*head)
        head = &(*head)->next;
    *head = node;
}
