"""`tenantgate check` against a real PostgreSQL, and the deploy/sql/ kit it points to.

Every test gets its own database, owner role and app role on one shared throwaway server
(pgserver.py): the owner (LOGIN CREATEROLE, not superuser) runs deploy/sql/tenantgate.sql as a
team would, protects table `orders`, and `tenantgate check` logs in as the app role. Unsafe
states are then made one at a time (as the superuser or the owner) and check must exit non-zero
and print the fix.

The signed-context tests talk to PostgreSQL directly as the app role, bypassing tenantgate, to
show that a forged app.tenant_id is worth nothing without tenantgate.tenant_sig =
hex(HMAC-SHA256(key, tenant)).
"""

import hashlib
import hmac
import itertools
import os
import secrets
import subprocess

import psycopg
import pytest

import pgserver
import tghelpers as h
from pgserver import pg_server  # noqa: F401  (fixture)

SOURCE_DIR = h.TG_SOURCE_DIR or os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
KIT = os.path.join(SOURCE_DIR, "deploy", "sql", "tenantgate.sql")
SIGNED_KIT = os.path.join(SOURCE_DIR, "deploy", "sql", "signed_context.sql")
NOT_YET = "postgres listener lands with the session"

_seq = itertools.count(1)


def sig(key, tenant):
    """What tenantgate sends as tenantgate.tenant_sig."""
    return hmac.new(key.encode(), tenant.encode(), hashlib.sha256).hexdigest()


class Kit:
    """One database set up with deploy/sql/tenantgate.sql, and a config to check it."""

    def __init__(self, pg, tmp_path):
        n = next(_seq)
        self.pg, self.tmp = pg, tmp_path
        self.db, self.owner, self.app = f"pf_{os.getpid()}_{n}", f"owner_{n}", f"app_{n}"
        self.app_password = secrets.token_hex(12)
        pg.sql(f'CREATE ROLE "{self.owner}" LOGIN CREATEROLE')
        pg.create_database(self.db, owner=self.owner)
        pg.psql_file(KIT, db=self.db, user=self.owner, variables={"app_role": self.app})
        self.owner_sql(f"ALTER ROLE \"{self.app}\" PASSWORD '{self.app_password}'")
        self.owner_sql("CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL);"
                       "SELECT tenantgate.protect_table('orders');")
        (tmp_path / "jwt-secret").write_text("j" * 40 + "\n")
        (tmp_path / "pg-pass").write_text(self.app_password + "\n")

    def owner_sql(self, q):
        return self.pg.sql(q, db=self.db, user=self.owner)

    def su_sql(self, q):
        return self.pg.sql(q, db=self.db)

    def connect(self):
        """The app role, straight to PostgreSQL (no tenantgate in between)."""
        return self.pg.connect(self.app, self.app_password, self.db)

    def config(self, postgres=None, backend=None):
        pgsec = {"databases": [self.db]}
        pgsec.update(postgres or {})
        pgsec = {k: v for k, v in pgsec.items() if v is not None}  # None: leave the key out
        be = {"address": f"{self.pg.host}:{self.pg.port}", "user": self.app,
              "password_file": "pg-pass"}
        be.update(backend or {})
        listener = {"name": "pg", "protocol": "postgres", "listen": f"127.0.0.1:{h.free_port()}",
                    "backend": be}
        if pgsec:
            listener["postgres"] = pgsec
        cfg = {"auth": {"jwt": {"hs256_secret_file": "jwt-secret"}}, "listeners": [listener]}
        path = self.tmp / "tenantgate.yaml"
        path.write_text(h.to_yaml(cfg))
        return path

    def check(self, **kw):
        """Runs `tenantgate check`; xfails while the runtime still refuses protocol postgres."""
        r = h.run_tg(["check", "-c", str(self.config(**kw))], timeout=60)
        if "protocol postgres is not implemented yet" in r.stderr:
            pytest.xfail(NOT_YET)
        return r


@pytest.fixture
def kit(pg_server, tmp_path):  # noqa: F811
    return Kit(pg_server, tmp_path)


