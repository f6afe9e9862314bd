"""`protocol: bolt` end to end: the official JavaScript driver (neo4j-driver) through
tenantgate to the Bolt test backend (kuzu), in property and database isolation.

  driver --bolt:// or neo4j://, bearer or basic(JWT)--> tenantgate --basic svc--> test backend

Label isolation needs two labels per node, which kuzu cannot store: the rewriter's label
mode is tested on its own (tests/unit/policy), and a label listener here only shows that
its statements reach the backend rewritten.
"""

import re
import shutil
import subprocess

import pytest

from bolt_env import bolt_stack
from bolt_wire import Client

SCHEMA = """
CREATE NODE TABLE Person(id SERIAL, name STRING, age INT64, tenant_id STRING, PRIMARY KEY(id));
CREATE NODE TABLE City(id SERIAL, name STRING, tenant_id STRING, PRIMARY KEY(id));
CREATE NODE TABLE Item(id SERIAL, n INT64, tenant_id STRING, PRIMARY KEY(id));
CREATE REL TABLE Knows(FROM Person TO Person, since INT64);
CREATE REL TABLE LivesIn(FROM Person TO City);
"""

FORBIDDEN = "Neo.ClientError.Security.Forbidden"


@pytest.fixture(scope="module")
def st():
    with bolt_stack(SCHEMA) as s:
        yield s


def err(out):
    return out.get("error", {})


def props(node):
    """A node's properties without kuzu's SERIAL key."""
    return {k: v for k, v in node["$node"]["props"].items() if k != "id"}


def names(records):
    return sorted(r[0] for r in records)


# ---- connecting -------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["bolt", "neo4j"])
@pytest.mark.parametrize("auth", ["bearer", "basic"])
def test_drivers_connect_with_the_token(st, scheme, auth):
    out = st.driver("acme", [{"op": "verify"}, {"op": "run", "query": "RETURN 1 AS x"}],
                    scheme=scheme, auth=auth)
    assert out[0]["server"]["address"] == st.env.address
    assert out[0]["server"]["protocolVersion"] == "5.6"
    assert out[1]["records"] == [[1]]


@pytest.mark.local_backend("neo4j", "reads the test backend's --log-messages output")
def test_routing_table_lists_only_tenantgate(st):
    """neo4j:// reads the routing table: every role is tenantgate, no cluster member leaks."""
    c = Client(st.env.port)
    c.login(st.env.tokens.mint("acme"))
    m = c.request("ROUTE", {"address": st.env.address}, [], {"db": None})
    assert m.name == "SUCCESS"
    addrs = {a for s in m.meta["rt"]["servers"] for a in s["addresses"]}
    assert addrs == {st.env.address}
    out = st.driver("acme", [{"op": "run", "query": "RETURN 2 AS x", "mode": "read"},
                             {"op": "run", "query": "RETURN 3 AS x", "mode": "write"}],
                    scheme="neo4j")
    assert [o["records"] for o in out] == [[[2]], [[3]]]
    assert "ROUTE" not in st.b.log()  # the backend was never asked (it would name core1/core2)


def test_bad_token_is_unauthorized(st):
    out = st.driver("acme", [{"op": "run", "query": "RETURN 1"}], token="not-a-token")
    assert err(out[0])["code"] == "Neo.ClientError.Security.Unauthorized"
    assert "tenantgate:" in err(out[0])["message"]


# ---- property isolation with real statements -------------------------------------------------


@pytest.mark.local_backend("neo4j", "reads the test backend's --log-messages output")
def test_each_tenant_writes_and_reads_its_own_graph(st):
    st.rows("acme", "CREATE (:Person {name: 'ann', age: 30})")
    st.rows("globex", "CREATE (:Person {name: 'gus', age: 40})")
    assert st.rows("acme", "MATCH (p:Person) RETURN p.name, p.tenant_id") == [["ann", "acme"]]
    assert st.rows("globex", "MATCH (p:Person) RETURN p.name") == [["gus"]]
    rows = st.direct("MATCH (p:Person) WHERE p.name IN ['ann', 'gus'] RETURN p.name, p.tenant_id "
                     "ORDER BY p.name")
    assert rows == [["ann", "acme"], ["gus", "globex"]]
    # what reached the backend: the rewritten text and the reserved parameter
    log = st.b.log()
    assert re.search(r'params=\[[^\]]*__tenantgate_tenant[^\]]*\] query=".*__tenantgate_tenant',
                     log)


