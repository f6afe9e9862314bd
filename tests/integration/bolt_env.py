"""tenantgate with a `protocol: bolt` listener in front of a Bolt server (the fake one of
bolt_wire.py, or the test backend of bolt_fixture.py), for the Bolt session tests.

  with bolt_proxy(backend_address, user, password, isolation="property") as env:
      env.port, env.tokens.mint("acme"), env.client(), env.metric(name, **labels)

bolt_stack() with TG_EXT_NEO4J=bolt://USER:PW@HOST:PORT set puts tenantgate in front of that
Neo4j instead of the test backend (ext_backends.ExternalNeo4j; the kuzu schema is not used).
"""

import contextlib
import os
import shutil
import tempfile

import ext_backends
import tghelpers as h
from bolt_wire import Client
from pg_fixture import Tokens


class Env:
    def __init__(self, port, tokens, proxy, admin_port, workdir):
        self.port, self.tokens, self.proxy = port, tokens, proxy
        self.admin_port, self.workdir = admin_port, workdir

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def uri(self, scheme="bolt"):
        return f"{scheme}://127.0.0.1:{self.port}"

    def client(self):
        return Client(self.port)

    def login(self, tenant, version=(5, 4), scheme="bearer", **kw):
        """A raw client logged on as tenant; asserts the login succeeded."""
        c = Client(self.port)
        replies = c.login(self.tokens.mint(tenant), version=version, scheme=scheme, **kw)
        assert [r.name for r in replies] == ["SUCCESS"] * len(replies), replies
        return c

    def metric(self, name, **labels):
        return h.scrape(self.admin_port, name, **labels) or 0

    def log(self):
        return self.proxy.log()


def bolt_listener(port, backend_address, user, pw_file, **bolt):
    d = {"name": "graph", "protocol": "bolt", "listen": f"127.0.0.1:{port}",
         "backend": {"address": backend_address, "user": user, "password_file": pw_file}}
    if bolt:
        d["bolt"] = bolt
    return d


@contextlib.contextmanager
def bolt_proxy(backend_address, user, password, listener_extra=None, cfg_extra=None, **bolt):
    """Starts tenantgate with one bolt listener (extra `bolt:` keys as kwargs, extra top-level
    sections such as `tenants` in cfg_extra); yields an Env."""
    workdir = tempfile.mkdtemp(prefix="tg-bolt-env-")
    proxy = None
    try:
        secret = os.urandom(32).hex()
        jwt_file = os.path.join(workdir, "jwt-secret")
        pw_file = os.path.join(workdir, "bolt-password")
        with open(jwt_file, "w") as f:
            f.write(secret + "\n")
        with open(pw_file, "w") as f:
            f.write(password + "\n")
        port, admin = h.free_port(), h.free_port()
        listener = bolt_listener(port, backend_address, user, pw_file, **bolt)
        listener.update(listener_extra or {})
        cfg = h.base_config([listener], admin_port=admin,
                            auth={"jwt": {"algorithms": ["HS256"], "hs256_secret_file": jwt_file}},
                            **(cfg_extra or {}))
        proxy = h.Proxy(workdir, cfg, name="tg").start()
        yield Env(port, Tokens(secret), proxy, admin, workdir)
    finally:
        try:
            if proxy is not None:
                if proxy.rc is None:
                    proxy.stop()
                else:
                    proxy.check_sanitizers()
        finally:
            if proxy is not None:
                proxy.kill()
                proxy.close_files()
            shutil.rmtree(workdir, ignore_errors=True)


# ---- the Bolt test backend behind tenantgate, driven by the JavaScript driver ------------------

class Stack:
    """The test backend (b) with tenantgate (env) in front of it."""

    def __init__(self, backend, env):
        self.b, self.env = backend, env

    def driver(self, tenant, steps, scheme="bolt", auth="bearer", token=None, config=None,
               timeout=120):
        """Runs driver steps through tenantgate as `tenant`; returns the step outcomes."""
        from bolt_fixture import run_driver
        token = token or self.env.tokens.mint(tenant)
        a = ({"scheme": "bearer", "token": token} if auth == "bearer" else
             {"scheme": "basic", "user": "app", "password": token})
        return run_driver({"uri": self.env.uri(scheme), "auth": a, "steps": steps,
                           "config": config or {}}, timeout=timeout)

    def run(self, tenant, query, params=None, **step):
        """One auto-commit statement as tenant: its result, or {"error": ...}."""
        s = {"op": "run", "query": query, "params": params or {}}
        s.update(step)
        return self.driver(tenant, [s])[0]

    def rows(self, tenant, query, params=None, **step):
        out = self.run(tenant, query, params, **step)
        assert "error" not in out, out
        return out["records"]

    def direct(self, query, params=None, db=None):
        """A statement straight to the backend as the service user (sees every tenant)."""
        step = {"op": "run", "query": query, "params": params or {}}
        if db:
            step["db"] = db
        out = self.b.driver([step])[0]
        assert "error" not in out, out
        return out["records"]


@contextlib.contextmanager
def bolt_stack(schema, backend_args=(), listener_extra=None, **bolt):
    """The Bolt test backend with `schema`, and tenantgate in front of it (bolt keys as kwargs)."""
    from bolt_fixture import bolt_backend
    ext = ext_backends.url("neo4j")
    if ext and backend_args:
        ext_backends.needs_test_backend("neo4j", f"test backend options {list(backend_args)}")
    with (_external(ext) if ext else bolt_backend(schema=schema, args=backend_args)) as b:
        with bolt_proxy(f"{b.host}:{b.port}", b.user, b.password, listener_extra=listener_extra,
                        **bolt) as env:
            yield Stack(b, env)


@contextlib.contextmanager
def _external(url):
    b = ext_backends.ExternalNeo4j(url).start()
    try:
        yield b
    finally:
        b.stop()
