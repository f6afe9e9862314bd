/*
 * The SQL guard: judges every statement a PostgreSQL client sends, with
 * libpg_query (the real PostgreSQL parser), before it reaches the backend.
 *
 *   SQL text --XXH3--> verdict cache (per worker) --miss--> pg_query_parse_protobuf
 *        --> walk every node of every statement --> ALLOW | REWRITE | DENY(reason)
 *
 * Fail-closed: a statement type not on the allow-list, anything the parser
 * rejects, and any node the walker does not understand is DENY. REWRITE is
 * for LISTEN / UNLISTEN / NOTIFY / pg_notify(), whose channel names are global
 * to the database and so are namespaced per tenant by tg_sql_guard_rewrite.
 * Pure functions: no I/O, no globals; a guard is immutable and shared by all
 * workers, a cache belongs to one worker.
 */
#ifndef TG_POLICY_SQL_GUARD_H
#define TG_POLICY_SQL_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tg_sql_guard_config {
    const char *tenant_setting;           /* e.g. "app.tenant_id": reserved */
    bool allow_ddl;                       /* DDL other than the always-denied kinds */
    const char *const *reserved_settings; /* extra reserved settings, NULL-terminated, or NULL */
    const char *const *deny_functions;    /* extra denied functions, NULL-terminated, or NULL */
    const char *const *deny_relations;    /* extra denied relations, NULL-terminated, or NULL */
} tg_sql_guard_config;

typedef enum { TG_SQL_ALLOW, TG_SQL_REWRITE, TG_SQL_DENY } tg_sql_verdict_kind;

typedef struct tg_sql_verdict {
    tg_sql_verdict_kind kind;
    char
        reason[192]; /* DENY: why, for the client's error ("SET of app.tenant_id is not allowed") */
    /* DENY (and a failed rewrite): a fingerprint for audit lines that ignores literal values */
    uint64_t fingerprint;
} tg_sql_verdict;

typedef struct tg_sql_guard tg_sql_guard;
typedef struct tg_sql_cache tg_sql_cache;

/* A guard for cfg (strings are copied). Returns NULL when out of memory. */
tg_sql_guard *tg_sql_guard_new(const tg_sql_guard_config *cfg);
void tg_sql_guard_free(tg_sql_guard *g);

/* A bounded LRU of verdicts (entries > 0), owned by one thread. */
tg_sql_cache *tg_sql_cache_new(uint32_t entries);
void tg_sql_cache_free(tg_sql_cache *c);

/*
 * Counters of a cache, for metrics and tests (all zero when c is NULL).
 * hits: verdicts served from the cache, by exact text or by normalized key;
 * misses: checks that had to parse. Of the hits, norm_hits came by the
 * statement's literal-blind key (policy/sql_normalize.h); norm_refused counts
 * exact-text misses whose text the normalizer refused (comments, dollar
 * quotes, E'' strings...); texts without any literal count in neither.
 */
typedef struct tg_sql_cache_counters {
    uint32_t capacity, entries;
    uint64_t hits, misses, evictions;
    uint64_t norm_hits, norm_refused;
} tg_sql_cache_counters;
void tg_sql_cache_stats(const tg_sql_cache *c, tg_sql_cache_counters *out);

/*
 * Judges sql (len bytes, need not be NUL-terminated; may hold several
 * statements). cache may be NULL. Fills *out and returns out->kind.
 * With a cache: the exact text is looked up first, then the text with its
 * literal values blanked out (only verdicts that did not depend on any
 * literal's value, and never REWRITE, are stored under that key), then the
 * text is parsed and judged.
 */
tg_sql_verdict_kind tg_sql_guard_check(const tg_sql_guard *g, tg_sql_cache *cache, const char *sql,
                                       size_t len, tg_sql_verdict *out);

/*
 * For a REWRITE verdict: returns 0 and a malloc'd, NUL-terminated statement
 * text in *out (length *out_len) where every LISTEN/UNLISTEN/NOTIFY channel and
 * every constant channel argument of pg_notify() is prefixed with `prefix`;
 * or TG_EPERM-like failure: returns a negative TG_E* code and a reason in
 * *why (e.g. a channel that is not a constant, or too long once prefixed).
 */
int tg_sql_guard_rewrite(const tg_sql_guard *g, const char *sql, size_t len, const char *prefix,
                         char **out, size_t *out_len, tg_sql_verdict *why);

/*
 * Whether a client_encoding value (len bytes, as a client sends it in SET or a
 * startup packet) is one the server splits the way the guard parses: an
 * allow-list of ASCII-safe encodings under PostgreSQL's name normalisation.
 * Used for SET and set_config here and for startup parameters by the session.
 */
bool tg_sql_client_encoding_safe(const char *name, size_t len);

/*
 * The channel namespace of a tenant: "t" + 16 hex digits of XXH3-64(tenant) + "_"
 * (18 characters + NUL), so a prefixed channel fits PostgreSQL's 63-byte
 * identifiers whatever the tenant's length.
 */
#define TG_SQL_CHANNEL_PREFIX_LEN 18
void tg_sql_channel_prefix(const char *tenant, char out[TG_SQL_CHANNEL_PREFIX_LEN + 1]);

#endif
