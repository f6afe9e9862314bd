/*
 * Unit tests for the Cypher rewriter (policy/cypher_*.c).
 *
 *   corpus (unit/policy/cypher_corpus/NAME.txt, format in its README)
 *     ──> each case in its section's mode: exact rewrite, SAME, REFUSE: reason, or PRINT
 *     ──> every case in all three modes: output re-parses, prints to itself, is scoped,
 *         and a cached second run gives the same answer
 *   lexer: string escapes, surrogates, invalid UTF-8, numbers, quoted names
 *   limits: length, depth, tokens, tree nodes, backtracking budget
 *   cache: hits, LRU order, byte budget, oversized values, per-tenant keys in label mode
 *   configuration: invalid tenant properties and templates; reserved parameters
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/cypher_rewrite.h"
#include "proxy/error.h"

#define CORPUS_DIR "unit/policy/cypher_corpus"

/* ---- corpus ------------------------------------------------------------------------------ */

enum { MODE_PROPERTY, MODE_LABEL, MODE_DATABASE, MODE_PARSE, MODE_ALL };
enum { EXP_NONE, EXP_OUT, EXP_SAME, EXP_REFUSE, EXP_PRINT };

typedef struct section {
    int mode;
    char tenant[80];
    char *allow_procedures[8];
    char *allow_functions[8];
    char tenant_property[64];
    char label_template[64];
} section;

typedef struct corpus_case {
    char file[64];
    int line;
    section sec;
    char *in;
    int exp;
    char *expected;
} corpus_case;

static corpus_case *cases;
static size_t ncases, cap_cases;

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

static void split_list(char *value, char **out, size_t max)
{
    size_t n = 0;
    for (char *tok = strtok(value, ","); tok && n + 1 < max; tok = strtok(NULL, ","))
        out[n++] = xstrdup(tok);
    out[n] = NULL;
}

static void parse_section(section *s, char *line, const char *file, int lineno)
{
    memset(s, 0, sizeof(*s));
    strcpy(s->tenant, "acme");
    char *save = NULL;
    char *word = strtok_r(line, " \t", &save);
    word = strtok_r(NULL, " \t", &save);
    if (!word) {
        fprintf(stderr, "%s:%d: @mode without a mode\n", file, lineno);
        abort();
    }
    s->mode = !strcmp(word, "property")   ? MODE_PROPERTY
              : !strcmp(word, "label")    ? MODE_LABEL
              : !strcmp(word, "database") ? MODE_DATABASE
              : !strcmp(word, "parse")    ? MODE_PARSE
              : !strcmp(word, "all")      ? MODE_ALL
                                          : -1;
    if (s->mode < 0) {
        fprintf(stderr, "%s:%d: unknown mode %s\n", file, lineno, word);
        abort();
    }
    while ((word = strtok_r(NULL, " \t", &save)) != NULL) {
        char *eq = strchr(word, '=');
        if (!eq) {
            fprintf(stderr, "%s:%d: bad option %s\n", file, lineno, word);
            abort();
        }
        *eq = '\0';
        char *v = eq + 1;
        if (!strcmp(word, "tenant"))
            snprintf(s->tenant, sizeof(s->tenant), "%s", v);
        else if (!strcmp(word, "allow_procedures"))
            split_list(v, s->allow_procedures, 8);
        else if (!strcmp(word, "allow_functions"))
            split_list(v, s->allow_functions, 8);
        else if (!strcmp(word, "tenant_property"))
            snprintf(s->tenant_property, sizeof(s->tenant_property), "%s", v);
        else if (!strcmp(word, "label_template"))
            snprintf(s->label_template, sizeof(s->label_template), "%s", v);
        else {
            fprintf(stderr, "%s:%d: unknown option %s\n", file, lineno, word);
            abort();
        }
    }
}

static void load_file(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0;
    section sec;
    memset(&sec, 0, sizeof(sec));
    sec.mode = -1;
    corpus_case *cur = NULL;
    while ((n = getline(&line, &cap, f)) > 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (cur && cur->exp == EXP_NONE && n >= 2 && line[0] == ' ' && line[1] == ' ') {
            size_t len = strlen(cur->in) + strlen(line + 2) + 2;
            char *joined = malloc(len);
            assert_non_null(joined);
            snprintf(joined, len, "%s\n%s", cur->in, line + 2);
            free(cur->in);
            cur->in = joined;
            continue;
        }
        if (n == 0 || line[0] == '#')
            continue;
        if (!strncmp(line, "@mode", 5)) {
            parse_section(&sec, line, name, lineno);
            continue;
        }
        if (!strncmp(line, "IN: ", 4)) {
            if (sec.mode < 0) {
                fprintf(stderr, "%s:%d: IN before @mode\n", name, lineno);
                abort();
            }
            if (cur && cur->exp == EXP_NONE) {
                fprintf(stderr, "%s:%d: IN without an expectation\n", name, cur->line);
                abort();
            }
            if (ncases == cap_cases) {
                cap_cases = cap_cases ? cap_cases * 2 : 256;
                cases = realloc(cases, cap_cases * sizeof(*cases));
                assert_non_null(cases);
            }
            cur = &cases[ncases++];
            memset(cur, 0, sizeof(*cur));
            snprintf(cur->file, sizeof(cur->file), "%s", name);
            cur->line = lineno;
            cur->sec = sec;
            cur->in = xstrdup(line + 4);
            continue;
        }
        if (!cur || cur->exp != EXP_NONE) {
            fprintf(stderr, "%s:%d: expectation without IN\n", name, lineno);
            abort();
        }
        if (!strncmp(line, "OUT: ", 5)) {
            cur->exp = EXP_OUT;
            cur->expected = xstrdup(line + 5);
        } else if (!strcmp(line, "SAME")) {
            cur->exp = EXP_SAME;
        } else if (!strncmp(line, "REFUSE: ", 8)) {
            cur->exp = EXP_REFUSE;
            cur->expected = xstrdup(line + 8);
        } else if (!strncmp(line, "PRINT: ", 7)) {
            cur->exp = EXP_PRINT;
            cur->expected = xstrdup(line + 7);
        } else {
            fprintf(stderr, "%s:%d: unknown line\n", name, lineno);
            abort();
        }
    }
    if (cur && cur->exp == EXP_NONE) {
        fprintf(stderr, "%s:%d: IN without an expectation\n", name, cur->line);
        abort();
    }
    free(line);
    fclose(f);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int load_corpus(void **state)
{
    (void)state;
    DIR *d = opendir(CORPUS_DIR);
    assert_non_null(d);
    char *names[64];
    size_t nn = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && nn < 64) {
        size_t l = strlen(e->d_name);
        if (l > 4 && !strcmp(e->d_name + l - 4, ".txt"))
            names[nn++] = xstrdup(e->d_name);
    }
    closedir(d);
    qsort(names, nn, sizeof(names[0]), name_cmp);
    for (size_t i = 0; i < nn; i++) {
        load_file(CORPUS_DIR, names[i]);
        free(names[i]);
    }
    return 0;
}

