#!/usr/bin/env bash
# The one build script. tests/run.sh (and so CI), deploy/local/up.sh and the
# container image's build stage (deploy/docker/Dockerfile) all build through it,
# so the image is built exactly as the tested binary is.
#
#   deploy/build.sh BUILD_DIR [cmake -D options...] [-- cmake --build options...]
#
# Installs the missing build packages first (as root; otherwise says what to
# install), configures BUILD_DIR with the given options and builds it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. deploy/local/packages.sh
# shellcheck disable=SC2086
tg_require_packages $TG_BUILD_PACKAGES

if [ $# -lt 1 ]; then
    echo "usage: deploy/build.sh BUILD_DIR [cmake options...] [-- build options...]" >&2
    exit 2
fi
build=$1
shift
configure=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    configure+=("$1")
    shift
done
[ $# -gt 0 ] && shift # the "--"
cmake -S . -B "$build" "${configure[@]}" >/dev/null
cmake --build "$build" -j"$(nproc)" "$@"
