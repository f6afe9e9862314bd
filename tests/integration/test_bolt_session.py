"""`protocol: bolt`: the session state machine on raw sockets, against the scriptable fake
Bolt server of bolt_wire.py (which records every message that reaches it).

  raw client --handshake, HELLO/LOGON with a JWT--> tenantgate --same version, basic svc--> fake

What a driver never does on purpose is done here: version ranges and refusals, messages
before authentication, pipelines mixing forwarded and refused messages, failures made by
the backend and by tenantgate in one pipeline, forged parameters, LOGOFF / LOGON tenant
switches, malformed and oversized frames, token expiry.
"""

import time

import pytest

import tghelpers as h
from bolt_env import bolt_proxy
from bolt_wire import MAGIC, FakeBackend, Struct, frame, node, proposal

USER, PASSWORD = "svc", "svc-pw-" + "x" * 8


@pytest.fixture(scope="module")
def fb():
    with FakeBackend(USER, PASSWORD) as b:
        yield b


@pytest.fixture(scope="module")
def env(fb):
    with bolt_proxy(fb.address, USER, PASSWORD, advertised_address="graph.example:7688") as e:
        yield e


def new_conns(fb, before):
    """The fake's connection numbers opened since `before`."""
    return list(range(before + 1, fb.conns + 1))


def backend_msgs(fb, conn):
    return [m for c, m in fb.messages() if c == conn]


def wait_backend(fb, conn, count, timeout=5):
    deadline = time.monotonic() + h.scaled(timeout)
    while time.monotonic() < deadline:
        msgs = backend_msgs(fb, conn)
        if len(msgs) >= count:
            return msgs
        time.sleep(0.02)
    return backend_msgs(fb, conn)


def is_failure(m, code):
    return m.name == "FAILURE" and m.meta.get("code") == code


FORBIDDEN = "Neo.ClientError.Security.Forbidden"
UNAUTHORIZED = "Neo.ClientError.Security.Unauthorized"


# ---- handshake --------------------------------------------------------------------------------


def test_handshake_versions(env, fb):
    c = env.client()
    assert c.handshake((5, 4)) == (5, 4)
    c.close()
    c = env.client()  # a range: 5.6 down to 5.0 -> the highest tenantgate speaks
    assert c.handshake((5, 6, 6)) == (5, 6)
    c.close()
    c = env.client()  # the client's order wins: 4.4 first
    assert c.handshake((4, 4), (5, 4)) == (4, 4)
    c.close()
    c = env.client()  # 5.5 exists but is not offered (Neo4j never negotiates it)
    assert c.handshake((5, 5), (5, 2)) == (5, 2)
    c.close()
    c = env.client()  # nothing in common: 00 00 00 00 and close
    assert c.handshake((4, 3), (3, 0)) == (0, 0)
    assert c.closed()
    c = env.client()  # HTTP: closed before any answer
    c.send_raw(b"GET / HTTP/1.1\r\n\r\n")
    assert c.closed() and c.buf == b""


def test_backend_opened_with_the_client_version(env, fb):
    for version in [(4, 4), (5, 0), (5, 2), (5, 4)]:
        before = fb.conns
        c = env.login("acme", version=version)
        (conn,) = new_conns(fb, before)
        with fb.lock:
            props = fb.handshakes[-1]
        assert props[0] == (version[0], version[1], 0) and props[1:] == [(0, 0, 0)] * 3
        c.send("GOODBYE")
        assert c.closed()
        logins = 1 if version <= (5, 0) else 2  # HELLO, or HELLO + LOGON
        assert [m.name for m in wait_backend(fb, conn, logins + 1)][-1] == "GOODBYE"


# ---- authentication ---------------------------------------------------------------------------


