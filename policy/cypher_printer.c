/*
 * The Cypher printer (canonical form described in cypher_printer.h).
 *
 *   print_node(query)
 *     ├─ clauses: keyword, then their parts separated by ", " / " "
 *     ├─ patterns: (n:L {k: v} WHERE e)-[r:T|U*1..3]->(m)
 *     └─ expressions: operands and operators as the tree holds them
 *
 * Recursion follows the tree, whose height the parser bounds.
 */
#include "policy/cypher_printer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/cypher_parser.h"
#include "proxy/error.h"

void tg_cypher_buf_reset(tg_cypher_buf *b)
{
    b->len = 0;
    b->err = 0;
    if (b->s)
        b->s[0] = '\0';
}

void tg_cypher_buf_free(tg_cypher_buf *b)
{
    free(b->s);
    size_t max = b->max;
    memset(b, 0, sizeof(*b));
    b->max = max;
}

static void put(tg_cypher_buf *b, const char *s, size_t n)
{
    if (b->err)
        return;
    if (b->max && b->len + n > b->max) {
        b->err = TG_ELIMIT;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->err = TG_ENOMEM;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void puts_(tg_cypher_buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* A string literal, its length known at compile time. */
#define put_lit(b, s) put((b), (s), sizeof(s) - 1)

/* ---- names ------------------------------------------------------------------------------- */

/*
 * Words that start a special form when followed by "(" (quantifiers, reduce,
 * shortest paths): a function of that name is printed quoted.
 */
static const char *const special_functions[] = {
    "ALL", "ANY", "NONE", "SINGLE", "REDUCE", "SHORTESTPATH", "ALLSHORTESTPATHS"};

/* Words that start a subquery expression when followed by "{": a map projection's base. */
static const char *const subquery_words[] = {"COUNT", "COLLECT", "EXISTS"};

static bool ieq(tg_cypher_str s, const char *kw)
{
    return tg_cypher_str_is_kw(s, kw, strlen(kw));
}

static bool in_table(tg_cypher_str s, const char *const *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ieq(s, t[i]))
            return true;
    return false;
}

bool tg_cypher_plain_name(tg_cypher_str name, bool schema)
{
    if (name.len == 0)
        return false;
    for (size_t i = 0; i < name.len; i++) {
        char c = name.s[i];
        bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!letter && !(i > 0 && c >= '0' && c <= '9'))
            return false;
    }
    return schema || !tg_cypher_is_reserved_word(name.s, name.len);
}

static void print_quoted(tg_cypher_buf *b, tg_cypher_str name)
{
    put(b, "`", 1);
    size_t start = 0;
    for (size_t i = 0; i < name.len; i++) {
        if (name.s[i] == '`') {
            put(b, name.s + start, i + 1 - start);
            put(b, "`", 1);
            start = i + 1;
        }
    }
    put(b, name.s + start, name.len - start);
    put(b, "`", 1);
}

/* A variable, procedure result or function name part. */
static void print_var_name(tg_cypher_buf *b, tg_cypher_str name)
{
    if (tg_cypher_plain_name(name, false))
        put(b, name.s, name.len);
    else
        print_quoted(b, name);
}

/* A label, relationship type or property key. */
static void print_schema_name(tg_cypher_buf *b, tg_cypher_str name)
{
    if (tg_cypher_plain_name(name, true))
        put(b, name.s, name.len);
    else
        print_quoted(b, name);
}

/*
 * A function or procedure name: its dotted parts. Reserved words and the
 * special forms' names are quoted so that the output never reads as a
 * keyword form, except "exists", whose old function form exists(n.prop) is
 * grammar-special in Neo4j and cannot be mistaken here ("EXISTS {" is).
 */
static void print_dotted_name(tg_cypher_buf *b, tg_cypher_str name)
{
    size_t start = 0;
    for (size_t i = 0; i <= name.len; i++) {
        if (i < name.len && name.s[i] != '.')
            continue;
        tg_cypher_str part = {name.s + start, i - start};
        if (start)
            put(b, ".", 1);
        if (ieq(part, "EXISTS") ||
            (tg_cypher_plain_name(part, false) &&
             !in_table(part, special_functions,
                       sizeof(special_functions) / sizeof(special_functions[0]))))
            put(b, part.s, part.len);
        else
            print_quoted(b, part);
        start = i + 1;
    }
}

/*
 * $name: keywords stay bare ($skip, $limit and $match are common in
 * applications and Neo4j reads them as parameters), anything else not a
 * plain word is quoted.
 */
static void print_param(tg_cypher_buf *b, tg_cypher_str name)
{
    put(b, "$", 1);
    bool digits = name.len > 0;
    for (size_t i = 0; i < name.len; i++)
        digits &= name.s[i] >= '0' && name.s[i] <= '9';
    if (digits || tg_cypher_plain_name(name, true))
        put(b, name.s, name.len);
    else
        print_quoted(b, name);
}

static void print_string(tg_cypher_buf *b, tg_cypher_str v)
{
    put(b, "'", 1);
    size_t start = 0;
    for (size_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.s[i];
        const char *esc = NULL;
        char hex[8];
        switch (c) {
        case '\\':
            esc = "\\\\";
            break;
        case '\'':
            esc = "\\'";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        default:
            if (c < 0x20 || c == 0x7f) {
                snprintf(hex, sizeof(hex), "\\u%04x", c);
                esc = hex;
            }
        }
        if (esc) {
            put(b, v.s + start, i - start);
            puts_(b, esc);
            start = i + 1;
        }
    }
    put(b, v.s + start, v.len - start);
    put(b, "'", 1);
}

/* ---- nodes ------------------------------------------------------------------------------- */

static void print_node(tg_cypher_buf *b, const tg_cypher_node *n);

/* The nodes of a list, separated by sep. */
static void print_list(tg_cypher_buf *b, const tg_cypher_node *n, const char *sep)
{
    for (; n; n = n->next) {
        print_node(b, n);
        if (n->next)
            puts_(b, sep);
    }
}

static void print_labels(tg_cypher_buf *b, const tg_cypher_node *l, const char *sep)
{
    for (; l; l = l->next) {
        puts_(b, sep);
        print_schema_name(b, l->str);
    }
}

static void print_where(tg_cypher_buf *b, const tg_cypher_node *w)
{
    if (w) {
        put_lit(b, " WHERE ");
        print_node(b, w);
    }
}

static void print_projection(tg_cypher_buf *b, const tg_cypher_node *n)
{
    puts_(b, n->kind == TG_CYPHER_WITH ? "WITH " : "RETURN ");
    if (n->flags & TG_CYPHER_F_DISTINCT)
        put_lit(b, "DISTINCT ");
    if (n->flags & TG_CYPHER_F_STAR) {
        put_lit(b, "*");
        if (n->kid[TG_CYPHER_S_ITEMS])
            put_lit(b, ", ");
    }
    print_list(b, n->kid[TG_CYPHER_S_ITEMS], ", ");
    if (n->kid[TG_CYPHER_S_ORDER]) {
        put_lit(b, " ORDER BY ");
        print_list(b, n->kid[TG_CYPHER_S_ORDER], ", ");
    }
    if (n->kid[TG_CYPHER_S_SKIP]) {
        put_lit(b, " SKIP ");
        print_node(b, n->kid[TG_CYPHER_S_SKIP]);
    }
    if (n->kid[TG_CYPHER_S_LIMIT]) {
        put_lit(b, " LIMIT ");
        print_node(b, n->kid[TG_CYPHER_S_LIMIT]);
    }
    print_where(b, n->kid[TG_CYPHER_S_WHERE]);
}

static void print_node_pattern(tg_cypher_buf *b, const tg_cypher_node *n)
{
    put_lit(b, "(");
    if (n->kid[TG_CYPHER_S_VAR])
        print_node(b, n->kid[TG_CYPHER_S_VAR]);
    print_labels(b, n->kid[TG_CYPHER_S_LABELS], ":");
    if (n->kid[TG_CYPHER_S_PROPS]) {
        if (n->kid[TG_CYPHER_S_VAR] || n->kid[TG_CYPHER_S_LABELS])
            put_lit(b, " ");
        print_node(b, n->kid[TG_CYPHER_S_PROPS]);
    }
    if (n->kid[TG_CYPHER_S_WHERE]) {
        if (n->kid[TG_CYPHER_S_VAR] || n->kid[TG_CYPHER_S_LABELS] || n->kid[TG_CYPHER_S_PROPS])
            put_lit(b, " ");
        put_lit(b, "WHERE ");
        print_node(b, n->kid[TG_CYPHER_S_WHERE]);
    }
    put_lit(b, ")");
}

static void print_rel_pattern(tg_cypher_buf *b, const tg_cypher_node *n)
{
    puts_(b, (n->op & TG_CYPHER_DIR_LEFT) ? "<-" : "-");
    if (n->flags & TG_CYPHER_F_DETAIL) {
        put_lit(b, "[");
        bool any = false;
        if (n->kid[TG_CYPHER_S_VAR]) {
            print_node(b, n->kid[TG_CYPHER_S_VAR]);
            any = true;
        }
        if (n->kid[TG_CYPHER_S_LABELS]) {
            put_lit(b, ":");
            for (const tg_cypher_node *l = n->kid[TG_CYPHER_S_LABELS]; l; l = l->next) {
                print_schema_name(b, l->str);
                if (l->next)
                    put_lit(b, "|");
            }
            any = true;
        }
        if (n->kid[TG_CYPHER_S_RANGE]) {
            print_node(b, n->kid[TG_CYPHER_S_RANGE]);
            any = true;
        }
        if (n->kid[TG_CYPHER_S_PROPS]) {
            if (any)
                put_lit(b, " ");
            print_node(b, n->kid[TG_CYPHER_S_PROPS]);
            any = true;
        }
        if (n->kid[TG_CYPHER_S_WHERE]) {
            if (any)
                put_lit(b, " ");
            put_lit(b, "WHERE ");
            print_node(b, n->kid[TG_CYPHER_S_WHERE]);
        }
        put_lit(b, "]");
    }
    puts_(b, (n->op & TG_CYPHER_DIR_RIGHT) ? "->" : "-");
}

static void print_set_items(tg_cypher_buf *b, const tg_cypher_node *n)
{
    print_list(b, n, ", ");
}

static void print_call_sub(tg_cypher_buf *b, const tg_cypher_node *n)
{
    if (n->flags & TG_CYPHER_F_OPTIONAL)
        put_lit(b, "OPTIONAL ");
    put_lit(b, "CALL ");
    if (n->flags & TG_CYPHER_F_SCOPED) {
        put_lit(b, "(");
        if (n->flags & TG_CYPHER_F_STAR)
            put_lit(b, "*");
        print_list(b, n->kid[0], ", ");
        put_lit(b, ") ");
    }
    put_lit(b, "{ ");
    print_node(b, n->kid[1]);
    put_lit(b, " }");
    if (n->flags & TG_CYPHER_F_IN_TX) {
        put_lit(b, " IN TRANSACTIONS");
        if (n->kid[2]) {
            put_lit(b, " OF ");
            print_node(b, n->kid[2]);
            put_lit(b, " ROWS");
        }
    }
}

static void print_call_proc(tg_cypher_buf *b, const tg_cypher_node *n)
{
    if (n->flags & TG_CYPHER_F_OPTIONAL)
        put_lit(b, "OPTIONAL ");
    put_lit(b, "CALL ");
    print_dotted_name(b, n->str);
    if (n->flags & TG_CYPHER_F_ARGS) {
        put_lit(b, "(");
        print_list(b, n->kid[0], ", ");
        put_lit(b, ")");
    }
    if (n->flags & TG_CYPHER_F_YIELD) {
        put_lit(b, " YIELD ");
        if (n->flags & TG_CYPHER_F_STAR)
            put_lit(b, "*");
        print_list(b, n->kid[1], ", ");
        print_where(b, n->kid[TG_CYPHER_S_WHERE]);
    }
}

static void print_expression(tg_cypher_buf *b, const tg_cypher_node *n)
{
    switch (n->kind) {
    case TG_CYPHER_INFIX:
        for (const tg_cypher_node *o = n->kid[0]; o; o = o->next) {
            if (o != n->kid[0]) {
                put_lit(b, " ");
                puts_(b, tg_cypher_op_spelling(o->lop));
                put_lit(b, " ");
            }
            print_node(b, o);
        }
        break;
    case TG_CYPHER_NOT:
        put_lit(b, "NOT ");
        print_node(b, n->kid[0]);
        break;
    case TG_CYPHER_UNARY:
        puts_(b, n->op == TG_CYPHER_OP_ADD ? "+" : "-");
        if (n->kid[0]->kind == TG_CYPHER_UNARY)
            put_lit(b, " ");
        print_node(b, n->kid[0]);
        break;
    case TG_CYPHER_PRED:
        print_node(b, n->kid[0]);
        put_lit(b, " ");
        puts_(b, tg_cypher_op_spelling(n->op));
        if (n->kid[1]) {
            put_lit(b, " ");
            print_node(b, n->kid[1]);
        }
        break;
    case TG_CYPHER_PROP:
        print_node(b, n->kid[0]);
        put_lit(b, ".");
        print_schema_name(b, n->str);
        break;
    case TG_CYPHER_INDEX:
        print_node(b, n->kid[0]);
        put_lit(b, "[");
        print_node(b, n->kid[1]);
        put_lit(b, "]");
        break;
    case TG_CYPHER_SLICE:
        print_node(b, n->kid[0]);
        put_lit(b, "[");
        if (n->kid[1])
            print_node(b, n->kid[1]);
        put_lit(b, "..");
        if (n->kid[2])
            print_node(b, n->kid[2]);
        put_lit(b, "]");
        break;
    case TG_CYPHER_LABEL_TEST:
        print_node(b, n->kid[0]);
        print_labels(b, n->kid[1], ":");
        break;
    case TG_CYPHER_PAREN:
        put_lit(b, "(");
        print_node(b, n->kid[0]);
        put_lit(b, ")");
        break;
    case TG_CYPHER_VAR:
        print_var_name(b, n->str);
        break;
    case TG_CYPHER_PARAM:
        print_param(b, n->str);
        break;
    case TG_CYPHER_INT:
    case TG_CYPHER_FLOAT:
        put(b, n->str.s, n->str.len);
        break;
    case TG_CYPHER_STRING:
        print_string(b, n->str);
        break;
    case TG_CYPHER_CONST:
        puts_(b, tg_cypher_op_spelling(n->op));
        break;
    case TG_CYPHER_LIST:
        put_lit(b, "[");
        print_list(b, n->kid[0], ", ");
        put_lit(b, "]");
        break;
    case TG_CYPHER_MAP:
        put_lit(b, "{");
        print_list(b, n->kid[0], ", ");
        put_lit(b, "}");
        break;
    case TG_CYPHER_MAP_ENTRY:
        print_schema_name(b, n->str);
        put_lit(b, ": ");
        print_node(b, n->kid[0]);
        break;
    case TG_CYPHER_MAP_PROJ:
        /* count {.x} would read as a COUNT subquery */
        if (in_table(n->kid[0]->str, subquery_words,
                     sizeof(subquery_words) / sizeof(subquery_words[0])))
            print_quoted(b, n->kid[0]->str);
        else
            print_node(b, n->kid[0]);
        put_lit(b, " {");
        print_list(b, n->kid[1], ", ");
        put_lit(b, "}");
        break;
    case TG_CYPHER_MAP_PROJ_ITEM:
        switch (n->op) {
        case TG_CYPHER_OP_MP_PROP:
            put_lit(b, ".");
            print_schema_name(b, n->str);
            break;
        case TG_CYPHER_OP_MP_ALL:
            put_lit(b, ".*");
            break;
        case TG_CYPHER_OP_MP_ENTRY:
            print_schema_name(b, n->str);
            put_lit(b, ": ");
            print_node(b, n->kid[0]);
            break;
        default:
            print_node(b, n->kid[0]);
        }
        break;
    case TG_CYPHER_CASE:
        put_lit(b, "CASE");
        if (n->kid[0]) {
            put_lit(b, " ");
            print_node(b, n->kid[0]);
        }
        for (const tg_cypher_node *w = n->kid[1]; w; w = w->next) {
            put_lit(b, " WHEN ");
            print_node(b, w->kid[0]);
            put_lit(b, " THEN ");
            print_node(b, w->kid[1]);
        }
        if (n->kid[2]) {
            put_lit(b, " ELSE ");
            print_node(b, n->kid[2]);
        }
        put_lit(b, " END");
        break;
    case TG_CYPHER_FUNC:
        print_dotted_name(b, n->str);
        put_lit(b, "(");
        if (n->flags & TG_CYPHER_F_DISTINCT)
            put_lit(b, "DISTINCT ");
        print_list(b, n->kid[0], ", ");
        put_lit(b, ")");
        break;
    case TG_CYPHER_COUNT_STAR:
        put_lit(b, "count(*)");
        break;
    case TG_CYPHER_LIST_COMP:
        put_lit(b, "[");
        print_node(b, n->kid[0]);
        put_lit(b, " IN ");
        print_node(b, n->kid[1]);
        print_where(b, n->kid[TG_CYPHER_S_WHERE]);
        if (n->kid[2]) {
            put_lit(b, " | ");
            print_node(b, n->kid[2]);
        }
        put_lit(b, "]");
        break;
    case TG_CYPHER_PATTERN_COMP:
        put_lit(b, "[");
        if (n->kid[0]) {
            print_node(b, n->kid[0]);
            put_lit(b, " = ");
        }
        print_node(b, n->kid[1]);
        print_where(b, n->kid[TG_CYPHER_S_WHERE]);
        put_lit(b, " | ");
        print_node(b, n->kid[2]);
        put_lit(b, "]");
        break;
    case TG_CYPHER_QUANT:
        puts_(b, tg_cypher_op_spelling(n->op));
        put_lit(b, "(");
        print_node(b, n->kid[0]);
        put_lit(b, " IN ");
        print_node(b, n->kid[1]);
        print_where(b, n->kid[TG_CYPHER_S_WHERE]);
        put_lit(b, ")");
        break;
    case TG_CYPHER_REDUCE:
        put_lit(b, "reduce(");
        print_node(b, n->kid[0]);
        put_lit(b, " = ");
        print_node(b, n->kid[1]);
        put_lit(b, ", ");
        print_node(b, n->kid[2]);
        put_lit(b, " IN ");
        print_node(b, n->kid[3]);
        put_lit(b, " | ");
        print_node(b, n->kid[4]);
        put_lit(b, ")");
        break;
    case TG_CYPHER_PATTERN_PRED:
        print_node(b, n->kid[0]);
        break;
    case TG_CYPHER_SUBQUERY:
        puts_(b, tg_cypher_op_spelling(n->op));
        put_lit(b, " { ");
        if (n->flags & TG_CYPHER_F_FULL) {
            print_node(b, n->kid[0]);
        } else {
            print_list(b, n->kid[0], ", ");
            print_where(b, n->kid[TG_CYPHER_S_WHERE]);
        }
        put_lit(b, " }");
        break;
    default:
        break;
    }
}

static void print_node(tg_cypher_buf *b, const tg_cypher_node *n)
{
    if (b->err)
        return;
    switch (n->kind) {
    case TG_CYPHER_QUERY:
        for (const tg_cypher_node *s = n->kid[0]; s; s = s->next) {
            if (s->flags & TG_CYPHER_F_UNION)
                puts_(b, (s->flags & TG_CYPHER_F_ALL) ? " UNION ALL " : " UNION ");
            print_node(b, s);
        }
        break;
    case TG_CYPHER_SINGLE:
        print_list(b, n->kid[0], " ");
        break;
    case TG_CYPHER_MATCH:
        puts_(b, (n->flags & TG_CYPHER_F_OPTIONAL) ? "OPTIONAL MATCH " : "MATCH ");
        print_list(b, n->kid[0], ", ");
        print_where(b, n->kid[TG_CYPHER_S_WHERE]);
        break;
    case TG_CYPHER_UNWIND:
        put_lit(b, "UNWIND ");
        print_node(b, n->kid[1]);
        put_lit(b, " AS ");
        print_node(b, n->kid[0]);
        break;
    case TG_CYPHER_WITH:
    case TG_CYPHER_RETURN:
        print_projection(b, n);
        break;
    case TG_CYPHER_CREATE:
        put_lit(b, "CREATE ");
        print_list(b, n->kid[0], ", ");
        break;
    case TG_CYPHER_MERGE:
        put_lit(b, "MERGE ");
        print_node(b, n->kid[0]);
        for (const tg_cypher_node *a = n->kid[1]; a; a = a->next) {
            put_lit(b, " ");
            print_node(b, a);
        }
        break;
    case TG_CYPHER_MERGE_ACTION:
        puts_(b, tg_cypher_op_spelling(n->op));
        put_lit(b, " ");
        print_set_items(b, n->kid[0]);
        break;
    case TG_CYPHER_SET:
        put_lit(b, "SET ");
        print_set_items(b, n->kid[0]);
        break;
    case TG_CYPHER_REMOVE:
        put_lit(b, "REMOVE ");
        print_list(b, n->kid[0], ", ");
        break;
    case TG_CYPHER_DELETE:
        puts_(b, (n->flags & TG_CYPHER_F_DETACH) ? "DETACH DELETE " : "DELETE ");
        print_list(b, n->kid[0], ", ");
        break;
    case TG_CYPHER_FOREACH:
        put_lit(b, "FOREACH (");
        print_node(b, n->kid[0]);
        put_lit(b, " IN ");
        print_node(b, n->kid[1]);
        put_lit(b, " | ");
        print_list(b, n->kid[2], " ");
        put_lit(b, ")");
        break;
    case TG_CYPHER_CALL_SUB:
        print_call_sub(b, n);
        break;
    case TG_CYPHER_CALL_PROC:
        print_call_proc(b, n);
        break;
    case TG_CYPHER_YIELD_ITEM:
        print_var_name(b, n->str);
        if (n->kid[0]) {
            put_lit(b, " AS ");
            print_node(b, n->kid[0]);
        }
        break;
    case TG_CYPHER_FINISH:
        put_lit(b, "FINISH");
        break;
    case TG_CYPHER_PROJ_ITEM:
        print_node(b, n->kid[0]);
        if (n->kid[1]) {
            put_lit(b, " AS ");
            print_node(b, n->kid[1]);
        }
        break;
    case TG_CYPHER_SORT_ITEM:
        print_node(b, n->kid[0]);
        if (n->op) {
            put_lit(b, " ");
            puts_(b, tg_cypher_op_spelling(n->op));
        }
        break;
    case TG_CYPHER_SET_PROP:
        print_node(b, n->kid[0]);
        put_lit(b, " = ");
        print_node(b, n->kid[1]);
        break;
    case TG_CYPHER_SET_VAR:
        print_node(b, n->kid[0]);
        puts_(b, n->op == TG_CYPHER_OP_APPEND ? " += " : " = ");
        print_node(b, n->kid[1]);
        break;
    case TG_CYPHER_SET_LABELS:
    case TG_CYPHER_REMOVE_LABELS:
        print_node(b, n->kid[0]);
        print_labels(b, n->kid[1], ":");
        break;
    case TG_CYPHER_REMOVE_PROP:
        print_node(b, n->kid[0]);
        break;
    case TG_CYPHER_PATH:
        if (n->kid[0]) {
            print_node(b, n->kid[0]);
            put_lit(b, " = ");
        }
        print_node(b, n->kid[1]);
        break;
    case TG_CYPHER_SHORTEST:
        puts_(b, tg_cypher_op_spelling(n->op));
        put_lit(b, "(");
        print_node(b, n->kid[0]);
        put_lit(b, ")");
        break;
    case TG_CYPHER_CHAIN:
        for (const tg_cypher_node *e = n->kid[0]; e; e = e->next)
            print_node(b, e);
        break;
    case TG_CYPHER_NODE_PAT:
        print_node_pattern(b, n);
        break;
    case TG_CYPHER_REL_PAT:
        print_rel_pattern(b, n);
        break;
    case TG_CYPHER_RANGE:
        put_lit(b, "*");
        if (n->kid[0])
            print_node(b, n->kid[0]);
        if (n->flags & TG_CYPHER_F_DOTS)
            put_lit(b, "..");
        if (n->kid[1])
            print_node(b, n->kid[1]);
        break;
    case TG_CYPHER_LABEL:
        print_schema_name(b, n->str);
        break;
    default:
        print_expression(b, n);
    }
}

int tg_cypher_print(const tg_cypher_node *query, tg_cypher_buf *out)
{
    if (out->err)
        return out->err;
    print_node(out, query);
    if (!out->err && !out->s)
        put(out, "", 0);
    return out->err;
}
