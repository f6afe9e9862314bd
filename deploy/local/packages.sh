# Sourced by tests/run.sh, deploy/local/up.sh and bench/run.sh: installs the
# Debian packages tenantgate needs when they are missing.
#
#   tg_require_packages pkg...   installs the missing ones as root (apt-get),
#                                or says what to install and fails otherwise.
#   tg_require_node_modules dir  runs `npm ci` in dir (a package.json + package-lock.json
#                                folder, e.g. tests/backends/mongodb) when its node_modules
#                                is missing or older than the lockfile.

# Build and unit-test dependencies.
TG_BUILD_PACKAGES="cmake make gcc pkg-config clang-format libuv1-dev libssl-dev libjwt-dev
  libjansson-dev libyaml-dev libxxhash-dev libcmocka-dev libpg-query-dev libprotobuf-c-dev
  libgsasl-dev libpq-dev libhiredis-dev libbson-dev libmongoc-dev"
# Integration tests: real clients and the Python test runner (Debian's /usr/bin/python3);
# docker-compose validates deploy/compose/compose.yaml (its `config` needs no daemon);
# valgrind checks what libbson writes, which ASan cannot see (tests/CMakeLists.txt).
TG_TEST_PACKAGES="python3 python3-pytest python3-jwt python3-psycopg python3-pymongo python3-yaml
  python3-cryptography openssl procps binutils docker-compose valgrind"
# Fuzzing: clang with libFuzzer and the sanitizer runtimes.
TG_FUZZ_PACKAGES="clang libclang-rt-14-dev"
# Local demo and benchmarks: real servers and peers.
TG_SERVER_PACKAGES="postgresql postgresql-client redis-server redis-tools haproxy pgbouncer"

tg_missing_packages() {
    local missing=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing="$missing $p"
    done
    echo "$missing"
}

tg_require_packages() {
    local missing
    missing=$(tg_missing_packages "$@")
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "tenantgate: missing Debian packages:$missing" >&2
        echo "install them with: sudo apt-get install -y$missing" >&2
        return 1
    fi
    echo "tenantgate: installing$missing" >&2
    # The package lists may be absent on a fresh machine: update once, then install.
    if [ ! -e /var/lib/apt/periodic/tenantgate-updated ]; then
        apt-get update -qq >&2 && mkdir -p /var/lib/apt/periodic &&
            touch /var/lib/apt/periodic/tenantgate-updated
    fi
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >&2
}

# Node.js is the machine's own (node >= 20.19 and npm on PATH), not Debian's `nodejs`:
# bookworm ships Node 18, which the pinned npm packages (bson 7, mongodb 7) refuse.
TG_NODE_MIN_MAJOR=20
TG_NODE_MIN_MINOR=19

tg_require_node_modules() {
    local dir=$1 v major minor
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        echo "tenantgate: $dir needs Node.js >= $TG_NODE_MIN_MAJOR.$TG_NODE_MIN_MINOR with npm on PATH" >&2
        return 1
    fi
    v=$(node -p 'process.versions.node')
    major=${v%%.*}
    minor=${v#*.}
    minor=${minor%%.*}
    if [ "$major" -lt "$TG_NODE_MIN_MAJOR" ] ||
        { [ "$major" -eq "$TG_NODE_MIN_MAJOR" ] && [ "$minor" -lt "$TG_NODE_MIN_MINOR" ]; }; then
        echo "tenantgate: $dir needs Node.js >= $TG_NODE_MIN_MAJOR.$TG_NODE_MIN_MINOR, found $v" >&2
        return 1
    fi
    # npm ci writes node_modules/.package-lock.json; a newer lockfile means reinstall.
    if [ -f "$dir/node_modules/.package-lock.json" ] &&
        [ ! "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        return 0
    fi
    echo "tenantgate: npm ci in $dir" >&2
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
}
