"""Cross-tenant isolation through `protocol: bolt` (SPEC §6), property and database modes.

Tenant A (acme) writes a graph through tenantgate. Tenant B (globex) then tries every
bypass of issue 6's list -- unscoped MATCH, anonymous nodes, OPTIONAL MATCH,
relationship-only patterns, subqueries, UNION, pattern comprehensions, SET n = {},
SET n += $m, label tricks, id()/elementId() lookups, CALL db.*, apoc, LOAD CSV, USE, db
and imp_user in BEGIN/RUN, a parameter named like the reserved one, comments and escapes
in identifiers -- with the official JavaScript driver and raw Bolt. Each attempt may fail
or return B's own data; the suite asserts that no reply carries anything of A's (names,
values, counts) and, read straight from the backend afterwards, that A's graph is exactly
as A wrote it and that everything B created carries B's tenant.
"""

import json

import pytest

from bolt_env import bolt_stack
from bolt_wire import Client
from pg_fixture import tamper_claims

SCHEMA = """
CREATE NODE TABLE Person(id SERIAL, name STRING, age INT64, tenant_id STRING, PRIMARY KEY(id));
CREATE NODE TABLE City(id SERIAL, name STRING, tenant_id STRING, PRIMARY KEY(id));
CREATE NODE TABLE Item(id SERIAL, n INT64, tenant_id STRING, PRIMARY KEY(id));
CREATE REL TABLE Knows(FROM Person TO Person, since INT64);
CREATE REL TABLE LivesIn(FROM Person TO City);
"""

A, B = "acme", "globex"
# Values only A wrote: none may appear in a reply to B (strings anywhere in a reply, numbers
# as values: A's ages, its relationship's `since`, its items' n).
A_MARKERS = ["alice", "amy", "paris", "acme"]
A_NUMBERS = {424242, 31, 868686} | {1000 + i for i in range(1, 6)}
FORBIDDEN = "Neo.ClientError.Security.Forbidden"


def snapshot(st, db=None):
    """Everything in the backend, every tenant, read directly as the service user."""
    q = {
        "person": "MATCH (p:Person) RETURN p.name, p.age, p.tenant_id",
        "city": "MATCH (c:City) RETURN c.name, c.tenant_id",
        "item": "MATCH (i:Item) RETURN i.n, i.tenant_id",
        "knows": "MATCH (a:Person)-[k:Knows]->(b:Person) RETURN a.name, b.name, k.since",
        "lives": "MATCH (a:Person)-[:LivesIn]->(c:City) RETURN a.name, c.name",
    }
    return {k: sorted(json.dumps(r) for r in st.direct(v, db=db)) for k, v in q.items()}


def of_tenant(snap, tenant):
    """The rows of snap that belong to tenant (relationships: by their A-side names)."""
    out = {}
    for k, rows in snap.items():
        if k in ("knows", "lives"):
            out[k] = [r for r in rows if json.loads(r)[0] in ("alice", "amy")]
        else:
            out[k] = [r for r in rows if json.loads(r)[-1] == tenant]
    return out


def seed(st, tenant_a=A, tenant_b=B, **step):
    out = st.driver(tenant_a, [dict(op="run", query=q, **step) for q in [
        "CREATE (a:Person {name: 'alice', age: 424242})-[:Knows {since: 868686}]->"
        "(b:Person {name: 'amy', age: 31})",
        "MATCH (a:Person {name: 'alice'}) CREATE (a)-[:LivesIn]->(:City {name: 'paris'})",
        "UNWIND range(1, 5) AS i CREATE (:Item {n: 1000 + i})",
    ]])
    assert all("error" not in o for o in out), out
    out = st.driver(tenant_b, [dict(op="run", query="CREATE (:Person {name: 'bob', age: 40})",
                                    **step)])
    assert "error" not in out[0], out


