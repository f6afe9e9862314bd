/*
 * `tenantgate check`, PostgreSQL part: is row-level security really in the way
 * of every tenant?
 *
 *   for each database (postgres.databases, or the one named after backend.user):
 *     connect (libpq: backend.address, backend.user, password_file, backend.tls,
 *              connect_timeout 5, read-only transactions)   --fails-->  "cannot connect", 2
 *     role:    pg_roles.rolsuper / rolbypassrls of current_user          --> ALTER ROLE ... NO...
 *     tables:  every relkind r/p outside pg_catalog, information_schema, pg_toast and pg_temp
 *              that has the tenant column: relrowsecurity, relforcerowsecurity, pg_policy count
 *              --> ENABLE / FORCE ROW LEVEL SECURITY, CREATE POLICY (deploy/sql/)
 *     signed:  (postgres.signed_context) tenantgate.current_tenant() exists, is executable,
 *              returns the tenant for tenantgate's HMAC and NULL for a wrong one, and the
 *              key table is not readable by the role
 *     -> "ok" line, or one "problem: ...; fix: ..." line per finding
 *
 * Only the catalogs are read (pg_class and pg_policy are readable by every role), so the check
 * sees tables the role has no privileges on too: a grant added later must not open a table
 * without RLS. Each line starts "listener L: database D: " so that a check over several
 * listeners and databases stays greppable. Nothing here runs on the data path.
 */
#include "protocols/postgres/preflight.h"

#include <netdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <libpq-fe.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define PF_CONNECT_TIMEOUT_S "5"
#define PF_PROBE_TENANT "tenantgate-preflight"
#define PF_SIG_SETTING "tenantgate.tenant_sig"

/* One database being checked. */
typedef struct pf {
    const tg_listener_config *l;
    FILE *report;
    const char *db; /* the label in every line */
    int rc;         /* worst result so far */
} pf;

static void say(pf *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(pf *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(p->report, "listener %s: database %s: ", p->l->name, p->db);
    vfprintf(p->report, fmt, ap);
    fputc('\n', p->report);
    va_end(ap);
}

static void raise_rc(pf *p, int rc)
{
    if (rc > p->rc) {
        p->rc = rc;
    }
}

/* Copies a libpq error message into buf as one line ("a\nb\n" -> "a; b"). */
static const char *one_line(const char *msg, char *buf, size_t buflen)
{
    size_t o = 0;
    bool sep = false;
    for (const char *s = msg ? msg : ""; *s && o + 3 < buflen; s++) {
        if (*s == '\n' || *s == '\r') {
            sep = o > 0;
            continue;
        }
        if (sep) {
            buf[o++] = ';';
            buf[o++] = ' ';
            sep = false;
        }
        buf[o++] = *s == '\t' ? ' ' : *s;
    }
    buf[o] = '\0';
    return o ? buf : "unknown error";
}

static void quiet_notices(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/*
 * Runs sql with text parameters; returns the result when it has at least min_rows rows, or NULL
 * after reporting "cannot inspect" (result 2: the database could not be checked).
 */
static PGresult *query(pf *p, PGconn *c, const char *what, int min_rows, const char *sql,
                       int nparams, const char *const *params)
{
    PGresult *r = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
    if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) >= min_rows) {
        return r;
    }
    char why[512];
    say(p, "cannot inspect %s: %s", what,
        r && PQresultStatus(r) == PGRES_TUPLES_OK
            ? "no row returned"
            : one_line(r ? PQresultErrorMessage(r) : PQerrorMessage(c), why, sizeof why));
    PQclear(r);
    raise_rc(p, TG_PG_PREFLIGHT_NOCONNECT);
    return NULL;
}

static bool is_true(const PGresult *r, int row, int col)
{
    return !PQgetisnull(r, row, col) && strcmp(PQgetvalue(r, row, col), "t") == 0;
}

/* ------------------------------------------------------------- connecting */

/*
 * Opens a connection to database db (NULL: libpq's default, the user's name) the way the
 * proxy logs in. Returns the connection or NULL after reporting "cannot connect".
 */
