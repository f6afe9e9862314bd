/*
 * The Cypher rewriter: scopes every statement a Bolt client runs to its
 * tenant, or refuses it.
 *
 *   text ──XXH3──> cache (per worker) ──hit──> verdict (+ rewritten text)
 *              │ miss
 *              v
 *   parse (cypher_parser.h) ──> check: refusals, every node of the tree
 *        ──> scope: variables through WITH / UNION / subqueries / FOREACH;
 *            guards for expression-bound nodes; SET re-assertions
 *        ──> every node pattern gets the tenant (map entry or label)
 *        ──> print (cypher_printer.h) ──> re-parse and verify every node pattern is scoped
 *        ──> FORWARD (text unchanged) | REWRITE (new text) | DENY (reason) ──> cache
 *
 * Isolation modes (SPEC §3 `bolt.isolation`):
 *   property  every node pattern carries `tenant_property: $__tenantgate_tenant`
 *             in its property map; the session passes the tenant as that
 *             parameter, so the rewritten text is the same for every tenant
 *             and is cached once.
 *   label     every node pattern carries the tenant's label from the template
 *             (`Tenant_{tenant}`, quoted with backticks): the text is per tenant.
 *   database  statements pass unchanged (printed canonically, see below);
 *             the session maps the database per tenant.
 * In every mode: USE, LOAD CSV, EXPLAIN/PROFILE, CYPHER options, schema and
 * administration commands, procedures not on allow_procedures, functions not
 * built in (or on allow_functions), and parameters named like the reserved
 * one are refused; in label mode also label-listing procedures, even when
 * allowed.
 *
 * Why node patterns are enough. Every node a statement can reach is matched
 * by a pattern (scoped here), is the other end of a relationship of a scoped
 * node, or comes out of a procedure (refused unless allowed). Relationships
 * have no tenant of their own: both ends of every relationship created
 * through tenantgate are scoped nodes (a CREATE/MERGE endpoint is either a new
 * scoped node or a variable bound by a scoped pattern, or guarded), so a
 * relationship never joins two tenants, and traversals (variable-length ones
 * included) stay inside the tenant. This holds for data written through
 * tenantgate; data loaded around it must keep relationships inside a tenant.
 * id() / elementId() are harmless for the same reason: `MATCH (n) WHERE id(n)
 * = 42` is rewritten to `MATCH (n {tenant_id: $..}) WHERE id(n) = 42`, so
 * another tenant's id matches nothing, and no function turns an id into a
 * node.
 *
 * Property mode details (the attacker's view):
 *   - a map that names the tenant property keeps the key, with the value
 *     replaced by the reserved parameter (`{tenant_id: 'other'}` cannot reach
 *     'other'); a WHERE on it (`n.tenant_id = 'other'`) is ANDed with the map;
 *   - a node's property map given as a parameter (`CREATE (n $props)`) cannot
 *     be extended: refused;
 *   - `SET n.tenant_id = ...` and `REMOVE n.tenant_id` are refused; `SET n =
 *     ...` and `SET n += ...` (a literal, a parameter or another entity: the
 *     map is not known at rewrite time) are followed by `n.tenant_id =
 *     $__tenantgate_tenant` in the same SET, which Cypher applies after them;
 *   - a variable bound from an expression (UNWIND, WITH x AS y where x is not
 *     a variable, a procedure's YIELD) used as a node of CREATE or MERGE is
 *     checked first: `WITH * WHERE y.tenant_id = $__tenantgate_tenant` is
 *     inserted before the clause (refused inside FOREACH, where no WITH fits);
 *   - a variable the analysis cannot place is treated as unbound, so CREATE
 *     gives it the tenant (Neo4j then refuses the statement if it was bound):
 *     a mistake can only make a statement fail, never create an unscoped node.
 * Label mode: labels matching the template (any tenant's) may not be named by
 * the client in patterns, label tests, SET or REMOVE, except the tenant's own
 * in patterns and label tests.
 *
 * Database mode prints the parsed statement instead of forwarding the
 * client's bytes: comments, Unicode escapes and other spellings that another
 * parser might read differently never reach the server.
 *
 * Pure functions, no I/O; a rewriter is immutable and shared by all workers,
 * a cache and a result belong to one thread.
 */
#ifndef TG_POLICY_CYPHER_REWRITE_H
#define TG_POLICY_CYPHER_REWRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/cypher_cache.h"
#include "policy/cypher_lexer.h"
#include "policy/cypher_parser.h"
#include "policy/cypher_printer.h"

