"""A throwaway PostgreSQL 15 and a tenantgate in front of it, for test_pg_*.py.

  PgServer       pgserver.PgServer (initdb as the `postgres` OS user, free port on
                 127.0.0.1, private unix socket dir, scram-sha-256 on TCP, trust on
                 the socket, stopped by PID), one per test module, with prepared
                 transactions enabled and a superuser psycopg connection helper.
  setup_schema   role `app` (LOGIN, NOSUPERUSER, NOBYPASSRLS), database `app`,
                 documents(id, tenant_id default current_setting('app.tenant_id'),
                 body) with RLS enabled + forced and a USING / WITH CHECK policy on
                 current_setting('app.tenant_id', true); copy_sink (no tenant column).
  Tokens         HS256 JWTs minted with PyJWT (tenant_id claim, exp).
  pg_config      the tenantgate config: listeners pg (plain), pgdb (databases
                 allow-list [app]) and optionally pgtls (tls.mode require).
  RawPg          the v3 protocol over a plain socket: startup, cleartext password,
                 Query / Parse / Bind / Execute / Sync / FunctionCall / CancelRequest,
                 message reading with a deadline. For what libpq hides (SQLSTATEs of
                 FATALs, pipelined replies, fast-path calls).

Only 127.0.0.1; every wait is bounded. With TG_EXT_POSTGRES set, PgServer is that server
(pgserver.py, ext_backends.py): setup_schema creates role and database `app` there (and
refuses if either exists already) and stop() drops them again.
"""

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import time

import jwt
import psycopg

import pgserver
import tghelpers as h

APP_PASSWORD = "app-service-password-7f3c"
TENANT_SETTING = "app.tenant_id"


# ---- the server --------------------------------------------------------------------------------


class PgServer(pgserver.PgServer):
    """The shared throwaway-server fixture (pgserver.py), one per test module, plus what these
    suites use: a psycopg superuser connection over the unix socket and a query helper."""

    def __init__(self):
        # prepared transactions enabled, so that PREPARE TRANSACTION would really work if
        # tenantgate let it through
        super().__init__(settings={"max_prepared_transactions": "4", "max_connections": "80"})

    @property
    def sock(self):
        return self.sockdir

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def superuser_conn(self, dbname="app", autocommit=True):
        """A psycopg connection as the superuser over the unix socket (trust), or TCP with
        the password to an external server."""
        return psycopg.connect(**self.admin_params(), dbname=dbname, autocommit=autocommit,
                               connect_timeout=10)

    def su_query(self, sql, params=None, dbname="app"):
        with self.superuser_conn(dbname=dbname) as c:
            cur = c.execute(sql, params)
            return cur.fetchall() if cur.description else None


SCHEMA_SQL = """
CREATE TABLE documents (
    id serial PRIMARY KEY,
    tenant_id text NOT NULL DEFAULT current_setting('app.tenant_id'),
    body text
);
ALTER TABLE documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE documents FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON documents
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
GRANT ALL PRIVILEGES ON documents TO app;
GRANT USAGE, SELECT ON SEQUENCE documents_id_seq TO app;
CREATE TABLE copy_sink (id int, body text);
GRANT ALL PRIVILEGES ON copy_sink TO app;
"""


def setup_schema(pg):
    """Role app, database app, the RLS-protected documents table (idempotent per cluster)."""
    with pg.superuser_conn(dbname="postgres") as c:
        if pg.external and (
                c.execute("SELECT 1 FROM pg_roles WHERE rolname = 'app'").fetchone() or
                c.execute("SELECT 1 FROM pg_database WHERE datname = 'app'").fetchone()):
            raise AssertionError("TG_EXT_POSTGRES: role or database `app` exists already; the "
                                 "suites create both and drop them after, so they will not use "
                                 "ones they did not create")
        c.execute(f"CREATE ROLE app LOGIN PASSWORD '{APP_PASSWORD}' NOSUPERUSER NOBYPASSRLS "
                  "NOCREATEDB NOCREATEROLE")
        c.execute("CREATE DATABASE app")
        c.execute("GRANT CONNECT ON DATABASE app TO app")
    with pg.superuser_conn() as c:
        c.execute(SCHEMA_SQL)


# ---- tokens --------------------------------------------------------------------------------------


class Tokens:
    def __init__(self, secret):
        self.secret = secret

    def mint(self, tenant, ttl=3600, secret=None, **claims):
        payload = {"tenant_id": tenant, "exp": int(time.time()) + ttl, "iat": int(time.time())}
        payload.update(claims)
        if tenant is None:
            del payload["tenant_id"]
        return jwt.encode(payload, secret or self.secret, algorithm="HS256")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def tamper_claims(token, **changes):
    """The token with its payload changed and the original signature kept."""
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return ".".join([head, b64url(json.dumps(claims).encode()), sig])


def alg_none_token(tenant, ttl=3600):
    head = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = b64url(json.dumps({"tenant_id": tenant, "exp": int(time.time()) + ttl}).encode())
    return f"{head}.{payload}."


# ---- tenantgate --------------------------------------------------------------------------------


