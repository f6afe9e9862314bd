"""The MongoDB test backend (tests/backends/mongodb/server.mjs) as a throwaway server.

    from mongo_fixture import mongo_backend  # noqa: F401  (the module-scoped pytest fixture)

    def test_x(mongo_backend):
        client = mongo_backend.client()          # pymongo, SCRAM-SHA-256 as the service user
        mongo_backend.address                    # "127.0.0.1:<port>", for a tenantgate backend

Or without pytest: `with MongoBackend() as m: ...`.

The backend is a small MongoDB-wire-compatible server in Node.js (in memory, one process)
that exists only to test tenantgate; MongoDB's own server cannot be installed here.
start() runs `node server.mjs --port P --user U --password W` on a free 127.0.0.1 port
(tghelpers.free_port) with a random service user and password, waits (bounded) for its
"listening on P" line, and keeps its stderr in a log file. stop() sends SIGTERM to that PID
only, escalates to SIGKILL after a deadline, asserts the exit code was 0 and that the log has
no "internal error" line (a backend bug must fail the test that provoked it, not hide).

It claims to be the primary of a one-member replica set, so a direct pymongo client needs
`directConnection=True` (client() sets it). MongoBackend(trace=True) makes the backend record
every command it receives; received() returns them (bodies as dicts, kind 1 sequences merged),
so a proxy test can check exactly what was forwarded -- or that nothing was.

mongo_env() with TG_EXT_MONGODB=mongodb://ROOT:PW@HOST:PORT/?replicaSet=rs0 set puts tenantgate
in front of that server instead (ext_backends.ExternalMongo: a service user made for the env,
the databases it added dropped at the end); MongoBackend itself is always the test backend.

RawMongo is a bare wire-protocol client (OP_MSG with kind 1 sequences and checksums, OP_QUERY,
SCRAM-SHA-256 login) for what drivers hide.
"""

import contextlib
import os
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

import ext_backends
import tghelpers as h

_HERE = os.path.dirname(os.path.abspath(__file__))
BACKEND_DIR = os.path.join(h.TG_SOURCE_DIR or os.path.join(_HERE, "..", ".."), "tests", "backends", "mongodb")
SERVER = os.path.join(BACKEND_DIR, "server.mjs")
NODE = shutil.which("node") or "/usr/bin/node"


def require_node_modules():
    """Fails (not skips) when `npm ci` has not been run: tests/run.sh installs them."""
    for mod in ("bson", "mingo"):
        if not os.path.isdir(os.path.join(BACKEND_DIR, "node_modules", mod)):
            pytest.fail(f"{BACKEND_DIR}/node_modules/{mod} is missing: run `npm ci` there "
                        "(tests/run.sh does it)")


