"""Redis scripts with `allow_scripts: true`: per-tenant ACL users (issue 4, "Scripts").

  client --AUTH <jwt>--> tenantgate --control connection (service user "tenantgate",
                                      only +acl|setuser): ACL SETUSER tenantgate:<t> ...
                                   --session connection: AUTH tenantgate:<t> <secret>--> redis-server

A script runs as the connection's ACL user, so redis-server itself keeps it inside
~t:<tenant>:* and &t:<tenant>:*. Tenant A (alice) writes; tenant B (bob) runs scripts
that name A's keys literally, call server-wide commands, or use the command-shape tricks
where Redis 7.0's own key extraction is weaker than the proxy's; A's data is checked
unchanged straight on redis-server. Also: SCRIPT LOAD / EVALSHA, FCALL of an operator's
library, what stays refused (SCRIPT FLUSH, FUNCTION FLUSH...), re-AUTH switching the ACL
user (RESP2 and RESP3, pipelined), a failed switch leaving the session as it was, a lost
ACL user provisioned again, the secrets never logged, and with allow_scripts off
everything script-related still refused.
"""

import re
import threading

import pytest
import redis

import tghelpers as h
from redis_fixture import Raw, is_err, redis_env

A, B = "alice", "bob"
NOPERM = b"NOPERM tenantgate:"
ACL_KEYS = "can't access at least one of the keys"  # redis 7.0's text inside a script
ACL_CMD = "can't run this command"
ACL_CHAN = "can't publish to the channel"


@pytest.fixture(scope="module")
def env():
    with redis_env(scripts=True) as e:
        yield e


@pytest.fixture
def seeded(env):
    a = env.client(A)
    a.set("k", "A-DATA")
    a.hset("h", mapping={"f": "A"})
    yield a
    a.close()


def assert_a_intact(env):
    assert env.direct.get("t:alice:k") == b"A-DATA"
    assert env.direct.hget("t:alice:h", "f") == b"A"


def acl_users(env):
    return [u.decode() if isinstance(u, bytes) else u for u in env.direct.acl_users()]


def script_error(client, *args):
    with pytest.raises(redis.ResponseError) as e:
        client.execute_command(*args)
    return str(e.value)


# ---- the ACL user itself ---------------------------------------------------------------------


def test_eval_lands_under_the_tenant(env):
    a = env.client(A)
    got = a.eval("redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])",
                 1, "sk", "A-script")
    assert got == b"A-script"
    assert env.direct.get("t:alice:sk") == b"A-script"
    assert env.direct.get("sk") is None
    # the session's backend connection is alice's ACL user, never the service user
    users = env.backend_users()
    assert "tenantgate:alice" in users
    assert env.svc_user not in users
    a.close()


