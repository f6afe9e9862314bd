/*
 * The literal-blind form of a statement text (see sql_normalize.h), in one
 * pass over the bytes:
 *
 *   byte --> ' ........ '   string literal   --> TG_SQL_NORM_SCONST
 *        --> [0-9]+(.[0-9]+)                  --> TG_SQL_NORM_ICONST / _FCONST
 *        --> " ........ "   quoted identifier --> verbatim
 *        --> identifier, $n, punctuation, whitespace --> verbatim
 *        --> anything the rules below do not vouch for --> refuse (TG_EINVAL)
 *
 * Why two texts with the same form have the same PostgreSQL tokens. The form
 * is an injective encoding of (the bytes outside literals, the kind of each
 * literal): marker bytes never occur in accepted text. So the texts differ
 * only inside literal spans, and it remains to show that PostgreSQL's lexer
 * (src/backend/parser/scan.l) makes each of those spans exactly one token of
 * the marked kind, whatever its content, and lexes every other byte the same:
 *
 *  - A string span is ' then bytes other than ' and \ then ', not followed by
 *    another ' (a doubled quote) and not preceded by an identifier character
 *    or '&' (E'' B'' X'' N'' U&'' and friends; also 5'x', a$'x'). In scan.l's
 *    xq state only '' and the closing quote are special. In its xe state
 *    (E'', or every string with standard_conforming_strings off) a backslash
 *    is special too; we refuse backslashes everywhere, so the span means the
 *    same in both states. That is belt and braces: the guard denies SET /
 *    set_config of standard_conforming_strings to off, and that must stay so
 *    (tg_sql_guard_check's exact-text level relies on it as well). Adjacent
 *    spans separated by whitespace with a newline ('a'\n'b') are one SCONST
 *    to PostgreSQL; the whitespace is kept verbatim, so both texts have it.
 *  - A number span is [0-9]+ or [0-9]+.[0-9]+ that does not follow an
 *    identifier character or '.', and is not followed by an identifier
 *    character ([A-Za-z0-9_$]: exponents, 0x / 0o / 0b, 1_000, trailing junk)
 *    or '.' (1. 1.. 1.5.). Digits only are ICONST when the value fits int32
 *    and FCONST above (scan.l's process_integer_literal); with a point,
 *    FCONST. The marker records which, so Iconst-only grammar positions
 *    (FETCH n, type modifiers...) see the same token kind in both texts.
 *  - Comments (-- and slash-star) are refused outside literals: they can end where the
 *    lexer, not we, decides (nested comments, operators containing them). Inside a
 *    literal or a quoted identifier they are plain content.
 *  - '$' is accepted only as a positional parameter $<digits> not preceded or
 *    followed by an identifier character: every dollar quote and every
 *    identifier containing '$' is refused. A '.' before a digit (.5, a.1) is
 *    refused: it would start a numeric literal we do not mark.
 *  - Quoted identifiers are copied verbatim and refused when they contain a
 *    doubled quote, follow '&' (U&"") or an identifier character, or are not
 *    terminated.
 *  - Only printable ASCII and space, \t, \n, \r, \f are accepted, anywhere:
 *    no multibyte character exists to hide a quote in a client encoding, no
 *    NUL, no \v (whitespace only since PostgreSQL 16).
 *
 * One grammar rule checks an ICONST's value while parsing and builds
 * different trees from it: FLOAT(p) becomes float4, float8 or an error. An
 * identifier "float" followed by '(' is therefore refused. (The other,
 * ALTER ... ALTER COLUMN <number>, is DDL; the guard marks it value-dependent.)
 * The remaining value dependence of a verdict (set_config's setting name,
 * client_encoding...) is the guard's business: it records while judging
 * whether it read a literal's value, and caches under this form only when it
 * did not.
 */
#include "policy/sql_normalize.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "proxy/error.h"