static tg_cypher_rewriter *make_rewriter(const section *s, int mode)
{
    tg_cypher_rewrite_config cfg = {0};
    cfg.isolation = mode == MODE_LABEL      ? TG_CYPHER_ISOLATION_LABEL
                    : mode == MODE_DATABASE ? TG_CYPHER_ISOLATION_DATABASE
                                            : TG_CYPHER_ISOLATION_PROPERTY;
    cfg.allow_procedures = (const char *const *)s->allow_procedures;
    cfg.allow_functions = (const char *const *)s->allow_functions;
    cfg.tenant_property = s->tenant_property[0] ? s->tenant_property : NULL;
    cfg.label_template = s->label_template[0] ? s->label_template : NULL;
    tg_cypher_rewriter *rw = tg_cypher_rewrite_new(&cfg);
    assert_non_null(rw);
    return rw;
}

static const char *mode_name(int mode)
{
    static const char *const names[] = {"property", "label", "database", "parse", "all"};
    return names[mode];
}

/*
 * The invariants of an accepted statement's output: it parses, prints to
 * itself and is scoped. Returns NULL, or what failed.
 */
static const char *output_invariants(const tg_cypher_rewriter *rw, const char *tenant,
                                     const char *text, size_t len)
{
    static char why[TG_CYPHER_REASON_SIZE + 32];
    tg_arena a;
    tg_arena_init(&a, NULL, 0, 0);
    tg_cypher_limits lim = {.max_bytes = (uint32_t)len + 1, .max_depth = 80};
    tg_cypher_node *q;
    tg_cypher_error err;
    const char *fail = NULL;
    if (tg_cypher_parse(&a, text, len, &lim, &q, &err) != 0) {
        snprintf(why, sizeof(why), "output does not parse: %s", err.reason);
        fail = why;
    } else {
        tg_cypher_buf b = {0};
        char label[128];
        size_t ll = tg_cypher_tenant_label(rw, tenant, label, sizeof(label));
        if (tg_cypher_print(q, &b) != 0 || b.len != len || memcmp(b.s, text, len) != 0)
            fail = "output is not a print fixpoint";
        else if (!tg_cypher_rewrite_verify(rw, q, label, ll))
            fail = "output has an unscoped node pattern";
        tg_cypher_buf_free(&b);
    }
    tg_arena_release(&a);
    return fail;
}

/* Parse and print only (@mode parse). */
static bool run_parse_case(const corpus_case *c)
{
    tg_arena a;
    tg_arena_init(&a, NULL, 0, 0);
    tg_cypher_node *q;
    tg_cypher_error err;
    bool ok = true;
    int rc = tg_cypher_parse(&a, c->in, strlen(c->in), NULL, &q, &err);
    if (rc != 0) {
        if (c->exp != EXP_REFUSE || strncmp(err.reason, c->expected, strlen(c->expected))) {
            fprintf(stderr, "%s:%d: [parse] refused: %s\n", c->file, c->line, err.reason);
            ok = false;
        }
    } else {
        tg_cypher_buf b = {0};
        assert_int_equal(tg_cypher_print(q, &b), 0);
        const char *want = c->exp == EXP_SAME ? c->in : c->expected;
        if (c->exp == EXP_REFUSE || strcmp(b.s, want)) {
            fprintf(stderr, "%s:%d: [parse]\n  want: %s\n  got:  %s\n", c->file, c->line,
                    c->exp == EXP_REFUSE ? c->expected : want, b.s);
            ok = false;
        }
        tg_cypher_buf_free(&b);
    }
    tg_arena_release(&a);
    return ok;
}

static bool run_case_in_mode(const corpus_case *c, int mode)
{
    tg_cypher_rewriter *rw = make_rewriter(&c->sec, mode);
    tg_cypher_result r;
    tg_cypher_result_init(&r);
    size_t len = strlen(c->in);
    tg_cypher_verdict v = tg_cypher_rewrite(rw, NULL, c->sec.tenant, c->in, len, &r);
    bool ok = true;
    switch (c->exp) {
    case EXP_REFUSE:
        if (v != TG_CYPHER_DENY || strncmp(r.reason, c->expected, strlen(c->expected))) {
            fprintf(stderr, "%s:%d: [%s] want REFUSE: %s\n  got %s: %s\n", c->file, c->line,
                    mode_name(mode), c->expected, tg_cypher_verdict_name(v),
                    v == TG_CYPHER_DENY ? r.reason : r.text.s);
            ok = false;
        }
        break;
    case EXP_SAME:
        if (v != TG_CYPHER_FORWARD) {
            fprintf(stderr, "%s:%d: [%s] want SAME\n  got %s: %s\n", c->file, c->line,
                    mode_name(mode), tg_cypher_verdict_name(v),
                    v == TG_CYPHER_DENY ? r.reason : r.text.s);
            ok = false;
        }
        break;
    default:
        if (v == TG_CYPHER_DENY || strcmp(r.text.s, c->expected)) {
            fprintf(stderr, "%s:%d: [%s]\n  want: %s\n  got %s: %s\n", c->file, c->line,
                    mode_name(mode), c->expected, tg_cypher_verdict_name(v),
                    v == TG_CYPHER_DENY ? r.reason : r.text.s);
            ok = false;
        }
    }
    tg_cypher_result_free(&r);
    tg_cypher_rewrite_free(rw);
    return ok;
}

