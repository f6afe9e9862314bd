#!/usr/bin/python3
"""Generates policy/redis_commands.def, tenantgate's built-in Redis command table.

    policy/gen/redis_commands.py [--out FILE] [--check] [--redis-server PATH]

Starts a throwaway redis-server (127.0.0.1, a free port, no RDB/AOF, a temp
directory), reads `COMMAND` (= COMMAND INFO of every command: arity, flags,
ACL categories, key specs, subcommands) and `COMMAND DOCS` (the group of each
command), stops the server by its PID and writes one X-macro row per command
and subcommand, each followed by its key-spec rows:

    TG_REDIS_COMMAND(name, arity, command flags, ACL categories, number of key specs)
    TG_REDIS_KEYSPEC(begin_search, bs_arg, keyword, find_keys, a, b, c, key-spec flags)

--check compares the generated text with the committed file instead of writing
it (exit 1 on a difference; exit 0 with a note when the installed server is not
the version the file was generated from). The file is data: policy/redis_policy.c
turns it into a table with the same builder the session feeds from a live
server's COMMAND INFO reply.

A flag, ACL category or key-spec type this script does not know is an error:
the C side must learn it first (policy/redis_policy.h maps), so a new Redis
version cannot slip a command through with semantics nobody looked at.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.normpath(os.path.join(HERE, "..", "redis_commands.def"))

# Redis's names -> the C macro arguments (policy/redis_policy.h TG_REDIS_*_MAP).
CMD_FLAGS = ["write", "readonly", "denyoom", "module", "admin", "pubsub", "noscript",
             "blocking", "loading", "stale", "skip_monitor", "skip_slowlog", "asking", "fast",
             "no_auth", "may_replicate", "no_mandatory_keys", "no_async_loading", "no_multi",
             "movablekeys", "allow_busy"]
ACL_CATS = ["keyspace", "read", "write", "set", "sortedset", "list", "hash", "string", "bitmap",
            "hyperloglog", "geo", "stream", "pubsub", "admin", "fast", "slow", "blocking",
            "dangerous", "connection", "transaction", "scripting"]
KS_FLAGS = {"RO": "RO", "RW": "RW", "OW": "OW", "RM": "RM", "access": "ACCESS",
            "update": "UPDATE", "insert": "INSERT", "delete": "DELETE", "not_key": "NOT_KEY",
            "incomplete": "INCOMPLETE", "variable_flags": "VARIABLE_FLAGS"}


class GenError(Exception):
    pass


# ---- a minimal RESP2 client (no dependency on a client library's reply parsing) ----

class Resp:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def close(self):
        self.sock.close()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise GenError("redis-server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise GenError("redis-server closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise GenError("redis error: " + rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode()
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise GenError("unexpected RESP type %r" % t)

    def call(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a.encode() if isinstance(a, str) else a
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return self._reply()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A throwaway redis-server on 127.0.0.1; stopped (by PID) in stop()."""

    def __init__(self, binary):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="tg-redis-gen-")
        self.proc = None
        self.port = None

    def start(self):
        for _ in range(5):
            self.port = free_port()
            self.proc = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", self.dir,
                 "--daemonize", "no", "--logfile", os.path.join(self.dir, "redis.log")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    c = Resp(self.port)
                    if c.call("PING") == "PONG":
                        return c
                    c.close()
                except OSError:
                    time.sleep(0.05)
            self.stop()  # port taken or too slow: try another port
        raise GenError("could not start %s" % self.binary)

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- COMMAND reply -> rows ----

def pairs(lst):
    return dict(zip(lst[0::2], lst[1::2]))


def c_flags(names, known, macro, what, cmd):
    out = []
    for n in names:
        n = n.lstrip("@")
        if n not in known:
            raise GenError("%s: unknown %s %r (teach policy/redis_policy.h first)" % (cmd, what, n))
        out.append("%s(%s)" % (macro, known[n] if isinstance(known, dict) else n.upper()))
    return " | ".join(out) if out else "0"


def keyspec_row(cmd, spec):
    d = pairs(spec)
    bs, fk = pairs(d["begin_search"]), pairs(d["find_keys"])
    bs_spec, fk_spec = pairs(bs.get("spec") or []), pairs(fk.get("spec") or [])
    if bs["type"] == "index":
        bs_args = ["INDEX", str(bs_spec["index"]), '""']
    elif bs["type"] == "keyword":
        kw = bs_spec["keyword"]
        if not kw or any(ch in kw for ch in '"\\') or not kw.isprintable():
            raise GenError("%s: odd keyword %r" % (cmd, kw))
        bs_args = ["KEYWORD", str(bs_spec["startfrom"]), '"%s"' % kw]
    elif bs["type"] == "unknown":
        bs_args = ["UNKNOWN", "0", '""']
    else:
        raise GenError("%s: unknown begin_search type %r" % (cmd, bs["type"]))
    if fk["type"] == "range":
        fk_args = ["RANGE", str(fk_spec["lastkey"]), str(fk_spec["keystep"]), str(fk_spec["limit"])]
    elif fk["type"] == "keynum":
        fk_args = ["KEYNUM", str(fk_spec["keynumidx"]), str(fk_spec["firstkey"]),
                   str(fk_spec["keystep"])]
    elif fk["type"] == "unknown":
        fk_args = ["UNKNOWN", "0", "0", "0"]
    else:
        raise GenError("%s: unknown find_keys type %r" % (cmd, fk["type"]))
    flags = c_flags(d.get("flags", []), KS_FLAGS, "K", "key-spec flag", cmd)
    return "TG_REDIS_KEYSPEC(%s)" % ", ".join(bs_args + fk_args + [flags])


