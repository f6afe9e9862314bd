#!/usr/bin/env bash
# The integration and isolation suites against real PostgreSQL 16, Redis 7.0, MongoDB 7.0
# and Neo4j 5 (Community), started with docker compose (compose.yaml here), then torn down.
#
#   deploy/compose/run-suites.sh [CTEST_REGEX]        default: every suite with a backend
#   deploy/compose/run-suites.sh --secrets-only DIR   only write the secret files into DIR
#
#   TG_BUILD_DIR      build folder (default build-compose, configured with TG_TESTS=ON)
#   TG_COMPOSE_KEEP=1 leave the stack up afterwards (remove it with: docker compose
#                     -p tenantgate-suites -f deploy/compose/compose.yaml down -v)
#
# Steps: fresh random secrets in a private temp folder; the build with the CI build script;
# `docker compose up --build --wait` (every service healthy: PostgreSQL with the RLS kit
# applied, the MongoDB replica set initiated, the ACL and service users created); a smoke
# test of the containerized tenantgate (`tenantgate check` inside it, then two tenants
# through its PostgreSQL and Redis listeners); then ctest with TG_EXT_* naming the servers,
# so the suites' fixtures use them instead of starting throwaway or test backends. The
# tenantgate under test there is the freshly built binary, started by the fixtures as
# always. Tests that only work against the local test backends are skipped, each with its
# reason (deploy/compose/README.md lists them). Exit status: 0 only if every step passed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

write_secrets() { # DIR: every file compose.yaml's `secrets:` names
    local dir=$1 pw
    mkdir -p "$dir"
    chmod 0700 "$dir" # the files are 0644: the containers' users must read them
    put() { printf '%s\n' "$2" >"$dir/$1" && chmod 0644 "$dir/$1"; }
    put jwt-secret "$(openssl rand -hex 32)"
    put pg-superuser-password "$(openssl rand -hex 16)"
    put pg-app-password "$(openssl rand -hex 16)"
    put pg-context-key "$(openssl rand -hex 32)"
    put redis-admin-password "$(openssl rand -hex 16)"
    put redis-tenantgate-password "$(openssl rand -hex 16)"
    put redis-acl-key "$(openssl rand -hex 32)"
    put mongo-root-password "$(openssl rand -hex 16)"
    put mongo-tenantgate-password "$(openssl rand -hex 16)"
    put mongo-keyfile "$(openssl rand -base64 96 | tr -d '\n')"
    pw=$(openssl rand -hex 16)
    put neo4j-password "$pw"
    put neo4j-auth "neo4j/$pw"
}

if [ "${1:-}" = "--secrets-only" ]; then
    [ $# -eq 2 ] || { echo "usage: $0 --secrets-only DIR" >&2; exit 2; }
    write_secrets "$2"
    exit 0
fi
regex=${1:-'integration/(pg_|redis_|mongo_(handshake|proxy|isolation)|bolt_(proxy|isolation))'}

if ! docker compose version >/dev/null 2>&1; then
    echo "run-suites.sh: needs docker with the compose plugin (docker compose, v2: --wait)" >&2
    exit 1
fi
cd "$root"
# shellcheck source=deploy/local/packages.sh
. deploy/local/packages.sh
# shellcheck disable=SC2086
tg_require_packages $TG_BUILD_PACKAGES $TG_TEST_PACKAGES postgresql-client redis-tools
for lock in tests/backends/*/package-lock.json; do # the drivers the suites run (Node.js)
    tg_require_node_modules "$(dirname "$lock")"
done
build=${TG_BUILD_DIR:-build-compose}
deploy/build.sh "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTG_TESTS=ON

secrets=$(mktemp -d /tmp/tg-compose-secrets.XXXXXX)
export TG_COMPOSE_SECRETS=$secrets
compose=(docker compose -p tenantgate-suites -f "$here/compose.yaml")
down() {
    if [ "${TG_COMPOSE_KEEP:-}" = 1 ]; then
        echo "run-suites.sh: the stack is still up (TG_COMPOSE_SECRETS=$secrets)" >&2
    else
        "${compose[@]}" down -v --remove-orphans || true
        rm -rf "$secrets"
    fi
}
trap down EXIT
write_secrets "$secrets"
"${compose[@]}" up -d --build --wait

# Smoke test of the stack's own tenantgate: its preflight, then tenants through it.
"${compose[@]}" exec -T tenantgate tenantgate check -c /etc/tenantgate/tenantgate.yaml
token() { "$build/tenantgate" token --hs256-secret-file "$secrets/jwt-secret" --tenant "$1"; }
for t in compose-a compose-b; do
    PGPASSWORD=$(token "$t") psql -X -At -v ON_ERROR_STOP=1 \
        "host=127.0.0.1 port=6432 user=app dbname=demo sslmode=disable" \
        -c "INSERT INTO notes (body) VALUES ('from $t')" >/dev/null
done
seen=$(PGPASSWORD=$(token compose-a) psql -X -At -v ON_ERROR_STOP=1 \
    "host=127.0.0.1 port=6432 user=app dbname=demo sslmode=disable" \
    -c "SELECT string_agg(body, ',') FROM notes")
[ "$seen" = "from compose-a" ] || { echo "smoke: tenant compose-a saw: $seen" >&2; exit 1; }
REDISCLI_AUTH=$(token compose-a) redis-cli -h 127.0.0.1 -p 6380 SET k a >/dev/null
got=$(REDISCLI_AUTH=$(token compose-b) redis-cli -h 127.0.0.1 -p 6380 GET k)
[ -z "$got" ] || { echo "smoke: tenant compose-b read compose-a's key: $got" >&2; exit 1; }
echo "run-suites.sh: smoke test of the compose tenantgate passed"

# The suites, against the compose servers (ports as published in compose.yaml).
pg_pw=$(cat "$secrets/pg-superuser-password")
redis_pw=$(cat "$secrets/redis-admin-password")
mongo_pw=$(cat "$secrets/mongo-root-password")
neo4j_pw=$(cat "$secrets/neo4j-password")
export TG_EXT_POSTGRES="postgresql://postgres:$pg_pw@127.0.0.1:15432"
export TG_EXT_REDIS="redis://admin:$redis_pw@127.0.0.1:16379"
export TG_EXT_MONGODB="mongodb://root:$mongo_pw@127.0.0.1:27117/?replicaSet=rs0"
export TG_EXT_NEO4J="bolt://neo4j:$neo4j_pw@127.0.0.1:17687"
ctest --test-dir "$build" --output-on-failure -R "$regex"
