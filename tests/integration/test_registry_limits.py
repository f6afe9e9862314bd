"""Per-tenant limits (tenants.limits, overridden by the tenant's registry hash), per protocol
listener, against real servers: PostgreSQL through psycopg and raw v3 messages, Redis through
redis-py and raw RESP; two tenantgate processes sharing the registry (tg0 has
tenants.limits.max_connections: 3 as its default).

  - connections: a hash's max_connections is per listener and process (53300 / -NOPERM);
    tg0's default applies to tenants without an override; other tenants are unaffected
  - messages_per_second: the statements over the bucket get 53400 (simple and extended
    protocol: a refused Execute leaves the prepared statement usable), Redis commands
    -BUSY (in request order; inside MULTI the EXEC aborts); the session survives and the
    next request after a pause passes
  - max_inflight_bytes: requests behind a slow one (BLPOP / pg_sleep) are refused once the
    tenant has too many bytes in flight, and pass again once the replies are in
  - global_messages_per_second: one budget for both processes (what tg0 used, tg1 cannot)
"""

import time

import psycopg
import pytest
import redis

import pg_fixture as pf
import tghelpers as h
from redis_fixture import Raw, is_err
from registry_fixture import PREFIX, registry_env


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    procs = ({"limits": {"max_connections": 3}}, {})
    with registry_env(tmp_path_factory.mktemp("limits"), procs=procs) as e:
        yield e


def close_all(*conns):
    for c in conns:
        if isinstance(c, redis.Redis):
            c.connection_pool.disconnect()
        else:
            c.close()


def test_connection_limit_per_listener(env):
    t, other = "conn-a", "conn-other"
    env.registry.set_tenant(t, status="active", max_connections=2)
    p0, p1 = env.procs
    pgs = [p0.pg(t), p0.pg(t)]
    with pf.RawPg(p0.pg_port()) as raw:
        f = raw.login_error(env.tokens.mint(t))
    assert (f["C"], f["M"]) == ("53300", f"tenantgate: too many connections for tenant {t}"), f
    rds = [p0.raw_redis(t), p0.raw_redis(t)]
    r = p0.raw_redis(other)  # another tenant: its own slots
    x = Raw(p0.redis_port())
    assert x.cmd("AUTH", env.tokens.mint(t)) == \
        ("ERR", b"NOPERM tenantgate: too many connections for this tenant")
    assert x.closed()
    x.close()
    # Per process: tg1 has its own count.
    c = p1.pg(t)
    assert c.execute("SELECT 1").fetchone() == (1,)
    close_all(c)
    r.close()
    # A closed session gives its slot back, once tenantgate has read the close: a connection
    # opened at once may still find the slot taken (bounded retry, not a sleep).
    pgs.pop().close()
    deadline = time.monotonic() + 5
    while True:
        try:
            c = p0.pg(t)
            break
        except psycopg.OperationalError as e:
            if "too many connections" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert c.execute("SELECT current_setting('app.tenant_id')").fetchone() == (t,)
    close_all(c, *pgs)
    for x in rds:
        x.close()
    # Without an override, tg0's tenants.limits.max_connections (3) applies on each listener.
    d = "conn-default"
    held = [p0.pg(d) for _ in range(3)]
    with pf.RawPg(p0.pg_port()) as raw:
        assert raw.login_error(env.tokens.mint(d))["C"] == "53300"
    close_all(*held)
    assert p0.metric("tenantgate_messages_rejected_total", listener="pg",
                     reason="max_connections") >= 2


def burst(fn, n):
    """Runs fn n times; returns (passed, errors)."""
    ok, errs = 0, []
    for _ in range(n):
        try:
            fn()
            ok += 1
        except (psycopg.Error, redis.ResponseError) as e:
            errs.append(e)
    return ok, errs


def test_rate_limit_postgres(env):
    t = "rate-pg"
    env.registry.set_tenant(t, status="active", messages_per_second=5, burst=5)
    p = env.procs[0]
    c = p.pg(t)
    ok, errs = burst(lambda: c.execute("SELECT 1"), 20)
    assert 5 <= ok <= 8, ok  # the burst, plus what refilled meanwhile
    assert errs
    for e in errs:
        assert isinstance(e, psycopg.errors.ConfigurationLimitExceeded), e
        assert e.sqlstate == "53400"
        assert str(e).startswith("tenantgate: rate limit exceeded for tenant"), e
    time.sleep(1.2)
    assert c.execute("SELECT current_setting('app.tenant_id')").fetchone() == (t,)
    # Extended protocol: a refused Execute leaves the prepared statement alone.
    time.sleep(1.2)
    ok, errs = burst(lambda: c.execute("SELECT %s::int", (7,), prepare=True), 20)
    assert ok >= 1 and errs
    assert all(e.sqlstate == "53400" for e in errs), errs
    time.sleep(1.2)
    assert c.execute("SELECT %s::int", (8,), prepare=True).fetchone() == (8,)
    close_all(c)
    # Inside a transaction the refusal aborts it, as any error would; ROLLBACK is never
    # refused (on a connection without prepared statements: psycopg's rollback would
    # also DEALLOCATE them, an ordinary statement).
    time.sleep(1.2)
    c = p.pg(t, autocommit=False)
    with pytest.raises(psycopg.errors.ConfigurationLimitExceeded):
        for i in range(20):
            c.execute("INSERT INTO documents (body) VALUES (%s)", (f"rate-{i}",))
    c.rollback()
    c.autocommit = True
    time.sleep(1.2)
    assert c.execute("SELECT count(*) FROM documents WHERE body LIKE 'rate-%'").fetchone() == (0,)
    close_all(c)
    assert p.metric("tenantgate_messages_rejected_total", listener="pg", reason="rate_limit") >= 3


