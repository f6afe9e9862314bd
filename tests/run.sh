#!/usr/bin/env bash
# The README's test command: installs what is missing (as root), configures,
# builds and runs every test with ctest -- cmocka unit tests and pytest
# integration tests that start real processes on loopback.
#
#   tests/run.sh                          normal build in build/
#   TG_SANITIZE=address,undefined tests/run.sh   sanitizer build in build-asan/
#   TG_BUILD_DIR=dir TG_CTEST_ARGS="-R unit" tests/run.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. deploy/local/packages.sh
# shellcheck disable=SC2086
tg_require_packages $TG_BUILD_PACKAGES $TG_TEST_PACKAGES $TG_SERVER_PACKAGES
# The test backends' npm packages (tests/backends/*/package.json), from their
# lockfiles, when node_modules is missing or older than the lockfile.
for lock in tests/backends/*/package-lock.json; do
    [ -e "$lock" ] || continue
    tg_require_node_modules "$(dirname "$lock")"
done

sanitize=${TG_SANITIZE:-}
if [ -n "$sanitize" ]; then
    build=${TG_BUILD_DIR:-build-asan}
    type=Debug
    # Leaks are reported at exit; the integration tests stop the proxy with SIGTERM.
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
else
    build=${TG_BUILD_DIR:-build}
    type=RelWithDebInfo
fi
jobs=$(nproc)
deploy/build.sh "$build" -DCMAKE_BUILD_TYPE="$type" -DTG_SANITIZE="$sanitize" -DTG_TESTS=ON
export TG_SANITIZED=${sanitize:+1}
# shellcheck disable=SC2086
ctest --test-dir "$build" --output-on-failure -j"$jobs" ${TG_CTEST_ARGS:-}
