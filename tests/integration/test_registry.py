"""The tenant registry (tenants.registry) end to end: a real redis-server as the registry,
PostgreSQL 15 and redis-server as backends, and three tenantgate processes sharing the
registry (tg0, tg1: require_registered; tg2: TLS listeners with auth.sni).

  - suspending a tenant (the `tenantgate tenant` CLI) closes its open sessions on both
    processes within a second, with the protocol's error (PostgreSQL FATAL 57P01, Redis
    -ERR then close) -- raw connections and real clients (psycopg, redis-py) --, while
    other tenants go on; new sessions are refused on both; activating lets them in again
  - revoking a token's jti closes the sessions authenticated with it (and only those) and
    refuses it at authentication; the revocation set holds the jti scored by its exp
  - require_registered: an unknown tenant is refused, registering it (the documented
    HSET + PUBLISH) lets it in, deleting its hash closes its sessions
  - a record tenantgate cannot read (unknown status) fails closed
  - the registry's slug must match the TLS SNI slug (tg2, PostgreSQL and Redis over TLS)
  - answers are cached (a second login is a cache hit) and a change is only seen through
    the published invalidation; metrics and /readyz report the registry
"""

import socket
import ssl
import time

import psycopg
import pytest
import redis

import pg_fixture as pf
import tghelpers as h
from redis_fixture import Raw
from registry_fixture import (PREFIX, pg_fatal_and_close, redis_error_and_close,
                              registry_env)

SNI_SUFFIX = ".db.test"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("registry")
    cert, key = pf.make_cert(str(tmp))
    tls = {"tls": {"mode": "require", "cert_file": cert, "key_file": key}}
    procs = ({"require_registered": True}, {"require_registered": True},
             {"pg_extra": dict(tls), "redis_extra": dict(tls),
              "sni": {"suffix": SNI_SUFFIX, "slug_claim": "tenant_slug"}})
    with registry_env(tmp, procs=procs) as e:
        yield e


def kicked(proc, reason):
    return proc.metric("tenantgate_sessions_kicked_total", reason=reason) or 0


def pg_query_ok(proc, tenant, token=None):
    with proc.pg(tenant, token=token) as c:
        return c.execute("SELECT current_setting('app.tenant_id')").fetchone()[0]


def redis_ok(proc, tenant, token=None):
    c = proc.redis(tenant, token=token)
    try:
        c.set("probe", tenant)
        return c.get("probe").decode()
    finally:
        c.connection_pool.disconnect()


def pg_login_error(proc, token):
    with pf.RawPg(proc.pg_port()) as raw:
        return raw.login_error(token)


def redis_auth_error(proc, token):
    r = Raw(proc.redis_port())
    try:
        return r.cmd("AUTH", token)
    finally:
        r.close()


