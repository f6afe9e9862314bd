"""The Bolt test backend on its own (tests/backends/bolt), before tenantgate is put in front
of it: the official JavaScript driver (bolt:// and neo4j://, auth, auto-commit, explicit
and managed transactions, PULL n streams, failure then RESET, graph values, databases) and
a raw socket for what a driver never sends (version ranges, pipelining, malformed bytes).
"""

import os
import socket
import struct
import subprocess
import threading

import pytest

import tghelpers as h
from bolt_fixture import BOLT_DIR, NODE, bolt_backend, require_node_modules

SCHEMA = """
CREATE NODE TABLE Person(name STRING, age INT64, score DOUBLE, born DATE, tags STRING[],
                         PRIMARY KEY(name));
CREATE NODE TABLE City(name STRING, PRIMARY KEY(name));
CREATE REL TABLE Knows(FROM Person TO Person, since INT64, weight DOUBLE);
CREATE REL TABLE LivesIn(FROM Person TO City);
CREATE NODE TABLE Item(id INT64, PRIMARY KEY(id));
"""


@pytest.fixture(scope="module")
def bolt():
    with bolt_backend(schema=SCHEMA) as b:
        yield b


# ---- a raw Bolt client -------------------------------------------------------------------------

MAGIC = b"\x60\x60\xb0\x17"


def version(major, minor, rng=0):
    return bytes([0, rng, minor, major])


def pack(v):
    """PackStream for the few types these tests send."""
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if -16 <= v < 128:
            return struct.pack(">b", v)
        return b"\xcb" + struct.pack(">q", v)
    if isinstance(v, str):
        b = v.encode()
        if len(b) < 16:
            return bytes([0x80 | len(b)]) + b
        return b"\xd1" + struct.pack(">H", len(b)) + b
    if isinstance(v, list):
        assert len(v) < 16
        return bytes([0x90 | len(v)]) + b"".join(pack(e) for e in v)
    if isinstance(v, dict):
        assert len(v) < 16
        return bytes([0xA0 | len(v)]) + b"".join(pack(k) + pack(e) for k, e in v.items())
    raise TypeError(v)


def message(sig, *fields):
    body = bytes([0xB0 | len(fields), sig]) + b"".join(pack(f) for f in fields)
    return struct.pack(">H", len(body)) + body + b"\x00\x00"


class Unpacker:
    def __init__(self, data):
        self.d, self.i = data, 0

    def take(self, n):
        v = self.d[self.i:self.i + n]
        self.i += n
        return v

    def value(self):
        m = self.take(1)[0]
        if m < 0x80:
            return m
        if m >= 0xF0:
            return m - 0x100
        hi, lo = m & 0xF0, m & 0x0F
        if hi == 0x80:
            return self.take(lo).decode()
        if hi == 0x90:
            return [self.value() for _ in range(lo)]
        if hi == 0xA0:
            return {self.value(): self.value() for _ in range(lo)}
        if hi == 0xB0:
            tag = self.take(1)[0]
            return ("struct", tag, [self.value() for _ in range(lo)])
        fixed = {0xC0: None, 0xC2: False, 0xC3: True}
        if m in fixed:
            return fixed[m]
        if m == 0xC1:
            return struct.unpack(">d", self.take(8))[0]
        ints = {0xC8: ">b", 0xC9: ">h", 0xCA: ">i", 0xCB: ">q"}
        if m in ints:
            fmt = ints[m]
            return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]
        sizes = {0xD0: ">B", 0xD1: ">H", 0xD2: ">I", 0xD4: ">B", 0xD5: ">H", 0xD8: ">B",
                 0xD9: ">H"}
        if m in sizes:
            fmt = sizes[m]
            n = struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]
            if m <= 0xD2:
                return self.take(n).decode()
            if m <= 0xD5:
                return [self.value() for _ in range(n)]
            return {self.value(): self.value() for _ in range(n)}
        raise AssertionError(f"marker {m:#x}")


SUCCESS, RECORD, IGNORED, FAILURE = 0x70, 0x71, 0x7E, 0x7F
NAMES = {SUCCESS: "SUCCESS", RECORD: "RECORD", IGNORED: "IGNORED", FAILURE: "FAILURE"}


