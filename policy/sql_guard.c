/*
 * The SQL guard: every statement a PostgreSQL client sends is judged here,
 * with libpg_query (the real PostgreSQL parser), before it reaches the backend.
 *
 *   text ──XXH3──> cache (per worker, LRU) ──hit──> verdict
 *                     │ miss
 *                     v
 *   tg_sql_normalize (literals blanked) ──XXH3──> same cache, own key space ──hit──> verdict
 *                     │ miss, or refused by the normalizer
 *                     v
 *   NUL? ─> depth pre-check (pg_query_scan, long texts only) ─> pg_query_parse_protobuf
 *        ─> unpack into an arena ─> walk every message of every statement
 *        ─> ALLOW | REWRITE | DENY(reason) ──> cache (unless the failure was transient),
 *           and under the normalized key too unless the verdict read a literal's value
 *           or is REWRITE
 *
 * The walk is generic: it follows every message field of every protobuf-c
 * message through the descriptors, so a FuncCall or a RangeVar is seen
 * wherever the grammar puts it (select list, WHERE, CTEs, VALUES, DEFAULTs,
 * EXPLAIN / PREPARE / DECLARE / COPY queries, CALL arguments...). On the way
 * it applies four kinds of rules, all of them data below:
 *   - statements: every node whose message is a statement (top level or
 *     nested) must be on the allow-list, be DDL while allow_ddl is on, or pass
 *     a specific check (SET, COPY, EXPLAIN, transaction control, ALTER TABLE..);
 *     an unknown statement type is DENY (fail-closed);
 *   - functions: set_config() only with a constant, non-reserved setting name;
 *     pg_notify() is rewritten; a deny list (exact names or "prefix*");
 *   - relations: a deny list, matched on the relation name with or without schema;
 *   - depth: deeper than TG_SQL_MAX_DEPTH messages is DENY.
 *
 * REWRITE is for LISTEN / UNLISTEN / NOTIFY / pg_notify(): channel names are
 * global to a database, so tg_sql_guard_rewrite() prefixes each with the
 * tenant's namespace, deparses the tree and re-parses the result to verify
 * that every channel now carries the prefix.
 *
 * Reasons name a statement type, a function, a relation or a configured
 * setting pattern; they never quote literal values of the statement, since
 * they reach clients and audit logs.
 *
 * The normalized key. pgbench -S, and most applications in the simple query
 * protocol, send the same statement with new constants every time, so the
 * exact-text level misses every time. policy/sql_normalize.c maps a text to a
 * form whose equality guarantees the same PostgreSQL tokens but for literal
 * values; so the same tree, but for the values inside constants. A verdict
 * depends on such a value only where the walker reads one, and every such
 * read goes through literal() below, which marks the verdict
 * literal-sensitive: those verdicts (set_config('app.tenant_id', ...) vs
 * set_config('application_name', ...)) are cached by exact text only.
 * Parse failures are marked too (FLOAT(0), an out-of-range column number:
 * the grammar checks a few values). The depth pre-check runs on texts longer
 * than TG_SQL_SHORT_TEXT only, so that length class is part of the key. The
 * normalizer refuses backslashes, and the guard denies turning
 * standard_conforming_strings off (SET and set_config): both are needed for
 * a string span to mean the same to the server in every session.
 *
 * libpg_query keeps per-thread memory contexts (freed at thread exit), so the
 * guard may be used from any number of threads at once. A guard is immutable
 * after tg_sql_guard_new(); a cache belongs to one thread.
 */
#include "policy/sql_guard.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <string.h>

#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>
#include <xxhash.h>

#include "policy/sql_normalize.h"
#include "proxy/arena.h"
#include "proxy/error.h"
#include "proxy/lru.h"

/* ---- limits ------------------------------------------------------------------------------- */

/* Nesting of protobuf messages the walker follows; deeper statements are denied. */
#define TG_SQL_MAX_DEPTH 1000
/*
 * libpg_query converts its tree to protobuf recursively, without a stack
 * check: a long left-deep chain ("1-1-1-...", 20k terms) overflows an 8 MiB
 * stack and kills the process. Texts up to TG_SQL_SHORT_TEXT bytes cannot
 * nest deeper than about 2 levels per byte (a few hundred KiB of stack); longer
 * ones are tokenised first (pg_query_scan is iterative) and refused when an
 * upper bound of their depth exceeds TG_SQL_MAX_ESTIMATE. Both assume threads
 * with at least 2 MiB of stack (Linux default: 8 MiB).
 */
#define TG_SQL_SHORT_TEXT 1024
#define TG_SQL_MAX_ESTIMATE 5000
/* PostgreSQL identifiers (and so channel names) are at most NAMEDATALEN - 1 bytes. */
#define TG_SQL_NAME_MAX 63
/* Texts up to this size are copied to the stack to NUL-terminate them. */
#define TG_SQL_STACK_COPY 2048

#define REASON_SIZE sizeof(((tg_sql_verdict *)0)->reason)
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- default lists (data) ----------------------------------------------------------------- */

/*
 * Settings that no statement may change. The configured tenant setting and
 * the configured extras are added by tg_sql_guard_new(). A trailing '*' makes
 * a prefix; comparisons ignore ASCII case, as PostgreSQL's GUC lookup does.
 */
static const char *const default_reserved_settings[] = {
    "role",                  /* SET ROLE / RESET ROLE */
    "session_authorization", /* SET SESSION AUTHORIZATION */
    "tenantgate.*",          /* tenantgate's own settings (e.g. the signed tenant context) */
};

/*
 * Functions that show or signal other sessions, reach outside the session
 * (server files, large objects, other databases), take locks in a space shared
 * by all tenants, or run SQL text the guard never sees.
 */
static const char *const default_deny_functions[] = {
    /* other sessions: signal, terminate, inspect (invariant 5) */
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_signal_backend",
    "pg_log_backend_memory_contexts",
    "pg_blocking_pids",
    "pg_safe_snapshot_blocking_pids",
    "pg_stat_*", /* pg_stat_get_activity, pg_stat_get_backend_*, pg_stat_statements*,
                    pg_stat_reset*, pg_stat_file, per-table counters of every tenant */
    "pg_lock_status",
    "pg_prepared_xact",
    "pg_backend_pid", /* tenants never learn backend pids */
    /* on-disk sizes count every tenant's rows of a shared table */
    "pg_relation_size",
    "pg_total_relation_size",
    "pg_table_size",
    "pg_indexes_size",
    "pg_database_size",
    "pg_tablespace_size",
    /* server configuration and files */
    "pg_reload_conf",
    "pg_rotate_logfile*",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_*", /* pg_ls_dir, pg_ls_logdir, pg_ls_waldir, pg_ls_tmpdir, pg_ls_archive_statusdir.. */
    "pg_file_*", /* adminpack: pg_file_write, pg_file_unlink, pg_file_rename, pg_file_sync */
    "pg_logdir_ls",
    "pg_show_all_file_settings",
    "pg_hba_file_rules",
    "pg_ident_file_mappings",
    /* a lock space shared by every tenant of the database */
    "pg_advisory_*",
    "pg_try_advisory_*",
    /* large objects: one namespace for the whole database, no RLS */
    "lo_*",
    "loread",
    "lowrite",
    /* other databases */
    "dblink*",
    "postgres_fdw_*",
    /* SQL text executed inside the server, out of the guard's sight */
    "query_to_xml*",
    "ts_stat",
    "ts_rewrite",
    /* logical decoding reads every tenant's changes */
    "pg_logical_*",
    "pg_replication_*",
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_copy_physical_replication_slot",
    "pg_copy_logical_replication_slot",
    "pg_drop_replication_slot",
};

/* Relations that show other sessions, server secrets or data outside RLS. */
static const char *const default_deny_relations[] = {
    "pg_stat_*", /* pg_stat_activity, pg_stat_statements(_info), pg_stat_ssl, pg_stat_gssapi,
                    pg_stat_replication, pg_stat_wal_receiver, pg_stat_subscription,
                    pg_stat_progress_*, per-table row counters of every tenant */
    "pg_statio_*",
    "pg_locks",
    "pg_prepared_xacts",
    "pg_largeobject",
    "pg_largeobject_metadata",
    "pg_authid",
    "pg_shadow",
    "pg_user_mapping",
    "pg_user_mappings",
    "pg_file_settings",
    "pg_hba_file_rules",
    "pg_ident_file_mappings",
    "pg_replication_slots",
    "pg_statistic",
    "pg_statistic_ext_data",
    "pg_stats", /* most_common_vals and histograms: other tenants' values */
    "pg_stats_ext",
    "pg_stats_ext_exprs",
};

/*
 * Client encodings the server splits the way the guard does: single-byte
 * encodings and multibyte ones whose every byte of a multibyte character is
 * 0x80 or above. SJIS, BIG5, GBK, UHC, GB18030 and JOHAB are missing on
 * purpose: their second bytes can be a quote or a backslash, so the server
 * would read a statement differently from the guard, which parses the bytes
 * as they are. An allow-list, so an encoding alias nobody thought of is
 * refused. Names as PostgreSQL's clean_encoding_name() leaves them: lowercase,
 * alphanumerics only (pg_encname_tbl).
 */
