"""The MongoDB test backend (tests/backends/mongodb), driven directly -- no tenantgate.

tenantgate's MongoDB tests stand on this backend, so it is checked first against the
real clients: pymongo (Debian's python3-pymongo, SCRAM-SHA-256, directConnection since it
claims to be a replica-set primary), the official Node.js driver (check_node_driver.mjs),
and a raw socket for what drivers hide (the OP_QUERY handshake, kind 1 sequences written
by hand, checksums, moreToCome, malformed messages). Every test uses its own database.
"""

import os
import struct
import subprocess
import time

import bson
import pymongo
import pytest
from bson import Int64, ObjectId
from pymongo import monitoring
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure
from pymongo.write_concern import WriteConcern

import tghelpers as h
from mongo_fixture import (BACKEND_DIR, MSG_CHECKSUM_PRESENT, MSG_MORE_TO_COME, NODE, OP_COMPRESSED, OP_MSG, OP_REPLY,
                           MongoBackend, RawMongo, mongo_backend, op_msg)  # noqa: F401  (pytest fixture)


class Events(monitoring.CommandListener):
    def __init__(self):
        self.started_events, self.succeeded_events = [], []

    def started(self, event):
        self.started_events.append(event)

    def succeeded(self, event):
        self.succeeded_events.append(event)

    def failed(self, event):
        pass

    def names(self):
        return [e.command_name for e in self.started_events]

    def commands(self, name):
        return [e.command for e in self.started_events if e.command_name == name]

    def replies(self, name):
        return [e.reply for e in self.succeeded_events if e.command_name == name]


@pytest.fixture
def m(mongo_backend):
    return mongo_backend


def authed_raw(m):
    r = RawMongo(m.port)
    reply = r.login(m.user, m.password)
    assert reply["ok"] == 1, reply
    return r


# ---- handshake and authentication ---------------------------------------------------------------

def test_hello_replies_like_a_replica_set_primary(m):
    r = RawMongo(m.port)
    doc = r.command({"hello": 1, "saslSupportedMechs": f"admin.{m.user}", "compression": ["zlib", "zstd"],
                     "client": {"driver": {"name": "raw", "version": "0"}}})
    assert doc["ok"] == 1
    me = f"127.0.0.1:{m.port}"
    assert doc["isWritablePrimary"] is True and "ismaster" not in doc
    assert doc["setName"] == "tgrs0" and doc["hosts"] == [me] and doc["primary"] == me and doc["me"] == me
    assert isinstance(doc["topologyVersion"]["processId"], ObjectId)
    assert isinstance(doc["topologyVersion"]["counter"], Int64)
    assert doc["maxWireVersion"] >= 17 and doc["minWireVersion"] == 0
    assert doc["maxBsonObjectSize"] == 16 * 1024 * 1024
    assert doc["maxMessageSizeBytes"] == 48000000 and doc["maxWriteBatchSize"] == 100000
    assert doc["logicalSessionTimeoutMinutes"] == 30 and isinstance(doc["connectionId"], int)
    assert doc["saslSupportedMechs"] == ["SCRAM-SHA-256"]
    assert "compression" not in doc, "no compressor is ever advertised"
    assert "$clusterTime" in doc and "operationTime" in doc
    # Client metadata only in the first hello of a connection.
    again = r.command({"hello": 1, "client": {"driver": {"name": "raw", "version": "0"}}})
    assert again["ok"] == 0 and again["code"] == 186
    # Awaitable hello (streaming monitoring): with our own topologyVersion it answers after
    # maxAwaitTimeMS, since nothing changes; with another process's at once.
    t0 = time.monotonic()
    rep = r.command({"hello": 1, "topologyVersion": doc["topologyVersion"], "maxAwaitTimeMS": 400})
    assert rep["ok"] == 1 and time.monotonic() - t0 >= 0.35
    t0 = time.monotonic()
    rep = r.command({"hello": 1, "topologyVersion": {"processId": ObjectId(), "counter": Int64(0)},
                     "maxAwaitTimeMS": 5000})
    assert rep["ok"] == 1 and time.monotonic() - t0 < 2
    # An unknown user gets no mechanisms (no hint of which users exist).
    other = r.command({"isMaster": 1, "saslSupportedMechs": "admin.nobody"})
    assert other["ismaster"] is True and "saslSupportedMechs" not in other
    r.close()


def test_op_query_handshake_answered_with_op_reply(m):
    r = RawMongo(m.port)
    rep = r.query("admin.$cmd", {"isMaster": 1, "helloOk": True,
                                 "client": {"driver": {"name": "raw", "version": "0"}}})
    assert rep["op"] == OP_REPLY and rep["cursor_id"] == 0 and len(rep["docs"]) == 1
    doc = rep["doc"]
    assert doc["ok"] == 1 and doc["ismaster"] is True and doc["helloOk"] is True
    assert doc["setName"] == "tgrs0" and doc["maxWireVersion"] >= 17
    # The $query-wrapped form drivers use with a read preference.
    rep = r.query("admin.$cmd", {"$query": {"hello": 1}, "$readPreference": {"mode": "primaryPreferred"}})
    assert rep["doc"]["isWritablePrimary"] is True
    # Only the handshake: any other command over OP_QUERY is refused.
    rep = r.query("admin.$cmd", {"find": "x"})
    assert rep["doc"]["ok"] == 0 and rep["doc"]["code"] == 352
    rep = r.query("test.coll", {})
    assert rep["flags"] & 2 and "$err" in rep["doc"]
    # The same connection then speaks OP_MSG.
    assert r.command({"ping": 1})["ok"] == 1
    r.close()


