/*
 * Unit tests for policy/redis_policy.c.
 *
 *   command line ("SET k v EX 10", split on spaces) ──> tg_redis_judge (built-in table)
 *        ──> kind, reply kind, append, and one role letter per argument
 *            (. plain, k key, c channel, p pattern, s SORT template) as expected
 *
 * Covers key extraction through every kind of key spec (index, keyword forward
 * and backward, range with lastkey/keystep/limit, keynum), the handlers (SCAN,
 * KEYS, SORT, GEORADIUS, COPY, SELECT, pub/sub), malformed arguments, every
 * refused command, unknown commands, case-insensitivity, scripts on and off,
 * the builder (custom tables, odd specs, sticky errors) and the helpers.
 * Every refused line carries SECRET where it has a value, and no reason may
 * contain it. The real-server cross-check is tests/integration/test_redis_keyspecs.py.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/redis_policy.h"
#include "proxy/error.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_ARGS 64

static tg_redis_table *builtin;

static int setup(void **state)
{
    (void)state;
    builtin = tg_redis_table_builtin();
    return builtin ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tg_redis_table_free(builtin);
    return 0;
}

/* A judged line: the verdict and the role letters. */
typedef struct judged {
    tg_redis_verdict v;
    uint8_t roles[MAX_ARGS];
    char letters[MAX_ARGS + 1];
    char buf[1024];
    tg_slice argv[MAX_ARGS];
    uint32_t argc;
} judged;

/* Splits line on spaces ("" is an empty command); "\\e" stands for an empty argument. */
static void split(judged *j, const char *line)
{
    snprintf(j->buf, sizeof(j->buf), "%s", line);
    j->argc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(j->buf, " ", &save); tok && j->argc < MAX_ARGS;
         tok = strtok_r(NULL, " ", &save)) {
        if (strcmp(tok, "\\e") == 0)
            tok[0] = '\0';
        j->argv[j->argc++] = tg_slice_str(tok);
    }
}

static tg_redis_verdict_kind judge_with(const tg_redis_table *t, judged *j, const char *line,
                                        bool scripts, const char *prefix)
{
    split(j, line);
    tg_redis_judge_opts o = {scripts, tg_slice_str(prefix ? prefix : "t:{acme}:")};
    tg_redis_verdict_init(&j->v, j->roles, MAX_ARGS);
    tg_redis_judge(t, j->argv, j->argc, &o, &j->v);
    uint32_t k = 0;
    for (; k < j->argc; k++)
        j->letters[k] = tg_redis_role_letter((tg_redis_arg_role)j->roles[k]);
    j->letters[k] = '\0';
    /* invariants of every verdict */
    assert_non_null(memchr(j->v.reason, '\0', sizeof(j->v.reason)));
    assert_int_equal(j->v.kind == TG_REDIS_DENY, j->v.reason[0] != '\0');
    uint32_t keys = 0, chans = 0, pats = 0;
    for (k = 0; k < j->argc; k++) {
        keys += j->roles[k] == TG_REDIS_ARG_KEY || j->roles[k] == TG_REDIS_ARG_KEY_PATTERN;
        chans += j->roles[k] == TG_REDIS_ARG_CHANNEL;
        pats += j->roles[k] == TG_REDIS_ARG_PATTERN;
    }
    if (j->v.kind == TG_REDIS_FORWARD || j->v.kind == TG_REDIS_REWRITE_PATTERN) {
        assert_int_equal(keys, j->v.nkeys);
        assert_int_equal(chans, j->v.nchannels);
        assert_int_equal(pats, j->v.npatterns);
        assert_int_equal(j->v.kind == TG_REDIS_REWRITE_PATTERN,
                         pats > 0 || j->v.append != TG_REDIS_APPEND_NONE);
        if (j->argc)
            assert_int_equal(j->roles[0], TG_REDIS_ARG_PLAIN);
    } else {
        assert_int_equal(j->v.nkeys + j->v.nchannels + j->v.npatterns, 0);
    }
    if (strstr(line, "SECRET"))
        assert_null(strstr(j->v.reason, "SECRET"));
    return j->v.kind;
}

static tg_redis_verdict_kind judge(judged *j, const char *line, bool scripts)
{
    return judge_with(builtin, j, line, scripts, NULL);
}

/* ---- key extraction -------------------------------------------------------------------- */

typedef struct fwd_case {
    const char *line;
    const char *roles; /* expected letters */
    tg_redis_reply_kind reply;
} fwd_case;

#define R(x) TG_REDIS_REPLY_##x

