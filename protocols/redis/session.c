/*
 * protocol: redis -- the session state machine.
 *
 *   NOAUTH (no backend) --AUTH/HELLO AUTH ok--> CONNECTING --backend up--> READY
 *      ^  pre-auth limits; anything else -NOAUTH       | service AUTH sent (reply swallowed)
 *      |                                               v
 *   NOAUTH (backend kept) <--client RESET------------ READY: judge every command
 *      '--AUTH/HELLO AUTH ok (no backend RESET needed)--^
 *
 * With allow_scripts the backend connection logs in as the tenant's ACL user
 * (protocols/redis/acl.h), never as the service user, and client input waits
 * (acl_wait) while that user is provisioned and until the backend accepts it:
 *
 *   AUTH t (verified) --t's user not provisioned--> request left in the input, provisioning
 *        |                                              | done: the same request again (replay)
 *        v                                              v   failed: "-ERR ...", nothing changed
 *   backend: [RESET] AUTH <user of t> <secret> --+OK--> after_login: HELLO / "+OK", input resumes
 *                                              --error--> provisioned again, AUTH again (once);
 *                                                         then the session ends
 *   RESET from the client: backend RESET + AUTH as the same tenant's user.
 *
 * Client requests are decoded with tg_resp_decode_request (pre-auth limits
 * before authentication) and judged by policy/redis_policy:
 *
 *   FORWARD / REWRITE_PATTERN --> scatter/gather: new `$len` header + prefix (copied),
 *                                 the argument itself forwarded from the input (no copy)
 *   DENY                      --> "-NOPERM tenantgate: <reason>" (local, ordered)
 *   LOCAL                     --> AUTH / HELLO / RESET / QUIT / SELECT 0 emulated here
 *
 * Every request sent to the backend expects exactly one reply; the session keeps
 * a FIFO of what to do with each, and the reply queue (proxy/reply_queue.h)
 * slots local replies in between:
 *
 *   client:  SET k v      DEL x(denied)    KEYS *        RESET
 *   backend: SET t:a:k v                   KEYS t:a:*    RESET, AUTH svc
 *   fifo:    [FORWARD]                     [STRIP keys]  [AS_RESET][SWALLOW_AUTH]
 *   queue:   [1 backend | "-NOPERM"][1 backend][1 backend][1 backend]
 *   client sees: +OK, -NOPERM, [keys without t:a:], +RESET       (in request order)
 *
 * Pub/sub: channel arguments get the prefix, patterns the glob-escaped prefix
 * (policy roles); what comes back is sorted before the FIFO is touched:
 *
 *   backend value                          -> what happens
 *   message / pmessage / smessage          -> out of band: names stripped, sent at once
 *     (RESP3 push; RESP2 array while          (a name without our prefix: dropped, debug log)
 *      the backend is subscribed)
 *   (p|s)(un)subscribe confirmation        -> counts toward the FIFO head (RS_PUBSUB): a
 *     (push, or array in RESP2)               (P|S)(UN)SUBSCRIBE's "reply" is all its
 *                                             confirmations; the entry (and the reply-queue
 *                                             slot) completes with the last one
 *   other push                             -> dropped
 *   anything else                          -> the FIFO head's reply, as before
 *
 *   A command with N names expects N confirmations. Without names, an
 *   unsubscribe expects one per subscription of its family at the moment the
 *   backend runs it (one with a null name when none): the session keeps the
 *   backend's counts (channels, patterns, shard channels) from the last element
 *   of every confirmation, and reads the count when that entry reaches the
 *   head. RESET (client RESET or tenant switch) clears the counts with its
 *   reply; messages that arrive while a RESET is in flight are dropped.
 *   The reply-side protocol (RESP2 arrays vs RESP3 pushes) follows the HELLO
 *   and RESET replies (rs_expect.proto), not the request side.
 * - A connection counts as subscribed from the moment a subscribe-family
 *   command is sent until its confirmations are in and no subscription is
 *   left (conservative for pipelines). While subscribed in RESP2, commands
 *   Redis does not allow in that context are forwarded so Redis answers them,
 *   except those the session itself handles (AUTH, HELLO, SELECT, MULTI, EXEC,
 *   DISCARD): they get Redis's error text locally. Re-authentication for
 *   another tenant while subscribed is refused ("-NOPERM tenantgate:
 *   re-authentication while subscribed is not allowed"), so the prefix never
 *   changes under a subscription. A confirmation naming a channel outside the
 *   tenant's prefix ends the session (it cannot be dropped without losing
 *   reply order). The subscribe family is refused inside MULTI (reply kind
 *   PUBSUB), PUBSUB NUMPAT and keyspace-notification channels by the policy.
 *   CLIENT REPLY is refused by the policy, so every other forwarded command has
 *   exactly one reply.
 * - Replies whose kind is not NONE are rebuilt with the prefix stripped. A key
 *   without the tenant's prefix in a KEYS / SCAN / XREAD reply is dropped; in a
 *   FIRST_KEY reply (BLPOP...) the whole reply becomes an error. Neither can
 *   happen unless the prefixing itself failed.
 * - Inside MULTI, commands whose reply needs rewriting are refused (the EXEC
 *   array is then always forwarded as is); a refused command marks the
 *   transaction dirty and EXEC is sent as DISCARD, answered -EXECABORT.
 *   AUTH, HELLO and SELECT are refused inside MULTI too.
 * - Re-auth for another tenant sends RESET + the service AUTH (+ HELLO 3 for a
 *   RESP3 client) to the backend first, swallowing their replies.
 * - Scripts: refused unless allow_scripts; then the judge forwards EVAL*, FCALL*,
 *   SCRIPT LOAD|EXISTS and refuses every command the tenant's ACL user lacks
 *   (tg_redis_acl_grants), so that what a client sends and what its scripts call
 *   are scoped by the same ACL.
 * - The command table: the first session of a listener whose backend
 *   connection comes up sends `COMMAND` right behind the service AUTH (one
 *   fetch per listener generation; a session that closes before the reply
 *   hands the fetch to the next one). The reply is swallowed, parsed by
 *   policy/redis_cmdinfo (checked against the built-in table: commands
 *   tenantgate has no rule for stay refused) and published to every worker
 *   with one atomic store; a server without key specs (Redis < 7, an error,
 *   a malformed reply) leaves the built-in table (redis 7.0) in place. A
 *   session judges with the table it opened with, the built-in one until the
 *   backend's is in; tables live as long as the listener state (the runtime
 *   generation), which outlives every session of it. With allow_scripts the
 *   backend connection is the tenant's ACL user, which has no COMMAND: those
 *   listeners keep the built-in table.
 *
 *     listener: fetch IDLE --CAS by one session--> RUNNING --reply parsed--> DONE
 *                                  ^---- that session closed first ----'
 *
 * - Connections per tenant (redis.max_connections_per_tenant, tenants.limits,
 *   the registry's override): a slot is taken when a session authenticates
 *   (proxy/auth.c, tg_auth_admit) and held until it closes; AUTH as another
 *   tenant takes the new tenant's slot before giving back the old one (over
 *   the limit: -NOPERM, and the session stays as it was). The first AUTH over
 *   the limit is answered -NOPERM and the connection closed, as PostgreSQL's
 *   FATAL 53300 closes it.
 * - The tenant registry: an AUTH waits (RS_WAIT) while the registry is asked;
 *   a suspension or revocation ends the session (rs_kick: -ERR, close).
 * - Rate limits and bytes in flight (tenants.limits): a command the tenant may
 *   not send now is answered -BUSY in order (inside MULTI: EXECABORT later);
 *   MULTI, EXEC and DISCARD always pass. Request bytes count as in flight from
 *   forwarding to their reply (the FIFO entry), published once per read.
 * - Requests and replies are buffered whole (bounded by the codec limits:
 *   512 MiB bulks), not streamed.
 * - Backend error replies are forwarded as they are (a key quoted in an error
 *   carries the tenant's own prefix).
 */
#include "protocols/redis/session.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "policy/redis_cmdinfo.h"
#include "policy/redis_policy.h"
#include "protocols/redis/acl.h"
#include "protocols/redis/codec.h"
#include "proxy/ring.h"
#include "proxy/auth.h"
#include "proxy/conn.h"
#include "proxy/error.h"
#include "proxy/log.h"
#include "proxy/metrics.h"
#include "proxy/reply_queue.h"
#include "proxy/worker.h"

#define RS_PREFIX_MAX 512 /* expanded key_prefix */
#define RS_TEMPLATE_MAX 256

enum { RS_FETCH_IDLE, RS_FETCH_RUNNING, RS_FETCH_DONE };

/* What every connection of a listener shares. */
typedef struct rs_listener {
    const tg_listener_config *cfg;
    /* The fallback, and the vetted table the backend's is checked against. */
    tg_redis_table *builtin;
    /* The backend's table once loaded: published once, freed with the listener. */
    _Atomic(tg_redis_table *) fetched;
    _Atomic int fetch; /* RS_FETCH_*: who asks the backend for COMMAND */
    tg_redis_acl *acl; /* allow_scripts: the per-tenant ACL users; NULL otherwise */
} rs_listener;

/* X(name): what to do with the next backend reply. */
#define RS_ACTION_MAP(X)                                                                           \
    X(FORWARD)      /* as is */                                                                    \
    X(STRIP)        /* rebuilt with prefixes stripped (reply kind in the entry) */                 \
    X(SWALLOW)      /* RESET / HELLO sent for a tenant switch: dropped */                          \
    X(SWALLOW_AUTH) /* service AUTH: dropped; an error ends the session */                         \
    X(AS_RESET)     /* the backend's answer to an emulated RESET: "+RESET" */                      \
    X(EXECABORT)    /* DISCARD sent for a dirty EXEC: "-EXECABORT ..." */                          \
    X(PUBSUB)       /* the confirmations of a (P|S)(UN)SUBSCRIBE (or one error) */                 \
    X(TABLE)        /* COMMAND sent for the listener's table: parsed, published, dropped */        \
    X(ACL_AUTH)     /* AUTH as the tenant's ACL user: dropped; client input resumes */

typedef enum {
#define RS_ACTION_ENUM(n) RS_##n,
    RS_ACTION_MAP(RS_ACTION_ENUM)
#undef RS_ACTION_ENUM
} rs_action;

