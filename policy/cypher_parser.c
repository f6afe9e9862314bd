/*
 * The Cypher parser (grammar and policy in cypher_parser.h).
 *
 *   tokens ──parse_statement──> parse_query ──> parse_single ──> parse_clause
 *                                                                 │
 *          parse_pattern <── MATCH/CREATE/MERGE                   │
 *          parse_expr ──> or > xor > and > not > comparison > predicate
 *                     > additive > multiplicative > power > unary > postfix > atom
 *
 * Every parse_* function returns the node it built, or NULL after recording
 * the failure in the parser (the first failure wins; p->rc says its class).
 * Backtracking (a parenthesised group that turned out not to be a pattern)
 * restores the token position and clears a TG_EINVAL failure; a bound or
 * out-of-memory failure is never retried.
 */
#include "policy/cypher_parser.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "proxy/error.h"

typedef struct parser {
    tg_arena *arena;
    const tg_cypher_token *t;
    uint32_t n, pos;
    uint32_t depth, max_depth;
    uint32_t nodes, max_nodes;
    uint64_t steps, max_steps;
    tg_cypher_error *err;
    int rc; /* 0, or the first failure's TG_E* code */
} parser;

tg_cypher_limits tg_cypher_limits_resolve(const tg_cypher_limits *lim)
{
    tg_cypher_limits l = lim ? *lim : (tg_cypher_limits){0};
    if (!l.max_bytes)
        l.max_bytes = TG_CYPHER_DEFAULT_MAX_BYTES;
    if (!l.max_tokens)
        l.max_tokens = TG_CYPHER_DEFAULT_MAX_TOKENS;
    if (!l.max_depth)
        l.max_depth = TG_CYPHER_DEFAULT_MAX_DEPTH;
    if (!l.max_nodes)
        l.max_nodes = TG_CYPHER_DEFAULT_MAX_NODES;
    if (!l.max_memory)
        l.max_memory = TG_CYPHER_DEFAULT_MAX_MEMORY;
    return l;
}

/* ---- failures ---------------------------------------------------------------------------- */

__attribute__((format(printf, 2, 3))) static tg_cypher_node *fail(parser *p, const char *fmt, ...)
{
    if (p->rc)
        return NULL;
    p->rc = TG_EINVAL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err->reason, sizeof(p->err->reason), fmt, ap);
    va_end(ap);
    p->err->offset = p->t[p->pos].offset;
    return NULL;
}

static tg_cypher_node *fail_limit(parser *p, const char *what)
{
    if (p->rc)
        return NULL;
    p->rc = TG_ELIMIT;
    snprintf(p->err->reason, sizeof(p->err->reason), "%s", what);
    p->err->offset = p->t[p->pos].offset;
    return NULL;
}

static tg_cypher_node *fail_arena(parser *p)
{
    if (p->rc)
        return NULL;
    if (p->arena->nomem) {
        p->rc = TG_ENOMEM;
        p->err->transient = true;
        snprintf(p->err->reason, sizeof(p->err->reason), "out of memory");
        return NULL;
    }
    return fail_limit(p, "statement too large to analyse");
}

/* A syntax error at the current token, naming what was expected. */
static tg_cypher_node *expected(parser *p, const char *what)
{
    const tg_cypher_token *t = &p->t[p->pos];
    return fail(p, "syntax error at offset %u: expected %s, found %s", (unsigned)t->offset, what,
                tg_cypher_token_name(t->type));
}

/* ---- tokens ------------------------------------------------------------------------------ */

static const tg_cypher_token *cur(const parser *p)
{
    return &p->t[p->pos];
}

static const tg_cypher_token *peek(const parser *p, uint32_t k)
{
    uint32_t i = p->pos + k;
    return &p->t[i < p->n ? i : p->n - 1];
}

static bool at(const parser *p, tg_cypher_token_type type)
{
    return p->t[p->pos].type == type;
}

static void advance(parser *p)
{
    if (p->pos + 1 < p->n)
        p->pos++;
    if (++p->steps > p->max_steps)
        fail_limit(p, "statement too complex to analyse");
}

static bool accept(parser *p, tg_cypher_token_type type)
{
    if (!at(p, type))
        return false;
    advance(p);
    return true;
}

static bool expect(parser *p, tg_cypher_token_type type)
{
    if (accept(p, type))
        return true;
    expected(p, tg_cypher_token_name(type));
    return false;
}

/* True when t is the unquoted keyword kw (n bytes, upper case). */
static bool is_kw_n(const tg_cypher_token *t, const char *kw, size_t n)
{
    return t->type == TG_CYPHER_T_IDENT && tg_cypher_str_is_kw(t->val, kw, n);
}

static bool accept_kw_n(parser *p, const char *kw, size_t n)
{
    if (!is_kw_n(cur(p), kw, n))
        return false;
    advance(p);
    return true;
}

static bool expect_kw_n(parser *p, const char *kw, size_t n)
{
    if (accept_kw_n(p, kw, n))
        return true;
    expected(p, kw);
    return false;
}

/* The keyword forms for a literal kw (its length known at compile time). */
#define is_kw(t, kw) is_kw_n((t), (kw), sizeof(kw) - 1)
#define at_kw(p, kw) is_kw_n(cur(p), (kw), sizeof(kw) - 1)
#define accept_kw(p, kw) accept_kw_n((p), (kw), sizeof(kw) - 1)
#define expect_kw(p, kw) expect_kw_n((p), (kw), sizeof(kw) - 1)

/*
 * Words that cannot name a variable unquoted: openCypher's reserved words and
 * the clause keywords. Checked for every variable, so length and first letter
 * come first.
 */
static const struct {
    uint8_t len;
    char word[11];
} reserved_words[] = {
    {3, "ADD"},       {3, "ALL"},      {3, "AND"},      {2, "AS"},     {3, "ASC"},
    {9, "ASCENDING"}, {2, "BY"},       {4, "CALL"},     {4, "CASE"},   {10, "CONSTRAINT"},
    {8, "CONTAINS"},  {6, "CREATE"},   {6, "DELETE"},   {4, "DESC"},   {10, "DESCENDING"},
    {6, "DETACH"},    {8, "DISTINCT"}, {2, "DO"},       {4, "DROP"},   {4, "ELSE"},
    {3, "END"},       {4, "ENDS"},     {6, "EXISTS"},   {5, "FALSE"},  {3, "FOR"},
    {7, "FOREACH"},   {2, "IN"},       {2, "IS"},       {5, "LIMIT"},  {4, "LOAD"},
    {9, "MANDATORY"}, {5, "MATCH"},    {5, "MERGE"},    {3, "NOT"},    {4, "NULL"},
    {2, "OF"},        {2, "ON"},       {8, "OPTIONAL"}, {2, "OR"},     {5, "ORDER"},
    {6, "REMOVE"},    {7, "REQUIRE"},  {6, "RETURN"},   {6, "SCALAR"}, {3, "SET"},
    {4, "SKIP"},      {6, "STARTS"},   {4, "THEN"},     {4, "TRUE"},   {5, "UNION"},
    {6, "UNIQUE"},    {6, "UNWIND"},   {3, "USE"},      {4, "WHEN"},   {5, "WHERE"},
    {4, "WITH"},      {3, "XOR"},      {5, "YIELD"}};

bool tg_cypher_is_reserved_word(const char *word, size_t len)
{
    if (len < 2 || len > 10)
        return false;
    char first = word[0] >= 'a' && word[0] <= 'z' ? (char)(word[0] - 'a' + 'A') : word[0];
    tg_cypher_str s = {word, len};
    for (size_t i = 0; i < sizeof(reserved_words) / sizeof(reserved_words[0]); i++)
        if (reserved_words[i].len == len && reserved_words[i].word[0] == first &&
            tg_cypher_str_is_kw(s, reserved_words[i].word, len))
            return true;
    return false;
}

/* ---- nodes ------------------------------------------------------------------------------- */

static tg_cypher_node *new_node(parser *p, tg_cypher_kind k)
{
    if (p->rc)
        return NULL;
    if (++p->nodes > p->max_nodes)
        return fail_limit(p, "statement has too many elements");
    tg_cypher_node *n = tg_cypher_node_new(p->arena, k, cur(p)->offset);
    if (!n)
        return fail_arena(p);
    return n;
}

static bool enter(parser *p)
{
    if (p->rc)
        return false;
    if (++p->depth > p->max_depth) {
        fail_limit(p, "statement is nested too deeply");
        return false;
    }
    return true;
}

static void leave(parser *p)
{
    p->depth--;
}