def test_scram_sha_256_login(m):
    c = m.client()
    status = c.admin.command("connectionStatus")
    assert status["authInfo"]["authenticatedUsers"] == [{"user": m.user, "db": "admin"}]
    r = RawMongo(m.port)
    reply = r.login(m.user, m.password)  # checks the server signature too
    assert reply["ok"] == 1 and reply["done"] is True
    assert r.command({"listDatabases": 1, "nameOnly": True})["ok"] == 1
    r.close()


def test_speculative_authentication_in_hello(m):
    r = RawMongo(m.port)
    reply = r.login(m.user, m.password, speculative=True)
    assert reply["ok"] == 1 and reply["done"] is True
    assert r.command({"count": "x"}, db="spec")["ok"] == 1
    r.close()
    r = RawMongo(m.port)
    assert r.login(m.user, m.password + "x", speculative=True)["code"] == 18
    r.close()
    # An unknown user's speculative attempt is dropped silently (the reply has no field).
    r = RawMongo(m.port)
    assert r.login("nobody", "x", speculative=True)["speculative"] is False
    r.close()


@pytest.mark.parametrize("user,password", [("right", "wrong"), ("nobody", "right")])
def test_scram_failures(m, user, password):
    user = m.user if user == "right" else user
    password = m.password if password == "right" else password
    with pytest.raises(OperationFailure) as e:
        m.client(user=user, password=password).admin.command("ping")
    assert e.value.code == 18
    r = RawMongo(m.port)
    reply = r.login(user, password)
    assert reply["ok"] == 0 and reply["code"] == 18 and reply["codeName"] == "AuthenticationFailed"
    # Still unauthenticated afterwards.
    assert r.command({"find": "x"}, db="test")["code"] == 13
    r.close()


def test_login_on_another_database_and_other_mechanisms_fail(m):
    r = RawMongo(m.port)
    assert r.login(m.user, m.password, db="test")["code"] == 18
    reply = r.command({"saslStart": 1, "mechanism": "PLAIN", "payload": bson.Binary(b"\0u\0p")}, db="$external")
    assert reply["ok"] == 0 and reply["code"] == 334
    reply = r.command({"saslContinue": 1, "conversationId": 1, "payload": bson.Binary(b"x")})
    assert reply["ok"] == 0
    r.close()


def test_commands_before_auth(m):
    r = RawMongo(m.port)
    for cmd, db in (({"find": "x"}, "test"), ({"insert": "x", "documents": [{}]}, "test"),
                    ({"listDatabases": 1}, "admin"), ({"aggregate": "x", "pipeline": [], "cursor": {}}, "test"),
                    ({"getMore": Int64(1), "collection": "x"}, "test")):
        reply = r.command(cmd, db=db)
        assert reply["ok"] == 0 and reply["code"] == 13 and reply["codeName"] == "Unauthorized", reply
    for cmd in ({"ping": 1}, {"buildInfo": 1}, {"hello": 1}, {"endSessions": []}):
        assert r.command(cmd)["ok"] == 1, cmd
    # Unknown commands are CommandNotFound whether or not authenticated.
    reply = r.command({"frobnicate": 1})
    assert reply == {**reply, "ok": 0, "code": 59, "codeName": "CommandNotFound"}
    r.close()


# ---- CRUD ---------------------------------------------------------------------------------------

