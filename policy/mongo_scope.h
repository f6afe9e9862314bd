/*
 * The MongoDB command scoper: judges and rewrites every OP_MSG command of an
 * authenticated client so that it only reads and writes its tenant's data.
 *
 *   tg_mongo_scope (immutable, shared: config, tables)     tg_mongo_tenant (one per session)
 *          │                                                     │ tenant, lsid key, lsid cache
 *          v                                                     v
 *   body (kind 0) + document sequences (kind 1) ──> tg_mongo_scope_command
 *        ──> command table row (fail-closed allow-list: command, its fields, generic fields)
 *        ──> every filter, expression, pipeline stage and update checked against allow-lists
 *        ──> field mode:    {tenant_field: T} ANDed into every filter, $match merged or
 *                           prepended to every pipeline, stamped into every inserted or
 *                           replacement document, writes of the tenant field refused
 *            database mode: $db and every namespace mapped through database_template
 *        ──> lsid.id replaced by HMAC-SHA256(key, tenant, id) (both modes)
 *        ──> FORWARD (as is) | REWRITE (new body + sequences) | DENY (static reason)
 *
 *   reply body ──> tg_mongo_scope_reply (with the command's tg_mongo_reply_map)
 *        ──> cursor.ns mapped back, listDatabases reduced to the tenant's databases,
 *            change events' namespaces and lsids mapped back
 *
 * Inputs are views the caller owns. The scoper checks every document itself
 * with tg_mongo_bson_valid before looking inside (libbson 1.23's bson_validate
 * silently skips an embedded document or array whose length prefix or final
 * byte is wrong, so its "valid" is not enough) and refuses malformed BSON.
 * Outputs are new byte buffers (the wire needs bytes, and a bson_t's 128-byte
 * alignment does not survive being embedded in a malloc'd session). Pure
 * functions: no I/O, no globals; a tg_mongo_scope may be shared by any number
 * of threads, a tg_mongo_tenant belongs to one session.
 */
#ifndef TG_POLICY_MONGO_SCOPE_H
#define TG_POLICY_MONGO_SCOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <bson/bson.h>

#include "proxy/slice.h"

/* Deepest nesting of filters, expressions and pipelines the scoper interprets. */
#define TG_MONGO_SCOPE_MAX_DEPTH 64
/* Longest database name MongoDB accepts (bytes), client-side and mapped. */
#define TG_MONGO_DB_MAX 63
/* Most document sequences (kind 1 sections) in one command. */
#define TG_MONGO_SCOPE_MAX_SEQ 2
/* Most cursor ids in one killCursors. */
#define TG_MONGO_SCOPE_MAX_CURSORS 10000
/* Shortest lsid key accepted by tg_mongo_tenant_new (bytes). */
#define TG_MONGO_LSID_KEY_MIN 16

typedef enum { TG_MONGO_SCOPE_FIELD, TG_MONGO_SCOPE_DATABASE } tg_mongo_scope_isolation;

typedef struct tg_mongo_scope_config {
    tg_mongo_scope_isolation isolation;
    const char *tenant_field;      /* field mode: "tenant_id", or a dotted path "meta.tenant" */
    const char *database_template; /* database mode: "{db}_{tenant}" ({db}, {tenant} once each) */
    bool allow_drop;               /* database mode: drop, dropDatabase, renameCollection */
    bool allow_change_streams;     /* $changeStream (scoped by the tenant field in field mode) */
} tg_mongo_scope_config;

typedef struct tg_mongo_scope tg_mongo_scope;
typedef struct tg_mongo_tenant tg_mongo_tenant;

/*
 * A scoper for cfg (strings are copied). Returns 0 and *out, TG_ENOMEM, or
 * TG_ECONFIG with a message in err (errlen bytes, NUL-terminated): a tenant
 * field that is not a field path, a database template without exactly one
 * {db} and one {tenant}, with nothing between them, or with characters a
 * database name cannot hold. Free with tg_mongo_scope_free.
 */
__attribute__((warn_unused_result)) int tg_mongo_scope_new(const tg_mongo_scope_config *cfg,
                                                           tg_mongo_scope **out, char *err,
                                                           size_t errlen);
void tg_mongo_scope_free(tg_mongo_scope *s);

/*
 * The per-session state for tenant (must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$)
 * under scoper s (borrowed: s must outlive it). key (>= TG_MONGO_LSID_KEY_MIN
 * bytes, copied) keys the lsid mapping: give every session of a listener the
 * same key (e.g. random per process), so that a tenant's logical session maps
 * to the same backend session on every pooled connection. NULL for an invalid
 * tenant, a short key or out of memory. Not thread-safe (it caches lsids).
 */
tg_mongo_tenant *tg_mongo_tenant_new(const tg_mongo_scope *s, const char *tenant,
                                     const uint8_t *key, size_t key_len);
