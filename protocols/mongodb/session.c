/*
 * protocol: mongodb -- the session state machine.
 *
 *   PREAUTH (no backend) --saslStart PLAIN/MONGODB-OIDC ok (or hello's speculativeAuthenticate)-->
 *      |  hello/isMaster (OP_MSG, or OP_QUERY -> OP_REPLY), ping, buildInfo, endSessions
 *      |  answered here; saslStart/saslContinue authenticate; anything else code 13;
 *      |  a failed authentication: code 18, then close; messages <= 64 KiB
 *      v
 *   CONNECTING --backend up--> LOGIN: hello (+ speculative SCRAM-SHA-256) --> saslContinue... -->
 *      READY: every OP_MSG goes through the scoper (policy/mongo_scope); client input waits
 *             (unconsumed) until READY
 *
 * tenantgate is a standalone server to drivers: hello is always answered
 * here, without hosts/setName/primary/me/topologyVersion of the backend and
 * without compressors, with the size limits and wire version the backend's
 * own hello gave (the last value any session of the listener saw, or safe
 * defaults before the first backend login). So a driver never discovers the
 * backend's replica-set members and never connects around the proxy.
 *
 * The backend is connected only after the client authenticated (no backend
 * connection for unauthenticated clients, e.g. drivers' monitoring
 * connections, which only ever send hello), with the service credentials:
 * SCRAM-SHA-256 on backend.auth_db (proxy/scram.c), its first step riding in
 * the backend hello's speculativeAuthenticate. One backend connection per
 * client connection.
 *
 * Requests and replies keep their order with a FIFO of what each backend
 * reply is for, and the reply queue (proxy/reply_queue.h) slots local
 * replies (denials, hello, auth answers) in between:
 *
 *   client:  find        insert(denied)     hello          getMore
 *   backend: find'                                         getMore
 *   fifo:    [FWD map]                                     [FWD map, cursor]
 *   queue:   [1 backend | "code 13" | hello ][1 backend]
 *
 *   FWD      the client's command (scoped); reply relayed, cursor.ns/lsids mapped back,
 *            cursor ids recorded for this client (getMore/killCursors only for those)
 *   SWALLOW  tenantgate's own killCursors/endSessions (re-authentication as another tenant)
 *   BK_*     the backend login (hello, SASL steps)
 *
 * Relay of one client OP_MSG:
 *   parse (codec: framing, checksum, libbson validation) --> scoper
 *     FORWARD  the bytes as they came (exhaustAllowed cleared, checksum recomputed if so)
 *     REWRITE  rebuilt: new body and sequences, same requestID and flags (checksum
 *              recomputed when the client sent one, exhaustAllowed cleared)
 *     DENY     {ok: 0, code: 13, codeName: "Unauthorized", errmsg: "tenantgate: <reason>"}
 *              in request order; nothing reaches the backend; no reply for moreToCome
 *
 * Replies are parsed with the same codec (checksums verified) and must answer
 * the FIFO head's requestID; a backend reply with moreToCome (exhaust) is a
 * protocol violation, since exhaustAllowed never reaches the backend.
 *
 * The tenant registry (proxy/auth.c): an authentication waits (MS_STALL) while
 * it is asked; the tenant's slot is taken (connection limit: code 18, as a
 * failed authentication); a command over the rate limits is answered code 462
 * IngressRequestRateLimitExceeded; a suspension or revocation closes the
 * connection (no on_kick: MongoDB has no unsolicited error).
 *
 * Tokens expire: after `exp` every command is answered code 391
 * ReauthenticationRequired (OIDC drivers re-authenticate on it and retry),
 * and the connection closes timeouts.handshake_ms later unless the client
 * authenticated again. A re-authentication waits until no backend reply is
 * due; as another tenant it kills the client's cursors and ends its logical
 * sessions on the backend first; a failed one answers code 18 and changes
 * nothing.
 */
#include "protocols/mongodb/session.h"

#include <openssl/rand.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include <bson/bson.h>

#include "protocols/mongodb/codec.h"
#include "policy/mongo_scope.h"
#include "proxy/ring.h"
#include "proxy/auth.h"
#include "proxy/conn.h"
#include "proxy/error.h"
#include "proxy/log.h"
#include "proxy/metrics.h"
#include "proxy/reply_queue.h"
#include "proxy/scram.h"

/* What drivers are told before any backend hello was seen (MongoDB 6.0's values). */
#define MS_DEFAULT_MAX_WIRE 17
#define MS_DEFAULT_MAX_BSON (16 * 1024 * 1024)
#define MS_DEFAULT_MAX_BATCH 100000
/* Backend values outside these bounds are not believed (the defaults stay). */
#define MS_MIN_MESSAGE (1 << 20)
#define MS_MAX_MESSAGE (64 * 1024 * 1024)
#define MS_MAX_CURSORS 4096 /* open cursors recorded per client */
#define MS_MAX_LSIDS 256    /* backend logical sessions remembered per client (for endSessions) */
#define MS_NS_MAX 256
#define MS_GRACE_DEFAULT_MS 10000
#define MS_SCRATCH_KEEP (64 * 1024) /* scratch kept between messages; larger is freed */
#define MS_AWAIT_CAPABLE 8          /* OP_REPLY responseFlags */

enum { MS_STALL = 1 }; /* a handler's "not now": the message stays unconsumed */
/* try_auth's "not yet": the tenant registry is being asked; the message waits (MS_STALL). */
#define MS_AUTH_PENDING 2

/* What every connection of a listener shares. */
typedef struct ms_listener {
    const tg_listener_config *cfg;
    tg_mongo_scope *scope;
    uint8_t lsid_key[32]; /* keys the lsid mapping: random per process and listener */
    /* The backend's hello values, as the last backend login of any session saw them (0: none). */
    _Atomic int32_t max_wire, max_message, max_bson, max_batch;
} ms_listener;

/* X(name): what to do with the next backend reply. */
#define MS_ACTION_MAP(X)                                                                           \
    X(FWD)      /* the client's command: relayed */                                                \
    X(SWALLOW)  /* tenantgate's own reset commands: dropped */                                     \
    X(BK_HELLO) /* the backend login's hello */                                                    \
    X(BK_SASL)  /* a SCRAM step of the backend login */

typedef enum {
#define MS_ACTION_ENUM(n) MS_##n,
    MS_ACTION_MAP(MS_ACTION_ENUM)
#undef MS_ACTION_ENUM
} ms_action;

typedef struct ms_expect {
    uint8_t action; /* ms_action */
    bool get_more;  /* FWD of a getMore: cursor_id is the cursor it read */
    int32_t request_id;
    uint64_t gen; /* the tenant generation the command was sent under */
    int64_t cursor_id;
    tg_mongo_reply_map map; /* FWD: how the reply is mapped back */
} ms_expect;

typedef struct ms_cursor {
    int64_t id;
    tg_mongo_reply_map map; /* of the command that opened it: its getMore replies map the same */
    char ns[MS_NS_MAX];     /* the backend's namespace (for killCursors on a tenant switch) */
} ms_cursor;

typedef enum { BK_NONE, BK_CONNECTING, BK_LOGIN, BK_READY } ms_backend_state;

typedef struct ms_session {
    ms_listener *ml;
    bool authed;            /* a verified tenant: id is valid */
    tg_tenant_slot *slot;   /* the tenant's limits (proxy/auth.c owns it) */
    int64_t limit_logged_s; /* rate-limit audit lines: at most one per second */
    bool done;              /* closing: nothing more is read */
    bool stalled;           /* a re-authentication waits for the backend replies still due */
    uint8_t bk;             /* ms_backend_state */
    tg_identity id;
    tg_mongo_tenant *tenant; /* the scoper's state for id.tenant */
    tg_mongo_scoped scoped;  /* the verdict on the command being relayed */
    uint64_t gen;            /* incremented on every tenant change */
    int32_t next_id;
    int32_t conn_id;
    /* What the client is told (the backend's values once logged in). */
    int32_t max_wire, max_message, max_bson, max_batch;
    /* The backend login. */
    tg_scram *scram;
    tg_buf scram_first; /* the client-first message, for a saslStart after no speculation */
    bool scram_verified;
    tg_buf out;     /* scratch for messages built here */
    tg_buf scratch; /* a decoded SASL payload */
    ms_expect *fifo;
    size_t fifo_cap, fifo_head, fifo_len;
    tg_reply_queue rq;
    ms_cursor *cursors;
    size_t n_cursors, cap_cursors;
    uint8_t (*lsids)[16];
    size_t n_lsids;
} ms_session;

static _Atomic int32_t g_connection_id;

/* ---- listener state ------------------------------------------------------ */

