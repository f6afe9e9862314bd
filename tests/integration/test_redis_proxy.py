"""`protocol: redis` end to end: a throwaway redis-server behind tenantgate, driven by
redis-py (RESP2), raw sockets (RESP3 / HELLO 3), redis-cli and redis-benchmark.

  client --AUTH <jwt>--> tenantgate (key_prefix "t:{tenant}:") --AUTH svc--> redis-server
  every isolation test: tenant A writes, tenant B tries, A's data is checked unchanged and
  the raw keys in redis-server (read directly, as the service user) carry "t:<tenant>:".
"""

import os
import shutil
import socket
import subprocess
import threading
import time

import pytest
import redis

import tghelpers as h
from redis_fixture import Raw, redis_env  # noqa: F401  (Raw: for test_redis_pubsub)

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
REDIS_BENCH = shutil.which("redis-benchmark") or "/usr/bin/redis-benchmark"


@pytest.fixture(scope="module")
def env():
    with redis_env() as e:
        yield e


def raw_keys(env, tenant):
    return sorted(k for k in env.direct.keys(f"t:{tenant}:*"))


def seed_a(env, tenant="alice"):
    a = env.client(tenant)
    a.set("secret", "A-DATA")
    a.hset("h", mapping={"f": "A"})
    return a


def assert_a_intact(env, tenant="alice"):
    assert env.direct.get(f"t:{tenant}:secret") == b"A-DATA"
    assert env.direct.hget(f"t:{tenant}:h", "f") == b"A"


# ---- authentication ----------------------------------------------------------------------------


def test_noauth_before_auth(env):
    r = env.raw()
    assert r.cmd("GET", "x") == ("ERR", b"NOAUTH Authentication required.")
    err = r.cmd("HELLO", "3")
    assert err[0] == "ERR" and err[1].startswith(b"NOAUTH HELLO must be called")
    assert r.cmd("PING") == ("ERR", b"NOAUTH Authentication required.")
    assert r.cmd("AUTH", "not-a-token")[1].startswith(b"WRONGPASS tenantgate:")
    assert r.cmd("QUIT") == b"OK"
    assert r.closed()


def test_auth_forms_and_prefix(env):
    t = env.tokens.mint("bob")
    r = env.raw()
    assert r.cmd("AUTH", t) == b"OK"
    assert r.cmd("SET", "k1", "v1") == b"OK"
    assert r.cmd("AUTH", "someuser", t) == b"OK"
    assert r.cmd("GET", "k1") == b"v1"
    r.close()
    assert env.direct.get("t:bob:k1") == b"v1"
    assert env.direct.get("k1") is None
    # HELLO 3 AUTH: the backend's HELLO reply (a map), then RESP3 replies
    r = env.raw()
    hello = r.cmd("HELLO", "3", "AUTH", "default", t, "SETNAME", "app1")
    assert isinstance(hello, dict) and hello[b"proto"] == 3
    assert r.cmd("HGETALL", "nohash") == {}
    assert r.cmd("GET", "k1") == b"v1"
    assert r.cmd("CLIENT", "GETNAME") == b"app1"
    r.close()
    # redis-py with a username
    c = env.client(token=t, username="whoever")
    assert c.get("k1") == b"v1"


def test_bad_token_leaves_session(env):
    a = seed_a(env)
    r = env.raw()
    assert r.cmd("AUTH", env.tokens.mint("carol")) == b"OK"
    r.cmd("SET", "mine", "c")
    bad = env.tokens.mint("alice", secret="x" * 64)
    assert r.cmd("AUTH", bad)[1].startswith(b"WRONGPASS tenantgate:")
    assert r.cmd("AUTH", env.tokens.mint("alice", ttl=-3600))[1].startswith(b"WRONGPASS")
    assert r.cmd("GET", "mine") == b"c"
    assert r.cmd("GET", "secret") is None
    assert_a_intact(env)
    a.close()