/* ---- names ------------------------------------------------------------------------------- */

/* A variable name: an unreserved word or a quoted name. */
static bool at_variable(const parser *p)
{
    const tg_cypher_token *t = cur(p);
    return t->type == TG_CYPHER_T_QIDENT ||
           (t->type == TG_CYPHER_T_IDENT && !tg_cypher_is_reserved_word(t->val.s, t->val.len));
}

static tg_cypher_node *parse_variable(parser *p)
{
    if (!at_variable(p)) {
        if (at(p, TG_CYPHER_T_IDENT))
            return fail(p, "syntax error at offset %u: reserved word where a variable is expected",
                        (unsigned)cur(p)->offset);
        return expected(p, "a variable");
    }
    tg_cypher_node *v = new_node(p, TG_CYPHER_VAR);
    if (!v)
        return NULL;
    v->str = cur(p)->val;
    advance(p);
    return v;
}

/* A label, relationship type or property key: any word (reserved too) or a quoted name. */
static bool parse_schema_name(parser *p, tg_cypher_str *out, const char *what)
{
    const tg_cypher_token *t = cur(p);
    if (t->type != TG_CYPHER_T_IDENT && t->type != TG_CYPHER_T_QIDENT) {
        expected(p, what);
        return false;
    }
    *out = t->val;
    advance(p);
    return true;
}

static tg_cypher_node *parse_label(parser *p, const char *what)
{
    tg_cypher_node *l = new_node(p, TG_CYPHER_LABEL);
    if (!l || !parse_schema_name(p, &l->str, what))
        return NULL;
    return l;
}

/*
 * A dotted name (function or procedure): parts joined with '.' into the
 * arena. A quoted part holding a '.' is refused: the joined name would be
 * ambiguous.
 */
static bool parse_dotted_name(parser *p, tg_cypher_str *out)
{
    uint32_t start = p->pos;
    size_t total = 0, parts = 0;
    for (;;) {
        const tg_cypher_token *t = cur(p);
        if (t->type != TG_CYPHER_T_IDENT && t->type != TG_CYPHER_T_QIDENT) {
            expected(p, "a name");
            return false;
        }
        if (t->type == TG_CYPHER_T_QIDENT && memchr(t->val.s, '.', t->val.len)) {
            fail(p, "quoted name with a '.' in a function or procedure name");
            return false;
        }
        total += t->val.len + 1;
        parts++;
        advance(p);
        if (!at(p, TG_CYPHER_T_DOT))
            break;
        advance(p);
    }
    if (parts == 1) {
        *out = p->t[start].val;
        return true;
    }
    char *s = tg_arena_alloc(p->arena, total);
    if (!s) {
        fail_arena(p);
        return false;
    }
    size_t o = 0;
    for (uint32_t i = start; i < p->pos; i += 2) {
        if (o)
            s[o++] = '.';
        memcpy(s + o, p->t[i].val.s, p->t[i].val.len);
        o += p->t[i].val.len;
    }
    *out = (tg_cypher_str){s, o};
    return true;
}

/* ---- forward declarations ---------------------------------------------------------------- */

static tg_cypher_node *parse_expr(parser *p);
static tg_cypher_node *parse_query(parser *p);
static tg_cypher_node *parse_chain(parser *p, bool need_rel);
static tg_cypher_node *parse_clauses(parser *p, tg_cypher_node **head);
static tg_cypher_node *parse_postfix_chain(parser *p);

/* A comma-separated list of expressions into *head; false on failure. */
static bool parse_expr_list(parser *p, tg_cypher_node **head)
{
    tg_cypher_node **tail = head;
    do {
        tg_cypher_node *e = parse_expr(p);
        if (!e)
            return false;
        *tail = e;
        tail = &e->next;
    } while (accept(p, TG_CYPHER_T_COMMA));
    return true;
}

/* ---- patterns ---------------------------------------------------------------------------- */

/* True when the tokens at i start a relationship: "-[", "--", "->" or "<-". */
static bool rel_starts_at(const parser *p, uint32_t i)
{
    if (i + 1 >= p->n)
        return false;
    tg_cypher_token_type a = p->t[i].type, b = p->t[i + 1].type;
    if (a == TG_CYPHER_T_MINUS)
        return b == TG_CYPHER_T_LBRACKET || b == TG_CYPHER_T_MINUS || b == TG_CYPHER_T_GT;
    return a == TG_CYPHER_T_LT && b == TG_CYPHER_T_MINUS;
}

/* Labels ":A:B" into *head. */
static bool parse_label_list(parser *p, tg_cypher_node **head, const char *what)
{
    tg_cypher_node **tail = head;
    while (accept(p, TG_CYPHER_T_COLON)) {
        tg_cypher_node *l = parse_label(p, what);
        if (!l)
            return false;
        *tail = l;
        tail = &l->next;
    }
    return true;
}

static tg_cypher_node *parse_map_literal(parser *p);

/* The properties of a node or relationship pattern: a map literal or a parameter. */
static tg_cypher_node *parse_pattern_props(parser *p)
{
    if (at(p, TG_CYPHER_T_LBRACE))
        return parse_map_literal(p);
    tg_cypher_node *n = new_node(p, TG_CYPHER_PARAM);
    if (!n)
        return NULL;
    n->str = cur(p)->val;
    advance(p);
    return n;
}

static tg_cypher_node *parse_node_pattern(parser *p)
{
    tg_cypher_node *n = new_node(p, TG_CYPHER_NODE_PAT);
    if (!n || !expect(p, TG_CYPHER_T_LPAREN))
        return NULL;
    if (at(p, TG_CYPHER_T_LPAREN))
        return fail(p, "quantified and parenthesised path patterns are not supported");
    if (at_variable(p) && !at_kw(p, "WHERE")) {
        n->kid[TG_CYPHER_S_VAR] = parse_variable(p);
        if (!n->kid[TG_CYPHER_S_VAR])
            return NULL;
    }
    if (at_kw(p, "IS"))
        return fail(p, "label expressions are not supported");
    if (!parse_label_list(p, &n->kid[TG_CYPHER_S_LABELS], "a label"))
        return NULL;
    if (at(p, TG_CYPHER_T_PIPE) || at(p, TG_CYPHER_T_PERCENT))
        return fail(p, "label expressions are not supported");
    if (at(p, TG_CYPHER_T_LBRACE) || at(p, TG_CYPHER_T_PARAM)) {
        n->kid[TG_CYPHER_S_PROPS] = parse_pattern_props(p);
        if (!n->kid[TG_CYPHER_S_PROPS])
            return NULL;
    }
    if (accept_kw(p, "WHERE")) {
        n->kid[TG_CYPHER_S_WHERE] = parse_expr(p);
        if (!n->kid[TG_CYPHER_S_WHERE])
            return NULL;
    }
    if (!expect(p, TG_CYPHER_T_RPAREN))
        return NULL;
    return n;
}

static tg_cypher_node *parse_range(parser *p)
{
    tg_cypher_node *r = new_node(p, TG_CYPHER_RANGE);
    if (!r || !expect(p, TG_CYPHER_T_STAR))
        return NULL;
    if (at(p, TG_CYPHER_T_INT)) {
        r->kid[0] = new_node(p, TG_CYPHER_INT);
        if (!r->kid[0])
            return NULL;
        r->kid[0]->str = cur(p)->val;
        advance(p);
    }
    if (accept(p, TG_CYPHER_T_DOTDOT)) {
        r->flags |= TG_CYPHER_F_DOTS;
        if (at(p, TG_CYPHER_T_INT)) {
            r->kid[1] = new_node(p, TG_CYPHER_INT);
            if (!r->kid[1])
                return NULL;
            r->kid[1]->str = cur(p)->val;
            advance(p);
        }
    }
    return r;
}

