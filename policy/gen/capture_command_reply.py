#!/usr/bin/python3
"""Captures a real redis-server's `COMMAND` reply, byte for byte, as test data.

    policy/gen/capture_command_reply.py [--out-dir DIR] [--redis-server PATH]

Starts a throwaway redis-server the way policy/gen/redis_commands.py does
(127.0.0.1, a free port, no RDB/AOF, a temp directory, stopped by its PID) and
writes the exact bytes of one `COMMAND` reply in RESP2 and one in RESP3 (after
`HELLO 3`) to DIR/redis-<version>-command.resp2 and .resp3 (default DIR:
tests/unit/policy/data). tests/unit/policy/redis_cmdinfo_test.c and the
redis_cmdinfo_fuzz seed corpus read them: the parser of policy/redis_cmdinfo.c is
tested on what a server really sends, not on a hand-written imitation.
"""

import argparse
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from redis_commands import GenError, Server, server_version  # noqa: E402

DEFAULT_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "tests", "unit", "policy", "data"))


def value_end(buf, pos):
    """Index just past the complete RESP2/RESP3 value starting at buf[pos], or None if incomplete."""
    eol = buf.find(b"\r\n", pos)
    if eol < 0:
        return None
    t, line, pos = buf[pos:pos + 1], buf[pos + 1:eol], eol + 2
    if t in b"+-:_#,(":
        return pos
    if t in b"$!=":
        n = int(line)
        if n < 0:
            return pos
        return pos + n + 2 if len(buf) >= pos + n + 2 else None
    if t in b"*~>%|":
        n = int(line)
        if n < 0:
            return pos
        if t in b"%|":
            n *= 2
        for _ in range(n):
            pos = value_end(buf, pos)
            if pos is None:
                return None
        if t == b"|":  # an attribute precedes the value it describes
            return value_end(buf, pos)
        return pos
    raise GenError("unexpected RESP type %r" % t)


def raw_reply(conn):
    """The exact bytes of the next reply on a redis_commands.Resp connection."""
    while True:
        end = value_end(conn.buf, 0) if conn.buf else None
        if end is not None:
            data, conn.buf = conn.buf[:end], conn.buf[end:]
            return data
        chunk = conn.sock.recv(65536)
        if not chunk:
            raise GenError("redis-server closed the connection")
        conn.buf += chunk


def send(conn, *args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    conn.sock.sendall(out)


def capture(binary, out_dir):
    srv = Server(binary)
    try:
        c = srv.start()
        version = server_version(c)
        send(c, "COMMAND")
        resp2 = raw_reply(c)
        send(c, "HELLO", "3")
        raw_reply(c)
        send(c, "COMMAND")
        resp3 = raw_reply(c)
        c.close()
    finally:
        srv.cleanup()
    written = []
    for ext, data in (("resp2", resp2), ("resp3", resp3)):
        path = os.path.join(out_dir, "redis-%s-command.%s" % (version, ext))
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)
        written.append("%s (%d bytes)" % (path, len(data)))
    return version, written


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default=DEFAULT_DIR)
    ap.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    a = ap.parse_args()
    try:
        version, written = capture(a.redis_server, a.out_dir)
    except (GenError, OSError, ValueError) as e:
        print("capture_command_reply.py: %s" % e, file=sys.stderr)
        return 2
    for w in written:
        print("capture_command_reply.py: wrote %s from redis-server %s" % (w, version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
