#!/usr/bin/python3
"""Captures the MongoDB wire messages pymongo really sends, as test data.

    /usr/bin/python3 tests/unit/protocols/mongodb/data/capture.py [outdir]

A tiny fake server on 127.0.0.1 (an ephemeral port, stopped at the end)
answers pymongo's legacy OP_QUERY isMaster handshake with an OP_REPLY that
advertises wire version 9 (what Debian's pymongo 3.11 supports), then answers
every OP_MSG with a plausible {ok: 1} reply, while one client connection runs
a find, an insert_many (a kind 1 "documents" sequence), an update_many
("updates"), a delete_many ("deletes") and an aggregate. Every message the
client sends is written to <outdir>/pymongo_<n>_<what>.bin exactly as
received (header included); the monitor connection's handshakes are kept as
well. Nothing here is used at build time: the .bin files are committed and
read by tests/unit/protocols/mongodb/codec_test.c and the fuzz corpus.
"""
import os
import socket
import struct
import sys
import threading

import bson
import pymongo
from bson.son import SON
from pymongo.write_concern import WriteConcern

OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013
out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
captured = []
lock = threading.Lock()


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def hello_doc():
    return SON([("ismaster", True), ("maxBsonObjectSize", 16777216),
                ("maxMessageSizeBytes", 48000000), ("maxWriteBatchSize", 100000),
                ("localTime", None), ("logicalSessionTimeoutMinutes", 30),
                ("connectionId", 1), ("minWireVersion", 0), ("maxWireVersion", 9),
                ("readOnly", False), ("ok", 1.0)])


def op_msg_body(msg):
    """The kind 0 body of an OP_MSG (flags, then sections)."""
    off = 16 + 4
    while off < len(msg):
        kind = msg[off]
        off += 1
        if kind == 0:
            size = struct.unpack_from("<i", msg, off)[0]
            return bson.decode(msg[off:off + size])
        size = struct.unpack_from("<i", msg, off)[0]
        off += size
    raise ValueError("no body")


def reply_for(body):
    name = next(iter(body))
    if name in ("find", "aggregate"):
        ns = body["$db"] + "." + (body[name] if isinstance(body[name], str) else "$cmd.aggregate")
        return SON([("cursor", SON([("firstBatch", []), ("id", 0), ("ns", ns)])), ("ok", 1.0)])
    if name in ("insert", "delete"):
        return SON([("n", 2), ("ok", 1.0)])
    if name == "update":
        return SON([("n", 2), ("nModified", 2), ("ok", 1.0)])
    if name in ("ismaster", "isMaster", "hello"):
        return hello_doc()
    return SON([("ok", 1.0)])


def serve(conn):
    request_id = 1000
    try:
        while True:
            head = recv_exact(conn, 16)
            length, req_id, _, op = struct.unpack("<iiii", head)
            msg = head + recv_exact(conn, length - 16)
            request_id += 1
            if op == OP_QUERY:
                with lock:
                    captured.append(("op_query_ismaster", msg))
                doc = bson.encode(hello_doc())
                body = struct.pack("<iqii", 0, 0, 0, 1) + doc
                conn.sendall(struct.pack("<iiii", 16 + len(body), request_id, req_id, OP_REPLY) + body)
            elif op == OP_MSG:
                body = op_msg_body(msg)
                flags = struct.unpack_from("<I", msg, 16)[0]
                what = "op_msg_" + next(iter(body)).lower() + ("_moretocome" if flags & 2 else "")
                with lock:
                    captured.append((what, msg))
                if flags & 2:  # moreToCome: no reply
                    continue
                doc = bson.encode(reply_for(body))
                payload = struct.pack("<I", 0) + b"\x00" + doc
                conn.sendall(struct.pack("<iiii", 16 + len(payload), request_id, req_id, OP_MSG) + payload)
            else:
                return
    except (EOFError, ConnectionError, OSError):
        pass
    finally:
        conn.close()


def main():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    stop = threading.Event()

    def accept_loop():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    acceptor = threading.Thread(target=accept_loop, daemon=True)
    acceptor.start()
    client = pymongo.MongoClient("127.0.0.1", port, directConnection=True, appname="tgcapture",
                                 serverSelectionTimeoutMS=3000, retryWrites=False)
    coll = client["app"]["orders"]
    list(coll.find({"status": "open", "total": {"$gt": 10}}, projection={"_id": 0}, limit=5))
    coll.insert_many([{"_id": 1, "item": "abc", "qty": 2}, {"_id": 2, "item": "xyz", "qty": 1}],
                     ordered=True)
    coll.update_many({"item": "abc"}, {"$inc": {"qty": 1}})
    coll.delete_many({"qty": {"$lt": 1}})
    # An unacknowledged write: pymongo sets moreToCome and reads no reply.
    coll.with_options(write_concern=WriteConcern(w=0)).insert_one({"_id": 3, "item": "w0"})
    list(coll.aggregate([{"$match": {"qty": {"$gte": 1}}},
                         {"$group": {"_id": "$item", "n": {"$sum": 1}}}]))
    client.close()
    stop.set()
    acceptor.join()
    srv.close()

    seen = {}
    for what, msg in captured:
        if what in seen:  # the monitor repeats its handshake; keep the first of each kind
            continue
        seen[what] = msg
    for n, (what, msg) in enumerate(sorted(seen.items(), key=lambda kv: captured.index((kv[0], kv[1])))):
        path = os.path.join(out_dir, "pymongo_%d_%s.bin" % (n, what))
        with open(path, "wb") as f:
            f.write(msg)
        print(path, len(msg))


if __name__ == "__main__":
    main()