def test_crud_and_write_replies(m):
    ev = Events()
    c = m.client(event_listeners=[ev])
    coll = c.crud.things
    res = coll.insert_one({"_id": 1, "name": "a", "n": 1})
    assert res.inserted_id == 1
    oid = coll.insert_one({"name": "b", "n": 2}).inserted_id
    assert isinstance(oid, ObjectId)
    assert coll.find_one({"_id": oid})["name"] == "b"
    assert coll.find_one({"name": "a"}, {"_id": 0, "n": 1}) == {"n": 1}

    r = coll.update_one({"_id": 1}, {"$set": {"n": 10}, "$push": {"tags": "x"}})
    assert (r.matched_count, r.modified_count) == (1, 1)
    r = coll.update_one({"_id": 1}, {"$set": {"n": 10}})
    assert (r.matched_count, r.modified_count) == (1, 0), "no-op updates are not counted as modified"
    r = coll.update_many({}, {"$inc": {"n": 1}})
    assert (r.matched_count, r.modified_count) == (2, 2)
    r = coll.replace_one({"_id": 1}, {"name": "a2"})
    assert r.modified_count == 1 and coll.find_one({"_id": 1}) == {"_id": 1, "name": "a2"}
    # Pipeline-style update.
    r = coll.update_many({"name": "b"}, [{"$set": {"double": {"$multiply": ["$n", 2]}}}])
    assert r.modified_count == 1 and coll.find_one({"name": "b"})["double"] == 6

    with pytest.raises(DuplicateKeyError) as e:
        coll.insert_one({"_id": 1})
    assert e.value.code == 11000 and "dup key" in str(e.value)
    with pytest.raises(OperationFailure) as e:
        coll.update_one({"_id": 1}, {"$set": {"_id": 2}})
    assert e.value.code == 66
    with pytest.raises(OperationFailure) as e:
        coll.update_one({"_id": 1}, {"$frob": {"a": 1}})
    assert e.value.code == 9

    # Unacknowledged (w=0) writes go out with moreToCome and get no reply.
    ev.started_events.clear()
    coll.with_options(write_concern=WriteConcern(w=0)).insert_one({"_id": "w0"})
    deadline = time.monotonic() + h.scaled(10)
    while coll.find_one({"_id": "w0"}) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert coll.delete_one({"_id": "w0"}).deleted_count == 1
    assert coll.delete_one({"name": {"$exists": True}}).deleted_count == 1
    assert coll.delete_many({}).deleted_count == 1
    assert coll.count_documents({}) == 0
    reply = ev.replies("update")[0]
    assert reply["n"] == 1 and reply["nModified"] == 1 and reply["ok"] == 1


def test_bulk_writes_as_kind_1_sequences(m):
    c = m.client()
    coll = c.bulk.items
    result = coll.bulk_write([
        pymongo.InsertOne({"_id": i, "v": i}) for i in range(50)
    ] + [pymongo.UpdateMany({"v": {"$lt": 10}}, {"$set": {"small": True}}),
         pymongo.DeleteOne({"_id": 49}), pymongo.ReplaceOne({"_id": 48}, {"v": -1})])
    assert result.inserted_count == 50 and result.modified_count == 11 and result.deleted_count == 1
    assert coll.count_documents({"small": True}) == 10
    # Ordered: stops at the first error; unordered: carries on.
    with pytest.raises(BulkWriteError) as e:
        coll.insert_many([{"_id": 100}, {"_id": 1}, {"_id": 101}])
    det = e.value.details
    assert det["nInserted"] == 1 and det["writeErrors"][0]["index"] == 1
    assert det["writeErrors"][0]["code"] == 11000
    with pytest.raises(BulkWriteError) as e:
        coll.insert_many([{"_id": 200}, {"_id": 1}, {"_id": 201}], ordered=False)
    assert e.value.details["nInserted"] == 2

    # The same by hand: documents / updates / deletes as kind 1 sequences.
    r = authed_raw(m)
    reply = r.command({"insert": "raw"}, db="bulk", sequences={"documents": [{"_id": i} for i in range(5)]})
    assert reply["ok"] == 1 and reply["n"] == 5
    reply = r.command({"update": "raw", "ordered": False}, db="bulk", sequences={"updates": [
        {"q": {"_id": 1}, "u": {"$set": {"a": 1}}},
        {"q": {"_id": 99}, "u": {"$set": {"a": 2}}, "upsert": True},
        {"q": {"_id": 2}, "u": {"$set": {"_id": 3}}},
    ]})
    assert reply["n"] == 2 and reply["nModified"] == 1
    assert reply["upserted"] == [{"index": 1, "_id": 99}]
    assert [w["index"] for w in reply["writeErrors"]] == [2] and reply["writeErrors"][0]["code"] == 66
    reply = r.command({"delete": "raw"}, db="bulk", sequences={"deletes": [
        {"q": {"_id": {"$lt": 2}}, "limit": 0}, {"q": {}, "limit": 1}]})
    assert reply["n"] == 3
    # A field both in the body and as a sequence is malformed: the connection closes.
    r.send(op_msg(99, {"insert": "raw", "documents": [], "$db": "bulk"}, {"documents": [{"_id": 7}]}))
    assert r.closed()


