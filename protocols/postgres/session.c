/*
 * protocol: postgres -- the session state machine.
 *
 *   STARTUP --SSLRequest--> 'S' + TLS | 'N'          CancelRequest --> CANCEL --> backend, close
 *      | StartupMessage (params filtered, options checked)
 *      v
 *   AUTH: AuthenticationCleartextPassword; password = the tenant's JWT (SPEC §4)
 *      | verified (proxy/auth.c)
 *      v
 *   BACKEND: connect; StartupMessage as backend.user with options
 *      | "-c app.tenant_id=<tenant>" (so RESET / DISCARD ALL restore it);
 *      | SCRAM-SHA-256 / MD5 / cleartext / trust with the service credentials;
 *      | ParameterStatus relayed, BackendKeyData replaced by a proxy key
 *      v
 *   READY: relay. Client Query / Parse text goes through the SQL guard:
 *      ALLOW   -> forwarded as is (no copy)
 *      REWRITE -> LISTEN/NOTIFY channels namespaced per tenant
 *      DENY    -> replaced by a "poison" statement that fails in the backend
 *
 * Denials use the backend itself to fail: the denied statement is replaced by
 * a call of a function that cannot exist (pg_catalog.tenantgate_denied_<nonce>),
 * and the backend's "does not exist" error is turned into ours (42501,
 * "tenantgate: ..."). So replies stay in order with everything pipelined, an
 * extended-protocol batch is skipped until Sync, and a transaction block ends
 * up aborted -- all exactly as if PostgreSQL had raised the error itself.
 * Inside an already-failed transaction the backend answers 25P02 instead,
 * which is what PostgreSQL would have said too.
 *
 * Messages the session does not need to read (DataRow, CopyData, Bind, ...)
 * are streamed through as they arrive, so a 50 MB row never sits whole in
 * the proxy.
 *
 * Tenant limits (proxy/tenant_count.h) use the same poison: a Query or an
 * Execute over the tenant's rate or in-flight limit is refused with 53400
 * (an Execute is skipped and replaced by a Parse of a statement that never
 * comes to exist, so the client's statements and portals are untouched); a
 * lone COMMIT / ROLLBACK never is. Bytes count as in flight from the client
 * frame until the ReadyForQuery of its batch (a ring of batch ends). The
 * tenant registry may end the session at any time (pg_kick: FATAL 57P01).
 */
#include "protocols/postgres/session.h"

#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "policy/sql_guard.h"
#include "protocols/postgres/cancel.h"
#include "protocols/postgres/codec.h"
#include "proxy/ring.h"
#include "proxy/auth.h"
#include "proxy/conn.h"
#include "proxy/error.h"
#include "proxy/log.h"
#include "proxy/metrics.h"
#include "proxy/scram.h"
#include "proxy/worker.h"

#define PG_SQL_CACHE_ENTRIES 4096
#define PG_AUTH_MAX_MESSAGE 16384 /* pre-auth messages from the client */
#define PG_BACKEND_STARTUP_MAX (1 << 20)

typedef enum { ST_STARTUP, ST_AUTH, ST_BACKEND, ST_READY, ST_CANCEL, ST_DONE } pg_state;

/* What every connection of a listener shares. */
typedef struct pg_listener {
    const tg_listener_config *cfg;
    tg_sql_guard *guard;
} pg_listener;

/* A denied statement whose poison error has not come back yet. */
typedef struct pg_denial {
    uint64_t sync_tag; /* the ReadyForQuery that ends its batch */
    char sqlstate[6];  /* 42501 (policy), 53400 (a tenant limit) */
    char reason[192];
} pg_denial;

typedef struct pg_session {
    pg_state state;
    const pg_listener *pl;
    tg_identity id;
    char user[64];
    char database[64];
    tg_buf params; /* forwarded startup parameters: name NUL value NUL ... */
    tg_scram *scram;
    bool scram_done; /* the backend proved it knows the password */
    tg_pg_cancel_key proxy_key, backend_key;
    bool key_registered;
    tg_tenant_slot *slot;               /* the tenant's limits (proxy/auth.c owns it) */
    uint64_t pass_client, pass_backend; /* bytes of a streamed frame still to relay */
    uint64_t drop_client;               /* bytes of a refused streamed frame still to skip */
    /* Request bytes in flight (max_inflight_bytes): what was counted in total, what was
     * answered, what of both is published in the tenant's slot (once per read:
     * inflight_sync), and the total at the end of each batch whose ReadyForQuery is due
     * (a ring of syncs_sent - syncs_received entries). */
    uint64_t inflight_total, inflight_given, inflight_added, inflight_released;
    uint64_t *batch_ends;
    size_t batch_head, batch_len, batch_cap;
    int64_t limit_logged_s;       /* rate-limit audit lines: at most one per second */
    tg_tenant_lease lease;        /* what this session prepaid of its tenant's rate limits */
    tg_tenant_clock *batch_clock; /* while pg_data relays a client read: the rate limits'
                                     time for its statements, read once; else NULL (now) */
    /* The unnamed statement / portal is a lone COMMIT, ROLLBACK...: its Execute is not
     * limited (ends_transaction; libpq and psycopg send these unnamed). */
    bool unnamed_stmt_ends_tx, unnamed_portal_ends_tx;
    uint64_t syncs_sent, syncs_received;
    /* COPY FROM STDIN: the backend ignores Syncs while in copy-in mode (libpq sends one
     * right after the Execute of an extended-protocol COPY), so they end no batch. */
    uint64_t syncs_since_cmd; /* Syncs counted since the last Query or Execute */
    bool in_copy;             /* client CopyData seen, CopyDone / CopyFail not yet */
    pg_denial *denials;
    size_t n_denials, cap_denials;
    char channel_prefix[TG_SQL_CHANNEL_PREFIX_LEN + 1];
    tg_buf out; /* scratch for messages built here */
} pg_session;

/* ---- the poison statement ------------------------------------------------ */

static pthread_once_t g_poison_once = PTHREAD_ONCE_INIT;
static char g_poison_marker[64]; /* tenantgate_denied_<16 hex> */
static char g_poison_sql[128];

static void poison_init(void)
{
    uint8_t r[8];
    if (RAND_bytes(r, sizeof(r)) != 1) /* cannot happen on Linux; keep it unguessable anyway */
        abort();
    int n = snprintf(g_poison_marker, sizeof(g_poison_marker), "tenantgate_denied_");
    for (int i = 0; i < 8; i++)
        n += snprintf(g_poison_marker + n, sizeof(g_poison_marker) - (size_t)n, "%02x", r[i]);
    snprintf(g_poison_sql, sizeof(g_poison_sql), "SELECT pg_catalog.%s()", g_poison_marker);
}

/* ---- listener state ------------------------------------------------------ */

