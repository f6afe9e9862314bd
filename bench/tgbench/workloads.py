"""Workloads: one load generator run against one target, parsed into a Sample.

A workload has a `name` (the row label), the `kind` of target it runs
against, and `run(target)` returning a Sample: requests done, throughput
(per second), a latency in ms, and the generator's raw output for the log.
The runner (bench.py) wraps every run with the proxy's CPU counters, so a
workload only drives the client. To add one, write a class with those three
members and append it in build_workloads().

The MongoDB and Bolt load generators (bench/mongo_loadgen.c,
bench/bolt_loadgen.mjs) connect and warm up first, then wait for a go:

    loadgen: connect, log in, seed, warm up --> "ready"
    harness: proxy CPU (ns, all threads) --> "go" on stdin
    loadgen: N operations per client, each timed --> "result ..." ["baseline ..."]
    harness: proxy CPU again --> Sample.proxy_cpu_s (logins not charged)

so the proxy CPU they report is the operations' alone, at nanosecond
resolution (procs.cpu_ns): a few thousand operations on the slow Node.js
test backends are too few for clock ticks. Through a proxy they run paired:
every client alternates its operations between the proxy and `direct` (the
baseline), so that both are timed under the same load of the machine, and
Sample.baseline holds the direct figures of the same run; the added latency is
the difference of the two. On this shared 2-core machine, latencies of runs
taken seconds apart differ by more than a proxy adds.
"""

import itertools
import os
import re
import select
import shutil
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from typing import Optional

from . import procs, servers

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # bench/


@dataclass
class Sample:
    requests: int = 0
    seconds: float = 0.0
    throughput: float = 0.0  # per second
    latency_ms: Optional[float] = None
    latency_kind: str = ""
    error: Optional[str] = None
    output: str = ""
    # Per-operation latency of the loadgens that time every operation (MongoDB, Bolt).
    mean_ms: Optional[float] = None
    p99_ms: Optional[float] = None
    # Proxy CPU measured by the workload itself (around the operations only); None: the
    # runner's own before/after reading is used.
    proxy_cpu_s: Optional[float] = None
    # Paired runs: the direct path's figures from the same run (throughput, latency_ms = p50,
    # mean_ms, p99_ms), timed alternately with the target's.
    baseline: Optional[dict] = None


def _run(argv, env, timeout):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout,
                           stdin=subprocess.DEVNULL, preexec_fn=procs.child_setup)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"")
        return None, "timed out after %d s" % timeout, out if isinstance(out, str) else ""
    out = r.stdout + r.stderr
    if r.returncode != 0:
        tail = " | ".join(out.strip().splitlines()[-3:])
        return None, "exit %d: %s" % (r.returncode, tail[:300]), out
    return r, None, out


class Pgbench:
    """pgbench -S (select-only built-in script) for a fixed duration."""

    kind = "postgres"

    def __init__(self, clients, seconds, mode="simple", threads=None):
        self.clients = clients
        self.seconds = seconds
        self.mode = mode
        self.threads = threads or (2 if clients >= 2 else 1)
        self.name = "pgbench -S -M %s -c %d" % (mode, clients)
        self.unit = "TPS"
        self.params = "-T %d -j %d, -n (no vacuum)" % (seconds, self.threads)

    def run(self, target):
        env = dict(os.environ)
        env.pop("PGPASSWORD", None)
        if target.password is not None:
            env["PGPASSWORD"] = target.password
        argv = ["pgbench", "-n", "-S", "-M", self.mode, "-c", str(self.clients),
                "-j", str(self.threads), "-T", str(self.seconds),
                "-h", target.host, "-p", str(target.port),
                "-U", target.user or servers.BENCH_USER, target.dbname or servers.BENCH_DB]
        r, err, out = _run(argv, env, timeout=self.seconds + 60)
        s = Sample(output=out, latency_kind="avg")
        if err:
            s.error = err
            return s
        m = re.search(r"number of transactions actually processed: (\d+)", out)
        t = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
        lat = re.search(r"latency average = ([\d.]+) ms", out)
        failed = re.search(r"number of failed transactions: (\d+)", out)
        if not (m and t):
            s.error = "cannot parse pgbench output"
            return s
        s.requests = int(m.group(1))
        s.throughput = float(t.group(1))
        s.seconds = s.requests / s.throughput if s.throughput else 0.0
        s.latency_ms = float(lat.group(1)) if lat else None
        if failed and int(failed.group(1)) > 0:
            s.error = "%s failed transactions" % failed.group(1)
        return s


