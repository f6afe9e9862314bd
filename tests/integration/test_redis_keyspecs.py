"""Cross-check of the Redis command policy (policy/redis_policy.c) against a real redis-server.

  corpus: one "full" and one "minimal" command line per command and subcommand,
          built from the server's own COMMAND DOCS argument trees, plus hand-written
          lines that stress key specs (numkeys, keywords, limits, STREAMS tricks)
     |-> redis_policy_cli (the policy, built-in table)  -> role of every argument
     '-> COMMAND GETKEYS on a throwaway redis-server    -> the server's key names
  1. for every forwarded line, the names at KEY positions == the server's key names
     (as multisets), except the lines listed in EXPECTED_DIFFERENCES, where the
     policy deliberately differs (and is checked to be a superset or the truth);
  2. every forwarded line is rewritten as the session would (prefix, escaped prefix for
     patterns, MATCH appended) and executed on the server, for a tenant whose prefix
     holds glob characters ("t:{a?c}:"), next to a victim tenant "t:{abc}:" and
     unprefixed victim keys: afterwards the victims are unchanged, no key exists
     outside the tenant's prefix but the victims, and no reply carried a victim marker;
  3. policy/gen/redis_commands.py --check: the committed table is what this server publishes.

The CLI comes from $TG_REDIS_POLICY_CLI (set by ctest: tests/CMakeLists.txt).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
import redis

import tghelpers as h

CLI = os.environ.get("TG_REDIS_POLICY_CLI", "")
SRC = os.environ.get("TG_SOURCE_DIR") or os.path.normpath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

TENANT = b"t:{a?c}:"
VICTIM = b"t:{abc}:"  # matches the tenant's prefix read as a glob: escaping matters
MARK = b"VICTIM"

# Lines where the policy and COMMAND GETKEYS disagree on purpose: line -> why.
EXPECTED_DIFFERENCES = {
    # The key spec's keyword search stops at a group/consumer named STREAMS; the command
    # itself reads the stream after the real STREAMS token (xreadCommand), and so does the
    # policy (newer Redis marks this spec INCOMPLETE for the same reason).
    "XREADGROUP COUNT 1 GROUP STREAMS c STREAMS s1 >": "the real STREAMS token",
    "XREADGROUP COUNT 1 GROUP g STREAMS STREAMS s1 >": "the real STREAMS token",
    # GEORADIUS keeps the last STORE/STOREDIST (georadiusGeneric); the spec finds the
    # first. The policy prefixes every target.
    "GEORADIUS key1 0 0 10 km STORE dst1 STORE dst2": "every STORE target",
    "GEORADIUSBYMEMBER key1 m 10 km STORE dst1 STORE dst2": "every STORE target",
    # SORT keeps the last STORE; the policy prefixes every one.
    "SORT key1 STORE dst1 STORE dst2": "every STORE target",
    # numkeys 0: Redis's spec walk calls it invalid and its getkeys proc returns no key at
    # all; the policy still prefixes the destination (the command then fails anyway).
    "ZUNIONSTORE dst1 0 zkey1": "destination of a failing command",
}

HAND_WRITTEN = """\
GET key1
SET key1 v EX 10 NX
MSET key1 v1 key2 v2 key3 v3
MGET key1 key2 key3 key4
DEL key1 key2 key3 key4 key5 key6
RENAME key1 key2
LMOVE key1 key2 LEFT RIGHT
BLPOP key1 key2 0.01
BRPOP key1 0.01
BZPOPMIN zkey1 zkey2 0.01
ZUNIONSTORE dst1 2 zkey1 zkey2 WEIGHTS 1 2
ZUNIONSTORE dst1 0 zkey1
ZINTERSTORE dst1 3 zkey1 zkey2
ZUNION 2 zkey1 zkey2 WITHSCORES
ZDIFF 1 zkey1
SINTERCARD 2 skey1 skey2 LIMIT 0
ZINTERCARD 1 zkey1
LMPOP 2 key1 key2 LEFT
LMPOP 3 key1 key2 LEFT
BLMPOP 0.01 2 key1 key2 RIGHT COUNT 2
ZMPOP 1 zkey1 MIN
BZMPOP 0.01 2 zkey1 zkey2 MAX
EVALSHA abc 1 key1
FCALL fn 2 key1 key2 a
XREAD COUNT 2 STREAMS s1 s2 0 0
XREAD STREAMS s1 0
XREAD STREAMS streams 0
XREAD BLOCK 1 STREAMS s1 s2 s3 0 0 0
XREAD STREAMS s1 s2 0
XREADGROUP GROUP g c STREAMS s1 >
XREADGROUP GROUP g c COUNT 1 BLOCK 1 NOACK STREAMS s1 s2 > >
XREADGROUP COUNT 1 GROUP STREAMS c STREAMS s1 >
XREADGROUP COUNT 1 GROUP g STREAMS STREAMS s1 >
SORT key1
SORT key1 STORE dst1
SORT key1 BY w_* GET # GET o_*->f STORE dst1
SORT key1 STORE dst1 STORE dst2
SORT_RO key1 BY w_* GET #
GEORADIUS key1 0 0 10 km
GEORADIUS key1 0 0 10 km STORE dst1
GEORADIUS key1 0 0 10 km STOREDIST dst1
GEORADIUS key1 0 0 10 km STORE dst1 STORE dst2
GEORADIUS key1 0 0 10 km COUNT 5 ASC STORE dst1
GEORADIUSBYMEMBER key1 m 10 km STORE dst1 STORE dst2
GEOSEARCHSTORE dst1 key1 FROMMEMBER m BYRADIUS 1 km
BITOP AND dst1 key1 key2
PFMERGE dst1 key1 key2
PFCOUNT key1 key2
MIGRATE h 6379 key1 0 5000
MIGRATE h 6379 \\e 0 5000 KEYS key1 key2
OBJECT ENCODING key1
OBJECT FREQ key1
MEMORY USAGE key1 SAMPLES 5
XINFO STREAM s1 FULL
XGROUP CREATE s1 g $ MKSTREAM
XADD s1 * f v
COPY key1 key2 REPLACE
COPY key1 key2 DB 1
LCS key1 key2
SUBSCRIBE ch1 ch2
PSUBSCRIBE p*
SSUBSCRIBE ch1
PUBLISH ch1 msg
SPUBLISH ch1 msg
PUBSUB NUMSUB ch1 ch2
PUBSUB CHANNELS
PUBSUB CHANNELS p*
KEYS *
KEYS key?
SCAN 0
SCAN 0 MATCH key* COUNT 100
SCAN 0 TYPE string
FLUSHALL
RANDOMKEY
DBSIZE
CONFIG GET *
CLIENT LIST
WATCH key1 key2
TOUCH key1 key2
EXISTS key1 key2
UNLINK key1 key2
"""


# ---- the throwaway server ----

class RedisServer:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tg-redis-keyspecs-")
        self.port = h.free_port()
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--daemonize", "no",
             "--logfile", os.path.join(self.dir, "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                c = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)
                c.ping()
                c.close()
                break
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)

    def client(self, decode=False):
        c = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10,
                        decode_responses=decode)
        c.response_callbacks.clear()  # raw replies
        return c

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    s = RedisServer()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def cli():
    if not CLI or not os.access(CLI, os.X_OK):
        pytest.fail("TG_REDIS_POLICY_CLI is not set to the redis_policy_cli binary")
    return CLI


# ---- the corpus ----

def pairs(lst):
    return dict(zip(lst[0::2], lst[1::2])) if lst else {}


class Gen:
    """One command line from a COMMAND DOCS argument tree (full: every optional, x2 multiples)."""

    def __init__(self, full):
        self.full = full
        self.n = 0

    def fresh(self, stem):
        self.n += 1
        return "%s%d" % (stem, self.n)

    def args(self, args):
        out = []
        docs = [pairs(a) for a in args]
        for i, d in enumerate(docs):
            flags = d.get("flags") or []
            if "optional" in flags and not self.full:
                continue
            reps = 2 if ("multiple" in flags and self.full) else 1
            if d.get("name") == "numkeys" and d.get("type") == "integer":
                nxt = docs[i + 1] if i + 1 < len(docs) else {}
                nflags = nxt.get("flags") or []
                nreps = 2 if ("multiple" in nflags and self.full) else 1
                if "optional" in nflags and not self.full:
                    nreps = 0
                out.append(str(nreps))
                continue
            for r in range(reps):
                if d.get("token") and (r == 0 or "multiple_token" in flags):
                    out.append(d["token"])
                out += self.value(d)
        return out

    def value(self, d):
        t, name = d.get("type"), d.get("name", "")
        if t == "key":
            return [self.fresh("key")]
        if t == "pure-token":
            return []
        if t in ("integer", "double"):
            if name == "timeout":
                return ["0.01"]
            if "milliseconds" in name or name == "block":
                return ["1"]
            return ["1"]
        if t == "unix-time":
            return ["1700000000"]
        if t == "pattern":
            return ["p*"]
        if t == "string":
            if name in ("id", "start", "end"):
                return ["0"]
            return [self.fresh("v")]
        if t == "block":
            return self.args(d.get("arguments") or [])
        if t == "oneof":
            alts = d.get("arguments") or []
            pick = pairs(alts[0] if self.full else alts[-1])
            pick["flags"] = [f for f in (pick.get("flags") or []) if f != "optional"]
            return self.args([sum(([k, v] for k, v in pick.items()), [])])
        return [self.fresh("x")]


def docs_corpus(client):
    docs = client.execute_command("COMMAND", "DOCS")
    lines = []

    def walk(argv0, doc):
        d = pairs(doc)
        subs = pairs(d.get("subcommands"))
        for full in (True, False):
            lines.append(argv0 + Gen(full).args(d.get("arguments") or []))
        for sub, sdoc in subs.items():
            walk([argv0[0], sub.split("|", 1)[1].upper()], sdoc)

    for name, doc in pairs(docs).items():
        walk([name.upper()], doc)
    return lines


# Lines whose arguments hold spaces.
HAND_WRITTEN_ARGV = [
    ["EVAL", "return 1", "0"],
    ["EVAL", "return redis.call('set',KEYS[1],'x')", "2", "key1", "key2", "arg1"],
    ["EVAL", "return 1", "-1"],
    ["EVAL", "return 1", "5", "key1"],
    ["EVAL_RO", "return redis.call('get',KEYS[1])", "1", "key1"],
]


def hand_corpus():
    out = [["" if a == "\\e" else a for a in line.split(" ")]
           for line in HAND_WRITTEN.splitlines() if line.strip()]
    return out + HAND_WRITTEN_ARGV


def judge_all(cli, lines, prefix=TENANT, scripts=None):
    """Verdicts of the policy CLI. scripts=None: each line as judged without allow_scripts,
    but script commands (refused there) as judged with it -- allow_scripts also refuses what
    the tenant's ACL user lacks (SCAN, SORT...), whose key positions are compared too."""
    if scripts is None:
        plain = judge_all(cli, lines, prefix, scripts=False)
        again = [i for i, v in enumerate(plain) if "allow_scripts is off" in v["reason"]]
        for i, v in zip(again, judge_all(cli, [lines[i] for i in again], prefix, scripts=True)):
            plain[i] = v
        return plain
    if not lines:
        return []
    args = [cli, "--prefix", prefix.decode()] + (["--allow-scripts"] if scripts else [])
    text = "".join("\t".join(l) + "\n" for l in lines)
    assert all("\t" not in a and "\n" not in a for l in lines for a in l)
    out = subprocess.run(args, input=text.encode(), stdout=subprocess.PIPE, check=True,
                         timeout=60).stdout.decode().split("\n")
    verdicts = []
    for l, row in zip(lines, out):
        kind, reply, local, append, roles, reason = row.split("\t")
        verdicts.append(dict(kind=kind, reply=reply, local=local, append=append, roles=roles,
                             reason=reason))
    assert len(verdicts) == len(lines)
    return verdicts


