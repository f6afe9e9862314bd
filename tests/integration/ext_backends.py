"""Real servers instead of the throwaway ones: backend addresses from the environment.

    TG_EXT_POSTGRES=postgresql://SUPERUSER:PW@HOST:PORT           pgserver.PgServer
    TG_EXT_REDIS=redis://ADMIN:PW@HOST:PORT                        redis_fixture.redis_env
    TG_EXT_MONGODB=mongodb://ROOT:PW@HOST:PORT/?replicaSet=rs0     mongo_fixture.mongo_env
    TG_EXT_NEO4J=bolt://neo4j:PW@HOST:PORT                         bolt_env.bolt_stack

When one is set, that protocol's fixture uses the server it names (deploy/compose/ starts
such servers) instead of starting a local one: it logs in with the admin credentials,
creates the roles, users, databases and data it needs, and at the end removes what it
created -- found by comparing with what the server held when the fixture started, so
nothing that was there before is ever dropped. Unset, nothing changes.

Tests that can only run against the local test backend (they read its --trace or
--log-messages output, use a kuzu schema, configure the server, or stop it) carry
`@pytest.mark.local_backend(KIND, reason)` and are skipped, with the reason, when KIND's
variable is set (conftest.py). deploy/compose/README.md lists them.
"""

import collections
import os
import urllib.parse

VARS = {
    "postgres": "TG_EXT_POSTGRES",
    "redis": "TG_EXT_REDIS",
    "mongodb": "TG_EXT_MONGODB",
    "neo4j": "TG_EXT_NEO4J",
}
SCHEMES = {
    "postgres": ("postgresql", "postgres"),
    "redis": ("redis",),
    "mongodb": ("mongodb",),
    "neo4j": ("bolt", "neo4j"),
}
DEFAULT_PORTS = {"postgres": 5432, "redis": 6379, "mongodb": 27017, "neo4j": 7687}

Url = collections.namedtuple("Url", "kind host port user password query")


def url(kind):
    """The parsed TG_EXT_<KIND> (a Url), or None when it is unset or empty. A value that is
    set but unusable is an error, never a silent fallback to the local backend."""
    var = VARS[kind]
    raw = os.environ.get(var, "")
    if not raw:
        return None
    u = urllib.parse.urlsplit(raw)
    if u.scheme not in SCHEMES[kind]:
        raise ValueError(f"{var}: scheme must be one of {SCHEMES[kind]}, not {u.scheme!r}")
    if not u.hostname or u.username is None or u.password is None:
        raise ValueError(f"{var}: expected {SCHEMES[kind][0]}://USER:PASSWORD@HOST:PORT")
    host = u.hostname
    return Url(kind, host, u.port or DEFAULT_PORTS[kind], urllib.parse.unquote(u.username),
               urllib.parse.unquote(u.password), dict(urllib.parse.parse_qsl(u.query)))


def active(kind):
    return bool(os.environ.get(VARS[kind]))


def needs_test_backend(kind, what):
    """For fixture methods that exist only on the local test backend: fails the calling test
    with the fix (mark it local_backend) instead of letting it pass vacuously."""
    raise AssertionError(
        f"{VARS[kind]} is set, but this test uses {what}, which only the local test backend "
        f"has: mark it @pytest.mark.local_backend({kind!r}, reason) and list it in "
        "deploy/compose/README.md")


class ExternalRedis:
    """The server of TG_EXT_REDIS, for redis_fixture.redis_env: admin clients, ACL users made
    for the suite, and at close() the keys (every database), ACL users and function libraries
    that were not there at the start removed -- what was there is left alone."""

    def __init__(self, u):
        self.host, self.port, self.user, self.password = u.host, u.port, u.user, u.password
        self.admin = self.client()
        self.admin.ping()
        self._keys = self._all_keys()
        self._users = set(self._acl_users())
        self._libs = self._libraries()

    def client(self, db=0):
        import redis

        return redis.Redis(host=self.host, port=self.port, username=self.user,
                           password=self.password, db=db, socket_timeout=30)

    def _acl_users(self):
        return [u.decode() if isinstance(u, bytes) else u for u in self.admin.acl_users()]

    def _libraries(self):
        out = set()
        for lib in self.admin.execute_command("FUNCTION", "LIST"):
            d = dict(zip(lib[::2], lib[1::2])) if isinstance(lib, list) else lib
            name = d.get(b"library_name", d.get("library_name"))
            out.add(name.decode() if isinstance(name, bytes) else name)
        return out

    def _all_keys(self):
        dbs = {0, 1} | {int(k[2:]) for k in self.admin.info("keyspace") if k.startswith("db")}
        out = {}
        for db in sorted(dbs):
            c = self.client(db)
            out[db] = set(c.scan_iter(count=1000))
            c.close()
        return out

    def make_user(self, name, password, rules):
        """ACL SETUSER name for the suite; refuses to take over a user that exists already."""
        if name in self._users:
            raise AssertionError(f"TG_EXT_REDIS: ACL user {name} exists already; the suites "
                                 "create it and delete it after, so they will not use one "
                                 "they did not create")
        self.admin.execute_command("ACL", "SETUSER", name, "reset", "on", ">" + password,
                                   *rules)

    def close(self):
        try:
            for db, keys in self._all_keys().items():
                new = sorted(keys - self._keys.get(db, set()))
                c = self.client(db)
                for i in range(0, len(new), 500):
                    c.delete(*new[i:i + 500])
                c.close()
            for user in sorted(set(self._acl_users()) - self._users):
                self.admin.execute_command("ACL", "DELUSER", user)
            for lib in sorted(self._libraries() - self._libs):
                self.admin.execute_command("FUNCTION", "DELETE", lib)
        finally:
            self.admin.close()


