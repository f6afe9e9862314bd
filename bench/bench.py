"""tenantgate's benchmark harness: direct vs tenantgate vs peers, one run, one table.

Started by bench/run.sh (which installs packages and builds tenantgate) with
Debian's /usr/bin/python3; knobs come from the environment (see README.md).

    servers (PostgreSQL, redis, the MongoDB and Bolt test backends)
        --> peers (tenantgate, haproxy, pgbouncer, nutcracker)
        --> targets [(name, kind, host:port, proxy pid)]
        --> for each repetition, workload, target: CPU(pid) / run / CPU(pid)
        --> aggregate (median throughput, ratio vs direct, CPU per request)
        --> micro-benchmarks (mongo_scope_bench, cypher_bench)
        --> idle memory per connection (fresh proxies, N idle connections)
        --> bench/results/<stamp>-<host>.{md,csv,png}, latest.md (full runs only;
            partial runs go to bench/results/partial/)

Everything started is stopped by PID on exit, on errors and on SIGINT/SIGTERM.
"""

import datetime
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from tgbench import idlemem, micro, peers, procs, report, servers, workloads  # noqa: E402
from tgbench.targets import Target  # noqa: E402


def _env_int(name, default):
    v = os.environ.get(name, "")
    return int(v) if v.strip() else default


def _env_list(name, default):
    v = os.environ.get(name, "").strip()
    return [x.strip() for x in (v or default).split(",") if x.strip()]


ALL_KINDS = "postgres,redis,mongodb,bolt"


class Options:
    def __init__(self):
        self.quick = os.environ.get("BENCH_QUICK", "") == "1"
        q = self.quick
        self.seconds = _env_int("BENCH_SECONDS", 2 if q else 10)
        self.repeat = _env_int("BENCH_REPEAT", 1)
        self.pause = float(os.environ.get("BENCH_PAUSE", "") or (0.2 if q else 1.0))
        # 1: like PgBouncer and twemproxy (single-threaded); HAProxy gets as many threads.
        self.workers = _env_int("BENCH_WORKERS", 1)
        self.pg_scale = _env_int("BENCH_PG_SCALE", 1 if q else 10)
        self.pg_clients = [int(x) for x in _env_list("BENCH_PG_CLIENTS", "1,8")]
        self.pg_modes = _env_list("BENCH_PG_MODES", "simple,prepared")
        self.redis_tests = _env_list("BENCH_REDIS_TESTS", "get,set,lpush")
        self.redis_pipelines = [int(x) for x in _env_list("BENCH_REDIS_PIPELINES", "1,16")]
        self.redis_clients = _env_int("BENCH_REDIS_CLIENTS", 50)
        self.redis_n = _env_int("BENCH_REDIS_N", 20000 if q else 500000)
        self.redis_n_pipelined = _env_int("BENCH_REDIS_N_PIPELINED", 100000 if q else 5000000)
        self.redis_timeout = _env_int("BENCH_REDIS_TIMEOUT", 60 if q else 300)
        self.targets = set(_env_list("BENCH_TARGETS", ""))  # empty: all
        self.workload_filter = _env_list("BENCH_WORKLOADS", "")  # substrings; empty: all
        self.kinds = _env_list("BENCH_KINDS", ALL_KINDS)
        unknown = [k for k in self.kinds if k not in ALL_KINDS.split(",")]
        if unknown:
            raise SystemExit("bench: unknown BENCH_KINDS %s (known: %s)" % (",".join(unknown),
                                                                           ALL_KINDS))
        self.all_kinds = sorted(self.kinds) == sorted(ALL_KINDS.split(","))
        # The idle-memory test (a TCP relay, whatever the kinds) belongs to full runs: a run
        # of some kinds only skips it unless BENCH_IDLE_CONNS asks for it.
        self.idle_conns = _env_int("BENCH_IDLE_CONNS",
                                   (1000 if q else 10000) if self.all_kinds else 0)
        # MongoDB and Bolt: operations per client on the Node.js test backends.
        self.mongo_ops_kinds = _env_list("BENCH_MONGO_TESTS", "find,insert,aggregate")
        self.mongo_clients = [int(x) for x in _env_list("BENCH_MONGO_CLIENTS", "1")]
        self.mongo_ops = _env_int("BENCH_MONGO_OPS", 200 if q else 2000)
        self.mongo_seed = _env_int("BENCH_MONGO_SEED", 100)
        self.bolt_ops_kinds = _env_list("BENCH_BOLT_TESTS", "read,write")
        self.bolt_clients = [int(x) for x in _env_list("BENCH_BOLT_CLIENTS", "1")]
        self.bolt_ops = _env_int("BENCH_BOLT_OPS", 100 if q else 1000)
        self.bolt_seed = _env_int("BENCH_BOLT_SEED", 100)
        self.loadgen_timeout = _env_int("BENCH_LOADGEN_TIMEOUT", 300)
        self.micro = os.environ.get("BENCH_MICRO", "1") != "0"
        self.micro_seconds = float(os.environ.get("BENCH_MICRO_SECONDS", "")
                                   or (0.05 if q else 0.2))
        self.results = os.environ.get("BENCH_RESULTS") or os.path.join(HERE, "results")
        self.keep_tmp = os.environ.get("BENCH_KEEP_TMP", "") == "1"
        self.tg_bin = os.environ.get("TG_BIN") or os.path.join(ROOT, "build-bench", "tenantgate")
        self.tg_build = os.environ.get("TG_BUILD_DESC", "")
        # "1": tenantgate-{pg,redis}-limits targets with per-tenant limits checked on every
        # message; "registry": with a tenant registry and the global window too.
        self.tenant_limits = os.environ.get("BENCH_TENANT_LIMITS", "").strip()
        # mongo_loadgen, mongo_scope_bench, cypher_bench: built next to tenantgate by run.sh
        self.tools_dir = os.environ.get("BENCH_TOOLS_DIR") or os.path.dirname(
            os.path.abspath(self.tg_bin))
        self.mongo_loadgen = None  # resolved once the temp dir exists

    def partial(self):
        """Why this run is not a full one (it then never replaces latest.md), or ""."""
        why = []
        if not self.all_kinds:
            why.append("BENCH_KINDS=" + ",".join(self.kinds))
        if self.targets:
            why.append("BENCH_TARGETS=" + ",".join(sorted(self.targets)))
        if self.workload_filter:
            why.append("BENCH_WORKLOADS=" + ",".join(self.workload_filter))
        if self.idle_conns <= 0 and self.all_kinds:
            why.append("BENCH_IDLE_CONNS=0")
        return ", ".join(why)