def test_upserts(m):
    c = m.client()
    coll = c.ups.docs
    r = coll.update_one({"k": "a", "nested.x": 1, "n": {"$gt": 5}}, {"$set": {"v": 1}, "$setOnInsert": {"new": True}},
                        upsert=True)
    assert r.upserted_id is not None and r.matched_count == 0
    doc = coll.find_one({"_id": r.upserted_id})
    assert doc["k"] == "a" and doc["nested"] == {"x": 1} and doc["v"] == 1 and doc["new"] is True
    assert "n" not in doc, "only equality conditions seed the upserted document"
    r = coll.update_one({"k": "a"}, {"$set": {"v": 2}, "$setOnInsert": {"again": True}}, upsert=True)
    assert r.upserted_id is None and r.modified_count == 1
    assert "again" not in coll.find_one({"k": "a"})
    r = coll.replace_one({"_id": "given"}, {"body": 1}, upsert=True)
    assert r.upserted_id == "given" and coll.find_one({"_id": "given"}) == {"_id": "given", "body": 1}
    r = coll.update_one({"$and": [{"a": 1}, {"b": {"$eq": 2}}]}, [{"$set": {"c": {"$add": ["$a", "$b"]}}}], upsert=True)
    assert coll.find_one({"_id": r.upserted_id}, {"_id": 0}) == {"a": 1, "b": 2, "c": 3}
    doc = coll.find_one_and_update({"k": "z"}, {"$inc": {"count": 1}}, upsert=True,
                                   return_document=pymongo.ReturnDocument.AFTER)
    assert doc["k"] == "z" and doc["count"] == 1
    assert coll.find_one_and_update({"k": "y"}, {"$set": {"q": 1}}, upsert=True) is None
    doc = coll.find_one_and_delete({"k": "y"}, projection={"_id": 0})
    assert doc == {"k": "y", "q": 1}
    doc = coll.find_one_and_replace({"k": "z"}, {"k": "z", "r": True}, sort=[("k", 1)],
                                    return_document=pymongo.ReturnDocument.AFTER)
    assert doc["r"] is True and "count" not in doc


# ---- cursors ------------------------------------------------------------------------------------

def test_cursors_span_batches_with_get_more(m):
    ev = Events()
    c = m.client(event_listeners=[ev])
    coll = c.cur.docs
    coll.insert_many([{"i": i, "pad": "x" * 100} for i in range(250)])
    got = [d["i"] for d in coll.find({}, {"pad": 0}).sort("i", 1).batch_size(40)]
    assert got == list(range(250))
    find_reply = ev.replies("find")[-1]
    cid = find_reply["cursor"]["id"]
    assert isinstance(cid, Int64) and cid != 0 and find_reply["cursor"]["ns"] == "cur.docs"
    assert len(find_reply["cursor"]["firstBatch"]) == 40
    more = ev.replies("getMore")
    assert len(more) == 6 and [len(x["cursor"]["nextBatch"]) for x in more] == [40] * 5 + [10]
    assert more[-1]["cursor"]["id"] == 0 and all(x["cursor"]["id"] == cid for x in more[:-1])
    # The default first batch is 101 documents; limit and skip apply across batches.
    ev.started_events.clear(), ev.succeeded_events.clear()
    assert len(list(coll.find({}))) == 250
    assert len(ev.replies("find")[-1]["cursor"]["firstBatch"]) == 101
    assert [d["i"] for d in coll.find().sort("i", -1).skip(5).limit(3)] == [244, 243, 242]
    # singleBatch / batchSize 0.
    r = authed_raw(m)
    rep = r.command({"find": "docs", "batchSize": 0}, db="cur")
    assert rep["cursor"]["firstBatch"] == [] and rep["cursor"]["id"] != 0
    rep = r.command({"find": "docs", "batchSize": 2, "singleBatch": True}, db="cur")
    assert len(rep["cursor"]["firstBatch"]) == 2 and rep["cursor"]["id"] == 0
    r.close()


def test_kill_cursors_and_unknown_cursor_ids(m):
    ev = Events()
    c = m.client(event_listeners=[ev])
    coll = c.kill.docs
    coll.insert_many([{"i": i} for i in range(30)])
    cur = coll.find().batch_size(5)
    next(cur)
    cid = ev.replies("find")[-1]["cursor"]["id"]
    cur.close()
    assert ev.commands("killCursors")[-1]["cursors"] == [cid]
    assert ev.replies("killCursors")[-1]["cursorsKilled"] == [cid]
    r = authed_raw(m)
    rep = r.command({"getMore": Int64(cid), "collection": "docs"}, db="kill")
    assert rep["ok"] == 0 and rep["code"] == 43 and rep["codeName"] == "CursorNotFound"
    rep = r.command({"killCursors": "docs", "cursors": [Int64(cid), Int64(12345)]}, db="kill")
    assert rep["cursorsKilled"] == [] and rep["cursorsNotFound"] == [cid, 12345]
    # A live cursor can only be continued on its own namespace and session.
    rep = r.command({"find": "docs", "batchSize": 2}, db="kill")
    live = rep["cursor"]["id"]
    rep = r.command({"getMore": Int64(live), "collection": "other"}, db="kill")
    assert rep["code"] == 13
    lsid = {"id": bson.Binary(os.urandom(16), 4)}
    rep = r.command({"getMore": Int64(live), "collection": "docs", "lsid": lsid}, db="kill")
    assert rep["ok"] == 0 and rep["code"] == 50738
    rep = r.command({"getMore": Int64(live), "collection": "docs", "batchSize": 100}, db="kill")
    assert len(rep["cursor"]["nextBatch"]) == 28 and rep["cursor"]["id"] == 0
    r.close()


# ---- aggregation --------------------------------------------------------------------------------

