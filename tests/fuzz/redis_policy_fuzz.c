/*
 * libFuzzer target for the Redis command policy (policy/redis_policy.c).
 *
 *   byte 0: options (bit 0 allow_scripts, bit 1 a prefix with glob characters)
 *   rest:   arguments separated by 0x00 (an argument may hold any other byte)
 *        --> tg_redis_judge on the built-in table, and on a small custom table
 *            whose key specs use every begin_search / find_keys shape
 *
 * Invariants: never crash or over-read (ASan/UBSan; every argument is copied
 * to an exact-size buffer); the kind is valid and returned; the reason is
 * NUL-terminated, non-empty exactly for DENY; roles are valid and PLAIN for
 * argv[0]; the counts match the roles; REWRITE_PATTERN exactly when there is a
 * pattern or an append; LOCAL names a local kind; the command found is the one
 * tg_redis_lookup returns; judging twice gives the same verdict; with
 * allow_scripts, nothing is forwarded that the tenant's ACL user is not granted.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/redis_policy.h"

#define MAX_ARGS 256

static tg_redis_table *builtin, *custom;

static void add(tg_redis_table *t, const char *name, int32_t arity, const tg_redis_keyspec *ks,
                size_t n)
{
    (void)tg_redis_table_add_command(t, tg_slice_str(name), arity, TG_REDIS_CMD_WRITE, 0);
    for (size_t i = 0; i < n; i++)
        (void)tg_redis_table_add_keyspec(t, &ks[i]);
}

static void setup(void)
{
    builtin = tg_redis_table_builtin();
    custom = tg_redis_table_new();
    if (!builtin || !custom)
        abort();
    const tg_redis_keyspec back[] = {{.bs = TG_REDIS_BS_KEYWORD,
                                      .fk = TG_REDIS_FK_RANGE,
                                      .startfrom = -2,
                                      .keyword = "KEYS",
                                      .lastkey = -1,
                                      .keystep = 1}};
    const tg_redis_keyspec fwd[] = {{.bs = TG_REDIS_BS_KEYWORD,
                                     .fk = TG_REDIS_FK_RANGE,
                                     .startfrom = 1,
                                     .keyword = "ON",
                                     .lastkey = -1,
                                     .keystep = 1,
                                     .limit = 3}};
    const tg_redis_keyspec num[] = {
        {.bs = TG_REDIS_BS_INDEX, .fk = TG_REDIS_FK_RANGE, .index = 1, .keystep = 1},
        {.bs = TG_REDIS_BS_INDEX,
         .fk = TG_REDIS_FK_KEYNUM,
         .index = 2,
         .keynumidx = 0,
         .firstkey = 1,
         .keystep = 1}};
    const tg_redis_keyspec step[] = {
        {.bs = TG_REDIS_BS_INDEX, .fk = TG_REDIS_FK_RANGE, .index = 1, .lastkey = -2, .keystep = 3},
        {.bs = TG_REDIS_BS_INDEX,
         .fk = TG_REDIS_FK_RANGE,
         .index = 2,
         .lastkey = 1,
         .keystep = 1}}; /* overlaps the first: prefixed once */
    const tg_redis_keyspec inc[] = {{.bs = TG_REDIS_BS_INDEX,
                                     .fk = TG_REDIS_FK_RANGE,
                                     .index = 1,
                                     .keystep = 1,
                                     .flags = TG_REDIS_KS_INCOMPLETE}};
    const tg_redis_keyspec sub[] = {
        {.bs = TG_REDIS_BS_INDEX, .fk = TG_REDIS_FK_RANGE, .index = 2, .keystep = 1}};
    add(custom, "back", -2, back, 1);
    add(custom, "fwd", -2, fwd, 1);
    add(custom, "num", -3, num, 2);
    add(custom, "step", -2, step, 2);
    add(custom, "inc", -2, inc, 1);
    add(custom, "box", -2, NULL, 0);
    add(custom, "box|open", -3, sub, 1);
    if (tg_redis_table_seal(custom) != 0)
        abort();
}

