"""The proxies under test: tenantgate and its peers, each started in front of the servers.

Each peer class has a `name`, the `kinds` of server it fronts, and
`start(ctx)` which writes its config into the run's temp dir, starts one
process and returns the Targets it serves (one per kind). To benchmark a new
proxy, add a class here and list it in PEERS; to benchmark a new tenantgate
listener (e.g. `protocol: postgres` with the guard on), add a row to
TENANTGATE_LISTENERS.

    loadgen --> direct ------------------------------> server
    loadgen --> tenantgate-tcp (tcp passthrough) ----> server
    loadgen --> haproxy (mode tcp) ------------------> server
    loadgen --> pgbouncer (session pooling) ---------> PostgreSQL
    loadgen --> nutcracker (redis pool, 1 server) ---> redis-server
    loadgen --> tenantgate-pg / -redis / -mongo / -bolt (protocol listeners, a tenant's JWT)
        --> the server as the service user

The MongoDB and Bolt load generators reach the server unproxied on `direct` and
`tenantgate-tcp`; there they send the commands already scoped to the bench tenant,
as tenantgate's field / property isolation would forward them (`self_scope` in the
Target's extra), so the server does the same work on every path.
"""

import json
import os
import subprocess

from . import procs, servers
from .targets import Target


class Ctx:
    """What a peer needs: the registry, the temp dir, the servers and the knobs."""

    def __init__(self, reg, tmp, backends, opts, servers_=None):
        self.reg = reg
        self.tmp = tmp
        self.backends = backends  # kind -> (host, port)
        self.opts = opts  # bench.Options
        # kind -> servers.Postgres / servers.Redis, for setup a target needs
        # (e.g. `ctx.servers["postgres"].psql("bench", "CREATE ROLE ...")`).
        self.servers = servers_ or {}


def _write(path, text, user=None):
    with open(path, "w") as f:
        f.write(text)
    if user:
        servers.chown_tree(path, user)


