/*
 * The Redis command policy (see redis_policy.h for the contract).
 *
 *   builder rows ──seal──> every command bound to one policy rule:
 *       listed by name in rules[] (a subcommand of a refused container inherits the refusal)
 *       else default: admin / module / @dangerous / @admin / pubsub / @scripting /
 *                     @connection / no key spec ──> DENY;  otherwise ──> KEYS (forward,
 *                     keys from specs). Module commands are refused because a module's key
 *                     specs need not cover what it reads (a search index spans key prefixes).
 *       a rule that needs keys on a command without key specs ──> DENY
 *       flagged UNVETTED by a reply parser ──> DENY
 *   seal_vetted (a live server's table, checked against the built-in one):
 *       not in the built-in table and no rule names it ──> DENY (UNVETTED)
 *       refused by the built-in table ──> refused;  container in one table only ──> DENY
 *       otherwise the rule bound as above, with the server's flags and key specs
 *
 *   judge: argv[0] (+ argv[1] for a container) ──FNV-1a, case-folded──> open-addressing
 *          index ──> arity ──> switch (rule kind) ──> roles[argc] + verdict
 *
 * Key specs are resolved as Redis's getKeysUsingKeySpecs() does (db.c), with
 * four deliberate differences, all on the refusing side or where Redis itself
 * falls back to the command's own key finder:
 *   - a keynum spec with a keystep other than 1 is refused (Redis 7.0 ends it at
 *     first + numkeys - 1 whatever the step; no built-in command has one);
 *   - a keynum whose numkeys argument lies past argc is an error (Redis checks
 *     keynumidx alone against argc, then reads first + keynumidx);
 *   - numkeys 0 yields no keys (Redis's spec walk calls it invalid and falls
 *     back to the command's getkeys proc, which returns no keys: EVAL s 0);
 *   - INCOMPLETE, UNKNOWN and unresolvable specs refuse the command unless its
 *     rule is a handler that does not use the specs (SORT, GEORADIUS...).
 *
 * Handlers exist where the key specs do not say everything Redis does:
 *   KEYS / SCAN        the pattern gets the escaped prefix; SCAN without MATCH gets one
 *   SORT / SORT_RO     STORE targets are keys (every one: Redis keeps the last);
 *                      BY/GET templates get the prefix (not "#")
 *   GEORADIUS(BYMEMBER) STORE/STOREDIST parsed as Redis does: every target (Redis
 *                      keeps the last; the key spec finds only the first)
 *   XREAD(GROUP)       options parsed as xreadCommand up to the real STREAMS token (the
 *                      key spec's keyword search can stop at a group or consumer named
 *                      "STREAMS": XREADGROUP COUNT 1 GROUP STREAMS c STREAMS key >)
 *   COPY               refused with DB
 *   SELECT             0 only, answered locally
 *   pub/sub            channels and patterns from Redis's channel table (db.c
 *                      commands_with_channels), keyspace-notification names refused
 */
#include "policy/redis_policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

#include "proxy/error.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Longest command or keyword name the builder accepts. */
#define NAME_MAX_LEN 64

/* ---- policy rules (data) ----------------------------------------------------------------- */

/* X(NAME, "name"): what a rule does with a command. */
#define RULE_KIND_MAP(X)                                                                           \
    X(KEYS, "keys")                       /* forward; keys from the key specs */                   \
    X(DENY, "deny")                       /* refused */                                            \
    X(LOCAL, "local")                     /* answered by the session */                            \
    X(SCRIPT, "script")                   /* KEYS with allow_scripts, refused otherwise */         \
    X(SELECT, "select")                   /* SELECT 0: LOCAL; others refused */                    \
    X(KEYS_PATTERN, "keys-pattern")       /* KEYS pattern */                                       \
    X(SCAN, "scan")                       /* SCAN cursor [MATCH p] [COUNT n] [TYPE t] */           \
    X(SORT, "sort")                       /* SORT / SORT_RO options */                             \
    X(GEORADIUS, "georadius")             /* GEORADIUS(BYMEMBER) STORE / STOREDIST */              \
    X(COPY, "copy")                       /* COPY without DB */                                    \
    X(XREAD, "xread")                     /* XREAD / XREADGROUP (arg 1) options, then STREAMS */   \
    X(CHANNELS, "channels")               /* every argument from `arg` on is a channel */          \
    X(PATTERNS, "patterns")               /* every argument from 1 on is a pattern */              \
    X(PUBLISH, "publish")                 /* argument 1 is a channel */                            \
    X(PUBSUB_CHANNELS, "pubsub-channels") /* PUBSUB CHANNELS|SHARDCHANNELS [pattern] */

typedef enum {
#define RULE_ENUM(n, s) RULE_##n,
    RULE_KIND_MAP(RULE_ENUM)
#undef RULE_ENUM
} rule_kind;

static const char *const rule_names[] = {
#define RULE_NAME(n, s) s,
    RULE_KIND_MAP(RULE_NAME)
#undef RULE_NAME
};

typedef struct rule {
    const char *name; /* lowercase command or "container|sub"; NULL for the default rows */
    uint8_t kind;     /* rule_kind */
    uint8_t reply;    /* tg_redis_reply_kind */
    uint8_t arg;      /* LOCAL: tg_redis_local_kind; CHANNELS: index of the first channel */
    bool keyless;     /* allowed although the command has no key spec */
    const char *note; /* DENY: appended to "<NAME> is not allowed" */
} rule;

#define KEYLESS(n)                                                                                 \
    {                                                                                              \
        n, RULE_KEYS, TG_REDIS_REPLY_NONE, 0, true, NULL                                           \
    }
#define KEYED(n, reply)                                                                            \
    {                                                                                              \
        n, RULE_KEYS, TG_REDIS_REPLY_##reply, 0, false, NULL                                       \
    }
#define DENY(n, note)                                                                              \
    {                                                                                              \
        n, RULE_DENY, TG_REDIS_REPLY_NONE, 0, true, note                                           \
    }
#define LOCAL(n, kind)                                                                             \
    {                                                                                              \
        n, RULE_LOCAL, TG_REDIS_REPLY_NONE, TG_REDIS_LOCAL_##kind, true, NULL                      \
    }
#define SPECIAL(n, kind, reply, arg, keyless)                                                      \
    {                                                                                              \
        n, RULE_##kind, TG_REDIS_REPLY_##reply, arg, keyless, NULL                                 \
    }

#define N_ADMIN "server administration"
#define N_ALL_KEYS "it sees every tenant's keys"
#define N_OTHER_DB "databases other than 0 are not available"
#define N_CLIENTS "it affects other clients"
#define N_TRACKING "client-side caching is not available"
#define N_REPL "replication and cluster control"
#define N_PERSIST "persistence control"
#define N_SCRIPTS "scripts and functions are shared by every tenant"

enum { RULE_DEFAULT_KEYS, RULE_DEFAULT_DENY, RULE_NO_SPECS, RULE_UNVETTED, RULE_FIRST_NAMED };