class Raw:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=h.scaled(10))
        self.buf = b""

    def handshake(self, *proposals):
        props = list(proposals) + [b"\x00\x00\x00\x00"] * (4 - len(proposals))
        self.s.sendall(MAGIC + b"".join(props))
        reply = self.recv_exact(4)
        return (reply[3], reply[2])

    def recv_exact(self, n):
        while len(self.buf) < n:
            d = self.s.recv(65536)
            if not d:
                raise EOFError
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, *msgs):
        self.s.sendall(b"".join(msgs))

    def read(self):
        """One reply: (name, fields)."""
        body = b""
        while True:
            (n,) = struct.unpack(">H", self.recv_exact(2))
            if n == 0:
                if body:
                    break
                continue
            body += self.recv_exact(n)
        tag, sig, fields = Unpacker(body).value()
        assert tag == "struct"
        return NAMES.get(sig, hex(sig)), fields

    def hello(self, ver, user, password):
        if ver >= (5, 1):
            self.send(message(0x01, {"user_agent": "raw/1.0"}),
                      message(0x6A, {"scheme": "basic", "principal": user, "credentials": password}))
            assert self.read()[0] == "SUCCESS"
        else:
            self.send(message(0x01, {"user_agent": "raw/1.0", "scheme": "basic",
                                     "principal": user, "credentials": password}))
        return self.read()

    def closed(self, timeout=5.0):
        self.s.settimeout(h.scaled(timeout))
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.s.close()


def raw_session(b, ver=(5, 4)):
    r = Raw(b.port)
    assert r.handshake(version(*ver)) == ver
    name, _ = r.hello(ver, b.user, b.password)
    assert name == "SUCCESS"
    return r


def RUN(query, params=None, **extra):
    return message(0x10, query, params or {}, extra)


def PULL(n=-1, qid=None):
    extra = {"n": n}
    if qid is not None:
        extra["qid"] = qid
    return message(0x3F, extra)


def DISCARD(n=-1, qid=None):
    extra = {"n": n}
    if qid is not None:
        extra["qid"] = qid
    return message(0x2F, extra)


BEGIN = lambda **extra: message(0x11, extra)  # noqa: E731
COMMIT = message(0x12)
ROLLBACK = message(0x13)
RESET = message(0x0F)


def test_codec_unit_tests():
    """PackStream, chunking, version negotiation and kuzu type parsing (node --test)."""
    require_node_modules()
    p = subprocess.run([NODE, "--test", os.path.join(BOLT_DIR, "test")], capture_output=True,
                       timeout=h.scaled(120), cwd=BOLT_DIR)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, out + p.stderr.decode(errors="replace")
    assert "# fail 0" in out and "# pass 0" not in out


# ---- handshake and framing (raw) ---------------------------------------------------------------

def test_handshake_picks_the_first_proposal_with_a_supported_version(bolt):
    cases = [
        # the 5.7+ manifest proposal is passed over; 5.8..5.0 gives the highest supported
        ([version(0xFF, 1), version(5, 8, 8), version(4, 4, 2)], (5, 6)),
        ([version(5, 4)], (5, 4)),
        ([version(5, 3, 1)], (5, 3)),            # 5.2..5.3
        ([version(5, 5), version(5, 0)], (5, 0)),  # 5.5 is not offered
        ([version(5, 9, 2), version(4, 4, 3)], (4, 4)),  # 5.7..5.9: none, next proposal
        ([version(4, 4, 3), version(5, 4)], (4, 4)),  # the client's order wins
    ]
    for proposals, expected in cases:
        r = Raw(bolt.port)
        try:
            assert r.handshake(*proposals) == expected, proposals
        finally:
            r.close()


def test_handshake_without_a_common_version_answers_zero_and_closes(bolt):
    r = Raw(bolt.port)
    assert r.handshake(version(3, 0), version(4, 3, 3), version(6, 0)) == (0, 0)
    assert r.closed()
    r.close()


def test_handshake_with_a_wrong_magic_closes_without_a_reply(bolt):
    r = Raw(bolt.port)
    r.s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.closed()
    assert r.buf == b""
    r.close()


