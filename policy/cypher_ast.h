/*
 * The Cypher syntax tree: one node type for every construct, allocated from an
 * arena (proxy/arena.h) that lives as long as one statement's analysis.
 *
 *   text ──lexer──> tokens ──parser──> tree (this file) ──rewriter──> tree ──printer──> text
 *
 * A node has a kind, up to TG_CYPHER_KIDS child slots and a `next` link: a
 * list (clauses of a query, items of a RETURN, elements of a path) is its
 * first node, the rest follow through `next`. What each slot holds is given
 * per kind in the table below (the TG_CYPHER_S_* names); a generic walk over
 * kid[0..TG_CYPHER_KIDS-1] and their `next` chains reaches every node.
 *
 * The tree keeps the source's shape: parentheses are PAREN nodes and chains
 * of the same precedence level (a + b - c, a < b <= c, x OR y OR z) are one
 * INFIX node with a flat operand list. The printer thus reproduces the
 * statement's structure token for token and never has to decide where
 * parentheses go, so a difference between this parser's and Neo4j's
 * precedence rules cannot change what a printed statement means. Depth is
 * bounded by the parser.
 */
#ifndef TG_POLICY_CYPHER_AST_H
#define TG_POLICY_CYPHER_AST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proxy/arena.h"

/* ---- strings ----------------------------------------------------------------------------- */

/* A borrowed byte string (not NUL-terminated): into the statement or into the arena. */
typedef struct tg_cypher_str {
    const char *s;
    size_t len;
} tg_cypher_str;

static inline bool tg_cypher_str_eq(tg_cypher_str a, tg_cypher_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.s, b.s, a.len) == 0);
}