static const rule rules[] = {
    /* the default rows: bound by seal() to commands not listed below */
    [RULE_DEFAULT_KEYS] = {NULL, RULE_KEYS, TG_REDIS_REPLY_NONE, 0, false, NULL},
    [RULE_DEFAULT_DENY] = {NULL, RULE_DENY, TG_REDIS_REPLY_NONE, 0, true, NULL},
    [RULE_NO_SPECS] = {NULL, RULE_DENY, TG_REDIS_REPLY_NONE, 0, true, "no key specs known"},
    [RULE_UNVETTED] = {NULL, RULE_DENY, TG_REDIS_REPLY_NONE, 0, true,
                       "tenantgate has no rule for it"},

    /* ---- answered by the session ---- */
    LOCAL("auth", AUTH),
    LOCAL("hello", HELLO),
    LOCAL("reset", RESET),
    LOCAL("quit", QUIT),
    SPECIAL("select", SELECT, NONE, 0, true),

    /* ---- harmless commands without keys ---- */
    KEYLESS("ping"),
    KEYLESS("echo"),
    KEYLESS("time"),
    KEYLESS("lolwut"),
    KEYLESS("multi"),
    KEYLESS("exec"),
    KEYLESS("discard"),
    KEYLESS("unwatch"),
    KEYLESS("command"), /* the server's command table: nothing tenant-specific */
    KEYLESS("command|count"),
    KEYLESS("command|docs"),
    KEYLESS("command|info"),
    KEYLESS("command|list"),
    KEYLESS("command|getkeys"), /* forwarded unprefixed: the reply names what was sent */
    KEYLESS("command|getkeysandflags"),
    KEYLESS("command|help"),
    KEYLESS("client|getname"),
    KEYLESS("client|setname"),
    KEYLESS("client|setinfo"), /* Redis 7.2: library name/version of this connection */
    KEYLESS("client|id"),
    KEYLESS("client|help"),
    KEYLESS("object|help"),
    KEYLESS("xinfo|help"),
    KEYLESS("xgroup|help"),
    KEYLESS("pubsub|help"),
    KEYLESS("memory|help"),

    /* ---- keyed commands whose replies name keys ---- */
    KEYED("blpop", FIRST_KEY),
    KEYED("brpop", FIRST_KEY),
    KEYED("bzpopmin", FIRST_KEY),
    KEYED("bzpopmax", FIRST_KEY),
    KEYED("lmpop", FIRST_KEY),
    KEYED("blmpop", FIRST_KEY),
    KEYED("zmpop", FIRST_KEY),
    KEYED("bzmpop", FIRST_KEY),

    /* ---- handlers ---- */
    SPECIAL("keys", KEYS_PATTERN, KEYS, 0, true),
    SPECIAL("scan", SCAN, SCAN, 0, true),
    SPECIAL("sort", SORT, NONE, 0, false),    /* GET results are values: nothing to strip */
    SPECIAL("sort_ro", SORT, NONE, 0, false), /* (@dangerous: BY/GET reach other keys) */
    SPECIAL("georadius", GEORADIUS, NONE, 0, false),
    SPECIAL("georadiusbymember", GEORADIUS, NONE, 0, false),
    SPECIAL("copy", COPY, NONE, 0, false),
    SPECIAL("xread", XREAD, XREAD, 0, false),
    SPECIAL("xreadgroup", XREAD, XREAD, 1, false),
    SPECIAL("subscribe", CHANNELS, PUBSUB, 1, true),
    SPECIAL("ssubscribe", CHANNELS, PUBSUB, 1, true),
    SPECIAL("unsubscribe", CHANNELS, PUBSUB, 1, true),
    SPECIAL("sunsubscribe", CHANNELS, PUBSUB, 1, true),
    SPECIAL("psubscribe", PATTERNS, PUBSUB, 1, true),
    SPECIAL("punsubscribe", PATTERNS, PUBSUB, 1, true),
    SPECIAL("publish", PUBLISH, NONE, 0, true),
    SPECIAL("spublish", PUBLISH, NONE, 0, true),
    SPECIAL("pubsub|channels", PUBSUB_CHANNELS, CHANNELS, 0, true),
    SPECIAL("pubsub|shardchannels", PUBSUB_CHANNELS, CHANNELS, 0, true),
    SPECIAL("pubsub|numsub", CHANNELS, NUMSUB, 2, true),
    SPECIAL("pubsub|shardnumsub", CHANNELS, NUMSUB, 2, true),

    /*
     * ---- scripts: only with allow_scripts (per-tenant ACL user on the backend) ----
     * A script runs as the connection's ACL user, so Redis checks every key and channel it
     * touches against the tenant's prefix, and every command against the user's grants
     * (tg_redis_acl_grants). What stays refused acts on the server-wide script cache and
     * function libraries, which every tenant shares: SCRIPT FLUSH would drop every tenant's
     * cached scripts, SCRIPT KILL / FUNCTION KILL stop whichever tenant's script runs,
     * FUNCTION LOAD / DELETE / FLUSH / RESTORE replace or remove the libraries every tenant
     * calls, FUNCTION STATS shows the running function's name and arguments (another
     * tenant's keys), FUNCTION DUMP is the libraries' code. Libraries are loaded by the
     * operator (as the service user); tenants FCALL them and may list them.
     */
    SPECIAL("eval", SCRIPT, NONE, 0, false),
    SPECIAL("evalsha", SCRIPT, NONE, 0, false),
    SPECIAL("eval_ro", SCRIPT, NONE, 0, false),
    SPECIAL("evalsha_ro", SCRIPT, NONE, 0, false),
    SPECIAL("fcall", SCRIPT, NONE, 0, false),
    SPECIAL("fcall_ro", SCRIPT, NONE, 0, false),
    SPECIAL("script|load", SCRIPT, NONE, 0, true),
    SPECIAL("script|exists", SCRIPT, NONE, 0, true),
    SPECIAL("script|help", SCRIPT, NONE, 0, true),
    SPECIAL("function|list", SCRIPT, NONE, 0, true),
    SPECIAL("function|help", SCRIPT, NONE, 0, true),
    DENY("script|flush", N_SCRIPTS),
    DENY("script|kill", N_SCRIPTS),
    DENY("script|debug", N_SCRIPTS),
    DENY("function|stats", "it shows other clients' running functions"),
    DENY("function", N_SCRIPTS), /* libraries are server-wide: every other subcommand */

    /* ---- refused: the whole keyspace, other databases, other servers ---- */
    DENY("flushall", "it empties every tenant's data"),
    DENY("flushdb", "it empties every tenant's data"),
    DENY("swapdb", N_OTHER_DB),
    DENY("move", N_OTHER_DB),
    DENY("migrate", "it moves keys to another server"),
    DENY("randomkey", N_ALL_KEYS),
    DENY("dbsize", N_ALL_KEYS),
    DENY("restore", "a crafted payload can crash the server"),
    DENY("restore-asking", "a crafted payload can crash the server"),
    DENY("pubsub|numpat", "it counts every tenant's patterns"),

    /* ---- refused: server administration, other clients, replication ---- */
    DENY("info", N_ADMIN),
    DENY("config", N_ADMIN),
    DENY("debug", N_ADMIN),
    DENY("module", N_ADMIN),
    DENY("shutdown", N_ADMIN),
    DENY("acl", N_ADMIN),
    DENY("slowlog", N_ADMIN),
    DENY("latency", N_ADMIN),
    DENY("role", N_ADMIN),
    DENY("pfselftest", N_ADMIN),
    DENY("pfdebug", N_ADMIN),
    DENY("memory|stats", N_ADMIN),
    DENY("memory|doctor", N_ADMIN),
    DENY("memory|malloc-stats", N_ADMIN),
    DENY("memory|purge", N_ADMIN),
    DENY("monitor", "it sees every client's commands"),
    DENY("client|list", N_CLIENTS),
    DENY("client|info", N_ADMIN),
    DENY("client|kill", N_CLIENTS),
    DENY("client|pause", N_CLIENTS),
    DENY("client|unpause", N_CLIENTS),
    DENY("client|unblock", N_CLIENTS),
    DENY("client|no-evict", N_CLIENTS),
    DENY("client|reply", "it would break the order of replies"),
    DENY("client|tracking", N_TRACKING),
    DENY("client|trackinginfo", N_TRACKING),
    DENY("client|caching", N_TRACKING),
    DENY("client|getredir", N_TRACKING),
    DENY("replicaof", N_REPL),
    DENY("slaveof", N_REPL),
    DENY("sync", N_REPL),
    DENY("psync", N_REPL),
    DENY("replconf", N_REPL),
    DENY("failover", N_REPL),
    DENY("cluster", N_REPL),
    DENY("readonly", N_REPL),
    DENY("readwrite", N_REPL),
    DENY("asking", N_REPL),
    DENY("wait", N_REPL),
    DENY("waitaof", N_REPL),
    DENY("lastsave", N_PERSIST),
    DENY("save", N_PERSIST),
    DENY("bgsave", N_PERSIST),
    DENY("bgrewriteaof", N_PERSIST),
};