static tg_cypher_node *parse_rel_pattern(parser *p)
{
    tg_cypher_node *r = new_node(p, TG_CYPHER_REL_PAT);
    if (!r)
        return NULL;
    if (accept(p, TG_CYPHER_T_LT))
        r->op |= TG_CYPHER_DIR_LEFT;
    if (!expect(p, TG_CYPHER_T_MINUS))
        return NULL;
    if (accept(p, TG_CYPHER_T_LBRACKET)) {
        r->flags |= TG_CYPHER_F_DETAIL;
        if (at_variable(p) && !at_kw(p, "WHERE")) {
            r->kid[TG_CYPHER_S_VAR] = parse_variable(p);
            if (!r->kid[TG_CYPHER_S_VAR])
                return NULL;
        }
        if (accept(p, TG_CYPHER_T_COLON)) {
            tg_cypher_node **tail = &r->kid[TG_CYPHER_S_LABELS];
            for (;;) {
                tg_cypher_node *l = parse_label(p, "a relationship type");
                if (!l)
                    return NULL;
                *tail = l;
                tail = &l->next;
                if (!accept(p, TG_CYPHER_T_PIPE))
                    break;
                accept(p, TG_CYPHER_T_COLON);
            }
            if (at(p, TG_CYPHER_T_COLON))
                return fail(p, "label expressions are not supported");
        }
        if (at(p, TG_CYPHER_T_STAR)) {
            r->kid[TG_CYPHER_S_RANGE] = parse_range(p);
            if (!r->kid[TG_CYPHER_S_RANGE])
                return NULL;
        }
        if (at(p, TG_CYPHER_T_LBRACE) || at(p, TG_CYPHER_T_PARAM)) {
            r->kid[TG_CYPHER_S_PROPS] = parse_pattern_props(p);
            if (!r->kid[TG_CYPHER_S_PROPS])
                return NULL;
        }
        if (accept_kw(p, "WHERE")) {
            r->kid[TG_CYPHER_S_WHERE] = parse_expr(p);
            if (!r->kid[TG_CYPHER_S_WHERE])
                return NULL;
        }
        if (!expect(p, TG_CYPHER_T_RBRACKET))
            return NULL;
    }
    if (!expect(p, TG_CYPHER_T_MINUS))
        return NULL;
    if (accept(p, TG_CYPHER_T_GT))
        r->op |= TG_CYPHER_DIR_RIGHT;
    if (at(p, TG_CYPHER_T_LBRACE) || at(p, TG_CYPHER_T_PLUS) || at(p, TG_CYPHER_T_STAR))
        return fail(p, "quantified relationships are not supported");
    return r;
}

/* node { rel node }; with need_rel, at least one relationship. */
static tg_cypher_node *parse_chain(parser *p, bool need_rel)
{
    if (!enter(p))
        return NULL;
    tg_cypher_node *c = new_node(p, TG_CYPHER_CHAIN);
    tg_cypher_node *node = c ? parse_node_pattern(p) : NULL;
    if (!node) {
        leave(p);
        return NULL;
    }
    c->kid[0] = node;
    tg_cypher_node *tail = node;
    bool rel = false;
    while (rel_starts_at(p, p->pos)) {
        tg_cypher_node *r = parse_rel_pattern(p);
        tg_cypher_node *m = r ? parse_node_pattern(p) : NULL;
        if (!m) {
            leave(p);
            return NULL;
        }
        tail->next = r;
        r->next = m;
        tail = m;
        rel = true;
    }
    leave(p);
    if (need_rel && !rel)
        return expected(p, "a relationship pattern");
    return c;
}

/* shortestPath(chain) | allShortestPaths(chain), in a pattern or an expression */
static tg_cypher_node *parse_shortest(parser *p)
{
    tg_cypher_node *s = new_node(p, TG_CYPHER_SHORTEST);
    if (!s)
        return NULL;
    s->op = at_kw(p, "SHORTESTPATH") ? TG_CYPHER_OP_SHORTEST : TG_CYPHER_OP_ALL_SHORTEST;
    advance(p);
    advance(p);
    s->kid[0] = parse_chain(p, true);
    if (!s->kid[0] || !expect(p, TG_CYPHER_T_RPAREN))
        return NULL;
    return s;
}

/* [v =] (chain | shortestPath(chain) | allShortestPaths(chain)) */
static tg_cypher_node *parse_pattern_part(parser *p)
{
    tg_cypher_node *path = new_node(p, TG_CYPHER_PATH);
    if (!path)
        return NULL;
    if (at_variable(p) && peek(p, 1)->type == TG_CYPHER_T_EQ) {
        path->kid[0] = parse_variable(p);
        if (!path->kid[0])
            return NULL;
        advance(p); /* = */
    }
    const tg_cypher_token *t = cur(p);
    if ((is_kw(t, "SHORTESTPATH") || is_kw(t, "ALLSHORTESTPATHS")) &&
        peek(p, 1)->type == TG_CYPHER_T_LPAREN) {
        path->kid[1] = parse_shortest(p);
        return path->kid[1] ? path : NULL;
    }
    if (t->type == TG_CYPHER_T_IDENT && !at(p, TG_CYPHER_T_LPAREN)) {
        if (is_kw(t, "SHORTEST") || is_kw(t, "ANY") || is_kw(t, "ALL"))
            return fail(p, "path selectors are not supported");
    }
    path->kid[1] = parse_chain(p, false);
    if (!path->kid[1])
        return NULL;
    return path;
}

/* part {, part} into *head. */
static bool parse_pattern(parser *p, tg_cypher_node **head)
{
    tg_cypher_node **tail = head;
    do {
        tg_cypher_node *part = parse_pattern_part(p);
        if (!part)
            return false;
        *tail = part;
        tail = &part->next;
    } while (accept(p, TG_CYPHER_T_COMMA));
    return true;
}

/* ---- expression atoms -------------------------------------------------------------------- */

static tg_cypher_node *parse_map_literal(parser *p)
{
    tg_cypher_node *m = new_node(p, TG_CYPHER_MAP);
    if (!m || !enter(p))
        return NULL;
    if (!expect(p, TG_CYPHER_T_LBRACE)) {
        leave(p);
        return NULL;
    }
    tg_cypher_node **tail = &m->kid[0];
    if (!at(p, TG_CYPHER_T_RBRACE)) {
        do {
            tg_cypher_node *e = new_node(p, TG_CYPHER_MAP_ENTRY);
            if (!e || !parse_schema_name(p, &e->str, "a property key") ||
                !expect(p, TG_CYPHER_T_COLON) || !(e->kid[0] = parse_expr(p))) {
                leave(p);
                return NULL;
            }
            *tail = e;
            tail = &e->next;
        } while (accept(p, TG_CYPHER_T_COMMA));
    }
    leave(p);
    if (!expect(p, TG_CYPHER_T_RBRACE))
        return NULL;
    return m;
}

/* var { .key, .*, key: value, var } */
static tg_cypher_node *parse_map_projection(parser *p, tg_cypher_node *var)
{
    tg_cypher_node *m = new_node(p, TG_CYPHER_MAP_PROJ);
    if (!m || !enter(p))
        return NULL;
    m->kid[0] = var;
    advance(p); /* { */
    tg_cypher_node **tail = &m->kid[1];
    if (!at(p, TG_CYPHER_T_RBRACE)) {
        do {
            tg_cypher_node *it = new_node(p, TG_CYPHER_MAP_PROJ_ITEM);
            if (!it)
                break;
            if (accept(p, TG_CYPHER_T_DOT)) {
                if (accept(p, TG_CYPHER_T_STAR)) {
                    it->op = TG_CYPHER_OP_MP_ALL;
                } else {
                    it->op = TG_CYPHER_OP_MP_PROP;
                    if (!parse_schema_name(p, &it->str, "a property key"))
                        break;
                }
            } else if (peek(p, 1)->type == TG_CYPHER_T_COLON) {
                it->op = TG_CYPHER_OP_MP_ENTRY;
                if (!parse_schema_name(p, &it->str, "a property key"))
                    break;
                advance(p); /* : */
                if (!(it->kid[0] = parse_expr(p)))
                    break;
            } else {
                it->op = TG_CYPHER_OP_MP_VAR;
                if (!(it->kid[0] = parse_variable(p)))
                    break;
            }
            *tail = it;
            tail = &it->next;
        } while (accept(p, TG_CYPHER_T_COMMA));
    }
    leave(p);
    if (p->rc || !expect(p, TG_CYPHER_T_RBRACE))
        return NULL;
    return m;
}

/* CASE [subject] WHEN c THEN r ... [ELSE e] END */
static tg_cypher_node *parse_case(parser *p)
{
    tg_cypher_node *c = new_node(p, TG_CYPHER_CASE);
    if (!c || !enter(p))
        return NULL;
    advance(p); /* CASE */
    if (!at_kw(p, "WHEN") && !(c->kid[0] = parse_expr(p))) {
        leave(p);
        return NULL;
    }
    tg_cypher_node **tail = &c->kid[1];
    while (accept_kw(p, "WHEN")) {
        tg_cypher_node *w = new_node(p, TG_CYPHER_CASE_WHEN);
        if (!w || !(w->kid[0] = parse_expr(p)) || !expect_kw(p, "THEN") ||
            !(w->kid[1] = parse_expr(p))) {
            leave(p);
            return NULL;
        }
        *tail = w;
        tail = &w->next;
    }
    if (!c->kid[1]) {
        leave(p);
        return expected(p, "WHEN");
    }
    if (accept_kw(p, "ELSE") && !(c->kid[2] = parse_expr(p))) {
        leave(p);
        return NULL;
    }
    leave(p);
    if (!expect_kw(p, "END"))
        return NULL;
    return c;
}