def lines(r, db):
    """check's lines about database db."""
    prefix = f"listener pg: database {db}: "
    return [ln[len(prefix):] for ln in r.stdout.splitlines() if ln.startswith(prefix)]


def assert_ok(r, db):
    assert r.returncode == 0, r.stdout + r.stderr
    assert any(ln.startswith("ok") for ln in lines(r, db)), r.stdout
    assert not any(ln.startswith("problem") for ln in lines(r, db)), r.stdout


def assert_problem(r, db, *fixes):
    assert r.returncode != 0, r.stdout + r.stderr
    found = lines(r, db)
    assert not any(ln.startswith("ok") for ln in found), r.stdout
    for fix in fixes:
        assert any(ln.startswith("problem: ") and fix in ln for ln in found), \
            f"no problem line with {fix!r} in:\n{r.stdout}"


# ---- check: safe and unsafe states ----------------------------------------------------------


def test_check_ok_after_kit(kit):
    r = kit.check()
    assert_ok(r, kit.db)
    assert f"backend {kit.pg.host}:{kit.pg.port}: reachable" in r.stdout
    ok = [ln for ln in lines(r, kit.db) if ln.startswith("ok")][0]
    assert f"role {kit.app}" in ok and "1 table with column tenant_id" in ok


def test_check_database_defaults_to_backend_user(kit):
    """Without postgres.databases, check inspects the database named after backend.user."""
    kit.pg.create_database(kit.app, owner=kit.owner)
    kit.pg.sql("CREATE TABLE t (tenant_id text)", db=kit.app, user=kit.owner)
    r = kit.check(postgres={"databases": None})
    assert_problem(r, kit.app, "ALTER TABLE public.t ENABLE ROW LEVEL SECURITY")


@pytest.mark.parametrize("case", ["bypassrls", "superuser"])
def test_check_role_escapes_rls(kit, case):
    attr = {"bypassrls": "BYPASSRLS", "superuser": "SUPERUSER"}[case]
    kit.su_sql(f'ALTER ROLE "{kit.app}" {attr}')
    assert_problem(kit.check(), kit.db, f"ALTER ROLE {kit.app} NO{attr};")


def test_check_table_without_rls(kit):
    kit.owner_sql("CREATE TABLE invoices (id int, tenant_id text)")
    r = kit.check()
    assert_problem(r, kit.db, "ALTER TABLE public.invoices ENABLE ROW LEVEL SECURITY;",
                   "ALTER TABLE public.invoices FORCE ROW LEVEL SECURITY;",
                   "CREATE POLICY tenant_isolation ON public.invoices")
    assert "deploy/sql/" in r.stdout
    assert not any("public.orders" in ln for ln in lines(r, kit.db)), r.stdout


def test_check_rls_enabled_not_forced(kit):
    kit.owner_sql("ALTER TABLE orders NO FORCE ROW LEVEL SECURITY")
    r = kit.check()
    assert_problem(r, kit.db, "ALTER TABLE public.orders FORCE ROW LEVEL SECURITY;")
    assert "ENABLE ROW LEVEL SECURITY" not in r.stdout
    assert "CREATE POLICY" not in r.stdout


def test_check_rls_forced_without_policy(kit):
    kit.owner_sql("DROP POLICY tenant_isolation ON orders")
    r = kit.check()
    assert_problem(r, kit.db, "table public.orders has no row-level security policy",
                   "CREATE POLICY tenant_isolation ON public.orders USING (tenant_id = "
                   "current_setting('app.tenant_id', true))")
    assert "ALTER TABLE" not in r.stdout


def test_check_table_owned_by_app_role(kit):
    kit.su_sql(f'CREATE TABLE mine (tenant_id text); ALTER TABLE mine OWNER TO "{kit.app}";'
               "ALTER TABLE mine ENABLE ROW LEVEL SECURITY;"
               "CREATE POLICY p ON mine USING (tenant_id = current_setting('app.tenant_id'))")
    r = kit.check()
    assert_problem(r, kit.db, f"table public.mine is owned by role {kit.app}",
                   "ALTER TABLE public.mine FORCE ROW LEVEL SECURITY;")
    kit.su_sql("ALTER TABLE mine FORCE ROW LEVEL SECURITY")
    r = kit.check()
    assert_ok(r, kit.db)
    assert any(ln.startswith(f"info: role {kit.app} owns table public.mine")
               for ln in lines(r, kit.db)), r.stdout