static void test_corpus_expectations(void **state)
{
    (void)state;
    size_t failures = 0, runs[5] = {0};
    for (size_t i = 0; i < ncases; i++) {
        const corpus_case *c = &cases[i];
        if (c->sec.mode == MODE_PARSE) {
            failures += !run_parse_case(c);
            runs[MODE_PARSE]++;
        } else if (c->sec.mode == MODE_ALL) {
            for (int m = MODE_PROPERTY; m <= MODE_DATABASE; m++) {
                failures += !run_case_in_mode(c, m);
                runs[m]++;
            }
        } else {
            failures += !run_case_in_mode(c, c->sec.mode);
            runs[c->sec.mode]++;
        }
    }
    fprintf(stderr,
            "cypher corpus: %zu cases; runs: %zu property, %zu label, %zu database, %zu parse; "
            "%zu failures\n",
            ncases, runs[MODE_PROPERTY], runs[MODE_LABEL], runs[MODE_DATABASE], runs[MODE_PARSE],
            failures);
    assert_true(ncases >= 300);
    assert_int_equal(failures, 0);
}

/* Every statement of the corpus, in every mode: the invariants of what would leave. */
static void test_corpus_invariants(void **state)
{
    (void)state;
    size_t failures = 0, accepted = 0, refused = 0;
    tg_cypher_cache *cache = tg_cypher_cache_new(64, 0);
    assert_non_null(cache);
    for (size_t i = 0; i < ncases; i++) {
        const corpus_case *c = &cases[i];
        for (int m = MODE_PROPERTY; m <= MODE_DATABASE; m++) {
            tg_cypher_rewriter *rw = make_rewriter(&c->sec, m);
            tg_cypher_result r1, r2;
            tg_cypher_result_init(&r1);
            tg_cypher_result_init(&r2);
            size_t len = strlen(c->in);
            tg_cypher_verdict v1 = tg_cypher_rewrite(rw, cache, c->sec.tenant, c->in, len, &r1);
            tg_cypher_verdict v2 = tg_cypher_rewrite(rw, cache, c->sec.tenant, c->in, len, &r2);
            if (v1 != v2 || !r2.cached || r1.fingerprint != r2.fingerprint ||
                (v1 == TG_CYPHER_DENY ? strcmp(r1.reason, r2.reason) != 0
                                      : strcmp(r1.text.s, r2.text.s) != 0)) {
                fprintf(stderr, "%s:%d: [%s] cached run differs\n", c->file, c->line, mode_name(m));
                failures++;
            }
            if (v1 == TG_CYPHER_DENY) {
                refused++;
                if (!r1.reason[0]) {
                    fprintf(stderr, "%s:%d: [%s] refusal without a reason\n", c->file, c->line,
                            mode_name(m));
                    failures++;
                }
            } else {
                accepted++;
                const char *why = output_invariants(rw, c->sec.tenant, r1.text.s, r1.text.len);
                if (why) {
                    fprintf(stderr, "%s:%d: [%s] %s\n  %s\n", c->file, c->line, mode_name(m), why,
                            r1.text.s);
                    failures++;
                }
            }
            tg_cypher_result_free(&r1);
            tg_cypher_result_free(&r2);
            tg_cypher_rewrite_free(rw);
        }
    }
    fprintf(stderr, "cypher corpus invariants: %zu accepted, %zu refused runs, %zu failures\n",
            accepted, refused, failures);
    tg_cypher_cache_free(cache);
    assert_int_equal(failures, 0);
}

/* ---- direct tests ------------------------------------------------------------------------ */

static tg_cypher_rewriter *property_rewriter(void)
{
    tg_cypher_rewrite_config cfg = {0};
    tg_cypher_rewriter *rw = tg_cypher_rewrite_new(&cfg);
    assert_non_null(rw);
    return rw;
}

static tg_cypher_verdict run(const tg_cypher_rewriter *rw, const char *tenant, const char *s,
                             size_t len, tg_cypher_result *r)
{
    return tg_cypher_rewrite(rw, NULL, tenant, s, len, r);
}

static void expect_refused(const tg_cypher_rewriter *rw, const char *s, size_t len,
                           const char *reason)
{
    tg_cypher_result r;
    tg_cypher_result_init(&r);
    tg_cypher_verdict v = run(rw, "acme", s, len, &r);
    if (v != TG_CYPHER_DENY || strncmp(r.reason, reason, strlen(reason)) != 0)
        fprintf(stderr, "want REFUSE %s, got %s %s\n", reason, tg_cypher_verdict_name(v),
                v == TG_CYPHER_DENY ? r.reason : r.text.s);
    assert_int_equal(v, TG_CYPHER_DENY);
    assert_memory_equal(r.reason, reason, strlen(reason));
    tg_cypher_result_free(&r);
}

static void expect_rewrite(const tg_cypher_rewriter *rw, const char *tenant, const char *s,
                           const char *want)
{
    tg_cypher_result r;
    tg_cypher_result_init(&r);
    tg_cypher_verdict v = run(rw, tenant, s, strlen(s), &r);
    if (v == TG_CYPHER_DENY || strcmp(r.text.s, want) != 0)
        fprintf(stderr, "want %s\ngot  %s\n", want, v == TG_CYPHER_DENY ? r.reason : r.text.s);
    assert_int_not_equal(v, TG_CYPHER_DENY);
    assert_string_equal(r.text.s, want);
    tg_cypher_result_free(&r);
}