class Interrupted(Exception):
    pass


def _on_signal(signum, frame):
    # Once: the cleanup below must not be interrupted by a second Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Interrupted("signal %d" % signum)


def say(msg):
    print("bench: " + msg, flush=True)


def run_once(workload, target, log):
    """One measured run: the proxy's CPU ticks around the load generator."""
    if target.proc is not None and not target.proc.alive():
        s = workloads.Sample(error="%s is not running (exit %s)" % (target.proc.name,
                                                                    target.proc.popen.returncode))
        return s, None, 0.0
    before = procs.cpu_ticks(target.pid) if target.pid else None
    load = procs.loadavg()
    s = workload.run(target)
    cpu = None
    if target.pid and s.proxy_cpu_s is not None:
        cpu = s.proxy_cpu_s  # measured by the workload around its operations only
    elif target.pid:
        try:
            cpu = (procs.cpu_ticks(target.pid) - before) / procs.CLK_TCK
        except (OSError, ValueError):
            cpu = None
        if not target.proc.alive():
            s.error = "%s died during the run (exit %s): %s" % (
                target.proc.name, target.proc.popen.returncode,
                target.proc.log_tail(3).replace("\n", " / "))
    log.write("==== %s via %s (%s)\n%s\n" % (workload.name, target.name, target.address,
                                            s.output))
    return s, cpu, load


def is_paired(w):
    """A workload whose proxied runs alternate with direct operations (MongoDB, Bolt)."""
    return getattr(w, "baseline", None) is not None


def _baseline_runs(w, targets, samples):
    """The direct operations of w's paired runs, as (Sample, None, loadavg) runs."""
    out = []
    for t in targets:
        if t.kind != w.kind or t.is_direct:
            continue
        for s, _, load in samples.get((w.name, t.name), []):
            if not s.error and s.baseline:
                b = workloads.Sample(latency_kind=s.latency_kind, output="(paired)",
                                     **s.baseline)
                out.append((b, None, load))
    return out


