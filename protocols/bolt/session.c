/*
 * protocol: bolt -- the session state machine.
 *
 *   HANDSHAKE --60 60 B0 17 + proposals--> version agreed (4.4, 5.0-5.6), answered
 *      v
 *   HELLO --HELLO (<= 5.0: carries the JWT)----------------------------.
 *      | HELLO (5.1+): answered here (the backend is not contacted      |
 *      v               before authentication)                           |
 *   LOGON --LOGON (bearer: credentials = JWT; basic: password = JWT)--->|
 *      |                    a bad token: FAILURE Unauthorized, close    |
 *      v                                                                v
 *   CONNECTING: backend connect, handshake with the same version, HELLO [+ LOGON] with
 *      |        backend.user / password_file (basic); client input waits for the reply
 *      v
 *   READY: every message checked (tg_bolt_check) and judged:
 *      RUN      db / imp_user / tx_metadata checked; Cypher through the rewriter; property
 *               mode adds $__tenantgate_tenant (a client parameter of that name: refused)
 *      BEGIN    db / imp_user / tx_metadata checked, db pinned
 *      ROUTE    answered here: a routing table listing only advertised_address
 *      PULL DISCARD COMMIT ROLLBACK RESET TELEMETRY: forwarded as they are
 *      LOGOFF   (5.1+) after every earlier reply; forwarded --SUCCESS--> LOGGED_OFF
 *      GOODBYE  forwarded; the connection closes after the replies still due
 *      v
 *   LOGGED_OFF --LOGON, token verified--> backend LOGON (service) --SUCCESS--> READY as
 *                the new tenant (a bad token: FAILURE Unauthorized, close)
 *
 * Reply order. Every request forwarded to the backend gets exactly one summary
 * (SUCCESS, FAILURE or IGNORED; RECORDs come before PULL's), so the session
 * keeps one FIFO entry per request, backend-bound or made here:
 *
 *   client:  RUN a      PULL       RUN b (denied)   PULL       RESET
 *   fifo:    [FORWARD]  [FORWARD]  [LOCAL FAILURE]  [IGNORED]  [RESET]
 *   backend: RUN a'     PULL                                   RESET
 *   client sees: SUCCESS, RECORD..., SUCCESS, FAILURE Forbidden, IGNORED, SUCCESS
 *
 * Local entries are emitted once every entry before them has been answered.
 * Bolt's failure rule (after a FAILURE everything is IGNORED until RESET) is
 * kept on both sides: a local FAILURE makes the session IGNORE the client's
 * following messages itself (they never reach the backend) until a RESET,
 * which is forwarded; and a local reply that comes due after a FAILURE (the
 * backend's or ours) has been sent is emitted as IGNORED, as the server would
 * have answered it. LOGOFF and re-LOGON wait until nothing is outstanding, so
 * the tenant switches at a point where the failure state is known exactly.
 *
 * The tenant registry (proxy/auth.c): HELLO / LOGON wait (BS_WAIT) while it is
 * asked; the tenant's slot is taken at LOGON (connection limit: FAILURE
 * Neo.TransientError.Request.ResourceExhaustion, close); a RUN over the rate
 * limits gets that FAILURE (IGNORED until RESET); a suspension or revocation
 * closes the connection (no on_kick: Bolt has no unsolicited message).
 *
 * Backend replies are untrusted input: framed and checked with the same codec
 * (tg_bolt_check, from-server rules), a reply nobody asked for ends the
 * session. With bolt.hide_tenant_property, RECORDs holding a node with the
 * tenant property are re-encoded without it.
 */
#include "protocols/bolt/session.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy/cypher_rewrite.h"
#include "protocols/bolt/codec.h"
#include "protocols/bolt/packstream.h"
#include "proxy/ring.h"
#include "proxy/auth.h"
#include "proxy/conn.h"
#include "proxy/error.h"
#include "proxy/log.h"
#include "proxy/metrics.h"
#include "proxy/worker.h"

#define BS_FIFO_MAX 65536            /* entries before client input waits (it resumes at half) */
#define BS_TX_METADATA_MAX 16384     /* tx_metadata bytes passed through */
#define BS_ROUTE_TTL_S 300           /* routing table lifetime handed to drivers */
#define BS_NAME_MAX 256              /* an expanded database name, an address */
#define BS_KEEP_SCRATCH (1u << 20)   /* scratch kept between messages; larger is freed */
#define BS_KEEP_VALUES 65536         /* decoded values kept between messages */
#define BS_CYPHER_CACHE_ENTRIES 4096 /* rewritten statements remembered per worker */
/* What HELLO's SUCCESS says in 5.1+, where tenantgate answers it before any backend exists. */
#define BS_SERVER_AGENT "Neo4j/5.0.0-tenantgate"

#define BS_CODE_FORBIDDEN "Neo.ClientError.Security.Forbidden"
#define BS_CODE_UNAUTHORIZED "Neo.ClientError.Security.Unauthorized"
/* Returned by a message handler: the message waits (client input stalled, or the tenant
 * registry being asked), not consumed. */
#define BS_WAIT 1
#define BS_CODE_EXPIRED "Neo.ClientError.Security.TokenExpired"
#define BS_CODE_INVALID "Neo.ClientError.Request.Invalid"
#define BS_CODE_UNAVAILABLE "Neo.TransientError.General.DatabaseUnavailable"
/* A tenant limit (tenants.limits): transient, so drivers back off and retry. */
#define BS_CODE_LIMITED "Neo.TransientError.Request.ResourceExhaustion"

/* X(name): where the client is in the conversation. */
#define BS_STATE_MAP(X)                                                                            \
    X(HANDSHAKE)  /* the 20 handshake bytes */                                                     \
    X(HELLO)      /* version agreed: HELLO next */                                                 \
    X(LOGON)      /* 5.1+: HELLO answered, LOGON next */                                           \
    X(CONNECTING) /* authenticated; backend login under way, client input waits */                 \
    X(READY)      /* authenticated: messages judged and relayed */                                 \
    X(LOGGED_OFF) /* 5.1+ after LOGOFF: LOGON next */

typedef enum {
#define BS_STATE_ENUM(n) BS_##n,
    BS_STATE_MAP(BS_STATE_ENUM)
#undef BS_STATE_ENUM
} bs_state;

/* X(name, local): what answers a request, and what to do with that answer. */
#define BS_EXPECT_MAP(X)                                                                           \
    X(FORWARD, 0) /* the backend's summary (RECORDs before it), forwarded */                       \
    X(RESET, 0)   /* the backend's answer to RESET: forwarded; SUCCESS ends a failure */           \
    X(SWALLOW, 0) /* the backend's answer to HELLO (5.1+, answered here): dropped */               \
    X(LOGIN, 0)   /* the backend's answer to the service login: forwarded; READY */                \
    X(LOGOFF, 0)  /* the backend's answer to LOGOFF: forwarded; SUCCESS: LOGGED_OFF */             \
    X(RELOGIN, 0) /* the backend's answer to LOGON after LOGOFF: the tenant switches */            \
    X(LOCAL, 1)   /* bytes made here (IGNORED instead after a FAILURE) */                          \
    X(IGNORED, 1) /* IGNORED, made here */

typedef enum {
#define BS_EXPECT_ENUM(n, local) BS_X_##n,
    BS_EXPECT_MAP(BS_EXPECT_ENUM)
#undef BS_EXPECT_ENUM
} bs_expect_kind;

static const bool expect_local[] = {
#define BS_EXPECT_LOCAL(n, local) local,
    BS_EXPECT_MAP(BS_EXPECT_LOCAL)
#undef BS_EXPECT_LOCAL
};