static const fwd_case forwards[] = {
    /* index + range */
    {"GET k", ".k", R(NONE)},
    {"SET k v", ".k.", R(NONE)},
    {"SET k v EX 10 NX GET", ".k.....", R(NONE)},
    {"SET k v KEEPTTL XX", ".k...", R(NONE)},
    {"GETEX k PERSIST", ".k.", R(NONE)},
    {"APPEND k v", ".k.", R(NONE)},
    {"MSET a 1 b 2 c 3", ".k.k.k.", R(NONE)},
    {"MSETNX a 1 b 2", ".k.k.", R(NONE)},
    {"MGET a b c d", ".kkkk", R(NONE)},
    {"DEL a b c d e f", ".kkkkkk", R(NONE)},
    {"UNLINK a", ".k", R(NONE)},
    {"EXISTS a b", ".kk", R(NONE)},
    {"TOUCH a b c", ".kkk", R(NONE)},
    {"RENAME a b", ".kk", R(NONE)},
    {"RENAMENX a b", ".kk", R(NONE)},
    {"COPY a b REPLACE", ".kk.", R(NONE)},
    {"LMOVE a b LEFT RIGHT", ".kk..", R(NONE)},
    {"BLMOVE a b LEFT RIGHT 0", ".kk...", R(NONE)},
    {"RPOPLPUSH a b", ".kk", R(NONE)},
    {"BRPOPLPUSH a b 5", ".kk.", R(NONE)},
    {"SMOVE a b m", ".kk.", R(NONE)},
    {"BITOP AND dest a b", "..kkk", R(NONE)},
    {"BITOP NOT dest a", "..kk", R(NONE)},
    {"BITFIELD k GET u8 0", ".k...", R(NONE)},
    {"LCS a b LEN", ".kk.", R(NONE)},
    {"PFMERGE dest a b", ".kkk", R(NONE)},
    {"PFCOUNT a b", ".kk", R(NONE)},
    {"SDIFFSTORE d a b", ".kkk", R(NONE)},
    {"SINTERSTORE d a", ".kk", R(NONE)},
    {"SUNION a b c", ".kkk", R(NONE)},
    {"GEOSEARCHSTORE d s FROMMEMBER m BYRADIUS 1 km", ".kk.....", R(NONE)},
    {"ZRANGESTORE d s 0 -1", ".kk..", R(NONE)},
    {"HSET h f v f2 v2", ".k....", R(NONE)},
    {"HSCAN h 0 MATCH f* COUNT 10", ".k.....", R(NONE)},
    {"SSCAN s 0", ".k.", R(NONE)},
    {"ZSCAN z 0 MATCH *", ".k...", R(NONE)},
    {"XADD s * f v", ".k...", R(NONE)},
    {"XADD s MAXLEN ~ 100 * f v", ".k......", R(NONE)},
    {"XRANGE s - +", ".k..", R(NONE)},
    {"XTRIM s MAXLEN 10", ".k..", R(NONE)},
    {"XACK s g 1-0 2-0", ".k...", R(NONE)},
    {"XCLAIM s g c 10 1-0", ".k....", R(NONE)},
    {"XAUTOCLAIM s g c 10 0", ".k....", R(NONE)},
    {"XPENDING s g", ".k.", R(NONE)},
    {"WATCH a b", ".kk", R(NONE)},
    {"DUMP k", ".k", R(NONE)},
    {"EXPIRE k 10 NX", ".k..", R(NONE)},
    {"TYPE k", ".k", R(NONE)},
    {"SUBSTR k 0 1", ".k..", R(NONE)},
    /* subcommands: key at index 2 */
    {"OBJECT ENCODING k", "..k", R(NONE)},
    {"OBJECT FREQ k", "..k", R(NONE)},
    {"OBJECT IDLETIME k", "..k", R(NONE)},
    {"OBJECT REFCOUNT k", "..k", R(NONE)},
    {"MEMORY USAGE k", "..k", R(NONE)},
    {"MEMORY USAGE k SAMPLES 5", "..k..", R(NONE)},
    {"XINFO STREAM k", "..k", R(NONE)},
    {"XINFO STREAM k FULL COUNT 5", "..k...", R(NONE)},
    {"XINFO GROUPS k", "..k", R(NONE)},
    {"XINFO CONSUMERS k g", "..k.", R(NONE)},
    {"XGROUP CREATE k g $", "..k..", R(NONE)},
    {"XGROUP CREATE k g $ MKSTREAM", "..k...", R(NONE)},
    {"XGROUP DESTROY k g", "..k.", R(NONE)},
    {"XGROUP CREATECONSUMER k g c", "..k..", R(NONE)},
    {"XGROUP SETID k g 0", "..k..", R(NONE)},
    /* range with lastkey -2: the timeout is not a key; the reply names the key */
    {"BLPOP k1 k2 0", ".kk.", R(FIRST_KEY)},
    {"BRPOP k1 5", ".k.", R(FIRST_KEY)},
    {"BZPOPMIN z1 z2 z3 1.5", ".kkk.", R(FIRST_KEY)},
    {"BZPOPMAX z1 0", ".k.", R(FIRST_KEY)},
    /* keynum */
    {"ZUNIONSTORE dest 2 a b WEIGHTS 1 2", ".k.kk...", R(NONE)},
    {"ZUNIONSTORE dest 2 a b AGGREGATE MAX", ".k.kk..", R(NONE)},
    {"ZINTERSTORE dest 1 a", ".k.k", R(NONE)},
    {"ZDIFFSTORE dest 2 a b", ".k.kk", R(NONE)},
    {"ZUNION 2 a b WITHSCORES", "..kk.", R(NONE)},
    {"ZINTER 3 a b c", "..kkk", R(NONE)},
    {"ZDIFF 1 a", "..k", R(NONE)},
    {"ZINTERCARD 2 a b LIMIT 5", "..kk..", R(NONE)},
    {"SINTERCARD 2 a b", "..kk", R(NONE)},
    {"SINTERCARD 2 a b LIMIT 0", "..kk..", R(NONE)},
    {"LMPOP 2 a b LEFT", "..kk.", R(FIRST_KEY)},
    {"LMPOP 1 a RIGHT COUNT 2", "..k...", R(FIRST_KEY)},
    {"BLMPOP 0 2 a b LEFT", "...kk.", R(FIRST_KEY)},
    {"ZMPOP 2 a b MIN", "..kk.", R(FIRST_KEY)},
    {"BZMPOP 1 1 a MAX COUNT 3", "...k...", R(FIRST_KEY)},
    /* keyword STREAMS + range with limit */
    {"XREAD COUNT 2 STREAMS s1 s2 0 0", "....kk..", R(XREAD)},
    {"XREAD STREAMS s1 0", "..k.", R(XREAD)},
    {"XREAD BLOCK 0 STREAMS s1 s2 s3 $ $ $", "....kkk...", R(XREAD)},
    {"XREAD STREAMS streams 0", "..k.", R(XREAD)},           /* a key named like the keyword */
    {"XREAD COUNT STREAMS STREAMS a 0", "....k.", R(XREAD)}, /* Redis rejects the count */
    {"XREADGROUP GROUP g c STREAMS s1 >", ".....k.", R(XREAD)},
    {"XREADGROUP GROUP g c COUNT 1 BLOCK 0 NOACK STREAMS s1 s2 > >", "..........kk..", R(XREAD)},
    /* a group or consumer named STREAMS: the real STREAMS token (the spec finds the wrong one) */
    {"XREADGROUP COUNT 1 GROUP STREAMS c STREAMS s >", ".......k.", R(XREAD)},
    {"XREADGROUP COUNT 1 GROUP g STREAMS STREAMS s >", ".......k.", R(XREAD)},
    {"XREADGROUP GROUP STREAMS STREAMS STREAMS s >", ".....k.", R(XREAD)},
    /* GEORADIUS: STORE / STOREDIST by the handler */
    {"GEORADIUS k 0 0 10 km", ".k....", R(NONE)},
    {"GEORADIUS k 0 0 10 km STORE dst", ".k.....k", R(NONE)},
    {"GEORADIUS k 0 0 10 km STOREDIST dst", ".k.....k", R(NONE)},
    {"GEORADIUS k 0 0 10 km WITHDIST COUNT 5 ASC STORE dst", ".k.........k", R(NONE)},
    {"GEORADIUS k 0 0 10 km STORE a STORE b", ".k.....k.k", R(NONE)},
    {"GEORADIUS k 0 0 10 km STORE store", ".k.....k", R(NONE)},
    {"GEORADIUS k 0 0 10 km COUNT store STORE x", ".k.......k", R(NONE)},
    {"GEORADIUSBYMEMBER k store 10 km STORE dst", ".k....k", R(NONE)},
    {"GEORADIUSBYMEMBER k m 10 km STORE a STOREDIST b", ".k....k.k", R(NONE)},
    {"GEORADIUS_RO k 0 0 10 km WITHCOORD", ".k.....", R(NONE)},
    /* SORT: STORE targets are keys, BY/GET templates take the prefix, GET # stays */
    {"SORT k", ".k", R(NONE)},
    {"SORT k ALPHA DESC LIMIT 0 10", ".k.....", R(NONE)},
    {"SORT k STORE dst", ".k.k", R(NONE)},
    {"SORT k BY w_* GET # GET o_*->f STORE dst", ".k.s...s.k", R(NONE)},
    {"SORT k BY nosort", ".k.s", R(NONE)},
    {"SORT k STORE a STORE b", ".k.k.k", R(NONE)},
    {"SORT_RO k BY w_* GET #", ".k.s..", R(NONE)},
    {"SORT k GET # GET #", ".k....", R(NONE)},
    /* harmless commands without keys */
    {"PING", ".", R(NONE)},
    {"PING hello", "..", R(NONE)},
    {"ECHO x", "..", R(NONE)},
    {"TIME", ".", R(NONE)},
    {"MULTI", ".", R(NONE)},
    {"EXEC", ".", R(NONE)},
    {"DISCARD", ".", R(NONE)},
    {"UNWATCH", ".", R(NONE)},
    {"LOLWUT", ".", R(NONE)},
    {"COMMAND", ".", R(NONE)},
    {"COMMAND COUNT", "..", R(NONE)},
    {"COMMAND INFO get set", "....", R(NONE)},
    {"COMMAND DOCS get", "...", R(NONE)},
    {"COMMAND GETKEYS SET k v", ".....", R(NONE)}, /* unprefixed: nothing to strip */
    {"CLIENT SETNAME app", "...", R(NONE)},
    {"CLIENT GETNAME", "..", R(NONE)},
    {"CLIENT ID", "..", R(NONE)},
    {"OBJECT HELP", "..", R(NONE)},
    {"XINFO HELP", "..", R(NONE)},
    /* pub/sub */
    {"SUBSCRIBE a b", ".cc", R(PUBSUB)},
    {"SSUBSCRIBE a", ".c", R(PUBSUB)},
    {"UNSUBSCRIBE", ".", R(PUBSUB)},
    {"UNSUBSCRIBE a", ".c", R(PUBSUB)},
    {"SUNSUBSCRIBE a b", ".cc", R(PUBSUB)},
    {"PUBLISH ch msg", ".c.", R(NONE)},
    {"SPUBLISH ch msg", ".c.", R(NONE)},
    {"PUBSUB NUMSUB a b", "..cc", R(NUMSUB)},
    {"PUBSUB NUMSUB", "..", R(NUMSUB)},
    {"PUBSUB SHARDNUMSUB a", "..c", R(NUMSUB)},
    {"PSUBSCRIBE news.* h?llo", ".pp", R(PUBSUB)},
    {"PUNSUBSCRIBE news.*", ".p", R(PUBSUB)},
    {"PUNSUBSCRIBE", ".", R(PUBSUB)},
    {"PUBSUB CHANNELS n*", "..p", R(CHANNELS)},
    {"PUBSUB SHARDCHANNELS n*", "..p", R(CHANNELS)},
    /* patterns */
    {"KEYS *", ".p", R(KEYS)},
    {"KEYS user:*", ".p", R(KEYS)},
    {"SCAN 0 MATCH u* COUNT 10", "...p..", R(SCAN)},
    {"SCAN 0 MATCH a MATCH b", "...p.p", R(SCAN)},
    {"SCAN 0 COUNT match", "....", R(SCAN)},
    {"SCAN 0 TYPE string", "....", R(SCAN)},
};

static void test_key_extraction(void **state)
{
    (void)state;
    judged j;
    for (size_t i = 0; i < COUNT(forwards); i++) {
        const fwd_case *c = &forwards[i];
        tg_redis_verdict_kind k = judge(&j, c->line, false);
        if (k == TG_REDIS_DENY || strcmp(j.letters, c->roles) != 0 || j.v.reply != c->reply)
            fail_msg("%s: got %s %s reply=%s (%s), want %s reply=%s", c->line,
                     tg_redis_verdict_name(k), j.letters, tg_redis_reply_name(j.v.reply),
                     j.v.reason, c->roles, tg_redis_reply_name(c->reply));
        assert_non_null(j.v.cmd);
    }
}

