"""`protocol: mongodb`: handshake, authentication and framing, with raw sockets and pymongo.

  client --hello / saslStart PLAIN|MONGODB-OIDC (JWT)--> tenantgate --hello + SCRAM-SHA-256--> test backend

Every test talks to a real tenantgate in front of the Node.js test backend
(tests/backends/mongodb, --trace on), and checks with the trace what reached the backend.
"""

import socket
import struct
import time

import bson
import pymongo
import pytest

import tghelpers as h
from mongo_fixture import OP_COMPRESSED, OP_MSG, OP_REPLY, RawMongo, mongo_env, op_msg, op_query
from pg_fixture import alg_none_token, tamper_claims

TOPOLOGY_KEYS = ("hosts", "setName", "primary", "me", "topologyVersion", "setVersion", "electionId",
                 "secondary", "compression", "lastWrite", "$clusterTime", "msg")


@pytest.fixture(scope="module")
def env():
    with mongo_env(listener_extra={"timeouts": {"handshake_ms": 1500}}) as e:
        yield e


def backend_commands(env):
    return [next(iter(x["body"])) for x in env.backend.received()]


def assert_standalone(hello, legacy=False):
    for k in TOPOLOGY_KEYS:
        assert k not in hello, (k, hello)
    assert hello["ok"] == 1
    assert hello["ismaster" if legacy else "isWritablePrimary"] is True
    assert hello["maxWireVersion"] >= 6 and hello["minWireVersion"] == 0
    assert hello["maxBsonObjectSize"] == 16 * 1024 * 1024
    assert hello["maxMessageSizeBytes"] == 48000000
    assert hello["maxWriteBatchSize"] == 100000
    assert hello["logicalSessionTimeoutMinutes"] == 30


# ---- before authentication ------------------------------------------------------------------------


@pytest.mark.local_backend("mongodb", "reads what reached the test backend (--trace)")
def test_preauth_handshake_commands(env):
    before = len(env.backend.received())
    r = RawMongo(env.port)
    hello = r.command({"hello": 1, "client": {"driver": {"name": "raw", "version": "1"}},
                       "compression": ["zstd", "snappy", "zlib"]})
    assert_standalone(hello)
    assert r.command({"ping": 1})["ok"] == 1
    bi = r.command({"buildInfo": 1})
    assert bi["ok"] == 1 and bi["version"].count(".") == 2
    assert r.command({"endSessions": []})["ok"] == 1
    legacy = r.command({"isMaster": 1, "helloOk": True})
    assert_standalone(legacy, legacy=True)
    assert legacy["helloOk"] is True
    # checksummed request: answered, the codec verified it
    assert r.command({"hello": 1}, checksum=True)["ok"] == 1
    for cmd in ({"find": "c"}, {"insert": "c", "documents": [{"x": 1}]}, {"listDatabases": 1},
                {"serverStatus": 1}, {"getMore": bson.Int64(1), "collection": "c"},
                {"killCursors": "c", "cursors": [bson.Int64(1)]}, {"logout": 1}):
        err = r.command(cmd, db="app")
        assert err["ok"] == 0 and err["code"] == 13 and err["codeName"] == "Unauthorized", err
        assert err["errmsg"].startswith("tenantgate: command ") and "requires authentication" in err["errmsg"]
    # still open and answering
    assert r.command({"ping": 1})["ok"] == 1
    r.close()
    assert len(env.backend.received()) == before, "nothing reaches the backend before auth"


def test_moretocome_refusal_gets_no_reply(env):
    r = RawMongo(env.port)
    r.command({"find": "c"}, db="app", flags=2)  # moreToCome: no reply, as MongoDB
    assert r.command({"ping": 1})["ok"] == 1  # the next reply answers the ping
    r.close()


