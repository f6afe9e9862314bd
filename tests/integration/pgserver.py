"""A throwaway PostgreSQL server for integration tests, on loopback only.

    import pgserver
    from pgserver import pg_server  # noqa: F401  (the session-scoped pytest fixture)

    def test_x(pg_server):
        pg_server.sql("CREATE ROLE app LOGIN PASSWORD 'pw'")
        pg_server.create_database("app")
        pg_server.psql_file("deploy/sql/tenantgate.sql", db="app", variables={"app_role": "app"})
        with pg_server.connect(user="app", password="pw", dbname="app") as conn: ...

Or without pytest: `with pgserver.PgServer() as pg: ...`.

What start() does:
  * finds PostgreSQL's server binaries ($TG_PG_BINDIR, else the newest
    /usr/lib/postgresql/<major>/bin, else initdb on PATH);
  * runs initdb in a fresh temp dir under /tmp (UTF8, locale C, superuser `postgres` with a
    random password). PostgreSQL refuses to run as root, so when the tests run as root every
    server command runs as the `postgres` OS user and the temp dir is chown'ed to it;
  * pg_hba: local (unix socket) connections trust, TCP connections from 127.0.0.1 and ::1
    need scram-sha-256 (so a test's password and tenantgate's SCRAM login are real);
    PgServer(hba=[...]) replaces these lines, PgServer(data_files={...}) puts files such as
    server.crt/server.key into the data directory, PgServer(settings={...}) adds settings;
  * starts `postgres` itself (its PID is the postmaster's) on a free port, listening on
    127.0.0.1 only, its unix socket in the temp dir, fsync/synchronous_commit/full_page_writes
    off (data is thrown away), and waits until it accepts connections.

With TG_EXT_POSTGRES=postgresql://SUPERUSER:PW@HOST:PORT set (ext_backends.py), start() starts
nothing: host, port, superuser and superuser_password are that server's, sql()/psql_file() run
psql over TCP with the password (as another role through SET SESSION AUTHORIZATION), and
stop() drops the databases and roles that were not there at start() (DROP OWNED BY first, in
every database), never one that was. hba/data_files need a local server and are refused;
`settings` are the server's own (deploy/compose/ sets max_prepared_transactions).

stop() asks the postmaster for a fast shutdown (SIGINT, by PID), waits, escalates to SIGQUIT
and SIGKILL if it must, and removes the temp dir. Nothing but the process it started is
signalled. sql()/psql_file() run psql over the unix socket (as the superuser unless told
otherwise); connect() opens a psycopg (3) connection over TCP with a password.
"""

import glob
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

import ext_backends
import tghelpers as h

SUPERUSER = "postgres"


def find_bindir():
    """The directory holding initdb and postgres, or None."""
    env = os.environ.get("TG_PG_BINDIR")
    if env:
        return env if os.path.isfile(os.path.join(env, "initdb")) else None
    versions = []
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        m = re.match(r"/usr/lib/postgresql/(\d+)/bin$", d)
        if m and os.path.isfile(os.path.join(d, "initdb")):
            versions.append((int(m.group(1)), d))
    if versions:
        return max(versions)[1]
    initdb = shutil.which("initdb")
    return os.path.dirname(os.path.realpath(initdb)) if initdb else None


def ident(name):
    """name as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _clean_env():
    """The environment without PG* variables, so that nothing outside steers psql or libpq."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "10"
    return env