/* EXISTS | COUNT | COLLECT { query | pattern [WHERE e] } */
static tg_cypher_node *parse_subquery_expr(parser *p, tg_cypher_op op)
{
    tg_cypher_node *s = new_node(p, TG_CYPHER_SUBQUERY);
    if (!s || !enter(p))
        return NULL;
    s->op = op;
    advance(p); /* keyword */
    advance(p); /* { */
    static const char *const clause_words[] = {
        "MATCH", "OPTIONAL", "WITH",   "UNWIND", "CALL",   "RETURN",  "FINISH", "CREATE",
        "MERGE", "SET",      "REMOVE", "DELETE", "DETACH", "FOREACH", "USE",    "LOAD"};
    bool full = false;
    for (size_t i = 0; i < sizeof(clause_words) / sizeof(clause_words[0]); i++)
        full |= is_kw_n(cur(p), clause_words[i], strlen(clause_words[i]));
    if (full) {
        s->flags |= TG_CYPHER_F_FULL;
        s->kid[0] = parse_query(p);
        if (!s->kid[0]) {
            leave(p);
            return NULL;
        }
    } else {
        if (!parse_pattern(p, &s->kid[0])) {
            leave(p);
            return NULL;
        }
        if (accept_kw(p, "WHERE") && !(s->kid[TG_CYPHER_S_WHERE] = parse_expr(p))) {
            leave(p);
            return NULL;
        }
    }
    leave(p);
    if (!expect(p, TG_CYPHER_T_RBRACE))
        return NULL;
    return s;
}

/* name(v IN list [WHERE p]) for all / any / none / single */
static tg_cypher_node *parse_quantifier(parser *p, tg_cypher_op op)
{
    tg_cypher_node *q = new_node(p, TG_CYPHER_QUANT);
    if (!q || !enter(p))
        return NULL;
    q->op = op;
    advance(p); /* name */
    advance(p); /* ( */
    bool ok = (q->kid[0] = parse_variable(p)) && expect_kw(p, "IN") && (q->kid[1] = parse_expr(p));
    if (ok && accept_kw(p, "WHERE"))
        ok = (q->kid[TG_CYPHER_S_WHERE] = parse_expr(p)) != NULL;
    leave(p);
    if (!ok || !expect(p, TG_CYPHER_T_RPAREN))
        return NULL;
    return q;
}

/* reduce(acc = init, v IN list | expression) */
static tg_cypher_node *parse_reduce(parser *p)
{
    tg_cypher_node *r = new_node(p, TG_CYPHER_REDUCE);
    if (!r || !enter(p))
        return NULL;
    advance(p); /* reduce */
    advance(p); /* ( */
    bool ok = (r->kid[0] = parse_variable(p)) && expect(p, TG_CYPHER_T_EQ) &&
              (r->kid[1] = parse_expr(p)) && expect(p, TG_CYPHER_T_COMMA) &&
              (r->kid[2] = parse_variable(p)) && expect_kw(p, "IN") &&
              (r->kid[3] = parse_expr(p)) && expect(p, TG_CYPHER_T_PIPE) &&
              (r->kid[4] = parse_expr(p));
    leave(p);
    if (!ok || !expect(p, TG_CYPHER_T_RPAREN))
        return NULL;
    return r;
}

/* name(...) or ns.name(...), with count(*) handled by the caller. */
static tg_cypher_node *parse_function(parser *p)
{
    tg_cypher_node *f = new_node(p, TG_CYPHER_FUNC);
    if (!f || !parse_dotted_name(p, &f->str) || !enter(p))
        return NULL;
    advance(p); /* ( */
    bool ok = true;
    if (!at(p, TG_CYPHER_T_RPAREN)) {
        if (accept_kw(p, "DISTINCT"))
            f->flags |= TG_CYPHER_F_DISTINCT;
        ok = parse_expr_list(p, &f->kid[0]);
    }
    leave(p);
    if (!ok || !expect(p, TG_CYPHER_T_RPAREN))
        return NULL;
    return f;
}

/* True when the tokens at the cursor are name { . name } ( : a function call. */
static bool at_function_call(const parser *p)
{
    uint32_t i = p->pos;
    for (;;) {
        if (i + 1 >= p->n)
            return false;
        tg_cypher_token_type a = p->t[i].type;
        if (a != TG_CYPHER_T_IDENT && a != TG_CYPHER_T_QIDENT)
            return false;
        if (p->t[i + 1].type == TG_CYPHER_T_LPAREN)
            return true;
        if (p->t[i + 1].type != TG_CYPHER_T_DOT)
            return false;
        i += 2;
    }
}

/* [ ... ]: pattern comprehension, list comprehension or list literal. */
static tg_cypher_node *parse_bracket(parser *p)
{
    const tg_cypher_token *a = peek(p, 1), *b = peek(p, 2);
    bool pattern_comp = false;
    if (a->type == TG_CYPHER_T_LPAREN)
        pattern_comp = rel_starts_at(p, a->match + 1);
    else if ((a->type == TG_CYPHER_T_IDENT || a->type == TG_CYPHER_T_QIDENT) &&
             b->type == TG_CYPHER_T_EQ && peek(p, 3)->type == TG_CYPHER_T_LPAREN)
        pattern_comp = true;
    if (!enter(p))
        return NULL;
    tg_cypher_node *n = NULL;
    if (pattern_comp) {
        n = new_node(p, TG_CYPHER_PATTERN_COMP);
        advance(p); /* [ */
        bool ok = n != NULL;
        if (ok && at_variable(p) && peek(p, 1)->type == TG_CYPHER_T_EQ) {
            ok = (n->kid[0] = parse_variable(p)) != NULL;
            advance(p); /* = */
        }
        ok = ok && (n->kid[1] = parse_chain(p, true));
        if (ok && accept_kw(p, "WHERE"))
            ok = (n->kid[TG_CYPHER_S_WHERE] = parse_expr(p)) != NULL;
        ok = ok && expect(p, TG_CYPHER_T_PIPE) && (n->kid[2] = parse_expr(p));
        if (!ok)
            n = NULL;
    } else if ((a->type == TG_CYPHER_T_QIDENT ||
                (a->type == TG_CYPHER_T_IDENT &&
                 !tg_cypher_is_reserved_word(a->val.s, a->val.len))) &&
               is_kw(b, "IN")) {
        n = new_node(p, TG_CYPHER_LIST_COMP);
        advance(p); /* [ */
        bool ok = n && (n->kid[0] = parse_variable(p)) && expect_kw(p, "IN") &&
                  (n->kid[1] = parse_expr(p));
        if (ok && accept_kw(p, "WHERE"))
            ok = (n->kid[TG_CYPHER_S_WHERE] = parse_expr(p)) != NULL;
        if (ok && accept(p, TG_CYPHER_T_PIPE))
            ok = (n->kid[2] = parse_expr(p)) != NULL;
        if (!ok)
            n = NULL;
    } else {
        n = new_node(p, TG_CYPHER_LIST);
        advance(p); /* [ */
        if (n && !at(p, TG_CYPHER_T_RBRACKET) && !parse_expr_list(p, &n->kid[0]))
            n = NULL;
    }
    leave(p);
    if (!n || !expect(p, TG_CYPHER_T_RBRACKET))
        return NULL;
    return n;
}

/* ( ... ): a pattern predicate when a relationship follows, else (expression). */
static tg_cypher_node *parse_paren(parser *p)
{
    if (rel_starts_at(p, cur(p)->match + 1)) {
        uint32_t save = p->pos, save_nodes = p->nodes, save_depth = p->depth;
        tg_cypher_node *pp = new_node(p, TG_CYPHER_PATTERN_PRED);
        if (pp && (pp->kid[0] = parse_chain(p, true)) != NULL)
            return pp;
        if (p->rc != TG_EINVAL)
            return NULL;
        /* not a pattern after all: an expression such as (a) < -1 */
        p->rc = 0;
        p->err->reason[0] = '\0';
        p->pos = save;
        p->nodes = save_nodes;
        p->depth = save_depth;
    }
    tg_cypher_node *n = new_node(p, TG_CYPHER_PAREN);
    if (!n || !enter(p))
        return NULL;
    advance(p); /* ( */
    n->kid[0] = parse_expr(p);
    leave(p);
    if (!n->kid[0] || !expect(p, TG_CYPHER_T_RPAREN))
        return NULL;
    return n;
}