static void test_lexer_strings(void **state)
{
    (void)state;
    tg_cypher_rewriter *rw = property_rewriter();
    /* \u escapes decode and print as UTF-8; a surrogate pair joins; escapes are canonical */
    expect_rewrite(rw, "acme", "RETURN '\\u0041\\u00e9\\uD83D\\uDE00\\U0001F600'",
                   "RETURN 'A\xc3\xa9\xf0\x9f\x98\x80\xf0\x9f\x98\x80'");
    expect_rewrite(rw, "acme", "RETURN \"a'b\\\"c\"", "RETURN 'a\\'b\"c'");
    expect_rewrite(rw, "acme", "RETURN '\\u0027) UNION MATCH (x) RETURN x //'",
                   "RETURN '\\') UNION MATCH (x) RETURN x //'");
    expect_rewrite(rw, "acme", "RETURN '\\u0001\\t\\b\\f\\r\\n\\\\'",
                   "RETURN '\\u0001\\t\\b\\f\\r\\n\\\\'");
    expect_refused(rw, "RETURN '\\uD83D'", 15, "unpaired surrogate");
    expect_refused(rw, "RETURN '\\uDE00x'", 16, "unpaired surrogate");
    expect_refused(rw, "RETURN '\\q'", 11, "unknown escape");
    expect_refused(rw, "RETURN '\\u12'", 13, "invalid \\u escape");
    expect_refused(rw, "RETURN '\xff'", 10, "invalid UTF-8");
    expect_refused(rw, "RETURN '\xc0\xaf'", 11, "invalid UTF-8");     /* overlong */
    expect_refused(rw, "RETURN '\xed\xa0\x80'", 12, "invalid UTF-8"); /* surrogate */
    expect_refused(rw, "RETURN 'abc", 11, "unterminated string");
    expect_refused(rw, "RETURN 'a\0b'", 12, "NUL byte in a string");
    expect_refused(rw, "RETURN 1 /* open", 16, "unterminated comment");
    expect_refused(rw, "RETURN `a", 9, "unterminated quoted name");
    expect_refused(rw, "RETURN ``", 9, "empty quoted name");
    expect_refused(rw, "RETURN `a\\u0041`", 16, "backslash in a quoted name");
    expect_refused(rw, "RETURN `a\nb`", 12, "control character in a quoted name");
    expect_refused(rw, "RETURN n.\\u0074enant_id", 23, "backslash outside a string");
    expect_refused(rw, "RETURN 1 \xe2\x80\x90 1", 14, "non-ASCII character outside");
    expect_refused(rw, "MATCH (n)\xe2\x80\x94[r]->(m) RETURN r", 30, "non-ASCII character");
    expect_refused(rw, "RETURN 1 :: INTEGER", 19, "type predicates");
    expect_refused(rw, "RETURN 0x", 9, "invalid number");
    expect_refused(rw, "RETURN 1e", 9, "invalid number");
    expect_refused(rw, "RETURN 1abc", 11, "invalid number");
    expect_refused(rw, "RETURN 019", 10, "invalid number");
    expect_refused(rw, "RETURN 1__0", 11, "invalid number");
    expect_refused(rw, "RETURN $", 8, "invalid parameter name");
    expect_refused(rw, "RETURN $1a", 10, "invalid parameter name");
    expect_refused(rw, "RETURN (1", 9, "unbalanced");
    expect_refused(rw, "RETURN 1)", 9, "unbalanced");
    expect_refused(rw, "RETURN [1}", 10, "unbalanced");
    expect_refused(rw, "RETURN 1 ! 2", 12, "unexpected character");
    /* a comment ends a word: "MAT" and "CH" are two words */
    expect_refused(rw, "MAT/**/CH (n) RETURN n", 22, "syntax error");
    tg_cypher_rewrite_free(rw);
}

/* A statement made of a head, `count` copies of a middle and a tail (malloc'd). */
static char *repeat(const char *head, const char *middle, size_t count, const char *tail)
{
    size_t len = strlen(head) + strlen(middle) * count + strlen(tail) + 1;
    char *s = malloc(len);
    assert_non_null(s);
    strcpy(s, head);
    size_t o = strlen(head), ml = strlen(middle);
    for (size_t i = 0; i < count; i++, o += ml)
        memcpy(s + o, middle, ml);
    strcpy(s + o, tail);
    return s;
}

/* head + open x count + core + close x count */
static char *nest(const char *head, const char *open, const char *core, const char *close,
                  size_t count)
{
    char *a = repeat(head, open, count, core);
    char *b = repeat(a, close, count, "");
    free(a);
    return b;
}

static void expect_refused_str(const tg_cypher_rewriter *rw, char *s, const char *reason)
{
    expect_refused(rw, s, strlen(s), reason);
    free(s);
}

static void expect_accepted_str(const tg_cypher_rewriter *rw, char *s)
{
    tg_cypher_result r;
    tg_cypher_result_init(&r);
    tg_cypher_verdict v = run(rw, "acme", s, strlen(s), &r);
    if (v == TG_CYPHER_DENY)
        fprintf(stderr, "refused: %s\n", r.reason);
    assert_int_not_equal(v, TG_CYPHER_DENY);
    assert_null(output_invariants(rw, "acme", r.text.s, r.text.len));
    tg_cypher_result_free(&r);
    free(s);
}