static const char *const safe_client_encodings[] = {
    "utf8",        "unicode",     "sqlascii",    "latin1",      "latin2",      "latin3",
    "latin4",      "latin5",      "latin6",      "latin7",      "latin8",      "latin9",
    "latin10",     "iso88591",    "iso88592",    "iso88593",    "iso88594",    "iso88595",
    "iso88596",    "iso88597",    "iso88598",    "iso88599",    "iso885910",   "iso885913",
    "iso885914",   "iso885915",   "iso885916",   "win1250",     "win1251",     "win1252",
    "win1253",     "win1254",     "win1255",     "win1256",     "win1257",     "win1258",
    "windows1250", "windows1251", "windows1252", "windows1253", "windows1254", "windows1255",
    "windows1256", "windows1257", "windows1258", "win866",      "windows866",  "win874",
    "windows874",  "koi8",        "koi8r",       "koi8u",       "eucjp",       "euccn",
    "euckr",       "euctw",       "eucjis2004",
};

/* ---- statement rules (data) --------------------------------------------------------------- */

enum stmt_kind {
    K_NONE = 0, /* not on the list: DENY if the message is a statement */
    K_ALLOW,    /* allowed; its sub-nodes are still walked */
    K_WRITE,    /* INSERT/UPDATE/DELETE/MERGE: allowed unless the target is pg_settings */
    K_REWRITE,  /* LISTEN / UNLISTEN / NOTIFY */
    K_SPECIAL,  /* judged by code in judge_statement() */
    K_DDL,      /* DENY unless allow_ddl */
    K_DENY,     /* always DENY */
};

/* X(node case suffix, kind, label used in reasons) */
#define TG_SQL_STMT_MAP(X)                                                                         \
    X(SELECT_STMT, ALLOW, "SELECT")                                                                \
    X(INSERT_STMT, WRITE, "INSERT")                                                                \
    X(UPDATE_STMT, WRITE, "UPDATE")                                                                \
    X(DELETE_STMT, WRITE, "DELETE")                                                                \
    X(MERGE_STMT, WRITE, "MERGE")                                                                  \
    X(VARIABLE_SHOW_STMT, ALLOW, "SHOW")                                                           \
    X(DISCARD_STMT, ALLOW, "DISCARD")                                                              \
    X(PREPARE_STMT, ALLOW, "PREPARE")                                                              \
    X(EXECUTE_STMT, ALLOW, "EXECUTE")                                                              \
    X(DEALLOCATE_STMT, ALLOW, "DEALLOCATE")                                                        \
    X(DECLARE_CURSOR_STMT, ALLOW, "DECLARE CURSOR")                                                \
    X(FETCH_STMT, ALLOW, "FETCH")                                                                  \
    X(CLOSE_PORTAL_STMT, ALLOW, "CLOSE")                                                           \
    X(CONSTRAINTS_SET_STMT, ALLOW, "SET CONSTRAINTS")                                              \
    X(CALL_STMT, ALLOW, "CALL")                                                                    \
    X(LISTEN_STMT, REWRITE, "LISTEN")                                                              \
    X(UNLISTEN_STMT, REWRITE, "UNLISTEN")                                                          \
    X(NOTIFY_STMT, REWRITE, "NOTIFY")                                                              \
    X(TRANSACTION_STMT, SPECIAL, "transaction control")                                            \
    X(VARIABLE_SET_STMT, SPECIAL, "SET")                                                           \
    X(EXPLAIN_STMT, SPECIAL, "EXPLAIN")                                                            \
    X(COPY_STMT, SPECIAL, "COPY")                                                                  \
    X(ALTER_TABLE_STMT, SPECIAL, "ALTER TABLE")                                                    \
    X(DROP_STMT, SPECIAL, "DROP")                                                                  \
    X(RENAME_STMT, SPECIAL, "RENAME")                                                              \
    /* invariant 5: locks, server-wide actions */                                                  \
    X(LOCK_STMT, DENY, "LOCK")                                                                     \
    X(CHECK_POINT_STMT, DENY, "CHECKPOINT")                                                        \
    X(TRUNCATE_STMT, DENY, "TRUNCATE") /* RLS does not apply to TRUNCATE */                        \
    /* code that runs unscoped (invariant 4) */                                                    \
    X(DO_STMT, DENY, "DO")                                                                         \
    X(CREATE_FUNCTION_STMT, DENY, "CREATE FUNCTION")                                               \
    X(ALTER_FUNCTION_STMT, DENY, "ALTER FUNCTION")                                                 \
    X(CREATE_TRIG_STMT, DENY, "CREATE TRIGGER")                                                    \
    X(CREATE_EVENT_TRIG_STMT, DENY, "CREATE EVENT TRIGGER")                                        \
    X(ALTER_EVENT_TRIG_STMT, DENY, "ALTER EVENT TRIGGER")                                          \
    X(RULE_STMT, DENY, "CREATE RULE")                                                              \
    X(CREATE_PLANG_STMT, DENY, "CREATE LANGUAGE")                                                  \
    X(CREATE_TRANSFORM_STMT, DENY, "CREATE TRANSFORM")                                             \
    X(CREATE_AM_STMT, DENY, "CREATE ACCESS METHOD")                                                \
    X(LOAD_STMT, DENY, "LOAD")                                                                     \
    X(CREATE_EXTENSION_STMT, DENY, "CREATE EXTENSION")                                             \
    X(ALTER_EXTENSION_STMT, DENY, "ALTER EXTENSION")                                               \
    X(ALTER_EXTENSION_CONTENTS_STMT, DENY, "ALTER EXTENSION")                                      \
    X(RETURN_STMT, DENY, "RETURN")                                                                 \
    X(PLASSIGN_STMT, DENY, "PL/pgSQL assignment")                                                  \
    /* row-level security itself */                                                                \
    X(CREATE_POLICY_STMT, DENY, "CREATE POLICY")                                                   \
    X(ALTER_POLICY_STMT, DENY, "ALTER POLICY")                                                     \
    /* roles, privileges, server and database settings (invariants 3 and 5) */                     \
    X(CREATE_ROLE_STMT, DENY, "CREATE ROLE")                                                       \
    X(ALTER_ROLE_STMT, DENY, "ALTER ROLE")                                                         \
    X(ALTER_ROLE_SET_STMT, DENY, "ALTER ROLE SET")                                                 \
    X(DROP_ROLE_STMT, DENY, "DROP ROLE")                                                           \
    X(GRANT_STMT, DENY, "GRANT")                                                                   \
    X(GRANT_ROLE_STMT, DENY, "GRANT ROLE")                                                         \
    X(ALTER_DEFAULT_PRIVILEGES_STMT, DENY, "ALTER DEFAULT PRIVILEGES")                             \
    X(REASSIGN_OWNED_STMT, DENY, "REASSIGN OWNED")                                                 \
    X(DROP_OWNED_STMT, DENY, "DROP OWNED")                                                         \
    X(ALTER_SYSTEM_STMT, DENY, "ALTER SYSTEM")                                                     \
    X(CREATEDB_STMT, DENY, "CREATE DATABASE")                                                      \
    X(DROPDB_STMT, DENY, "DROP DATABASE")                                                          \
    X(ALTER_DATABASE_STMT, DENY, "ALTER DATABASE")                                                 \
    X(ALTER_DATABASE_SET_STMT, DENY, "ALTER DATABASE SET")                                         \
    X(ALTER_DATABASE_REFRESH_COLL_STMT, DENY, "ALTER DATABASE")                                    \
    X(CREATE_TABLE_SPACE_STMT, DENY, "CREATE TABLESPACE")                                          \
    X(DROP_TABLE_SPACE_STMT, DENY, "DROP TABLESPACE")                                              \
    X(ALTER_TABLE_SPACE_OPTIONS_STMT, DENY, "ALTER TABLESPACE")                                    \
    X(ALTER_TABLE_MOVE_ALL_STMT, DENY, "ALTER TABLE ALL IN TABLESPACE")                            \
    /* other servers, replication */                                                               \
    X(CREATE_FDW_STMT, DENY, "CREATE FOREIGN DATA WRAPPER")                                        \
    X(ALTER_FDW_STMT, DENY, "ALTER FOREIGN DATA WRAPPER")                                          \
    X(CREATE_FOREIGN_SERVER_STMT, DENY, "CREATE SERVER")                                           \
    X(ALTER_FOREIGN_SERVER_STMT, DENY, "ALTER SERVER")                                             \
    X(CREATE_USER_MAPPING_STMT, DENY, "CREATE USER MAPPING")                                       \
    X(ALTER_USER_MAPPING_STMT, DENY, "ALTER USER MAPPING")                                         \
    X(DROP_USER_MAPPING_STMT, DENY, "DROP USER MAPPING")                                           \
    X(IMPORT_FOREIGN_SCHEMA_STMT, DENY, "IMPORT FOREIGN SCHEMA")                                   \
    X(CREATE_PUBLICATION_STMT, DENY, "CREATE PUBLICATION")                                         \
    X(ALTER_PUBLICATION_STMT, DENY, "ALTER PUBLICATION")                                           \
    X(CREATE_SUBSCRIPTION_STMT, DENY, "CREATE SUBSCRIPTION")                                       \
    X(ALTER_SUBSCRIPTION_STMT, DENY, "ALTER SUBSCRIPTION")                                         \
    X(DROP_SUBSCRIPTION_STMT, DENY, "DROP SUBSCRIPTION")                                           \
    /* DDL: belongs to migrations run as the owner, outside tenantgate */                          \
    X(CREATE_STMT, DDL, "CREATE TABLE")                                                            \
    X(CREATE_FOREIGN_TABLE_STMT, DDL, "CREATE FOREIGN TABLE")                                      \
    X(CREATE_TABLE_AS_STMT, DDL, "CREATE TABLE AS")                                                \
    X(VIEW_STMT, DDL, "CREATE VIEW")                                                               \
    X(REFRESH_MAT_VIEW_STMT, DDL, "REFRESH MATERIALIZED VIEW")                                     \
    X(INDEX_STMT, DDL, "CREATE INDEX")                                                             \
    X(CREATE_SEQ_STMT, DDL, "CREATE SEQUENCE")                                                     \
    X(ALTER_SEQ_STMT, DDL, "ALTER SEQUENCE")                                                       \
    X(CREATE_SCHEMA_STMT, DDL, "CREATE SCHEMA")                                                    \
    X(CREATE_DOMAIN_STMT, DDL, "CREATE DOMAIN")                                                    \
    X(ALTER_DOMAIN_STMT, DDL, "ALTER DOMAIN")                                                      \
    X(DEFINE_STMT, DDL, "CREATE")                                                                  \
    X(COMPOSITE_TYPE_STMT, DDL, "CREATE TYPE")                                                     \
    X(CREATE_ENUM_STMT, DDL, "CREATE TYPE")                                                        \
    X(CREATE_RANGE_STMT, DDL, "CREATE TYPE")                                                       \
    X(ALTER_ENUM_STMT, DDL, "ALTER TYPE")                                                          \
    X(ALTER_TYPE_STMT, DDL, "ALTER TYPE")                                                          \
    X(CREATE_CAST_STMT, DDL, "CREATE CAST")                                                        \
    X(CREATE_CONVERSION_STMT, DDL, "CREATE CONVERSION")                                            \
    X(CREATE_OP_CLASS_STMT, DDL, "CREATE OPERATOR CLASS")                                          \
    X(CREATE_OP_FAMILY_STMT, DDL, "CREATE OPERATOR FAMILY")                                        \
    X(ALTER_OP_FAMILY_STMT, DDL, "ALTER OPERATOR FAMILY")                                          \
    X(ALTER_OPERATOR_STMT, DDL, "ALTER OPERATOR")                                                  \
    X(ALTER_TSDICTIONARY_STMT, DDL, "ALTER TEXT SEARCH DICTIONARY")                                \
    X(ALTER_TSCONFIGURATION_STMT, DDL, "ALTER TEXT SEARCH CONFIGURATION")                          \
    X(ALTER_COLLATION_STMT, DDL, "ALTER COLLATION")                                                \
    X(CREATE_STATS_STMT, DDL, "CREATE STATISTICS")                                                 \
    X(ALTER_STATS_STMT, DDL, "ALTER STATISTICS")                                                   \
    X(ALTER_OBJECT_DEPENDS_STMT, DDL, "ALTER ... DEPENDS ON")                                      \
    X(ALTER_OBJECT_SCHEMA_STMT, DDL, "ALTER ... SET SCHEMA")                                       \
    X(ALTER_OWNER_STMT, DDL, "ALTER ... OWNER TO")                                                 \
    X(REPLICA_IDENTITY_STMT, DDL, "REPLICA IDENTITY")                                              \
    X(COMMENT_STMT, DDL, "COMMENT")                                                                \
    X(SEC_LABEL_STMT, DDL, "SECURITY LABEL")                                                       \
    /* maintenance: takes locks other tenants wait on */                                           \
    X(VACUUM_STMT, DDL, "VACUUM")                                                                  \
    X(CLUSTER_STMT, DDL, "CLUSTER")                                                                \
    X(REINDEX_STMT, DDL, "REINDEX")

