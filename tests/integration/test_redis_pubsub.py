"""`protocol: redis` pub/sub end to end: SUBSCRIBE/PSUBSCRIBE/SSUBSCRIBE, PUBLISH/SPUBLISH,
PUBSUB CHANNELS|NUMSUB|SHARDCHANNELS|SHARDNUMSUB through tenantgate, in RESP2 (redis-py and
raw sockets) and RESP3 (raw sockets, pushes interleaved with replies).

  client SUBSCRIBE news --> tenantgate --SUBSCRIBE t:<tenant>:news--> redis-server
  client <-- [subscribe, news, 1] / [message, news, payload] <-- prefix stripped
  a name without the tenant's prefix never reaches the client; the raw channel names are
  checked on a direct connection (PUBSUB CHANNELS as the service user).
"""

import time

import pytest
import redis

import tghelpers as h
from test_redis_proxy import Raw, env  # noqa: F401  (env is the shared module fixture)


class RawT(Raw):
    """Raw with the top-level type byte: read_t() -> (b'>' | b'*' | ..., value)."""

    def read_t(self):
        while not self.buf:
            self._fill()
        return self.buf[:1], self.read()

    def auth(self, env, tenant, resp3=False):
        t = env.tokens.mint(tenant)
        if resp3:
            assert isinstance(self.cmd("HELLO", "3", "AUTH", "default", t), dict)
        else:
            assert self.cmd("AUTH", t) == b"OK"
        return self

    def nothing(self, wait=0.3):
        """True when nothing arrives within `wait` seconds."""
        if self.buf:
            return False
        self.s.settimeout(wait)
        try:
            d = self.s.recv(65536)
            self.buf += d
            return False
        except OSError:
            return True
        finally:
            self.s.settimeout(h.scaled(10))


def rawt(env, tenant, resp3=False):
    return RawT(env.port).auth(env, tenant, resp3)


def get_msg(p, timeout=None):
    """The next non-None message of a redis-py PubSub, or None after timeout."""
    deadline = time.time() + (timeout if timeout is not None else h.scaled(5))
    while time.time() < deadline:
        m = p.get_message(timeout=max(0.01, deadline - time.time()))
        if m is not None:
            return m
    return None


def raw_channels(env, pattern="*"):
    return sorted(env.direct.pubsub_channels(pattern))


# ---- RESP2 (redis-py) ------------------------------------------------------------------------


def test_subscribe_publish_roundtrip(env):
    a = env.client("psa")
    p = a.pubsub()
    p.subscribe("news")
    assert get_msg(p) == {"type": "subscribe", "pattern": None, "channel": b"news", "data": 1}
    assert b"t:psa:news" in raw_channels(env)
    assert b"news" not in raw_channels(env)
    pub = env.client("psa")
    assert pub.publish("news", "hello") == 1
    assert get_msg(p) == {"type": "message", "pattern": None, "channel": b"news",
                          "data": b"hello"}
    # the channel the server saw carries the prefix
    assert env.direct.pubsub_numsub("t:psa:news") == [(b"t:psa:news", 1)]
    assert env.direct.publish("t:psa:news", "from-server") == 1
    assert get_msg(p)["data"] == b"from-server"
    p.unsubscribe("news")
    assert get_msg(p) == {"type": "unsubscribe", "pattern": None, "channel": b"news", "data": 0}
    p.close()


def test_other_tenant_same_channel_gets_nothing(env):
    b = env.client("psb").pubsub()
    b.subscribe("shared")
    assert get_msg(b)["type"] == "subscribe"
    a = env.client("psa2")
    assert a.publish("shared", "A-SECRET") == 0  # nobody in A's namespace listens
    env.direct.publish("shared", "unprefixed")  # a name outside every tenant
    assert get_msg(b, timeout=0.5) is None
    assert env.client("psb").publish("shared", "own") == 1
    assert get_msg(b)["data"] == b"own"
    # a channel name that embeds A's prefix text stays inside B's namespace
    b.subscribe("t:psa2:shared")
    assert get_msg(b)["channel"] == b"t:psa2:shared"
    assert a.publish("shared", "A-SECRET") == 0
    assert get_msg(b, timeout=0.4) is None
    assert env.direct.pubsub_numsub("t:psb:t:psa2:shared") == [(b"t:psb:t:psa2:shared", 1)]
    b.close()