def aggregate(workload_list, targets, samples):
    """samples: (workload name, target name) -> [(Sample, cpu seconds, loadavg)]."""
    results = []
    for w in workload_list:
        direct = None
        rows = []
        for t in [t for t in targets if t.kind == w.kind]:
            runs = samples.get((w.name, t.name), [])
            from_pairs = False
            if not runs and t.is_direct and is_paired(w):
                runs = _baseline_runs(w, targets, samples)
                from_pairs = True
            if not runs:
                continue
            ok = [(s, c, l) for s, c, l in runs if not s.error]
            errors = [s.error for s, _, _ in runs if s.error]
            r = {"workload": w.name, "kind": w.kind, "target": t.name, "unit": w.unit,
                 "params": w.params, "reps": len(runs), "throughput": None,
                 "ratio_vs_direct": None, "latency_ms": None, "latency_kind": "",
                 "added_latency_us": None, "proxy_cpu_us_per_req": None, "requests": 0,
                 "proxy_cpu_s": None, "loadavg": statistics.mean(l for _, _, l in runs),
                 "error": "", "notes": t.notes, "mean_ms": None, "p99_ms": None,
                 "added_mean_us": None, "added_p99_us": None, "baseline_p50_ms": None,
                 "baseline_mean_ms": None, "baseline_p99_ms": None}
            r["paired"] = bool(ok) and all(s.baseline for s, _, _ in ok)
            if ok:
                r["throughput"] = statistics.median(s.throughput for s, _, _ in ok)
                lats = [s.latency_ms for s, _, _ in ok if s.latency_ms is not None]
                r["latency_ms"] = statistics.median(lats) if lats else None
                for key in ("mean_ms", "p99_ms"):
                    vals = [getattr(s, key) for s, _, _ in ok if getattr(s, key) is not None]
                    r[key] = statistics.median(vals) if vals else None
                r["latency_kind"] = ok[0][0].latency_kind
                r["requests"] = sum(s.requests for s, _, _ in ok)
                cpus = [c for _, c, _ in ok if c is not None]
                if t.pid and len(cpus) == len(ok) and r["requests"]:
                    r["proxy_cpu_s"] = sum(cpus)
                    r["proxy_cpu_us_per_req"] = sum(cpus) / r["requests"] * 1e6
                if errors:
                    r["notes"] = "%d of %d runs failed: %s" % (len(errors), len(runs), errors[0])
            else:
                r["error"] = errors[0]
            if from_pairs:
                r["notes"] = "the direct operations of the %d paired runs" % len(runs)
            if t.name == "direct":
                direct = r
            rows.append(r)
        for r in rows:
            if r["paired"]:
                _paired(r, [s for s, _, _ in samples[(w.name, r["target"])] if not s.error])
                continue
            if direct and direct["throughput"] and r["throughput"] is not None:
                r["ratio_vs_direct"] = r["throughput"] / direct["throughput"]
                if r["latency_ms"] is not None and direct["latency_ms"] is not None:
                    r["added_latency_us"] = (r["latency_ms"] - direct["latency_ms"]) * 1000
                for key, added in (("mean_ms", "added_mean_us"), ("p99_ms", "added_p99_us")):
                    if r[key] is not None and direct[key] is not None:
                        r[added] = (r[key] - direct[key]) * 1000
        results.extend(rows)
    return results


def _paired(r, ok):
    """A paired row (its runs alternated with direct): ratio and added latency from each run's
    own baseline, medians over the runs."""
    med = statistics.median
    r["ratio_vs_direct"] = med(s.throughput / s.baseline["throughput"] for s in ok)
    r["added_latency_us"] = med((s.latency_ms - s.baseline["latency_ms"]) * 1000 for s in ok)
    r["added_mean_us"] = med((s.mean_ms - s.baseline["mean_ms"]) * 1000 for s in ok)
    r["added_p99_us"] = med((s.p99_ms - s.baseline["p99_ms"]) * 1000 for s in ok)
    r["baseline_p50_ms"] = med(s.baseline["latency_ms"] for s in ok)
    r["baseline_mean_ms"] = med(s.baseline["mean_ms"] for s in ok)
    r["baseline_p99_ms"] = med(s.baseline["p99_ms"] for s in ok)