def test_acl_user_rules(env):
    env.client(A).ping()
    raw = env.direct.execute_command("ACL", "GETUSER", "tenantgate:alice")
    u = dict(zip(raw[0::2], raw[1::2]))
    assert b"on" in u[b"flags"]
    assert len(u[b"passwords"]) == 1
    assert u[b"keys"] == b"~t:alice:*"
    assert u[b"channels"] == b"&t:alice:*"
    assert u[b"selectors"] == []
    assert u[b"commands"].startswith(b"-@all ")  # never +@all
    # what the user may run (ACL DRYRUN: redis-server's own verdict)
    def dryrun(*args):
        try:
            return env.direct.execute_command("ACL", "DRYRUN", "tenantgate:alice", *args)
        except redis.ResponseError as e:
            return str(e)
    for cmd in (["GET", "t:alice:k"], ["SET", "t:alice:k", "v"], ["EVAL", "return 1", "0"],
                ["EVALSHA", "a" * 40, "0"], ["FCALL", "f", "0"], ["SCRIPT", "LOAD", "x"],
                ["PUBLISH", "t:alice:c", "m"], ["SUBSCRIBE", "t:alice:c"],
                ["XREAD", "STREAMS", "t:alice:s", "0"], ["OBJECT", "ENCODING", "t:alice:k"],
                ["MULTI"], ["EXEC"], ["PING"]):
        assert dryrun(*cmd) == b"OK", (cmd, dryrun(*cmd))
    for cmd in (["GET", "t:bob:k"], ["SET", "t:alicex", "v"], ["PUBLISH", "t:bob:c", "m"],
                ["KEYS", "*"], ["SCAN", "0"], ["RANDOMKEY"], ["DBSIZE"], ["INFO"],
                ["CONFIG", "GET", "x"], ["FLUSHALL"], ["PSUBSCRIBE", "t:alice:*"],
                ["PUBSUB", "CHANNELS"], ["SORT", "t:alice:l"], ["COPY", "t:alice:a", "t:alice:b"],
                ["GEORADIUS", "t:alice:g", "0", "0", "1", "km"], ["ACL", "WHOAMI"],
                ["SCRIPT", "FLUSH"], ["FUNCTION", "LOAD", "x"], ["FUNCTION", "STATS"],
                ["SELECT", "1"], ["CLIENT", "LIST"], ["DEBUG", "SLEEP", "0"], ["COMMAND"],
                ["MOVE", "t:alice:k", "1"], ["SWAPDB", "0", "1"]):
        assert dryrun(*cmd) != b"OK", cmd
    # the password is HMAC-SHA256 of the key file's bytes, labelled (acl.h): log in directly
    d = redis.Redis(host="127.0.0.1", port=env.rport, username="tenantgate:alice",
                    password=env.acl_secret(A))
    assert d.ping()
    with pytest.raises(redis.ResponseError):
        d.get("t:bob:x")
    d.close()
    # no secret in tenantgate's log: not the derived one, not the service password
    log = env.proxy.log()
    assert env.acl_secret(A) not in log
    assert env.svc_password not in log
    assert "redis ACL user provisioned" in log


# ---- B's scripts against A's data ------------------------------------------------------------


def test_other_tenants_keys_refused_inside_scripts(env, seeded):
    b = env.client(B)
    err = script_error(b, "EVAL", "return redis.call('GET', 't:alice:k')", 0)
    assert ACL_KEYS in err
    for script in ("return redis.call('SET', 't:alice:k', 'B')",
                   "return redis.call('DEL', 't:alice:k')",
                   "return redis.call('HSET', 't:alice:h', 'f', 'B')",
                   "return redis.call('RENAME', 't:alice:k', 't:bob:k')",
                   "return redis.call('RENAME', 't:bob:own', 't:alice:k')",
                   "return redis.call('EXPIRE', 't:alice:k', 1)",
                   "return redis.call('COPY', 't:alice:k', 't:bob:copy')",
                   "return redis.call('OBJECT', 'ENCODING', 't:alice:k')",
                   "return redis.call('DUMP', 't:alice:k')",
                   "return redis.call('EXISTS', 't:alice:k')"):
        b.set("own", "x")
        err = script_error(b, "EVAL", script, 0)
        assert ACL_KEYS in err or ACL_CMD in err, (script, err)
    # pcall hands the error back to the script: still no data
    got = b.eval("local r = redis.pcall('GET', 't:alice:k') "
                 "if type(r) == 'table' and r.err then return 'error: ' .. r.err end "
                 "return r", 0)
    assert got.startswith(b"error: ") and ACL_KEYS.encode() in got, got
    # A's name passed as a key: the proxy prefixes it, the script sees B's own key
    assert b.eval("return redis.call('GET', KEYS[1])", 1, "t:alice:k") is None
    assert b.eval("return KEYS[1]", 1, "k") == b"t:bob:k"
    assert_a_intact(env)
    b.close()