/* The subscribe family: index + 1 in rs_expect.sub; the confirmation carries the same name. */
static const char *const sub_names[] = {"subscribe",    "unsubscribe", "psubscribe",
                                        "punsubscribe", "ssubscribe",  "sunsubscribe"};
enum { RS_SUB_CHANNEL, RS_SUB_PATTERN, RS_SUB_SHARD }; /* family: sub_names index / 2 */

typedef struct rs_expect {
    uint8_t action;    /* rs_action */
    uint8_t kind;      /* tg_redis_reply_kind for RS_STRIP */
    uint8_t proto;     /* 2 or 3: a non-error reply switches the backend to that protocol */
    bool reset;        /* the reply to a backend RESET: no subscription left */
    uint8_t sub;       /* RS_PUBSUB: sub_names index + 1 */
    bool all;          /* RS_PUBSUB: an unsubscribe without names (left read at the head) */
    uint32_t left;     /* RS_PUBSUB: confirmations still due */
    uint64_t inflight; /* request bytes counted against the tenant's max_inflight_bytes */
} rs_expect;

typedef struct rs_session {
    rs_listener *rl;
    const tg_redis_table *table; /* what this session judges with (chosen when it opened) */
    bool fetching;               /* this session's COMMAND reply is still due (rl->fetch RUNNING) */
    tg_tenant_slot *slot;        /* the admitted tenant's limits (proxy/auth.c owns it) */
    uint64_t inflight_sent;      /* request bytes counted since the last sync (inflight_sync) */
    uint64_t inflight_answered;  /* ... and answered since then */
    int64_t limit_logged_s;      /* rate-limit audit lines: at most one per second */
    tg_tenant_lease lease;       /* what this session prepaid of its tenant's rate limits */
    tg_tenant_clock *batch_clock; /* while rs_data relays a client read: the rate limits'
                                     time for its requests, read once; else NULL (now) */
    bool authed;                  /* the client is authenticated (tenant and prefix valid) */
    bool connecting;              /* backend asked for, not up yet: client input waits */
    bool backend_up;
    bool done;         /* QUIT or fatal: nothing more is read */
    bool quitting;     /* QUIT answered once the queue drains */
    bool input_closed; /* after a protocol error: the client's bytes are no longer read */
    bool resp3;        /* the client switched to RESP3 (HELLO 3) */
    bool in_multi, multi_dirty;
    bool first_ok; /* an AUTH: "+OK" once the backend login is done (after_login) */
    tg_identity id;
    char prefix[RS_PREFIX_MAX];
    size_t prefix_len;
    uint8_t glob[2 * RS_PREFIX_MAX]; /* prefix with glob characters escaped */
    size_t glob_len;
    tg_buf pending; /* a HELLO to send once the backend login is done (after_login) */
    uint8_t pending_action, pending_proto; /* how its reply is handled (rs_action, 2 or 3) */
    tg_buf out;                            /* scratch for requests and replies built here */
    tg_buf tmp;                            /* scratch for reply elements */
    tg_slice *argv;
    uint8_t *roles;
    uint32_t argv_cap;
    rs_expect *fifo;
    size_t fifo_cap, fifo_head, fifo_len;
    tg_reply_queue rq;
    /* Pub/sub, as of the backend replies read so far. */
    bool r_resp3;                    /* the backend speaks RESP3 */
    uint64_t r_chan, r_pat, r_shard; /* its subscriptions (from the confirmations' counts) */
    uint32_t pubsub_pending;         /* RS_PUBSUB entries in the FIFO */
    uint32_t resets_pending;         /* backend RESETs whose reply is still due */
    /* allow_scripts: the backend connection is logged in as the tenant's ACL user. */
    char acl_tenant[TG_TENANT_MAX + 1]; /* whose ACL user it is (or is becoming) */
    tg_redis_acl_req *acl_req;          /* provisioning in flight */
    uint8_t acl_purpose;                /* what acl_req is for (RS_ACL_FOR_*) */
    bool acl_wait;       /* client input waits: provisioning, or the ACL user's AUTH reply */
    bool acl_retried;    /* the user was provisioned again after the backend refused its AUTH */
    bool replay;         /* the AUTH / HELLO AUTH at the head of the input waited: pend_id */
    int replay_status;   /* its provisioning's result: 0 or < 0 */
    tg_identity pend_id; /* the identity verified before it waited */
} rs_session;

/* What a provisioning request is for. */
enum { RS_ACL_FOR_AUTH, RS_ACL_FOR_RELOGIN };

/* A handler's answer: the request was not consumed and waits (see authenticate()). */
#define RS_WAIT 1

static const char noauth_hello[] =
    "-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO "
    "<proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP "
    "protocol version at the same time\r\n";

/* ---- listener state ------------------------------------------------------ */

static int rs_listener_init(const struct tg_listener_config *cfg, void **state, char *err,
                            size_t errlen)
{
    const char *tpl = cfg->redis.key_prefix;
    if (!tpl || !strstr(tpl, "{tenant}") || strlen(tpl) > RS_TEMPLATE_MAX) {
        snprintf(err, errlen,
                 "listener %s: redis.key_prefix must contain {tenant} (at most %d bytes)",
                 cfg->name, RS_TEMPLATE_MAX);
        return TG_ECONFIG;
    }
    rs_listener *rl = calloc(1, sizeof(*rl));
    if (!rl || !(rl->builtin = tg_redis_table_builtin())) {
        free(rl);
        snprintf(err, errlen, "out of memory");
        return TG_ECONFIG;
    }
    atomic_init(&rl->fetched, NULL);
    atomic_init(&rl->fetch, RS_FETCH_IDLE);
    /* allow_scripts: config.c has checked the key file, the user template and the prefix. */
    if (cfg->redis.allow_scripts && !(rl->acl = tg_redis_acl_new(cfg, rl->builtin, err, errlen))) {
        tg_redis_table_free(rl->builtin);
        free(rl);
        return TG_ECONFIG;
    }
    rl->cfg = cfg;
    *state = rl;
    return 0;
}

/* Runs once the runtime generation is unreferenced: no session of this listener is left. */
static void rs_listener_free(void *state)
{
    rs_listener *rl = state;
    tg_redis_acl_free(rl->acl);
    tg_redis_table_free(atomic_load_explicit(&rl->fetched, memory_order_acquire));
    tg_redis_table_free(rl->builtin);
    free(rl);
}

/* ---- sending and ordering -------------------------------------------------- */

static int emit_client(void *ud, const uint8_t *p, size_t len)
{
    return tg_conn_send(ud, TG_SIDE_CLIENT, p, len);
}

/* A local reply, after every backend reply still due. */
static int local_reply(tg_conn *c, rs_session *s, const void *p, size_t len)
{
    int r = tg_reply_queue_push_local(&s->rq, p, len);
    if (r == 1)
        return tg_conn_send(c, TG_SIDE_CLIENT, p, len);
    return r;
}

static int local_str(tg_conn *c, rs_session *s, const char *str)
{
    return local_reply(c, s, str, strlen(str));
}

static int local_error(tg_conn *c, rs_session *s, const char *code, const char *reason)
{
    s->out.len = 0;
    int r = tg_resp_write_reject(&s->out, code, reason);
    return r < 0 ? r : local_reply(c, s, s->out.data, s->out.len);
}

/* Expects one more backend reply, handled with `action`. */
static int expect(rs_session *s, rs_action action, tg_redis_reply_kind kind)
{
    if (tg_ring_reserve((void **)&s->fifo, sizeof(*s->fifo), &s->fifo_cap, &s->fifo_head,
                        s->fifo_len, 64) < 0)
        return TG_ENOMEM;
    s->fifo[(s->fifo_head + s->fifo_len) % s->fifo_cap] =
        (rs_expect){.action = (uint8_t)action, .kind = (uint8_t)kind};
    s->fifo_len++;
    return tg_reply_queue_expect_backend(&s->rq, 1);
}

/* The entry expect() added last (the FIFO is not empty). */
static rs_expect *last_expect(rs_session *s)
{
    return &s->fifo[(s->fifo_head + s->fifo_len - 1) % s->fifo_cap];
}

/* expect() for a request that switches the backend to protocol `proto` (HELLO). */
static int expect_proto(rs_session *s, rs_action action, int proto)
{
    int r = expect(s, action, TG_REDIS_REPLY_NONE);
    if (r == 0)
        last_expect(s)->proto = (uint8_t)proto;
    return r;
}

/* Some subscription exists or may exist (see the top comment). */
static bool pubsub_busy(const rs_session *s)
{
    return s->pubsub_pending || s->r_chan || s->r_pat || s->r_shard;
}

/* Sends a request built from argv (copied) to the backend, expecting one reply. */
static int backend_request(tg_conn *c, rs_session *s, const tg_slice *argv, uint32_t argc,
                           rs_action action)
{
    s->out.len = 0;
    int r = tg_resp_write_request(&s->out, argv, argc);
    if (r == 0)
        r = tg_conn_send(c, TG_SIDE_BACKEND, s->out.data, s->out.len);
    return r < 0 ? r : expect(s, action, TG_REDIS_REPLY_NONE);
}

/* The service credentials: AUTH [user] password; nothing without a password. */
static int backend_auth(tg_conn *c, rs_session *s)
{
    const tg_backend_config *b = &s->rl->cfg->backend;
    if (!b->password.data)
        return 0;
    tg_slice argv[3];
    uint32_t n = 0;
    argv[n++] = tg_slice_str("AUTH");
    if (b->user)
        argv[n++] = tg_slice_str(b->user);
    argv[n++] = (tg_slice){(const uint8_t *)b->password.data, b->password.len};
    return backend_request(c, s, argv, n, RS_SWALLOW_AUTH);
}

/*
 * allow_scripts: "AUTH <user> <secret>" as the ACL user of s->acl_tenant. Client
 * input waits for its reply (RS_ACL_AUTH): should the backend refuse it, commands
 * pipelined behind would run as whatever user the connection is left with, past
 * the ACL that scopes scripts.
 */
static int acl_login(tg_conn *c, rs_session *s)
{
    char user[TG_REDIS_ACL_USER_MAX + 1], secret[TG_REDIS_ACL_SECRET_LEN + 1];
    if (tg_redis_acl_credentials(s->rl->acl, s->acl_tenant, user, secret) < 0)
        return TG_EINVAL;
    tg_slice argv[3] = {tg_slice_str("AUTH"),
                        tg_slice_str(user),
                        {(const uint8_t *)secret, TG_REDIS_ACL_SECRET_LEN}};
    int r = backend_request(c, s, argv, 3, RS_ACL_AUTH);
    explicit_bzero(secret, sizeof(secret));
    explicit_bzero(s->out.data, s->out.len);
    s->acl_wait = true;
    return r;
}

