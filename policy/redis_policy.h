/*
 * The Redis command policy: which arguments of a command are the tenant's keys,
 * channels or patterns, and whether the command may run at all.
 *
 *   redis_commands.def ──┐                      (built in, generated from redis-server)
 *   COMMAND INFO reply ──┴─> builder ──seal──> tg_redis_table (hash index + policy rule per row)
 *                                                   │ shared, immutable
 *   argv ──> tg_redis_judge ──> lookup "cmd" / "cmd|sub" ──> arity ──> rule
 *        ──> key specs (begin_search + find_keys, as Redis's getKeysUsingKeySpecs)
 *            or a special handler (SCAN, KEYS, SORT, GEORADIUS STORE, COPY DB, pub/sub)
 *        ──> FORWARD | REWRITE_PATTERN (+ role of every argument) | LOCAL | DENY(reason)
 *
 * The session then writes the tenant's prefix before every argument whose role
 * is KEY, CHANNEL or KEY_PATTERN, the glob-escaped prefix before every PATTERN
 * (and appends one where the verdict says so), and strips prefixes from the
 * reply as the verdict's reply kind says.
 *
 * Fail-closed: a command that is not in the table, fails its arity, has a key
 * spec that cannot be resolved (unknown or INCOMPLETE spec, numkeys past argc)
 * or whose rule refuses it is DENY. Commands without keys are refused unless
 * listed as harmless; commands the server marks admin, module or @dangerous are
 * refused unless the policy has a handler for them. The policy data (the rule of each
 * command) lives in redis_policy.c; the protocol data (arity, flags, key specs)
 * in the table. Pure functions: no I/O, no globals.
 */
#ifndef TG_POLICY_REDIS_POLICY_H
#define TG_POLICY_REDIS_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/slice.h"

/* ---- protocol data: flags as COMMAND INFO names them ------------------------------------- */

/* X(NAME, "redis name"): command flags (COMMAND INFO element 3). */
#define TG_REDIS_CMD_FLAG_MAP(X)                                                                   \
    X(WRITE, "write")                                                                              \
    X(READONLY, "readonly")                                                                        \
    X(DENYOOM, "denyoom")                                                                          \
    X(MODULE, "module")                                                                            \
    X(ADMIN, "admin")                                                                              \
    X(PUBSUB, "pubsub")                                                                            \
    X(NOSCRIPT, "noscript")                                                                        \
    X(BLOCKING, "blocking")                                                                        \
    X(LOADING, "loading")                                                                          \
    X(STALE, "stale")                                                                              \
    X(SKIP_MONITOR, "skip_monitor")                                                                \
    X(SKIP_SLOWLOG, "skip_slowlog")                                                                \
    X(ASKING, "asking")                                                                            \
    X(FAST, "fast")                                                                                \
    X(NO_AUTH, "no_auth")                                                                          \
    X(MAY_REPLICATE, "may_replicate")                                                              \
    X(NO_MANDATORY_KEYS, "no_mandatory_keys")                                                      \
    X(NO_ASYNC_LOADING, "no_async_loading")                                                        \
    X(NO_MULTI, "no_multi")                                                                        \
    X(MOVABLEKEYS, "movablekeys")                                                                  \
    X(ALLOW_BUSY, "allow_busy")

/* X(NAME, "redis name"): ACL categories (COMMAND INFO element 7, without the '@'). */
#define TG_REDIS_ACL_MAP(X)                                                                        \
    X(KEYSPACE, "keyspace")                                                                        \
    X(READ, "read")                                                                                \
    X(WRITE, "write")                                                                              \
    X(SET, "set")                                                                                  \
    X(SORTEDSET, "sortedset")                                                                      \
    X(LIST, "list")                                                                                \
    X(HASH, "hash")                                                                                \
    X(STRING, "string")                                                                            \
    X(BITMAP, "bitmap")                                                                            \
    X(HYPERLOGLOG, "hyperloglog")                                                                  \
    X(GEO, "geo")                                                                                  \
    X(STREAM, "stream")                                                                            \
    X(PUBSUB, "pubsub")                                                                            \
    X(ADMIN, "admin")                                                                              \
    X(FAST, "fast")                                                                                \
    X(SLOW, "slow")                                                                                \
    X(BLOCKING, "blocking")                                                                        \
    X(DANGEROUS, "dangerous")                                                                      \
    X(CONNECTION, "connection")                                                                    \
    X(TRANSACTION, "transaction")                                                                  \
    X(SCRIPTING, "scripting")