static int ms_listener_init(const struct tg_listener_config *cfg, void **state, char *err,
                            size_t errlen)
{
    if (!cfg->backend.user != !cfg->backend.password.data) {
        snprintf(err, errlen,
                 "listener %s: protocol mongodb needs both backend.user and backend.password_file "
                 "(or neither, for a backend without authentication)",
                 cfg->name);
        return TG_ECONFIG;
    }
    if (cfg->backend.user && tg_scram_global_init() < 0) {
        snprintf(err, errlen, "cannot initialize GNU SASL");
        return TG_ECONFIG;
    }
    const tg_mongodb_config *mc = &cfg->mongodb;
    tg_mongo_scope_config sc = {
        .isolation = mc->isolation == TG_MONGO_ISOLATION_DATABASE ? TG_MONGO_SCOPE_DATABASE
                                                                  : TG_MONGO_SCOPE_FIELD,
        .tenant_field = mc->tenant_field,
        .database_template = mc->database_template,
        .allow_drop = mc->allow_drop,
        .allow_change_streams = mc->allow_change_streams,
    };
    ms_listener *ml = calloc(1, sizeof(*ml));
    if (!ml || RAND_bytes(ml->lsid_key, sizeof(ml->lsid_key)) != 1) {
        free(ml);
        snprintf(err, errlen, "out of memory");
        return TG_ECONFIG;
    }
    char why[256];
    if (tg_mongo_scope_new(&sc, &ml->scope, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "listener %s: %s", cfg->name, why);
        free(ml);
        return TG_ECONFIG;
    }
    ml->cfg = cfg;
    *state = ml;
    return 0;
}

static void ms_listener_free(void *state)
{
    ms_listener *ml = state;
    tg_mongo_scope_free(ml->scope);
    OPENSSL_cleanse(ml->lsid_key, sizeof(ml->lsid_key));
    free(ml);
}

/* ---- small helpers ------------------------------------------------------------------------ */

static int32_t next_id(ms_session *s)
{
    s->next_id = s->next_id == INT32_MAX ? 1 : s->next_id + 1;
    return s->next_id;
}

static const char *auth_db(const ms_session *s)
{
    return s->ml->cfg->backend.auth_db ? s->ml->cfg->backend.auth_db : "admin";
}

/* A command name fit for a log line: printable ASCII, at most 40 bytes, else '?'. */
static void printable_name(tg_slice name, char out[48])
{
    size_t n = name.len < 40 ? name.len : 40;
    for (size_t i = 0; i < n; i++)
        out[i] = name.base[i] >= 0x21 && name.base[i] < 0x7f ? (char)name.base[i] : '?';
    out[n] = 0;
}

/* The shape of a document (keys and types, never values), hashed: the audit fingerprint. */
static void shape_update(XXH3_state_t *st, bson_iter_t *it, int depth)
{
    while (bson_iter_next(it)) {
        uint8_t t = (uint8_t)bson_iter_type(it);
        XXH3_64bits_update(st, bson_iter_key(it), bson_iter_key_len(it));
        XXH3_64bits_update(st, &t, 1);
        bson_iter_t sub;
        if ((BSON_ITER_HOLDS_DOCUMENT(it) || BSON_ITER_HOLDS_ARRAY(it)) && depth < 32 &&
            bson_iter_recurse(it, &sub)) {
            XXH3_64bits_update(st, "{", 1);
            shape_update(st, &sub, depth + 1);
            XXH3_64bits_update(st, "}", 1);
        }
    }
}

static void fingerprint(const bson_t *body, char out[17])
{
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    bson_iter_t it;
    if (bson_iter_init(&it, body))
        shape_update(&st, &it, 0);
    snprintf(out, 17, "%016llx", (unsigned long long)XXH3_64bits_digest(&st));
}

static bool iter_int64(const bson_iter_t *it, int64_t *out)
{
    if (BSON_ITER_HOLDS_INT32(it) || BSON_ITER_HOLDS_INT64(it) || BSON_ITER_HOLDS_DOUBLE(it) ||
        BSON_ITER_HOLDS_BOOL(it)) {
        *out = bson_iter_as_int64(it);
        return true;
    }
    return false;
}

/* {ok: 1} (or 1.0, true) in a reply body. */
static bool reply_ok(const bson_t *body)
{
    bson_iter_t it;
    int64_t v = 0;
    if (!bson_iter_init_find(&it, body, "ok"))
        return false;
    if (BSON_ITER_HOLDS_DOUBLE(&it))
        return bson_iter_double(&it) == 1.0;
    return iter_int64(&it, &v) && v == 1;
}

/*
 * Decodes base64 text into out (reset first). Returns false for anything
 * that is not canonical base64 (padding only at the end).
 */
static bool base64_decode(const char *in, size_t n, tg_buf *out)
{
    out->len = 0;
    if (n % 4 || !tg_buf_reserve(out, n / 4 * 3 + 1))
        return false;
    uint32_t acc = 0;
    size_t pad = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = in[i];
        int v = ch >= 'A' && ch <= 'Z'    ? ch - 'A'
                : ch >= 'a' && ch <= 'z'  ? ch - 'a' + 26
                : ch >= '0' && ch <= '9'  ? ch - '0' + 52
                : ch == '+'               ? 62
                : ch == '/'               ? 63
                : ch == '=' && i >= n - 2 ? -2
                                          : -1;
        if (v == -1 || (pad && v != -2))
            return false;
        if (v == -2) {
            pad++;
            v = 0;
        }
        acc = acc << 6 | (uint32_t)v;
        if (i % 4 == 3) {
            out->data[out->len++] = (uint8_t)(acc >> 16);
            out->data[out->len++] = (uint8_t)(acc >> 8);
            out->data[out->len++] = (uint8_t)acc;
            acc = 0;
        }
    }
    out->len -= pad;
    return true;
}

/*
 * A SASL payload: binary (any subtype), or a string holding base64 (as mongod
 * takes it; libmongoc sends PLAIN that way). A decoded string lands in *scratch.
 */
static bool client_payload(const bson_t *doc, tg_slice *out, tg_buf *scratch)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, "payload"))
        return false;
    if (BSON_ITER_HOLDS_BINARY(&it)) {
        bson_subtype_t st;
        uint32_t blen;
        const uint8_t *b;
        bson_iter_binary(&it, &st, &blen, &b);
        *out = (tg_slice){b, blen};
        return true;
    }
    if (!BSON_ITER_HOLDS_UTF8(&it))
        return false;
    uint32_t len;
    const char *p = bson_iter_utf8(&it, &len);
    if (!base64_decode(p, len, scratch))
        return false;
    *out = (tg_slice){scratch->data, scratch->len};
    return true;
}

/* A SASL payload: binary (any subtype) or a string (taken as it is: the backend's SCRAM). */
static bool sasl_payload(const bson_t *doc, tg_slice *out)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, "payload"))
        return false;
    if (BSON_ITER_HOLDS_BINARY(&it)) {
        bson_subtype_t st;
        uint32_t len;
        const uint8_t *p;
        bson_iter_binary(&it, &st, &len, &p);
        *out = (tg_slice){p, len};
        return true;
    }
    if (BSON_ITER_HOLDS_UTF8(&it)) {
        uint32_t len;
        const char *p = bson_iter_utf8(&it, &len);
        *out = (tg_slice){(const uint8_t *)p, len};
        return true;
    }
    return false;
}

/* ---- sending and ordering ------------------------------------------------------------------ */

static int emit_client(void *ud, const uint8_t *p, size_t len)
{
    return tg_conn_send(ud, TG_SIDE_CLIENT, p, len);
}

/* A local reply, after every backend reply still due. */
static int local_reply(tg_conn *c, ms_session *s, const void *p, size_t len)
{
    int r = tg_reply_queue_push_local(&s->rq, p, len);
    if (r == 1)
        return tg_conn_send(c, TG_SIDE_CLIENT, p, len);
    return r;
}

/* A local OP_MSG (or OP_REPLY when op_reply) answering request rto with doc. */
static int local_doc(tg_conn *c, ms_session *s, int32_t rto, const bson_t *doc, bool op_reply)
{
    s->out.len = 0;
    int r = op_reply ? tg_mongo_build_reply(&s->out, next_id(s), rto, MS_AWAIT_CAPABLE, doc)
                     : tg_mongo_build_msg(&s->out, next_id(s), rto, 0, doc, NULL, 0);
    return r < 0 ? r : local_reply(c, s, s->out.data, s->out.len);
}

static int local_error(tg_conn *c, ms_session *s, int32_t rto, int32_t code, const char *reason,
                       bool op_reply)
{
    s->out.len = 0;
    int r = op_reply ? tg_mongo_build_error_reply(&s->out, next_id(s), rto, code, reason)
                     : tg_mongo_build_error_msg(&s->out, next_id(s), rto, code, reason);
    return r < 0 ? r : local_reply(c, s, s->out.data, s->out.len);
}

static int local_ok(tg_conn *c, ms_session *s, int32_t rto)
{
    bson_t d = BSON_INITIALIZER;
    BSON_APPEND_DOUBLE(&d, "ok", 1.0);
    int r = local_doc(c, s, rto, &d, false);
    bson_destroy(&d);
    return r;
}

