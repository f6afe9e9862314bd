"""MongoDB isolation suite (SPEC §6): tenant A writes, tenant B tries every bypass.

  alice --JWT--> tenantgate --> test backend <-- direct (service user): the ground truth
  bob   --JWT--> tenantgate ---^

Each attack asserts, against the backend itself, that nothing of A's leaked (A's documents
carry the marker A-SECRET; no reply B gets may contain it, nor A's count) and that nothing
of A's changed (A's documents compared with a snapshot taken before). Denials are checked
to be code 13 and, where it matters, to have reached nothing (the backend's --trace).
Both isolation modes run the generic attacks; each mode has its own namespace attacks.
"""

import pymongo
import pytest
from bson import Int64, Regex
from bson.binary import UUID_SUBTYPE, Binary
from pymongo.errors import OperationFailure

from mongo_fixture import mongo_env

MARK = "A-SECRET"


@pytest.fixture(scope="module", params=["field", "database"])
def env(request):
    mongodb = ({"isolation": "field", "tenant_field": "tenant_id"} if request.param == "field"
               else {"isolation": "database", "database_template": "{db}_{tenant}"})
    with mongo_env(mongodb=mongodb) as e:
        e.mode = request.param
        a = e.client("alice").app
        a.items.insert_many([{"_id": f"a{i}", "n": i, "secret": f"{MARK}-{i}", "group": "g"}
                             for i in range(5)])
        a.people.insert_many([{"_id": "pa", "name": f"{MARK}-person", "boss": None},
                              {"_id": "pa2", "name": f"{MARK}-p2", "boss": "pa"}])
        b = e.client("bob").app
        b.items.insert_many([{"_id": f"b{i}", "n": i, "secret": "bob", "group": "g"} for i in range(2)])
        b.people.insert_one({"_id": "pb", "name": "bob-person", "boss": "pa"})
        e.a_db = "app" if e.mode == "field" else "app_alice"
        e.snapshot = snapshot(e)
        yield e


def snapshot(env):
    d = env.direct()[env.a_db]
    out = {}
    for coll in ("items", "people"):
        q = {"tenant_id": "alice"} if env.mode == "field" else {}
        out[coll] = sorted(d[coll].find(q), key=lambda x: x["_id"])
    return out


@pytest.fixture
def b(env):
    return env.client("bob").app


def check(env, result):
    """Nothing of A's in what B got, and A's data unchanged."""
    text = repr(result)
    assert MARK not in text, f"A's data leaked: {text[:400]}"
    assert snapshot(env) == env.snapshot, "A's data changed"


def attempt(fn):
    """Runs fn; returns its result, or the OperationFailure's details (code, errmsg)."""
    try:
        r = fn()
        return list(r) if isinstance(r, pymongo.command_cursor.CommandCursor) or \
            isinstance(r, pymongo.cursor.Cursor) else r
    except OperationFailure as e:
        return {"code": e.code, "errmsg": str(e)}


def denied(result):
    return isinstance(result, dict) and result.get("code") == 13


# ---- reads -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flt", [
    {"$or": [{"tenant_id": "alice"}, {"n": {"$gte": 0}}]},
    {"tenant_id": "alice"},
    {"tenant_id": {"$ne": "bob"}},
    {"tenant_id": {"$in": ["alice", "bob"]}},
    {"tenant_id": {"$regex": "^a"}},
    {"tenant_id": {"$exists": False}},
    {"$nor": [{"tenant_id": "bob"}]},
    {"$expr": {"$eq": ["$tenant_id", "alice"]}},
    {"$expr": {"$ne": ["$tenant_id", "bob"]}},
    {"_id": {"$in": ["a0", "a1"]}},
    {"secret": {"$regex": "A-SECRET"}},
    {"$jsonSchema": {"properties": {"secret": {"type": "string"}}}},
], ids=lambda f: str(f)[:40])
def test_filters_stay_scoped(env, b, flt):
    res = attempt(lambda: list(b.items.find(flt)))
    check(env, res)
    cnt = attempt(lambda: b.items.count_documents(flt))
    assert cnt in (0, 1, 2) or isinstance(cnt, dict), cnt  # bob has 2 documents; alice 5
    check(env, cnt)