static const rule *find_rule(const char *name)
{
    for (size_t i = RULE_FIRST_NAMED; i < COUNT(rules); i++)
        if (strcmp(rules[i].name, name) == 0)
            return &rules[i];
    return NULL;
}

/* ---- names of flags and enums ------------------------------------------------------------ */

static inline uint8_t fold(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
}

/* a (any case) equals the lowercase or mixed-case NUL-terminated s, ignoring ASCII case. */
static bool eq_ci(tg_slice a, const char *s)
{
    size_t i = 0;
    for (; i < a.len; i++) {
        if (s[i] == '\0' || fold(a.base[i]) != fold((uint8_t)s[i]))
            return false;
    }
    return s[i] == '\0';
}

typedef struct flag_name {
    const char *name;
    uint32_t bit;
} flag_name;

static const flag_name cmd_flag_names[] = {
#define TG_REDIS_NAME(n, s) {s, TG_REDIS_CMD_##n},
    TG_REDIS_CMD_FLAG_MAP(TG_REDIS_NAME)
#undef TG_REDIS_NAME
};
static const flag_name acl_names[] = {
#define TG_REDIS_NAME(n, s) {s, TG_REDIS_ACL_##n},
    TG_REDIS_ACL_MAP(TG_REDIS_NAME)
#undef TG_REDIS_NAME
};
static const flag_name ks_flag_names[] = {
#define TG_REDIS_NAME(n, s) {s, TG_REDIS_KS_##n},
    TG_REDIS_KS_FLAG_MAP(TG_REDIS_NAME)
#undef TG_REDIS_NAME
};

static uint32_t flag_lookup(const flag_name *names, size_t n, tg_slice name)
{
    for (size_t i = 0; i < n; i++)
        if (eq_ci(name, names[i].name))
            return names[i].bit;
    return 0;
}

uint32_t tg_redis_cmd_flag(tg_slice name)
{
    return flag_lookup(cmd_flag_names, COUNT(cmd_flag_names), name);
}

uint32_t tg_redis_acl_flag(tg_slice name)
{
    if (name.len > 0 && name.base[0] == '@') {
        name.base++;
        name.len--;
    }
    return flag_lookup(acl_names, COUNT(acl_names), name);
}

uint32_t tg_redis_ks_flag(tg_slice name)
{
    return flag_lookup(ks_flag_names, COUNT(ks_flag_names), name);
}

static const char *const verdict_names[] = {
#define TG_REDIS_NAME(n, s) s,
    TG_REDIS_VERDICT_MAP(TG_REDIS_NAME)
#undef TG_REDIS_NAME
};
static const char *const reply_names[] = {
#define TG_REDIS_NAME(n, s) s,
    TG_REDIS_REPLY_MAP(TG_REDIS_NAME)
#undef TG_REDIS_NAME
};
static const char *const local_names[] = {
#define TG_REDIS_NAME(n, s) s,
    TG_REDIS_LOCAL_MAP(TG_REDIS_NAME)
#undef TG_REDIS_NAME
};
static const char *const append_names[] = {
#define TG_REDIS_NAME(n, s) s,
    TG_REDIS_APPEND_MAP(TG_REDIS_NAME)
#undef TG_REDIS_NAME
};
static const char role_letters[] = {
#define TG_REDIS_NAME(n, c) c,
    TG_REDIS_ROLE_MAP(TG_REDIS_NAME)
#undef TG_REDIS_NAME
};

#define NAME_OF(arr, k) (((unsigned)(k) < COUNT(arr)) ? (arr)[k] : "?")

const char *tg_redis_verdict_name(tg_redis_verdict_kind k)
{
    return NAME_OF(verdict_names, k);
}

const char *tg_redis_reply_name(tg_redis_reply_kind k)
{
    return NAME_OF(reply_names, k);
}

const char *tg_redis_local_name(tg_redis_local_kind k)
{
    return NAME_OF(local_names, k);
}

const char *tg_redis_append_name(tg_redis_append_kind k)
{
    return NAME_OF(append_names, k);
}

char tg_redis_role_letter(tg_redis_arg_role r)
{
    return ((unsigned)r < COUNT(role_letters)) ? role_letters[r] : '?';
}

/* ---- the table and its builder ----------------------------------------------------------- */

struct tg_redis_table {
    tg_redis_command *cmds; /* insertion order */
    uint32_t *first_spec;   /* per command: index of its first spec in specs (until seal) */
    uint32_t ncmds, cmds_cap;
    tg_redis_keyspec *specs;
    uint32_t nspecs, specs_cap;
    uint32_t *slots; /* open addressing: command index + 1, 0 = empty */
    uint32_t mask;   /* slots - 1 (a power of two minus one) */
    int failed;      /* sticky: first builder error */
    bool sealed;
};

#define FNV_BASIS 2166136261u
#define FNV_PRIME 16777619u

static inline uint32_t fnv_fold(uint32_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ fold(p[i])) * FNV_PRIME;
    return h;
}

tg_redis_table *tg_redis_table_new(void)
{
    return calloc(1, sizeof(tg_redis_table));
}

void tg_redis_table_free(tg_redis_table *t)
{
    if (!t)
        return;
    for (uint32_t i = 0; i < t->ncmds; i++)
        free((char *)t->cmds[i].name);
    for (uint32_t i = 0; i < t->nspecs; i++)
        free((char *)t->specs[i].keyword);
    free(t->cmds);
    free(t->first_spec);
    free(t->specs);
    free(t->slots);
    free(t);
}

static int fail(tg_redis_table *t, int err)
{
    if (!t->failed)
        t->failed = err;
    return err;
}

/* Index of the command named exactly (lowercase) name[0..len), or -1. Builder only. */
static int64_t find_linear(const tg_redis_table *t, const char *name, size_t len)
{
    for (uint32_t i = 0; i < t->ncmds; i++)
        if (t->cmds[i].name_len == len && memcmp(t->cmds[i].name, name, len) == 0)
            return i;
    return -1;
}

