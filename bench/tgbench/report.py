"""Results out: a markdown report, the same rows as CSV, and a PNG plot (gnuplot).

Input is a list of result dicts (one per workload x target, see bench.py
aggregate()) plus the idle-memory rows and a header dict. Nothing here runs
a benchmark.
"""

import csv
import os
import shutil
import subprocess

CSV_FIELDS = ["timestamp", "host", "section", "workload", "kind", "target", "unit", "params",
              "reps", "throughput", "ratio_vs_direct", "latency_ms", "latency_kind",
              "added_latency_us", "proxy_cpu_us_per_req", "requests", "proxy_cpu_s",
              "loadavg", "idle_connections", "rss_before", "rss_after", "bytes_per_conn",
              "error", "mean_ms", "p99_ms", "added_mean_us", "added_p99_us", "paired",
              "baseline_mean_ms", "baseline_p50_ms", "baseline_p99_ms", "micro_us",
              "micro_us_cached"]

# Kinds whose load generators time every operation (mean, p50, p99) against a slow
# single-threaded test backend: their own "added latency" section.
PER_OP_KINDS = ("mongodb", "bolt")


def _num(v, fmt="{:,.0f}"):
    return "—" if v is None else fmt.format(v)


def _ratio(v):
    return "—" if v is None else "%.2f×" % v


def _targets_in_order(results):
    seen = []
    for r in results:
        if r["target"] not in seen:
            seen.append(r["target"])
    return seen


def _workloads_in_order(results):
    seen = []
    for r in results:
        if r["workload"] not in seen:
            seen.append(r["workload"])
    return seen


def markdown(header, results, idle_rows, idle_note, png_name, micros=()):
    L = []
    L.append("# tenantgate benchmark — %s on %s" % (header["timestamp"], header["host"]))
    L.append("")
    if header.get("quick"):
        L.append("**BENCH_QUICK=1: smoke-test durations; these figures mean nothing.**")
        L.append("")
    for k, v in header["facts"]:
        L.append("- %s: %s" % (k, v))
    L.append("")
    L.append("Ratios divide by `direct` (load generator straight to the server) in the same run; "
             "proxy CPU is the proxy process's utime+stime during the run divided by the "
             "transactions/requests it carried. Client, proxy and server share the machine's "
             "CPUs, so a proxy that uses less CPU also leaves more to the others.")
    L.append("")

    targets = _targets_in_order(results)
    if not results:
        L.append("(no workload ran)")
        L.append("")
    else:
        _workload_tables(L, results, targets)
        _per_op_table(L, results)
    _micro_sections(L, micros)
    _idle_table(L, idle_rows, idle_note)
    if png_name:
        L.append("![throughput vs direct](%s)" % png_name)
        L.append("")
    return "\n".join(L)