@pytest.fixture(scope="module")
def st():
    with bolt_stack(SCHEMA) as s:
        seed(s)
        s.before = snapshot(s)
        a_node = s.direct("MATCH (p:Person {name: 'alice'}) RETURN p")[0][0]["$node"]
        # a_pk: kuzu's SERIAL key (a Neo4j node, TG_EXT_NEO4J, has none)
        s.a_id, s.a_eid, s.a_pk = a_node["id"], a_node["elementId"], a_node["props"].get("id")
        yield s


def _numbers(v):
    if isinstance(v, bool):
        return
    if isinstance(v, (int, float)):
        yield v
    elif isinstance(v, dict):
        for k, e in v.items():
            if k not in ("id", "elementId", "start", "end"):  # the engine's own ids
                yield from _numbers(e)
    elif isinstance(v, list):
        for e in v:
            yield from _numbers(e)


def leaks(outcome, sent=""):
    """What of A's is in a driver outcome (error texts included), except strings B sent
    itself (an error message may quote B's own statement)."""
    text = json.dumps(outcome).lower()
    found = [m for m in A_MARKERS if m in text and m not in sent.lower()]
    return found + [n for n in _numbers(outcome.get("records", [])) if n in A_NUMBERS]


# Reads B may try; each must fail or show only B's data.
READ_ATTACKS = [
    "MATCH (n) RETURN n",
    "MATCH (n:Person) RETURN n.name, n.age",
    "MATCH (n) RETURN n.name",
    "OPTIONAL MATCH (n:Person) RETURN n",
    "OPTIONAL MATCH (n:Person)-[:Knows]->(m) RETURN n, m",
    "MATCH ()-[r]->() RETURN r",
    "MATCH ()-[r:Knows]->() RETURN r.since",
    "MATCH ()-[:Knows]->(b) RETURN b.name",
    "MATCH (a)-[:LivesIn]->(c) RETURN a.name, c.name",
    "MATCH p = ()-[*1..3]-() RETURN p",
    "MATCH (a:Person)-[*1..2]-(b) RETURN b",
    "CALL { MATCH (n:Person) RETURN n } RETURN n.name",
    "CALL { MATCH (x:Person) RETURN x.name AS nm UNION MATCH (c:City) RETURN c.name AS nm } "
    "RETURN nm",
    "MATCH (x:Person) WHERE EXISTS { MATCH (y:Person) WHERE y.name = 'alice' } RETURN x.name",
    "MATCH (x:Person) RETURN x.name, COUNT { MATCH (y:Person) } AS c",
    "RETURN COUNT { MATCH (n) } AS c",
    "MATCH (n:Person) RETURN n.name AS x UNION MATCH (c:City) RETURN c.name AS x",
    "MATCH (n:Person) RETURN n.name AS x UNION ALL MATCH (n:Item) RETURN toString(n.n) AS x",
    "RETURN [(p:Person)-[:Knows]->(q) | q.name] AS names",
    "MATCH (b:Person {name: 'bob'}) RETURN [(p:Person) WHERE p.name <> 'bob' | p.name] AS n",
    "MATCH (n) WHERE n:Person RETURN n.name",
    "MATCH (n:Person|City) RETURN n",
    "MATCH (n) WHERE n.tenant_id = 'acme' RETURN n.name",
    "MATCH (n {tenant_id: 'acme'}) RETURN n.name",
    "MATCH (n:Person {`tenant_id`: 'acme'}) RETURN n.name",
    "MATCH (n) WHERE n.tenant_id <> 'globex' RETURN n.name",
    "MATCH (n) WHERE n['tenant_id'] = 'acme' RETURN n.name",
    "MATCH (n) WHERE id(n) = $aid RETURN n",
    "MATCH (n) WHERE elementId(n) = $aeid RETURN n",
    "MATCH (a:Person), (b) WHERE id(b) = $aid RETURN b.name",
    "MATCH (n:Person) WHERE n.id = $apk RETURN n.name",  # kuzu's SERIAL key of alice
    "MATCH (n) WHERE n.id IN [0, 1, 2, 3] RETURN n.name",
    "MATCH (n:Person) // a comment\nRETURN n.name",
    "MATCH (n:Person /* {tenant_id: 'acme'} */) RETURN n.name",
    "MATCH (n:`Person`) RETURN n.name",
    "MATCH (`n`:Person) RETURN `n`.name",
    "MATCH (n:\\u0050erson) RETURN n.name",
    "MATCH (n) WHERE n.name = '\\u0061lice' RETURN n",
    "MATCH (a:Person) WITH a MATCH (b) RETURN b.name",
    "MATCH (a:Person) WITH count(a) AS c MATCH (b:Person) RETURN c, b.name",
    "UNWIND [1, 2] AS x MATCH (n:Item) RETURN n.n",
    "MATCH (n) RETURN labels(n), keys(n), properties(n)",
    "MATCH (n:Person) RETURN n {.*} AS m",
    "CALL db.labels()",
    "CALL db.schema.visualization()",
    "CALL db.propertyKeys()",
    "CALL apoc.cypher.run('MATCH (n) RETURN n', {})",
    "RETURN apoc.text.join(['x'], ',')",
    "CALL dbms.components()",
    "LOAD CSV FROM 'file:///etc/passwd' AS l RETURN l",
    "USE neo4j MATCH (n) RETURN n",
    "USE system SHOW DATABASES",
    "SHOW DATABASES",
    "SHOW TRANSACTIONS",
    "EXPLAIN MATCH (n) RETURN n",
    "PROFILE MATCH (n) RETURN n",
    "CYPHER runtime=slotted MATCH (n) RETURN n",
    "MATCH (n:Person) RETURN n.name; MATCH (m) RETURN m",
]