/* The reserved parameter that carries the tenant in property mode. */
#define TG_CYPHER_TENANT_PARAM "__tenantgate_tenant"
/* Parameter names starting with this are reserved for tenantgate. */
#define TG_CYPHER_RESERVED_PARAM_PREFIX "__tenantgate"

typedef enum {
    TG_CYPHER_ISOLATION_PROPERTY,
    TG_CYPHER_ISOLATION_LABEL,
    TG_CYPHER_ISOLATION_DATABASE
} tg_cypher_isolation;

typedef struct tg_cypher_rewrite_config {
    tg_cypher_isolation isolation;
    const char *tenant_property; /* property mode; NULL: "tenant_id" */
    const char *label_template;  /* label mode; NULL: "Tenant_{tenant}" ({tenant} exactly once) */
    /* Procedures that may be called (exact names, or "prefix.*"), NULL-terminated, or NULL. */
    const char *const *allow_procedures;
    /* Namespaced or user functions that may be called (same forms), NULL-terminated, or NULL. */
    const char *const *allow_functions;
    tg_cypher_limits limits; /* zero fields: defaults */
} tg_cypher_rewrite_config;

typedef struct tg_cypher_rewriter tg_cypher_rewriter;

/*
 * A rewriter for cfg (strings are copied). NULL when out of memory or when
 * cfg is invalid (a tenant property that is empty, longer than 128 bytes or
 * holds a control character or a backslash; a label template without exactly
 * one {tenant}, with nothing around it, or with such characters).
 */
tg_cypher_rewriter *tg_cypher_rewrite_new(const tg_cypher_rewrite_config *cfg);
void tg_cypher_rewrite_free(tg_cypher_rewriter *rw);

/* True when a client parameter named name (len bytes) must be refused (reserved prefix). */
bool tg_cypher_param_reserved(const char *name, size_t len);

typedef enum { TG_CYPHER_FORWARD, TG_CYPHER_REWRITE, TG_CYPHER_DENY } tg_cypher_verdict;

/* Static name of a verdict ("forward", "rewrite", "deny"). */
const char *tg_cypher_verdict_name(tg_cypher_verdict v);

typedef struct tg_cypher_result {
    tg_cypher_verdict kind;
    char reason[TG_CYPHER_REASON_SIZE]; /* DENY: why, ready for the client's FAILURE */
    uint64_t fingerprint;               /* XXH3 of the text, for audit lines */
    bool cached;                        /* served from the cache */
    /*
     * FORWARD and REWRITE: the statement to send (text.s, text.len,
     * NUL-terminated); equal to the input for FORWARD. Owned by the result
     * and reused by the next call.
     */
    tg_cypher_buf text;
} tg_cypher_result;

void tg_cypher_result_init(tg_cypher_result *r);
void tg_cypher_result_free(tg_cypher_result *r);

/*
 * Judges and rewrites text (len bytes, need not be NUL-terminated) for
 * tenant (used in label mode; it must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$;
 * ignored otherwise). cache may be NULL. Fills *out and returns out->kind.
 */
tg_cypher_verdict tg_cypher_rewrite(const tg_cypher_rewriter *rw, tg_cypher_cache *cache,
                                    const char *tenant, const char *text, size_t len,
                                    tg_cypher_result *out);

/*
 * Checks that every node pattern of the statement tree `query` (fresh from
 * the parser; its flags are used as marks) is scoped for the rewriter's mode
 * (property: its map holds tenant_property: $__tenantgate_tenant, and no
 * other value for it; label: it has the tenant's label `label`, len
 * label_len), or is a bare variable of a CREATE / MERGE pattern that an
 * independent, stricter scope analysis finds bound to a scoped node or
 * guarded. Returns true when it is; run on every rewrite's re-parsed output,
 * and by the tests and the fuzz target. Always true in database mode.
 */
bool tg_cypher_rewrite_verify(const tg_cypher_rewriter *rw, tg_cypher_node *query,
                              const char *label, size_t label_len);

/*
 * The tenant's label in label mode into out (cap bytes, NUL-terminated);
 * returns its length, or 0 when the tenant is invalid or it does not fit.
 */
size_t tg_cypher_tenant_label(const tg_cypher_rewriter *rw, const char *tenant, char *out,
                              size_t cap);

#endif