#define BS_F_FAILURE 1 /* LOCAL: the bytes are a FAILURE (the session fails when it is sent) */
#define BS_F_CLOSE 2   /* LOCAL: the connection closes once it is sent */

typedef struct bs_expect {
    uint8_t kind;  /* bs_expect_kind */
    uint8_t flags; /* BS_F_* */
    uint32_t len;
    uint8_t *bytes; /* LOCAL: the message, owned by the entry */
} bs_expect;

enum { BS_BACKEND_NONE, BS_BACKEND_HANDSHAKE, BS_BACKEND_UP };

/* What every connection of a listener shares (immutable). */
typedef struct bs_listener {
    const tg_listener_config *cfg;
    tg_cypher_rewriter *rw;       /* shared by every worker */
    char advertised[BS_NAME_MAX]; /* the one address ROUTE answers list */
} bs_listener;

typedef struct bs_session {
    bs_state state;
    uint8_t backend; /* BS_BACKEND_* */
    const bs_listener *bl;
    uint16_t version;
    unsigned check_flags;   /* TG_BOLT_PATCH_UTC once the backend acknowledged it (4.4) */
    tg_identity id;         /* the tenant (valid from CONNECTING on) */
    tg_identity next_id;    /* re-LOGON: the tenant once the backend's LOGON succeeded */
    tg_tenant_slot *slot;   /* the tenant's limits (proxy/auth.c owns it) */
    int64_t limit_logged_s; /* rate-limit audit lines: at most one per second */
    char tenant_db[BS_NAME_MAX];
    bool failed;   /* a local FAILURE is queued: the client's messages are IGNORED until RESET */
    bool r_failed; /* a FAILURE was sent to the client and no RESET's SUCCESS since */
    bool in_tx;    /* BEGIN forwarded, no COMMIT / ROLLBACK / RESET since */
    bool done;     /* nothing more is read from the client */
    bool quitting; /* GOODBYE: close once the backend's replies still due are relayed */
    bool stalled;  /* client input waits until at most stall_until entries are queued */
    size_t stall_until;
    tg_bolt_scan cscan, bscan;
    tg_ps_doc doc;           /* the client message being handled */
    tg_ps_doc rdoc;          /* the backend message being handled */
    tg_buf msg;              /* a client message in several chunks, made contiguous */
    tg_buf rmsg;             /* the same for a backend message */
    tg_buf out;              /* messages built here */
    tg_buf pending;          /* the backend login, sent once the backend agreed on the version */
    tg_cypher_result judged; /* the last statement's verdict (its text buffer is reused) */
    uint32_t *hits;          /* hide_tenant_property: the nodes of a RECORD to re-encode */
    uint32_t hits_cap;
    bs_expect *fifo;
    size_t fifo_cap, fifo_head, fifo_len;
    size_t backend_due; /* backend-bound entries in the FIFO */
} bs_session;

static _Atomic uint64_t g_connection_ids;

/* ---- listener state ------------------------------------------------------ */

static int bs_listener_init(const struct tg_listener_config *cfg, void **state, char *err,
                            size_t errlen)
{
    const tg_bolt_config *b = &cfg->bolt;
    if (!cfg->backend.user || !cfg->backend.password.data) {
        snprintf(err, errlen,
                 "listener %s: protocol bolt needs backend.user and backend.password_file (the "
                 "service account, basic auth)",
                 cfg->name);
        return TG_ECONFIG;
    }
    if (strlen(b->database_template) + TG_TENANT_MAX >= BS_NAME_MAX) {
        snprintf(err, errlen, "listener %s: bolt.database_template is too long", cfg->name);
        return TG_ECONFIG;
    }
    const char *adv = b->advertised_address ? b->advertised_address : cfg->listen;
    if (strlen(adv) >= BS_NAME_MAX) {
        snprintf(err, errlen, "listener %s: bolt.advertised_address is too long", cfg->name);
        return TG_ECONFIG;
    }
    static const tg_cypher_isolation modes[] = {
        [TG_BOLT_ISOLATION_PROPERTY] = TG_CYPHER_ISOLATION_PROPERTY,
        [TG_BOLT_ISOLATION_LABEL] = TG_CYPHER_ISOLATION_LABEL,
        [TG_BOLT_ISOLATION_DATABASE] = TG_CYPHER_ISOLATION_DATABASE,
    };
    tg_cypher_rewrite_config rc = {
        .isolation = modes[b->isolation],
        .tenant_property = b->tenant_property,
        .label_template = b->label_template,
        .allow_procedures = (const char *const *)b->allow_procedures,
        .allow_functions = (const char *const *)b->allow_functions,
    };
    bs_listener *bl = calloc(1, sizeof(*bl));
    if (!bl || !(bl->rw = tg_cypher_rewrite_new(&rc))) {
        snprintf(err, errlen,
                 bl ? "listener %s: the Cypher rewriter refuses bolt.tenant_property or "
                      "bolt.label_template (a name without control characters or backslashes, "
                      "{tenant} once in the template), or memory ran out"
                    : "out of memory",
                 cfg->name);
        free(bl);
        return TG_ECONFIG;
    }
    bl->cfg = cfg;
    snprintf(bl->advertised, sizeof(bl->advertised), "%s", adv);
    *state = bl;
    return 0;
}

static void bs_listener_free(void *state)
{
    bs_listener *bl = state;
    tg_cypher_rewrite_free(bl->rw);
    free(bl);
}

/* ---- the reply FIFO -------------------------------------------------------- */

static bs_expect *fifo_at(bs_session *s, size_t i)
{
    return &s->fifo[(s->fifo_head + i) % s->fifo_cap];
}

/* Appends an entry (taking ownership of bytes, freed on failure too). */
static int fifo_push(bs_session *s, bs_expect_kind kind, uint8_t flags, uint8_t *bytes, size_t len)
{
    if (tg_ring_reserve((void **)&s->fifo, sizeof(*s->fifo), &s->fifo_cap, &s->fifo_head,
                        s->fifo_len, 16) < 0) {
        free(bytes);
        return TG_ENOMEM;
    }
    *fifo_at(s, s->fifo_len) =
        (bs_expect){.kind = (uint8_t)kind, .flags = flags, .len = (uint32_t)len, .bytes = bytes};
    s->fifo_len++;
    if (!expect_local[kind])
        s->backend_due++;
    return 0;
}

static bs_expect fifo_pop(bs_session *s)
{
    bs_expect e = s->fifo[s->fifo_head];
    s->fifo_head = (s->fifo_head + 1) % s->fifo_cap;
    s->fifo_len--;
    if (!expect_local[e.kind])
        s->backend_due--;
    return e;
}

/* One more reply from the backend is due, handled as `kind`. */
static int expect_backend(bs_session *s, bs_expect_kind kind)
{
    return fifo_push(s, kind, 0, NULL, 0);
}

/* Client input waits until at most `until` entries are queued. */
static void stall(bs_session *s, size_t until)
{
    s->stalled = true;
    s->stall_until = until;
}

static const uint8_t ignored_msg[] = {0x00, 0x02, 0xB0, TG_BOLT_IGNORED, 0x00, 0x00};

/* Sends the local entry e (now due) to the client. */
static int emit_local(tg_conn *c, bs_session *s, const bs_expect *e)
{
    int r;
    if (e->kind == BS_X_IGNORED || (s->r_failed && !(e->flags & BS_F_CLOSE))) {
        r = tg_conn_send(c, TG_SIDE_CLIENT, ignored_msg, sizeof(ignored_msg));
    } else {
        r = tg_conn_send(c, TG_SIDE_CLIENT, e->bytes, e->len);
        if (e->flags & BS_F_FAILURE)
            s->r_failed = true;
    }
    if (r == 0 && (e->flags & BS_F_CLOSE)) {
        s->done = true;
        tg_conn_finish(c);
    }
    return r;
}