def test_aggregate_lookup_union_facet_graph(m):
    c = m.client()
    db = c.agg
    db.orders.insert_many([{"_id": i, "cust": i % 3, "amount": i * 10} for i in range(9)])
    db.customers.insert_many([{"_id": 0, "name": "zero", "boss": None}, {"_id": 1, "name": "one", "boss": 0},
                              {"_id": 2, "name": "two", "boss": 1}])
    db.archive.insert_many([{"_id": "a1", "amount": 1000}])
    out = list(db.orders.aggregate([
        {"$match": {"_id": {"$lt": 3}}},
        {"$lookup": {"from": "customers", "localField": "cust", "foreignField": "_id", "as": "c"}},
        {"$project": {"name": {"$first": "$c.name"}}}, {"$sort": {"_id": 1}}]))
    assert out == [{"_id": 0, "name": "zero"}, {"_id": 1, "name": "one"}, {"_id": 2, "name": "two"}]
    out = list(db.customers.aggregate([
        {"$lookup": {"from": "orders", "let": {"c": "$_id"},
                     "pipeline": [{"$match": {"$expr": {"$eq": ["$cust", "$$c"]}}},
                                  {"$group": {"_id": None, "total": {"$sum": "$amount"}}}], "as": "t"}},
        {"$project": {"total": {"$first": "$t.total"}}}, {"$sort": {"_id": 1}}]))
    assert [d["total"] for d in out] == [90, 120, 150]
    out = list(db.orders.aggregate([{"$match": {"_id": 8}}, {"$project": {"amount": 1}},
                                    {"$unionWith": {"coll": "archive", "pipeline": [{"$project": {"amount": 1}}]}}]))
    assert sorted(d["amount"] for d in out) == [80, 1000]
    out = list(db.orders.aggregate([{"$facet": {
        "count": [{"$count": "n"}],
        "big": [{"$match": {"amount": {"$gte": 70}}}, {"$project": {"_id": 1}}],
        "byCust": [{"$group": {"_id": "$cust", "n": {"$sum": 1}}}, {"$sort": {"_id": 1}}]}}]))
    assert out[0]["count"] == [{"n": 9}] and out[0]["big"] == [{"_id": 7}, {"_id": 8}]
    assert out[0]["byCust"] == [{"_id": 0, "n": 3}, {"_id": 1, "n": 3}, {"_id": 2, "n": 3}]
    out = list(db.customers.aggregate([
        {"$match": {"_id": 2}},
        {"$graphLookup": {"from": "customers", "startWith": "$boss", "connectFromField": "boss",
                          "connectToField": "_id", "as": "chain"}}]))
    assert sorted(x["name"] for x in out[0]["chain"]) == ["one", "zero"]
    # Batching applies to aggregate cursors too.
    rep = list(db.orders.aggregate([{"$sort": {"_id": 1}}], batchSize=2))
    assert [d["_id"] for d in rep] == list(range(9))
    with pytest.raises(OperationFailure) as e:
        list(db.orders.aggregate([{"$frobnicate": {}}]))
    assert e.value.code == 40324


def test_pcre_anchors_and_concise_lookup(m):
    """What tenantgate's scoper sends, as mongod runs it: PCRE's \\z anchor, and $lookup with
    localField/foreignField *and* a pipeline (MongoDB 5.0)."""
    db = m.client().anchors
    db.t.insert_many([{"_id": 1, "t": "alice"}, {"_id": 2, "t": "alice2"}, {"_id": 3, "t": "alice\n"}])
    got = [d["_id"] for d in db.t.find({"t": {"$regex": bson.Regex("^alice\\z")}})]
    assert got == [1]
    assert [d["_id"] for d in db.t.find({"t": {"$regex": bson.Regex("^alice\\Z")}})] == [1, 3]
    assert [d["_id"] for d in db.t.find({"t": {"$regex": bson.Regex("[\\z]")}})] == []
    db.o.insert_many([{"_id": 1, "c": 1}, {"_id": 2, "c": [1, 2]}])
    db.c.insert_many([{"_id": 1, "k": "x"}, {"_id": 2, "k": "y"}])
    res = list(db.o.aggregate([{"$lookup": {"from": "c", "localField": "c", "foreignField": "_id",
                                            "pipeline": [{"$match": {"k": {"$ne": "none"}}}], "as": "j"}},
                               {"$sort": {"_id": 1}}]))
    assert [[j["_id"] for j in r["j"]] for r in res] == [[1], [1, 2]]


