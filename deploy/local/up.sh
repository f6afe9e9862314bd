#!/usr/bin/env bash
# The README's first command: a local PostgreSQL and Redis with tenantgate in
# front, in a throwaway folder, until Ctrl-C.
#
# Today tenantgate's PostgreSQL and Redis protocols are not built yet (see
# README "Not supported yet"), so the listeners below are `protocol: tcp`
# passthrough relays: they show the runtime (workers, admin, metrics, reload,
# drain) but isolate NOTHING. Do not point real tenants at them.
#
#   deploy/local/up.sh              start everything, print connection lines
#   TG_UP_DIR=/tmp/tg deploy/local/up.sh   keep state in a chosen folder
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
. deploy/local/packages.sh
# shellcheck disable=SC2086
tg_require_packages $TG_BUILD_PACKAGES postgresql postgresql-client redis-server redis-tools curl

build=${TG_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target tenantgate >/dev/null
bin="$root/$build/tenantgate"

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
admin_port=$(free_port)

# PostgreSQL: a throwaway cluster on loopback.
mkdir -p "$dir/pg" "$dir/sock"
[ "$(id -u)" -eq 0 ] && chown -R postgres "$dir/pg" "$dir/sock"
run_pg initdb -D "$dir/pg" -U postgres -A trust >/dev/null
run_pg pg_ctl -D "$dir/pg" -l "$dir/pg/server.log" -w \
    -o "-p $pg_port -k $dir/sock -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null

# Redis: no persistence.
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$dir" --logfile "$dir/redis.log" &
pids+=($!)

# A development signing secret and a config with passthrough listeners.
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
    protocol: tcp
    unsafe_passthrough: true
    listen: 127.0.0.1:$pg_proxy
    backend: {address: 127.0.0.1:$pg_port}
  - name: redis
    protocol: tcp
    unsafe_passthrough: true
    listen: 127.0.0.1:$redis_proxy
    backend: {address: 127.0.0.1:$redis_port}
YAML
"$bin" check -c "$dir/tenantgate.yaml" >/dev/null || { "$bin" check -c "$dir/tenantgate.yaml"; exit 1; }
"$bin" -c "$dir/tenantgate.yaml" 2>"$dir/tenantgate.log" &
pids+=($!)
for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 && break
    sleep 0.2
done

token_a=$("$bin" token --hs256-secret-file "$dir/jwt-secret" --tenant acme --ttl 8h)
token_b=$("$bin" token --hs256-secret-file "$dir/jwt-secret" --tenant globex --ttl 8h)
cat <<TXT

tenantgate is running (state and logs in $dir).

  WARNING: these listeners are 'protocol: tcp' passthrough relays -- the
  PostgreSQL and Redis protocols are not built yet, so nothing is isolated.

  psql through tenantgate:       psql "host=127.0.0.1 port=$pg_proxy user=postgres dbname=postgres"
  redis-cli through tenantgate:  redis-cli -p $redis_proxy
  metrics:                       curl http://127.0.0.1:$admin_port/metrics
  readiness:                     curl http://127.0.0.1:$admin_port/readyz
  reload config:                 kill -HUP ${pids[-1]}

  development tokens (used once the protocols land):
    acme:   $token_a
    globex: $token_b

Ctrl-C stops everything.
TXT
wait "${pids[-1]}"