/* Emits the local entries at the head of the FIFO, then resumes what waited for it to drain. */
static int drain(tg_conn *c, bs_session *s)
{
    while (s->fifo_len && expect_local[s->fifo[s->fifo_head].kind]) {
        bs_expect e = fifo_pop(s);
        int r = emit_local(c, s, &e);
        bool closing = e.flags & BS_F_CLOSE;
        free(e.bytes);
        if (r < 0 || closing)
            return r;
    }
    if (s->quitting && s->backend_due == 0 && s->fifo_len == 0) {
        s->quitting = false;
        tg_conn_finish(c);
    }
    if (s->stalled && s->fifo_len <= s->stall_until) {
        s->stalled = false;
        tg_conn_redispatch(c, TG_SIDE_CLIENT);
    }
    return 0;
}

/* Queues a local reply: a copy of out[0..len), sent once everything before it is answered. */
static int local_reply(tg_conn *c, bs_session *s, const tg_buf *msg, uint8_t flags)
{
    uint8_t *copy = malloc(msg->len);
    if (!copy)
        return TG_ENOMEM;
    memcpy(copy, msg->data, msg->len);
    int r = fifo_push(s, BS_X_LOCAL, flags, copy, msg->len);
    return r < 0 ? r : drain(c, s);
}

static int local_ignored(tg_conn *c, bs_session *s)
{
    int r = fifo_push(s, BS_X_IGNORED, 0, NULL, 0);
    return r < 0 ? r : drain(c, s);
}

/* A local FAILURE with `code` and "tenantgate: <reason>". */
static int local_failure(tg_conn *c, bs_session *s, const char *code, const char *reason,
                         uint8_t flags)
{
    char msg[320];
    snprintf(msg, sizeof(msg), "tenantgate: %s", reason);
    s->out.len = 0;
    int r = tg_bolt_build_failure(&s->out, code, msg);
    return r < 0 ? r : local_reply(c, s, &s->out, (uint8_t)(flags | BS_F_FAILURE));
}

/* A FAILURE sent at once, then the connection closes (protocol errors, backend trouble). */
static int fail_now(tg_conn *c, bs_session *s, const char *code, const char *reason)
{
    char msg[320];
    snprintf(msg, sizeof(msg), "tenantgate: %s", reason);
    s->out.len = 0;
    int r = tg_bolt_build_failure(&s->out, code, msg);
    if (r == 0)
        r = tg_conn_send(c, TG_SIDE_CLIENT, s->out.data, s->out.len);
    s->done = true;
    tg_conn_finish(c);
    return r;
}

/* ---- denials ------------------------------------------------------------------ */

/*
 * A request refused by policy: audit line, metric, FAILURE Forbidden in order,
 * and the client's next messages IGNORED until RESET. fingerprint is XXH3 of a
 * statement (0: none).
 */
static int deny(tg_conn *c, bs_session *s, uint8_t signature, const char *reason,
                uint64_t fingerprint)
{
    char fp[17] = "";
    if (fingerprint)
        snprintf(fp, sizeof(fp), "%016llx", (unsigned long long)fingerprint);
    TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[TG_REJECT_policy], 1);
    tg_log(TG_LOG_INFO, "message rejected", TG_FB("audit", true),
           TG_FS("listener", s->bl->cfg->name), TG_FS("tenant", s->id.tenant),
           TG_FS("client", tg_conn_peer(c)), TG_FS("message", tg_bolt_msg_name(signature)),
           TG_FS("reason", reason), TG_FS("fingerprint", fp), TG_FEND);
    s->failed = true;
    return local_failure(c, s, BS_CODE_FORBIDDEN, reason, 0);
}

/* A message that breaks the protocol: FAILURE Request.Invalid, then close at once. */
static int protocol_error(tg_conn *c, bs_session *s, tg_reject_reason metric, const char *why)
{
    TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[metric], 1);
    tg_log(TG_LOG_INFO, "protocol error", TG_FS("listener", s->bl->cfg->name),
           TG_FS("tenant", s->id.tenant), TG_FS("client", tg_conn_peer(c)),
           TG_FS("state", s->state == BS_READY ? "ready" : "login"), TG_FS("reason", why), TG_FEND);
    return fail_now(c, s, BS_CODE_INVALID, why);
}

/* The backend failed us (handshake, service login, a malformed reply): tell the client, close. */
static int backend_fatal(tg_conn *c, bs_session *s, const char *why)
{
    tg_log(TG_LOG_ERROR, "backend error", TG_FS("listener", s->bl->cfg->name),
           TG_FS("tenant", s->id.tenant), TG_FS("client", tg_conn_peer(c)), TG_FS("reason", why),
           TG_FEND);
    return fail_now(c, s, BS_CODE_UNAVAILABLE, why);
}

/* ---- the Cypher rewriter ------------------------------------------------------- */

/* A statement judged for the session's tenant. */
typedef struct bs_judged {
    bool deny;
    bool changed;         /* text differs from the client's statement */
    tg_slice text;        /* the statement to send (valid until the next judgement) */
    const char *reason;   /* deny: why */
    uint64_t fingerprint; /* XXH3 of the client's text, for audit lines */
} bs_judged;

static tg_cypher_cache *worker_cache(tg_conn *c)
{
    tg_worker *w = tg_conn_worker(c);
    if (!w->cypher_cache) /* NULL when out of memory: statements are then judged uncached */
        w->cypher_cache = tg_cypher_cache_new(BS_CYPHER_CACHE_ENTRIES, 0);
    return w->cypher_cache;
}

/*
 * The one place the Cypher rewriter (policy/cypher_rewrite.h) is called: the
 * statement q judged for the session's tenant and isolation mode.
 */
static void judge_query(tg_conn *c, bs_session *s, tg_slice q, bs_judged *out)
{
    tg_cypher_result *r = &s->judged;
    tg_cypher_verdict v =
        tg_cypher_rewrite(s->bl->rw, worker_cache(c), s->id.tenant, (const char *)q.base, q.len, r);
    memset(out, 0, sizeof(*out));
    out->fingerprint = r->fingerprint;
    out->deny = v == TG_CYPHER_DENY;
    out->reason = r->reason;
    if (out->deny)
        return;
    out->text = (tg_slice){(const uint8_t *)r->text.s, r->text.len};
    out->changed =
        v == TG_CYPHER_REWRITE && !(q.len == r->text.len && memcmp(q.base, r->text.s, q.len) == 0);
}

/* ---- databases and the request dictionaries ------------------------------------ */

static bool property_mode(const bs_session *s)
{
    return s->bl->cfg->bolt.isolation == TG_BOLT_ISOLATION_PROPERTY;
}

static bool database_mode(const bs_session *s)
{
    return s->bl->cfg->bolt.isolation == TG_BOLT_ISOLATION_DATABASE;
}

/* The database the backend sees for this tenant. */
static const char *backend_db(const bs_session *s)
{
    return database_mode(s) ? s->tenant_db : s->bl->cfg->bolt.database;
}

/* True when a client may name database `name`: the configured one, or its own. */
static bool db_allowed(const bs_session *s, tg_slice name)
{
    return tg_slice_eq_str(name, s->bl->cfg->bolt.database) ||
           (database_mode(s) && tg_slice_eq_str(name, s->tenant_db));
}