def test_reauth_switches_keyspace(env):
    seed_a(env)
    r = env.raw()
    assert r.cmd("AUTH", env.tokens.mint("dave")) == b"OK"
    r.cmd("SET", "x", "dave-x")
    r.cmd("MULTI")
    assert r.cmd("AUTH", env.tokens.mint("dave"))[1].startswith(b"NOPERM")
    r.cmd("DISCARD")
    assert r.cmd("AUTH", env.tokens.mint("erin")) == b"OK"
    assert r.cmd("GET", "x") is None
    r.cmd("SET", "x", "erin-x")
    assert r.cmd("AUTH", env.tokens.mint("dave")) == b"OK"
    assert r.cmd("GET", "x") == b"dave-x"
    assert env.direct.get("t:erin:x") == b"erin-x"
    assert_a_intact(env)


def test_reset_deauthenticates(env):
    r = env.raw()
    assert r.cmd("AUTH", env.tokens.mint("frank")) == b"OK"
    r.cmd("SET", "x", "1")
    r.send("MULTI")
    r.send("SET", "x", "2")
    r.send("RESET")
    r.send("GET", "x")
    assert r.read() == b"OK"
    assert r.read() == b"QUEUED"
    assert r.read() == b"RESET"
    assert r.read() == ("ERR", b"NOAUTH Authentication required.")
    assert r.cmd("AUTH", env.tokens.mint("frank")) == b"OK"
    assert r.cmd("GET", "x") == b"1"
    # RESP3 goes back to RESP2 on RESET
    assert isinstance(r.cmd("HELLO", "3"), dict)
    assert r.cmd("RESET") == b"RESET"
    assert r.cmd("AUTH", env.tokens.mint("frank")) == b"OK"
    assert r.cmd("HGETALL", "none") == []


# ---- data types ------------------------------------------------------------------------------


def test_data_types(env):
    c = env.client("gina")
    c.set("s", "v", ex=100)
    assert c.get("s") == b"v"
    assert c.incr("n") == 1
    c.mset({"m1": "1", "m2": "2"})
    assert c.mget(["m1", "m2", "m3"]) == [b"1", b"2", None]
    c.hset("h", mapping={"a": "1", "b": "2"})
    assert c.hgetall("h") == {b"a": b"1", b"b": b"2"}
    c.rpush("l", "a", "b", "c")
    assert c.lrange("l", 0, -1) == [b"a", b"b", b"c"]
    assert c.lmove("l", "l2", "LEFT", "RIGHT") == b"a"
    c.sadd("s1", "x", "y")
    c.sadd("s2", "y", "z")
    assert c.sinter(["s1", "s2"]) == {b"y"}
    assert c.sinterstore("s3", ["s1", "s2"]) == 1
    c.zadd("z", {"a": 1, "b": 2})
    assert c.zrange("z", 0, -1, withscores=True) == [(b"a", 1.0), (b"b", 2.0)]
    assert c.bzpopmin(["nothing", "z"], timeout=1) == (b"z", b"a", 1.0)
    # streams with a consumer group
    c.xadd("st", {"f": "1"})
    c.xadd("st", {"f": "2"})
    c.xgroup_create("st", "g", id="0")
    got = c.xreadgroup("g", "c1", {"st": ">"}, count=10)
    assert [name for name, _ in got] == [b"st"] and len(got[0][1]) == 2
    assert c.xack("st", "g", got[0][1][0][0]) == 1
    got = c.xread({"st": "0"})
    assert got[0][0] == b"st"
    raw = raw_keys(env, "gina")
    for k in [b"s", b"n", b"h", b"l2", b"s3", b"z", b"st"]:
        assert b"t:gina:" + k in raw
    assert not any(k.startswith(b"t:gina:t:") for k in raw)


def test_blocking_blpop(env):
    c = env.client("hank")
    c.delete("q")

    def push():
        time.sleep(0.3)
        env.client("hank").rpush("q", "job")

    th = threading.Thread(target=push)
    th.start()
    assert c.blpop(["other", "q"], timeout=5) == (b"q", b"job")
    th.join()
    assert c.blpop(["q"], timeout=0.1) is None