# Counts B may compute: each must count only B's own data (B has one Person, 'bob').
COUNT_ATTACKS = [
    ("MATCH (n) RETURN count(n)", [[1]]),
    ("MATCH (n:Person) RETURN count(*)", [[1]]),
    ("MATCH ()-[r]->() RETURN count(r)", [[0]]),
    ("OPTIONAL MATCH (n:Item) RETURN count(n)", [[0]]),
    ("MATCH (n:Person) WHERE n.age > 100000 RETURN count(n)", [[0]]),
]


def test_the_attacks_reach_data_without_tenantgate(st):
    """The suite's teeth: sent straight to the backend, most read attacks do show A's data
    (the rest are refused by tenantgate or not understood by kuzu)."""
    params = {"aid": st.a_id, "aeid": st.a_eid, "apk": st.a_pk}
    out = st.b.driver([{"op": "run", "query": q, "params": params} for q in READ_ATTACKS])
    leaking = [q for q, o in zip(READ_ATTACKS, out) if leaks(o, q)]
    assert len(leaking) >= 20, leaking


def test_reads_show_nothing_of_the_other_tenant(st):
    params = {"aid": st.a_id, "aeid": st.a_eid, "apk": st.a_pk}
    steps = [{"op": "run", "query": q, "params": params} for q in READ_ATTACKS]
    for scheme, auth in [("bolt", "bearer"), ("neo4j", "basic")]:
        out = st.driver(B, steps, scheme=scheme, auth=auth)
        bad = [(q, o) for q, o in zip(READ_ATTACKS, out) if leaks(o, q)]
        assert not bad, "\n".join(f"{q}\n  -> {json.dumps(o)[:300]}" for q, o in bad)
    # the refused ones say why, in Bolt's own terms
    by_query = dict(zip(READ_ATTACKS, out))
    for q in ["CALL db.labels()", "CALL apoc.cypher.run('MATCH (n) RETURN n', {})",
              "LOAD CSV FROM 'file:///etc/passwd' AS l RETURN l", "USE system SHOW DATABASES",
              "RETURN apoc.text.join(['x'], ',')"]:
        e = by_query[q].get("error", {})
        assert e.get("code") == FORBIDDEN and e["message"].startswith("tenantgate: "), (q, e)