def test_op_query_handshake(env):
    r = RawMongo(env.port)
    rep = r.query("admin.$cmd", {"isMaster": 1, "helloOk": True, "client": {"application": {"name": "x"}}})
    assert rep["op"] == OP_REPLY and rep["flags"] & 8
    assert_standalone(rep["doc"], legacy=True)
    assert rep["doc"]["helloOk"] is True
    # wrapped in $query with a read preference, as old drivers do
    rep = r.query("admin.$cmd", {"$query": {"ismaster": 1}, "$readPreference": {"mode": "primary"}})
    assert rep["doc"]["ismaster"] is True
    rep = r.query("admin.$cmd", {"hello": 1})
    assert rep["doc"]["isWritablePrimary"] is True
    for ns, q in (("admin.$cmd", {"find": "c"}), ("app.c", {"x": 1}), ("admin.$cmd", {"saslStart": 1})):
        rep = r.query(ns, q)
        assert rep["doc"]["ok"] == 0 and rep["doc"]["code"] == 352, rep
    assert r.command({"ping": 1})["ok"] == 1
    r.close()


def test_sasl_supported_mechs(env):
    r = RawMongo(env.port)
    assert r.command({"hello": 1, "saslSupportedMechs": "$external.bob"})["saslSupportedMechs"] == [
        "PLAIN", "MONGODB-OIDC"]
    assert r.command({"hello": 1, "saslSupportedMechs": "admin.bob"})["saslSupportedMechs"] == []
    r.close()


# ---- authentication -------------------------------------------------------------------------------


def auth_fails_and_closes(env, reply_fn, why):
    r = RawMongo(env.port)
    err = reply_fn(r)
    assert err["ok"] == 0 and err["code"] == 18 and err["codeName"] == "AuthenticationFailed", err
    assert err["errmsg"].startswith("tenantgate: authentication failed"), err
    assert why in err["errmsg"], err
    assert r.closed(), "a failed authentication closes the connection"


@pytest.mark.local_backend("mongodb", "reads what reached the test backend (--trace)")
def test_bad_tokens_code_18_and_close(env):
    before = len(env.backend.received())
    t = env.tokens
    auth_fails_and_closes(env, lambda r: r.plain(t.mint("alice", ttl=-3600)), "token expired")
    auth_fails_and_closes(env, lambda r: r.plain(t.mint("alice", secret="k" * 64)), "bad signature")
    auth_fails_and_closes(env, lambda r: r.plain(t.mint("bad tenant!")), "tenant claim")
    auth_fails_and_closes(env, lambda r: r.plain(t.mint(None)), "tenant claim")
    auth_fails_and_closes(env, lambda r: r.plain(alg_none_token("alice")), "token")
    auth_fails_and_closes(env, lambda r: r.plain(tamper_claims(t.mint("bob"), tenant_id="alice")),
                          "bad signature")
    auth_fails_and_closes(env, lambda r: r.plain("not-a-jwt"), "malformed")
    auth_fails_and_closes(env, lambda r: r.oidc(t.mint("alice", ttl=-10)), "token expired")
    # mechanism, database and payload refused before any token check
    auth_fails_and_closes(env, lambda r: r.plain(t.mint("alice"), db="admin"), "$external")
    auth_fails_and_closes(env, lambda r: r.login("svc", "x"), "PLAIN")
    auth_fails_and_closes(env, lambda r: r.command({"saslStart": 1, "mechanism": "PLAIN",
                                                   "payload": bson.Binary(b"no-nul")}, db="$external"),
                          "malformed PLAIN")
    auth_fails_and_closes(env, lambda r: r.command({"saslContinue": 1, "conversationId": 1,
                                                   "payload": bson.Binary(b"")}, db="$external"),
                          "no SASL conversation")
    assert len(env.backend.received()) == before, "no backend connection for a failed login"
    m = h.scrape(env.admin_port, "tenantgate_auth_failures_total", listener="mongo", reason="expired")
    assert m and m >= 2


@pytest.mark.local_backend("mongodb", "reads what reached the test backend (--trace)")
def test_plain_login_then_backend_scram(env):
    before = len(env.backend.received())
    r = env.raw("alice")
    assert r.command({"serverStatus": 1})["ok"] == 0  # answered once the backend login is done
    # the backend login: tenantgate's hello (with speculative SCRAM) and saslContinue
    got = env.backend.received()[before:]
    names = [next(iter(x["body"])) for x in got]
    assert names[0] == "hello" and "saslContinue" in names, names
    assert got[0]["body"]["speculativeAuthenticate"] == "<redacted>"
    assert all(x["body"].get("$db") == "admin" for x in got)
    assert names == ["hello", "saslContinue"], "serverStatus never reached the backend"
    # hello after login: still standalone, the backend's limits
    assert_standalone(r.command({"hello": 1}))
    # an authenticated session: a command is judged by policy, no longer "requires authentication"
    err = r.command({"serverStatus": 1}, db="admin")
    assert err["ok"] == 0 and err["code"] == 13 and "requires authentication" not in err["errmsg"], err
    r.close()