/* The backend login: the tenant's ACL user (allow_scripts) or the service credentials. */
static int backend_login(tg_conn *c, rs_session *s)
{
    return s->rl->acl ? acl_login(c, s) : backend_auth(c, s);
}

static int backend_reset(tg_conn *c, rs_session *s, rs_action action)
{
    tg_slice argv[1] = {tg_slice_str("RESET")};
    int r = backend_request(c, s, argv, 1, action);
    if (r < 0)
        return r;
    rs_expect *e = last_expect(s);
    e->reset = true;
    e->proto = 2;
    s->resets_pending++;
    return backend_login(c, s);
}

/* Sends what waited for the backend login: s->pending (a HELLO), then an AUTH's "+OK". */
static int after_login(tg_conn *c, rs_session *s)
{
    int r = 0;
    if (s->pending.len) {
        r = tg_conn_send(c, TG_SIDE_BACKEND, s->pending.data, s->pending.len);
        s->pending.len = 0;
        if (r == 0)
            r = expect_proto(s, (rs_action)s->pending_action, s->pending_proto);
    }
    if (r == 0 && s->first_ok) {
        s->first_ok = false;
        r = local_str(c, s, "+OK\r\n");
    }
    return r;
}

/* The backend login failed: the connection may be anyone now. The session ends. */
static int login_failed(tg_conn *c, rs_session *s)
{
    tg_log(TG_LOG_ERROR, "backend authentication failed", TG_FS("listener", s->rl->cfg->name),
           TG_FS("client", tg_conn_peer(c)), TG_FEND);
    static const char msg[] = "-ERR tenantgate: backend authentication failed\r\n";
    s->done = true;
    int r = tg_conn_send(c, TG_SIDE_CLIENT, msg, sizeof(msg) - 1);
    tg_conn_finish(c);
    return r;
}

static int acl_resume(tg_conn *c, void *session, void *arg);

/* A provisioning request's end, on the worker's loop: back into the session. */
static void acl_provisioned(void *ud, int status, const char *why)
{
    (void)why; /* logged by acl.c */
    tg_conn_call(ud, acl_resume, &status);
}

/* Starts provisioning tenant's ACL user; client input waits until acl_resume. */
static int acl_start(tg_conn *c, rs_session *s, const char *tenant, int purpose)
{
    int err = 0;
    s->acl_req = tg_redis_acl_provision(s->rl->acl, &tg_conn_worker(c)->loop, tenant,
                                        acl_provisioned, c, &err);
    if (!s->acl_req)
        return err;
    s->acl_purpose = (uint8_t)purpose;
    s->acl_wait = true;
    return 0;
}

/*
 * The backend refused the ACL user's AUTH. The user may be gone (Redis restarted
 * without an ACL file, an operator deleted it): provision it again, once.
 */
static int acl_login_refused(tg_conn *c, rs_session *s)
{
    if (s->acl_retried || s->acl_req)
        return login_failed(c, s);
    s->acl_retried = true;
    tg_log(TG_LOG_WARN, "backend refused the tenant's ACL user; provisioning it again",
           TG_FS("listener", s->rl->cfg->name), TG_FS("tenant", s->acl_tenant), TG_FEND);
    tg_redis_acl_forget(s->rl->acl, s->acl_tenant);
    int r = acl_start(c, s, s->acl_tenant, RS_ACL_FOR_RELOGIN);
    return r == TG_ENOMEM ? r : r < 0 ? login_failed(c, s) : 0;
}

static int acl_resume(tg_conn *c, void *session, void *arg)
{
    rs_session *s = session;
    int status = *(const int *)arg;
    s->acl_req = NULL;
    if (s->done)
        return 0;
    if (s->acl_purpose == RS_ACL_FOR_RELOGIN)
        return status < 0 ? login_failed(c, s) : acl_login(c, s);
    /* The AUTH / HELLO AUTH that waited is still the first request in the input: it is
     * judged again and takes the identity verified before (authenticate()). */
    s->acl_wait = false;
    s->replay = true;
    s->replay_status = status;
    tg_conn_redispatch(c, TG_SIDE_CLIENT);
    return 0;
}

/* ---- authentication ------------------------------------------------------- */

static void set_prefix(rs_session *s)
{
    const char *tpl = s->rl->cfg->redis.key_prefix;
    size_t n = 0, tl = strlen(s->id.tenant);
    for (const char *p = tpl; *p && n < RS_PREFIX_MAX;) {
        if (strncmp(p, "{tenant}", 8) == 0) {
            size_t k = tl < RS_PREFIX_MAX - n ? tl : RS_PREFIX_MAX - n;
            memcpy(s->prefix + n, s->id.tenant, k);
            n += k;
            p += 8;
        } else {
            s->prefix[n++] = *p++;
        }
    }
    /* RS_TEMPLATE_MAX + 64-byte tenants fit: no truncation. */
    s->prefix_len = n;
    s->glob_len =
        tg_redis_escape_glob((tg_slice){(const uint8_t *)s->prefix, n}, s->glob, sizeof(s->glob));
}

static void set_expiry(tg_conn *c, rs_session *s)
{
    int64_t left_ms = (s->id.exp - (int64_t)time(NULL)) * 1000;
    tg_conn_set_expiry(c, left_ms > 0 ? (uint64_t)left_ms : 1);
}

/* Parsed HELLO [protover [AUTH user pass] [SETNAME name]]. */
typedef struct rs_hello {
    int ver; /* 0: not given */
    bool has_auth;
    tg_slice token;
    bool has_name;
    tg_slice name;
} rs_hello;

static bool arg_is(tg_slice a, const char *s)
{
    size_t n = strlen(s);
    return a.len == n && strncasecmp((const char *)a.base, s, n) == 0;
}

/* Returns 0, or writes the error reply into *err and returns -1. */
static int parse_hello(const tg_slice *argv, uint32_t argc, rs_hello *h, const char **err)
{
    memset(h, 0, sizeof(*h));
    if (argc < 2)
        return 0;
    if (arg_is(argv[1], "2"))
        h->ver = 2;
    else if (arg_is(argv[1], "3"))
        h->ver = 3;
    else {
        *err = "-NOPROTO sorry, this protocol version is not supported.\r\n";
        return -1;
    }
    for (uint32_t i = 2; i < argc; i++) {
        if (arg_is(argv[i], "AUTH") && i + 2 < argc) {
            h->has_auth = true;
            h->token = argv[i + 2];
            i += 2;
        } else if (arg_is(argv[i], "SETNAME") && i + 1 < argc) {
            h->has_name = true;
            h->name = argv[i + 1];
            i += 1;
        } else {
            *err = "-ERR Syntax error in HELLO option\r\n";
            return -1;
        }
    }
    return 0;
}

/* Writes "HELLO ver [SETNAME name]" (no AUTH: the backend keeps the service user) into b. */
static int build_hello(tg_buf *b, int ver, const rs_hello *h)
{
    tg_slice argv[4] = {tg_slice_str("HELLO"), tg_slice_str(ver == 3 ? "3" : "2"),
                        tg_slice_str("SETNAME"), h ? h->name : (tg_slice){0}};
    return tg_resp_write_request(b, argv, h && h->has_name ? 4 : 2);
}

/* Publishes what this session counted in flight since the last sync (once per read). */
static void inflight_sync(rs_session *s)
{
    if (!s->slot)
        return;
    tg_tenant_count_inflight_add(s->slot, s->inflight_sent);
    tg_tenant_count_inflight_give(s->slot, s->inflight_answered);
    s->inflight_sent = s->inflight_answered = 0;
}

/* Gives back the request bytes in flight counted against the admitted tenant. */
static void give_inflight(rs_session *s)
{
    inflight_sync(s);
    for (size_t i = 0; i < s->fifo_len; i++) {
        rs_expect *e = &s->fifo[(s->fifo_head + i) % s->fifo_cap];
        if (e->inflight && s->slot)
            tg_tenant_count_inflight_give(s->slot, e->inflight);
        e->inflight = 0;
    }
}

/*
 * Admits the session as id's tenant (proxy/auth.c: its slot on this listener,
 * with the registry's limits; a re-authentication as the same tenant keeps the
 * slot, one as another tenant takes the new one before giving back the old).
 * Returns 0, 1 when the tenant is at its connection limit (answered here; the
 * session is as it was, or closing when this was its first authentication),
 * or < 0.
 */
static int count_tenant(tg_conn *c, rs_session *s, const tg_identity *id)
{
    const tg_listener_config *cfg = s->rl->cfg;
    bool other = s->slot && strcmp(tg_tenant_count_tenant(s->slot), id->tenant) != 0;
    tg_tenant_slot *slot;
    int r = tg_auth_admit(c, id, &slot);
    if (r == TG_ELIMIT) {
        TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[TG_REJECT_max_connections], 1);
        tg_log(TG_LOG_INFO, "connection refused", TG_FB("audit", true),
               TG_FS("listener", cfg->name), TG_FS("tenant", id->tenant),
               TG_FS("client", tg_conn_peer(c)), TG_FS("reason", "too many connections"), TG_FEND);
        r = local_error(c, s, "NOPERM", "too many connections for this tenant");
        if (r == 0 && !s->authed && !s->backend_up) { /* first authentication: close */
            s->done = true;
            if (s->rq.outstanding == 0)
                tg_conn_finish(c);
            else
                s->quitting = true;
        }
        return r < 0 ? r : 1;
    }
    if (r < 0)
        return r;
    if (other) /* the old slot may be gone: what was counted on it is given back first... */
        give_inflight(s);
    if (other || slot != s->slot) /* what was prepaid belongs to the old slot's tenant */
        s->lease = (tg_tenant_lease){0};
    s->slot = slot;
    return 0;
}