/* Byte classes (bits): one table lookup per byte on the verbatim path. */
enum {
    B_OK = 1,     /* accepted anywhere, literals included: printable ASCII but '\', whitespace */
    B_SPACE = 2,  /* space \t \n \r \f */
    B_WORD = 4,   /* [A-Za-z0-9_]: continues an identifier */
    B_START = 8,  /* [A-Za-z_]: starts one */
    B_DIGIT = 16, /* [0-9] */
    B_IDENT = 32, /* scan.l's ident_cont: B_WORD or '$' */
};

#define R4(x) x, x, x, x
#define R8(x) R4(x), R4(x)
#define R16(x) R8(x), R8(x)
#define P (B_OK)
#define W (B_OK | B_WORD | B_START | B_IDENT)
#define D (B_OK | B_WORD | B_DIGIT | B_IDENT)
#define S (B_OK | B_SPACE)

static const unsigned char byte_class[256] = {
    /* 0x00 */ 0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    S,
    S,
    0 /* \v */,
    S,
    S,
    0,
    0,
    /* 0x10 */ R16(0),
    /* 0x20 */ S,
    P,
    P,
    P,
    P | B_IDENT /* $ */,
    P,
    P,
    P,
    P,
    P,
    P,
    P,
    P,
    P,
    P,
    P,
    /* 0x30 */ D,
    D,
    D,
    D,
    D,
    D,
    D,
    D,
    D,
    D,
    P,
    P,
    P,
    P,
    P,
    P,
    /* 0x40 */ P,
    W,
    W,
    W,
    W,
    W,
    W,
    W,
    W,
    W,
    W,
    W,
    W,
    W,
    W,
    W,
    /* 0x50 */ W,
    W,
    W,
    W,
    W,
    W,
    W,
    W,
    W,
    W,
    W,
    P,
    0 /* \ */,
    P,
    P,
    W /* _ */,
    /* 0x60 */ P,
    W,
    W,
    W,
    W,
    W,
    W,
    W,
    W,
    W,
    W,
    W,
    W,
    W,
    W,
    W,
    /* 0x70 */ W,
    W,
    W,
    W,
    W,
    W,
    W,
    W,
    W,
    W,
    W,
    P,
    P,
    P,
    P,
    0 /* DEL */,
    /* 0x80 */ R16(0),
    R16(0),
    R16(0),
    R16(0),
    R16(0),
    R16(0),
    R16(0),
    R16(0),
};

#undef R4
#undef R8
#undef R16
#undef P
#undef W
#undef D
#undef S

static bool has(unsigned char c, unsigned bits)
{
    return (byte_class[c] & bits) != 0;
}

/* ASCII case-insensitive "float". */
static bool is_float_word(const unsigned char *s, size_t n)
{
    static const char word[] = "float";
    if (n != sizeof(word) - 1)
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((s[i] | 0x20) != (unsigned char)word[i])
            return false;
    }
    return true;
}

/*
 * The end of a quoted span starting at s[i] (the opening quote q): the index
 * just past the closing quote, or 0 when the span is not acceptable.
 */
static size_t quoted_end(const unsigned char *s, size_t len, size_t i, unsigned char q)
{
    for (size_t j = i + 1; j < len; j++) {
        if (s[j] == q) {
            if (j + 1 < len && s[j + 1] == q)
                return 0; /* '' or "": a quote inside */
            return j + 1;
        }
        if (!has(s[j], B_OK))
            return 0;
    }
    return 0; /* unterminated */
}

/*
 * The end of a number span starting at s[i], and its marker in *marker; 0
 * when the span is not acceptable.
 */
