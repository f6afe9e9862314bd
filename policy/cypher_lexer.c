/*
 * The Cypher lexer (see cypher_lexer.h for what it accepts and why).
 *
 *   for each lexeme:
 *     whitespace, line and block comments                skipped
 *     letter or _                                      IDENT (keywords are IDENTs; the
 *                                                      parser compares them case-blind)
 *     `quoted name`                                    QIDENT (`` is one backtick)
 *     'string' / "string"                              STRING, decoded into the arena
 *     digit, or . digit                                INT / FLOAT, validated, kept as written
 *     $name / $`name` / $0                             PARAM
 *     punctuation                                      longest match (<= <> =~ += .. ||)
 *     ( [ {                                            pushed; the closer pops and both
 *                                                      record each other's index
 */
#include "policy/cypher_lexer.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "proxy/error.h"
#include "proxy/utf8.h"

static const char *const token_names[] = {
#define TG_CYPHER_NAME(n, s) s,
    TG_CYPHER_TOKEN_MAP(TG_CYPHER_NAME)
#undef TG_CYPHER_NAME
};

const char *tg_cypher_token_name(unsigned type)
{
    return type < TG_CYPHER_T_COUNT ? token_names[type] : "?";
}

int tg_cypher_fail(tg_cypher_error *err, uint32_t offset, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->reason, sizeof(err->reason), fmt, ap);
    va_end(ap);
    err->offset = offset;
    return TG_EINVAL;
}

typedef struct lexer {
    tg_arena *arena;
    const char *s;
    size_t len, pos;
    tg_cypher_token *toks;
    uint32_t n, cap, max_tokens;
    uint32_t *stack; /* indices of open brackets */
    uint32_t depth, max_depth;
    tg_cypher_error *err;
} lexer;

