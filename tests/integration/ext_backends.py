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
