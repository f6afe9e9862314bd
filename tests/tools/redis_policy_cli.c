/*
 * A small command-line front end of the Redis policy (policy/redis_policy.c),
 * for tests that compare it with a real server (tests/integration/
 * test_redis_keyspecs.py) and for reading the policy.
 *
 *   redis_policy_cli [--allow-scripts] [--prefix P] < commands
 *       one command per line, arguments separated by TAB; prints per line
 *       kind TAB reply TAB local TAB append TAB roles TAB reason
 *       where roles has one letter per argument (tg_redis_role_letter: . k c p s)
 *   redis_policy_cli --list
 *       every command of the built-in table: name TAB rule TAB arity TAB key specs TAB acl
 *       (acl: "grant" when the per-tenant ACL user of allow_scripts gets it, else "-")
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/redis_policy.h"

#define MAX_ARGS 4096

int main(int argc, char **argv)
{
    tg_redis_judge_opts o = {false, {NULL, 0}};
    int list = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--allow-scripts") == 0) {
            o.allow_scripts = true;
        } else if (strcmp(argv[i], "--prefix") == 0 && i + 1 < argc) {
            o.prefix = tg_slice_str(argv[++i]);
        } else if (strcmp(argv[i], "--list") == 0) {
            list = 1;
        } else {
            fprintf(stderr, "usage: %s [--allow-scripts] [--prefix P] [--list]\n", argv[0]);
            return 2;
        }
    }
    tg_redis_table *t = tg_redis_table_builtin();
    if (!t) {
        fprintf(stderr, "redis_policy_cli: could not build the table\n");
        return 1;
    }
    if (list) {
        for (uint32_t i = 0; i < tg_redis_table_count(t); i++) {
            const tg_redis_command *c = tg_redis_table_at(t, i);
            printf("%s\t%s\t%d\t%u\t%s\n", c->name, tg_redis_rule_name(c), (int)c->arity,
                   (unsigned)c->nspecs, tg_redis_acl_grants(c) ? "grant" : "-");
        }
        tg_redis_table_free(t);
        return 0;
    }
    static tg_slice args[MAX_ARGS];
    static uint8_t roles[MAX_ARGS];
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        if (n > 0 && line[n - 1] == '\n')
            line[--n] = '\0';
        uint32_t nargs = 0;
        char *p = line;
        while (nargs < MAX_ARGS) {
            char *tab = strchr(p, '\t');
            args[nargs++] = (tg_slice){(const uint8_t *)p, tab ? (size_t)(tab - p) : strlen(p)};
            if (!tab)
                break;
            p = tab + 1;
        }
        if (n == 0)
            nargs = 0;
        tg_redis_verdict v;
        tg_redis_verdict_init(&v, roles, MAX_ARGS);
        tg_redis_judge(t, args, nargs, &o, &v);
        char letters[MAX_ARGS + 1];
        uint32_t k = 0;
        if (v.kind == TG_REDIS_FORWARD || v.kind == TG_REDIS_REWRITE_PATTERN)
            for (; k < nargs; k++)
                letters[k] = tg_redis_role_letter((tg_redis_arg_role)roles[k]);
        letters[k] = '\0';
        printf("%s\t%s\t%s\t%s\t%s\t%s\n", tg_redis_verdict_name(v.kind),
               tg_redis_reply_name(v.reply), tg_redis_local_name(v.local),
               tg_redis_append_name(v.append), letters, v.reason);
        fflush(stdout);
    }
    free(line);
    tg_redis_table_free(t);
    return 0;
}