def test_restricted_versions_and_message_size_limit():
    with bolt_backend(schema=SCHEMA, args=("--bolt-versions", "5.2,4.4",
                                           "--max-message-bytes", "4096")) as b:
        r = Raw(b.port)
        assert r.handshake(version(5, 4, 4)) == (5, 2)
        r.close()
        # a chunk header announcing more than the limit closes at once, without its body
        for data in (struct.pack(">H", 65535),
                     struct.pack(">H", 3000) + b"\x00" * 3000 + struct.pack(">H", 3000)):
            r = raw_session(b, (5, 2))
            r.send(data)
            name, fields = r.read()
            assert name == "FAILURE"
            assert fields[0]["code"] == "Neo.ClientError.Request.InvalidFormat"
            assert r.closed()
            r.close()


def test_malformed_chunk_closes_the_connection(bolt):
    bad_bodies = [
        b"\xc7",                      # a reserved marker
        b"\xb1\x10\x85ab",            # a string shorter than its header says
        b"\x01",                      # not a structure
        b"\xb1\x3f\xa1\x01\x01",      # a map key that is not a string
        b"\xb1\x10\x82\xc3\x28",      # invalid UTF-8
        b"\xb1\x0f\xc0\xc0",          # a value after the one the message is
    ]
    for body in bad_bodies:
        r = raw_session(bolt)
        r.send(struct.pack(">H", len(body)) + body + b"\x00\x00")
        name, fields = r.read()
        assert name == "FAILURE", body
        assert fields[0]["code"] == "Neo.ClientError.Request.InvalidFormat", body
        assert r.closed(), body
        r.close()
    # deeply nested lists are refused too
    r = raw_session(bolt)
    body = b"\xb1\x10" + b"\x91" * 200 + b"\x01"
    r.send(struct.pack(">H", len(body)) + body + b"\x00\x00")
    assert r.read()[0] == "FAILURE"
    assert r.closed()
    r.close()


def test_unknown_or_misplaced_messages_close_the_connection(bolt):
    for msgs in ([message(0x99)], [PULL()], [COMMIT], [message(0x10, "RETURN 1")],
                 [message(0x54, 1)]):
        r = raw_session(bolt, (5, 3))  # TELEMETRY is 5.4+
        r.send(*msgs)
        name, fields = r.read()
        assert name == "FAILURE" and fields[0]["code"] == "Neo.ClientError.Request.Invalid", msgs
        assert r.closed()
        r.close()


def test_noop_chunks_between_messages_are_ignored(bolt):
    r = raw_session(bolt)
    r.send(b"\x00\x00\x00\x00", RUN("RETURN 1 AS x"), b"\x00\x00", PULL())
    assert r.read()[0] == "SUCCESS"
    assert r.read() == ("RECORD", [[1]])
    assert r.read()[0] == "SUCCESS"
    r.close()


# ---- authentication ----------------------------------------------------------------------------

@pytest.mark.parametrize("ver", [(4, 4), (5, 0), (5, 1), (5, 6)])
def test_wrong_password_fails_unauthorized_and_closes(bolt, ver):
    r = Raw(bolt.port)
    assert r.handshake(version(*ver)) == ver
    if ver >= (5, 1):
        r.send(message(0x01, {"user_agent": "raw/1.0"}),
               message(0x6A, {"scheme": "basic", "principal": bolt.user, "credentials": "nope"}))
        assert r.read()[0] == "SUCCESS"
    else:
        r.send(message(0x01, {"user_agent": "raw/1.0", "scheme": "basic",
                              "principal": bolt.user, "credentials": "nope"}))
    name, fields = r.read()
    assert name == "FAILURE" and fields[0]["code"] == "Neo.ClientError.Security.Unauthorized"
    assert r.closed()
    r.close()


def test_nothing_runs_before_logon_and_logoff_requires_it_again(bolt):
    r = Raw(bolt.port)
    assert r.handshake(version(5, 4)) == (5, 4)
    r.send(message(0x01, {"user_agent": "raw/1.0"}), RUN("RETURN 1"))
    assert r.read()[0] == "SUCCESS"
    name, fields = r.read()
    assert name == "FAILURE" and fields[0]["code"] == "Neo.ClientError.Request.Invalid"
    assert r.closed()
    r.close()

    r = raw_session(bolt, (5, 4))
    r.send(message(0x6B), RUN("RETURN 1"))
    assert r.read()[0] == "SUCCESS"
    assert r.read()[0] == "FAILURE"
    assert r.closed()
    r.close()

    r = raw_session(bolt, (5, 4))
    r.send(message(0x6B), message(0x6A, {"scheme": "basic", "principal": bolt.user,
                                         "credentials": bolt.password}), RUN("RETURN 2 AS x"),
           PULL())
    assert [r.read()[0] for _ in range(3)] == ["SUCCESS", "SUCCESS", "SUCCESS"]
    assert r.read() == ("RECORD", [[2]])
    r.close()