/* One more backend reply is due, handled with e. Returns 0 or TG_ENOMEM. */
static int expect(ms_session *s, ms_expect e)
{
    if (tg_ring_reserve((void **)&s->fifo, sizeof(*s->fifo), &s->fifo_cap, &s->fifo_head,
                        s->fifo_len, 16) < 0)
        return TG_ENOMEM;
    s->fifo[(s->fifo_head + s->fifo_len) % s->fifo_cap] = e;
    s->fifo_len++;
    return tg_reply_queue_expect_backend(&s->rq, 1);
}

/* Sends a command of tenantgate's own to the backend; its reply is handled with `action`. */
static int backend_command(tg_conn *c, ms_session *s, const bson_t *body, ms_action action)
{
    s->out.len = 0;
    int32_t id = next_id(s);
    int r = tg_mongo_build_msg(&s->out, id, 0, 0, body, NULL, 0);
    if (r == 0)
        r = tg_conn_send(c, TG_SIDE_BACKEND, s->out.data, s->out.len);
    if (r == 0)
        r = expect(s, (ms_expect){.action = (uint8_t)action, .request_id = id, .gen = s->gen});
    return r;
}

/* A fatal client error: the protocol's error for request rid (when known), then close. */
static void fatal(tg_conn *c, ms_session *s, tg_reject_reason why, const uint8_t *head,
                  size_t head_len, int32_t rid, bool op_reply, int32_t code, const char *reason)
{
    char hex[33] = "";
    for (size_t i = 0; i < head_len && i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", head[i]);
    TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[why], 1);
    tg_log(TG_LOG_WARN, "mongodb message refused, closing", TG_FS("listener", s->ml->cfg->name),
           TG_FS("client", tg_conn_peer(c)), TG_FS("tenant", s->authed ? s->id.tenant : ""),
           TG_FS("reason", reason), TG_FS("header", hex), TG_FEND);
    /* Sent only when nothing is due before it: the connection closes now either way. */
    if (rid >= 0 && s->rq.outstanding == 0) {
        s->out.len = 0;
        if ((op_reply ? tg_mongo_build_error_reply(&s->out, next_id(s), rid, code, reason)
                      : tg_mongo_build_error_msg(&s->out, next_id(s), rid, code, reason)) == 0)
            if (tg_conn_send(c, TG_SIDE_CLIENT, s->out.data, s->out.len) < 0)
                s->out.len = 0; /* closing anyway */
    }
    s->done = true;
    tg_conn_finish(c);
}

/* ---- cursors and logical sessions of this client ------------------------------------------- */

static ms_cursor *cursor_find(ms_session *s, int64_t id)
{
    for (size_t i = 0; i < s->n_cursors; i++)
        if (s->cursors[i].id == id)
            return &s->cursors[i];
    return NULL;
}

static void cursor_del(ms_session *s, int64_t id)
{
    ms_cursor *k = cursor_find(s, id);
    if (k)
        *k = s->cursors[--s->n_cursors];
}

static int cursor_add(tg_conn *c, ms_session *s, int64_t id, tg_slice ns,
                      const tg_mongo_reply_map *map)
{
    if (cursor_find(s, id))
        return 0;
    if (s->n_cursors == MS_MAX_CURSORS || ns.len >= MS_NS_MAX) {
        /* Not recorded: the client cannot read it further (fail closed). */
        tg_log(TG_LOG_WARN, "cursor not recorded", TG_FS("listener", s->ml->cfg->name),
               TG_FS("tenant", s->id.tenant),
               TG_FS("reason", ns.len >= MS_NS_MAX ? "namespace too long" : "too many cursors"),
               TG_FEND);
        return 0;
    }
    if (s->n_cursors == s->cap_cursors) {
        size_t cap = s->cap_cursors ? 2 * s->cap_cursors : 8;
        ms_cursor *n = realloc(s->cursors, cap * sizeof(*n));
        if (!n)
            return TG_ENOMEM;
        s->cursors = n;
        s->cap_cursors = cap;
    }
    ms_cursor *k = &s->cursors[s->n_cursors++];
    k->id = id;
    k->map = *map;
    memcpy(k->ns, ns.base, ns.len);
    k->ns[ns.len] = 0;
    (void)c;
    return 0;
}

static void lsid_add(ms_session *s, const uint8_t id[16])
{
    for (size_t i = 0; i < s->n_lsids; i++)
        if (memcmp(s->lsids[i], id, 16) == 0)
            return;
    if (s->n_lsids == MS_MAX_LSIDS)
        return; /* hygiene only: the backend times idle sessions out */
    if (!s->lsids && !(s->lsids = malloc(MS_MAX_LSIDS * sizeof(*s->lsids))))
        return;
    memcpy(s->lsids[s->n_lsids++], id, 16);
}

/*
 * A cursor document in a reply body: {cursor: {id, ns, ...}}. Returns true
 * with the id and ns (borrowed) when there is one.
 */
static bool reply_cursor(const bson_t *body, int64_t *id, tg_slice *ns)
{
    bson_iter_t it, cur;
    if (!bson_iter_init_find(&it, body, "cursor") || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
        !bson_iter_recurse(&it, &cur))
        return false;
    bool have_id = false;
    *ns = (tg_slice){NULL, 0};
    while (bson_iter_next(&cur)) {
        if (strcmp(bson_iter_key(&cur), "id") == 0 && BSON_ITER_HOLDS_INT64(&cur)) {
            *id = bson_iter_int64(&cur);
            have_id = true;
        } else if (strcmp(bson_iter_key(&cur), "id") == 0 && BSON_ITER_HOLDS_INT32(&cur)) {
            *id = bson_iter_int32(&cur);
            have_id = true;
        } else if (strcmp(bson_iter_key(&cur), "ns") == 0 && BSON_ITER_HOLDS_UTF8(&cur)) {
            uint32_t n;
            const char *p = bson_iter_utf8(&cur, &n);
            *ns = (tg_slice){(const uint8_t *)p, n};
        }
    }
    return have_id;
}

/*
 * Before the session changes tenant: kill this client's cursors and end its
 * logical sessions on the backend (replies dropped), so the next tenant
 * inherits nothing of the previous one's.
 */
static int reset_backend_state(tg_conn *c, ms_session *s)
{
    int r = 0;
    for (size_t i = 0; r == 0 && i < s->n_cursors; i++) {
        const char *ns = s->cursors[i].ns, *dot = strchr(ns, '.');
        if (!dot || dot == ns || !dot[1])
            continue;
        char db[MS_NS_MAX];
        memcpy(db, ns, (size_t)(dot - ns));
        db[dot - ns] = 0;
        bson_t b = BSON_INITIALIZER, arr;
        BSON_APPEND_UTF8(&b, "killCursors", dot + 1);
        BSON_APPEND_ARRAY_BEGIN(&b, "cursors", &arr);
        BSON_APPEND_INT64(&arr, "0", s->cursors[i].id);
        bson_append_array_end(&b, &arr);
        BSON_APPEND_UTF8(&b, "$db", db);
        r = backend_command(c, s, &b, MS_SWALLOW);
        bson_destroy(&b);
    }
    if (r == 0 && s->n_lsids) {
        bson_t b = BSON_INITIALIZER, arr;
        BSON_APPEND_ARRAY_BEGIN(&b, "endSessions", &arr);
        for (size_t i = 0; i < s->n_lsids; i++) {
            char key[24];
            bson_t one;
            snprintf(key, sizeof(key), "%zu", i);
            bson_append_document_begin(&arr, key, -1, &one);
            BSON_APPEND_BINARY(&one, "id", BSON_SUBTYPE_UUID, s->lsids[i], 16);
            bson_append_document_end(&arr, &one);
        }
        bson_append_array_end(&b, &arr);
        BSON_APPEND_UTF8(&b, "$db", "admin");
        r = backend_command(c, s, &b, MS_SWALLOW);
        bson_destroy(&b);
    }
    s->n_cursors = 0;
    s->n_lsids = 0;
    return r;
}

/* ---- hello ------------------------------------------------------------------------------------
 */

/* The server version a wire version stands for (what buildInfo says before the backend's). */
static const char *version_of(int32_t wire)
{
    static const struct {
        int32_t wire;
        const char *version;
    } t[] = {{25, "8.0.0"}, {21, "7.0.0"}, {17, "6.0.0"}, {13, "5.0.0"},
             {9, "4.4.0"},  {8, "4.2.0"},  {7, "4.0.0"},  {6, "3.6.0"}};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (wire >= t[i].wire)
            return t[i].version;
    return "3.6.0";
}

static void limits_from_listener(ms_session *s)
{
    ms_listener *ml = s->ml;
    int32_t v;
    s->max_wire =
        (v = atomic_load_explicit(&ml->max_wire, memory_order_relaxed)) ? v : MS_DEFAULT_MAX_WIRE;
    s->max_message = (v = atomic_load_explicit(&ml->max_message, memory_order_relaxed))
                         ? v
                         : (int32_t)TG_MONGO_MAX_MESSAGE_DEFAULT;
    s->max_bson =
        (v = atomic_load_explicit(&ml->max_bson, memory_order_relaxed)) ? v : MS_DEFAULT_MAX_BSON;
    s->max_batch =
        (v = atomic_load_explicit(&ml->max_batch, memory_order_relaxed)) ? v : MS_DEFAULT_MAX_BATCH;
}

