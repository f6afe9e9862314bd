/*
 * A small command-line front end to the Cypher rewriter, for writing the
 * corpus and for looking at what a statement becomes.
 *
 *   cypher_cli [-m property|label|database] [-t tenant] [-p] [-a procs] [-f funcs]
 *              [-P tenant_property] [-L label_template] [statement...]
 *
 * Each statement (arguments, or stdin lines when there are none) is printed
 * as "REWRITE: text", "FORWARD: text" or "REFUSE: reason". With -p only
 * the parser and printer run ("PRINT: text" or "REFUSE: reason"). -a and -f
 * take comma-separated allow lists of procedures and functions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/cypher_rewrite.h"

static void one(const tg_cypher_rewriter *rw, const char *tenant, bool parse_only, const char *s)
{
    if (parse_only) {
        tg_arena a;
        tg_arena_init(&a, NULL, 0, 0);
        tg_cypher_node *q;
        tg_cypher_error err;
        if (tg_cypher_parse(&a, s, strlen(s), NULL, &q, &err) != 0) {
            printf("REFUSE: %s\n", err.reason);
        } else {
            tg_cypher_buf b = {0};
            if (tg_cypher_print(q, &b) == 0)
                printf("PRINT: %s\n", b.s);
            tg_cypher_buf_free(&b);
        }
        tg_arena_release(&a);
        return;
    }
    tg_cypher_result r;
    tg_cypher_result_init(&r);
    tg_cypher_verdict v = tg_cypher_rewrite(rw, NULL, tenant, s, strlen(s), &r);
    if (v == TG_CYPHER_DENY)
        printf("REFUSE: %s\n", r.reason);
    else
        printf("%s: %s\n", v == TG_CYPHER_FORWARD ? "FORWARD" : "REWRITE", r.text.s);
    tg_cypher_result_free(&r);
}

/* Splits a comma-separated list into a NULL-terminated array (the string is modified). */
static const char **split(char *s)
{
    size_t n = 2;
    for (char *p = s; *p; p++)
        n += *p == ',';
    const char **v = calloc(n, sizeof(*v));
    size_t i = 0;
    for (char *tok = strtok(s, ","); v && tok; tok = strtok(NULL, ","))
        v[i++] = tok;
    return v;
}

int main(int argc, char **argv)
{
    tg_cypher_rewrite_config cfg = {0};
    const char *tenant = "acme";
    bool parse_only = false;
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc) {
            const char *m = argv[++i];
            cfg.isolation = !strcmp(m, "label")      ? TG_CYPHER_ISOLATION_LABEL
                            : !strcmp(m, "database") ? TG_CYPHER_ISOLATION_DATABASE
                                                     : TG_CYPHER_ISOLATION_PROPERTY;
        } else if (!strcmp(argv[i], "-t") && i + 1 < argc) {
            tenant = argv[++i];
        } else if (!strcmp(argv[i], "-p")) {
            parse_only = true;
        } else if (!strcmp(argv[i], "-a") && i + 1 < argc) {
            cfg.allow_procedures = split(argv[++i]);
        } else if (!strcmp(argv[i], "-f") && i + 1 < argc) {
            cfg.allow_functions = split(argv[++i]);
        } else if (!strcmp(argv[i], "-P") && i + 1 < argc) {
            cfg.tenant_property = argv[++i];
        } else if (!strcmp(argv[i], "-L") && i + 1 < argc) {
            cfg.label_template = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [-m property|label|database] [-t tenant] [-p] [stmt...]\n",
                    argv[0]);
            return 2;
        }
    }
    tg_cypher_rewriter *rw = tg_cypher_rewrite_new(&cfg);
    if (!rw)
        return 1;
    if (i < argc) {
        for (; i < argc; i++)
            one(rw, tenant, parse_only, argv[i]);
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        while ((n = getline(&line, &cap, stdin)) > 0) {
            if (line[n - 1] == '\n')
                line[n - 1] = '\0';
            one(rw, tenant, parse_only, line);
        }
        free(line);
    }
    tg_cypher_rewrite_free(rw);
    free((void *)cfg.allow_procedures);
    free((void *)cfg.allow_functions);
    return 0;
}