# ---- state machine (raw) -----------------------------------------------------------------------

def test_failure_then_ignored_until_reset_with_pipelining(bolt):
    r = raw_session(bolt)
    r.send(RUN("MATCH (n RETURN n"), PULL(), RUN("RETURN 1 AS x"), PULL(), BEGIN())
    name, fields = r.read()
    assert name == "FAILURE"
    assert fields[0]["code"] == "Neo.ClientError.Statement.SyntaxError"
    assert "Parser exception" in fields[0]["message"]
    assert [r.read()[0] for _ in range(4)] == ["IGNORED"] * 4
    r.send(RESET, RUN("RETURN 2 AS x"), PULL())
    assert r.read() == ("SUCCESS", [{}])
    name, fields = r.read()
    assert name == "SUCCESS" and fields[0]["fields"] == ["x"]
    assert r.read() == ("RECORD", [[2]])
    name, fields = r.read()
    assert name == "SUCCESS" and fields[0]["db"] == "neo4j" and "bookmark" in fields[0]
    r.close()


def test_pull_n_has_more_and_qids_in_a_transaction(bolt):
    r = raw_session(bolt)
    r.send(BEGIN(), RUN("UNWIND range(1, 5) AS i RETURN i"), RUN("UNWIND range(10, 12) AS j RETURN j"),
           PULL(2, qid=0), PULL(-1, qid=1), PULL(2, qid=0), DISCARD(-1, qid=0), COMMIT)
    assert r.read() == ("SUCCESS", [{}])
    name, f = r.read()
    assert name == "SUCCESS" and f[0]["qid"] == 0 and f[0]["fields"] == ["i"]
    name, f = r.read()
    assert name == "SUCCESS" and f[0]["qid"] == 1
    assert [r.read() for _ in range(3)] == [("RECORD", [[1]]), ("RECORD", [[2]]),
                                           ("SUCCESS", [{"has_more": True}])]
    assert [r.read()[1] for _ in range(3)] == [[[10]], [[11]], [[12]]]
    name, f = r.read()
    assert name == "SUCCESS" and "has_more" not in f[0] and "bookmark" not in f[0]
    assert [r.read() for _ in range(3)] == [("RECORD", [[3]]), ("RECORD", [[4]]),
                                           ("SUCCESS", [{"has_more": True}])]
    name, f = r.read()
    assert name == "SUCCESS" and "has_more" not in f[0]
    name, f = r.read()
    assert name == "SUCCESS" and f[0]["bookmark"].startswith("FB:")
    r.close()


def test_auto_commit_pull_n_and_discard(bolt):
    r = raw_session(bolt)
    r.send(RUN("UNWIND range(1, 4) AS i RETURN i"), PULL(3), DISCARD(-1))
    assert r.read()[0] == "SUCCESS"
    assert [r.read()[1] for _ in range(3)] == [[[1]], [[2]], [[3]]]
    assert r.read() == ("SUCCESS", [{"has_more": True}])
    name, f = r.read()
    assert name == "SUCCESS" and f[0]["type"] == "r" and "bookmark" in f[0]
    r.close()


def test_route_lists_the_cluster_members(bolt):
    r = raw_session(bolt)
    r.send(message(0x66, {"address": f"127.0.0.1:{bolt.port}"}, [], {"db": None}))
    name, f = r.read()
    assert name == "SUCCESS"
    rt = f[0]["rt"]
    assert rt["db"] == "neo4j" and rt["ttl"] > 0
    roles = {s["role"]: s["addresses"] for s in rt["servers"]}
    me = f"127.0.0.1:{bolt.port}"
    assert roles["WRITE"] == [me] and roles["READ"] == [me]
    assert roles["ROUTE"] == [me, "core1:7687", "core2:7687"]
    r.send(message(0x66, {}, [], {"db": "Tenant-A"}))
    assert r.read()[1][0]["rt"]["db"] == "tenant-a"
    r.close()