def test_acl_weaker_shapes_are_not_granted(env, seeded):
    """Commands whose key specs do not say everything they touch stay out of the ACL."""
    a = env.client(A)
    a.xadd("s", {"f": "A-entry"}, id="1-1")
    a.execute_command("XGROUP", "CREATE", "s", "STREAMS", "0")
    a.geoadd("g", (0, 0, "m"))
    b = env.client(B)
    b.geoadd("g", (0, 0, "m"))
    # GEORADIUS keeps the last STORE; redis 7.0 checks only the first: not granted
    err = script_error(b, "EVAL", "return redis.call('GEORADIUS', KEYS[1], 0, 0, 10, 'km', "
                                  "'STORE', KEYS[2], 'STORE', 't:alice:victim')", 2, "g", "d")
    assert ACL_CMD in err
    assert env.direct.exists("t:alice:victim") == 0
    # XREADGROUP with a group named STREAMS: redis's ACL check always includes a keyword
    err = script_error(b, "EVAL", "return redis.call('XREADGROUP', 'COUNT', '1', 'GROUP', "
                                  "'STREAMS', KEYS[1], 'STREAMS', 't:alice:s', '>')", 1, "c")
    assert ACL_KEYS in err
    assert env.direct.xpending("t:alice:s", "STREAMS")["pending"] == 0
    # SORT BY/GET reach other keys: not granted (and refused at the proxy)
    b.rpush("l", "1")
    err = script_error(b, "EVAL", "return redis.call('SORT', KEYS[1], 'GET', 't:alice:*')",
                       1, "l")
    assert ACL_CMD in err
    with pytest.raises(redis.ResponseError, match="not granted to the tenant's ACL user"):
        b.sort("l")
    # channels: only the tenant's own
    err = script_error(b, "EVAL", "return redis.call('PUBLISH', 't:alice:news', 'x')", 0)
    assert ACL_CHAN in err or "channel" in err
    assert b.eval("return redis.call('PUBLISH', KEYS[1], 'x')", 1, "news") == 0
    assert_a_intact(env)
    a.close()
    b.close()


SERVER_WIDE = [
    "return redis.call('SCAN', '0')",
    "return redis.call('SCAN', '0', 'MATCH', 't:alice:*')",
    "return redis.call('KEYS', '*')",
    "return redis.call('RANDOMKEY')",
    "return redis.call('DBSIZE')",
    "return redis.call('INFO')",
    "return redis.call('FLUSHALL')",
    "return redis.call('FLUSHDB')",
    "return redis.call('CONFIG', 'GET', 'requirepass')",
    "return redis.call('CONFIG', 'SET', 'maxmemory', '1')",
    "return redis.call('SELECT', 1)",
    "return redis.call('SWAPDB', 0, 1)",
    "return redis.call('MOVE', KEYS[1], 1)",
    "return redis.call('ACL', 'WHOAMI')",
    "return redis.call('ACL', 'SETUSER', 'x', 'on', '+@all', '~*')",
    "return redis.call('CLIENT', 'LIST')",
    "return redis.call('DEBUG', 'SLEEP', 0)",
    "return redis.call('SHUTDOWN', 'NOSAVE')",
    "return redis.call('PUBSUB', 'CHANNELS')",
    "return redis.call('PUBSUB', 'NUMSUB', 't:alice:news')",
    "return redis.call('MEMORY', 'STATS')",
    "return redis.call('SLOWLOG', 'GET')",
    "return redis.call('OBJECT', 'HELP')",  # granted: harmless (control)
]


def test_server_wide_commands_refused_inside_scripts(env, seeded):
    b = env.client(B)
    before = env.direct.dbsize()
    for script in SERVER_WIDE:
        if "OBJECT" in script:
            assert b.eval(script, 0)
            continue
        err = script_error(b, "EVAL", script, 1, "k")
        assert ACL_CMD in err or "not allowed from script" in err or \
            "not allowed from scripts" in err, (script, err)
    assert env.direct.dbsize() == before
    assert_a_intact(env)
    assert env.direct.config_get("maxmemory")["maxmemory"] == "0"
    b.close()


# ---- what the proxy forwards and refuses with allow_scripts -----------------------------------


