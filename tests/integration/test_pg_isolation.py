"""protocol: postgres -- the cross-tenant attack corpus (SPEC §6), on a real PostgreSQL 15.

Tenant A ("acme") writes rows first; tenant B ("globex") then tries every bypass we
could think of: changing the tenant setting (SET / RESET / set_config anywhere, in
every spelling), switching roles, role and database defaults, server-side code
(DO, functions), RLS DDL, TRUNCATE, locks, other sessions (terminate, cancel,
pg_stat_activity, pg_locks), server files and programs, large objects, prepared
transactions, fast-path calls, multi-statement strings, comment / quoting /
dollar-quote tricks, prepared statements and the extended protocol, startup
options, token tampering, LISTEN on A's channels, cancel keys.

For every attempt (an autouse fixture and run_attack()):
  * the attempt fails with 42501 -- from tenantgate ("tenantgate: ..."), or from
    PostgreSQL where RLS itself refuses -- or returns nothing of A's;
  * B's session afterwards is still B's: current_setting is B, no row of A's is
    visible (in the same session and in a new one);
  * A's data is unchanged: count and checksum of A's rows, read as the superuser
    and as A through tenantgate, plus global state (role settings, RLS flags,
    policies, prepared transactions, large objects, A's session alive).
"""

import os
import random
import threading
import time

import jwt
import psycopg
import psycopg.errors
import pytest

import pg_fixture as pf
import tghelpers as h

