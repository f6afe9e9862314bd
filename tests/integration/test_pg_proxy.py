"""protocol: postgres, end to end with real clients (psql, psycopg, pgbench) and a real
PostgreSQL 15 (pg_fixture.PgServer): tenant scoping through RLS, simple / extended /
pipelined extended protocol, COPY both ways, large results, LISTEN/NOTIFY, cancel,
TLS, authentication failures and startup refusals, RESET ALL / DISCARD ALL.

One PostgreSQL and one tenantgate per module (listeners: pg, pgdb with the
`databases: [app]` allow-list, pgtls with tls.mode require). Tests that write use
their own tenant names so they do not disturb each other.
"""

import hashlib
import shutil
import subprocess
import threading
import time
import uuid

import psycopg
import psycopg.errors
import pytest

import pg_fixture as pf
import tghelpers as h

A, B = "acme", "globex"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    pg = pf.PgServer()
    proxy = None
    try:
        pg.start()
        pf.setup_schema(pg)
        proxy, tokens = pf.start_proxy(str(tmp_path_factory.mktemp("pgproxy")), pg, with_tls=True)
        e = pf.Env(pg, proxy, tokens, proxy.dir)
        for tenant, n in ((A, 3), (B, 2)):
            with e.connect(tenant) as c:
                for i in range(n):
                    c.execute("INSERT INTO documents (body) VALUES (%s)", (f"{tenant}-doc-{i}",))
        yield e
    finally:
        if proxy is not None:
            pf.stop_proxy(proxy)
        pg.stop()


def fresh_tenant():
    return "t" + uuid.uuid4().hex[:12]


def direct_connect(pg, tenant, **kw):
    """A connection straight to PostgreSQL as app with the tenant set (the reference)."""
    return psycopg.connect(host=pg.host, port=pg.port, user="app", dbname="app",
                           password=pf.APP_PASSWORD, options=f"-c app.tenant_id={tenant}",
                           connect_timeout=10, **kw)


def psql_as(env, tenant, sql, listener="pg", extra="", token=None):
    ci = f"host=127.0.0.1 port={env.port(listener)} user=app dbname=app sslmode=disable {extra}"
    return pf.psql(ci, sql, password=token or env.tokens.mint(tenant))


# ---- psql ----------------------------------------------------------------------------------------


def test_psql_each_tenant_sees_only_its_rows(env):
    for tenant, n in ((A, 3), (B, 2)):
        r = psql_as(env, tenant, "SELECT tenant_id, body FROM documents ORDER BY id")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.split()
        assert len(lines) == n, r.stdout
        assert all(line.startswith(tenant + "|" + tenant + "-doc-") for line in lines), r.stdout
        r = psql_as(env, tenant, "SELECT current_setting('app.tenant_id'), current_user")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"{tenant}|app"


def test_psql_insert_gets_the_tenant(env):
    t = fresh_tenant()
    r = psql_as(env, t, "INSERT INTO documents (body) VALUES ('via psql') RETURNING tenant_id")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == t
    assert pf.tenant_digest(env.pg, t)[0] == 1


# ---- psycopg: simple, extended, pipeline ---------------------------------------------------------


def test_psycopg_simple_protocol(env):
    with env.connect(A) as c:
        cur = psycopg.ClientCursor(c)  # parameters merged client-side: a simple Query message
        cur.execute("SELECT tenant_id, body FROM documents WHERE body LIKE %s ORDER BY id",
                    (A + "-doc-%",))
        rows = cur.fetchall()
        assert [r[1] for r in rows] == [f"{A}-doc-{i}" for i in range(3)]
        assert {r[0] for r in rows} == {A}
        # a multi-statement string (only the simple protocol allows it): two results
        cur.execute("SELECT 1; SELECT count(*) FROM documents")
        assert cur.fetchone() == (1,)
        assert cur.nextset() and cur.fetchone() == (3,)
        # a statement without parameters goes as a Query too
        assert c.execute("SELECT count(*) FROM documents WHERE tenant_id <> %s",
                         (A,)).fetchone() == (0,)


