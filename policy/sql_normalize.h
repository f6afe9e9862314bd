/*
 * Literal-blind statement text for the SQL guard's second cache level.
 *
 *   "SELECT abalance FROM pgbench_accounts WHERE aid = 48271;"
 *        --tg_sql_normalize--> "SELECT abalance FROM pgbench_accounts WHERE aid = \x01;"
 *
 * Every numeric and string literal is replaced by one marker byte that names
 * the token PostgreSQL's lexer returns for it (ICONST, FCONST, SCONST);
 * everything else is copied verbatim. The normalizer accepts only a subset of
 * SQL whose lexing it can reproduce exactly, so that two accepted texts with
 * the same output are lexed by PostgreSQL into the same token sequence, with
 * the same token kinds, differing only in the values of those literals. On
 * anything else (comments, dollar quoting, E'' / B'' / X'' / N'' / U&'' forms,
 * doubled quotes, backslashes, bytes >= 0x80, control bytes, exponents, hex /
 * octal / binary / underscore numerics, ...) it refuses, and the caller
 * judges the text by a full parse.
 */
#ifndef TG_POLICY_SQL_NORMALIZE_H
#define TG_POLICY_SQL_NORMALIZE_H

#include <stddef.h>

/* Marker bytes; accepted input never holds a byte below 0x09, so they cannot be forged. */
#define TG_SQL_NORM_ICONST '\x01' /* [0-9]+ with a value <= INT32_MAX: the lexer's ICONST */
#define TG_SQL_NORM_FCONST '\x02' /* [0-9]+ above INT32_MAX, or [0-9]+.[0-9]+: FCONST */
#define TG_SQL_NORM_SCONST '\x03' /* '...' without quotes or backslashes inside: SCONST */

/*
 * Writes the literal-blind form of sql (len bytes, need not be NUL-terminated)
 * to out (cap bytes; the form is never longer than len, so cap >= len always
 * suffices) and its length to *out_len. Returns the number of literals
 * replaced (0 when the text has none), or TG_EINVAL when the text is outside
 * the accepted subset or does not fit in cap. Pure: no allocation, no state.
 */
int tg_sql_normalize(const char *sql, size_t len, char *out, size_t cap, size_t *out_len);

#endif