def test_a_second_writer_waits_for_the_first_to_commit(bolt):
    a, b = raw_session(bolt), raw_session(bolt)
    a.send(BEGIN(), RUN("CREATE (:Item {id: 1})"), PULL())
    assert [a.read()[0] for _ in range(3)] == ["SUCCESS"] * 3
    b.send(BEGIN())
    got = []
    t = threading.Thread(target=lambda: got.append(b.read()))
    t.start()
    t.join(0.5)
    assert not got, "the second write transaction started while the first was open"
    a.send(COMMIT)
    assert a.read()[0] == "SUCCESS"
    t.join(h.scaled(10))
    assert got == [("SUCCESS", [{}])]
    b.send(RUN("MATCH (i:Item) RETURN count(*) AS c"), PULL(), ROLLBACK)
    assert b.read()[0] == "SUCCESS"
    assert b.read() == ("RECORD", [[1]])
    a.close()
    b.close()


# ---- the official JavaScript driver ------------------------------------------------------------

def run(query, params=None, **kw):
    return dict(op="run", query=query, params=params or {}, **kw)


def test_driver_bolt_and_neo4j_schemes(bolt):
    out = bolt.driver([{"op": "verify"}, run("RETURN 1 AS one")])
    assert out[0]["server"]["protocolVersion"] == "5.6"
    assert out[0]["server"]["agent"].startswith("Neo4j/")
    assert out[1]["records"] == [[1]] and out[1]["keys"] == ["one"]
    # neo4j:// fetches a routing table first and then uses the addresses in it
    out = bolt.driver([{"op": "managed", "kind": "write", "queries": [
        {"query": "CREATE (:Person {name: 'routed', age: 1})"}]},
        {"op": "managed", "kind": "read", "queries": [
            {"query": "MATCH (p:Person {name: 'routed'}) RETURN p.age AS age"}]}],
        uri=bolt.uri("neo4j"))
    assert out[1]["results"][0]["records"] == [[1]], out
    log = bolt.log()
    assert "< ROUTE" in log


def test_driver_auth_failure(bolt):
    out = bolt.driver([{"op": "verify"}, run("RETURN 1")],
                      auth={"scheme": "basic", "user": bolt.user, "password": "wrong"})
    assert out[0]["error"]["code"] == "Neo.ClientError.Security.Unauthorized"
    assert out[1]["error"]["code"] == "Neo.ClientError.Security.Unauthorized"
    out = bolt.driver([run("RETURN 1")], auth={"scheme": "bearer", "token": "x.y.z"})
    assert out[0]["error"]["code"] == "Neo.ClientError.Security.Unauthorized"