static int pg_listener_init(const struct tg_listener_config *cfg, void **state, char *err,
                            size_t errlen)
{
    pthread_once(&g_poison_once, poison_init);
    if (!cfg->backend.user) {
        snprintf(err, errlen,
                 "listener %s: protocol postgres needs backend.user (the service role)", cfg->name);
        return TG_ECONFIG;
    }
    if (tg_scram_global_init() < 0) {
        snprintf(err, errlen, "cannot initialize GNU SASL");
        return TG_ECONFIG;
    }
    const tg_postgres_config *p = &cfg->postgres;
    tg_sql_guard_config gc = {
        .tenant_setting = p->tenant_setting,
        .allow_ddl = p->allow_ddl,
        .reserved_settings = (const char *const *)p->reserved_settings,
        .deny_functions = (const char *const *)p->deny_functions,
        .deny_relations = (const char *const *)p->deny_relations,
    };
    pg_listener *pl = calloc(1, sizeof(*pl));
    if (!pl || !(pl->guard = tg_sql_guard_new(&gc))) {
        free(pl);
        snprintf(err, errlen, "out of memory");
        return TG_ECONFIG;
    }
    pl->cfg = cfg;
    *state = pl;
    return 0;
}

static void pg_listener_free(void *state)
{
    pg_listener *pl = state;
    tg_sql_guard_free(pl->guard);
    free(pl);
}

/* ---- sending -------------------------------------------------------------- */

/* Sends what was built into s->out to side `to` and empties it. */
static int send_out(tg_conn *c, pg_session *s, tg_side_id to)
{
    int r = tg_conn_send(c, to, s->out.data, s->out.len);
    s->out.len = 0;
    return r;
}

/* Sends an ErrorResponse to the client; FATAL ones also end the session. */
__attribute__((format(printf, 5, 6))) static int client_error(tg_conn *c, pg_session *s,
                                                              const char *severity,
                                                              const char *sqlstate, const char *fmt,
                                                              ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    s->out.len = 0;
    int r = tg_pg_build_error(&s->out, PqMsg_ErrorResponse, severity, sqlstate, msg);
    if (r == 0)
        r = send_out(c, s, TG_SIDE_CLIENT);
    if (strcmp(severity, "FATAL") == 0) {
        s->state = ST_DONE;
        tg_conn_finish(c);
    }
    return r;
}

/* ---- startup -------------------------------------------------------------- */

/* Startup parameters forwarded to the backend (GUC names, compared case-insensitively). */
static const char *const forwarded_params[] = {
    "application_name",
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "extra_float_digits",
    "search_path",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "bytea_output",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "datestyle",
    "timezone",
    "intervalstyle",
    "geqo",
    NULL,
};

static bool in_list(const char *const *list, const char *name, size_t n)
{
    for (; list && *list; list++)
        if (strlen(*list) == n && strncasecmp(*list, name, n) == 0)
            return true;
    return false;
}

/* True when a client may not choose this setting (it is the tenant context). */
static bool reserved_setting(const tg_postgres_config *p, const char *name, size_t n)
{
    static const char *const always[] = {"role", "session_authorization", NULL};
    if ((strlen(p->tenant_setting) == n && strncasecmp(p->tenant_setting, name, n) == 0) ||
        in_list(always, name, n) || in_list((const char *const *)p->reserved_settings, name, n))
        return true;
    return n >= 11 && strncasecmp(name, "tenantgate.", 11) == 0;
}

/*
 * Settings that change how the server splits statement text. The SQL guard
 * parses with standard_conforming_strings on and the bytes as sent, and
 * refuses SETs that move away from that (policy/sql_guard.c); startup
 * parameters must not either, or "SELECT '\' || $$'; SET app.tenant_id ..."
 * (scs off) or a Shift-JIS character ending in 0x5c would hide a statement
 * from the guard.
 */
static bool startup_value_safe(tg_slice name, tg_slice value)
{
    static const char *const scs_on[] = {"on", "true", "yes", "1", NULL};
    if (name.len == 27 &&
        strncasecmp((const char *)name.base, "standard_conforming_strings", 27) == 0)
        return in_list(scs_on, (const char *)value.base, value.len);
    if (name.len == 15 && strncasecmp((const char *)name.base, "client_encoding", 15) == 0)
        return tg_sql_client_encoding_safe((const char *)value.base, value.len);
    return true;
}

/* Keeps an allow-listed setting for the backend; refuses a reserved one. */
static int take_setting(tg_conn *c, pg_session *s, tg_slice name, tg_slice value)
{
    const tg_postgres_config *p = &s->pl->cfg->postgres;
    if (reserved_setting(p, (const char *)name.base, name.len)) {
        client_error(c, s, "FATAL", "42501", "tenantgate: setting \"%.*s\" is reserved",
                     (int)name.len, (const char *)name.base);
        return TG_EAUTH;
    }
    if (!startup_value_safe(name, value)) {
        client_error(c, s, "FATAL", "42501",
                     "tenantgate: this value of setting \"%.*s\" is not allowed", (int)name.len,
                     (const char *)name.base);
        return TG_EAUTH;
    }
    if (!in_list(forwarded_params, (const char *)name.base, name.len))
        return 0; /* not forwarded: anything else could change the session in ways we cannot see */
    const uint8_t nul = 0;
    if (tg_buf_append(&s->params, name.base, name.len) < 0 ||
        tg_buf_append(&s->params, &nul, 1) < 0 ||
        tg_buf_append(&s->params, value.base, value.len) < 0 ||
        tg_buf_append(&s->params, &nul, 1) < 0)
        return TG_ENOMEM;
    return 0;
}

/*
 * The `options` startup parameter: "-c name=value", "-cname=value" and
 * "--name=value" settings, separated by spaces (a backslash escapes the next
 * character). Any other switch is refused: it could reach postmaster flags.
 */
static int take_options(tg_conn *c, pg_session *s, tg_slice opts)
{
    char word[1024];
    size_t i = 0;
    bool expect_value = false; /* after a lone "-c" */
    while (i < opts.len) {
        while (i < opts.len && (opts.base[i] == ' ' || opts.base[i] == '\t'))
            i++;
        if (i == opts.len)
            break;
        size_t n = 0;
        while (i < opts.len && opts.base[i] != ' ' && opts.base[i] != '\t') {
            if (opts.base[i] == '\\' && i + 1 < opts.len)
                i++;
            if (n + 1 >= sizeof(word))
                goto bad;
            word[n++] = (char)opts.base[i++];
        }
        word[n] = 0;
        const char *setting;
        if (expect_value) {
            setting = word;
            expect_value = false;
        } else if (strcmp(word, "-c") == 0) {
            expect_value = true;
            continue;
        } else if (strncmp(word, "-c", 2) == 0) {
            setting = word + 2;
        } else if (strncmp(word, "--", 2) == 0) {
            setting = word + 2;
        } else {
            goto bad;
        }
        const char *eq = strchr(setting, '=');
        if (!eq || eq == setting)
            goto bad;
        /* A dash in a name on the command line stands for an underscore, as in postgres. */
        char name[256];
        size_t nl = (size_t)(eq - setting);
        if (nl >= sizeof(name))
            goto bad;
        for (size_t k = 0; k < nl; k++)
            name[k] = setting[k] == '-' ? '_' : setting[k];
        name[nl] = 0;
        int r = take_setting(c, s, (tg_slice){(const uint8_t *)name, nl}, tg_slice_str(eq + 1));
        if (r < 0)
            return r;
    }
    if (!expect_value)
        return 0;
bad:
    client_error(c, s, "FATAL", "42501",
                 "tenantgate: only -c name=value settings are allowed in options");
    return TG_EAUTH;
}