def test_oidc_and_speculative_logins(env):
    t = env.tokens
    r = RawMongo(env.port)
    ok = r.oidc(t.mint("alice"))
    assert ok["ok"] == 1 and ok["done"] is True, ok
    r.close()
    # speculativeAuthenticate in hello: PLAIN and OIDC
    for spec in ({"saslStart": 1, "mechanism": "PLAIN", "db": "$external",
                  "payload": bson.Binary(b"\x00u\x00" + t.mint("bob").encode())},
                 {"saslStart": 1, "mechanism": "MONGODB-OIDC", "db": "$external",
                  "payload": bson.Binary(bson.encode({"jwt": t.mint("bob")}))}):
        r = RawMongo(env.port)
        hello = r.command({"hello": 1, "speculativeAuthenticate": spec})
        assert hello["speculativeAuthenticate"]["done"] is True, hello
        err = r.command({"serverStatus": 1})
        assert err["code"] == 13 and "requires authentication" not in err["errmsg"]
        r.close()
    # a failed speculative attempt is silent; saslStart then fails with 18
    r = RawMongo(env.port)
    hello = r.command({"hello": 1, "speculativeAuthenticate": {
        "saslStart": 1, "mechanism": "PLAIN", "db": "$external",
        "payload": bson.Binary(b"\x00u\x00" + t.mint("bob", ttl=-100).encode())}})
    assert hello["ok"] == 1 and "speculativeAuthenticate" not in hello
    assert r.command({"find": "c"}, db="app")["errmsg"].endswith("requires authentication")
    r.close()
    # OIDC without a jwt (the two-step human flow) is refused
    r = RawMongo(env.port)
    err = r.command({"saslStart": 1, "mechanism": "MONGODB-OIDC",
                     "payload": bson.Binary(bson.encode({"n": "user"}))}, db="$external")
    assert err["code"] == 18 and "jwt" in err["errmsg"]
    assert r.closed()


def test_reauth(env):
    t = env.tokens
    r = env.raw("alice")
    # a failed re-authentication answers 18 and leaves the session as it was (open, authenticated)
    err = r.plain(t.mint("bob", secret="z" * 64))
    assert err["code"] == 18
    err = r.command({"serverStatus": 1})
    assert err["code"] == 13 and "requires authentication" not in err["errmsg"]
    assert r.plain(t.mint("alice"))["ok"] == 1  # refresh, same tenant
    assert r.plain(t.mint("bob"))["ok"] == 1  # switch
    assert r.oidc(t.mint("carol"))["ok"] == 1
    assert r.command({"ping": 1})["ok"] in (0, 1)
    r.close()


def test_token_expiry_391_then_close(env):
    r = env.raw(token=env.tokens.mint("alice", ttl=2))
    time.sleep(2.2)
    err = r.command({"find": "c"}, db="app")
    assert err["code"] == 391 and err["codeName"] == "ReauthenticationRequired", err
    assert r.command({"hello": 1})["ok"] == 1  # the handshake still answers
    # re-authentication revives the session
    assert r.plain(env.tokens.mint("alice", ttl=2))["ok"] == 1
    err = r.command({"serverStatus": 1})
    assert err["code"] == 13
    # without one, the connection closes handshake_ms (1.5 s) after exp
    assert r.closed(timeout=6)


def test_expiry_closes_idle_session(env):
    r = env.raw(token=env.tokens.mint("alice", ttl=1))
    t0 = time.monotonic()
    assert r.closed(timeout=8)
    assert time.monotonic() - t0 >= 1.0


# ---- framing ----------------------------------------------------------------------------------------