def test_bearer_logon_5x(env, fb):
    before = fb.conns
    c = env.client()
    token = env.tokens.mint("acme")
    hello, logon = c.login(token, version=(5, 4))
    assert hello.name == "SUCCESS" and hello.meta["server"].startswith("Neo4j/")
    assert hello.meta["connection_id"].startswith("bolt-")
    assert logon.name == "SUCCESS"
    (conn,) = new_conns(fb, before)
    msgs = wait_backend(fb, conn, 2)
    assert [m.name for m in msgs] == ["HELLO", "LOGON"]
    assert msgs[0].meta["user_agent"] == "tg-test/1"
    assert "credentials" not in msgs[0].meta
    assert msgs[1].meta == {"scheme": "basic", "principal": USER, "credentials": PASSWORD}
    assert token not in repr(fb.messages())
    c.close()


def test_basic_with_token_as_password_4x(env, fb):
    before = fb.conns
    c = env.client()
    (hello,) = c.login(env.tokens.mint("acme"), version=(4, 4), scheme="basic",
                       hello_extra={"routing": {"address": "x:1"}})
    assert hello.name == "SUCCESS" and hello.meta["server"] == "Neo4j/5.26.0"  # the backend's
    (conn,) = new_conns(fb, before)
    (m,) = wait_backend(fb, conn, 1)
    assert m.name == "HELLO"
    assert m.meta["scheme"] == "basic" and m.meta["principal"] == USER
    assert m.meta["credentials"] == PASSWORD and m.meta["user_agent"] == "tg-test/1"
    assert m.meta["routing"] == {"address": "x:1"}
    c.close()


@pytest.mark.parametrize("version", [(4, 4), (5, 0), (5, 4)])
def test_bad_tokens_are_unauthorized_and_close(env, fb, version):
    bad = [
        ("bearer", "not-a-jwt"),
        ("bearer", env.tokens.mint("acme", secret="another-secret-" + "y" * 20)),
        ("bearer", env.tokens.mint("acme", ttl=-120)),
        ("bearer", env.tokens.mint("bad tenant!")),
        ("basic", "not-a-jwt"),
        ("none", None),
        ("kerberos", "abc"),
    ]
    for scheme, token in bad:
        before = fb.conns
        c = env.client()
        assert c.handshake(version) == version
        auth = {"scheme": scheme}
        if token is not None:
            auth["credentials"] = token
            auth["principal"] = "app"
        if version <= (5, 0):
            c.send("HELLO", dict(user_agent="t", **auth))
        else:
            c.send("HELLO", {"user_agent": "t"})
            assert c.recv().name == "SUCCESS"
            c.send("LOGON", auth)
        m = c.recv()
        assert is_failure(m, UNAUTHORIZED), m
        assert m.meta["message"].startswith("tenantgate: ")
        assert c.closed()
        assert fb.conns == before  # the backend is never contacted before authentication


def test_only_login_messages_before_authentication(env, fb):
    before = fb.conns
    for version, msg in [((5, 4), ("RUN", "RETURN 1", {}, {})), ((5, 4), ("ROUTE", {}, [], {})),
                         ((4, 4), ("BEGIN", {})), ((5, 4), ("LOGOFF",)), ((5, 4), ("RESET",))]:
        c = env.client()
        c.handshake(version)
        c.send(*msg)
        m = c.recv()
        assert is_failure(m, "Neo.ClientError.Request.Invalid"), m
        assert c.closed()
    # 5.1+: RUN after HELLO but before LOGON
    c = env.client()
    c.handshake((5, 4))
    c.send("HELLO", {"user_agent": "t"})
    assert c.recv().name == "SUCCESS"
    c.send("RUN", "RETURN 1", {}, {})
    assert is_failure(c.recv(), "Neo.ClientError.Request.Invalid")
    assert c.closed()
    assert fb.conns == before


def test_preauth_size_limit(env, fb):
    c = env.client()
    c.handshake((5, 4))
    # one chunk header announcing 40 KiB: refused at once, without waiting for the bytes
    c.send_raw(b"\xa0\x00" + b"\x00" * 100)
    m = c.recv()
    assert is_failure(m, "Neo.ClientError.Request.Invalid")
    assert c.closed()


