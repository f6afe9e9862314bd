"""The registry's redis-server killed (SIGKILL) and started again under load, with two
tenantgate processes: tg0 with on_registry_failure: deny, tg1 with cached.

While it is down:
  - sessions already open go on in both modes (PostgreSQL and Redis traffic on them never
    fails), and a thread keeps opening new sessions on both processes (no crash)
  - deny: a new session is refused ("tenant registry unavailable") and /readyz says 503
  - cached: a tenant seen within the TTL still gets in, one never seen does not, and
    /readyz stays 200
  - tenantgate_registry_up is 0
When it is back (on the same port, with a dataset in which one tenant is now suspended,
and no invalidation published for it):
  - both processes reconnect, read the records of their open sessions again and close the
    suspended tenant's sessions; the other tenant's sessions were never interrupted
  - new sessions work again on tg0; /readyz is 200; both processes exit cleanly
"""

import copy
import os
import threading
import time

import psycopg
import pytest

import pg_fixture as pf
import tghelpers as h
from redis_fixture import Raw
from registry_fixture import (RedisServer, pg_fatal_and_close, redis_error_and_close,
                              registry_env, wait_registry_up)

STEADY, VICTIM, FRESH = "steady", "victim", "fresh"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    procs = ({"on_registry_failure": "deny"}, {"on_registry_failure": "cached"})
    with registry_env(tmp_path_factory.mktemp("failure"), procs=procs) as e:
        yield e


class Load:
    """Traffic on open sessions of one tenant (must never fail) and a stream of new logins
    (may fail while the registry is down) on one process, in threads."""

    def __init__(self, proc, tenant):
        self.proc, self.tenant = proc, tenant
        self.errors, self.ops, self.logins = [], 0, [0, 0]
        self.stop = threading.Event()
        self.pg = proc.pg(tenant)
        self.rd = proc.redis(tenant)
        self.threads = [threading.Thread(target=self.traffic, daemon=True),
                        threading.Thread(target=self.new_sessions, daemon=True)]

    def traffic(self):
        while not self.stop.is_set():
            try:
                assert self.pg.execute("SELECT current_setting('app.tenant_id')").fetchone() == \
                    (self.tenant,)
                self.rd.incr("ops")
                self.ops += 1
            except Exception as e:  # noqa: BLE001 -- every failure is a finding
                self.errors.append(repr(e))
                return
            time.sleep(0.005)

    def new_sessions(self):
        while not self.stop.is_set():
            try:
                with self.proc.pg(self.tenant, connect_timeout=5) as c:
                    c.execute("SELECT 1")
                self.logins[0] += 1
            except psycopg.OperationalError:
                self.logins[1] += 1
            time.sleep(0.02)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(10)
        self.pg.close()
        self.rd.connection_pool.disconnect()


def login_error(proc, tenant):
    with pf.RawPg(proc.pg_port()) as raw:
        return raw.login_error(proc.env.tokens.mint(tenant))