static tg_cypher_node *literal(parser *p, tg_cypher_kind k)
{
    tg_cypher_node *n = new_node(p, k);
    if (!n)
        return NULL;
    n->str = cur(p)->val;
    advance(p);
    return n;
}

static tg_cypher_node *constant(parser *p, tg_cypher_op op)
{
    tg_cypher_node *n = new_node(p, TG_CYPHER_CONST);
    if (!n)
        return NULL;
    n->op = op;
    advance(p);
    return n;
}

static tg_cypher_node *parse_atom(parser *p)
{
    const tg_cypher_token *t = cur(p);
    const tg_cypher_token *next = peek(p, 1);
    switch (t->type) {
    case TG_CYPHER_T_INT:
        return literal(p, TG_CYPHER_INT);
    case TG_CYPHER_T_FLOAT:
        return literal(p, TG_CYPHER_FLOAT);
    case TG_CYPHER_T_STRING:
        return literal(p, TG_CYPHER_STRING);
    case TG_CYPHER_T_PARAM:
        return literal(p, TG_CYPHER_PARAM);
    case TG_CYPHER_T_LBRACKET:
        return parse_bracket(p);
    case TG_CYPHER_T_LBRACE:
        return parse_map_literal(p);
    case TG_CYPHER_T_LPAREN:
        return parse_paren(p);
    case TG_CYPHER_T_IDENT:
        if (is_kw(t, "TRUE"))
            return constant(p, TG_CYPHER_OP_TRUE);
        if (is_kw(t, "FALSE"))
            return constant(p, TG_CYPHER_OP_FALSE);
        if (is_kw(t, "NULL"))
            return constant(p, TG_CYPHER_OP_NULL);
        if (is_kw(t, "CASE"))
            return parse_case(p);
        if (next->type == TG_CYPHER_T_LBRACE) {
            if (is_kw(t, "EXISTS"))
                return parse_subquery_expr(p, TG_CYPHER_OP_EXISTS);
            if (is_kw(t, "COUNT"))
                return parse_subquery_expr(p, TG_CYPHER_OP_COUNT);
            if (is_kw(t, "COLLECT"))
                return parse_subquery_expr(p, TG_CYPHER_OP_COLLECT);
        }
        if (next->type == TG_CYPHER_T_LPAREN) {
            const tg_cypher_token *a = peek(p, 2), *b = peek(p, 3);
            if (is_kw(t, "COUNT") && a->type == TG_CYPHER_T_STAR && b->type == TG_CYPHER_T_RPAREN) {
                tg_cypher_node *n = new_node(p, TG_CYPHER_COUNT_STAR);
                advance(p);
                advance(p);
                advance(p);
                advance(p);
                return n;
            }
            bool var_in = (a->type == TG_CYPHER_T_QIDENT ||
                           (a->type == TG_CYPHER_T_IDENT &&
                            !tg_cypher_is_reserved_word(a->val.s, a->val.len))) &&
                          is_kw(b, "IN");
            if (var_in && is_kw(t, "ALL"))
                return parse_quantifier(p, TG_CYPHER_OP_ALL);
            if (var_in && is_kw(t, "ANY"))
                return parse_quantifier(p, TG_CYPHER_OP_ANY);
            if (var_in && is_kw(t, "NONE"))
                return parse_quantifier(p, TG_CYPHER_OP_NONE_OF);
            if (var_in && is_kw(t, "SINGLE"))
                return parse_quantifier(p, TG_CYPHER_OP_SINGLE);
            if (is_kw(t, "REDUCE"))
                return parse_reduce(p);
            if (is_kw(t, "SHORTESTPATH") || is_kw(t, "ALLSHORTESTPATHS"))
                return parse_shortest(p);
        }
        /* fall through */
    case TG_CYPHER_T_QIDENT:
        if (at_function_call(p))
            return parse_function(p);
        {
            tg_cypher_node *v = parse_variable(p);
            if (v && at(p, TG_CYPHER_T_LBRACE))
                return parse_map_projection(p, v);
            return v;
        }
    default:
        return expected(p, "an expression");
    }
}

/* ---- expression operators ---------------------------------------------------------------- */

/*
 * atom { .key | [i] | [a..b] } [:L...]. Each step nests the tree one level
 * deeper, so it counts against the depth bound like a bracket.
 */
static tg_cypher_node *parse_postfix(parser *p)
{
    uint32_t depth = p->depth;
    tg_cypher_node *e = parse_postfix_chain(p);
    p->depth = depth;
    return e;
}

static tg_cypher_node *parse_postfix_chain(parser *p)
{
    tg_cypher_node *e = parse_atom(p);
    while (e) {
        if ((at(p, TG_CYPHER_T_DOT) || at(p, TG_CYPHER_T_LBRACKET) || at(p, TG_CYPHER_T_COLON)) &&
            !enter(p))
            return NULL;
        if (at(p, TG_CYPHER_T_DOT)) {
            tg_cypher_node *n = new_node(p, TG_CYPHER_PROP);
            advance(p);
            if (!n || !parse_schema_name(p, &n->str, "a property key"))
                return NULL;
            n->kid[0] = e;
            e = n;
        } else if (at(p, TG_CYPHER_T_LBRACKET)) {
            tg_cypher_node *n = new_node(p, TG_CYPHER_INDEX);
            if (!n || !enter(p))
                return NULL;
            advance(p); /* [ */
            n->kid[0] = e;
            bool ok = true;
            if (!at(p, TG_CYPHER_T_DOTDOT))
                ok = (n->kid[1] = parse_expr(p)) != NULL;
            if (ok && accept(p, TG_CYPHER_T_DOTDOT)) {
                n->kind = TG_CYPHER_SLICE;
                if (!at(p, TG_CYPHER_T_RBRACKET))
                    ok = (n->kid[2] = parse_expr(p)) != NULL;
            }
            leave(p);
            if (!ok || !expect(p, TG_CYPHER_T_RBRACKET))
                return NULL;
            e = n;
        } else if (at(p, TG_CYPHER_T_COLON)) {
            tg_cypher_node *n = new_node(p, TG_CYPHER_LABEL_TEST);
            if (!n || !parse_label_list(p, &n->kid[1], "a label"))
                return NULL;
            if (at(p, TG_CYPHER_T_PIPE) || at(p, TG_CYPHER_T_PERCENT))
                return fail(p, "label expressions are not supported");
            n->kid[0] = e;
            return n;
        } else {
            break;
        }
    }
    return e;
}

static tg_cypher_node *parse_unary(parser *p)
{
    if (at(p, TG_CYPHER_T_PLUS) || at(p, TG_CYPHER_T_MINUS)) {
        tg_cypher_node *n = new_node(p, TG_CYPHER_UNARY);
        if (!n || !enter(p))
            return NULL;
        n->op = at(p, TG_CYPHER_T_PLUS) ? TG_CYPHER_OP_ADD : TG_CYPHER_OP_SUB;
        advance(p);
        n->kid[0] = parse_unary(p);
        leave(p);
        return n->kid[0] ? n : NULL;
    }
    return parse_postfix(p);
}

/* The operator of `level` at the cursor (advancing over it), or OP_NONE. */
static tg_cypher_op infix_op(parser *p, tg_cypher_op level)
{
    const tg_cypher_token *t = cur(p);
    tg_cypher_op op = TG_CYPHER_OP_NONE;
    switch (level) {
    case TG_CYPHER_OP_L_OR:
        op = is_kw(t, "OR") ? TG_CYPHER_OP_OR : op;
        break;
    case TG_CYPHER_OP_L_XOR:
        op = is_kw(t, "XOR") ? TG_CYPHER_OP_XOR : op;
        break;
    case TG_CYPHER_OP_L_AND:
        op = is_kw(t, "AND") ? TG_CYPHER_OP_AND : op;
        break;
    case TG_CYPHER_OP_L_CMP:
        op = t->type == TG_CYPHER_T_EQ   ? TG_CYPHER_OP_EQ
             : t->type == TG_CYPHER_T_NE ? TG_CYPHER_OP_NE
             : t->type == TG_CYPHER_T_LT ? TG_CYPHER_OP_LT
             : t->type == TG_CYPHER_T_GT ? TG_CYPHER_OP_GT
             : t->type == TG_CYPHER_T_LE ? TG_CYPHER_OP_LE
             : t->type == TG_CYPHER_T_GE ? TG_CYPHER_OP_GE
                                         : op;
        break;
    case TG_CYPHER_OP_L_ADD:
        op = t->type == TG_CYPHER_T_PLUS     ? TG_CYPHER_OP_ADD
             : t->type == TG_CYPHER_T_MINUS  ? TG_CYPHER_OP_SUB
             : t->type == TG_CYPHER_T_CONCAT ? TG_CYPHER_OP_CONCAT
                                             : op;
        break;
    case TG_CYPHER_OP_L_MUL:
        op = t->type == TG_CYPHER_T_STAR      ? TG_CYPHER_OP_MUL
             : t->type == TG_CYPHER_T_SLASH   ? TG_CYPHER_OP_DIV
             : t->type == TG_CYPHER_T_PERCENT ? TG_CYPHER_OP_MOD
                                              : op;
        break;
    case TG_CYPHER_OP_L_POW:
        op = t->type == TG_CYPHER_T_CARET ? TG_CYPHER_OP_POW : op;
        break;
    default:
        break;
    }
    if (op != TG_CYPHER_OP_NONE)
        advance(p);
    return op;
}

