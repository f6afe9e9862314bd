"""The servers every target ends at: a throwaway PostgreSQL 15 and redis-server, and the
Node.js test backends for MongoDB and Bolt.

All live in the run's temp dir, listen on 127.0.0.1 on a free port, keep
nothing (PostgreSQL with fsync off, redis with no RDB/AOF, the test backends in
memory) and are stopped by PID at the end. PostgreSQL refuses to run as root, so
when the harness is root it runs as the `postgres` system user (or `nobody`),
which owns its data dir.

MongoDB's and Neo4j's servers cannot be installed here: the `mongodb` and `bolt`
kinds run tenantgate's own test backends (tests/backends/mongodb, a
wire-compatible server over mingo; tests/backends/bolt, a Bolt server over the
embedded kuzu engine). Both are single-threaded Node.js programs, far slower
than the real servers: their throughput says nothing about MongoDB or Neo4j,
only the difference a proxy makes (added latency, proxy CPU per operation) does.
Each has one service account with a random password; `credentials` gives the
direct target what a client needs to log in as it.
"""

import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time

from . import procs

BENCH_USER = "bench"
BENCH_DB = "bench"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BACKENDS = os.path.join(ROOT, "tests", "backends")


def pg_bindir():
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(d, "postgres")):
            return d
    raise RuntimeError("no PostgreSQL server under /usr/lib/postgresql/*/bin (package postgresql)")