def test_psubscribe_star_only_own(env):
    b = env.client("psc").pubsub()
    b.psubscribe("*")
    assert get_msg(b) == {"type": "psubscribe", "pattern": None, "channel": b"*", "data": 1}
    assert env.direct.pubsub_numpat() >= 1
    a = env.client("psd")
    for ch in ["x", "t:psc:x", "secret"]:
        a.publish(ch, "A-SECRET")
    env.direct.publish("loose", "no-prefix")
    env.direct.publish("t:psd:x", "other-tenant")
    assert get_msg(b, timeout=0.5) is None
    env.client("psc").publish("mine", "m")
    assert get_msg(b) == {"type": "pmessage", "pattern": b"*", "channel": b"mine", "data": b"m"}
    b.close()


@pytest.mark.parametrize("pattern", ["t:*", "*:secret", "[a-z]*", "*", "t:psf:*", "\\*", "?*"])
def test_glob_tricks_never_match_other_tenant(env, pattern):
    b = env.client("pse").pubsub()
    b.psubscribe(pattern)
    assert get_msg(b)["channel"] == pattern.encode()
    a = env.client("psf")
    for ch in ["secret", "x:secret", "t:psf:secret", "abc", "*"]:
        a.publish(ch, "A-SECRET")
    assert get_msg(b, timeout=0.4) is None
    b.close()


def test_glob_own_tenant_pattern_matches(env):
    b = env.client("psg").pubsub()
    b.psubscribe("*:secret")
    get_msg(b)
    env.client("psg").publish("x:secret", "mine")
    env.client("psg").publish("nomatch", "no")
    assert get_msg(b) == {"type": "pmessage", "pattern": b"*:secret", "channel": b"x:secret",
                          "data": b"mine"}
    assert get_msg(b, timeout=0.3) is None
    b.close()


def test_pubsub_channels_and_numsub(env):
    a = env.client("psh")
    pa = a.pubsub()
    pa.subscribe("c1", "c2")
    get_msg(pa), get_msg(pa)
    pb = env.client("psi").pubsub()
    pb.subscribe("c1", "zz")
    get_msg(pb), get_msg(pb)
    assert sorted(a.pubsub_channels()) == [b"c1", b"c2"]
    assert sorted(a.pubsub_channels("c*")) == [b"c1", b"c2"]
    assert a.pubsub_channels("t:*") == []
    assert a.pubsub_channels("*zz*") == []
    b = env.client("psi")
    assert sorted(b.pubsub_channels()) == [b"c1", b"zz"]
    assert a.pubsub_numsub("c1", "c2", "zz") == [(b"c1", 1), (b"c2", 1), (b"zz", 0)]
    assert b.pubsub_numsub("c1", "c2") == [(b"c1", 1), (b"c2", 0)]
    raw = raw_channels(env, "t:ps[hi]:*")
    assert raw == [b"t:psh:c1", b"t:psh:c2", b"t:psi:c1", b"t:psi:zz"]
    with pytest.raises(redis.ResponseError) as e:
        a.execute_command("PUBSUB", "NUMPAT")
    assert "NOPERM" in str(e.value) or "tenantgate" in str(e.value)
    pa.close()
    pb.close()


def test_keyspace_notification_channels_refused(env):
    r = rawt(env, "psj")
    for cmd in [("SUBSCRIBE", "__keyspace@0__:k"), ("PSUBSCRIBE", "__keyevent@0__:*"),
                ("SSUBSCRIBE", "__keyspace@0__:k"), ("PUBLISH", "__keyevent@0__:set", "x"),
                ("SUBSCRIBE", "ok", "__keyspace@0__:k"), ("PUBSUB", "NUMPAT")]:
        err = r.cmd(*cmd)
        assert err[0] == "ERR" and err[1].startswith(b"NOPERM tenantgate:"), cmd
    # nothing was subscribed: the connection is not in subscribed mode
    assert r.cmd("GET", "x") is None