/*
 * AUTH or HELLO ... AUTH with token: verification first; on failure nothing
 * changes. hello is NULL for AUTH.
 *
 * allow_scripts: when the backend connection must become the ACL user of a
 * tenant this listener has not provisioned yet, the request is left unconsumed
 * (RS_WAIT) and client input waits for the provisioning; then the same request
 * is judged again and lands here with s->replay, taking the identity verified
 * the first time. A failed provisioning answers it with an error and changes
 * nothing. Otherwise the switch is: backend RESET + AUTH as the new user, and
 * the client's answer (+OK, or the backend's HELLO reply) once the backend has
 * accepted it (after_login); should it refuse, the session ends.
 */
static int authenticate(tg_conn *c, rs_session *s, tg_slice token, const rs_hello *hello)
{
    int r;
    tg_identity id;
    bool replay = s->replay;
    if (replay) {
        s->replay = false;
        if (s->replay_status < 0)
            return local_error(c, s, "ERR", "the tenant's backend ACL user could not be set up");
        id = s->pend_id;
    } else {
        tg_jwt_result jr = tg_auth_tenant(c, (const char *)token.base, token.len, &id);
        if (jr == TG_JWT_PENDING)
            return RS_WAIT; /* the registry is being asked: this request is read again */
        if (jr != TG_JWT_OK)
            return local_error(c, s, "WRONGPASS", tg_jwt_result_str(jr));
    }
    if (pubsub_busy(s) && strcmp(id.tenant, s->id.tenant) != 0) {
        /* Confirmations and messages in flight carry the old prefix: keep it. */
        TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[TG_REJECT_policy], 1);
        tg_log(TG_LOG_INFO, "command rejected", TG_FB("audit", true),
               TG_FS("listener", s->rl->cfg->name), TG_FS("tenant", s->id.tenant),
               TG_FS("client", tg_conn_peer(c)),
               TG_FS("reason", "re-authentication while subscribed"), TG_FEND);
        return local_error(c, s, "NOPERM", "re-authentication while subscribed is not allowed");
    }
    bool other = s->authed && strcmp(id.tenant, s->id.tenant) != 0;
    /* allow_scripts: the backend connection must (become) this tenant's ACL user */
    bool relogin = s->rl->acl && strcmp(id.tenant, s->acl_tenant) != 0;
    if (relogin && !replay && !tg_redis_acl_known(s->rl->acl, id.tenant)) {
        s->pend_id = id;
        r = acl_start(c, s, id.tenant, RS_ACL_FOR_AUTH);
        if (r == TG_ENOMEM)
            return r;
        if (r < 0)
            return local_error(c, s, "ERR", "the tenant's backend ACL user could not be set up");
        return RS_WAIT;
    }
    /* After the provisioning wait, so a failed one leaves the slots as they were. */
    if ((r = count_tenant(c, s, &id)) != 0)
        return r < 0 ? r : 0;
    s->id = id;
    set_prefix(s);
    set_expiry(c, s);
    if (relogin)
        snprintf(s->acl_tenant, sizeof(s->acl_tenant), "%s", id.tenant);
    s->pending.len = 0;
    s->first_ok = false;
    if (!s->backend_up || relogin) { /* answered once the backend login is done */
        r = 0;
        if (hello) {
            r = build_hello(&s->pending, hello->ver, hello);
            s->pending_action = RS_FORWARD;
            s->pending_proto = (uint8_t)hello->ver;
            s->resp3 = hello->ver == 3;
        } else {
            if (s->resp3 && s->backend_up) /* RESET below makes the backend speak RESP2 */
                r = build_hello(&s->pending, 3, NULL);
            s->pending_action = RS_SWALLOW;
            s->pending_proto = 3;
            s->first_ok = true;
        }
        if (r < 0)
            return r;
        s->authed = true;
        if (!s->backend_up) { /* first authentication: connect, log in, then answer */
            s->connecting = true;
            return tg_conn_connect_backend(c);
        }
        /* a tenant switch with ACL users: nothing of the old session state, another user */
        s->in_multi = s->multi_dirty = false;
        return backend_reset(c, s, RS_SWALLOW);
    }
    r = 0;
    if (other) { /* leave nothing of the old tenant's session state on the backend */
        r = backend_reset(c, s, RS_SWALLOW);
        if (r == 0 && s->resp3 && !hello) {
            s->out.len = 0;
            r = build_hello(&s->out, 3, NULL);
            if (r == 0)
                r = tg_conn_send(c, TG_SIDE_BACKEND, s->out.data, s->out.len);
            if (r == 0)
                r = expect_proto(s, RS_SWALLOW, 3);
        }
        if (r < 0)
            return r;
        s->in_multi = s->multi_dirty = false;
    }
    s->authed = true;
    if (!hello)
        return local_str(c, s, "+OK\r\n");
    s->out.len = 0;
    r = build_hello(&s->out, hello->ver, hello);
    if (r == 0)
        r = tg_conn_send(c, TG_SIDE_BACKEND, s->out.data, s->out.len);
    if (r == 0)
        r = expect_proto(s, RS_FORWARD, hello->ver);
    s->resp3 = hello->ver == 3;
    return r;
}

/* AUTH <jwt> | AUTH <user> <jwt>. */
static int on_auth(tg_conn *c, rs_session *s, const tg_slice *argv, uint32_t argc)
{
    if (argc != 2 && argc != 3)
        return local_str(c, s, "-ERR wrong number of arguments for 'auth' command\r\n");
    return authenticate(c, s, argv[argc - 1], NULL);
}

static int on_hello(tg_conn *c, rs_session *s, const tg_slice *argv, uint32_t argc)
{
    rs_hello h;
    const char *err;
    if (parse_hello(argv, argc, &h, &err) < 0)
        return local_str(c, s, err);
    if (h.has_auth)
        return authenticate(c, s, h.token, &h);
    if (!s->authed)
        return local_str(c, s, noauth_hello);
    /* Authenticated HELLO [ver] [SETNAME]: the backend answers (server info). */
    int ver = h.ver ? h.ver : (s->resp3 ? 3 : 2);
    s->out.len = 0;
    int r = build_hello(&s->out, ver, &h);
    if (r == 0)
        r = tg_conn_send(c, TG_SIDE_BACKEND, s->out.data, s->out.len);
    if (r == 0)
        r = expect_proto(s, RS_FORWARD, ver);
    s->resp3 = ver == 3;
    return r;
}

/* RESET: emulated; the client is unauthenticated afterwards, as with Redis. */
static int on_reset(tg_conn *c, rs_session *s)
{
    s->authed = false;
    s->resp3 = false;
    s->in_multi = s->multi_dirty = false;
    tg_conn_set_expiry(c, 0);
    if (!s->backend_up)
        return local_str(c, s, "+RESET\r\n");
    return backend_reset(c, s, RS_AS_RESET);
}

static int on_quit(tg_conn *c, rs_session *s)
{
    s->done = true;
    if (s->rq.outstanding == 0) {
        int r = tg_conn_send(c, TG_SIDE_CLIENT, "+OK\r\n", 5);
        tg_conn_finish(c);
        return r;
    }
    s->quitting = true; /* after the backend replies still due */
    return local_str(c, s, "+OK\r\n");
}

/* ---- authenticated commands -------------------------------------------------- */

/* An audit line for a refused command: its name (sanitized), never its arguments. */
static void audit_line(tg_conn *c, rs_session *s, const tg_slice *argv, const char *reason)
{
    char cmd[32];
    size_t n = argv[0].len < sizeof(cmd) - 1 ? argv[0].len : sizeof(cmd) - 1;
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = argv[0].base[i];
        cmd[i] = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || ch == '-'
                     ? (char)ch
                     : '?';
    }
    cmd[n] = 0;
    tg_log(TG_LOG_INFO, "command rejected", TG_FB("audit", true),
           TG_FS("listener", s->rl->cfg->name), TG_FS("tenant", s->id.tenant),
           TG_FS("client", tg_conn_peer(c)), TG_FS("reason", reason), TG_FS("command", cmd),
           TG_FEND);
}

static void audit_denial(tg_conn *c, rs_session *s, const tg_slice *argv, const char *reason)
{
    TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[TG_REJECT_policy], 1);
    audit_line(c, s, argv, reason);
}

static int deny(tg_conn *c, rs_session *s, const tg_slice *argv, const char *reason)
{
    audit_denial(c, s, argv, reason);
    if (s->in_multi)
        s->multi_dirty = true;
    return local_error(c, s, "NOPERM", reason);
}

static tg_slice role_prefix(const rs_session *s, uint8_t role)
{
    if (role == TG_REDIS_ARG_PATTERN)
        return (tg_slice){s->glob, s->glob_len};
    if (role == TG_REDIS_ARG_KEY || role == TG_REDIS_ARG_CHANNEL ||
        role == TG_REDIS_ARG_KEY_PATTERN)
        return (tg_slice){(const uint8_t *)s->prefix, s->prefix_len};
    return (tg_slice){0};
}

/* Writes the verdict's append (bulk strings) into b; returns how many arguments it adds. */
static int write_append(rs_session *s, const tg_redis_verdict *v, tg_buf *b, uint32_t *added)
{
    tg_slice glob = {s->glob, s->glob_len}, star = tg_slice_str("*");
    int r = 0;
    *added = 0;
    if (v->append == TG_REDIS_APPEND_MATCH) {
        r = tg_resp_write_bulk(b, tg_slice_str("MATCH"));
        if (r == 0)
            r = tg_resp_write_bulk2(b, glob, star);
        *added = 2;
    } else if (v->append == TG_REDIS_APPEND_PATTERN) {
        r = tg_resp_write_bulk2(b, glob, star);
        *added = 1;
    }
    return r;
}

/* A request rebuilt whole (inline commands): copied into s->out. */
static int send_rebuilt(tg_conn *c, rs_session *s, const tg_slice *argv, uint32_t argc,
                        const tg_redis_verdict *v)
{
    uint32_t added;
    s->tmp.len = 0;
    int r = write_append(s, v, &s->tmp, &added);
    s->out.len = 0;
    if (r == 0)
        r = tg_resp_write_array(&s->out, (uint64_t)argc + added);
    for (uint32_t i = 0; r == 0 && i < argc; i++) {
        tg_slice p = role_prefix(s, v->roles[i]);
        r = p.len ? tg_resp_write_bulk2(&s->out, p, argv[i]) : tg_resp_write_bulk(&s->out, argv[i]);
    }
    if (r == 0)
        r = tg_buf_append(&s->out, s->tmp.data, s->tmp.len);
    return r < 0 ? r : tg_conn_send(c, TG_SIDE_BACKEND, s->out.data, s->out.len);
}