def test_keys_and_scan_show_only_own(env):
    seed_a(env)
    env.direct.set("unprefixed", "X")
    env.direct.set("t:alicex", "X")
    b = env.client("ivan")
    b.set("one", "1")
    b.set("t:alice:secret", "fake")  # embeds A's prefix text: stays inside B's prefix
    for pat in ["*", "t:*", "*secret*", "t:alice:*", "[a-z]*", "\\*", "*:*"]:
        for k in b.keys(pat):
            assert not k.startswith(b"t:ivan:")
        assert b"A-DATA" not in [b.get(k) for k in b.keys(pat)]
    assert sorted(b.keys("*")) == [b"one", b"t:alice:secret"]
    assert sorted(b.scan_iter()) == [b"one", b"t:alice:secret"]
    assert sorted(b.scan_iter(match="*")) == [b"one", b"t:alice:secret"]
    assert list(b.scan_iter(match="t:alice:*")) == [b"t:alice:secret"]
    assert b.get("t:alice:secret") == b"fake"
    assert env.direct.get("t:ivan:t:alice:secret") == b"fake"
    assert b.exists("unprefixed") == 0
    assert_a_intact(env)


def test_refused(env):
    seed_a(env)
    b = env.client("judy")
    refused = [
        ["FLUSHALL"], ["FLUSHDB"], ["CONFIG", "GET", "*"], ["CONFIG", "SET", "requirepass", "x"],
        ["DBSIZE"], ["RANDOMKEY"], ["SELECT", "1"], ["SWAPDB", "0", "1"], ["MOVE", "k", "1"],
        ["DEBUG", "SLEEP", "1"], ["SHUTDOWN"], ["CLIENT", "LIST"], ["CLIENT", "KILL", "ID", "1"],
        ["ACL", "LIST"], ["MONITOR"], ["EVAL", "return 1", "0"],
        ["SUBSCRIBE", "__keyspace@0__:k"], ["PSUBSCRIBE", "__keyevent@0__:*"],
        ["PUBLISH", "__keyspace@0__:k", "x"], ["PUBSUB", "NUMPAT"],
        ["CLIENT", "REPLY", "OFF"], ["NOSUCHCOMMAND"], ["KEYS"], ["SCRIPT", "FLUSH"],
    ]
    for cmd in refused:
        with pytest.raises(redis.ResponseError) as e:
            b.execute_command(*cmd)
        assert str(e.value).startswith("tenantgate:") or "NOPERM" in str(e.value) or \
            "tenantgate" in str(e.value), cmd
    assert b.execute_command("SELECT", "0") in (True, b"OK")
    assert b.ping()
    assert_a_intact(env)


def test_multi_exec(env):
    c = env.client("kate")
    p = c.pipeline(transaction=True)
    p.set("a", "1").incr("a").get("a")
    assert p.execute() == [True, 2, b"2"]
    r = env.raw()
    r.cmd("AUTH", env.tokens.mint("kate"))
    r.send("MULTI")
    r.send("SET", "b", "queued")
    r.send("FLUSHALL")
    r.send("SET", "c", "queued")
    r.send("EXEC")
    r.send("GET", "b")
    assert r.read() == b"OK"
    assert r.read() == b"QUEUED"
    assert r.read()[1].startswith(b"NOPERM tenantgate:")
    assert r.read() == b"QUEUED"
    assert r.read() == ("ERR", b"EXECABORT Transaction discarded because of previous errors.")
    assert r.read() is None
    assert env.direct.get("t:kate:b") is None and env.direct.get("t:kate:c") is None
    # KEYS inside MULTI (reply needs rewriting) is refused, fail-closed
    assert r.cmd("MULTI") == b"OK"
    assert r.cmd("KEYS", "*")[1].startswith(b"NOPERM")
    assert r.cmd("EXEC")[1].startswith(b"EXECABORT")
    # WATCH keys are prefixed
    assert r.cmd("WATCH", "a") == b"OK"
    env.direct.set("t:kate:a", "changed")
    r.cmd("MULTI")
    r.cmd("SET", "a", "mine")
    assert r.cmd("EXEC") is None
    assert env.direct.get("t:kate:a") == b"changed"