typedef struct stmt_rule {
    uint8_t kind;
    const char *label;
} stmt_rule;

static const stmt_rule stmt_rules[] = {
#define TG_SQL_STMT_RULE(c, k, l) [PG_QUERY__NODE__NODE_##c] = {K_##k, l},
    TG_SQL_STMT_MAP(TG_SQL_STMT_RULE)
#undef TG_SQL_STMT_RULE
};

/* ---- name patterns ------------------------------------------------------------------------ */

typedef struct name_list {
    char **items; /* patterns; a trailing '*' makes a prefix */
    size_t n;
} name_list;

static int ascii_lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/* ASCII case-insensitive comparison of a[0..n) and b[0..n); locale-independent. */
static bool ascii_ieq_n(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (ascii_lower((unsigned char)a[i]) != ascii_lower((unsigned char)b[i]))
            return false;
    }
    return true;
}

static bool ascii_ieq(const char *a, const char *b)
{
    size_t la = strlen(a);
    return la == strlen(b) && ascii_ieq_n(a, b, la);
}

/* True when name matches pattern ("exact" or "prefix*"), ignoring ASCII case. */
static bool pattern_match(const char *pattern, const char *name)
{
    size_t pl = strlen(pattern);
    if (pl > 0 && pattern[pl - 1] == '*')
        return strlen(name) >= pl - 1 && ascii_ieq_n(pattern, name, pl - 1);
    return ascii_ieq(pattern, name);
}

/* Returns the first pattern of l matching name, or NULL. */
static const char *list_match(const name_list *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++) {
        if (pattern_match(l->items[i], name))
            return l->items[i];
    }
    return NULL;
}

static void list_free(name_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

/* Builds a list from defaults (ndef entries) plus extra (NULL-terminated, may be NULL). */
static int list_build(name_list *l, const char *first, const char *const *defaults, size_t ndef,
                      const char *const *extra)
{
    size_t nextra = 0;
    while (extra && extra[nextra])
        nextra++;
    size_t total = (first ? 1 : 0) + ndef + nextra;
    l->n = 0;
    l->items = calloc(total ? total : 1, sizeof(char *));
    if (!l->items)
        return TG_ENOMEM;
    const char *src;
    for (size_t i = 0; i < total; i++) {
        if (first && i == 0)
            src = first;
        else if (i - (first ? 1 : 0) < ndef)
            src = defaults[i - (first ? 1 : 0)];
        else
            src = extra[i - (first ? 1 : 0) - ndef];
        if (!*src)
            continue; /* an empty pattern would match nothing useful */
        l->items[l->n] = strdup(src);
        if (!l->items[l->n])
            return TG_ENOMEM;
        l->n++;
    }
    return 0;
}

/* ---- the guard ---------------------------------------------------------------------------- */

struct tg_sql_guard {
    bool allow_ddl;
    name_list reserved;       /* settings no statement may change */
    name_list deny_functions; /* functions no statement may call */
    name_list deny_relations; /* relations no statement may name */
    uint64_t identity;        /* hash of all of the above: seeds the cache keys */
};

static uint64_t hash_list(const name_list *l, uint64_t h)
{
    for (size_t i = 0; i < l->n; i++)
        h = XXH3_64bits_withSeed(l->items[i], strlen(l->items[i]) + 1, h);
    return XXH3_64bits_withSeed("|", 1, h);
}

static pthread_once_t g_secret_once = PTHREAD_ONCE_INIT;
static uint64_t g_secret;

static void secret_init(void)
{
    if (getrandom(&g_secret, sizeof(g_secret), 0) != (ssize_t)sizeof(g_secret))
        g_secret = (uint64_t)time(NULL) ^ (uint64_t)getpid(); /* getrandom cannot fail on Linux */
}

tg_sql_guard *tg_sql_guard_new(const tg_sql_guard_config *cfg)
{
    tg_sql_guard *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    const char *tenant = (cfg && cfg->tenant_setting && *cfg->tenant_setting) ? cfg->tenant_setting
                                                                              : "app.tenant_id";
    g->allow_ddl = cfg && cfg->allow_ddl;
    if (list_build(&g->reserved, tenant, default_reserved_settings,
                   COUNT(default_reserved_settings), cfg ? cfg->reserved_settings : NULL) != 0 ||
        list_build(&g->deny_functions, NULL, default_deny_functions, COUNT(default_deny_functions),
                   cfg ? cfg->deny_functions : NULL) != 0 ||
        list_build(&g->deny_relations, NULL, default_deny_relations, COUNT(default_deny_relations),
                   cfg ? cfg->deny_relations : NULL) != 0) {
        tg_sql_guard_free(g);
        return NULL;
    }
    /*
     * The identity covers everything a verdict depends on (and a version of
     * the rules), so a cache shared by two guards never hands one guard's
     * verdict to a guard configured differently.
     */
    static const char rules_version[] = "tenantgate sql_guard rules v1";
    uint64_t h = XXH3_64bits(rules_version, sizeof(rules_version));
    h = XXH3_64bits_withSeed(g->allow_ddl ? "ddl" : "noddl", 5, h);
    h = hash_list(&g->reserved, h);
    h = hash_list(&g->deny_functions, h);
    h = hash_list(&g->deny_relations, h);
    /* A per-process secret in the seeds: cache keys cannot be aimed at from outside. */
    pthread_once(&g_secret_once, secret_init);
    g->identity = XXH3_64bits_withSeed(&g_secret, sizeof(g_secret), h);
    return g;
}

void tg_sql_guard_free(tg_sql_guard *g)
{
    if (!g)
        return;
    list_free(&g->reserved);
    list_free(&g->deny_functions);
    list_free(&g->deny_relations);
    free(g);
}

/* ---- arena for protobuf-c --------------------------------------------------------------- */

/*
 * protobuf-c allocates every message of an unpacked tree separately; a bump
 * arena (proxy/arena.h, first block on the caller's stack) makes unpacking
 * cheap and freeing a handful of free() calls.
 */
#define ARENA_STACK 8192

static void *pb_arena_alloc(void *data, size_t size)
{
    return tg_arena_alloc(data, size);
}

static void pb_arena_free(void *data, void *p)
{
    (void)data;
    (void)p;
}

static char *arena_strdup2(tg_arena *a, const char *p1, const char *p2)
{
    size_t l1 = strlen(p1), l2 = strlen(p2);
    char *s = tg_arena_alloc(a, l1 + l2 + 1);
    if (!s)
        return NULL;
    memcpy(s, p1, l1);
    memcpy(s + l1, p2, l2 + 1);
    return s;
}

/* ---- the walker --------------------------------------------------------------------------- */

enum walk_mode {
    WALK_CHECK,   /* judge */
    WALK_REWRITE, /* judge, and prefix every channel name */
    WALK_VERIFY,  /* judge the rewritten text, and check every channel carries the prefix */
};

typedef struct walker {
    const tg_sql_guard *g;
    enum walk_mode mode;
    const char *prefix; /* WALK_REWRITE / WALK_VERIFY */
    size_t prefix_len;
    tg_arena *arena;
    unsigned depth;
    bool in_ddl;     /* inside a DDL statement that allow_ddl let through */
    bool no_strings; /* inside a ColumnRef or a constant: String nodes are not names */
    bool deny;
    bool rewrite;
    bool transient;         /* the DENY comes from a lack of memory: do not cache it */
    bool literal_sensitive; /* the verdict read a literal's value: no normalized key */
    char reason[REASON_SIZE];
} walker;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void
deny(walker *w, const char *fmt, ...)
{
    if (w->deny)
        return; /* the first reason wins */
    w->deny = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->reason, sizeof(w->reason), fmt, ap);
    va_end(ap);
}