def test_check_quoted_names_and_other_schemas(kit):
    kit.owner_sql('CREATE SCHEMA "Billing"; CREATE TABLE "Billing"."Line Items" (tenant_id text)')
    assert_problem(kit.check(), kit.db,
                   'ALTER TABLE "Billing"."Line Items" ENABLE ROW LEVEL SECURITY;')
    kit.owner_sql("""SELECT tenantgate.protect_table('"Billing"."Line Items"')""")
    assert_ok(kit.check(), kit.db)


def test_check_partitions(kit):
    """RLS on a partitioned table does not cover its partitions read directly: protect_table
    does both, and a partition added later is reported."""
    kit.owner_sql("CREATE TABLE events (tenant_id text NOT NULL, at int)"
                  " PARTITION BY RANGE (at);"
                  "CREATE TABLE events_1 PARTITION OF events FOR VALUES FROM (0) TO (100);"
                  "SELECT tenantgate.protect_table('events');")
    assert_ok(kit.check(), kit.db)
    kit.owner_sql("CREATE TABLE events_2 PARTITION OF events FOR VALUES FROM (100) TO (200)")
    assert_problem(kit.check(), kit.db, "ALTER TABLE public.events_2 ENABLE ROW LEVEL SECURITY;")


def test_check_tenant_column_is_configurable(kit):
    kit.owner_sql("CREATE TABLE accounts (org_id text)")
    assert_problem(kit.check(postgres={"tenant_column": "org_id"}), kit.db,
                   "ALTER TABLE public.accounts ENABLE ROW LEVEL SECURITY;")
    assert_ok(kit.check(), kit.db)  # tenant_id: accounts is not a tenant table
    kit.owner_sql("SELECT tenantgate.protect_table('accounts', 'org_id')")
    r = kit.check(postgres={"tenant_column": "org_id"})
    assert_ok(r, kit.db)
    assert "with column org_id" in r.stdout


def test_check_cannot_log_in(kit):
    (kit.tmp / "pg-pass").write_text("wrong\n")
    r = kit.check()
    assert r.returncode != 0
    assert any(ln.startswith("cannot connect") and "password authentication failed" in ln
               for ln in lines(r, kit.db)), r.stdout


def test_check_unknown_database(kit):
    r = kit.check(postgres={"databases": [kit.db, "nope_db"]})
    assert r.returncode != 0
    assert any(ln.startswith("ok") for ln in lines(r, kit.db)), r.stdout
    assert any(ln.startswith("cannot connect") for ln in lines(r, "nope_db")), r.stdout


# ---- the kit itself ----------------------------------------------------------------------------


def test_kit_role_and_column_default(kit):
    roles = kit.su_sql("SELECT rolcanlogin, rolsuper, rolbypassrls, rolcreatedb, rolcreaterole"
                       f" FROM pg_roles WHERE rolname = '{kit.app}'")
    assert roles.strip() == "t|f|f|f|f"
    with kit.connect() as conn:
        conn.execute("SET app.tenant_id = 'acme'")
        conn.execute("INSERT INTO orders (item) VALUES ('anvil')")
        assert conn.execute("SELECT item, tenant_id FROM orders").fetchall() == [
            ("anvil", "acme")]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO orders (item, tenant_id) VALUES ('x', 'globex')")
        conn.execute("SET app.tenant_id = 'globex'")
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 0
        assert conn.execute("UPDATE orders SET item = 'stolen'").rowcount == 0
        assert conn.execute("DELETE FROM orders").rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("TRUNCATE orders")
    with kit.connect() as conn:  # no tenant in the session: no rows, and no insert
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 0
        with pytest.raises(psycopg.errors.UndefinedObject):
            conn.execute("INSERT INTO orders (item) VALUES ('y')")