# ---- raw RESP2 ---------------------------------------------------------------------------------


def test_ssubscribe_spublish(env):
    r = rawt(env, "psk")
    assert r.cmd("SSUBSCRIBE", "sh1") == [b"ssubscribe", b"sh1", 1]
    assert sorted(env.direct.execute_command("PUBSUB", "SHARDCHANNELS", "t:psk:*")) == \
        [b"t:psk:sh1"]
    other = rawt(env, "psl")
    assert other.cmd("SSUBSCRIBE", "sh1") == [b"ssubscribe", b"sh1", 1]
    pub = rawt(env, "psk")
    assert pub.cmd("SPUBLISH", "sh1", "hi") == 1
    assert pub.cmd("PUBSUB", "SHARDCHANNELS") == [b"sh1"]
    assert pub.cmd("PUBSUB", "SHARDNUMSUB", "sh1", "nope") == [b"sh1", 1, b"nope", 0]
    assert r.read() == [b"smessage", b"sh1", b"hi"]
    assert other.nothing()
    assert r.cmd("SUNSUBSCRIBE") == [b"sunsubscribe", b"sh1", 0]
    assert r.cmd("GET", "x") is None  # out of subscribed mode
    other.close()


def test_unsubscribe_without_args_and_subscribed_mode(env):
    r = rawt(env, "psm")
    r.send("SUBSCRIBE", "a", "b", "a")
    assert [r.read() for _ in range(3)] == [[b"subscribe", b"a", 1], [b"subscribe", b"b", 2],
                                            [b"subscribe", b"a", 2]]
    assert r.cmd("PSUBSCRIBE", "p*") == [b"psubscribe", b"p*", 3]
    # RESP2 subscribed mode: Redis's own rules, answered by Redis or with its text
    assert r.cmd("PING") == [b"pong", b""]
    assert r.cmd("GET", "x") == ("ERR", b"ERR Can't execute 'get': only (P|S)SUBSCRIBE / "
                                 b"(P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in "
                                 b"this context")
    for cmd in [("SELECT", "0"), ("MULTI",), ("AUTH", env.tokens.mint("psm"))]:
        err = r.cmd(*cmd)
        assert err[0] == "ERR" and err[1].startswith(b"ERR Can't execute '"), cmd
    # UNSUBSCRIBE without arguments: one confirmation per channel, then a pipelined denial
    r.send("UNSUBSCRIBE")
    r.send("FLUSHALL")
    got = [r.read(), r.read()]
    assert sorted(x[1] for x in got) == [b"a", b"b"] and [x[2] for x in got] == [2, 1]
    assert r.read()[1].startswith(b"NOPERM tenantgate:")
    r.send("PUNSUBSCRIBE")
    r.send("UNSUBSCRIBE")
    r.send("PUNSUBSCRIBE", "x", "y")
    r.send("GET", "x")
    assert r.read() == [b"punsubscribe", b"p*", 0]
    assert r.read() == [b"unsubscribe", None, 0]
    assert r.read() == [b"punsubscribe", b"x", 0]
    assert r.read() == [b"punsubscribe", b"y", 0]
    assert r.read() is None
    assert r.cmd("PING") == b"PONG"


def test_pipelined_subscribe_then_denial_order(env):
    r = rawt(env, "psn")
    r.send("SUBSCRIBE", "a", "b")
    r.send("FLUSHALL")
    r.send("PING")
    assert r.read() == [b"subscribe", b"a", 1]
    assert r.read() == [b"subscribe", b"b", 2]
    assert r.read()[1].startswith(b"NOPERM tenantgate:")
    assert r.read() == [b"pong", b""]
    # a message between two subscribe commands stays out of band
    pub = rawt(env, "psn")
    assert pub.cmd("PUBLISH", "a", "m1") == 1
    assert r.read() == [b"message", b"a", b"m1"]
    r.send("SUBSCRIBE", "c")
    r.send("CONFIG", "GET", "*")
    assert r.read() == [b"subscribe", b"c", 3]
    assert r.read()[1].startswith(b"NOPERM tenantgate:")