/*
 * Checks the extra dictionary `extra` of RUN, BEGIN or ROUTE: imp_user is
 * refused, db must be allowed, tx_metadata bounded. When pin_db, an edit that
 * sets db to the backend's database is written to *edit (*n_edits 1; else 0).
 * Returns NULL, or why the request is refused.
 */
static const char *check_extra(const bs_session *s, const tg_ps_doc *d, uint32_t extra, bool pin_db,
                               tg_ps_edit *edit, size_t *n_edits)
{
    *n_edits = 0;
    uint32_t imp = tg_ps_map_get(d, extra, tg_slice_str("imp_user"));
    if (imp && d->v[imp].type != TG_PS_T_NULL)
        return "impersonation (imp_user) is not allowed";
    uint32_t md = tg_ps_map_get(d, extra, tg_slice_str("tx_metadata"));
    if (md && tg_ps_raw(d, md).len > BS_TX_METADATA_MAX)
        return "tx_metadata is larger than 16 KiB";
    uint32_t db = tg_ps_map_get(d, extra, tg_slice_str("db"));
    bool named = db && d->v[db].type == TG_PS_T_STRING;
    if (named && !db_allowed(s, d->v[db].u.s))
        return database_mode(s) ? "database not allowed: the tenant's database is chosen by "
                                  "tenantgate"
                                : "database not allowed: only the configured database can be used";
    const char *target = backend_db(s);
    if (named && tg_slice_eq_str(d->v[db].u.s, target))
        return NULL;
    if (named || pin_db) {
        *edit = (tg_ps_edit){tg_slice_str("db"), TG_PS_EDIT_SET_STR, tg_slice_str(target), 0};
        *n_edits = 1;
    }
    return NULL;
}

/* ---- authentication --------------------------------------------------------------- */

static void set_expiry(tg_conn *c, const tg_identity *id)
{
    int64_t left_ms = (id->exp - (int64_t)time(NULL)) * 1000;
    tg_conn_set_expiry(c, left_ms > 0 ? (uint64_t)left_ms : 1);
}

static void expand_db(bs_session *s, const char *tenant)
{
    const char *tpl = s->bl->cfg->bolt.database_template;
    size_t n = 0;
    for (const char *p = tpl; *p && n + 1 < sizeof(s->tenant_db);) {
        if (strncmp(p, "{tenant}", 8) == 0) {
            size_t k = strlen(tenant);
            if (n + k + 1 > sizeof(s->tenant_db))
                break; /* cannot happen: the template length is checked at listener_init */
            memcpy(s->tenant_db + n, tenant, k);
            n += k;
            p += 8;
        } else {
            s->tenant_db[n++] = *p++;
        }
    }
    s->tenant_db[n] = 0;
}

/*
 * Database mode: Neo4j database names are case-insensitive and have no `_`,
 * so tenants "Acme" and "acme" would share one database. Only tenant ids
 * that map one-to-one onto database names are accepted there.
 */
static bool tenant_names_a_database(const char *tenant)
{
    for (const char *p = tenant; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
            return false;
    return true;
}

/* verify_auth's "not yet": the tenant registry is being asked; the message waits. */
#define BS_AUTH_PENDING 2

/*
 * Verifies the token carried by the auth dictionary `auth` (HELLO <= 5.0 or
 * LOGON): scheme bearer (credentials = JWT) or basic (credentials = JWT, the
 * principal is not used), then takes the tenant's slot (proxy/auth.c:
 * tg_auth_admit, its connection limit). Returns 1 with *id filled, 0 when
 * refused (FAILURE queued, the connection closes after it), BS_AUTH_PENDING
 * while the registry is asked (nothing queued: the same message comes again),
 * or < 0.
 */
static int verify_auth(tg_conn *c, bs_session *s, const tg_ps_doc *d, uint32_t auth,
                       tg_identity *id)
{
    uint32_t scheme = tg_ps_map_get(d, auth, tg_slice_str("scheme"));
    uint32_t cred = tg_ps_map_get(d, auth, tg_slice_str("credentials"));
    const char *why = NULL;
    if (!scheme || (!tg_ps_is_str(d, scheme, "bearer") && !tg_ps_is_str(d, scheme, "basic")))
        why = "authentication scheme must be bearer or basic (with the token as password)";
    else if (!cred || d->v[cred].type != TG_PS_T_STRING || d->v[cred].u.s.len == 0)
        why = "no token in credentials";
    if (why) {
        TG_STAT_ADD(tg_conn_stats(c)->auth_failed[TG_JWT_MALFORMED], 1);
        tg_log(TG_LOG_WARN, "authentication failed", TG_FB("audit", true),
               TG_FS("listener", s->bl->cfg->name), TG_FS("client", tg_conn_peer(c)),
               TG_FS("reason", "unsupported_scheme"), TG_FEND);
    } else {
        tg_slice t = d->v[cred].u.s;
        tg_jwt_result jr = tg_auth_tenant(c, (const char *)t.base, t.len, id);
        if (jr == TG_JWT_PENDING)
            return BS_AUTH_PENDING;
        if (jr == TG_JWT_OK && (!database_mode(s) || tenant_names_a_database(id->tenant))) {
            int a = tg_auth_admit(c, id, &s->slot);
            if (a == 0)
                return 1;
            if (a != TG_ELIMIT)
                return a;
            TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[TG_REJECT_max_connections], 1);
            tg_log(TG_LOG_INFO, "connection refused", TG_FB("audit", true),
                   TG_FS("listener", s->bl->cfg->name), TG_FS("tenant", id->tenant),
                   TG_FS("client", tg_conn_peer(c)), TG_FS("reason", "too many connections"),
                   TG_FEND);
            int r = local_failure(c, s, BS_CODE_LIMITED, "too many connections for this tenant",
                                  BS_F_CLOSE);
            s->done = true;
            return r < 0 ? r : 0;
        }
        if (jr == TG_JWT_OK) {
            why = "the tenant id cannot name a database (database isolation needs tenant ids of "
                  "lowercase letters, digits and -)";
            TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[TG_REJECT_policy], 1);
            tg_log(TG_LOG_WARN, "authentication refused", TG_FB("audit", true),
                   TG_FS("listener", s->bl->cfg->name), TG_FS("tenant", id->tenant),
                   TG_FS("client", tg_conn_peer(c)), TG_FS("reason", "tenant_not_a_database_name"),
                   TG_FEND);
        } else {
            why = tg_jwt_result_str(jr);
        }
    }
    int r = local_failure(c, s, BS_CODE_UNAUTHORIZED, why, BS_F_CLOSE);
    s->done = true;
    return r < 0 ? r : 0;
}

/*
 * The first authentication succeeded: remember the tenant, prepare the
 * backend login (HELLO as the client sent it, with the service credentials
 * in <= 5.0; HELLO + LOGON in 5.1+) and connect. hello is the client's HELLO
 * (NULL in 5.1+, where it is in s->pending already).
 */
static int start_backend(tg_conn *c, bs_session *s, const tg_identity *id, const tg_ps_doc *d,
                         const tg_bolt_msg *hello)
{
    const tg_backend_config *b = &s->bl->cfg->backend;
    s->id = *id;
    expand_db(s, s->id.tenant);
    set_expiry(c, &s->id);
    int r;
    if (hello) {
        s->pending.len = 0;
        r = tg_bolt_build_auth(&s->pending, d, hello, b->user, b->password.data);
        if (r == 0)
            r = expect_backend(s, BS_X_LOGIN);
    } else {
        r = tg_bolt_build_logon(&s->pending, b->user, b->password.data);
        if (r == 0)
            r = expect_backend(s, BS_X_SWALLOW);
        if (r == 0)
            r = expect_backend(s, BS_X_LOGIN);
    }
    if (r < 0)
        return r;
    s->state = BS_CONNECTING;
    stall(s, 0);
    return tg_conn_connect_backend(c);
}