class ExternalMongo:
    """The server of TG_EXT_MONGODB in place of mongo_fixture.MongoBackend (mongo_env): at
    start() a service user (SCRAM-SHA-256 only, readWrite and dbAdmin on any database) is
    created for tenantgate through the root credentials; stop() drops the databases that were
    not there at start() and that user. There is no --trace: received() fails the test."""

    def __init__(self, u):
        import secrets

        self.host, self.port = u.host, u.port
        self._root = (u.user, u.password, u.query.get("authSource", "admin"))
        self.user = "tenantgate-suite-" + secrets.token_hex(3)
        self.password = secrets.token_urlsafe(18)
        self.trace = False
        self._clients = []
        self._dbs = None
        self.root = None

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def _connect(self, user, password, auth_source, **kw):
        import pymongo

        # directConnection: the replica set's member names need not resolve from here.
        args = dict(host=self.host, port=self.port, username=user, password=password,
                    authSource=auth_source, directConnection=True,
                    serverSelectionTimeoutMS=10000, socketTimeoutMS=30000)
        args.update(kw)
        c = pymongo.MongoClient(**args)
        self._clients.append(c)
        return c

    def start(self):
        self.root = self._connect(*self._root)
        self._dbs = set(self.root.list_database_names())
        self.root.admin.command(
            "createUser", self.user, pwd=self.password, mechanisms=["SCRAM-SHA-256"],
            roles=[{"role": "readWriteAnyDatabase", "db": "admin"},
                   {"role": "dbAdminAnyDatabase", "db": "admin"}])
        return self

    def client(self, user=None, password=None, **kw):
        """pymongo with SCRAM-SHA-256, as the service user unless told otherwise."""
        return self._connect(user or self.user, self.password if password is None else password,
                             "admin", authMechanism="SCRAM-SHA-256", **kw)

    def uri(self, **options):
        opts = {"authSource": "admin", "authMechanism": "SCRAM-SHA-256",
                "directConnection": "true"}
        opts.update({k: str(v).lower() if isinstance(v, bool) else str(v)
                     for k, v in options.items()})
        q = "&".join(f"{k}={v}" for k, v in opts.items())
        return f"mongodb://{self.user}:{self.password}@{self.address}/?{q}"

    def received(self, command=None):
        needs_test_backend("mongodb", "the test backend's --trace file (received())")

    def log(self):
        return ""

    def stop(self):
        try:
            if self.root is not None and self._dbs is not None:
                for name in sorted(set(self.root.list_database_names()) - self._dbs):
                    if name not in ("admin", "config", "local"):
                        self.root.drop_database(name)
                self.root.admin.command("dropUser", self.user)
        finally:
            for c in self._clients:
                try:
                    c.close()
                except Exception:
                    pass
            self._clients, self.root, self._dbs = [], None, None


class ExternalNeo4j:
    """The server of TG_EXT_NEO4J in place of the Bolt test backend (bolt_env.bolt_stack): the
    URL's user is tenantgate's service user (Neo4j Community has no roles to narrow it);
    stop() deletes the nodes (and so their relationships) that were not there at start().
    There is no schema to load (Neo4j has no node tables) and no --log-messages: log() fails
    the test."""

    def __init__(self, u):
        self.host, self.port, self.user, self.password = u.host, u.port, u.user, u.password
        self._before = None

    def uri(self, scheme="bolt"):
        return f"{scheme}://{self.host}:{self.port}"

    def driver(self, steps, uri=None, auth=None, config=None, timeout=120):
        from bolt_fixture import run_driver

        program = {"uri": uri or self.uri(), "steps": steps, "config": config or {},
                   "auth": auth or {"scheme": "basic", "user": self.user,
                                    "password": self.password}}
        return run_driver(program, timeout=timeout)

    def _run(self, query, params=None):
        out = self.driver([{"op": "run", "query": query, "params": params or {}}])[0]
        assert "error" not in out, out
        return out["records"]

    def start(self):
        self._before = [r[0]["$node"]["elementId"] for r in self._run("MATCH (n) RETURN n")]
        return self

    def log(self):
        needs_test_backend("neo4j", "the test backend's --log-messages output (log())")

    def stop(self):
        if self._before is not None:
            self._run("MATCH (n) WHERE NOT elementId(n) IN $before DETACH DELETE n",
                      {"before": self._before})
            self._before = None
