/*
 * Unit tests for policy/redis_cmdinfo.c: a command table from a COMMAND reply.
 *
 *   unit/policy/data/redis-7.0.15-command.resp{2,3}   real replies, captured by
 *       policy/gen/capture_command_reply.py from the Debian redis-server 7.0
 *       ──> tg_redis_cmdinfo_parse ──> the same table as the built-in one
 *           (every command, rule and key spec), in RESP2 and RESP3
 *   the real reply truncated, with bytes flipped, with trailing bytes ──> clean errors
 *   small replies written here (a RESP writer below) ──> one property each:
 *       a key spec that differs from the built-in one is the one used; Redis 6
 *       entries and error replies are "no key specs"; unknown flags, categories,
 *       key-spec fields and types refuse only their command; commands tenantgate
 *       has no rule for stay refused; malformed structure fails the whole parse.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/redis_cmdinfo.h"
#include "policy/redis_policy.h"
#include "proxy/error.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_ARGS 32

static tg_redis_table *builtin;
static uint8_t *real2, *real3;
static size_t real2_len, real3_len;

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    uint8_t *buf = malloc(1 << 20);
    size_t n = buf ? fread(buf, 1, 1 << 20, f) : 0;
    fclose(f);
    *len = n;
    return buf;
}

static int setup(void **state)
{
    (void)state;
    builtin = tg_redis_table_builtin();
    real2 = slurp("unit/policy/data/redis-7.0.15-command.resp2", &real2_len);
    real3 = slurp("unit/policy/data/redis-7.0.15-command.resp3", &real3_len);
    return builtin && real2 && real3 && real2_len > 50000 && real3_len > 50000 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tg_redis_table_free(builtin);
    free(real2);
    free(real3);
    return 0;
}

/* ---- a small RESP writer for crafted replies --------------------------------------------- */

typedef struct wbuf {
    char data[16384];
    size_t len;
} wbuf;

__attribute__((format(printf, 2, 3))) static void put(wbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->data + b->len, sizeof(b->data) - b->len, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof(b->data) - b->len);
    b->len += (size_t)n;
}

static void bulk(wbuf *b, const char *s)
{
    put(b, "$%zu\r\n%s\r\n", strlen(s), s);
}