static int try_auth(tg_conn *c, ms_session *s, const bson_t *cmd, const char *db, bool speculative,
                    char *why, size_t whylen);

/*
 * hello / isMaster (legacy: "ismaster" in the reply, helloOk echoed), from
 * OP_MSG or OP_QUERY (op_reply). A speculativeAuthenticate for PLAIN or
 * MONGODB-OIDC authenticates before the reply is built; its success adds
 * speculativeAuthenticate to the reply, its failure is silent (the driver
 * then runs saslStart and gets the error).
 */
static int on_hello(tg_conn *c, ms_session *s, int32_t rid, const bson_t *body, bool legacy,
                    bool op_reply, bool more)
{
    bson_iter_t it;
    bool spec_ok = false;
    if (!s->authed && bson_iter_init_find(&it, body, "speculativeAuthenticate") &&
        BSON_ITER_HOLDS_DOCUMENT(&it)) {
        uint32_t len;
        const uint8_t *p;
        bson_t spec;
        bson_iter_document(&it, &len, &p);
        bson_iter_t db;
        char why[160];
        if (bson_init_static(&spec, p, len) && bson_iter_init_find(&db, &spec, "db") &&
            BSON_ITER_HOLDS_UTF8(&db)) {
            int r = try_auth(c, s, &spec, bson_iter_utf8(&db, NULL), true, why, sizeof(why));
            if (r < 0)
                return r;
            if (r == MS_AUTH_PENDING)
                return MS_STALL;
            spec_ok = r == 1;
        }
    }
    if (more)
        return 0;
    bson_t d = BSON_INITIALIZER;
    if (legacy && bson_iter_init_find(&it, body, "helloOk") && BSON_ITER_HOLDS_BOOL(&it) &&
        bson_iter_bool(&it))
        BSON_APPEND_BOOL(&d, "helloOk", true);
    BSON_APPEND_BOOL(&d, legacy ? "ismaster" : "isWritablePrimary", true);
    BSON_APPEND_INT32(&d, "maxBsonObjectSize", s->max_bson);
    BSON_APPEND_INT32(&d, "maxMessageSizeBytes", s->max_message);
    BSON_APPEND_INT32(&d, "maxWriteBatchSize", s->max_batch);
    BSON_APPEND_DATE_TIME(&d, "localTime", (int64_t)time(NULL) * 1000);
    BSON_APPEND_INT32(&d, "logicalSessionTimeoutMinutes", 30);
    BSON_APPEND_INT32(&d, "connectionId", s->conn_id);
    BSON_APPEND_INT32(&d, "minWireVersion", 0);
    BSON_APPEND_INT32(&d, "maxWireVersion", s->max_wire);
    BSON_APPEND_BOOL(&d, "readOnly", false);
    if (bson_iter_init_find(&it, body, "saslSupportedMechs") && BSON_ITER_HOLDS_UTF8(&it)) {
        bson_t arr;
        BSON_APPEND_ARRAY_BEGIN(&d, "saslSupportedMechs", &arr);
        if (strncmp(bson_iter_utf8(&it, NULL), "$external.", 10) == 0) {
            BSON_APPEND_UTF8(&arr, "0", "PLAIN");
            BSON_APPEND_UTF8(&arr, "1", "MONGODB-OIDC");
        }
        bson_append_array_end(&d, &arr);
    }
    if (spec_ok) {
        bson_t sa;
        BSON_APPEND_DOCUMENT_BEGIN(&d, "speculativeAuthenticate", &sa);
        BSON_APPEND_INT32(&sa, "conversationId", 1);
        BSON_APPEND_BOOL(&sa, "done", true);
        BSON_APPEND_BINARY(&sa, "payload", BSON_SUBTYPE_BINARY, (const uint8_t *)"", 0);
        bson_append_document_end(&d, &sa);
    }
    BSON_APPEND_DOUBLE(&d, "ok", 1.0);
    int r = local_doc(c, s, rid, &d, op_reply);
    bson_destroy(&d);
    /* A client that completed a hello is past the connection handshake: drivers' monitoring
     * connections never authenticate, and keep sending hello. */
    tg_conn_established(c);
    return r;
}

static int on_build_info(tg_conn *c, ms_session *s, int32_t rid)
{
    const char *v = version_of(s->max_wire);
    int a = 0, b = 0, d = 0;
    (void)sscanf(v, "%d.%d.%d", &a, &b, &d);
    bson_t doc = BSON_INITIALIZER, arr;
    BSON_APPEND_UTF8(&doc, "version", v);
    BSON_APPEND_ARRAY_BEGIN(&doc, "versionArray", &arr);
    BSON_APPEND_INT32(&arr, "0", a);
    BSON_APPEND_INT32(&arr, "1", b);
    BSON_APPEND_INT32(&arr, "2", d);
    BSON_APPEND_INT32(&arr, "3", 0);
    bson_append_array_end(&doc, &arr);
    BSON_APPEND_INT32(&doc, "bits", 64);
    BSON_APPEND_INT32(&doc, "maxBsonObjectSize", s->max_bson);
    BSON_APPEND_DOUBLE(&doc, "ok", 1.0);
    int r = local_doc(c, s, rid, &doc, false);
    bson_destroy(&doc);
    return r;
}

/* ---- tenant authentication --------------------------------------------------------------------
 */

static void set_session_expiry(tg_conn *c, ms_session *s)
{
    uint32_t grace = s->ml->cfg->timeouts.handshake_ms;
    if (!grace)
        grace = MS_GRACE_DEFAULT_MS;
    int64_t left_ms =
        (s->id.exp + (int64_t)tg_conn_runtime(c)->cfg->jwt.leeway_s - (int64_t)time(NULL)) * 1000;
    tg_conn_set_expiry(c, (uint64_t)(left_ms > 0 ? left_ms : 0) + grace);
}

/* The token is past exp (and the leeway its verification allowed). */
static bool expired(tg_conn *c, const ms_session *s)
{
    return (int64_t)time(NULL) >= s->id.exp + (int64_t)tg_conn_runtime(c)->cfg->jwt.leeway_s;
}

/* A verified identity becomes the session's (first login, refresh, or tenant switch). */
static int adopt_identity(tg_conn *c, ms_session *s, const tg_identity *id)
{
    tg_mongo_tenant *t = NULL;
    if (!s->authed || strcmp(s->id.tenant, id->tenant) != 0) {
        t = tg_mongo_tenant_new(s->ml->scope, id->tenant, s->ml->lsid_key, sizeof(s->ml->lsid_key));
        if (!t)
            return TG_ENOMEM;
    }
    if (!s->authed) {
        s->tenant = t;
        s->authed = true;
        s->id = *id;
        s->gen++;
        set_session_expiry(c, s);
        s->bk = BK_CONNECTING;
        return tg_conn_connect_backend(c);
    }
    if (strcmp(s->id.tenant, id->tenant) != 0) {
        int r = reset_backend_state(c, s);
        if (r < 0) {
            tg_mongo_tenant_free(t);
            return r;
        }
        tg_mongo_tenant_free(s->tenant);
        s->tenant = t;
        tg_log(TG_LOG_INFO, "tenant switched", TG_FB("audit", true),
               TG_FS("listener", s->ml->cfg->name), TG_FS("client", tg_conn_peer(c)),
               TG_FS("from", s->id.tenant), TG_FS("tenant", id->tenant), TG_FEND);
        s->gen++;
    }
    s->id = *id;
    set_session_expiry(c, s);
    return 0;
}

/* A failed authentication that never reached the token check (mechanism, database, payload). */
static void auth_refused(tg_conn *c, ms_session *s, const char *why)
{
    TG_STAT_ADD(tg_conn_stats(c)->auth_failed[TG_JWT_MALFORMED], 1);
    tg_log(TG_LOG_WARN, "authentication failed", TG_FB("audit", true),
           TG_FS("listener", s->ml->cfg->name), TG_FS("client", tg_conn_peer(c)),
           TG_FS("reason", why), TG_FEND);
}

/*
 * One SASL start (saslStart, or hello's speculativeAuthenticate) on database
 * db: PLAIN ("authzid\0user\0<jwt>") or MONGODB-OIDC ({jwt: "<jwt>"} as BSON)
 * on $external. Returns 1 when the token verified, the tenant was admitted to
 * its slot (proxy/auth.c: connection limit) and the session adopted it, 0
 * with the reason in why, MS_AUTH_PENDING while the tenant registry is asked
 * (the same message comes again with the answer), or a negative TG_E*.
 */