int tg_redis_table_add_command(tg_redis_table *t, tg_slice name, int32_t arity, uint32_t flags,
                               uint32_t acl)
{
    if (t->sealed)
        return fail(t, TG_EINVAL);
    if (t->failed)
        return t->failed;
    if (name.len == 0 || name.len > NAME_MAX_LEN)
        return fail(t, TG_EINVAL);
    char lower[NAME_MAX_LEN + 1];
    size_t bar = 0;
    for (size_t i = 0; i < name.len; i++) {
        uint8_t c = fold(name.base[i]);
        if (c <= ' ' || c >= 0x7f)
            return fail(t, TG_EINVAL);
        if (c == '|') {
            if (bar || i == 0 || i + 1 == name.len)
                return fail(t, TG_EINVAL); /* one '|', inside the name */
            bar = i;
        }
        lower[i] = (char)c;
    }
    lower[name.len] = '\0';
    if (bar) {
        int64_t parent = find_linear(t, lower, bar);
        if (parent < 0 || strchr(t->cmds[parent].name, '|'))
            return fail(t, TG_EINVAL);
        t->cmds[parent].container = true;
    }
    if (t->ncmds == t->cmds_cap) {
        uint32_t cap = t->cmds_cap ? t->cmds_cap * 2 : 256;
        tg_redis_command *c = realloc(t->cmds, cap * sizeof(*c));
        if (!c)
            return fail(t, TG_ENOMEM);
        t->cmds = c;
        uint32_t *f = realloc(t->first_spec, cap * sizeof(*f));
        if (!f)
            return fail(t, TG_ENOMEM);
        t->first_spec = f;
        t->cmds_cap = cap;
    }
    char *copy = malloc(name.len + 1);
    if (!copy)
        return fail(t, TG_ENOMEM);
    memcpy(copy, lower, name.len + 1);
    t->first_spec[t->ncmds] = t->nspecs;
    t->cmds[t->ncmds++] = (tg_redis_command){
        .name = copy,
        .name_len = (uint32_t)name.len,
        .arity = arity,
        .flags = flags,
        .acl = acl,
    };
    return 0;
}

/* True when Redis itself would accept the spec's numbers for a command (sub: a subcommand). */
static bool spec_sane(const tg_redis_keyspec *ks, bool sub)
{
    int32_t min_index = sub ? 2 : 1; /* never the command or subcommand name */
    switch (ks->bs) {
    case TG_REDIS_BS_INDEX:
        if (ks->index < min_index)
            return false;
        break;
    case TG_REDIS_BS_KEYWORD:
        if (ks->startfrom == 0 || (ks->startfrom > 0 && ks->startfrom < min_index) ||
            !ks->keyword || ks->keyword[0] == '\0' || strlen(ks->keyword) > NAME_MAX_LEN)
            return false;
        break;
    default:
        return true; /* UNKNOWN: kept, refuses the command */
    }
    switch (ks->fk) {
    case TG_REDIS_FK_RANGE:
        return ks->keystep >= 1 && ks->limit >= 0 && (ks->limit == 0 || ks->lastkey == -1);
    case TG_REDIS_FK_KEYNUM:
        /*
         * keystep > 1: Redis 7.0 still ends at first + numkeys - 1, so keys the
         * command reads further on would go unprefixed. No built-in command has it.
         */
        return ks->keystep == 1 && ks->keynumidx >= 0 && ks->firstkey >= 0 &&
               ks->keynumidx < 0x10000 && ks->firstkey < 0x10000;
    default:
        return true;
    }
}

int tg_redis_table_add_keyspec(tg_redis_table *t, const tg_redis_keyspec *ks)
{
    if (t->sealed || t->ncmds == 0)
        return fail(t, TG_EINVAL);
    if (t->failed)
        return t->failed;
    if (t->nspecs == t->specs_cap) {
        uint32_t cap = t->specs_cap ? t->specs_cap * 2 : 256;
        tg_redis_keyspec *s = realloc(t->specs, cap * sizeof(*s));
        if (!s)
            return fail(t, TG_ENOMEM);
        t->specs = s;
        t->specs_cap = cap;
    }
    tg_redis_command *c = &t->cmds[t->ncmds - 1];
    tg_redis_keyspec s = *ks;
    s.keyword = NULL;
    if (!spec_sane(ks, strchr(c->name, '|') != NULL)) {
        s = (tg_redis_keyspec){
            .bs = TG_REDIS_BS_UNKNOWN, .fk = TG_REDIS_FK_UNKNOWN, .flags = ks->flags};
    } else if (ks->bs == TG_REDIS_BS_KEYWORD) {
        size_t n = strlen(ks->keyword);
        char *kw = malloc(n + 1);
        if (!kw)
            return fail(t, TG_ENOMEM);
        memcpy(kw, ks->keyword, n + 1);
        s.keyword = kw;
    }
    if (s.bs != TG_REDIS_BS_KEYWORD)
        s.startfrom = 0;
    t->specs[t->nspecs++] = s;
    c->nspecs++;
    return 0;
}

/* The rule of command c (lowercase name), by name or by the server's flags. */
static uint16_t bind_rule(const tg_redis_table *t, const tg_redis_command *c)
{
    if (c->flags & TG_REDIS_CMD_UNVETTED)
        return RULE_UNVETTED;
    const rule *r = find_rule(c->name);
    if (!r) {
        const char *bar = strchr(c->name, '|');
        if (bar) {
            int64_t parent = find_linear(t, c->name, (size_t)(bar - c->name));
            const rule *pr = parent >= 0 ? find_rule(t->cmds[parent].name) : NULL;
            if (pr && pr->kind == RULE_DENY)
                r = pr; /* a subcommand of a refused container */
        }
    }
    bool has_keys = false;
    for (uint32_t i = 0; i < c->nspecs; i++)
        if (!(c->specs[i].flags & TG_REDIS_KS_NOT_KEY))
            has_keys = true;
    if (!r) {
        if ((c->flags & (TG_REDIS_CMD_ADMIN | TG_REDIS_CMD_PUBSUB | TG_REDIS_CMD_MODULE)) ||
            (c->acl & (TG_REDIS_ACL_ADMIN | TG_REDIS_ACL_DANGEROUS | TG_REDIS_ACL_PUBSUB |
                       TG_REDIS_ACL_SCRIPTING | TG_REDIS_ACL_CONNECTION)) ||
            !has_keys)
            return RULE_DEFAULT_DENY;
        return RULE_DEFAULT_KEYS;
    }
    if (!r->keyless && !has_keys)
        return RULE_NO_SPECS;
    return (uint16_t)(r - rules);
}

/* The command named exactly (lowercase) name in a sealed table, or NULL. */
static const tg_redis_command *find_sealed(const tg_redis_table *t, const char *name, size_t len)
{
    uint32_t h = fnv_fold(FNV_BASIS, (const uint8_t *)name, len) & t->mask;
    for (uint32_t s; (s = t->slots[h]) != 0; h = (h + 1) & t->mask) {
        const tg_redis_command *c = &t->cmds[s - 1];
        if (c->name_len == len && memcmp(c->name, name, len) == 0)
            return c;
    }
    return NULL;
}

/* The rule of c in a table checked against vetted (see tg_redis_table_seal_vetted). */
static uint16_t bind_vetted(const tg_redis_table *t, const tg_redis_command *c,
                            const tg_redis_table *vetted)
{
    uint16_t r = bind_rule(t, c);
    if (!vetted || r == RULE_UNVETTED)
        return r;
    const tg_redis_command *v = find_sealed(vetted, c->name, c->name_len);
    if (!v)
        return find_rule(c->name) ? r : RULE_UNVETTED;
    if (v->container != c->container)
        return RULE_UNVETTED;
    if (rules[v->rule].kind == RULE_DENY && rules[r].kind != RULE_DENY)
        return v->rule; /* refused as tenantgate knows it: the server's flags do not lift that */
    return r;
}

