#!/usr/bin/env bash
# tenantgate benchmark: direct vs tenantgate vs HAProxy / PgBouncer / twemproxy, one run.
#
#   bench/run.sh                 full run (a few minutes)
#   BENCH_QUICK=1 bench/run.sh   smoke test of the harness (tiny durations)
#   TG_BIN=/path/tenantgate bench/run.sh   benchmark that binary instead of building one
#   BENCH_KINDS=mongodb,bolt bench/run.sh  only some servers (a partial run)
#
# Installs missing Debian packages (as root) and the Node.js test backends' npm
# packages (for the mongodb and bolt kinds), builds tenantgate Release in
# build-bench/ with the MongoDB load generator and the micro-benchmarks, then
# hands over to bench/bench.py (Debian's /usr/bin/python3), which starts the
# servers and proxies, runs the workloads and writes
# bench/results/<stamp>-<host>.{md,csv,png} and bench/results/latest.md
# (partial runs: bench/results/partial/). Knobs: see bench/README.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY=/usr/bin/python3

# shellcheck source=../deploy/local/packages.sh
. "$ROOT/deploy/local/packages.sh"

KINDS=",${BENCH_KINDS:-postgres,redis,mongodb,bolt},"
BENCH_PACKAGES="python3 procps postgresql postgresql-client redis-server redis-tools haproxy
  pgbouncer nutcracker gnuplot-nox"
# mongo_loadgen (bench/mongo_loadgen.c) is compiled by bench.py when TG_BIN's folder has none.
case $KINDS in *,mongodb,*) BENCH_PACKAGES="$BENCH_PACKAGES libmongoc-dev pkg-config gcc" ;; esac
# shellcheck disable=SC2086
if [ -n "${TG_BIN:-}" ]; then
    tg_require_packages $BENCH_PACKAGES
else
    tg_require_packages $TG_BUILD_PACKAGES $BENCH_PACKAGES
fi

# The MongoDB and Bolt servers are tenantgate's Node.js test backends (npm ci from their lockfiles).
case $KINDS in *,mongodb,*) tg_require_node_modules "$ROOT/tests/backends/mongodb" ;; esac
case $KINDS in *,bolt,*) tg_require_node_modules "$ROOT/tests/backends/bolt" ;; esac

if [ -n "${TG_BIN:-}" ]; then
    [ -x "$TG_BIN" ] || { echo "bench: TG_BIN=$TG_BIN is not an executable" >&2; exit 2; }
    TG_BUILD_DESC="TG_BIN=$TG_BIN"
else
    BUILD="${BENCH_BUILD_DIR:-$ROOT/build-bench}"
    echo "bench: building tenantgate (Release) in $BUILD" >&2
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTG_TESTS=OFF >/dev/null
    targets="tenantgate"
    case $KINDS in *,postgres,*) targets="$targets sql_guard_bench" ;; esac
    case $KINDS in *,postgres,*|*,redis,*) targets="$targets tenant_limits_bench" ;; esac
    case $KINDS in *,mongodb,*) targets="$targets mongo_loadgen mongo_scope_bench" ;; esac
    case $KINDS in *,bolt,*) targets="$targets cypher_bench" ;; esac
    # shellcheck disable=SC2086
    cmake --build "$BUILD" -j"$(nproc)" --target $targets >/dev/null
    TG_BIN="$BUILD/tenantgate"
    TG_BUILD_DESC="Release build"
fi
export TG_BIN TG_BUILD_DESC

# bench.py stops everything it started by PID on SIGINT/SIGTERM. It runs in the
# background so that this shell's trap can forward a signal sent to the shell
# alone (a background job of a script ignores the terminal's SIGINT, so it gets
# exactly one signal either way).
# The run's temp dir (servers' data, configs, logs): made here so that it goes
# away even if bench.py is killed outright (its children then get SIGTERM from
# the kernel: they run with a parent-death signal).
BENCH_TMP="$(mktemp -d /tmp/tg-bench-XXXXXX)"
chmod 755 "$BENCH_TMP"
export BENCH_TMP
# shellcheck disable=SC2317  # invoked by the traps
cleanup() {
    if [ "${BENCH_KEEP_TMP:-}" = 1 ]; then
        echo "bench: kept $BENCH_TMP" >&2
    else
        rm -rf "$BENCH_TMP"
    fi
}
trap cleanup EXIT

child=""
# shellcheck disable=SC2317  # invoked by the trap
forward() {
    if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null || true; fi
}
trap forward INT TERM HUP
"$PY" -B "$ROOT/bench/bench.py" &
child=$!
rc=0
# wait returns early when a trapped signal arrives; wait again (bounded) for the cleanup.
for _ in 1 2 3 4 5 6 7 8 9 10; do
    if wait "$child"; then rc=0; else rc=$?; fi
    kill -0 "$child" 2>/dev/null || break
done
exit "$rc"