static void copy_slice(char *dst, size_t cap, tg_slice v)
{
    size_t n = v.len < cap - 1 ? v.len : cap - 1;
    memcpy(dst, v.base, n);
    dst[n] = 0;
}

static int handle_startup_message(tg_conn *c, pg_session *s, const tg_pg_startup *st)
{
    const tg_listener_config *cfg = s->pl->cfg;
    if ((st->code >> 16) != 3)
        return client_error(c, s, "FATAL", "0A000",
                            "unsupported frontend protocol %u.%u: server supports 3.0 to 3.0",
                            st->code >> 16, st->code & 0xffff);
    if (cfg->tls.mode == TG_TLS_REQUIRE && !tg_conn_client_tls(c)) {
        TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[TG_REJECT_tls_required], 1);
        return client_error(c, s, "FATAL", "28000", "tenantgate: TLS is required");
    }
    tg_slice cursor = st->params, name, value;
    tg_slice unsupported[16];
    size_t n_unsupported = 0;
    int r;
    while ((r = tg_pg_startup_next(&cursor, &name, &value)) == 1) {
        if (tg_slice_eq_str(name, "user")) {
            copy_slice(s->user, sizeof(s->user), value);
        } else if (tg_slice_eq_str(name, "database")) {
            copy_slice(s->database, sizeof(s->database), value);
        } else if (tg_slice_eq_str(name, "replication")) {
            return client_error(c, s, "FATAL", "28000",
                                "tenantgate: replication connections are not allowed");
        } else if (tg_slice_eq_str(name, "options")) {
            if (take_options(c, s, value) < 0)
                return 0; /* answered */
        } else if (name.len >= 5 && memcmp(name.base, "_pq_.", 5) == 0) {
            if (n_unsupported < 16)
                unsupported[n_unsupported++] = name;
        } else if (take_setting(c, s, name, value) < 0) {
            return 0; /* answered */
        }
    }
    if (r < 0)
        return client_error(c, s, "FATAL", "08P01", "invalid startup packet layout");
    if (!s->user[0])
        return client_error(c, s, "FATAL", "28000",
                            "no PostgreSQL user name specified in startup packet");
    if (!s->database[0])
        snprintf(s->database, sizeof(s->database), "%s", s->user);
    const tg_postgres_config *p = &cfg->postgres;
    if (p->databases &&
        !in_list((const char *const *)p->databases, s->database, strlen(s->database)))
        return client_error(c, s, "FATAL", "3D000", "tenantgate: database \"%s\" is not allowed",
                            s->database);
    s->out.len = 0;
    /* A newer minor version or protocol options: say what we speak, as PostgreSQL does
     * (it sends the whole version code, 3.0, where the documentation says "minor"). */
    if ((st->code & 0xffff) > 0 || n_unsupported > 0) {
        if (tg_pg_build_negotiate(&s->out, (int32_t)TG_PG_PROTOCOL(3, 0), unsupported,
                                  n_unsupported) < 0)
            return TG_ENOMEM;
    }
    if (tg_pg_build_auth(&s->out, TG_PG_AUTH_CLEARTEXT, NULL, 0) < 0)
        return TG_ENOMEM;
    s->state = ST_AUTH;
    return send_out(c, s, TG_SIDE_CLIENT);
}

static int handle_cancel(tg_conn *c, pg_session *s, const tg_pg_startup *st)
{
    tg_pg_cancel_key proxy = {(int32_t)st->cancel_pid, (int32_t)st->cancel_key};
    s->state = ST_CANCEL;
    if (!tg_pg_cancel_lookup(s->pl->cfg->name, proxy, &s->backend_key)) {
        tg_conn_finish(c); /* unknown keys are dropped, as PostgreSQL does */
        return 0;
    }
    return tg_conn_connect_backend(c);
}

static ssize_t on_startup(tg_conn *c, pg_session *s, const uint8_t *data, size_t len)
{
    tg_pg_startup st;
    ssize_t n = tg_pg_decode_startup(data, len, TG_PG_MAX_STARTUP, &st);
    if (n <= 0)
        return n; /* need more, or garbage: close without a word, as PostgreSQL does */
    int r = 0;
    switch (st.code) {
    case TG_PG_SSL_REQUEST_CODE:
        if (s->pl->cfg->tls.mode != TG_TLS_DISABLE && !tg_conn_client_tls(c)) {
            r = tg_conn_send(c, TG_SIDE_CLIENT, "S", 1);
            if (r == 0)
                r = tg_conn_start_client_tls(c);
        } else {
            r = tg_conn_send(c, TG_SIDE_CLIENT, "N", 1);
        }
        break;
    case TG_PG_GSSENC_REQUEST_CODE:
        r = tg_conn_send(c, TG_SIDE_CLIENT, "N", 1);
        break;
    case TG_PG_CANCEL_REQUEST_CODE:
        r = handle_cancel(c, s, &st);
        break;
    default:
        r = handle_startup_message(c, s, &st);
        break;
    }
    return r < 0 ? r : n;
}

/* ---- authentication ------------------------------------------------------- */

static void pg_expire(tg_conn *c, void *session)
{
    pg_session *s = session;
    if (s->state == ST_READY || s->state == ST_BACKEND)
        client_error(c, s, "FATAL", "28000",
                     "tenantgate: session ended: token expired or session timeout reached");
}