static void deny_oom(walker *w)
{
    deny(w, "statement could not be checked (out of memory)");
    w->transient = true;
}

/*
 * An identifier made printable for a reason: at most TG_SQL_NAME_MAX bytes,
 * anything but plain printable ASCII (and quotes) replaced by '?'.
 */
typedef struct {
    char s[TG_SQL_NAME_MAX + 1];
} safe_name;

static safe_name sanitize(const char *name)
{
    safe_name out;
    size_t i = 0;
    for (; name && name[i] && i < TG_SQL_NAME_MAX; i++) {
        unsigned char c = (unsigned char)name[i];
        out.s[i] = (c > 0x20 && c < 0x7f && c != '"' && c != '\'' && c != '\\') ? (char)c : '?';
    }
    out.s[i] = '\0';
    return out;
}

static bool str_set(const char *s)
{
    return s && *s;
}

/* The sval of a Node holding a String, or NULL. */
static const char *node_string(const PgQuery__Node *n)
{
    if (n && n->node_case == PG_QUERY__NODE__NODE_STRING && n->string && n->string->sval)
        return n->string->sval;
    return NULL;
}

/* The A_Const of a Node holding a string constant, or NULL. */
static PgQuery__AConst *node_string_const(const PgQuery__Node *n)
{
    if (n && n->node_case == PG_QUERY__NODE__NODE_A_CONST && n->a_const && !n->a_const->isnull &&
        n->a_const->val_case == PG_QUERY__A__CONST__VAL_SVAL && n->a_const->sval &&
        n->a_const->sval->sval)
        return n->a_const;
    return NULL;
}

/*
 * Every read of a value that may come from a literal in the text (an A_Const,
 * a String or Integer built from one, a file name) goes through here, so that
 * the verdict is known to depend on it: see "The normalized key" above.
 * Returns n unchanged.
 */
static const PgQuery__Node *literal(walker *w, const PgQuery__Node *n)
{
    w->literal_sensitive = true;
    return n;
}

/* literal() for a string field of a message rather than a Node. */
static const char *literal_str(walker *w, const char *s)
{
    (void)literal(w, NULL);
    return s;
}

static bool is_stmt_descriptor(const ProtobufCMessageDescriptor *d)
{
    size_t l = d->short_name ? strlen(d->short_name) : 0;
    return l >= 4 && strcmp(d->short_name + l - 4, "Stmt") == 0;
}

/* ---- settings ---- */

bool tg_sql_client_encoding_safe(const char *name, size_t len)
{
    char norm[32]; /* PostgreSQL's normalisation: lowercase, alphanumerics only */
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int c = ascii_lower((unsigned char)name[i]);
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
            if (n + 1 >= sizeof(norm))
                return false; /* no encoding name is this long */
            norm[n++] = (char)c;
        }
    }
    norm[n] = '\0';
    for (size_t i = 0; i < COUNT(safe_client_encodings); i++) {
        if (strcmp(norm, safe_client_encodings[i]) == 0)
            return true;
    }
    return false;
}

static bool bool_on(const PgQuery__Node *n)
{
    const PgQuery__AConst *c = node_string_const(n);
    if (c) {
        const char *v = c->sval->sval;
        return ascii_ieq(v, "on") || ascii_ieq(v, "true") || ascii_ieq(v, "yes") ||
               strcmp(v, "1") == 0;
    }
    if (n && n->node_case == PG_QUERY__NODE__NODE_A_CONST && n->a_const && !n->a_const->isnull) {
        if (n->a_const->val_case == PG_QUERY__A__CONST__VAL_IVAL && n->a_const->ival)
            return n->a_const->ival->ival == 1;
        if (n->a_const->val_case == PG_QUERY__A__CONST__VAL_BOOLVAL && n->a_const->boolval)
            return n->a_const->boolval->boolval;
    }
    return false;
}

/*
 * Settings that change how the server splits statement text: the guard parses
 * with standard_conforming_strings on and the bytes as sent, so neither may
 * move away from that.
 */
static bool parse_setting(const char *name)
{
    return ascii_ieq(name, "client_encoding") || ascii_ieq(name, "standard_conforming_strings");
}

static void check_set(walker *w, const PgQuery__VariableSetStmt *s)
{
    if (s->kind == PG_QUERY__VARIABLE_SET_KIND__VAR_RESET_ALL)
        return; /* restores the startup options, the tenant setting among them */
    if (s->kind == PG_QUERY__VARIABLE_SET_KIND__VAR_SET_MULTI)
        return; /* SET TRANSACTION / SESSION CHARACTERISTICS / TRANSACTION SNAPSHOT */
    if (!str_set(s->name)) {
        deny(w, "SET statement not understood");
        return;
    }
    const char *verb = s->kind == PG_QUERY__VARIABLE_SET_KIND__VAR_RESET ? "RESET" : "SET";
    const char *pat = list_match(&w->g->reserved, s->name);
    if (pat) {
        deny(w, "%s of reserved setting %s is not allowed", verb, sanitize(pat).s);
        return;
    }
    if (s->kind != PG_QUERY__VARIABLE_SET_KIND__VAR_SET_VALUE)
        return; /* DEFAULT / RESET / FROM CURRENT of an ordinary setting */
    if (ascii_ieq(s->name, "client_encoding")) {
        const PgQuery__AConst *c =
            s->n_args == 1 ? node_string_const(literal(w, s->args[0])) : NULL;
        if (!c || !tg_sql_client_encoding_safe(c->sval->sval, strlen(c->sval->sval)))
            deny(w, "SET client_encoding to an encoding that is not ASCII-safe is not allowed");
    } else if (ascii_ieq(s->name, "standard_conforming_strings")) {
        /* Must stay denied: policy/sql_normalize.c relies on it (see the top of this file). */
        if (s->n_args != 1 || !bool_on(literal(w, s->args[0])))
            deny(w, "SET standard_conforming_strings off is not allowed");
    }
}

/* ---- functions and relations ---- */

static void channel_name(walker *w, char **name, bool allow_all)
{
    if (!str_set(*name)) {
        if (!allow_all)
            deny(w, "channel name is empty");
        w->rewrite = true; /* UNLISTEN *: nothing to prefix, but a channel statement all the same */
        return;
    }
    size_t plen = w->mode == WALK_CHECK ? TG_SQL_CHANNEL_PREFIX_LEN : w->prefix_len;
    if (w->mode == WALK_VERIFY) {
        if (strncmp(*name, w->prefix, w->prefix_len) != 0)
            deny(w, "rewritten channel lacks the tenant prefix");
        return;
    }
    if (strlen(*name) + plen > TG_SQL_NAME_MAX) {
        deny(w, "channel name too long");
        return;
    }
    w->rewrite = true;
    if (w->mode == WALK_REWRITE) {
        char *s = arena_strdup2(w->arena, w->prefix, *name);
        if (!s) {
            deny_oom(w);
            return;
        }
        *name = s;
    }
}

static void check_pg_notify(walker *w, PgQuery__FuncCall *fc)
{
    /* The channel's emptiness and length decide between REWRITE and DENY. */
    PgQuery__AConst *c = fc->n_args >= 1 ? node_string_const(literal(w, fc->args[0])) : NULL;
    if (!c || fc->func_variadic) {
        deny(w, "pg_notify channel must be a constant");
        return;
    }
    channel_name(w, &c->sval->sval, false);
}

static void check_set_config(walker *w, const PgQuery__FuncCall *fc)
{
    const PgQuery__AConst *c = fc->n_args >= 1 ? node_string_const(literal(w, fc->args[0])) : NULL;
    if (!c || fc->func_variadic) {
        deny(w, "function set_config with a non-constant setting name is not allowed");
        return;
    }
    /* The name is a literal: only the matching configured pattern goes into the reason. */
    const char *pat = list_match(&w->g->reserved, c->sval->sval);
    if (pat)
        deny(w, "set_config of reserved setting %s is not allowed", sanitize(pat).s);
    else if (parse_setting(c->sval->sval))
        deny(w, "set_config of %s is not allowed",
             ascii_ieq(c->sval->sval, "client_encoding") ? "client_encoding"
                                                         : "standard_conforming_strings");
}

/* A function name seen anywhere: a FuncCall, attribute notation, or a name inside DDL. */
static bool function_denied(walker *w, const char *name)
{
    if (list_match(&w->g->deny_functions, name)) {
        deny(w, "function %s is not allowed", sanitize(name).s);
        return true;
    }
    return false;
}