def test_goodbye_before_and_after_login(env, fb):
    c = env.client()
    c.handshake((5, 4))
    c.send("GOODBYE")
    assert c.closed() and c.buf == b""
    c = env.login("acme")
    c.send("GOODBYE")
    assert c.closed() and c.buf == b""


def test_noop_chunks_are_dropped(env, fb):
    c = env.client()
    c.handshake((5, 4))
    c.send_raw(b"\x00\x00\x00\x00")
    c.send("HELLO", {"user_agent": "t"})
    assert c.recv().name == "SUCCESS"


# ---- ROUTE ------------------------------------------------------------------------------------


def test_route_is_answered_by_tenantgate(env, fb):
    before = fb.conns
    c = env.login("acme")
    (conn,) = new_conns(fb, before)
    m = c.request("ROUTE", {"address": f"127.0.0.1:{env.port}"}, [], {"db": None})
    assert m.name == "SUCCESS"
    rt = m.meta["rt"]
    assert rt["db"] == "neo4j" and rt["ttl"] > 0
    assert sorted(s["role"] for s in rt["servers"]) == ["READ", "ROUTE", "WRITE"]
    assert all(s["addresses"] == ["graph.example:7688"] for s in rt["servers"])
    m = c.request("ROUTE", {}, ["bm:1"], {"db": "neo4j"})
    assert m.name == "SUCCESS" and m.meta["rt"]["db"] == "neo4j"
    assert "ROUTE" not in [x.name for x in backend_msgs(fb, conn)]
    assert "core1" not in repr(m.fields)


def test_route_refuses_impersonation_and_other_databases(env, fb):
    c = env.login("acme")
    m = c.request("ROUTE", {}, [], {"db": None, "imp_user": "admin"})
    assert is_failure(m, FORBIDDEN) and "imp_user" in m.meta["message"]
    assert c.request("ROUTE", {}, [], {}).name == "IGNORED"  # failed until RESET
    assert c.request("RESET").name == "SUCCESS"
    m = c.request("ROUTE", {}, [], {"db": "system"})
    assert is_failure(m, FORBIDDEN) and "database not allowed" in m.meta["message"]
    assert c.request("RESET").name == "SUCCESS"
    assert c.request("ROUTE", {}, [], {"db": None, "imp_user": None}).name == "SUCCESS"


# ---- BEGIN, db and imp_user -------------------------------------------------------------------


def test_begin_db_is_pinned_and_checked(env, fb):
    before = fb.conns
    c = env.login("acme")
    (conn,) = new_conns(fb, before)
    assert c.request("BEGIN", {}).name == "SUCCESS"
    assert c.request("ROLLBACK").name == "SUCCESS"
    assert c.request("BEGIN", {"db": "neo4j", "mode": "r", "bookmarks": ["b1"],
                               "tx_metadata": {"app": "x"}}).name == "SUCCESS"
    assert c.request("COMMIT").name == "SUCCESS"
    begins = [m for m in backend_msgs(fb, conn) if m.name == "BEGIN"]
    assert begins[0].meta == {"db": "neo4j"}
    assert begins[1].meta == {"db": "neo4j", "mode": "r", "bookmarks": ["b1"],
                              "tx_metadata": {"app": "x"}}
    for extra, why in [({"db": "system"}, "database not allowed"),
                       ({"db": "other"}, "database not allowed"),
                       ({"imp_user": "neo4j"}, "imp_user"),
                       ({"tx_metadata": {"k": "v" * 20000}}, "tx_metadata")]:
        n = len(backend_msgs(fb, conn))
        m = c.request("BEGIN", extra)
        assert is_failure(m, FORBIDDEN) and why in m.meta["message"], m
        assert c.request("RUN", "RETURN 1", {}, {}).name == "IGNORED"
        assert c.request("PULL", {"n": -1}).name == "IGNORED"
        assert c.request("RESET").name == "SUCCESS"
        assert [m.name for m in wait_backend(fb, conn, n + 1)[n:]] == ["RESET"]