class MongoBackend:
    def __init__(self, user=None, password=None, set_name="tgrs0", trace=False):
        self.trace = trace
        self.trace_path = None
        self.user = user or "svc-" + secrets.token_hex(4)
        self.password = password or secrets.token_urlsafe(18)
        self.set_name = set_name
        self.host = "127.0.0.1"
        self.port = None
        self.proc = None
        self.workdir = None
        self.log_path = None
        self._log = None
        self._clients = []

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    @property
    def pid(self):
        return self.proc.pid

    def start(self, timeout=None):
        require_node_modules()
        self.workdir = tempfile.mkdtemp(prefix="tg-mongo-")
        self.log_path = os.path.join(self.workdir, "backend.log")
        self._log = open(self.log_path, "wb")
        extra = []
        if self.trace:
            self.trace_path = os.path.join(self.workdir, "trace.jsonl")
            extra = [f"--trace={self.trace_path}"]
        for attempt in range(5):
            port = h.free_port()
            self.proc = subprocess.Popen(
                # --opt=value: a random password may start with "-"
                [NODE, SERVER, f"--host={self.host}", f"--port={port}", f"--user={self.user}",
                 f"--password={self.password}", f"--set-name={self.set_name}"] + extra,
                stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL)
            line = self._read_ready_line(h.scaled(timeout or 20))
            if line is not None:
                got = int(line.split()[-1])
                assert got == port, f"backend printed port {got}, asked for {port}"
                self.port = port
                return self
            self._reap()
            if attempt == 4 or "listen failed" not in self.log():
                raise AssertionError(f"the MongoDB test backend did not start:\n{self.log()}")
        raise AssertionError("unreachable")

    def _read_ready_line(self, timeout):
        deadline = time.monotonic() + timeout
        buf = b""
        fd = self.proc.stdout.fileno()
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([fd], [], [], min(left, 0.2))
            if r:
                chunk = os.read(fd, 256)
                if not chunk:
                    return None
                buf += chunk
            elif self.proc.poll() is not None:
                return None
        line = buf.split(b"\n", 1)[0].decode()
        return line if line.startswith("listening on ") else None

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def received(self, command=None):
        """The commands received so far (needs trace=True): dicts with conn, op, flags, ns and
        body; only those named `command` when given. SASL payloads are blanked."""
        from bson import json_util

        assert self.trace, "MongoBackend(trace=True) records commands"
        out = []
        try:
            with open(self.trace_path, encoding="utf-8") as f:
                for line in f:
                    entry = json_util.loads(line)
                    if command is None or next(iter(entry["body"]), None) == command:
                        out.append(entry)
        except FileNotFoundError:
            pass
        return out

    def uri(self, **options):
        opts = {"authSource": "admin", "authMechanism": "SCRAM-SHA-256", "directConnection": "true"}
        opts.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in options.items()})
        q = "&".join(f"{k}={v}" for k, v in opts.items())
        return f"mongodb://{self.user}:{self.password}@{self.address}/?{q}"

    def client(self, user=None, password=None, **kw):
        """A pymongo client authenticated with SCRAM-SHA-256 (closed at stop())."""
        import pymongo

        args = dict(host=self.host, port=self.port, username=user or self.user,
                    password=self.password if password is None else password,
                    authSource="admin", authMechanism="SCRAM-SHA-256", directConnection=True,
                    serverSelectionTimeoutMS=int(h.scaled(10) * 1000),
                    socketTimeoutMS=int(h.scaled(30) * 1000))
        args.update(kw)
        c = pymongo.MongoClient(**args)
        self._clients.append(c)
        return c

    def _reap(self, timeout=None):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(h.scaled(timeout or 10))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self):
        """Stops the process by PID; asserts a clean exit and no internal error in the log."""
        for c in self._clients:
            try:
                c.close()
            except Exception:
                pass
        self._clients = []
        try:
            if self.proc is not None:
                crashed = self.proc.poll()
                self._reap()
                if self.proc.stdout:
                    self.proc.stdout.close()
                log = self.log()
                assert crashed is None, f"the MongoDB test backend exited early ({crashed}):\n{log}"
                assert self.proc.returncode == 0, f"backend exit code {self.proc.returncode}:\n{log}"
                assert "internal error" not in log, f"the MongoDB test backend hit a bug:\n{log}"
        finally:
            if self._log:
                self._log.close()
            if self.workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


@pytest.fixture(scope="module")
def mongo_backend():
    m = MongoBackend().start()
    try:
        yield m
    finally:
        m.stop()


# ---- a raw wire client ---------------------------------------------------------------------------

OP_REPLY, OP_QUERY, OP_COMPRESSED, OP_MSG = 1, 2004, 2012, 2013
MSG_CHECKSUM_PRESENT, MSG_MORE_TO_COME, MSG_EXHAUST_ALLOWED = 1, 2, 1 << 16