def test_registry_killed_and_restarted_under_load(env):
    tg0, tg1 = env.procs
    for t in (STEADY, VICTIM):
        env.registry.set_tenant(t, status="active")
    # Not published: an invalidation makes every worker read (and cache) the record.
    env.registry.set_tenant(FRESH, publish=False, status="active")
    # tg1 (cached) sees STEADY on both of its workers before the outage: the kernel spreads
    # new connections over the workers, so a handful of logins reach each of them.
    for _ in range(16):
        with tg1.pg(STEADY) as c:
            c.execute("SELECT 1")
    victims = [(p, p.raw_pg(VICTIM), p.raw_redis(VICTIM)) for p in (tg0, tg1)]
    kicked_before = [p.metric("tenantgate_sessions_kicked_total", reason="suspended") or 0
                     for p in (tg0, tg1)]

    with Load(tg0, STEADY) as load0, Load(tg1, STEADY) as load1:
        time.sleep(0.3)
        env.registry.server.kill()
        for p in (tg0, tg1):
            wait_registry_up(p, up=0)

        # deny: refused, not ready
        f = login_error(tg0, STEADY)
        assert f["C"] == "28P01" and f["M"].endswith(": tenant registry unavailable"), f
        r = Raw(tg0.redis_port())
        assert r.cmd("AUTH", env.tokens.mint(STEADY)) == \
            ("ERR", b"WRONGPASS tenantgate: tenant registry unavailable")
        r.close()
        status, _, body = h.http_get(tg0.admin, "/readyz")
        assert status == 503 and "tenant registry" in body, (status, body)
        # cached: a tenant seen within the TTL gets in, one never seen does not; ready
        for _ in range(6):
            with tg1.pg(STEADY) as c:
                assert c.execute("SELECT 1").fetchone() == (1,)
        f = login_error(tg1, FRESH)
        assert f["M"].endswith(": tenant registry unavailable"), f
        status, _, body = h.http_get(tg1.admin, "/readyz")
        assert status == 200, body
        time.sleep(1.0)  # the load goes on against a dead registry

        # Back, on the same port, with VICTIM suspended and nothing published about it.
        data = os.path.join(env.dir, "registry-next")
        os.makedirs(data, exist_ok=True)
        seed = RedisServer(data, env.registry.server.password).start()
        c = seed.client()
        for t in (STEADY, FRESH):
            c.hset(f"tenantgate:tenant:{t}", "status", "active")
        c.hset(f"tenantgate:tenant:{VICTIM}", "status", "suspended")
        c.save()
        seed.stop()
        env.registry.server = RedisServer(data, env.registry.server.password,
                                          port=env.registry.server.port).start()
        for p in (tg0, tg1):
            wait_registry_up(p, up=1)
        for p, rp, rr in victims:
            f = pg_fatal_and_close(rp, h.scaled(3))
            assert f["M"] == "tenantgate: terminating connection: tenant suspended", f
            assert redis_error_and_close(rr, h.scaled(3)) == "ERR tenantgate: tenant suspended"
        time.sleep(0.5)

    for load in (load0, load1):
        assert not load.errors, load.errors
        assert load.ops > 50
    assert load0.logins[1] >= 1  # deny refused some during the outage ...
    assert load0.logins[0] >= 1  # ... and let them in before and after it
    # After the outage: tg0 admits again, is ready, counted the kicks.
    with tg0.pg(STEADY) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
    assert h.http_get(tg0.admin, "/readyz")[0] == 200
    for p, before in zip((tg0, tg1), kicked_before):
        assert p.metric("tenantgate_sessions_kicked_total", reason="suspended") >= before + 2
        assert p.metric("tenantgate_registry_lookups_total", result="error") >= 1
        assert p.proxy.running()
    with pytest.raises(psycopg.OperationalError, match="tenant suspended"):
        tg1.pg(VICTIM)
    r = Raw(tg0.redis_port())
    assert r.cmd("AUTH", env.tokens.mint(VICTIM)) == \
        ("ERR", b"WRONGPASS tenantgate: tenant suspended")
    r.close()


def test_reload_keeps_replaces_and_drops_the_registry(env):
    """SIGHUP: the same registry is kept (sessions and subscriptions go on), a config
    without it stops asking, and one with it again reconnects and ends what it must."""
    p = env.procs[0]
    env.registry.set_tenant("reloaded", status="active")
    raw = p.raw_redis("reloaded")
    cfg = copy.deepcopy(p.proxy.cfg)
    cfg["tenants"]["cache_ttl_s"] = 5
    cfg["tenants"]["require_registered"] = True
    assert "config reloaded" in p.proxy.reload(cfg)
    assert p.metric("tenantgate_registry_up") == 1
    assert raw.cmd("PING") == b"PONG"
    # New sessions use the new config (open ones keep theirs, as with every reload).
    fresh = Raw(p.redis_port())
    assert fresh.cmd("AUTH", env.tokens.mint("nobody")) == \
        ("ERR", b"WRONGPASS tenantgate: tenant not registered")
    fresh.close()
    without = copy.deepcopy(cfg)
    del without["tenants"]
    assert "config reloaded" in p.proxy.reload(without)
    deadline = time.monotonic() + h.scaled(5)  # both workers have applied it: no registry
    while p.metric("tenantgate_registry_up") is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert p.metric("tenantgate_registry_up") is None
    other = p.raw_redis("nobody")  # nothing is asked any more
    assert other.cmd("PING") == b"PONG"
    other.close()
    assert "config reloaded" in p.proxy.reload(cfg)
    wait_registry_up(p)
    env.registry.set_tenant("reloaded", status="suspended")
    assert redis_error_and_close(raw, h.scaled(2)) == "ERR tenantgate: tenant suspended"
    raw.close()
