/*
 * The Cypher syntax tree's helpers (see cypher_ast.h): node allocation from
 * the statement's arena (proxy/arena.h), kind and operator names, lists.
 *
 * Nothing in a tree is freed on its own: a statement's analysis allocates,
 * then releases the arena once.
 */
#include "policy/cypher_ast.h"

#include <string.h>

tg_cypher_node *tg_cypher_node_new(tg_arena *a, tg_cypher_kind k, uint32_t offset)
{
    tg_cypher_node *n = tg_arena_alloc(a, sizeof(*n));
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
