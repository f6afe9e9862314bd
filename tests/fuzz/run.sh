#!/usr/bin/env bash
# Builds every libFuzzer target (clang, -DTG_FUZZ=ON) and runs each for a
# bounded time on a scratch copy of its committed seed corpus.
#
#   tests/fuzz/run.sh                 TG_FUZZ_SECONDS per target (default 30)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
. deploy/local/packages.sh
# shellcheck disable=SC2086
tg_require_packages $TG_BUILD_PACKAGES $TG_FUZZ_PACKAGES

build=${TG_BUILD_DIR:-build-fuzz}
seconds=${TG_FUZZ_SECONDS:-30}
CC=clang cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DTG_FUZZ=ON >/dev/null
cmake --build "$build" -j"$(nproc)"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=0
passed=0
for seeds in tests/fuzz/corpus/*/; do
    target=$(basename "$seeds")
    bin="$build/tests/fuzz/$target"
    [ -x "$bin" ] || { echo "fuzz: no binary for corpus $target" >&2; failed=$((failed + 1)); continue; }
    mkdir -p "$scratch/$target"
    cp -r "$seeds". "$scratch/$target/"
    echo "fuzz: $target for ${seconds}s"
    if "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        "$scratch/$target" >"$scratch/$target.log" 2>&1; then
        grep -E "stat::number_of_executed_units|Done" "$scratch/$target.log" | tail -1
        passed=$((passed + 1))
    else
        tail -40 "$scratch/$target.log"
        failed=$((failed + 1))
    fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