/* HELLO: the first message. */
static int on_hello(tg_conn *c, bs_session *s, const tg_ps_doc *d, const tg_bolt_msg *m)
{
    if (s->version <= TG_BOLT_V(5, 0)) {
        tg_identity id;
        int r = verify_auth(c, s, d, m->field[0], &id);
        if (r == BS_AUTH_PENDING)
            return BS_WAIT;
        return r <= 0 ? r : start_backend(c, s, &id, d, m);
    }
    /* 5.1+: the backend gets this HELLO once the client has logged on. */
    s->pending.len = 0;
    int r = tg_bolt_build_edited(&s->pending, d, m, NULL, 0);
    if (r < 0)
        return r;
    char conn_id[40];
    snprintf(conn_id, sizeof(conn_id), "bolt-tg-%llu",
             (unsigned long long)atomic_fetch_add(&g_connection_ids, 1) + 1);
    tg_bolt_builder b;
    s->out.len = 0;
    tg_bolt_begin(&b, &s->out, TG_BOLT_SUCCESS, 1);
    tg_ps_put_map(&b.ps, 3);
    tg_ps_put_str(&b.ps, "server");
    tg_ps_put_str(&b.ps, BS_SERVER_AGENT);
    tg_ps_put_str(&b.ps, "connection_id");
    tg_ps_put_str(&b.ps, conn_id);
    tg_ps_put_str(&b.ps, "hints");
    tg_ps_put_map(&b.ps, 0);
    if ((r = tg_bolt_end(&b)) < 0)
        return r;
    s->state = BS_LOGON;
    return local_reply(c, s, &s->out, 0);
}

/* LOGON: the first one (LOGON state) or, after LOGOFF, a re-authentication. */
static int on_logon(tg_conn *c, bs_session *s, const tg_ps_doc *d, const tg_bolt_msg *m)
{
    tg_identity id;
    int r = verify_auth(c, s, d, m->field[0], &id);
    if (r == BS_AUTH_PENDING)
        return BS_WAIT;
    if (r <= 0)
        return r;
    if (s->state == BS_LOGON)
        return start_backend(c, s, &id, d, NULL);
    /* LOGGED_OFF: nothing is outstanding (LOGOFF waited); the backend logs on again first. */
    const tg_backend_config *b = &s->bl->cfg->backend;
    s->next_id = id;
    s->out.len = 0;
    r = tg_bolt_build_logon(&s->out, b->user, b->password.data);
    if (r == 0)
        r = tg_conn_send(c, TG_SIDE_BACKEND, s->out.data, s->out.len);
    if (r == 0)
        r = expect_backend(s, BS_X_RELOGIN);
    if (r == 0)
        stall(s, 0);
    return r;
}

/* ---- authenticated requests ------------------------------------------------------- */

/* Forwards the client's message frame[0..size) as it is; one reply of `kind` expected. */
static int forward(tg_conn *c, bs_session *s, const uint8_t *frame, size_t size,
                   bs_expect_kind kind)
{
    int r = tg_conn_forward(c, TG_SIDE_BACKEND, frame, size);
    if (r < 0)
        return r;
    TG_STAT_ADD(tg_conn_stats(c)->messages_forwarded, 1);
    return expect_backend(s, kind);
}

/* Sends s->out (a rebuilt request) instead of the client's; one reply expected. */
static int send_rebuilt(tg_conn *c, bs_session *s)
{
    int r = tg_conn_send(c, TG_SIDE_BACKEND, s->out.data, s->out.len);
    if (r < 0)
        return r;
    TG_STAT_ADD(tg_conn_stats(c)->messages_forwarded, 1);
    TG_STAT_ADD(tg_conn_stats(c)->messages_rewritten, 1);
    return expect_backend(s, BS_X_FORWARD);
}

/*
 * The tenant's rate limits (tenants.limits) for one RUN: 0, or 1 when it was
 * answered FAILURE Neo.TransientError.Request.ResourceExhaustion (the session
 * then IGNOREs until RESET, as after any FAILURE; drivers retry transient
 * errors after backing off).
 */
static int over_limit(tg_conn *c, bs_session *s)
{
    if (!s->slot)
        return 0;
    tg_tenant_rate rate = tg_tenant_count_message(s->slot, NULL, NULL);
    if (rate == TG_TENANT_PASS)
        return 0;
    bool global = rate == TG_TENANT_GLOBAL_LIMITED;
    TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[global ? TG_REJECT_global_rate_limit
                                                           : TG_REJECT_rate_limit],
                1);
    int64_t now = (int64_t)time(NULL);
    const char *reason = global ? "global rate limit exceeded for tenant, retry later"
                                : "rate limit exceeded for tenant, retry later";
    if (now != s->limit_logged_s) { /* a flood of refusals must not flood the log */
        s->limit_logged_s = now;
        tg_log(TG_LOG_INFO, "message rejected", TG_FB("audit", true),
               TG_FS("listener", s->bl->cfg->name), TG_FS("tenant", s->id.tenant),
               TG_FS("client", tg_conn_peer(c)), TG_FS("message", "RUN"), TG_FS("reason", reason),
               TG_FEND);
    }
    s->failed = true;
    int r = local_failure(c, s, BS_CODE_LIMITED, reason, 0);
    return r < 0 ? r : 1;
}

/* RUN: parameters, extra and statement judged; rebuilt when anything changes. */
static int on_run(tg_conn *c, bs_session *s, const uint8_t *frame, size_t size, const tg_ps_doc *d,
                  const tg_bolt_msg *m)
{
    int lr = over_limit(c, s);
    if (lr != 0)
        return lr < 0 ? lr : 0;
    uint32_t params = m->field[1];
    uint32_t j = params + 1;
    for (uint32_t e = 0; e < d->v[params].count; e++) {
        tg_slice k = d->v[j].u.s;
        if (k.len >= 12 && memcmp(k.base, "__tenantgate", 12) == 0)
            return deny(c, s, TG_BOLT_RUN,
                        "parameter names starting with __tenantgate are reserved", 0);
        j = d->v[j + 1].next;
    }
    tg_ps_edit extra_edit;
    size_t n_extra;
    const char *why = check_extra(s, d, m->field[2], !s->in_tx, &extra_edit, &n_extra);
    if (why)
        return deny(c, s, TG_BOLT_RUN, why, 0);
    bs_judged v;
    judge_query(c, s, d->v[m->field[0]].u.s, &v);
    if (v.deny)
        return deny(c, s, TG_BOLT_RUN, v.reason, v.fingerprint);
    tg_ps_edit param_edit = {tg_slice_str(TG_CYPHER_TENANT_PARAM), TG_PS_EDIT_SET_STR,
                             tg_slice_str(s->id.tenant), 0};
    size_t n_param = property_mode(s) ? 1 : 0;
    if (!v.changed && !n_param && !n_extra)
        return forward(c, s, frame, size, BS_X_FORWARD);
    s->out.len = 0;
    int r = tg_bolt_build_run(&s->out, d, m, v.text, &param_edit, n_param, &extra_edit, n_extra);
    return r < 0 ? r : send_rebuilt(c, s);
}

/* BEGIN: extra checked, db pinned. */
static int on_begin(tg_conn *c, bs_session *s, const uint8_t *frame, size_t size,
                    const tg_ps_doc *d, const tg_bolt_msg *m)
{
    tg_ps_edit edit;
    size_t n;
    const char *why = check_extra(s, d, m->field[0], true, &edit, &n);
    if (why)
        return deny(c, s, TG_BOLT_BEGIN, why, 0);
    s->in_tx = true;
    if (!n)
        return forward(c, s, frame, size, BS_X_FORWARD);
    s->out.len = 0;
    int r = tg_bolt_build_edited(&s->out, d, m, &edit, n);
    return r < 0 ? r : send_rebuilt(c, s);
}