static void test_limits(void **state)
{
    (void)state;
    tg_cypher_rewriter *rw = property_rewriter();
    const char *deep = "statement is nested too deeply";
    /* every recursive construct counts against the depth bound (default 64) */
    expect_refused_str(rw, nest("RETURN ", "[", "1", "]", 100), deep);
    expect_refused_str(rw, nest("RETURN ", "(", "1", ")", 100), deep);
    expect_refused_str(rw, nest("RETURN ", "{a: ", "1", "}", 100), deep);
    expect_refused_str(rw, repeat("RETURN ", "NOT ", 200, "true"), deep);
    expect_refused_str(rw, repeat("RETURN ", "- ", 200, "1"), deep);
    expect_refused_str(rw, repeat("RETURN n", ".a", 200, ""), deep);
    expect_refused_str(rw, repeat("RETURN n", "[0]", 200, ""), deep);
    expect_refused_str(rw, repeat("RETURN 1", " IN [1]", 200, ""), deep);
    expect_refused_str(rw, repeat("RETURN 1", " IS NULL", 200, ""), deep);
    expect_refused_str(rw, nest("RETURN ", "CASE WHEN true THEN ", "1", " END", 100), deep);
    expect_refused_str(rw, nest("", "CALL { ", "RETURN 1 AS x", " RETURN x }", 100), deep);
    expect_refused_str(rw, nest("RETURN ", "EXISTS { MATCH (n) WHERE ", "true", " }", 100), deep);
    expect_refused_str(rw, nest("", "FOREACH (x IN [1] | ", "SET x.a = 1", ")", 100), deep);
    expect_refused_str(rw, nest("MATCH (n {a: ", "(n {a: ", "1", "})<-1", 80), deep);
    /* within the bounds: deep enough for real statements */
    expect_accepted_str(rw, nest("RETURN ", "[", "1", "]", 30));
    expect_accepted_str(rw, repeat("RETURN n", ".a", 30, ""));
    expect_accepted_str(rw,
                        nest("MATCH (a) WHERE ", "EXISTS { (a)-->(b) WHERE ", "true", " }", 10));
    /* chains of one operator are flat: long ones are fine */
    expect_accepted_str(rw, repeat("RETURN 1", " + 1", 5000, ""));
    expect_accepted_str(rw, repeat("MATCH (n) WHERE n.a = 0", " OR n.a = 1", 2000, " RETURN n"));
    expect_accepted_str(rw, repeat("RETURN 1", " < 2", 1000, ""));
    expect_accepted_str(rw, repeat("MATCH (n0)", ", (n)", 500, " RETURN 1"));
    /* variables in one scope (searched linearly): bounded */
    char vars[8192] = "MATCH (a0)";
    for (int i = 1; i < 1100; i++)
        snprintf(vars + strlen(vars), sizeof(vars) - strlen(vars), ",(a%d)", i);
    expect_refused(rw, vars, strlen(vars), "statement has too many variables in one scope");
    /* a chain of WITH * does not copy the scope every time */
    expect_accepted_str(rw, repeat("MATCH (a), (b), (c)", " WITH *", 5000, " RETURN a"));
    /* length */
    char *big = repeat("RETURN '", "x", TG_CYPHER_DEFAULT_MAX_BYTES, "'");
    expect_refused_str(rw, big, "statement longer than");
    tg_cypher_rewrite_free(rw);

    /* configured bounds: tokens, nodes, memory, length */
    tg_cypher_rewrite_config cfg = {0};
    cfg.limits.max_tokens = 100;
    rw = tg_cypher_rewrite_new(&cfg);
    expect_refused_str(rw, repeat("RETURN 1", " + 1", 100, ""), "statement has too many tokens");
    tg_cypher_rewrite_free(rw);
    cfg.limits = (tg_cypher_limits){.max_nodes = 50};
    rw = tg_cypher_rewrite_new(&cfg);
    expect_refused_str(rw, repeat("RETURN [0", ", 1", 60, "]"), "statement has too many elements");
    tg_cypher_rewrite_free(rw);
    cfg.limits = (tg_cypher_limits){.max_memory = 20000};
    rw = tg_cypher_rewrite_new(&cfg);
    expect_refused_str(rw, repeat("RETURN [0", ", 1", 2000, "]"), "statement too large");
    tg_cypher_rewrite_free(rw);
    cfg.limits = (tg_cypher_limits){.max_bytes = 32};
    rw = tg_cypher_rewrite_new(&cfg);
    expect_refused_str(rw, repeat("RETURN ", "1", 40, ""), "statement longer than 32 bytes");
    expect_accepted_str(rw, repeat("RETURN ", "1", 20, ""));
    /* the rewrite may grow past max_bytes: it is bounded separately, and still verified */
    expect_accepted_str(rw, repeat("MATCH ()", "", 0, " RETURN 1"));
    tg_cypher_rewrite_free(rw);

    /* backtracking over "(...)" that is not a pattern stays within the step budget */
    rw = property_rewriter();
    char *bt = nest("RETURN ", "(a {x: ", "1", "})<-1 + ", 20);
    tg_cypher_result r;
    tg_cypher_result_init(&r);
    run(rw, "acme", bt, strlen(bt), &r); /* accepted or refused, but it returns */
    tg_cypher_result_free(&r);
    free(bt);
    tg_cypher_rewrite_free(rw);
}

/* ---- cache ------------------------------------------------------------------------------- */

static tg_cypher_cache_key key_of(uint64_t k)
{
    return (tg_cypher_cache_key){k, k * 31 + 7, k & 0xff};
}

static bool cache_has(tg_cypher_cache *c, uint64_t k, const char *want)
{
    uint8_t kind;
    const char *v;
    size_t n;
    tg_cypher_cache_key key = key_of(k);
    if (!tg_cypher_cache_get(c, &key, &kind, &v, &n))
        return false;
    assert_int_equal(n, strlen(want));
    assert_memory_equal(v, want, n);
    return true;
}

static void put(tg_cypher_cache *c, uint64_t k, const char *v)
{
    tg_cypher_cache_key key = key_of(k);
    assert_int_equal(tg_cypher_cache_put(c, &key, TG_CYPHER_REWRITE, v, strlen(v)), 0);
}

static void test_cache_lru(void **state)
{
    (void)state;
    assert_null(tg_cypher_cache_new(0, 0));
    tg_cypher_cache *c = tg_cypher_cache_new(2, 0);
    assert_non_null(c);
    put(c, 1, "one");
    put(c, 2, "two");
    assert_true(cache_has(c, 1, "one")); /* 1 is now the most recent */
    put(c, 3, "three");                  /* evicts 2 */
    assert_false(cache_has(c, 2, "two"));
    assert_true(cache_has(c, 1, "one"));
    assert_true(cache_has(c, 3, "three"));
    put(c, 3, "THREE"); /* replaces */
    assert_true(cache_has(c, 3, "THREE"));
    /* same key, other check hash or length: a miss */
    tg_cypher_cache_key k = key_of(3);
    k.check ^= 1;
    uint8_t kind;
    const char *v;
    size_t n;
    assert_false(tg_cypher_cache_get(c, &k, &kind, &v, &n));
    k = key_of(3);
    k.len++;
    assert_false(tg_cypher_cache_get(c, &k, &kind, &v, &n));
    tg_cypher_cache_counters st;
    tg_cypher_cache_stats(c, &st);
    assert_int_equal(st.capacity, 2);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.bytes, strlen("one") + strlen("THREE"));
    tg_cypher_cache_free(c);
    tg_cypher_cache_stats(NULL, &st);
    assert_int_equal(st.capacity, 0);
}