void tg_mongo_tenant_free(tg_mongo_tenant *t);

/* ---- commands ---------------------------------------------------------------------------- */

/* X(NAME, "name"): the commands the scoper knows (aliases share a value). */
#define TG_MONGO_CMD_MAP(X)                                                                        \
    X(UNKNOWN, "")                                                                                 \
    X(ABORT_TRANSACTION, "abortTransaction")                                                       \
    X(AGGREGATE, "aggregate")                                                                      \
    X(BUILD_INFO, "buildInfo")                                                                     \
    X(COLL_STATS, "collStats")                                                                     \
    X(COMMIT_TRANSACTION, "commitTransaction")                                                     \
    X(COUNT, "count")                                                                              \
    X(CREATE, "create")                                                                            \
    X(CREATE_INDEXES, "createIndexes")                                                             \
    X(DB_STATS, "dbStats")                                                                         \
    X(DELETE, "delete")                                                                            \
    X(DISTINCT, "distinct")                                                                        \
    X(DROP, "drop")                                                                                \
    X(DROP_DATABASE, "dropDatabase")                                                               \
    X(DROP_INDEXES, "dropIndexes")                                                                 \
    X(END_SESSIONS, "endSessions")                                                                 \
    X(EXPLAIN, "explain")                                                                          \
    X(FIND, "find")                                                                                \
    X(FIND_AND_MODIFY, "findAndModify")                                                            \
    X(GET_MORE, "getMore")                                                                         \
    X(HELLO, "hello")                                                                              \
    X(INSERT, "insert")                                                                            \
    X(IS_MASTER, "isMaster")                                                                       \
    X(KILL_CURSORS, "killCursors")                                                                 \
    X(LIST_COLLECTIONS, "listCollections")                                                         \
    X(LIST_DATABASES, "listDatabases")                                                             \
    X(LIST_INDEXES, "listIndexes")                                                                 \
    X(PING, "ping")                                                                                \
    X(RENAME_COLLECTION, "renameCollection")                                                       \
    X(UPDATE, "update")

typedef enum {
#define TG_MONGO_CMD_ENUM(n, s) TG_MONGO_CMD_##n,
    TG_MONGO_CMD_MAP(TG_MONGO_CMD_ENUM)
#undef TG_MONGO_CMD_ENUM
} tg_mongo_cmd;

/* The canonical name of a command ("" for UNKNOWN). */
const char *tg_mongo_cmd_name(tg_mongo_cmd cmd);

/*
 * X(NAME, "name"): how the reply of a command is mapped back to the client.
 *   NONE            nothing to map
 *   CURSOR          {cursor: {ns, firstBatch|nextBatch}}: ns mapped back (database mode)
 *   CHANGE_STREAM   CURSOR, and every change event's ns/to db and lsid mapped back
 *   LIST_DATABASES  only the tenant's databases, unmapped; totals recomputed
 * getMore's reply is mapped as the reply of the command that opened the
 * cursor: the session keeps that command's tg_mongo_reply_map with the id.
 */
#define TG_MONGO_REPLY_MAP(X)                                                                      \
    X(NONE, "none")                                                                                \
    X(CURSOR, "cursor")                                                                            \
    X(CHANGE_STREAM, "change-stream")                                                              \
    X(LIST_DATABASES, "list-databases")

typedef enum {
#define TG_MONGO_REPLY_ENUM(n, s) TG_MONGO_REPLY_##n,
    TG_MONGO_REPLY_MAP(TG_MONGO_REPLY_ENUM)
#undef TG_MONGO_REPLY_ENUM
} tg_mongo_reply_kind;

/* What tg_mongo_scope_reply needs to map a reply back (small, copyable). */
typedef struct tg_mongo_reply_map {
    tg_mongo_reply_kind kind;
    char client_db[TG_MONGO_DB_MAX + 1];  /* the client's $db */
    char backend_db[TG_MONGO_DB_MAX + 1]; /* the $db sent to the backend */
} tg_mongo_reply_map;

/* One kind 1 document sequence of a request (borrowed). */
typedef struct tg_mongo_scope_seq {
    tg_slice id;   /* identifier, without its NUL ("documents") */
    tg_slice docs; /* the documents back to back, each validated */
} tg_mongo_scope_seq;

/* One kind 1 document sequence of a rewritten request (owned by the result). */
typedef struct tg_mongo_seq_out {
    const char *id; /* static: the identifier */
    uint8_t *docs;  /* the documents back to back (free); NULL: the request's sequence
                       at the same index is sent unchanged */
    size_t len;
    uint32_t count;
} tg_mongo_seq_out;

typedef enum { TG_MONGO_FORWARD, TG_MONGO_REWRITE, TG_MONGO_DENY } tg_mongo_verdict;