def test_counts_cover_only_the_tenant(st):
    out = st.driver(B, [{"op": "run", "query": q} for q, _ in COUNT_ATTACKS])
    got = [(q, o.get("records", o)) for (q, _), o in zip(COUNT_ATTACKS, out)]
    assert got == [(q, want) for q, want in COUNT_ATTACKS]


# Writes B may try; afterwards A's graph must be unchanged.
WRITE_ATTACKS = [
    "MATCH (n) SET n = {} RETURN count(n)",
    "MATCH (n:Person) SET n = {name: 'pwned', tenant_id: 'acme'}",
    "MATCH (n:Person) SET n += $m",
    "MATCH (n:Person) SET n += {tenant_id: 'acme', age: 1}",
    "MATCH (n:Person) SET n.tenant_id = 'acme'",
    "MATCH (n:Person) SET n['tenant_id'] = 'acme'",
    "MATCH (n:Person) REMOVE n.tenant_id",
    "MATCH (n:Person) SET n:Admin",
    "MATCH (n) WHERE id(n) = $aid SET n.age = 0",
    "MATCH (n) WHERE elementId(n) = $aeid DETACH DELETE n",
    "MATCH (n:Person) WHERE n.name = 'alice' SET n.age = 0",
    "MATCH (n {name: 'alice'}) DELETE n",
    "MATCH ()-[r:Knows]->() DELETE r",
    "MATCH ()-[r]->() SET r.since = 0",
    "CREATE (n:Person {name: 'evil', tenant_id: 'acme'})",
    "CREATE (n:Person $props)",
    "MERGE (n:Person {name: 'alice'}) ON MATCH SET n.age = 0 RETURN n.age",
    "MERGE (c:City {name: 'paris'}) RETURN c",
    "MATCH (b:Person {name: 'bob'}), (a) WHERE id(a) = $aid CREATE (b)-[:Knows]->(a)",
    "MATCH (b:Person {name: 'bob'}) MATCH (a:Person {name: 'amy'}) CREATE (b)-[:Knows]->(a)",
    "UNWIND [1, 2] AS x CREATE (:Item {n: x})",
    "FOREACH (x IN [1, 2] | CREATE (:Item {n: x}))",
    "MATCH (n:Item) SET n.n = -1",
    "CALL { MATCH (n:Item) DETACH DELETE n }",
    "MATCH (n) DETACH DELETE n",
]


def test_writes_change_nothing_of_the_other_tenant(st):
    params = {"aid": st.a_id, "aeid": st.a_eid,
              "m": {"tenant_id": "acme", "age": 2}, "props": {"name": "p", "tenant_id": "acme"}}
    out = st.driver(B, [{"op": "run", "query": q, "params": params} for q in WRITE_ATTACKS])
    bad = [(q, o) for q, o in zip(WRITE_ATTACKS, out) if leaks(o, q + json.dumps(params))]
    assert not bad, bad
    by_query = dict(zip(WRITE_ATTACKS, out))
    for q in ["MATCH (n:Person) SET n.tenant_id = 'acme'", "MATCH (n:Person) REMOVE n.tenant_id",
              "CREATE (n:Person $props)"]:
        assert by_query[q].get("error", {}).get("code") == FORBIDDEN, (q, by_query[q])
    after = snapshot(st)
    assert of_tenant(after, A) == of_tenant(st.before, A)
    # whatever B created carries B's tenant: no row without a tenant, none in A's name
    for table in ("person", "city", "item"):
        tenants = {json.loads(r)[-1] for r in after[table]}
        assert tenants <= {A, B}, (table, tenants)
        assert len(of_tenant(after, A)[table]) == len(of_tenant(st.before, A)[table])
    assert st.rows(A, "MATCH (p:Person) RETURN p.name ORDER BY p.name") == [["alice"], ["amy"]]