/* Hex HMAC-SHA256(key, tenant) for tenantgate.tenant_sig. */
static void context_signature(const tg_secret *key, const char *tenant, char out[65])
{
    uint8_t mac[32];
    unsigned int len = sizeof(mac);
    HMAC(EVP_sha256(), key->data, (int)key->len, (const uint8_t *)tenant, strlen(tenant), mac,
         &len);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

static ssize_t on_password(tg_conn *c, pg_session *s, const uint8_t *data, size_t len)
{
    tg_pg_msg m;
    ssize_t n = tg_pg_decode(data, len, PG_AUTH_MAX_MESSAGE, &m);
    if (n == TG_NEED_MORE)
        return 0;
    tg_slice pw;
    if (n < 0 || m.type != PqMsg_PasswordMessage || tg_pg_parse_password(&m, &pw) < 0) {
        TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[TG_REJECT_malformed], 1);
        client_error(c, s, "FATAL", "08P01", "expected password response");
        return n < 0 ? (ssize_t)len : n;
    }
    tg_jwt_result jr = tg_auth_tenant(c, (const char *)pw.base, pw.len, &s->id);
    if (jr == TG_JWT_PENDING)
        return 0; /* the registry is being asked: the password message is read again */
    if (jr != TG_JWT_OK) {
        client_error(c, s, "FATAL", "28P01",
                     "tenantgate: password authentication failed for user \"%s\": %s", s->user,
                     tg_jwt_result_str(jr));
        return n;
    }
    const tg_listener_config *cfg = s->pl->cfg;
    int r = tg_auth_admit(c, &s->id, &s->slot);
    if (r == TG_ELIMIT) {
        TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[TG_REJECT_max_connections], 1);
        tg_log(TG_LOG_INFO, "connection refused", TG_FB("audit", true),
               TG_FS("listener", cfg->name), TG_FS("tenant", s->id.tenant),
               TG_FS("client", tg_conn_peer(c)), TG_FS("reason", "too many connections"), TG_FEND);
        client_error(c, s, "FATAL", "53300", "tenantgate: too many connections for tenant %s",
                     s->id.tenant);
        return n;
    }
    if (r < 0)
        return r;
    tg_sql_channel_prefix(s->id.tenant, s->channel_prefix);
    /* The session ends when the token does (or at session_timeout_s). */
    int64_t left_ms = (s->id.exp - (int64_t)time(NULL)) * 1000;
    uint32_t timeout = cfg->postgres.session_timeout_s;
    if (timeout && (left_ms <= 0 || (int64_t)timeout * 1000 < left_ms))
        left_ms = (int64_t)timeout * 1000;
    tg_conn_set_expiry(c, left_ms > 0 ? (uint64_t)left_ms : 1);
    s->state = ST_BACKEND;
    r = tg_conn_connect_backend(c);
    return r < 0 ? r : n;
}

/* The backend's StartupMessage: service role, the client's database and settings, the tenant. */
static int send_backend_startup(tg_conn *c, pg_session *s)
{
    const tg_listener_config *cfg = s->pl->cfg;
    char options[512];
    int on =
        snprintf(options, sizeof(options), "-c %s=%s", cfg->postgres.tenant_setting, s->id.tenant);
    if (cfg->postgres.signed_context) {
        char sig[65];
        context_signature(&cfg->postgres.context_key, s->id.tenant, sig);
        on += snprintf(options + on, sizeof(options) - (size_t)on, " -c tenantgate.tenant_sig=%s",
                       sig);
    }
    if (on < 0 || (size_t)on >= sizeof(options))
        return TG_EINVAL;
    const char *names[32], *values[32];
    size_t n = 0;
    names[n] = "user", values[n++] = cfg->backend.user;
    names[n] = "database", values[n++] = s->database;
    names[n] = "options", values[n++] = options;
    for (size_t off = 0; off < s->params.len && n < 32;) {
        const char *name = (const char *)s->params.data + off;
        off += strlen(name) + 1;
        const char *value = (const char *)s->params.data + off;
        off += strlen(value) + 1;
        names[n] = name, values[n++] = value;
    }
    s->out.len = 0;
    if (tg_pg_build_startup(&s->out, TG_PG_PROTOCOL(3, 0), names, values, n) < 0)
        return TG_ENOMEM;
    return send_out(c, s, TG_SIDE_BACKEND);
}

static int pg_backend_ready(tg_conn *c, void *session)
{
    pg_session *s = session;
    if (s->state == ST_CANCEL) {
        s->out.len = 0;
        if (tg_pg_build_cancel(&s->out, s->backend_key.pid, s->backend_key.key) < 0)
            return TG_ENOMEM;
        int r = send_out(c, s, TG_SIDE_BACKEND);
        tg_conn_finish(c);
        return r;
    }
    return send_backend_startup(c, s);
}

/* Answers the backend's authentication request with the service credentials. */
static int backend_auth(tg_conn *c, pg_session *s, int32_t code, tg_slice data)
{
    const tg_backend_config *b = &s->pl->cfg->backend;
    const char *password = b->password.data ? b->password.data : "";
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    int r;
    s->out.len = 0;
    switch (code) {
    case TG_PG_AUTH_OK:
        if (s->scram && !s->scram_done)
            return TG_EAUTH; /* skipping SASLFinal would skip the server's proof */
        s->out.len = 0;
        if (tg_pg_build_auth(&s->out, TG_PG_AUTH_OK, NULL, 0) < 0)
            return TG_ENOMEM;
        return send_out(c, s, TG_SIDE_CLIENT);
    case TG_PG_AUTH_CLEARTEXT:
        r = tg_pg_build_password(&s->out, password, strlen(password) + 1);
        break;
    case TG_PG_AUTH_MD5: {
        char md5[36];
        if (data.len != 4)
            return TG_EPROTO;
        tg_pg_md5_password(b->user, password, data.base, md5);
        r = tg_pg_build_password(&s->out, md5, strlen(md5) + 1);
        break;
    }
    case TG_PG_AUTH_SASL: {
        /* A list of mechanism names, each NUL-terminated, then an empty one. */
        bool scram = false;
        for (size_t i = 0; i < data.len;) {
            const char *mech = (const char *)data.base + i;
            size_t ml = strnlen(mech, data.len - i);
            if (ml == strlen("SCRAM-SHA-256") && memcmp(mech, "SCRAM-SHA-256", ml) == 0)
                scram = true;
            i += ml + 1;
        }
        if (!scram || s->scram || tg_scram_client_new(b->user, password, &s->scram) < 0 ||
            tg_scram_step(s->scram, NULL, 0, &resp, &resp_len) < 0)
            return TG_EAUTH;
        r = tg_pg_build_sasl_initial(&s->out, "SCRAM-SHA-256", resp, resp_len);
        break;
    }
    case TG_PG_AUTH_SASL_CONTINUE:
        if (!s->scram || tg_scram_step(s->scram, data.base, data.len, &resp, &resp_len) != 0)
            return TG_EAUTH;
        r = tg_pg_build_password(&s->out, resp, resp_len);
        break;
    case TG_PG_AUTH_SASL_FINAL:
        /* The server must prove it knows the password too. */
        if (!s->scram || tg_scram_step(s->scram, data.base, data.len, &resp, &resp_len) != 1) {
            r = TG_EAUTH;
        } else {
            s->scram_done = true;
            r = 0;
        }
        free(resp);
        return r;
    default:
        return TG_EAUTH; /* GSS, SSPI, Kerberos: not for a service role */
    }
    free(resp);
    if (r < 0)
        return r;
    return send_out(c, s, TG_SIDE_BACKEND);
}