static PGconn *pf_connect(pf *p, const char *db)
{
    const tg_backend_config *b = &p->l->backend;
    char host[256], port[8], hostaddr[NI_MAXHOST] = "";
    uint16_t portnum;
    if (tg_config_split_address(b->address, host, sizeof host, &portnum) != 0) {
        say(p, "cannot connect: backend.address %s is not host:port", b->address);
        raise_rc(p, TG_PG_PREFLIGHT_NOCONNECT);
        return NULL;
    }
    snprintf(port, sizeof port, "%u", portnum);

    /* verify-full checks server_name, which may differ from the address's host: connect to the
     * address (resolved here) and let libpq verify the certificate against server_name. */
    const char *verify_name = host;
    if (b->tls == TG_BACKEND_TLS_VERIFY_FULL && b->server_name &&
        strcmp(b->server_name, host) != 0) {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
        int gai = getaddrinfo(host, port, &hints, &res);
        if (gai != 0 || getnameinfo(res->ai_addr, res->ai_addrlen, hostaddr, sizeof hostaddr, NULL,
                                    0, NI_NUMERICHOST) != 0) {
            say(p, "cannot connect: cannot resolve %s: %s", host,
                gai != 0 ? gai_strerror(gai) : "no numeric address");
            if (res) {
                freeaddrinfo(res);
            }
            raise_rc(p, TG_PG_PREFLIGHT_NOCONNECT);
            return NULL;
        }
        freeaddrinfo(res);
        verify_name = b->server_name;
    }

    static const char *const sslmodes[] = {
        [TG_BACKEND_TLS_DISABLE] = "disable",
        [TG_BACKEND_TLS_REQUIRE] = "require", /* verify-ca when sslrootcert is set */
        [TG_BACKEND_TLS_VERIFY_FULL] = "verify-full",
    };
    const char *keys[16], *vals[16];
    int n = 0;
#define PF_PARAM(k, v)                                                                             \
    do {                                                                                           \
        keys[n] = (k);                                                                             \
        vals[n] = (v);                                                                             \
        n++;                                                                                       \
    } while (0)
    PF_PARAM("host", verify_name);
    if (hostaddr[0]) {
        PF_PARAM("hostaddr", hostaddr);
    }
    PF_PARAM("port", port);
    if (b->user) {
        PF_PARAM("user", b->user);
    }
    if (b->password.data) {
        PF_PARAM("password", b->password.data);
    }
    if (db) {
        PF_PARAM("dbname", db);
    }
    PF_PARAM("sslmode", sslmodes[b->tls]);
    if (b->ca_file) {
        PF_PARAM("sslrootcert", b->ca_file);
    }
    PF_PARAM("gssencmode", "disable");
    PF_PARAM("connect_timeout", PF_CONNECT_TIMEOUT_S);
    PF_PARAM("application_name", "tenantgate-check");
    PF_PARAM("options", "-c default_transaction_read_only=on");
    PF_PARAM(NULL, NULL);
#undef PF_PARAM

    PGconn *c = PQconnectdbParams(keys, vals, 0 /* dbname is a name, never a URI */);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        char why[512];
        say(p, "cannot connect to %s as %s: %s", b->address, b->user ? b->user : "(default user)",
            one_line(c ? PQerrorMessage(c) : "out of memory", why, sizeof why));
        PQfinish(c);
        raise_rc(p, TG_PG_PREFLIGHT_NOCONNECT);
        return NULL;
    }
    PQsetNoticeProcessor(c, quiet_notices, NULL);
    return c;
}

/* ------------------------------------------------------------------ checks */

/* The role must not be superuser or BYPASSRLS: either ignores every policy. Stores the quoted
 * role name in role. Returns false when the role could not be read. */
static bool check_role(pf *p, PGconn *c, char *role, size_t rolelen)
{
    PGresult *r = query(p, c, "the role", 1,
                        "SELECT pg_catalog.quote_ident(rolname), rolsuper, rolbypassrls"
                        " FROM pg_catalog.pg_roles WHERE rolname = current_user",
                        0, NULL);
    if (!r) {
        return false;
    }
    snprintf(role, rolelen, "%s", PQgetvalue(r, 0, 0));
    if (is_true(r, 0, 1)) {
        say(p,
            "problem: role %s is a superuser, which bypasses row-level security; "
            "fix: ALTER ROLE %s NOSUPERUSER;",
            role, role);
        raise_rc(p, TG_PG_PREFLIGHT_UNSAFE);
    }
    if (is_true(r, 0, 2)) {
        say(p,
            "problem: role %s has BYPASSRLS, which ignores row-level security; "
            "fix: ALTER ROLE %s NOBYPASSRLS;",
            role, role);
        raise_rc(p, TG_PG_PREFLIGHT_UNSAFE);
    }
    PQclear(r);
    return true;
}