def test_run_refuses_reserved_parameters_and_impersonation(env, fb):
    before = fb.conns
    c = env.login("acme")
    (conn,) = new_conns(fb, before)
    for params, extra, why in [({"__tenantgate_tenant": "other"}, {}, "reserved"),
                               ({"__tenantgate_x": 1}, {}, "reserved"),
                               ({}, {"imp_user": "root"}, "imp_user"),
                               ({}, {"db": "system"}, "database not allowed")]:
        run, _, pull = c.run("MATCH (n) RETURN n", params, extra)
        assert is_failure(run, FORBIDDEN) and why in run.meta["message"], run
        assert pull.name == "IGNORED"
        assert c.request("RESET").name == "SUCCESS"
    assert "RUN" not in [m.name for m in backend_msgs(fb, conn)]


def test_tx_metadata_bound(env, fb):
    c = env.login("acme")
    assert c.request("BEGIN", {"tx_metadata": {"k": "v" * 16000}}).name == "SUCCESS"
    assert c.request("ROLLBACK").name == "SUCCESS"


# ---- failure semantics and ordering -----------------------------------------------------------


def test_pipeline_mixes_forwarded_and_local_replies_in_order(env, fb):
    before = fb.conns
    c = env.login("acme")
    (conn,) = new_conns(fb, before)
    n0 = len(backend_msgs(fb, conn))
    c.send_raw(b"".join([
        frame("BEGIN", {}),                                   # forwarded
        frame("ROUTE", {}, [], {}),                           # local SUCCESS
        frame("TELEMETRY", 1),                                # forwarded
        frame("RUN", "RETURN 1", {"__tenantgate_tenant": "x"}, {}),  # local FAILURE
        frame("PULL", {"n": 10}),                             # local IGNORED
        frame("COMMIT"),                                      # local IGNORED (not sent)
        frame("ROUTE", {}, [], {}),                           # local IGNORED
        frame("RESET"),                                       # forwarded
        frame("ROUTE", {}, [], {}),                           # local SUCCESS
        frame("BEGIN", {}),                                   # forwarded
        frame("ROLLBACK"),                                    # forwarded
    ]))
    got = [c.recv() for _ in range(11)]
    assert [m.name for m in got] == ["SUCCESS", "SUCCESS", "SUCCESS", "FAILURE", "IGNORED",
                                     "IGNORED", "IGNORED", "SUCCESS", "SUCCESS", "SUCCESS",
                                     "SUCCESS"]
    assert "rt" in got[1].meta and "rt" in got[8].meta
    assert [m.name for m in wait_backend(fb, conn, n0 + 5)[n0:]] == [
        "BEGIN", "TELEMETRY", "RESET", "BEGIN", "ROLLBACK"]


def test_local_reply_after_a_backend_failure_is_ignored(env, fb):
    """The backend fails BEGIN; a ROUTE pipelined behind it must be IGNORED, as Neo4j would."""
    c = env.login("acme")
    c.send_raw(b"".join([
        frame("BEGIN", {"tx_metadata": {"FAIL": True}}),
        frame("ROUTE", {}, [], {}),
        frame("RUN", "RETURN 1", {"__tenantgate_tenant": "x"}, {}),  # would be a FAILURE
        frame("RESET"),
        frame("ROUTE", {}, [], {}),
    ]))
    got = [c.recv() for _ in range(5)]
    assert [m.name for m in got] == ["FAILURE", "IGNORED", "IGNORED", "SUCCESS", "SUCCESS"]
    assert got[0].meta["code"] == "Neo.ClientError.Transaction.Invalid"