def test_script_cache_and_functions(env, seeded):
    a = env.client(A)
    sha = a.script_load("return redis.call('GET', KEYS[1])")
    assert a.evalsha(sha, 1, "k") == b"A-DATA"
    assert a.script_exists(sha) == [True]
    assert a.execute_command("EVAL_RO", "return redis.call('GET', KEYS[1])", 1, "k") == b"A-DATA"
    assert a.execute_command("EVALSHA_RO", sha, 1, "k") == b"A-DATA"
    err = script_error(a, "EVAL_RO", "return redis.call('SET', KEYS[1], 'x')", 1, "k")
    assert "Write commands are not allowed from read-only scripts" in err
    # B runs the same cached script: it reads B's key, not A's
    b = env.client(B)
    assert b.evalsha(sha, 1, "k") is None
    # server-wide script and function management stays refused
    for cmd in (["SCRIPT", "FLUSH"], ["SCRIPT", "KILL"], ["SCRIPT", "DEBUG", "YES"],
                ["FUNCTION", "FLUSH"], ["FUNCTION", "DELETE", "tglib"], ["FUNCTION", "KILL"],
                ["FUNCTION", "STATS"], ["FUNCTION", "DUMP"], ["FUNCTION", "RESTORE", "x"],
                ["FUNCTION", "LOAD", "#!lua name=evil\nredis.register_function('f', "
                                     "function() return 1 end)"]):
        with pytest.raises(redis.ResponseError, match="^tenantgate: "):
            b.execute_command(*cmd)
    assert env.direct.script_exists(sha) == [True]
    # the operator's library (loaded as an admin): tenants FCALL it under their own ACL user
    env.direct.execute_command(
        "FUNCTION", "LOAD", "REPLACE",
        "#!lua name=tglib\n"
        "redis.register_function('kget', function(keys, args) "
        "return redis.call('GET', keys[1]) end)\n"
        "redis.register_function{function_name='peek', callback=function(keys, args) "
        "return redis.call('GET', args[1]) end, flags={'no-writes'}}\n")
    assert a.fcall("kget", 1, "k") == b"A-DATA"
    assert b.fcall("kget", 1, "k") is None
    assert a.execute_command("FCALL_RO", "peek", 0, "t:alice:k") == b"A-DATA"
    err = script_error(b, "FCALL_RO", "peek", 0, "t:alice:k")
    assert ACL_KEYS in err
    libs = b.execute_command("FUNCTION", "LIST")
    assert libs and b"tglib" in repr(libs).encode()
    assert_a_intact(env)
    a.close()
    b.close()


def test_commands_the_acl_user_lacks_are_refused(env, seeded):
    b = env.client(B)
    for cmd in (["SCAN", "0"], ["KEYS", "*"], ["PSUBSCRIBE", "x*"], ["PUBSUB", "CHANNELS"],
                ["SORT", "l"], ["COPY", "a", "b"], ["GEORADIUS", "g", "0", "0", "1", "km"]):
        with pytest.raises(redis.ResponseError, match="not granted to the tenant's ACL user"):
            b.execute_command(*cmd)
    # what it has works as usual, pub/sub included
    b.set("x", "1")
    assert b.get("x") == b"1"
    p = b.pubsub()
    p.subscribe("news")
    assert p.get_message(timeout=h.scaled(5))["type"] == "subscribe"
    assert env.client(B).publish("news", "hi") == 1
    msg = p.get_message(timeout=h.scaled(5))
    assert msg["channel"] == b"news" and msg["data"] == b"hi"
    p.close()
    b.close()


# ---- re-authentication ------------------------------------------------------------------------


def whose(r):
    """Which tenant's keyspace a raw connection's scripts see (GET of each tenant's marker)."""
    return r.cmd("EVAL", "return redis.call('GET', KEYS[1])", "1", "who")


def test_reauth_switches_acl_user(env):
    for t in ("alice", "bob", "carol"):
        env.direct.set(f"t:{t}:who", t)
    r = Raw(env.port)
    assert r.cmd("AUTH", env.tokens.mint("alice")) == b"OK"
    assert whose(r) == b"alice"
    assert r.cmd("AUTH", env.tokens.mint("bob")) == b"OK"
    assert whose(r) == b"bob"
    err = r.cmd("EVAL", "return redis.call('GET', 't:alice:who')", "0")
    assert is_err(err) and ACL_KEYS.encode() in err[1]
    users = env.backend_users()
    assert "tenantgate:bob" in users
    # a tenant never seen before, pipelined behind its AUTH: provisioned, then the EVAL runs
    fresh = "dora"
    env.direct.set(f"t:{fresh}:who", fresh)
    r.send_raw(Raw.encode("AUTH", env.tokens.mint(fresh)) +
               Raw.encode("EVAL", "return redis.call('GET', KEYS[1])", "1", "who") +
               Raw.encode("GET", "who") + Raw.encode("PING"))
    assert r.read() == b"OK"
    assert r.read() == fresh.encode()
    assert r.read() == fresh.encode()
    assert r.read() == b"PONG"
    # HELLO 3 AUTH as another tenant: the backend's HELLO map, RESP3 afterwards
    hello = r.cmd("HELLO", "3", "AUTH", "x", env.tokens.mint("carol"))
    assert isinstance(hello, dict) and hello[b"proto"] == 3
    assert whose(r) == b"carol"
    assert r.cmd("HGETALL", "nohash") == {}
    # AUTH (not HELLO) from RESP3: stays RESP3 under the new user
    assert r.cmd("AUTH", env.tokens.mint("alice")) == b"OK"
    assert r.cmd("HGETALL", "nohash") == {}
    assert whose(r) == b"alice"
    # the same tenant again: nothing to switch
    assert r.cmd("AUTH", env.tokens.mint("alice")) == b"OK"
    assert whose(r) == b"alice"
    r.close()


