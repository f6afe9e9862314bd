/*
 * The Cypher parser: a recursive-descent parser over the lexer's tokens that
 * builds the syntax tree of cypher_ast.h.
 *
 *   statement  := [";"-terminated] query
 *   query      := single { UNION [ALL] single }
 *   single     := clause { clause }          RETURN / FINISH only last
 *   clause     := [OPTIONAL] MATCH pattern [WHERE e] | UNWIND e AS v | WITH ... | RETURN ...
 *               | CREATE pattern | MERGE part {ON (CREATE|MATCH) SET items} | SET items
 *               | REMOVE items | [DETACH] DELETE e, ... | FOREACH (v IN e | clause...)
 *               | [OPTIONAL] CALL [(vars|*)] { query } [IN TRANSACTIONS [OF e ROWS]]
 *               | [OPTIONAL] CALL name[(args)] [YIELD *|items [WHERE e]] | FINISH
 *   pattern    := part {, part};  part := [v =] (chain | shortestPath(chain) | ...)
 *   chain      := node { rel node };  node := ( [v] {:L} [map|$p] [WHERE e] )
 *   rel        := [<]-[ [v] [:T{|T}] [*[n][..[m]]] [map|$p] [WHERE e] ]-[>]  (or -- forms)
 *   expression := OR > XOR > AND > NOT > comparison (chained) > IN, STARTS WITH,
 *                 ENDS WITH, CONTAINS, =~, IS [NOT] NULL > + - || > * / % > ^ > unary + -
 *                 > postfix (.key [i] [a..b] :Label) > atom
 *   atom       := literal | $param | CASE | count(*) | [list / comprehensions] | {map}
 *               | all/any/none/single(v IN e WHERE p) | reduce(...) | EXISTS/COUNT/COLLECT {..}
 *               | pattern predicate | (e) | function(...) | variable [map projection]
 *
 * At "(" in an expression the lexer's bracket matching tells whether a
 * relationship follows the group: only then is a pattern tried, and when it
 * does not parse the parser backtracks to a parenthesised expression. A step
 * budget bounds the work backtracking can cause.
 *
 * Fail-closed: anything outside this grammar is refused with a short reason
 * (the clause or construct, never the statement's values), and so are
 * constructs recognised only to be refused: EXPLAIN/PROFILE, CYPHER options,
 * USE, LOAD CSV, schema and administration commands, quantified path
 * patterns, label expressions, planner hints. Bounded: statement length,
 * tokens, nesting depth, tree nodes and arena memory.
 */
#ifndef TG_POLICY_CYPHER_PARSER_H
#define TG_POLICY_CYPHER_PARSER_H

#include <stddef.h>
#include <stdint.h>

#include "policy/cypher_ast.h"
#include "policy/cypher_lexer.h"

/* Bounds of one parse; a zero field takes the default. */
typedef struct tg_cypher_limits {
    uint32_t max_bytes;  /* statement length; default 262144 */
    uint32_t max_tokens; /* default 65536 */
    uint32_t max_depth;  /* nesting of brackets and constructs; default 64 */
    uint32_t max_nodes;  /* syntax tree nodes; default 65536 */
    size_t max_memory;   /* arena bytes for one parse; default 16 MiB */
} tg_cypher_limits;

#define TG_CYPHER_DEFAULT_MAX_BYTES 262144u
#define TG_CYPHER_DEFAULT_MAX_TOKENS 65536u
#define TG_CYPHER_DEFAULT_MAX_DEPTH 64u
#define TG_CYPHER_DEFAULT_MAX_NODES 65536u
#define TG_CYPHER_DEFAULT_MAX_MEMORY ((size_t)16 << 20)

/* lim with its zero fields replaced by the defaults (lim may be NULL). */
tg_cypher_limits tg_cypher_limits_resolve(const tg_cypher_limits *lim);

/*
 * Parses one statement (len bytes, need not be NUL-terminated) into a tree
 * allocated from the arena (whose ceiling the caller set). Returns 0 and the
 * QUERY root in *out, or a negative TG_E* code with err filled: TG_EINVAL
 * (refused: outside the grammar or refused by it), TG_ELIMIT (a bound),
 * TG_ENOMEM (err->transient set).
 */
__attribute__((warn_unused_result)) int tg_cypher_parse(tg_arena *a, const char *text, size_t len,
                                                        const tg_cypher_limits *lim,
                                                        tg_cypher_node **out, tg_cypher_error *err);

/* True when word (ASCII, any case) is a reserved word that cannot name a variable unquoted. */
bool tg_cypher_is_reserved_word(const char *word, size_t len);

#endif