class RedisBenchmark:
    """redis-benchmark for one test (-t) with a fixed request count."""

    kind = "redis"

    def __init__(self, test, requests, clients, pipeline, timeout):
        self.test = test
        self.requests = requests
        self.clients = clients
        self.pipeline = pipeline
        self.timeout = timeout
        self.name = "redis %s -P %d" % (test.upper(), pipeline)
        self.unit = "req/s"
        self.params = "-n %d -c %d" % (requests, clients)

    def run(self, target):
        argv = ["redis-benchmark", "-h", target.host, "-p", str(target.port),
                "-c", str(self.clients), "-n", str(self.requests), "-P", str(self.pipeline),
                "-t", self.test, "-q", "--csv"]
        if target.password is not None:
            argv += ["-a", target.password]
            if target.user:
                argv += ["--user", target.user]
        env = dict(os.environ)
        env.pop("REDISCLI_AUTH", None)
        r, err, out = _run(argv, env, timeout=self.timeout)
        s = Sample(output=out)
        if err:
            s.error = err
            return s
        rows = [l for l in out.splitlines() if l.startswith('"')]
        if len(rows) < 2:
            s.error = "cannot parse redis-benchmark output: %s" % out.strip()[-200:]
            return s
        header = [h.strip('"') for h in rows[0].split(",")]
        values = [v.strip('"') for v in rows[1].split(",")]
        row = dict(zip(header, values))
        s.requests = self.requests
        s.throughput = float(row["rps"])
        s.seconds = s.requests / s.throughput if s.throughput else 0.0
        if "p50_latency_ms" in row:
            s.latency_ms, s.latency_kind = float(row["p50_latency_ms"]), "p50"
        elif "avg_latency_ms" in row:
            s.latency_ms, s.latency_kind = float(row["avg_latency_ms"]), "avg"
        return s


# ---- load generators that wait for a go (MongoDB, Bolt) ---------------------------------------

_RESULT = re.compile(r"^result (.*)$", re.M)
_BASELINE = re.compile(r"^baseline (.*)$", re.M)


def _proxy_cpu(pid):
    """(value, seconds per unit): ns from schedstat, else clock ticks."""
    ns = procs.cpu_ns(pid)
    if ns is not None:
        return ns, 1e-9
    return procs.cpu_ticks(pid), 1.0 / procs.CLK_TCK


_EOF, _TIMEOUT = "<eof>", "<timeout>"  # _readline's two ways of returning no line


def _readline(p, deadline, buf):
    """The next line of p's stdout (without the newline), _EOF or _TIMEOUT (the deadline)."""
    fd = p.stdout.fileno()
    while b"\n" not in buf[0]:
        left = deadline - time.monotonic()
        if left <= 0:
            return _TIMEOUT
        r, _, _ = select.select([fd], [], [], min(left, 0.5))
        if r:
            chunk = os.read(fd, 65536)
            if not chunk:
                return _EOF
            buf[0] += chunk
    line, buf[0] = buf[0].split(b"\n", 1)
    return line.decode("utf-8", "replace")