def test_driver_graph_values(bolt):
    out = bolt.driver([
        run("CREATE (a:Person {name: 'ann', age: 41, score: 2.0, born: date('1983-04-05'), "
            "tags: ['x', 'y']})-[:Knows {since: 2001, weight: 0.5}]->"
            "(b:Person {name: 'bob', age: 38})-[:LivesIn]->(:City {name: 'Oslo'})"),
        run("MATCH (a:Person {name: 'ann'})-[k:Knows]->(b:Person) RETURN a, k, b"),
        run("MATCH p = (:Person {name: 'ann'})-[:Knows]->(:Person)-[:LivesIn]->(:City) RETURN p"),
        run("RETURN $i AS i, $f AS f, $s AS s, $l AS l, $m AS m, $n AS n, $b AS b, $big AS big",
            {"i": 7, "f": {"$float": 1.5}, "s": "é", "l": [1, 2], "m": {"k": "v"}, "n": None,
             "b": True, "big": 2**40}),
        run("RETURN 2.0 AS f, [1.0, 2.5] AS fl, {x: 1, y: 1.0} AS st, date('2020-02-29') AS d"),
        run("RETURN timestamp('2020-01-01 10:00:00.5') AS ts, interval('2 hours') AS iv, "
            "blob('\\\\xAA\\\\x01') AS bl, uuid('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11') AS u, "
            "$d AS pd", {"d": {"$date": "2021-03-04"}}),
    ])
    a, k, b = out[1]["records"][0]
    assert a["$node"]["labels"] == ["Person"]
    assert a["$node"]["props"] == {"name": "ann", "age": 41, "score": {"$float": 2.0},
                                   "born": {"$Date": "1983-04-05"}, "tags": ["x", "y"]}
    assert b["$node"]["props"] == {"name": "bob", "age": 38}  # nulls are absent properties
    rel = k["$rel"]
    assert rel["type"] == "Knows" and rel["props"] == {"since": 2001, "weight": {"$float": 0.5}}
    assert rel["startElementId"] == a["$node"]["elementId"]
    assert rel["endElementId"] == b["$node"]["elementId"]
    assert rel["start"] == a["$node"]["id"] and rel["end"] == b["$node"]["id"]
    path = out[2]["records"][0][0]["$path"]
    assert [e.get("$node", {}).get("props", {}).get("name") for e in path[::2]] == \
        ["ann", "bob", "Oslo"]
    assert [e["$rel"]["type"] for e in path[1::2]] == ["Knows", "LivesIn"]
    assert out[3]["records"] == [[7, {"$float": 1.5}, "é", [1, 2], {"k": "v"}, None, True,
                                  2**40]]
    assert out[4]["records"] == [[{"$float": 2.0}, [{"$float": 1.0}, {"$float": 2.5}],
                                  {"x": 1, "y": {"$float": 1.0}}, {"$Date": "2020-02-29"}]]
    assert out[5]["records"] == [[{"$LocalDateTime": "2020-01-01T10:00:00.500000000"},
                                  {"$Duration": "PT2H"}, {"$bytes": "aa01"},
                                  "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", {"$Date": "2021-03-04"}]], out[5]


def test_driver_explicit_transactions(bolt):
    out = bolt.driver([
        {"op": "tx", "end": "rollback", "queries": [
            {"query": "CREATE (:Person {name: 'ghost'})"},
            {"query": "MATCH (p:Person {name: 'ghost'}) RETURN count(*) AS c"}]},
        run("MATCH (p:Person {name: 'ghost'}) RETURN count(*) AS c"),
        {"op": "tx", "end": "commit", "queries": [
            {"query": "CREATE (:Person {name: 'kept', age: $age})", "params": {"age": 5}}]},
        run("MATCH (p:Person {name: 'kept'}) RETURN p.age AS age"),
        {"op": "tx", "queries": [{"query": "CREATE (:Person {name: 'kept'})"}]},
    ])
    assert out[0]["results"][1]["records"] == [[1]]  # visible inside the transaction
    assert out[1]["records"] == [[0]]                 # gone after the rollback
    assert out[3]["records"] == [[5]]
    assert out[4]["error"]["code"] == "Neo.ClientError.Schema.ConstraintValidationFailed"


def test_driver_managed_transactions_and_access_mode(bolt):
    out = bolt.driver([
        {"op": "managed", "kind": "write", "queries": [
            {"query": "CREATE (:Person {name: 'm1'})"}, {"query": "CREATE (:Person {name: 'm2'})"},
            {"query": "MATCH (p:Person) WHERE p.name STARTS WITH 'm' RETURN p.name AS n "
                      "ORDER BY n"}]},
        {"op": "managed", "kind": "read", "queries": [
            {"query": "MATCH (p:Person) WHERE p.name STARTS WITH 'm' RETURN count(*) AS c"}]},
        {"op": "managed", "kind": "read", "queries": [{"query": "CREATE (:Person {name: 'r'})"}]},
        run("CREATE (:Person {name: 'r2'})", mode="read"),
        run("MATCH (p:Person) WHERE p.name STARTS WITH 'm' RETURN p.name AS n ORDER BY n",
            mode="read"),
    ])
    assert out[0]["results"][2]["records"] == [["m1"], ["m2"]]
    assert out[1]["results"][0]["records"] == [[2]]
    assert out[2]["error"]["code"] == "Neo.ClientError.Statement.AccessMode"
    assert out[3]["error"]["code"] == "Neo.ClientError.Statement.AccessMode"
    assert out[4]["records"] == [["m1"], ["m2"]]  # auto-commit in a read-only transaction