def test_pipeline_10000_with_denials(env):
    seed_a(env)
    c = env.client("leo")
    p = c.pipeline(transaction=False)
    for i in range(10000):
        if i % 7 == 3:
            p.execute_command("FLUSHALL")
        elif i % 2:
            p.set(f"k{i % 100}", str(i))
        else:
            p.get(f"k{(i - 1) % 100}")
    res = p.execute(raise_on_error=False)
    assert len(res) == 10000
    last = {}
    for i, v in enumerate(res):
        if i % 7 == 3:
            assert isinstance(v, redis.ResponseError) and "tenantgate" in str(v), (i, v)
        elif i % 2:
            assert v is True
            last[i % 100] = str(i).encode()
        else:
            assert v == last.get((i - 1) % 100), i
    assert_a_intact(env)


def test_large_value(env):
    c = env.client("mia")
    big = os.urandom(25 * 1024 * 1024).hex().encode()[: 50 * 1024 * 1024]
    assert c.set("big", big)
    assert c.get("big") == big
    assert c.strlen("big") == len(big)
    assert env.direct.strlen("t:mia:big") == len(big)
    c.delete("big")


def test_inline_commands(env):
    s = socket.create_connection(("127.0.0.1", env.port), timeout=5)
    t = env.tokens.mint("nina")
    s.sendall(f"AUTH {t}\r\nSET inl val\r\nGET inl\r\nKEYS *\r\n".encode())
    data = b""
    deadline = time.time() + 5
    while data.count(b"\r\n") < 6 and time.time() < deadline:
        data += s.recv(4096)
    assert data == b"+OK\r\n+OK\r\n$3\r\nval\r\n*1\r\n$3\r\ninl\r\n"
    s.close()
    assert env.direct.get("t:nina:inl") == b"val"


def test_protocol_error_closes(env):
    r = env.raw()
    r.s.sendall(b"*2\r\n$3\r\nGET\r\n$x\r\n")
    err = r.read()
    assert err[0] == "ERR" and err[1].startswith(b"ERR Protocol error")
    assert r.closed()


def test_redis_cli_and_benchmark(env):
    t = env.tokens.mint("olga")
    base = [REDIS_CLI, "-h", "127.0.0.1", "-p", str(env.port), "--no-auth-warning", "-a", t]
    out = subprocess.run(base + ["SET", "cli", "hello"], capture_output=True, timeout=30)
    assert out.stdout.strip() == b"OK"
    out = subprocess.run(base + ["GET", "cli"], capture_output=True, timeout=30)
    assert out.stdout.strip() == b"hello"
    out = subprocess.run(base + ["-3", "HGETALL", "none"], capture_output=True, timeout=30)
    assert out.returncode == 0
    out = subprocess.run(base + ["--scan"], capture_output=True, timeout=30)
    assert out.stdout.split() == [b"cli"]
    out = subprocess.run(base + ["FLUSHALL"], capture_output=True, timeout=30)
    assert b"NOPERM" in out.stdout + out.stderr
    bench = subprocess.run(
        [REDIS_BENCH, "-h", "127.0.0.1", "-p", str(env.port), "-a", t, "-n", "20000",
         "-c", "10", "-P", "16", "-t", "set,get,lpush", "-q"],
        capture_output=True, timeout=120)
    assert bench.returncode == 0, bench.stderr
    assert b"requests per second" in bench.stdout
    raw = env.direct.keys("key:*") + env.direct.keys("mylist")
    assert raw == []
    assert env.direct.exists("t:olga:key:__rand_int__") == 1


def test_token_expiry_closes(env):
    r = env.raw()
    assert r.cmd("AUTH", env.tokens.mint("pete", ttl=2)) == b"OK"
    assert r.cmd("SET", "x", "1") == b"OK"
    r.s.settimeout(h.scaled(10))
    assert r.read() == ("ERR", b"ERR tenantgate: token expired")
    assert r.closed()


def test_resp3_reauth_other_tenant(env):
    seed_a(env)
    r = env.raw()
    assert isinstance(r.cmd("HELLO", "3", "AUTH", "u", env.tokens.mint("quinn")), dict)
    r.cmd("SET", "x", "q")
    assert r.cmd("AUTH", env.tokens.mint("rita")) == b"OK"
    assert r.cmd("HGETALL", "none") == {}  # still RESP3 after the backend RESET
    assert r.cmd("GET", "x") is None
    assert r.cmd("KEYS", "*") == []
    assert_a_intact(env)