def pg_listener(name, port, pg, pw_file, **postgres_extra):
    d = {
        "name": name,
        "protocol": "postgres",
        "listen": f"127.0.0.1:{port}",
        "backend": {"address": pg.address, "user": "app", "password_file": pw_file},
        "postgres": {"tenant_setting": TENANT_SETTING},
    }
    d["postgres"].update(postgres_extra)
    return d


def write_secrets(d):
    """(jwt secret, jwt secret file, backend password file) in directory d."""
    secret = os.urandom(32).hex()  # 64 bytes of text
    jwt_file = os.path.join(d, "jwt-secret")
    with open(jwt_file, "w") as f:
        f.write(secret + "\n")
    pw_file = os.path.join(d, "app-password")
    with open(pw_file, "w") as f:
        f.write(APP_PASSWORD + "\n")
    return secret, jwt_file, pw_file


def make_cert(d):
    """A self-signed localhost certificate made with the openssl CLI; (cert, key) paths."""
    openssl = shutil.which("openssl")
    assert openssl, "the openssl CLI is needed"
    cert, key = os.path.join(d, "server.crt"), os.path.join(d, "server.key")
    r = subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return cert, key


class Env:
    """What a test module needs: the server, the proxy, ports, tokens, connection helpers."""

    def __init__(self, pg, proxy, tokens, workdir):
        self.pg = pg
        self.proxy = proxy
        self.tokens = tokens
        self.dir = workdir

    def port(self, listener="pg"):
        return self.proxy.port(listener)

    def conninfo(self, token, listener="pg", dbname="app", **kw):
        d = dict(host="127.0.0.1", port=self.port(listener), user="app", dbname=dbname,
                 password=token, sslmode="disable", connect_timeout=10)
        d.update(kw)
        return d

    def connect(self, tenant=None, token=None, listener="pg", autocommit=True, **kw):
        """A psycopg connection through tenantgate as `tenant` (or with `token`)."""
        if token is None:
            token = self.tokens.mint(tenant)
        return psycopg.connect(autocommit=autocommit, **self.conninfo(token, listener, **kw))


def start_proxy(workdir, pg, with_tls=False, name="tg", **postgres_extra):
    """Writes secrets and config into workdir and starts tenantgate; returns (proxy, tokens)."""
    os.makedirs(workdir, exist_ok=True)
    secret, jwt_file, pw_file = write_secrets(workdir)
    listeners = [
        pg_listener("pg", h.free_port(), pg, pw_file, **postgres_extra),
        pg_listener("pgdb", h.free_port(), pg, pw_file, databases=["app"]),
    ]
    if with_tls:
        cert, key = make_cert(workdir)
        lst = pg_listener("pgtls", h.free_port(), pg, pw_file)
        lst["tls"] = {"mode": "require", "cert_file": cert, "key_file": key}
        listeners.append(lst)
    cfg = h.base_config(listeners, auth={"jwt": {"algorithms": ["HS256"],
                                                 "hs256_secret_file": jwt_file}})
    proxy = h.Proxy(workdir, cfg, name=name)
    proxy.start()
    return proxy, Tokens(secret)


def stop_proxy(proxy):
    try:
        proxy.stop()
    finally:
        proxy.kill()
        proxy.close_files()


# ---- checks on tenant data -----------------------------------------------------------------------


def tenant_digest(pg, tenant):
    """(count, md5) of a tenant's rows, read as the superuser (the ground truth)."""
    return tuple(pg.su_query(
        "SELECT count(*), coalesce(md5(string_agg(id::text || ':' || coalesce(body, '<null>'), "
        "',' ORDER BY id)), '') FROM documents WHERE tenant_id = %s", (tenant,))[0])


# ---- psql / pgbench ------------------------------------------------------------------------------


def client_env(password=None, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "10"
    if password is not None:
        env["PGPASSWORD"] = password
    env.update(extra)
    return env


def psql(conninfo, sql, password=None, timeout=60, env_extra=None):
    """psql -X -A -t -c sql [-c sql...] (sql: a string or a list, one session); returns the
    CompletedProcess (text)."""
    args = ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo]
    for one in ([sql] if isinstance(sql, str) else sql):
        args += ["-c", one]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          env=client_env(password, **(env_extra or {})),
                          stdin=subprocess.DEVNULL)


# ---- the v3 protocol over a raw socket -----------------------------------------------------------


def msg(type_byte, body=b""):
    return type_byte + struct.pack("!I", len(body) + 4) + body


def cstr(s):
    return (s.encode() if isinstance(s, str) else s) + b"\0"


def startup_packet(params, version=196608):
    body = struct.pack("!I", version)
    for k, v in params.items():
        body += cstr(k) + cstr(v)
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def cancel_packet(pid, key):
    return struct.pack("!IIii", 16, 80877102, pid, key)


def query_msg(sql):
    return msg(b"Q", cstr(sql))


def parse_msg(sql, name="", types=()):
    return msg(b"P", cstr(name) + cstr(sql) + struct.pack("!H", len(types)) +
               b"".join(struct.pack("!I", t) for t in types))