static size_t number_end(const unsigned char *s, size_t len, size_t i, char *marker)
{
    uint32_t value = 0;
    bool big = false;
    size_t end = i;
    for (; end < len && has(s[end], B_DIGIT); end++) {
        uint32_t d = (uint32_t)(s[end] - '0');
        if (!big && value > (UINT32_C(2147483647) - d) / 10)
            big = true; /* above INT32_MAX: scan.l makes it an FCONST */
        else if (!big)
            value = value * 10 + d;
    }
    *marker = big ? TG_SQL_NORM_FCONST : TG_SQL_NORM_ICONST;
    if (end < len && s[end] == '.') {
        if (end + 1 >= len || !has(s[end + 1], B_DIGIT))
            return 0; /* 1. 1.. 1.e5 */
        for (end++; end < len && has(s[end], B_DIGIT); end++)
            ;
        *marker = TG_SQL_NORM_FCONST;
    }
    if (end < len && (has(s[end], B_IDENT) || s[end] == '.'))
        return 0; /* 1e5 0x1f 1_000 12abc 1.5.1 1$ */
    return end;
}

int tg_sql_normalize(const char *sql, size_t len, char *out, size_t cap, size_t *out_len)
{
    const unsigned char *s = (const unsigned char *)sql;
    size_t i = 0, o = 0, run = 0; /* s[run..i) is verbatim, not yet copied */
    int literals = 0;
    *out_len = 0;
    if (!sql && len)
        return TG_EINVAL;
    while (i < len) {
        unsigned char c = s[i];
        unsigned char prev = i ? s[i - 1] : ' ';
        unsigned char next = i + 1 < len ? s[i + 1] : ' ';
        size_t end;
        char marker;
        if (has(c, B_START)) {
            for (end = i + 1; end < len && has(s[end], B_WORD); end++)
                ;
            if (end < len && s[end] == '$')
                return TG_EINVAL; /* an identifier with '$' */
            if (is_float_word(s + i, end - i)) {
                size_t j = end;
                while (j < len && has(s[j], B_SPACE))
                    j++;
                if (j < len && s[j] == '(')
                    return TG_EINVAL; /* FLOAT(p): the parser reads p */
            }
            i = end;
            continue;
        }
        switch (c) {
        case '\'':
            if (has(prev, B_IDENT) || prev == '&')
                return TG_EINVAL; /* E'' B'' X'' N'' U&'' 5'x' */
            end = quoted_end(s, len, i, '\'');
            marker = TG_SQL_NORM_SCONST;
            break;
        case '0':
        case '1':
        case '2':
        case '3':
        case '4':
        case '5':
        case '6':
        case '7':
        case '8':
        case '9':
            if (has(prev, B_IDENT) || prev == '.')
                return TG_EINVAL; /* .5 a.1 (a digit after an identifier is part of it) */
            end = number_end(s, len, i, &marker);
            break;
        case '"':
            if (has(prev, B_IDENT) || prev == '&')
                return TG_EINVAL; /* U&"" */
            end = quoted_end(s, len, i, '"');
            if (!end)
                return TG_EINVAL;
            i = end; /* verbatim */
            continue;
        case '$':
            if (has(prev, B_IDENT) || !has(next, B_DIGIT))
                return TG_EINVAL; /* dollar quoting, identifiers with '$' */
            for (end = i + 1; end < len && has(s[end], B_DIGIT); end++)
                ;
            if (end < len && has(s[end], B_IDENT))
                return TG_EINVAL; /* $1abc $1$ */
            i = end;              /* verbatim */
            continue;
        case '-':
        case '/':
            if (next == (c == '-' ? '-' : '*'))
                return TG_EINVAL; /* a comment */
            i++;
            continue;
        case '.':
            if (has(next, B_DIGIT))
                return TG_EINVAL; /* .5 a.1 */
            i++;
            continue;
        default:
            if (!has(c, B_OK))
                return TG_EINVAL;
            i++; /* whitespace, punctuation, operator characters */
            continue;
        }
        if (!end)
            return TG_EINVAL;
        /* a literal: flush the verbatim run, then its marker */
        if (i - run >= cap - o)
            return TG_EINVAL;
        memcpy(out + o, s + run, i - run);
        o += i - run;
        out[o++] = marker;
        if (literals < INT_MAX)
            literals++;
        i = run = end;
    }
    if (len - run > cap - o)
        return TG_EINVAL;
    if (len > run)
        memcpy(out + o, s + run, len - run);
    o += len - run;
    *out_len = o;
    return literals;
}