def test_aggregate_out_and_merge(m):
    c = m.client()
    db = c.aggw
    db.src.insert_many([{"_id": i, "g": i % 2, "v": i} for i in range(6)])
    assert list(db.src.aggregate([{"$group": {"_id": "$g", "sum": {"$sum": "$v"}}}, {"$out": "totals"}])) == []
    assert sorted((d["_id"], d["sum"]) for d in db.totals.find()) == [(0, 6), (1, 9)]
    db.src.aggregate([{"$match": {"_id": {"$lt": 2}}}, {"$project": {"v": {"$add": ["$v", 100]}}},
                      {"$merge": {"into": "totals", "whenMatched": "merge", "whenNotMatched": "insert"}}])
    assert sorted((d["_id"], d.get("sum"), d["v"]) for d in db.totals.find()) == [(0, 6, 100), (1, 9, 101)]
    db.src.aggregate([{"$match": {"_id": 5}}, {"$merge": {"into": {"db": "aggw", "coll": "copy"}}}])
    assert db.copy.find_one() == {"_id": 5, "g": 1, "v": 5}
    with pytest.raises(OperationFailure) as e:
        db.src.aggregate([{"$project": {"_id": 0, "g": 1}}, {"$merge": {"into": "copy", "on": "g"}}])
    assert e.value.code == 51183, "a non-_id 'on' needs a unique index"
    db.copy.create_index([("g", 1)], unique=True)
    db.src.aggregate([{"$match": {"_id": 3}}, {"$project": {"_id": 0, "g": 1, "from3": {"$literal": True}}},
                      {"$merge": {"into": "copy", "on": "g", "whenMatched": "merge"}}])
    assert db.copy.find_one({"g": 1})["from3"] is True
    with pytest.raises(OperationFailure) as e:
        db.src.aggregate([{"$out": "x"}, {"$match": {}}])
    assert e.value.code == 40601


def test_distinct_count_and_explain(m):
    c = m.client()
    coll = c.dc.items
    coll.insert_many([{"tags": ["a", "b"], "k": 1}, {"tags": ["b", "c"], "k": 2}, {"tags": "d", "k": 2}, {"k": 3}])
    assert coll.distinct("tags") == ["a", "b", "c", "d"]
    assert coll.distinct("tags", {"k": 2}) == ["b", "c", "d"]
    assert coll.count_documents({"k": {"$gte": 2}}) == 3
    assert coll.estimated_document_count() == 4
    assert c.dc.command("count", "items", query={"k": 2})["n"] == 2
    assert c.dc.command("count", "items", skip=1, limit=2)["n"] == 2
    assert c.dc.command("count", "missing")["n"] == 0
    plan = c.dc.command("explain", {"find": "items", "filter": {"k": 2}})
    assert plan["queryPlanner"]["parsedQuery"] == {"k": 2} and plan["command"]["filter"] == {"k": 2}


def test_server_side_javascript(m):
    c = m.client()
    coll = c.js.items
    coll.insert_many([{"_id": i, "n": i} for i in range(5)])
    assert [d["_id"] for d in coll.find({"$where": "this.n > 2"})] == [3, 4]
    assert [d["_id"] for d in coll.find({"$where": bson.Code("function() { return this.n === 1; }")})] == [1]
    out = list(coll.aggregate([{"$match": {"_id": {"$lt": 2}}}, {"$project": {"sq": {"$function": {
        "body": "function(x) { return x * x + 1; }", "args": ["$n"], "lang": "js"}}}}]))
    assert [d["sq"] for d in out] == [1, 2]
    out = list(coll.aggregate([{"$group": {"_id": None, "total": {"$accumulator": {
        "init": "function() { return 0; }", "accumulate": "function(s, n) { return s + n; }",
        "accumulateArgs": ["$n"], "merge": "function(a, b) { return a + b; }", "lang": "js"}}}}]))
    assert out[0]["total"] == 10


def test_bson_types_round_trip(m):
    import datetime
    import re
    import uuid

    from bson import Binary, Decimal128, Regex, Timestamp
    from bson.codec_options import CodecOptions

    c = m.client()
    coll = c.types.get_collection("t", codec_options=CodecOptions(uuid_representation=4, tz_aware=False))
    doc = {"_id": ObjectId(), "s": "ünïcode", "f": 1.5, "i": 7, "b": True, "none": None,
           "dt": datetime.datetime(2024, 1, 2, 3, 4, 5, 678000), "bin": Binary(b"\x00\x01", 0),
           "u": uuid.UUID("12345678-1234-5678-1234-567812345678"), "dec": Decimal128("12.50"),
           "re": Regex("^a.b$", "imx"), "ts": Timestamp(1700000000, 3), "arr": [1, [2, {"x": None}]],
           "nested": {"a": {"b": []}}}
    coll.insert_one(doc)
    back = coll.find_one({"_id": doc["_id"]})
    back_re = back.pop("re")
    want = dict(doc, bin=b"\x00\x01")  # pymongo reads binary subtype 0 back as bytes
    want_re = want.pop("re")
    assert back == want
    assert (back_re.pattern, back_re.flags) == (want_re.pattern, re.I | re.M | re.X)
    # Queries on those types.
    assert coll.find_one({"u": doc["u"]})["_id"] == doc["_id"]
    assert coll.find_one({"dt": {"$gt": datetime.datetime(2024, 1, 1)}})["_id"] == doc["_id"]
    assert coll.find_one({"s": re.compile("^ü")})["_id"] == doc["_id"]
    assert coll.find_one({"s": {"$regex": "NÏ", "$options": "i"}})["_id"] == doc["_id"]


# ---- catalog ------------------------------------------------------------------------------------