def bind_msg(params=(), portal="", stmt=""):
    body = cstr(portal) + cstr(stmt) + struct.pack("!H", 0) + struct.pack("!H", len(params))
    for p in params:
        if p is None:
            body += struct.pack("!i", -1)
        else:
            b = p.encode() if isinstance(p, str) else p
            body += struct.pack("!i", len(b)) + b
    return msg(b"B", body + struct.pack("!H", 0))


def describe_msg(kind=b"P", name=""):
    return msg(b"D", kind + cstr(name))


def execute_msg(portal="", max_rows=0):
    return msg(b"E", cstr(portal) + struct.pack("!I", max_rows))


SYNC = msg(b"S")
TERMINATE = msg(b"X")


def function_call_msg(oid, args):
    body = struct.pack("!I", oid) + struct.pack("!H", 1) + struct.pack("!H", 0)
    body += struct.pack("!H", len(args))
    for a in args:
        b = a.encode()
        body += struct.pack("!i", len(b)) + b
    return msg(b"F", body + struct.pack("!H", 0))


def error_fields(body):
    out = {}
    for part in body.split(b"\0"):
        if part:
            out[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return out


class RawPg:
    """A v3 client over a plain socket."""

    def __init__(self, port, timeout=10.0):
        self.s = h.connect(port, timeout=timeout)
        self.timeout = timeout
        self.buf = bytearray()
        self.key = None
        self.params = {}

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.s.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no reply in time")
        self.s.settimeout(left)
        try:
            chunk = self.s.recv(65536)
        except socket.timeout:
            raise TimeoutError("no reply in time")
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def read_msg(self, timeout=None):
        """(type char, body bytes); EOFError when the peer closed, TimeoutError at the deadline."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < 5:
            self._fill(deadline)
        t = chr(self.buf[0])
        n = struct.unpack("!I", self.buf[1:5])[0]
        assert n >= 4, f"bad length {n}"
        while len(self.buf) < 1 + n:
            self._fill(deadline)
        body = bytes(self.buf[5:1 + n])
        del self.buf[:1 + n]
        return t, body

    def read_until_ready(self, timeout=None, allow_close=False):
        """Messages up to and including ReadyForQuery (or, with allow_close, up to the
        peer's close: a FATAL ends the connection instead)."""
        out = []
        while True:
            try:
                t, body = self.read_msg(timeout)
            except (EOFError, ConnectionResetError):
                if allow_close:
                    return out
                raise
            out.append((t, body))
            if t == "Z":
                return out

    def read_until_closed(self, timeout=None):
        """Messages until the peer closes (EOF or reset)."""
        out = []
        try:
            while True:
                out.append(self.read_msg(timeout))
        except (EOFError, ConnectionResetError):
            return out

    def startup(self, params=None, version=196608):
        p = {"user": "app", "database": "app"}
        p.update(params or {})
        p = {k: v for k, v in p.items() if v is not None}
        self.send(startup_packet(p, version))
        return self.read_msg()

    def login(self, token, params=None):
        """Startup + password; returns the messages up to ReadyForQuery (asserts success)."""
        t, body = self.startup(params)
        assert t == "R" and struct.unpack("!I", body[:4])[0] == 3, (t, body)
        self.send(msg(b"p", cstr(token)))
        msgs = self.read_until_ready()
        for t, body in msgs:
            if t == "E":
                raise AssertionError(f"login failed: {error_fields(body)}")
            if t == "K":
                self.key = struct.unpack("!ii", body)
            if t == "S":
                k, v = body.split(b"\0")[:2]
                self.params[k.decode()] = v.decode()
        return msgs

    def login_error(self, token, params=None):
        """Startup (+ password when asked); returns the error fields of the FATAL that ends it."""
        t, body = self.startup(params)
        if t == "R":
            assert struct.unpack("!I", body[:4])[0] == 3, body
            self.send(msg(b"p", cstr(token)))
            t, body = self.read_msg()
        assert t == "E", (t, body)
        return error_fields(body)

    def query(self, sql):
        self.send(query_msg(sql))
        return self.read_until_ready()


def summarize(msgs):
    """Messages -> a compact list: ('E', sqlstate, message) / ('D', values) / ('C', tag) / ('Z', status)."""
    out = []
    for t, body in msgs:
        if t == "E":
            f = error_fields(body)
            out.append(("E", f.get("C"), f.get("M")))
        elif t == "D":
            n = struct.unpack("!H", body[:2])[0]
            off, vals = 2, []
            for _ in range(n):
                ln = struct.unpack("!i", body[off:off + 4])[0]
                off += 4
                if ln < 0:
                    vals.append(None)
                else:
                    vals.append(body[off:off + ln].decode("utf-8", "replace"))
                    off += ln
            out.append(("D", tuple(vals)))
        elif t == "C":
            out.append(("C", body.rstrip(b"\0").decode()))
        elif t == "Z":
            out.append(("Z", body.decode()))
        elif t in ("1", "2", "3", "n", "I", "s"):
            out.append((t,))
    return out