/* Backend messages until its first ReadyForQuery. */
static ssize_t on_backend_startup(tg_conn *c, pg_session *s, const uint8_t *data, size_t len)
{
    tg_pg_msg m;
    ssize_t n = tg_pg_decode(data, len, PG_BACKEND_STARTUP_MAX, &m);
    if (n <= 0)
        return n;
    int r = 0;
    switch (m.type) {
    case PqMsg_AuthenticationRequest: {
        int32_t code;
        tg_slice d;
        if (tg_pg_parse_auth(&m, &code, &d) < 0)
            return TG_EPROTO;
        r = backend_auth(c, s, code, d);
        if (r == TG_EAUTH) {
            tg_log(TG_LOG_ERROR, "backend authentication failed",
                   TG_FS("listener", s->pl->cfg->name), TG_FI("method", code), TG_FEND);
            client_error(c, s, "FATAL", "08006",
                         "tenantgate: could not authenticate to the backend");
            return n;
        }
        break;
    }
    case PqMsg_BackendKeyData: {
        if (tg_pg_parse_backend_key(&m, &s->backend_key.pid, &s->backend_key.key) < 0)
            return TG_EPROTO;
        r = tg_pg_cancel_register(s->pl->cfg->name, s->backend_key, &s->proxy_key);
        if (r < 0)
            return r;
        s->key_registered = true;
        s->out.len = 0;
        if (tg_pg_build_backend_key(&s->out, s->proxy_key.pid, s->proxy_key.key) < 0)
            return TG_ENOMEM;
        r = send_out(c, s, TG_SIDE_CLIENT);
        break;
    }
    case PqMsg_ParameterStatus:
    case PqMsg_NoticeResponse:
        r = tg_conn_forward(c, TG_SIDE_CLIENT, data, (size_t)n);
        break;
    case PqMsg_ErrorResponse: /* e.g. the database does not exist: the client sees why */
        r = tg_conn_forward(c, TG_SIDE_CLIENT, data, (size_t)n);
        s->state = ST_DONE;
        tg_conn_finish(c);
        break;
    case PqMsg_ReadyForQuery:
        r = tg_conn_forward(c, TG_SIDE_CLIENT, data, (size_t)n);
        s->state = ST_READY;
        tg_conn_established(c);
        tg_conn_redispatch(c, TG_SIDE_CLIENT); /* queries the client pipelined meanwhile */
        break;
    default:
        return TG_EPROTO;
    }
    return r < 0 ? r : n;
}

/* ---- the relay: client to backend ----------------------------------------- */

/* Client messages relayed without being read whole. */
static bool client_streamed(uint8_t type)
{
    switch (type) {
    case PqMsg_Bind:
    case PqMsg_Describe:
    case PqMsg_Execute:
    case PqMsg_Close:
    case PqMsg_Sync:
    case PqMsg_Flush:
    case PqMsg_CopyData:
    case PqMsg_CopyDone:
    case PqMsg_CopyFail:
        return true;
    default:
        return false;
    }
}

static int push_denial_code(pg_session *s, const char *sqlstate, const char *reason)
{
    if (s->n_denials == s->cap_denials) {
        size_t cap = s->cap_denials ? s->cap_denials * 2 : 4;
        pg_denial *d = realloc(s->denials, cap * sizeof(*d));
        if (!d)
            return TG_ENOMEM;
        s->denials = d;
        s->cap_denials = cap;
    }
    pg_denial *d = &s->denials[s->n_denials++];
    d->sync_tag = s->syncs_sent;
    snprintf(d->sqlstate, sizeof(d->sqlstate), "%s", sqlstate);
    snprintf(d->reason, sizeof(d->reason), "%s", reason);
    return 0;
}

static int push_denial(pg_session *s, const char *reason)
{
    return push_denial_code(s, "42501", reason);
}

/* ---- batches and bytes in flight ------------------------------------------------ */

/*
 * A batch went to the backend (a Query, a Sync, a fast-path call): one more
 * ReadyForQuery is due, and the request bytes counted so far are answered
 * with it.
 */
static int batch_sent(pg_session *s)
{
    if (tg_ring_reserve((void **)&s->batch_ends, sizeof(*s->batch_ends), &s->batch_cap,
                        &s->batch_head, s->batch_len, 16) < 0)
        return TG_ENOMEM;
    s->batch_ends[(s->batch_head + s->batch_len) % s->batch_cap] = s->inflight_total;
    s->batch_len++;
    s->syncs_sent++;
    return 0;
}

/* The backend ignored the last k batch ends (Syncs inside COPY FROM STDIN): they merge into
 * the batch that is still open. */
static void batches_unsent(pg_session *s, uint64_t k)
{
    s->syncs_sent -= k;
    s->batch_len = k < s->batch_len ? s->batch_len - (size_t)k : 0;
}

/* A ReadyForQuery: the oldest batch is answered, its bytes are no longer in flight. */
static void batch_answered(pg_session *s)
{
    s->syncs_received++;
    if (s->batch_len == 0)
        return;
    uint64_t end = s->batch_ends[s->batch_head];
    s->batch_head = (s->batch_head + 1) % s->batch_cap;
    s->batch_len--;
    if (end > s->inflight_given)
        s->inflight_given = end;
}

/* A client frame of n bytes goes to the backend. */
static void count_inflight(pg_session *s, uint64_t n)
{
    if (s->slot && tg_tenant_count_inflight_limited(s->slot))
        s->inflight_total += n;
}

/* Publishes what was counted and answered since the last sync (once per read). */
static void inflight_sync(pg_session *s)
{
    if (!s->slot)
        return;
    tg_tenant_count_inflight_add(s->slot, s->inflight_total - s->inflight_added);
    tg_tenant_count_inflight_give(s->slot, s->inflight_given - s->inflight_released);
    s->inflight_added = s->inflight_total;
    s->inflight_released = s->inflight_given;
}

/*
 * The tenant's limits for one statement (Query or Execute) of n bytes: 0 when
 * it may run, or 1 with the reason queued as a 53400 denial (the caller sends
 * the poison instead). The session survives: the client gets an ErrorResponse.
 */
static int over_limit(tg_conn *c, pg_session *s, uint64_t n)
{
    if (!s->slot)
        return 0;
    const char *reason;
    tg_reject_reason metric;
    tg_tenant_rate rate = tg_tenant_count_message(s->slot, &s->lease, s->batch_clock);
    if (rate == TG_TENANT_RATE_LIMITED) {
        reason = "rate limit exceeded for tenant";
        metric = TG_REJECT_rate_limit;
    } else if (rate == TG_TENANT_GLOBAL_LIMITED) {
        reason = "global rate limit exceeded for tenant";
        metric = TG_REJECT_global_rate_limit;
    } else if (tg_tenant_count_inflight_full(s->slot,
                                             n + (s->inflight_total - s->inflight_added))) {
        reason = "too many request bytes in flight for tenant";
        metric = TG_REJECT_inflight_bytes;
    } else {
        return 0;
    }
    TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[metric], 1);
    int64_t now = (int64_t)time(NULL);
    if (now != s->limit_logged_s) { /* a flood of refusals must not flood the log */
        s->limit_logged_s = now;
        tg_log(TG_LOG_INFO, "statement rejected", TG_FB("audit", true),
               TG_FS("listener", s->pl->cfg->name), TG_FS("tenant", s->id.tenant),
               TG_FS("client", tg_conn_peer(c)), TG_FS("reason", reason), TG_FEND);
    }
    int r = push_denial_code(s, "53400", reason);
    return r < 0 ? r : 1;
}