/* X(NAME, "redis name"): key-spec flags (the "flags" of a key spec). */
#define TG_REDIS_KS_FLAG_MAP(X)                                                                    \
    X(RO, "RO")                                                                                    \
    X(RW, "RW")                                                                                    \
    X(OW, "OW")                                                                                    \
    X(RM, "RM")                                                                                    \
    X(ACCESS, "access")                                                                            \
    X(UPDATE, "update")                                                                            \
    X(INSERT, "insert")                                                                            \
    X(DELETE, "delete")                                                                            \
    X(NOT_KEY, "not_key")                                                                          \
    X(INCOMPLETE, "incomplete")                                                                    \
    X(VARIABLE_FLAGS, "variable_flags")

enum {
#define TG_REDIS_BIT(n, s) TG_REDIS_CMD_BIT_##n,
    TG_REDIS_CMD_FLAG_MAP(TG_REDIS_BIT)
#undef TG_REDIS_BIT
};
enum {
#define TG_REDIS_BIT(n, s) TG_REDIS_ACL_BIT_##n,
    TG_REDIS_ACL_MAP(TG_REDIS_BIT)
#undef TG_REDIS_BIT
};
enum {
#define TG_REDIS_BIT(n, s) TG_REDIS_KS_BIT_##n,
    TG_REDIS_KS_FLAG_MAP(TG_REDIS_BIT)
#undef TG_REDIS_BIT
};
/* TG_REDIS_CMD_WRITE, TG_REDIS_ACL_DANGEROUS, TG_REDIS_KS_INCOMPLETE, ...: one bit each. */
enum {
#define TG_REDIS_FLAG(n, s) TG_REDIS_CMD_##n = 1 << TG_REDIS_CMD_BIT_##n,
    TG_REDIS_CMD_FLAG_MAP(TG_REDIS_FLAG)
#undef TG_REDIS_FLAG
};
enum {
#define TG_REDIS_FLAG(n, s) TG_REDIS_ACL_##n = 1 << TG_REDIS_ACL_BIT_##n,
    TG_REDIS_ACL_MAP(TG_REDIS_FLAG)
#undef TG_REDIS_FLAG
};
enum {
#define TG_REDIS_FLAG(n, s) TG_REDIS_KS_##n = 1 << TG_REDIS_KS_BIT_##n,
    TG_REDIS_KS_FLAG_MAP(TG_REDIS_FLAG)
#undef TG_REDIS_FLAG
};

/*
 * Not a Redis flag: set by a parser of a server's COMMAND reply on a command the
 * server describes with a flag, ACL category, key-spec field or type tenantgate
 * does not know. Such a command is refused (its semantics were never looked at).
 */
#define TG_REDIS_CMD_UNVETTED (1u << 31)

/*
 * Bit of a flag named as COMMAND INFO names it (case-insensitive; an ACL
 * category with or without '@'); 0 for a name tenantgate does not know.
 */
uint32_t tg_redis_cmd_flag(tg_slice name);
uint32_t tg_redis_acl_flag(tg_slice name);
uint32_t tg_redis_ks_flag(tg_slice name);

/* How a key spec finds its first key (begin_search) and the keys from there (find_keys). */
typedef enum { TG_REDIS_BS_UNKNOWN, TG_REDIS_BS_INDEX, TG_REDIS_BS_KEYWORD } tg_redis_bs_type;
typedef enum { TG_REDIS_FK_UNKNOWN, TG_REDIS_FK_RANGE, TG_REDIS_FK_KEYNUM } tg_redis_fk_type;