def crc32c(data):
    """CRC-32C (Castagnoli), as OP_MSG's optional checksum."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def op_msg(request_id, body, sequences=None, flags=0, checksum=False):
    """An OP_MSG: body as section kind 0, each (identifier, docs) of sequences as kind 1."""
    import struct

    import bson

    payload = b"\x00" + bson.encode(body)
    for ident, docs in (sequences or {}).items():
        seq = ident.encode() + b"\x00" + b"".join(bson.encode(d) for d in docs)
        payload += b"\x01" + struct.pack("<i", 4 + len(seq)) + seq
    if checksum:
        flags |= MSG_CHECKSUM_PRESENT
    length = 16 + 4 + len(payload) + (4 if checksum else 0)
    msg = struct.pack("<iiiiI", length, request_id, 0, OP_MSG, flags) + payload
    if checksum:
        msg += struct.pack("<I", crc32c(msg))
    return msg


def op_query(request_id, ns, query, skip=0, limit=-1, flags=0):
    import struct

    import bson

    body = struct.pack("<i", flags) + ns.encode() + b"\x00" + struct.pack("<ii", skip, limit) + bson.encode(query)
    return struct.pack("<iiii", 16 + len(body), request_id, 0, OP_QUERY) + body


class RawMongo:
    """A bare socket speaking the wire protocol: send messages, read whole replies, SCRAM login."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        import socket

        self.s = socket.create_connection((host, port), timeout=h.scaled(timeout))
        self.next_id = 1

    def close(self):
        self.s.close()

    def send(self, data):
        self.s.sendall(data)

    def _exact(self, n):
        out = b""
        while len(out) < n:
            chunk = self.s.recv(n - len(out))
            if not chunk:
                raise EOFError("connection closed")
            out += chunk
        return out

    def read(self):
        """One reply: dict(op, request_id, response_to, flags, doc[, docs])."""
        import struct

        import bson

        head = self._exact(16)
        length, rid, rto, op = struct.unpack("<iiii", head)
        assert 16 <= length <= 48_000_000, length
        rest = self._exact(length - 16)
        if op == OP_MSG:
            flags = struct.unpack_from("<I", rest, 0)[0]
            if flags & MSG_CHECKSUM_PRESENT:
                want = struct.unpack_from("<I", rest, len(rest) - 4)[0]
                assert crc32c(head + rest[:-4]) == want, "reply checksum"
            assert rest[4] == 0, "reply section kind"
            return dict(op=op, request_id=rid, response_to=rto, flags=flags,
                        doc=bson.decode(rest[5:5 + struct.unpack_from("<i", rest, 5)[0]]))
        if op == OP_REPLY:
            flags, cursor_id, start, n = struct.unpack_from("<iqii", rest, 0)
            docs = bson.decode_all(rest[20:])
            assert len(docs) == n
            return dict(op=op, request_id=rid, response_to=rto, flags=flags, cursor_id=cursor_id,
                        doc=docs[0] if docs else None, docs=docs)
        raise AssertionError(f"unexpected reply opcode {op}")

    def command(self, body, db="admin", sequences=None, flags=0, checksum=False, full=False):
        """Sends an OP_MSG command (adds $db) and returns the reply document (full: the
        whole read() result, with flags)."""
        rid = self.next_id
        self.next_id += 1
        self.send(op_msg(rid, dict(body, **{"$db": db}), sequences, flags, checksum))
        if flags & MSG_MORE_TO_COME:
            return None
        r = self.read()
        assert r["response_to"] == rid, (r["response_to"], rid)
        return r if full else r["doc"]

    def query(self, ns, q):
        rid = self.next_id
        self.next_id += 1
        self.send(op_query(rid, ns, q))
        r = self.read()
        assert r["op"] == OP_REPLY and r["response_to"] == rid
        return r

    def closed(self, timeout=5.0):
        """True when the server closes the connection within timeout (data read is discarded)."""
        import socket

        self.s.settimeout(h.scaled(timeout))
        try:
            while True:
                if not self.s.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def login(self, user, password, db="admin", speculative=False):
        """SCRAM-SHA-256 (RFC 5802/7677) with saslStart/saslContinue; returns the last reply.
        speculative: the first step rides in hello's speculativeAuthenticate."""
        import base64
        import hashlib
        import hmac

        import bson

        cnonce = base64.b64encode(os.urandom(24)).decode()
        first_bare = f"n={user.replace('=', '=3D').replace(',', '=2C')},r={cnonce}"
        start = {"saslStart": 1, "mechanism": "SCRAM-SHA-256", "payload": bson.Binary(b"n,," + first_bare.encode()),
                 "options": {"skipEmptyExchange": True}}
        if speculative:
            hello = self.command({"hello": 1, "speculativeAuthenticate": dict(start, db=db)})
            if "speculativeAuthenticate" not in hello:
                return {"ok": 0, "speculative": False, "hello": hello}
            r = dict(hello["speculativeAuthenticate"], ok=1)
        else:
            r = self.command(start, db=db)
        if r["ok"] != 1:
            return r
        server_first = bytes(r["payload"]).decode()
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        assert attrs["r"].startswith(cnonce)
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        stored = hashlib.sha256(client_key).digest()
        final_wo_proof = f"c=biws,r={attrs['r']}"
        auth_msg = f"{first_bare},{server_first},{final_wo_proof}".encode()
        sig = hmac.new(stored, auth_msg, "sha256").digest()
        proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, sig))).decode()
        r2 = self.command({"saslContinue": 1, "conversationId": r["conversationId"],
                           "payload": bson.Binary(f"{final_wo_proof},p={proof}".encode())}, db=db)
        if r2["ok"] == 1:
            server_key = hmac.new(salted, b"Server Key", "sha256").digest()
            want = base64.b64encode(hmac.new(server_key, auth_msg, "sha256").digest()).decode()
            assert bytes(r2["payload"]).decode() == f"v={want}", "server signature"
            assert r2["done"] is True
        return r2


# ---- tenantgate in front of the test backend -------------------------------------------------------