/* Every table with the tenant column: RLS enabled, forced, at least one policy. Stores the
 * number of such tables in *count. Returns false when the catalogs could not be read. */
static bool check_tables(pf *p, PGconn *c, const char *role, int *count)
{
    const tg_postgres_config *pg = &p->l->postgres;
    const char *params[2] = {pg->tenant_column, pg->tenant_setting};
    PGresult *r = query(
        p, c, "the tables", 0,
        "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname),"
        "       c.relrowsecurity, c.relforcerowsecurity,"
        "       (SELECT count(*) FROM pg_catalog.pg_policy po WHERE po.polrelid = c.oid),"
        "       c.relowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user),"
        "       pg_catalog.quote_literal(pg_catalog.format('%I.%I', n.nspname, c.relname)),"
        "       pg_catalog.quote_ident($1), pg_catalog.quote_literal($2),"
        "       pg_catalog.quote_literal($1),"
        "       (SELECT pg_catalog.string_agg(coalesce(pg_catalog.pg_get_expr(po.polqual,"
        "                  po.polrelid), '') || ' ' || coalesce(pg_catalog.pg_get_expr("
        "                  po.polwithcheck, po.polrelid), ''), ' ')"
        "          FROM pg_catalog.pg_policy po WHERE po.polrelid = c.oid)"
        "  FROM pg_catalog.pg_class c"
        "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p')"
        "   AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        "   AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'"
        "   AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid"
        "               AND a.attname = $1 AND a.attnum > 0 AND NOT a.attisdropped)"
        " ORDER BY 1",
        2, params);
    if (!r) {
        return false;
    }
    *count = PQntuples(r);
    for (int i = 0; i < PQntuples(r); i++) {
        const char *tbl = PQgetvalue(r, i, 0);
        bool enabled = is_true(r, i, 1), forced = is_true(r, i, 2);
        long policies = strtol(PQgetvalue(r, i, 3), NULL, 10);
        bool owned = is_true(r, i, 4);
        const char *tbl_lit = PQgetvalue(r, i, 5), *col = PQgetvalue(r, i, 6);
        const char *setting_lit = PQgetvalue(r, i, 7), *col_lit = PQgetvalue(r, i, 8);
        const char *quals = PQgetisnull(r, i, 9) ? "" : PQgetvalue(r, i, 9);

        if (!enabled) {
            say(p,
                "problem: table %s has column %s but row-level security is disabled; "
                "fix: ALTER TABLE %s ENABLE ROW LEVEL SECURITY;",
                tbl, col, tbl);
            raise_rc(p, TG_PG_PREFLIGHT_UNSAFE);
        }
        if (!forced && owned) {
            say(p,
                "problem: table %s is owned by role %s and row-level security is not forced, so "
                "this role bypasses it; fix: ALTER TABLE %s FORCE ROW LEVEL SECURITY;",
                tbl, role, tbl);
            raise_rc(p, TG_PG_PREFLIGHT_UNSAFE);
        } else if (!forced) {
            say(p,
                "problem: table %s has row-level security not forced, so its owner bypasses it; "
                "fix: ALTER TABLE %s FORCE ROW LEVEL SECURITY;",
                tbl, tbl);
            raise_rc(p, TG_PG_PREFLIGHT_UNSAFE);
        }
        if (policies == 0) {
            if (pg->signed_context) {
                say(p,
                    "problem: table %s has no row-level security policy; fix: CREATE POLICY "
                    "tenant_isolation ON %s USING (%s = (SELECT tenantgate.current_tenant())) "
                    "WITH CHECK (%s = (SELECT tenantgate.current_tenant())); or SELECT "
                    "tenantgate.protect_table(%s, %s, %s, signed_context => true); "
                    "(see deploy/sql/)",
                    tbl, tbl, col, col, tbl_lit, col_lit, setting_lit);
            } else {
                say(p,
                    "problem: table %s has no row-level security policy; fix: CREATE POLICY "
                    "tenant_isolation ON %s USING (%s = current_setting(%s, true)) WITH CHECK "
                    "(%s = current_setting(%s, true)); or SELECT tenantgate.protect_table(%s, "
                    "%s, %s); (see deploy/sql/)",
                    tbl, tbl, col, setting_lit, col, setting_lit, tbl_lit, col_lit, setting_lit);
            }
            raise_rc(p, TG_PG_PREFLIGHT_UNSAFE);
        } else if (pg->signed_context && !strstr(quals, "current_tenant")) {
            say(p,
                "warning: the policies on table %s do not call tenantgate.current_tenant(), so "
                "a forged %s would pass them; fix: SELECT tenantgate.protect_table(%s, %s, %s, "
                "signed_context => true);",
                tbl, pg->tenant_setting, tbl_lit, col_lit, setting_lit);
        } else if (!pg->signed_context && !strstr(quals, pg->tenant_setting) &&
                   !strstr(quals, "current_tenant")) {
            say(p,
                "warning: the policies on table %s do not mention %s; check that they filter "
                "by tenant",
                tbl, pg->tenant_setting);
        }
        if (owned && forced) {
            say(p,
                "info: role %s owns table %s; FORCE ROW LEVEL SECURITY applies its policies to "
                "the owner too (a separate owner role is still preferable)",
                role, tbl);
        }
    }
    PQclear(r);
    return true;
}

