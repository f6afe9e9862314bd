"""The Redis listener's command table, fetched from the backend (`COMMAND`) at its first
backend connection and used by the sessions that open afterwards.

  real redis-server 7.0:  the table comes from the backend (366 commands, as the built-in one),
                          one log line and one /metrics gauge say so, commands work, refusals
                          hold, a reload fetches again
  fake RESP servers:      (a small Python server that records every request it receives)
    - Redis 7 shaped, with a crafted table: APPEND's key spec says both arguments are keys,
      so what tenantgate forwards changes (APPEND t:alice:k t:alice:v); commands the backend
      lacks are unknown; a command the built-in table lacks, or described with a flag
      tenantgate does not know, stays refused; the session that fetched keeps the built-in table
    - Redis 6 shaped (7-element entries), `-ERR unknown command`, a malformed reply:
      the built-in table stays, and prefixing works as before
    - a backend that does not answer the first COMMAND: the next connection fetches again
"""

import contextlib
import json
import os
import shutil
import socket
import tempfile
import threading
import time

import pytest

import tghelpers as h
from pg_fixture import Tokens
from redis_fixture import Raw, is_err, redis_env

TABLE_LINE = "redis command table loaded"


def table_lines(proxy):
    out = []
    for line in proxy.log().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("msg") == TABLE_LINE:
            out.append(rec)
    return out


def wait_table(proxy, count=1):
    proxy.wait_log(TABLE_LINE, count=count)
    return table_lines(proxy)[count - 1]


# ---- the real server ---------------------------------------------------------------------------


def test_real_server_table_from_backend():
    admin = h.free_port()
    with redis_env(admin_port=admin) as env:
        assert table_lines(env.proxy) == []  # nothing is fetched before a backend connection
        first = env.client("alice")
        assert first.set("k", "v")
        rec = wait_table(env.proxy)
        assert rec["listener"] == "redis" and rec["source"] == "backend", rec
        assert rec["commands"] == 366 and rec["key_specs"] == 219, rec
        assert rec["differing_from_builtin"] == 0 and rec["refused_unknown"] == 0, rec
        assert h.scrape(admin, "tenantgate_command_table_commands", listener="redis",
                        source="backend") == 366
        assert h.scrape(admin, "tenantgate_command_table_commands", source="builtin") is None

        # sessions opened now judge with the backend's table: everything works as before
        c = env.client("alice")
        assert c.get("k") == b"v"
        c.mset({"m1": "1", "m2": "2"})
        assert c.mget("m1", "m2", "nope") == [b"1", b"2", None]
        c.xadd("s", {"f": "v"})
        got = c.xread({"s": "0"})
        assert got[0][0] == b"s"
        c.rpush("l", "a")
        assert c.blpop(["l"], 1) == (b"l", b"a")
        assert sorted(c.keys("*")) == [b"k", b"m1", b"m2", b"s"]
        assert c.object("encoding", "k") == b"embstr"
        assert sorted(env.direct.keys("t:alice:*")) == [b"t:alice:k", b"t:alice:m1",
                                                        b"t:alice:m2", b"t:alice:s"]
        r = env.raw("alice")
        for cmd in (("FLUSHALL",), ("CONFIG", "GET", "*"), ("CLIENT", "LIST"), ("DEBUG", "SLEEP", "0"),
                    ("EVAL", "return 1", "0"), ("NOSUCHCOMMAND",)):
            reply = r.cmd(*cmd)
            assert is_err(reply, b"NOPERM tenantgate:"), (cmd, reply)
        r.close()
        assert env.direct.get("t:alice:k") == b"v"
        # one fetch per listener generation: more connections do not ask again
        for _ in range(3):
            env.client("bob").ping()
        assert len(table_lines(env.proxy)) == 1
        # a reload builds a new listener state, which fetches again at its first connection
        env.proxy.reload(env.proxy.cfg)
        env.client("carol").ping()
        rec = wait_table(env.proxy, count=2)
        assert rec["source"] == "backend" and rec["commands"] == 366, rec
        assert env.client("carol").get("k") is None
        first.close()
        c.close()