def server_keys(client, argv):
    try:
        keys = client.execute_command("COMMAND", "GETKEYS", *argv)
    except redis.ResponseError:
        return None
    return sorted(k.decode() if isinstance(k, bytes) else k for k in keys)


@pytest.fixture(scope="module")
def corpus(server):
    c = server.client(decode=True)
    lines = hand_corpus() + docs_corpus(c)
    c.close()
    return lines


# ---- 1. key positions against COMMAND GETKEYS ----

def test_key_positions_match_getkeys(server, cli, corpus):
    assert len(corpus) >= 300, len(corpus)
    verdicts = judge_all(cli, corpus)
    c = server.client()
    compared = denied = 0
    mismatches, expected_seen = [], set()
    for argv, v in zip(corpus, verdicts):
        line = " ".join(argv)
        if v["kind"] not in ("forward", "rewrite-pattern"):
            denied += 1
            continue
        assert len(v["roles"]) == len(argv), line
        ours = sorted(argv[i] for i, r in enumerate(v["roles"]) if r == "k")
        theirs = server_keys(c, argv)
        compared += 1
        if theirs is None:
            theirs = []  # "no key arguments" / "invalid arguments": no keys
        if ours == theirs:
            continue
        if line in EXPECTED_DIFFERENCES:
            expected_seen.add(line)
            continue
        mismatches.append("%s: policy %s, server %s" % (line, ours, theirs))
    c.close()
    print("compared %d forwarded lines with COMMAND GETKEYS (%d refused)" % (compared, denied))
    assert not mismatches, "\n".join(mismatches)
    assert expected_seen == set(EXPECTED_DIFFERENCES), set(EXPECTED_DIFFERENCES) - expected_seen
    assert compared >= 250