def test_suspend_closes_sessions_on_every_process_within_a_second(env):
    t, other = "susp-a", "susp-bystander"
    env.registry.set_tenant(t, status="active")
    env.registry.set_tenant(other, status="active")
    procs = env.procs[:2]
    before = [kicked(p, "suspended") for p in procs]
    raws = [(p, p.raw_pg(t), p.raw_redis(t)) for p in procs]
    clients = [(p.pg(t), p.redis(t)) for p in procs]
    for c, rc in clients:
        assert c.execute("SELECT 1").fetchone() == (1,)
        assert rc.ping()
    bystanders = [(p.pg(other), p.redis(other)) for p in procs]

    r = procs[0].cli("suspend", t)
    # The CLI publishes just before it exits: the second starts (at the latest) now.
    deadline = time.monotonic() + h.scaled(1.0)
    assert r.returncode == 0, r.stderr
    assert f"tenant {t}: suspended" in r.stdout
    for p, rp, rr in raws:
        f = pg_fatal_and_close(rp, max(0.01, deadline - time.monotonic()))
        assert f["C"] == "57P01", f
        assert f["M"] == "tenantgate: terminating connection: tenant suspended", f
        text = redis_error_and_close(rr, max(0.01, deadline - time.monotonic()))
        assert text == "ERR tenantgate: tenant suspended", text
        rp.close()
        rr.close()
    assert time.monotonic() <= deadline + 0.05

    # Real clients see it on their next request.
    for c, rc in clients:
        with pytest.raises(psycopg.OperationalError, match="tenant suspended"):
            c.execute("SELECT 1")
        with pytest.raises(redis.RedisError, match="tenant suspended"):
            for _ in range(3):  # the closed connection, then a new one refused at AUTH
                rc.ping()
        c.close()
        rc.connection_pool.disconnect()
    # Nobody else was touched.
    for c, rc in bystanders:
        assert c.execute("SELECT current_setting('app.tenant_id')").fetchone() == (other,)
        assert rc.ping()
        c.close()
        rc.connection_pool.disconnect()
    # New sessions are refused everywhere, with the reason.
    token = env.tokens.mint(t)
    for p in procs:
        f = pg_login_error(p, token)
        assert (f["C"], f["M"]) == ("28P01", 'tenantgate: password authentication failed for '
                                             'user "app": tenant suspended'), f
        assert redis_auth_error(p, token) == ("ERR", b"WRONGPASS tenantgate: tenant suspended")
    for p, b in zip(procs, before):
        assert kicked(p, "suspended") >= b + 4  # raw pg + raw redis + psycopg + redis-py
        assert p.metric("tenantgate_auth_failures_total", listener="pg", reason="suspended") >= 1

    # Activated again: new sessions work on both processes.
    r = procs[1].cli("activate", t)
    assert r.returncode == 0, r.stderr
    for p in procs:
        assert pg_query_ok(p, t) == t
        assert redis_ok(p, t) == t


def test_revoked_jti_is_refused_and_its_sessions_closed(env):
    t = "rev-a"
    env.registry.set_tenant(t, status="active")
    leaked = env.tokens.mint(t, jti="leaked-1")
    fine = env.tokens.mint(t, jti="fine-1")
    procs = env.procs[:2]
    leaked_sessions = [(p.raw_pg(token=leaked), p.raw_redis(token=leaked)) for p in procs]
    fine_pg, fine_redis = procs[0].raw_pg(token=fine), procs[0].raw_redis(token=fine)
    exp = int(time.time()) + 3600

    r = procs[1].cli("revoke-jti", "leaked-1", "--exp", str(exp))
    deadline = time.monotonic() + h.scaled(1.0)
    assert r.returncode == 0, r.stderr
    for rp, rr in leaked_sessions:
        f = pg_fatal_and_close(rp, max(0.01, deadline - time.monotonic()))
        assert (f["C"], f["M"]) == ("57P01", "tenantgate: terminating connection: token revoked")
        assert redis_error_and_close(rr, max(0.01, deadline - time.monotonic())) == \
            "ERR tenantgate: token revoked"
    # The tenant's other token goes on.
    assert pf.summarize(fine_pg.query("SELECT 1"))[-2:] == [("C", "SELECT 1"), ("Z", "I")]
    assert fine_redis.cmd("PING") == b"PONG"
    fine_pg.close()
    fine_redis.close()
    # The leaked token is refused at authentication, everywhere.
    for p in procs:
        f = pg_login_error(p, leaked)
        assert f["C"] == "28P01" and f["M"].endswith(": token revoked"), f
        assert redis_auth_error(p, leaked) == ("ERR", b"WRONGPASS tenantgate: token revoked")
        assert p.metric("tenantgate_sessions_kicked_total", reason="revoked") >= 2
    # What the CLI wrote: the jti scored by the token's exp.
    assert env.registry.r().zscore(f"{PREFIX}revoked", "leaked-1") == exp