/* hex(HMAC-SHA256(key, tenant)) into hex (65 bytes), as the session computes it. */
static bool context_sig(const tg_secret *key, const char *tenant, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!HMAC(EVP_sha256(), key->data, (int)key->len, (const unsigned char *)tenant, strlen(tenant),
              md, &mdlen) ||
        mdlen != 32) {
        return false;
    }
    for (unsigned i = 0; i < mdlen; i++) {
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    }
    OPENSSL_cleanse(md, sizeof md);
    return true;
}

/* With signed_context: tenantgate.current_tenant() is there, usable, accepts tenantgate's
 * signature and refuses a wrong one; the key table is not readable by the role. */
static void check_signed_context(pf *p, PGconn *c, const char *role)
{
    const tg_postgres_config *pg = &p->l->postgres;
    /* Catalog joins rather than to_regprocedure(): name lookups fail without USAGE on the
     * schema, catalog rows do not. */
    PGresult *r =
        query(p, c, "tenantgate.current_tenant()", 1,
              "SELECT p.oid IS NOT NULL,"
              "       coalesce(pg_catalog.has_schema_privilege(n.oid, 'USAGE'), false),"
              "       coalesce(pg_catalog.has_function_privilege(p.oid, 'EXECUTE'), false),"
              "       coalesce(pg_catalog.has_table_privilege(k.oid, 'SELECT'), false)"
              "  FROM (SELECT 1) one"
              "  LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = 'tenantgate'"
              "  LEFT JOIN pg_catalog.pg_proc p ON p.pronamespace = n.oid"
              "        AND p.proname = 'current_tenant' AND p.pronargs = 0"
              "  LEFT JOIN pg_catalog.pg_class k ON k.relnamespace = n.oid"
              "        AND k.relname = 'context_key'",
              0, NULL);
    if (!r) {
        return;
    }
    bool exists = is_true(r, 0, 0), usage = is_true(r, 0, 1), exec = is_true(r, 0, 2);
    bool key_readable = is_true(r, 0, 3);
    PQclear(r);
    if (key_readable) {
        say(p,
            "problem: role %s can read tenantgate.context_key, so it could sign any tenant; "
            "fix: REVOKE ALL ON tenantgate.context_key FROM %s, PUBLIC;",
            role, role);
        raise_rc(p, TG_PG_PREFLIGHT_UNSAFE);
    }
    if (!exists) {
        say(p,
            "problem: signed_context is on but function tenantgate.current_tenant() does not "
            "exist; fix: psql -v app_role=%s -v context_key=\"$(cat %s)\" -f "
            "deploy/sql/signed_context.sql (as the table owner)",
            role, pg->context_key.path ? pg->context_key.path : "KEYFILE");
        raise_rc(p, TG_PG_PREFLIGHT_UNSAFE);
        return;
    }
    if (!usage || !exec) {
        say(p,
            "problem: role %s cannot call tenantgate.current_tenant(); fix: GRANT USAGE ON "
            "SCHEMA tenantgate TO %s; GRANT EXECUTE ON FUNCTION tenantgate.current_tenant() TO "
            "%s;",
            role, role, role);
        raise_rc(p, TG_PG_PREFLIGHT_UNSAFE);
        return;
    }

    /* The function must return the tenant for the signature tenantgate sends, and NULL for a
     * wrong one. The settings live in this check's own session only. */
    char sig[65];
    if (!pg->context_key.data || !context_sig(&pg->context_key, PF_PROBE_TENANT, sig)) {
        say(p, "cannot inspect tenantgate.current_tenant(): cannot compute the signature");
        raise_rc(p, TG_PG_PREFLIGHT_NOCONNECT);
        return;
    }
    const char *params[3] = {pg->tenant_setting, PF_PROBE_TENANT, sig};
    r = query(p, c, "tenantgate.current_tenant()", 1,
              "SELECT pg_catalog.set_config($1, $2, false),"
              "       pg_catalog.set_config('" PF_SIG_SETTING "', $3, false)",
              3, params);
    PQclear(r);
    if (!r) {
        return;
    }
    const char *probe[1] = {PF_PROBE_TENANT};
    r = query(p, c, "tenantgate.current_tenant()", 1,
              "SELECT tenantgate.current_tenant() IS NOT DISTINCT FROM $1", 1, probe);
    if (!r) {
        return;
    }
    bool accepts = is_true(r, 0, 0);
    PQclear(r);
    r = query(p, c, "tenantgate.current_tenant()", 1,
              "SELECT pg_catalog.set_config('" PF_SIG_SETTING "', pg_catalog.repeat('0', 64),"
              "       false), tenantgate.current_tenant() IS NULL",
              0, NULL);
    if (!r) {
        return;
    }
    bool refuses = is_true(r, 0, 1);
    PQclear(r);
    if (!accepts) {
        say(p,
            "problem: tenantgate.current_tenant() rejects tenantgate's signature: the key in %s "
            "differs from the one in tenantgate.context_key (or the function does not read %s), "
            "so every policy using it hides all rows; fix: run deploy/sql/signed_context.sql "
            "again with -v context_key=\"$(cat %s)\" -v tenant_setting=%s",
            pg->context_key.path, pg->tenant_setting, pg->context_key.path, pg->tenant_setting);
        raise_rc(p, TG_PG_PREFLIGHT_UNSAFE);
    }
    if (!refuses) {
        say(p, "problem: tenantgate.current_tenant() returns the tenant without a valid signature; "
               "fix: recreate it from deploy/sql/signed_context.sql");
        raise_rc(p, TG_PG_PREFLIGHT_UNSAFE);
    }
}

