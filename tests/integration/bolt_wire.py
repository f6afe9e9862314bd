"""Bolt on raw sockets for the tenantgate Bolt tests: PackStream, chunking, a bare client and
a scriptable fake Bolt server that records every message it receives.

  c = Client(port); c.handshake((5, 4)); c.send("HELLO", {...}); c.recv() -> Msg
  with FakeBackend(user, password) as fb: ... fb.messages() -> [(conn, Msg), ...]

What a driver never sends (pipelines of chosen messages, malformed chunks, forged
parameters) is sent from here; the JavaScript driver covers what applications do.
"""

import socket
import struct
import threading

import tghelpers as h

MAGIC = b"\x60\x60\xb0\x17"

SIGS = {"HELLO": 0x01, "GOODBYE": 0x02, "RESET": 0x0F, "RUN": 0x10, "BEGIN": 0x11,
        "COMMIT": 0x12, "ROLLBACK": 0x13, "DISCARD": 0x2F, "PULL": 0x3F, "TELEMETRY": 0x54,
        "ROUTE": 0x66, "LOGON": 0x6A, "LOGOFF": 0x6B, "SUCCESS": 0x70, "RECORD": 0x71,
        "IGNORED": 0x7E, "FAILURE": 0x7F}
NAMES = {v: k for k, v in SIGS.items()}


class Struct:
    """A PackStream structure: tag (an int) and fields."""

    def __init__(self, tag, *fields):
        self.tag, self.fields = tag, list(fields)

    def __eq__(self, other):
        return isinstance(other, Struct) and (self.tag, self.fields) == (other.tag, other.fields)

    def __repr__(self):
        return f"Struct({chr(self.tag) if 32 < self.tag < 127 else self.tag}, {self.fields})"


def node(nid, labels, props, element_id=None):
    """A Node value as Bolt 5.x sends it (4 fields; 4.4: pass element_id=False for 3)."""
    if element_id is False:
        return Struct(ord("N"), nid, labels, props)
    return Struct(ord("N"), nid, labels, props, element_id or str(nid))


def _size(n, tiny, m8, m16, m32):
    if n < 16 and tiny is not None:
        return bytes([tiny | n])
    if n < 0x100 and m8 is not None:
        return bytes([m8, n])
    if n < 0x10000:
        return bytes([m16]) + struct.pack(">H", n)
    return bytes([m32]) + struct.pack(">I", n)


def pack(v):
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if -16 <= v < 128:
            return struct.pack(">b", v)
        if -128 <= v < 128:
            return b"\xc8" + struct.pack(">b", v)
        if -32768 <= v < 32768:
            return b"\xc9" + struct.pack(">h", v)
        if -(1 << 31) <= v < (1 << 31):
            return b"\xca" + struct.pack(">i", v)
        return b"\xcb" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\xc1" + struct.pack(">d", v)
    if isinstance(v, (bytes, bytearray)):
        return _size(len(v), None, 0xCC, 0xCD, 0xCE) + bytes(v)
    if isinstance(v, str):
        b = v.encode()
        return _size(len(b), 0x80, 0xD0, 0xD1, 0xD2) + b
    if isinstance(v, list):
        return _size(len(v), 0x90, 0xD4, 0xD5, 0xD6) + b"".join(pack(e) for e in v)
    if isinstance(v, dict):
        return _size(len(v), 0xA0, 0xD8, 0xD9, 0xDA) + b"".join(
            pack(k) + pack(e) for k, e in v.items())
    if isinstance(v, Struct):
        return bytes([0xB0 | len(v.fields), v.tag]) + b"".join(pack(f) for f in v.fields)
    raise TypeError(v)