def test_failed_reauth_leaves_session(env):
    env.direct.set("t:alice:who", "alice")
    r = Raw(env.port)
    assert r.cmd("AUTH", env.tokens.mint("alice")) == b"OK"
    bad = env.tokens.mint("bob", secret="x" * 64)
    assert is_err(r.cmd("AUTH", bad), b"WRONGPASS tenantgate:")
    assert whose(r) == b"alice"
    # the provisioning of a new tenant fails (the service user may not run ACL SETUSER now)
    env.direct.execute_command("ACL", "SETUSER", env.svc_user, "-acl|setuser")
    try:
        err = r.cmd("AUTH", env.tokens.mint("erin"))
        assert is_err(err, b"ERR tenantgate: the tenant's backend ACL user could not be set up")
        assert whose(r) == b"alice"
        assert r.cmd("SET", "after", "1") == b"OK"
        assert env.direct.get("t:alice:after") == b"1"
        assert "tenantgate:erin" not in acl_users(env)
        # a first authentication fails the same way and stays unauthenticated
        r2 = Raw(env.port)
        assert is_err(r2.cmd("AUTH", env.tokens.mint("erin")), b"ERR tenantgate:")
        assert r2.cmd("GET", "x") == ("ERR", b"NOAUTH Authentication required.")
        r2.close()
    finally:
        env.direct.execute_command("ACL", "SETUSER", env.svc_user, "+acl|setuser")
    assert r.cmd("AUTH", env.tokens.mint("erin")) == b"OK"
    assert r.cmd("GET", "who") is None
    assert "tenantgate:erin" in acl_users(env)
    assert "ACL SETUSER refused: NOPERM" in env.proxy.log()
    r.close()


def test_lost_acl_user_is_provisioned_again(env):
    env.direct.set("t:frank:who", "frank")
    c = env.client("frank")
    assert c.eval("return redis.call('GET', KEYS[1])", 1, "who") == b"frank"
    c.close()
    # as after a restart without an ACL file: the user is gone, tenantgate still "knows" it
    env.direct.execute_command("ACL", "DELUSER", "tenantgate:frank")
    c = env.client("frank")
    assert c.eval("return redis.call('GET', KEYS[1])", 1, "who") == b"frank"
    assert "tenantgate:frank" in acl_users(env)
    assert "provisioning it again" in env.proxy.log()
    c.close()


def test_concurrent_first_use(env):
    """Sessions of a tenant never seen before, at once, on both workers: each gets in."""
    env.direct.set("t:hugo:who", "hugo")
    results, errors = [], []

    def one():
        try:
            r = Raw(env.port)
            r.send_raw(Raw.encode("AUTH", env.tokens.mint("hugo")) +
                       Raw.encode("EVAL", "return redis.call('GET', KEYS[1])", "1", "who"))
            results.append((r.read(), r.read()))
            r.close()
        except Exception as e:  # noqa: BLE001 -- reported below
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(h.scaled(30))
    assert not errors, errors
    assert results == [(b"OK", b"hugo")] * 16
    assert acl_users(env).count("tenantgate:hugo") == 1


def test_reset_keeps_the_tenant_user_until_reauth(env):
    env.direct.set("t:alice:who", "alice")
    env.direct.set("t:bob:who", "bob")
    r = Raw(env.port)
    assert r.cmd("AUTH", env.tokens.mint("alice")) == b"OK"
    assert r.cmd("RESET") == b"RESET"
    assert r.cmd("GET", "who") == ("ERR", b"NOAUTH Authentication required.")
    assert r.cmd("AUTH", env.tokens.mint("bob")) == b"OK"
    assert whose(r) == b"bob"
    r.close()