class MongoEnv:
    """tenantgate (`protocol: mongodb`) in front of a MongoBackend; see mongo_env()."""

    def __init__(self, backend, proxy, port, tokens, admin_port):
        self.backend, self.proxy, self.port = backend, proxy, port
        self.tokens, self.admin_port = tokens, admin_port
        self.clients = []

    def close_clients(self):
        """Closes the pymongo clients made here (while tenantgate still answers their endSessions)."""
        for c in self.clients:
            try:
                c.close()
            except Exception:
                pass
        self.clients = []

    def uri(self, tenant=None, token=None, db="app", **options):
        token = token or self.tokens.mint(tenant)
        opts = {"authMechanism": "PLAIN", "authSource": "$external"}
        opts.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in options.items()})
        q = "&".join(f"{k}={v}" for k, v in opts.items())
        return f"mongodb://{tenant or 'tenant'}:{token}@127.0.0.1:{self.port}/{db}?{q}"

    def client(self, tenant=None, token=None, **kw):
        """pymongo through tenantgate, PLAIN on $external with the tenant's JWT."""
        import pymongo

        token = token or self.tokens.mint(tenant)
        args = dict(host="127.0.0.1", port=self.port, username=tenant or "tenant", password=token,
                    authSource="$external", authMechanism="PLAIN",
                    serverSelectionTimeoutMS=int(h.scaled(10) * 1000),
                    socketTimeoutMS=int(h.scaled(30) * 1000))
        args.update(kw)
        c = pymongo.MongoClient(**args)
        self.clients.append(c)
        return c

    def direct(self):
        """pymongo straight to the backend as the service user (sees every tenant's data)."""
        return self.backend.client()

    def raw(self, tenant=None, token=None):
        """A RawMongo to tenantgate; authenticated with PLAIN when tenant or token is given."""
        r = RawMongo(self.port)
        if tenant is not None or token is not None:
            reply = r.plain(token or self.tokens.mint(tenant))
            assert reply["ok"] == 1, reply
        return r


def _raw_plain(self, token, user="tenant", db="$external"):
    """saslStart PLAIN (password = token); returns the reply."""
    import bson

    payload = b"\x00" + user.encode() + b"\x00" + token.encode()
    return self.command({"saslStart": 1, "mechanism": "PLAIN", "payload": bson.Binary(payload),
                         "autoAuthorize": 1}, db=db)


def _raw_oidc(self, token, db="$external"):
    """saslStart MONGODB-OIDC with {jwt: token}; returns the reply."""
    import bson

    return self.command({"saslStart": 1, "mechanism": "MONGODB-OIDC",
                         "payload": bson.Binary(bson.encode({"jwt": token}))}, db=db)


RawMongo.plain = _raw_plain
RawMongo.oidc = _raw_oidc


@contextlib.contextmanager
def mongo_env(mongodb=None, listener_extra=None, trace=True, **cfg_extra):
    """Starts the test backend and tenantgate (HS256 tokens, admin port); yields a MongoEnv."""
    from pg_fixture import Tokens

    ext = ext_backends.url("mongodb")
    backend = (ext_backends.ExternalMongo(ext) if ext else MongoBackend(trace=trace)).start()
    proxy = None
    workdir = tempfile.mkdtemp(prefix="tg-mongo-env-")
    try:
        secret = secrets.token_hex(32)
        jwt_file = os.path.join(workdir, "jwt-secret")
        pw_file = os.path.join(workdir, "mongo-password")
        with open(jwt_file, "w") as f:
            f.write(secret + "\n")
        with open(pw_file, "w") as f:
            f.write(backend.password + "\n")
        port, admin_port = h.free_port(), h.free_port()
        listener = {"name": "mongo", "protocol": "mongodb", "listen": f"127.0.0.1:{port}",
                    "backend": {"address": backend.address, "user": backend.user,
                                "password_file": pw_file, "auth_db": "admin"},
                    "mongodb": mongodb or {"isolation": "field", "tenant_field": "tenant_id"}}
        listener.update(listener_extra or {})
        cfg = h.base_config([listener], admin_port=admin_port,
                            auth={"jwt": {"algorithms": ["HS256"], "hs256_secret_file": jwt_file,
                                          "leeway_s": 0}},
                            **cfg_extra)
        proxy = h.Proxy(workdir, cfg, name="tg").start()
        env = MongoEnv(backend, proxy, port, Tokens(secret), admin_port)
        try:
            yield env
        finally:
            env.close_clients()
    finally:
        try:
            if proxy is not None:
                if proxy.rc is None:
                    proxy.stop()
                else:
                    proxy.check_sanitizers()
        finally:
            if proxy is not None:
                proxy.kill()
            backend.stop()
            shutil.rmtree(workdir, ignore_errors=True)