def test_explicit_transactions_commit_and_rollback(st):
    out = st.driver("acme", [
        {"op": "tx", "end": "rollback",
         "queries": [{"query": "CREATE (:City {name: 'rolled-back'})"}]},
        {"op": "tx", "end": "commit",
         "queries": [{"query": "CREATE (:City {name: 'lyon'})"},
                     {"query": "MATCH (c:City) RETURN c.name"}]},
        {"op": "run", "query": "MATCH (c:City) RETURN c.name"},
    ])
    assert "error" not in out[0] and "error" not in out[1], out
    assert out[1]["results"][1]["records"] == [["lyon"]]
    assert out[2]["records"] == [["lyon"]]
    assert st.rows("globex", "MATCH (c:City) RETURN c.name") == []


def test_managed_transactions(st):
    out = st.driver("globex", [
        {"op": "managed", "kind": "write",
         "queries": [{"query": "CREATE (:City {name: $n})", "params": {"n": "rome"}}]},
        {"op": "managed", "kind": "read",
         "queries": [{"query": "MATCH (c:City) RETURN c.name"}]},
    ])
    assert out[1]["results"][0]["records"] == [["rome"]]


@pytest.mark.local_backend("neo4j", "reads the test backend's --log-messages output")
def test_large_result_streams_with_fetch_size(st):
    st.rows("acme", "UNWIND range(1, 5000) AS i CREATE (:Item {n: i})")
    out = st.driver("acme", [{"op": "stream", "query": "MATCH (i:Item) RETURN i.n ORDER BY i.n",
                              "fetchSize": 100}])
    assert out[0]["count"] == 5000
    assert out[0]["first"] == [1] and out[0]["last"] == [5000]
    assert st.b.log().count("< PULL n=100") >= 50
    out = st.driver("globex", [{"op": "stream", "query": "MATCH (i:Item) RETURN i.n",
                                "fetchSize": 100}])
    assert out[0]["count"] == 0


def test_failures_and_reset_in_one_session(st):
    out = st.driver("acme", [
        {"op": "run", "session": "s", "query": "CALL db.labels()"},            # refused here
        {"op": "run", "session": "s", "query": "RETURN 1 AS x"},               # after RESET
        {"op": "run", "session": "s", "query": "MATCH (n:NoSuchTable) RETURN n"},  # backend fails
        {"op": "run", "session": "s", "query": "RETURN 2 AS x"},
        {"op": "tx", "session": "s", "end": "commit",
         "queries": [{"query": "RETURN 3 AS x"}, {"query": "LOAD CSV FROM 'file:///etc/passwd' AS l RETURN l"}]},
        {"op": "run", "session": "s", "query": "RETURN 4 AS x"},
    ])
    assert err(out[0])["code"] == FORBIDDEN and err(out[0])["message"].startswith("tenantgate: ")
    assert out[1]["records"] == [[1]]
    assert err(out[2])["code"].startswith("Neo.ClientError.Statement.")
    assert out[3]["records"] == [[2]]
    assert err(out[4])["code"] == FORBIDDEN
    assert out[5]["records"] == [[4]]


def test_refused_statements_name_the_reason(st):
    for q in ["LOAD CSV FROM 'file:///etc/passwd' AS l RETURN l", "USE system SHOW DATABASES",
              "CALL db.labels()", "RETURN apoc.text.join(['a'], ',')", "SHOW DATABASES"]:
        out = st.run("acme", q)
        assert err(out)["code"] == FORBIDDEN, (q, out)
        assert err(out)["message"].startswith("tenantgate: "), out