def test_multi_and_inline(env):
    r = rawt(env, "psv")
    assert r.cmd("MULTI") == b"OK"
    assert r.cmd("SUBSCRIBE", "x")[1].startswith(b"NOPERM tenantgate:")
    assert r.cmd("PUBLISH", "x", "m") == b"QUEUED"
    assert r.cmd("EXEC")[1].startswith(b"EXECABORT")
    sub = rawt(env, "psv")
    sub.s.sendall(b"SUBSCRIBE x\r\n")
    assert sub.read() == [b"subscribe", b"x", 1]
    assert r.cmd("MULTI") == b"OK"
    assert r.cmd("PUBLISH", "x", "m") == b"QUEUED"
    assert r.cmd("EXEC") == [1]
    assert sub.read() == [b"message", b"x", b"m"]
    assert env.direct.pubsub_numsub("t:psv:x") == [(b"t:psv:x", 1)]
    sub.send("QUIT")
    assert sub.read() == b"OK"
    assert sub.closed()


def test_payload_looking_like_pubsub_is_not_reinterpreted(env):
    r = rawt(env, "pso")
    r.cmd("DEL", "l")
    r.cmd("RPUSH", "l", "message", "t:other:x", "payload")
    assert r.cmd("LRANGE", "l", "0", "-1") == [b"message", b"t:other:x", b"payload"]
    r.cmd("RPUSH", "l2", "subscribe", "x", "1")
    assert r.cmd("LRANGE", "l2", "0", "-1") == [b"subscribe", b"x", b"1"]


def test_reset_while_subscribed(env):
    r = rawt(env, "psp")
    assert r.cmd("SUBSCRIBE", "a") == [b"subscribe", b"a", 1]
    assert r.cmd("RESET") == b"RESET"
    assert r.cmd("GET", "x") == ("ERR", b"NOAUTH Authentication required.")
    r.auth(env, "psp")
    assert r.cmd("GET", "x") is None  # no longer in subscribed mode
    assert env.direct.pubsub_numsub("t:psp:a") == [(b"t:psp:a", 0)]
    # pipelined: confirmations, +RESET, then normal replies (no confirmation expected)
    t = env.tokens.mint("psp")
    r.send("SUBSCRIBE", "a", "b")
    r.send("RESET")
    r.send("AUTH", t)
    r.send("SET", "k", "v")
    r.send("GET", "k")
    assert r.read() == [b"subscribe", b"a", 1]
    assert r.read() == [b"subscribe", b"b", 2]
    assert r.read() == b"RESET"
    assert r.read() == b"OK"
    assert r.read() == b"OK"
    assert r.read() == b"v"
    assert rawt(env, "psp").cmd("PUBLISH", "a", "late") == 0
    assert r.nothing()


def test_reauth_while_subscribed(env):
    r = rawt(env, "psq", resp3=True)
    r.send("SUBSCRIBE", "c")
    assert r.read_t() == (b">", [b"subscribe", b"c", 1])
    err = r.cmd("AUTH", env.tokens.mint("psr"))
    assert err == ("ERR", b"NOPERM tenantgate: re-authentication while subscribed is not allowed")
    assert r.cmd("AUTH", env.tokens.mint("psq")) == b"OK"  # same tenant: fine
    assert rawt(env, "psq").cmd("PUBLISH", "c", "still-q") == 1
    assert r.read_t() == (b">", [b"message", b"c", b"still-q"])
    assert r.cmd("UNSUBSCRIBE") == [b"unsubscribe", b"c", 0]
    assert r.cmd("AUTH", env.tokens.mint("psr")) == b"OK"
    assert r.cmd("PUBSUB", "CHANNELS") == []
    # RESET, then another tenant: allowed once the RESET is answered
    r.send("SUBSCRIBE", "c")
    r.read()
    assert r.cmd("RESET") == b"RESET"
    assert r.cmd("AUTH", env.tokens.mint("psq")) == b"OK"