def test_scripts_through_resp3_first_auth(env):
    env.direct.set("t:gina:who", "gina")
    r = Raw(env.port)
    hello = r.cmd("HELLO", "3", "AUTH", "u", env.tokens.mint("gina"), "SETNAME", "app")
    assert isinstance(hello, dict) and hello[b"proto"] == 3
    assert whose(r) == b"gina"
    assert r.cmd("CLIENT", "GETNAME") == b"app"
    r.close()


# ---- allow_scripts off: nothing of this is reachable -------------------------------------------


def test_scripts_off_refuses_everything():
    with redis_env() as env:
        # On a TG_EXT_REDIS server the module's env shares the keyspace and its ACL users.
        before = {u for u in acl_users(env) if u.startswith("tenantgate:")}
        c = env.client("scriptsoff")
        for cmd in (["EVAL", "return 1", "0"], ["EVALSHA", "a" * 40, "0"],
                    ["EVAL_RO", "return 1", "0"], ["EVALSHA_RO", "a" * 40, "0"],
                    ["FCALL", "f", "0"], ["FCALL_RO", "f", "0"], ["SCRIPT", "LOAD", "return 1"],
                    ["SCRIPT", "EXISTS", "a"], ["SCRIPT", "FLUSH"], ["FUNCTION", "LIST"],
                    ["FUNCTION", "FLUSH"]):
            with pytest.raises(redis.ResponseError, match="^tenantgate: .* is not allowed"):
                c.execute_command(*cmd)
        # the session connection is the service user, and SCAN works as before
        c.set("k", "v")
        assert c.scan(0)[1] == [b"k"]
        assert (env.username or "default") in env.backend_users()
        assert not [u for u in acl_users(env) if u.startswith("tenantgate:") and u not in before]
        c.close()


def test_service_user_with_every_permission():
    """The README's simple service-user ACL (~* &* +@all) works as well."""
    with redis_env(scripts=True, service_acl="~* &* +@all") as env:
        c = env.client(A)
        assert c.eval("return redis.call('SET', KEYS[1], 'v')", 1, "k") == b"OK"
        assert env.direct.get("t:alice:k") == b"v"
        assert "tenantgate:alice" in env.backend_users()
        c.close()


def test_check_reports_missing_pieces(tmp_path):
    base = {"name": "rd", "protocol": "redis", "listen": f"127.0.0.1:{h.free_port()}",
            "backend": {"address": f"127.0.0.1:{h.closed_port()}"}}
    secret = tmp_path / "jwt"
    secret.write_text("s" * 40)
    auth = {"jwt": {"algorithms": ["HS256"], "hs256_secret_file": str(secret)}}
    cfg = tmp_path / "tg.yaml"
    cfg.write_text(h.to_yaml(h.base_config([dict(base, redis={"allow_scripts": True})],
                                           auth=auth)))
    p = h.run_tg(["check", "-c", str(cfg)])
    assert p.returncode == 1
    assert re.search(r"redis\.acl_key_file: required when allow_scripts is true", p.stderr), \
        p.stderr


def test_check_probes_the_service_user(env):
    p = h.run_tg(["check", "-c", env.proxy.cfg_path])
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(r"listener redis: ok: redis 7\.\S+; the service user "
                     rf"{re.escape(env.svc_user)} may "
                     r"provision the per-tenant ACL users", p.stdout), p.stdout
    assert "tenantgate-preflight-probe" not in acl_users(env)  # the probe creates nothing


def test_service_user_without_acl_setuser():
    with redis_env(scripts=True, service_acl="~* &* +@all -acl") as env:
        p = h.run_tg(["check", "-c", env.proxy.cfg_path])
        assert p.returncode == 1
        assert f"problem: the service user {env.svc_user} may not run ACL SETUSER; fix: ACL " \
               f"SETUSER {env.svc_user} +acl|setuser" in p.stdout, p.stdout
        # sessions cannot start: refused with a reason, never connected as the service user
        r = Raw(env.port)
        assert is_err(r.cmd("AUTH", env.tokens.mint(A)),
                      b"ERR tenantgate: the tenant's backend ACL user could not be set up")
        assert r.cmd("EVAL", "return 1", "0") == ("ERR", b"NOAUTH Authentication required.")
        r.close()
        assert env.svc_user not in env.backend_users()