def _workload_tables(L, results, targets):
    L.append("## Throughput vs direct (higher is better)")
    L.append("")
    L.append("| workload | " + " | ".join(targets) + " |")
    L.append("|---|" + "---:|" * len(targets))
    for w in _workloads_in_order(results):
        cells = []
        for t in targets:
            r = next((x for x in results if x["workload"] == w and x["target"] == t), None)
            if r is None:
                cells.append("")
            elif r["error"]:
                cells.append("error")
            elif t == "direct":
                cells.append("%s %s" % (_num(r["throughput"]), r["unit"]))
            else:
                cells.append(_ratio(r["ratio_vs_direct"]))
        L.append("| %s | %s |" % (w, " | ".join(cells)))
    L.append("")

    L.append("## Details")
    L.append("")
    L.append("| workload | target | throughput | vs direct | latency (ms) | added latency (µs) "
             "| proxy CPU (µs/req) | runs | load avg | notes |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        lat = "—" if r["latency_ms"] is None else "%.3f %s" % (r["latency_ms"], r["latency_kind"])
        added = "—" if r["added_latency_us"] is None else "%+.0f" % r["added_latency_us"]
        cpu = "—" if r["proxy_cpu_us_per_req"] is None else "%.2f" % r["proxy_cpu_us_per_req"]
        notes = r["error"] and ("**error:** " + r["error"]) or r.get("notes", "")
        L.append("| %s | %s | %s %s | %s | %s | %s | %s | %d | %.1f | %s |" % (
            r["workload"], r["target"], _num(r["throughput"]), r["unit"],
            _ratio(r["ratio_vs_direct"]), lat, added, cpu, r["reps"], r["loadavg"],
            notes.replace("|", "/")))
    L.append("")

    pairs = comparisons(results)
    if pairs:
        L.append("## tenantgate against each peer (same workload, same run)")
        L.append("")
        L.append("Throughput > 1.00× and CPU < 1.00× mean tenantgate is ahead.")
        L.append("")
        L.append("| workload | tenantgate target | peer | throughput | proxy CPU per request |")
        L.append("|---|---|---|---:|---:|")
        for w, tg, peer, tput, cpu in pairs:
            L.append("| %s | %s | %s | %s | %s |" % (w, tg, peer, _ratio(tput), _ratio(cpu)))
        L.append("")


def _us(v):
    return "—" if v is None else "%+.0f" % v


def _ms(v):
    return "—" if v is None else "%.3f" % v


def _per_op_table(L, results):
    rows = [r for r in results if r["kind"] in PER_OP_KINDS]
    if not rows:
        return
    L.append("## MongoDB and Bolt: added latency and proxy CPU per operation")
    L.append("")
    L.append("The servers here are tenantgate's Node.js test backends (MongoDB's and Neo4j's "
             "servers cannot be installed on this machine): single-threaded, in memory, many "
             "times slower than the real servers, so their throughput and absolute latencies "
             "say nothing about MongoDB or Neo4j, and a throughput ratio mostly restates the "
             "latency ratio. The meaningful figures are the **added latency** per operation "
             "(the proxy's own time in the round trip) and the **proxy CPU per operation**.")
    L.append("")
    L.append("How: every operation is timed by the load generator (one connection per client, "
             "operations back to back). A proxied run is *paired*: each client alternates its "
             "operations between the proxy and a direct connection, so both are timed under "
             "the same load of the machine; *added* is the proxied figure minus the direct one "
             "of the same run, and the `direct` rows are the medians of those direct "
             "operations (no run of their own). `direct` and `tenantgate-tcp` send the commands already scoped to the "
             "tenant (as tenantgate forwards them), so the server does the same work on every "
             "path. Proxy CPU counts the operations only (logins excluded), from the proxy's "
             "per-thread schedstat (ns). Paired ops/s is clients / mean latency.")
    L.append("")
    L.append("| workload | target | mean (ms) | p50 (ms) | p99 (ms) | direct p50, same run (ms) "
             "| added mean (µs) | added p50 (µs) | added p99 (µs) | proxy CPU (µs/op) | ops/s "
             "| runs | load avg | notes |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        cpu = "—" if r["proxy_cpu_us_per_req"] is None else "%.1f" % r["proxy_cpu_us_per_req"]
        notes = r["error"] and ("**error:** " + r["error"]) or r.get("notes", "")
        direct = r["target"] == "direct"
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %.1f | %s |" % (
            r["workload"], r["target"], _ms(r["mean_ms"]), _ms(r["latency_ms"]),
            _ms(r["p99_ms"]), "—" if direct else _ms(r.get("baseline_p50_ms")),
            "—" if direct else _us(r["added_mean_us"]),
            "—" if direct else _us(r["added_latency_us"]),
            "—" if direct else _us(r["added_p99_us"]), cpu, _num(r["throughput"]), r["reps"],
            r["loadavg"], notes.replace("|", "/")))
    L.append("")


def _micro_sections(L, micros):
    if not micros:
        return
    L.append("## Micro-benchmarks: cost per call")
    L.append("")
    L.append("The thread's CPU time per call, single-threaded unless a column says otherwise, "
             "built with the project (`build/<tool> [seconds per measurement]`); run between "
             "the load runs.")
    L.append("")
    for m in micros:
        L.append("### %s" % m["title"])
        L.append("")
        L.append("`%s` — %s." % (m["tool"], m["goal"]))
        L.append("")
        if m["note"]:
            L.append("Note: " + m["note"] + ".")
            L.append("")
        if m["text"]:
            L.append(m["text"])
            L.append("")


def _idle_table(L, idle_rows, idle_note):
    if idle_rows:
        L.append("## Idle memory per connection")
        L.append("")
        L.append("Fresh instance of each proxy in front of an idle TCP server; VmRSS before and "
                 "after opening the connections and waiting until the server holds them all.")
        if idle_note:
            L.append("")
            L.append("Note: " + idle_note + ".")
        L.append("")
        L.append("| proxy | connections | RSS before | RSS after | bytes per connection | "
                 "proxy fds | notes |")
        L.append("|---|---:|---:|---:|---:|---:|---|")
        for r in idle_rows:
            L.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                r["proxy"], _num(r["connections"]), _kib(r["rss_before"]), _kib(r["rss_after"]),
                _num(r["bytes_per_conn"]), _num(r["proxy_fds"]),
                ("**error:** " + r["error"]) if r["error"] else ""))
        L.append("")


def _kib(v):
    return "—" if v is None else "{:,.0f} KiB".format(v / 1024)


def comparisons(results):
    """(workload, tenantgate target, peer, throughput ratio, CPU ratio) for every pair."""
    out = []
    for w in _workloads_in_order(results):
        rows = [r for r in results if r["workload"] == w and not r["error"]]
        tgs = [r for r in rows if r["target"].startswith("tenantgate")]
        others = [r for r in rows if r["target"] != "direct" and r not in tgs]
        for tg in tgs:
            for p in others:
                tput = tg["throughput"] / p["throughput"] if p["throughput"] else None
                cpu = None
                if tg["proxy_cpu_us_per_req"] is not None and p["proxy_cpu_us_per_req"]:
                    cpu = tg["proxy_cpu_us_per_req"] / p["proxy_cpu_us_per_req"]
                out.append((w, tg["target"], p["target"], tput, cpu))
    return out


