"""The real servers every target ends at: a throwaway PostgreSQL 15 and redis-server.

Both live in the run's temp dir, listen on 127.0.0.1 on a free port, keep
nothing (PostgreSQL with fsync off, redis with no RDB/AOF) and are stopped by
PID at the end. PostgreSQL refuses to run as root, so when the harness is root
it runs as the `postgres` system user (or `nobody`), which owns its data dir.
"""

import glob
import os
import pwd
import shutil
import signal
import subprocess
import time

from . import procs

BENCH_USER = "bench"
BENCH_DB = "bench"


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


def remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)
