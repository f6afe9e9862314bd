/*
 * The Cypher lexer: statement text in, an array of tokens out (into an arena).
 *
 *   bytes ──> skip whitespace and comments ──> token (with its decoded value)
 *         ──> brackets matched on a stack: every ( [ { knows its closer
 *
 * The whole statement is tokenised before parsing, so the parser can look
 * past a parenthesised group in O(1) (is "(a)" a node pattern followed by a
 * relationship, or an expression?).
 *
 * Strict on purpose. Outside string literals, quoted names and comments only
 * ASCII is accepted, and a backslash only inside string literals: Neo4j's
 * parsers have accepted Unicode escapes and Unicode dashes, arrows and
 * spaces in places this lexer would read differently; refusing them means the
 * printed statement (which never contains them) is read by Neo4j as it was
 * read here. Quoted names may not hold a backslash or a control character.
 * Strings are decoded (escapes \\ \' \" \b \f \n \r \t \uXXXX \UXXXXXXXX,
 * surrogate pairs joined) and must be valid UTF-8; other escapes are refused.
 * Numbers: decimal, 0x hex, 0o and legacy 0-prefixed octal, decimals with a
 * fraction and/or exponent, underscores between digits; kept as written.
 */
#ifndef TG_POLICY_CYPHER_LEXER_H
#define TG_POLICY_CYPHER_LEXER_H

#include <stdint.h>

#include "policy/cypher_ast.h"

#define TG_CYPHER_REASON_SIZE 160

/* Why a statement was refused: a short text (never quoting the statement's values). */
typedef struct tg_cypher_error {
    char reason[TG_CYPHER_REASON_SIZE];
    uint32_t offset; /* byte offset in the statement, when the reason names one */
    bool transient;  /* out of memory: not a property of the statement, do not cache */
} tg_cypher_error;

/* X(NAME, "spelling"): token types. */
#define TG_CYPHER_TOKEN_MAP(X)                                                                     \
    X(EOF, "end of statement")                                                                     \
    X(IDENT, "name")                                                                               \
    X(QIDENT, "quoted name")                                                                       \
    X(STRING, "string")                                                                            \
    X(INT, "integer")                                                                              \
    X(FLOAT, "float")                                                                              \
    X(PARAM, "parameter")                                                                          \
    X(LPAREN, "(")                                                                                 \
    X(RPAREN, ")")                                                                                 \
    X(LBRACKET, "[")                                                                               \
    X(RBRACKET, "]")                                                                               \
    X(LBRACE, "{")                                                                                 \
    X(RBRACE, "}")                                                                                 \
    X(COMMA, ",")                                                                                  \
    X(DOT, ".")                                                                                    \
    X(DOTDOT, "..")                                                                                \
    X(COLON, ":")                                                                                  \
    X(SEMI, ";")                                                                                   \
    X(PIPE, "|")                                                                                   \
    X(CONCAT, "||")                                                                                \
    X(EQ, "=")                                                                                     \
    X(NE, "<>")                                                                                    \
    X(LT, "<")                                                                                     \
    X(GT, ">")                                                                                     \
    X(LE, "<=")                                                                                    \
    X(GE, ">=")                                                                                    \
    X(PLUS, "+")                                                                                   \
    X(MINUS, "-")                                                                                  \
    X(STAR, "*")                                                                                   \
    X(SLASH, "/")                                                                                  \
    X(PERCENT, "%")                                                                                \
    X(CARET, "^")                                                                                  \
    X(REGEX, "=~")                                                                                 \
    X(PLUSEQ, "+=")

typedef enum {
#define TG_CYPHER_ENUM(n, s) TG_CYPHER_T_##n,
    TG_CYPHER_TOKEN_MAP(TG_CYPHER_ENUM)
#undef TG_CYPHER_ENUM
        TG_CYPHER_T_COUNT
} tg_cypher_token_type;

typedef struct tg_cypher_token {
    uint8_t type;      /* tg_cypher_token_type */
    uint32_t offset;   /* of the lexeme in the statement */
    uint32_t len;      /* of the lexeme */
    uint32_t match;    /* ( [ {: index of the matching closer (and the other way round) */
    tg_cypher_str val; /* IDENT: the word; QIDENT, STRING, PARAM: decoded; INT, FLOAT: lexeme */
} tg_cypher_token;

typedef struct tg_cypher_tokens {
    tg_cypher_token *t; /* n tokens, the last one EOF */
    uint32_t n;
} tg_cypher_tokens;

/* Static spelling of a token type, for reasons. */
const char *tg_cypher_token_name(unsigned type);

/*
 * Tokenises text (len bytes, need not be NUL-terminated) into the arena.
 * At most max_tokens tokens and max_depth nested brackets. Returns 0, or a
 * negative TG_E* code with err filled (TG_EINVAL: refused; TG_ENOMEM:
 * out of memory, err->transient set; TG_ELIMIT: a bound was exceeded).
 */
__attribute__((warn_unused_result)) int tg_cypher_lex(tg_arena *a, const char *text, size_t len,
                                                      uint32_t max_tokens, uint32_t max_depth,
                                                      tg_cypher_tokens *out, tg_cypher_error *err);

/* Fills err->reason (printf format) and err->offset; returns TG_EINVAL. */
int tg_cypher_fail(tg_cypher_error *err, uint32_t offset, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