def test_kit_refuses_tables_with_rows_and_the_app_role(kit):
    kit.owner_sql("CREATE TABLE legacy (id int); INSERT INTO legacy VALUES (1)")
    r = kit.pg.sql("SELECT tenantgate.protect_table('legacy')", db=kit.db, user=kit.owner,
                   check=False)
    assert r.returncode != 0 and "already has rows" in r.stderr, r.stderr
    assert kit.owner_sql("SELECT count(*) FROM pg_attribute WHERE attrelid = 'legacy'::regclass"
                         " AND attname = 'tenant_id'").strip() == "0"
    r = kit.pg.psql_file(KIT, db=kit.db, user=kit.app, variables={"app_role": kit.app},
                         check=False)
    assert r.returncode != 0 and "not as the app role" in r.stderr, r.stderr


def test_kit_is_idempotent_and_fixes_the_role(kit):
    kit.su_sql(f'ALTER ROLE "{kit.app}" BYPASSRLS CREATEDB')
    kit.pg.psql_file(KIT, db=kit.db, variables={"app_role": kit.app})  # as the superuser
    assert kit.su_sql(f"SELECT rolbypassrls, rolcreatedb FROM pg_roles"
                      f" WHERE rolname = '{kit.app}'").strip() == "f|f"
    kit.owner_sql("SELECT tenantgate.protect_table('orders')")
    assert_ok(kit.check(), kit.db)


# ---- signed tenant context ---------------------------------------------------------------------


def apply_signed(kit, key):
    kit.pg.psql_file(SIGNED_KIT, db=kit.db, user=kit.owner,
                     variables={"app_role": kit.app, "context_key": key})
    kit.owner_sql("SELECT tenantgate.protect_table('orders', signed_context => true)")


def set_context(conn, tenant, signature=None):
    conn.execute("SELECT set_config('app.tenant_id', %s, false)", (tenant,))
    if signature is not None:
        conn.execute("SELECT set_config('tenantgate.tenant_sig', %s, false)", (signature,))


def test_signed_context_forged_setting_sees_nothing(kit):
    key = secrets.token_hex(32)
    apply_signed(kit, key)
    with kit.connect() as conn:  # tenantgate's view: both settings, correctly signed
        for tenant, items in (("acme", ["anvil", "rocket"]), ("globex", ["magnet"])):
            set_context(conn, tenant, sig(key, tenant))
            for item in items:
                conn.execute("INSERT INTO orders (item) VALUES (%s)", (item,))

    with kit.connect() as conn:  # forged: the plain setting, straight to PostgreSQL
        conn.execute("SET app.tenant_id = 'acme'")
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 0
        assert conn.execute("SELECT tenantgate.current_tenant()").fetchone()[0] is None
        assert conn.execute("UPDATE orders SET item = 'x'").rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO orders (item) VALUES ('forged')")

    with kit.connect() as conn:  # the same session shape with the right signature
        conn.execute("SET app.tenant_id = 'acme'")
        conn.execute(f"SET tenantgate.tenant_sig = '{sig(key, 'acme')}'")
        assert sorted(r[0] for r in conn.execute("SELECT item FROM orders")) == [
            "anvil", "rocket"]
        assert conn.execute("SELECT DISTINCT tenant_id FROM orders").fetchall() == [("acme",)]

        conn.execute(f"SET tenantgate.tenant_sig = '{sig(key, 'globex')}'")  # another's sig
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 0
        conn.execute("SET app.tenant_id = 'globex'")  # globex's own pair works, for globex only
        assert [r[0] for r in conn.execute("SELECT item FROM orders")] == ["magnet"]

        for forged in (sig(secrets.token_hex(32), "acme"), sig(key, "acme").upper(), "", "00"):
            conn.execute("SET app.tenant_id = 'acme'")
            conn.execute("SELECT set_config('tenantgate.tenant_sig', %s, false)", (forged,))
            assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 0, forged

        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT key FROM tenantgate.context_key")