static void check_func_call(walker *w, PgQuery__FuncCall *fc)
{
    const char *name = fc->n_funcname ? node_string(fc->funcname[fc->n_funcname - 1]) : NULL;
    if (!name) {
        deny(w, "function call not understood");
        return;
    }
    if (ascii_ieq(name, "set_config"))
        check_set_config(w, fc);
    else if (ascii_ieq(name, "pg_notify"))
        check_pg_notify(w, fc);
    else
        function_denied(w, name);
}

static void check_relation(walker *w, const PgQuery__RangeVar *rv)
{
    if (str_set(rv->relname) && list_match(&w->g->deny_relations, rv->relname))
        deny(w, "relation %s is not allowed", sanitize(rv->relname).s);
}

/* The target of INSERT / UPDATE / DELETE / MERGE / COPY FROM. */
static void check_write_target(walker *w, const PgQuery__RangeVar *rv)
{
    /* UPDATE pg_settings runs set_config() through the view's rules. */
    if (rv && str_set(rv->relname) && ascii_ieq(rv->relname, "pg_settings"))
        deny(w, "writes to pg_settings are not allowed");
}

/* ---- statements ---- */

static void deny_type(walker *w, const char *label)
{
    deny(w, "statement type %s is not allowed", label);
}

static void ddl(walker *w)
{
    if (!w->g->allow_ddl)
        deny(w, "DDL is not allowed (allow_ddl is off)");
    else
        w->in_ddl = true;
}

static void judge_transaction(walker *w, const PgQuery__TransactionStmt *t)
{
    switch (t->kind) {
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_PREPARE:
        deny_type(w, "PREPARE TRANSACTION");
        break;
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_COMMIT_PREPARED:
        deny_type(w, "COMMIT PREPARED");
        break;
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK_PREPARED:
        deny_type(w, "ROLLBACK PREPARED");
        break;
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_BEGIN:
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_START:
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_COMMIT:
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK:
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_SAVEPOINT:
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_RELEASE:
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK_TO:
        break;
    default:
        deny_type(w, "transaction control");
        break;
    }
}

static void judge_copy(walker *w, const PgQuery__CopyStmt *c)
{
    /*
     * The file name is a literal, and the tree cannot tell FROM '' from FROM
     * STDIN (both are an empty string): the verdict depends on the value.
     */
    if (c->is_program || str_set(literal_str(w, c->filename))) {
        deny(w, "COPY to or from a file or program is not allowed");
        return;
    }
    if (c->is_from)
        check_write_target(w, c->relation);
}

/*
 * EXPLAIN is refused whatever its options: the planner's estimates come from
 * statistics over every tenant's rows, so "rows=5" for a filter on another
 * tenant's id tells that those rows exist and how many (SPEC §6.1), and
 * ANALYZE's "Rows Removed by Filter" counts the rows RLS hid.
 */
static void judge_explain(walker *w, const PgQuery__ExplainStmt *e)
{
    (void)e;
    deny(w, "EXPLAIN is not allowed (its estimates count rows of every tenant)");
}

static void judge_alter_table(walker *w, const PgQuery__AlterTableStmt *a)
{
    for (size_t i = 0; i < a->n_cmds; i++) {
        const PgQuery__Node *n = a->cmds[i];
        if (!n || n->node_case != PG_QUERY__NODE__NODE_ALTER_TABLE_CMD || !n->alter_table_cmd)
            continue;
        if (n->alter_table_cmd->num != 0)
            (void)literal(w, n); /* ALTER [COLUMN] <number>: the grammar range-checks it */
        switch (n->alter_table_cmd->subtype) {
        case PG_QUERY__ALTER_TABLE_TYPE__AT_DisableRowSecurity:
            deny(w, "ALTER TABLE DISABLE ROW LEVEL SECURITY is not allowed");
            return;
        case PG_QUERY__ALTER_TABLE_TYPE__AT_NoForceRowSecurity:
            deny(w, "ALTER TABLE NO FORCE ROW LEVEL SECURITY is not allowed");
            return;
        default:
            break;
        }
    }
    ddl(w);
}

/* DROP / RENAME of objects that are never a tenant's to touch. */
static const char *object_denied(PgQuery__ObjectType t)
{
    switch (t) {
    case PG_QUERY__OBJECT_TYPE__OBJECT_POLICY:
        return "POLICY";
    case PG_QUERY__OBJECT_TYPE__OBJECT_ROLE:
        return "ROLE";
    case PG_QUERY__OBJECT_TYPE__OBJECT_DATABASE:
        return "DATABASE";
    case PG_QUERY__OBJECT_TYPE__OBJECT_TABLESPACE:
        return "TABLESPACE";
    case PG_QUERY__OBJECT_TYPE__OBJECT_EXTENSION:
        return "EXTENSION";
    case PG_QUERY__OBJECT_TYPE__OBJECT_EVENT_TRIGGER:
        return "EVENT TRIGGER";
    case PG_QUERY__OBJECT_TYPE__OBJECT_TRIGGER:
        return "TRIGGER";
    case PG_QUERY__OBJECT_TYPE__OBJECT_RULE:
        return "RULE";
    case PG_QUERY__OBJECT_TYPE__OBJECT_FUNCTION:
        return "FUNCTION";
    case PG_QUERY__OBJECT_TYPE__OBJECT_PROCEDURE:
        return "PROCEDURE";
    case PG_QUERY__OBJECT_TYPE__OBJECT_ROUTINE:
        return "ROUTINE";
    case PG_QUERY__OBJECT_TYPE__OBJECT_LANGUAGE:
        return "LANGUAGE";
    case PG_QUERY__OBJECT_TYPE__OBJECT_FDW:
        return "FOREIGN DATA WRAPPER";
    case PG_QUERY__OBJECT_TYPE__OBJECT_FOREIGN_SERVER:
        return "SERVER";
    case PG_QUERY__OBJECT_TYPE__OBJECT_USER_MAPPING:
        return "USER MAPPING";
    case PG_QUERY__OBJECT_TYPE__OBJECT_PUBLICATION:
        return "PUBLICATION";
    case PG_QUERY__OBJECT_TYPE__OBJECT_SUBSCRIPTION:
        return "SUBSCRIPTION";
    case PG_QUERY__OBJECT_TYPE__OBJECT_ACCESS_METHOD:
        return "ACCESS METHOD";
    case PG_QUERY__OBJECT_TYPE__OBJECT_TRANSFORM:
        return "TRANSFORM";
    default:
        return NULL;
    }
}

static void judge_drop_rename(walker *w, const char *verb, PgQuery__ObjectType t)
{
    const char *what = object_denied(t);
    if (what)
        deny(w, "statement type %s %s is not allowed", verb, what);
    else
        ddl(w);
}

/* Applies the statement rules to a statement node (top level or nested). */
static void judge_statement(walker *w, int node_case, const ProtobufCMessage *m)
{
    const stmt_rule *r =
        (node_case > 0 && (size_t)node_case < COUNT(stmt_rules)) ? &stmt_rules[node_case] : NULL;
    switch (r ? r->kind : K_NONE) {
    case K_ALLOW:
    case K_REWRITE: /* channel names are checked when the message is visited */
        return;
    case K_WRITE:
        switch (node_case) {
        case PG_QUERY__NODE__NODE_INSERT_STMT:
            check_write_target(w, ((const PgQuery__InsertStmt *)m)->relation);
            break;
        case PG_QUERY__NODE__NODE_UPDATE_STMT:
            check_write_target(w, ((const PgQuery__UpdateStmt *)m)->relation);
            break;
        case PG_QUERY__NODE__NODE_DELETE_STMT:
            check_write_target(w, ((const PgQuery__DeleteStmt *)m)->relation);
            break;
        case PG_QUERY__NODE__NODE_MERGE_STMT:
            check_write_target(w, ((const PgQuery__MergeStmt *)m)->relation);
            break;
        default:
            break;
        }
        return;
    case K_DDL:
        ddl(w);
        return;
    case K_DENY:
        deny_type(w, r->label);
        return;
    case K_SPECIAL:
        break;
    default:
        if (is_stmt_descriptor(m->descriptor))
            deny(w, "statement type %s is not allowed", m->descriptor->short_name);
        return;
    }
    switch (node_case) {
    case PG_QUERY__NODE__NODE_TRANSACTION_STMT:
        judge_transaction(w, (const PgQuery__TransactionStmt *)m);
        break;
    case PG_QUERY__NODE__NODE_VARIABLE_SET_STMT:
        check_set(w, (const PgQuery__VariableSetStmt *)m);
        break;
    case PG_QUERY__NODE__NODE_COPY_STMT:
        judge_copy(w, (const PgQuery__CopyStmt *)m);
        break;
    case PG_QUERY__NODE__NODE_EXPLAIN_STMT:
        judge_explain(w, (const PgQuery__ExplainStmt *)m);
        break;
    case PG_QUERY__NODE__NODE_ALTER_TABLE_STMT:
        judge_alter_table(w, (const PgQuery__AlterTableStmt *)m);
        break;
    case PG_QUERY__NODE__NODE_DROP_STMT:
        judge_drop_rename(w, "DROP", ((const PgQuery__DropStmt *)m)->remove_type);
        break;
    case PG_QUERY__NODE__NODE_RENAME_STMT:
        judge_drop_rename(w, "RENAME", ((const PgQuery__RenameStmt *)m)->rename_type);
        break;
    default:
        deny_type(w, r->label);
        break;
    }
}

/* ---- the generic walk ---- */

static void walk(walker *w, ProtobufCMessage *m);