/* One key spec, with Redis's field names. Unused fields are 0. */
typedef struct tg_redis_keyspec {
    tg_redis_bs_type bs;
    tg_redis_fk_type fk;
    uint32_t flags;      /* TG_REDIS_KS_* */
    int32_t index;       /* BS_INDEX: argument index of the first key */
    int32_t startfrom;   /* BS_KEYWORD: where the search starts (< 0: from the end, backwards) */
    const char *keyword; /* BS_KEYWORD: the keyword (case-insensitive); copied by the builder */
    int32_t lastkey;     /* FK_RANGE: last key relative to the first (< 0: from the end) */
    int32_t limit;       /* FK_RANGE: with lastkey -1, only 1/limit of the remaining arguments */
    int32_t keynumidx;   /* FK_KEYNUM: index of numkeys relative to the first */
    int32_t firstkey;    /* FK_KEYNUM: first key relative to the first */
    int32_t keystep;     /* both: distance between keys (>= 1) */
} tg_redis_keyspec;

/* ---- the command table ------------------------------------------------------------------- */

typedef struct tg_redis_table tg_redis_table;

/* One row of a sealed table (read-only; owned by the table). */
typedef struct tg_redis_command {
    const char *name;              /* lowercase, "container|sub" for a subcommand */
    uint32_t name_len;             /* strlen(name) */
    int32_t arity;                 /* > 0: exactly; < 0: at least -arity (with the name) */
    uint32_t flags;                /* TG_REDIS_CMD_* */
    uint32_t acl;                  /* TG_REDIS_ACL_* */
    uint32_t nspecs;               /* key specs, in the server's order */
    const tg_redis_keyspec *specs; /* nspecs entries */
    bool container;                /* has subcommands: argv[1] names one */
    uint16_t rule;                 /* the policy rule bound at seal (redis_policy.c) */
} tg_redis_command;

/* A new, empty table to fill with the builder calls below; NULL when out of memory. */
tg_redis_table *tg_redis_table_new(void);

/*
 * Adds a command (name as COMMAND INFO gives it, any case; "container|sub"
 * for a subcommand, after its container). Errors (out of memory, a duplicate
 * or odd name, a subcommand before its container, a sealed table) are sticky:
 * they are also reported by tg_redis_table_seal().
 */
int tg_redis_table_add_command(tg_redis_table *t, tg_slice name, int32_t arity, uint32_t flags,
                               uint32_t acl);

/*
 * Adds a key spec to the command added last (the keyword is copied). A spec
 * whose numbers Redis itself would not accept (a key at index 0, a keystep
 * below 1, a limit with lastkey other than -1...) is kept as UNKNOWN, so the
 * command is refused rather than the whole table lost. Errors are sticky.
 */
int tg_redis_table_add_keyspec(tg_redis_table *t, const tg_redis_keyspec *ks);

/*
 * Ends the building: builds the lookup index and binds each command to its
 * policy rule. Returns 0, or the first error of any builder call (the table is
 * then unusable: free it). The table is immutable afterwards and may be shared
 * by any number of threads.
 */
__attribute__((warn_unused_result)) int tg_redis_table_seal(tg_redis_table *t);

/*
 * As tg_redis_table_seal, for a table built from a live server's COMMAND reply,
 * checked against `vetted` (the built-in table; borrowed during the call):
 *   - a command `vetted` lacks and no policy rule names is refused (a newer
 *     server's command whose semantics tenantgate never looked at), and so is
 *     one flagged TG_REDIS_CMD_UNVETTED;
 *   - a command `vetted` refuses stays refused, whatever flags the server gives it;
 *   - a command that is a container in one table and not in the other is refused;
 *   - otherwise the server's arity, flags and key specs are used (that is the point:
 *     the key specs of the server that runs the commands).
 * vetted NULL: as tg_redis_table_seal. Both refuse a command flagged TG_REDIS_CMD_UNVETTED.
 */