def test_catalog_commands(m):
    c = m.client()
    db = c.cat
    db.create_collection("made")
    with pytest.raises(OperationFailure) as e:
        db.command("create", "made")
    assert e.value.code == 48
    db.other.insert_one({"x": 1})
    assert sorted(db.list_collection_names()) == ["made", "other"]
    infos = list(db.list_collections(filter={"name": "other"}))
    assert len(infos) == 1 and infos[0]["type"] == "collection" and "uuid" in infos[0]["info"]
    assert "cat" in c.list_database_names()
    dbs = c.admin.command("listDatabases")
    assert {"admin", "local", "config", "cat"} <= {d["name"] for d in dbs["databases"]}
    assert all("sizeOnDisk" in d for d in dbs["databases"]) and "totalSize" in dbs
    assert c.admin.command("listDatabases", filter={"name": "cat"})["databases"][0]["name"] == "cat"
    with pytest.raises(OperationFailure) as e:
        db.command("listDatabases")
    assert e.value.code == 13, "listDatabases only on admin"

    assert db.other.create_index([("x", 1)], unique=True) == "x_1"
    names = [ix["name"] for ix in db.other.list_indexes()]
    assert names == ["_id_", "x_1"]
    with pytest.raises(DuplicateKeyError):
        db.other.insert_one({"x": 1})
    res = db.command("createIndexes", "other", indexes=[{"key": {"x": 1}, "name": "x_1", "unique": True}])
    assert res["numIndexesBefore"] == res["numIndexesAfter"] == 2 and "note" in res
    with pytest.raises(OperationFailure) as e:
        db.command("listIndexes", "nothing")  # (pymongo's list_indexes() hides this error)
    assert e.value.code == 26

    res = db.command("drop", "other")
    assert res["ns"] == "cat.other" and res["nIndexesWas"] == 2
    with pytest.raises(OperationFailure) as e:
        db.command("drop", "other")
    assert e.value.code == 26
    c.drop_database("cat")
    assert "cat" not in c.list_database_names()
    with pytest.raises(OperationFailure) as e:
        c.admin.command("dropDatabase")
    assert e.value.code == 20


def test_unknown_commands_and_fields(m):
    c = m.client()
    with pytest.raises(OperationFailure) as e:
        c.test.command("mapReduceIsNotHere")
    assert e.value.code == 59 and e.value.details["codeName"] == "CommandNotFound"
    with pytest.raises(OperationFailure) as e:
        c.test.command("find", "x", bogusOption=1)
    assert e.value.code == 40415
    with pytest.raises(OperationFailure) as e:
        c.test.command("update", "x", updates=[{"q": {}, "u": {"$set": {"a": 1}}, "lsid": 1}])
    assert e.value.code == 40415, "statements take no generic fields"
    with pytest.raises(OperationFailure) as e:
        c.test.command("find", "x", sort={"a": "up"})
    assert e.value.code == 15974
    with pytest.raises(OperationFailure) as e:
        c.test.command("find", "x", filter={"$or": []})
    assert e.value.code == 2
    with pytest.raises(OperationFailure) as e:
        c.test.command("find", "x", filter={"a": {"$frob": 1}})
    assert e.value.code == 2
    assert c.test.command("buildInfo")["version"].startswith("6.")


# ---- sessions and transactions ------------------------------------------------------------------

def test_session_and_transaction(m):
    ev = Events()
    c = m.client(event_listeners=[ev])
    coll = c.txn.docs
    coll.insert_one({"_id": 0})
    with c.start_session() as s:
        with s.start_transaction():
            coll.insert_one({"_id": 1}, session=s)
            coll.update_one({"_id": 0}, {"$set": {"in_txn": True}}, session=s)
        lsid = s.session_id
    ins = [cmd for cmd in ev.commands("insert") if cmd.get("startTransaction")]
    assert len(ins) == 1 and ins[0]["lsid"] == lsid and ins[0]["autocommit"] is False
    upd = ev.commands("update")[-1]
    assert upd["txnNumber"] == ins[0]["txnNumber"] and "startTransaction" not in upd
    assert ev.replies("commitTransaction")[-1]["ok"] == 1
    assert coll.find_one({"_id": 0})["in_txn"] is True and coll.find_one({"_id": 1}) is not None
    for reply in ev.replies("insert") + ev.replies("update"):
        assert "lsid" not in reply and "txnNumber" not in reply, "nothing of the session is echoed"

    # Raw: continuing or committing a transaction that was never started fails as mongod does.
    r = authed_raw(m)
    lsid = {"id": bson.Binary(os.urandom(16), 4)}
    rep = r.command({"find": "docs", "lsid": lsid, "txnNumber": Int64(5), "autocommit": False}, db="txn")
    assert rep["code"] == 251 and rep["errorLabels"] == ["TransientTransactionError"]
    rep = r.command({"commitTransaction": 1, "lsid": lsid, "txnNumber": Int64(5), "autocommit": False})
    assert rep["code"] == 251
    rep = r.command({"insert": "docs", "documents": [{"_id": 9}], "lsid": lsid, "txnNumber": Int64(6),
                     "autocommit": False, "startTransaction": True}, db="txn")
    assert rep["ok"] == 1
    other = {"id": bson.Binary(os.urandom(16), 4)}
    rep = r.command({"abortTransaction": 1, "lsid": other, "txnNumber": Int64(6), "autocommit": False})
    assert rep["code"] == 251, "another session cannot end this transaction"
    rep = r.command({"commitTransaction": 1, "lsid": lsid, "txnNumber": Int64(6), "autocommit": False}, db="txn")
    assert rep["code"] == 13, "commitTransaction only on admin"
    rep = r.command({"abortTransaction": 1, "lsid": lsid, "txnNumber": Int64(6), "autocommit": False})
    assert rep["ok"] == 1
    assert r.command({"endSessions": [lsid]})["ok"] == 1
    r.close()