def _version(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


# ---- tenantgate ---------------------------------------------------------------

# The tenant of the bench's JWT, and the field / property tenantgate scopes MongoDB and
# Bolt with (also what the unproxied paths scope their own commands with).
BENCH_TENANT = "bench"
BENCH_TENANT_FIELD = "tenant_id"
SELF_SCOPED_KINDS = ("mongodb", "bolt")


def unproxied_fields(ctx, kind):
    """Target fields for a path that reaches the server unproxied (direct, a TCP relay): the
    server's service credentials, and for MongoDB and Bolt the scope the load generator adds
    itself."""
    fields = servers.credentials(ctx.servers[kind]) if kind in ctx.servers else {}
    if kind in SELF_SCOPED_KINDS:
        fields["extra"] = {"self_scope": "%s=%s" % (BENCH_TENANT_FIELD, BENCH_TENANT)}
    return fields


def tcp_listener(ctx, kind, backend, port):
    """A `protocol: tcp` passthrough listener (no isolation) in front of `backend`."""
    listener = {
        "name": "bench-tcp-" + kind,
        "protocol": "tcp",
        "listen": "127.0.0.1:%d" % port,
        "backend": {"address": "%s:%d" % backend},
        "unsafe_passthrough": True,
    }
    return listener, unproxied_fields(ctx, kind)


# (target name, kind, listener factory). The factory is called as
# factory(ctx, kind, (backend host, backend port), listen port) and returns the
# listener's config (a dict) and extra Target fields (client user/password/dbname).
# It may write secret files under ctx.tmp and add top-level config sections
# (e.g. `auth`) to ctx.tenantgate_top.
def _dev_token(ctx):
    """An HS256 secret file and the `auth` section, once per run; returns a bench tenant's JWT."""
    if "auth" not in ctx.tenantgate_top:
        secret = os.path.join(ctx.tmp, "jwt-secret")
        _write(secret, os.urandom(32).hex() + "\n")
        ctx.tenantgate_top["auth"] = {"jwt": {"algorithms": ["HS256"], "hs256_secret_file": secret}}
        r = subprocess.run([ctx.opts.tg_bin, "token", "--hs256-secret-file", secret,
                            "--tenant", BENCH_TENANT, "--ttl", "6h"],
                           capture_output=True, text=True, timeout=10, check=True)
        ctx.bench_token = r.stdout.strip()
    return ctx.bench_token


def pg_listener(ctx, kind, backend, port):
    """`protocol: postgres` with the SQL guard on: the JWT is the password, the service role
    (the bench user, trusted by the throwaway server) logs in to the backend."""
    listener = {
        "name": "bench-pg",
        "protocol": "postgres",
        "listen": "127.0.0.1:%d" % port,
        "backend": {"address": "%s:%d" % backend, "user": servers.BENCH_USER},
        "postgres": {"tenant_setting": "app.tenant_id"},
    }
    return listener, {"user": servers.BENCH_USER, "password": _dev_token(ctx)}


def redis_listener(ctx, kind, backend, port):
    """`protocol: redis` with key prefixing on: the JWT is the AUTH password."""
    listener = {
        "name": "bench-redis",
        "protocol": "redis",
        "listen": "127.0.0.1:%d" % port,
        "backend": {"address": "%s:%d" % backend},
        "redis": {"key_prefix": "t:{tenant}:"},
    }
    return listener, {"password": _dev_token(ctx)}


def _secret_file(ctx, name, value):
    path = os.path.join(ctx.tmp, name)
    _write(path, value + "\n")
    os.chmod(path, 0o600)
    return path


def mongo_listener(ctx, kind, backend, port):
    """`protocol: mongodb`, field isolation: the JWT is the PLAIN password ($external); the
    listener logs in to the test backend with SCRAM-SHA-256 as its service user."""
    srv = ctx.servers[kind]
    listener = {
        "name": "bench-mongo",
        "protocol": "mongodb",
        "listen": "127.0.0.1:%d" % port,
        "backend": {"address": "%s:%d" % backend, "user": srv.user,
                    "password_file": _secret_file(ctx, "mongo-password", srv.password),
                    "auth_db": "admin"},
        "mongodb": {"isolation": "field", "tenant_field": BENCH_TENANT_FIELD},
    }
    return listener, {"user": BENCH_TENANT, "password": _dev_token(ctx), "extra": {"auth": "jwt"}}


def bolt_listener(ctx, kind, backend, port):
    """`protocol: bolt`, property isolation: the JWT is the bearer token; the listener logs in
    to the test backend with basic auth as its service user."""
    srv = ctx.servers[kind]
    listener = {
        "name": "bench-bolt",
        "protocol": "bolt",
        "listen": "127.0.0.1:%d" % port,
        "backend": {"address": "%s:%d" % backend, "user": srv.user,
                    "password_file": _secret_file(ctx, "bolt-password", srv.password)},
        "bolt": {"isolation": "property", "tenant_property": BENCH_TENANT_FIELD},
    }
    return listener, {"password": _dev_token(ctx), "extra": {"auth": "jwt"}}


TENANTGATE_LISTENERS = [
    ("tenantgate-tcp", "postgres", tcp_listener),
    ("tenantgate-tcp", "redis", tcp_listener),
    ("tenantgate-pg", "postgres", pg_listener),
    ("tenantgate-redis", "redis", redis_listener),
    ("tenantgate-tcp", "mongodb", tcp_listener),
    ("tenantgate-mongo", "mongodb", mongo_listener),
    ("tenantgate-tcp", "bolt", tcp_listener),
    ("tenantgate-bolt", "bolt", bolt_listener),
]


def tenantgate_config(workers, listeners, max_connections=None, top=None):
    """tenantgate.yaml text. `top`: extra top-level sections (e.g. `auth` for JWT listeners)."""
    cfg = {
        "workers": workers,
        "drain_timeout_s": 1,
        "log": {"level": "warn", "format": "text"},
    }
    cfg.update(top or {})
    cfg["listeners"] = listeners
    if max_connections:
        for l in listeners:
            l["max_connections"] = max_connections
    # JSON is YAML: no YAML library needed.
    return json.dumps(cfg, indent=2) + "\n"


def start_tenantgate(ctx, name, listeners, max_connections=None, top=None):
    d = os.path.join(ctx.tmp, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "tenantgate.yaml")
    _write(path, tenantgate_config(ctx.opts.workers, listeners, max_connections, top))
    proc = ctx.reg.start(name, [ctx.opts.tg_bin, "-c", path])
    return proc


class Tenantgate:
    name = "tenantgate"
    kinds = ("postgres", "redis", "mongodb", "bolt")

    def version(self, opts):
        return _version([opts.tg_bin, "--version"])

    def start(self, ctx):
        rows = []
        listeners = []
        # Factories may add top-level sections here (e.g. ctx.tenantgate_top["auth"] = {...}).
        ctx.tenantgate_top = {}
        for tname, kind, factory in TENANTGATE_LISTENERS:
            if kind not in ctx.backends:
                continue
            port = procs.free_port()
            listener, extra = factory(ctx, kind, ctx.backends[kind], port)
            listeners.append(listener)
            rows.append((tname, kind, port, extra))
        proc = start_tenantgate(ctx, "tenantgate", listeners, top=ctx.tenantgate_top)
        targets = []
        for tname, kind, port, extra in rows:
            procs.wait_port(port, proc)
            targets.append(Target(tname, kind, "127.0.0.1", port, pid=proc.pid, proc=proc,
                                  notes="workers %d" % ctx.opts.workers, **extra))
        return targets


class TenantgateLimits:
    """A second tenantgate with the same postgres and redis listeners plus per-tenant limits
    that are checked on every message but never reached (BENCH_TENANT_LIMITS=rate: the token
    bucket; =1: the bucket and the in-flight byte count; =registry: also a tenant registry on
    the bench redis-server and the global sliding window flushed to it). Compared with
    tenantgate-pg and tenantgate-redis of the same run, the rows show what the limiter costs."""

    name = "tenantgate-limits"
    kinds = ("postgres", "redis")

    def version(self, opts):
        return _version([opts.tg_bin, "--version"])

    def start(self, ctx):
        mode = ctx.opts.tenant_limits
        if mode not in ("rate", "1", "registry"):
            return []
        _dev_token(ctx)
        limits = {"messages_per_second": 100000000, "burst": 100000000}
        if mode != "rate":
            limits["max_inflight_bytes"] = 4294967295
        tenants = {"limits": limits}
        if mode == "registry" and "redis" in ctx.backends:
            limits["global_messages_per_second"] = 100000000
            tenants["registry"] = {"address": "%s:%d" % ctx.backends["redis"],
                                   "key_prefix": "benchreg:"}
        top = {"auth": ctx.tenantgate_top["auth"], "tenants": tenants}
        rows, listeners = [], []
        for tname, kind, factory in (("tenantgate-limits-pg", "postgres", pg_listener),
                                     ("tenantgate-limits-redis", "redis", redis_listener)):
            if kind not in ctx.backends:
                continue
            port = procs.free_port()
            listener, extra = factory(ctx, kind, ctx.backends[kind], port)
            listener["name"] += "-limits"
            listeners.append(listener)
            rows.append((tname, kind, port, extra))
        proc = start_tenantgate(ctx, "tenantgate-limits", listeners, top=top)
        targets = []
        for tname, kind, port, extra in rows:
            procs.wait_port(port, proc)
            targets.append(Target(tname, kind, "127.0.0.1", port, pid=proc.pid, proc=proc,
                                  notes="limits %s, workers %d" % (mode, ctx.opts.workers),
                                  **extra))
        return targets


# ---- HAProxy -------------------------------------------------------------------


def haproxy_config(threads, maxconn, fronts):
    """fronts: [(label, listen_port, (backend_host, backend_port))]."""
    out = ["global",
           "    nbthread %d" % threads,
           "    maxconn %d" % maxconn,
           "defaults",
           "    mode tcp",
           "    timeout connect 5s",
           "    timeout client 1h",
           "    timeout server 1h",
           ""]
    for label, port, (bhost, bport) in fronts:
        out += ["listen %s" % label,
                "    bind 127.0.0.1:%d" % port,
                "    server s1 %s:%d" % (bhost, bport),
                ""]
    return "\n".join(out)


def start_haproxy(ctx, name, fronts, maxconn):
    d = os.path.join(ctx.tmp, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "haproxy.cfg")
    _write(path, haproxy_config(ctx.opts.workers, maxconn, fronts))
    # -db: foreground, no master process: the PID we hold is the one doing the work.
    return ctx.reg.start(name, ["haproxy", "-db", "-f", path])


class Haproxy:
    name = "haproxy"
    kinds = ("postgres", "redis")

    def version(self, opts):
        return _version(["haproxy", "-v"])

    def start(self, ctx):
        fronts = [(kind, procs.free_port(), ctx.backends[kind])
                  for kind in self.kinds if kind in ctx.backends]
        proc = start_haproxy(ctx, "haproxy", fronts, maxconn=2000)
        targets = []
        for kind, port, _ in fronts:
            procs.wait_port(port, proc)
            targets.append(Target("haproxy", kind, "127.0.0.1", port, pid=proc.pid, proc=proc,
                                  notes="mode tcp, nbthread %d" % ctx.opts.workers))
        return targets


# ---- PgBouncer -----------------------------------------------------------------


class Pgbouncer:
    name = "pgbouncer"
    kinds = ("postgres",)

    def version(self, opts):
        return _version(["pgbouncer", "--version"])

    def start(self, ctx):
        user = servers.unprivileged_user()  # PgBouncer refuses to run as root
        d = os.path.join(ctx.tmp, "pgbouncer")
        os.makedirs(d, exist_ok=True)
        port = procs.free_port()
        bhost, bport = ctx.backends["postgres"]
        ini = os.path.join(d, "pgbouncer.ini")
        users = os.path.join(d, "userlist.txt")
        _write(users, '"%s" ""\n' % servers.BENCH_USER)
        _write(ini, "\n".join([
            "[databases]",
            "* = host=%s port=%d" % (bhost, bport),
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            "listen_port = %d" % port,
            "unix_socket_dir =",
            "auth_type = trust",
            "auth_file = %s" % users,
            "pool_mode = session",
            "max_client_conn = 1000",
            "default_pool_size = 50",
            "log_connections = 0",
            "log_disconnections = 0",
            "ignore_startup_parameters = extra_float_digits",
            ""]))
        servers.chown_tree(d, user)
        proc = ctx.reg.start("pgbouncer", ["pgbouncer", ini], user=user, cwd=d)
        procs.wait_port(port, proc)
        return [Target("pgbouncer", "postgres", "127.0.0.1", port, pid=proc.pid, proc=proc,
                       notes="pool_mode session")]


# ---- twemproxy -----------------------------------------------------------------


class Nutcracker:
    name = "nutcracker"
    kinds = ("redis",)

    def version(self, opts):
        return _version(["nutcracker", "--version"])

    def start(self, ctx):
        d = os.path.join(ctx.tmp, "nutcracker")
        os.makedirs(d, exist_ok=True)
        port = procs.free_port()
        stats = procs.free_port()
        bhost, bport = ctx.backends["redis"]
        path = os.path.join(d, "nutcracker.yml")
        _write(path, "\n".join([
            "bench:",
            "  listen: 127.0.0.1:%d" % port,
            "  hash: fnv1a_64",
            "  distribution: ketama",
            "  redis: true",
            "  auto_eject_hosts: false",
            "  server_connections: 1",
            "  timeout: 30000",
            "  servers:",
            "    - %s:%d:1" % (bhost, bport),
            ""]))
        proc = ctx.reg.start("nutcracker", ["nutcracker", "-c", path, "-s", str(stats),
                                            "-a", "127.0.0.1", "-v", "4"])
        procs.wait_port(port, proc)
        return [Target("nutcracker", "redis", "127.0.0.1", port, pid=proc.pid, proc=proc,
                       notes="1 server, no auto eject")]


PEERS = [Tenantgate(), TenantgateLimits(), Haproxy(), Pgbouncer(), Nutcracker()]