static void test_cache_bytes(void **state)
{
    (void)state;
    tg_cypher_cache *c = tg_cypher_cache_new(100, 100);
    assert_non_null(c);
    char v[26];
    memset(v, 'v', 25);
    v[25] = '\0';
    for (uint64_t i = 1; i <= 10; i++)
        put(c, i, v);
    tg_cypher_cache_counters st;
    tg_cypher_cache_stats(c, &st);
    assert_true(st.bytes <= 100);
    assert_int_equal(st.entries, 4);
    assert_int_equal(st.evictions, 6);
    assert_true(cache_has(c, 10, v));
    assert_false(cache_has(c, 6, v));
    /* a value above a quarter of the budget is not stored */
    char big[27];
    memset(big, 'b', 26);
    big[26] = '\0';
    tg_cypher_cache_key k = key_of(99);
    assert_int_equal(tg_cypher_cache_put(c, &k, TG_CYPHER_REWRITE, big, 26), TG_ELIMIT);
    tg_cypher_cache_stats(c, &st);
    assert_int_equal(st.too_big, 1);
    /* slots freed by the byte budget are reused */
    for (uint64_t i = 11; i <= 300; i++)
        put(c, i, "x");
    tg_cypher_cache_stats(c, &st);
    assert_int_equal(st.entries, 100);
    tg_cypher_cache_free(c);
}

static void test_rewrite_cache(void **state)
{
    (void)state;
    tg_cypher_cache *cache = tg_cypher_cache_new(16, 0);
    tg_cypher_rewriter *prop = property_rewriter();
    tg_cypher_rewrite_config lc = {.isolation = TG_CYPHER_ISOLATION_LABEL};
    tg_cypher_rewriter *label = tg_cypher_rewrite_new(&lc);
    assert_non_null(label);
    const char *q = "MATCH (n:User) RETURN n";
    tg_cypher_result a, b;
    tg_cypher_result_init(&a);
    tg_cypher_result_init(&b);

    /* property mode: one entry for every tenant, the tenant travels as a parameter */
    tg_cypher_rewrite(prop, cache, "tenant-a", q, strlen(q), &a);
    tg_cypher_rewrite(prop, cache, "tenant-b", q, strlen(q), &b);
    assert_false(a.cached);
    assert_true(b.cached);
    assert_string_equal(a.text.s, b.text.s);

    /* label mode: per tenant; tenant-b never gets tenant-a's rewrite */
    tg_cypher_rewrite(label, cache, "tenant-a", q, strlen(q), &a);
    tg_cypher_rewrite(label, cache, "tenant-b", q, strlen(q), &b);
    assert_false(a.cached);
    assert_false(b.cached);
    assert_string_equal(a.text.s, "MATCH (n:User:`Tenant_tenant-a`) RETURN n");
    assert_string_equal(b.text.s, "MATCH (n:User:`Tenant_tenant-b`) RETURN n");
    tg_cypher_rewrite(label, cache, "tenant-b", q, strlen(q), &b);
    assert_true(b.cached);
    assert_string_equal(b.text.s, "MATCH (n:User:`Tenant_tenant-b`) RETURN n");
    tg_cypher_rewrite(label, cache, "tenant-a", q, strlen(q), &a);
    assert_true(a.cached);
    assert_string_equal(a.text.s, "MATCH (n:User:`Tenant_tenant-a`) RETURN n");

    /* two rewriters configured differently never share entries */
    tg_cypher_rewrite_config oc = {.tenant_property = "org"};
    tg_cypher_rewriter *org = tg_cypher_rewrite_new(&oc);
    tg_cypher_rewrite(org, cache, "tenant-a", q, strlen(q), &a);
    assert_false(a.cached);
    assert_string_equal(a.text.s, "MATCH (n:User {org: $__tenantgate_tenant}) RETURN n");

    /* refusals are cached with their reason; the fingerprint is the text's */
    const char *bad = "CALL db.labels()";
    tg_cypher_rewrite(prop, cache, "t", bad, strlen(bad), &a);
    tg_cypher_rewrite(prop, cache, "t", bad, strlen(bad), &b);
    assert_int_equal(b.kind, TG_CYPHER_DENY);
    assert_true(b.cached);
    assert_string_equal(a.reason, b.reason);
    assert_true(a.fingerprint == b.fingerprint && a.fingerprint != 0);
    assert_int_equal(b.text.len, 0);

    /* an invalid tenant in label mode is refused and never cached */
    tg_cypher_rewrite(label, cache, "bad tenant", q, strlen(q), &a);
    assert_int_equal(a.kind, TG_CYPHER_DENY);
    assert_string_equal(a.reason, "invalid tenant for label isolation");
    tg_cypher_rewrite(label, cache, NULL, q, strlen(q), &a);
    assert_int_equal(a.kind, TG_CYPHER_DENY);
    /* property mode ignores the tenant */
    tg_cypher_rewrite(prop, NULL, NULL, q, strlen(q), &a);
    assert_int_equal(a.kind, TG_CYPHER_REWRITE);

    tg_cypher_result_free(&a);
    tg_cypher_result_free(&b);
    tg_cypher_rewrite_free(prop);
    tg_cypher_rewrite_free(label);
    tg_cypher_rewrite_free(org);
    tg_cypher_cache_free(cache);
}

/* ---- configuration, parameters, verify --------------------------------------------------- */

