"""`protocol: mongodb` relay: real drivers through tenantgate against the test backend.

  pymongo / Node.js driver / libmongoc --JWT--> tenantgate (scoper) --service SCRAM--> backend

Both isolation modes. What reached the backend is read from its --trace and from the
backend directly (as the service user), so each test sees the rewrite, not only the result.
"""

import os
import struct
import subprocess
import time

import bson
import pymongo
import pytest
from bson import Int64
from pymongo import InsertOne, UpdateOne, DeleteMany, ReplaceOne

import tghelpers as h
from mongo_fixture import BACKEND_DIR, NODE, OP_MSG, MSG_EXHAUST_ALLOWED, RawMongo, mongo_env, op_msg

MONGOC_CLIENT = os.environ.get("TG_MONGOC_CLIENT", "")


@pytest.fixture(scope="module")
def env():
    with mongo_env() as e:
        yield e


@pytest.fixture(scope="module")
def denv():
    with mongo_env(mongodb={"isolation": "database", "database_template": "{db}_{tenant}"}) as e:
        yield e


def last(env, command):
    got = env.backend.received(command)
    assert got, f"no {command} reached the backend"
    return got[-1]["body"]


# ---- field mode: pymongo ---------------------------------------------------------------------


@pytest.mark.local_backend("mongodb", "reads what reached the test backend (--trace)")
def test_crud_bulk_upsert_field_mode(env):
    a = env.client("alice").crud
    b = env.client("bob").crud
    a.items.insert_one({"_id": 1, "name": "a1"})
    a.items.insert_many([{"_id": i, "name": f"a{i}"} for i in range(2, 6)])
    b.items.insert_one({"_id": 100, "name": "b1"})
    # kind 1 sequences: insert_many goes out as `documents`, stamped one by one
    ins = last(env, "insert")
    assert all(d["tenant_id"] in ("alice", "bob") for d in ins["documents"])
    assert a.items.count_documents({}) == 5 and b.items.count_documents({}) == 1
    r = a.items.bulk_write([InsertOne({"_id": 6}), UpdateOne({"_id": 1}, {"$set": {"v": 1}}),
                            UpdateOne({"_id": 50}, {"$set": {"v": 2}}, upsert=True),
                            ReplaceOne({"_id": 2}, {"name": "replaced"}),
                            DeleteMany({"_id": {"$in": [4, 5]}})])
    assert (r.inserted_count, r.modified_count, r.upserted_count, r.deleted_count) == (1, 2, 1, 2)
    upd = last(env, "update")
    assert all("tenant_id" in str(u["q"]) for u in upd["updates"])
    d = env.direct().crud.items
    assert d.find_one({"_id": 50}) == {"_id": 50, "v": 2, "tenant_id": "alice"}
    assert d.find_one({"_id": 2}) == {"_id": 2, "name": "replaced", "tenant_id": "alice"}
    assert d.find_one({"_id": 100})["tenant_id"] == "bob"
    assert a.items.find_one_and_update({"_id": 1}, {"$inc": {"v": 1}},
                                       return_document=True)["v"] == 2
    assert sorted(a.items.distinct("_id")) == [1, 2, 3, 6, 50]
    assert b.items.find_one({"_id": 1}) is None
    assert b.items.delete_many({}).deleted_count == 1
    assert a.items.count_documents({}) == 5


@pytest.mark.local_backend("mongodb", "reads what reached the test backend (--trace)")
def test_cursors_span_batches_and_are_per_client(env):
    a = env.client("alice").cur
    a.big.insert_many([{"i": i} for i in range(350)])
    got = list(a.big.find({}, batch_size=60).sort("i", 1))
    assert [x["i"] for x in got] == list(range(350))
    assert len(env.backend.received("getMore")) >= 5
    # a cursor of alice's, named by another connection (even the same tenant's): refused
    r1 = env.raw("alice")
    first = r1.command({"find": "big", "batchSize": 2}, db="cur")
    cid = first["cursor"]["id"]
    assert cid != 0 and first["cursor"]["ns"] == "cur.big"
    r2 = env.raw("alice")
    err = r2.command({"getMore": cid, "collection": "big"}, db="cur")
    assert err["code"] == 13 and "cursor" in err["errmsg"]
    err = r2.command({"killCursors": "big", "cursors": [cid]}, db="cur")
    assert err["code"] == 13
    # guessed ids are refused before anything reaches the backend
    n = len(env.backend.received("getMore"))
    for guess in (cid + 1, cid - 1, 1, 0):
        assert r1.command({"getMore": Int64(guess), "collection": "big"}, db="cur")["code"] == 13
    assert len(env.backend.received("getMore")) == n
    # the owner reads on, kills it, then cannot use it again
    more = r1.command({"getMore": cid, "collection": "big", "batchSize": 3}, db="cur")
    assert len(more["cursor"]["nextBatch"]) == 3
    assert r1.command({"killCursors": "big", "cursors": [cid]}, db="cur")["ok"] == 1
    assert r1.command({"getMore": cid, "collection": "big"}, db="cur")["code"] == 13
    r1.close()
    r2.close()