/* Checks one database; returns its result. */
static int check_database(const tg_listener_config *l, FILE *report, const char *db)
{
    pf p = {.l = l, .report = report, .db = db ? db : "(default)", .rc = 0};
    PGconn *c = pf_connect(&p, db);
    if (!c) {
        return p.rc;
    }
    char role[256];
    int tables = 0;
    if (check_role(&p, c, role, sizeof role) && check_tables(&p, c, role, &tables)) {
        if (l->postgres.signed_context) {
            check_signed_context(&p, c, role);
        }
        if (tables == 0 && p.rc == 0) {
            say(&p,
                "warning: no table has a column named %s (postgres.tenant_column), so row-level "
                "security protects nothing here",
                l->postgres.tenant_column);
        }
        if (p.rc == 0) {
            say(&p,
                "ok (role %s: not superuser, no BYPASSRLS; %d table%s with column %s: "
                "row-level security enabled, forced, with policies%s)",
                role, tables, tables == 1 ? "" : "s", l->postgres.tenant_column,
                l->postgres.signed_context ? "; tenantgate.current_tenant() verifies the key" : "");
        }
    }
    PQfinish(c);
    return p.rc;
}

int tg_pg_preflight(const tg_listener_config *l, FILE *report)
{
    int rc = TG_PG_PREFLIGHT_OK;
    if (l->postgres.databases) {
        for (size_t i = 0; l->postgres.databases[i]; i++) {
            int r = check_database(l, report, l->postgres.databases[i]);
            rc = r > rc ? r : rc;
        }
    } else {
        rc = check_database(l, report, l->backend.user); /* NULL: libpq's default */
    }
    fflush(report);
    return rc;
}