static int seal(tg_redis_table *t, const tg_redis_table *vetted, bool check)
{
    if (!t)
        return TG_EINVAL;
    if (check && vetted && !vetted->sealed)
        return fail(t, TG_EINVAL);
    if (t->sealed || t->failed)
        return t->failed ? t->failed : TG_EINVAL;
    uint32_t nslots = 16;
    while (nslots < t->ncmds * 2u)
        nslots *= 2;
    t->slots = calloc(nslots, sizeof(*t->slots));
    if (!t->slots)
        return fail(t, TG_ENOMEM);
    t->mask = nslots - 1;
    for (uint32_t i = 0; i < t->ncmds; i++) {
        tg_redis_command *c = &t->cmds[i];
        c->specs = c->nspecs ? &t->specs[t->first_spec[i]] : NULL;
        uint32_t h = fnv_fold(FNV_BASIS, (const uint8_t *)c->name, c->name_len) & t->mask;
        while (t->slots[h]) {
            const tg_redis_command *o = &t->cmds[t->slots[h] - 1];
            if (o->name_len == c->name_len && memcmp(o->name, c->name, c->name_len) == 0)
                return fail(t, TG_EINVAL); /* duplicate */
            h = (h + 1) & t->mask;
        }
        t->slots[h] = i + 1;
    }
    for (uint32_t i = 0; i < t->ncmds; i++)
        t->cmds[i].rule = check ? bind_vetted(t, &t->cmds[i], vetted) : bind_rule(t, &t->cmds[i]);
    t->sealed = true;
    return 0;
}

int tg_redis_table_seal(tg_redis_table *t)
{
    return seal(t, NULL, false);
}

int tg_redis_table_seal_vetted(tg_redis_table *t, const tg_redis_table *vetted)
{
    return seal(t, vetted, true);
}

uint32_t tg_redis_table_count(const tg_redis_table *t)
{
    return t ? t->ncmds : 0;
}

const tg_redis_command *tg_redis_table_at(const tg_redis_table *t, uint32_t i)
{
    return (t && t->sealed && i < t->ncmds) ? &t->cmds[i] : NULL;
}

const char *tg_redis_rule_name(const tg_redis_command *c)
{
    if (!c || c->rule >= COUNT(rules))
        return "?";
    return rule_names[rules[c->rule].kind];
}

bool tg_redis_command_unvetted(const tg_redis_command *c)
{
    return c && c->rule == RULE_UNVETTED;
}

/* ---- the per-tenant ACL user ------------------------------------------------------------- */

/* Every key spec of c can be resolved the way Redis's ACL check resolves it (none INCOMPLETE). */
static bool specs_complete(const tg_redis_command *c)
{
    for (uint32_t i = 0; i < c->nspecs; i++) {
        const tg_redis_keyspec *s = &c->specs[i];
        if (s->bs == TG_REDIS_BS_UNKNOWN || s->fk == TG_REDIS_FK_UNKNOWN ||
            (s->flags & TG_REDIS_KS_INCOMPLETE))
            return false;
    }
    return true;
}

/*
 * With allow_scripts the backend connection is the tenant's ACL user, and a script
 * runs every command it calls as that user, past the proxy's policy. So the user gets
 * exactly the commands whose tenant scoping Redis's own ACL enforces as tightly as the
 * proxy does -- derived from the rules, never "+@all":
 *
 *   KEYS (keyed or a listed keyless one)  the proxy only prefixes the keys the key specs
 *                                         find, and Redis's ACL checks those same keys
 *                                         against ~prefix*; keyless ones touch no data
 *   SCRIPT                                EVAL*, FCALL*, SCRIPT LOAD|EXISTS|HELP, FUNCTION
 *                                         LIST|HELP (their KEYS are key specs too)
 *   PUBLISH, (S)SUBSCRIBE, (S)UNSUBSCRIBE Redis checks published and subscribed channels
 *                                         against &prefix* (unsubscribing touches only the
 *                                         connection's own subscriptions)
 *   XREAD / XREADGROUP                    see below
 *
 * and nothing else: not KEYS, SCAN, RANDOMKEY, DBSIZE (ACL key patterns do not filter
 * what they return), not pattern subscriptions nor PUBSUB (Redis checks PSUBSCRIBE
 * patterns literally and PUBSUB's channels not at all), not SORT / GEORADIUS(BYMEMBER) /
 * COPY (handlers: their key specs do not say everything the command touches -- Redis
 * 7.0 lets "GEORADIUS k .. STORE mine STORE theirs" write the last target after checking
 * only the first), not anything refused, local, admin or @dangerous. Containers are
 * never granted whole ("+client" would grant every subcommand, also ones a later server
 * adds): each subcommand is granted on its own.
 *
 * XREAD / XREADGROUP are handlers only because the key spec's keyword search can stop at
 * a group or consumer named STREAMS. Redis's ACL check then takes its "keys" from there,
 * and the range it checks always includes the next token after the consumer name: the
 * real STREAMS keyword, or an option (COUNT, BLOCK, NOACK) -- never a name under a key
 * prefix whose {tenant} is followed by a separator (required with allow_scripts). Such a
 * command is refused by Redis, never let through; XREAD's options before STREAMS are
 * integers, so its spec is exact.
 */
bool tg_redis_acl_grants(const tg_redis_command *c)
{
    if (!c || c->rule >= COUNT(rules) || c->container || (c->flags & TG_REDIS_CMD_MODULE))
        return false;
    const rule *r = &rules[c->rule];
    switch ((rule_kind)r->kind) {
    case RULE_KEYS:
    case RULE_SCRIPT:
        return specs_complete(c);
    case RULE_PUBLISH:
    case RULE_XREAD:
        return true;
    case RULE_CHANNELS: /* the subscribe family, not PUBSUB NUMSUB|SHARDNUMSUB */
        return r->reply == TG_REDIS_REPLY_PUBSUB;
    default:
        return false;
    }
}

/* ---- the built-in table ------------------------------------------------------------------ */

typedef struct builtin_cmd {
    const char *name;
    int32_t arity;
    uint32_t flags, acl;
    uint8_t nspecs;
} builtin_cmd;

#define C(x) TG_REDIS_CMD_##x
#define A(x) TG_REDIS_ACL_##x
#define K(x) TG_REDIS_KS_##x

static const builtin_cmd builtin_cmds[] = {
#define TG_REDIS_COMMAND(name, arity, flags, acl, nspecs) {name, arity, flags, acl, nspecs},
#define TG_REDIS_KEYSPEC(bs, bs_arg, kw, fk, a, b, c, flags)
#include "policy/redis_commands.def"
#undef TG_REDIS_COMMAND
#undef TG_REDIS_KEYSPEC
};

/* RANGE (lastkey, keystep, limit) and KEYNUM (keynumidx, firstkey, keystep) into named fields. */
#define FK_RANGE(a, b, c) .lastkey = (a), .keystep = (b), .limit = (c)
#define FK_KEYNUM(a, b, c) .keynumidx = (a), .firstkey = (b), .keystep = (c)
#define FK_UNKNOWN(a, b, c) .keystep = 0
#define BS_INDEX(x, kw) .index = (x)
#define BS_KEYWORD(x, kw) .startfrom = (x), .keyword = (kw)
#define BS_UNKNOWN(x, kw) .index = 0