/* ROUTE: answered here with a table whose every role is tenantgate. */
static int on_route(tg_conn *c, bs_session *s, const tg_ps_doc *d, const tg_bolt_msg *m)
{
    tg_ps_edit edit;
    size_t n;
    uint32_t extra = m->field[2];
    const char *why = check_extra(s, d, extra, false, &edit, &n);
    if (why)
        return deny(c, s, TG_BOLT_ROUTE, why, 0);
    /* The name the client uses: drivers send it back in BEGIN / RUN, where it is mapped. */
    char db[BS_NAME_MAX];
    uint32_t dbi = tg_ps_map_get(d, extra, tg_slice_str("db"));
    if (dbi && d->v[dbi].type == TG_PS_T_STRING)
        snprintf(db, sizeof(db), "%.*s", (int)d->v[dbi].u.s.len, (const char *)d->v[dbi].u.s.base);
    else
        snprintf(db, sizeof(db), "%s", s->bl->cfg->bolt.database);
    s->out.len = 0;
    int r = tg_bolt_build_route_success(&s->out, BS_ROUTE_TTL_S, db, s->bl->advertised);
    return r < 0 ? r : local_reply(c, s, &s->out, 0);
}

static int on_goodbye(tg_conn *c, bs_session *s)
{
    s->done = true;
    if (s->backend == BS_BACKEND_UP) {
        static const uint8_t goodbye[] = {0x00, 0x02, 0xB0, TG_BOLT_GOODBYE, 0x00, 0x00};
        int r = tg_conn_send(c, TG_SIDE_BACKEND, goodbye, sizeof(goodbye));
        if (r < 0)
            return r;
    }
    if (s->fifo_len == 0)
        tg_conn_finish(c);
    else
        s->quitting = true;
    return 0;
}

static int on_ready(tg_conn *c, bs_session *s, const uint8_t *frame, size_t size,
                    const tg_ps_doc *d, const tg_bolt_msg *m)
{
    uint8_t sig = m->signature;
    if (sig == TG_BOLT_GOODBYE)
        return on_goodbye(c, s);
    if (sig == TG_BOLT_RESET) {
        s->failed = false;
        s->in_tx = false;
        return forward(c, s, frame, size, BS_X_RESET);
    }
    if (s->failed)
        return local_ignored(c, s);
    switch (sig) {
    case TG_BOLT_RUN:
        return on_run(c, s, frame, size, d, m);
    case TG_BOLT_BEGIN:
        return on_begin(c, s, frame, size, d, m);
    case TG_BOLT_COMMIT:
    case TG_BOLT_ROLLBACK:
        s->in_tx = false;
        return forward(c, s, frame, size, BS_X_FORWARD);
    case TG_BOLT_PULL:
    case TG_BOLT_DISCARD:
    case TG_BOLT_TELEMETRY:
        return forward(c, s, frame, size, BS_X_FORWARD);
    case TG_BOLT_ROUTE:
        return on_route(c, s, d, m);
    case TG_BOLT_LOGOFF:
        if (s->fifo_len) { /* decided once every earlier reply is in */
            stall(s, 0);
            return BS_WAIT;
        }
        if (s->r_failed) /* the server would ignore it too */
            return local_ignored(c, s);
        {
            int r = forward(c, s, frame, size, BS_X_LOGOFF);
            if (r == 0)
                stall(s, 0);
            return r;
        }
    default: /* HELLO, LOGON: not in this state */
        return protocol_error(c, s, TG_REJECT_malformed, "message not allowed after logon");
    }
}

static int on_client_msg(tg_conn *c, bs_session *s, const uint8_t *frame, size_t size,
                         const tg_ps_doc *d, const tg_bolt_msg *m)
{
    uint8_t sig = m->signature;
    switch (s->state) {
    case BS_HELLO:
        if (sig == TG_BOLT_HELLO)
            return on_hello(c, s, d, m);
        break;
    case BS_LOGON:
    case BS_LOGGED_OFF:
        if (sig == TG_BOLT_LOGON)
            return on_logon(c, s, d, m);
        if (sig == TG_BOLT_RESET && s->state == BS_LOGGED_OFF) {
            s->out.len = 0;
            int r = tg_bolt_build_success(&s->out);
            return r < 0 ? r : local_reply(c, s, &s->out, 0);
        }
        break;
    case BS_READY:
        return on_ready(c, s, frame, size, d, m);
    default:
        break;
    }
    if (sig == TG_BOLT_GOODBYE)
        return on_goodbye(c, s);
    return protocol_error(c, s, TG_REJECT_unauthenticated, "authentication required");
}

/* ---- client input ------------------------------------------------------------------- */

/* The message bytes of frame f at p: a slice of the input, or a copy into *scratch. */
static int frame_bytes(const uint8_t *p, const tg_bolt_frame *f, tg_buf *scratch, tg_slice *out)
{
    if (tg_bolt_frame_slice(p, f, out))
        return 0;
    scratch->len = 0;
    uint8_t *dst = tg_buf_reserve(scratch, f->len);
    if (!dst)
        return TG_ENOMEM;
    tg_bolt_frame_copy(p, f, dst);
    scratch->len = f->len;
    *out = (tg_slice){dst, f->len};
    return 0;
}

/* Gives back scratch that grew for one huge message. */
static void trim(bs_session *s)
{
    if (s->msg.cap > BS_KEEP_SCRATCH)
        tg_buf_free(&s->msg);
    if (s->rmsg.cap > BS_KEEP_SCRATCH)
        tg_buf_free(&s->rmsg);
    if (s->out.cap > BS_KEEP_SCRATCH)
        tg_buf_free(&s->out);
    tg_ps_doc_trim(&s->doc, BS_KEEP_VALUES);
    tg_ps_doc_trim(&s->rdoc, BS_KEEP_VALUES);
    if (s->judged.text.cap > BS_KEEP_SCRATCH) {
        tg_cypher_result_free(&s->judged);
        tg_cypher_result_init(&s->judged);
    }
}

static ssize_t on_handshake(tg_conn *c, bs_session *s, const uint8_t *data, size_t len)
{
    tg_bolt_handshake hs;
    ssize_t n = tg_bolt_decode_handshake(data, len, &hs);
    if (n == TG_NEED_MORE)
        return 0;
    if (n < 0) {
        TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[TG_REJECT_malformed], 1);
        s->done = true;
        tg_conn_abort(c, "not a Bolt handshake");
        return (ssize_t)len;
    }
    static const uint16_t supported[] = TG_BOLT_SUPPORTED;
    s->version = tg_bolt_negotiate(&hs, supported, TG_BOLT_N_SUPPORTED, 0);
    uint8_t reply[4];
    tg_bolt_version_reply(s->version, reply);
    int r = tg_conn_send(c, TG_SIDE_CLIENT, reply, sizeof(reply));
    if (r < 0)
        return r;
    if (!s->version) { /* no common version: 00 00 00 00, then close */
        TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[TG_REJECT_malformed], 1);
        s->done = true;
        tg_conn_finish(c);
        return (ssize_t)len;
    }
    s->state = BS_HELLO;
    return n;
}