static bool is_ident_start(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_ident_char(unsigned char c)
{
    return is_ident_start(c) || (c >= '0' && c <= '9');
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int out_of_memory(lexer *lx)
{
    if (lx->arena->nomem) {
        lx->err->transient = true;
        snprintf(lx->err->reason, sizeof(lx->err->reason), "out of memory");
        return TG_ENOMEM;
    }
    snprintf(lx->err->reason, sizeof(lx->err->reason), "statement too large to analyse");
    return TG_ELIMIT;
}

/* Writes code point cp as UTF-8 to out; returns the number of bytes (1-4). */
static size_t utf8_put(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

static int push_token(lexer *lx, tg_cypher_token_type type, size_t start, tg_cypher_str val)
{
    if (lx->n >= lx->max_tokens) {
        snprintf(lx->err->reason, sizeof(lx->err->reason), "statement has too many tokens");
        lx->err->offset = (uint32_t)start;
        return TG_ELIMIT;
    }
    if (lx->n == lx->cap) {
        uint32_t ncap = lx->cap ? lx->cap * 2 : 64;
        if (ncap > lx->max_tokens + 1)
            ncap = lx->max_tokens + 1;
        tg_cypher_token *t = tg_arena_alloc(lx->arena, (size_t)ncap * sizeof(*t));
        if (!t)
            return out_of_memory(lx);
        if (lx->n)
            memcpy(t, lx->toks, (size_t)lx->n * sizeof(*t));
        lx->toks = t;
        lx->cap = ncap;
    }
    tg_cypher_token *t = &lx->toks[lx->n++];
    t->type = (uint8_t)type;
    t->offset = (uint32_t)start;
    t->len = (uint32_t)(lx->pos - start);
    t->match = 0;
    t->val = val;
    return 0;
}

/* Skips whitespace and comments; fails on an unterminated block comment. */
static int skip_space(lexer *lx)
{
    while (lx->pos < lx->len) {
        char c = lx->s[lx->pos];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
            lx->pos++;
        } else if (c == '/' && lx->pos + 1 < lx->len && lx->s[lx->pos + 1] == '/') {
            while (lx->pos < lx->len && lx->s[lx->pos] != '\n')
                lx->pos++;
        } else if (c == '/' && lx->pos + 1 < lx->len && lx->s[lx->pos + 1] == '*') {
            size_t start = lx->pos;
            lx->pos += 2;
            for (;;) {
                if (lx->pos + 1 >= lx->len)
                    return tg_cypher_fail(lx->err, (uint32_t)start, "unterminated comment");
                if (lx->s[lx->pos] == '*' && lx->s[lx->pos + 1] == '/') {
                    lx->pos += 2;
                    break;
                }
                lx->pos++;
            }
        } else {
            break;
        }
    }
    return 0;
}

/* `quoted name` at lx->pos: the decoded name in *out. */
static int lex_quoted_name(lexer *lx, tg_cypher_str *out)
{
    size_t start = lx->pos++;
    size_t n = 0; /* decoded length */
    size_t i = lx->pos;
    for (;;) {
        if (i >= lx->len)
            return tg_cypher_fail(lx->err, (uint32_t)start, "unterminated quoted name");
        unsigned char c = (unsigned char)lx->s[i];
        if (c == '`') {
            if (i + 1 < lx->len && lx->s[i + 1] == '`') {
                i += 2;
                n++;
                continue;
            }
            break;
        }
        if (c == '\\')
            return tg_cypher_fail(lx->err, (uint32_t)start, "backslash in a quoted name");
        if (c < 0x20 || c == 0x7f)
            return tg_cypher_fail(lx->err, (uint32_t)start, "control character in a quoted name");
        size_t k = tg_utf8_next((const uint8_t *)lx->s + i, lx->len - i);
        if (k == 0)
            return tg_cypher_fail(lx->err, (uint32_t)start, "invalid UTF-8 in a quoted name");
        i += k;
        n += k;
    }
    if (n == 0)
        return tg_cypher_fail(lx->err, (uint32_t)start, "empty quoted name");
    char *d = tg_arena_alloc(lx->arena, n);
    if (!d)
        return out_of_memory(lx);
    size_t o = 0;
    for (size_t j = lx->pos; j < i; j++) {
        d[o++] = lx->s[j];
        if (lx->s[j] == '`')
            j++; /* `` -> ` */
    }
    lx->pos = i + 1;
    *out = (tg_cypher_str){d, n};
    return 0;
}

/* Reads `digits` hex digits at p; -1 when they are not all hex. */
static int32_t read_hex(const char *p, size_t avail, int digits)
{
    if (avail < (size_t)digits)
        return -1;
    int32_t v = 0;
    for (int i = 0; i < digits; i++) {
        int h = hex_value((unsigned char)p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* 'string' or "string" at lx->pos: the decoded value in *out. */
static int lex_string(lexer *lx, tg_cypher_str *out)
{
    size_t start = lx->pos;
    char quote = lx->s[lx->pos++];
    /* the decoded value is never longer than the raw text */
    size_t end = lx->pos;
    while (end < lx->len && lx->s[end] != quote)
        end += lx->s[end] == '\\' ? 2 : 1;
    if (end >= lx->len)
        return tg_cypher_fail(lx->err, (uint32_t)start, "unterminated string");
    char *d = tg_arena_alloc(lx->arena, end - lx->pos + 1);
    if (!d)
        return out_of_memory(lx);
    size_t o = 0, i = lx->pos;
    while (i < end) {
        unsigned char c = (unsigned char)lx->s[i];
        if (c == 0)
            return tg_cypher_fail(lx->err, (uint32_t)i, "NUL byte in a string");
        if (c != '\\') {
            size_t k = tg_utf8_next((const uint8_t *)lx->s + i, end - i);
            if (k == 0)
                return tg_cypher_fail(lx->err, (uint32_t)i, "invalid UTF-8 in a string");
            memcpy(d + o, lx->s + i, k);
            o += k;
            i += k;
            continue;
        }
        char e = lx->s[i + 1];
        uint32_t cp;
        size_t used = 2;
        switch (e) {
        case '\\':
        case '\'':
        case '"':
            d[o++] = e;
            i += 2;
            continue;
        case 'b':
            d[o++] = '\b';
            i += 2;
            continue;
        case 'f':
            d[o++] = '\f';
            i += 2;
            continue;
        case 'n':
            d[o++] = '\n';
            i += 2;
            continue;
        case 'r':
            d[o++] = '\r';
            i += 2;
            continue;
        case 't':
            d[o++] = '\t';
            i += 2;
            continue;
        case 'u': {
            int32_t v = read_hex(lx->s + i + 2, end - (i + 2), 4);
            if (v < 0)
                return tg_cypher_fail(lx->err, (uint32_t)i, "invalid \\u escape in a string");
            used = 6;
            cp = (uint32_t)v;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                /* a high surrogate must be followed by \u and a low one */
                int32_t lo = -1;
                if (i + 7 < end && lx->s[i + 6] == '\\' && lx->s[i + 7] == 'u')
                    lo = read_hex(lx->s + i + 8, end - (i + 8), 4);
                if (lo < 0xdc00 || lo > 0xdfff)
                    return tg_cypher_fail(lx->err, (uint32_t)i, "unpaired surrogate in a string");
                cp = 0x10000 + ((cp - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
                used = 12;
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                return tg_cypher_fail(lx->err, (uint32_t)i, "unpaired surrogate in a string");
            }
            break;
        }
        case 'U': {
            int32_t v = read_hex(lx->s + i + 2, end - (i + 2), 8);
            if (v < 0 || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
                return tg_cypher_fail(lx->err, (uint32_t)i, "invalid \\U escape in a string");
            cp = (uint32_t)v;
            used = 10;
            break;
        }
        default:
            return tg_cypher_fail(lx->err, (uint32_t)i, "unknown escape in a string");
        }
        /* an escape's UTF-8 (at most 4 bytes) is never longer than the escape (6+ bytes) */
        o += utf8_put(cp, d + o);
        i += used;
    }
    lx->pos = end + 1;
    *out = (tg_cypher_str){d, o};
    return 0;
}

/* Digits of a base with single underscores between them; returns how many bytes were read. */
static size_t scan_digits(const char *s, size_t len, size_t i, int base)
{
    size_t start = i;
    bool last_digit = false;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        int v = hex_value(c);
        if (v >= 0 && v < base && (base == 16 || is_digit(c))) {
            last_digit = true;
            i++;
        } else if (c == '_' && last_digit && i + 1 < len) {
            unsigned char d = (unsigned char)s[i + 1];
            int w = hex_value(d);
            if (!(w >= 0 && w < base && (base == 16 || is_digit(d))))
                break;
            last_digit = false;
            i++;
        } else {
            break;
        }
    }
    return i - start;
}

/* A number at lx->pos (a digit, or '.' then a digit). */
static int lex_number(lexer *lx)
{
    size_t start = lx->pos, i = lx->pos;
    const char *s = lx->s;
    bool is_float = false;
    if (s[i] == '0' && i + 1 < lx->len && (s[i + 1] == 'x' || s[i + 1] == 'o')) {
        int base = s[i + 1] == 'x' ? 16 : 8;
        size_t k = scan_digits(s, lx->len, i + 2, base);
        if (k == 0)
            return tg_cypher_fail(lx->err, (uint32_t)start, "invalid number");
        i += 2 + k;
    } else {
        i += scan_digits(s, lx->len, i, 10);
        if (i + 1 < lx->len && s[i] == '.' && is_digit((unsigned char)s[i + 1])) {
            is_float = true;
            i += 1 + scan_digits(s, lx->len, i + 1, 10);
        }
        if (i < lx->len && (s[i] == 'e' || s[i] == 'E')) {
            size_t j = i + 1;
            if (j < lx->len && (s[j] == '+' || s[j] == '-'))
                j++;
            size_t k = j < lx->len ? scan_digits(s, lx->len, j, 10) : 0;
            if (k == 0)
                return tg_cypher_fail(lx->err, (uint32_t)start, "invalid number");
            is_float = true;
            i = j + k;
        }
        if (!is_float && s[start] == '0' && i - start > 1) {
            /* legacy octal 017: octal digits only */
            for (size_t j = start + 1; j < i; j++)
                if (s[j] == '8' || s[j] == '9')
                    return tg_cypher_fail(lx->err, (uint32_t)start, "invalid number");
        }
    }
    if (i < lx->len && (is_ident_char((unsigned char)s[i]) || s[i] == '$'))
        return tg_cypher_fail(lx->err, (uint32_t)start, "invalid number");
    lx->pos = i;
    return push_token(lx, is_float ? TG_CYPHER_T_FLOAT : TG_CYPHER_T_INT, start,
                      (tg_cypher_str){s + start, i - start});
}

/* $name, $`name` or $0 at lx->pos. */
static int lex_param(lexer *lx)
{
    size_t start = lx->pos++;
    tg_cypher_str name;
    if (lx->pos < lx->len && lx->s[lx->pos] == '`') {
        int rc = lex_quoted_name(lx, &name);
        if (rc)
            return rc;
    } else if (lx->pos < lx->len && is_ident_start((unsigned char)lx->s[lx->pos])) {
        size_t b = lx->pos;
        while (lx->pos < lx->len && is_ident_char((unsigned char)lx->s[lx->pos]))
            lx->pos++;
        name = (tg_cypher_str){lx->s + b, lx->pos - b};
    } else if (lx->pos < lx->len && is_digit((unsigned char)lx->s[lx->pos])) {
        size_t b = lx->pos;
        while (lx->pos < lx->len && is_digit((unsigned char)lx->s[lx->pos]))
            lx->pos++;
        if (lx->pos < lx->len && is_ident_char((unsigned char)lx->s[lx->pos]))
            return tg_cypher_fail(lx->err, (uint32_t)start, "invalid parameter name");
        name = (tg_cypher_str){lx->s + b, lx->pos - b};
    } else {
        return tg_cypher_fail(lx->err, (uint32_t)start, "invalid parameter name");
    }
    return push_token(lx, TG_CYPHER_T_PARAM, start, name);
}

static int open_bracket(lexer *lx)
{
    if (lx->depth >= lx->max_depth) {
        snprintf(lx->err->reason, sizeof(lx->err->reason), "statement is nested too deeply");
        lx->err->offset = (uint32_t)lx->pos;
        return TG_ELIMIT;
    }
    lx->stack[lx->depth++] = lx->n - 1;
    return 0;
}

static int close_bracket(lexer *lx, tg_cypher_token_type open)
{
    tg_cypher_token *t = &lx->toks[lx->n - 1];
    if (lx->depth == 0 || lx->toks[lx->stack[lx->depth - 1]].type != open)
        return tg_cypher_fail(lx->err, t->offset, "unbalanced '%s'", tg_cypher_token_name(t->type));
    uint32_t o = lx->stack[--lx->depth];
    lx->toks[o].match = lx->n - 1;
    t->match = o;
    return 0;
}

/* Punctuation at lx->pos. */
static int lex_punct(lexer *lx)
{
    size_t start = lx->pos;
    char c = lx->s[lx->pos];
    char d = lx->pos + 1 < lx->len ? lx->s[lx->pos + 1] : '\0';
    tg_cypher_token_type t;
    size_t n = 1;
    switch (c) {
    case '(':
        t = TG_CYPHER_T_LPAREN;
        break;
    case ')':
        t = TG_CYPHER_T_RPAREN;
        break;
    case '[':
        t = TG_CYPHER_T_LBRACKET;
        break;
    case ']':
        t = TG_CYPHER_T_RBRACKET;
        break;
    case '{':
        t = TG_CYPHER_T_LBRACE;
        break;
    case '}':
        t = TG_CYPHER_T_RBRACE;
        break;
    case ',':
        t = TG_CYPHER_T_COMMA;
        break;
    case '.':
        t = d == '.' ? TG_CYPHER_T_DOTDOT : TG_CYPHER_T_DOT;
        n = d == '.' ? 2 : 1;
        break;
    case ':':
        if (d == ':')
            return tg_cypher_fail(lx->err, (uint32_t)start,
                                  "type predicates (::) are not supported");
        t = TG_CYPHER_T_COLON;
        break;
    case ';':
        t = TG_CYPHER_T_SEMI;
        break;
    case '|':
        t = d == '|' ? TG_CYPHER_T_CONCAT : TG_CYPHER_T_PIPE;
        n = d == '|' ? 2 : 1;
        break;
    case '=':
        t = d == '~' ? TG_CYPHER_T_REGEX : TG_CYPHER_T_EQ;
        n = d == '~' ? 2 : 1;
        break;
    case '<':
        if (d == '>') {
            t = TG_CYPHER_T_NE;
            n = 2;
        } else if (d == '=') {
            t = TG_CYPHER_T_LE;
            n = 2;
        } else {
            t = TG_CYPHER_T_LT;
        }
        break;
    case '>':
        t = d == '=' ? TG_CYPHER_T_GE : TG_CYPHER_T_GT;
        n = d == '=' ? 2 : 1;
        break;
    case '+':
        t = d == '=' ? TG_CYPHER_T_PLUSEQ : TG_CYPHER_T_PLUS;
        n = d == '=' ? 2 : 1;
        break;
    case '-':
        t = TG_CYPHER_T_MINUS;
        break;
    case '*':
        t = TG_CYPHER_T_STAR;
        break;
    case '/':
        t = TG_CYPHER_T_SLASH;
        break;
    case '%':
        t = TG_CYPHER_T_PERCENT;
        break;
    case '^':
        t = TG_CYPHER_T_CARET;
        break;
    default:
        if ((unsigned char)c >= 0x80)
            return tg_cypher_fail(lx->err, (uint32_t)start,
                                  "non-ASCII character outside a string or quoted name");
        if (c == '\\')
            return tg_cypher_fail(lx->err, (uint32_t)start, "backslash outside a string");
        return tg_cypher_fail(lx->err, (uint32_t)start, "unexpected character 0x%02x",
                              (unsigned)(unsigned char)c);
    }
    lx->pos += n;
    int rc = push_token(lx, t, start, (tg_cypher_str){lx->s + start, n});
    if (rc)
        return rc;
    switch (t) {
    case TG_CYPHER_T_LPAREN:
    case TG_CYPHER_T_LBRACKET:
    case TG_CYPHER_T_LBRACE:
        return open_bracket(lx);
    case TG_CYPHER_T_RPAREN:
        return close_bracket(lx, TG_CYPHER_T_LPAREN);
    case TG_CYPHER_T_RBRACKET:
        return close_bracket(lx, TG_CYPHER_T_LBRACKET);
    case TG_CYPHER_T_RBRACE:
        return close_bracket(lx, TG_CYPHER_T_LBRACE);
    default:
        return 0;
    }
}

int tg_cypher_lex(tg_arena *a, const char *text, size_t len, uint32_t max_tokens,
                  uint32_t max_depth, tg_cypher_tokens *out, tg_cypher_error *err)
{
    lexer lx = {.arena = a, .s = text, .len = len, .max_tokens = max_tokens, .err = err};
    lx.max_depth = max_depth ? max_depth : 1;
    out->t = NULL;
    out->n = 0;
    if (len > UINT32_MAX / 2) {
        snprintf(err->reason, sizeof(err->reason), "statement too long");
        return TG_ELIMIT;
    }
    lx.stack = tg_arena_alloc(a, (size_t)lx.max_depth * sizeof(uint32_t));
    if (!lx.stack)
        return out_of_memory(&lx);
    for (;;) {
        int rc = skip_space(&lx);
        if (rc)
            return rc;
        if (lx.pos >= len)
            break;
        unsigned char c = (unsigned char)text[lx.pos];
        size_t start = lx.pos;
        if (is_ident_start(c)) {
            while (lx.pos < len && is_ident_char((unsigned char)text[lx.pos]))
                lx.pos++;
            rc = push_token(&lx, TG_CYPHER_T_IDENT, start,
                            (tg_cypher_str){text + start, lx.pos - start});
        } else if (c == '`') {
            tg_cypher_str v;
            rc = lex_quoted_name(&lx, &v);
            if (!rc)
                rc = push_token(&lx, TG_CYPHER_T_QIDENT, start, v);
        } else if (c == '\'' || c == '"') {
            tg_cypher_str v;
            rc = lex_string(&lx, &v);
            if (!rc)
                rc = push_token(&lx, TG_CYPHER_T_STRING, start, v);
        } else if (is_digit(c) ||
                   (c == '.' && lx.pos + 1 < len && is_digit((unsigned char)text[lx.pos + 1]) &&
                    !(lx.n && lx.toks[lx.n - 1].type == TG_CYPHER_T_IDENT))) {
            rc = lex_number(&lx);
        } else if (c == '$') {
            rc = lex_param(&lx);
        } else {
            rc = lex_punct(&lx);
        }
        if (rc)
            return rc;
    }
    if (lx.depth) {
        tg_cypher_token *t = &lx.toks[lx.stack[lx.depth - 1]];
        return tg_cypher_fail(err, t->offset, "unbalanced '%s'", tg_cypher_token_name(t->type));
    }
    lx.max_tokens++; /* room for EOF */
    int rc = push_token(&lx, TG_CYPHER_T_EOF, len, (tg_cypher_str){text + len, 0});
    if (rc)
        return rc;
    out->t = lx.toks;
    out->n = lx.n;
    return 0;
}