def unprivileged_user():
    """None when not root; otherwise a system user to run PostgreSQL and PgBouncer as."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    raise RuntimeError("running as root, and neither a postgres nor a nobody user exists")


def chown_tree(path, user):
    if user is None:
        return
    pw = pwd.getpwnam(user)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            os.chown(os.path.join(root, n), pw.pw_uid, pw.pw_gid)


class Postgres:
    def __init__(self, reg, tmp):
        self.reg = reg
        self.user = unprivileged_user()
        self.bindir = pg_bindir()
        self.dir = os.path.join(tmp, "pg")
        self.datadir = os.path.join(self.dir, "data")
        self.sockdir = os.path.join(self.dir, "sock")
        os.makedirs(self.sockdir)
        chown_tree(self.dir, self.user)
        self.port = procs.free_port()
        self.host = "127.0.0.1"
        self.proc = None

    def version(self):
        out = subprocess.run([os.path.join(self.bindir, "postgres"), "--version"],
                             capture_output=True, text=True).stdout.strip()
        return out

    def start(self):
        kw = {"user": self.user, "group": self.user} if self.user else {}
        subprocess.run([os.path.join(self.bindir, "initdb"), "-D", self.datadir, "-U", BENCH_USER,
                        "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"],
                       check=True, capture_output=True, cwd=self.dir, **kw)
        argv = [os.path.join(self.bindir, "postgres"), "-D", self.datadir,
                "-p", str(self.port), "-k", self.sockdir,
                "-c", "listen_addresses=127.0.0.1",
                "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off", "-c", "max_connections=200",
                "-c", "shared_buffers=256MB", "-c", "logging_collector=off",
                "-c", "log_min_messages=warning"]
        # SIGINT is PostgreSQL's fast shutdown (SIGTERM would wait for clients).
        self.proc = self.reg.start("postgres", argv, stop_signal=signal.SIGINT, user=self.user,
                                   cwd=self.dir)
        procs.wait_port(self.port, self.proc)
        deadline = time.monotonic() + 30
        while True:
            r = subprocess.run(["psql", "-h", self.host, "-p", str(self.port), "-U", BENCH_USER,
                                "-d", "postgres", "-Atc", "select 1"], capture_output=True)
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL not ready: %s" % r.stderr.decode())
            time.sleep(0.2)
        self.psql("postgres", "CREATE DATABASE %s" % BENCH_DB)

    def psql(self, db, sql):
        subprocess.run(["psql", "-h", self.host, "-p", str(self.port), "-U", BENCH_USER, "-d", db,
                        "-v", "ON_ERROR_STOP=1", "-qAtc", sql], check=True, capture_output=True)

    def pgbench_init(self, scale):
        r = subprocess.run(["pgbench", "-i", "-q", "-s", str(scale), "-h", self.host,
                            "-p", str(self.port), "-U", BENCH_USER, BENCH_DB],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError("pgbench -i failed:\n" + r.stderr)


class Redis:
    def __init__(self, reg, tmp):
        self.reg = reg
        self.dir = os.path.join(tmp, "redis")
        os.makedirs(self.dir)
        self.port = procs.free_port()
        self.host = "127.0.0.1"
        self.proc = None

    def version(self):
        return subprocess.run(["redis-server", "--version"], capture_output=True,
                              text=True).stdout.strip()

    def start(self):
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.dir, "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--maxclients", "10000", "--loglevel", "warning",
                "--protected-mode", "yes"]
        self.proc = self.reg.start("redis", argv)
        procs.wait_port(self.port, self.proc)
        deadline = time.monotonic() + 30
        while subprocess.run(["redis-cli", "-h", self.host, "-p", str(self.port), "ping"],
                             capture_output=True, text=True).stdout.strip() != "PONG":
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server not ready")
            time.sleep(0.1)

    def flush(self):
        subprocess.run(["redis-cli", "-h", self.host, "-p", str(self.port), "flushall"],
                       capture_output=True, check=True)


def node_binary():
    node = shutil.which("node")
    if not node:
        raise RuntimeError("the mongodb and bolt kinds need Node.js (node on PATH): their servers "
                           "are tenantgate's Node.js test backends")
    return node


def node_version():
    try:
        return subprocess.run([node_binary(), "--version"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, RuntimeError, subprocess.TimeoutExpired):
        return "?"


def _require_modules(folder, modules):
    for m in modules:
        if not os.path.isdir(os.path.join(folder, "node_modules", m)):
            raise RuntimeError("%s/node_modules/%s is missing: run `npm ci` there (bench/run.sh "
                               "does it)" % (folder, m))


class MongoTestBackend:
    """tests/backends/mongodb/server.mjs: in memory, one service user (SCRAM-SHA-256)."""

    dir = os.path.join(BACKENDS, "mongodb")

    def __init__(self, reg, tmp):
        self.reg = reg
        self.host = "127.0.0.1"
        self.port = procs.free_port()
        self.user = "svc"
        self.password = secrets.token_hex(16)
        self.proc = None

    def version(self):
        return "MongoDB test backend (tests/backends/mongodb, Node.js %s, single-threaded)" % (
            node_version())

    def start(self):
        _require_modules(self.dir, ("bson", "mingo"))
        argv = [node_binary(), os.path.join(self.dir, "server.mjs"), "--host=" + self.host,
                "--port=%d" % self.port, "--user=" + self.user, "--password=" + self.password]
        self.proc = self.reg.start("mongodb-backend", argv, cwd=self.dir)
        procs.wait_port(self.port, self.proc)

    def credentials(self):
        """Target fields for a client that logs in as the service user (direct, or through a
        TCP relay): a libmongoc URI for the load generator."""
        return {"user": self.user, "password": self.password}


# kuzu needs its tables declared; tenant_id is the property tenantgate's property
# isolation adds to every node pattern (tgbench/peers.py BENCH_TENANT_FIELD).
BOLT_SCHEMA = ("CREATE NODE TABLE Item(id INT64, name STRING, v INT64, tenant_id STRING, "
               "PRIMARY KEY(id));\n")


class BoltTestBackend:
    """tests/backends/bolt/server.mjs: Bolt 4.4/5.x over an in-memory kuzu database."""

    dir = os.path.join(BACKENDS, "bolt")

    def __init__(self, reg, tmp):
        self.reg = reg
        self.tmp = tmp
        self.host = "127.0.0.1"
        self.port = procs.free_port()
        self.user = "graph"
        self.password = secrets.token_hex(16)
        self.proc = None

    def version(self):
        return "Bolt test backend (tests/backends/bolt, kuzu, Node.js %s, single-threaded)" % (
            node_version())

    def start(self):
        _require_modules(self.dir, ("kuzu", "neo4j-driver"))
        schema = os.path.join(self.tmp, "bolt-schema.cypher")
        with open(schema, "w") as f:
            f.write(BOLT_SCHEMA)
        argv = [node_binary(), os.path.join(self.dir, "server.mjs"), "--host", self.host,
                "--port", str(self.port), "--user", self.user, "--password", self.password,
                "--schema", schema]
        self.proc = self.reg.start("bolt-backend", argv, cwd=self.dir)
        procs.wait_port(self.port, self.proc)

    def credentials(self):
        """Target fields for a client that logs in as the service user (basic auth)."""
        return {"user": self.user, "password": self.password}


def credentials(server):
    """What a client needs to log in to `server` directly ({} when it needs nothing)."""
    return server.credentials() if hasattr(server, "credentials") else {}


def remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)