static int try_auth(tg_conn *c, ms_session *s, const bson_t *cmd, const char *db, bool speculative,
                    char *why, size_t whylen)
{
    bson_iter_t it;
    const char *mech = NULL;
    if (bson_iter_init_find(&it, cmd, "mechanism") && BSON_ITER_HOLDS_UTF8(&it))
        mech = bson_iter_utf8(&it, NULL);
    tg_slice payload;
    const char *bad = NULL;
    if (!mech)
        bad = "saslStart needs a mechanism";
    else if (strcmp(mech, "PLAIN") != 0 && strcmp(mech, "MONGODB-OIDC") != 0)
        bad = "only PLAIN (password = JWT) and MONGODB-OIDC are supported, on $external";
    else if (strcmp(db, "$external") != 0)
        bad = "authenticate on the $external database";
    else if (!client_payload(cmd, &payload, &s->scratch))
        bad = "saslStart needs a payload (binary, or base64 text)";
    if (bad) {
        if (!speculative)
            auth_refused(c, s, bad);
        snprintf(why, whylen, "%s", bad);
        return 0;
    }
    const char *token = NULL;
    size_t token_len = 0;
    if (strcmp(mech, "PLAIN") == 0) {
        /* authzid NUL authcid NUL passwd: the password is the token, the names are not used. */
        const uint8_t *a = memchr(payload.base, 0, payload.len);
        const uint8_t *b =
            a ? memchr(a + 1, 0, payload.len - (size_t)(a + 1 - payload.base)) : NULL;
        if (!b) {
            auth_refused(c, s, "malformed PLAIN payload");
            snprintf(why, whylen, "malformed PLAIN payload");
            return 0;
        }
        token = (const char *)b + 1;
        token_len = payload.len - (size_t)(b + 1 - payload.base);
    } else {
        const char *reason = NULL;
        bson_t doc;
        bson_iter_t jit;
        if (tg_mongo_check_doc(payload.base, payload.len, TG_MONGO_VALIDATE_REQUEST, &reason) !=
                (ssize_t)payload.len ||
            !bson_init_static(&doc, payload.base, payload.len) ||
            !bson_iter_init_find(&jit, &doc, "jwt") || !BSON_ITER_HOLDS_UTF8(&jit)) {
            bad = "MONGODB-OIDC needs {jwt: <token>} in saslStart (the callback workflow)";
            if (!speculative)
                auth_refused(c, s, bad);
            snprintf(why, whylen, "%s", bad);
            return 0;
        }
        uint32_t n;
        token = bson_iter_utf8(&jit, &n);
        token_len = n;
    }
    tg_identity id;
    tg_jwt_result jr = tg_auth_tenant(c, token, token_len, &id);
    if (jr == TG_JWT_PENDING)
        return MS_AUTH_PENDING;
    if (jr != TG_JWT_OK) {
        snprintf(why, whylen, "%s", tg_jwt_result_str(jr));
        return 0;
    }
    int r = tg_auth_admit(c, &id, &s->slot);
    if (r == TG_ELIMIT) {
        TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[TG_REJECT_max_connections], 1);
        tg_log(TG_LOG_INFO, "connection refused", TG_FB("audit", true),
               TG_FS("listener", s->ml->cfg->name), TG_FS("tenant", id.tenant),
               TG_FS("client", tg_conn_peer(c)), TG_FS("reason", "too many connections"), TG_FEND);
        snprintf(why, whylen, "too many connections for this tenant");
        return 0;
    }
    if (r == 0)
        r = adopt_identity(c, s, &id);
    return r < 0 ? r : 1;
}

/* saslStart: the answer is done at once (PLAIN and OIDC's one step), or code 18. */
static int on_sasl_start(tg_conn *c, ms_session *s, int32_t rid, const bson_t *body, bool more)
{
    if (s->fifo_len) { /* a re-authentication: after every reply still due */
        s->stalled = true;
        return MS_STALL;
    }
    bson_iter_t it;
    const char *db = "";
    if (bson_iter_init_find(&it, body, "$db") && BSON_ITER_HOLDS_UTF8(&it))
        db = bson_iter_utf8(&it, NULL);
    bool was_authed = s->authed;
    char why[160], reason[200];
    int r = try_auth(c, s, body, db, false, why, sizeof(why));
    if (r < 0)
        return r;
    if (r == MS_AUTH_PENDING)
        return MS_STALL;
    if (r == 0) {
        snprintf(reason, sizeof(reason), "authentication failed: %s", why);
        r = more ? 0 : local_error(c, s, rid, TG_MONGO_ERR_AUTHENTICATION_FAILED, reason, false);
        if (!was_authed) { /* SPEC §5: a failed first authentication closes the connection */
            s->done = true;
            tg_conn_finish(c);
        }
        return r;
    }
    if (more)
        return 0;
    bson_t d = BSON_INITIALIZER;
    BSON_APPEND_INT32(&d, "conversationId", 1);
    BSON_APPEND_BOOL(&d, "done", true);
    BSON_APPEND_BINARY(&d, "payload", BSON_SUBTYPE_BINARY, (const uint8_t *)"", 0);
    BSON_APPEND_DOUBLE(&d, "ok", 1.0);
    r = local_doc(c, s, rid, &d, false);
    bson_destroy(&d);
    return r;
}

/* ---- the backend login ------------------------------------------------------------------------
 */

static void backend_failed(tg_conn *c, ms_session *s, const char *why)
{
    tg_log(TG_LOG_ERROR, "backend authentication failed", TG_FS("listener", s->ml->cfg->name),
           TG_FS("client", tg_conn_peer(c)), TG_FS("reason", why), TG_FEND);
    s->done = true;
    tg_conn_finish(c);
}

static int backend_ready(tg_conn *c, ms_session *s)
{
    s->bk = BK_READY;
    tg_conn_established(c);
    tg_scram_free(s->scram);
    s->scram = NULL;
    tg_buf_free(&s->scram_first);
    tg_conn_redispatch(c, TG_SIDE_CLIENT); /* commands that waited for the backend */
    return 0;
}

static int send_sasl(tg_conn *c, ms_session *s, bool start, int64_t conv, const uint8_t *p,
                     size_t n)
{
    bson_t b = BSON_INITIALIZER;
    if (start) {
        BSON_APPEND_INT32(&b, "saslStart", 1);
        BSON_APPEND_UTF8(&b, "mechanism", "SCRAM-SHA-256");
    } else {
        BSON_APPEND_INT32(&b, "saslContinue", 1);
        BSON_APPEND_INT32(&b, "conversationId", (int32_t)conv);
    }
    BSON_APPEND_BINARY(&b, "payload", BSON_SUBTYPE_BINARY, p ? p : (const uint8_t *)"",
                       (uint32_t)n);
    if (start) {
        bson_t o;
        BSON_APPEND_DOCUMENT_BEGIN(&b, "options", &o);
        BSON_APPEND_BOOL(&o, "skipEmptyExchange", true);
        bson_append_document_end(&b, &o);
    }
    BSON_APPEND_UTF8(&b, "$db", auth_db(s));
    int r = backend_command(c, s, &b, MS_BK_SASL);
    bson_destroy(&b);
    return r;
}

static int on_backend_ready(tg_conn *c, void *session)
{
    ms_session *s = session;
    const tg_backend_config *b = &s->ml->cfg->backend;
    s->bk = BK_LOGIN;
    bson_t h = BSON_INITIALIZER;
    BSON_APPEND_INT32(&h, "hello", 1);
    if (b->user) {
        uint8_t *first = NULL;
        size_t first_len = 0;
        if (tg_scram_client_new(b->user, b->password.data, &s->scram) < 0 ||
            tg_scram_step(s->scram, NULL, 0, &first, &first_len) < 0 ||
            tg_buf_append(&s->scram_first, first, first_len) < 0) {
            free(first);
            bson_destroy(&h);
            backend_failed(c, s, "SCRAM client setup failed");
            return 0;
        }
        free(first);
        bson_t sa, o;
        BSON_APPEND_DOCUMENT_BEGIN(&h, "speculativeAuthenticate", &sa);
        BSON_APPEND_INT32(&sa, "saslStart", 1);
        BSON_APPEND_UTF8(&sa, "mechanism", "SCRAM-SHA-256");
        BSON_APPEND_BINARY(&sa, "payload", BSON_SUBTYPE_BINARY, s->scram_first.data,
                           (uint32_t)s->scram_first.len);
        BSON_APPEND_UTF8(&sa, "db", auth_db(s));
        BSON_APPEND_DOCUMENT_BEGIN(&sa, "options", &o);
        BSON_APPEND_BOOL(&o, "skipEmptyExchange", true);
        bson_append_document_end(&sa, &o);
        bson_append_document_end(&h, &sa);
    }
    BSON_APPEND_UTF8(&h, "$db", "admin");
    int r = backend_command(c, s, &h, MS_BK_HELLO);
    bson_destroy(&h);
    return r;
}

static int32_t clamp_limit(const bson_t *body, const char *key, int64_t lo, int64_t hi,
                           int32_t dflt)
{
    bson_iter_t it;
    int64_t v;
    if (bson_iter_init_find(&it, body, key) && iter_int64(&it, &v) && v >= lo && v <= hi)
        return (int32_t)v;
    return dflt;
}