static void test_rewrite_kinds(void **state)
{
    (void)state;
    judged j;
    assert_int_equal(judge(&j, "SCAN 0", false), TG_REDIS_REWRITE_PATTERN);
    assert_int_equal(j.v.append, TG_REDIS_APPEND_MATCH);
    assert_int_equal(j.v.reply, TG_REDIS_REPLY_SCAN);
    assert_int_equal(judge(&j, "SCAN 0 COUNT 10 TYPE hash", false), TG_REDIS_REWRITE_PATTERN);
    assert_int_equal(j.v.append, TG_REDIS_APPEND_MATCH);
    assert_int_equal(judge(&j, "SCAN 0 MATCH x*", false), TG_REDIS_REWRITE_PATTERN);
    assert_int_equal(j.v.append, TG_REDIS_APPEND_NONE);
    assert_int_equal(judge(&j, "PUBSUB CHANNELS", false), TG_REDIS_REWRITE_PATTERN);
    assert_int_equal(j.v.append, TG_REDIS_APPEND_PATTERN);
    assert_int_equal(j.v.reply, TG_REDIS_REPLY_CHANNELS);
    assert_int_equal(judge(&j, "PUBSUB SHARDCHANNELS", false), TG_REDIS_REWRITE_PATTERN);
    assert_int_equal(j.v.append, TG_REDIS_APPEND_PATTERN);
    assert_int_equal(judge(&j, "KEYS *", false), TG_REDIS_REWRITE_PATTERN);
    assert_int_equal(judge(&j, "PSUBSCRIBE *", false), TG_REDIS_REWRITE_PATTERN);
    assert_int_equal(judge(&j, "GET k", false), TG_REDIS_FORWARD);
    assert_int_equal(j.v.append, TG_REDIS_APPEND_NONE);
    assert_int_equal(judge(&j, "SUBSCRIBE a", false), TG_REDIS_FORWARD);
}

static void test_local(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        tg_redis_local_kind local;
    } cases[] = {
        {"AUTH SECRET", TG_REDIS_LOCAL_AUTH},
        {"AUTH user SECRET", TG_REDIS_LOCAL_AUTH},
        {"HELLO", TG_REDIS_LOCAL_HELLO},
        {"HELLO 3 AUTH user SECRET SETNAME x", TG_REDIS_LOCAL_HELLO},
        {"RESET", TG_REDIS_LOCAL_RESET},
        {"QUIT", TG_REDIS_LOCAL_QUIT},
        {"SELECT 0", TG_REDIS_LOCAL_SELECT},
        {"select 0", TG_REDIS_LOCAL_SELECT},
    };
    judged j;
    for (size_t i = 0; i < COUNT(cases); i++) {
        assert_int_equal(judge(&j, cases[i].line, false), TG_REDIS_LOCAL);
        assert_int_equal(j.v.local, cases[i].local);
    }
}

/* ---- refusals -------------------------------------------------------------------------- */

typedef struct deny_case {
    const char *line;
    const char *reason; /* expected prefix of the reason */
} deny_case;