# ---- RESP3 -------------------------------------------------------------------------------------


def test_resp3_pushes_interleaved(env):
    r = rawt(env, "pss", resp3=True)
    r.send("SUBSCRIBE", "ch", "ch2")
    assert r.read_t() == (b">", [b"subscribe", b"ch", 1])
    assert r.read_t() == (b">", [b"subscribe", b"ch2", 2])
    assert r.cmd("SET", "k", "v") == b"OK"  # normal commands keep working
    assert r.cmd("PING") == b"PONG"
    pub = rawt(env, "pss")
    assert pub.cmd("PUBLISH", "ch", "m1") == 1
    r.send("GET", "k")
    got = [r.read_t(), r.read_t()]
    assert got == [(b">", [b"message", b"ch", b"m1"]), (b"$", b"v")]
    assert r.cmd("PSUBSCRIBE", "c*") == [b"psubscribe", b"c*", 3]
    assert pub.cmd("PUBLISH", "ch2", "m2") == 2
    got = sorted([r.read_t(), r.read_t()], key=repr)
    assert got == [(b">", [b"message", b"ch2", b"m2"]),
                   (b">", [b"pmessage", b"c*", b"ch2", b"m2"])]
    # another tenant's publish on the same names: nothing
    assert rawt(env, "pst").cmd("PUBLISH", "ch", "A-SECRET") == 0
    assert r.nothing()
    # pipelined: subscribe confirmations, then a denial, then a reply that needs stripping
    r.send("SUBSCRIBE", "x")
    r.send("FLUSHALL")
    r.send("PUBSUB", "CHANNELS")
    r.send("PUBSUB", "NUMSUB", "ch", "x", "no")
    assert r.read_t() == (b">", [b"subscribe", b"x", 4])
    assert r.read()[1].startswith(b"NOPERM tenantgate:")
    assert sorted(r.read()) == [b"ch", b"ch2", b"x"]
    numsub = r.read()
    if isinstance(numsub, dict):
        assert numsub == {b"ch": 1, b"x": 1, b"no": 0}
    else:
        assert numsub == [b"ch", 1, b"x", 1, b"no", 0]
    r.send("UNSUBSCRIBE")
    got = [r.read_t() for _ in range(3)]
    assert sorted(v[1][1] for v in got) == [b"ch", b"ch2", b"x"]
    assert all(t == b">" and v[0] == b"unsubscribe" for t, v in got)
    assert r.cmd("PUNSUBSCRIBE") == [b"punsubscribe", b"c*", 0]
    assert r.cmd("HGETALL", "none") == {}
    # RESET while subscribed in RESP3: back to RESP2, no confirmations
    r.send("SSUBSCRIBE", "s")
    assert r.read_t() == (b">", [b"ssubscribe", b"s", 1])
    assert r.cmd("RESET") == b"RESET"
    r.auth(env, "pss")
    assert r.cmd("HGETALL", "none") == []
    assert r.cmd("GET", "k") == b"v"


def test_resp3_hello2_while_subscribed(env):
    r = rawt(env, "psu", resp3=True)
    assert r.cmd("SUBSCRIBE", "ch") == [b"subscribe", b"ch", 1]
    assert isinstance(r.cmd("HELLO", "2"), list)
    pub = rawt(env, "psu")
    assert pub.cmd("PUBLISH", "ch", "m") == 1
    assert r.read_t() == (b"*", [b"message", b"ch", b"m"])
    assert r.cmd("PING") == [b"pong", b""]
    assert r.cmd("UNSUBSCRIBE", "ch") == [b"unsubscribe", b"ch", 0]
    assert r.cmd("GET", "nothing") is None