static tg_cypher_node *parse_level(parser *p, tg_cypher_op level);

/* The next tighter level below `level`. */
static tg_cypher_node *parse_operand(parser *p, tg_cypher_op level);

static tg_cypher_node *parse_not(parser *p)
{
    if (at_kw(p, "NOT")) {
        tg_cypher_node *n = new_node(p, TG_CYPHER_NOT);
        if (!n || !enter(p))
            return NULL;
        advance(p);
        n->kid[0] = parse_not(p);
        leave(p);
        return n->kid[0] ? n : NULL;
    }
    return parse_level(p, TG_CYPHER_OP_L_CMP);
}

/* IN, STARTS WITH, ENDS WITH, CONTAINS, =~, IS [NOT] NULL (left-associative). */
static tg_cypher_node *parse_predicate(parser *p)
{
    uint32_t depth = p->depth;
    tg_cypher_node *e = parse_level(p, TG_CYPHER_OP_L_ADD);
    while (e) {
        tg_cypher_op op = TG_CYPHER_OP_NONE;
        bool rhs = true;
        const tg_cypher_token *t = cur(p);
        if (is_kw(t, "IN")) {
            op = TG_CYPHER_OP_IN;
        } else if (is_kw(t, "STARTS") && is_kw(peek(p, 1), "WITH")) {
            op = TG_CYPHER_OP_STARTS_WITH;
            advance(p);
        } else if (is_kw(t, "ENDS") && is_kw(peek(p, 1), "WITH")) {
            op = TG_CYPHER_OP_ENDS_WITH;
            advance(p);
        } else if (is_kw(t, "CONTAINS")) {
            op = TG_CYPHER_OP_CONTAINS;
        } else if (t->type == TG_CYPHER_T_REGEX) {
            op = TG_CYPHER_OP_REGEX;
        } else if (is_kw(t, "IS")) {
            rhs = false;
            if (is_kw(peek(p, 1), "NULL")) {
                op = TG_CYPHER_OP_IS_NULL;
                advance(p);
            } else if (is_kw(peek(p, 1), "NOT") && is_kw(peek(p, 2), "NULL")) {
                op = TG_CYPHER_OP_IS_NOT_NULL;
                advance(p);
                advance(p);
            } else {
                return fail(p, "only IS NULL and IS NOT NULL are supported after IS");
            }
        } else {
            break;
        }
        if (!enter(p)) /* each predicate nests the tree one level deeper */
            return NULL;
        tg_cypher_node *n = new_node(p, TG_CYPHER_PRED);
        if (!n)
            return NULL;
        advance(p);
        n->op = op;
        n->kid[0] = e;
        if (rhs && !(n->kid[1] = parse_level(p, TG_CYPHER_OP_L_ADD)))
            return NULL;
        e = n;
    }
    p->depth = depth;
    return e;
}

static tg_cypher_node *parse_operand(parser *p, tg_cypher_op level)
{
    switch (level) {
    case TG_CYPHER_OP_L_OR:
        return parse_level(p, TG_CYPHER_OP_L_XOR);
    case TG_CYPHER_OP_L_XOR:
        return parse_level(p, TG_CYPHER_OP_L_AND);
    case TG_CYPHER_OP_L_AND:
        return parse_not(p);
    case TG_CYPHER_OP_L_CMP:
        return parse_predicate(p);
    case TG_CYPHER_OP_L_ADD:
        return parse_level(p, TG_CYPHER_OP_L_MUL);
    case TG_CYPHER_OP_L_MUL:
        return parse_level(p, TG_CYPHER_OP_L_POW);
    default:
        return parse_unary(p);
    }
}

/* operand { op operand } at one level: one INFIX node with a flat operand list. */
static tg_cypher_node *parse_level(parser *p, tg_cypher_op level)
{
    tg_cypher_node *first = parse_operand(p, level);
    if (!first)
        return NULL;
    uint32_t save = p->pos;
    tg_cypher_op op = infix_op(p, level);
    if (op == TG_CYPHER_OP_NONE)
        return first;
    p->pos = save;
    tg_cypher_node *n = new_node(p, TG_CYPHER_INFIX);
    if (!n)
        return NULL;
    n->op = (uint8_t)level;
    n->kid[0] = first;
    tg_cypher_node *tail = first;
    while ((op = infix_op(p, level)) != TG_CYPHER_OP_NONE) {
        tg_cypher_node *e = parse_operand(p, level);
        if (!e)
            return NULL;
        e->lop = (uint8_t)op;
        tail->next = e;
        tail = e;
    }
    return p->rc ? NULL : n;
}

static tg_cypher_node *parse_expr(parser *p)
{
    if (!enter(p))
        return NULL;
    tg_cypher_node *e = parse_level(p, TG_CYPHER_OP_L_OR);
    leave(p);
    return p->rc ? NULL : e;
}

/* ---- clauses ----------------------------------------------------------------------------- */

static tg_cypher_node *parse_match(parser *p, bool optional)
{
    tg_cypher_node *m = new_node(p, TG_CYPHER_MATCH);
    if (!m)
        return NULL;
    if (optional) {
        m->flags |= TG_CYPHER_F_OPTIONAL;
        advance(p);
    }
    advance(p); /* MATCH */
    if (at_kw(p, "REPEATABLE") || at_kw(p, "DIFFERENT"))
        return fail(p, "match modes are not supported");
    if (!parse_pattern(p, &m->kid[0]))
        return NULL;
    if (at_kw(p, "USING"))
        return fail(p, "planner hints (USING) are not supported");
    if (accept_kw(p, "WHERE") && !(m->kid[TG_CYPHER_S_WHERE] = parse_expr(p)))
        return NULL;
    return m;
}

static tg_cypher_node *parse_unwind(parser *p)
{
    tg_cypher_node *u = new_node(p, TG_CYPHER_UNWIND);
    if (!u)
        return NULL;
    advance(p);
    if (!(u->kid[1] = parse_expr(p)) || !expect_kw(p, "AS") || !(u->kid[0] = parse_variable(p)))
        return NULL;
    return u;
}

/* WITH / RETURN: [DISTINCT] items [ORDER BY ...] [SKIP e] [LIMIT e] [WHERE e] */
static tg_cypher_node *parse_projection(parser *p, tg_cypher_kind kind)
{
    tg_cypher_node *w = new_node(p, kind);
    if (!w)
        return NULL;
    advance(p);
    if (accept_kw(p, "DISTINCT"))
        w->flags |= TG_CYPHER_F_DISTINCT;
    tg_cypher_node **tail = &w->kid[TG_CYPHER_S_ITEMS];
    bool more = true;
    if (accept(p, TG_CYPHER_T_STAR)) {
        w->flags |= TG_CYPHER_F_STAR;
        more = accept(p, TG_CYPHER_T_COMMA);
    }
    while (more) {
        tg_cypher_node *it = new_node(p, TG_CYPHER_PROJ_ITEM);
        if (!it || !(it->kid[0] = parse_expr(p)))
            return NULL;
        if (accept_kw(p, "AS") && !(it->kid[1] = parse_variable(p)))
            return NULL;
        *tail = it;
        tail = &it->next;
        more = accept(p, TG_CYPHER_T_COMMA);
    }
    if (at_kw(p, "ORDER")) {
        advance(p);
        if (!expect_kw(p, "BY"))
            return NULL;
        tail = &w->kid[TG_CYPHER_S_ORDER];
        do {
            tg_cypher_node *s = new_node(p, TG_CYPHER_SORT_ITEM);
            if (!s || !(s->kid[0] = parse_expr(p)))
                return NULL;
            if (accept_kw(p, "ASC") || accept_kw(p, "ASCENDING"))
                s->op = TG_CYPHER_OP_ASC;
            else if (accept_kw(p, "DESC") || accept_kw(p, "DESCENDING"))
                s->op = TG_CYPHER_OP_DESC;
            *tail = s;
            tail = &s->next;
        } while (accept(p, TG_CYPHER_T_COMMA));
    }
    if (accept_kw(p, "SKIP") && !(w->kid[TG_CYPHER_S_SKIP] = parse_expr(p)))
        return NULL;
    if (accept_kw(p, "LIMIT") && !(w->kid[TG_CYPHER_S_LIMIT] = parse_expr(p)))
        return NULL;
    if (kind == TG_CYPHER_WITH && accept_kw(p, "WHERE") &&
        !(w->kid[TG_CYPHER_S_WHERE] = parse_expr(p)))
        return NULL;
    return w;
}