static void audit_denial(tg_conn *c, pg_session *s, const tg_sql_verdict *v)
{
    char fp[17];
    snprintf(fp, sizeof(fp), "%016llx", (unsigned long long)v->fingerprint);
    TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[TG_REJECT_policy], 1);
    tg_log(TG_LOG_INFO, "statement rejected", TG_FB("audit", true),
           TG_FS("listener", s->pl->cfg->name), TG_FS("tenant", s->id.tenant),
           TG_FS("client", tg_conn_peer(c)), TG_FS("reason", v->reason), TG_FS("fingerprint", fp),
           TG_FEND);
}

static tg_sql_cache *worker_cache(tg_conn *c)
{
    tg_worker *w = tg_conn_worker(c);
    if (!w->sql_cache)
        w->sql_cache = tg_sql_cache_new(PG_SQL_CACHE_ENTRIES);
    return w->sql_cache;
}

/*
 * Judges one statement text. On ALLOW returns 0 with *text NULL (forward the
 * original); on REWRITE returns 0 with *text the new statement (caller frees);
 * on DENY queues the reason and returns 1 (send the poison instead).
 */
static int judge(tg_conn *c, pg_session *s, tg_slice sql, char **text, size_t *text_len)
{
    tg_sql_verdict v;
    *text = NULL;
    tg_sql_verdict_kind k =
        tg_sql_guard_check(s->pl->guard, worker_cache(c), (const char *)sql.base, sql.len, &v);
    if (k == TG_SQL_REWRITE && tg_sql_guard_rewrite(s->pl->guard, (const char *)sql.base, sql.len,
                                                    s->channel_prefix, text, text_len, &v) == 0) {
        TG_STAT_ADD(tg_conn_stats(c)->messages_rewritten, 1);
        return 0;
    }
    if (k == TG_SQL_ALLOW) {
        TG_STAT_ADD(tg_conn_stats(c)->messages_forwarded, 1);
        return 0;
    }
    if (v.kind != TG_SQL_DENY) /* a rewrite that failed */
        v.kind = TG_SQL_DENY;
    audit_denial(c, s, &v);
    int r = push_denial(s, v.reason);
    return r < 0 ? r : 1;
}

/* True when a word of n bytes at p equals w (ASCII, case-insensitive). */
static bool word_is(const uint8_t *p, size_t n, const char *w)
{
    return strlen(w) == n && strncasecmp((const char *)p, w, n) == 0;
}

/*
 * The statement is a lone COMMIT / ROLLBACK / END / ABORT [WORK | TRANSACTION]
 * (with whitespace and one ';' around it). Those are never refused by a rate
 * or in-flight limit, so a limited tenant can always end the transaction it is
 * in; anything more in the text (a second statement) makes it an ordinary one.
 */
