"""tenantgate with a `protocol: bolt` listener in front of a Bolt server (the fake one of
bolt_wire.py, or the test backend of bolt_fixture.py), for the Bolt session tests.

  with bolt_proxy(backend_address, user, password, isolation="property") as env:
      env.port, env.tokens.mint("acme"), env.client(), env.metric(name, **labels)
"""

import contextlib
import os
import shutil
import tempfile

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
def bolt_proxy(backend_address, user, password, listener_extra=None, **bolt):
    """Starts tenantgate with one bolt listener (extra `bolt:` keys as kwargs); yields an Env."""
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
                            auth={"jwt": {"algorithms": ["HS256"], "hs256_secret_file": jwt_file}})
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