def drive_ready_go(argv, env, target, timeout, cwd=None):
    """Runs a ready/go load generator (see the module doc) against target; returns a Sample
    with throughput, p50 (latency_ms), mean, p99 and the proxy's CPU during the operations."""
    s = Sample(latency_kind="p50")
    errpath = os.path.join(os.environ.get("BENCH_TMP") or "/tmp",
                           "loadgen-%d-%d.err" % (os.getpid(), next(_err_seq)))
    deadline = time.monotonic() + timeout
    lines = []
    missing = None  # what never came: "ready" or "result"
    timed_out = False
    with open(errpath, "w+b") as err:
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                             env=env, cwd=cwd, preexec_fn=procs.child_setup)
        try:
            buf = [b""]
            line = _readline(p, deadline, buf)
            if line != "ready":
                missing, timed_out = "ready", line is _TIMEOUT
            else:
                before = _proxy_cpu(target.pid) if target.pid else None
                try:
                    p.stdin.write(b"go\n")
                    p.stdin.flush()
                except BrokenPipeError:
                    pass  # it exited after ready: no result line, reported below
                while True:
                    line = _readline(p, deadline, buf)
                    if line in (_EOF, _TIMEOUT) or line.startswith("result "):
                        break
                    lines.append(line)
                if line in (_EOF, _TIMEOUT):
                    missing, timed_out = "result", line is _TIMEOUT
                else:
                    if before is not None:
                        after = _proxy_cpu(target.pid)
                        s.proxy_cpu_s = (after[0] - before[0]) * before[1]
                    lines.append(line)
                    rest = min(deadline, time.monotonic() + 30)
                    while True:  # the baseline's line, if any, and the rest
                        line = _readline(p, rest, buf)
                        if line in (_EOF, _TIMEOUT):
                            break
                        lines.append(line)
            try:
                p.stdin.close()
            except BrokenPipeError:
                pass
            if not timed_out:
                try:
                    p.wait(timeout=max(1.0, min(30.0, deadline - time.monotonic())))
                except subprocess.TimeoutExpired:
                    pass
        finally:
            if p.poll() is None:  # timed out or interrupted: stop it, by its PID
                p.kill()
                p.wait(timeout=10)
            if p.stdout:
                p.stdout.close()
        err.seek(0)
        errtext = err.read().decode("utf-8", "replace")
    os.unlink(errpath)
    s.output = "\n".join(lines) + ("\n" + errtext if errtext else "")
    tail = " | ".join(l for l in errtext.strip().splitlines()[-2:] if l)[:300]
    if missing:
        s.error = ("timed out after %d s before its %s line" % (timeout, missing) if timed_out
                   else "exit %s before its %s line" % (p.returncode, missing))
        s.error += (": " + tail) if tail else ""
        return s
    m = _RESULT.search(s.output)
    fields = dict(kv.split("=", 1) for kv in m.group(1).split()) if m else {}
    if p.returncode != 0 or fields.get("errors", "0") != "0":
        s.error = "exit %s: %s" % (p.returncode, tail or "no message")
        return s

    def figures(f):
        return {"requests": int(f["ops"]), "seconds": float(f["seconds"]),
                "throughput": float(f["ops_per_s"]), "latency_ms": float(f["p50_us"]) / 1000,
                "mean_ms": float(f["mean_us"]) / 1000, "p99_ms": float(f["p99_us"]) / 1000}

    try:
        for k, v in figures(fields).items():
            setattr(s, k, v)
        b = _BASELINE.search(s.output)
        if b:
            s.baseline = figures(dict(kv.split("=", 1) for kv in b.group(1).split()))
    except (KeyError, ValueError):
        s.error = "cannot parse the load generator's result line"
    return s


_err_seq = itertools.count()
_run_seq = itertools.count(1)  # a fresh collection / id range per run