def test_op_compressed_refused(env):
    r = RawMongo(env.port)
    inner = op_msg(7, {"hello": 1, "$db": "admin"})
    body = struct.pack("<iiB", OP_MSG, len(inner) - 16, 0) + inner[16:]
    r.send(struct.pack("<iiii", 16 + len(body), 7, 0, OP_COMPRESSED) + body)
    rep = r.read()
    assert rep["response_to"] == 7 and rep["doc"]["ok"] == 0
    assert "OP_COMPRESSED" in rep["doc"]["errmsg"]
    assert r.closed()


@pytest.mark.parametrize("length", [0, 15, -1, 64 * 1024 + 1, 1 << 30])
def test_lying_lengths_close_at_once(env, length):
    r = RawMongo(env.port)
    if length > 64 * 1024:  # before auth, 64 KiB is the limit: closed on the 4 length bytes
        r.send(struct.pack("<i", length))
    else:
        r.send(struct.pack("<iiii", length, 1, 0, OP_MSG))
    t0 = time.monotonic()
    assert r.closed(timeout=3)
    assert time.monotonic() - t0 < 2


def test_authenticated_limit_is_the_backends(env):
    r = env.raw("alice")
    r.send(struct.pack("<i", 48000000 + 1))
    assert r.closed(timeout=3)
    r = env.raw("alice")
    r.send(struct.pack("<iiii", 1 << 20, 9, 0, OP_MSG) + b"\x00" * 100)  # 1 MiB announced: waits
    assert not r.closed(timeout=0.5)
    r.close()


@pytest.mark.parametrize("bad", [
    "unknown_flag", "bad_checksum", "two_bodies", "bad_bson", "trailing", "unknown_opcode"])
def test_malformed_messages_close(env, bad):
    r = RawMongo(env.port)
    good = op_msg(3, {"hello": 1, "$db": "admin"})
    if bad == "unknown_flag":
        msg = good[:16] + struct.pack("<I", 1 << 5) + good[20:]
    elif bad == "bad_checksum":
        msg = op_msg(3, {"hello": 1, "$db": "admin"}, checksum=True)
        msg = msg[:-1] + bytes([msg[-1] ^ 1])
    elif bad == "two_bodies":
        extra = b"\x00" + bson.encode({"ping": 1})
        msg = struct.pack("<i", len(good) + len(extra)) + good[4:] + extra
    elif bad == "bad_bson":
        doc = bytearray(bson.encode({"hello": 1, "$db": "admin"}))
        doc[4] = 0x7E  # an unknown element type
        body = struct.pack("<I", 0) + b"\x00" + bytes(doc)
        msg = struct.pack("<iiii", 16 + len(body), 3, 0, OP_MSG) + body
    elif bad == "trailing":
        msg = struct.pack("<i", len(good) + 3) + good[4:] + b"abc"
    else:
        msg = struct.pack("<iiii", 16 + 4, 3, 0, 2002) + b"\x00" * 4  # OP_INSERT
    r.send(msg)
    assert r.closed(timeout=3)


# ---- a real driver -------------------------------------------------------------------------------------


def test_pymongo_plain_login(env):
    c = env.client("alice")
    assert c.admin.command("hello")["isWritablePrimary"] is True
    assert c._topology.description.topology_type_name == "Single"
    # the URI form from the README, without directConnection: tenantgate says it is standalone
    c2 = pymongo.MongoClient(env.uri("alice"), serverSelectionTimeoutMS=5000)
    try:
        assert c2.admin.command("ismaster")["ismaster"] is True
        assert c2._topology.description.topology_type_name == "Single"
    finally:
        c2.close()
    bad = env.client("alice", token=env.tokens.mint("alice", ttl=-5))
    with pytest.raises(pymongo.errors.OperationFailure) as ei:
        bad.admin.command("hello")
    assert ei.value.code == 18


def test_metrics_count_outcomes(env):
    r = RawMongo(env.port)
    r.command({"find": "c"}, db="app")
    r.close()
    m = h.scrape(env.admin_port, "tenantgate_messages_rejected_total", listener="mongo",
                 reason="unauthenticated")
    assert m and m >= 1
    assert h.scrape(env.admin_port, "tenantgate_auth_total", listener="mongo") >= 1
    log = env.proxy.log()
    assert '"command rejected"' in log and '"audit":true' in log
