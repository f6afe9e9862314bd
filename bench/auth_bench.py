"""Authentication throughput with the tenant registry: new connections per second.

    bench/auth_bench.py [--seconds N] [--clients C] [--workers W] [--tg-bin PATH]

Starts a throwaway redis-server (the Redis backend, and the registry's keyspace under
another prefix) and PostgreSQL (with --pg), then one tenantgate per configuration:

    no registry        tenants: not configured (JWT verification only)
    registry, cached   tenants.registry, cache_ttl_s 60 (after the first lookup per worker:
                       answered from the per-worker cache)
    registry, uncached tenants.registry, cache_ttl_s 0 (every authentication asks Redis:
                       HGETALL + ZSCORE, one round trip)

and drives new connections through each: `redis-benchmark -k 0 -t ping` (every request
on a new connection: connect, AUTH <jwt>, PING, close; tenantgate connects to the backend
and logs in for each) and, with --pg, `pgbench -C -S` (a new connection per transaction).
The token carries a jti, so the revocation set is asked too. Prints, per configuration,
connections per second and tenantgate's CPU per connection (utime+stime of the process
from /proc, divided by the connections it accepted).

Everything listens on 127.0.0.1 and is stopped by PID at the end. Quick runs are fine on
a shared machine; compare the rows of one run, not absolute figures.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from tgbench import procs, servers  # noqa: E402

CONFIGS = [
    ("no registry", None),
    ("registry, cached", 60),
    ("registry, uncached", 0),
]


def mint(tg_bin, secret_file):
    r = subprocess.run([tg_bin, "token", "--hs256-secret-file", secret_file, "--tenant",
                        "bench", "--ttl", "6h", "--claim", "jti=bench-token-1"],
                       capture_output=True, text=True, timeout=10, check=True)
    return r.stdout.strip()


def start_tenantgate(reg, tmp, tg_bin, name, workers, secret_file, redis_addr, pg_addr, ttl):
    d = os.path.join(tmp, name.replace(" ", "-").replace(",", ""))
    os.makedirs(d, exist_ok=True)
    rport = procs.free_port()
    listeners = [{"name": "redis", "protocol": "redis", "listen": "127.0.0.1:%d" % rport,
                  "backend": {"address": redis_addr}}]
    pport = None
    if pg_addr:
        pport = procs.free_port()
        listeners.append({"name": "pg", "protocol": "postgres",
                          "listen": "127.0.0.1:%d" % pport,
                          "backend": {"address": pg_addr, "user": servers.BENCH_USER}})
    cfg = {"workers": workers, "drain_timeout_s": 1, "log": {"level": "warn", "format": "text"},
           "auth": {"jwt": {"algorithms": ["HS256"], "hs256_secret_file": secret_file}},
           "listeners": listeners}
    if ttl is not None:
        cfg["tenants"] = {"registry": {"address": redis_addr, "key_prefix": "benchreg:"},
                          "cache_ttl_s": ttl}
    path = os.path.join(d, "tenantgate.yaml")
    with open(path, "w") as f:
        f.write(json.dumps(cfg, indent=2) + "\n")
    proc = reg.start("tenantgate-" + os.path.basename(d), [tg_bin, "-c", path])
    procs.wait_port(rport, proc)
    if pport:
        procs.wait_port(pport, proc)
    time.sleep(0.3)  # the registry clients connect
    return proc, rport, pport


def run_redis(port, token, seconds, clients):
    """redis-benchmark -k 0: a new connection (and AUTH) per PING. Returns (conns, conns/s)."""
    n = max(1000, int(seconds * 3000))
    t0 = time.monotonic()
    r = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-a", token,
                        "-k", "0", "-c", str(clients), "-n", str(n), "-t", "ping", "-q", "--csv"],
                       capture_output=True, text=True, timeout=seconds * 20 + 60,
                       preexec_fn=procs.child_setup)
    elapsed = time.monotonic() - t0
    rows = [line for line in r.stdout.splitlines() if line.startswith('"')]
    if r.returncode != 0 or len(rows) < 2:
        raise RuntimeError("redis-benchmark failed: %s" % (r.stdout + r.stderr)[-300:])
    # PING_INLINE and PING_MBULK: two tests of n requests each
    total = sum(n for line in rows[1:])
    rps = [float(line.split(",")[1].strip('"')) for line in rows[1:]]
    return total, sum(rps) / len(rps), elapsed


def run_pg(port, token, seconds, clients):
    env = dict(os.environ, PGPASSWORD=token)
    r = subprocess.run(["pgbench", "-n", "-S", "-C", "-c", str(clients), "-j", "2" if
                        clients > 1 else "1", "-T", str(seconds), "-h", "127.0.0.1", "-p",
                        str(port), "-U", servers.BENCH_USER, servers.BENCH_DB],
                       capture_output=True, text=True, env=env, timeout=seconds + 120,
                       preexec_fn=procs.child_setup)
    out = r.stdout + r.stderr
    m = re.search(r"number of transactions actually processed: (\d+)", out)
    t = re.search(r"tps = ([\d.]+) \(including reconnection times\)", out) or \
        re.search(r"tps = ([\d.]+)", out)
    if r.returncode != 0 or not (m and t):
        raise RuntimeError("pgbench failed: %s" % out[-300:])
    return int(m.group(1)), float(t.group(1)), seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--pg", action="store_true", help="also pgbench -C through a pg listener")
    ap.add_argument("--tg-bin", default=os.environ.get("TG_BIN") or
                    os.path.join(os.path.dirname(HERE), "build-bench", "tenantgate"))
    opts = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tg-authbench-")
    os.chmod(tmp, 0o755)
    reg = procs.Registry(tmp)
    rows = []
    try:
        rd = servers.Redis(reg, tmp)
        rd.start()
        redis_addr = "%s:%d" % (rd.host, rd.port)
        pg_addr = None
        if opts.pg:
            pg = servers.Postgres(reg, tmp)
            pg.start()
            pg.pgbench_init(1)
            pg_addr = "%s:%d" % (pg.host, pg.port)
        secret = os.path.join(tmp, "jwt-secret")
        with open(secret, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        token = mint(opts.tg_bin, secret)
        for name, ttl in CONFIGS:
            proc, rport, pport = start_tenantgate(reg, tmp, opts.tg_bin, name, opts.workers,
                                                  secret, redis_addr, pg_addr, ttl)
            for kind, port, fn in (("redis", rport, run_redis), ("postgres", pport, run_pg)):
                if not port:
                    continue
                fn(port, token, 1, opts.clients)  # warm-up: backend, command table, caches
                before = procs.cpu_ticks(proc.pid)
                n, per_s, _ = fn(port, token, opts.seconds, opts.clients)
                cpu = (procs.cpu_ticks(proc.pid) - before) / procs.CLK_TCK
                rows.append((kind, name, per_s, cpu / n * 1e6 if n else 0.0, procs.loadavg()))
                print("auth_bench: %-8s %-20s %10.0f conn/s  %6.1f us CPU/conn" % (
                    kind, name, per_s, rows[-1][3]), flush=True)
            reg.stop(proc)
    finally:
        reg.stop_all()
        servers.remove_tree(tmp)
    print()
    print("| listener | tenant registry | new connections/s | tenantgate CPU per connection "
          "| load avg |")
    print("|---|---|---:|---:|---:|")
    for kind, name, per_s, cpu_us, load in rows:
        print("| %s | %s | %s | %.1f µs | %.2f |" % (kind, name, "{:,.0f}".format(per_s),
                                                      cpu_us, load))
    print()
    print("clients %d, workers %d, %d s per run; redis: redis-benchmark -k 0 -t ping (PING_INLINE "
          "and PING_MBULK averaged); postgres: pgbench -C -S" % (opts.clients, opts.workers,
                                                               opts.seconds))


if __name__ == "__main__":
    main()