@pytest.mark.local_backend("mongodb", "reads what reached the test backend (--trace)")
def test_server_side_javascript_refused(env, b):
    n = len(env.backend.received())
    for fn in (lambda: list(b.items.find({"$where": "this.secret != null"})),
               lambda: list(b.items.find({"$expr": {"$function": {
                   "body": "function(){return true}", "args": [], "lang": "js"}}})),
               lambda: list(b.items.aggregate([{"$group": {"_id": None, "a": {"$accumulator": {
                   "init": "function(){return 0}", "accumulate": "function(s){return s}", "accumulateArgs": [],
                   "merge": "function(a,b){return a}", "lang": "js"}}}}])),
               lambda: b.command("mapReduce", "items", map="function(){emit(1,1)}",
                                 reduce="function(k,v){return 1}", out={"inline": 1}),
               lambda: b.command("eval", "db.items.find()")):
        r = attempt(fn)
        assert denied(r), r
        check(env, r)
    assert [x for x in env.backend.received()[n:] if "mapReduce" in x["body"] or "eval" in x["body"]] == []


@pytest.mark.parametrize("pipeline", [
    [{"$lookup": {"from": "items", "localField": "group", "foreignField": "group", "as": "j"}}],
    [{"$lookup": {"from": "items", "pipeline": [{"$match": {"tenant_id": "alice"}}], "as": "j"}}],
    [{"$lookup": {"from": "items", "let": {"t": "alice"}, "pipeline": [
        {"$match": {"$expr": {"$eq": ["$tenant_id", "$$t"]}}}], "as": "j"}}],
    [{"$unionWith": "items"}],
    [{"$unionWith": {"coll": "items", "pipeline": [{"$match": {"tenant_id": "alice"}}]}}],
    [{"$unionWith": {"coll": "people", "pipeline": [{"$project": {"tenant_id": 0}}]}}],
    [{"$graphLookup": {"from": "people", "startWith": "$boss", "connectFromField": "boss",
                       "connectToField": "_id", "as": "chain"}}],
    [{"$facet": {"x": [{"$lookup": {"from": "items", "pipeline": [], "as": "j"}}],
                 "y": [{"$unionWith": "items"}]}}],
    [{"$project": {"tenant_id": 0}}, {"$lookup": {"from": "items", "localField": "n",
                                                  "foreignField": "n", "as": "j"}}],
    [{"$replaceRoot": {"newRoot": {"tenant_id": "alice"}}}, {"$lookup": {
        "from": "items", "localField": "tenant_id", "foreignField": "tenant_id", "as": "j"}}],
    [{"$collStats": {"count": {}}}],
    [{"$indexStats": {}}],
    [{"$currentOp": {}}],
    [{"$listSessions": {}}],
    [{"$planCacheStats": {}}],
    [{"$changeStream": {}}],
    [{"$documents": [{"x": 1}]}, {"$unionWith": "items"}],
], ids=lambda p: str(p)[:50])
def test_pipelines_stay_scoped(env, b, pipeline):
    coll = "people" if "$graphLookup" in str(pipeline) else "items"
    res = attempt(lambda: list(b[coll].aggregate(pipeline)))
    check(env, res)


def test_counts_and_names_do_not_leak(env, b):
    assert b.items.estimated_document_count() == 2  # alice has 5
    assert sorted(b.items.distinct("_id")) == ["b0", "b1"]
    assert sorted(b.items.distinct("tenant_id")) in ([], ["bob"])
    # field mode: statistics count every tenant's documents; database mode: the tenant's own
    r = attempt(lambda: b.command("collStats", "items"))
    assert denied(r) or env.mode == "database", r
    check(env, r)
    r = attempt(lambda: b.command("dbStats"))
    assert denied(r) or env.mode == "database", r
    check(env, r)
    res = attempt(lambda: list(b.items.aggregate([{"$group": {"_id": None, "n": {"$sum": 1}}}])))
    assert res == [{"_id": None, "n": 2}], res
    check(env, res)