/* One SCRAM step from a server reply (saslStart/saslContinue or the speculative one). */
static int scram_reply(tg_conn *c, ms_session *s, const bson_t *r)
{
    bson_iter_t it;
    int64_t conv = 0;
    bool done =
        bson_iter_init_find(&it, r, "done") && BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it);
    if (bson_iter_init_find(&it, r, "conversationId"))
        (void)iter_int64(&it, &conv);
    tg_slice payload;
    if (!sasl_payload(r, &payload))
        payload = (tg_slice){NULL, 0};
    if (!s->scram_verified) {
        uint8_t *out = NULL;
        size_t out_len = 0;
        int st = tg_scram_step(s->scram, payload.base, payload.len, &out, &out_len);
        if (st < 0) {
            backend_failed(c, s, "the backend's SCRAM answer did not verify");
            return 0;
        }
        if (st == 0) {
            int r2 = done ? 0 : send_sasl(c, s, false, conv, out, out_len);
            free(out);
            if (done)
                backend_failed(c, s, "the backend ended SCRAM before proving the password");
            return r2;
        }
        free(out);
        s->scram_verified = true;
    }
    if (done)
        return backend_ready(c, s);
    return send_sasl(c, s, false, conv, NULL, 0);
}

static int on_backend_hello(tg_conn *c, ms_session *s, const bson_t *body)
{
    if (!reply_ok(body)) {
        backend_failed(c, s, "the backend refused hello");
        return 0;
    }
    ms_listener *ml = s->ml;
    s->max_wire = clamp_limit(body, "maxWireVersion", 6, 1000, MS_DEFAULT_MAX_WIRE);
    s->max_message = clamp_limit(body, "maxMessageSizeBytes", MS_MIN_MESSAGE, MS_MAX_MESSAGE,
                                 (int32_t)TG_MONGO_MAX_MESSAGE_DEFAULT);
    s->max_bson =
        clamp_limit(body, "maxBsonObjectSize", MS_MIN_MESSAGE, MS_MAX_MESSAGE, MS_DEFAULT_MAX_BSON);
    s->max_batch = clamp_limit(body, "maxWriteBatchSize", 1, 10000000, MS_DEFAULT_MAX_BATCH);
    atomic_store_explicit(&ml->max_wire, s->max_wire, memory_order_relaxed);
    atomic_store_explicit(&ml->max_message, s->max_message, memory_order_relaxed);
    atomic_store_explicit(&ml->max_bson, s->max_bson, memory_order_relaxed);
    atomic_store_explicit(&ml->max_batch, s->max_batch, memory_order_relaxed);
    if (!s->scram)
        return backend_ready(c, s);
    bson_iter_t it;
    if (bson_iter_init_find(&it, body, "speculativeAuthenticate") &&
        BSON_ITER_HOLDS_DOCUMENT(&it)) {
        uint32_t len;
        const uint8_t *p;
        bson_t spec;
        bson_iter_document(&it, &len, &p);
        if (!bson_init_static(&spec, p, len))
            return TG_EPROTO;
        return scram_reply(c, s, &spec);
    }
    return send_sasl(c, s, true, 0, s->scram_first.data, s->scram_first.len);
}

/* ---- relaying commands --------------------------------------------------------------------- */

static void audit_denial(tg_conn *c, ms_session *s, tg_reject_reason why, tg_slice name,
                         const bson_t *body, const char *reason)
{
    char cmd[48], fp[17];
    printable_name(name, cmd);
    fingerprint(body, fp);
    TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[why], 1);
    tg_log(TG_LOG_INFO, "command rejected", TG_FB("audit", true),
           TG_FS("listener", s->ml->cfg->name), TG_FS("tenant", s->authed ? s->id.tenant : ""),
           TG_FS("client", tg_conn_peer(c)), TG_FS("command", cmd), TG_FS("reason", reason),
           TG_FS("fingerprint", fp), TG_FEND);
}

static int deny(tg_conn *c, ms_session *s, int32_t rid, bool more, tg_slice name,
                const bson_t *body, const char *reason)
{
    audit_denial(c, s, TG_REJECT_policy, name, body, reason);
    return more ? 0 : local_error(c, s, rid, TG_MONGO_ERR_UNAUTHORIZED, reason, false);
}

/*
 * Sends the client's message f unchanged to the backend, except that
 * exhaustAllowed is cleared (and the checksum recomputed then): the backend
 * never streams replies.
 */
static int forward_frame(tg_conn *c, const tg_mongo_frame *f, const tg_mongo_msg *m)
{
    const uint8_t *p = f->bytes.base;
    size_t n = f->bytes.len;
    if (!(m->flags & TG_MONGO_MSG_EXHAUST_ALLOWED))
        return tg_conn_forward(c, TG_SIDE_BACKEND, p, n);
    uint8_t head[TG_MONGO_HEADER_LEN + 4];
    memcpy(head, p, sizeof(head));
    uint32_t flags = m->flags & ~TG_MONGO_MSG_EXHAUST_ALLOWED;
    for (int i = 0; i < 4; i++)
        head[TG_MONGO_HEADER_LEN + i] = (uint8_t)(flags >> (8 * i));
    bool crc = (m->flags & TG_MONGO_MSG_CHECKSUM_PRESENT) != 0;
    size_t mid = n - sizeof(head) - (crc ? 4 : 0);
    int r = tg_conn_send(c, TG_SIDE_BACKEND, head, sizeof(head));
    if (r == 0 && mid)
        r = tg_conn_forward(c, TG_SIDE_BACKEND, p + sizeof(head), mid);
    if (r == 0 && crc) {
        uint32_t v = tg_mongo_crc32c(tg_mongo_crc32c(0, head, sizeof(head)), p + sizeof(head), mid);
        uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
        r = tg_conn_send(c, TG_SIDE_BACKEND, le, 4);
    }
    return r;
}

/* The rewritten command of s->scoped, built into s->out with the request's ids and flags. */
static int build_rewrite(ms_session *s, const tg_mongo_frame *f, const tg_mongo_msg *m)
{
    tg_mongo_scoped *r = &s->scoped;
    bson_t body;
    if (!bson_init_static(&body, r->body, r->body_len))
        return TG_EINVAL;
    tg_mongo_seq seqs[TG_MONGO_SCOPE_MAX_SEQ];
    for (uint32_t i = 0; i < r->nseq; i++) /* a sequence the scoper left unchanged has no docs */
        seqs[i] = r->seq[i].docs ? (tg_mongo_seq){.identifier = tg_slice_str(r->seq[i].id),
                                                  .docs = {r->seq[i].docs, r->seq[i].len},
                                                  .count = r->seq[i].count}
                                 : m->seqs[i];
    /* exhaustAllowed dropped; a checksum recomputed when the client sent one. */
    uint32_t flags = m->flags & (TG_MONGO_MSG_CHECKSUM_PRESENT | TG_MONGO_MSG_MORE_TO_COME);
    s->out.len = 0;
    return tg_mongo_build_msg(&s->out, f->header.request_id, f->header.response_to, flags, &body,
                              seqs, r->nseq);
}

/*
 * The scoper seam: the one place a client command is judged
 * (policy/mongo_scope), then sent as it came, rewritten, or refused. The
 * session adds what only it knows: getMore/killCursors must name cursors this
 * client received, and the rewritten message must fit the backend's limit.
 */
static int scope_and_send(tg_conn *c, ms_session *s, const tg_mongo_frame *f, const tg_mongo_msg *m,
                          tg_slice name, const bson_t *body)
{
    bool more = (m->flags & TG_MONGO_MSG_MORE_TO_COME) != 0;
    int32_t rid = f->header.request_id;
    if (m->n_seqs > TG_MONGO_SCOPE_MAX_SEQ)
        return deny(c, s, rid, more, name, body, "too many document sequences");
    tg_mongo_scope_seq seqs[TG_MONGO_SCOPE_MAX_SEQ];
    for (uint32_t i = 0; i < m->n_seqs; i++)
        seqs[i] = (tg_mongo_scope_seq){.id = m->seqs[i].identifier, .docs = m->seqs[i].docs};
    tg_mongo_scoped *r = &s->scoped;
    tg_mongo_verdict v = tg_mongo_scope_command(s->tenant, body, seqs, m->n_seqs, r);
    if (v == TG_MONGO_DENY) {
        char reason[160];
        if (r->what[0] && !strstr(r->reason, r->what))
            snprintf(reason, sizeof(reason), "%s: %s", r->reason, r->what);
        else
            snprintf(reason, sizeof(reason), "%s", r->reason);
        return deny(c, s, rid, more, name, body, reason);
    }
    ms_expect e = {.action = MS_FWD, .request_id = rid, .gen = s->gen, .map = r->reply};
    /* Cursors: only those this client received, whatever the namespace says. */
    for (uint32_t i = 0; i < r->n_cursor_ids; i++) {
        ms_cursor *k = cursor_find(s, r->cursor_ids[i]);
        if (!k)
            return deny(c, s, rid, more, name, body, "cursor id not opened by this client");
        if (r->cmd == TG_MONGO_CMD_GET_MORE) {
            e.get_more = true;
            e.cursor_id = k->id;
            e.map = k->map;
        }
    }
    int rc;
    if (v == TG_MONGO_REWRITE) {
        if ((rc = build_rewrite(s, f, m)) < 0)
            return rc == TG_ENOMEM ? rc
                                   : deny(c, s, rid, more, name, body, "rewritten command refused");
        if (s->out.len > (size_t)s->max_message)
            return deny(c, s, rid, more, name, body,
                        "the scoped command exceeds maxMessageSizeBytes");
        rc = tg_conn_send(c, TG_SIDE_BACKEND, s->out.data, s->out.len);
        TG_STAT_ADD(tg_conn_stats(c)->messages_rewritten, 1);
    } else {
        rc = forward_frame(c, f, m);
    }
    TG_STAT_ADD(tg_conn_stats(c)->messages_forwarded, 1);
    if (rc == 0 && r->has_lsid)
        lsid_add(s, r->backend_lsid);
    if (rc == 0 && r->cmd == TG_MONGO_CMD_KILL_CURSORS)
        for (uint32_t i = 0; i < r->n_cursor_ids; i++)
            cursor_del(s, r->cursor_ids[i]);
    if (rc == 0 && !more)
        rc = expect(s, e);
    return rc;
}

