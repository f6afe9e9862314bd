/*
 * The Cypher printer: a syntax tree (cypher_ast.h) back to statement text.
 *
 *   tree ──print each node in canonical form──> growable buffer
 *
 * Canonical form: keywords upper case, one space between clauses and around
 * infix operators, names quoted with backticks when they are not plain ASCII
 * words or could be read as a keyword, strings in single quotes with only
 * the escapes \\ \' \n \r \t \b \f and \u00XX for other control characters,
 * numbers as written, no comments. Parentheses are printed where the tree has
 * PAREN nodes and nowhere else (the tree keeps the source's shape), so
 * printing a parsed statement and parsing the output again gives the same
 * tree: print(parse(print(t))) == print(t).
 */
#ifndef TG_POLICY_CYPHER_PRINTER_H
#define TG_POLICY_CYPHER_PRINTER_H

#include <stddef.h>

#include "policy/cypher_ast.h"

/* A growable output buffer: s is malloc'd and owned by the buffer. */
typedef struct tg_cypher_buf {
    char *s;    /* NUL-terminated after a successful print */
    size_t len; /* bytes written, without the NUL */
    size_t cap;
    size_t max; /* ceiling of len (0: none): reaching it fails the print with TG_ELIMIT */
    int err;    /* sticky: 0, TG_ENOMEM or TG_ELIMIT */
} tg_cypher_buf;

/* Empties b (keeps its memory for the next print) and clears its error. */
void tg_cypher_buf_reset(tg_cypher_buf *b);

/* Frees b's memory; b may be reused afterwards (as if zero-initialised). */
void tg_cypher_buf_free(tg_cypher_buf *b);

/*
 * Appends the statement of the tree rooted at query (a QUERY node, or any
 * other node for debugging) to out. Returns 0, or out->err (TG_ENOMEM,
 * TG_ELIMIT).
 */
__attribute__((warn_unused_result)) int tg_cypher_print(const tg_cypher_node *query,
                                                        tg_cypher_buf *out);

/*
 * True when name can be printed without backticks in the position of a
 * variable (a plain ASCII word, not reserved) or, with schema true, of a
 * label, relationship type or property key (any plain ASCII word).
 */
bool tg_cypher_plain_name(tg_cypher_str name, bool schema);

#endif