/* True when s is the keyword kw (n bytes, upper case) ignoring ASCII case. */
static inline bool tg_cypher_str_is_kw(tg_cypher_str s, const char *kw, size_t n)
{
    if (s.len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s.s[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (c != kw[i])
            return false;
    }
    return true;
}

/* ---- node kinds -------------------------------------------------------------------------- */

/*
 * X(NAME, "name"): every kind of node, with its slots. Lists are linked
 * through `next`. "op" is the node's operator field.
 *
 * Statements and clauses
 *   QUERY          [0] SINGLE list; each SINGLE after the first has F_UNION (+ F_ALL)
 *   SINGLE         [0] clause list
 *   MATCH          [0] PATH list, [4] WHERE                       F_OPTIONAL
 *   UNWIND         [0] VAR, [1] expression
 *   WITH           [0] PROJ_ITEM list, [1] SORT_ITEM list, [2] SKIP, [3] LIMIT, [4] WHERE
 *                                                                 F_DISTINCT, F_STAR (WITH *)
 *   RETURN         as WITH, without WHERE
 *   CREATE         [0] PATH list
 *   MERGE          [0] PATH, [1] MERGE_ACTION list
 *   MERGE_ACTION   op ON_CREATE | ON_MATCH, [0] set items
 *   SET            [0] set items (SET_PROP, SET_VAR, SET_LABELS)
 *   REMOVE         [0] remove items (REMOVE_PROP, REMOVE_LABELS)
 *   DELETE         [0] expression list                            F_DETACH
 *   FOREACH        [0] VAR, [1] list expression, [2] clause list
 *   CALL_SUB       [0] VAR list (CALL (a, b) {...}), [1] QUERY, [2] IN TRANSACTIONS OF rows
 *                  F_OPTIONAL, F_SCOPED (has a variable scope), F_STAR (CALL (*)), F_IN_TX
 *   CALL_PROC      str dotted name, [0] arguments, [1] YIELD_ITEM list, [4] WHERE
 *                  F_OPTIONAL, F_ARGS (has parentheses), F_YIELD, F_STAR (YIELD *)
 *   YIELD_ITEM     str field, [0] VAR alias or NULL
 *   FINISH
 *   PROJ_ITEM      [0] expression, [1] VAR alias or NULL
 *   SORT_ITEM      [0] expression, op ASC | DESC | 0
 *   SET_PROP       [0] PROP target, [1] value
 *   SET_VAR        op ASSIGN (=) | APPEND (+=), [0] VAR, [1] value
 *   SET_LABELS     [0] VAR, [1] LABEL list
 *   REMOVE_PROP    [0] PROP
 *   REMOVE_LABELS  [0] VAR, [1] LABEL list
 * Patterns
 *   PATH           [0] path VAR or NULL, [1] CHAIN or SHORTEST
 *   SHORTEST       op SHORTEST | ALL_SHORTEST, [0] CHAIN (in a PATH, or as an expression)
 *   CHAIN          [0] NODE_PAT, REL_PAT, NODE_PAT, ... (at least one node)
 *   NODE_PAT       [0] VAR, [1] LABEL list, [2] MAP or PARAM, [4] WHERE
 *   REL_PAT        op DIR_* bits, [0] VAR, [1] LABEL list (types), [2] MAP or PARAM,
 *                  [3] RANGE, [4] WHERE                           F_DETAIL (has brackets)
 *   RANGE          [0] INT min or NULL, [1] INT max or NULL        F_DOTS (has "..")
 *   LABEL          str name (a label or a relationship type)
 * Expressions
 *   INFIX          op level (OR..POW), [0] operand list; operands after the first carry
 *                  the operator before them in `lop`
 *   NOT            [0]
 *   UNARY          op ADD | SUB, [0]
 *   PRED           op IN | STARTS_WITH | ENDS_WITH | CONTAINS | REGEX | IS_NULL |
 *                  IS_NOT_NULL, [0] left, [1] right (NULL for IS [NOT] NULL)
 *   PROP           [0] subject, str key
 *   INDEX          [0] subject, [1] index
 *   SLICE          [0] subject, [1] from or NULL, [2] to or NULL
 *   LABEL_TEST     [0] subject, [1] LABEL list
 *   PAREN          [0]
 *   VAR            str name
 *   PARAM          str name
 *   INT, FLOAT     str the literal as written (validated)
 *   STRING         str the decoded value (UTF-8)
 *   CONST          op TRUE | FALSE | NULL
 *   LIST           [0] items
 *   MAP            [0] MAP_ENTRY list
 *   MAP_ENTRY      str key, [0] value                              F_TENANT (added by the rewriter)
 *   MAP_PROJ       [0] VAR, [1] MAP_PROJ_ITEM list
 *   MAP_PROJ_ITEM  op MP_PROP (.key) | MP_ALL (.*) | MP_VAR (var) | MP_ENTRY (key: value),
 *                  str key, [0] VAR or value
 *   CASE           [0] subject or NULL, [1] CASE_WHEN list, [2] ELSE or NULL
 *   CASE_WHEN      [0] condition, [1] result
 *   FUNC           str dotted name, [0] arguments                  F_DISTINCT
 *   COUNT_STAR     count(*)
 *   LIST_COMP      [0] VAR, [1] list, [2] projection (after |) or NULL, [4] WHERE
 *   PATTERN_COMP   [0] path VAR or NULL, [1] CHAIN, [2] projection, [4] WHERE
 *   QUANT          op ALL | ANY | NONE | SINGLE, [0] VAR, [1] list, [4] WHERE
 *   REDUCE         [0] accumulator VAR, [1] initial value, [2] VAR, [3] list, [4] expression
 *   PATTERN_PRED   [0] CHAIN (with at least one relationship)
 *   SUBQUERY       op EXISTS | COUNT | COLLECT, [0] QUERY (F_FULL) or PATH list, [4] WHERE
 */
#define TG_CYPHER_KIND_MAP(X)                                                                      \
    X(QUERY, "query")                                                                              \
    X(SINGLE, "single query")                                                                      \
    X(MATCH, "MATCH")                                                                              \
    X(UNWIND, "UNWIND")                                                                            \
    X(WITH, "WITH")                                                                                \
    X(RETURN, "RETURN")                                                                            \
    X(CREATE, "CREATE")                                                                            \
    X(MERGE, "MERGE")                                                                              \
    X(MERGE_ACTION, "ON CREATE/ON MATCH")                                                          \
    X(SET, "SET")                                                                                  \
    X(REMOVE, "REMOVE")                                                                            \
    X(DELETE, "DELETE")                                                                            \
    X(FOREACH, "FOREACH")                                                                          \
    X(CALL_SUB, "CALL subquery")                                                                   \
    X(CALL_PROC, "CALL procedure")                                                                 \
    X(YIELD_ITEM, "YIELD item")                                                                    \
    X(FINISH, "FINISH")                                                                            \
    X(PROJ_ITEM, "projection item")                                                                \
    X(SORT_ITEM, "sort item")                                                                      \
    X(SET_PROP, "SET property")                                                                    \
    X(SET_VAR, "SET variable")                                                                     \
    X(SET_LABELS, "SET labels")                                                                    \
    X(REMOVE_PROP, "REMOVE property")                                                              \
    X(REMOVE_LABELS, "REMOVE labels")                                                              \
    X(PATH, "path pattern")                                                                        \
    X(SHORTEST, "shortest path")                                                                   \
    X(CHAIN, "pattern chain")                                                                      \
    X(NODE_PAT, "node pattern")                                                                    \
    X(REL_PAT, "relationship pattern")                                                             \
    X(RANGE, "length range")                                                                       \
    X(LABEL, "label")                                                                              \
    X(INFIX, "infix expression")                                                                   \
    X(NOT, "NOT")                                                                                  \
    X(UNARY, "unary")                                                                              \
    X(PRED, "predicate")                                                                           \
    X(PROP, "property lookup")                                                                     \
    X(INDEX, "index")                                                                              \
    X(SLICE, "slice")                                                                              \
    X(LABEL_TEST, "label test")                                                                    \
    X(PAREN, "parentheses")                                                                        \
    X(VAR, "variable")                                                                             \
    X(PARAM, "parameter")                                                                          \
    X(INT, "integer")                                                                              \
    X(FLOAT, "float")                                                                              \
    X(STRING, "string")                                                                            \
    X(CONST, "constant")                                                                           \
    X(LIST, "list")                                                                                \
    X(MAP, "map")                                                                                  \
    X(MAP_ENTRY, "map entry")                                                                      \
    X(MAP_PROJ, "map projection")                                                                  \
    X(MAP_PROJ_ITEM, "map projection item")                                                        \
    X(CASE, "CASE")                                                                                \
    X(CASE_WHEN, "WHEN")                                                                           \
    X(FUNC, "function call")                                                                       \
    X(COUNT_STAR, "count(*)")                                                                      \
    X(LIST_COMP, "list comprehension")                                                             \
    X(PATTERN_COMP, "pattern comprehension")                                                       \
    X(QUANT, "quantifier")                                                                         \
    X(REDUCE, "reduce")                                                                            \
    X(PATTERN_PRED, "pattern predicate")                                                           \
    X(SUBQUERY, "subquery expression")

typedef enum {
#define TG_CYPHER_ENUM(n, s) TG_CYPHER_##n,
    TG_CYPHER_KIND_MAP(TG_CYPHER_ENUM)
#undef TG_CYPHER_ENUM
        TG_CYPHER_KIND_COUNT
} tg_cypher_kind;

/* Named slots (several kinds share a number; see the table above). */
enum {
    TG_CYPHER_S_ITEMS = 0,   /* QUERY, SINGLE, WITH, RETURN, SET, REMOVE, DELETE, LIST, MAP... */
    TG_CYPHER_S_PATTERN = 0, /* MATCH, CREATE, MERGE, SHORTEST, PATTERN_PRED, SUBQUERY */
    TG_CYPHER_S_VAR = 0,     /* UNWIND, FOREACH, NODE_PAT, REL_PAT, PATH, comprehensions... */
    TG_CYPHER_S_ORDER = 1,
    TG_CYPHER_S_SKIP = 2,
    TG_CYPHER_S_LIMIT = 3,
    TG_CYPHER_S_LABELS = 1, /* NODE_PAT, REL_PAT, SET_LABELS, REMOVE_LABELS, LABEL_TEST */
    TG_CYPHER_S_PROPS = 2,  /* NODE_PAT, REL_PAT */
    TG_CYPHER_S_RANGE = 3,  /* REL_PAT */
    TG_CYPHER_S_WHERE = 4,
};
#define TG_CYPHER_KIDS 5

/* ---- operators and sub-kinds (the `op` and `lop` fields) --------------------------------- */

/* X(NAME, "spelling"): as the printer writes them. */
#define TG_CYPHER_OP_MAP(X)                                                                        \
    X(NONE, "")                                                                                    \
    /* INFIX levels, lowest first */                                                               \
    X(L_OR, "OR")                                                                                  \
    X(L_XOR, "XOR")                                                                                \
    X(L_AND, "AND")                                                                                \
    X(L_CMP, "comparison")                                                                         \
    X(L_ADD, "additive")                                                                           \
    X(L_MUL, "multiplicative")                                                                     \
    X(L_POW, "power")                                                                              \
    /* infix operators (lop) */                                                                    \
    X(OR, "OR")                                                                                    \
    X(XOR, "XOR")                                                                                  \
    X(AND, "AND")                                                                                  \
    X(EQ, "=")                                                                                     \
    X(NE, "<>")                                                                                    \
    X(LT, "<")                                                                                     \
    X(GT, ">")                                                                                     \
    X(LE, "<=")                                                                                    \
    X(GE, ">=")                                                                                    \
    X(ADD, "+")                                                                                    \
    X(SUB, "-")                                                                                    \
    X(CONCAT, "||")                                                                                \
    X(MUL, "*")                                                                                    \
    X(DIV, "/")                                                                                    \
    X(MOD, "%")                                                                                    \
    X(POW, "^")                                                                                    \
    /* PRED */                                                                                     \
    X(IN, "IN")                                                                                    \
    X(STARTS_WITH, "STARTS WITH")                                                                  \
    X(ENDS_WITH, "ENDS WITH")                                                                      \
    X(CONTAINS, "CONTAINS")                                                                        \
    X(REGEX, "=~")                                                                                 \
    X(IS_NULL, "IS NULL")                                                                          \
    X(IS_NOT_NULL, "IS NOT NULL")                                                                  \
    /* SORT_ITEM */                                                                                \
    X(ASC, "ASC")                                                                                  \
    X(DESC, "DESC")                                                                                \
    /* SET_VAR */                                                                                  \
    X(ASSIGN, "=")                                                                                 \
    X(APPEND, "+=")                                                                                \
    /* MERGE_ACTION */                                                                             \
    X(ON_CREATE, "ON CREATE SET")                                                                  \
    X(ON_MATCH, "ON MATCH SET")                                                                    \
    /* QUANT */                                                                                    \
    X(ALL, "all")                                                                                  \
    X(ANY, "any")                                                                                  \
    X(NONE_OF, "none")                                                                             \
    X(SINGLE, "single")                                                                            \
    /* SHORTEST */                                                                                 \
    X(SHORTEST, "shortestPath")                                                                    \
    X(ALL_SHORTEST, "allShortestPaths")                                                            \
    /* SUBQUERY */                                                                                 \
    X(EXISTS, "EXISTS")                                                                            \
    X(COUNT, "COUNT")                                                                              \
    X(COLLECT, "COLLECT")                                                                          \
    /* CONST */                                                                                    \
    X(TRUE, "true")                                                                                \
    X(FALSE, "false")                                                                              \
    X(NULL, "null")                                                                                \
    /* MAP_PROJ_ITEM */                                                                            \
    X(MP_PROP, ".key")                                                                             \
    X(MP_ALL, ".*")                                                                                \
    X(MP_VAR, "variable")                                                                          \
    X(MP_ENTRY, "key: value")

typedef enum {
#define TG_CYPHER_ENUM(n, s) TG_CYPHER_OP_##n,
    TG_CYPHER_OP_MAP(TG_CYPHER_ENUM)
#undef TG_CYPHER_ENUM
        TG_CYPHER_NUM_OPS
} tg_cypher_op;

/* REL_PAT direction bits: <-[]- is LEFT, -[]-> is RIGHT, <-[]-> both, -[]- neither. */
enum { TG_CYPHER_DIR_LEFT = 1, TG_CYPHER_DIR_RIGHT = 2 };

/* ---- flags ------------------------------------------------------------------------------- */

enum {
    TG_CYPHER_F_OPTIONAL = 1u << 0,
    TG_CYPHER_F_DISTINCT = 1u << 1,
    TG_CYPHER_F_STAR = 1u << 2,
    TG_CYPHER_F_DETACH = 1u << 3,
    TG_CYPHER_F_UNION = 1u << 4,
    TG_CYPHER_F_ALL = 1u << 5,
    TG_CYPHER_F_SCOPED = 1u << 6,
    TG_CYPHER_F_IN_TX = 1u << 7,
    TG_CYPHER_F_ARGS = 1u << 8,
    TG_CYPHER_F_YIELD = 1u << 9,
    TG_CYPHER_F_DETAIL = 1u << 10,
    TG_CYPHER_F_DOTS = 1u << 11,
    TG_CYPHER_F_FULL = 1u << 12,
    /* set by the rewriter */
    TG_CYPHER_F_TENANT = 1u << 16,    /* MAP_ENTRY / LABEL / WITH: added to scope a pattern */
    TG_CYPHER_F_BOUND_REF = 1u << 17, /* NODE_PAT in CREATE/MERGE naming a bound variable */
};

/* ---- the node ---------------------------------------------------------------------------- */

typedef struct tg_cypher_node tg_cypher_node;

struct tg_cypher_node {
    uint8_t kind;   /* tg_cypher_kind */
    uint8_t op;     /* tg_cypher_op, or DIR_* bits for REL_PAT */
    uint8_t lop;    /* INFIX operands after the first: the operator before this one */
    uint8_t unused; /* padding */
    uint32_t flags; /* TG_CYPHER_F_* */
    uint32_t offset;
    tg_cypher_str str; /* name, key, decoded string or literal text (see the table) */
    tg_cypher_node *kid[TG_CYPHER_KIDS];
    tg_cypher_node *next; /* next element of the list this node is in */
};

/* A new zeroed node of kind k in the arena; NULL when the arena is exhausted. */
tg_cypher_node *tg_cypher_node_new(tg_arena *a, tg_cypher_kind k, uint32_t offset);

/* Static name of a kind ("?" when out of range), for reasons and debugging. */
const char *tg_cypher_kind_name(unsigned kind);

/* Static spelling of an operator ("" when out of range). */
const char *tg_cypher_op_spelling(unsigned op);

/* Number of nodes in the list that starts at n. */
size_t tg_cypher_list_len(const tg_cypher_node *n);

/* Appends node to the list *head (the list's last `next` is followed). */
void tg_cypher_list_append(tg_cypher_node **head, tg_cypher_node *node);

#endif