def test_denials_are_counted_and_audited(env, fb):
    before = env.metric("tenantgate_messages_rejected_total", reason="policy")
    c = env.login("acme")
    m = c.request("BEGIN", {"imp_user": "x"})
    assert is_failure(m, FORBIDDEN)
    h.wait_metric(env.admin_port, "tenantgate_messages_rejected_total",
                  lambda v: v >= before + 1, reason="policy")
    env.proxy.wait_log('"reason":"impersonation (imp_user) is not allowed"')
    assert '"message":"BEGIN"' in env.log()


# ---- LOGOFF / LOGON ---------------------------------------------------------------------------


def test_logoff_logon_switches_only_after_verification(fb):
    with bolt_proxy(fb.address, USER, PASSWORD, isolation="database") as e:
        before = fb.conns
        c = e.login("acme")
        (conn,) = new_conns(fb, before)
        assert c.request("BEGIN", {}).name == "SUCCESS"
        assert c.request("COMMIT").name == "SUCCESS"
        # LOGOFF + LOGON pipelined, as drivers do for session auth
        c.send("LOGOFF")
        c.send("LOGON", {"scheme": "bearer", "credentials": e.tokens.mint("globex")})
        assert [c.recv().name, c.recv().name] == ["SUCCESS", "SUCCESS"]
        assert c.request("BEGIN", {"db": "neo4j"}).name == "SUCCESS"
        assert c.request("ROLLBACK").name == "SUCCESS"
        msgs = [m for m in backend_msgs(fb, conn)]
        names = [m.name for m in msgs]
        assert names[2:] == ["BEGIN", "COMMIT", "LOGOFF", "LOGON", "BEGIN", "ROLLBACK"]
        assert msgs[2].meta["db"] == "tenant-acme"
        assert msgs[5].meta == {"scheme": "basic", "principal": USER, "credentials": PASSWORD}
        assert msgs[6].meta["db"] == "tenant-globex"
        # the new tenant cannot name the old tenant's database
        m = c.request("BEGIN", {"db": "tenant-acme"})
        assert is_failure(m, FORBIDDEN)
        assert c.request("RESET").name == "SUCCESS"
        e.proxy.wait_log('"previous_tenant":"acme"')

        # a failed re-LOGON: Unauthorized, closed; nothing switched before
        c.send("LOGOFF")
        assert c.recv().name == "SUCCESS"
        n = len(backend_msgs(fb, conn))
        c.send("LOGON", {"scheme": "bearer", "credentials": "forged"})
        assert is_failure(c.recv(), UNAUTHORIZED)
        assert c.closed()
        assert [m.name for m in backend_msgs(fb, conn)[n:]] == []

        # after LOGOFF only LOGON (and GOODBYE)
        c = e.login("acme")
        c.send("LOGOFF")
        assert c.recv().name == "SUCCESS"
        c.send("BEGIN", {})
        assert c.recv().name == "FAILURE"
        assert c.closed()


def test_database_mode_needs_tenants_that_name_a_database(fb):
    """Neo4j folds database names to lower case: "Acme" and "acme" would share one."""
    with bolt_proxy(fb.address, USER, PASSWORD, isolation="database") as e:
        for tenant in ["Acme", "t_1"]:
            before = fb.conns
            c = e.client()
            replies = c.login(e.tokens.mint(tenant))
            assert is_failure(replies[-1], UNAUTHORIZED), replies
            assert "cannot name a database" in replies[-1].meta["message"]
            assert c.closed() and fb.conns == before
        c = e.login("acme-2")
        c.send("LOGOFF")
        assert c.recv().name == "SUCCESS"
        c.send("LOGON", {"scheme": "bearer", "credentials": e.tokens.mint("ACME-2")})
        assert is_failure(c.recv(), UNAUTHORIZED)
        assert c.closed()


