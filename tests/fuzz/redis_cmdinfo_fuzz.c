/*
 * libFuzzer target for the COMMAND reply parser (policy/redis_cmdinfo.c).
 *
 *   input: the bytes of one backend reply (seeds: the real Redis 7.0 replies in
 *          RESP2 and RESP3, Redis 6 entries, errors, crafted key specs)
 *        --> tg_redis_cmdinfo_parse against the built-in table
 *        --> on success: judge a fixed set of commands on the new table
 *
 * Invariants: never crash or over-read (ASan/UBSan; the input is copied to an
 * exact-size buffer); an error leaves *out NULL and a non-empty, NUL-terminated
 * reason; a success gives a sealed table of stats.commands rows, within the
 * bound; every row is found by its own name; a command the built-in table
 * refuses (or does not have, without a named rule) is refused by the new table
 * too; the same input parses to the same result twice.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/redis_cmdinfo.h"
#include "policy/redis_policy.h"

static tg_redis_table *builtin;

static const char *const lines[][4] = {
    {"GET", "k"},
    {"SET", "k", "v"},
    {"APPEND", "k", "v"},
    {"FLUSHALL"},
    {"CLIENT", "KILL", "x"},
    {"OBJECT", "HELP"},
    {"KEYS", "*"},
    {"PING"},
    {"EVAL", "s", "0"},
    {"SCAN", "0"},
    {"XREAD", "STREAMS", "s", "0"},
};

/* The table's row for c's name in the built-in table (exact name), or NULL. */
static const tg_redis_command *builtin_row(const tg_redis_command *c)
{
    const char *bar = strchr(c->name, '|');
    tg_slice argv[2] = {{(const uint8_t *)c->name, bar ? (size_t)(bar - c->name) : c->name_len},
                        tg_slice_str(bar ? bar + 1 : "")};
    const tg_redis_command *b = tg_redis_lookup(builtin, argv, bar ? 2 : 1);
    return b && strcmp(b->name, c->name) == 0 ? b : NULL;
}

static void check_table(const tg_redis_table *t, const tg_redis_cmdinfo_stats *st)
{
    uint32_t n = tg_redis_table_count(t);
    if (n != st->commands || n == 0 || n > TG_REDIS_CMDINFO_MAX_COMMANDS || st->unvetted > n)
        abort();
    for (uint32_t i = 0; i < n; i++) {
        const tg_redis_command *c = tg_redis_table_at(t, i);
        if (!c || strlen(c->name) != c->name_len)
            abort();
        const char *bar = strchr(c->name, '|');
        tg_slice argv[2] = {{(const uint8_t *)c->name, bar ? (size_t)(bar - c->name) : c->name_len},
                            tg_slice_str(bar ? bar + 1 : "")};
        if (tg_redis_lookup(t, argv, bar ? 2 : 1) != c)
            abort();
        const tg_redis_command *b = builtin_row(c);
        bool allowed = strcmp(tg_redis_rule_name(c), "deny") != 0;
        if (allowed && b && strcmp(tg_redis_rule_name(b), "deny") == 0)
            abort(); /* refused by the built-in table, allowed by the server's */
        if (allowed && tg_redis_command_unvetted(c))
            abort();
    }
    uint8_t roles[8];
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        tg_slice argv[4];
        uint32_t argc = 0;
        while (argc < 4 && lines[i][argc]) {
            argv[argc] = tg_slice_str(lines[i][argc]);
            argc++;
        }
        tg_redis_verdict v;
        tg_redis_verdict_init(&v, roles, sizeof(roles));
        tg_redis_verdict_kind k = tg_redis_judge(t, argv, argc, NULL, &v);
        if (k != v.kind || (k == TG_REDIS_DENY) != (v.reason[0] != '\0'))
            abort();
        if (k != TG_REDIS_DENY && (!v.cmd || roles[0] != TG_REDIS_ARG_PLAIN))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!builtin && !(builtin = tg_redis_table_builtin()))
        abort();
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        abort();
    memcpy(copy, data, size);
    tg_redis_table *t = NULL, *t2 = NULL;
    tg_redis_cmdinfo_stats st, st2;
    char why[96], why2[96];
    int r = tg_redis_cmdinfo_parse(copy, size, builtin, &t, &st, why, sizeof(why));
    int r2 = tg_redis_cmdinfo_parse(copy, size, builtin, &t2, &st2, why2, sizeof(why2));
    if (r != r2 || r > 0)
        abort();
    if (r < 0) {
        if (t || t2 || !memchr(why, '\0', sizeof(why)) || why[0] == '\0' || strcmp(why, why2) != 0)
            abort();
    } else {
        if (!t || !t2 || memcmp(&st, &st2, sizeof(st)) != 0)
            abort();
        check_table(t, &st);
    }
    tg_redis_table_free(t);
    tg_redis_table_free(t2);
    free(copy);
    return 0;
}