def test_expected_differences_are_the_commands_truth(server, cli):
    """Where the policy differs from GETKEYS, the real command uses the policy's keys."""
    c = server.client()
    c.execute_command("FLUSHALL")
    # XREADGROUP: a group named STREAMS on stream "s1": the command reads s1.
    c.execute_command("XADD", "s1", "*", "f", "v")
    c.execute_command("XGROUP", "CREATE", "s1", "STREAMS", "0")
    argv = "XREADGROUP COUNT 1 GROUP STREAMS c STREAMS s1 >".split()
    reply = c.execute_command(*argv)
    assert reply and reply[0][0] == b"s1"
    assert server_keys(c, argv) == ["STREAMS", "c"]  # what the key spec says
    v = judge_all(cli, [argv])[0]
    assert [argv[i] for i, r in enumerate(v["roles"]) if r == "k"] == ["s1"]
    # GEORADIUS: the last STORE wins.
    c.execute_command("GEOADD", "key1", "0", "0", "m")
    c.execute_command(*"GEORADIUS key1 0 0 10 km STORE dst1 STORE dst2".split())
    assert c.execute_command("EXISTS", "dst1") == 0 and c.execute_command("EXISTS", "dst2") == 1
    v = judge_all(cli, ["GEORADIUS key1 0 0 10 km STORE dst1 STORE dst2".split()])[0]
    assert v["roles"] == ".k.....k.k"
    c.execute_command("FLUSHALL")
    c.close()


