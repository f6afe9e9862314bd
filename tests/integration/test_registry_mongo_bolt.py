"""The tenant registry with the MongoDB and Bolt listeners: a real redis-server as the
registry; MongoDB through raw wire messages to the MongoDB test backend, Bolt through raw
Bolt messages to a fake Bolt server (bolt_wire.FakeBackend). require_registered is on.

  - a registered tenant logs in (the registry is asked: the login waits for the answer);
    an unregistered or suspended one is refused (code 18 / FAILURE Unauthorized, reason)
  - suspending the tenant closes its open MongoDB and Bolt connections within a second
  - the connection limit refuses the next login (code 18 / FAILURE ResourceExhaustion)
  - the rate limit answers MongoDB code 462 IngressRequestRateLimitExceeded and Bolt FAILURE
    Neo.TransientError.Request.ResourceExhaustion; both sessions go on after a pause
"""

import time

import pytest

import tghelpers as h
from bolt_env import bolt_proxy
from bolt_wire import Client, FakeBackend
from mongo_fixture import RawMongo, mongo_env
from registry_fixture import Registry, RedisServer, wait_registry_up

LIMITED = "Neo.TransientError.Request.ResourceExhaustion"


class Procs:
    def __init__(self, registry, mongo, bolt):
        self.registry, self.mongo, self.bolt = registry, mongo, bolt


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("registry-mb"))
    srv = RedisServer(d).start()
    tenants = {"tenants": {"registry": {"address": srv.address}, "require_registered": True}}
    try:
        with mongo_env(trace=False, tenants=tenants["tenants"]) as m, \
                FakeBackend("svc", "svc-pw") as fake, \
                bolt_proxy(fake.address, "svc", "svc-pw", cfg_extra=tenants) as b:
            for port in (m.admin_port, b.admin_port):
                h.wait_metric(port, "tenantgate_registry_up", lambda v: v == 1,
                              timeout=h.scaled(10))
            yield Procs(Registry(srv), m, b)
    finally:
        srv.stop()


def mongo_login(env, tenant, token=None):
    r = RawMongo(env.mongo.port)
    reply = r.plain(token or env.mongo.tokens.mint(tenant))
    return r, reply


def bolt_login(env, tenant, version=(5, 4)):
    c = Client(env.bolt.port)
    return c, c.login(env.bolt.tokens.mint(tenant), version=version)


def test_registered_logs_in_and_suspension_closes(env):
    t = "mb-a"
    env.registry.set_tenant(t, status="active")
    m, reply = mongo_login(env, t)
    assert reply["ok"] == 1, reply
    assert m.command({"find": "things"}, db="app")["ok"] == 1
    b, replies = bolt_login(env, t)
    assert [r.name for r in replies] == ["SUCCESS", "SUCCESS"], replies
    b44, replies = bolt_login(env, t, version=(4, 4))  # HELLO carries the token
    assert [r.name for r in replies] == ["SUCCESS"], replies

    env.registry.set_tenant(t, status="suspended")
    deadline = time.monotonic() + h.scaled(1.0)
    assert m.closed(max(0.01, deadline - time.monotonic()))
    assert b.closed(max(0.01, deadline - time.monotonic()))
    assert b44.closed(max(0.01, deadline - time.monotonic()))
    for c in (m, b, b44):
        c.close()
    # Refused with the reason, on both.
    m, reply = mongo_login(env, t)
    assert reply["ok"] == 0 and reply["code"] == 18, reply
    assert reply["errmsg"].endswith("tenant suspended"), reply
    assert m.closed()
    m.close()
    b, replies = bolt_login(env, t)
    fail = [r for r in replies if r.name == "FAILURE"]
    assert fail and fail[0].meta["code"] == "Neo.ClientError.Security.Unauthorized", replies
    assert "tenant suspended" in fail[0].meta["message"], replies
    b.close()
    for port in (env.mongo.admin_port, env.bolt.admin_port):
        assert h.scrape(port, "tenantgate_sessions_kicked_total", reason="suspended") >= 1


def test_login_waits_for_the_registry(env):
    """Not published: no worker has it cached, so each login asks the registry and waits."""
    t = "mb-fresh"
    env.registry.set_tenant(t, status="active", publish=False)
    misses = [h.scrape(p, "tenantgate_registry_cache_misses_total")
              for p in (env.mongo.admin_port, env.bolt.admin_port)]
    m, reply = mongo_login(env, t)
    assert reply["ok"] == 1, reply
    assert m.command({"find": "things"}, db="app")["ok"] == 1
    b, replies = bolt_login(env, t)
    assert [r.name for r in replies] == ["SUCCESS", "SUCCESS"], replies
    run, _, pull = b.run("RETURN 1 AS x")
    assert (run.name, pull.name) == ("SUCCESS", "SUCCESS")
    for port, before in zip((env.mongo.admin_port, env.bolt.admin_port), misses):
        assert h.scrape(port, "tenantgate_registry_cache_misses_total") >= before + 1
    m.close()
    b.close()


def test_unregistered_is_refused(env):
    m, reply = mongo_login(env, "mb-nobody")
    assert reply["code"] == 18 and reply["errmsg"].endswith("tenant not registered"), reply
    m.close()
    b, replies = bolt_login(env, "mb-nobody")
    assert any(r.name == "FAILURE" and "tenant not registered" in r.meta["message"]
               for r in replies), replies
    b.close()


def test_connection_limit(env):
    t = "mb-conn"
    env.registry.set_tenant(t, status="active", max_connections=1)
    m1, reply = mongo_login(env, t)
    assert reply["ok"] == 1, reply
    m2, reply = mongo_login(env, t)
    assert reply["code"] == 18 and "too many connections for this tenant" in reply["errmsg"]
    assert m2.closed()
    b1, replies = bolt_login(env, t)
    assert [r.name for r in replies] == ["SUCCESS", "SUCCESS"], replies
    b2, replies = bolt_login(env, t)
    assert replies[-1].name == "FAILURE" and replies[-1].meta["code"] == LIMITED, replies
    assert b2.closed()
    for c in (m1, m2, b1, b2):
        c.close()


def test_rate_limit(env):
    t = "mb-rate"
    env.registry.set_tenant(t, status="active", messages_per_second=3, burst=3)
    m, reply = mongo_login(env, t)
    assert reply["ok"] == 1, reply
    replies = [m.command({"find": "things"}, db="app") for _ in range(8)]
    ok = [r for r in replies if r["ok"] == 1]
    limited = [r for r in replies if r.get("code") == 462]
    assert 3 <= len(ok) <= 5 and len(ok) + len(limited) == 8, replies
    assert limited[0]["codeName"] == "IngressRequestRateLimitExceeded", limited
    # Ending a session is never refused.
    assert m.command({"endSessions": []}, db="admin")["ok"] == 1
    time.sleep(1.2)
    assert m.command({"find": "things"}, db="app")["ok"] == 1
    m.close()

    b, replies = bolt_login(env, t)
    assert [r.name for r in replies] == ["SUCCESS", "SUCCESS"], replies
    outcomes = []
    for _ in range(6):
        run, _, pull = b.run("RETURN 1 AS x")
        outcomes.append((run.name, pull.name))
        if run.name == "FAILURE":
            assert run.meta["code"] == LIMITED, run
            assert pull.name == "IGNORED"
            assert b.request("RESET").name == "SUCCESS"
    assert ("FAILURE", "IGNORED") in outcomes, outcomes
    time.sleep(1.2)
    run, _, pull = b.run("RETURN 1 AS x")
    assert (run.name, pull.name) == ("SUCCESS", "SUCCESS")
    b.close()
