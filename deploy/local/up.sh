#!/usr/bin/env bash
# The README's first command: a local PostgreSQL, Redis, MongoDB test backend
# and Bolt graph server with tenantgate in front, in a throwaway folder, until
# Ctrl-C.
#
# PostgreSQL goes through `protocol: postgres`: a demo table protected with
# the RLS kit of deploy/sql/, two tenants' tokens, and psql lines that show
# each tenant sees only its own rows. Redis goes through `protocol: redis`: a
# redis-server with a generated requirepass password that only tenantgate
# knows, and redis-cli lines that show each tenant lives in its own keyspace
# (every key is stored as t:<tenant>:<key>). MongoDB goes through
# `protocol: mongodb` in front of the Node.js test backend
# (tests/backends/mongodb: MongoDB's server cannot be installed here; it is
# for trying and testing tenantgate, never for data), with pymongo lines that
# show each tenant's documents stamped and filtered with its tenant_id.
# (every key is stored as t:<tenant>:<key>). The graph goes through
# `protocol: bolt`: the Bolt test backend (tests/backends/bolt, kuzu; Neo4j
# is not installable here) with a generated password, and bolt-shell lines
# (the official JavaScript driver) that show each tenant sees only its own
# nodes (every node pattern is rewritten to carry the tenant).
#
#   deploy/local/up.sh              start everything, print connection lines
#   TG_UP_DIR=/tmp/tg deploy/local/up.sh   keep state in a chosen folder
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
. deploy/local/packages.sh
# shellcheck disable=SC2086
tg_require_packages $TG_BUILD_PACKAGES postgresql postgresql-client redis-server redis-tools curl \
    python3-pymongo
tg_require_node_modules tests/backends/mongodb
tg_require_node_modules tests/backends/bolt