static const tg_redis_keyspec builtin_specs[] = {
#define TG_REDIS_COMMAND(name, arity, flags, acl, nspecs)
#define TG_REDIS_KEYSPEC(bs_type, bs_arg, kw, fk_type, a, b, c, fl)                                \
    {.bs = TG_REDIS_BS_##bs_type,                                                                  \
     .fk = TG_REDIS_FK_##fk_type,                                                                  \
     .flags = (fl),                                                                                \
     BS_##bs_type(bs_arg, kw),                                                                     \
     FK_##fk_type(a, b, c)},
#include "policy/redis_commands.def"
#undef TG_REDIS_COMMAND
#undef TG_REDIS_KEYSPEC
};

#undef C
#undef A
#undef K

tg_redis_table *tg_redis_table_builtin(void)
{
    tg_redis_table *t = tg_redis_table_new();
    if (!t)
        return NULL;
    size_t s = 0;
    for (size_t i = 0; i < COUNT(builtin_cmds); i++) {
        const builtin_cmd *b = &builtin_cmds[i];
        (void)tg_redis_table_add_command(t, tg_slice_str(b->name), b->arity, b->flags, b->acl);
        for (uint8_t j = 0; j < b->nspecs && s < COUNT(builtin_specs); j++)
            (void)tg_redis_table_add_keyspec(t, &builtin_specs[s++]);
    }
    if (s != COUNT(builtin_specs) || tg_redis_table_seal(t) != 0) {
        tg_redis_table_free(t);
        return NULL;
    }
    return t;
}

/* ---- lookup ------------------------------------------------------------------------------ */

/* a (any case) equals the lowercase p[0..a.len). */
static inline bool eq_lower(tg_slice a, const char *p)
{
    for (size_t i = 0; i < a.len; i++)
        if (fold(a.base[i]) != (uint8_t)p[i])
            return false;
    return true;
}

static const tg_redis_command *lookup1(const tg_redis_table *t, tg_slice a)
{
    /* "object|encoding" names a subcommand in the table, never a command on the wire */
    if (a.len == 0 || a.len > NAME_MAX_LEN || memchr(a.base, '|', a.len))
        return NULL;
    uint32_t h = fnv_fold(FNV_BASIS, a.base, a.len) & t->mask;
    for (uint32_t s; (s = t->slots[h]) != 0; h = (h + 1) & t->mask) {
        const tg_redis_command *c = &t->cmds[s - 1];
        if (c->name_len == a.len && eq_lower(a, c->name))
            return c;
    }
    return NULL;
}

static const tg_redis_command *lookup2(const tg_redis_table *t, tg_slice a, tg_slice b)
{
    if (b.len == 0 || a.len + 1 + b.len > NAME_MAX_LEN)
        return NULL;
    static const uint8_t bar = '|';
    uint32_t h = fnv_fold(fnv_fold(fnv_fold(FNV_BASIS, a.base, a.len), &bar, 1), b.base, b.len);
    h &= t->mask;
    for (uint32_t s; (s = t->slots[h]) != 0; h = (h + 1) & t->mask) {
        const tg_redis_command *c = &t->cmds[s - 1];
        if (c->name_len == a.len + 1 + b.len && c->name[a.len] == '|' && eq_lower(a, c->name) &&
            eq_lower(b, c->name + a.len + 1))
            return c;
    }
    return NULL;
}

const tg_redis_command *tg_redis_lookup(const tg_redis_table *t, const tg_slice *argv,
                                        uint32_t argc)
{
    if (!t || !t->sealed || argc == 0)
        return NULL;
    const tg_redis_command *c = lookup1(t, argv[0]);
    if (c && c->container && argc >= 2)
        return lookup2(t, argv[0], argv[1]);
    return c;
}

/* ---- the judge --------------------------------------------------------------------------- */

void tg_redis_verdict_init(tg_redis_verdict *v, uint8_t *roles, uint32_t cap)
{
    /* Every field but the reason text, which only a denial fills: this runs per command. */
    memset(v, 0, offsetof(tg_redis_verdict, reason));
    v->reason[0] = '\0';
    v->roles = roles;
    v->roles_cap = cap;
}

/* The command's name for a reason: "OBJECT ENCODING". */
static void upper_name(const tg_redis_command *c, char *out, size_t cap)
{
    size_t i = 0;
    for (; i + 1 < cap && c->name[i]; i++) {
        char ch = c->name[i];
        out[i] = ch == '|' ? ' ' : (ch >= 'a' && ch <= 'z') ? (char)(ch - 32) : ch;
    }
    out[i] = '\0';
}

static tg_redis_verdict_kind deny(tg_redis_verdict *v, const char *text)
{
    v->kind = TG_REDIS_DENY;
    v->reply = TG_REDIS_REPLY_NONE;
    v->append = TG_REDIS_APPEND_NONE;
    v->nkeys = v->nchannels = v->npatterns = 0;
    snprintf(v->reason, sizeof(v->reason), "%s", text);
    return TG_REDIS_DENY;
}

/* Appends s to the string in text (n bytes), as much of it as fits. */
static void append_cut(char *text, size_t n, const char *s)
{
    size_t used = strlen(text), len = strlen(s);
    if (used + 1 >= n)
        return;
    if (len > n - 1 - used)
        len = n - 1 - used;
    memcpy(text + used, s, len);
    text[used + len] = '\0';
}

/*
 * "<NAME> is not allowed[ (note)]", cut at the reason's size. Appended piece by
 * piece: snprintf here trips an optimised build's -Wformat-truncation (a 64-byte
 * name and a constant note can exceed the reason), and the cut is intended.
 */
static tg_redis_verdict_kind deny_cmd(tg_redis_verdict *v, const tg_redis_command *c,
                                      const char *note)
{
    char name[NAME_MAX_LEN + 1];
    upper_name(c, name, sizeof(name));
    char text[TG_REDIS_REASON_SIZE] = "";
    append_cut(text, sizeof(text), name);
    append_cut(text, sizeof(text), " is not allowed");
    if (note) {
        append_cut(text, sizeof(text), " (");
        append_cut(text, sizeof(text), note);
        append_cut(text, sizeof(text), ")");
    }
    return deny(v, text);
}

/* "<what> for '<NAME>'" */
static tg_redis_verdict_kind deny_args(tg_redis_verdict *v, const tg_redis_command *c,
                                       const char *what)
{
    char name[NAME_MAX_LEN + 1];
    upper_name(c, name, sizeof(name));
    char text[TG_REDIS_REASON_SIZE];
    snprintf(text, sizeof(text), "%s for '%s'", what, name);
    return deny(v, text);
}

/* Redis's string2ll: an optional '-', digits without leading zeros, within int64. */
static bool parse_ll(tg_slice s, int64_t *out)
{
    const uint8_t *p = s.base;
    size_t n = s.len, i = 0;
    bool neg = false;
    if (n == 0 || n > 20)
        return false;
    if (n == 1 && p[0] == '0') {
        *out = 0;
        return true;
    }
    if (p[0] == '-') {
        neg = true;
        i = 1;
    }
    if (i >= n || p[i] < '1' || p[i] > '9')
        return false;
    uint64_t v = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        if (v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    if (neg ? v > (uint64_t)INT64_MAX + 1 : v > (uint64_t)INT64_MAX)
        return false;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

static inline void mark(tg_redis_verdict *v, uint32_t i, tg_redis_arg_role role)
{
    if (v->roles[i] != TG_REDIS_ARG_PLAIN)
        return; /* two specs naming one argument: prefixed once */
    v->roles[i] = (uint8_t)role;
    if (role == TG_REDIS_ARG_KEY || role == TG_REDIS_ARG_KEY_PATTERN)
        v->nkeys++;
    else if (role == TG_REDIS_ARG_CHANNEL)
        v->nchannels++;
    else if (role == TG_REDIS_ARG_PATTERN)
        v->npatterns++;
}

/*
 * Marks the keys that c's key specs find in argv (as getKeysUsingKeySpecs).
 * Returns 0, or -1 when a spec cannot be resolved (the command is then refused).
 */
static int keys_from_specs(const tg_redis_command *c, const tg_slice *argv, uint32_t argc,
                           tg_redis_verdict *v)
{
    const int64_t n = argc;
    for (uint32_t j = 0; j < c->nspecs; j++) {
        const tg_redis_keyspec *s = &c->specs[j];
        if (s->flags & TG_REDIS_KS_NOT_KEY)
            continue;
        int64_t first = 0, last, step;
        if (s->bs == TG_REDIS_BS_INDEX) {
            first = s->index;
        } else if (s->bs == TG_REDIS_BS_KEYWORD) {
            int64_t start = s->startfrom > 0 ? s->startfrom : n + s->startfrom;
            int64_t end = s->startfrom > 0 ? n - 1 : 1;
            for (int64_t i = start; i != end; i = start <= end ? i + 1 : i - 1) {
                if (i >= n || i < 1)
                    break;
                if (eq_ci(argv[i], s->keyword)) {
                    first = i + 1;
                    break;
                }
            }
            if (!first)
                continue; /* keyword absent: no keys from this spec */
        } else {
            return -1;
        }
        if (s->fk == TG_REDIS_FK_RANGE) {
            step = s->keystep;
            if (s->lastkey >= 0)
                last = first + s->lastkey;
            else if (!s->limit)
                last = n + s->lastkey;
            else
                last = first + ((n - first) / s->limit + s->lastkey);
        } else if (s->fk == TG_REDIS_FK_KEYNUM) {
            step = s->keystep;
            int64_t numkeys;
            if (first + s->keynumidx >= n)
                return -1;
            if (!parse_ll(argv[first + s->keynumidx], &numkeys) || numkeys < 0)
                return -1;
            if (numkeys == 0)
                continue; /* as the command's own getkeys proc: no keys */
            first += s->firstkey;
            if (numkeys > n)
                return -1;
            last = first + numkeys - 1;
        } else {
            return -1;
        }
        if (last >= n || last < first || first >= n || first < 1)
            return -1;
        for (int64_t i = first; i <= last; i += step)
            mark(v, (uint32_t)i, TG_REDIS_ARG_KEY);
        if (s->flags & TG_REDIS_KS_INCOMPLETE)
            return -1;
    }
    return 0;
}

static bool starts_with(tg_slice s, const char *p)
{
    size_t n = strlen(p);
    return s.len >= n && memcmp(s.base, p, n) == 0;
}

/* Keyspace-notification channels: published by the server itself, never under a prefix. */
static bool notification_channel(tg_slice s)
{
    return starts_with(s, "__keyspace@") || starts_with(s, "__keyevent@");
}

static tg_redis_verdict_kind forward_keys(const tg_redis_command *c, const tg_slice *argv,
                                          uint32_t argc, tg_redis_verdict *v)
{
    if (keys_from_specs(c, argv, argc, v) != 0)
        return deny_args(v, c, "invalid key arguments");
    v->kind = TG_REDIS_FORWARD;
    return v->kind;
}

/* SCAN cursor [MATCH pattern] [COUNT count] [TYPE type], parsed as scanGenericCommand. */
static tg_redis_verdict_kind judge_scan(const tg_redis_command *c, const tg_slice *argv,
                                        uint32_t argc, tg_redis_verdict *v)
{
    bool match = false;
    for (uint32_t i = 2; i < argc; i += 2) {
        if (argc - i < 2)
            return deny_args(v, c, "syntax error");
        if (eq_ci(argv[i], "match")) {
            mark(v, i + 1, TG_REDIS_ARG_PATTERN); /* each one: Redis keeps the last */
            match = true;
        } else if (!eq_ci(argv[i], "count") && !eq_ci(argv[i], "type")) {
            return deny_args(v, c, "syntax error");
        }
    }
    v->kind = TG_REDIS_REWRITE_PATTERN;
    v->append = match ? TG_REDIS_APPEND_NONE : TG_REDIS_APPEND_MATCH;
    return v->kind;
}

/*
 * SORT key [BY p] [LIMIT o c] [GET p ...] [ASC|DESC] [ALPHA] [STORE dst], parsed
 * as sortCommandGeneric (SORT_RO: no STORE). A BY/GET template reaches the keys
 * "template with its first '*' replaced by an element": with the prefix in front
 * they stay the tenant's. "GET #" is the element itself and stays as is.
 */
static tg_redis_verdict_kind judge_sort(const tg_redis_command *c, const tg_slice *argv,
                                        uint32_t argc, const tg_redis_judge_opts *o,
                                        tg_redis_verdict *v)
{
    bool readonly = (c->flags & TG_REDIS_CMD_READONLY) != 0;
    bool star_prefix = o->prefix.len && memchr(o->prefix.base, '*', o->prefix.len);
    mark(v, 1, TG_REDIS_ARG_KEY);
    for (uint32_t j = 2; j < argc; j++) {
        uint32_t left = argc - j - 1;
        if (eq_ci(argv[j], "asc") || eq_ci(argv[j], "desc") || eq_ci(argv[j], "alpha")) {
            continue;
        } else if (eq_ci(argv[j], "limit") && left >= 2) {
            j += 2;
        } else if (!readonly && eq_ci(argv[j], "store") && left >= 1) {
            mark(v, ++j, TG_REDIS_ARG_KEY);
        } else if ((eq_ci(argv[j], "by") || eq_ci(argv[j], "get")) && left >= 1) {
            j++;
            if (argv[j].len == 1 && argv[j].base[0] == '#' && eq_ci(argv[j - 1], "get"))
                continue;
            if (star_prefix)
                return deny(v, "SORT BY/GET patterns are not allowed with this key prefix");
            mark(v, j, TG_REDIS_ARG_KEY_PATTERN);
        } else {
            return deny_args(v, c, "syntax error");
        }
    }
    v->kind = TG_REDIS_FORWARD;
    return v->kind;
}

/*
 * GEORADIUS key lon lat radius unit [opts] / GEORADIUSBYMEMBER key member radius
 * unit [opts]: options are parsed as georadiusGeneric does from the STORE key
 * spec's startfrom; every STORE/STOREDIST target is a key (Redis keeps the last
 * one, the key spec finds only the first).
 */
static tg_redis_verdict_kind judge_georadius(const tg_redis_command *c, const tg_slice *argv,
                                             uint32_t argc, tg_redis_verdict *v)
{
    int64_t start = 0;
    for (uint32_t j = 0; j < c->nspecs; j++) {
        const tg_redis_keyspec *s = &c->specs[j];
        if (s->bs == TG_REDIS_BS_INDEX && s->index < (int64_t)argc)
            mark(v, (uint32_t)s->index, TG_REDIS_ARG_KEY);
        else if (s->bs == TG_REDIS_BS_KEYWORD && s->startfrom > 0)
            start = s->startfrom;
    }
    if (v->nkeys != 1 || start < 2)
        return deny_args(v, c, "invalid key arguments");
    for (uint32_t i = (uint32_t)start; i < argc; i++) {
        bool more = i + 1 < argc;
        if (more && (eq_ci(argv[i], "store") || eq_ci(argv[i], "storedist")))
            mark(v, ++i, TG_REDIS_ARG_KEY);
        else if (more && eq_ci(argv[i], "count"))
            i++;
    }
    v->kind = TG_REDIS_FORWARD;
    return v->kind;
}

/*
 * XREAD [COUNT n] [BLOCK ms] STREAMS key... id... / XREADGROUP GROUP g c [COUNT n]
 * [BLOCK ms] [NOACK] STREAMS key... id..., parsed as xreadCommand: the first
 * STREAMS that is not an option's value starts the keys, the first half of
 * what follows. An unbalanced list, a missing STREAMS and syntax errors are refused.
 */
static tg_redis_verdict_kind judge_xread(const tg_redis_command *c, const tg_slice *argv,
                                         uint32_t argc, bool group, tg_redis_verdict *v)
{
    for (uint32_t i = 1; i < argc; i++) {
        uint32_t more = argc - i - 1;
        if ((eq_ci(argv[i], "block") || eq_ci(argv[i], "count")) && more) {
            i++;
        } else if (eq_ci(argv[i], "streams") && more) {
            if (more % 2)
                return deny_args(v, c, "unbalanced streams and IDs");
            for (uint32_t k = i + 1; k < i + 1 + more / 2; k++)
                mark(v, k, TG_REDIS_ARG_KEY);
            v->kind = TG_REDIS_FORWARD;
            return v->kind;
        } else if (group && eq_ci(argv[i], "group") && more >= 2) {
            i += 2;
        } else if (group && eq_ci(argv[i], "noack")) {
            continue;
        } else {
            return deny_args(v, c, "syntax error");
        }
    }
    return deny_args(v, c, "syntax error");
}

tg_redis_verdict_kind tg_redis_judge(const tg_redis_table *t, const tg_slice *argv, uint32_t argc,
                                     const tg_redis_judge_opts *o, tg_redis_verdict *v)
{
    static const tg_redis_judge_opts defaults = {false, {NULL, 0}};
    if (!o)
        o = &defaults;
    v->kind = TG_REDIS_DENY;
    v->reply = TG_REDIS_REPLY_NONE;
    v->local = TG_REDIS_LOCAL_NONE;
    v->append = TG_REDIS_APPEND_NONE;
    v->cmd = NULL;
    v->nkeys = v->nchannels = v->npatterns = 0;
    v->reason[0] = '\0';
    if (!t || !t->sealed)
        return deny(v, "command table not ready");
    if (argc == 0)
        return deny(v, "empty command");
    if (!v->roles || argc > v->roles_cap)
        return deny(v, "too many arguments");
    memset(v->roles, TG_REDIS_ARG_PLAIN, argc);

    const tg_redis_command *c = lookup1(t, argv[0]);
    if (c && c->container && argc >= 2) {
        const tg_redis_command *sub = lookup2(t, argv[0], argv[1]);
        if (!sub)
            return deny_args(v, c, "unknown subcommand");
        c = sub;
    }
    if (!c)
        return deny(v, "unknown command");
    v->cmd = c;
    if (c->arity > 0 ? argc != (uint32_t)c->arity
                     : (c->arity < 0 && argc < (uint32_t)(-(int64_t)c->arity)))
        return deny_args(v, c, "wrong number of arguments");

    const rule *r = &rules[c->rule];
    v->reply = (tg_redis_reply_kind)r->reply;
    /* The backend connection is the tenant's ACL user: what it lacks would fail there. */
    if (o->allow_scripts && r->kind != RULE_LOCAL && r->kind != RULE_SELECT &&
        r->kind != RULE_DENY && !tg_redis_acl_grants(c))
        return deny_cmd(v, c, "not granted to the tenant's ACL user with allow_scripts");
    switch ((rule_kind)r->kind) {
    case RULE_KEYS:
        return forward_keys(c, argv, argc, v);
    case RULE_DENY:
        return deny_cmd(v, c, r->note);
    case RULE_LOCAL:
        v->kind = TG_REDIS_LOCAL;
        v->local = (tg_redis_local_kind)r->arg;
        return v->kind;
    case RULE_SCRIPT:
        if (!o->allow_scripts)
            return deny_cmd(v, c, "allow_scripts is off");
        return forward_keys(c, argv, argc, v);
    case RULE_SELECT:
        if (argc != 2 || argv[1].len != 1 || argv[1].base[0] != '0')
            return deny(v, "SELECT of a database other than 0 is not allowed");
        v->kind = TG_REDIS_LOCAL;
        v->local = TG_REDIS_LOCAL_SELECT;
        return v->kind;
    case RULE_KEYS_PATTERN:
        if (argc != 2)
            return deny_args(v, c, "wrong number of arguments");
        mark(v, 1, TG_REDIS_ARG_PATTERN);
        v->kind = TG_REDIS_REWRITE_PATTERN;
        return v->kind;
    case RULE_SCAN:
        return judge_scan(c, argv, argc, v);
    case RULE_SORT:
        return judge_sort(c, argv, argc, o, v);
    case RULE_GEORADIUS:
        return judge_georadius(c, argv, argc, v);
    case RULE_XREAD:
        return judge_xread(c, argv, argc, r->arg != 0, v);
    case RULE_COPY:
        for (uint32_t i = 3; i < argc; i++)
            if (eq_ci(argv[i], "db"))
                return deny(v, "COPY to another database is not allowed");
        return forward_keys(c, argv, argc, v);
    case RULE_CHANNELS:
    case RULE_PATTERNS:
    case RULE_PUBLISH: {
        uint32_t from = r->kind == RULE_CHANNELS ? r->arg : 1;
        uint32_t to = r->kind == RULE_PUBLISH ? 2 : argc;
        tg_redis_arg_role role =
            r->kind == RULE_PATTERNS ? TG_REDIS_ARG_PATTERN : TG_REDIS_ARG_CHANNEL;
        for (uint32_t i = from; i < to && i < argc; i++) {
            if (notification_channel(argv[i]))
                return deny(v, "keyspace notification channels are not available");
            mark(v, i, role);
        }
        v->kind = v->npatterns ? TG_REDIS_REWRITE_PATTERN : TG_REDIS_FORWARD;
        return v->kind;
    }
    case RULE_PUBSUB_CHANNELS:
        if (argc > 3)
            return deny_args(v, c, "wrong number of arguments");
        if (argc == 3)
            mark(v, 2, TG_REDIS_ARG_PATTERN);
        else
            v->append = TG_REDIS_APPEND_PATTERN;
        v->kind = TG_REDIS_REWRITE_PATTERN;
        return v->kind;
    }
    return deny(v, "internal error: unknown rule");
}

/* ---- helpers ----------------------------------------------------------------------------- */

size_t tg_redis_escape_glob(tg_slice prefix, uint8_t *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < prefix.len; i++) {
        uint8_t ch = prefix.base[i];
        n += (ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '\\') ? 2 : 1;
    }
    if (n > cap)
        return n;
    size_t k = 0;
    for (size_t i = 0; i < prefix.len; i++) {
        uint8_t ch = prefix.base[i];
        if (ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '\\')
            out[k++] = '\\';
        out[k++] = ch;
    }
    return n;
}

bool tg_redis_strip_prefix(tg_slice s, tg_slice prefix, tg_slice *rest)
{
    if (s.len < prefix.len || (prefix.len && memcmp(s.base, prefix.base, prefix.len) != 0))
        return false;
    if (rest)
        *rest = (tg_slice){s.base + prefix.len, s.len - prefix.len};
    return true;
}

bool tg_redis_push_roles(tg_slice kind, int *channel, int *pattern)
{
    static const struct {
        const char *kind;
        int channel, pattern;
    } pushes[] = {
        {"message", 1, -1},      {"pmessage", 2, 1},     {"smessage", 1, -1},
        {"subscribe", 1, -1},    {"unsubscribe", 1, -1}, {"ssubscribe", 1, -1},
        {"sunsubscribe", 1, -1}, {"psubscribe", -1, 1},  {"punsubscribe", -1, 1},
    };
    for (size_t i = 0; i < COUNT(pushes); i++) {
        if (tg_slice_eq_str(kind, pushes[i].kind)) {
            *channel = pushes[i].channel;
            *pattern = pushes[i].pattern;
            return true;
        }
    }
    *channel = *pattern = -1;
    return false;
}