def test_psycopg_extended_protocol(env):
    t = fresh_tenant()
    with env.connect(t) as c:
        ids = []
        for i in range(8):
            # prepare=True: a named Parse, then Bind/Execute of it
            row = c.execute("INSERT INTO documents (body) VALUES (%s) RETURNING id, tenant_id",
                            (f"x{i}",), prepare=True).fetchone()
            assert row[1] == t
            ids.append(row[0])
        got = c.execute("SELECT body FROM documents WHERE id = ANY(%s) ORDER BY id", (ids,),
                        prepare=True).fetchall()
        assert [r[0] for r in got] == [f"x{i}" for i in range(8)]
        # binary results and typed parameters
        cur = c.cursor(binary=True)
        cur.execute("SELECT %s::int + 1, %s::bytea, %s::text", (41, b"\x00\xff", "h\u00e9"))
        assert cur.fetchone() == (42, b"\x00\xff", "h\u00e9")
        # an unnamed statement with server-side parameters
        assert c.execute("SELECT count(*) FROM documents WHERE body LIKE %s",
                         ("x%",)).fetchone() == (8,)
        # other tenants' rows stay invisible through the extended protocol too
        assert c.execute("SELECT count(*) FROM documents WHERE tenant_id = %s",
                         (A,), prepare=True).fetchone() == (0,)
        # a non-reserved setting through set_config is fine
        assert c.execute("SELECT set_config('statement_timeout', '12345', false)").fetchone() == (
            "12345ms",)


def test_psycopg_pipeline(env):
    t = fresh_tenant()
    with env.connect(t) as c:
        with c.pipeline():
            curs = [c.cursor() for _ in range(6)]
            for i, cur in enumerate(curs[:5]):
                cur.execute("INSERT INTO documents (body) VALUES (%s) RETURNING body", (f"p{i}",))
            curs[5].execute("SELECT count(*), min(tenant_id), max(tenant_id) FROM documents")
        assert [cur.fetchone()[0] for cur in curs[:5]] == [f"p{i}" for i in range(5)]
        assert curs[5].fetchone() == (5, t, t)


def _pipeline_pattern(conn, bad_sql):
    """Runs a pipeline with an error in the middle of one batch, then a second pipeline;
    returns what the client observed (the failing statement's error class as "ERR").
    Every result is fetched at the block's exit (one Sync), so the outcome does not depend
    on timing."""
    out = []
    c = [conn.cursor() for _ in range(5)]
    first = None
    try:
        with conn.pipeline():
            c[0].execute("SELECT 1")
            c[1].execute(bad_sql)
            c[2].execute("SELECT 3")
            c[3].execute("SELECT 4")
    except psycopg.Error as e:
        first = e
        out.append(("exit", "ERR"))
    for i in range(4):
        try:
            out.append((f"c{i}", c[i].fetchall()))
        except psycopg.Error as e:
            out.append((f"c{i}", "ERR" if e is first or type(e) is type(first)
                        else type(e).__name__))
    out.append(("status", conn.info.transaction_status.name))
    if not conn.autocommit:
        conn.rollback()
    with conn.pipeline():  # the connection is usable again, in pipeline mode too
        c[4].execute("SELECT 5")
    out.append(("after", c[4].fetchall()))
    return out, first


@pytest.mark.parametrize("autocommit", [True, False], ids=["autocommit", "transaction"])
def test_psycopg_pipeline_with_denied_statement(env, autocommit):
    with direct_connect(env.pg, B, autocommit=autocommit) as c:
        want, err = _pipeline_pattern(c, "SELECT 1/0")
        assert isinstance(err, psycopg.errors.DivisionByZero)
    with env.connect(B, autocommit=autocommit) as c:
        got, err = _pipeline_pattern(c, "SELECT set_config('app.tenant_id', 'acme', false)")
        assert isinstance(err, psycopg.errors.InsufficientPrivilege), err
        assert err.sqlstate == "42501"
        assert err.diag.message_primary.startswith("tenantgate:"), err.diag.message_primary
        assert got == want
        assert c.execute("SELECT current_setting('app.tenant_id'), count(*) FROM documents "
                         "WHERE tenant_id <> 'globex'").fetchone() == (B, 0)