class Unpacker:
    def __init__(self, data):
        self.d, self.i = data, 0

    def take(self, n):
        if self.i + n > len(self.d):
            raise ValueError("truncated")
        v = self.d[self.i:self.i + n]
        self.i += n
        return v

    def u(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

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
            return self.map(lo)
        if hi == 0xB0:
            tag = self.take(1)[0]
            return Struct(tag, *[self.value() for _ in range(lo)])
        fixed = {0xC0: None, 0xC2: False, 0xC3: True}
        if m in fixed:
            return fixed[m]
        if m == 0xC1:
            return self.u(">d")
        ints = {0xC8: ">b", 0xC9: ">h", 0xCA: ">i", 0xCB: ">q"}
        if m in ints:
            return self.u(ints[m])
        if m in (0xCC, 0xCD, 0xCE):
            return self.take(self.u({0xCC: ">B", 0xCD: ">H", 0xCE: ">I"}[m]))
        if m in (0xD0, 0xD1, 0xD2):
            return self.take(self.u({0xD0: ">B", 0xD1: ">H", 0xD2: ">I"}[m])).decode()
        if m in (0xD4, 0xD5, 0xD6):
            n = self.u({0xD4: ">B", 0xD5: ">H", 0xD6: ">I"}[m])
            return [self.value() for _ in range(n)]
        if m in (0xD8, 0xD9, 0xDA):
            return self.map(self.u({0xD8: ">B", 0xD9: ">H", 0xDA: ">I"}[m]))
        raise ValueError(f"marker {m:#x}")

    def map(self, n):
        out = {}
        for _ in range(n):
            k = self.value()
            out[k] = self.value()
        return out


class Msg:
    """A message: its name and fields (dicts, lists, Structs, scalars)."""

    def __init__(self, name, fields, raw=b""):
        self.name, self.fields, self.raw = name, fields, raw

    @property
    def meta(self):
        return self.fields[0] if self.fields and isinstance(self.fields[0], dict) else {}

    def __repr__(self):
        return f"{self.name}{self.fields}"


def encode_msg(name, *fields):
    sig = SIGS[name] if isinstance(name, str) else name
    return pack(Struct(sig, *fields))


def chunk(body, size=65535):
    out = b""
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out += struct.pack(">H", len(part)) + part
    return out + b"\x00\x00"


def frame(name, *fields, chunk_size=65535):
    return chunk(encode_msg(name, *fields), chunk_size)


def decode_msg(body):
    u = Unpacker(body)
    v = u.value()
    if not isinstance(v, Struct) or u.i != len(body):
        raise ValueError("not a message")
    return Msg(NAMES.get(v.tag, v.tag), v.fields, body)


def proposal(major, minor, rng=0):
    return bytes([0, rng, minor, major])


class Conn:
    """Either end of a Bolt connection on a socket: chunked messages in and out."""

    def __init__(self, sock):
        self.s = sock
        self.buf = b""

    def recv_exact(self, n):
        while len(self.buf) < n:
            d = self.s.recv(65536)
            if not d:
                raise EOFError
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_body(self):
        """One message's bytes (NOOPs skipped)."""
        body = b""
        while True:
            n = struct.unpack(">H", self.recv_exact(2))[0]
            if n == 0:
                if body:
                    return body
                continue
            body += self.recv_exact(n)

    def recv(self):
        return decode_msg(self.recv_body())

    def send(self, name, *fields):
        self.s.sendall(frame(name, *fields))

    def send_raw(self, data):
        self.s.sendall(data)

    def closed(self, timeout=5.0):
        """True when the peer closes within timeout (what it sends meanwhile is kept)."""
        self.s.settimeout(h.scaled(timeout))
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    return True
                self.buf += d
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.s.close()


class Client(Conn):
    def __init__(self, port, timeout=10):
        super().__init__(socket.create_connection(("127.0.0.1", port), timeout=h.scaled(timeout)))
        self.version = None

    def handshake(self, *versions):
        """Proposes versions ((5, 4) or (5, 4, range)); returns the answer as (major, minor)."""
        props = [proposal(v[0], v[1], v[2] if len(v) > 2 else 0) for v in versions]
        props += [b"\x00\x00\x00\x00"] * (4 - len(props))
        self.s.sendall(MAGIC + b"".join(props))
        r = self.recv_exact(4)
        self.version = (r[3], r[2])
        return self.version

    def login(self, token, version=(5, 4), scheme="bearer", hello_extra=None):
        """Handshake + HELLO (+ LOGON from 5.1); returns the replies."""
        assert self.handshake(version) == version
        hello = {"user_agent": "tg-test/1"}
        hello.update(hello_extra or {})
        auth = ({"scheme": "bearer", "credentials": token} if scheme == "bearer" else
                {"scheme": "basic", "principal": "app", "credentials": token})
        if version <= (5, 0):
            hello.update(auth)
            self.send("HELLO", hello)
            return [self.recv()]
        self.send("HELLO", hello)
        self.send("LOGON", auth)
        return [self.recv(), self.recv()]

    def request(self, name, *fields):
        self.send(name, *fields)
        return self.recv()

    def run(self, query, params=None, extra=None, n=-1):
        """RUN + PULL pipelined; returns (run reply, records, pull reply)."""
        self.send("RUN", query, params or {}, extra or {})
        self.send("PULL", {"n": n})
        run = self.recv()
        records = []
        while True:
            m = self.recv()
            if m.name != "RECORD":
                return run, records, m
            records.append(m.fields[0])


class FakeBackend:
    """A Bolt server on a free port for the session tests.

    Accepts any number of connections; each negotiates the first proposal it supports
    (versions), checks basic auth against user/password, and answers:
      RUN: SUCCESS {fields} -- or FAILURE when the query contains "FAIL"; PULL: the rows
      of `results[query]` (default [[1]]) as RECORDs, then SUCCESS; BEGIN: SUCCESS, or
      FAILURE when its tx_metadata has a key "FAIL"; LOGOFF inside a transaction: FAILURE;
      COMMIT, ROLLBACK, TELEMETRY, LOGOFF, LOGON, RESET: SUCCESS; ROUTE: a table naming
      cluster members. After a FAILURE everything but RESET is IGNORED. Every message
      received is recorded with its connection number.
    """

    def __init__(self, user="svc", password="svc-pw", versions=((5, 4), (5, 3), (5, 2), (5, 1),
                                                                 (5, 0), (4, 4), (5, 6)),
                 results=None):
        self.user, self.password = user, password
        self.versions = [tuple(v) for v in versions]
        self.results = results or {}
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.log = []
        self.handshakes = []
        self.conns = 0
        self.socks = []
        self.stopping = False
        self.t = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stopping = True
        self.lsock.close()
        with self.lock:
            for s in self.socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        self.t.join(5)

    def messages(self, name=None):
        with self.lock:
            return [(c, m) for c, m in self.log if name is None or m.name == name]

    def names(self):
        with self.lock:
            return [m.name for _, m in self.log]

    def _accept(self):
        while not self.stopping:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
                cid = self.conns
                self.socks.append(s)
            threading.Thread(target=self._serve, args=(s, cid), daemon=True).start()

    def _serve(self, s, cid):
        c = Conn(s)
        try:
            hs = c.recv_exact(20)
            assert hs[:4] == MAGIC
            chosen = (0, 0)
            props = []
            for i in range(4):
                p = hs[4 + 4 * i: 8 + 4 * i]
                props.append((p[3], p[2], p[1]))
            with self.lock:
                self.handshakes.append(props)
            for major, minor, rng in props:
                cands = [v for v in self.versions if v[0] == major and minor - rng <= v[1] <= minor]
                if cands:
                    chosen = max(cands)
                    break
            s.sendall(bytes([0, 0, chosen[1], chosen[0]]))
            if chosen == (0, 0):
                return
            failed = in_tx = False
            while True:
                m = c.recv()
                with self.lock:
                    self.log.append((cid, m))
                if m.name == "GOODBYE":
                    return
                if m.name == "RESET":
                    failed = in_tx = False
                    c.send("SUCCESS", {})
                    continue
                if failed:
                    c.send("IGNORED")
                    continue
                if m.name in ("HELLO", "LOGON"):
                    a = m.meta
                    if "credentials" in a or m.name == "LOGON":
                        if (a.get("scheme") != "basic" or a.get("principal") != self.user or
                                a.get("credentials") != self.password):
                            c.send("FAILURE", {"code": "Neo.ClientError.Security.Unauthorized",
                                               "message": "bad credentials"})
                            return
                    meta = {"server": "Neo4j/5.26.0", "connection_id": f"bolt-{cid}"}
                    if m.name == "HELLO" and "utc" in a.get("patch_bolt", []):
                        meta["patch_bolt"] = ["utc"]
                    c.send("SUCCESS", meta if m.name == "HELLO" else {})
                elif m.name == "RUN":
                    if "FAIL" in m.fields[0]:
                        failed = True
                        c.send("FAILURE", {"code": "Neo.ClientError.Statement.SyntaxError",
                                           "message": "Invalid input"})
                    else:
                        c.send("SUCCESS", {"fields": ["x"], "t_first": 0})
                        c.last_query = m.fields[0]
                elif m.name == "PULL":
                    rows = self.results.get(getattr(c, "last_query", ""), [[1]])
                    for row in rows:
                        c.send("RECORD", row)
                    c.send("SUCCESS", {"has_more": False, "db": "neo4j"})
                elif m.name == "BEGIN" and "FAIL" in (m.meta.get("tx_metadata") or {}):
                    failed = True
                    c.send("FAILURE", {"code": "Neo.ClientError.Transaction.Invalid",
                                       "message": "refused"})
                elif m.name == "LOGOFF" and in_tx:
                    failed = True
                    c.send("FAILURE", {"code": "Neo.ClientError.Request.Invalid",
                                       "message": "LOGOFF in a transaction"})
                elif m.name == "ROUTE":
                    c.send("SUCCESS", {"rt": {"ttl": 300, "db": "neo4j", "servers": [
                        {"addresses": ["core1:7687", "core2:7687"], "role": "ROUTE"}]}})
                else:
                    if m.name == "BEGIN":
                        in_tx = True
                    elif m.name in ("COMMIT", "ROLLBACK"):
                        in_tx = False
                    c.send("SUCCESS", {})
        except (EOFError, OSError, AssertionError, ValueError):
            pass
        finally:
            s.close()