static void test_config(void **state)
{
    (void)state;
    const char *bad_props[] = {"", "a\\b", "a\nb", "a\x7f"};
    for (size_t i = 0; i < sizeof(bad_props) / sizeof(bad_props[0]); i++) {
        tg_cypher_rewrite_config cfg = {.tenant_property = bad_props[i]};
        assert_null(tg_cypher_rewrite_new(&cfg));
    }
    char long_prop[200];
    memset(long_prop, 'p', sizeof(long_prop) - 1);
    long_prop[sizeof(long_prop) - 1] = '\0';
    tg_cypher_rewrite_config lp = {.tenant_property = long_prop};
    assert_null(tg_cypher_rewrite_new(&lp));
    const char *bad_templates[] = {"Tenant", "{tenant}", "{tenant}_{tenant}", "T_{tenant}\\",
                                   "T\n{tenant}"};
    for (size_t i = 0; i < sizeof(bad_templates) / sizeof(bad_templates[0]); i++) {
        tg_cypher_rewrite_config cfg = {.label_template = bad_templates[i]};
        assert_null(tg_cypher_rewrite_new(&cfg));
    }
    /* a property and a template that need quoting still print and parse back */
    tg_cypher_rewrite_config q = {.tenant_property = "odd`key"};
    tg_cypher_rewriter *rw = tg_cypher_rewrite_new(&q);
    assert_non_null(rw);
    expect_rewrite(rw, "acme", "MATCH (n) RETURN n",
                   "MATCH (n {`odd``key`: $__tenantgate_tenant}) RETURN n");
    tg_cypher_rewrite_free(rw);
    tg_cypher_rewrite_config lq = {.isolation = TG_CYPHER_ISOLATION_LABEL,
                                   .label_template = "T `{tenant}`"};
    rw = tg_cypher_rewrite_new(&lq);
    assert_non_null(rw);
    expect_rewrite(rw, "x-1", "MATCH (n) RETURN n", "MATCH (n:`T ``x-1```) RETURN n");
    char label[64];
    assert_int_equal(tg_cypher_tenant_label(rw, "x-1", label, sizeof(label)), 7);
    assert_string_equal(label, "T `x-1`");
    assert_int_equal(tg_cypher_tenant_label(rw, "x-1", label, 7), 0);
    assert_int_equal(tg_cypher_tenant_label(rw, "-x", label, sizeof(label)), 0);
    assert_int_equal(tg_cypher_tenant_label(rw, "", label, sizeof(label)), 0);
    char t64[66];
    memset(t64, 'a', 65);
    t64[65] = '\0';
    assert_int_equal(tg_cypher_tenant_label(rw, t64, label, sizeof(label)), 0);
    tg_cypher_rewrite_free(rw);
    /* NULL config: property mode with defaults */
    rw = tg_cypher_rewrite_new(NULL);
    assert_non_null(rw);
    expect_rewrite(rw, NULL, "MATCH (n) RETURN n",
                   "MATCH (n {tenant_id: $__tenantgate_tenant}) RETURN n");
    tg_cypher_rewrite_free(rw);
}

static void test_reserved_param(void **state)
{
    (void)state;
    assert_true(tg_cypher_param_reserved("__tenantgate_tenant", 19));
    assert_true(tg_cypher_param_reserved("__tenantgate", 12));
    assert_true(tg_cypher_param_reserved("__tenantgateX", 13));
    assert_false(tg_cypher_param_reserved("__tenantgat", 11));
    assert_false(tg_cypher_param_reserved("tenant", 6));
    assert_false(tg_cypher_param_reserved("_tenantgate_tenant", 18));
    assert_false(tg_cypher_param_reserved("", 0));
    assert_string_equal(TG_CYPHER_TENANT_PARAM, "__tenantgate_tenant");
    assert_true(tg_cypher_param_reserved(TG_CYPHER_TENANT_PARAM, strlen(TG_CYPHER_TENANT_PARAM)));
}

static bool verify_text(const tg_cypher_rewriter *rw, const char *label, const char *s)
{
    tg_arena a;
    tg_arena_init(&a, NULL, 0, 0);
    tg_cypher_node *q;
    tg_cypher_error err;
    assert_int_equal(tg_cypher_parse(&a, s, strlen(s), NULL, &q, &err), 0);
    bool ok = tg_cypher_rewrite_verify(rw, q, label, label ? strlen(label) : 0);
    tg_arena_release(&a);
    return ok;
}