/* After CREATE / DROP ...: a schema or administration command, refused. */
static tg_cypher_node *refuse_admin(parser *p)
{
    return fail(p, "schema and administration commands are not allowed");
}

static tg_cypher_node *parse_create(parser *p)
{
    tg_cypher_node *c = new_node(p, TG_CYPHER_CREATE);
    if (!c)
        return NULL;
    advance(p);
    /* CREATE INDEX / CONSTRAINT / DATABASE / USER / OR REPLACE ...: a word not followed by = */
    if (at(p, TG_CYPHER_T_IDENT) && peek(p, 1)->type != TG_CYPHER_T_EQ)
        return refuse_admin(p);
    if (!parse_pattern(p, &c->kid[0]))
        return NULL;
    return c;
}

/* SET items: n.k = e | n = e | n += e | n:L:M */
static bool parse_set_items(parser *p, tg_cypher_node **head)
{
    tg_cypher_node **tail = head;
    do {
        tg_cypher_node *it;
        tg_cypher_token_type next = peek(p, 1)->type;
        if (at_variable(p) && (next == TG_CYPHER_T_EQ || next == TG_CYPHER_T_PLUSEQ)) {
            it = new_node(p, TG_CYPHER_SET_VAR);
            if (!it || !(it->kid[0] = parse_variable(p)))
                return false;
            it->op = at(p, TG_CYPHER_T_EQ) ? TG_CYPHER_OP_ASSIGN : TG_CYPHER_OP_APPEND;
            advance(p);
            if (!(it->kid[1] = parse_expr(p)))
                return false;
        } else if (at_variable(p) && next == TG_CYPHER_T_COLON) {
            it = new_node(p, TG_CYPHER_SET_LABELS);
            if (!it || !(it->kid[0] = parse_variable(p)) ||
                !parse_label_list(p, &it->kid[1], "a label"))
                return false;
        } else {
            it = new_node(p, TG_CYPHER_SET_PROP);
            if (!it || !(it->kid[0] = parse_postfix(p)))
                return false;
            if (it->kid[0]->kind != TG_CYPHER_PROP) {
                fail(p, "SET of something other than a property, a variable or labels "
                        "(dynamic property keys are not supported)");
                return false;
            }
            if (!expect(p, TG_CYPHER_T_EQ) || !(it->kid[1] = parse_expr(p)))
                return false;
        }
        *tail = it;
        tail = &it->next;
    } while (accept(p, TG_CYPHER_T_COMMA));
    return true;
}

static tg_cypher_node *parse_merge(parser *p)
{
    tg_cypher_node *m = new_node(p, TG_CYPHER_MERGE);
    if (!m)
        return NULL;
    advance(p);
    if (!(m->kid[0] = parse_pattern_part(p)))
        return NULL;
    tg_cypher_node **tail = &m->kid[1];
    while (at_kw(p, "ON")) {
        tg_cypher_node *a = new_node(p, TG_CYPHER_MERGE_ACTION);
        if (!a)
            return NULL;
        advance(p);
        if (accept_kw(p, "CREATE"))
            a->op = TG_CYPHER_OP_ON_CREATE;
        else if (accept_kw(p, "MATCH"))
            a->op = TG_CYPHER_OP_ON_MATCH;
        else
            return expected(p, "CREATE or MATCH");
        if (!expect_kw(p, "SET") || !parse_set_items(p, &a->kid[0]))
            return NULL;
        *tail = a;
        tail = &a->next;
    }
    return m;
}

static tg_cypher_node *parse_set(parser *p)
{
    tg_cypher_node *s = new_node(p, TG_CYPHER_SET);
    if (!s)
        return NULL;
    advance(p);
    return parse_set_items(p, &s->kid[0]) ? s : NULL;
}

static tg_cypher_node *parse_remove(parser *p)
{
    tg_cypher_node *r = new_node(p, TG_CYPHER_REMOVE);
    if (!r)
        return NULL;
    advance(p);
    tg_cypher_node **tail = &r->kid[0];
    do {
        tg_cypher_node *it;
        if (at_variable(p) && peek(p, 1)->type == TG_CYPHER_T_COLON) {
            it = new_node(p, TG_CYPHER_REMOVE_LABELS);
            if (!it || !(it->kid[0] = parse_variable(p)) ||
                !parse_label_list(p, &it->kid[1], "a label"))
                return NULL;
        } else {
            it = new_node(p, TG_CYPHER_REMOVE_PROP);
            if (!it || !(it->kid[0] = parse_postfix(p)))
                return NULL;
            if (it->kid[0]->kind != TG_CYPHER_PROP)
                return fail(p, "REMOVE of something other than a property or labels "
                               "(dynamic property keys are not supported)");
        }
        *tail = it;
        tail = &it->next;
    } while (accept(p, TG_CYPHER_T_COMMA));
    return r;
}

static tg_cypher_node *parse_delete(parser *p)
{
    tg_cypher_node *d = new_node(p, TG_CYPHER_DELETE);
    if (!d)
        return NULL;
    if (accept_kw(p, "DETACH"))
        d->flags |= TG_CYPHER_F_DETACH;
    if (!expect_kw(p, "DELETE"))
        return NULL;
    return parse_expr_list(p, &d->kid[0]) ? d : NULL;
}

static tg_cypher_node *parse_foreach(parser *p)
{
    tg_cypher_node *f = new_node(p, TG_CYPHER_FOREACH);
    if (!f || !enter(p))
        return NULL;
    advance(p);
    bool ok = expect(p, TG_CYPHER_T_LPAREN) && (f->kid[0] = parse_variable(p)) &&
              expect_kw(p, "IN") && (f->kid[1] = parse_expr(p)) && expect(p, TG_CYPHER_T_PIPE) &&
              parse_clauses(p, &f->kid[2]);
    leave(p);
    if (!ok || !expect(p, TG_CYPHER_T_RPAREN))
        return NULL;
    return f;
}

/* CALL { query } / CALL (vars) { query }, then [IN TRANSACTIONS [OF e ROWS]]. */
static tg_cypher_node *parse_call_subquery(parser *p, tg_cypher_node *c)
{
    c->kind = TG_CYPHER_CALL_SUB;
    if (accept(p, TG_CYPHER_T_LPAREN)) {
        c->flags |= TG_CYPHER_F_SCOPED;
        if (accept(p, TG_CYPHER_T_STAR)) {
            c->flags |= TG_CYPHER_F_STAR;
        } else if (!at(p, TG_CYPHER_T_RPAREN)) {
            tg_cypher_node **tail = &c->kid[0];
            do {
                tg_cypher_node *v = parse_variable(p);
                if (!v)
                    return NULL;
                *tail = v;
                tail = &v->next;
            } while (accept(p, TG_CYPHER_T_COMMA));
        }
        if (!expect(p, TG_CYPHER_T_RPAREN))
            return NULL;
    }
    if (!enter(p))
        return NULL;
    bool ok = expect(p, TG_CYPHER_T_LBRACE) && (c->kid[1] = parse_query(p)) != NULL;
    leave(p);
    if (!ok || !expect(p, TG_CYPHER_T_RBRACE))
        return NULL;
    if (at_kw(p, "IN")) {
        advance(p);
        if (!expect_kw(p, "TRANSACTIONS"))
            return NULL;
        c->flags |= TG_CYPHER_F_IN_TX;
        if (accept_kw(p, "OF")) {
            if (!(c->kid[2] = parse_expr(p)))
                return NULL;
            if (!accept_kw(p, "ROWS") && !accept_kw(p, "ROW"))
                return expected(p, "ROWS");
        }
        if (at_kw(p, "ON") || at_kw(p, "REPORT"))
            return fail(p, "IN TRANSACTIONS options other than OF n ROWS are not supported");
    }
    return c;
}