static void check(const tg_redis_table *t, const tg_slice *argv, uint32_t argc,
                  const tg_redis_judge_opts *o)
{
    static uint8_t roles[MAX_ARGS], roles2[MAX_ARGS];
    tg_redis_verdict v, w;
    tg_redis_verdict_init(&v, roles, MAX_ARGS);
    tg_redis_verdict_kind k = tg_redis_judge(t, argv, argc, o, &v);
    if (k != v.kind || (unsigned)k > TG_REDIS_DENY)
        abort();
    if (!memchr(v.reason, '\0', sizeof(v.reason)))
        abort();
    if ((k == TG_REDIS_DENY) != (v.reason[0] != '\0'))
        abort();
    if ((unsigned)v.reply > TG_REDIS_REPLY_PUBSUB || (unsigned)v.append > TG_REDIS_APPEND_PATTERN)
        abort();
    if ((k == TG_REDIS_LOCAL) != (v.local != TG_REDIS_LOCAL_NONE))
        abort();
    if (v.cmd && v.cmd != tg_redis_lookup(t, argv, argc))
        abort();
    if (k == TG_REDIS_FORWARD || k == TG_REDIS_REWRITE_PATTERN) {
        uint32_t keys = 0, chans = 0, pats = 0;
        for (uint32_t i = 0; i < argc; i++) {
            if (roles[i] > TG_REDIS_ARG_KEY_PATTERN)
                abort();
            keys += roles[i] == TG_REDIS_ARG_KEY || roles[i] == TG_REDIS_ARG_KEY_PATTERN;
            chans += roles[i] == TG_REDIS_ARG_CHANNEL;
            pats += roles[i] == TG_REDIS_ARG_PATTERN;
        }
        if (!v.cmd || roles[0] != TG_REDIS_ARG_PLAIN)
            abort();
        if (keys != v.nkeys || chans != v.nchannels || pats != v.npatterns)
            abort();
        if ((k == TG_REDIS_REWRITE_PATTERN) != (pats > 0 || v.append != TG_REDIS_APPEND_NONE))
            abort();
        if (o->allow_scripts && !tg_redis_acl_grants(v.cmd))
            abort();
    } else if (v.nkeys || v.nchannels || v.npatterns || v.append != TG_REDIS_APPEND_NONE) {
        abort();
    }
    tg_redis_verdict_init(&w, roles2, MAX_ARGS);
    if (tg_redis_judge(t, argv, argc, o, &w) != k || strcmp(v.reason, w.reason) != 0 ||
        (argc && (k == TG_REDIS_FORWARD || k == TG_REDIS_REWRITE_PATTERN) &&
         memcmp(roles, roles2, argc) != 0))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!builtin)
        setup();
    if (size == 0)
        return 0;
    tg_redis_judge_opts o = {(data[0] & 1) != 0,
                             tg_slice_str((data[0] & 2) ? "t:{a*?[c]\\}:" : "t:{acme}:")};
    data++;
    size--;
    tg_slice argv[MAX_ARGS + 1];
    uint8_t *copies[MAX_ARGS + 1];
    uint32_t argc = 0;
    size_t start = 0;
    for (size_t i = 0; i <= size && argc <= MAX_ARGS; i++) {
        if (i == size || data[i] == 0) {
            size_t n = i - start;
            copies[argc] = malloc(n ? n : 1);
            if (!copies[argc])
                abort();
            memcpy(copies[argc], data + start, n);
            argv[argc] = (tg_slice){copies[argc], n};
            argc++;
            start = i + 1;
        }
    }
    if (argc > MAX_ARGS) { /* more than the roles buffer: must be refused */
        uint8_t roles[MAX_ARGS];
        tg_redis_verdict v;
        tg_redis_verdict_init(&v, roles, MAX_ARGS);
        if (tg_redis_judge(builtin, argv, argc, &o, &v) != TG_REDIS_DENY)
            abort();
    } else {
        check(builtin, argv, argc, &o);
        check(custom, argv, argc, &o);
    }
    for (uint32_t i = 0; i < argc; i++)
        free(copies[i]);
    return 0;
}