/* ---- client messages ------------------------------------------------------------------------ */

static bool is_hello(tg_slice name)
{
    return tg_slice_eq_str(name, "hello") || tg_slice_eq_str(name, "isMaster") ||
           tg_slice_eq_str(name, "ismaster");
}

/*
 * The tenant's rate limits (tenants.limits) for one command the backend would
 * run: 0, or 1 when it was answered code 462 IngressRequestRateLimitExceeded
 * (in order; nothing for moreToCome). Ending a transaction, a session or a
 * cursor is never refused. The session goes on.
 */
static int over_limit(tg_conn *c, ms_session *s, int32_t rid, bool more, tg_slice name)
{
    if (!s->slot || tg_slice_eq_str(name, "abortTransaction") ||
        tg_slice_eq_str(name, "endSessions") || tg_slice_eq_str(name, "killCursors"))
        return 0;
    tg_tenant_rate rate = tg_tenant_count_message(s->slot, NULL, NULL);
    if (rate == TG_TENANT_PASS)
        return 0;
    bool global = rate == TG_TENANT_GLOBAL_LIMITED;
    const char *reason = global ? "global rate limit exceeded for tenant, retry later"
                                : "rate limit exceeded for tenant, retry later";
    TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[global ? TG_REJECT_global_rate_limit
                                                           : TG_REJECT_rate_limit],
                1);
    int64_t now = (int64_t)time(NULL);
    if (now != s->limit_logged_s) { /* a flood of refusals must not flood the log */
        char cmd[48];
        printable_name(name, cmd);
        s->limit_logged_s = now;
        tg_log(TG_LOG_INFO, "command rejected", TG_FB("audit", true),
               TG_FS("listener", s->ml->cfg->name), TG_FS("tenant", s->id.tenant),
               TG_FS("client", tg_conn_peer(c)), TG_FS("command", cmd), TG_FS("reason", reason),
               TG_FEND);
    }
    int r = more ? 0
                 : local_error(c, s, rid, TG_MONGO_ERR_INGRESS_REQUEST_RATE_LIMIT_EXCEEDED, reason,
                               false);
    return r < 0 ? r : 1;
}

/* Returns 0, MS_STALL (leave the message unconsumed), or a negative TG_E*. */
static int on_client_msg(tg_conn *c, ms_session *s, const tg_mongo_frame *f)
{
    tg_mongo_msg m;
    const char *why = NULL;
    int32_t rid = f->header.request_id;
    if (tg_mongo_parse_msg(f, TG_MONGO_VALIDATE_REQUEST, &m, &why) < 0) {
        fatal(c, s, TG_REJECT_malformed, f->bytes.base, f->bytes.len, rid, false,
              TG_MONGO_ERR_INVALID_BSON, why ? why : "malformed OP_MSG");
        return 0;
    }
    tg_slice name;
    bson_t body;
    if (tg_mongo_msg_command(&m, &name) < 0 || !tg_mongo_doc(m.body, &body)) {
        fatal(c, s, TG_REJECT_malformed, f->bytes.base, f->bytes.len, rid, false,
              TG_MONGO_ERR_BAD_VALUE, "empty command");
        return 0;
    }
    bool more = (m.flags & TG_MONGO_MSG_MORE_TO_COME) != 0;
    if (is_hello(name))
        return on_hello(c, s, rid, &body, !tg_slice_eq_str(name, "hello"), false, more);
    if (tg_slice_eq_str(name, "saslStart"))
        return on_sasl_start(c, s, rid, &body, more);
    if (tg_slice_eq_str(name, "saslContinue")) {
        /* PLAIN and OIDC's one step are done after saslStart: no conversation continues. */
        bool was = s->authed;
        auth_refused(c, s, "no SASL conversation in progress");
        int r = more
                    ? 0
                    : local_error(c, s, rid, TG_MONGO_ERR_AUTHENTICATION_FAILED,
                                  "authentication failed: no SASL conversation in progress", false);
        if (!was) {
            s->done = true;
            tg_conn_finish(c);
        }
        return r;
    }
    if (!s->authed) {
        if (tg_slice_eq_str(name, "ping") || tg_slice_eq_str(name, "endSessions"))
            return more ? 0 : local_ok(c, s, rid);
        if (tg_slice_eq_str(name, "buildInfo") || tg_slice_eq_str(name, "buildinfo"))
            return more ? 0 : on_build_info(c, s, rid);
        char reason[96], cmd[48];
        printable_name(name, cmd);
        snprintf(reason, sizeof(reason), "command %s requires authentication", cmd);
        audit_denial(c, s, TG_REJECT_unauthenticated, name, &body, reason);
        return more ? 0 : local_error(c, s, rid, TG_MONGO_ERR_UNAUTHORIZED, reason, false);
    }
    if (expired(c, s)) {
        audit_denial(c, s, TG_REJECT_unauthenticated, name, &body, "token expired");
        return more ? 0
                    : local_error(c, s, rid, TG_MONGO_ERR_REAUTHENTICATION_REQUIRED,
                                  "token expired: authenticate again", false);
    }
    int lr = over_limit(c, s, rid, more, name);
    if (lr != 0)
        return lr < 0 ? lr : 0;
    int r = scope_and_send(c, s, f, &m, name, &body);
    tg_mongo_scoped_clear(&s->scoped); /* sent is copied or pinned: nothing held while idle */
    return r;
}

/* OP_QUERY: the legacy handshake only (hello/isMaster on <db>.$cmd), answered with OP_REPLY. */
static int on_client_query(tg_conn *c, ms_session *s, const tg_mongo_frame *f)
{
    tg_mongo_query q;
    const char *why = NULL;
    int32_t rid = f->header.request_id;
    if (tg_mongo_parse_query(f, TG_MONGO_VALIDATE_REQUEST, &q, &why) < 0) {
        fatal(c, s, TG_REJECT_malformed, f->bytes.base, f->bytes.len, rid, true,
              TG_MONGO_ERR_INVALID_BSON, why ? why : "malformed OP_QUERY");
        return 0;
    }
    bson_t doc, inner;
    bson_iter_t it;
    const bson_t *cmd = &doc;
    tg_slice ns = q.full_collection_name;
    bool is_cmd =
        ns.len > 5 && memcmp(ns.base + ns.len - 5, ".$cmd", 5) == 0 && tg_mongo_doc(q.query, &doc);
    if (is_cmd && bson_iter_init(&it, &doc) && bson_iter_next(&it) &&
        (strcmp(bson_iter_key(&it), "$query") == 0 || strcmp(bson_iter_key(&it), "query") == 0) &&
        BSON_ITER_HOLDS_DOCUMENT(&it)) {
        uint32_t len;
        const uint8_t *p;
        bson_iter_document(&it, &len, &p);
        if (!bson_init_static(&inner, p, len))
            return TG_EPROTO;
        cmd = &inner;
    }
    if (is_cmd && bson_iter_init(&it, cmd) && bson_iter_next(&it)) {
        tg_slice name = tg_slice_str(bson_iter_key(&it));
        if (is_hello(name))
            return on_hello(c, s, rid, cmd, !tg_slice_eq_str(name, "hello"), true, false);
    }
    TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[TG_REJECT_policy], 1);
    return local_error(c, s, rid, TG_MONGO_ERR_UNSUPPORTED_OP_QUERY_COMMAND,
                       "OP_QUERY serves only hello and isMaster; use OP_MSG", true);
}

/* A scratch buffer that grew for one large message is given back (sends copy what they take). */
static void trim_scratch(ms_session *s)
{
    if (s->out.cap > MS_SCRATCH_KEEP)
        tg_buf_free(&s->out);
    if (s->scratch.cap > MS_SCRATCH_KEEP)
        tg_buf_free(&s->scratch);
}