class PgServer:
    """One throwaway cluster. Attributes once started: port, host ("127.0.0.1"), sockdir,
    datadir, superuser, superuser_password, pid, bindir, version (major, an int)."""

    def __init__(self, bindir=None, settings=None, hba=None, data_files=None):
        """settings: extra `-c name=value` server settings; hba: pg_hba.conf lines replacing the
        default ones; data_files: {name: bytes} written into the data directory (mode 0600,
        owned by the server's user) before the start, e.g. server.crt/server.key for ssl=on."""
        self.bindir = bindir or find_bindir()
        self.settings = dict(settings or {})
        self.hba = list(hba) if hba else ["local all all trust",
                                          "host all all 127.0.0.1/32 scram-sha-256",
                                          "host all all ::1/128 scram-sha-256"]
        self.data_files = dict(data_files or {})
        self.external = ext_backends.url("postgres")
        if self.external and (hba or data_files):
            raise RuntimeError("TG_EXT_POSTGRES is set, but this server needs its own pg_hba.conf "
                               "or data files: mark the test local_backend('postgres', ...)")
        self._before = None  # external: (databases, roles) at start()
        self.host = "127.0.0.1"
        self.port = None
        self.superuser = SUPERUSER
        self.superuser_password = secrets.token_hex(16)
        self.tmpdir = self.datadir = self.sockdir = self.logpath = None
        self.proc = None
        self.version = None
        self._runas = None  # pwd entry of the OS user running the server (root only)
        self._logf = None

    # ---- lifecycle -----------------------------------------------------------------------------

    def _popen_kw(self):
        if self._runas is None:
            return {}
        return {"user": self._runas.pw_uid, "group": self._runas.pw_gid, "extra_groups": [],
                "cwd": self.tmpdir}

    def _chown(self, path):
        if self._runas is not None:
            os.chown(path, self._runas.pw_uid, self._runas.pw_gid)

    def start(self, timeout=60):
        if self.external:
            return self._start_external()
        if not self.bindir:
            raise RuntimeError("PostgreSQL server binaries not found (set TG_PG_BINDIR)")
        if os.geteuid() == 0:
            self._runas = pwd.getpwnam("postgres")
        self.tmpdir = tempfile.mkdtemp(prefix="tg-pg-", dir="/tmp")
        os.chmod(self.tmpdir, 0o700)
        self._chown(self.tmpdir)
        self.datadir = os.path.join(self.tmpdir, "data")
        self.sockdir = os.path.join(self.tmpdir, "sock")
        os.mkdir(self.sockdir, 0o700)
        self._chown(self.sockdir)
        pwfile = os.path.join(self.tmpdir, "pwfile")
        with open(pwfile, "w") as f:
            f.write(self.superuser_password + "\n")
        os.chmod(pwfile, 0o600)
        self._chown(pwfile)
        r = subprocess.run(
            [os.path.join(self.bindir, "initdb"), "-D", self.datadir, "-U", self.superuser,
             "--pwfile", pwfile, "-E", "UTF8", "--locale=C", "--auth-local=trust",
             "--auth-host=scram-sha-256", "--no-sync"],
            capture_output=True, text=True, env=_clean_env(), timeout=120, **self._popen_kw())
        os.unlink(pwfile)
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{r.stdout}\n{r.stderr}")
        with open(os.path.join(self.datadir, "PG_VERSION")) as f:
            self.version = int(f.read().strip().split(".")[0])
        with open(os.path.join(self.datadir, "pg_hba.conf"), "w") as f:
            f.write("".join(line + "\n" for line in self.hba))
        for name, data in self.data_files.items():
            path = os.path.join(self.datadir, name)
            with open(path, "wb") as f:
                f.write(data)
            os.chmod(path, 0o600)
            self._chown(path)
        self.logpath = os.path.join(self.tmpdir, "postgres.log")
        for attempt in range(3):  # a free port can be taken between picking and binding it
            self.port = h.free_port()
            if self._spawn(timeout):
                return self
            if attempt == 2 or "could not bind" not in self.log():
                break
        log = self.log()
        self.stop()
        raise RuntimeError(f"postgres did not start; log:\n{log}")

    def _spawn(self, timeout):
        settings = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": self.sockdir,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "100",
            "shared_buffers": "32MB",
            "password_encryption": "scram-sha-256",
        }
        settings.update(self.settings)
        args = [os.path.join(self.bindir, "postgres"), "-D", self.datadir]
        for k, v in settings.items():
            args += ["-c", f"{k}={v}"]
        self._logf = open(self.logpath, "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=subprocess.STDOUT, env=_clean_env(),
                                     **self._popen_kw())
        deadline = time.monotonic() + h.scaled(timeout)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._close_log()
                return False
            r = subprocess.run(
                ["psql", "-X", "-q", "-h", self.sockdir, "-p", str(self.port), "-U",
                 self.superuser, "-d", "postgres", "-Atc", "SELECT 1"],
                capture_output=True, text=True, env=_clean_env(), timeout=30)
            if r.returncode == 0:
                return True
            time.sleep(0.1)
        self._terminate()
        return False

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def _terminate(self):
        """Fast shutdown of the postmaster we started (by PID), escalating if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGINT, 30), (signal.SIGQUIT, 10), (signal.SIGKILL, 10)):
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue

    def _close_log(self):
        if self._logf:
            self._logf.close()
            self._logf = None

    # ---- an external server (TG_EXT_POSTGRES) ---------------------------------------------------

    def _start_external(self):
        e = self.external
        self.host, self.port = e.host, e.port
        self.superuser, self.superuser_password = e.user, e.password
        self.version = int(self.sql("SHOW server_version_num").strip()) // 10000
        self._before = self._inventory()
        return self

    def _inventory(self):
        dbs = self.sql("SELECT datname FROM pg_database").splitlines()
        roles = self.sql("SELECT rolname FROM pg_roles").splitlines()
        return set(dbs), set(roles)

    def _stop_external(self):
        """Drops what the tests created: the databases and roles that were not there."""
        if self._before is None:
            return
        dbs, roles = self._inventory()
        new_dbs, new_roles = dbs - self._before[0], roles - self._before[1]
        for db in sorted(new_dbs):
            self.sql(f"DROP DATABASE IF EXISTS {ident(db)} WITH (FORCE)")
        if new_roles:
            names = ", ".join(ident(r) for r in sorted(new_roles))
            for db in self.sql("SELECT datname FROM pg_database WHERE datallowconn").splitlines():
                self.sql(f"DROP OWNED BY {names}", db=db)
            for r in sorted(new_roles):
                self.sql(f"DROP ROLE IF EXISTS {ident(r)}")
        self._before = None

    def admin_params(self):
        """libpq/psycopg keywords for a superuser connection: the unix socket (trust) of a
        local server, TCP with the password for an external one."""
        if self.external:
            return {"host": self.host, "port": self.port, "user": self.superuser,
                    "password": self.superuser_password}
        return {"host": self.sockdir, "port": self.port, "user": self.superuser}

    def admin_cli(self):
        """(arguments, environment) for a libpq command-line tool (psql, pgbench) as the
        superuser: -h/-p/-U, and PGPASSWORD for an external server."""
        p = self.admin_params()
        env = _clean_env()
        if "password" in p:
            env["PGPASSWORD"] = p["password"]
        return ["-h", p["host"], "-p", str(p["port"]), "-U", p["user"]], env

    def stop(self):
        if self.external:
            self._stop_external()
            return
        self._terminate()
        self.proc = None
        self._close_log()
        if self.tmpdir and os.path.isdir(self.tmpdir):
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        self.tmpdir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log(self):
        """The server's log so far (for assertion messages)."""
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    # ---- SQL -----------------------------------------------------------------------------------

    def _psql(self, extra, db, user, variables, check, input_text=None):
        env = _clean_env()
        if self.external:
            # Only the superuser's password is known: it becomes `user` for the session.
            cli, env = self.admin_cli()
            if user and user != self.superuser:
                become = f"SET SESSION AUTHORIZATION {ident(user)};\n"
                if input_text is not None:
                    input_text = become + input_text
                else:
                    extra = ["-c", become] + extra
            args = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"] + cli + ["-d", db]
        else:
            args = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", self.sockdir,
                    "-p", str(self.port), "-U", user or self.superuser, "-d", db]
        for k, v in (variables or {}).items():
            args += ["-v", f"{k}={v}"]
        r = subprocess.run(args + extra, capture_output=True, text=True, env=env,
                           input=input_text, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"psql {' '.join(extra)} failed ({r.returncode}):\n"
                                 f"{r.stdout}\n{r.stderr}")
        return r

    def sql(self, query, db="postgres", user=None, variables=None, check=True):
        """Runs query with psql over the unix socket (as the superuser unless user is given; the
        socket trusts every role). Returns stdout (unaligned, tuples only, '|' between columns);
        raises AssertionError on failure unless check=False, then returns the CompletedProcess."""
        r = self._psql([], db, user, variables, check, input_text=query)
        return r.stdout if check else r

    def psql_file(self, path, db="postgres", user=None, variables=None, check=True):
        """Runs a SQL file (psql -f) like sql(); returns the CompletedProcess."""
        return self._psql(["-f", path], db, user, variables, check)

    def create_database(self, name, owner=None):
        q = f'CREATE DATABASE "{name}"' + (f' OWNER "{owner}"' if owner else "")
        self.sql(q)

    def dsn(self, user, password, dbname):
        """A libpq connection string for TCP with a password."""
        return (f"host={self.host} port={self.port} user={user} password={password} "
                f"dbname={dbname} sslmode=disable connect_timeout=10")

    def connect(self, user, password, dbname, autocommit=True):
        """A psycopg (3) connection over TCP (scram-sha-256)."""
        import psycopg
        return psycopg.connect(self.dsn(user, password, dbname), autocommit=autocommit)


@pytest.fixture(scope="session")
def pg_server():
    """One throwaway PostgreSQL for the whole test session (skips when none is installed).
    Tests share it: give databases and roles unique names."""
    if not find_bindir() and not ext_backends.active("postgres"):
        pytest.skip("PostgreSQL server binaries not found (set TG_PG_BINDIR)")
    srv = PgServer()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