def mongo_loadgen_binary(opts, tmp):
    """bench/mongo_loadgen: the build's (next to TG_BIN, or BENCH_TOOLS_DIR), else compiled
    here with cc and pkg-config (libmongoc-dev) into the run's temp dir."""
    built = os.path.join(opts.tools_dir, "mongo_loadgen")
    if os.access(built, os.X_OK):
        return built, "built with the project"
    out = os.path.join(tmp, "mongo_loadgen")
    cc = shutil.which("cc") or shutil.which("gcc")
    try:
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libmongoc-1.0"],
                               capture_output=True, text=True, check=True, timeout=30).stdout.split()
        subprocess.run([cc, "-O2", "-std=c11", "-D_GNU_SOURCE", "-o", out,
                        os.path.join(HERE, "mongo_loadgen.c")] + flags + ["-pthread"],
                       capture_output=True, text=True, check=True, timeout=300)
    except (OSError, TypeError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        detail = getattr(e, "stderr", "") or str(e)
        raise RuntimeError("no mongo_loadgen in %s and cannot compile bench/mongo_loadgen.c "
                           "(libmongoc-dev, pkg-config, cc): %s" % (opts.tools_dir, detail[-300:]))
    return out, "compiled by the harness (cc -O2)"


class MongoLoadgen:
    """bench/mongo_loadgen (libmongoc): find by _id, insert_one or a small aggregate."""

    kind = "mongodb"
    LABELS = {"find": "find by _id", "insert": "insert_one",
              "aggregate": "aggregate $match+$group"}

    def __init__(self, op, clients, ops, seed, binary, timeout, warmup=20, baseline=None):
        self.op = op
        self.clients = clients
        self.ops = ops
        self.seed = seed
        self.binary = binary
        self.timeout = timeout
        self.warmup = warmup
        self.baseline = baseline  # the direct Target: proxied runs alternate with it
        self.name = "mongo %s -c %d" % (self.LABELS[op], clients)
        self.unit = "ops/s"
        self.params = "%d ops per client, %d connections%s" % (
            ops, clients, "" if op == "insert" else ", %d documents" % seed)

    @staticmethod
    def uri(target):
        q = urllib.parse.quote
        if target.extra.get("auth") == "jwt":
            return "mongodb://%s:%s@%s/?authMechanism=PLAIN&authSource=%%24external" % (
                q(target.user or "bench", safe=""), q(target.password, safe=""), target.address)
        # The service user. The test backend says it is a replica-set primary, tenantgate a
        # standalone: without retryable writes both paths send the same commands.
        return ("mongodb://%s:%s@%s/?authSource=admin&authMechanism=SCRAM-SHA-256"
                "&directConnection=true&retryWrites=false") % (
            q(target.user, safe=""), q(target.password, safe=""), target.address)

    def run(self, target):
        # URIs carry credentials: in the environment, never on the command line.
        env = dict(os.environ, MONGO_LOADGEN_URI=self.uri(target))
        env.pop("MONGO_LOADGEN_BASELINE_URI", None)
        argv = [self.binary, "--db", "bench",
                "--coll", "%s_%d" % (self.op, next(_run_seq)), "--op", self.op,
                "--clients", str(self.clients), "--ops", str(self.ops),
                "--seed", str(self.seed), "--warmup", str(self.warmup)]
        if target.extra.get("self_scope"):
            argv += ["--self-scope", target.extra["self_scope"]]
        b = self.baseline
        if b is not None and not target.is_direct:
            env["MONGO_LOADGEN_BASELINE_URI"] = self.uri(b)
            if b.extra.get("self_scope"):
                argv += ["--baseline-self-scope", b.extra["self_scope"]]
        return drive_ready_go(argv, env, target, self.timeout)


def neo4j_driver_version():
    """The version of neo4j-driver installed for the Bolt test backend (and bolt_loadgen.mjs)."""
    import json

    try:
        with open(os.path.join(servers.BACKENDS, "bolt", "node_modules", "neo4j-driver",
                               "package.json")) as f:
            return json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        return "?"


class BoltLoadgen:
    """bench/bolt_loadgen.mjs (neo4j-driver): MATCH by id, or CREATE, auto-commit."""

    kind = "bolt"
    LABELS = {"read": "read MATCH by id", "write": "write CREATE"}

    def __init__(self, op, clients, ops, seed, timeout, warmup=20, baseline=None):
        self.op = op
        self.clients = clients
        self.ops = ops
        self.seed = seed
        self.timeout = timeout
        self.warmup = warmup
        self.baseline = baseline  # the direct Target: proxied runs alternate with it
        self.name = "bolt %s -c %d" % (self.LABELS[op], clients)
        self.unit = "stmt/s"
        self.params = "%d statements per client, %d connections%s" % (
            ops, clients, ", %d nodes" % seed if op == "read" else "")

    @staticmethod
    def credentials(env, prefix, target):
        """Credentials in the environment, never on the command line."""
        for k in ("TOKEN", "USER", "PASSWORD"):
            env.pop(prefix + k, None)
        if target.extra.get("auth") == "jwt":
            env[prefix + "TOKEN"] = target.password
        else:
            env[prefix + "USER"] = target.user
            env[prefix + "PASSWORD"] = target.password

    def run(self, target):
        env = dict(os.environ)
        self.credentials(env, "BOLT_LOADGEN_", target)
        argv = [servers.node_binary(), os.path.join(HERE, "bolt_loadgen.mjs"),
                "--uri", "bolt://%s" % target.address, "--op", self.op,
                "--clients", str(self.clients), "--ops", str(self.ops), "--seed", str(self.seed),
                "--warmup", str(self.warmup), "--id-base", str(next(_run_seq) * 1000000000)]
        if target.extra.get("self_scope"):
            argv += ["--self-scope", target.extra["self_scope"]]
        b = self.baseline
        if b is not None and not target.is_direct:
            self.credentials(env, "BOLT_LOADGEN_BASELINE_", b)
            argv += ["--baseline-uri", "bolt://%s" % b.address]
            if b.extra.get("self_scope"):
                argv += ["--baseline-self-scope", b.extra["self_scope"]]
        return drive_ready_go(argv, env, target, self.timeout)


def build_workloads(opts):
    out = []
    for mode in opts.pg_modes:
        for c in opts.pg_clients:
            out.append(Pgbench(c, opts.seconds, mode=mode))
    for p in opts.redis_pipelines:
        n = opts.redis_n if p == 1 else opts.redis_n_pipelined
        for t in opts.redis_tests:
            out.append(RedisBenchmark(t, n, opts.redis_clients, p, opts.redis_timeout))
    if "mongodb" in opts.kinds:
        for c in opts.mongo_clients:
            for op in opts.mongo_ops_kinds:
                out.append(MongoLoadgen(op, c, opts.mongo_ops, opts.mongo_seed,
                                        opts.mongo_loadgen, opts.loadgen_timeout))
    if "bolt" in opts.kinds:
        for c in opts.bolt_clients:
            for op in opts.bolt_ops_kinds:
                if op == "write" and c > 1:
                    continue  # the Bolt test backend runs one write transaction at a time
                out.append(BoltLoadgen(op, c, opts.bolt_ops, opts.bolt_seed,
                                       opts.loadgen_timeout))
    return out