__attribute__((warn_unused_result)) int tg_redis_table_seal_vetted(tg_redis_table *t,
                                                                   const tg_redis_table *vetted);

/*
 * A new sealed table from the built-in data (policy/redis_commands.def,
 * generated from redis-server 7.0): the fallback for servers whose COMMAND
 * INFO has no key specs. NULL when out of memory. Free with tg_redis_table_free.
 */
tg_redis_table *tg_redis_table_builtin(void);

void tg_redis_table_free(tg_redis_table *t);

/* Number of commands and subcommands of a table. */
uint32_t tg_redis_table_count(const tg_redis_table *t);

/* The i-th command in insertion order (i < count), for listings and tests. */
const tg_redis_command *tg_redis_table_at(const tg_redis_table *t, uint32_t i);

/*
 * The command argv names (case-insensitive): argv[0], or for a container and
 * argc >= 2 the subcommand argv[0]|argv[1]. NULL when unknown (also for an
 * unknown subcommand). A container called alone is returned itself.
 */
const tg_redis_command *tg_redis_lookup(const tg_redis_table *t, const tg_slice *argv,
                                        uint32_t argc);

/* A short static name of the command's policy rule ("keys", "deny", "scan"...), for listings. */
const char *tg_redis_rule_name(const tg_redis_command *c);

/* True when c is refused because tenantgate does not know it (see tg_redis_table_seal_vetted). */
bool tg_redis_command_unvetted(const tg_redis_command *c);
/*
 * True when the per-tenant ACL user (allow_scripts) is granted command c of a sealed
 * table: its rule only prefixes keys that complete key specs find or channels Redis's ACL
 * checks, or it is a listed harmless keyless command or an allowed script command --
 * what Redis's ACL key (~prefix*) and channel (&prefix*) patterns scope as tightly as the
 * proxy, also when a script calls it. Never a container (its subcommands are granted one
 * by one), never KEYS, SCAN, pattern subscriptions, PUBSUB, SORT, GEORADIUS, COPY or
 * anything refused. See redis_policy.c for the reasoning.
 */
bool tg_redis_acl_grants(const tg_redis_command *c);

/* ---- the verdict ------------------------------------------------------------------------- */

/* X(NAME, "name"): what the session does with the command. */
#define TG_REDIS_VERDICT_MAP(X)                                                                    \
    X(FORWARD, "forward")                 /* prefix the KEY/CHANNEL arguments, send */             \
    X(REWRITE_PATTERN, "rewrite-pattern") /* as FORWARD, plus PATTERN arguments or an append */    \
    X(LOCAL, "local")                     /* the session answers (see tg_redis_local_kind) */      \
    X(DENY, "deny")                       /* -NOPERM tenantgate: <reason> */

/*
 * X(NAME, "name"): how to strip the prefix from the reply (RESP2 and RESP3).
 *   NONE       nothing to strip
 *   KEYS       every element is a key (KEYS)
 *   SCAN       [cursor, [key, ...]] (SCAN)
 *   FIRST_KEY  nil or an array whose element 0 is a key (BLPOP, BRPOP, BZPOPMIN,
 *              BZPOPMAX, LMPOP, BLMPOP, ZMPOP, BZMPOP)
 *   XREAD      nil, or [[stream, entries], ...] (RESP3: a map stream -> entries)
 *              (XREAD, XREADGROUP)
 *   CHANNELS   every element is a channel (PUBSUB CHANNELS, PUBSUB SHARDCHANNELS)
 *   NUMSUB     [channel, count, ...] (RESP3: a map) (PUBSUB NUMSUB, SHARDNUMSUB)
 *   PUBSUB     one subscription confirmation per channel or pattern, then pushes
 *              (SUBSCRIBE family): see tg_redis_push_roles()
 */