static const deny_case denials[] = {
    {"FLUSHALL", "FLUSHALL is not allowed"},
    {"FLUSHALL ASYNC", "FLUSHALL is not allowed"},
    {"FLUSHDB", "FLUSHDB is not allowed"},
    {"SWAPDB 0 1", "SWAPDB is not allowed"},
    {"SELECT 1", "SELECT of a database other than 0"},
    {"SELECT 00", "SELECT of a database other than 0"},
    {"SELECT -0", "SELECT of a database other than 0"},
    {"SELECT SECRET", "SELECT of a database other than 0"},
    {"MOVE k 1", "MOVE is not allowed"},
    {"COPY a b DB 1", "COPY to another database"},
    {"COPY a b REPLACE db 0", "COPY to another database"},
    {"MIGRATE h 6379 k 0 5000", "MIGRATE is not allowed"},
    {"MIGRATE h 6379 \\e 0 5000 KEYS a b", "MIGRATE is not allowed"},
    {"RANDOMKEY", "RANDOMKEY is not allowed"},
    {"DBSIZE", "DBSIZE is not allowed"},
    {"INFO", "INFO is not allowed"},
    {"INFO keyspace", "INFO is not allowed"},
    {"CONFIG GET *", "CONFIG GET is not allowed"},
    {"CONFIG SET maxmemory 1", "CONFIG SET is not allowed"},
    {"CONFIG HELP", "CONFIG HELP is not allowed"},
    {"DEBUG SLEEP 10", "DEBUG is not allowed"},
    {"DEBUG OBJECT k", "DEBUG is not allowed"},
    {"MODULE LOAD /tmp/x.so", "MODULE LOAD is not allowed"},
    {"MODULE LIST", "MODULE LIST is not allowed"},
    {"SHUTDOWN NOSAVE", "SHUTDOWN is not allowed"},
    {"REPLICAOF host 6379", "REPLICAOF is not allowed"},
    {"SLAVEOF NO ONE", "SLAVEOF is not allowed"},
    {"SYNC", "SYNC is not allowed"},
    {"PSYNC ? -1", "PSYNC is not allowed"},
    {"REPLCONF listening-port 1", "REPLCONF is not allowed"},
    {"MONITOR", "MONITOR is not allowed"},
    {"CLIENT LIST", "CLIENT LIST is not allowed"},
    {"CLIENT KILL ID 7", "CLIENT KILL is not allowed"},
    {"CLIENT PAUSE 1000", "CLIENT PAUSE is not allowed"},
    {"CLIENT UNPAUSE", "CLIENT UNPAUSE is not allowed"},
    {"CLIENT TRACKING on", "CLIENT TRACKING is not allowed"},
    {"CLIENT TRACKINGINFO", "CLIENT TRACKINGINFO is not allowed"},
    {"CLIENT CACHING yes", "CLIENT CACHING is not allowed"},
    {"CLIENT GETREDIR", "CLIENT GETREDIR is not allowed"},
    {"CLIENT NO-EVICT on", "CLIENT NO-EVICT is not allowed"},
    {"CLIENT UNBLOCK 7", "CLIENT UNBLOCK is not allowed"},
    {"CLIENT REPLY OFF", "CLIENT REPLY is not allowed"},
    {"CLIENT INFO", "CLIENT INFO is not allowed"},
    {"ACL WHOAMI", "ACL WHOAMI is not allowed"},
    {"ACL SETUSER SECRET on", "ACL SETUSER is not allowed"},
    {"ACL LIST", "ACL LIST is not allowed"},
    {"SLOWLOG GET", "SLOWLOG GET is not allowed"},
    {"LATENCY DOCTOR", "LATENCY DOCTOR is not allowed"},
    {"MEMORY STATS", "MEMORY STATS is not allowed"},
    {"MEMORY DOCTOR", "MEMORY DOCTOR is not allowed"},
    {"MEMORY MALLOC-STATS", "MEMORY MALLOC-STATS is not allowed"},
    {"MEMORY PURGE", "MEMORY PURGE is not allowed"},
    {"WAIT 1 0", "WAIT is not allowed"},
    {"FAILOVER", "FAILOVER is not allowed"},
    {"CLUSTER INFO", "CLUSTER INFO is not allowed"},
    {"CLUSTER KEYSLOT SECRET", "CLUSTER KEYSLOT is not allowed"},
    {"CLUSTER GETKEYSINSLOT 1 10", "CLUSTER GETKEYSINSLOT is not allowed"},
    {"READONLY", "READONLY is not allowed"},
    {"READWRITE", "READWRITE is not allowed"},
    {"ASKING", "ASKING is not allowed"},
    {"LASTSAVE", "LASTSAVE is not allowed"},
    {"SAVE", "SAVE is not allowed"},
    {"BGSAVE", "BGSAVE is not allowed"},
    {"BGREWRITEAOF", "BGREWRITEAOF is not allowed"},
    {"ROLE", "ROLE is not allowed"},
    {"PFSELFTEST", "PFSELFTEST is not allowed"},
    {"PFDEBUG GETREG k", "PFDEBUG is not allowed"},
    {"RESTORE k 0 SECRET", "RESTORE is not allowed"},
    {"RESTORE-ASKING k 0 SECRET", "RESTORE-ASKING is not allowed"},
    {"PUBSUB NUMPAT", "PUBSUB NUMPAT is not allowed"},
    {"SCRIPT FLUSH", "SCRIPT FLUSH is not allowed"},
    {"SCRIPT KILL", "SCRIPT KILL is not allowed"},
    {"SCRIPT DEBUG YES", "SCRIPT DEBUG is not allowed"},
    {"FUNCTION LOAD SECRET", "FUNCTION LOAD is not allowed"},
    {"FUNCTION FLUSH", "FUNCTION FLUSH is not allowed"},
    {"FUNCTION LIST", "FUNCTION LIST is not allowed"},
    {"FUNCTION DELETE lib", "FUNCTION DELETE is not allowed"},
    {"FUNCTION KILL", "FUNCTION KILL is not allowed"},
    /* scripts while allow_scripts is off */
    {"EVAL SECRET 0", "EVAL is not allowed (allow_scripts is off)"},
    {"EVAL SECRET 2 k1 k2 a1", "EVAL is not allowed (allow_scripts is off)"},
    {"EVALSHA abc 0", "EVALSHA is not allowed"},
    {"EVAL_RO s 0", "EVAL_RO is not allowed"},
    {"EVALSHA_RO s 0", "EVALSHA_RO is not allowed"},
    {"FCALL f 0", "FCALL is not allowed"},
    {"FCALL_RO f 1 k", "FCALL_RO is not allowed"},
    {"SCRIPT LOAD SECRET", "SCRIPT LOAD is not allowed"},
    {"SCRIPT EXISTS abc", "SCRIPT EXISTS is not allowed"},
    /* SORT BY/GET with a prefix that holds '*' (judged with that prefix below) */
    /* keyspace notifications */
    {"SUBSCRIBE __keyspace@0__:k", "keyspace notification channels"},
    {"SUBSCRIBE ok __keyevent@0__:del", "keyspace notification channels"},
    {"PSUBSCRIBE __keyspace@*__:*", "keyspace notification channels"},
    {"PUBLISH __keyevent@0__:set x", "keyspace notification channels"},
    {"PUBSUB NUMSUB __keyspace@0__:k", "keyspace notification channels"},
    /* unknown commands and subcommands */
    {"SECRET", "unknown command"},
    {"GETSECRET k", "unknown command"},
    {"\\e", "unknown command"},
    {"OBJECT SECRET k", "unknown subcommand for 'OBJECT'"},
    {"CLIENT SECRET", "unknown subcommand for 'CLIENT'"},
    {"XINFO SECRET k", "unknown subcommand"},
    {"COMMAND SECRET", "unknown subcommand"},
    {"OBJECT|ENCODING k", "unknown command"},
    {"GET|X k", "unknown command"},
    /* containers alone */
    {"OBJECT", "wrong number of arguments for 'OBJECT'"},
    {"CLIENT", "wrong number of arguments"},
    {"XGROUP", "wrong number of arguments"},
    /* wrong arity */
    {"GET", "wrong number of arguments for 'GET'"},
    {"GET a b", "wrong number of arguments for 'GET'"},
    {"SET k", "wrong number of arguments for 'SET'"},
    {"MSET", "wrong number of arguments"},
    {"DEL", "wrong number of arguments"},
    {"OBJECT ENCODING", "wrong number of arguments for 'OBJECT ENCODING'"},
    {"OBJECT ENCODING a b", "wrong number of arguments"},
    {"BLPOP k", "wrong number of arguments"},
    {"XREAD STREAMS", "wrong number of arguments"},
    {"KEYS", "wrong number of arguments"},
    {"KEYS a b", "wrong number of arguments"},
    {"PUBSUB CHANNELS a b", "wrong number of arguments"},
    {"SELECT", "wrong number of arguments"},
    /* malformed key arguments */
    {"ZUNIONSTORE d 3 a b", "invalid key arguments for 'ZUNIONSTORE'"},
    {"ZUNIONSTORE d -1 a b", "invalid key arguments"},
    {"ZUNIONSTORE d SECRET a b", "invalid key arguments"},
    {"ZUNIONSTORE d 01 a b", "invalid key arguments"},
    {"ZUNIONSTORE d +1 a b", "invalid key arguments"},
    {"ZUNIONSTORE d 99999999999999999999 a b", "invalid key arguments"},
    {"ZUNIONSTORE d 9223372036854775807 a b", "invalid key arguments"},
    {"ZUNIONSTORE d -9223372036854775808 a b", "invalid key arguments"},
    {"ZINTER 5 a", "invalid key arguments"},
    {"SINTERCARD 3 a b", "invalid key arguments"},
    {"LMPOP 4 a b LEFT", "invalid key arguments"},
    {"LMPOP -2 a b LEFT", "invalid key arguments"},
    {"BLMPOP 0 9 a LEFT", "invalid key arguments"},
    {"BZMPOP 0 3 a MIN", "invalid key arguments"},
    {"XREAD COUNT 1 STREAMS a", "unbalanced streams and IDs for 'XREAD'"},
    {"XREAD COUNT 1 2 STREAMS", "syntax error for 'XREAD'"},
    {"XREAD STREAMS a b c", "unbalanced"},
    {"XREAD GROUP g c STREAMS a 0", "syntax error"},
    {"XREAD NOACK STREAMS a 0", "syntax error"},
    {"XREADGROUP GROUP g c COUNT 1 STREAMS", "syntax error"},
    {"XREADGROUP GROUP g c BLOCK 0 COUNT", "syntax error"},
    {"XREADGROUP GROUP g c STREAMS a b c", "unbalanced"},
    {"SCAN 0 MATCH", "syntax error for 'SCAN'"},
    {"SCAN 0 FOO bar", "syntax error"},
    {"SCAN 0 COUNT 1 MATCH", "syntax error"},
    {"SORT k BY", "syntax error for 'SORT'"},
    {"SORT k LIMIT 0", "syntax error"},
    {"SORT k SECRET", "syntax error"},
    {"SORT_RO k STORE dst", "syntax error for 'SORT_RO'"},
};

static void test_refused(void **state)
{
    (void)state;
    judged j;
    for (size_t i = 0; i < COUNT(denials); i++) {
        tg_redis_verdict_kind k = judge(&j, denials[i].line, false);
        if (k != TG_REDIS_DENY ||
            strncmp(j.v.reason, denials[i].reason, strlen(denials[i].reason)) != 0)
            fail_msg("%s: got %s \"%s\" roles %s, want DENY \"%s\"", denials[i].line,
                     tg_redis_verdict_name(k), j.v.reason, j.letters, denials[i].reason);
    }
}

/* Refused whatever allow_scripts says: administration, other tenants' scripts. */
static void test_refused_with_scripts(void **state)
{
    (void)state;
    judged j;
    for (size_t i = 0; i < COUNT(denials); i++) {
        if (strncmp(denials[i].line, "EV", 2) == 0 || strncmp(denials[i].line, "FCALL", 5) == 0 ||
            strncmp(denials[i].line, "SCRIPT LOAD", 11) == 0 ||
            strncmp(denials[i].line, "SCRIPT EXISTS", 13) == 0 ||
            strcmp(denials[i].line, "FUNCTION LIST") == 0)
            continue;
        if (judge(&j, denials[i].line, true) != TG_REDIS_DENY)
            fail_msg("%s: forwarded with allow_scripts", denials[i].line);
    }
}