/*
 * Where send_prefixed's pieces go. A large request goes out as slices of the
 * input (forwarded, no copy) with the few copied bytes of new headers and
 * prefixes between them. A small one is assembled whole in `buf`: copying
 * forty bytes costs less than three iovecs, and consecutive small requests of
 * a pipeline then leave as one contiguous piece.
 */
typedef struct piece_sink {
    tg_conn *c;
    tg_buf *buf; /* NULL: scatter/gather straight to the backend */
} piece_sink;

#define RS_ASSEMBLE_MAX 1024 /* requests up to this size are assembled, not scattered */

/* Bytes that lie in the input. */
static int sink_input(piece_sink *k, const uint8_t *from, const uint8_t *to)
{
    if (to <= from)
        return 0;
    return k->buf ? tg_buf_append(k->buf, from, (size_t)(to - from))
                  : tg_conn_forward(k->c, TG_SIDE_BACKEND, from, (size_t)(to - from));
}

/* Bytes made here. */
static int sink_new(piece_sink *k, const void *p, size_t n)
{
    return k->buf ? tg_buf_append(k->buf, p, n) : tg_conn_send(k->c, TG_SIDE_BACKEND, p, n);
}

/*
 * A multibulk request with prefixes: for each prefixed argument a new header
 * and the prefix, the argument and everything else taken from the input
 * (see piece_sink for when that is a copy).
 */
static int send_prefixed(tg_conn *c, rs_session *s, const uint8_t *req, size_t req_len,
                         const tg_slice *argv, uint32_t argc, const tg_redis_verdict *v)
{
    const uint8_t *end = req + req_len;
    const uint8_t *count_end = memchr(req, '\n', req_len);
    if (!count_end)
        return TG_EPROTO;
    count_end++;
    uint32_t added;
    s->tmp.len = 0;
    int r = write_append(s, v, &s->tmp, &added);
    if (r < 0)
        return r;
    s->out.len = 0;
    piece_sink k = {c, req_len <= RS_ASSEMBLE_MAX ? &s->out : NULL};
    const uint8_t *run = req;
    if (added) {
        char hdr[32];
        int n = snprintf(hdr, sizeof(hdr), "*%u\r\n", argc + added);
        if ((r = sink_new(&k, hdr, (size_t)n)) < 0)
            return r;
        run = count_end;
    }
    for (uint32_t i = 0; i < argc; i++) {
        tg_slice p = role_prefix(s, v->roles[i]);
        if (!p.len)
            continue;
        const uint8_t *hdr_start = i == 0 ? count_end : argv[i - 1].base + argv[i - 1].len + 2;
        if ((r = sink_input(&k, run, hdr_start)) < 0)
            return r;
        char hdr[32 + RS_PREFIX_MAX * 2];
        size_t hl = tg_resp_bulk_header(hdr, p.len + argv[i].len);
        memcpy(hdr + hl, p.base, p.len);
        if ((r = sink_new(&k, hdr, hl + p.len)) < 0)
            return r;
        run = argv[i].base;
    }
    if ((r = sink_input(&k, run, end)) < 0)
        return r;
    if (s->tmp.len && (r = sink_new(&k, s->tmp.data, s->tmp.len)) < 0)
        return r;
    return k.buf ? tg_conn_send(c, TG_SIDE_BACKEND, s->out.data, s->out.len) : 0;
}

/* Index of a subscribe-family command name in sub_names, or -1. */
static int sub_index(const char *name)
{
    for (size_t i = 0; i < sizeof(sub_names) / sizeof(sub_names[0]); i++)
        if (strcmp(name, sub_names[i]) == 0)
            return (int)i;
    return -1;
}

/*
 * A RESP2 connection with subscriptions: Redis runs only the subscribe family,
 * PING, QUIT and RESET. Returns true when `name` is one the session must answer
 * itself with Redis's error (it handles it locally or tracks its state); other
 * commands are forwarded and Redis answers.
 */
static bool subscribed_refuses_locally(const rs_session *s, const char *name, bool local)
{
    if (s->resp3 || !pubsub_busy(s) || sub_index(name) >= 0 || strcmp(name, "ping") == 0 ||
        strcmp(name, "quit") == 0 || strcmp(name, "reset") == 0)
        return false;
    return local || strcmp(name, "multi") == 0 || strcmp(name, "exec") == 0 ||
           strcmp(name, "discard") == 0;
}

static int subscribed_error(tg_conn *c, rs_session *s, const char *name)
{
    char msg[160];
    int n = snprintf(msg, sizeof(msg),
                     "-ERR Can't execute '%.32s': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / "
                     "QUIT / RESET are allowed in this context\r\n",
                     name);
    return local_reply(c, s, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
}

/*
 * The tenant's rate and in-flight limits for one request of req_len bytes:
 * 0 when it may go, 1 when it was answered "-BUSY tenantgate: ..." (in order;
 * inside MULTI the transaction is then aborted, as for a denial). The session
 * goes on: the next request after a pause passes.
 */
static int over_limit(tg_conn *c, rs_session *s, const tg_slice *argv, size_t req_len)
{
    if (!s->slot)
        return 0;
    const char *reason;
    tg_reject_reason metric;
    tg_tenant_rate rate = tg_tenant_count_message(s->slot, &s->lease, s->batch_clock);
    if (rate == TG_TENANT_RATE_LIMITED) {
        reason = "rate limit exceeded, retry later";
        metric = TG_REJECT_rate_limit;
    } else if (rate == TG_TENANT_GLOBAL_LIMITED) {
        reason = "global rate limit exceeded, retry later";
        metric = TG_REJECT_global_rate_limit;
    } else if (tg_tenant_count_inflight_full(s->slot, req_len + s->inflight_sent)) {
        reason = "too many request bytes in flight, retry later";
        metric = TG_REJECT_inflight_bytes;
    } else {
        return 0;
    }
    TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[metric], 1);
    int64_t now = (int64_t)time(NULL);
    if (now != s->limit_logged_s) { /* a flood of refusals must not flood the log */
        s->limit_logged_s = now;
        audit_line(c, s, argv, reason);
    }
    if (s->in_multi)
        s->multi_dirty = true;
    int r = local_error(c, s, "BUSY", reason);
    return r < 0 ? r : 1;
}

static int on_command(tg_conn *c, rs_session *s, const uint8_t *req, size_t req_len,
                      const tg_slice *argv, uint32_t argc)
{
    tg_redis_judge_opts o = {.allow_scripts = s->rl->acl != NULL,
                             .prefix = {(const uint8_t *)s->prefix, s->prefix_len}};
    tg_redis_verdict v;
    tg_redis_verdict_init(&v, s->roles, s->argv_cap);
    tg_redis_verdict_kind k = tg_redis_judge(s->table, argv, argc, &o, &v);
    if (k == TG_REDIS_DENY)
        return deny(c, s, argv, v.reason);
    if (v.cmd && subscribed_refuses_locally(s, v.cmd->name, k == TG_REDIS_LOCAL))
        return subscribed_error(c, s, v.cmd->name);
    if (k == TG_REDIS_LOCAL) {
        if (v.local == TG_REDIS_LOCAL_QUIT)
            return on_quit(c, s);
        if (v.local == TG_REDIS_LOCAL_RESET)
            return on_reset(c, s);
        if (s->in_multi)
            return deny(c, s, argv, "command not allowed inside MULTI");
        switch (v.local) {
        case TG_REDIS_LOCAL_AUTH:
            return on_auth(c, s, argv, argc);
        case TG_REDIS_LOCAL_HELLO:
            return on_hello(c, s, argv, argc);
        case TG_REDIS_LOCAL_SELECT:
            return local_str(c, s, "+OK\r\n");
        default:
            return deny(c, s, argv, "command is not supported");
        }
    }
    if (s->in_multi && v.reply != TG_REDIS_REPLY_NONE)
        return deny(c, s, argv, "this command is not supported inside MULTI yet");
    int sub = v.reply == TG_REDIS_REPLY_PUBSUB && v.cmd ? sub_index(v.cmd->name) : -1;
    if (v.reply == TG_REDIS_REPLY_PUBSUB && sub < 0)
        return deny(c, s, argv, "command is not supported");
    const char *name0 = v.cmd ? v.cmd->name : "";
    if (strcmp(name0, "multi") != 0 && strcmp(name0, "exec") != 0 &&
        strcmp(name0, "discard") != 0) { /* transactions always end as asked */
        int lr = over_limit(c, s, argv, req_len);
        if (lr != 0)
            return lr < 0 ? lr : 0;
    }

    rs_action action = v.reply == TG_REDIS_REPLY_NONE ? RS_FORWARD
                       : sub >= 0                     ? RS_PUBSUB
                                                      : RS_STRIP;
    const char *name = v.cmd ? v.cmd->name : "";
    int r;
    if (!strchr("mde", name[0])) {
        /* not MULTI, DISCARD or EXEC: the common case skips the comparisons below */
    } else if (strcmp(name, "multi") == 0) {
        if (!s->in_multi)
            s->multi_dirty = false;
        s->in_multi = true;
    } else if (strcmp(name, "discard") == 0) {
        s->in_multi = s->multi_dirty = false;
    } else if (strcmp(name, "exec") == 0) {
        bool dirty = s->in_multi && s->multi_dirty;
        s->in_multi = s->multi_dirty = false;
        if (dirty) { /* nothing queued runs: the backend discards, the client sees EXECABORT */
            tg_slice d = tg_slice_str("DISCARD");
            TG_STAT_ADD(tg_conn_stats(c)->messages_rewritten, 1);
            return backend_request(c, s, &d, 1, RS_EXECABORT);
        }
    }
    bool prefixed = v.nkeys || v.nchannels || v.npatterns || v.append != TG_REDIS_APPEND_NONE;
    if (req[0] != '*')
        r = send_rebuilt(c, s, argv, argc, &v);
    else if (prefixed)
        r = send_prefixed(c, s, req, req_len, argv, argc, &v);
    else
        r = tg_conn_forward(c, TG_SIDE_BACKEND, req, req_len);
    if (r < 0)
        return r;
    TG_STAT_ADD(tg_conn_stats(c)->messages_forwarded, 1);
    if (prefixed)
        TG_STAT_ADD(tg_conn_stats(c)->messages_rewritten, 1);
    if ((r = expect(s, action, v.reply)) < 0)
        return r;
    rs_expect *e = last_expect(s);
    if (s->slot && tg_tenant_count_inflight_limited(s->slot)) {
        e->inflight = req_len;
        s->inflight_sent += req_len;
    }
    if (sub < 0)
        return 0;
    e->sub = (uint8_t)(sub + 1);
    e->left = argc - 1;
    e->all = argc == 1;
    s->pubsub_pending++;
    return 0;
}