def write_csv(path, header, results, idle_rows, micros=()):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in results:
            row = dict(r)
            row.update(timestamp=header["timestamp"], host=header["host"], section="workload")
            w.writerow(row)
        for r in idle_rows:
            w.writerow({"timestamp": header["timestamp"], "host": header["host"],
                        "section": "idle_memory", "workload": "idle connections",
                        "kind": "tcp", "target": r["proxy"],
                        "idle_connections": r["connections"], "rss_before": r["rss_before"],
                        "rss_after": r["rss_after"], "bytes_per_conn": r["bytes_per_conn"],
                        "error": r["error"] or ""})
        for m in micros:
            for r in m["rows"]:
                w.writerow({"timestamp": header["timestamp"], "host": header["host"],
                            "section": "micro", "workload": r["case"], "kind": m["kind"],
                            "target": m["tool"], "unit": "us", "micro_us": r["us"],
                            "micro_us_cached": r["us_cached"]})


def plot(path, header, results, tmpdir):
    """Writes a PNG with one panel per kind: throughput ratio per workload, one bar per target.

    Returns None, or a reason why there is no plot.
    """
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        return "gnuplot not installed"
    kinds = []
    for r in results:
        if r["kind"] not in kinds:
            kinds.append(r["kind"])
    # One colour per target name across panels, so a proxy looks the same everywhere.
    palette = ["#9400d3", "#009e73", "#56b4e9", "#e69f00", "#f0e442", "#0072b2", "#e51e10",
               "#808080"]
    names = [t for t in _targets_in_order(results) if t != "direct"]
    colour = {t: palette[i % len(palette)] for i, t in enumerate(names)}
    ratios = [r["ratio_vs_direct"] for r in results if r["ratio_vs_direct"] is not None]
    ymax = max([1.3] + [x * 1.1 for x in ratios])
    panels = []
    for kind in kinds:
        rows = [r for r in results if r["kind"] == kind]
        targets = [t for t in _targets_in_order(rows) if t != "direct"]
        if not targets:
            continue
        dat = os.path.join(tmpdir, "plot-%s.dat" % kind)
        with open(dat, "w") as f:
            f.write("workload\t" + "\t".join(targets) + "\n")
            for w in _workloads_in_order(rows):
                cells = []
                for t in targets:
                    r = next((x for x in rows if x["workload"] == w and x["target"] == t), None)
                    v = r and r["ratio_vs_direct"]
                    cells.append("-" if v is None or r["error"] else "%.4f" % v)
                f.write(w + "\t" + "\t".join(cells) + "\n")
        panels.append((kind, dat, targets))
    if not panels:
        return "nothing to plot"
    title = {"postgres": "PostgreSQL (pgbench)", "redis": "Redis (redis-benchmark)",
             "mongodb": "MongoDB test backend (libmongoc; Node.js server: see latency table)",
             "bolt": "Bolt test backend (neo4j-driver; Node.js server: see latency table)"}
    script = [
        'set terminal pngcairo size 1200,%d font "sans,10"' % (420 * len(panels)),
        "set output '%s'" % path,
        'set datafile separator "\\t"',
        'set datafile missing "-"',
        "set style data histograms",
        "set style histogram clustered gap 1",
        "set style fill solid 0.85 border -1",
        "set boxwidth 0.9",
        "set grid ytics",
        "set yrange [0:%.2f]" % ymax,
        "set ytics 0.1",
        "set ylabel 'throughput / direct'",
        "set key outside right top",
        "set xtics nomirror",
        "set multiplot layout %d,1 title 'tenantgate bench %s on %s%s'" % (
            len(panels), header["timestamp"], header["host"],
            " (BENCH\\_QUICK: meaningless)" if header.get("quick") else ""),
    ]
    for kind, dat, targets in panels:
        script.append("set title '%s'" % title.get(kind, kind))
        script.append("colours = '%s'" % " ".join(colour[t] for t in targets))
        script.append("plot for [i=2:%d] '%s' using i:xtic(1) title columnheader(i) "
                      "lc rgb word(colours, i-1), "
                      "1 with lines dt 2 lc rgb 'black' title 'direct'" % (len(targets) + 1, dat))
    script.append("unset multiplot")
    gp = os.path.join(tmpdir, "plot.gp")
    with open(gp, "w") as f:
        f.write("\n".join(script) + "\n")
    r = subprocess.run([gnuplot, gp], capture_output=True, text=True, timeout=60)
    if r.returncode != 0 or not os.path.exists(path):
        return "gnuplot failed: " + r.stderr.strip()[-300:]
    return None