# ---- fake servers --------------------------------------------------------------------------------


def bulk(s):
    s = s.encode() if isinstance(s, str) else s
    return b"$%d\r\n%s\r\n" % (len(s), s)


def names(items):
    return b"*%d\r\n" % len(items) + b"".join(b"+%s\r\n" % x.encode() for x in items)


def spec_index(flags, index, lastkey):
    return (b"*6\r\n" + bulk("flags") + names(flags)
            + bulk("begin_search") + b"*4\r\n" + bulk("type") + bulk("index") + bulk("spec")
            + b"*2\r\n" + bulk("index") + b":%d\r\n" % index
            + bulk("find_keys") + b"*4\r\n" + bulk("type") + bulk("range") + bulk("spec")
            + b"*6\r\n" + bulk("lastkey") + b":%d\r\n" % lastkey + bulk("keystep") + b":1\r\n"
            + bulk("limit") + b":0\r\n")


def entry7(name, arity, flags, acl, specs=()):
    """A Redis 7 COMMAND entry: 10 elements, no subcommands."""
    return (b"*10\r\n" + bulk(name) + b":%d\r\n" % arity + names(flags) + b":1\r\n:1\r\n:1\r\n"
            + names(acl) + b"*0\r\n" + b"*%d\r\n" % len(specs) + b"".join(specs) + b"*0\r\n")


def entry6(name, arity, flags, acl):
    """A Redis 6 COMMAND entry: 7 elements, no key specs."""
    return (b"*7\r\n" + bulk(name) + b":%d\r\n" % arity + names(flags) + b":1\r\n:1\r\n:1\r\n"
            + names(acl))


CRAFTED = [
    # APPEND key value -- but this server says both arguments are keys
    entry7("append", 3, ["write", "denyoom"], ["@write", "@string", "@fast"],
           [spec_index(["RW", "insert"], 1, 1)]),
    entry7("get", 2, ["readonly", "fast"], ["@read", "@string", "@fast"],
           [spec_index(["RO", "access"], 1, 0)]),
    entry7("ping", -1, ["fast"], ["@fast", "@connection"]),
    # a flag tenantgate has never seen: the command is refused
    entry7("strlen", 2, ["readonly", "fast", "teleport"], ["@read", "@string", "@fast"],
           [spec_index(["RO"], 1, 0)]),
    # a command of a newer Redis that tenantgate has no rule for
    entry7("hexpire", -6, ["write", "fast"], ["@write", "@hash", "@fast"],
           [spec_index(["RW", "update"], 1, 0)]),
    # refused by the built-in table: a server's harmless-looking flags do not lift that
    entry7("flushall", -1, ["write"], ["@write"], [spec_index(["RW"], 1, 0)]),
]
CRAFTED_REPLY = b"*%d\r\n" % len(CRAFTED) + b"".join(CRAFTED)
REDIS6_REPLY = b"*3\r\n" + entry6("append", 3, ["write", "denyoom"], ["@write"]) + entry6(
    "get", 2, ["readonly", "fast"], ["@read"]) + entry6("del", -2, ["write"], ["@write"])