def test_databases_in_property_mode(st):
    assert st.rows("acme", "RETURN 1", db="neo4j") == [[1]]
    for db in ["system", "other", "tenant-acme"]:
        assert err(st.run("acme", "RETURN 1", db=db))["code"] == FORBIDDEN, db


# ---- raw Bolt against the real backend ----------------------------------------------------------


@pytest.mark.parametrize("version", [(4, 4), (5, 0), (5, 2), (5, 4), (5, 6)])
def test_every_version_end_to_end(st, version):
    c = Client(st.env.port)
    replies = c.login(st.env.tokens.mint("raw-" + "".join(map(str, version))), version=version,
                      scheme="basic")
    assert [r.name for r in replies] == ["SUCCESS"] * len(replies)
    run, records, pull = c.run("CREATE (p:Person {name: 'v', age: $a}) RETURN p, p.age",
                               {"a": version[1]})
    assert run.name == "SUCCESS" and pull.name == "SUCCESS", (run, pull)
    (node, age), = records
    assert len(node.fields) == (3 if version == (4, 4) else 4)  # Node: element id from 5.0
    assert node.fields[2]["tenant_id"] == "raw-" + "".join(map(str, version)) and age == version[1]
    c.send("GOODBYE")
    assert c.closed()


@pytest.mark.local_backend("neo4j", "reads the test backend's --log-messages output")
def test_pipelined_records_and_local_failures_keep_their_order(st):
    c = Client(st.env.port)
    c.login(st.env.tokens.mint("pipe"))
    c.send("RUN", "UNWIND range(1, 3) AS i RETURN i", {}, {})
    c.send("PULL", {"n": 2})
    c.send("PULL", {"n": -1})
    c.send("RUN", "CALL db.labels()", {}, {})          # refused by tenantgate
    c.send("PULL", {"n": -1})
    c.send("RUN", "RETURN 'never-sent' AS x", {}, {})  # not sent: IGNORED until RESET
    got = [c.recv() for _ in range(9)]
    assert [m.name for m in got] == ["SUCCESS", "RECORD", "RECORD", "SUCCESS", "RECORD",
                                     "SUCCESS", "FAILURE", "IGNORED", "IGNORED"]
    assert [got[i].fields[0] for i in (1, 2, 4)] == [[1], [2], [3]]
    assert got[3].meta.get("has_more") is True and got[6].meta["code"] == FORBIDDEN
    # RESET (sent alone: Bolt's RESET also interrupts what is still queued before it)
    assert c.request("RESET").name == "SUCCESS"
    run, records, pull = c.run("RETURN 42 AS x")
    assert (run.name, records, pull.name) == ("SUCCESS", [[42]], "SUCCESS")
    assert "never-sent" not in st.b.log()


def test_logoff_logon_switches_tenant_on_the_real_backend(st):
    c = Client(st.env.port)
    c.login(st.env.tokens.mint("sw-a"))
    assert c.run("CREATE (:City {name: 'only-a'})")[2].name == "SUCCESS"
    c.send("LOGOFF")
    c.send("LOGON", {"scheme": "bearer", "credentials": st.env.tokens.mint("sw-b")})
    assert [c.recv().name, c.recv().name] == ["SUCCESS", "SUCCESS"]
    run, records, pull = c.run("MATCH (c:City) RETURN c.name")
    assert records == [] and pull.name == "SUCCESS"
    assert c.run("CREATE (c:City {name: 'only-b'}) RETURN c.tenant_id")[1] == [["sw-b"]]
    assert st.rows("sw-a", "MATCH (c:City) RETURN c.name") == [["only-a"]]