static void test_scripts_allowed(void **state)
{
    (void)state;
    static const fwd_case cases[] = {
        {"EVAL script 2 k1 k2 a1", "...kk.", R(NONE)},
        {"EVAL script 0", "...", R(NONE)},
        {"EVAL script 0 a1 a2", ".....", R(NONE)},
        {"EVALSHA sha 1 k a", "...k.", R(NONE)},
        {"EVAL_RO script 1 k", "...k", R(NONE)},
        {"EVALSHA_RO sha 2 a b", "...kk", R(NONE)},
        {"FCALL fn 1 k a", "...k.", R(NONE)},
        {"FCALL_RO fn 0", "...", R(NONE)},
        {"SCRIPT LOAD body", "...", R(NONE)},
        {"SCRIPT EXISTS a b", "....", R(NONE)},
        {"FUNCTION LIST", "..", R(NONE)},
        {"FUNCTION HELP", "..", R(NONE)},
    };
    judged j;
    for (size_t i = 0; i < COUNT(cases); i++) {
        tg_redis_verdict_kind k = judge(&j, cases[i].line, true);
        if (k != TG_REDIS_FORWARD || strcmp(j.letters, cases[i].roles) != 0)
            fail_msg("%s: got %s %s (%s), want %s", cases[i].line, tg_redis_verdict_name(k),
                     j.letters, j.v.reason, cases[i].roles);
    }
    assert_int_equal(judge(&j, "EVAL s 3 k1 k2", true), TG_REDIS_DENY);
    assert_int_equal(judge(&j, "EVAL s -1", true), TG_REDIS_DENY);
    assert_int_equal(judge(&j, "EVAL s x k", true), TG_REDIS_DENY);
    assert_int_equal(judge(&j, "FCALL f 2 k", true), TG_REDIS_DENY);
    /* server-wide: refused with scripts too */
    static const char *const shared[][2] = {
        {"SCRIPT FLUSH", "SCRIPT FLUSH is not allowed (scripts and functions are shared"},
        {"SCRIPT KILL", "SCRIPT KILL is not allowed"},
        {"FUNCTION FLUSH", "FUNCTION FLUSH is not allowed (scripts and functions are shared"},
        {"FUNCTION LOAD SECRET", "FUNCTION LOAD is not allowed"},
        {"FUNCTION DELETE lib", "FUNCTION DELETE is not allowed"},
        {"FUNCTION RESTORE SECRET", "FUNCTION RESTORE is not allowed"},
        {"FUNCTION KILL", "FUNCTION KILL is not allowed"},
        {"FUNCTION DUMP", "FUNCTION DUMP is not allowed"},
        {"FUNCTION STATS", "FUNCTION STATS is not allowed (it shows other clients' running"},
    };
    for (size_t i = 0; i < COUNT(shared); i++) {
        if (judge(&j, shared[i][0], true) != TG_REDIS_DENY ||
            strncmp(j.v.reason, shared[i][1], strlen(shared[i][1])) != 0)
            fail_msg("%s: got \"%s\", want \"%s\"", shared[i][0], j.v.reason, shared[i][1]);
    }
}

/* The table's row named "cmd" or "container|sub" (it must exist). */
static const tg_redis_command *named(const char *name)
{
    const char *bar = strchr(name, '|');
    tg_slice a[2] = {{(const uint8_t *)name, bar ? (size_t)(bar - name) : strlen(name)},
                     tg_slice_str(bar ? bar + 1 : "")};
    const tg_redis_command *c = tg_redis_lookup(builtin, a, bar ? 2 : 1);
    if (!c || strcmp(c->name, name) != 0)
        fail_msg("%s: not in the table", name);
    return c;
}

/* The per-tenant ACL user of allow_scripts: what it is granted, and the judge agrees. */
static void test_acl_grants(void **state)
{
    (void)state;
    static const char *const granted[] = {"get",
                                          "set",
                                          "del",
                                          "mget",
                                          "hset",
                                          "lpush",
                                          "blpop",
                                          "zadd",
                                          "xadd",
                                          "xread",
                                          "xreadgroup",
                                          "xgroup|create",
                                          "object|encoding",
                                          "eval",
                                          "evalsha",
                                          "eval_ro",
                                          "evalsha_ro",
                                          "fcall",
                                          "fcall_ro",
                                          "script|load",
                                          "script|exists",
                                          "function|list",
                                          "publish",
                                          "spublish",
                                          "subscribe",
                                          "ssubscribe",
                                          "unsubscribe",
                                          "sunsubscribe",
                                          "ping",
                                          "multi",
                                          "exec",
                                          "discard",
                                          "watch",
                                          "client|setname",
                                          "command|docs",
                                          "hscan",
                                          "rename",
                                          "zunionstore",
                                          "georadius_ro",
                                          "geosearchstore"};
    static const char *const refused[] = {"keys",
                                          "scan",
                                          "randomkey",
                                          "dbsize",
                                          "info",
                                          "psubscribe",
                                          "punsubscribe",
                                          "pubsub|channels",
                                          "pubsub|numsub",
                                          "pubsub|numpat",
                                          "pubsub|shardchannels",
                                          "sort",
                                          "sort_ro",
                                          "georadius",
                                          "georadiusbymember",
                                          "copy",
                                          "flushall",
                                          "flushdb",
                                          "config",
                                          "config|get",
                                          "config|set",
                                          "acl",
                                          "acl|setuser",
                                          "acl|whoami",
                                          "script",
                                          "script|flush",
                                          "script|kill",
                                          "script|debug",
                                          "function",
                                          "function|load",
                                          "function|flush",
                                          "function|delete",
                                          "function|restore",
                                          "function|kill",
                                          "function|stats",
                                          "function|dump",
                                          "debug",
                                          "client",
                                          "client|kill",
                                          "client|list",
                                          "client|pause",
                                          "command",
                                          "object",
                                          "select",
                                          "auth",
                                          "hello",
                                          "reset",
                                          "quit",
                                          "move",
                                          "swapdb",
                                          "migrate",
                                          "restore",
                                          "shutdown",
                                          "monitor",
                                          "wait",
                                          "slowlog",
                                          "memory|stats",
                                          "latency",
                                          "module",
                                          "replicaof",
                                          "bgsave",
                                          "cluster",
                                          "lastsave"};
    for (size_t i = 0; i < COUNT(granted); i++)
        if (!tg_redis_acl_grants(named(granted[i])))
            fail_msg("%s: not granted", granted[i]);
    for (size_t i = 0; i < COUNT(refused); i++)
        if (tg_redis_acl_grants(named(refused[i])))
            fail_msg("%s: granted", refused[i]);
    assert_false(tg_redis_acl_grants(NULL));
    /* structure: never a container, nothing admin, @admin, @dangerous or from a module */
    uint32_t n = 0;
    for (uint32_t i = 0; i < tg_redis_table_count(builtin); i++) {
        const tg_redis_command *c = tg_redis_table_at(builtin, i);
        if (!tg_redis_acl_grants(c))
            continue;
        n++;
        if (c->container || (c->flags & (TG_REDIS_CMD_ADMIN | TG_REDIS_CMD_MODULE)) ||
            (c->acl & (TG_REDIS_ACL_ADMIN | TG_REDIS_ACL_DANGEROUS)))
            fail_msg("%s: granted", c->name);
    }
    assert_true(n > 150 && n < 300);

    /* with allow_scripts the judge refuses what the ACL user lacks, locally, with a reason */
    static const char *const lacking[] = {"SCAN 0",
                                          "SCAN 0 MATCH x*",
                                          "KEYS *",
                                          "PSUBSCRIBE n*",
                                          "PUNSUBSCRIBE",
                                          "PUBSUB CHANNELS",
                                          "PUBSUB NUMSUB c",
                                          "SORT k",
                                          "SORT_RO k",
                                          "COPY a b",
                                          "GEORADIUS k 0 0 1 km",
                                          "COMMAND"};
    judged j;
    for (size_t i = 0; i < COUNT(lacking); i++) {
        if (judge(&j, lacking[i], true) != TG_REDIS_DENY ||
            !strstr(j.v.reason, "not granted to the tenant's ACL user with allow_scripts"))
            fail_msg("%s: got %s \"%s\"", lacking[i], tg_redis_verdict_name(j.v.kind), j.v.reason);
        /* and without scripts they are what they were */
        assert_int_not_equal(judge(&j, lacking[i], false), TG_REDIS_DENY);
    }
    /* refusals keep their own reasons; local commands stay local */
    assert_int_equal(judge(&j, "FLUSHALL", true), TG_REDIS_DENY);
    assert_string_equal(j.v.reason, "FLUSHALL is not allowed (it empties every tenant's data)");
    assert_int_equal(judge(&j, "AUTH tok", true), TG_REDIS_LOCAL);
    assert_int_equal(judge(&j, "HELLO 3", true), TG_REDIS_LOCAL);
    assert_int_equal(judge(&j, "RESET", true), TG_REDIS_LOCAL);
    assert_int_equal(judge(&j, "SELECT 0", true), TG_REDIS_LOCAL);
    static const fwd_case forwarded[] = {
        {"GET k", ".k", R(NONE)},
        {"XREAD STREAMS s 0", "..k.", R(XREAD)},
        {"XREADGROUP GROUP g c STREAMS s >", ".....k.", R(XREAD)},
        {"SUBSCRIBE a b", ".cc", R(PUBSUB)},
        {"PUBLISH a m", ".c.", R(NONE)},
        {"EVAL s 1 k a", "...k.", R(NONE)},
        {"OBJECT ENCODING k", "..k", R(NONE)},
        {"BLPOP a 0", ".k.", R(FIRST_KEY)},
    };
    for (size_t i = 0; i < COUNT(forwarded); i++) {
        tg_redis_verdict_kind k = judge(&j, forwarded[i].line, true);
        if (k != TG_REDIS_FORWARD || strcmp(j.letters, forwarded[i].roles) != 0 ||
            j.v.reply != forwarded[i].reply)
            fail_msg("%s: got %s %s (%s)", forwarded[i].line, tg_redis_verdict_name(k), j.letters,
                     j.v.reason);
        assert_true(tg_redis_acl_grants(j.v.cmd));
    }
}

