"""The micro-benchmarks built with the project, run once per kind and quoted in the report.

    postgres        -> build/sql_guard_bench      the SQL guard per statement, uncached and cached
    postgres, redis -> build/tenant_limits_bench  the per-tenant limiter per request
    mongodb         -> build/mongo_scope_bench    CPU time of the MongoDB command scoper per command
    bolt            -> build/cypher_bench         the Cypher rewriter per statement, uncached and cached

They are looked up in the tools folder (BENCH_TOOLS_DIR, by default the folder of
TG_BIN, i.e. the build run.sh made); a missing one is a note in the report, not an
error. Each prints a Markdown table; it is quoted as printed, and its rows also go to
the CSV (the columns whose header has "us": the cost in µs, uncached and cached).
They measure the thread's CPU time, so the load of the machine inflates them
little; they run between the load-generator runs, never during one.
"""

import os
import subprocess

from . import procs

# (kinds it belongs to, executable, title, goal from the issue that asked for it)
MICRO = [
    (("postgres",), "sql_guard_bench",
     "SQL guard (policy/sql_guard.c): ns per statement, uncached and cached",
     "issue 3: report the guard's cost per statement, cached and uncached"),
    (("postgres", "redis"), "tenant_limits_bench",
     "Per-tenant limiter (proxy/tenant_count.c): ns per request with each limit set",
     "issue 7's goal: the limiter lowers the PostgreSQL and Redis figures by at most 2%"),
    (("mongodb",), "mongo_scope_bench",
     "MongoDB command scoper (policy/mongo_scope.c): CPU time per command",
     "issue 5's goal: ≤ 2 µs to scope a typical find, ≤ 5 µs for a 5-stage pipeline"),
    (("bolt",), "cypher_bench",
     "Cypher rewriter (policy/cypher_rewrite.c): CPU time per statement, uncached and cached",
     "issue 6's goal: ≤ 1 µs cached, ≤ 20 µs uncached for a typical 3-clause query"),
]


def _cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse_table(text):
    """Rows of the first Markdown table in text: dicts with case, us, us_cached."""
    lines = [l for l in text.splitlines() if l.startswith("|")]
    if len(lines) < 3:
        return []
    header = _cells(lines[0])
    # "us/command (CPU)" (mongo_scope_bench); "uncached us", "cached us" (cypher_bench);
    # "uncached ns", "cached ns" (sql_guard_bench); "ns/request, ..." (tenant_limits_bench)
    us_cols = [i for i, h in enumerate(header) if "us/" in h or h.endswith(" us")]
    ns_cols = [i for i, h in enumerate(header) if "ns/" in h or h.endswith(" ns")]
    scale = 1.0
    if not us_cols and ns_cols:
        us_cols, scale = ns_cols, 1e-3
    cached = next((i for i in us_cols if header[i].startswith("cached")), None)
    uncached = next((i for i in us_cols if i != cached), None)
    mode = header.index("mode") if "mode" in header else None
    rows = []
    for l in lines[2:]:
        c = _cells(l)
        if len(c) != len(header):
            continue

        def num(i):
            try:
                return float(c[i]) * scale if i is not None else None
            except ValueError:
                return None

        case = c[0] + (" (%s)" % c[mode] if mode is not None else "")
        rows.append({"case": case, "us": num(uncached), "us_cached": num(cached)})
    return rows


def run(opts):
    """Returns one dict per micro-benchmark of the kinds in this run (tool, title, goal, text,
    rows, note)."""
    out = []
    for kinds, tool, title, goal in MICRO:
        kind = next((k for k in kinds if k in opts.kinds), None)
        if kind is None:
            continue
        r = {"kind": kind, "tool": tool, "title": title, "goal": goal, "text": "", "rows": [],
             "note": ""}
        path = os.path.join(opts.tools_dir, tool)
        if not os.access(path, os.X_OK):
            r["note"] = ("not run: no %s in %s (build the target `%s`, or set BENCH_TOOLS_DIR)"
                         % (tool, opts.tools_dir, tool))
        else:
            print("bench: micro-benchmark %s" % tool, flush=True)
            try:
                p = subprocess.run([path, "%g" % opts.micro_seconds], capture_output=True,
                                   text=True, timeout=300, stdin=subprocess.DEVNULL,
                                   preexec_fn=procs.child_setup)
                if p.returncode != 0:
                    r["note"] = "%s exited %d: %s" % (tool, p.returncode, p.stderr.strip()[-200:])
                r["text"] = p.stdout.strip()
                r["rows"] = parse_table(p.stdout)
            except (OSError, subprocess.TimeoutExpired) as e:
                r["note"] = "%s failed: %s" % (tool, e)
        out.append(r)
    return out