def test_tls_with_drivers(tmp_path):
    """tls.mode require: drivers connect with bolt+ssc:// and neo4j+ssc:// (self-signed)."""
    openssl = shutil.which("openssl") or "/usr/bin/openssl"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(tmp_path / "k.pem"), "-out", str(tmp_path / "c.pem")],
                   check=True, capture_output=True)
    tls = {"tls": {"mode": "require", "cert_file": str(tmp_path / "c.pem"),
                   "key_file": str(tmp_path / "k.pem")}}
    with bolt_stack(SCHEMA, listener_extra=tls) as s:
        for scheme in ("bolt+ssc", "neo4j+ssc"):
            out = s.driver("acme", [{"op": "run", "query": "RETURN 7 AS x"}], scheme=scheme)
            assert out[0]["records"] == [[7]], out
        out = s.driver("acme", [{"op": "run", "query": "RETURN 7 AS x"}], scheme="bolt",
                       config={"connectionTimeout": 3000})
        assert "error" in out[0]  # plaintext is refused


# ---- hide_tenant_property ---------------------------------------------------------------------


def test_hide_tenant_property():
    with bolt_stack(SCHEMA, hide_tenant_property=True) as s:
        s.rows("acme", "CREATE (a:Person {name: 'ann', age: 1})-[:Knows {since: 2}]->"
                       "(b:Person {name: 'bea'})")
        rows = s.rows("acme", "MATCH p = (a:Person)-[k:Knows]->(b:Person) RETURN a, [b], p, "
                              "a.tenant_id")
        a, bl, path, tid = rows[0]
        assert props(a) == {"name": "ann", "age": 1}  # (id: kuzu's SERIAL key)
        assert props(bl[0]) == {"name": "bea"}
        assert all("tenant_id" not in n["$node"]["props"] for n in path["$path"][0::2])
        assert tid == "acme"  # asked for by name: the tenant's own value
        assert s.direct("MATCH (p:Person {name: 'ann'}) RETURN p.tenant_id") == [["acme"]]


# ---- database isolation -----------------------------------------------------------------------


@pytest.mark.local_backend("neo4j", "a database per tenant: Neo4j Community has only one")
def test_database_mode_maps_each_tenant_to_its_database():
    with bolt_stack(SCHEMA, isolation="database") as s:
        s.rows("acme", "CREATE (:Person {name: 'ann'})")
        s.rows("globex", "CREATE (:Person {name: 'gus'})", db="neo4j")
        assert s.rows("acme", "MATCH (p:Person) RETURN p.name") == [["ann"]]
        assert s.rows("globex", "MATCH (p:Person) RETURN p.name") == [["gus"]]
        assert s.direct("MATCH (p:Person) RETURN p.name", db="tenant-acme") == [["ann"]]
        assert s.direct("MATCH (p:Person) RETURN p.name", db="tenant-globex") == [["gus"]]
        assert s.direct("MATCH (p:Person) RETURN p.name") == []  # the default database
        # the tenant's own mapped name works, another tenant's does not
        assert s.rows("acme", "MATCH (p:Person) RETURN p.name", db="tenant-acme") == [["ann"]]
        assert err(s.run("globex", "MATCH (p:Person) RETURN p", db="tenant-acme"))["code"] == \
            FORBIDDEN
        assert err(s.run("globex", "USE `tenant-acme` MATCH (p) RETURN p"))["code"] == FORBIDDEN
        out = s.driver("acme", [{"op": "tx", "end": "commit", "db": "neo4j",
                                 "queries": [{"query": "CREATE (:City {name: 'oslo'})"}]},
                                {"op": "managed", "kind": "read",
                                 "queries": [{"query": "MATCH (c:City) RETURN c.name"}]}],
                       scheme="neo4j")
        assert out[1]["results"][0]["records"] == [["oslo"]]
        assert "db=tenant-acme" in s.b.log() and "db=tenant-globex" in s.b.log()
        assert re.search(r"< (RUN|BEGIN) db=neo4j\b", s.b.log()) is None


@pytest.mark.local_backend("neo4j", "reads the test backend's --log-messages output")
def test_label_mode_statements_reach_the_backend_rewritten():
    with bolt_stack(SCHEMA, isolation="label") as s:
        out = s.run("acme", "MATCH (p:Person) RETURN count(p)")
        # kuzu has one label per node: it refuses the second label, but the text shows it
        assert "error" in out or out["records"] == [[0]]
        assert "Tenant_acme" in s.b.log()