/* A list of simple strings from "a,b,c" ("" = empty). */
static void names(wbuf *b, const char *csv)
{
    char tmp[256];
    snprintf(tmp, sizeof(tmp), "%s", csv);
    size_t n = 0;
    for (char *p = tmp; *p; p++)
        n += *p == ',';
    put(b, "*%zu\r\n", csv[0] ? n + 1 : 0);
    char *save = NULL;
    for (char *tok = strtok_r(tmp, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        put(b, "+%s\r\n", tok);
}

/* The head of a Redis 7 command entry, up to the key specs (which follow: nspecs of them). */
static void cmd_head(wbuf *b, const char *name, int arity, const char *flags, const char *acl,
                     size_t nspecs)
{
    put(b, "*10\r\n");
    bulk(b, name);
    put(b, ":%d\r\n", arity);
    names(b, flags);
    put(b, ":1\r\n:1\r\n:1\r\n");
    names(b, acl);
    put(b, "*0\r\n"); /* tips */
    put(b, "*%zu\r\n", nspecs);
}

/* A key spec {flags, begin_search index, find_keys range} as Redis 7 writes it. */
static void spec_index(wbuf *b, const char *flags, int index, int lastkey, int keystep, int limit)
{
    put(b, "*6\r\n");
    bulk(b, "flags");
    names(b, flags);
    bulk(b, "begin_search");
    put(b, "*4\r\n");
    bulk(b, "type");
    bulk(b, "index");
    bulk(b, "spec");
    put(b, "*2\r\n");
    bulk(b, "index");
    put(b, ":%d\r\n", index);
    bulk(b, "find_keys");
    put(b, "*4\r\n");
    bulk(b, "type");
    bulk(b, "range");
    bulk(b, "spec");
    put(b, "*6\r\n");
    bulk(b, "lastkey");
    put(b, ":%d\r\n", lastkey);
    bulk(b, "keystep");
    put(b, ":%d\r\n", keystep);
    bulk(b, "limit");
    put(b, ":%d\r\n", limit);
}

/* A whole command with no key specs and no subcommands. */
static void cmd_keyless(wbuf *b, const char *name, int arity, const char *flags, const char *acl)
{
    cmd_head(b, name, arity, flags, acl, 0);
    put(b, "*0\r\n");
}

/* A whole command with one index/range key spec at index 1 and no subcommands. */
static void cmd_key1(wbuf *b, const char *name, int arity, const char *flags, const char *acl)
{
    cmd_head(b, name, arity, flags, acl, 1);
    spec_index(b, "RO,access", 1, 0, 1, 0);
    put(b, "*0\r\n");
}

static int parse(const wbuf *b, tg_redis_table **t, tg_redis_cmdinfo_stats *st, char *why,
                 size_t whylen)
{
    return tg_redis_cmdinfo_parse((const uint8_t *)b->data, b->len, builtin, t, st, why, whylen);
}

/* ---- judging ----------------------------------------------------------------------------- */

typedef struct judged {
    tg_redis_verdict v;
    uint8_t roles[MAX_ARGS];
    char letters[MAX_ARGS + 1];
    char buf[512];
    tg_slice argv[MAX_ARGS];
    uint32_t argc;
} judged;

static tg_redis_verdict_kind judge(const tg_redis_table *t, judged *j, const char *line)
{
    snprintf(j->buf, sizeof(j->buf), "%s", line);
    j->argc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(j->buf, " ", &save); tok && j->argc < MAX_ARGS;
         tok = strtok_r(NULL, " ", &save))
        j->argv[j->argc++] = tg_slice_str(tok);
    tg_redis_judge_opts o = {false, tg_slice_str("t:{acme}:")};
    tg_redis_verdict_init(&j->v, j->roles, MAX_ARGS);
    tg_redis_verdict_kind k = tg_redis_judge(t, j->argv, j->argc, &o, &j->v);
    uint32_t i = 0;
    for (; i < j->argc; i++)
        j->letters[i] = tg_redis_role_letter((tg_redis_arg_role)j->roles[i]);
    j->letters[i] = '\0';
    return k;
}

/* ---- the real replies -------------------------------------------------------------------- */

static bool same_spec(const tg_redis_keyspec *a, const tg_redis_keyspec *b)
{
    return a->bs == b->bs && a->fk == b->fk && a->flags == b->flags && a->index == b->index &&
           a->startfrom == b->startfrom && a->lastkey == b->lastkey && a->limit == b->limit &&
           a->keynumidx == b->keynumidx && a->firstkey == b->firstkey && a->keystep == b->keystep &&
           ((a->keyword == NULL && b->keyword == NULL) ||
            (a->keyword && b->keyword && strcmp(a->keyword, b->keyword) == 0));
}

/* t holds exactly the built-in table's commands, with the same data and rules. */
static void assert_same_as_builtin(const tg_redis_table *t)
{
    uint32_t n = tg_redis_table_count(t);
    assert_int_equal(n, tg_redis_table_count(builtin));
    for (uint32_t i = 0; i < n; i++) {
        const tg_redis_command *c = tg_redis_table_at(t, i);
        const tg_redis_command *b = NULL;
        for (uint32_t k = 0; k < n && !b; k++) /* the server's order is not the file's */
            if (strcmp(tg_redis_table_at(builtin, k)->name, c->name) == 0)
                b = tg_redis_table_at(builtin, k);
        if (!b)
            fail_msg("%s is not in the built-in table", c->name);
        if (c->arity != b->arity || c->flags != b->flags || c->acl != b->acl ||
            c->nspecs != b->nspecs || c->container != b->container || c->rule != b->rule)
            fail_msg("%s differs from the built-in row", c->name);
        for (uint32_t k = 0; k < c->nspecs; k++)
            if (!same_spec(&c->specs[k], &b->specs[k]))
                fail_msg("%s: key spec %u differs", c->name, k);
        assert_false(tg_redis_command_unvetted(c));
    }
}

static void test_real_reply(void **state)
{
    (void)state;
    const uint8_t *replies[] = {real2, real3};
    size_t lens[] = {real2_len, real3_len};
    for (size_t r = 0; r < 2; r++) {
        tg_redis_table *t = NULL;
        tg_redis_cmdinfo_stats st;
        char why[128];
        assert_int_equal(
            tg_redis_cmdinfo_parse(replies[r], lens[r], builtin, &t, &st, why, sizeof(why)), 0);
        assert_non_null(t);
        assert_string_equal(why, "");
        assert_int_equal(st.commands, tg_redis_table_count(builtin));
        assert_int_equal(st.keyspecs, 219); /* as redis_commands.def says */
        assert_int_equal(st.unvetted, 0);
        assert_int_equal(st.differing, 0);
        assert_same_as_builtin(t);
        judged j;
        assert_int_equal(judge(t, &j, "MSET a 1 b 2"), TG_REDIS_FORWARD);
        assert_string_equal(j.letters, ".k.k.");
        assert_int_equal(judge(t, &j, "XREADGROUP GROUP g c STREAMS s1 s2 > >"), TG_REDIS_FORWARD);
        assert_string_equal(j.letters, ".....kk..");
        assert_int_equal(judge(t, &j, "OBJECT ENCODING k"), TG_REDIS_FORWARD);
        assert_string_equal(j.letters, "..k");
        assert_int_equal(judge(t, &j, "FLUSHALL"), TG_REDIS_DENY);
        assert_int_equal(judge(t, &j, "CLIENT KILL ID 1"), TG_REDIS_DENY);
        tg_redis_table_free(t);
        /* without a vetted table: the same rows (the rules differ only for unknown commands) */
        assert_int_equal(tg_redis_cmdinfo_parse(replies[r], lens[r], NULL, &t, NULL, NULL, 0), 0);
        assert_same_as_builtin(t);
        tg_redis_table_free(t);
    }
}

/* Every cut of a real reply fails cleanly; sampled (each call walks the prefix). */
static void test_real_reply_truncated(void **state)
{
    (void)state;
    for (size_t cut = 0; cut < real2_len; cut += cut < 4096 ? 1 : 211) {
        tg_redis_table *t = (tg_redis_table *)(uintptr_t)1;
        char why[128];
        int r = tg_redis_cmdinfo_parse(real2, cut, builtin, &t, NULL, why, sizeof(why));
        if (r != TG_EPROTO)
            fail_msg("cut at %zu: %d", cut, r);
        assert_null(t);
        assert_true(why[0] != '\0');
    }
    /* trailing bytes: a second reply behind the first */
    uint8_t *two = malloc(real2_len + 5);
    assert_non_null(two);
    memcpy(two, real2, real2_len);
    memcpy(two + real2_len, "+OK\r\n", 5);
    tg_redis_table *t;
    assert_int_equal(tg_redis_cmdinfo_parse(two, real2_len + 5, builtin, &t, NULL, NULL, 0),
                     TG_EPROTO);
    assert_null(t);
    free(two);
}

/*
 * Single bytes of the real reply replaced: the parse fails cleanly or gives a
 * sealed table; a table never allows a command the built-in table refuses.
 */
static void test_real_reply_mutated(void **state)
{
    (void)state;
    uint8_t *m = malloc(real3_len);
    assert_non_null(m);
    static const uint8_t subst[] = {'x', '0', '9', '-', '*', '%', '\r', '\n', '$', 0};
    size_t ok = 0, failed = 0;
    for (size_t pos = 0; pos < real3_len; pos += 401) {
        for (size_t s = 0; s < COUNT(subst); s++) {
            memcpy(m, real3, real3_len);
            if (m[pos] == subst[s])
                continue;
            m[pos] = subst[s];
            tg_redis_table *t = NULL;
            int r = tg_redis_cmdinfo_parse(m, real3_len, builtin, &t, NULL, NULL, 0);
            if (r < 0) {
                assert_null(t);
                failed++;
                continue;
            }
            ok++;
            for (uint32_t i = 0; i < tg_redis_table_count(t); i++) {
                const tg_redis_command *c = tg_redis_table_at(t, i);
                const char *bar = strchr(c->name, '|');
                tg_slice argv[2] = {
                    {(const uint8_t *)c->name, bar ? (size_t)(bar - c->name) : c->name_len},
                    tg_slice_str(bar ? bar + 1 : "")};
                const tg_redis_command *b = tg_redis_lookup(builtin, argv, bar ? 2 : 1);
                bool builtin_denies = !b || strcmp(b->name, c->name) != 0 ||
                                      strcmp(tg_redis_rule_name(b), "deny") == 0;
                if (builtin_denies && strcmp(tg_redis_rule_name(c), "deny") != 0)
                    fail_msg("byte %zu -> %u: %s allowed (%s)", pos, subst[s], c->name,
                             tg_redis_rule_name(c));
            }
            tg_redis_table_free(t);
        }
    }
    assert_true(failed > 0 && ok > 0);
    free(m);
}

/* ---- crafted replies --------------------------------------------------------------------- */

/* A key spec from the server that differs from the built-in one is the one used. */
static void test_backend_keyspec_wins(void **state)
{
    (void)state;
    wbuf b = {.len = 0};
    put(&b, "*3\r\n");
    /* APPEND key value, but the server says both arguments are keys */
    cmd_head(&b, "append", 3, "write,denyoom", "@write,@string,@fast", 1);
    spec_index(&b, "RW,insert", 1, 1, 1, 0);
    put(&b, "*0\r\n");
    cmd_key1(&b, "get", 2, "readonly,fast", "@read,@string,@fast");
    cmd_keyless(&b, "ping", -1, "fast", "@fast,@connection");
    tg_redis_table *t;
    tg_redis_cmdinfo_stats st;
    assert_int_equal(parse(&b, &t, &st, NULL, 0), 0);
    assert_int_equal(st.commands, 3);
    assert_int_equal(st.differing, 1);
    assert_int_equal(st.unvetted, 0);
    judged j;
    assert_int_equal(judge(t, &j, "APPEND k v"), TG_REDIS_FORWARD);
    assert_string_equal(j.letters, ".kk");
    assert_int_equal(judge(builtin, &j, "APPEND k v"), TG_REDIS_FORWARD);
    assert_string_equal(j.letters, ".k.");
    assert_int_equal(judge(t, &j, "GET k"), TG_REDIS_FORWARD);
    assert_string_equal(j.letters, ".k");
    assert_int_equal(judge(t, &j, "PING"), TG_REDIS_FORWARD);
    /* what the server does not have is unknown, even when the built-in table has it */
    assert_int_equal(judge(t, &j, "DEL k"), TG_REDIS_DENY);
    assert_string_equal(j.v.reason, "unknown command");
    tg_redis_table_free(t);
}

/* Unknown names refuse their command only. */
static void test_unknown_names(void **state)
{
    (void)state;
    wbuf b = {.len = 0};
    put(&b, "*8\r\n");
    cmd_key1(&b, "get", 2, "readonly,fast,teleport", "@read"); /* unknown command flag */
    cmd_key1(&b, "strlen", 2, "readonly", "@read,@quantum");   /* unknown ACL category */
    cmd_head(&b, "getdel", 2, "write", "@write", 1);           /* unknown key-spec flag */
    spec_index(&b, "RW,access,vanish", 1, 0, 1, 0);
    put(&b, "*0\r\n");
    cmd_head(&b, "getex", -2, "write", "@write", 1); /* unknown begin_search type */
    put(&b, "*4\r\n");
    bulk(&b, "begin_search");
    put(&b, "*4\r\n");
    bulk(&b, "type");
    bulk(&b, "regex");
    bulk(&b, "spec");
    put(&b, "*0\r\n");
    bulk(&b, "find_keys");
    put(&b, "*4\r\n");
    bulk(&b, "type");
    bulk(&b, "range");
    bulk(&b, "spec");
    put(&b, "*6\r\n");
    bulk(&b, "lastkey");
    put(&b, ":0\r\n");
    bulk(&b, "keystep");
    put(&b, ":1\r\n");
    bulk(&b, "limit");
    put(&b, ":0\r\n");
    put(&b, "*0\r\n");
    cmd_head(&b, "getrange", 4, "readonly", "@read", 1); /* unknown key-spec field */
    put(&b, "*8\r\n");
    bulk(&b, "flags");
    names(&b, "RO");
    bulk(&b, "begin_search");
    put(&b, "*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:1\r\n");
    bulk(&b, "find_keys");
    put(&b, "*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n"
            "$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n");
    bulk(&b, "shard_by");
    bulk(&b, "hash");
    put(&b, "*0\r\n");
    cmd_head(&b, "setrange", 4, "write", "@write", 1); /* a number beyond int32 */
    spec_index(&b, "RW", 1, 0, 1, 0);
    b.len -= strlen(":0\r\n"); /* the limit */
    put(&b, ":4294967296\r\n");
    put(&b, "*0\r\n");
    cmd_key1(&b, "hexpire", -6, "write,fast", "@write,@hash,@fast"); /* no rule, not built in */
    cmd_key1(&b, "echo", 2, "fast", "@fast");                        /* still fine */
    tg_redis_table *t;
    tg_redis_cmdinfo_stats st;
    char why[128];
    assert_int_equal(parse(&b, &t, &st, why, sizeof(why)), 0);
    assert_int_equal(st.commands, 8);
    assert_int_equal(st.unvetted, 7);
    static const char *const refused[] = {"GET k",
                                          "STRLEN k",
                                          "GETDEL k",
                                          "GETEX k",
                                          "GETRANGE k 0 1",
                                          "SETRANGE k 0 v",
                                          "HEXPIRE h 10 FIELDS 1 f"};
    judged j;
    for (size_t i = 0; i < COUNT(refused); i++) {
        if (judge(t, &j, refused[i]) != TG_REDIS_DENY)
            fail_msg("%s: not refused (%s)", refused[i], j.letters);
        const tg_redis_command *c = tg_redis_lookup(t, j.argv, j.argc);
        assert_non_null(c);
        assert_true(tg_redis_command_unvetted(c));
        assert_non_null(strstr(j.v.reason, "tenantgate has no rule for it"));
    }
    assert_int_equal(judge(t, &j, "ECHO hi"), TG_REDIS_FORWARD);
    tg_redis_table_free(t);
    /* without a vetted table the unknown command falls to the default rule; the rest stays */
    assert_int_equal(tg_redis_cmdinfo_parse((const uint8_t *)b.data, b.len, NULL, &t, &st, NULL, 0),
                     0);
    assert_int_equal(st.unvetted, 6);
    assert_int_equal(judge(t, &j, "HEXPIRE h 10 FIELDS 1 f"), TG_REDIS_FORWARD);
    assert_int_equal(judge(t, &j, "GET k"), TG_REDIS_DENY);
    tg_redis_table_free(t);
}

/* The built-in table's refusals hold whatever flags the server gives; named rules still apply. */
static void test_vetted_rules(void **state)
{
    (void)state;
    wbuf b = {.len = 0};
    put(&b, "*6\r\n");
    cmd_key1(&b, "flushall", -1, "write", "@write"); /* refused by name */
    cmd_key1(&b, "dump", 2, "readonly", "@read");    /* built-in: default (keys) */
    cmd_key1(&b, "object", -2, "", "@slow");         /* built-in: a container; here not */
    /* CLIENT with SETINFO (Redis 7.2; a named rule) and NO-TOUCH (no rule; not in 7.0) */
    cmd_head(&b, "client", -2, "", "@slow", 0);
    put(&b, "*2\r\n");
    cmd_keyless(&b, "client|setinfo", -4, "noscript,loading,stale", "@slow,@connection");
    cmd_keyless(&b, "client|no-touch", 3, "noscript,loading,stale", "@slow,@connection");
    /* MIGRATE with keys and no admin flag: refused by name in the built-in table */
    cmd_key1(&b, "migrate", -6, "write", "@write");
    /* KEYS: the built-in table has no key spec; the handler is used whatever the server says */
    cmd_key1(&b, "keys", 2, "readonly", "@keyspace,@read,@slow");
    tg_redis_table *t;
    tg_redis_cmdinfo_stats st;
    assert_int_equal(parse(&b, &t, &st, NULL, 0), 0);
    assert_int_equal(st.commands, 8);
    judged j;
    assert_int_equal(judge(t, &j, "FLUSHALL"), TG_REDIS_DENY);
    assert_int_equal(judge(t, &j, "DUMP k"), TG_REDIS_FORWARD);
    assert_int_equal(judge(t, &j, "OBJECT ENCODING"), TG_REDIS_DENY);
    assert_non_null(strstr(j.v.reason, "tenantgate has no rule for it"));
    assert_int_equal(judge(t, &j, "CLIENT SETINFO LIB-NAME x"), TG_REDIS_FORWARD);
    assert_int_equal(judge(t, &j, "CLIENT NO-TOUCH on"), TG_REDIS_DENY);
    assert_int_equal(judge(t, &j, "MIGRATE h 6379 k 0 1000"), TG_REDIS_DENY);
    assert_int_equal(judge(t, &j, "KEYS a*"), TG_REDIS_REWRITE_PATTERN);
    assert_string_equal(j.letters, ".p");
    tg_redis_table_free(t);
}

/* Replies that carry no key specs: the caller keeps the built-in table. */
static void test_no_keyspecs(void **state)
{
    (void)state;
    static const char *const replies[] = {
        "-ERR unknown command 'COMMAND', with args beginning with: \r\n",
        "-NOPERM this user has no permissions to run the 'command' command\r\n",
        "!21\r\nSYNTAX invalid syntax\r\n",
        "*0\r\n",
        "~0\r\n",
        /* Redis 6: name, arity, flags, first, last, step, ACL categories */
        "*1\r\n*7\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n"
        "*3\r\n+@read\r\n+@string\r\n+@fast\r\n",
        /* Redis 5: no ACL categories */
        "*1\r\n*6\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n",
    };
    for (size_t i = 0; i < COUNT(replies); i++) {
        tg_redis_table *t = (tg_redis_table *)(uintptr_t)1;
        char why[128];
        int r = tg_redis_cmdinfo_parse((const uint8_t *)replies[i], strlen(replies[i]), builtin, &t,
                                       NULL, why, sizeof(why));
        if (r != TG_ENOTFOUND)
            fail_msg("reply %zu: %d (%s)", i, r, why);
        assert_null(t);
        assert_true(why[0] != '\0');
    }
}

/* Malformed structure fails the whole parse. */
static void test_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *reply;
        int err;
    } cases[] = {
        {"+OK\r\n", TG_EPROTO},
        {":1\r\n", TG_EPROTO},
        {"$-1\r\n", TG_EPROTO},
        {"*-1\r\n", TG_EPROTO},
        {"_\r\n", TG_EPROTO},
        {"*1\r\n:1\r\n", TG_EPROTO},
        {"*?\r\n.\r\n", TG_EPROTO}, /* streamed */
        {"|1\r\n+a\r\n+b\r\n*0\r\n", TG_EPROTO},
        {"*1\r\n*10\r\n", TG_EPROTO},             /* incomplete */
        {"*2\r\n*0\r\n", TG_EPROTO},              /* incomplete */
        {"*1\r\n*10\r\n\r\n", TG_EPROTO},         /* no type byte */
        {"*1\r\n*1x\r\n", TG_EPROTO},             /* bad number */
        {"*99999999999999999999\r\n", TG_EPROTO}, /* overflow */
        {"*300000\r\n", TG_EPROTO},               /* announced, not there: incomplete */
        {"*3000000\r\n", TG_ETOOBIG},             /* more elements than the limit */
        {"$70000\r\n", TG_ETOOBIG},               /* a string over the bulk limit */
        {"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n"
         "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*0\r\n",
         TG_ETOOBIG}, /* nesting */
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        tg_redis_table *t = (tg_redis_table *)(uintptr_t)1;
        char why[128];
        int r = tg_redis_cmdinfo_parse((const uint8_t *)cases[i].reply, strlen(cases[i].reply),
                                       builtin, &t, NULL, why, sizeof(why));
        if (r != cases[i].err)
            fail_msg("case %zu: %d (%s), want %d", i, r, why, cases[i].err);
        assert_null(t);
    }

    /* well-formed RESP, wrong shapes */
    tg_redis_table *t;
    wbuf b = {.len = 0};
    put(&b, "*1\r\n*10\r\n:1\r\n:2\r\n*0\r\n:1\r\n:1\r\n:1\r\n*0\r\n*0\r\n*0\r\n*0\r\n");
    assert_int_equal(parse(&b, &t, NULL, NULL, 0), TG_EPROTO); /* name not a string */
    b.len = 0;
    put(&b,
        "*1\r\n*10\r\n$3\r\nget\r\n$1\r\n2\r\n*0\r\n:1\r\n:1\r\n:1\r\n*0\r\n*0\r\n*0\r\n*0\r\n");
    assert_int_equal(parse(&b, &t, NULL, NULL, 0), TG_EPROTO); /* arity not an integer */
    b.len = 0;
    put(&b, "*1\r\n*10\r\n$3\r\nget\r\n:2\r\n+x\r\n:1\r\n:1\r\n:1\r\n*0\r\n*0\r\n*0\r\n*0\r\n");
    assert_int_equal(parse(&b, &t, NULL, NULL, 0), TG_EPROTO); /* flags not a list */
    b.len = 0;
    put(&b, "*1\r\n");
    cmd_head(&b, "get", 2, "", "", 1);
    put(&b, "*3\r\n$5\r\nflags\r\n*0\r\n$5\r\nnotes\r\n");
    put(&b, "*0\r\n");
    assert_int_equal(parse(&b, &t, NULL, NULL, 0), TG_EPROTO); /* odd map */
    b.len = 0;
    put(&b, "*2\r\n");
    cmd_key1(&b, "get", 2, "", "");
    cmd_key1(&b, "GET", 2, "", "");
    assert_int_equal(parse(&b, &t, NULL, NULL, 0), TG_EPROTO); /* duplicate */
    b.len = 0;
    put(&b, "*1\r\n");
    cmd_key1(&b, "a b", 2, "", "");
    assert_int_equal(parse(&b, &t, NULL, NULL, 0), TG_EPROTO); /* bad name */
    b.len = 0;
    put(&b, "*1\r\n");
    cmd_head(&b, "object", -2, "", "", 0);
    put(&b, "*1\r\n");
    cmd_keyless(&b, "config|get", -3, "", ""); /* a subcommand of another command */
    assert_int_equal(parse(&b, &t, NULL, NULL, 0), TG_EPROTO);
    b.len = 0;
    put(&b, "*1\r\n");
    cmd_head(&b, "object", -2, "", "", 0);
    put(&b, "*1\r\n");
    cmd_keyless(&b, "objectx", -3, "", ""); /* not "container|sub" */
    assert_int_equal(parse(&b, &t, NULL, NULL, 0), TG_EPROTO);
    b.len = 0;
    put(&b, "*1\r\n");
    cmd_head(&b, "object", -2, "", "", 0);
    put(&b, "*1\r\n");
    cmd_head(&b, "object|help", 2, "", "", 0);
    put(&b, "*1\r\n");
    cmd_keyless(&b, "object|help|more", 2, "", ""); /* a subcommand of a subcommand */
    assert_int_equal(parse(&b, &t, NULL, NULL, 0), TG_EPROTO);
    /* too many key specs on one command */
    b.len = 0;
    put(&b, "*1\r\n");
    cmd_head(&b, "get", 2, "", "", TG_REDIS_CMDINFO_MAX_SPECS + 1);
    for (int i = 0; i <= TG_REDIS_CMDINFO_MAX_SPECS; i++)
        spec_index(&b, "RO", 1, 0, 1, 0);
    put(&b, "*0\r\n");
    assert_int_equal(parse(&b, &t, NULL, NULL, 0), TG_ETOOBIG);
    /* a subcommand with fewer elements than Redis 7 writes */
    b.len = 0;
    put(&b, "*1\r\n");
    cmd_head(&b, "object", -2, "", "", 0);
    put(&b, "*1\r\n*2\r\n$11\r\nobject|help\r\n:2\r\n");
    assert_true(parse(&b, &t, NULL, NULL, 0) < 0);
}