/* Before authentication: only AUTH, HELLO ... AUTH, RESET and QUIT. */
static int on_unauthenticated(tg_conn *c, rs_session *s, const tg_slice *argv, uint32_t argc)
{
    if (arg_is(argv[0], "AUTH"))
        return on_auth(c, s, argv, argc);
    if (arg_is(argv[0], "HELLO"))
        return on_hello(c, s, argv, argc);
    if (arg_is(argv[0], "QUIT"))
        return on_quit(c, s);
    if (arg_is(argv[0], "RESET"))
        return on_reset(c, s);
    TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[TG_REJECT_unauthenticated], 1);
    return local_str(c, s, "-NOAUTH Authentication required.\r\n");
}

static int grow_argv(rs_session *s, uint32_t want)
{
    uint32_t cap = s->argv_cap ? s->argv_cap : 64;
    while (cap < want)
        cap *= 2;
    tg_slice *a = realloc(s->argv, cap * sizeof(*a));
    if (!a)
        return TG_ENOMEM;
    s->argv = a;
    uint8_t *ro = realloc(s->roles, cap);
    if (!ro)
        return TG_ENOMEM;
    s->roles = ro;
    s->argv_cap = cap;
    return 0;
}

/* A malformed or oversized request: Redis's answer, then close. */
static ssize_t protocol_error(tg_conn *c, rs_session *s, ssize_t err, size_t len)
{
    TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[err == TG_ETOOBIG ? TG_REJECT_too_large
                                                                      : TG_REJECT_malformed],
                1);
    const char *msg = err == TG_ETOOBIG ? "-ERR Protocol error: request too large\r\n"
                                        : "-ERR Protocol error: invalid request\r\n";
    s->input_closed = true;
    int r = local_str(c, s, msg);
    /* Commands pipelined before the bad one still get their replies, then the error, as Redis
     * does; the connection closes once those have been relayed. */
    if (s->rq.outstanding == 0) {
        s->done = true;
        tg_conn_finish(c);
    } else {
        s->quitting = true;
    }
    return r < 0 ? r : (ssize_t)len;
}

static ssize_t relay_client(tg_conn *c, rs_session *s, const uint8_t *data, size_t len)
{
    size_t off = 0;
    if (!s->argv_cap && grow_argv(s, 64) < 0)
        return TG_ENOMEM;
    while (off < len && !s->done && !s->input_closed && !s->connecting && !s->acl_wait) {
        tg_resp_limits lim = s->authed ? TG_RESP_LIMITS_DEFAULT : TG_RESP_LIMITS_PREAUTH;
        uint32_t argc = 0;
        ssize_t n =
            tg_resp_decode_request(data + off, len - off, &lim, s->argv, s->argv_cap, &argc);
        if (n == TG_ELIMIT) {
            if (grow_argv(s, argc) < 0)
                return TG_ENOMEM;
            continue;
        }
        if (n == TG_NEED_MORE)
            break;
        if (n < 0)
            return protocol_error(c, s, n, len);
        int r = 0;
        if (argc > 0)
            r = s->authed ? on_command(c, s, data + off, (size_t)n, s->argv, argc)
                          : on_unauthenticated(c, s, s->argv, argc);
        s->replay = false; /* it applies to the request that waited, the first one, only */
        if (r < 0)
            return r;
        if (r == RS_WAIT) /* left in the input: ACL provisioning or a registry lookup */
            break;
        off += (size_t)n;
    }
    if (s->done || s->input_closed)
        return (ssize_t)len;
    return (ssize_t)off;
}

/* ---- backend replies ------------------------------------------------------------ */

static const tg_resp_limits reply_limits = TG_RESP_LIMITS_DEFAULT;

/* Copies the complete value at p[*off] into b. */
static int copy_value(const uint8_t *p, size_t len, size_t *off, tg_buf *b)
{
    ssize_t n = tg_resp_reply_size(p + *off, len - *off, &reply_limits, NULL);
    if (n <= 0)
        return TG_EPROTO;
    int r = b ? tg_buf_append(b, p + *off, (size_t)n) : 0;
    *off += (size_t)n;
    return r;
}

static int next_elem(const uint8_t *p, size_t len, size_t *off, tg_resp_elem *e)
{
    ssize_t n = tg_resp_next(p + *off, len - *off, e);
    if (n <= 0)
        return TG_EPROTO;
    *off += (size_t)n;
    return 0;
}

/* Reads a key at p[*off]: 1 and its stripped name written to b, 0 when foreign, or < 0. */
static int strip_key(rs_session *s, const uint8_t *p, size_t len, size_t *off, tg_buf *b)
{
    size_t start = *off;
    tg_resp_elem e;
    if (p[start] != '$' && p[start] != '+') { /* not a name: skip it, foreign */
        int r = copy_value(p, len, off, NULL);
        return r < 0 ? r : 0;
    }
    int r = next_elem(p, len, off, &e);
    if (r < 0)
        return r;
    tg_slice rest;
    if (e.is_null || !tg_redis_strip_prefix(
                         e.data, (tg_slice){(const uint8_t *)s->prefix, s->prefix_len}, &rest))
        return 0;
    r = tg_resp_write_bulk(b, rest);
    return r < 0 ? r : 1;
}

static bool is_aggregate(const tg_resp_elem *e)
{
    return (e->type == TG_RESP_ARRAY || e->type == TG_RESP_SET || e->type == TG_RESP_MAP) &&
           !e->streamed && !e->is_null;
}

static int write_header(tg_buf *b, tg_resp_type t, uint64_t n)
{
    if (t == TG_RESP_SET)
        return tg_resp_write_set(b, n);
    if (t == TG_RESP_MAP)
        return tg_resp_write_map(b, n);
    return tg_resp_write_array(b, n);
}

/* Array of keys at p[*off] -> header + stripped keys into b (foreign ones dropped). */
static int strip_key_list(rs_session *s, const uint8_t *p, size_t len, size_t *off, tg_buf *b,
                          tg_buf *tmp)
{
    tg_resp_elem e;
    int r = next_elem(p, len, off, &e);
    if (r < 0)
        return r;
    if (!is_aggregate(&e) || e.type == TG_RESP_MAP)
        return TG_EPROTO;
    tmp->len = 0;
    uint64_t kept = 0;
    for (uint64_t i = 0; i < e.count; i++) {
        r = strip_key(s, p, len, off, tmp);
        if (r < 0)
            return r;
        kept += (uint64_t)r;
    }
    r = write_header(b, e.type, kept);
    return r < 0 ? r : tg_buf_append(b, tmp->data, tmp->len);
}

/*
 * Rebuilds the reply p[0..len) of kind `kind` into s->out with prefixes
 * stripped. Returns 0, 1 when the reply is to be forwarded as is (errors,
 * nulls), or < 0 (the reply cannot be trusted).
 */
static int strip_reply(rs_session *s, tg_redis_reply_kind kind, const uint8_t *p, size_t len)
{
    size_t off = 0;
    tg_buf *out = &s->out;
    out->len = 0;
    int r;
    /* Attributes before the value: kept as they are. */
    while (off < len && p[off] == '|') {
        tg_resp_elem a;
        if ((r = next_elem(p, len, &off, &a)) < 0)
            return r;
        if ((r = tg_buf_append(out, p + off - a.size, a.size)) < 0)
            return r;
        for (uint64_t i = 0; i < 2 * a.count; i++) {
            size_t at = off;
            if ((r = copy_value(p, len, &off, NULL)) < 0)
                return r;
            if ((r = tg_buf_append(out, p + at, off - at)) < 0)
                return r;
        }
    }
    tg_resp_elem top;
    size_t body = off;
    if ((r = next_elem(p, len, &off, &top)) < 0)
        return r;
    if (top.type == TG_RESP_ERROR || top.type == TG_RESP_BLOB_ERROR || top.is_null)
        return 1;
    if (!is_aggregate(&top))
        return TG_EPROTO;
    switch (kind) {
    case TG_REDIS_REPLY_KEYS:
        off = body;
        return strip_key_list(s, p, len, &off, out, &s->tmp);
    case TG_REDIS_REPLY_SCAN: {
        if (top.count != 2)
            return TG_EPROTO;
        if ((r = tg_resp_write_array(out, 2)) < 0 || (r = copy_value(p, len, &off, out)) < 0)
            return r;
        return strip_key_list(s, p, len, &off, out, &s->tmp);
    }
    case TG_REDIS_REPLY_FIRST_KEY: {
        if (top.count < 1)
            return TG_EPROTO;
        if ((r = write_header(out, top.type, top.count)) < 0)
            return r;
        r = strip_key(s, p, len, &off, out);
        if (r <= 0)
            return r < 0 ? r : TG_EPROTO;
        for (uint64_t i = 1; i < top.count; i++)
            if ((r = copy_value(p, len, &off, out)) < 0)
                return r;
        return 0;
    }
    case TG_REDIS_REPLY_XREAD: {
        /* RESP2: [[stream, entries], ...]; RESP3: %{stream: entries}. */
        tg_buf *tmp = &s->tmp;
        tmp->len = 0;
        uint64_t kept = 0;
        for (uint64_t i = 0; i < top.count; i++) {
            if (top.type != TG_RESP_MAP) {
                tg_resp_elem pair;
                if ((r = next_elem(p, len, &off, &pair)) < 0)
                    return r;
                if (!is_aggregate(&pair) || pair.count != 2)
                    return TG_EPROTO;
            }
            size_t at = tmp->len;
            if (top.type != TG_RESP_MAP && (r = tg_resp_write_array(tmp, 2)) < 0)
                return r;
            int k = strip_key(s, p, len, &off, tmp);
            if (k < 0)
                return k;
            if ((r = copy_value(p, len, &off, k ? tmp : NULL)) < 0)
                return r;
            if (k)
                kept++;
            else
                tmp->len = at; /* a foreign stream: dropped */
        }
        if ((r = write_header(out, top.type, kept)) < 0)
            return r;
        return tg_buf_append(out, tmp->data, tmp->len);
    }
    case TG_REDIS_REPLY_CHANNELS:
        off = body;
        return strip_key_list(s, p, len, &off, out, &s->tmp);
    case TG_REDIS_REPLY_NUMSUB: {
        /* RESP2: [channel, count, ...]; RESP3 may be %{channel: count}. */
        if (top.type == TG_RESP_SET || (top.type == TG_RESP_ARRAY && top.count % 2))
            return TG_EPROTO;
        uint64_t pairs = top.type == TG_RESP_MAP ? top.count : top.count / 2;
        tg_buf *tmp = &s->tmp;
        tmp->len = 0;
        uint64_t kept = 0;
        for (uint64_t i = 0; i < pairs; i++) {
            int k = strip_key(s, p, len, &off, tmp);
            if (k < 0)
                return k;
            if ((r = copy_value(p, len, &off, k ? tmp : NULL)) < 0)
                return r;
            kept += (uint64_t)k;
        }
        if ((r = write_header(out, top.type, top.type == TG_RESP_MAP ? kept : 2 * kept)) < 0)
            return r;
        return tg_buf_append(out, tmp->data, tmp->len);
    }
    default:
        return TG_EPROTO;
    }
}