@pytest.mark.local_backend("mongodb", "reads what reached the test backend (--trace)")
def test_aggregations_with_subpipelines(env):
    a = env.client("alice").agg
    b = env.client("bob").agg
    # _id is unique across tenants in field mode (one collection): each tenant its own ids
    for c, t, o in ((a, "A", 0), (b, "B", 100)):
        c.orders.insert_many([{"_id": o + 1, "cust": o + 1, "amt": 10}, {"_id": o + 2, "cust": o + 2, "amt": 5}])
        c.custs.insert_many([{"_id": o + 1, "name": t + "1"}, {"_id": o + 2, "name": t + "2"}])
        c.other.insert_one({"_id": o + 9, "who": t})
    res = list(a.orders.aggregate([
        {"$lookup": {"from": "custs", "localField": "cust", "foreignField": "_id", "as": "c"}},
        {"$unionWith": {"coll": "other", "pipeline": [{"$project": {"who": 1}}]}},
        {"$facet": {"names": [{"$unwind": "$c"}, {"$project": {"n": "$c.name"}}],
                    "count": [{"$count": "n"}]}}]))
    assert sorted(x["n"] for x in res[0]["names"]) == ["A1", "A2"]
    assert res[0]["count"] == [{"n": 3}]
    res = list(b.orders.aggregate([{"$lookup": {"from": "custs", "pipeline": [{"$match": {}}], "as": "all"}}]))
    assert {c["name"] for c in res[0]["all"]} == {"B1", "B2"}
    pipeline = last(env, "aggregate")["pipeline"]
    assert "tenant_id" in str(pipeline)


@pytest.mark.local_backend("mongodb", "reads what reached the test backend (--trace)")
def test_transactions_pass_lsid_and_txn_number(env):
    c = env.client("alice")
    coll = c.txn.t
    with c.start_session() as s:
        client_lsid = s.session_id["id"]
        with s.start_transaction():
            coll.insert_one({"_id": 1}, session=s)
            coll.update_one({"_id": 1}, {"$set": {"x": 1}}, session=s)
    commit = last(env, "commitTransaction")
    assert commit["txnNumber"] == 1 and commit["autocommit"] is False
    ins = [x["body"] for x in env.backend.received("insert") if x["body"]["insert"] == "t"][-1]
    assert ins["startTransaction"] is True and ins["txnNumber"] == 1
    # the backend saw a per-tenant lsid, never the client's
    assert ins["lsid"]["id"] != client_lsid and ins["lsid"] == commit["lsid"]
    assert coll.find_one({"_id": 1})["x"] == 1


@pytest.mark.local_backend("mongodb", "reads what reached the test backend (--trace)")
def test_exhaust_cleared_and_checksums(env):
    r = env.raw("alice")
    r.command({"insert": "ck", "documents": [{"_id": i} for i in range(5)]}, db="raw")
    # exhaustAllowed never reaches the backend (it would stream)
    rep = r.command({"find": "ck", "batchSize": 2}, db="raw", flags=MSG_EXHAUST_ALLOWED, full=True)
    assert rep["flags"] & 2 == 0 and len(rep["doc"]["cursor"]["firstBatch"]) == 2
    f = [x for x in env.backend.received("find") if x["body"]["find"] == "ck"][-1]
    assert f["flags"] & MSG_EXHAUST_ALLOWED == 0
    # checksummed requests: forwarded ones keep a valid checksum; so does the backend's reply
    rep = r.command({"count": "ck"}, db="raw", checksum=True, full=True)
    assert rep["doc"]["n"] == 5 and rep["flags"] & 1  # RawMongo verified the CRC
    rep = r.command({"find": "ck", "filter": {"_id": 1}}, db="raw", checksum=True,
                    flags=MSG_EXHAUST_ALLOWED, full=True)
    assert rep["doc"]["cursor"]["firstBatch"] == [{"_id": 1, "tenant_id": "alice"}]
    r.close()


def test_more_to_come_writes_and_denials(env):
    r = env.raw("alice")
    r.command({"insert": "mtc", "documents": [{"_id": 1}], "writeConcern": {"w": 0}}, db="raw", flags=2)
    r.command({"insert": "mtc", "documents": [{"_id": 2, "tenant_id": "bob"}]}, db="raw", flags=2)  # denied: no reply
    r.command({"serverStatus": 1}, db="admin", flags=2)
    assert r.command({"count": "mtc"}, db="raw")["n"] == 1
    r.close()