/* Upper-case names, RESP3 maps and sets, extra elements of a newer Redis, subcommands. */
static void test_shapes(void **state)
{
    (void)state;
    wbuf b = {.len = 0};
    put(&b, "*2\r\n");
    /* GET as RESP3 with two extra trailing elements and a note */
    put(&b, "%s",
        "*12\r\n$3\r\nGET\r\n:2\r\n~2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n"
        "~1\r\n+@read\r\n*1\r\n+nondeterministic_output\r\n*1\r\n%4\r\n"
        "$5\r\nnotes\r\n$4\r\nnote\r\n"
        "$5\r\nflags\r\n~2\r\n+RO\r\n+access\r\n"
        "$12\r\nbegin_search\r\n%2\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n%1\r\n"
        "$5\r\nindex\r\n:1\r\n"
        "$9\r\nfind_keys\r\n%2\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n%3\r\n"
        "$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n"
        "~0\r\n:42\r\n%1\r\n+future\r\n*1\r\n:1\r\n");
    /* XINFO STREAM: a subcommand, named in lower case under an upper-case container */
    cmd_head(&b, "XINFO", -2, "", "@stream", 0);
    put(&b, "*1\r\n");
    cmd_head(&b, "xinfo|stream", -3, "readonly", "@read,@stream,@slow", 1);
    spec_index(&b, "RO,access", 2, 0, 1, 0);
    put(&b, "*0\r\n");
    tg_redis_table *t;
    tg_redis_cmdinfo_stats st;
    char why[128];
    if (parse(&b, &t, &st, why, sizeof(why)) != 0)
        fail_msg("%s", why);
    assert_int_equal(st.commands, 3);
    assert_int_equal(st.unvetted, 0);
    judged j;
    assert_int_equal(judge(t, &j, "get k"), TG_REDIS_FORWARD);
    assert_string_equal(j.letters, ".k");
    assert_int_equal(judge(t, &j, "XINFO STREAM s FULL"), TG_REDIS_FORWARD);
    assert_string_equal(j.letters, "..k.");
    assert_int_equal(judge(t, &j, "XINFO GROUPS s"), TG_REDIS_DENY);
    assert_string_equal(j.v.reason, "unknown subcommand for 'XINFO'");
    tg_redis_table_free(t);
}