/* Type-specific checks of one message, before its fields are walked. */
static void visit(walker *w, ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (d == &pg_query__func_call__descriptor) {
        check_func_call(w, (PgQuery__FuncCall *)m);
    } else if (d == &pg_query__range_var__descriptor) {
        check_relation(w, (const PgQuery__RangeVar *)m);
    } else if (d == &pg_query__a__indirection__descriptor) {
        /* (expr).f is f(expr): PostgreSQL's attribute notation for calls. */
        const PgQuery__AIndirection *ind = (const PgQuery__AIndirection *)m;
        for (size_t i = 0; i < ind->n_indirection && !w->deny; i++) {
            const char *f = node_string(ind->indirection[i]);
            if (f)
                function_denied(w, f);
        }
    } else if (d == &pg_query__column_ref__descriptor) {
        /* rel.f is f(rel) when rel has no column f; rel may be a scalar function in FROM. */
        const PgQuery__ColumnRef *cr = (const PgQuery__ColumnRef *)m;
        const char *f = cr->n_fields >= 2 ? node_string(cr->fields[cr->n_fields - 1]) : NULL;
        if (f)
            function_denied(w, f);
        w->no_strings = true;
    } else if (d == &pg_query__a__const__descriptor) {
        w->no_strings = true;
    } else if (d == &pg_query__string__descriptor) {
        /*
         * DDL names functions without calling them (CREATE AGGREGATE ... SFUNC,
         * CREATE OPERATOR ... FUNCTION, CREATE CAST ... WITH FUNCTION): inside
         * DDL, any name of a denied function (or set_config / pg_notify) is denied.
         * Such a String may come from a literal (SFUNC = 'set_config'): literal_str().
         */
        const char *s = ((const PgQuery__String *)m)->sval;
        if (w->in_ddl && !w->no_strings && str_set(literal_str(w, s)) && !function_denied(w, s) &&
            (ascii_ieq(s, "set_config") || ascii_ieq(s, "pg_notify")))
            deny(w, "function %s is not allowed in DDL", sanitize(s).s);
    } else if (d == &pg_query__select_stmt__descriptor) {
        if (((const PgQuery__SelectStmt *)m)->into_clause)
            ddl(w); /* SELECT ... INTO creates a table */
    } else if (d == &pg_query__listen_stmt__descriptor) {
        channel_name(w, &((PgQuery__ListenStmt *)m)->conditionname, false);
    } else if (d == &pg_query__unlisten_stmt__descriptor) {
        channel_name(w, &((PgQuery__UnlistenStmt *)m)->conditionname, true);
    } else if (d == &pg_query__notify_stmt__descriptor) {
        channel_name(w, &((PgQuery__NotifyStmt *)m)->conditionname, false);
    }
}

static void walk_node(walker *w, PgQuery__Node *n)
{
    uint32_t c = (uint32_t)n->node_case;
    if (c == PG_QUERY__NODE__NODE__NOT_SET)
        return;
    const ProtobufCMessageDescriptor *d = &pg_query__node__descriptor;
    const ProtobufCFieldDescriptor *f = NULL;
    if (c <= d->n_fields && d->fields[c - 1].id == c)
        f = &d->fields[c - 1];
    else
        f = protobuf_c_message_descriptor_get_field(d, c);
    if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE) {
        deny(w, "statement not understood");
        return;
    }
    ProtobufCMessage *inner;
    memcpy(&inner, (char *)n + f->offset, sizeof(inner));
    if (!inner)
        return;
    bool saved_ddl = w->in_ddl; /* ddl() marks this statement's subtree only */
    judge_statement(w, (int)c, inner);
    if (!w->deny)
        walk(w, inner);
    w->in_ddl = saved_ddl;
}

static void walk(walker *w, ProtobufCMessage *m)
{
    if (w->deny)
        return;
    if (w->depth >= TG_SQL_MAX_DEPTH) {
        deny(w, "statement is nested too deeply");
        return;
    }
    w->depth++;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (d == &pg_query__node__descriptor) {
        walk_node(w, (PgQuery__Node *)m);
        w->depth--;
        return;
    }
    bool saved_ddl = w->in_ddl, saved_strings = w->no_strings;
    visit(w, m);
    char *base = (char *)m;
    for (unsigned i = 0; i < d->n_fields && !w->deny; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t which;
            memcpy(&which, base + f->quantifier_offset, sizeof(which));
            if (which != f->id)
                continue;
        }
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t count;
            ProtobufCMessage **items;
            memcpy(&count, base + f->quantifier_offset, sizeof(count));
            memcpy(&items, base + f->offset, sizeof(items));
            for (size_t j = 0; j < count && items && !w->deny; j++) {
                if (items[j])
                    walk(w, items[j]);
            }
        } else {
            ProtobufCMessage *sub;
            memcpy(&sub, base + f->offset, sizeof(sub));
            if (sub)
                walk(w, sub);
        }
    }
    w->in_ddl = saved_ddl;
    w->no_strings = saved_strings;
    w->depth--;
}

/* ---- depth pre-check ---------------------------------------------------------------------- */

/*
 * An upper bound of the message depth of the tree the parser would build,
 * from the tokens alone. Tokens at one bracket level between separators form
 * one item; an item's own nodes nest at most EST_TOKEN levels per token
 * (left-deep chains such as 1-1-1, NOT NOT x, x::t::t, x ISNULL ISNULL), and
 * the brackets inside it hang below them:
 *
 *   depth(level) = EST_GROUP + EST_TOKEN * setops + max over items of
 *                  (EST_ITEM + EST_TOKEN * tokens(item) + max depth(groups in item))
 *
 * Separators are ',' ';' AND OR (the parser flattens AND and OR chains into
 * one list) and, inside CASE ... END, WHEN THEN ELSE. UNION / INTERSECT /
 * EXCEPT chain whole selects, commas and all, so they count for the level.
 */
#define EST_TOKEN 2
#define EST_ITEM 8
#define EST_GROUP 6

typedef struct est_level {
    uint32_t open;   /* the token that opened it ('(' '[' CASE, 0 for the root) */
    uint32_t tokens; /* in the current item */
    uint32_t child;  /* deepest group in the current item */
    uint32_t best;   /* deepest item so far */
    uint32_t setops; /* UNION / INTERSECT / EXCEPT at this level */
} est_level;

static bool pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (*p >= end)
            return false;
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return true;
        }
    }
    return false;
}

static bool pb_skip(const uint8_t **p, const uint8_t *end, unsigned wire)
{
    uint64_t v;
    switch (wire) {
    case 0:
        return pb_varint(p, end, &v);
    case 1:
        if ((size_t)(end - *p) < 8)
            return false;
        *p += 8;
        return true;
    case 2:
        if (!pb_varint(p, end, &v) || v > (uint64_t)(end - *p))
            return false;
        *p += v;
        return true;
    case 5:
        if ((size_t)(end - *p) < 4)
            return false;
        *p += 4;
        return true;
    default:
        return false;
    }
}

static void est_finish_item(est_level *l)
{
    uint64_t d = (uint64_t)EST_ITEM + (uint64_t)EST_TOKEN * l->tokens + l->child;
    if (d > l->best)
        l->best = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
    l->tokens = 0;
    l->child = 0;
}

static uint64_t est_level_depth(const est_level *l)
{
    return (uint64_t)EST_GROUP + (uint64_t)EST_TOKEN * l->setops + l->best;
}

/* Returns 0 when the estimate is within limit, 1 when above, -1 on a malformed scan result. */
static int depth_estimate(const uint8_t *pb, size_t len, est_level *lv, size_t max_levels,
                          uint64_t limit)
{
    const uint8_t *p = pb, *end = pb + len;
    size_t top = 0;
    memset(&lv[0], 0, sizeof(lv[0]));
    while (p < end) {
        uint64_t key, tlen;
        if (!pb_varint(&p, end, &key))
            return -1;
        if ((key >> 3) != 2 || (key & 7) != 2) {
            if (!pb_skip(&p, end, (unsigned)(key & 7)))
                return -1;
            continue;
        }
        if (!pb_varint(&p, end, &tlen) || tlen > (uint64_t)(end - p))
            return -1;
        const uint8_t *tp = p, *tend = p + tlen;
        p = tend;
        uint64_t token = 0;
        while (tp < tend) {
            uint64_t tkey, v;
            if (!pb_varint(&tp, tend, &tkey))
                return -1;
            if ((tkey >> 3) == 4 && (tkey & 7) == 0) {
                if (!pb_varint(&tp, tend, &v))
                    return -1;
                token = v;
            } else if (!pb_skip(&tp, tend, (unsigned)(tkey & 7))) {
                return -1;
            }
        }
        est_level *l = &lv[top];
        switch (token) {
        case PG_QUERY__TOKEN__SQL_COMMENT:
        case PG_QUERY__TOKEN__C_COMMENT:
            continue;
        case PG_QUERY__TOKEN__ASCII_40: /* ( */
        case PG_QUERY__TOKEN__ASCII_91: /* [ */
        case PG_QUERY__TOKEN__CASE:
            if (top + 1 >= max_levels)
                return 1;
            top++;
            memset(&lv[top], 0, sizeof(lv[top]));
            lv[top].open = (uint32_t)token;
            continue;
        case PG_QUERY__TOKEN__ASCII_41: /* ) */
        case PG_QUERY__TOKEN__ASCII_93: /* ] */
        case PG_QUERY__TOKEN__END_P: {
            uint64_t want = token == PG_QUERY__TOKEN__ASCII_41   ? PG_QUERY__TOKEN__ASCII_40
                            : token == PG_QUERY__TOKEN__ASCII_93 ? PG_QUERY__TOKEN__ASCII_91
                                                                 : PG_QUERY__TOKEN__CASE;
            if (top == 0 || l->open != want)
                break; /* unbalanced (the parser will refuse it) or END of a transaction */
            est_finish_item(l);
            uint64_t d = est_level_depth(l);
            top--;
            if (d > lv[top].child)
                lv[top].child = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
            if (d > limit)
                return 1;
            continue;
        }
        case PG_QUERY__TOKEN__ASCII_44: /* , */
        case PG_QUERY__TOKEN__AND:
        case PG_QUERY__TOKEN__OR:
            est_finish_item(l);
            continue;
        case PG_QUERY__TOKEN__ASCII_59: /* ; */
            est_finish_item(l);
            if (top == 0) {
                if (est_level_depth(l) > limit)
                    return 1;
                memset(l, 0, sizeof(*l)); /* statements are siblings */
            }
            continue;
        case PG_QUERY__TOKEN__WHEN:
        case PG_QUERY__TOKEN__THEN:
        case PG_QUERY__TOKEN__ELSE:
            if (l->open == PG_QUERY__TOKEN__CASE) {
                est_finish_item(l);
                continue;
            }
            break;
        case PG_QUERY__TOKEN__UNION:
        case PG_QUERY__TOKEN__INTERSECT:
        case PG_QUERY__TOKEN__EXCEPT:
            l->setops++;
            break;
        default:
            break;
        }
        l->tokens++;
        if ((uint64_t)EST_TOKEN * l->tokens + EST_TOKEN * (uint64_t)l->setops > limit)
            return 1;
    }
    /* Close what is still open (the parser will refuse it, but stay an upper bound). */
    for (;;) {
        est_finish_item(&lv[top]);
        uint64_t d = est_level_depth(&lv[top]);
        if (d > limit)
            return 1;
        if (top == 0)
            return 0;
        top--;
        if (d > lv[top].child)
            lv[top].child = (uint32_t)d;
    }
}