def test_request_fields_cannot_reach_the_other_tenant(st):
    """db, imp_user and the reserved parameter on raw Bolt, plus forged re-authentication."""
    c = Client(st.env.port)
    c.login(st.env.tokens.mint(B))
    attempts = [
        ("BEGIN", {"db": "system"}), ("BEGIN", {"imp_user": "acme"}),
        ("BEGIN", {"db": "tenant-acme"}),
        ("RUN", "MATCH (n) RETURN n", {}, {"db": "system"}),
        ("RUN", "MATCH (n) RETURN n", {}, {"imp_user": "neo4j"}),
        ("RUN", "MATCH (n) RETURN n", {"__tenantgate_tenant": A}, {}),
        ("RUN", "MATCH (n {tenant_id: $__tenantgate_tenant}) RETURN n",
         {"__tenantgate_tenant": A}, {}),
        ("RUN", "MATCH (n) RETURN n", {"__tenantgate_tenantx": A}, {}),
        ("ROUTE", {}, [], {"db": None, "imp_user": "acme"}),
        ("ROUTE", {}, [], {"db": "system"}),
    ]
    for msg in attempts:
        c.send(*msg)
        c.send("PULL", {"n": -1})
        reply, pulled = c.recv(), c.recv()
        assert reply.name == "FAILURE" and reply.meta["code"] == FORBIDDEN, (msg, reply)
        assert pulled.name == "IGNORED"
        assert c.request("RESET").name == "SUCCESS"
    run, records, pull = c.run("CREATE (p:Person {name: 'bert'}) RETURN p.name")
    assert records == [["bert"]] and pull.name == "SUCCESS"
    run, records, pull = c.run("MATCH (p:Person) RETURN p.name")
    assert ["bert"] in records and not leaks({"records": records}) and pull.name == "SUCCESS"
    # LOGOFF, then LOGON as A with a token B forged from its own: refused, connection closed
    c.send("LOGOFF")
    assert c.recv().name == "SUCCESS"
    forged = tamper_claims(st.env.tokens.mint(B), tenant_id=A)
    c.send("LOGON", {"scheme": "bearer", "credentials": forged})
    m = c.recv()
    assert m.name == "FAILURE" and m.meta["code"] == "Neo.ClientError.Security.Unauthorized"
    assert c.closed()
    assert of_tenant(snapshot(st), A) == of_tenant(st.before, A)


@pytest.mark.local_backend("neo4j", "a database per tenant: Neo4j Community has only one")
def test_database_mode_isolation():
    with bolt_stack(SCHEMA, isolation="database") as s:
        seed(s)
        before_a = snapshot(s, db="tenant-acme")
        out = s.driver(B, [{"op": "run", "query": q} for q in READ_ATTACKS[:12]] +
                       [{"op": "run", "query": "MATCH (n) RETURN n", "db": db}
                        for db in ("tenant-acme", "system", "neo4j")] +
                       [{"op": "run", "query": "USE `tenant-acme` MATCH (n) RETURN n"},
                        {"op": "run", "query": "MATCH (n) DETACH DELETE n"}])
        sent = READ_ATTACKS[:12] + ["tenant-acme"] * 4 + ["x"]
        bad = [o for o, q in zip(out, sent) if leaks(o, q)]
        assert not bad, bad
        assert out[12]["error"]["code"] == FORBIDDEN and out[13]["error"]["code"] == FORBIDDEN
        assert "error" not in out[14]  # "neo4j" is the client-side name of B's own database
        assert out[15]["error"]["code"] == FORBIDDEN
        assert snapshot(s, db="tenant-acme") == before_a
        assert s.rows(A, "MATCH (p:Person) RETURN p.name ORDER BY p.name") == [["alice"], ["amy"]]