build=${TG_BUILD_DIR:-build}
deploy/build.sh "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTG_TESTS=OFF -- --target tenantgate >/dev/null
case "$build" in /*) bin="$build/tenantgate" ;; *) bin="$root/$build/tenantgate" ;; esac

dir=${TG_UP_DIR:-$(mktemp -d /tmp/tenantgate-up.XXXXXX)}
mkdir -p "$dir"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -f "$dir/pg/postmaster.pid" ]; then
        run_pg pg_ctl -D "$dir/pg" -m fast stop >/dev/null 2>&1 || true
    fi
    echo "stopped; state left in $dir"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
# PostgreSQL refuses to run as root: run it as the owner of the folder.
run_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        su postgres -s /bin/sh -c "$(printf '%q ' "$pgbin/$1" "${@:2}")"
    else
        "$pgbin/$1" "${@:2}"
    fi
}

pg_port=$(free_port); redis_port=$(free_port); pg_proxy=$(free_port); redis_proxy=$(free_port)
admin_port=$(free_port); mongo_port=$(free_port); mongo_proxy=$(free_port)
bolt_port=$(free_port); bolt_proxy=$(free_port)

# PostgreSQL: a throwaway cluster on loopback.
mkdir -p "$dir/pg" "$dir/sock"
[ "$(id -u)" -eq 0 ] && chown -R postgres "$dir/pg" "$dir/sock"
run_pg initdb -D "$dir/pg" -U postgres --auth-local=trust --auth-host=scram-sha-256 >/dev/null
run_pg pg_ctl -D "$dir/pg" -l "$dir/pg/server.log" -w \
    -o "-p $pg_port -k $dir/sock -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null

# Redis: no persistence, a password only tenantgate knows (passed on stdin as a
# config line, so it is not on the command line).
redis_password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
printf '%s\n' "$redis_password" >"$dir/redis-password"
chmod 600 "$dir/redis-password"
printf 'requirepass %s\n' "$redis_password" |
    redis-server - --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$dir" --logfile "$dir/redis.log" >>"$dir/redis.log" 2>&1 &
pids+=($!)

# The MongoDB test backend: in memory, a service user only tenantgate knows.
mongo_password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
printf '%s\n' "$mongo_password" >"$dir/mongo-password"
chmod 600 "$dir/mongo-password"
node tests/backends/mongodb/server.mjs --port "$mongo_port" --user svc "--password=$mongo_password" \
    >"$dir/mongo.out" 2>"$dir/mongo.log" &
pids+=($!)
for _ in $(seq 100); do grep -q '^listening on' "$dir/mongo.out" 2>/dev/null && break; sleep 0.1; done
# The Bolt test backend: kuzu needs its tables declared; every node table has the
# tenant property the rewriter adds to every node pattern.
bolt_password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
printf '%s\n' "$bolt_password" >"$dir/bolt-password"
chmod 600 "$dir/bolt-password"
cat >"$dir/graph-schema.cypher" <<'CYPHER'
CREATE NODE TABLE Person(id SERIAL, name STRING, tenant_id STRING, PRIMARY KEY(id));
CREATE NODE TABLE Project(id SERIAL, name STRING, tenant_id STRING, PRIMARY KEY(id));
CREATE REL TABLE WorksOn(FROM Person TO Project);
CYPHER
node tests/backends/bolt/server.mjs --port "$bolt_port" --user graph --password "$bolt_password" \
    --schema "$dir/graph-schema.cypher" >"$dir/bolt.log" 2>&1 &
pids+=($!)

# The demo schema: the app role tenantgate logs in as, a table protected by
# the RLS kit, and rows of two tenants written by the owner.
app_password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
printf '%s\n' "$app_password" >"$dir/app-password"
psql_owner() { run_pg psql -X -q -h "$dir/sock" -p "$pg_port" -U postgres -d app "$@"; }
run_pg createdb -h "$dir/sock" -p "$pg_port" -U postgres app
cp deploy/sql/tenantgate.sql "$dir/tenantgate.sql"
[ "$(id -u)" -eq 0 ] && chown postgres "$dir/tenantgate.sql"
psql_owner -v app_role=app -f "$dir/tenantgate.sql" >/dev/null
psql_owner >/dev/null <<SQL
SET client_min_messages = warning;
ALTER ROLE app PASSWORD '$app_password';
CREATE TABLE documents (id serial PRIMARY KEY, title text NOT NULL);
SELECT tenantgate.protect_table('documents');
INSERT INTO documents (tenant_id, title) VALUES
  ('acme', 'acme: roadmap'), ('acme', 'acme: payroll'),
  ('globex', 'globex: merger plan');
SQL

# A development signing secret and the config.
head -c 32 /dev/urandom | base64 >"$dir/jwt-secret"
cat >"$dir/tenantgate.yaml" <<YAML
workers: 2
admin: {listen: 127.0.0.1:$admin_port}
log: {level: info, format: text}
auth:
  jwt:
    algorithms: [HS256]
    hs256_secret_file: jwt-secret
listeners:
  - name: pg
    protocol: postgres
    listen: 127.0.0.1:$pg_proxy
    backend: {address: 127.0.0.1:$pg_port, user: app, password_file: app-password}
    postgres: {tenant_setting: app.tenant_id, databases: [app]}
  - name: redis
    protocol: redis
    listen: 127.0.0.1:$redis_proxy
    backend: {address: 127.0.0.1:$redis_port, user: default, password_file: redis-password}
  - name: mongo
    protocol: mongodb
    listen: 127.0.0.1:$mongo_proxy
    backend: {address: 127.0.0.1:$mongo_port, user: svc, password_file: mongo-password, auth_db: admin}
    mongodb: {isolation: field, tenant_field: tenant_id}
  - name: graph
    protocol: bolt
    listen: 127.0.0.1:$bolt_proxy
    backend: {address: 127.0.0.1:$bolt_port, user: graph, password_file: bolt-password}
    bolt: {isolation: property, tenant_property: tenant_id}
YAML
for _ in $(seq 100); do grep -q '^listening on' "$dir/bolt.log" && break; sleep 0.1; done
"$bin" check -c "$dir/tenantgate.yaml" >/dev/null || { "$bin" check -c "$dir/tenantgate.yaml"; exit 1; }
"$bin" -c "$dir/tenantgate.yaml" 2>"$dir/tenantgate.log" &
pids+=($!)
for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 && break
    sleep 0.2
done

token_a=$("$bin" token --hs256-secret-file "$dir/jwt-secret" --tenant acme --ttl 8h)
token_b=$("$bin" token --hs256-secret-file "$dir/jwt-secret" --tenant globex --ttl 8h)
show() { PGPASSWORD=$2 psql -X "host=127.0.0.1 port=$pg_proxy user=app dbname=app" -c "$1" 2>&1 | sed 's/^/    /'; }
rcli() { local t=$1; shift; redis-cli -h 127.0.0.1 -p "$redis_proxy" -a "$t" --no-auth-warning "$@" 2>&1; }
rshow() {
    local out
    local who=$1
    shift
    printf '    %s> %s\n' "$who" "${*:2}"
    out=$(rcli "$@" | sed '/^$/d')
    printf '%s\n' "${out:-(empty)}" | sed 's/^/    /'
}
for _ in $(seq 50); do [ "$(rcli "$token_a" PING)" = PONG ] && break; sleep 0.2; done
# MongoDB: the connection string carries the tenant's JWT as the PLAIN password ($external).
muri() { printf 'mongodb://%s:%s@127.0.0.1:%s/app?authMechanism=PLAIN&authSource=%%24external' "$1" "$2" "$mongo_proxy"; }
mpy() {
    /usr/bin/python3 -c 'import sys, pymongo
c = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=5000)
exec(sys.argv[2])' "$@" 2>&1 | sed 's/^/    /'
}
mpy "$(muri acme "$token_a")" 'c.app.notes.insert_many([{"text": "acme: launch plan"}, {"text": "acme: budget"}])' >/dev/null
mpy "$(muri globex "$token_b")" 'c.app.notes.insert_one({"text": "globex: merger memo"})' >/dev/null
bolt_shell="node $root/deploy/local/bolt-shell.mjs -a neo4j://127.0.0.1:$bolt_proxy"
bshow() {
    local who=$1 token=$2
    shift 2
    printf '    %s> %s\n' "$who" "$*"
    $bolt_shell --token "$token" -q "$*" 2>&1 | sed 's/^/    /'
}
cat <<TXT

tenantgate is running (state and logs in $dir).

  tenant acme:
    PGPASSWORD=$token_a psql "host=127.0.0.1 port=$pg_proxy user=app dbname=app"
  tenant globex:
    PGPASSWORD=$token_b psql "host=127.0.0.1 port=$pg_proxy user=app dbname=app"

  SELECT * FROM documents, as acme:
$(show 'SELECT id, tenant_id, title FROM documents ORDER BY id' "$token_a")
  the same, as globex:
$(show 'SELECT id, tenant_id, title FROM documents ORDER BY id' "$token_b")
  globex trying to become acme:
$(show "SET app.tenant_id = 'acme'" "$token_b")

  Redis, tenant acme:
    redis-cli -p $redis_proxy -a $token_a --no-auth-warning
  Redis, tenant globex:
    redis-cli -p $redis_proxy -a $token_b --no-auth-warning

  the same key name, as acme then as globex:
$(rshow acme "$token_a" SET greeting "hello from acme")
$(rshow globex "$token_b" SET greeting "hello from globex")
$(rshow acme "$token_a" GET greeting)
$(rshow globex "$token_b" GET greeting)
$(rshow acme "$token_a" RPUSH orders o-1 o-2)
$(rshow globex "$token_b" SADD tags merger)
  KEYS *, as acme and as globex (each sees only its own keyspace):
$(rshow acme "$token_a" KEYS '*')
$(rshow globex "$token_b" KEYS '*')
  globex trying the whole server:
$(rshow globex "$token_b" FLUSHALL)
$(rshow globex "$token_b" KEYS 't:acme:*')
  what redis-server holds (tenantgate's prefix, read directly):
$(REDISCLI_AUTH=$redis_password redis-cli -h 127.0.0.1 -p "$redis_port" --scan | sort | sed 's/^/    /')
  MongoDB (pymongo), tenant acme:
    /usr/bin/python3 -c 'import pymongo; c = pymongo.MongoClient("$(muri acme "$token_a")"); print(list(c.app.notes.find({}, {"_id": 0})))'
  MongoDB (pymongo), tenant globex:
    /usr/bin/python3 -c 'import pymongo; c = pymongo.MongoClient("$(muri globex "$token_b")"); print(list(c.app.notes.find({}, {"_id": 0})))'

  db.notes.find(), as acme and as globex:
$(mpy "$(muri acme "$token_a")" 'print(list(c.app.notes.find({}, {"_id": 0})))')
$(mpy "$(muri globex "$token_b")" 'print(list(c.app.notes.find({}, {"_id": 0})))')
  globex trying acme's documents and the server:
$(mpy "$(muri globex "$token_b")" 'print(list(c.app.notes.find({"tenant_id": "acme"}, {"_id": 0})))')
$(mpy "$(muri globex "$token_b")" '
try:
    c.app.notes.update_many({}, {"$set": {"tenant_id": "acme"}})
except pymongo.errors.OperationFailure as e:
    print("update_many $set tenant_id:", e.details["errmsg"])
try:
    c.admin.command("listDatabases")
except pymongo.errors.OperationFailure as e:
    print("listDatabases:", e.details["errmsg"])')
  what the backend holds (read directly as the service user):
$(mpy "mongodb://svc:$mongo_password@127.0.0.1:$mongo_port/?authSource=admin&directConnection=true" 'print(list(c.app.notes.find({}, {"_id": 0})))')

  Bolt (neo4j:// or bolt://, the token as bearer credentials or as the basic password),
  tenant acme:
    $bolt_shell --token $token_a
  tenant globex:
    $bolt_shell --token $token_b

  each tenant creates a graph, then reads every node there is:
$(bshow acme "$token_a" "CREATE (:Person {name: 'ann'})-[:WorksOn]->(:Project {name: 'rocket'})")
$(bshow globex "$token_b" "CREATE (:Person {name: 'gus'})-[:WorksOn]->(:Project {name: 'merger'})")
$(bshow acme "$token_a" "MATCH (n) RETURN n")
$(bshow globex "$token_b" "MATCH (p)-[:WorksOn]->(x) RETURN p.name, x.name")
  globex trying to reach acme's nodes:
$(bshow globex "$token_b" "MATCH (n {tenant_id: 'acme'}) RETURN n")
$(bshow globex "$token_b" "MATCH (n) SET n.tenant_id = 'acme'")
$(bshow globex "$token_b" "CALL db.labels()")

  metrics:                       curl http://127.0.0.1:$admin_port/metrics
  readiness:                     curl http://127.0.0.1:$admin_port/readyz
  reload config:                 kill -HUP ${pids[-1]}

Ctrl-C stops everything.
TXT
wait "${pids[-1]}"