class FakeRedis:
    """A RESP server that answers AUTH, COMMAND (with `command_reply`) and records the rest.

    command_reply may be a callable taking the 1-based count of COMMAND requests seen and
    returning bytes, or None to leave that request unanswered.
    """

    def __init__(self, command_reply):
        self.command_reply = command_reply
        self.requests = []  # (connection number, [arg bytes...]) in arrival order
        self.commands = 0
        self.conns = 0
        self.lock = threading.Lock()
        self.srv = h.ThreadedServer(self.handle)

    def start(self):
        self.srv.start()
        return self

    def stop(self):
        self.srv.stop()

    @property
    def address(self):
        return self.srv.address

    def forwarded(self, name):
        with self.lock:
            return [args for _, args in self.requests if args[0].upper() == name.encode()]

    def handle(self, c, srv):
        with self.lock:
            self.conns += 1
            conn = self.conns
        buf = b""
        while True:
            while True:
                req, rest = self.parse(buf)
                if req is None:
                    break
                buf = rest
                if not self.answer(c, conn, req):
                    return
            try:
                data = c.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data

    @staticmethod
    def parse(buf):
        if not buf.startswith(b"*") or b"\r\n" not in buf:
            return None, buf
        head, rest = buf.split(b"\r\n", 1)
        args = []
        for _ in range(int(head[1:])):
            if b"\r\n" not in rest:
                return None, buf
            line, rest = rest.split(b"\r\n", 1)
            n = int(line[1:])
            if len(rest) < n + 2:
                return None, buf
            args.append(rest[:n])
            rest = rest[n + 2:]
        return args, rest

    def answer(self, c, conn, args):
        name = args[0].upper()
        with self.lock:
            self.requests.append((conn, args))
        if name == b"AUTH":
            c.sendall(b"+OK\r\n")
        elif name == b"COMMAND" and len(args) == 1:
            with self.lock:
                self.commands += 1
                n = self.commands
            reply = self.command_reply(n) if callable(self.command_reply) else self.command_reply
            if reply is not None:
                c.sendall(reply)
        elif name == b"PING":
            c.sendall(b"+PONG\r\n")
        elif name in (b"APPEND", b"DEL", b"STRLEN"):
            c.sendall(b":1\r\n")
        elif name == b"GET":
            c.sendall(b"$-1\r\n")
        else:
            c.sendall(b"+OK\r\n")
        return True


@contextlib.contextmanager
def fake_env(tg, command_reply):
    """A FakeRedis behind tenantgate (service AUTH with a password); yields (fake, proxy, tokens)."""
    fake = FakeRedis(command_reply).start()
    workdir = tempfile.mkdtemp(prefix="tg-redis-fake-")
    try:
        secret = os.urandom(32).hex()
        jwt_file = os.path.join(workdir, "jwt-secret")
        pw_file = os.path.join(workdir, "redis-password")
        with open(jwt_file, "w") as f:
            f.write(secret + "\n")
        with open(pw_file, "w") as f:
            f.write("svc-password\n")
        port = h.free_port()
        listener = {"name": "redis", "protocol": "redis", "listen": f"127.0.0.1:{port}",
                    "backend": {"address": fake.address, "user": "default",
                                "password_file": pw_file}}
        cfg = h.base_config([listener], auth={"jwt": {"algorithms": ["HS256"],
                                                      "hs256_secret_file": jwt_file}})
        proxy = tg(cfg)
        yield fake, proxy, Tokens(secret), port
    finally:
        fake.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def raw(port, tokens, tenant):
    r = Raw(port)
    assert r.cmd("AUTH", tokens.mint(tenant)) == b"OK"
    return r