/* ---- the command table from the backend ------------------------------------------------ */

/*
 * Asks the backend for its command table when no session of this listener has
 * (one at a time; see the top comment). Called right after the service AUTH,
 * before anything of the client's, so the reply is RESP2.
 */
static int maybe_fetch_table(tg_conn *c, rs_session *s)
{
    int idle = RS_FETCH_IDLE;
    if (atomic_load_explicit(&s->rl->fetch, memory_order_relaxed) != RS_FETCH_IDLE ||
        !atomic_compare_exchange_strong_explicit(&s->rl->fetch, &idle, RS_FETCH_RUNNING,
                                                 memory_order_acq_rel, memory_order_relaxed))
        return 0;
    s->fetching = true;
    tg_slice argv[1] = {tg_slice_str("COMMAND")};
    return backend_request(c, s, argv, 1, RS_TABLE);
}

/*
 * The backend's COMMAND reply p[0..n): a table for the listener's next
 * sessions, or the built-in one kept. Either way the fetch is over and one
 * line says which table new sessions use. Costs this worker one parse of the
 * reply (about 1 ms for Redis 7.0's 90 KB), once per listener generation.
 */
static void load_table(tg_conn *c, rs_session *s, const uint8_t *p, size_t n)
{
    rs_listener *rl = s->rl;
    tg_redis_table *t = NULL;
    tg_redis_cmdinfo_stats st = {0};
    char why[128];
    int r = tg_redis_cmdinfo_parse(p, n, rl->builtin, &t, &st, why, sizeof(why));
    s->fetching = false;
    if (r == TG_ENOMEM) { /* not the backend's fault: the next backend connection asks again */
        tg_log(TG_LOG_WARN, "redis command table not loaded", TG_FS("listener", rl->cfg->name),
               TG_FS("reason", "out of memory"), TG_FEND);
        atomic_store_explicit(&rl->fetch, RS_FETCH_IDLE, memory_order_release);
        return;
    }
    if (r == 0) {
        atomic_store_explicit(&rl->fetched, t, memory_order_release);
        tg_log(TG_LOG_INFO, "redis command table loaded", TG_FS("listener", rl->cfg->name),
               TG_FS("source", "backend"), TG_FI("commands", st.commands),
               TG_FI("key_specs", st.keyspecs), TG_FI("differing_from_builtin", st.differing),
               TG_FI("refused_unknown", st.unvetted), TG_FEND);
        tg_metrics_set_command_table(tg_conn_stats(c), st.commands, true);
    } else {
        tg_log(r == TG_ENOTFOUND ? TG_LOG_INFO : TG_LOG_WARN, "redis command table loaded",
               TG_FS("listener", rl->cfg->name), TG_FS("source", "builtin"),
               TG_FI("commands", tg_redis_table_count(rl->builtin)),
               TG_FS("reason", r == TG_ENOTFOUND ? "the backend has no key specs"
                                                 : "the backend's COMMAND reply is not usable"),
               TG_FS("detail", why), TG_FI("reply_bytes", n), TG_FEND);
        tg_metrics_set_command_table(tg_conn_stats(c), tg_redis_table_count(rl->builtin), false);
    }
    atomic_store_explicit(&rl->fetch, RS_FETCH_DONE, memory_order_release);
}

/* ---- pub/sub messages and confirmations ------------------------------------------------- */

/* What a backend value is, for the pub/sub sorting (see the top comment). */
typedef enum { RS_VAL_REPLY, RS_VAL_MESSAGE, RS_VAL_CONFIRM, RS_VAL_OTHER_PUSH } rs_val;

/*
 * Sorts the complete value p[0..len) of type `type`. *sub gets the
 * sub_names index of a confirmation.
 */
static rs_val classify(const rs_session *s, const uint8_t *p, size_t len, tg_resp_type type,
                       int *sub)
{
    bool head_pubsub = s->fifo_len && s->fifo[s->fifo_head].action == RS_PUBSUB;
    bool subscribed = s->r_chan || s->r_pat || s->r_shard;
    if (type == TG_RESP_ARRAY && (s->r_resp3 || (!subscribed && !head_pubsub)))
        return RS_VAL_REPLY; /* RESP2 pub/sub arrays exist only around subscriptions */
    if (type != TG_RESP_ARRAY && type != TG_RESP_PUSH)
        return RS_VAL_REPLY;
    bool push = type == TG_RESP_PUSH;
    size_t off = 0;
    tg_resp_elem top, kind;
    if (p[0] == '|' || next_elem(p, len, &off, &top) < 0 || top.streamed || top.is_null ||
        top.count < 1 || next_elem(p, len, &off, &kind) < 0 ||
        (kind.type != TG_RESP_BULK && kind.type != TG_RESP_SIMPLE) || kind.is_null)
        return push ? RS_VAL_OTHER_PUSH : RS_VAL_REPLY;
    int ci, pi;
    if (!tg_redis_push_roles(kind.data, &ci, &pi))
        return push ? RS_VAL_OTHER_PUSH : RS_VAL_REPLY;
    for (size_t i = 0; i < sizeof(sub_names) / sizeof(sub_names[0]); i++) {
        if (tg_slice_eq_str(kind.data, sub_names[i])) {
            *sub = (int)i;
            return top.count == 3 ? RS_VAL_CONFIRM : (push ? RS_VAL_OTHER_PUSH : RS_VAL_REPLY);
        }
    }
    /* message / pmessage / smessage: in RESP2 only while subscribed (else a plain array) */
    if (!push && !subscribed)
        return RS_VAL_REPLY;
    return RS_VAL_MESSAGE;
}

/*
 * Rebuilds the pub/sub array or push p[0..len) into s->out with the names at
 * element ci (channel, prefix) and pi (pattern, escaped prefix) stripped; a
 * null name is kept. Returns 1, 0 when a name is not the tenant's, or < 0.
 */
static int strip_pubsub(rs_session *s, const uint8_t *p, size_t len, int ci, int pi)
{
    size_t off = 0;
    tg_resp_elem top;
    tg_buf *out = &s->out;
    out->len = 0;
    int r = next_elem(p, len, &off, &top);
    if (r < 0)
        return r;
    r = top.type == TG_RESP_PUSH ? tg_resp_write_push(out, top.count)
                                 : tg_resp_write_array(out, top.count);
    for (uint64_t i = 0; r == 0 && i < top.count; i++) {
        size_t at = off;
        if ((int64_t)i != ci && (int64_t)i != pi) {
            r = copy_value(p, len, &off, out);
            continue;
        }
        tg_resp_elem e;
        if ((r = next_elem(p, len, &off, &e)) < 0)
            return r;
        if (e.is_null && e.type != TG_RESP_ARRAY) {
            r = tg_buf_append(out, p + at, off - at);
            continue;
        }
        tg_slice pre = (int64_t)i == pi ? (tg_slice){s->glob, s->glob_len}
                                        : (tg_slice){(const uint8_t *)s->prefix, s->prefix_len};
        tg_slice rest;
        if ((e.type != TG_RESP_BULK && e.type != TG_RESP_SIMPLE) ||
            !tg_redis_strip_prefix(e.data, pre, &rest))
            return 0;
        r = tg_resp_write_bulk(out, rest);
    }
    return r < 0 ? r : 1;
}

/* A message: stripped and sent at once, or dropped (foreign name, RESET in flight). */
static int on_message(tg_conn *c, rs_session *s, const uint8_t *p, size_t n)
{
    if (s->resets_pending) /* the client asked for RESET: what is still in flight is dropped */
        return 0;
    size_t off = 0;
    tg_resp_elem top, kind;
    int ci, pi;
    if (next_elem(p, n, &off, &top) < 0 || next_elem(p, n, &off, &kind) < 0)
        return TG_EPROTO;
    (void)tg_redis_push_roles(kind.data, &ci, &pi);
    int r = strip_pubsub(s, p, n, ci, pi);
    if (r == 0) {
        tg_log(TG_LOG_DEBUG, "pub/sub message outside the tenant's prefix dropped",
               TG_FS("listener", s->rl->cfg->name), TG_FS("tenant", s->id.tenant),
               TG_FI("length", n), TG_FEND);
        return 0;
    }
    return r < 0 ? r : tg_conn_send(c, TG_SIDE_CLIENT, s->out.data, s->out.len);
}

static int emit_due(tg_conn *c, rs_session *s)
{
    int r = tg_reply_queue_backend_done(&s->rq, emit_client, c);
    if (r == 0 && s->quitting && s->rq.outstanding == 0) {
        s->quitting = false;
        tg_conn_finish(c);
    }
    return r;
}