def test_logoff_waits_for_earlier_replies_and_respects_failure(env, fb):
    c = env.login("acme")
    # a failure first: LOGOFF is IGNORED like anything else, and the tenant stays
    c.send_raw(b"".join([frame("BEGIN", {"imp_user": "x"}), frame("LOGOFF"),
                         frame("RESET"), frame("BEGIN", {}), frame("LOGOFF")]))
    got = [c.recv() for _ in range(5)]
    assert [m.name for m in got] == ["FAILURE", "IGNORED", "SUCCESS", "SUCCESS", "FAILURE"]
    # the second LOGOFF waited for BEGIN's reply, then went to the backend, which refused it
    # inside the transaction: the client is told in order, still logged on; RESET recovers
    assert got[4].meta["code"] == "Neo.ClientError.Request.Invalid"
    assert c.request("RESET").name == "SUCCESS"
    assert c.request("ROUTE", {}, [], {}).name == "SUCCESS"


# ---- Bolt 4.4 patches --------------------------------------------------------------------------


def test_utc_patch_follows_the_backend(env, fb):
    dt = Struct(ord("I"), 1700000000, 0, 3600)  # DateTime (utc form)
    c = env.client()
    c.handshake((4, 4))
    c.send("HELLO", {"user_agent": "t", "scheme": "bearer",
                     "credentials": env.tokens.mint("acme"), "patch_bolt": ["utc"]})
    m = c.recv()
    assert m.name == "SUCCESS" and m.meta["patch_bolt"] == ["utc"]
    assert c.request("BEGIN", {"tx_metadata": {"at": dt}}).name == "SUCCESS"
    assert c.request("ROLLBACK").name == "SUCCESS"
    # without the patch, 4.4 has only the legacy form: the utc form is malformed
    c = env.login("acme", version=(4, 4))
    c.send("BEGIN", {"tx_metadata": {"at": dt}})
    assert is_failure(c.recv(), "Neo.ClientError.Request.Invalid")
    assert c.closed()


# ---- malformed input, expiry, backend trouble --------------------------------------------------


def test_malformed_messages_close(env, fb):
    for raw in [b"\x00\x03\xb1\x10\xc4\x00\x00",                # reserved marker
                b"\x00\x02\xb0\x70\x00\x00",                    # SUCCESS from a client
                b"\x00\x02\xb0\x55\x00\x00",                    # unknown message
                frame("RUN", "RETURN 1", {}, {"unknown_key": 1}),
                frame("PULL", {}),                              # n missing
                frame("RUN", "RETURN 1", {"n": Struct(ord("N"), 1, [], {}, "1")}, {})]:
        c = env.login("acme")
        c.send_raw(raw)
        m = c.recv()
        assert is_failure(m, "Neo.ClientError.Request.Invalid"), (raw, m)
        assert c.closed()


def test_oversized_message_closes_at_once(env, fb):
    c = env.login("acme")
    # 1100 chunk headers of 65535 bytes announce more than 64 MiB; only headers are sent
    c.send_raw(b"\xff\xff" + b"\x00" * 65535)
    hdr = b"\xff\xff" + b"\x00" * 65535
    sent = 1
    closed = False
    try:
        while sent < 1100:
            c.s.sendall(hdr)
            sent += 1
    except (BrokenPipeError, ConnectionResetError):
        closed = True
    assert closed or c.closed()


def test_token_expiry_ends_the_session(env, fb):
    c = env.client()
    hello, logon = c.login(env.tokens.mint("acme", ttl=2))
    assert logon.name == "SUCCESS"
    c.s.settimeout(h.scaled(10))
    m = c.recv()
    assert is_failure(m, "Neo.ClientError.Security.TokenExpired")
    assert c.closed()


def test_backend_refusing_service_credentials(fb):
    with bolt_proxy(fb.address, USER, "wrong-password") as e:
        c = e.client()
        hello, logon = c.login(e.tokens.mint("acme"))
        assert hello.name == "SUCCESS"
        assert is_failure(logon, "Neo.TransientError.General.DatabaseUnavailable")
        assert "service credentials" in logon.meta["message"]
        assert c.closed()