static ssize_t relay_client(tg_conn *c, ms_session *s, const uint8_t *data, size_t len)
{
    size_t off = 0;
    while (off < len && !s->done) {
        if (s->authed && s->bk != BK_READY)
            break; /* kept until the backend login is done */
        uint32_t max = s->authed ? (uint32_t)s->max_message : TG_MONGO_MAX_MESSAGE_PREAUTH;
        tg_mongo_header h;
        ssize_t n = tg_mongo_decode_header(data + off, len - off, max, &h);
        if (n == TG_NEED_MORE)
            break;
        if (n < 0) {
            fatal(c, s, n == TG_ETOOBIG ? TG_REJECT_too_large : TG_REJECT_malformed, data + off,
                  len - off, -1, false, 0,
                  n == TG_ETOOBIG ? "message too large" : "bad message length");
            break;
        }
        if (h.op_code != OP_MSG && h.op_code != OP_QUERY) {
            char reason[96];
            snprintf(reason, sizeof(reason), "%s is not supported%s",
                     tg_mongo_opcode_name(h.op_code),
                     h.op_code == OP_COMPRESSED ? " (tenantgate advertises no compressors)" : "");
            fatal(c, s, TG_REJECT_malformed, data + off, len - off, h.request_id, false,
                  TG_MONGO_ERR_BAD_VALUE, reason);
            break;
        }
        tg_mongo_frame f;
        n = tg_mongo_decode(data + off, len - off, max, &f);
        if (n == TG_NEED_MORE)
            break;
        if (n < 0)
            return n; /* cannot happen: the header was judged above */
        int r = h.op_code == OP_MSG ? on_client_msg(c, s, &f) : on_client_query(c, s, &f);
        trim_scratch(s);
        if (r == MS_STALL)
            break;
        if (r < 0)
            return r;
        off += (size_t)n;
    }
    return s->done ? (ssize_t)len : (ssize_t)off;
}

/* ---- backend replies ---------------------------------------------------------------------- */

static int on_fwd_reply(tg_conn *c, ms_session *s, const ms_expect *e, const tg_mongo_frame *f,
                        const tg_mongo_msg *m, const bson_t *body)
{
    int64_t id = 0;
    tg_slice ns;
    int r = 0;
    if (reply_cursor(body, &id, &ns)) {
        if (e->get_more && id == 0)
            cursor_del(s, e->cursor_id);
        else if (id != 0 && !e->get_more && e->gen == s->gen)
            r = cursor_add(c, s, id, ns, &e->map);
    }
    if (r < 0)
        return r;
    if (e->map.kind == TG_MONGO_REPLY_NONE)
        return tg_conn_forward(c, TG_SIDE_CLIENT, f->bytes.base, f->bytes.len);
    uint8_t *nb = NULL;
    uint32_t nlen = 0;
    r = tg_mongo_scope_reply(s->tenant, &e->map, body, &nb, &nlen);
    if (r == 0)
        return tg_conn_forward(c, TG_SIDE_CLIENT, f->bytes.base, f->bytes.len);
    if (r == TG_ENOMEM)
        return r;
    if (r < 0) { /* a namespace outside the tenant's: never forwarded */
        TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[TG_REJECT_policy], 1);
        tg_log(TG_LOG_WARN, "backend reply refused", TG_FB("audit", true),
               TG_FS("listener", s->ml->cfg->name), TG_FS("tenant", s->id.tenant),
               TG_FS("reason", "reply names a namespace outside the tenant's"), TG_FEND);
        s->out.len = 0;
        r = tg_mongo_build_error_msg(&s->out, next_id(s), f->header.response_to,
                                     TG_MONGO_ERR_UNAUTHORIZED,
                                     "reply held a namespace outside the tenant's");
        return r < 0 ? r : tg_conn_send(c, TG_SIDE_CLIENT, s->out.data, s->out.len);
    }
    bson_t nbody;
    tg_mongo_seq seqs[TG_MONGO_MAX_SEQUENCES];
    for (uint32_t i = 0; i < m->n_seqs; i++)
        seqs[i] = m->seqs[i];
    s->out.len = 0;
    r = bson_init_static(&nbody, nb, nlen)
            ? tg_mongo_build_msg(&s->out, f->header.request_id, f->header.response_to,
                                 m->flags & TG_MONGO_MSG_CHECKSUM_PRESENT, &nbody, seqs, m->n_seqs)
            : TG_EPROTO;
    bson_free(nb);
    return r < 0 ? r : tg_conn_send(c, TG_SIDE_CLIENT, s->out.data, s->out.len);
}

static ssize_t relay_backend(tg_conn *c, ms_session *s, const uint8_t *data, size_t len)
{
    size_t off = 0;
    uint32_t max = (uint32_t)(s->max_message > (int32_t)TG_MONGO_MAX_MESSAGE_DEFAULT
                                  ? s->max_message
                                  : (int32_t)TG_MONGO_MAX_MESSAGE_DEFAULT);
    while (off < len && !s->done) {
        tg_mongo_frame f;
        ssize_t n = tg_mongo_decode(data + off, len - off, max, &f);
        if (n == TG_NEED_MORE)
            break;
        if (n < 0)
            return n;
        tg_mongo_msg m;
        const char *why = NULL;
        bson_t body;
        if (tg_mongo_parse_msg(&f, TG_MONGO_VALIDATE_REPLY, &m, &why) < 0 ||
            !tg_mongo_doc(m.body, &body) || (m.flags & TG_MONGO_MSG_MORE_TO_COME) ||
            s->fifo_len == 0) {
            tg_log(TG_LOG_WARN, "backend reply refused", TG_FS("listener", s->ml->cfg->name),
                   TG_FS("reason", why ? why : "unexpected reply"), TG_FI("length", n), TG_FEND);
            return TG_EPROTO;
        }
        ms_expect e = s->fifo[s->fifo_head];
        s->fifo_head = (s->fifo_head + 1) % s->fifo_cap;
        s->fifo_len--;
        if (f.header.response_to != e.request_id)
            return TG_EPROTO;
        int r = 0;
        switch ((ms_action)e.action) {
        case MS_FWD:
            r = on_fwd_reply(c, s, &e, &f, &m, &body);
            break;
        case MS_SWALLOW:
            break;
        case MS_BK_HELLO:
            r = on_backend_hello(c, s, &body);
            break;
        case MS_BK_SASL:
            if (!reply_ok(&body))
                backend_failed(c, s, "the backend refused the service credentials");
            else
                r = scram_reply(c, s, &body);
            break;
        }
        if (r == 0)
            r = tg_reply_queue_backend_done(&s->rq, emit_client, c);
        trim_scratch(s);
        if (r < 0)
            return r;
        off += (size_t)n;
    }
    if (s->stalled && s->fifo_len == 0) {
        s->stalled = false;
        tg_conn_redispatch(c, TG_SIDE_CLIENT);
    }
    return s->done ? (ssize_t)len : (ssize_t)off;
}

/* ---- plumbing ------------------------------------------------------------- */

static int ms_open(tg_conn *c, void *session)
{
    ms_session *s = session;
    s->ml = tg_conn_lrt_state(c);
    s->conn_id = atomic_fetch_add_explicit(&g_connection_id, 1, memory_order_relaxed) + 1;
    if (s->conn_id <= 0)
        s->conn_id = 1;
    limits_from_listener(s);
    tg_reply_queue_init(&s->rq);
    tg_mongo_scoped_init(&s->scoped);
    return 0;
}

static ssize_t ms_data(tg_conn *c, void *session, tg_side_id from, const uint8_t *data, size_t len)
{
    ms_session *s = session;
    if (s->done)
        return (ssize_t)len;
    if (from == TG_SIDE_CLIENT)
        return relay_client(c, s, data, len);
    return relay_backend(c, s, data, len);
}

static void ms_expire(tg_conn *c, void *session)
{
    ms_session *s = session;
    tg_log(TG_LOG_INFO, "session ended: token expired", TG_FS("listener", s->ml->cfg->name),
           TG_FS("tenant", s->id.tenant), TG_FS("client", tg_conn_peer(c)), TG_FEND);
    s->done = true;
    tg_conn_finish(c);
}

static void ms_close(tg_conn *c, void *session)
{
    ms_session *s = session;
    tg_scram_free(s->scram);
    tg_buf_free(&s->scram_first);
    tg_buf_free(&s->out);
    tg_buf_free(&s->scratch);
    tg_mongo_scoped_clear(&s->scoped);
    tg_mongo_tenant_free(s->tenant);
    tg_reply_queue_free(&s->rq);
    free(s->fifo);
    free(s->cursors);
    free(s->lsids);
    (void)c;
}

const tg_protocol_ops tg_mongo_protocol = {
    .name = "mongodb",
    .session_size = sizeof(ms_session),
    .own_tls_upgrade = false,
    .listener_init = ms_listener_init,
    .listener_free = ms_listener_free,
    .on_open = ms_open,
    .on_backend_ready = on_backend_ready,
    .on_data = ms_data,
    .on_eof = NULL,
    .on_expire = ms_expire,
    .on_close = ms_close,
};