static ssize_t relay_client(tg_conn *c, bs_session *s, const uint8_t *data, size_t len)
{
    size_t off = 0;
    while (off < len && !s->done) {
        if (s->state == BS_HANDSHAKE) {
            ssize_t n = on_handshake(c, s, data, len);
            if (n <= 0)
                return n;
            off += (size_t)n;
            continue;
        }
        if (s->stalled)
            break;
        if (s->fifo_len >= BS_FIFO_MAX) {
            stall(s, BS_FIFO_MAX / 2);
            break;
        }
        bool authed = s->state == BS_READY;
        size_t max = authed ? TG_BOLT_MAX_MSG_DEFAULT : TG_BOLT_MAX_MSG_PREAUTH;
        tg_bolt_frame f;
        ssize_t n = tg_bolt_decode_frame(data + off, len - off, max, &s->cscan, &f);
        if (n == TG_NEED_MORE)
            break;
        memset(&s->cscan, 0, sizeof(s->cscan));
        if (n < 0) {
            int r =
                protocol_error(c, s, n == TG_ETOOBIG ? TG_REJECT_too_large : TG_REJECT_malformed,
                               n == TG_ETOOBIG ? "message too large" : "malformed chunk");
            return r < 0 ? r : (ssize_t)len;
        }
        if (f.len == 0) { /* NOOP (keep-alive): dropped */
            off += (size_t)n;
            continue;
        }
        tg_slice msg;
        if (frame_bytes(data + off, &f, &s->msg, &msg) < 0)
            return TG_ENOMEM;
        tg_ps_limits lim = authed ? TG_PS_LIMITS_DEFAULT : TG_PS_LIMITS_PREAUTH;
        tg_bolt_msg m;
        const char *why = NULL;
        int r = tg_bolt_decode_msg(&s->doc, msg.base, msg.len, &lim, s->version, s->check_flags,
                                   TG_BOLT_FROM_CLIENT, &m, &why);
        if (r == TG_ENOMEM)
            return r;
        if (r < 0) {
            r = protocol_error(c, s, r == TG_ETOOBIG ? TG_REJECT_too_large : TG_REJECT_malformed,
                               why ? why : "malformed message");
            return r < 0 ? r : (ssize_t)len;
        }
        r = on_client_msg(c, s, data + off, (size_t)n, &s->doc, &m);
        if (r < 0)
            return r;
        if (r == BS_WAIT)
            break;
        off += (size_t)n;
    }
    trim(s);
    if (s->done)
        return (ssize_t)len;
    /* Bytes that wait for the FIFO to drain are bounded like one message (+ its chunking). */
    if (s->stalled && len - off > 3 * (size_t)TG_BOLT_MAX_MSG_DEFAULT + 2) {
        int r = protocol_error(c, s, TG_REJECT_too_large, "too many pipelined messages");
        return r < 0 ? r : (ssize_t)len;
    }
    return (ssize_t)off;
}

/* ---- backend replies ---------------------------------------------------------------- */

/*
 * Collects the nodes of d whose property dictionary holds the tenant
 * property into s->hits (preorder). Returns how many, or < 0.
 */
static int find_tenant_nodes(bs_session *s, const tg_ps_doc *d, tg_slice key)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < d->n; i++) {
        const tg_ps_value *v = &d->v[i];
        if (v->type != TG_PS_T_STRUCT || v->tag != TG_BOLT_S_NODE || v->count < 3)
            continue;
        if (!tg_ps_map_get(d, tg_ps_child(d, i, 2), key))
            continue;
        if (n == s->hits_cap) {
            uint32_t cap = s->hits_cap ? 2 * s->hits_cap : 64;
            uint32_t *h = realloc(s->hits, cap * sizeof(*h));
            if (!h)
                return TG_ENOMEM;
            s->hits = h;
            s->hits_cap = cap;
        }
        s->hits[n++] = i;
    }
    return (int)n;
}

/* Writes value i of d with the tenant property dropped from the nodes listed in hits. */
static void put_hidden(tg_ps_builder *b, const tg_ps_doc *d, uint32_t i, const uint32_t *hits,
                       uint32_t n_hits, uint32_t *k, tg_slice key)
{
    const tg_ps_value *v = &d->v[i];
    if (*k >= n_hits || hits[*k] >= v->next) { /* nothing to change below here */
        tg_ps_put_raw(b, d, i);
        return;
    }
    uint32_t j = i + 1;
    if (hits[*k] == i) {
        tg_ps_edit drop = {key, TG_PS_EDIT_DROP, {NULL, 0}, 0};
        tg_ps_put_struct(b, v->tag, v->count);
        for (uint32_t f = 0; f < v->count; f++, j = d->v[j].next) {
            if (f == 2)
                tg_ps_put_map_edit(b, d, j, &drop, 1);
            else
                tg_ps_put_raw(b, d, j);
        }
        while (*k < n_hits && hits[*k] < v->next) /* inside a node: copied as it is */
            (*k)++;
        return;
    }
    switch (v->type) {
    case TG_PS_T_LIST:
        tg_ps_put_list(b, v->count);
        for (uint32_t e = 0; e < v->count; e++, j = d->v[j].next)
            put_hidden(b, d, j, hits, n_hits, k, key);
        break;
    case TG_PS_T_MAP:
        tg_ps_put_map(b, v->count);
        for (uint32_t e = 0; e < v->count; e++) {
            tg_ps_put_raw(b, d, j);
            j = d->v[j].next;
            put_hidden(b, d, j, hits, n_hits, k, key);
            j = d->v[j].next;
        }
        break;
    case TG_PS_T_STRUCT:
        tg_ps_put_struct(b, v->tag, v->count);
        for (uint32_t e = 0; e < v->count; e++, j = d->v[j].next)
            put_hidden(b, d, j, hits, n_hits, k, key);
        break;
    default:
        tg_ps_put_raw(b, d, i);
        break;
    }
}

/* A RECORD for the client: as it is, or re-encoded without the tenant property. */
static int relay_record(tg_conn *c, bs_session *s, const uint8_t *frame, size_t size,
                        const tg_bolt_msg *m)
{
    const tg_ps_doc *d = &s->rdoc;
    tg_slice key = tg_slice_str(s->bl->cfg->bolt.tenant_property);
    int hits = property_mode(s) && s->bl->cfg->bolt.hide_tenant_property
                   ? find_tenant_nodes(s, d, key)
                   : 0;
    if (hits < 0)
        return hits;
    if (hits == 0)
        return tg_conn_forward(c, TG_SIDE_CLIENT, frame, size);
    tg_bolt_builder b;
    uint32_t k = 0;
    s->out.len = 0;
    tg_bolt_begin(&b, &s->out, TG_BOLT_RECORD, 1);
    put_hidden(&b.ps, d, m->field[0], s->hits, (uint32_t)hits, &k, key);
    int r = tg_bolt_end(&b);
    return r < 0 ? r : tg_conn_send(c, TG_SIDE_CLIENT, s->out.data, s->out.len);
}

/* 4.4: the utc patch is on when the backend's HELLO SUCCESS lists it. */
static void read_patches(bs_session *s, const tg_ps_doc *d, const tg_bolt_msg *m)
{
    uint32_t p = tg_ps_map_get(d, m->field[0], tg_slice_str("patch_bolt"));
    if (!p || s->version != TG_BOLT_V(4, 4))
        return;
    uint32_t j = p + 1;
    for (uint32_t e = 0; e < d->v[p].count; e++, j = d->v[j].next)
        if (tg_ps_is_str(d, j, "utc"))
            s->check_flags |= TG_BOLT_PATCH_UTC;
}