def git_facts():
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (rev or "?") + (" + local changes" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def main():
    opts = Options()
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    if not os.access(opts.tg_bin, os.X_OK):
        say("no tenantgate binary at %s (set TG_BIN or run bench/run.sh)" % opts.tg_bin)
        return 2

    now = datetime.datetime.now(datetime.timezone.utc)
    host = socket.gethostname().split(".")[0]
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    # run.sh makes the temp dir (and removes it even if this process is killed).
    own_tmp = not os.environ.get("BENCH_TMP")
    tmp = tempfile.mkdtemp(prefix="tg-bench-") if own_tmp else os.environ["BENCH_TMP"]
    os.chmod(tmp, 0o755)  # PostgreSQL and PgBouncer run as an unprivileged user
    reg = procs.Registry(tmp)
    rc = 0
    try:
        rc = bench(opts, reg, tmp, stamp, host, now)
    except Interrupted as e:
        say("interrupted (%s); stopping everything" % e)
        rc = 130
    except Exception as e:
        say("failed: %s" % e)
        for p in reg.procs:
            if not p.alive():
                say("%s exited with %s; its log ends:\n%s" % (p.name, p.popen.returncode,
                                                               p.log_tail()))
        rc = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        reg.stop_all()
        if opts.keep_tmp:
            say("kept %s" % tmp)
        elif own_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return rc


def bench(opts, reg, tmp, stamp, host, now):
    load_start = procs.loadavg()
    backends = {}
    srv = {}
    server_versions = []
    if "postgres" in opts.kinds:
        say("starting PostgreSQL")
        pg = servers.Postgres(reg, tmp)
        pg.start()
        say("pgbench -i -s %d (directly)" % opts.pg_scale)
        pg.pgbench_init(opts.pg_scale)
        backends["postgres"] = (pg.host, pg.port)
        srv["postgres"] = pg
        server_versions.append(pg.version())
    if "redis" in opts.kinds:
        say("starting redis-server")
        rd = servers.Redis(reg, tmp)
        rd.start()
        backends["redis"] = (rd.host, rd.port)
        srv["redis"] = rd
        server_versions.append(rd.version())
    for kind, cls in (("mongodb", servers.MongoTestBackend), ("bolt", servers.BoltTestBackend)):
        if kind in opts.kinds:
            say("starting the %s test backend (Node.js)" % kind)
            b = cls(reg, tmp)
            b.start()
            backends[kind] = (b.host, b.port)
            srv[kind] = b
            server_versions.append(b.version())
    if "mongodb" in opts.kinds:
        opts.mongo_loadgen, how = workloads.mongo_loadgen_binary(opts, tmp)
        say("mongo_loadgen: %s (%s)" % (opts.mongo_loadgen, how))

    ctx = peers.Ctx(reg, tmp, backends, opts, srv)
    targets = [Target("direct", k, h, p, **peers.unproxied_fields(ctx, k))
               for k, (h, p) in backends.items()]
    peer_versions = []
    for peer in peers.PEERS:
        if not any(k in backends for k in peer.kinds):
            continue
        if opts.targets and not any(n.startswith(peer.name) for n in opts.targets):
            continue
        say("starting %s" % peer.name)
        peer_versions.append((peer.name, peer.version(opts)))
        for t in peer.start(ctx):
            if not opts.targets or t.name in opts.targets:
                targets.append(t)
    for t in targets:
        say("target %-16s %-8s %s pid %s" % (t.name, t.kind, t.address, t.pid or "-"))

    wl = [w for w in workloads.build_workloads(opts) if w.kind in backends]
    if opts.workload_filter:
        wl = [w for w in wl if any(f in w.name for f in opts.workload_filter)]
    for w in wl:
        if hasattr(w, "baseline"):  # paired runs: proxied operations alternate with direct ones
            w.baseline = next(t for t in targets if t.kind == w.kind and t.name == "direct")

    # Warm-up, directly: caches and the servers' first allocations are not charged to anyone
    # (and the Node.js test backends' JIT has compiled their hot paths).
    for kind in backends:
        direct = next(t for t in targets if t.kind == kind and t.name == "direct")
        if kind == "postgres":
            workloads.Pgbench(1, 1).run(direct)
        elif kind == "redis":
            workloads.RedisBenchmark("get", 10000, 50, 1, 60).run(direct)
        elif kind == "mongodb":
            for op in opts.mongo_ops_kinds:
                workloads.MongoLoadgen(op, 1, 300, opts.mongo_seed, opts.mongo_loadgen,
                                       opts.loadgen_timeout).run(direct)
        elif kind == "bolt":
            for op in opts.bolt_ops_kinds:
                workloads.BoltLoadgen(op, 1, 200, opts.bolt_seed, opts.loadgen_timeout).run(direct)

    samples = {}
    def targets_of(w):
        ts = [t for t in targets if t.kind == w.kind]
        if is_paired(w) and any(not t.is_direct for t in ts):
            # no run of its own: its row comes from the paired runs' direct operations
            ts = [t for t in ts if not t.is_direct]
        return ts

    runs = [(w, t) for w in wl for t in targets_of(w)]
    total = len(runs) * opts.repeat
    done = 0
    with open(os.path.join(tmp, "loadgen.log"), "w") as log:
        for rep in range(opts.repeat):
            for w in wl:
                ts = targets_of(w)
                k = rep % len(ts)
                for t in ts[k:] + ts[:k]:  # rotate the order between repetitions
                    done += 1
                    if w.kind == "redis":
                        rd.flush()  # every target starts from the same (empty) keyspace
                    time.sleep(opts.pause)
                    s, cpu, load = run_once(w, t, log)
                    samples.setdefault((w.name, t.name), []).append((s, cpu, load))
                    if s.error:
                        say("[%d/%d] %s via %s: ERROR %s" % (done, total, w.name, t.name, s.error))
                    else:
                        say("[%d/%d] %s via %s: %s %s%s" % (
                            done, total, w.name, t.name, "{:,.0f}".format(s.throughput), w.unit,
                            "" if cpu is None or not s.requests
                            else ", proxy CPU %.2f us/req" % (cpu / s.requests * 1e6)))
    results = aggregate(wl, targets, samples)

    micros = micro.run(opts) if opts.micro else []

    idle_rows, idle_note = [], ""
    if opts.idle_conns > 0:
        only = opts.targets or None
        idle_rows, idle_note = idlemem.run(ctx, opts.idle_conns, only)

    # ---- output ------------------------------------------------------------
    quick = "-quick" if opts.quick else ""
    partial = opts.partial()
    outdir = (os.path.join(opts.results, "quick") if opts.quick
              else os.path.join(opts.results, "partial") if partial else opts.results)
    os.makedirs(outdir, exist_ok=True)
    stem = os.path.join(outdir, "%s-%s%s" % (stamp, host, quick))
    facts = [
        ("when", now.strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("commit", git_facts()),
        ("tenantgate", "%s (%s), workers %d" % (
            peers.Tenantgate().version(opts), opts.tg_build or opts.tg_bin, opts.workers)),
        ("peers", "; ".join(v for n, v in peer_versions if not n.startswith("tenantgate"))
                  or "none"),
        ("servers", "; ".join(server_versions)),
        ("machine", "%d CPUs shared by load generator, proxy and server; load average %.2f at "
                    "start, %.2f at end" % (os.cpu_count(), load_start, procs.loadavg())),
    ]
    if "postgres" in opts.kinds:
        facts.append(("pgbench", "-S -n, -T %d s, scale %d, -c %s (-j 2 when > 1), modes %s" % (
            opts.seconds, opts.pg_scale, "/".join(map(str, opts.pg_clients)),
            "/".join(opts.pg_modes))))
    if "redis" in opts.kinds:
        facts.append(("redis-benchmark", "-t %s, -c %d, -n %d at -P 1 and %d when pipelined, -P %s"
                      % (",".join(opts.redis_tests), opts.redis_clients, opts.redis_n,
                         opts.redis_n_pipelined, "/".join(map(str, opts.redis_pipelines)))))
    if "mongodb" in opts.kinds:
        facts.append(("mongo_loadgen", "libmongoc, %s, %d operations per client, -c %s, %d "
                      "documents seeded" % (",".join(opts.mongo_ops_kinds), opts.mongo_ops,
                                            "/".join(map(str, opts.mongo_clients)),
                                            opts.mongo_seed)))
    if "bolt" in opts.kinds:
        facts.append(("bolt_loadgen", "neo4j-driver %s, %s, %d auto-commit statements per client, "
                      "-c %s, %d nodes seeded" % (
                          workloads.neo4j_driver_version(), ",".join(opts.bolt_ops_kinds),
                          opts.bolt_ops, "/".join(map(str, opts.bolt_clients)), opts.bolt_seed)))
    facts.append(("repetitions", "%d (median throughput and latency; CPU summed over runs)"
                  % opts.repeat))
    if partial:
        facts.append(("partial run", partial + " (written to %s, latest.md untouched)"
                      % os.path.relpath(outdir, ROOT)))
    header = {"timestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "host": host,
              "quick": opts.quick, "facts": facts}
    png_reason = report.plot(stem + ".png", header, results, tmp)
    if png_reason:
        say("no plot: " + png_reason)
    md = report.markdown(header, results, idle_rows, idle_note,
                         None if png_reason else os.path.basename(stem) + ".png", micros)
    with open(stem + ".md", "w") as f:
        f.write(md)
    report.write_csv(stem + ".csv", header, results, idle_rows, micros)
    if not opts.quick and not partial:
        shutil.copyfile(stem + ".md", os.path.join(outdir, "latest.md"))
    print()
    print(md)
    say("wrote %s.md, %s.csv%s" % (stem, stem, "" if png_reason else ", %s.png" % stem))
    failed = [r for r in results if r["error"]] + [r for r in idle_rows if r["error"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