def test_signed_context_check(kit):
    key = secrets.token_hex(32)
    (kit.tmp / "context-key").write_text(key + "\n")
    signed = {"signed_context": True, "context_key_file": "context-key"}

    assert_problem(kit.check(postgres=signed), kit.db,
                   "function tenantgate.current_tenant() does not exist")
    apply_signed(kit, key)
    r = kit.check(postgres=signed)
    assert_ok(r, kit.db)
    assert "current_tenant() verifies the key" in r.stdout

    (kit.tmp / "context-key").write_text(secrets.token_hex(32) + "\n")  # keys differ
    assert_problem(kit.check(postgres=signed), kit.db, "rejects tenantgate's signature")

    (kit.tmp / "context-key").write_text(key + "\n")
    kit.owner_sql(f'REVOKE EXECUTE ON FUNCTION tenantgate.current_tenant() FROM "{kit.app}"')
    assert_problem(kit.check(postgres=signed), kit.db,
                   f"GRANT EXECUTE ON FUNCTION tenantgate.current_tenant() TO {kit.app};")
    kit.owner_sql(f'GRANT EXECUTE ON FUNCTION tenantgate.current_tenant() TO "{kit.app}";'
                  f'GRANT SELECT ON tenantgate.context_key TO "{kit.app}"')
    assert_problem(kit.check(postgres=signed), kit.db,
                   f"REVOKE ALL ON tenantgate.context_key FROM {kit.app}, PUBLIC;")


def test_signed_context_kit_needs_a_key(kit):
    r = kit.pg.psql_file(SIGNED_KIT, db=kit.db, user=kit.owner,
                         variables={"app_role": kit.app}, check=False)
    assert r.returncode != 0 and "context_key" in r.stderr, r.stderr
    r = kit.pg.psql_file(SIGNED_KIT, db=kit.db, user=kit.owner,
                         variables={"app_role": kit.app, "context_key": "short"}, check=False)
    assert r.returncode != 0 and "at least 32 bytes" in r.stderr, r.stderr


# ---- backend TLS -------------------------------------------------------------------------------


def _openssl(args, cwd):
    r = subprocess.run(["openssl"] + args, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"openssl {args}: {r.stderr}"


def _pki(d):
    """ca.crt, other-ca.crt and server.crt/server.key for DNS name pg.test (not 127.0.0.1)."""
    for name in ("ca", "other-ca"):
        _openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                  "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
                  "-subj", f"/CN=tenantgate test {name}",
                  "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)
    (d / "server.ext").write_text("subjectAltName=DNS:pg.test\nbasicConstraints=CA:FALSE\n"
                                  "extendedKeyUsage=serverAuth\n")
    _openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
              "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=pg.test"], d)
    _openssl(["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
              "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext"], d)


@pytest.mark.local_backend("postgres", "starts its own server with TLS and a hostssl-only "
                            "pg_hba.conf")
def test_check_backend_tls(openssl, tmp_path):
    """check logs in with backend.tls: verify-full checks server_name (not the address's host)
    against ca_file; a server that only accepts TLS refuses tls: disable."""
    if not pgserver.find_bindir():
        pytest.skip("PostgreSQL server binaries not found")
    pki = tmp_path / "pki"
    pki.mkdir()
    _pki(pki)
    srv = pgserver.PgServer(
        settings={"ssl": "on", "ssl_cert_file": "server.crt", "ssl_key_file": "server.key"},
        hba=["local all all trust", "hostssl all all 127.0.0.1/32 scram-sha-256"],
        data_files={"server.crt": (pki / "server.crt").read_bytes(),
                    "server.key": (pki / "server.key").read_bytes()})
    with srv:
        kit = Kit(srv, tmp_path)
        ca, other = str(pki / "ca.crt"), str(pki / "other-ca.crt")
        assert_ok(kit.check(backend={"tls": "verify-full", "ca_file": ca,
                                     "server_name": "pg.test"}), kit.db)
        assert_ok(kit.check(backend={"tls": "require", "ca_file": ca}), kit.db)

        for backend, why in (
                ({"tls": "verify-full", "ca_file": ca}, "does not match host name"),
                ({"tls": "verify-full", "ca_file": other, "server_name": "pg.test"},
                 "certificate verify failed"),
                ({"tls": "require", "ca_file": other}, "certificate verify failed"),
                ({"tls": "disable"}, "no encryption")):
            r = kit.check(backend=backend)
            assert r.returncode != 0, (backend, r.stdout)
            assert any(ln.startswith("cannot connect") and why in ln
                       for ln in lines(r, kit.db)), (backend, r.stdout)