#define TG_REDIS_REPLY_MAP(X)                                                                      \
    X(NONE, "none")                                                                                \
    X(KEYS, "keys")                                                                                \
    X(SCAN, "scan")                                                                                \
    X(FIRST_KEY, "first-key")                                                                      \
    X(XREAD, "xread")                                                                              \
    X(CHANNELS, "channels")                                                                        \
    X(NUMSUB, "numsub")                                                                            \
    X(PUBSUB, "pubsub")

/* X(NAME, "name"): commands the session answers or emulates itself. */
#define TG_REDIS_LOCAL_MAP(X)                                                                      \
    X(NONE, "none")                                                                                \
    X(AUTH, "auth")     /* AUTH <jwt> | AUTH <user> <jwt>: tenant (re)authentication */            \
    X(HELLO, "hello")   /* protocol switch and optional AUTH/SETNAME */                            \
    X(RESET, "reset")   /* emulated: a forwarded RESET would de-authenticate the backend */        \
    X(QUIT, "quit")     /* +OK, then close */                                                      \
    X(SELECT, "select") /* SELECT 0 only: +OK (the backend always uses database 0) */

/*
 * X(NAME, "name"): what the verdict asks the session to append after the last argument.
 *   MATCH    "MATCH" <escaped prefix>"*"  (SCAN without MATCH)
 *   PATTERN  <escaped prefix>"*"          (PUBSUB CHANNELS|SHARDCHANNELS without a pattern)
 */
#define TG_REDIS_APPEND_MAP(X)                                                                     \
    X(NONE, "none")                                                                                \
    X(MATCH, "match")                                                                              \
    X(PATTERN, "pattern")

/*
 * X(NAME, 'c'): the role of one argument (the letter is for listings and tests).
 *   PLAIN        sent as is
 *   KEY          prefix + argument
 *   CHANNEL      prefix + argument
 *   PATTERN      glob: tg_redis_escape_glob(prefix) + argument (KEYS, SCAN MATCH,
 *                PSUBSCRIBE, PUNSUBSCRIBE, PUBSUB CHANNELS)
 *   KEY_PATTERN  SORT BY/GET template whose first '*' Redis replaces: prefix + argument
 */
#define TG_REDIS_ROLE_MAP(X)                                                                       \
    X(PLAIN, '.')                                                                                  \
    X(KEY, 'k')                                                                                    \
    X(CHANNEL, 'c')                                                                                \
    X(PATTERN, 'p')                                                                                \
    X(KEY_PATTERN, 's')

typedef enum {
#define TG_REDIS_ENUM(n, s) TG_REDIS_##n,
    TG_REDIS_VERDICT_MAP(TG_REDIS_ENUM)
#undef TG_REDIS_ENUM
} tg_redis_verdict_kind;

typedef enum {
#define TG_REDIS_ENUM(n, s) TG_REDIS_REPLY_##n,
    TG_REDIS_REPLY_MAP(TG_REDIS_ENUM)
#undef TG_REDIS_ENUM
} tg_redis_reply_kind;

typedef enum {
#define TG_REDIS_ENUM(n, s) TG_REDIS_LOCAL_##n,
    TG_REDIS_LOCAL_MAP(TG_REDIS_ENUM)
#undef TG_REDIS_ENUM
} tg_redis_local_kind;

typedef enum {
#define TG_REDIS_ENUM(n, s) TG_REDIS_APPEND_##n,
    TG_REDIS_APPEND_MAP(TG_REDIS_ENUM)
#undef TG_REDIS_ENUM
} tg_redis_append_kind;

typedef enum {
#define TG_REDIS_ENUM(n, c) TG_REDIS_ARG_##n,
    TG_REDIS_ROLE_MAP(TG_REDIS_ENUM)
#undef TG_REDIS_ENUM
} tg_redis_arg_role;

/* Static names of the enums above ("?" when out of range). */
const char *tg_redis_verdict_name(tg_redis_verdict_kind k);
const char *tg_redis_reply_name(tg_redis_reply_kind k);
const char *tg_redis_local_name(tg_redis_local_kind k);
const char *tg_redis_append_name(tg_redis_append_kind k);
char tg_redis_role_letter(tg_redis_arg_role r);