# ---- writes --------------------------------------------------------------------------------------------


def test_inserts_with_another_tenants_value_refused(env, b):
    if env.mode == "field":
        for docs in ([{"_id": "x1", "tenant_id": "alice"}],
                     [{"_id": "x2"}, {"_id": "x3", "tenant_id": "alice"}],
                     [{"_id": "x5", "tenant_id": ["alice"]}]):
            r = attempt(lambda: b.items.insert_many(docs))
            assert denied(r), r
        assert env.direct().app.items.count_documents({"_id": {"$in": ["x1", "x2", "x3", "x4", "x5"]}}) == 0
    # A's _id: a duplicate key (field mode shares the _id index) or a separate database; never A's doc
    attempt(lambda: b.items.insert_one({"_id": "a0", "secret": "bob-overwrite"}))
    check(env, None)


@pytest.mark.parametrize("update", [
    {"$set": {"tenant_id": "alice"}},
    {"$set": {"tenant_id": "bob", "secret": "x"}},
    {"$rename": {"tenant_id": "t2"}},
    {"$rename": {"secret": "tenant_id"}},
    {"$unset": {"tenant_id": ""}},
    {"$setOnInsert": {"tenant_id": "alice"}},
    {"$inc": {"tenant_id": 1}},
    {"$push": {"tenant_id": "alice"}},
    {"$currentDate": {"tenant_id": True}},
    [{"$set": {"tenant_id": "alice"}}],
    [{"$unset": "tenant_id"}],
    [{"$replaceWith": {"_id": "$_id", "tenant_id": "alice"}}],
    [{"$project": {"tenant_id": 0}}],
], ids=lambda u: str(u)[:40])
def test_updates_of_the_tenant_field(env, b, update):
    before = snapshot(env)
    r = attempt(lambda: b.items.update_many({}, update, upsert=True))
    check(env, r)
    d = env.direct()
    if env.mode == "field":
        # bob's own documents still carry bob's tenant
        assert sorted(x.get("tenant_id") for x in d.app.items.find({"_id": {"$in": ["b0", "b1"]}})) == ["bob", "bob"]
    assert snapshot(env) == before


def test_updates_deletes_upserts_by_as_ids(env, b):
    ids = ["a0", "a1", "a2"]
    for fn in (lambda: b.items.update_many({"_id": {"$in": ids}}, {"$set": {"secret": "pwned"}}),
               lambda: b.items.update_one({"_id": "a0", "tenant_id": "alice"}, {"$set": {"s": 1}}, upsert=True),
               lambda: b.items.replace_one({"_id": "a1"}, {"secret": "replaced"}),
               lambda: b.items.replace_one({"_id": "a1"}, {"secret": "replaced", "tenant_id": "alice"}),
               lambda: b.items.replace_one({"_id": "zz"}, {"tenant_id": "alice"}, upsert=True),
               lambda: b.items.delete_many({"_id": {"$in": ids}}),
               lambda: b.items.delete_many({"tenant_id": "alice"}),
               lambda: b.items.find_one_and_update({"_id": "a2"}, {"$set": {"secret": "x"}}),
               lambda: b.items.find_one_and_delete({"_id": "a3"}),
               lambda: b.items.find_one_and_replace({"_id": "a4"}, {"x": 1}),
               lambda: b.items.bulk_write([pymongo.UpdateOne({"_id": "a0"}, {"$set": {"x": 1}}),
                                           pymongo.DeleteOne({"_id": "a1"})])):
        r = attempt(fn)
        check(env, r)
    # an upsert with A's tenant value creates nothing of A's
    if env.mode == "field":
        assert env.direct().app.items.count_documents({"tenant_id": "alice"}) == 5