A, B = "acme", "globex"
SECRET = "acme-secret"  # every row of A's carries it; it must never reach B


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    pg = pf.PgServer()
    proxy = None
    victim = None
    try:
        pg.start()
        pf.setup_schema(pg)
        proxy, tokens = pf.start_proxy(str(tmp_path_factory.mktemp("pgiso")), pg)
        e = pf.Env(pg, proxy, tokens, proxy.dir)
        with e.connect(A) as c:  # A writes first, through tenantgate
            for i in range(5):
                c.execute("INSERT INTO documents (body) VALUES (%s)", (f"{SECRET}-{i}",))
        with e.connect(B) as c:
            for i in range(2):
                c.execute("INSERT INTO documents (body) VALUES (%s)", (f"globex-own-{i}",))
        pg.su_query("ANALYZE documents")
        # A's long-lived session: nothing B does may end or block it
        victim = e.connect(A, application_name="victim-a")
        e.victim = victim
        e.victim_pid = pg.su_query(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'victim-a'")[0][0]
        e.a_ids = [r[0] for r in pg.su_query(
            "SELECT id FROM documents WHERE tenant_id = %s ORDER BY id", (A,))]
        e.set_config_oid = pg.su_query("SELECT 'pg_catalog.set_config'::regproc::oid")[0][0]
        yield e
    finally:
        if victim is not None:
            victim.close()
        if proxy is not None:
            pf.stop_proxy(proxy)
        pg.stop()


GLOBAL_STATE_SQL = """
SELECT
  (SELECT rolconfig FROM pg_roles WHERE rolname = 'app'),
  (SELECT rolsuper OR rolbypassrls OR rolcreaterole FROM pg_roles WHERE rolname = 'app'),
  (SELECT count(*) FROM pg_db_role_setting),
  (SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE oid = 'documents'::regclass),
  (SELECT string_agg(polname || ':' || pg_get_expr(polqual, polrelid) || ':' ||
                     pg_get_expr(polwithcheck, polrelid), ';') FROM pg_policy),
  (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'documents'::regclass),
  (SELECT count(*) FROM pg_prepared_xacts),
  (SELECT count(*) FROM pg_largeobject_metadata),
  (SELECT count(*) FROM pg_proc WHERE proowner = 'app'::regrole),
  (SELECT count(*) FROM pg_class WHERE relowner = 'app'::regrole AND relpersistence <> 't'),
  (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'documents'::regclass),
  (SELECT count(*) FROM pg_auth_members),
  (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory')
"""


def a_view_through_proxy(env):
    with env.connect(A) as c:
        return tuple(c.execute(
            "SELECT count(*), coalesce(md5(string_agg(id::text || ':' || coalesce(body, "
            "'<null>'), ',' ORDER BY id)), '') FROM documents").fetchone())


@pytest.fixture(autouse=True)
def a_unchanged(env):
    """A's rows, global state and A's live session are the same after the test."""
    before = pf.tenant_digest(env.pg, A)
    assert before[0] == 5
    state = env.pg.su_query(GLOBAL_STATE_SQL)[0]
    yield
    assert pf.tenant_digest(env.pg, A) == before, "A's rows changed"
    assert a_view_through_proxy(env) == before, "A's view through tenantgate changed"
    assert env.pg.su_query(GLOBAL_STATE_SQL)[0] == state, "global state changed"
    assert env.victim.execute("SELECT current_setting('app.tenant_id'), count(*) "
                              "FROM documents").fetchone() == (A, 5), "A's session disturbed"


# ---- the runner ----------------------------------------------------------------------------------


def _values(cur):
    """Every value of every result set of the cursor, as strings."""
    out = []
    while True:
        if cur.description:
            for row in cur.fetchall():
                out.extend(str(v) for v in row)
        if not cur.nextset():
            return out


def check_b_session(env, conn):
    """B's session (and a new one) is still B's and sees nothing of A's."""
    if conn is not None and not conn.closed:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback() if not conn.autocommit else conn.execute("ROLLBACK")
        assert conn.execute("SELECT current_setting('app.tenant_id')").fetchone() == (B,)
        vals = _values(conn.execute("SELECT tenant_id, body FROM documents"))
        assert not any(SECRET in v or v == A for v in vals), vals
    with env.connect(B) as c:
        assert c.execute("SELECT current_setting('app.tenant_id'), current_user, "
                         "count(*) FILTER (WHERE tenant_id <> 'globex') FROM documents"
                         ).fetchone() == (B, "app", 0)


def expect_outcome(sql, expect, result):
    """result: ("ok", values) or ("err", exception)."""
    kind, val = result
    if expect == "ok":
        assert kind == "ok", f"{sql!r}: {val!r}"
    elif expect == "deny":  # refused by tenantgate itself
        assert kind == "err", f"{sql!r} was not refused: {val!r}"
        assert val.sqlstate == "42501", f"{sql!r}: {val.sqlstate} {val}"
        assert val.diag.message_primary.startswith("tenantgate:"), f"{sql!r}: {val}"
        # reasons never quote the statement's literal values
        assert A not in val.diag.message_primary, f"{sql!r}: {val}"
    elif expect == "refuse":  # 42501 from tenantgate or from PostgreSQL (RLS, privileges)
        assert kind == "err", f"{sql!r} was not refused: {val!r}"
        assert val.sqlstate == "42501", f"{sql!r}: {val.sqlstate} {val}"
    elif expect == "fail":  # any error
        assert kind == "err", f"{sql!r} did not fail: {val!r}"
    elif expect == "25P02":
        assert kind == "err" and val.sqlstate == "25P02", f"{sql!r}: {val!r}"
    elif expect == "noleak":  # any outcome, but nothing of A's in it
        pass
    else:
        raise ValueError(expect)
    if kind == "ok":
        assert not any(SECRET in v or v == A for v in val), f"{sql!r} leaked: {val}"
    else:  # the statement tenantgate sent in place of a denied one never shows
        assert "tenantgate_denied" not in str(val), f"{sql!r}: {val}"


def run(conn, sql, params=None, prepare=None):
    try:
        cur = conn.execute(sql, params, prepare=prepare)
        return ("ok", _values(cur))
    except psycopg.Error as e:
        return ("err", e)


def run_attack(env, steps, client_cursor=False):
    """steps: [(sql, expect)]; runs them in order in one new B session (autocommit)."""
    conn = env.connect(B)
    if client_cursor:
        conn.cursor_factory = psycopg.ClientCursor
    try:
        for sql, expect in steps:
            sql = sql.replace("{A_PID}", str(env.victim_pid)).replace(
                "{A_ID}", str(env.a_ids[0]))
            if conn.closed:
                break
            expect_outcome(sql, expect, run(conn, sql))
        check_b_session(env, conn)
    finally:
        conn.close()


def one(sql, expect="deny"):
    return pytest.param([(sql, expect)], id=sql[:60])


def in_tx(sql, expect="deny"):
    return pytest.param([("BEGIN", "ok"), ("SELECT count(*) FROM documents", "ok"),
                         (sql, expect), ("SELECT 1", "25P02"), ("ROLLBACK", "ok")],
                        id="tx:" + sql[:56])


SC = "set_config('app.tenant_id', 'acme', false)"

ATTACKS = [
    # -- SET / RESET of the tenant setting, every spelling
    one("SET app.tenant_id = 'acme'"),
    one("SET app.tenant_id TO acme"),
    one("SET SESSION app.tenant_id = 'acme'"),
    one("SET LOCAL app.tenant_id = 'acme'"),
    one('SET "app"."tenant_id" = \'acme\''),
    one('SET "app.tenant_id" = \'acme\''),
    one("SET APP.TENANT_ID = 'acme'"),
    one("set App.Tenant_Id to 'acme'"),
    one('SET U&"app"."tenant\\005fid" = \'acme\'', "fail"),
    one("SET app.tenant_id = DEFAULT"),
    one("SET app.tenant_id TO ''"),
    one("RESET app.tenant_id"),
    one("SET tenantgate.tenant_sig = 'forged'"),
    in_tx("SET LOCAL app.tenant_id = 'acme'"),
    in_tx("SET app.tenant_id = 'acme'"),
    # -- settings that change how the server splits statement text (guard/server divergence)
    one("SET standard_conforming_strings = off"),
    one("SET standard_conforming_strings TO false"),
    one("SET client_encoding = 'SJIS'"),
    one("SET client_encoding TO 'Shift_JIS'"),
    one("SET NAMES 'GBK'"),
    one("SET client_encoding = 'JOHAB'"),
    one("SELECT set_config('standard_conforming_strings', 'off', false)"),
    one("SELECT set_config('client_encoding', 'BIG5', false)"),
    # -- set_config anywhere
    one(f"SELECT {SC}"),
    one("SELECT set_config('app.tenant_id', 'acme', true)"),
    one(f"SELECT * FROM documents WHERE {SC} IS NOT NULL"),
    one(f"WITH s AS (SELECT {SC}) SELECT * FROM s, documents"),
    one(f"WITH s AS MATERIALIZED (SELECT {SC} AS v) SELECT d.* FROM documents d JOIN s ON true"),
    one(f"SELECT (SELECT {SC}), * FROM documents"),
    one(f"SELECT * FROM documents WHERE id IN (SELECT length({SC}))"),
    one(f"VALUES ({SC})"),
    one(f"SELECT length({SC})"),
    one(f"SELECT upper(lower({SC}))"),
    one(f"SELECT coalesce(NULL, {SC})"),
    one(f"SELECT CASE WHEN true THEN {SC} END"),
    one(f"SELECT ARRAY[{SC}]"),
    one(f"SELECT ROW({SC})"),
    one(f"SELECT * FROM {SC}"),
    one(f"SELECT * FROM ROWS FROM ({SC})"),
    one(f"SELECT d.* FROM documents d, LATERAL (SELECT {SC}) x"),
    one(f"SELECT * FROM documents ORDER BY {SC}"),
    one(f"SELECT count(*) FROM documents GROUP BY {SC}"),
    one(f"SELECT count(*) FROM documents HAVING {SC} IS NOT NULL"),
    one(f"SELECT pg_catalog.{SC}"),
    one("SELECT PG_CATALOG.SET_CONFIG('app.tenant_id', 'acme', false)"),
    one("SELECT Set_Config('APP.TENANT_ID', 'acme', false)"),
    one("SELECT \"set_config\"('app.tenant_id', 'acme', false)"),
    one("SELECT \"pg_catalog\".\"set_config\"('app.tenant_id', 'acme', false)"),
    one("SELECT set_config('app.' || 'tenant_id', 'acme', false)"),
    one("SELECT set_config(concat('app.', 'tenant_id'), 'acme', false)"),
    one("SELECT set_config(lower('APP.TENANT_ID'), 'acme', false)"),
    one("SELECT set_config(chr(97) || 'pp.tenant_id', 'acme', false)"),
    one("SELECT set_config(n, 'acme', false) FROM (VALUES ('app.tenant_id')) v(n)"),
    one("SELECT set_config('app.tenant_id'::text, 'acme', false)"),
    one("SELECT set_config(CAST('app.tenant_id' AS text), 'acme', false)"),
    one("SELECT set_config(('app.tenant_id'), 'acme', false)"),
    one("SELECT set_config('app.tenant_id' COLLATE \"C\", 'acme', false)"),
    one("SELECT set_config(E'app.tenant\\x5fid', 'acme', false)"),
    one("SELECT set_config(U&'app.tenant\\005fid', 'acme', false)"),
    one("SELECT set_config($$app.tenant_id$$, $$acme$$, false)"),
    one("SELECT set_config($q$app.tenant_id$q$, 'acme', false)"),
    one("SELECT set_config('app.'\n'tenant_id', 'acme', false)"),
    one("SELECT set_config('role', 'postgres', false)"),
    one("SELECT set_config('session_authorization', 'postgres', false)"),
    one("SELECT set_config('tenantgate.tenant_sig', 'x', false)"),
    one("SELECT set_config(setting_name => 'app.tenant_id', new_value => 'acme', "
        "is_local => false)", "fail"),
    one(f"INSERT INTO documents (body) VALUES ({SC})"),
    one(f"INSERT INTO documents (body) SELECT {SC}"),
    one(f"INSERT INTO documents (body) VALUES ('x') RETURNING {SC}"),
    one(f"UPDATE documents SET body = {SC}"),
    one(f"UPDATE documents SET body = body WHERE {SC} = 'acme'"),
    one(f"DELETE FROM documents WHERE {SC} = 'nope'"),
    one(f"EXPLAIN ANALYZE SELECT {SC}"),
    one(f"EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM documents WHERE {SC} IS NOT NULL"),
    one(f"PREPARE p1 AS SELECT {SC}"),
    one("PREPARE p2(text) AS SELECT set_config($1, 'acme', false)"),
    one(f"DECLARE c1 CURSOR WITH HOLD FOR SELECT {SC}"),
    in_tx(f"DECLARE c2 CURSOR FOR SELECT {SC}"),
    one(f"COPY (SELECT {SC}) TO STDOUT"),
    one(f"CREATE TEMP TABLE t1 AS SELECT {SC}"),
    one(f"SELECT {SC} INTO TEMP t2"),
    one("UPDATE pg_settings SET setting = 'acme' WHERE name = 'app.tenant_id'", "noleak"),
    one("SELECT set_config(name, 'acme', false) FROM pg_settings WHERE name LIKE 'app.%'"),
    # -- multi-statement strings, comments, quoting, dollar quotes
    one("SELECT 1; SET app.tenant_id = 'acme'"),
    one(f"SELECT 1; SELECT {SC}"),
    one("SET app.tenant_id = 'acme'; SELECT 1"),
    one(";;; SET app.tenant_id = 'acme';"),
    one("SELECT 1; SELECT 2; SELECT 3; RESET app.tenant_id"),
    one("SELECT $$;$$; SET app.tenant_id = 'acme'"),
    one("SELECT 'it''s;'; SET app.tenant_id = 'acme'"),
    one("SELECT $a$ $b$ ; $b$ $a$; SET app.tenant_id = 'acme'"),
    one("SELECT 1 -- ; SET app.tenant_id = 'acme'\n; SELECT set_config('app.tenant_id', "
        "'acme', false)"),
    one("/* SELECT 1; */ SET app.tenant_id = 'acme'"),
    one("/* nested /* comment */ still comment */ SET app.tenant_id = 'acme'"),
    one("-- comment\nSET app.tenant_id = 'acme'"),
    one(f"SELECT /* set_config */ {SC}"),
    one("SELECT set_config(/* x */ 'app.tenant_id' /* y */, 'acme', false)"),
    one("SELECT set_config -- c\n('app.tenant_id', 'acme', false)"),
    one("SELECT set_config\t(\n'app.tenant_id'\n,\n'acme'\n,\nfalse\n)"),
    one("SeLeCt SeT_CoNfIg('App.Tenant_Id', 'acme', FaLsE)"),
    # -- roles and session authorization
    one("SET ROLE postgres"),
    one("SET ROLE app"),
    one("SET SESSION ROLE postgres"),
    one("SET role TO 'postgres'"),
    one("RESET ROLE"),
    one("SET SESSION AUTHORIZATION postgres"),
    one("SET SESSION AUTHORIZATION DEFAULT"),
    one("RESET SESSION AUTHORIZATION"),
    one("SET session_authorization = 'postgres'"),
    in_tx("SET LOCAL ROLE postgres"),
    # -- role and database defaults, server settings
    one("ALTER ROLE CURRENT_USER SET app.tenant_id = 'acme'"),
    one("ALTER ROLE app SET app.tenant_id = 'acme'"),
    one("ALTER USER app SET app.tenant_id TO 'acme'"),
    one("ALTER ROLE app IN DATABASE app SET app.tenant_id = 'acme'"),
    one("ALTER ROLE CURRENT_USER SET role = 'postgres'"),
    one("ALTER ROLE CURRENT_USER SET search_path = 'evil'"),
    one("ALTER ROLE app RESET ALL"),
    one("ALTER ROLE app BYPASSRLS"),
    one("ALTER DATABASE app SET app.tenant_id = 'acme'"),
    one("ALTER SYSTEM SET app.tenant_id = 'acme'"),
    one("CREATE ROLE evil LOGIN"),
    one("GRANT postgres TO app"),
    one("GRANT SELECT ON documents TO PUBLIC"),
    one("REVOKE ALL ON documents FROM app"),
    # -- server-side code
    one("DO $$ BEGIN PERFORM set_config('app.tenant_id', 'acme', false); END $$"),
    one("DO $$ BEGIN EXECUTE 'SET app.tenant_id = ''acme'''; END $$"),
    one("DO LANGUAGE plpgsql 'BEGIN NULL; END'"),
    one("CREATE FUNCTION f() RETURNS text LANGUAGE sql AS "
        "$$ SELECT set_config('app.tenant_id', 'acme', false) $$"),
    one("CREATE OR REPLACE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'"),
    one("CREATE PROCEDURE pr() LANGUAGE sql AS $$ SELECT 1 $$"),
    one("CREATE TRIGGER trg BEFORE INSERT ON documents FOR EACH ROW "
        "EXECUTE FUNCTION suppress_redundant_updates_trigger()"),
    one("CREATE VIEW v AS SELECT * FROM documents"),
    one("CREATE TEMP TABLE t3 (a text DEFAULT set_config('app.tenant_id', 'acme', false))"),
    one("CREATE EXTENSION dblink"),
    one("LOAD 'auto_explain'"),
    one("SELECT dblink_exec('dbname=app', 'SET app.tenant_id = ''acme''')"),
    # -- RLS itself, DDL on the table
    one("ALTER TABLE documents DISABLE ROW LEVEL SECURITY"),
    one("ALTER TABLE documents NO FORCE ROW LEVEL SECURITY"),
    one("ALTER TABLE IF EXISTS public.documents DISABLE ROW LEVEL SECURITY"),
    one("DROP POLICY tenant_isolation ON documents"),
    one("ALTER POLICY tenant_isolation ON documents USING (true)"),
    one("CREATE POLICY open_door ON documents USING (true)"),
    one("ALTER TABLE documents OWNER TO app"),
    one("ALTER TABLE documents ALTER COLUMN tenant_id SET DEFAULT 'acme'"),
    one("DROP TABLE documents"),
    one("TRUNCATE documents"),
    one("TRUNCATE TABLE ONLY public.documents"),
    one("TRUNCATE copy_sink, documents RESTART IDENTITY CASCADE"),
    in_tx("TRUNCATE documents"),
    in_tx("LOCK TABLE documents"),
    in_tx("LOCK TABLE documents IN ACCESS EXCLUSIVE MODE NOWAIT"),
    in_tx("LOCK documents IN SHARE MODE"),
    one("LOCK TABLE documents"),
    # -- other sessions
    one("SELECT pg_terminate_backend({A_PID})"),
    one("SELECT pg_cancel_backend({A_PID})"),
    one("SELECT pg_catalog.pg_terminate_backend({A_PID}, 1000)"),
    one("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app'"),
    one("SELECT * FROM pg_stat_activity"),
    one("SELECT query FROM pg_catalog.pg_stat_activity"),
    one("SELECT * FROM \"pg_stat_activity\""),
    one("SELECT * FROM pg_stat_get_activity(NULL)"),
    one("SELECT pg_stat_get_backend_activity(s) FROM pg_stat_get_backend_idset() s"),
    one("SELECT * FROM pg_locks"),
    one("SELECT * FROM pg_catalog.pg_locks"),
    one("SELECT * FROM pg_prepared_xacts"),
    # -- sizes that count every tenant's rows of a shared table
    one("SELECT pg_relation_size('documents')"),
    one("SELECT pg_catalog.pg_total_relation_size('documents'::regclass)"),
    one("SELECT pg_table_size('documents'), pg_indexes_size('documents')"),
    one("SELECT pg_database_size(current_database())"),
    one("SELECT pg_advisory_lock(42)"),
    one("SELECT pg_try_advisory_lock(42)"),
    in_tx("SELECT pg_advisory_xact_lock(42)"),
    # -- files, programs, large objects
    one("COPY documents FROM PROGRAM 'id'"),
    one("COPY (SELECT 1) TO PROGRAM 'true'"),
    one("COPY documents TO '/tmp/tg-x'"),
    one("COPY copy_sink FROM '/etc/hostname'"),
    one("SELECT pg_read_file('/etc/passwd')"),
    one("SELECT pg_ls_dir('.')"),
    one("SELECT lo_import('/etc/hostname')"),
    one("SELECT lo_from_bytea(0, 'x')"),
    one("SELECT lo_get(16385)"),
    one("SELECT lo_create(0)"),
    one("SELECT * FROM pg_largeobject"),
    # -- global transaction ids
    in_tx("PREPARE TRANSACTION 'gx'"),
    one("COMMIT PREPARED 'gx'"),
    one("ROLLBACK PREPARED 'gx'"),
    # -- plain DML: RLS scopes it, nothing of A's is touched
    one("UPDATE documents SET body = body", "ok"),
    one("UPDATE documents SET body = 'pwned' WHERE tenant_id = 'acme'", "ok"),
    one("DELETE FROM documents WHERE tenant_id = 'acme'", "ok"),
    one("DELETE FROM documents WHERE id = {A_ID}", "ok"),
    one("UPDATE documents SET tenant_id = 'acme'", "refuse"),
    one("INSERT INTO documents (tenant_id, body) VALUES ('acme', 'forged')", "refuse"),
    one("INSERT INTO documents (id, body) VALUES ({A_ID}, 'x') ON CONFLICT (id) "
        "DO UPDATE SET body = 'pwned'", "fail"),
    one("MERGE INTO documents d USING (SELECT {A_ID} AS id) s ON d.id = s.id "
        "WHEN MATCHED THEN UPDATE SET body = 'pwned'", "noleak"),
    one("SELECT * FROM documents WHERE tenant_id = 'acme'", "ok"),
    one("TABLE documents", "ok"),
    one("SELECT * FROM ONLY public.documents", "ok"),
    one("SELECT * FROM documents FOR UPDATE", "ok"),
    one("SELECT * FROM pg_stats WHERE tablename = 'documents'", "noleak"),
    one("SELECT current_setting('app.tenant_id')", "ok"),
    one("SELECT set_config('statement_timeout', '5000', false)", "ok"),
]


@pytest.mark.parametrize("steps", ATTACKS)
def test_attack(env, steps):
    run_attack(env, steps)


@pytest.mark.parametrize("steps", [
    pytest.param([("SELECT 1; SET app.tenant_id = 'acme'", "deny")], id="multi"),
    pytest.param([(f"SELECT {SC}", "deny")], id="set_config"),
    pytest.param([("SELECT tenant_id FROM documents WHERE body LIKE 'acme%'", "ok")], id="read"),
])
def test_attack_simple_protocol_client_cursor(env, steps):
    run_attack(env, steps, client_cursor=True)


def test_dml_by_b_affects_only_b(env):
    with env.connect(B) as c:
        n_b = c.execute("SELECT count(*) FROM documents").fetchone()[0]
        cur = c.execute("UPDATE documents SET body = body || ''")
        assert cur.rowcount == n_b
        cur = c.execute("DELETE FROM documents WHERE body LIKE 'acme%'")
        assert cur.rowcount == 0
        c.execute("BEGIN")
        cur = c.execute("DELETE FROM documents")
        assert cur.rowcount == n_b
        c.execute("ROLLBACK")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("INSERT INTO documents (tenant_id, body) VALUES ('acme', 'forged')")
    check_b_session(env, None)


# ---- extended protocol and prepared statements ---------------------------------------------------


def test_extended_protocol_attacks(env):
    with env.connect(B) as c:
        for sql, params in [
            ("SELECT set_config(%s, %s, false)", ("app.tenant_id", A)),
            ("SELECT set_config(%s::text, 'acme', false)", ("app.tenant_id",)),
            (f"SELECT {SC}, %s", (1,)),
            ("SELECT * FROM documents WHERE tenant_id = %s AND "
             "set_config('app.tenant_id', %s, false) IS NOT NULL", (A, A)),
            ("SELECT pg_terminate_backend(%s)", (env.victim_pid,)),
            ("SELECT pg_advisory_lock(%s)", (42,)),
        ]:
            for prepare in (None, True, False):
                res = run(c, sql, params, prepare=prepare)
                expect_outcome(sql, "deny", res)
        # a denied named statement never exists: its later use fails like any unknown one
        res = run(c, f"SELECT {SC}", prepare=True)
        expect_outcome("prepared", "deny", res)
        assert c.execute("SELECT current_setting('app.tenant_id')",
                         prepare=True).fetchone() == (B,)
        # parameters that look like attacks are only data
        assert c.execute("SELECT %s::text", ("SET app.tenant_id = 'acme'",),
                         prepare=True).fetchone() == ("SET app.tenant_id = 'acme'",)
        assert c.execute("SELECT count(*) FROM documents WHERE body = %s OR tenant_id = %s",
                         ("x' OR '1'='1", A)).fetchone() == (0,)
        check_b_session(env, c)


def test_pipeline_with_attack_in_the_middle(env):
    with env.connect(B) as c:
        curs = [c.cursor() for _ in range(3)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            with c.pipeline():
                curs[0].execute("SELECT count(*) FROM documents")
                curs[1].execute(f"SELECT {SC}")
                curs[2].execute("SELECT * FROM documents")
        check_b_session(env, c)


# ---- raw protocol: pipelining, fast path, transactions -------------------------------------------


def raw_b(env, **params):
    raw = pf.RawPg(env.port())
    raw.login(env.tokens.mint(B), params or None)
    return raw


def test_pipelined_simple_queries_keep_order(env):
    with raw_b(env) as raw:
        raw.send(pf.query_msg("SELECT 'first'") +
                 pf.query_msg("SET app.tenant_id = 'acme'") +
                 pf.query_msg(f"SELECT 'third', {SC}") +
                 pf.query_msg("SELECT 'fourth', current_setting('app.tenant_id')"))
        replies = [pf.summarize(raw.read_until_ready()) for _ in range(4)]
        assert replies[0] == [("D", ("first",)), ("C", "SELECT 1"), ("Z", "I")], replies[0]
        for r in replies[1:3]:
            assert len(r) == 2 and r[0][0] == "E" and r[0][1] == "42501", r
            assert r[0][2].startswith("tenantgate:"), r
            assert r[1] == ("Z", "I")
        assert replies[3] == [("D", ("fourth", B)), ("C", "SELECT 1"), ("Z", "I")], replies[3]


def test_pipelined_extended_batches_keep_order(env):
    """Parse/Bind/Execute batches in one write: a denied Parse fails its batch only
    (statements after it up to Sync are skipped, as PostgreSQL does after an error)."""
    def batch(sql):
        return pf.parse_msg(sql) + pf.bind_msg() + pf.execute_msg()

    with raw_b(env) as raw:
        raw.send(batch("SELECT 'one'") + pf.SYNC +
                 batch("SELECT 'two'") + batch(f"SELECT {SC}") + batch("SELECT 'skipped'") +
                 pf.SYNC +
                 batch("SELECT current_setting('app.tenant_id')") + pf.SYNC)
        r1 = pf.summarize(raw.read_until_ready())
        r2 = pf.summarize(raw.read_until_ready())
        r3 = pf.summarize(raw.read_until_ready())
        assert r1 == [("1",), ("2",), ("D", ("one",)), ("C", "SELECT 1"), ("Z", "I")], r1
        assert r2[:4] == [("1",), ("2",), ("D", ("two",)), ("C", "SELECT 1")], r2
        assert r2[4][0] == "E" and r2[4][1] == "42501" and r2[4][2].startswith("tenantgate:"), r2
        assert r2[5:] == [("Z", "I")], r2
        assert r3 == [("1",), ("2",), ("D", (B,)), ("C", "SELECT 1"), ("Z", "I")], r3


@pytest.mark.parametrize("copy", ["extended", "extended-bad-row", "extended-copyfail",
                                  "simple"])
def test_denial_reasons_stay_matched_after_copy_in(env, copy):
    """The backend ignores Syncs while in COPY FROM STDIN mode (libpq sends one right after
    the Execute of an extended-protocol COPY): batches must still be counted right, so that
    a denial skipped in a failed batch never lends its reason to a later one."""
    def batch(sql):
        return pf.parse_msg(sql) + pf.bind_msg() + pf.execute_msg()

    rows = pf.msg(b"d", b"1\tx\n") + (pf.msg(b"d", b"oops\n") if copy == "extended-bad-row"
                                      else b"")
    end = pf.msg(b"f", b"client gave up\0") if copy == "extended-copyfail" else pf.msg(b"c")
    with raw_b(env) as raw:
        for _ in range(2):
            if copy == "simple":
                raw.send(pf.query_msg("COPY copy_sink (id, body) FROM STDIN"))
            else:
                raw.send(batch("COPY copy_sink (id, body) FROM STDIN") + pf.SYNC)
            t, _ = raw.read_msg()
            assert t == "G" or (copy != "simple" and t == "1"), t
            if t == "1":
                t, _ = raw.read_msg()
                assert t == "2", t
                t, _ = raw.read_msg()
                assert t == "G", t
            raw.send(rows + end + (b"" if copy == "simple" else pf.SYNC))
            r = pf.summarize(raw.read_until_ready())
            assert r[-1] == ("Z", "I"), r
        # one batch: a denial, then a second one PostgreSQL skips after the first error
        raw.send(batch("SET app.tenant_id = 'acme'") + batch("SELECT pg_terminate_backend(1)") +
                 pf.SYNC)
        r = pf.summarize(raw.read_until_ready())
        assert [x[0] for x in r] == ["E", "Z"] and "app.tenant_id" in r[0][2], r
        for sql, word in (("SELECT * FROM pg_locks", "pg_locks"),
                          ("SELECT lo_create(0)", "lo_create")):
            r = pf.summarize(raw.query(sql))
            assert r[0][:2] == ("E", "42501") and word in r[0][2], (sql, r)
        r = pf.summarize(raw.query("SELECT 'still in step'"))
        assert r == [("D", ("still in step",)), ("C", "SELECT 1"), ("Z", "I")], r


def test_denial_in_transaction_block_raw(env):
    with raw_b(env) as raw:
        assert pf.summarize(raw.query("BEGIN"))[-1] == ("Z", "T")
        r = pf.summarize(raw.query("SET app.tenant_id = 'acme'"))
        assert r[0][:2] == ("E", "42501") and r[-1] == ("Z", "E"), r
        r = pf.summarize(raw.query("SELECT 1"))
        assert r[0][:2] == ("E", "25P02") and r[-1] == ("Z", "E"), r
        r = pf.summarize(raw.query(f"SELECT {SC}"))
        assert r[0][0] == "E" and r[0][1] in ("25P02", "42501") and r[-1] == ("Z", "E"), r
        r = pf.summarize(raw.query("COMMIT"))
        assert ("C", "ROLLBACK") in r and r[-1] == ("Z", "I"), r
        r = pf.summarize(raw.query("SELECT current_setting('app.tenant_id')"))
        assert ("D", (B,)) in r


def test_fast_path_function_call_refused(env):
    with raw_b(env) as raw:
        raw.send(pf.function_call_msg(env.set_config_oid, ["app.tenant_id", A, "false"]))
        r = pf.summarize(raw.read_until_ready())
        assert len(r) == 2 and r[0][:2] == ("E", "42501"), r
        assert r[0][2].startswith("tenantgate:"), r
        assert r[1] == ("Z", "I")
        # pipelined with queries around it, inside a transaction block
        raw.send(pf.query_msg("BEGIN") +
                 pf.function_call_msg(env.set_config_oid, ["app.tenant_id", A, "false"]) +
                 pf.query_msg("SELECT 1") + pf.query_msg("ROLLBACK"))
        rs = [pf.summarize(raw.read_until_ready()) for _ in range(4)]
        assert rs[0][-1] == ("Z", "T")
        assert rs[1][0][:2] == ("E", "42501") and rs[1][-1] == ("Z", "E"), rs[1]
        assert rs[2][0][:2] == ("E", "25P02"), rs[2]
        assert rs[3][-1] == ("Z", "I")
        r = pf.summarize(raw.query("SELECT current_setting('app.tenant_id'), count(*) "
                                   "FROM documents WHERE tenant_id <> 'globex'"))
        assert ("D", (B, "0")) in r, r


# ---- ALTER ROLE then reconnect -------------------------------------------------------------------


def test_alter_role_then_reconnect(env):
    run_attack(env, [("ALTER ROLE CURRENT_USER SET app.tenant_id = 'acme'", "deny")])
    assert env.pg.su_query("SELECT rolconfig FROM pg_roles WHERE rolname = 'app'") == [(None,)]
    for _ in range(3):
        with env.connect(B) as c:
            assert c.execute("SELECT current_setting('app.tenant_id'), count(*) FILTER "
                             "(WHERE tenant_id = 'acme') FROM documents").fetchone() == (B, 0)


# ---- startup options -----------------------------------------------------------------------------


@pytest.mark.parametrize("params", [
    {"options": "-c app.tenant_id=acme"},
    {"options": "-capp.tenant_id=acme"},
    {"options": "--app.tenant_id=acme"},
    {"options": "-c app.tenant-id=acme"},
    {"options": "-c APP.TENANT_ID=acme"},
    {"options": "-c search_path=public -c app.tenant_id=acme"},
    {"options": "-c role=postgres"},
    {"options": "-c session_authorization=postgres"},
    {"options": "-c tenantgate.tenant_sig=x"},
    {"options": "-Pcapp.tenant_id=acme"},
    {"options": "-P -c app.tenant_id=acme"},
    {"options": "-c app.tenant_id"},
    {"options": "-c"},
    {"options": "-D /tmp"},
    {"app.tenant_id": "acme"},
    {"APP.TENANT_ID": "acme"},
    {"role": "postgres"},
    {"session_authorization": "postgres"},
    {"tenantgate.tenant_sig": "x"},
], ids=lambda p: repr(p)[:60])
def test_startup_options_refused(env, params):
    with pf.RawPg(env.port()) as raw:
        f = raw.login_error(env.tokens.mint(B), params)
        assert f["V"] == "FATAL" and f["C"] == "42501", f
        assert f["M"].startswith("tenantgate:"), f
        raw.read_until_closed()


@pytest.mark.parametrize("params", [
    {"options": "-c search_path=public\\ -c\\ app.tenant_id=acme"},
    {"options": "-c application_name=x\\ -c\\ app.tenant_id=acme"},
    {"application_name": "-c app.tenant_id=acme"},
    {"search_path": "public -c app.tenant_id=acme"},
    {"user": "postgres", "options": "-c statement_timeout=0"},
    {"database": "app", "work_mem": "1GB"},
], ids=lambda p: repr(p)[:60])
def test_startup_tricks_stay_in_tenant(env, params):
    """Either refused, or the session is B's."""
    with pf.RawPg(env.port()) as raw:
        t, body = raw.startup(params)
        if t == "E":
            return
        assert t == "R"
        raw.send(pf.msg(b"p", pf.cstr(env.tokens.mint(B))))
        msgs = raw.read_until_ready(allow_close=True)
        if any(t == "E" for t, _ in msgs):
            assert msgs[-1][0] == "E", msgs  # a FATAL, then the close
            return
        assert msgs and msgs[-1][0] == "Z", msgs
        r = pf.summarize(raw.query("SELECT current_setting('app.tenant_id'), current_user, "
                                   "count(*) FILTER (WHERE tenant_id <> 'globex') "
                                   "FROM documents"))
        assert ("D", (B, "app", "0")) in r, r


# ---- guard / server parse divergence -------------------------------------------------------------

# With standard_conforming_strings off the server reads \' as an escaped quote, the guard (which
# parses with it on) does not; in Shift-JIS 0x95 0x5c is one character, to the guard a byte and a
# backslash. Each text below is one harmless SELECT to the guard and "SELECT ...; SET
# app.tenant_id = acme" to a server in that mode.
SCS_ATTACK = b"SELECT '\\' || $$'; SET app.tenant_id = 'acme'; -- $$"
SJIS_ATTACK = b"SELECT E'\x95\x5c' ; SET app.tenant_id = $$acme$$ ; -- '"


@pytest.mark.parametrize("params,attack", [
    ({"standard_conforming_strings": "off"}, SCS_ATTACK),
    ({"Standard_Conforming_Strings": "0"}, SCS_ATTACK),
    ({"options": "-c standard_conforming_strings=off"}, SCS_ATTACK),
    ({"options": "--standard-conforming-strings=of"}, SCS_ATTACK),
    ({"client_encoding": "SJIS"}, SJIS_ATTACK),
    ({"client_encoding": "'Shift_JIS'"}, SJIS_ATTACK),
    ({"client_encoding": "WIN932"}, SJIS_ATTACK),
    ({"client_encoding": "JOHAB"}, SJIS_ATTACK),
    ({"options": "-c client_encoding=sjis"}, SJIS_ATTACK),
    ({"options": "-c client-encoding=MS_KANJI"}, SJIS_ATTACK),
    ({}, SCS_ATTACK),
    ({}, SJIS_ATTACK),
], ids=lambda v: repr(v)[:50])
def test_parse_divergence_via_startup_settings(env, params, attack):
    """Startup parameters may not put the server in a mode where it splits text differently
    from the guard: refused at startup, or the attack text does not change the tenant."""
    with pf.RawPg(env.port()) as raw:
        t, body = raw.startup(params)
        if t == "E":
            f = pf.error_fields(body)
            assert f["C"] == "42501" and f["V"] == "FATAL", f
            return
        assert t == "R"
        raw.send(pf.msg(b"p", pf.cstr(env.tokens.mint(B))))
        msgs = raw.read_until_ready(allow_close=True)
        if msgs and msgs[-1][0] == "E":
            assert pf.error_fields(msgs[-1][1])["C"] == "42501", msgs
            return
        raw.send(pf.msg(b"Q", attack + b"\0"))
        raw.read_until_ready()
        r = pf.summarize(raw.query("SELECT current_setting('app.tenant_id'), count(*) FILTER "
                                   "(WHERE tenant_id <> 'globex') FROM documents"))
        assert ("D", (B, "0")) in r, r


def test_embedded_nul_in_query(env):
    """A Query whose text has a NUL before its end: never executes what follows the NUL."""
    with raw_b(env) as raw:
        raw.send(pf.msg(b"Q", b"SELECT 1\0SET app.tenant_id = 'acme'\0"))
        try:
            msgs = raw.read_until_ready(allow_close=True)
        except TimeoutError:
            msgs = []
        if msgs and msgs[-1][0] == "Z":
            r = pf.summarize(raw.query("SELECT current_setting('app.tenant_id')"))
            assert ("D", (B,)) in r, r
    check_b_session(env, None)


def test_explain_estimates_do_not_reveal_other_tenants_rows(env):
    """Planner estimates come from statistics over every tenant's rows: EXPLAIN of a filter on
    A's tenant id (or A's values) must not differ from the same filter on a tenant that does
    not exist -- else B learns that A's rows exist and roughly how many there are."""
    with env.connect(B) as c:
        for template in ("EXPLAIN SELECT * FROM documents WHERE tenant_id = '{}'",
                         "EXPLAIN (ANALYZE, TIMING OFF, SUMMARY OFF) SELECT * FROM documents "
                         "WHERE tenant_id = '{}'"):
            outs = []
            for value in (A, "nobody-at-all"):
                res = run(c, template.format(value))
                outs.append(res if res[0] == "err" else
                            ("ok", [v.replace(value, "<v>") for v in res[1]]))
            if outs[0][0] == "err":
                assert outs[0][1].sqlstate == "42501", outs[0]
                continue
            assert outs[0] == outs[1], f"estimates differ: {outs}"


# ---- token tampering -----------------------------------------------------------------------------


def _tokens(env):
    good_b = env.tokens.mint(B)
    now = int(time.time())
    return {
        "claim-changed-without-resigning": pf.tamper_claims(good_b, tenant_id=A),
        "alg-none": pf.alg_none_token(A),
        "alg-none-upper": pf.alg_none_token(A).replace(
            pf.b64url(b'{"alg": "none", "typ": "JWT"}'), pf.b64url(b'{"alg":"NONE"}')),
        "other-secret": env.tokens.mint(A, secret="another-secret-of-at-least-32-bytes!!"),
        "hs512": jwt.encode({"tenant_id": A, "exp": now + 60},
                                          env.tokens.secret, algorithm="HS512"),
        "expired": env.tokens.mint(A, ttl=-600),
        "no-exp": jwt.encode({"tenant_id": A}, env.tokens.secret,
                                           algorithm="HS256"),
        "not-yet-valid": env.tokens.mint(A, nbf=now + 600),
        "tenant-injection": env.tokens.mint("acme -c role=postgres"),
        "tenant-quote": env.tokens.mint("acme' OR '1'='1"),
        "tenant-list": env.tokens.mint(["acme"]),
        "tenant-number": env.tokens.mint(12345),
        "tenant-missing": env.tokens.mint(None),
        "tenant-empty": env.tokens.mint(""),
        "tenant-too-long": env.tokens.mint("a" * 65),
        "signature-stripped": good_b.rsplit(".", 1)[0] + ".",
        "truncated": good_b[:-5],
        "garbage": "x.y.z",
        "empty": "",
    }


TOKEN_CASES = ["claim-changed-without-resigning", "alg-none", "alg-none-upper", "other-secret",
               "hs512", "expired", "no-exp", "not-yet-valid", "tenant-injection",
               "tenant-quote", "tenant-list", "tenant-number", "tenant-missing", "tenant-empty",
               "tenant-too-long", "signature-stripped", "truncated", "garbage", "empty"]


@pytest.mark.parametrize("case", TOKEN_CASES)
def test_token_tampering_refused(env, case):
    token = _tokens(env)[case]
    with pf.RawPg(env.port()) as raw:
        f = raw.login_error(token)
        assert f["V"] == "FATAL" and f["C"] == "28P01", f
        assert f["M"].startswith("tenantgate:"), f
        raw.read_until_closed()
    if token:
        with pytest.raises(psycopg.OperationalError) as ei:
            env.connect(token=token).close()
        assert "tenantgate" in str(ei.value)


# ---- LISTEN / NOTIFY -----------------------------------------------------------------------------


def _pump(conn, box, want, timeout):
    deadline = time.monotonic() + timeout
    while len(box) < want and time.monotonic() < deadline:
        conn.execute("SELECT 1")
        time.sleep(0.02)
    return list(box)


def test_listen_on_a_channels_receives_nothing(env):
    a_listen, a_notify, b = env.connect(A), env.connect(A), env.connect(B)
    try:
        got_a, got_b = [], []
        a_listen.add_notify_handler(got_a.append)
        b.add_notify_handler(got_b.append)
        a_listen.execute("LISTEN orders")
        b.execute("LISTEN orders")
        b.execute("LISTEN \"orders\"")
        # what A's session really listens on (the namespaced name), if B could learn it
        real = []
        try:
            real = [r[0] for r in a_listen.execute("SELECT pg_listening_channels()")]
        except psycopg.Error:
            pass
        for name in real:
            if name != "orders":
                res = run(b, f'LISTEN "{name}"')
                assert res[0] == "ok" or res[1].sqlstate == "42501", res
                run(b, f"NOTIFY \"{name}\", 'forged-by-b'")
                run(b, f"SELECT pg_notify('{name}', 'forged-by-b')")
        for sql in ("NOTIFY orders, 'forged-by-b'", "SELECT pg_notify('orders', 'forged-by-b')",
                    "SELECT pg_catalog.pg_notify('orders', 'forged-by-b')"):
            b.execute(sql)
        res = run(b, "SELECT pg_notify(c, 'forged-by-b') FROM (VALUES ('orders')) v(c)")
        assert res[0] == "err" and res[1].sqlstate == "42501", res
        a_notify.execute(f"NOTIFY orders, '{SECRET}-order-1'")
        a_notify.execute(f"SELECT pg_notify('orders', '{SECRET}-order-2')")
        notes = _pump(a_listen, got_a, 2, h.scaled(5))
        assert [(n.channel, n.payload) for n in notes] == [
            ("orders", f"{SECRET}-order-1"), ("orders", f"{SECRET}-order-2")], notes
        _pump(b, got_b, 99, 0.5)
        assert all(SECRET not in n.payload for n in got_b), got_b
        assert all(n.payload == "forged-by-b" for n in got_b), got_b  # only B's own
        time.sleep(0.2)
        _pump(a_listen, got_a, 99, 0.3)
        assert all(n.payload.startswith(SECRET) for n in got_a), got_a
    finally:
        for c in (a_listen, a_notify, b):
            c.close()


# ---- cancel keys ---------------------------------------------------------------------------------


def test_cancel_with_guessed_keys_does_nothing(env):
    with env.connect(A, application_name="a-sleeper") as a:
        result = {}

        def sleeper():
            try:
                t0 = time.monotonic()
                result["rows"] = a.execute("SELECT pg_sleep(1.5), 'done'").fetchall()
                result["t"] = time.monotonic() - t0
            except Exception as e:
                result["err"] = e

        t = threading.Thread(target=sleeper)
        t.start()
        deadline = time.monotonic() + h.scaled(5)
        a_pid = None
        while time.monotonic() < deadline and a_pid is None:
            r = env.pg.su_query("SELECT pid FROM pg_stat_activity WHERE application_name = "
                                "'a-sleeper' AND state = 'active'")
            a_pid = r[0][0] if r else None
            time.sleep(0.02)
        assert a_pid, "A's query never became active"
        rnd = random.Random(os.getpid())
        keys = [(rnd.randint(-2**31, 2**31 - 1), rnd.randint(-2**31, 2**31 - 1))
                for _ in range(40)]
        keys += [(a_pid, rnd.randint(-2**31, 2**31 - 1)) for _ in range(20)]  # real pid
        keys += [(a_pid, 0), (0, 0), (-1, -1)]
        # B's own key, sent as a cancel, must not reach A either
        with raw_b(env) as braw:
            keys.append(braw.key)
            for pid, key in keys:
                s = h.connect(env.port())
                try:
                    s.sendall(pf.cancel_packet(pid, key))
                    s.settimeout(h.scaled(5))
                    try:
                        assert s.recv(100) == b""  # closed without a word
                    except ConnectionResetError:
                        pass
                finally:
                    s.close()
            # B's session survives; its own key may legitimately cancel its next statement
            # (cancels are asynchronous), so one 57014 is fine
            r = pf.summarize(braw.query("SELECT 'b-alive'"))
            assert ("D", ("b-alive",)) in r or r[0][:2] == ("E", "57014"), r
        t.join(h.scaled(10))
        assert "err" not in result, result
        assert result.get("rows") == [("", "done")], result