static void test_sort_star_prefix(void **state)
{
    (void)state;
    judged j;
    assert_int_equal(judge_with(builtin, &j, "SORT k BY w_*", false, "t:a*b:"), TG_REDIS_DENY);
    assert_string_equal(j.v.reason, "SORT BY/GET patterns are not allowed with this key prefix");
    assert_int_equal(judge_with(builtin, &j, "SORT k GET o_*", false, "t:a*b:"), TG_REDIS_DENY);
    /* no template: fine */
    assert_int_equal(judge_with(builtin, &j, "SORT k GET # STORE d", false, "t:a*b:"),
                     TG_REDIS_FORWARD);
    assert_string_equal(j.letters, ".k...k");
    assert_int_equal(judge_with(builtin, &j, "SORT k BY w_*", false, ""), TG_REDIS_FORWARD);
}

static void test_case_insensitive(void **state)
{
    (void)state;
    static const fwd_case cases[] = {
        {"get k", ".k", R(NONE)},
        {"gEt k", ".k", R(NONE)},
        {"object encoding k", "..k", R(NONE)},
        {"oBjEcT EnCoDiNg k", "..k", R(NONE)},
        {"xread count 1 streams s 0", "....k.", R(XREAD)},
        {"XREAD STREAMS s 0", "..k.", R(XREAD)},
        {"xreadgroup group g c streams s >", ".....k.", R(XREAD)},
        {"georadius k 0 0 1 km store d", ".k.....k", R(NONE)},
        {"sort k by w_* get # store d", ".k.s...k", R(NONE)},
        {"scan 0 match x", "...p", R(SCAN)},
        {"pubsub numsub a", "..c", R(NUMSUB)},
        {"blpop a 0", ".k.", R(FIRST_KEY)},
    };
    judged j;
    for (size_t i = 0; i < COUNT(cases); i++) {
        tg_redis_verdict_kind k = judge(&j, cases[i].line, false);
        if (k == TG_REDIS_DENY || strcmp(j.letters, cases[i].roles) != 0 ||
            j.v.reply != cases[i].reply)
            fail_msg("%s: got %s %s (%s), want %s", cases[i].line, tg_redis_verdict_name(k),
                     j.letters, j.v.reason, cases[i].roles);
    }
    assert_int_equal(judge(&j, "flushALL", false), TG_REDIS_DENY);
    assert_string_equal(j.v.reason, "FLUSHALL is not allowed (it empties every tenant's data)");
    assert_int_equal(judge(&j, "client KiLl id 1", false), TG_REDIS_DENY);
    assert_int_equal(judge(&j, "copy a b Db 2", false), TG_REDIS_DENY);
}

/* ---- the table --------------------------------------------------------------------------- */

static void test_builtin_table(void **state)
{
    (void)state;
    uint32_t n = tg_redis_table_count(builtin);
    assert_true(n >= 300);
    size_t deny = 0, keys = 0;
    for (uint32_t i = 0; i < n; i++) {
        const tg_redis_command *c = tg_redis_table_at(builtin, i);
        assert_non_null(c);
        assert_int_equal(strlen(c->name), c->name_len);
        assert_string_not_equal(tg_redis_rule_name(c), "?");
        /* looked up by its own name, upper-cased, split at '|' */
        char up[80];
        snprintf(up, sizeof(up), "%s", c->name);
        for (char *p = up; *p; p++)
            if (*p >= 'a' && *p <= 'z')
                *p = (char)(*p - 32);
        tg_slice argv[2];
        char *bar = strchr(up, '|');
        uint32_t argc = 1;
        if (bar) {
            *bar = '\0';
            argv[1] = tg_slice_str(bar + 1);
            argc = 2;
        }
        argv[0] = tg_slice_str(up);
        const tg_redis_command *found = tg_redis_lookup(builtin, argv, argc);
        if (found != c)
            fail_msg("lookup of %s found %s", c->name, found ? found->name : "nothing");
        deny += strcmp(tg_redis_rule_name(c), "deny") == 0;
        keys += strcmp(tg_redis_rule_name(c), "keys") == 0;
        /* admin and @dangerous commands are refused unless a handler takes them */
        if ((c->flags & TG_REDIS_CMD_ADMIN) || (c->acl & TG_REDIS_ACL_DANGEROUS)) {
            const char *r = tg_redis_rule_name(c);
            if (strcmp(r, "deny") != 0 && strcmp(r, "sort") != 0 &&
                strcmp(r, "keys-pattern") != 0 && strcmp(r, "scan") != 0)
                fail_msg("%s is admin/@dangerous but rule %s", c->name, r);
        }
    }
    assert_true(deny > 100);
    assert_true(keys > 150);
    /* a few spot checks of the data */
    tg_slice av[2] = {tg_slice_str("XREAD"), tg_slice_str("x")};
    const tg_redis_command *x = tg_redis_lookup(builtin, av, 1);
    assert_non_null(x);
    assert_int_equal(x->nspecs, 1);
    assert_int_equal(x->specs[0].bs, TG_REDIS_BS_KEYWORD);
    assert_string_equal(x->specs[0].keyword, "STREAMS");
    assert_int_equal(x->specs[0].fk, TG_REDIS_FK_RANGE);
    assert_int_equal(x->specs[0].lastkey, -1);
    assert_int_equal(x->specs[0].limit, 2);
    assert_true(x->flags & TG_REDIS_CMD_MOVABLEKEYS);
    av[0] = tg_slice_str("object");
    const tg_redis_command *obj = tg_redis_lookup(builtin, av, 1);
    assert_non_null(obj);
    assert_true(obj->container);
    assert_null(tg_redis_lookup(builtin, av, 2)); /* OBJECT x */
    assert_null(tg_redis_lookup(NULL, av, 1));
    assert_null(tg_redis_lookup(builtin, av, 0));
}