def test_out_and_merge_over_as_ids(env, b):
    for pipeline in ([{"$project": {"_id": {"$literal": "a0"}, "secret": "merged"}},
                      {"$merge": {"into": "items", "on": "_id", "whenMatched": "replace"}}],
                     [{"$set": {"_id": "a1"}}, {"$merge": {"into": "items", "whenMatched": "merge"}}],
                     [{"$set": {"tenant_id": "alice"}}, {"$merge": {"into": "items", "on": ["_id", "tenant_id"]}}],
                     [{"$out": "items"}],
                     [{"$out": {"db": "app", "coll": "items"}}],
                     [{"$merge": {"into": {"db": "app_alice", "coll": "items"}}}],
                     [{"$merge": {"into": {"db": "admin", "coll": "x"}}}]):
        r = attempt(lambda: list(b.items.aggregate(pipeline)))
        check(env, r)


# ---- cursors, sessions, namespaces ---------------------------------------------------------------


@pytest.mark.local_backend("mongodb", "reads what reached the test backend (--trace)")
def test_guessed_and_stolen_cursor_ids(env):
    a = env.raw("alice")
    first = a.command({"find": "items", "batchSize": 1}, db="app")
    cid = first["cursor"]["id"]
    assert cid != 0
    bob = env.raw("bob")
    n = len(env.backend.received("getMore"))
    for guess in (cid, cid + 1, cid - 1, Int64(1), Int64(2 ** 62)):
        r = bob.command({"getMore": Int64(guess), "collection": "items"}, db="app")
        assert r["code"] == 13, r
        check(env, r)
        r = bob.command({"killCursors": "items", "cursors": [Int64(guess)]}, db="app")
        assert r["code"] == 13, r
    assert len(env.backend.received("getMore")) == n, "no getMore of bob's reached the backend"
    more = a.command({"getMore": cid, "collection": "items"}, db="app")  # alice's cursor still alive
    assert more["ok"] == 1 and len(more["cursor"]["nextBatch"]) == 4
    a.close()
    bob.close()


@pytest.mark.local_backend("mongodb", "reads what reached the test backend (--trace)")
def test_reused_lsids_map_per_tenant(env):
    lsid = {"id": Binary(bytes(range(16)), UUID_SUBTYPE)}
    a = env.raw("alice")
    r = a.command({"insert": "items", "documents": [{"_id": "txa", "secret": f"{MARK}-txn"}], "lsid": lsid,
                   "txnNumber": Int64(1), "startTransaction": True, "autocommit": False}, db="app")
    assert r["ok"] == 1, r
    bob = env.raw("bob")
    # bob joins "the same" session: commit, abort, read inside it
    for cmd in ({"commitTransaction": 1, "lsid": lsid, "txnNumber": Int64(1), "autocommit": False},
                {"abortTransaction": 1, "lsid": lsid, "txnNumber": Int64(1), "autocommit": False},
                {"find": "items", "lsid": lsid, "txnNumber": Int64(1), "autocommit": False}):
        r = bob.command(cmd, db="admin" if "find" not in cmd else "app")
        assert MARK not in repr(r)
    sent = [x["body"] for x in env.backend.received() if x["body"].get("lsid")]
    alice_lsid = [x["lsid"] for x in sent if x.get("insert") == "items" and x.get("txnNumber") == 1][-1]
    bob_lsids = [x["lsid"] for x in sent if "commitTransaction" in x or "abortTransaction" in x]
    assert alice_lsid["id"] != lsid["id"], "the client's lsid never reaches the backend"
    assert bob_lsids and all(x != alice_lsid for x in bob_lsids)
    assert a.command({"commitTransaction": 1, "lsid": lsid, "txnNumber": Int64(1), "autocommit": False},
                     db="admin")["ok"] == 1
    a.command({"delete": "items", "deletes": [{"q": {"_id": "txa"}, "limit": 1}]}, db="app")
    # endSessions of alice's id by bob ends bob's mapped session only
    bob.command({"endSessions": [lsid]}, db="admin")
    ends = env.backend.received("endSessions")
    assert all(alice_lsid not in x["body"]["endSessions"] for x in ends)
    a.close()
    bob.close()