static void test_verify(void **state)
{
    (void)state;
    tg_cypher_rewriter *rw = property_rewriter();
    assert_false(verify_text(rw, NULL, "MATCH (n) RETURN n"));
    assert_true(verify_text(rw, NULL, "MATCH (n {tenant_id: $__tenantgate_tenant}) RETURN n"));
    assert_false(verify_text(rw, NULL, "MATCH (n {tenant_id: $x}) RETURN n"));
    assert_false(verify_text(rw, NULL, "MATCH (n {tenant_id: 'a'}) RETURN n"));
    assert_false(verify_text(
        rw, NULL, "MATCH (n {tenant_id: $__tenantgate_tenant, tenant_id: 'x'}) RETURN n"));
    assert_false(verify_text(rw, NULL, "MATCH (n {tenantid: $__tenantgate_tenant}) RETURN n"));
    assert_false(verify_text(rw, NULL, "CREATE (a)"));
    assert_false(verify_text(rw, NULL, "CREATE (:A)"));
    assert_true(verify_text(rw, NULL, "MATCH (a {tenant_id: $__tenantgate_tenant}) CREATE (a)"));
    assert_false(
        verify_text(rw, NULL, "MATCH (a {tenant_id: $__tenantgate_tenant}) CREATE (a)-[:R]->()"));
    assert_false(verify_text(
        rw, NULL, "MATCH (a {tenant_id: $__tenantgate_tenant}) WHERE (a)-->() RETURN a"));
    assert_false(verify_text(rw, NULL,
                             "MATCH (a {tenant_id: $__tenantgate_tenant}) RETURN [(a)-->(b) | b]"));
    assert_false(verify_text(
        rw, NULL, "MATCH (a {tenant_id: $__tenantgate_tenant}) CREATE (a {x: [(b)-->() | 1]})"));
    /* a bare variable is accepted only directly in a CREATE/MERGE chain */
    assert_false(verify_text(rw, NULL, "MATCH (a) CREATE (b {tenant_id: $__tenantgate_tenant})"));
    /* ... and only when it names a safe variable in that scope */
#define T "{tenant_id: $__tenantgate_tenant}"
    assert_false(verify_text(rw, NULL, "MATCH (a " T ") CALL { CREATE (a) }"));
    assert_true(verify_text(rw, NULL, "MATCH (a " T ") CALL { WITH a CREATE (a) }"));
    assert_true(verify_text(rw, NULL, "MATCH (a " T ") CALL (a) { CREATE (a) }"));
    assert_false(verify_text(rw, NULL, "MATCH (a " T ") CALL (b) { CREATE (a) }"));
    assert_true(verify_text(rw, NULL, "MATCH (a " T ") CALL (*) { CREATE (a) }"));
    assert_false(verify_text(rw, NULL, "MATCH (a " T ") UNWIND [1] AS a CREATE (a)"));
    assert_false(verify_text(rw, NULL, "MATCH (a " T ") WITH 1 AS a CREATE (a)"));
    assert_true(verify_text(rw, NULL, "MATCH (a " T ") WITH a AS b CREATE (b)"));
    assert_false(verify_text(rw, NULL, "MATCH (a " T ") WITH a.x AS b CREATE (b)"));
    assert_true(verify_text(rw, NULL,
                            "UNWIND $l AS x WITH * WHERE x.tenant_id = $__tenantgate_tenant "
                            "CREATE (x)"));
    assert_true(verify_text(rw, NULL,
                            "UNWIND $l AS x WITH * WHERE x.a = 1 AND (x.tenant_id = "
                            "$__tenantgate_tenant) CREATE (x)"));
    assert_false(verify_text(rw, NULL,
                             "UNWIND $l AS x WITH * WHERE x.a = 1 OR x.tenant_id = "
                             "$__tenantgate_tenant CREATE (x)"));
    assert_false(
        verify_text(rw, NULL, "UNWIND $l AS x WITH * WHERE x.tenant_id = $other CREATE (x)"));
    assert_false(verify_text(rw, NULL,
                             "UNWIND $l AS x WITH * WHERE x.tenant_id <> $__tenantgate_tenant "
                             "CREATE (x)"));
    assert_false(verify_text(rw, NULL, "MATCH (a " T ") FOREACH (a IN [1] | CREATE (a))"));
    assert_true(verify_text(rw, NULL, "MATCH (a " T ") FOREACH (x IN [1] | CREATE (a))"));
    assert_true(verify_text(
        rw, NULL, "CALL { MATCH (b " T ") RETURN b UNION MATCH (b " T ") RETURN b } CREATE (b)"));
    assert_false(verify_text(rw, NULL,
                             "CALL { MATCH (b " T ") RETURN b UNION UNWIND [1] AS b RETURN b } "
                             "CREATE (b)"));
    assert_false(verify_text(rw, NULL, "MATCH ()-[a]->() CREATE (a)"));
    assert_false(verify_text(rw, NULL, "MATCH p = (a " T ") CREATE (p)"));
    assert_false(verify_text(rw, NULL, "RETURN EXISTS { MATCH (a " T ") CREATE (a) }"));
    assert_false(
        verify_text(rw, NULL, "MATCH (a " T ") CALL db.x() YIELD a CREATE (a)-[:R]->(b " T ")"));
#undef T
    tg_cypher_rewrite_free(rw);
    tg_cypher_rewrite_config lc = {.isolation = TG_CYPHER_ISOLATION_LABEL};
    rw = tg_cypher_rewrite_new(&lc);
    assert_true(verify_text(rw, "Tenant_a", "MATCH (n:Tenant_a) RETURN n"));
    assert_true(verify_text(rw, "Tenant_a", "MATCH (n:X:Tenant_a:Y) RETURN n"));
    assert_false(verify_text(rw, "Tenant_a", "MATCH (n:Tenant_b) RETURN n"));
    assert_false(verify_text(rw, "Tenant_a", "MATCH (n {tenant_id: $__tenantgate_tenant})"));
    assert_true(verify_text(rw, "Tenant_a", "UNWIND $l AS x WITH * WHERE x:Tenant_a CREATE (x)"));
    assert_false(verify_text(rw, "Tenant_a", "UNWIND $l AS x WITH * WHERE x:Tenant_b CREATE (x)"));
    tg_cypher_rewrite_free(rw);
    tg_cypher_rewrite_config dc = {.isolation = TG_CYPHER_ISOLATION_DATABASE};
    rw = tg_cypher_rewrite_new(&dc);
    assert_true(verify_text(rw, NULL, "MATCH (n) RETURN n"));
    tg_cypher_rewrite_free(rw);
}

/* Reasons quote names, never values, and names only as printable ASCII. */
static void test_reasons(void **state)
{
    (void)state;
    tg_cypher_rewriter *rw = property_rewriter();
    tg_cypher_result r;
    tg_cypher_result_init(&r);
    const char *q = "RETURN `evil\xc3\xa9name`.`x y`('SECRETVAL')";
    assert_int_equal(run(rw, "acme", q, strlen(q), &r), TG_CYPHER_DENY);
    assert_string_equal(r.reason, "function evil??name.x?y is not allowed");
    char *longname = repeat("RETURN a", "bcdefgh", 20, ".f('SECRETVAL')");
    assert_int_equal(run(rw, "acme", longname, strlen(longname), &r), TG_CYPHER_DENY);
    assert_true(strlen(r.reason) < 80);
    assert_null(strstr(r.reason, "SECRETVAL"));
    free(longname);
    const char *lit = "MATCH (n) WHERE n.x = 'SECRETVAL' RETURN n RETURN 1";
    assert_int_equal(run(rw, "acme", lit, strlen(lit), &r), TG_CYPHER_DENY);
    assert_null(strstr(r.reason, "SECRETVAL"));
    tg_cypher_result_free(&r);
    tg_cypher_rewrite_free(rw);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus_expectations),
        cmocka_unit_test(test_corpus_invariants),
        cmocka_unit_test(test_lexer_strings),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_cache_lru),
        cmocka_unit_test(test_cache_bytes),
        cmocka_unit_test(test_rewrite_cache),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_reserved_param),
        cmocka_unit_test(test_verify),
        cmocka_unit_test(test_reasons),
    };
    return cmocka_run_group_tests(tests, load_corpus, NULL);
}