def test_require_registered(env):
    t = "newcomer"
    token = env.tokens.mint(t)
    for p in env.procs[:2]:
        f = pg_login_error(p, token)
        assert f["C"] == "28P01" and f["M"].endswith(": tenant not registered"), f
        assert redis_auth_error(p, token) == ("ERR",
                                              b"WRONGPASS tenantgate: tenant not registered")
    # Registered with the documented commands (HSET, then PUBLISH): in, on both.
    env.registry.set_tenant(t, status="active", plan="gold")
    sessions = []
    for p in env.procs[:2]:
        assert pg_query_ok(p, t) == t
        assert redis_ok(p, t) == t
        sessions.append((p.raw_pg(t), p.raw_redis(t)))
    # The hash deleted (and the change published): its sessions end.
    env.registry.delete_tenant(t)
    for rp, rr in sessions:
        f = pg_fatal_and_close(rp, h.scaled(1.0))
        assert f["M"] == "tenantgate: terminating connection: tenant not registered", f
        assert redis_error_and_close(rr, h.scaled(1.0)) == "ERR tenantgate: tenant not registered"
    # Without require_registered (tg2) an unknown tenant is fine.
    with psycopg.connect(**tls_conninfo(env.procs[2], token, "localhost")) as c:
        assert c.execute("SELECT current_setting('app.tenant_id')").fetchone() == (t,)


def test_unreadable_record_fails_closed(env):
    t = "oddball"
    for status in ("paused", "Active", ""):
        env.registry.set_tenant(t, status=status)
        f = pg_login_error(env.procs[0], env.tokens.mint(t))
        assert f["M"].endswith(": tenant record is invalid"), (status, f)
    env.registry.set_tenant(t, status="active", max_connections="ten")
    assert redis_auth_error(env.procs[1], env.tokens.mint(t)) == \
        ("ERR", b"WRONGPASS tenantgate: tenant record is invalid")
    env.registry.set_tenant(t, status="active", max_connections="10")
    assert pg_query_ok(env.procs[0], t) == t


def test_cache_and_invalidation(env):
    """A second login within the TTL is answered from the cache; a change without its
    PUBLISH is not seen (the contract: write, then publish), with it at once."""
    t = "cached-co"
    p = env.procs[0]
    env.registry.set_tenant(t, status="active")
    token = env.tokens.mint(t)
    assert pg_query_ok(p, t, token=token) == t  # may have run on either worker
    hits = p.metric("tenantgate_registry_cache_hits_total")
    for _ in range(6):  # the kernel spreads them over both workers
        assert pg_query_ok(p, t, token=token) == t
    assert p.metric("tenantgate_registry_cache_hits_total") >= hits + 4
    env.registry.set_tenant(t, publish=False, status="suspended")
    assert pg_query_ok(p, t, token=token) == t  # not published: the cache still says active
    env.registry.set_tenant(t, status="suspended")  # published
    f = pg_login_error(p, token)
    assert f["M"].endswith(": tenant suspended"), f
    # Unknown invalidations are ignored.
    env.registry.r().publish(f"{PREFIX}events", "bogus event")
    env.registry.r().publish(f"{PREFIX}events", "tenant ../../etc")
    env.registry.set_tenant(t, status="active")
    assert pg_query_ok(p, t) == t
    assert p.proxy.running()


def test_metrics_and_readyz(env):
    p = env.procs[0]
    status, _, body = h.http_get(p.admin, "/readyz")
    assert status == 200, body
    text = h.http_get(p.admin, "/metrics")[2]
    assert h.metric_value(text, "tenantgate_registry_up") == 1
    assert h.metric_value(text, "tenantgate_registry_lookups_total", result="active") >= 1
    assert h.metric_value(text, "tenantgate_registry_lookups_total", result="unknown") >= 1
    assert h.metric_value(text, "tenantgate_registry_reconnects_total") >= 2  # one per worker
    assert h.metric_value(text, "tenantgate_registry_events_total") >= 1
    for reason in ("suspended", "unregistered", "invalid", "revoked"):
        assert h.metric_value(text, "tenantgate_sessions_kicked_total", reason=reason) is not None