static tg_cypher_node *parse_call(parser *p, bool optional)
{
    tg_cypher_node *c = new_node(p, TG_CYPHER_CALL_PROC);
    if (!c)
        return NULL;
    if (optional) {
        c->flags |= TG_CYPHER_F_OPTIONAL;
        advance(p);
    }
    advance(p); /* CALL */
    if (at(p, TG_CYPHER_T_LBRACE) || at(p, TG_CYPHER_T_LPAREN))
        return parse_call_subquery(p, c);
    if (!parse_dotted_name(p, &c->str))
        return NULL;
    if (accept(p, TG_CYPHER_T_LPAREN)) {
        c->flags |= TG_CYPHER_F_ARGS;
        if (!at(p, TG_CYPHER_T_RPAREN) && !parse_expr_list(p, &c->kid[0]))
            return NULL;
        if (!expect(p, TG_CYPHER_T_RPAREN))
            return NULL;
    }
    if (accept_kw(p, "YIELD")) {
        c->flags |= TG_CYPHER_F_YIELD;
        if (accept(p, TG_CYPHER_T_STAR)) {
            c->flags |= TG_CYPHER_F_STAR;
        } else {
            tg_cypher_node **tail = &c->kid[1];
            do {
                tg_cypher_node *y = new_node(p, TG_CYPHER_YIELD_ITEM);
                if (!y || !at_variable(p))
                    return y ? expected(p, "a procedure result name") : NULL;
                y->str = cur(p)->val;
                advance(p);
                if (accept_kw(p, "AS") && !(y->kid[0] = parse_variable(p)))
                    return NULL;
                *tail = y;
                tail = &y->next;
            } while (accept(p, TG_CYPHER_T_COMMA));
        }
        if (accept_kw(p, "WHERE") && !(c->kid[TG_CYPHER_S_WHERE] = parse_expr(p)))
            return NULL;
    }
    return c;
}

static tg_cypher_node *parse_clause(parser *p)
{
    const tg_cypher_token *t = cur(p);
    if (t->type != TG_CYPHER_T_IDENT)
        return expected(p, "a clause");
    if (is_kw(t, "MATCH"))
        return parse_match(p, false);
    if (is_kw(t, "OPTIONAL")) {
        if (is_kw(peek(p, 1), "MATCH"))
            return parse_match(p, true);
        if (is_kw(peek(p, 1), "CALL"))
            return parse_call(p, true);
        advance(p);
        return expected(p, "MATCH or CALL");
    }
    if (is_kw(t, "UNWIND"))
        return parse_unwind(p);
    if (is_kw(t, "WITH"))
        return parse_projection(p, TG_CYPHER_WITH);
    if (is_kw(t, "RETURN"))
        return parse_projection(p, TG_CYPHER_RETURN);
    if (is_kw(t, "CREATE"))
        return parse_create(p);
    if (is_kw(t, "MERGE"))
        return parse_merge(p);
    if (is_kw(t, "SET"))
        return parse_set(p);
    if (is_kw(t, "REMOVE"))
        return parse_remove(p);
    if (is_kw(t, "DELETE") || is_kw(t, "DETACH"))
        return parse_delete(p);
    if (is_kw(t, "FOREACH"))
        return parse_foreach(p);
    if (is_kw(t, "CALL"))
        return parse_call(p, false);
    if (is_kw(t, "FINISH")) {
        tg_cypher_node *f = new_node(p, TG_CYPHER_FINISH);
        advance(p);
        return f;
    }
    if (is_kw(t, "LOAD"))
        return fail(p, "LOAD CSV is not allowed");
    if (is_kw(t, "USE"))
        return fail(p, "USE is not allowed");
    if (is_kw(t, "START") && !is_kw(peek(p, 1), "DATABASE"))
        return fail(p, "the START clause is not supported");
    static const char *const admin_words[] = {
        "SHOW", "GRANT",  "DENY",      "REVOKE",     "DROP",       "ALTER",  "RENAME",
        "STOP", "ENABLE", "TERMINATE", "DEALLOCATE", "REALLOCATE", "DRYRUN", "START",
    };
    for (size_t i = 0; i < sizeof(admin_words) / sizeof(admin_words[0]); i++)
        if (is_kw_n(t, admin_words[i], strlen(admin_words[i])))
            return refuse_admin(p);
    if (is_kw(t, "EXPLAIN") || is_kw(t, "PROFILE"))
        return fail(p, "EXPLAIN and PROFILE are not allowed");
    return expected(p, "a clause");
}

/* True at a token that ends a single query: UNION, }, ), ;, end. */
static bool at_query_end(const parser *p)
{
    tg_cypher_token_type t = cur(p)->type;
    return t == TG_CYPHER_T_EOF || t == TG_CYPHER_T_SEMI || t == TG_CYPHER_T_RBRACE ||
           t == TG_CYPHER_T_RPAREN || at_kw(p, "UNION");
}

/* clause { clause } into *head; returns the last clause. */
static tg_cypher_node *parse_clauses(parser *p, tg_cypher_node **head)
{
    tg_cypher_node **tail = head, *last = NULL;
    do {
        if (last && (last->kind == TG_CYPHER_RETURN || last->kind == TG_CYPHER_FINISH))
            return fail(p, "syntax error at offset %u: unexpected %s after %s (it ends a query)",
                        (unsigned)cur(p)->offset, tg_cypher_token_name(cur(p)->type),
                        tg_cypher_kind_name(last->kind));
        tg_cypher_node *c = parse_clause(p);
        if (!c)
            return NULL;
        *tail = c;
        tail = &c->next;
        last = c;
    } while (!at_query_end(p));
    return last;
}

static tg_cypher_node *parse_query(parser *p)
{
    tg_cypher_node *q = new_node(p, TG_CYPHER_QUERY);
    if (!q || !enter(p))
        return NULL;
    tg_cypher_node **tail = &q->kid[0];
    uint32_t flags = 0;
    for (;;) {
        tg_cypher_node *s = new_node(p, TG_CYPHER_SINGLE);
        if (!s || !parse_clauses(p, &s->kid[0])) {
            leave(p);
            return NULL;
        }
        s->flags = flags;
        *tail = s;
        tail = &s->next;
        if (!accept_kw(p, "UNION"))
            break;
        flags = TG_CYPHER_F_UNION | (accept_kw(p, "ALL") ? TG_CYPHER_F_ALL : 0);
    }
    leave(p);
    return q;
}

int tg_cypher_parse(tg_arena *a, const char *text, size_t len, const tg_cypher_limits *lim,
                    tg_cypher_node **out, tg_cypher_error *err)
{
    tg_cypher_limits l = tg_cypher_limits_resolve(lim);
    *out = NULL;
    memset(err, 0, sizeof(*err));
    if (len > l.max_bytes) {
        snprintf(err->reason, sizeof(err->reason), "statement longer than %u bytes",
                 (unsigned)l.max_bytes);
        return TG_ELIMIT;
    }
    tg_cypher_tokens toks;
    int rc = tg_cypher_lex(a, text, len, l.max_tokens, l.max_depth, &toks, err);
    if (rc)
        return rc;
    parser p = {
        .arena = a,
        .t = toks.t,
        .n = toks.n,
        .max_depth = l.max_depth,
        .max_nodes = l.max_nodes,
        .max_steps = (uint64_t)toks.n * 16 + 4096,
        .err = err,
    };
    if (at_kw(&p, "EXPLAIN") || at_kw(&p, "PROFILE"))
        fail(&p, "EXPLAIN and PROFILE are not allowed");
    else if (at_kw(&p, "CYPHER"))
        fail(&p, "query options (CYPHER ...) are not allowed");
    else if (at(&p, TG_CYPHER_T_EOF) || at(&p, TG_CYPHER_T_SEMI))
        fail(&p, "empty statement");
    tg_cypher_node *q = p.rc ? NULL : parse_query(&p);
    if (q) {
        accept(&p, TG_CYPHER_T_SEMI);
        if (!at(&p, TG_CYPHER_T_EOF)) {
            if (at(&p, TG_CYPHER_T_SEMI) || p.t[p.pos - 1].type == TG_CYPHER_T_SEMI)
                fail(&p, "more than one statement");
            else
                expected(&p, "a clause or the end of the statement");
        }
    }
    if (p.rc)
        return p.rc;
    *out = q;
    return 0;
}