def test_rate_limit_redis(env):
    t = "rate-rd"
    env.registry.set_tenant(t, status="active", messages_per_second=5, burst=5)
    p = env.procs[1]
    c = p.redis(t)
    ok, errs = burst(lambda: c.get("k"), 20)
    assert 5 <= ok <= 8, ok
    assert errs and all(str(e) == "BUSY tenantgate: rate limit exceeded, retry later" or
                        str(e).endswith("rate limit exceeded, retry later") for e in errs), errs
    time.sleep(1.2)
    assert c.set("k", "v") and c.get("k") == b"v"
    close_all(c)
    # Pipelined on one connection: the replies stay in request order.
    time.sleep(1.2)
    raw = p.raw_redis(t)  # its AUTH is not a forwarded command: the bucket is full
    for i in range(8):
        raw.send("INCR", "n")
    replies = [raw.read() for _ in range(8)]
    assert replies[:5] == [1, 2, 3, 4, 5], replies
    assert all(is_err(x, b"BUSY tenantgate: rate limit exceeded") for x in replies[6:]), replies
    # Inside MULTI: the refused command aborts the transaction (MULTI/EXEC themselves pass).
    time.sleep(1.2)
    for i in range(5):
        assert raw.cmd("INCR", "n") == 6 + i
    assert raw.cmd("MULTI") == b"OK"
    assert is_err(raw.cmd("INCR", "n"), b"BUSY")
    assert is_err(raw.cmd("EXEC"), b"EXECABORT")
    time.sleep(1.2)
    assert raw.cmd("GET", "n") == b"10"
    raw.close()


def test_inflight_bytes(env):
    t = "infl"
    env.registry.set_tenant(t, status="active", max_inflight_bytes=60000)
    p = env.procs[0]
    value = "x" * 10000
    # Redis: 20 SETs of 10 KB queued behind a BLPOP that blocks the backend for a second.
    raw = p.raw_redis(t)
    raw.send("BLPOP", "nothing", "1")
    for i in range(20):
        raw.send("SET", f"big{i}", value)
    assert raw.read() is None  # BLPOP timed out
    replies = [raw.read() for _ in range(20)]
    passed = [x for x in replies if x == b"OK"]
    refused = [x for x in replies if is_err(x, b"BUSY tenantgate: too many request bytes")]
    assert len(passed) + len(refused) == 20, replies
    assert 1 <= len(passed) <= 6 and refused, replies
    assert raw.cmd("SET", "after", value) == b"OK"  # answered: nothing in flight any more
    raw.close()
    # PostgreSQL: 10 queries of 10 KB behind a pg_sleep.
    rp = p.raw_pg(t)
    batch = pf.query_msg("SELECT pg_sleep(0.5)")
    for i in range(10):
        batch += pf.query_msg(f"SELECT length('{value}') AS n{i}")
    rp.send(batch)
    results = [pf.summarize(rp.read_until_ready(timeout=h.scaled(10))) for _ in range(11)]
    errors = [r for r in results if r[0][0] == "E"]
    assert errors and all(r[0][1:] == ("53400", "tenantgate: too many request bytes in flight "
                                              "for tenant") for r in errors), results
    assert len(errors) < 10
    assert pf.summarize(rp.query(f"SELECT length('{value}')"))[0] == ("D", ("10000",))
    rp.close()
    assert p.metric("tenantgate_messages_rejected_total", reason="inflight_bytes") >= 2


def test_global_rate_limit_is_shared_by_processes(env):
    t = "glob"
    env.registry.set_tenant(t, status="active", global_messages_per_second=10)
    p0, p1 = env.procs
    b = p1.raw_redis(t)
    time.sleep(0.4)  # tg1's flusher has seen the tenant's window
    a = p0.raw_redis(t)
    a_replies = [a.cmd("GET", "k") for _ in range(15)]
    a_ok = sum(1 for x in a_replies if not is_err(x))
    assert a_ok >= 5, a_replies
    assert any(is_err(x, b"BUSY tenantgate: global rate limit exceeded") for x in a_replies)
    time.sleep(0.4)  # both flushers have run: the registry holds tg0's count, tg1 knows it
    b_replies = [b.cmd("GET", "k") for _ in range(10)]
    b_ok = sum(1 for x in b_replies if not is_err(x))
    # A per-process limit would let all 10 through on tg1.
    assert b_ok <= 4, b_replies
    keys = env.registry.r().keys(f"{PREFIX}rate:redis:{t}:*")
    assert keys and sum(int(env.registry.r().get(k) or 0) for k in keys) >= a_ok
    time.sleep(2.2)
    assert not is_err(b.cmd("GET", "k"))
    a.close()
    b.close()
    assert p1.metric("tenantgate_messages_rejected_total", listener="redis",
                     reason="global_rate_limit") >= 1