static bool ends_transaction(tg_slice sql)
{
    const uint8_t *p = sql.base, *end = sql.base + sql.len;
    const uint8_t *words[3];
    size_t lens[3], n = 0;
    bool semicolon = false;
    while (p < end) {
        if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
            p++;
        } else if (*p == ';' && !semicolon) {
            semicolon = true;
            p++;
        } else if (((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z') && !semicolon && n < 2) {
            words[n] = p;
            while (p < end && ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z'))
                p++;
            lens[n] = (size_t)(p - words[n]);
            n++;
        } else {
            return false;
        }
    }
    if (n == 0)
        return false;
    bool verb = word_is(words[0], lens[0], "commit") || word_is(words[0], lens[0], "rollback") ||
                word_is(words[0], lens[0], "end") || word_is(words[0], lens[0], "abort");
    return verb && (n == 1 || word_is(words[1], lens[1], "work") ||
                    word_is(words[1], lens[1], "transaction"));
}

static int on_query(tg_conn *c, pg_session *s, const uint8_t *frame, const tg_pg_msg *m)
{
    tg_slice sql;
    if (tg_pg_parse_query(m, &sql) < 0)
        return TG_EPROTO;
    char *text = NULL;
    size_t text_len;
    int r = ends_transaction(sql) ? 0 : over_limit(c, s, m->size);
    if (r == 0)
        r = judge(c, s, sql, &text, &text_len);
    if (r == 0)
        count_inflight(s, text ? text_len : m->size);
    s->out.len = 0;
    if (r == 0 && !text) {
        r = tg_conn_forward(c, TG_SIDE_BACKEND, frame, m->size);
    } else if (r >= 0) {
        r = text ? tg_pg_build_query(&s->out, text, text_len)
                 : tg_pg_build_query(&s->out, g_poison_sql, strlen(g_poison_sql));
        free(text);
        if (r == 0)
            r = send_out(c, s, TG_SIDE_BACKEND);
    }
    int b = batch_sent(s);
    return r < 0 ? r : b;
}

static int on_parse(tg_conn *c, pg_session *s, const uint8_t *frame, const tg_pg_msg *m)
{
    tg_pg_parse p;
    if (tg_pg_parse_parse(m, &p) < 0)
        return TG_EPROTO;
    char *text;
    size_t text_len;
    int r = judge(c, s, p.query, &text, &text_len);
    if (r == 0 && !text)
        return tg_conn_forward(c, TG_SIDE_BACKEND, frame, m->size);
    if (r < 0)
        return r;
    static const uint8_t no_params[2] = {0, 0};
    s->out.len = 0;
    r = text ? tg_pg_build_parse(&s->out, p.name, text, text_len, p.param_types)
             : tg_pg_build_parse(&s->out, p.name, g_poison_sql, strlen(g_poison_sql),
                                 (tg_slice){no_params, 2});
    free(text);
    return r < 0 ? r : send_out(c, s, TG_SIDE_BACKEND);
}

/* Fast-path FunctionCall can reach any function (set_config too): refused. */
static int on_function_call(tg_conn *c, pg_session *s)
{
    tg_sql_verdict v = {.kind = TG_SQL_DENY, .fingerprint = 0};
    snprintf(v.reason, sizeof(v.reason), "fast-path function calls are not allowed");
    audit_denial(c, s, &v);
    int r = push_denial(s, v.reason);
    s->out.len = 0;
    if (r == 0)
        r = tg_pg_build_query(&s->out, g_poison_sql, strlen(g_poison_sql));
    if (r == 0)
        r = send_out(c, s, TG_SIDE_BACKEND);
    int b = batch_sent(s);
    return r < 0 ? r : b;
}

/*
 * A Parse of the poison into a statement named after it, which never comes to
 * exist (the Parse fails): it stands in for a refused Execute, so the batch
 * fails there and is skipped until Sync, leaving the client's statements and
 * portals alone (an unnamed Parse would drop the unnamed statement).
 */
static int send_poison_parse(tg_conn *c, pg_session *s)
{
    static const uint8_t no_params[2] = {0, 0};
    s->out.len = 0;
    int r = tg_pg_build_parse(&s->out, tg_slice_str(g_poison_marker), g_poison_sql,
                              strlen(g_poison_sql), (tg_slice){no_params, 2});
    return r < 0 ? r : send_out(c, s, TG_SIDE_BACKEND);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * Relays the next bytes of a streamed frame: at most *left of the avail bytes
 * at p go to side `to` (forwarded, not copied); *left and *off advance.
 */
static int stream_frame(tg_conn *c, tg_side_id to, const uint8_t *p, size_t avail, uint64_t *left,
                        size_t *off)
{
    size_t k = avail < *left ? avail : (size_t)*left;
    int r = tg_conn_forward(c, to, p, k);
    if (r == 0) {
        *left -= k;
        *off += k;
    }
    return r;
}

/*
 * A Bind at p (avail bytes of it read so far): binding the unnamed statement to
 * the unnamed portal carries its "ends a transaction" over; anything else bound
 * to the unnamed portal, or names not read yet, clears it.
 */
static void note_bind(pg_session *s, const uint8_t *p, size_t avail)
{
    if (avail < 6 || p[5] != 0) /* a named portal: the unnamed one is unchanged */
        return;
    s->unnamed_portal_ends_tx = avail >= 7 && p[6] == 0 && s->unnamed_stmt_ends_tx;
}

/* An Execute at p of the unnamed portal while it holds a lone COMMIT / ROLLBACK. */
static bool executes_tx_end(const pg_session *s, const uint8_t *p, size_t avail)
{
    return avail >= 6 && p[5] == 0 && s->unnamed_portal_ends_tx;
}

static ssize_t relay_client(tg_conn *c, pg_session *s, const uint8_t *data, size_t len)
{
    size_t off = 0;
    const uint32_t max = s->pl->cfg->postgres.max_message_bytes;
    while (off < len && s->state == ST_READY) {
        if (s->pass_client) {
            int r = stream_frame(c, TG_SIDE_BACKEND, data + off, len - off, &s->pass_client, &off);
            if (r < 0)
                return r;
            continue;
        }
        if (s->drop_client) {
            size_t k = len - off < s->drop_client ? len - off : (size_t)s->drop_client;
            s->drop_client -= k;
            off += k;
            continue;
        }
        if (len - off < 5)
            break;
        uint8_t type = data[off];
        uint32_t length = be32(data + off + 1);
        if (!tg_pg_frontend_type_known(type) || length < 4 || length > INT32_MAX) {
            TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[TG_REJECT_malformed], 1);
            client_error(c, s, "FATAL", "08P01", "invalid frontend message type %d", type);
            return (ssize_t)len;
        }
        uint64_t frame = 1 + (uint64_t)length;
        if (type == PqMsg_Bind)
            note_bind(s, data + off, len - off);
        if (type == PqMsg_Execute && !executes_tx_end(s, data + off, len - off)) {
            int r = over_limit(c, s, frame);
            if (r < 0)
                return r;
            if (r > 0) { /* skipped; a poison Parse fails in its place, until Sync */
                s->drop_client = frame;
                r = send_poison_parse(c, s);
                if (r < 0)
                    return r;
                s->syncs_since_cmd = 0;
                continue;
            }
        }
        if (client_streamed(type)) {
            count_inflight(s, frame);
            s->pass_client = frame;
            int r = stream_frame(c, TG_SIDE_BACKEND, data + off, len - off, &s->pass_client, &off);
            if (r < 0)
                return r;
            if (type == PqMsg_Sync && !s->in_copy) {
                if ((r = batch_sent(s)) < 0)
                    return r;
                s->syncs_since_cmd++;
            } else if (type == PqMsg_Execute) {
                s->syncs_since_cmd = 0;
            } else if (type == PqMsg_CopyData || type == PqMsg_CopyDone || type == PqMsg_CopyFail) {
                if (!s->in_copy) { /* the copy began: Syncs since its command were ignored */
                    batches_unsent(s, s->syncs_since_cmd);
                    s->syncs_since_cmd = 0;
                }
                s->in_copy = type == PqMsg_CopyData;
            }
            continue;
        }
        if (length > max) {
            TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[TG_REJECT_too_large], 1);
            client_error(c, s, "FATAL", "54000", "tenantgate: message of %u bytes is too large",
                         length);
            return (ssize_t)len;
        }
        tg_pg_msg m;
        ssize_t n = tg_pg_decode(data + off, len - off, max, &m);
        if (n == TG_NEED_MORE)
            break;
        if (n < 0)
            return n;
        int r;
        switch (type) {
        case PqMsg_Query:
            s->syncs_since_cmd = 0;
            r = on_query(c, s, data + off, &m);
            break;
        case PqMsg_Parse: {
            tg_pg_parse pp;
            count_inflight(s, (uint64_t)n);
            if (tg_pg_parse_parse(&m, &pp) == 0 && pp.name.len == 0)
                s->unnamed_stmt_ends_tx = ends_transaction(pp.query);
            r = on_parse(c, s, data + off, &m);
            break;
        }
        case PqMsg_FunctionCall:
            r = on_function_call(c, s);
            break;
        case PqMsg_Terminate:
            r = tg_conn_forward(c, TG_SIDE_BACKEND, data + off, (size_t)n);
            s->state = ST_DONE;
            tg_conn_finish(c);
            break;
        default: /* PasswordMessage out of turn: the backend answers it with an error */
            r = tg_conn_forward(c, TG_SIDE_BACKEND, data + off, (size_t)n);
            break;
        }
        if (r == TG_EPROTO) {
            TG_STAT_ADD(tg_conn_stats(c)->messages_rejected[TG_REJECT_malformed], 1);
            client_error(c, s, "FATAL", "08P01", "invalid message format");
            return (ssize_t)len;
        }
        if (r < 0)
            return r;
        off += (size_t)n;
    }
    return (ssize_t)off;
}

/* ---- the relay: backend to client ----------------------------------------- */

/* Backend messages the session reads whole; everything else is streamed. */
static bool backend_inspected(uint8_t type)
{
    return type == PqMsg_ErrorResponse || type == PqMsg_NotificationResponse ||
           type == PqMsg_ReadyForQuery || type == PqMsg_BackendKeyData ||
           type == PqMsg_AuthenticationRequest || type == PqMsg_NegotiateProtocolVersion;
}

static void pop_denial(pg_session *s)
{
    memmove(s->denials, s->denials + 1, (s->n_denials - 1) * sizeof(*s->denials));
    s->n_denials--;
}

/* Drops denials of batches the backend has finished (their poison was skipped or failed as 25P02).
 */
static void expire_denials(pg_session *s)
{
    size_t keep = 0;
    while (keep < s->n_denials && s->denials[keep].sync_tag < s->syncs_received)
        keep++;
    if (keep) {
        memmove(s->denials, s->denials + keep, (s->n_denials - keep) * sizeof(*s->denials));
        s->n_denials -= keep;
    }
}

static int on_backend_error(tg_conn *c, pg_session *s, const uint8_t *frame, const tg_pg_msg *m)
{
    tg_pg_error_fields e;
    if (tg_pg_parse_error(m, &e) < 0)
        return TG_EPROTO;
    expire_denials(s);
    if (!memmem(e.message.base, e.message.len, g_poison_marker, strlen(g_poison_marker)))
        return tg_conn_forward(c, TG_SIDE_CLIENT, frame, m->size);
    /* Our poison failed: the client sees why its statement was denied, never the marker. */
    char msg[256], sqlstate[6] = "42501";
    snprintf(msg, sizeof(msg), "tenantgate: %s",
             s->n_denials ? s->denials[0].reason : "statement is not allowed");
    if (s->n_denials) {
        memcpy(sqlstate, s->denials[0].sqlstate, sizeof(sqlstate));
        pop_denial(s);
    }
    s->out.len = 0;
    int r = tg_pg_build_error(&s->out, PqMsg_ErrorResponse, "ERROR", sqlstate, msg);
    return r < 0 ? r : send_out(c, s, TG_SIDE_CLIENT);
}

/* Channels are namespaced per tenant: strip ours, drop anything else. */
static int on_notification(tg_conn *c, pg_session *s, const tg_pg_msg *m)
{
    tg_pg_notification nt;
    if (tg_pg_parse_notification(m, &nt) < 0)
        return TG_EPROTO;
    size_t pl = strlen(s->channel_prefix);
    if (nt.channel.len <= pl || memcmp(nt.channel.base, s->channel_prefix, pl) != 0)
        return 0;
    /* Backend pids are never shown: ours maps to the proxy pid, others to 0. */
    int32_t pid = nt.pid == s->backend_key.pid ? s->proxy_key.pid : 0;
    tg_slice channel = {nt.channel.base + pl, nt.channel.len - pl};
    s->out.len = 0;
    int r = tg_pg_build_notification(&s->out, pid, channel, nt.payload);
    return r < 0 ? r : send_out(c, s, TG_SIDE_CLIENT);
}

static ssize_t relay_backend(tg_conn *c, pg_session *s, const uint8_t *data, size_t len)
{
    size_t off = 0;
    const uint32_t max = s->pl->cfg->postgres.max_message_bytes;
    while (off < len) {
        if (s->pass_backend) {
            int r = stream_frame(c, TG_SIDE_CLIENT, data + off, len - off, &s->pass_backend, &off);
            if (r < 0)
                return r;
            continue;
        }
        if (len - off < 5)
            break;
        uint8_t type = data[off];
        uint32_t length = be32(data + off + 1);
        if (!tg_pg_backend_type_known(type) || length < 4 || length > INT32_MAX)
            return TG_EPROTO;
        uint64_t frame = 1 + (uint64_t)length;
        if (!backend_inspected(type)) {
            s->pass_backend = frame;
            int r = stream_frame(c, TG_SIDE_CLIENT, data + off, len - off, &s->pass_backend, &off);
            if (r < 0)
                return r;
            continue;
        }
        tg_pg_msg m;
        ssize_t n = tg_pg_decode(data + off, len - off, max, &m);
        if (n == TG_NEED_MORE)
            break;
        if (n < 0)
            return n;
        int r;
        switch (type) {
        case PqMsg_ErrorResponse:
            r = on_backend_error(c, s, data + off, &m);
            break;
        case PqMsg_NotificationResponse:
            r = on_notification(c, s, &m);
            break;
        case PqMsg_ReadyForQuery:
            batch_answered(s);
            expire_denials(s);
            r = tg_conn_forward(c, TG_SIDE_CLIENT, data + off, (size_t)n);
            break;
        default: /* key data, authentication or negotiation after startup */
            return TG_EPROTO;
        }
        if (r < 0)
            return r;
        off += (size_t)n;
    }
    return (ssize_t)off;
}

/* ---- plumbing ------------------------------------------------------------- */

static int pg_open(tg_conn *c, void *session)
{
    pg_session *s = session;
    s->pl = tg_conn_lrt_state(c);
    s->state = ST_STARTUP;
    return 0;
}

static ssize_t pg_data(tg_conn *c, void *session, tg_side_id from, const uint8_t *data, size_t len)
{
    pg_session *s = session;
    if (from == TG_SIDE_CLIENT) {
        switch (s->state) {
        case ST_STARTUP:
            return on_startup(c, s, data, len);
        case ST_AUTH:
            return on_password(c, s, data, len);
        case ST_READY: {
            tg_tenant_clock clock = TG_TENANT_CLOCK_UNREAD; /* its messages arrived together */
            s->batch_clock = &clock;
            ssize_t n = relay_client(c, s, data, len);
            s->batch_clock = NULL;
            inflight_sync(s);
            return n;
        }
        case ST_BACKEND:
            return 0; /* pipelined ahead of ReadyForQuery: kept until the backend is ready */
        case ST_CANCEL:
        case ST_DONE:
            return (ssize_t)len; /* nothing more is read */
        }
    } else {
        switch (s->state) {
        case ST_BACKEND:
            return on_backend_startup(c, s, data, len);
        case ST_READY: {
            ssize_t n = relay_backend(c, s, data, len);
            inflight_sync(s);
            return n;
        }
        default:
            return (ssize_t)len; /* a cancel connection's answer, or a session ending */
        }
    }
    return TG_EPROTO;
}

static void pg_close(tg_conn *c, void *session)
{
    pg_session *s = session;
    if (s->key_registered)
        tg_pg_cancel_unregister(s->proxy_key);
    /* the tenant's slot is proxy/auth.c's (given back after this); its bytes are ours */
    inflight_sync(s);
    if (s->slot)
        tg_tenant_count_inflight_give(s->slot, s->inflight_added - s->inflight_released);
    tg_scram_free(s->scram);
    tg_buf_free(&s->params);
    tg_buf_free(&s->out);
    free(s->denials);
    free(s->batch_ends);
    (void)c;
}

/* The tenant registry ends the session: FATAL 57P01 at a message boundary, then close. */
static void pg_kick(tg_conn *c, void *session, tg_kick_reason reason)
{
    pg_session *s = session;
    if (s->state != ST_READY && s->state != ST_BACKEND) {
        tg_conn_finish(c);
        return;
    }
    if (s->pass_backend) { /* in the middle of a message to the client: no room for ours */
        tg_conn_abort(c, tg_kick_reason_str(reason));
        return;
    }
    client_error(c, s, "FATAL", "57P01", "tenantgate: terminating connection: %s",
                 tg_kick_reason_str(reason));
}

const tg_protocol_ops tg_pg_protocol = {
    .name = "postgres",
    .session_size = sizeof(pg_session),
    .own_tls_upgrade = true,
    .listener_init = pg_listener_init,
    .listener_free = pg_listener_free,
    .on_open = pg_open,
    .on_backend_ready = pg_backend_ready,
    .on_data = pg_data,
    .on_eof = NULL,
    .on_expire = pg_expire,
    .on_kick = pg_kick,
    .on_close = pg_close,
};