/* 0: fine; 1: too deep (denied); -1: the scanner refused the text; TG_ENOMEM. */
static int depth_precheck(const char *text)
{
    PgQueryScanResult sr = pg_query_scan(text);
    if (sr.error) {
        pg_query_free_scan_result(sr);
        return -1;
    }
    size_t max_levels = TG_SQL_MAX_ESTIMATE / EST_GROUP + 2;
    est_level *lv = malloc(max_levels * sizeof(*lv));
    int rc;
    if (!lv)
        rc = TG_ENOMEM;
    else
        rc = depth_estimate((const uint8_t *)sr.pbuf.data, sr.pbuf.len, lv, max_levels,
                            TG_SQL_MAX_ESTIMATE);
    free(lv);
    pg_query_free_scan_result(sr);
    return rc == -1 ? 1 : rc; /* a scan result we cannot read: refuse */
}

/* ---- judging a text ----------------------------------------------------------------------- */

/*
 * Parses text (NUL-terminated, len bytes) and walks it with w. On success,
 * *tree is the unpacked tree (in a) and *parse the raw result, both for the
 * caller to release; on DENY they are left empty.
 */
static void judge_text(walker *w, const char *text, size_t len, tg_arena *a,
                       PgQueryProtobufParseResult *parse, PgQuery__ParseResult **tree)
{
    *tree = NULL;
    memset(parse, 0, sizeof(*parse));
    if (len > TG_SQL_SHORT_TEXT) {
        int rc = depth_precheck(text);
        if (rc == TG_ENOMEM) {
            deny_oom(w);
            return;
        }
        if (rc < 0) {
            (void)literal(w, NULL); /* see below */
            deny(w, "statement could not be parsed");
            return;
        }
        if (rc > 0) {
            deny(w, "statement is nested too deeply");
            return;
        }
    }
    *parse = pg_query_parse_protobuf(text);
    if (parse->error) {
        /*
         * The parser's message may quote the statement: never pass it on.
         * Whether a text parses may depend on a literal's value (FLOAT(0),
         * a column number out of range): never cached by normalized key.
         */
        (void)literal(w, NULL);
        deny(w, "statement could not be parsed");
        return;
    }
    ProtobufCAllocator alloc = {pb_arena_alloc, pb_arena_free, a};
    *tree = pg_query__parse_result__unpack(&alloc, parse->parse_tree.len,
                                           (const uint8_t *)parse->parse_tree.data);
    if (!*tree) {
        if (tg_arena_failed(a))
            deny_oom(w);
        else
            deny(w, "statement could not be parsed");
        return;
    }
    w->arena = a;
    for (size_t i = 0; i < (*tree)->n_stmts && !w->deny; i++) {
        PgQuery__RawStmt *rs = (*tree)->stmts[i];
        if (!rs || !rs->stmt) {
            deny(w, "statement not understood");
            break;
        }
        w->depth = 0;
        w->in_ddl = false;
        w->no_strings = false;
        walk(w, &rs->stmt->base);
    }
}

/* A NUL-terminated copy of sql: in stack (when it fits) or on the heap. */
static char *terminated(const char *sql, size_t len, char *stack, size_t stack_len)
{
    char *s = len < stack_len ? stack : malloc(len + 1);
    if (s) {
        if (len)
            memcpy(s, sql, len);
        s[len] = '\0';
    }
    return s;
}

static void walker_init(walker *w, const tg_sql_guard *g, enum walk_mode mode, const char *prefix)
{
    memset(w, 0, sizeof(*w));
    w->g = g;
    w->mode = mode;
    w->prefix = prefix;
    w->prefix_len = prefix ? strlen(prefix) : 0;
}

/*
 * Judges sql into out; returns whether the verdict may be cached, and sets
 * *by_shape to whether it may also be cached under the normalized key.
 */
static bool judge(const tg_sql_guard *g, const char *sql, size_t len, tg_sql_verdict *out,
                  bool *by_shape)
{
    walker w;
    walker_init(&w, g, WALK_CHECK, NULL);
    if (len && memchr(sql, '\0', len)) {
        /* The server would stop at the NUL (or refuse the message): never guess. */
        deny(&w, "statement contains a NUL byte");
    } else {
        char stack[TG_SQL_STACK_COPY];
        char *text = terminated(sql, len, stack, sizeof(stack));
        if (!text) {
            deny_oom(&w);
        } else {
            unsigned char buf[ARENA_STACK];
            tg_arena a;
            tg_arena_init(&a, buf, sizeof(buf), 0);
            PgQueryProtobufParseResult parse;
            PgQuery__ParseResult *tree;
            judge_text(&w, text, len, &a, &parse, &tree);
            tg_arena_release(&a);
            pg_query_free_protobuf_parse_result(parse);
            if (text != stack)
                free(text);
        }
    }
    out->kind = w.deny ? TG_SQL_DENY : w.rewrite ? TG_SQL_REWRITE : TG_SQL_ALLOW;
    memcpy(out->reason, w.deny ? w.reason : "", w.deny ? sizeof(out->reason) : 1);
    out->reason[sizeof(out->reason) - 1] = '\0';
    /* REWRITE needs the text itself (tg_sql_guard_rewrite): never by shape. */
    *by_shape = !w.transient && !w.literal_sensitive && out->kind != TG_SQL_REWRITE;
    return !w.transient;
}

/* ---- the verdict cache -------------------------------------------------------------------- */

/*
 * One LRU (proxy/lru.h) holds two key spaces. Exact text: key and check = the
 * two halves of XXH3-128 of the text seeded with the guard's (secret)
 * identity, len = the text's length. Normalized: the same over the
 * normalized form with another seed, len = NORM_LEN_BIT | the length class |
 * the form's length, so the two spaces cannot meet even on a full 128-bit
 * collision.
 */
#define NORM_LEN_BIT (UINT64_C(1) << 63)
#define NORM_LONG_BIT (UINT64_C(1) << 62) /* longer than TG_SQL_SHORT_TEXT: depth pre-check */

/* An entry: the index's part, then the verdict. */
typedef struct cache_entry {
    tg_lru_slot slot;
    uint8_t kind;
    char reason[REASON_SIZE];
} cache_entry;

struct tg_sql_cache {
    tg_lru index; /* of cache_entry */
    uint64_t hits, misses, evictions;
    uint64_t norm_hits, norm_refused;
};

tg_sql_cache *tg_sql_cache_new(uint32_t entries)
{
    tg_sql_cache *c = calloc(1, sizeof(*c));
    if (c && tg_lru_init(&c->index, entries, sizeof(cache_entry)) != 0) {
        free(c);
        return NULL;
    }
    return c;
}

void tg_sql_cache_free(tg_sql_cache *c)
{
    if (!c)
        return;
    tg_lru_destroy(&c->index);
    free(c);
}

void tg_sql_cache_stats(const tg_sql_cache *c, tg_sql_cache_counters *out)
{
    memset(out, 0, sizeof(*out));
    if (!c)
        return;
    out->capacity = c->index.capacity;
    out->entries = tg_lru_count(&c->index);
    out->hits = c->hits;
    out->misses = c->misses;
    out->evictions = c->evictions;
    out->norm_hits = c->norm_hits;
    out->norm_refused = c->norm_refused;
}

static void cache_store(tg_sql_cache *c, uint64_t key, uint64_t check, uint64_t len,
                        const tg_sql_verdict *v)
{
    uint32_t i = tg_lru_find(&c->index, key, check, len);
    if (i == TG_LRU_NIL) {
        bool evicted;
        i = tg_lru_insert(&c->index, &(tg_lru_key){key, check, len}, &evicted);
        c->evictions += evicted;
    } else {
        tg_lru_touch(&c->index, i);
    }
    cache_entry *e = tg_lru_entry(&c->index, i);
    e->kind = (uint8_t)v->kind;
    memcpy(e->reason, v->reason, sizeof(e->reason));
}