def command_rows(info, groups):
    name, arity, flags, _first, _last, _step, acl, _tips, specs, subs = info[:10]
    if not name or any(not (ch.isalnum() or ch in "_-|") for ch in name):
        raise GenError("odd command name %r" % name)
    group = groups.get(name, "")
    rows = ["TG_REDIS_COMMAND(\"%s\", %d, %s, %s, %d) /* %s */" % (
        name, arity, c_flags(flags, CMD_FLAGS, "C", "command flag", name),
        c_flags(acl, ACL_CATS, "A", "ACL category", name), len(specs), group or "-")]
    rows += ["    " + keyspec_row(name, s) for s in specs]
    for sub in sorted(subs or [], key=lambda s: s[0]):
        if not sub[0].startswith(name + "|"):
            raise GenError("subcommand %r of %r" % (sub[0], name))
        rows += command_rows(sub, groups)
    return rows


def docs_groups(docs):
    groups = {}

    def walk(name, doc):
        d = pairs(doc)
        groups[name] = d.get("group", "")
        for sub, sdoc in pairs(d.get("subcommands") or []).items():
            walk(sub, sdoc)

    for name, doc in pairs(docs).items():
        walk(name, doc)
    return groups


def server_version(conn):
    """The redis_version line of the server's INFO."""
    info = conn.call("INFO", "server")
    return next(l.split(":", 1)[1].strip() for l in info.splitlines()
                if l.startswith("redis_version:"))


def generate(binary):
    srv = Server(binary)
    try:
        c = srv.start()
        version = server_version(c)
        commands = c.call("COMMAND")
        groups = docs_groups(c.call("COMMAND", "DOCS"))
        c.close()
    finally:
        srv.cleanup()
    rows = []
    for cmd in sorted(commands, key=lambda x: x[0]):
        rows += command_rows(cmd, groups)
    ncmd = sum(1 for r in rows if r.startswith("TG_REDIS_COMMAND"))
    nks = len(rows) - ncmd
    header = """\
/*
 * generated by policy/gen/redis_commands.py from redis-server %(v)s; do not edit.
 *
 * Redis's command table as the server publishes it (COMMAND, COMMAND DOCS):
 * %(n)d commands and subcommands, %(k)d key specs. One row per command, followed by
 * the rows of its key specs, in the server's order; a subcommand is named
 * "container|sub" and follows its container. The includer defines:
 *
 *   TG_REDIS_COMMAND(name, arity, flags, acl, nspecs)      trailing comment: COMMAND DOCS group
 *   TG_REDIS_KEYSPEC(bs, bs_arg, keyword, fk, a, b, c, flags)
 *     bs: INDEX (bs_arg = index) | KEYWORD (bs_arg = startfrom, keyword) | UNKNOWN
 *     fk: RANGE (a, b, c = lastkey, keystep, limit) | KEYNUM (keynumidx, firstkey, keystep)
 *         | UNKNOWN
 *   C(x) command flags, A(x) ACL categories, K(x) key-spec flags
 *
 * Regenerate: policy/gen/redis_commands.py  (check: policy/gen/redis_commands.py --check)
 */
""" % {"v": version, "n": ncmd, "k": nks}
    return version, header + "\n".join(rows) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    a = ap.parse_args()
    try:
        version, text = generate(a.redis_server)
    except (GenError, OSError) as e:
        print("redis_commands.py: %s" % e, file=sys.stderr)
        return 2
    if a.check:
        try:
            with open(a.out) as f:
                old = f.read()
        except OSError as e:
            print("redis_commands.py: %s" % e, file=sys.stderr)
            return 2
        if ("from redis-server %s;" % version) not in old.split("\n", 3)[1]:
            print("redis_commands.py: %s was generated from another redis-server version than "
                  "the installed %s; not compared" % (a.out, version))
            return 0
        if old != text:
            print("redis_commands.py: %s is out of date; regenerate it" % a.out, file=sys.stderr)
            return 1
        print("redis_commands.py: %s matches redis-server %s" % (a.out, version))
        return 0
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, a.out)
    print("redis_commands.py: wrote %s (redis-server %s)" % (a.out, version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