def test_backend_keyspec_changes_prefixing(tg):
    with fake_env(tg, CRAFTED_REPLY) as (fake, proxy, tokens, port):
        first = raw(port, tokens, "alice")  # opened before the table: keeps the built-in one
        rec = wait_table(proxy)
        assert rec["source"] == "backend" and rec["commands"] == len(CRAFTED), rec
        assert rec["refused_unknown"] == 2 and rec["differing_from_builtin"] >= 1, rec
        # the service AUTH comes first, then COMMAND, then the client's commands
        with fake.lock:
            assert [a[0].upper() for _, a in fake.requests[:2]] == [b"AUTH", b"COMMAND"]

        second = raw(port, tokens, "alice")
        assert second.cmd("APPEND", "k", "v") == 1
        assert fake.forwarded("APPEND")[-1] == [b"APPEND", b"t:alice:k", b"t:alice:v"]
        assert first.cmd("APPEND", "k", "v") == 1
        assert fake.forwarded("APPEND")[-1] == [b"APPEND", b"t:alice:k", b"v"]
        assert second.cmd("GET", "k") is None
        assert fake.forwarded("GET")[-1] == [b"GET", b"t:alice:k"]
        assert second.cmd("PING") == b"PONG"

        # the backend has no DEL: unknown in the backend's table (the built-in one has it)
        dels = len(fake.forwarded("DEL"))
        assert second.cmd("DEL", "k") == ("ERR", b"NOPERM tenantgate: unknown command")
        assert first.cmd("DEL", "k") == 1
        assert len(fake.forwarded("DEL")) == dels + 1
        # an unknown flag, a command without a rule, a command the built-in table refuses
        for cmd, word in ((("STRLEN", "k"), b"STRLEN"), (("HEXPIRE", "h", "10", "FIELDS", "1", "f"),
                                                          b"HEXPIRE"), (("FLUSHALL",), b"FLUSHALL")):
            reply = second.cmd(*cmd)
            assert is_err(reply, b"NOPERM tenantgate: " + word + b" is not allowed"), reply
            assert fake.forwarded(word.decode()) == [], cmd
        assert second.cmd("STRLEN", "k")[1].endswith(b"(tenantgate has no rule for it)")
        first.close()
        second.close()
        # fetched once, by the first backend connection only
        assert fake.commands == 1


@pytest.mark.parametrize("reply,reason", [
    (REDIS6_REPLY, "the backend has no key specs"),
    (b"-ERR unknown command 'COMMAND', with args beginning with: \r\n",
     "the backend has no key specs"),
    (b"*1\r\n+OK\r\n", "the backend's COMMAND reply is not usable"),
], ids=["redis6", "unknown-command", "malformed"])
def test_fallback_to_builtin(tg, reply, reason):
    with fake_env(tg, reply) as (fake, proxy, tokens, port):
        first = raw(port, tokens, "alice")
        rec = wait_table(proxy)
        assert rec["source"] == "builtin" and rec["reason"] == reason, rec
        assert rec["commands"] == 366, rec
        r = raw(port, tokens, "bob")
        assert r.cmd("APPEND", "k", "v") == 1
        assert fake.forwarded("APPEND")[-1] == [b"APPEND", b"t:bob:k", b"v"]
        assert r.cmd("DEL", "a", "b") == 1
        assert fake.forwarded("DEL")[-1] == [b"DEL", b"t:bob:a", b"t:bob:b"]
        assert is_err(r.cmd("FLUSHALL"), b"NOPERM tenantgate:")
        assert r.cmd("PING") == b"PONG"
        r.close()
        first.close()
        assert fake.commands == 1


def test_unanswered_fetch_is_retried(tg):
    # the first COMMAND is never answered; the second is
    with fake_env(tg, lambda n: None if n == 1 else CRAFTED_REPLY) as (fake, proxy, tokens, port):
        stuck = Raw(port)
        stuck.send("AUTH", tokens.mint("alice"))
        deadline = time.monotonic() + h.scaled(10)
        while fake.commands < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert fake.commands == 1
        # its AUTH answer waits behind the unanswered COMMAND (replies keep request order)
        stuck.s.settimeout(0.3)
        with pytest.raises(socket.timeout):
            stuck.read()
        stuck.close()
        # once that session has closed, the next backend connection asks again (a connection
        # that races the close finds the fetch still running and simply does not ask)
        deadline = time.monotonic() + h.scaled(10)
        while fake.commands < 2 and time.monotonic() < deadline:
            r = raw(port, tokens, "alice")
            r.close()
            time.sleep(0.05)
        assert fake.commands == 2
        rec = wait_table(proxy)
        assert rec["source"] == "backend", rec
        assert len(table_lines(proxy)) == 1
        r = raw(port, tokens, "alice")
        assert r.cmd("APPEND", "k", "v") == 1
        assert fake.forwarded("APPEND")[-1] == [b"APPEND", b"t:alice:k", b"t:alice:v"]
        r.close()