def test_driver_large_stream_with_fetch_size(bolt):
    out = bolt.driver([{"op": "stream", "fetchSize": 500,
                        "query": "UNWIND range(1, 20000) AS i RETURN i, 'row' + CAST(i AS STRING) AS s"}])
    assert out[0]["count"] == 20000
    assert out[0]["first"] == [1, "row1"] and out[0]["last"] == [20000, "row20000"]
    assert bolt.log().count("< PULL n=500") >= 40


def test_driver_failure_then_reset_then_a_good_query_on_the_same_connection(bolt):
    before = bolt.log().count("< RESET")
    out = bolt.driver([run("MATCH (n RETURN n", session="s"), run("RETURN 1/0", session="s"),
                       run("MATCH (n:Nope) RETURN n", session="s"),
                       run("RETURN 41 + 1 AS x", session="s")],
                      config={"maxConnectionPoolSize": 1})
    assert out[0]["error"]["code"] == "Neo.ClientError.Statement.SyntaxError"
    assert out[1]["error"]["code"] == "Neo.ClientError.Statement.ArithmeticError"
    assert out[2]["error"]["code"] == "Neo.ClientError.Statement.SemanticError"
    assert "Nope" in out[2]["error"]["message"]
    assert out[3]["records"] == [[42]]
    assert bolt.log().count("< RESET") >= before + 3


def test_driver_databases(bolt):
    out = bolt.driver([
        run("CREATE (:Person {name: 'in-a'})", db="tenant-a"),
        run("MATCH (p:Person) RETURN p.name AS n", db="tenant-a"),
        run("MATCH (p:Person {name: 'in-a'}) RETURN count(*) AS c", db="tenant-b"),
        run("MATCH (p:Person {name: 'in-a'}) RETURN count(*) AS c"),
        run("RETURN 1", db="bad_name!"),
        {"op": "tx", "db": "tenant-b", "queries": [{"query": "CREATE (:City {name: 'b'})"}]},
        run("MATCH (c:City {name: 'b'}) RETURN count(*) AS c", db="tenant-b"),
        run("MATCH (p:Person) RETURN p.name AS n", db="TENANT-A"),
        run("RETURN 1", db="tenant_a"),
    ])
    assert out[1]["records"] == [["in-a"]] and out[1]["summary"]["database"] == "tenant-a"
    assert out[2]["records"] == [[0]] and out[2]["summary"]["database"] == "tenant-b"
    assert out[3]["records"] == [[0]] and out[3]["summary"]["database"] == "neo4j"
    assert out[4]["error"]["code"] == "Neo.ClientError.Database.DatabaseNotFound"
    assert out[6]["records"] == [[1]]
    # names are case-insensitive, and follow Neo4j's rules (no underscores)
    assert out[7]["records"] == [["in-a"]] and out[7]["summary"]["database"] == "tenant-a"
    assert out[8]["error"]["code"] == "Neo.ClientError.Database.DatabaseNotFound"


@pytest.mark.parametrize("ver", ["4.4", "5.0", "5.4"])
def test_driver_on_older_protocol_versions(ver):
    with bolt_backend(schema=SCHEMA, args=("--bolt-versions", ver)) as b:
        out = b.driver([
            {"op": "verify"},
            run("CREATE (a:Person {name: 'v', born: date('2000-01-02')})-[:Knows {since: 1}]->"
                "(:Person {name: 'w'})"),
            run("MATCH (a:Person {name: 'v'})-[k]->(c) RETURN a, k, c"),
            run("MATCH (n RETURN n"),
            {"op": "managed", "kind": "read", "queries": [{"query": "RETURN 3 AS x"}]},
        ], uri=b.uri("neo4j"))
        assert out[0]["server"]["protocolVersion"] == ver
        a, k, c = out[2]["records"][0]
        assert a["$node"]["props"] == {"name": "v", "born": {"$Date": "2000-01-02"}}
        assert k["$rel"]["start"] == a["$node"]["id"] and k["$rel"]["end"] == c["$node"]["id"]
        assert out[3]["error"]["code"] == "Neo.ClientError.Statement.SyntaxError"
        assert out[4]["results"][0]["records"] == [[3]]
        log = b.log()
        assert ("< LOGON" in log) == (ver >= "5.1")
        assert ("< TELEMETRY" in log) == (ver >= "5.4")