/*
 * The result of scoping one command: the verdict and the facts the session
 * needs. Initialize with tg_mongo_scoped_init, release with
 * tg_mongo_scoped_clear (which also makes it ready for the next command).
 */
typedef struct tg_mongo_scoped {
    tg_mongo_verdict kind;
    const char *reason; /* DENY: static, short ("$where is not allowed") */
    char what[48];      /* DENY: the command, stage, operator or field named (may be "") */
    tg_mongo_cmd cmd;   /* the command (UNKNOWN when not in the table) */
    tg_mongo_reply_map reply;
    /* REWRITE: the new body (bson_free) and the sequences replacing the request's
     * (nseq of them, in the request's order; the request's are not to be sent). */
    uint8_t *body;
    uint32_t body_len;
    tg_mongo_seq_out seq[TG_MONGO_SCOPE_MAX_SEQ];
    uint32_t nseq;
    /* getMore (1) and killCursors (n): the cursor ids named, to be checked
     * against those this client received before the command is sent. */
    int64_t *cursor_ids; /* points to cursor_one or a bson_malloc'd array */
    uint32_t n_cursor_ids;
    int64_t cursor_one;
    /* The command carried lsid (mapped from client_lsid to backend_lsid). */
    bool has_lsid;
    uint8_t client_lsid[16], backend_lsid[16];
    bool has_txn_number; /* txnNumber present (a retryable write or a transaction) */
} tg_mongo_scoped;

void tg_mongo_scoped_init(tg_mongo_scoped *r);
void tg_mongo_scoped_clear(tg_mongo_scoped *r);

/*
 * Scopes one command: body is the kind 0 section ($db inside), seqs the kind
 * 1 sections (nseq may be 0). Fills *r (previous contents cleared) and returns
 * r->kind. FORWARD: send the request unchanged. REWRITE: send r->body and
 * r->seq instead. DENY: answer {ok: 0, code: 13, codeName: "Unauthorized",
 * errmsg: "tenantgate: <reason>"} and send nothing. Out of memory is DENY
 * with reason "out of memory".
 */
tg_mongo_verdict tg_mongo_scope_command(tg_mongo_tenant *t, const bson_t *body,
                                        const tg_mongo_scope_seq *seqs, uint32_t nseq,
                                        tg_mongo_scoped *r);

/*
 * Maps a reply body back to the client's view per m. Returns 0 (forward the
 * reply as is), 1 (*out is a new body of *out_len bytes: bson_free it), or a
 * negative TG_E*: TG_EPROTO for a reply that names a namespace outside the
 * tenant's (fail closed: do not forward it), TG_ENOMEM.
 */
__attribute__((warn_unused_result)) int tg_mongo_scope_reply(tg_mongo_tenant *t,
                                                             const tg_mongo_reply_map *m,
                                                             const bson_t *reply, uint8_t **out,
                                                             uint32_t *out_len);

/* ---- helpers (exposed for the session and tests) ----------------------------------------- */

/* Deepest document nesting tg_mongo_bson_valid accepts (MongoDB's own limit). */
#define TG_MONGO_BSON_MAX_DEPTH 200

/*
 * True when data (len bytes) is exactly one well-formed BSON document: every
 * element's length within its parent, every embedded document, array and
 * code-with-scope scope itself well-formed (length prefix, final NUL, no bytes
 * after the last element), nesting at most TG_MONGO_BSON_MAX_DEPTH.
 */
bool tg_mongo_bson_valid(const uint8_t *data, size_t len);

/*
 * The backend lsid id of a client's (16 bytes each): the first 16 bytes of
 * HMAC-SHA256(key, len(tenant) || tenant || client), with the UUID version 4
 * and variant bits set. Remembered in t's small cache for the reverse mapping.
 * Returns 0, or TG_ENOMEM (libcrypto copies digest contexts on the heap).
 */
__attribute__((warn_unused_result)) int
tg_mongo_tenant_map_lsid(tg_mongo_tenant *t, const uint8_t client[16], uint8_t backend[16]);

/* The client id of a backend lsid id, when t's cache still holds it. */
bool tg_mongo_tenant_unmap_lsid(const tg_mongo_tenant *t, const uint8_t backend[16],
                                uint8_t client[16]);

/*
 * Database mode: maps a client database name for t into out (TG_MONGO_DB_MAX+1
 * bytes). Returns NULL on success or a static reason: an illegal or reserved
 * name, too long once mapped, or ambiguous (another tenant could reach the
 * same name with another database).
 */
const char *tg_mongo_tenant_map_db(const tg_mongo_tenant *t, const char *db, size_t db_len,
                                   char out[TG_MONGO_DB_MAX + 1]);

/* Database mode: the client name of a backend database name of t's, or false. */
bool tg_mongo_tenant_unmap_db(const tg_mongo_tenant *t, const char *backend, size_t len,
                              char out[TG_MONGO_DB_MAX + 1]);

#endif