static void test_edges(void **state)
{
    (void)state;
    judged j;
    /* empty command, too small a roles buffer, unsealed and missing table */
    tg_redis_verdict v;
    uint8_t roles[2];
    tg_slice argv[3] = {tg_slice_str("MGET"), tg_slice_str("a"), tg_slice_str("b")};
    tg_redis_verdict_init(&v, roles, 2);
    assert_int_equal(tg_redis_judge(builtin, argv, 3, NULL, &v), TG_REDIS_DENY);
    assert_string_equal(v.reason, "too many arguments");
    tg_redis_verdict_init(&v, NULL, 0);
    assert_int_equal(tg_redis_judge(builtin, argv, 3, NULL, &v), TG_REDIS_DENY);
    tg_redis_verdict_init(&v, roles, 2);
    assert_int_equal(tg_redis_judge(builtin, argv, 0, NULL, &v), TG_REDIS_DENY);
    assert_string_equal(v.reason, "empty command");
    assert_int_equal(tg_redis_judge(NULL, argv, 2, NULL, &v), TG_REDIS_DENY);
    tg_redis_table *t = tg_redis_table_new();
    assert_non_null(t);
    assert_int_equal(tg_redis_judge(t, argv, 2, NULL, &v), TG_REDIS_DENY);
    assert_string_equal(v.reason, "command table not ready");
    tg_redis_table_free(t);
    /* a name with a NUL byte or too long is unknown */
    static const uint8_t nul[] = {'G', 'E', 'T', 0};
    tg_slice a2[2] = {{nul, 4}, tg_slice_str("k")};
    tg_redis_verdict_init(&v, roles, 2);
    assert_int_equal(tg_redis_judge(builtin, a2, 2, NULL, &v), TG_REDIS_DENY);
    char longname[200];
    memset(longname, 'g', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    a2[0] = tg_slice_str(longname);
    assert_int_equal(tg_redis_judge(builtin, a2, 2, NULL, &v), TG_REDIS_DENY);
    /* a key spec hit twice is prefixed once (two identical specs on one command) */
    assert_int_equal(judge(&j, "GET k", false), TG_REDIS_FORWARD);
    assert_int_equal(j.v.nkeys, 1);
    /* verdict fields are reset between calls */
    assert_int_equal(judge(&j, "SCAN 0", false), TG_REDIS_REWRITE_PATTERN);
    assert_int_equal(judge(&j, "FLUSHALL", false), TG_REDIS_DENY);
    assert_int_equal(j.v.append, TG_REDIS_APPEND_NONE);
    assert_int_equal(j.v.reply, TG_REDIS_REPLY_NONE);
}

/* ---- the builder ------------------------------------------------------------------------- */

static tg_redis_keyspec ks_index(int32_t index, int32_t lastkey, int32_t step, int32_t limit)
{
    return (tg_redis_keyspec){.bs = TG_REDIS_BS_INDEX,
                              .fk = TG_REDIS_FK_RANGE,
                              .index = index,
                              .lastkey = lastkey,
                              .keystep = step,
                              .limit = limit};
}

static void test_builder(void **state)
{
    (void)state;
    tg_redis_table *t = tg_redis_table_new();
    assert_non_null(t);
    uint32_t ro = TG_REDIS_CMD_READONLY, rw = TG_REDIS_CMD_WRITE;
    /* a GET-like command from a "live server" */
    assert_int_equal(tg_redis_table_add_command(t, tg_slice_str("MYGET"), 2, ro, 0), 0);
    tg_redis_keyspec k = ks_index(1, 0, 1, 0);
    assert_int_equal(tg_redis_table_add_keyspec(t, &k), 0);
    /* a MIGRATE-like backward keyword search: KEYS from the end */
    assert_int_equal(tg_redis_table_add_command(t, tg_slice_str("mymove"), -3, rw, 0), 0);
    k = (tg_redis_keyspec){.bs = TG_REDIS_BS_KEYWORD,
                           .fk = TG_REDIS_FK_RANGE,
                           .startfrom = -2,
                           .keyword = "KEYS",
                           .lastkey = -1,
                           .keystep = 1};
    assert_int_equal(tg_redis_table_add_keyspec(t, &k), 0);
    /* keyword forward with a limit: every third remaining argument */
    assert_int_equal(tg_redis_table_add_command(t, tg_slice_str("tri"), -2, ro, 0), 0);
    k = (tg_redis_keyspec){.bs = TG_REDIS_BS_KEYWORD,
                           .fk = TG_REDIS_FK_RANGE,
                           .startfrom = 1,
                           .keyword = "ON",
                           .lastkey = -1,
                           .keystep = 1,
                           .limit = 3};
    assert_int_equal(tg_redis_table_add_keyspec(t, &k), 0);
    /* keynum with a keystep of 2 (key value key value) */
    assert_int_equal(tg_redis_table_add_command(t, tg_slice_str("kv"), -2, rw, 0), 0);
    k = (tg_redis_keyspec){.bs = TG_REDIS_BS_INDEX,
                           .fk = TG_REDIS_FK_KEYNUM,
                           .index = 1,
                           .keynumidx = 0,
                           .firstkey = 1,
                           .keystep = 2};
    assert_int_equal(tg_redis_table_add_keyspec(t, &k), 0);
    /* odd specs are kept as UNKNOWN: the command is refused */
    assert_int_equal(tg_redis_table_add_command(t, tg_slice_str("bad0"), 2, ro, 0), 0);
    k = ks_index(0, 0, 1, 0); /* the command name itself */
    assert_int_equal(tg_redis_table_add_keyspec(t, &k), 0);
    assert_int_equal(tg_redis_table_add_command(t, tg_slice_str("badstep"), -2, ro, 0), 0);
    k = ks_index(1, -1, 0, 0); /* keystep 0 would never end */
    assert_int_equal(tg_redis_table_add_keyspec(t, &k), 0);
    assert_int_equal(tg_redis_table_add_command(t, tg_slice_str("badlimit"), -2, ro, 0), 0);
    k = ks_index(1, -2, 1, 2); /* Redis asserts limit only with lastkey -1 */
    assert_int_equal(tg_redis_table_add_keyspec(t, &k), 0);
    assert_int_equal(tg_redis_table_add_command(t, tg_slice_str("incomplete"), -2, ro, 0), 0);
    k = ks_index(1, 0, 1, 0);
    k.flags = TG_REDIS_KS_INCOMPLETE;
    assert_int_equal(tg_redis_table_add_keyspec(t, &k), 0);
    assert_int_equal(tg_redis_table_add_command(t, tg_slice_str("unknownspec"), -2, ro, 0), 0);
    k = (tg_redis_keyspec){.bs = TG_REDIS_BS_UNKNOWN, .fk = TG_REDIS_FK_UNKNOWN};
    assert_int_equal(tg_redis_table_add_keyspec(t, &k), 0);
    /* a container and a subcommand whose spec points at the subcommand name */
    assert_int_equal(tg_redis_table_add_command(t, tg_slice_str("box"), -2, 0, 0), 0);
    assert_int_equal(tg_redis_table_add_command(t, tg_slice_str("box|open"), 3, ro, 0), 0);
    k = ks_index(2, 0, 1, 0);
    assert_int_equal(tg_redis_table_add_keyspec(t, &k), 0);
    assert_int_equal(tg_redis_table_add_command(t, tg_slice_str("box|peek"), 3, ro, 0), 0);
    k = ks_index(1, 0, 1, 0);
    assert_int_equal(tg_redis_table_add_keyspec(t, &k), 0);
    /* default rules: admin with keys refused, keyless refused, @dangerous refused */
    assert_int_equal(
        tg_redis_table_add_command(t, tg_slice_str("adminkey"), 2, TG_REDIS_CMD_ADMIN, 0), 0);
    k = ks_index(1, 0, 1, 0);
    assert_int_equal(tg_redis_table_add_keyspec(t, &k), 0);
    assert_int_equal(tg_redis_table_add_command(t, tg_slice_str("nokeys"), 1, ro, 0), 0);
    assert_int_equal(
        tg_redis_table_add_command(t, tg_slice_str("dkey"), 2, rw, TG_REDIS_ACL_DANGEROUS), 0);
    k = ks_index(1, 0, 1, 0);
    assert_int_equal(tg_redis_table_add_keyspec(t, &k), 0);
    assert_int_equal(
        tg_redis_table_add_command(t, tg_slice_str("ft.search"), -3, TG_REDIS_CMD_MODULE, 0), 0);
    k = ks_index(1, 0, 1, 0);
    assert_int_equal(tg_redis_table_add_keyspec(t, &k), 0);
    /* listed commands on a server without key specs: GET, BLPOP refused; PING fine */
    assert_int_equal(tg_redis_table_add_command(t, tg_slice_str("get"), 2, ro, 0), 0);
    assert_int_equal(tg_redis_table_add_command(t, tg_slice_str("blpop"), -3, rw, 0), 0);
    assert_int_equal(tg_redis_table_add_command(t, tg_slice_str("ping"), -1, 0, 0), 0);
    assert_int_equal(tg_redis_table_seal(t), 0);
    assert_int_equal(tg_redis_table_count(t), 19);

    static const struct {
        const char *line;
        const char *roles; /* NULL: refused */
    } cases[] = {
        {"myget k", ".k"},
        {"mymove h p KEYS a b c", "....kkk"},
        {"mymove h KEYS", "..."},              /* the search never reaches argv[1] */
        {"mymove h p x", "...."},              /* keyword absent: no keys */
        {"mymove KEYS KEYS", "..."},           /* argv[1] is never searched backwards */
        {"tri x ON a b c d e f", "...kk...."}, /* the first third */
        {"tri ON a b c", "..k.."},
        {"tri ON a b", NULL},       /* (2 / 3) - 1 < first */
        {"kv 2 k1 v1 k2 v2", NULL}, /* keynum with keystep 2: refused (see spec_sane) */
        {"kv 0", NULL},
        {"bad0 x", NULL},
        {"badstep a b", NULL},
        {"badlimit a b", NULL},
        {"incomplete a", NULL},
        {"unknownspec a", NULL},
        {"box open k", "..k"},
        {"box peek k", NULL},
        {"box", NULL},
        {"adminkey k", NULL},
        {"nokeys", NULL},
        {"dkey k", NULL},
        {"ft.search idx q", NULL}, /* module commands: refused by default */
        {"get k", NULL},
        {"blpop k 0", NULL},
        {"ping", "."},
    };
    judged j;
    for (size_t i = 0; i < COUNT(cases); i++) {
        tg_redis_verdict_kind kd = judge_with(t, &j, cases[i].line, false, NULL);
        if (cases[i].roles == NULL) {
            if (kd != TG_REDIS_DENY)
                fail_msg("%s: got %s %s, want DENY", cases[i].line, tg_redis_verdict_name(kd),
                         j.letters);
        } else if (kd != TG_REDIS_FORWARD || strcmp(j.letters, cases[i].roles) != 0) {
            fail_msg("%s: got %s %s (%s), want %s", cases[i].line, tg_redis_verdict_name(kd),
                     j.letters, j.v.reason, cases[i].roles);
        }
    }
    assert_int_equal(judge_with(t, &j, "get k", false, NULL), TG_REDIS_DENY);
    assert_string_equal(j.v.reason, "GET is not allowed"); /* default rule: no keys */
    assert_int_equal(judge_with(t, &j, "blpop k 0", false, NULL), TG_REDIS_DENY);
    assert_string_equal(j.v.reason, "BLPOP is not allowed (no key specs known)");
    /* a sealed table takes no more rows */
    assert_int_equal(tg_redis_table_add_command(t, tg_slice_str("late"), 1, 0, 0), TG_EINVAL);
    tg_redis_table_free(t);
}

static void test_builder_errors(void **state)
{
    (void)state;
    tg_redis_keyspec k = ks_index(1, 0, 1, 0);
    /* a key spec before any command */
    tg_redis_table *t = tg_redis_table_new();
    assert_int_equal(tg_redis_table_add_keyspec(t, &k), TG_EINVAL);
    assert_int_equal(tg_redis_table_add_command(t, tg_slice_str("get"), 2, 0, 0), TG_EINVAL);
    assert_int_equal(tg_redis_table_seal(t), TG_EINVAL);
    tg_redis_table_free(t);
    /* a subcommand before its container, odd names */
    static const char *const bad[] = {"x|y", "", "a b", "|a", "a|", "a||b", "a\x01"};
    for (size_t i = 0; i < COUNT(bad); i++) {
        t = tg_redis_table_new();
        assert_int_equal(tg_redis_table_add_command(t, tg_slice_str(bad[i]), 1, 0, 0), TG_EINVAL);
        assert_int_equal(tg_redis_table_seal(t), TG_EINVAL);
        tg_redis_table_free(t);
    }
    /* a subcommand of a subcommand */
    t = tg_redis_table_new();
    assert_int_equal(tg_redis_table_add_command(t, tg_slice_str("a"), -2, 0, 0), 0);
    assert_int_equal(tg_redis_table_add_command(t, tg_slice_str("a|b"), -2, 0, 0), 0);
    assert_int_equal(tg_redis_table_add_command(t, tg_slice_str("a|b|c"), -2, 0, 0), TG_EINVAL);
    tg_redis_table_free(t);
    /* duplicates (any case) */
    t = tg_redis_table_new();
    assert_int_equal(tg_redis_table_add_command(t, tg_slice_str("get"), 2, 0, 0), 0);
    assert_int_equal(tg_redis_table_add_command(t, tg_slice_str("GET"), 2, 0, 0), 0);
    assert_int_equal(tg_redis_table_seal(t), TG_EINVAL);
    tg_redis_table_free(t);
    /* seal twice */
    t = tg_redis_table_new();
    assert_int_equal(tg_redis_table_seal(t), 0);
    assert_int_equal(tg_redis_table_seal(t), TG_EINVAL);
    tg_redis_table_free(t);
    assert_int_equal(tg_redis_table_seal(NULL), TG_EINVAL);
    tg_redis_table_free(NULL);
}

static void test_flag_names(void **state)
{
    (void)state;
    assert_int_equal(tg_redis_cmd_flag(tg_slice_str("write")), TG_REDIS_CMD_WRITE);
    assert_int_equal(tg_redis_cmd_flag(tg_slice_str("MOVABLEKEYS")), TG_REDIS_CMD_MOVABLEKEYS);
    assert_int_equal(tg_redis_cmd_flag(tg_slice_str("nope")), 0);
    assert_int_equal(tg_redis_acl_flag(tg_slice_str("@dangerous")), TG_REDIS_ACL_DANGEROUS);
    assert_int_equal(tg_redis_acl_flag(tg_slice_str("keyspace")), TG_REDIS_ACL_KEYSPACE);
    assert_int_equal(tg_redis_acl_flag(tg_slice_str("@")), 0);
    assert_int_equal(tg_redis_ks_flag(tg_slice_str("RO")), TG_REDIS_KS_RO);
    assert_int_equal(tg_redis_ks_flag(tg_slice_str("incomplete")), TG_REDIS_KS_INCOMPLETE);
    assert_int_equal(tg_redis_ks_flag(tg_slice_str("not_key")), TG_REDIS_KS_NOT_KEY);
    assert_int_equal(tg_redis_ks_flag(tg_slice_str("")), 0);
    assert_string_equal(tg_redis_verdict_name(TG_REDIS_DENY), "deny");
    assert_string_equal(tg_redis_verdict_name((tg_redis_verdict_kind)99), "?");
    assert_string_equal(tg_redis_reply_name(TG_REDIS_REPLY_XREAD), "xread");
    assert_string_equal(tg_redis_local_name(TG_REDIS_LOCAL_RESET), "reset");
    assert_string_equal(tg_redis_append_name(TG_REDIS_APPEND_MATCH), "match");
    assert_int_equal(tg_redis_role_letter(TG_REDIS_ARG_KEY_PATTERN), 's');
    assert_int_equal(tg_redis_role_letter((tg_redis_arg_role)42), '?');
}

/* ---- helpers ----------------------------------------------------------------------------- */

static void expect_escape(const char *in, const char *want)
{
    uint8_t out[64];
    size_t n = tg_redis_escape_glob(tg_slice_str(in), out, sizeof(out));
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
    assert_int_equal(tg_redis_escape_glob(tg_slice_str(in), NULL, 0), strlen(want));
}

static void test_escape_glob(void **state)
{
    (void)state;
    expect_escape("t:{acme}:", "t:{acme}:");
    expect_escape("", "");
    expect_escape("t:a*b:", "t:a\\*b:");
    expect_escape("t:?:", "t:\\?:");
    expect_escape("t:[x]:", "t:\\[x\\]:");
    expect_escape("t:\\:", "t:\\\\:");
    expect_escape("*?[]\\", "\\*\\?\\[\\]\\\\");
    expect_escape("^-!", "^-!"); /* special only inside brackets */
    /* too small: nothing written, the size returned */
    uint8_t out[4] = {'X', 'X', 'X', 'X'};
    assert_int_equal(tg_redis_escape_glob(tg_slice_str("a*b"), out, 3), 4);
    assert_memory_equal(out, "XXXX", 4);
}

static void test_strip_and_push(void **state)
{
    (void)state;
    tg_slice rest;
    tg_slice p = tg_slice_str("t:{acme}:");
    assert_true(tg_redis_strip_prefix(tg_slice_str("t:{acme}:k"), p, &rest));
    assert_int_equal(rest.len, 1);
    assert_memory_equal(rest.base, "k", 1);
    assert_true(tg_redis_strip_prefix(tg_slice_str("t:{acme}:"), p, &rest));
    assert_int_equal(rest.len, 0);
    assert_false(tg_redis_strip_prefix(tg_slice_str("t:{other}:k"), p, &rest));
    assert_false(tg_redis_strip_prefix(tg_slice_str("t:"), p, NULL));
    assert_true(tg_redis_strip_prefix(tg_slice_str("x"), tg_slice_str(""), NULL));

    int ch, pat;
    assert_true(tg_redis_push_roles(tg_slice_str("message"), &ch, &pat));
    assert_int_equal(ch, 1);
    assert_int_equal(pat, -1);
    assert_true(tg_redis_push_roles(tg_slice_str("pmessage"), &ch, &pat));
    assert_int_equal(ch, 2);
    assert_int_equal(pat, 1);
    assert_true(tg_redis_push_roles(tg_slice_str("smessage"), &ch, &pat));
    assert_int_equal(ch, 1);
    assert_true(tg_redis_push_roles(tg_slice_str("subscribe"), &ch, &pat));
    assert_int_equal(ch, 1);
    assert_true(tg_redis_push_roles(tg_slice_str("sunsubscribe"), &ch, &pat));
    assert_int_equal(ch, 1);
    assert_true(tg_redis_push_roles(tg_slice_str("psubscribe"), &ch, &pat));
    assert_int_equal(ch, -1);
    assert_int_equal(pat, 1);
    assert_true(tg_redis_push_roles(tg_slice_str("punsubscribe"), &ch, &pat));
    assert_int_equal(pat, 1);
    assert_false(tg_redis_push_roles(tg_slice_str("pong"), &ch, &pat));
    assert_int_equal(ch, -1);
    assert_int_equal(pat, -1);
    assert_false(tg_redis_push_roles(tg_slice_str("MESSAGE"), &ch, &pat));
    assert_false(tg_redis_push_roles(tg_slice_str("invalidate"), &ch, &pat));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_extraction),
        cmocka_unit_test(test_rewrite_kinds),
        cmocka_unit_test(test_local),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_refused_with_scripts),
        cmocka_unit_test(test_scripts_allowed),
        cmocka_unit_test(test_acl_grants),
        cmocka_unit_test(test_sort_star_prefix),
        cmocka_unit_test(test_case_insensitive),
        cmocka_unit_test(test_builtin_table),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_builder),
        cmocka_unit_test(test_builder_errors),
        cmocka_unit_test(test_flag_names),
        cmocka_unit_test(test_escape_glob),
        cmocka_unit_test(test_strip_and_push),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