def test_backend_without_the_client_version():
    with FakeBackend(USER, PASSWORD, versions=((4, 4),)) as only44:
        with bolt_proxy(only44.address, USER, PASSWORD) as e:
            c = e.client()
            c.handshake((5, 4))
            c.send("HELLO", {"user_agent": "t"})
            assert c.recv().name == "SUCCESS"
            c.send("LOGON", {"scheme": "bearer", "credentials": e.tokens.mint("acme")})
            m = c.recv()
            assert is_failure(m, "Neo.TransientError.General.DatabaseUnavailable")
            assert "version" in m.meta["message"]
            assert c.closed()
            c = e.login("acme", version=(4, 4))
            assert c.request("BEGIN", {}).name == "SUCCESS"


def test_config_needs_service_credentials(tmp_path, fb):
    cfg = h.base_config([{"name": "graph", "protocol": "bolt", "listen": "127.0.0.1:1",
                          "backend": {"address": fb.address}}],
                        auth={"jwt": {"algorithms": ["HS256"], "hs256_secret_file": "s"}})
    (tmp_path / "s").write_text("k" * 40)
    (tmp_path / "c.yaml").write_text(h.to_yaml(cfg))
    p = h.run_tg(["check", "--offline", "-c", str(tmp_path / "c.yaml")])
    assert p.returncode != 0
    assert "needs backend.user and backend.password_file" in p.stdout + p.stderr


def test_magic_only_then_close(env):
    c = env.client()
    c.send_raw(MAGIC + proposal(5, 4))
    c.close()


# ---- hide_tenant_property ---------------------------------------------------------------------

def _graph_row(tenant):
    a = node(1, ["Person"], {"name": "a", "tenant_id": tenant}, "4:x:1")
    b = node(2, ["Person"], {"tenant_id": tenant, "name": "b", "age": 3}, "4:x:2")
    plain = node(3, ["City"], {"name": "c"}, "4:x:3")
    rel = Struct(ord("r"), 10, "KNOWS", {"tenant_id": "kept-on-relationships"}, "5:x:10")
    path = Struct(ord("P"), [a, b], [rel], [1, 1])
    return [a, [b, plain, 7], {"k": b, "s": "tenant_id"}, path, "tenant_id", {"tenant_id": 1}]


def test_hide_tenant_property_in_records():
    row = _graph_row("acme")
    with FakeBackend(USER, PASSWORD, results={"": [row, [1, "x"]]}) as fake:
        with bolt_proxy(fake.address, USER, PASSWORD, hide_tenant_property=True) as e:
            c = e.login("acme")
            c.send("PULL", {"n": -1})
            got = [c.recv(), c.recv(), c.recv()]
            assert [m.name for m in got] == ["RECORD", "RECORD", "SUCCESS"]
            a, lst, mp, path, s, m = got[0].fields[0]
            assert a == node(1, ["Person"], {"name": "a"}, "4:x:1")
            assert lst[0] == node(2, ["Person"], {"name": "b", "age": 3}, "4:x:2")
            assert lst[1:] == [node(3, ["City"], {"name": "c"}, "4:x:3"), 7]
            assert mp == {"k": lst[0], "s": "tenant_id"}
            assert path.fields[0] == [a, lst[0]]
            assert path.fields[1][0].fields[2] == {"tenant_id": "kept-on-relationships"}
            assert path.fields[2] == [1, 1]
            # not nodes: a string and a map (e.g. properties(n)) pass as they are
            assert (s, m) == ("tenant_id", {"tenant_id": 1})
            assert got[1].fields[0] == [1, "x"]
        # without the setting, records pass byte for byte
        with bolt_proxy(fake.address, USER, PASSWORD) as e:
            c = e.login("acme")
            c.send("PULL", {"n": -1})
            got = c.recv()
            assert got.fields[0] == row