@pytest.mark.parametrize("db", ["admin", "local", "config", "app_alice", "app_alice_bob", "$external",
                                "app.items", "", "a/b", "app\u0000x"[:3]])
def test_db_tricks(env, db):
    bob = env.raw("bob")
    r = bob.command({"find": "items"}, db=db)
    check(env, r)
    r = bob.command({"insert": "items", "documents": [{"_id": "dbtrick", "secret": "b"}]}, db=db)
    check(env, r)
    bob.close()
    if env.mode == "database":
        # whatever bob reached, it was under bob's name
        names = env.direct().list_database_names()
        assert not [n for n in names if n.startswith("app_alice") and n != "app_alice"], names


@pytest.mark.local_backend("mongodb", "reads what reached the test backend (--trace)")
@pytest.mark.parametrize("cmd", [
    {"listDatabases": 1}, {"serverStatus": 1}, {"currentOp": 1}, {"killOp": 1, "op": 1},
    {"getLog": "global"}, {"shutdown": 1}, {"dropDatabase": 1}, {"drop": "items"},
    {"renameCollection": "app.items", "to": "app.stolen"}, {"setParameter": 1, "x": 1},
    {"createUser": "x", "pwd": "y", "roles": []}, {"fsync": 1}, {"replSetGetStatus": 1},
    {"connectionStatus": 1}, {"hostInfo": 1}, {"getCmdLineOpts": 1}, {"killAllSessions": []},
    {"listCollections": 1, "filter": {"name": "items"}, "$readPreference": {"mode": "primary"}},
], ids=lambda c: next(iter(c)))
def test_admin_commands(env, cmd):
    bob = env.raw("bob")
    r = bob.command(dict(cmd), db="admin")
    check(env, r)
    name = next(iter(cmd))
    if name == "listDatabases" and env.mode == "database":
        assert r["ok"] == 1 and sorted(d["name"] for d in r["databases"]) == ["app"], r
    elif name == "listCollections":
        pass  # admin is refused in database mode; collection names are shared in field mode
    else:
        assert r.get("code") == 13, r
    bob.close()
    assert env.backend.received(name) == [] or name in ("listDatabases", "listCollections")


def test_hello_shows_no_topology(env):
    bob = env.raw("bob")
    for cmd in ({"hello": 1}, {"isMaster": 1}, {"ismaster": 1}):
        h = bob.command(cmd)
        assert not {"hosts", "setName", "primary", "me", "passives", "arbiters", "topologyVersion",
                    "$clusterTime", "electionId"} & set(h), h
        assert env.backend.address not in repr(h)
    bob.close()


@pytest.mark.local_backend("mongodb", "reads what reached the test backend (--trace)")
def test_reauth_as_another_tenant_resets_state(env):
    r = env.raw("bob")
    lsid = {"id": Binary(bytes(range(100, 116)), UUID_SUBTYPE)}
    first = r.command({"find": "items", "batchSize": 1, "lsid": lsid}, db="app")
    cid = first["cursor"]["id"]
    sent = [x["body"] for x in env.backend.received("find") if x["body"].get("lsid")][-1]["lsid"]
    assert r.plain(env.tokens.mint("alice"))["ok"] == 1
    # bob's logical session was ended on the backend before the switch
    assert any(sent in x["body"]["endSessions"] for x in env.backend.received("endSessions"))
    # bob's cursor was killed on the backend and is not alice's to read
    assert r.command({"getMore": cid, "collection": "items"}, db="app")["code"] == 13
    kills = env.backend.received("killCursors")
    assert any(cid in x["body"]["cursors"] for x in kills)
    # now alice: her data, not bob's
    got = r.command({"find": "items"}, db="app")["cursor"]["firstBatch"]
    assert {d["_id"] for d in got} == {f"a{i}" for i in range(5)}
    r.close()