/* Session state and settings the judge needs. */
typedef struct tg_redis_judge_opts {
    /*
     * The backend connection is a per-tenant ACL user whose key and channel
     * patterns are the tenant's prefix (Redis enforces the prefix inside
     * scripts): EVAL/EVALSHA(_RO), FCALL(_RO), SCRIPT LOAD|EXISTS|HELP and
     * FUNCTION LIST|HELP are forwarded, and every command the ACL user is not
     * granted (tg_redis_acl_grants: SCAN, KEYS, PSUBSCRIBE, SORT...) is refused.
     * Off: every scripting command is refused.
     */
    bool allow_scripts;
    /*
     * The tenant's prefix (may be empty). Only read to refuse SORT BY/GET
     * patterns when the prefix itself holds a '*' (Redis would substitute there).
     */
    tg_slice prefix;
} tg_redis_judge_opts;

#define TG_REDIS_REASON_SIZE 128

typedef struct tg_redis_verdict {
    tg_redis_verdict_kind kind;
    tg_redis_reply_kind reply;   /* FORWARD, REWRITE_PATTERN */
    tg_redis_local_kind local;   /* LOCAL */
    tg_redis_append_kind append; /* REWRITE_PATTERN */
    const tg_redis_command *cmd; /* the command judged; NULL when unknown */
    /*
     * Set by the caller before judging: one role (tg_redis_arg_role) per
     * argument is written to roles[0..argc-1]; argc above roles_cap is DENY.
     * Roles are meaningful for FORWARD and REWRITE_PATTERN (PLAIN otherwise).
     */
    uint8_t *roles;
    uint32_t roles_cap;
    uint32_t nkeys, nchannels, npatterns; /* counts of KEY (+KEY_PATTERN), CHANNEL, PATTERN */
    /* DENY: why, ready for "-NOPERM tenantgate: <reason>"; never quotes argument values. */
    char reason[TG_REDIS_REASON_SIZE];
} tg_redis_verdict;

/* Prepares v for tg_redis_judge with a roles buffer of cap entries (borrowed). */
void tg_redis_verdict_init(tg_redis_verdict *v, uint8_t *roles, uint32_t cap);

/*
 * Judges the command argv[0..argc-1] (borrowed slices; argv[0] the name)
 * against table t for a tenant session with options o (NULL: defaults). Fills
 * *v (roles into v->roles) and returns v->kind. Never fails otherwise: an
 * unsealed table, an empty command or too many arguments is DENY.
 */
tg_redis_verdict_kind tg_redis_judge(const tg_redis_table *t, const tg_slice *argv, uint32_t argc,
                                     const tg_redis_judge_opts *o, tg_redis_verdict *v);

/* ---- helpers for rewriting and replies --------------------------------------------------- */

/*
 * Writes prefix with Redis's glob characters (* ? [ ] \) escaped by a
 * backslash into out (cap bytes, not NUL-terminated), so that
 * escaped-prefix + user pattern only matches names that start with the prefix.
 * Returns the escaped length (at most 2 * prefix.len); writes nothing when it
 * exceeds cap (call with cap 0 to size the buffer).
 */
size_t tg_redis_escape_glob(tg_slice prefix, uint8_t *out, size_t cap);

/* True when s starts with prefix; *rest (may be NULL) is then the remainder. */
bool tg_redis_strip_prefix(tg_slice s, tg_slice prefix, tg_slice *rest);

/*
 * Where the names are in a pub/sub message or confirmation of kind `kind`
 * (element 0 of the array or push, e.g. "message", "pmessage", "subscribe"):
 * *channel is the index of an element carrying prefix + channel (or -1) and
 * *pattern of one carrying escaped-prefix + pattern (or -1). Returns false when
 * kind is not a pub/sub message type ("pong" included: nothing to strip).
 */
bool tg_redis_push_roles(tg_slice kind, int *channel, int *pattern);

#endif