def test_pipelined_denials_keep_request_order(env):
    r = env.raw("alice")
    msgs = [op_msg(10, {"count": "po", "$db": "raw"}), op_msg(11, {"serverStatus": 1, "$db": "admin"}),
            op_msg(12, {"hello": 1, "$db": "admin"}), op_msg(13, {"count": "po", "$db": "raw"}),
            op_msg(14, {"listDatabases": 1, "$db": "admin"})]
    r.send(b"".join(msgs))
    got = [r.read() for _ in msgs]
    assert [g["response_to"] for g in got] == [10, 11, 12, 13, 14]
    assert [g["doc"]["ok"] for g in got] == [1, 0, 1, 1, 0]
    r.close()


@pytest.mark.local_backend("mongodb", "reads what reached the test backend (--trace)")
def test_database_mode_maps_names(denv):
    a = denv.client("alice")
    b = denv.client("bob")
    a.shop.items.insert_many([{"_id": i} for i in range(120)])
    b.shop.items.insert_one({"_id": "b"})
    assert a.shop.items.count_documents({}) == 120 and b.shop.items.count_documents({}) == 1
    assert len(list(a.shop.items.find(batch_size=25))) == 120  # getMore through mapped names
    d = denv.direct()
    assert d.shop_alice.items.count_documents({}) == 120 and "tenant_id" not in d.shop_alice.items.find_one()
    assert d.shop_bob.items.find_one() == {"_id": "b"}
    assert "shop" not in d.list_database_names()
    assert last(denv, "find")["$db"] in ("shop_alice", "shop_bob")
    r = denv.raw("alice")
    first = r.command({"find": "items", "batchSize": 1}, db="shop")
    assert first["cursor"]["ns"] == "shop.items"  # mapped back
    r.close()
    names = a.list_database_names()
    assert "shop" in names and not any(n.endswith("_bob") or n.endswith("_alice") for n in names)
    assert "shop" in b.list_database_names()
    with pytest.raises(pymongo.errors.OperationFailure) as ei:
        a.admin.command("serverStatus")
    assert ei.value.code == 13


# ---- other drivers -----------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "MONGODB-OIDC"])
def test_node_driver(env, mechanism):
    tenant = "nodeplain" if mechanism == "PLAIN" else "nodeoidc"
    proc = subprocess.run([NODE, os.path.join(BACKEND_DIR, "tenantgate_node_client.mjs"), str(env.port),
                           mechanism, env.tokens.mint(tenant), "nodedb"],
                          cwd=BACKEND_DIR, capture_output=True, text=True, timeout=h.scaled(120))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "node client: ok" in proc.stdout
    import json

    facts = json.loads(proc.stdout.splitlines()[0])
    assert facts["count"] == 242 and facts["tenantField"] == tenant
    if mechanism == "MONGODB-OIDC":
        assert facts["callbacks"] >= 1
    d = env.direct().nodedb.nodedocs
    assert d.count_documents({"tenant_id": tenant}) == 242


def test_libmongoc_client(env):
    assert MONGOC_CLIENT, ("TG_MONGOC_CLIENT is not set: the libmongoc client is built when "
                           "libmongoc-dev is installed (deploy/local/packages.sh)")
    env.client("bob").cdb.cc.insert_one({"source": "libmongoc", "i": -1})
    uri = env.uri("carol", db="cdb")
    proc = subprocess.run([MONGOC_CLIENT, uri, "cdb", "cc", "7"], capture_output=True, text=True,
                          timeout=h.scaled(60))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "inserted 7 found 7", proc.stdout  # bob's document is not found
    assert all('"tenant_id" : "carol"' in x for x in lines[1:])
    bad = env.uri("carol", token=env.tokens.mint("carol", ttl=-100), db="cdb")
    proc = subprocess.run([MONGOC_CLIENT, bad, "cdb", "cc", "1"], capture_output=True, text=True,
                          timeout=h.scaled(60))
    assert proc.returncode == 2 and "authentication failed: token expired" in proc.stdout, proc.stdout


def test_metrics_forwarded_rewritten_rejected(env):
    a = env.client("metrics")
    a.m.c.insert_one({"x": 1})
    with pytest.raises(pymongo.errors.OperationFailure):
        a.m.c.find_one({"$where": "SECRET_LITERAL_42 == 1"})
    port = env.admin_port
    assert h.scrape(port, "tenantgate_messages_rewritten_total", listener="mongo") >= 1
    assert h.scrape(port, "tenantgate_messages_forwarded_total", listener="mongo") >= 1
    assert h.scrape(port, "tenantgate_messages_rejected_total", listener="mongo", reason="policy") >= 1
    log = env.proxy.log()
    assert '"command rejected"' in log and '"tenant":"metrics"' in log
    assert "SECRET_LITERAL_42" not in log, "a rejected command's values never reach the log"