/* A keyword/keynum spec with every field, and one missing a field (refused). */
static void test_keyword_keynum(void **state)
{
    (void)state;
    wbuf b = {.len = 0};
    put(&b, "*2\r\n");
    /* ZUNION numkeys key... as Redis 7: index 1, keynum (0, 1, 1) */
    cmd_head(&b, "zunion", -3, "readonly,movablekeys", "@read,@sortedset,@slow", 1);
    put(&b, "*6\r\n$5\r\nflags\r\n*2\r\n+RO\r\n+access\r\n"
            "$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n"
            "$5\r\nindex\r\n:1\r\n"
            "$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$6\r\nkeynum\r\n$4\r\nspec\r\n*6\r\n"
            "$9\r\nkeynumidx\r\n:0\r\n$8\r\nfirstkey\r\n:1\r\n$7\r\nkeystep\r\n:1\r\n");
    put(&b, "*0\r\n");
    /* GEORADIUS's STORE spec without its startfrom: refused */
    cmd_head(&b, "lpos", -3, "readonly", "@read,@list,@slow", 1);
    put(&b, "*6\r\n$5\r\nflags\r\n*1\r\n+RO\r\n"
            "$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$7\r\nkeyword\r\n$4\r\nspec\r\n*2\r\n"
            "$7\r\nkeyword\r\n$5\r\nSTORE\r\n"
            "$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n"
            "$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n");
    put(&b, "*0\r\n");
    tg_redis_table *t;
    tg_redis_cmdinfo_stats st;
    assert_int_equal(parse(&b, &t, &st, NULL, 0), 0);
    assert_int_equal(st.unvetted, 1);
    judged j;
    assert_int_equal(judge(t, &j, "ZUNION 2 a b WITHSCORES"), TG_REDIS_FORWARD);
    assert_string_equal(j.letters, "..kk.");
    assert_int_equal(judge(t, &j, "LPOS l x"), TG_REDIS_DENY);
    tg_redis_table_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_reply),
        cmocka_unit_test(test_real_reply_truncated),
        cmocka_unit_test(test_real_reply_mutated),
        cmocka_unit_test(test_backend_keyspec_wins),
        cmocka_unit_test(test_unknown_names),
        cmocka_unit_test(test_vetted_rules),
        cmocka_unit_test(test_no_keyspecs),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_shapes),
        cmocka_unit_test(test_keyword_keynum),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