# ---- the wire -----------------------------------------------------------------------------------

def test_checksum_and_more_to_come(m):
    r = authed_raw(m)
    rep = r.command({"insert": "w", "documents": [{"_id": 1}]}, db="wire", checksum=True, full=True)
    assert rep["doc"]["ok"] == 1 and rep["doc"]["n"] == 1
    assert rep["flags"] == MSG_CHECKSUM_PRESENT, "a checksummed request gets a checksummed reply"
    assert r.command({"ping": 1}, full=True)["flags"] == 0
    # moreToCome: no reply, but the write happens; the next reply answers the next request.
    assert r.command({"insert": "w", "documents": [{"_id": 2}]}, db="wire", flags=MSG_MORE_TO_COME) is None
    rep = r.command({"count": "w"}, db="wire")
    assert rep["n"] == 2
    # A wrong checksum closes the connection.
    msg = bytearray(op_msg(50, {"ping": 1, "$db": "admin"}, checksum=True))
    msg[-1] ^= 0xFF
    r.send(bytes(msg))
    assert r.closed()


def _malformed_messages():
    good = op_msg(7, {"ping": 1, "$db": "admin"})
    body = bytearray(good)
    yield "length below the header", struct.pack("<iiii", 12, 1, 0, OP_MSG)
    yield "length above the maximum", struct.pack("<iiii", 48_000_001, 1, 0, OP_MSG)
    bad_bson = bytearray(good)
    bad_bson[21 + 4] = 0x2A  # the first element's type byte: no such BSON type
    yield "invalid BSON", bytes(bad_bson)
    kind = bytearray(good)
    kind[20] = 9
    yield "unknown section kind", bytes(kind)
    flags = bytearray(good)
    flags[16] = 0x04  # a required flag bit nobody defined
    yield "unknown required flag", bytes(flags)
    short_doc = bytearray(body)
    struct.pack_into("<i", short_doc, 21, 1000)
    yield "document length past the message", bytes(short_doc)
    seq = b"documents\0" + bson.encode({"_id": 1})
    seq = b"\x01" + struct.pack("<i", 4 + len(seq)) + seq
    yield "no body section", struct.pack("<iiiiI", 20 + len(seq), 1, 0, OP_MSG, 0) + seq
    yield "OP_COMPRESSED", struct.pack("<iiiiiib", 25, 1, 0, OP_COMPRESSED, OP_MSG, 0, 0)
    yield "legacy OP_INSERT", struct.pack("<iiii", 16 + 4 + 2, 1, 0, 2002) + b"\0\0\0\0a\0"


@pytest.mark.parametrize("what,data", list(_malformed_messages()), ids=[w for w, _ in _malformed_messages()])
def test_malformed_messages_close_the_connection(m, what, data):
    r = RawMongo(m.port)
    assert r.command({"ping": 1})["ok"] == 1
    r.send(data)
    assert r.closed(), what
    # The server itself is fine.
    r2 = RawMongo(m.port)
    assert r2.command({"ping": 1})["ok"] == 1
    r2.close()


def test_missing_db_is_an_error_not_a_close(m):
    r = RawMongo(m.port)
    r.send(op_msg(3, {"ping": 1}))
    rep = r.read()
    assert rep["response_to"] == 3 and rep["doc"]["ok"] == 0 and rep["doc"]["code"] == 40571
    r.close()


def test_trace_records_what_arrived():
    with MongoBackend(trace=True) as tm:
        c = tm.client()
        c.tr.docs.insert_many([{"_id": 1}, {"_id": 2}])
        c.tr.docs.find_one({"_id": 2})
        ins = tm.received("insert")
        assert len(ins) == 1 and ins[0]["op"] == OP_MSG
        body = ins[0]["body"]
        assert body["documents"] == [{"_id": 1}, {"_id": 2}] and body["$db"] == "tr" and "lsid" in body
        assert tm.received("find")[-1]["body"]["filter"] == {"_id": 2}
        sasl = tm.received("saslContinue")
        assert sasl and all(e["body"]["payload"] == "<redacted>" for e in sasl)
        assert tm.received("delete") == []


# ---- the official Node.js driver ------------------------------------------------------------------

def test_node_driver(m):
    proc = subprocess.run([NODE, os.path.join(BACKEND_DIR, "check_node_driver.mjs"), str(m.port), m.user, m.password],
                          cwd=BACKEND_DIR, capture_output=True, text=True, timeout=h.scaled(120))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "node driver: ok" in proc.stdout

