"""Workloads: one load generator run against one target, parsed into a Sample.

A workload has a `name` (the row label), the `kind` of target it runs
against, and `run(target)` returning a Sample: requests done, throughput
(per second), a latency in ms, and the generator's raw output for the log.
The runner (bench.py) wraps every run with the proxy's CPU counters, so a
workload only drives the client. To add one, write a class with those three
members and append it in build_workloads().
"""

import os
import re
import subprocess
from dataclasses import dataclass
from typing import Optional

from . import procs, servers


@dataclass
class Sample:
    requests: int = 0
    seconds: float = 0.0
    throughput: float = 0.0  # per second
    latency_ms: Optional[float] = None
    latency_kind: str = ""
    error: Optional[str] = None
    output: str = ""


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


def build_workloads(opts):
    out = []
    for mode in opts.pg_modes:
        for c in opts.pg_clients:
            out.append(Pgbench(c, opts.seconds, mode=mode))
    for p in opts.redis_pipelines:
        n = opts.redis_n if p == 1 else opts.redis_n_pipelined
        for t in opts.redis_tests:
            out.append(RedisBenchmark(t, n, opts.redis_clients, p, opts.redis_timeout))
    return out