def test_denied_statement_in_transaction_aborts_it(env):
    """As PostgreSQL: after an error in a block, 25P02 until ROLLBACK; COMMIT rolls back."""
    t = fresh_tenant()
    with env.connect(t, autocommit=False) as c:
        c.execute("INSERT INTO documents (body) VALUES ('lost')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as ei:
            c.execute("SET app.tenant_id = 'acme'")
        assert ei.value.diag.message_primary.startswith("tenantgate:")
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            c.execute("SELECT 1")
        c.commit()  # PostgreSQL answers ROLLBACK
        assert c.execute("SELECT count(*) FROM documents").fetchone() == (0,)
        c.rollback()
    assert pf.tenant_digest(env.pg, t)[0] == 0


# ---- COPY ----------------------------------------------------------------------------------------


def test_copy_from_stdin_and_to_stdout(env):
    t = fresh_tenant()
    n = 20000
    with env.connect(t) as c:
        c.execute("DELETE FROM copy_sink WHERE body LIKE %s", (t + "%",))
        with c.cursor().copy("COPY copy_sink (id, body) FROM STDIN") as cp:
            for i in range(n):
                cp.write_row((i, f"{t}-{i}-" + "z" * (i % 50)))
        assert c.execute("SELECT count(*), sum(id) FROM copy_sink WHERE body LIKE %s",
                         (t + "%",)).fetchone() == (n, n * (n - 1) // 2)
        # COPY ... TO STDOUT streams back what went in
        got = []
        with c.cursor().copy("COPY (SELECT id, body FROM copy_sink WHERE body LIKE %s "
                             "ORDER BY id) TO STDOUT", (t + "%",)) as cp:
            for row in cp.rows():
                got.append(row)
        assert len(got) == n
        assert got[123] == ("123", f"{t}-123-" + "z" * 23)
        # a COPY FROM the client aborts cleanly too (CopyFail)
        with pytest.raises((_Abort, psycopg.errors.QueryCanceled)):
            with c.cursor().copy("COPY copy_sink (id, body) FROM STDIN") as cp:
                cp.write_row((1, "never"))
                raise _Abort("client aborts the copy")
        assert c.execute("SELECT count(*) FROM copy_sink WHERE body = 'never'").fetchone() == (0,)
        # COPY of the RLS table: reads are scoped; COPY FROM is refused by PostgreSQL itself
        c.execute("INSERT INTO documents (body) VALUES ('copy-me')")
        with c.cursor().copy("COPY documents (tenant_id, body) TO STDOUT") as cp:
            rows = list(cp.rows())
        assert rows == [(t, "copy-me")]
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            with c.cursor().copy("COPY documents (body) FROM STDIN") as cp:
                cp.write_row(("x",))
        assert c.execute("SELECT 1").fetchone() == (1,)
    with env.connect(A) as c:
        with c.cursor().copy("COPY documents TO STDOUT") as cp:
            rows = list(cp.rows())
        assert len(rows) == 3 and {r[1] for r in rows} == {A}


class _Abort(Exception):
    """Raised inside a copy block: psycopg sends CopyFail, the server answers 57014."""


# ---- large results -------------------------------------------------------------------------------


def test_large_result_200k_rows(env):
    with env.connect(A) as c:
        cur = c.execute("SELECT g, md5(g::text) FROM generate_series(1, 200000) g")
        n, total, h5 = 0, 0, None
        for row in cur:
            n += 1
            total += row[0]
            if row[0] == 5:
                h5 = row[1]
        assert n == 200000
        assert total == 200000 * 200001 // 2
        assert h5 == hashlib.md5(b"5").hexdigest()


def test_large_value_round_trip(env):
    size = 50 * 1024 * 1024
    with env.connect(A) as c:
        t0 = time.monotonic()
        v = c.execute("SELECT repeat('ab', %s)", (size // 2,)).fetchone()[0]
        assert len(v) == size and v[:4] == "abab" and v[-2:] == "ab"
        del v
        # and a 20 MB bytea parameter up, its digest down
        blob = bytes(range(256)) * (20 * 1024 * 1024 // 256)
        got = c.execute("SELECT md5(%s::bytea), length(%s::bytea)", (blob, blob)).fetchone()
        assert got == (hashlib.md5(blob).hexdigest(), len(blob))
        assert time.monotonic() - t0 < h.scaled(60)
        assert c.execute("SELECT 1").fetchone() == (1,)


# ---- LISTEN / NOTIFY -----------------------------------------------------------------------------


def _pump(conn, box, want, timeout):
    """Runs trivial queries on conn until box has `want` notifications (or the deadline)."""
    deadline = time.monotonic() + timeout
    while len(box) < want and time.monotonic() < deadline:
        conn.execute("SELECT 1")
        time.sleep(0.02)
    return list(box)


def test_notify_listen_scoped_per_tenant(env):
    a1 = env.connect(A, application_name="a1")
    a2 = env.connect(A, application_name="a2-notifier")
    b = env.connect(B, application_name="b1")
    try:
        got_a, got_b = [], []
        a1.add_notify_handler(got_a.append)
        b.add_notify_handler(got_b.append)
        a1.execute("LISTEN jobs")
        b.execute("LISTEN jobs")
        a2.execute("NOTIFY jobs, 'payload-1 \u00fcn\u00efcode'")
        a2.execute("SELECT pg_notify('jobs', 'payload-2')")
        a2.execute("NOTIFY other_channel, 'not for a1'")
        notes = _pump(a1, got_a, 2, h.scaled(5))
        assert [(n.channel, n.payload) for n in notes] == [
            ("jobs", "payload-1 \u00fcn\u00efcode"), ("jobs", "payload-2")]
        real = env.pg.su_query("SELECT pid FROM pg_stat_activity WHERE application_name = "
                               "'a2-notifier'")
        assert real and all(n.pid != real[0][0] for n in notes)  # backend pids never shown
        # the other tenant LISTENing on the same name hears nothing
        _pump(b, got_b, 1, 0.5)
        assert got_b == []
        # and the other way round
        b.execute("NOTIFY jobs, 'from-globex'")
        assert [(n.channel, n.payload) for n in _pump(b, got_b, 1, h.scaled(5))] == [
            ("jobs", "from-globex")]
        time.sleep(0.2)
        _pump(a1, got_a, 3, 0.3)
        assert len(got_a) == 2
        # UNLISTEN stops delivery
        a1.execute("UNLISTEN jobs")
        a2.execute("NOTIFY jobs, 'late'")
        _pump(a1, got_a, 3, 0.3)
        assert len(got_a) == 2
    finally:
        for c in (a1, a2, b):
            c.close()


# ---- cancel --------------------------------------------------------------------------------------


def _wait_active(pg, app_name, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pg.su_query("SELECT 1 FROM pg_stat_activity WHERE application_name = %s AND "
                       "state = 'active' AND query LIKE '%%pg_sleep%%'", (app_name,)):
            return True
        time.sleep(0.02)
    return False


def test_cancel_long_query(env):
    with env.connect(A, application_name="cancel-me") as c:
        errors = []

        def canceller():
            try:
                if _wait_active(env.pg, "cancel-me", h.scaled(5)):
                    c.cancel()
            except Exception as e:  # reported below
                errors.append(e)

        t = threading.Thread(target=canceller)
        t.start()
        t0 = time.monotonic()
        try:
            with pytest.raises(psycopg.errors.QueryCanceled) as ei:
                c.execute("SELECT pg_sleep(30)")
        finally:
            t.join(10)
        elapsed = time.monotonic() - t0
        assert not errors, errors
        assert ei.value.sqlstate == "57014"
        assert elapsed < h.scaled(5), elapsed
        assert c.execute("SELECT count(*) FROM documents").fetchone() == (3,)


# ---- pgbench -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pgbench_tables(env):
    exe = shutil.which("pgbench")
    if not exe:
        pytest.skip("pgbench is not installed")
    cli, cli_env = env.pg.admin_cli()  # the superuser (over TCP for TG_EXT_POSTGRES)
    r = subprocess.run([exe, "-i", "-s", "1", "-q"] + cli + ["app"], capture_output=True,
                       text=True, timeout=120, env=cli_env, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    env.pg.su_query("GRANT SELECT, INSERT, UPDATE ON pgbench_accounts, pgbench_branches, "
                    "pgbench_tellers, pgbench_history TO app")
    return exe


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_select_only(env, pgbench_tables, mode):
    r = subprocess.run([pgbench_tables, "-n", "-S", "-M", mode, "-c", "4", "-j", "2", "-T", "3",
                        "-h", "127.0.0.1", "-p", str(env.port()), "-U", "app", "app"],
                       capture_output=True, text=True, timeout=h.scaled(60),
                       env=pf.client_env(env.tokens.mint(A)), stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "number of failed transactions: 0 " in r.stdout, r.stdout
    processed = int(r.stdout.split("number of transactions actually processed: ")[1].split()[0])
    assert processed > 100, r.stdout


# ---- TLS -----------------------------------------------------------------------------------------


def test_tls_require(env):
    token = env.tokens.mint(A)
    base = f"host=127.0.0.1 port={env.port('pgtls')} user=app dbname=app"
    r = pf.psql(base + " sslmode=require", "\\conninfo", password=token)
    assert r.returncode == 0, r.stderr
    assert "SSL connection" in r.stdout, r.stdout
    r = pf.psql(base + " sslmode=require", "SELECT count(*), min(tenant_id) FROM documents",
                password=token)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"3|{A}"
    # a client that verifies the certificate
    cert = env.proxy.dir + "/server.crt"
    r = pf.psql(base + f" sslmode=verify-full sslrootcert={cert} host=localhost hostaddr=127.0.0.1",
                "SELECT count(*) FROM documents", password=token)
    assert r.returncode == 0, r.stderr
    # plaintext is refused with a FATAL that says why
    r = pf.psql(base + " sslmode=disable", "SELECT 1", password=token)
    assert r.returncode != 0
    assert "FATAL" in r.stderr and "TLS" in r.stderr, r.stderr
    with pf.RawPg(env.port("pgtls")) as raw:
        f = raw.login_error(token)
        assert f["C"] == "28000" and f["V"] == "FATAL", f


# ---- authentication and startup refusals ---------------------------------------------------------


def test_bad_token(env):
    r = psql_as(env, A, "SELECT 1", token="not-a-jwt")
    assert r.returncode != 0
    assert "FATAL" in r.stderr and "tenantgate" in r.stderr, r.stderr
    with pf.RawPg(env.port()) as raw:
        f = raw.login_error("not-a-jwt")
        assert f["C"] == "28P01" and f["V"] == "FATAL", f
        assert f["M"].startswith("tenantgate:"), f
        raw.read_until_closed()  # then the connection closes


def test_expired_token(env):
    token = env.tokens.mint(A, ttl=-600)
    r = psql_as(env, A, "SELECT 1", token=token)
    assert r.returncode != 0
    assert "FATAL" in r.stderr and "expired" in r.stderr, r.stderr
    with pf.RawPg(env.port()) as raw:
        f = raw.login_error(token)
        assert f["C"] == "28P01", f


def test_startup_options_tenant_refused(env):
    token = env.tokens.mint(B)
    r = psql_as(env, B, "SELECT current_setting('app.tenant_id')", token=token,
                extra="options='-c app.tenant_id=other'")
    assert r.returncode != 0
    assert "FATAL" in r.stderr and "app.tenant_id" in r.stderr, r.stderr
    with pf.RawPg(env.port()) as raw:
        f = raw.login_error(token, {"options": "-c app.tenant_id=other"})
        assert f["C"] == "42501" and f["V"] == "FATAL", f
    # allowed settings in options are fine
    r = psql_as(env, B, "SHOW statement_timeout", token=token,
                extra="options='-c statement_timeout=4321'")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "4321ms"


@pytest.mark.parametrize("value", ["database", "true", "on"])
def test_replication_refused(env, value):
    r = psql_as(env, A, "SELECT 1", extra=f"replication={value}")
    assert r.returncode != 0
    assert "FATAL" in r.stderr and "replication" in r.stderr, r.stderr
    with pf.RawPg(env.port()) as raw:
        f = raw.login_error(env.tokens.mint(A), {"replication": value})
        assert f["V"] == "FATAL" and f["C"] in ("28000", "42501"), f


def test_database_allow_list(env):
    token = env.tokens.mint(A)
    r = pf.psql(f"host=127.0.0.1 port={env.port('pgdb')} user=app dbname=app sslmode=disable",
                "SELECT count(*) FROM documents", password=token)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "3"
    r = pf.psql(f"host=127.0.0.1 port={env.port('pgdb')} user=app dbname=postgres "
                "sslmode=disable", "SELECT 1", password=token)
    assert r.returncode != 0
    assert "FATAL" in r.stderr and "postgres" in r.stderr, r.stderr
    with pf.RawPg(env.port("pgdb")) as raw:
        f = raw.login_error(token, {"database": "nope"})
        assert f["C"] == "3D000" and f["V"] == "FATAL", f
    # without the allow-list, a missing database is PostgreSQL's own 3D000
    with pf.RawPg(env.port("pg")) as raw:
        raw.startup({"database": "nope"})
        raw.send(pf.msg(b"p", pf.cstr(token)))
        msgs = raw.read_until_closed()
        errs = [pf.error_fields(b) for t, b in msgs if t == "E"]
        assert errs and errs[0]["C"] == "3D000", msgs


def test_client_user_name_does_not_matter(env):
    """The backend role is always backend.user, whatever user the client names."""
    r = pf.psql(f"host=127.0.0.1 port={env.port()} user=postgres dbname=app sslmode=disable",
                "SELECT current_user, session_user, count(*) FROM documents",
                password=env.tokens.mint(A))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "app|app|3"


def test_reset_all_and_discard_all_keep_the_tenant(env):
    t = fresh_tenant()
    with env.connect(t) as c:
        c.execute("INSERT INTO documents (body) VALUES ('before')")
        for stmt in ("RESET ALL", "DISCARD ALL", "RESET ALL", "DISCARD ALL"):
            c.execute(stmt)
            assert c.execute("SELECT current_setting('app.tenant_id')").fetchone() == (t,)
            rows = c.execute("SELECT tenant_id, body FROM documents").fetchall()
            assert rows and {r[0] for r in rows} == {t}, rows
        c.execute("INSERT INTO documents (body) VALUES ('after')")
        assert c.execute("SELECT count(*) FROM documents WHERE tenant_id = %s",
                         (A,)).fetchone() == (0,)
    assert env.pg.su_query("SELECT tenant_id, body FROM documents WHERE body IN "
                           "('before', 'after') AND tenant_id = %s ORDER BY id", (t,)) == [
        (t, "before"), (t, "after")]
    # psql too, in one session
    r = psql_as(env, A, ["DISCARD ALL", "RESET ALL", "SELECT count(*) FROM documents"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "3"


def test_proxy_cancel_key_is_not_the_backend_pid(env):
    with pf.RawPg(env.port()) as raw:
        raw.login(env.tokens.mint(A), {"application_name": "keycheck"})
        real = env.pg.su_query("SELECT pid FROM pg_stat_activity WHERE application_name = "
                               "'keycheck'")
        assert raw.key is not None and real
        assert raw.key[0] != real[0][0]


def test_session_ends_when_the_token_expires(env):
    token = env.tokens.mint(A, ttl=2)
    with pf.RawPg(env.port()) as raw:
        raw.login(token)
        assert ("D", ("3",)) in pf.summarize(raw.query("SELECT count(*) FROM documents"))
        time.sleep(2.5)
        msgs = raw.read_until_closed(timeout=h.scaled(5))
        errs = [pf.error_fields(b) for t, b in msgs if t == "E"]
        assert errs and errs[-1]["V"] == "FATAL", msgs
        assert errs[-1]["M"].startswith("tenantgate:"), errs


def test_newer_protocol_minor_version_is_negotiated(env):
    """A 3.2 StartupMessage with a _pq_ option: the same NegotiateProtocolVersion PostgreSQL 15
    sends (3.0, the option listed as unsupported), then the usual login."""
    packet = pf.startup_packet({"user": "app", "database": "app", "_pq_.something": "1"},
                               version=(3 << 16) | 2)
    with pf.RawPg(env.pg.port) as raw:
        raw.send(packet)
        want = raw.read_msg()
    assert want[0] == "v"
    with pf.RawPg(env.port()) as raw:
        raw.send(packet)
        assert raw.read_msg() == want
        t, body = raw.read_msg()
        assert t == "R" and body[:4] == b"\0\0\0\3"
        raw.send(pf.msg(b"p", pf.cstr(env.tokens.mint(A))))
        assert pf.summarize(raw.read_until_ready())[-1] == ("Z", "I")
        assert ("D", ("3",)) in pf.summarize(raw.query("SELECT count(*) FROM documents"))