static int on_reply(tg_conn *c, rs_session *s, rs_expect e, const uint8_t *p, size_t n,
                    tg_resp_type type)
{
    bool is_err = type == TG_RESP_ERROR || type == TG_RESP_BLOB_ERROR;
    int r = 0;
    if (e.proto && !is_err)
        s->r_resp3 = e.proto == 3;
    if (e.reset) { /* the backend RESET unsubscribed everything, without confirmations */
        s->r_chan = s->r_pat = s->r_shard = 0;
        s->resets_pending--;
    }
    switch ((rs_action)e.action) {
    case RS_PUBSUB: /* an error instead of confirmations: the only other answer */
        if (!is_err)
            return TG_EPROTO;
        /* fall through */
    case RS_FORWARD:
        r = tg_conn_forward(c, TG_SIDE_CLIENT, p, n);
        break;
    case RS_STRIP:
        r = strip_reply(s, (tg_redis_reply_kind)e.kind, p, n);
        if (r == 1)
            r = tg_conn_forward(c, TG_SIDE_CLIENT, p, n);
        else if (r == 0)
            r = tg_conn_send(c, TG_SIDE_CLIENT, s->out.data, s->out.len);
        else if (r != TG_ENOMEM) {
            TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[TG_REJECT_policy], 1);
            static const char e2[] =
                "-ERR tenantgate: reply held a key outside the tenant's keyspace\r\n";
            r = tg_conn_send(c, TG_SIDE_CLIENT, e2, sizeof(e2) - 1);
        }
        break;
    case RS_SWALLOW:
        break;
    case RS_SWALLOW_AUTH:
        if (is_err)
            return login_failed(c, s);
        break;
    case RS_ACL_AUTH:
        if (is_err) {
            r = acl_login_refused(c, s);
            if (r < 0 || s->done)
                return r;
            break; /* client input keeps waiting for the new login */
        }
        s->acl_wait = false;
        s->acl_retried = false;
        r = after_login(c, s);
        tg_conn_redispatch(c, TG_SIDE_CLIENT); /* commands pipelined behind the AUTH */
        break;
    case RS_AS_RESET:
        r = tg_conn_send(c, TG_SIDE_CLIENT, "+RESET\r\n", 8);
        break;
    case RS_TABLE:
        load_table(c, s, p, n);
        break;
    case RS_EXECABORT: {
        static const char msg[] =
            "-EXECABORT Transaction discarded because of previous errors.\r\n";
        r = tg_conn_send(c, TG_SIDE_CLIENT, msg, sizeof(msg) - 1);
        break;
    }
    }
    return r < 0 ? r : emit_due(c, s);
}

static void fifo_pop(rs_session *s)
{
    if (s->fifo[s->fifo_head].action == RS_PUBSUB)
        s->pubsub_pending--;
    s->inflight_answered += s->fifo[s->fifo_head].inflight;
    s->fifo_head = (s->fifo_head + 1) % s->fifo_cap;
    s->fifo_len--;
}

/*
 * A subscription confirmation p[0..n) for sub_names[sub]: the backend's counts
 * are updated from its last element; it is the FIFO head's (partial) reply, or,
 * unasked for, dropped.
 */
static int on_confirm(tg_conn *c, rs_session *s, int sub, const uint8_t *p, size_t n)
{
    size_t off = 0;
    tg_resp_elem top, cnt;
    int r;
    if ((r = next_elem(p, n, &off, &top)) < 0 || (r = copy_value(p, n, &off, NULL)) < 0 ||
        (r = copy_value(p, n, &off, NULL)) < 0 || (r = next_elem(p, n, &off, &cnt)) < 0)
        return r;
    if (cnt.type != TG_RESP_INTEGER || cnt.integer < 0)
        return TG_EPROTO;
    uint64_t count = (uint64_t)cnt.integer, before;
    int family = sub / 2;
    /* SUBSCRIBE and PSUBSCRIBE count channels + patterns; SSUBSCRIBE shard channels only. */
    if (family == RS_SUB_SHARD) {
        before = s->r_shard;
        s->r_shard = count;
    } else {
        uint64_t *mine = family == RS_SUB_CHANNEL ? &s->r_chan : &s->r_pat;
        uint64_t other = family == RS_SUB_CHANNEL ? s->r_pat : s->r_chan;
        if (count < other)
            return TG_EPROTO;
        before = *mine;
        *mine = count - other;
    }
    rs_expect *e = s->fifo_len ? &s->fifo[s->fifo_head] : NULL;
    if (!e || e->action != RS_PUBSUB) {
        tg_log(TG_LOG_DEBUG, "unrequested pub/sub confirmation dropped",
               TG_FS("listener", s->rl->cfg->name), TG_FS("tenant", s->id.tenant), TG_FEND);
        return 0;
    }
    if (e->sub != sub + 1)
        return TG_EPROTO;
    if (e->all) { /* one per subscription the backend had, or one with a null name */
        e->all = false;
        e->left = before > 1 ? (uint32_t)(before > UINT32_MAX ? UINT32_MAX : before) : 1;
    }
    int ci, pi;
    (void)tg_redis_push_roles(tg_slice_str(sub_names[sub]), &ci, &pi);
    r = strip_pubsub(s, p, n, ci, pi);
    if (r == 0) { /* cannot be dropped without losing the reply order: end the session */
        tg_log(TG_LOG_ERROR, "pub/sub confirmation outside the tenant's prefix",
               TG_FS("listener", s->rl->cfg->name), TG_FS("tenant", s->id.tenant), TG_FEND);
        return TG_EPROTO;
    }
    if (r < 0 || (r = tg_conn_send(c, TG_SIDE_CLIENT, s->out.data, s->out.len)) < 0)
        return r;
    if (--e->left)
        return 0;
    fifo_pop(s);
    return emit_due(c, s);
}

static ssize_t relay_backend(tg_conn *c, rs_session *s, const uint8_t *data, size_t len)
{
    size_t off = 0;
    while (off < len && !s->done) {
        tg_resp_type type;
        ssize_t n = tg_resp_reply_size(data + off, len - off, &reply_limits, &type);
        if (n == TG_NEED_MORE)
            break;
        if (n < 0)
            return n;
        int sub = -1, r = 0;
        switch (classify(s, data + off, (size_t)n, type, &sub)) {
        case RS_VAL_MESSAGE:
            r = on_message(c, s, data + off, (size_t)n);
            break;
        case RS_VAL_CONFIRM:
            r = on_confirm(c, s, sub, data + off, (size_t)n);
            break;
        case RS_VAL_OTHER_PUSH: /* out of band, nothing the client asked for: dropped */
            break;
        case RS_VAL_REPLY: {
            if (s->fifo_len == 0)
                return TG_EPROTO; /* a reply nobody asked for */
            rs_expect e = s->fifo[s->fifo_head];
            fifo_pop(s);
            r = on_reply(c, s, e, data + off, (size_t)n, type);
            break;
        }
        }
        if (r < 0)
            return r;
        off += (size_t)n;
    }
    if (s->done)
        return (ssize_t)len;
    return (ssize_t)off;
}

/* ---- plumbing ------------------------------------------------------------- */

static int rs_open(tg_conn *c, void *session)
{
    rs_session *s = session;
    s->rl = tg_conn_lrt_state(c);
    const tg_redis_table *fetched = atomic_load_explicit(&s->rl->fetched, memory_order_acquire);
    s->table = fetched ? fetched : s->rl->builtin;
    tg_reply_queue_init(&s->rq);
    return 0;
}

static int rs_backend_ready(tg_conn *c, void *session)
{
    rs_session *s = session;
    s->backend_up = true;
    s->connecting = false;
    tg_conn_established(c);
    if (s->rl->acl) /* after_login follows the ACL user's AUTH reply (RS_ACL_AUTH) */
        return acl_login(c, s);
    int r = backend_auth(c, s);
    if (r == 0)
        r = maybe_fetch_table(c, s);
    if (r == 0)
        r = after_login(c, s);
    tg_conn_redispatch(c, TG_SIDE_CLIENT); /* commands pipelined behind the AUTH */
    return r;
}

static ssize_t rs_data(tg_conn *c, void *session, tg_side_id from, const uint8_t *data, size_t len)
{
    rs_session *s = session;
    ssize_t n;
    if (from == TG_SIDE_CLIENT) {
        tg_tenant_clock clock = TG_TENANT_CLOCK_UNREAD; /* its requests arrived together */
        s->batch_clock = &clock;
        n = s->done ? (ssize_t)len : relay_client(c, s, data, len);
        s->batch_clock = NULL;
    } else {
        n = !s->backend_up || s->done ? (ssize_t)len : relay_backend(c, s, data, len);
    }
    if (s->inflight_sent | s->inflight_answered)
        inflight_sync(s);
    return n;
}

static void rs_expire(tg_conn *c, void *session)
{
    rs_session *s = session;
    static const char msg[] = "-ERR tenantgate: token expired\r\n";
    s->done = true;
    if (tg_conn_send(c, TG_SIDE_CLIENT, msg, sizeof(msg) - 1) < 0) {
        tg_conn_abort(c, "out of memory");
        return;
    }
    tg_conn_finish(c);
}

static void rs_close(tg_conn *c, void *session)
{
    rs_session *s = session;
    if (s->fetching) /* the reply never came: the next backend connection asks again */
        atomic_store_explicit(&s->rl->fetch, RS_FETCH_IDLE, memory_order_release);
    give_inflight(s); /* the slot itself is proxy/auth.c's, given back after this */
    tg_reply_queue_free(&s->rq);
    tg_buf_free(&s->pending);
    tg_buf_free(&s->out);
    tg_buf_free(&s->tmp);
    free(s->argv);
    free(s->roles);
    free(s->fifo);
    if (s->acl_req) /* its callback must not reach a freed connection */
        tg_redis_acl_cancel(s->acl_req);
    s->acl_req = NULL;
    (void)c;
}

/* The tenant registry ends the session: an error reply, then close (as CLIENT KILL would,
 * but saying why). */
static void rs_kick(tg_conn *c, void *session, tg_kick_reason reason)
{
    rs_session *s = session;
    char msg[96];
    int n = snprintf(msg, sizeof(msg), "-ERR tenantgate: %s\r\n", tg_kick_reason_str(reason));
    s->done = true;
    if (tg_conn_send(c, TG_SIDE_CLIENT, msg, (size_t)n) < 0) {
        tg_conn_abort(c, "out of memory");
        return;
    }
    tg_conn_finish(c);
}

const tg_protocol_ops tg_redis_protocol = {
    .name = "redis",
    .session_size = sizeof(rs_session),
    .own_tls_upgrade = false,
    .listener_init = rs_listener_init,
    .listener_free = rs_listener_free,
    .on_open = rs_open,
    .on_backend_ready = rs_backend_ready,
    .on_data = rs_data,
    .on_eof = NULL,
    .on_expire = rs_expire,
    .on_kick = rs_kick,
    .on_close = rs_close,
};