# ---- 2. execution under a prefix: nothing outside the tenant is touched or seen ----

def escape_glob(p):
    out = bytearray()
    for ch in p:
        if ch in b"*?[]\\":
            out += b"\\"
        out.append(ch)
    return bytes(out)


def rewrite(argv, v, prefix):
    out = []
    for a, r in zip(argv, v["roles"]):
        a = a.encode()
        if r in "kcs":
            a = prefix + a
        elif r == "p":
            a = escape_glob(prefix) + a
        out.append(a)
    if v["append"] == "match":
        out += [b"MATCH", escape_glob(prefix) + b"*"]
    elif v["append"] == "pattern":
        out.append(escape_glob(prefix) + b"*")
    return out


SKIP_EXEC = {"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE",
             "SUNSUBSCRIBE", "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH"}


def seed_victims(c):
    """Victim data under the look-alike prefix and without prefix, one of each type."""
    names = set()
    for base in (VICTIM, b""):
        for i in range(1, 10):
            k = base + b"key%d" % i
            c.execute_command("SET", k, MARK + b"-" + k)
            names.add(k)
        for n in (b"s1", b"s2", b"s3", b"streams"):
            c.execute_command("XADD", base + n, "*", "f", MARK)
            c.execute_command("XGROUP", "CREATE", base + n, "g", "0")
            c.execute_command("XGROUP", "CREATE", base + n, "STREAMS", "0")
            names.add(base + n)
        for n in (b"zkey1", b"zkey2"):
            c.execute_command("ZADD", base + n, "1", MARK)
            names.add(base + n)
        for n in (b"skey1", b"skey2"):
            c.execute_command("SADD", base + n, MARK)
            names.add(base + n)
        c.execute_command("SET", base + MARK, MARK)
        names.add(base + MARK)
    return {k: c.execute_command("DUMP", k) for k in names}