# ---- SNI slugs (tg2) ---------------------------------------------------------------------------


def tls_conninfo(proc, token, host):
    return dict(host=host, hostaddr="127.0.0.1", port=proc.pg_port(), user="app", dbname="app",
                password=token, sslmode="require", connect_timeout=10, autocommit=True)


def redis_tls_auth(proc, token, host):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", proc.redis_port()), timeout=10),
                        server_hostname=host)
    try:
        s.sendall(Raw.encode("AUTH", token))
        buf = b""
        while b"\r\n" not in buf:
            d = s.recv(4096)
            if not d:
                break
            buf += d
        return buf.split(b"\r\n")[0]
    finally:
        s.close()


def test_registry_slug_must_match_sni(env):
    p = env.procs[2]
    t = "slugco"
    env.registry.set_tenant(t, status="active", slug="slugco-eu")
    good = env.tokens.mint(t, tenant_slug="slugco-eu")
    with psycopg.connect(**tls_conninfo(p, good, "slugco-eu" + SNI_SUFFIX)) as c:
        assert c.execute("SELECT current_setting('app.tenant_id')").fetchone() == (t,)
    assert redis_tls_auth(p, good, "slugco-eu" + SNI_SUFFIX) == b"+OK"
    # The token's slug claim matches the server name it used, but the registry says the
    # tenant's slug is another one: refused.
    other = env.tokens.mint(t, tenant_slug="evil")
    with pytest.raises(psycopg.OperationalError, match="tenant slug does not match server name"):
        psycopg.connect(**tls_conninfo(p, other, "evil" + SNI_SUFFIX))
    assert redis_tls_auth(p, other, "evil" + SNI_SUFFIX) == \
        b"-WRONGPASS tenantgate: tenant slug does not match server name"
    # A server name outside the suffix names no slug: nothing to compare.
    with psycopg.connect(**tls_conninfo(p, good, "localhost")) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
    # Without a slug in the registry, the JWT's check alone applies.
    env.registry.r().hdel(f"{PREFIX}tenant:{t}", "slug")
    env.registry.r().publish(f"{PREFIX}events", f"tenant {t}")
    with psycopg.connect(**tls_conninfo(p, other, "evil" + SNI_SUFFIX)) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_cli_and_check(env):
    p = env.procs[0]
    env.registry.set_tenant("shown", status="active", slug="shown-eu", messages_per_second=9)
    r = p.cli("show", "shown")
    assert r.returncode == 0, r.stderr
    assert "status: active" in r.stdout and "messages_per_second: 9" in r.stdout
    assert "verdict: ok" in r.stdout
    r = p.cli("show", "nobody-here")
    assert r.returncode == 0 and "verdict: tenant not registered" in r.stdout, r.stdout
    for args, code, text in ((("suspend", "bad tenant!"), 1, "not a tenant id"),
                             (("revoke-jti", "has space"), 1, "printable"),
                             (("revoke-jti", "j", "--exp", "soon"), 1, "--exp"),
                             (("frobnicate", "x"), 2, "usage"),
                             ((), 2, "usage")):
        r = p.cli(*args)
        assert r.returncode == code and text in (r.stderr + r.stdout), (args, r)
    # A config without a registry is refused by the CLI.
    r = h.run_tg(["tenant", "-c", str(h.TG_SOURCE_DIR) + "/deploy/k8s/base/tenantgate.yaml",
                  "suspend", "x"])
    assert r.returncode == 1
    # `check` reaches the registry too.
    r = h.run_tg(["check", "-c", p.proxy.cfg_path], timeout=60)
    assert f"tenant registry {env.registry.server.address}: reachable" in r.stdout, r.stdout
