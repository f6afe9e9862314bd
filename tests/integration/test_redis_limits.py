"""redis.max_connections_per_tenant, end to end with redis-py and raw RESP against a real
redis-server: a limit of 2 per tenant on the listener.

  - the third connection of tenant A is refused at AUTH (-NOPERM tenantgate: too many
    connections for this tenant) and closed; tenant B is unaffected
  - a closed connection gives its slot back
  - a re-AUTH as a tenant at its limit fails and leaves the session as it was; a re-AUTH as
    another tenant with room moves the slot (the old tenant gets one back)
  - the refusals are counted in /metrics (reason="max_connections")
"""

import time

import pytest
import redis

import tghelpers as h
from redis_fixture import Raw, is_err, redis_env

LIMIT_ERR = b"NOPERM tenantgate: too many connections for this tenant"


@pytest.fixture(scope="module")
def env():
    with redis_env(listener_extra={"redis": {"max_connections_per_tenant": 2}},
                   admin_port=h.free_port()) as e:
        yield e


def opened(env, tenant):
    c = env.client(tenant)
    assert c.ping()
    return c


def close(*clients):
    """Closes redis-py clients' sockets (redis-py 4.3's close() keeps the pool's connections)."""
    for c in clients:
        c.close()
        c.connection_pool.disconnect()


def refused_raw(env, tenant):
    """AUTH as tenant on a bare connection: refused with the limit error, then closed."""
    r = Raw(env.port)
    reply = r.cmd("AUTH", env.tokens.mint(tenant))
    closed = r.closed()
    r.close()
    return reply == ("ERR", LIMIT_ERR) and closed


def eventually(pred, what):
    deadline = time.monotonic() + h.scaled(10)
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(what)


def admits(env, tenant):
    """True when a new connection of tenant is accepted now (and closes it again)."""
    r = Raw(env.port)
    try:
        ok = r.cmd("AUTH", env.tokens.mint(tenant)) == b"OK"
    finally:
        r.close()
    return ok


def rejected(env):
    return h.scrape(env.proxy.admin_port, "tenantgate_messages_rejected_total", listener="redis",
                    reason="max_connections")


def test_third_connection_refused_other_tenant_unaffected(env):
    before = rejected(env)
    a1, a2 = opened(env, "alice"), opened(env, "alice")
    a1.set("k", "A")
    # redis-py: the AUTH of the third connection fails with the limit error
    a3 = env.client("alice")
    with pytest.raises(redis.exceptions.ResponseError) as e:
        a3.ping()
    assert "too many connections for this tenant" in str(e.value)
    # raw: the same answer, then the connection is closed (as PostgreSQL's FATAL 53300)
    assert refused_raw(env, "alice")
    # tenant B has its own two slots
    b1, b2 = opened(env, "bob"), opened(env, "bob")
    assert b1.get("k") is None and b2.set("k", "B")
    assert refused_raw(env, "bob")
    # the established sessions are untouched
    assert a2.get("k") == b"A" and b1.get("k") == b"B"
    assert env.direct.get("t:alice:k") == b"A"
    assert rejected(env) == before + 3
    close(a1, a2, a3, b1, b2)


def test_closed_connection_frees_its_slot(env):
    eventually(lambda: admits(env, "carol"), "carol's slots were not given back")
    c1, c2 = opened(env, "carol"), opened(env, "carol")
    assert refused_raw(env, "carol")
    close(c1)  # the proxy notices the close and gives the slot back
    eventually(lambda: admits(env, "carol"), "a closed connection kept its slot")
    c3 = opened(env, "carol")
    assert c3.set("x", "1") and c2.get("x") == b"1"
    assert refused_raw(env, "carol")
    close(c2, c3)


def test_reauth_moves_the_slot(env):
    d1, d2 = opened(env, "dave"), opened(env, "dave")
    d1.set("mine", "dave")
    e1 = Raw(env.port)
    assert e1.cmd("AUTH", env.tokens.mint("erin")) == b"OK"
    assert e1.cmd("SET", "mine", "erin") == b"OK"
    # dave is at his limit: erin's re-AUTH as dave fails and she stays erin
    assert e1.cmd("AUTH", env.tokens.mint("dave")) == ("ERR", LIMIT_ERR)
    assert e1.cmd("GET", "mine") == b"erin"
    assert e1.cmd("PING") == b"PONG"
    # same for a re-AUTH after RESET: the session stays unauthenticated, its slot stays erin's
    assert e1.cmd("RESET") == b"RESET"
    assert e1.cmd("AUTH", env.tokens.mint("dave")) == ("ERR", LIMIT_ERR)
    assert is_err(e1.cmd("GET", "mine"), b"NOAUTH")
    assert e1.cmd("AUTH", env.tokens.mint("erin")) == b"OK"
    assert e1.cmd("GET", "mine") == b"erin"
    # erin holds one slot: one more erin fits, a third does not
    e2 = opened(env, "erin")
    assert refused_raw(env, "erin")
    # dave closes one: erin's first session becomes dave's, and erin gets a slot back
    close(d2)
    deadline = time.monotonic() + h.scaled(10)
    while True:
        reply = e1.cmd("AUTH", env.tokens.mint("dave"))
        if reply == b"OK" or time.monotonic() > deadline:
            break
        assert reply == ("ERR", LIMIT_ERR)
        time.sleep(0.05)
    assert reply == b"OK"
    assert e1.cmd("GET", "mine") == b"dave"
    assert refused_raw(env, "dave")  # dave: d1 and the moved session
    e3 = opened(env, "erin")  # erin: e2 and this one
    assert e3.get("mine") == b"erin"
    assert refused_raw(env, "erin")
    e1.close()
    close(d1, e2, e3)