def contains_mark(reply):
    if isinstance(reply, bytes):
        return MARK in reply
    if isinstance(reply, (list, tuple)):
        return any(contains_mark(x) for x in reply)
    if isinstance(reply, dict):
        return any(contains_mark(k) or contains_mark(x) for k, x in reply.items())
    if isinstance(reply, Exception):
        return MARK.decode() in str(reply)
    return False


def test_prefixed_execution_is_isolated(server, cli, corpus):
    verdicts = judge_all(cli, corpus, prefix=TENANT)
    c = server.client()
    c.execute_command("FLUSHALL")
    c.execute_command("CONFIG", "SET", "maxmemory-policy", "noeviction")
    before = seed_victims(c)
    # the tenant's own data, so reads have something to return
    for i in range(1, 4):
        c.execute_command("RPUSH", TENANT + b"key%d" % i, "own")
    executed, leaks = 0, []
    for argv, v in zip(corpus, verdicts):
        if v["kind"] not in ("forward", "rewrite-pattern") or argv[0].upper() in SKIP_EXEC:
            continue
        if argv[0].upper() == "CLIENT":
            continue
        out = rewrite(argv, v, TENANT)
        try:
            reply = c.execute_command(*out)
        except redis.ResponseError as e:
            reply = e
        except redis.TimeoutError:
            pytest.fail("blocked: %s" % " ".join(argv))
        executed += 1
        if contains_mark(reply):
            leaks.append("%s -> %r" % (" ".join(argv), reply))
    assert not leaks, "\n".join(leaks)
    after = {k: c.execute_command("DUMP", k) for k in before}
    changed = [k for k in before if before[k] != after[k]]
    assert not changed, changed
    stray = [k for k in c.execute_command("KEYS", "*")
             if not k.startswith(TENANT) and k not in before]
    assert not stray, stray
    print("executed %d prefixed lines; victims unchanged" % executed)
    assert executed >= 250
    c.execute_command("FLUSHALL")
    c.close()


def test_escaped_patterns_on_the_server(server):
    """escaped-prefix + any pattern only matches the tenant's keys (KEYS, SCAN, PUBSUB)."""
    c = server.client()
    c.execute_command("FLUSHALL")
    prefixes = [b"t:{a?c}:", b"t:{a*c}:", b"t:{[ab]c}:", b"t:{a\\c}:", b"t:{a]c}:"]
    others = [b"t:{abc}:", b"t:{axc}:", b"t:{ac}:", b"t:{bc}:", b"t:{a\\\\c}:", b"t:{a}c}:",
              b"T:{abc}:"]
    for p in prefixes + others:
        c.execute_command("SET", p + b"k", "1")
    for p in prefixes:
        esc = escape_glob(p)
        for pat in (b"*", b"k", b"?", b"[a-z]", b"\\k", b"*k*", b"[", b"\\"):
            got = c.execute_command("KEYS", esc + pat)
            assert all(g.startswith(p) for g in got), (p, pat, got)
            cursor, seen = b"0", []
            while True:
                cursor, batch = c.execute_command("SCAN", cursor, "MATCH", esc + pat)
                seen += batch
                if cursor == b"0":
                    break
            assert sorted(seen) == sorted(got)
        assert c.execute_command("KEYS", esc + b"*") == [p + b"k"]
    c.execute_command("FLUSHALL")
    c.close()


# ---- 3. the committed table is what the server publishes ----

def test_generated_table_is_current():
    gen = os.path.join(SRC, "policy", "gen", "redis_commands.py")
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "redis_commands.def")
        shutil.copy(os.path.join(SRC, "policy", "redis_commands.def"), out)
        r = subprocess.run([sys.executable, gen, "--check", "--out", out,
                            "--redis-server", REDIS_SERVER],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    assert r.returncode == 0, r.stdout.decode()