/* ---- public entry points ------------------------------------------------------------------ */

#define AUDIT_SEED_SALT UINT64_C(0x27d4eb2f165667c5)
#define NORM_KEY_SALT UINT64_C(0xc2b2ae3d27d4eb4f)
/* Texts up to this size are normalized on the stack; longer ones in a heap buffer. */
#define TG_SQL_NORM_STACK 4096

/*
 * The normalized key of sql: 1 when there is one, 0 when the text has no
 * literal (its exact key says it all), TG_EINVAL when the normalizer refused
 * it, TG_ENOMEM.
 */
static int normalized_key(const tg_sql_guard *g, const char *sql, size_t len, tg_lru_key *k)
{
    char stack[TG_SQL_NORM_STACK];
    char *buf = len <= sizeof(stack) ? stack : malloc(len);
    if (!buf)
        return TG_ENOMEM;
    size_t nlen;
    int rc = tg_sql_normalize(sql, len, buf, len <= sizeof(stack) ? sizeof(stack) : len, &nlen);
    if (rc > 0) {
        /* One pass gives both halves: key and check are the two 64-bit halves of XXH3-128. */
        XXH128_hash_t h = XXH3_128bits_withSeed(buf, nlen, g->identity ^ NORM_KEY_SALT);
        k->key = h.low64;
        k->check = h.high64;
        k->len = NORM_LEN_BIT | (len > TG_SQL_SHORT_TEXT ? NORM_LONG_BIT : 0) | (uint64_t)nlen;
        rc = 1;
    }
    if (buf != stack)
        free(buf);
    return rc;
}

/* Serves entry i of the cache into out. */
static tg_sql_verdict_kind cache_serve(tg_sql_cache *c, uint32_t i, tg_sql_verdict *out)
{
    c->hits++;
    tg_lru_touch(&c->index, i);
    const cache_entry *e = tg_lru_entry(&c->index, i);
    out->kind = (tg_sql_verdict_kind)e->kind;
    memcpy(out->reason, e->reason, sizeof(out->reason));
    return out->kind;
}

/*
 * The audit fingerprint of a denied statement: libpg_query's fingerprint,
 * which ignores literal values (the same one pg_stat_statements-like tools
 * use), so an audit line never lets a reader brute-force a short literal
 * back out of its hash. Text that does not parse gets XXH3 seeded with the
 * per-process secret instead: the same for every guard of this process, for
 * correlating lines, useless for an offline guess.
 */
static uint64_t audit_fingerprint(const tg_sql_guard *g, const char *sql, size_t len)
{
    char stack[TG_SQL_STACK_COPY];
    char *text = len && !memchr(sql, '\0', len) ? terminated(sql, len, stack, sizeof(stack)) : NULL;
    uint64_t fp = 0;
    bool have = false;
    if (text) {
        PgQueryFingerprintResult r = pg_query_fingerprint(text);
        if (!r.error) {
            fp = r.fingerprint;
            have = true;
        }
        pg_query_free_fingerprint_result(r);
        if (text != stack)
            free(text);
    }
    (void)g; /* the secret is per process (g_secret, set up by tg_sql_guard_new), not per guard */
    return have ? fp : XXH3_64bits_withSeed(sql, len, g_secret ^ AUDIT_SEED_SALT);
}

static tg_sql_verdict_kind finish_check(const tg_sql_guard *g, const char *sql, size_t len,
                                        tg_sql_verdict *out)
{
    if (out->kind == TG_SQL_DENY)
        out->fingerprint = audit_fingerprint(g, sql, len);
    return out->kind;
}

tg_sql_verdict_kind tg_sql_guard_check(const tg_sql_guard *g, tg_sql_cache *cache, const char *sql,
                                       size_t len, tg_sql_verdict *out)
{
    memset(out, 0, sizeof(*out));
    if (!g || (!sql && len)) {
        out->kind = TG_SQL_DENY;
        snprintf(out->reason, sizeof(out->reason), "statement could not be checked");
        return out->kind;
    }
    if (!sql)
        sql = "";
    uint64_t key = 0, check = 0;
    tg_lru_key nk = {0, 0, 0};
    int have_norm = 0;
    if (cache) {
        XXH128_hash_t h = XXH3_128bits_withSeed(sql, len, g->identity);
        key = h.low64;
        check = h.high64;
        uint32_t i = tg_lru_find(&cache->index, key, check, len);
        if (i != TG_LRU_NIL) {
            cache_serve(cache, i, out);
            return finish_check(g, sql, len, out);
        }
        have_norm = normalized_key(g, sql, len, &nk);
        if (have_norm == TG_EINVAL)
            cache->norm_refused++;
        if (have_norm > 0) {
            i = tg_lru_find(&cache->index, nk.key, nk.check, nk.len);
            if (i != TG_LRU_NIL) {
                cache->norm_hits++;
                cache_serve(cache, i, out);
                return finish_check(g, sql, len, out);
            }
        }
        cache->misses++;
    }
    bool by_shape;
    bool cacheable = judge(g, sql, len, out, &by_shape);
    if (cache && cacheable) {
        cache_store(cache, key, check, len, out);
        if (have_norm > 0 && by_shape)
            cache_store(cache, nk.key, nk.check, nk.len, out);
    }
    return finish_check(g, sql, len, out);
}

/*
 * Parses and judges text in mode (REWRITE or VERIFY); for REWRITE also packs
 * and deparses the modified tree into a malloc'd *deparsed.
 */
static int rewrite_pass(const tg_sql_guard *g, const char *text, size_t len, const char *prefix,
                        enum walk_mode mode, char **deparsed, walker *w)
{
    walker_init(w, g, mode, prefix);
    unsigned char buf[ARENA_STACK];
    tg_arena a;
    tg_arena_init(&a, buf, sizeof(buf), 0);
    PgQueryProtobufParseResult parse;
    PgQuery__ParseResult *tree;
    int rc = 0;
    judge_text(w, text, len, &a, &parse, &tree);
    if (!w->deny && mode == WALK_REWRITE) {
        size_t size = pg_query__parse_result__get_packed_size(tree);
        uint8_t *packed = malloc(size ? size : 1);
        if (!packed) {
            deny_oom(w);
        } else {
            pg_query__parse_result__pack(tree, packed);
            PgQueryProtobuf pb = {size, (char *)packed};
            PgQueryDeparseResult dr = pg_query_deparse_protobuf(pb);
            if (dr.error || !dr.query)
                deny(w, "statement could not be rewritten");
            else if (!(*deparsed = strdup(dr.query)))
                deny_oom(w);
            pg_query_free_deparse_result(dr);
            free(packed);
        }
    }
    tg_arena_release(&a);
    pg_query_free_protobuf_parse_result(parse);
    if (w->deny)
        rc = w->transient ? TG_ENOMEM : TG_EINVAL;
    return rc;
}

int tg_sql_guard_rewrite(const tg_sql_guard *g, const char *sql, size_t len, const char *prefix,
                         char **out, size_t *out_len, tg_sql_verdict *why)
{
    tg_sql_verdict scratch;
    if (!why)
        why = &scratch;
    memset(why, 0, sizeof(*why));
    why->kind = TG_SQL_DENY;
    if (out)
        *out = NULL;
    if (out_len)
        *out_len = 0;
    if (!g || !out || !out_len || !prefix || !*prefix || strlen(prefix) >= TG_SQL_NAME_MAX ||
        (!sql && len)) {
        snprintf(why->reason, sizeof(why->reason), "statement could not be rewritten");
        return TG_EINVAL;
    }
    if (!sql)
        sql = "";
    why->fingerprint = audit_fingerprint(g, sql, len);
    if (len && memchr(sql, '\0', len)) {
        snprintf(why->reason, sizeof(why->reason), "statement contains a NUL byte");
        return TG_EINVAL;
    }
    char stack[TG_SQL_STACK_COPY];
    char *text = terminated(sql, len, stack, sizeof(stack));
    if (!text) {
        snprintf(why->reason, sizeof(why->reason),
                 "statement could not be checked (out of memory)");
        return TG_ENOMEM;
    }
    walker w;
    char *deparsed = NULL;
    int rc = rewrite_pass(g, text, len, prefix, WALK_REWRITE, &deparsed, &w);
    if (text != stack)
        free(text);
    if (rc == 0) {
        /* Never trust the deparser blindly: the text that leaves must pass on its own. */
        walker v;
        rc = rewrite_pass(g, deparsed, strlen(deparsed), prefix, WALK_VERIFY, NULL, &v);
        if (rc != 0) {
            memcpy(w.reason, v.reason, sizeof(w.reason));
            free(deparsed);
            deparsed = NULL;
        }
    }
    if (rc != 0) {
        memcpy(why->reason, w.reason, sizeof(why->reason));
        why->reason[sizeof(why->reason) - 1] = '\0';
        return rc;
    }
    why->kind = w.rewrite ? TG_SQL_REWRITE : TG_SQL_ALLOW;
    *out = deparsed;
    *out_len = strlen(deparsed);
    return 0;
}

void tg_sql_channel_prefix(const char *tenant, char out[TG_SQL_CHANNEL_PREFIX_LEN + 1])
{
    uint64_t h = XXH3_64bits(tenant ? tenant : "", tenant ? strlen(tenant) : 0);
    snprintf(out, TG_SQL_CHANNEL_PREFIX_LEN + 1, "t%016" PRIx64 "_", h);
}