static int on_backend_msg(tg_conn *c, bs_session *s, const uint8_t *frame, size_t size,
                          const tg_bolt_msg *m)
{
    uint8_t sig = m->signature;
    if (s->fifo_len == 0 || expect_local[s->fifo[s->fifo_head].kind])
        return backend_fatal(c, s, "the backend sent a reply nobody asked for");
    if (sig == TG_BOLT_RECORD) {
        if (s->fifo[s->fifo_head].kind != BS_X_FORWARD)
            return backend_fatal(c, s, "the backend sent a record nobody asked for");
        return relay_record(c, s, frame, size, m);
    }
    bs_expect e = fifo_pop(s);
    bool ok = sig == TG_BOLT_SUCCESS;
    int r = 0;
    switch ((bs_expect_kind)e.kind) {
    case BS_X_FORWARD:
    case BS_X_RESET:
    case BS_X_LOGOFF:
        if (e.kind == BS_X_RESET && ok)
            s->r_failed = false;
        if (e.kind == BS_X_LOGOFF && ok)
            s->state = BS_LOGGED_OFF;
        if (sig == TG_BOLT_FAILURE)
            s->r_failed = true;
        r = tg_conn_forward(c, TG_SIDE_CLIENT, frame, size);
        break;
    case BS_X_SWALLOW:
        if (!ok)
            return backend_fatal(c, s, "the backend refused HELLO");
        break;
    case BS_X_LOGIN:
        if (!ok)
            return backend_fatal(c, s, "the backend refused the service credentials");
        read_patches(s, &s->rdoc, m);
        s->state = BS_READY;
        tg_conn_established(c);
        r = tg_conn_forward(c, TG_SIDE_CLIENT, frame, size);
        break;
    case BS_X_RELOGIN:
        if (!ok)
            return backend_fatal(c, s, "the backend refused the service credentials");
        if (strcmp(s->next_id.tenant, s->id.tenant) != 0)
            tg_log(TG_LOG_INFO, "tenant switched", TG_FB("audit", true),
                   TG_FS("listener", s->bl->cfg->name), TG_FS("tenant", s->next_id.tenant),
                   TG_FS("previous_tenant", s->id.tenant), TG_FS("client", tg_conn_peer(c)),
                   TG_FEND);
        s->id = s->next_id;
        expand_db(s, s->id.tenant);
        set_expiry(c, &s->id);
        s->state = BS_READY;
        r = tg_conn_forward(c, TG_SIDE_CLIENT, frame, size);
        break;
    case BS_X_LOCAL:
    case BS_X_IGNORED:
        return TG_EPROTO; /* cannot happen: checked above */
    }
    return r < 0 ? r : drain(c, s);
}

static ssize_t relay_backend(tg_conn *c, bs_session *s, const uint8_t *data, size_t len)
{
    size_t off = 0;
    if (s->backend == BS_BACKEND_HANDSHAKE) {
        uint16_t v;
        ssize_t n = tg_bolt_decode_version_reply(data, len, &v);
        if (n == TG_NEED_MORE)
            return 0;
        if (n < 0 || v != s->version) {
            int r = backend_fatal(c, s,
                                  n < 0 ? "the backend does not speak Bolt"
                                        : "the backend does not speak the client's Bolt version");
            return r < 0 ? r : (ssize_t)len;
        }
        s->backend = BS_BACKEND_UP;
        int r = tg_conn_send(c, TG_SIDE_BACKEND, s->pending.data, s->pending.len);
        tg_buf_free(&s->pending);
        if (r < 0)
            return r;
        off = (size_t)n;
    }
    while (off < len && !s->done) {
        tg_bolt_frame f;
        ssize_t n =
            tg_bolt_decode_frame(data + off, len - off, TG_BOLT_MAX_MSG_DEFAULT, &s->bscan, &f);
        if (n == TG_NEED_MORE)
            break;
        memset(&s->bscan, 0, sizeof(s->bscan));
        if (n < 0) {
            int r = backend_fatal(c, s, "the backend sent a malformed or oversized message");
            return r < 0 ? r : (ssize_t)len;
        }
        if (f.len == 0) {
            off += (size_t)n;
            continue;
        }
        tg_slice msg;
        if (frame_bytes(data + off, &f, &s->rmsg, &msg) < 0)
            return TG_ENOMEM;
        tg_ps_limits lim = TG_PS_LIMITS_DEFAULT;
        tg_bolt_msg m;
        const char *why = NULL;
        int r = tg_bolt_decode_msg(&s->rdoc, msg.base, msg.len, &lim, s->version, s->check_flags,
                                   TG_BOLT_FROM_SERVER, &m, &why);
        if (r == TG_ENOMEM)
            return r;
        if (r < 0) {
            tg_log(TG_LOG_WARN, "backend message refused", TG_FS("listener", s->bl->cfg->name),
                   TG_FS("reason", why ? why : "malformed"), TG_FI("length", f.len), TG_FEND);
            r = backend_fatal(c, s, "the backend sent a message tenantgate cannot check");
            return r < 0 ? r : (ssize_t)len;
        }
        r = on_backend_msg(c, s, data + off, (size_t)n, &m);
        if (r < 0)
            return r;
        off += (size_t)n;
    }
    trim(s);
    return s->done ? (ssize_t)len : (ssize_t)off;
}

/* ---- plumbing ------------------------------------------------------------------------ */

static int bs_open(tg_conn *c, void *session)
{
    bs_session *s = session;
    s->bl = tg_conn_lrt_state(c);
    s->state = BS_HANDSHAKE;
    tg_ps_doc_init(&s->doc);
    tg_ps_doc_init(&s->rdoc);
    tg_cypher_result_init(&s->judged);
    return 0;
}

static int bs_backend_ready(tg_conn *c, void *session)
{
    bs_session *s = session;
    uint32_t proposals[4] = {tg_bolt_proposal(s->version, 0), 0, 0, 0};
    s->out.len = 0;
    int r = tg_bolt_write_handshake(&s->out, proposals);
    if (r == 0)
        r = tg_conn_send(c, TG_SIDE_BACKEND, s->out.data, s->out.len);
    s->backend = BS_BACKEND_HANDSHAKE;
    return r;
}

static ssize_t bs_data(tg_conn *c, void *session, tg_side_id from, const uint8_t *data, size_t len)
{
    bs_session *s = session;
    if (from == TG_SIDE_CLIENT)
        return s->done ? (ssize_t)len : relay_client(c, s, data, len);
    if (s->backend == BS_BACKEND_NONE)
        return TG_EPROTO;
    return relay_backend(c, s, data, len);
}

static void bs_expire(tg_conn *c, void *session)
{
    bs_session *s = session;
    if (fail_now(c, s, BS_CODE_EXPIRED, "token expired") < 0)
        tg_conn_abort(c, "out of memory");
}

static void bs_close(tg_conn *c, void *session)
{
    bs_session *s = session;
    while (s->fifo_len) {
        bs_expect e = fifo_pop(s);
        free(e.bytes);
    }
    free(s->fifo);
    free(s->hits);
    tg_ps_doc_free(&s->doc);
    tg_ps_doc_free(&s->rdoc);
    tg_buf_free(&s->msg);
    tg_buf_free(&s->rmsg);
    tg_buf_free(&s->out);
    tg_buf_free(&s->pending);
    tg_cypher_result_free(&s->judged);
    (void)c;
}

const tg_protocol_ops tg_bolt_protocol = {
    .name = "bolt",
    .session_size = sizeof(bs_session),
    .own_tls_upgrade = false,
    .listener_init = bs_listener_init,
    .listener_free = bs_listener_free,
    .on_open = bs_open,
    .on_backend_ready = bs_backend_ready,
    .on_data = bs_data,
    .on_eof = NULL,
    .on_expire = bs_expire,
    .on_close = bs_close,
};
