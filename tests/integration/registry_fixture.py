"""The tenant registry (tenants.registry) for the integration tests: real redis-servers,
a real PostgreSQL, and one or more tenantgate processes sharing the registry.

  RedisServer    a redis-server on 127.0.0.1 (free port, requirepass, no persistence) that
                 can be killed (SIGKILL, by PID) and started again on the same port
  Registry       the control plane as an operator runs it: the documented Redis commands
                 (HSET <prefix>tenant:<id> ..., ZADD <prefix>revoked ..., PUBLISH
                 <prefix>events ...) and the `tenantgate tenant` CLI
  registry_env   PostgreSQL (pg_fixture), a backend redis-server, a registry redis-server and
                 N tenantgate processes, each with a `postgres` listener "pg" and a `redis`
                 listener "redis" and its own admin port; waits until every process has its
                 registry up
  Proc           one tenantgate of the env: psycopg / redis-py / raw connections to it

Only 127.0.0.1; every wait is bounded; every process is stopped by PID.
"""

import contextlib
import os
import signal
import subprocess
import time

import psycopg
import redis

import pg_fixture as pf
import tghelpers as h
from redis_fixture import REDIS_SERVER, Raw

PREFIX = "tenantgate:"


class RedisServer:
    """A redis-server this test started; stopped and killed by its PID only."""

    def __init__(self, workdir, password=None, port=None):
        self.dir = workdir
        self.password = password
        self.port = port or h.free_port()
        self.proc = None

    def start(self):
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.dir, "--protected-mode", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + h.scaled(10)
        while True:
            try:
                self.client().ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.02)

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                           socket_timeout=h.scaled(10))

    def kill(self):
        """SIGKILL: no goodbye to the clients, as a crashed or partitioned server."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"


class Registry:
    """What a control plane does to the registry (README: "The tenant registry")."""

    def __init__(self, server, prefix=PREFIX):
        self.server = server
        self.prefix = prefix

    def r(self):
        return self.server.client()

    def set_tenant(self, tenant, publish=True, **fields):
        """HSET <prefix>tenant:<tenant> field value...; PUBLISH <prefix>events "tenant <id>"."""
        c = self.r()
        c.hset(f"{self.prefix}tenant:{tenant}", mapping={k: str(v) for k, v in fields.items()})
        if publish:
            c.publish(f"{self.prefix}events", f"tenant {tenant}")

    def delete_tenant(self, tenant, publish=True):
        c = self.r()
        c.delete(f"{self.prefix}tenant:{tenant}")
        if publish:
            c.publish(f"{self.prefix}events", f"tenant {tenant}")

    def revoke(self, jti, exp=None, publish=True):
        c = self.r()
        c.zadd(f"{self.prefix}revoked", {jti: exp or int(time.time()) + 3600})
        if publish:
            c.publish(f"{self.prefix}events", f"jti {jti}")


class Proc:
    """One tenantgate process of an env."""

    def __init__(self, env, proxy):
        self.env, self.proxy = env, proxy

    @property
    def admin(self):
        return self.proxy.admin_port

    def pg_port(self):
        return self.proxy.port("pg")

    def redis_port(self):
        return self.proxy.port("redis")

    def pg(self, tenant=None, token=None, **kw):
        token = token or self.env.tokens.mint(tenant)
        kw.setdefault("autocommit", True)
        kw.setdefault("connect_timeout", 10)
        return psycopg.connect(host="127.0.0.1", port=self.pg_port(), user="app", dbname="app",
                               password=token, sslmode="disable", **kw)

    def redis(self, tenant=None, token=None, **kw):
        token = token or self.env.tokens.mint(tenant)
        return redis.Redis(host="127.0.0.1", port=self.redis_port(), password=token,
                           socket_timeout=h.scaled(10), **kw)

    def raw_pg(self, tenant=None, token=None):
        """A RawPg logged in (asserts success)."""
        c = pf.RawPg(self.pg_port())
        c.login(token or self.env.tokens.mint(tenant))
        return c

    def raw_redis(self, tenant=None, token=None):
        """A bare RESP connection, AUTHed."""
        r = Raw(self.redis_port())
        reply = r.cmd("AUTH", token or self.env.tokens.mint(tenant))
        assert reply == b"OK", reply
        return r

    def metric(self, name, **labels):
        return h.scrape(self.admin, name, **labels)

    def cli(self, *args):
        """`tenantgate tenant -c <this config> args...`"""
        return h.run_tg(["tenant", "-c", self.proxy.cfg_path] + list(args))


class Env:
    def __init__(self, pg, backend, registry, tokens, procs, workdir):
        self.pg, self.backend, self.registry = pg, backend, registry
        self.tokens, self.procs, self.dir = tokens, procs, workdir


def wait_registry_up(proc, up=1, timeout=None):
    h.wait_metric(proc.admin, "tenantgate_registry_up", lambda v: v == up,
                  timeout=timeout or h.scaled(10))


def proxy_config(workdir, pg, backend, registry_server, jwt_file, pg_pw, redis_pw_file,
                 reg_pw_file, tenants=None, pg_extra=None, redis_extra=None, sni=None):
    t = {"registry": {"address": registry_server.address, "password_file": reg_pw_file,
                      "timeout_ms": 500}}  # key_prefix: the default, PREFIX
    for k, v in (tenants or {}).items():
        if k == "registry":
            t["registry"].update(v)
        else:
            t[k] = v
    pg_l = pf.pg_listener("pg", h.free_port(), pg, pg_pw)
    if pg_extra:
        pg_l.update(pg_extra)
    rd = {"name": "redis", "protocol": "redis", "listen": f"127.0.0.1:{h.free_port()}",
          "backend": {"address": backend.address, "user": "default",
                      "password_file": redis_pw_file}}
    if redis_extra:
        rd.update(redis_extra)
    auth = {"jwt": {"algorithms": ["HS256"], "hs256_secret_file": jwt_file}}
    if sni:
        auth["sni"] = sni
    return h.base_config([pg_l, rd], admin_port=h.free_port(), auth=auth, tenants=t)


@contextlib.contextmanager
def registry_env(tmp, procs=({},), pg=None):
    """PostgreSQL (the one given, or a new one), a backend and a registry redis-server, and one
    tenantgate per entry of procs (each a dict of tenants: settings, plus optional
    pg_extra / redis_extra listener settings and an auth `sni` section). Yields an Env."""
    workdir = str(tmp)
    own_pg = pg is None
    started = []
    backend = registry = env = None
    try:
        if own_pg:
            pg = pf.PgServer()
            pg.start()
            pf.setup_schema(pg)
        secret, jwt_file, pg_pw = pf.write_secrets(workdir)
        bpw, rpw = "svc-" + os.urandom(8).hex(), "reg-" + os.urandom(8).hex()
        redis_pw_file = os.path.join(workdir, "redis-password")
        reg_pw_file = os.path.join(workdir, "registry-password")
        for path, pw in ((redis_pw_file, bpw), (reg_pw_file, rpw)):
            with open(path, "w") as f:
                f.write(pw + "\n")
        bdir = os.path.join(workdir, "backend")
        rdir = os.path.join(workdir, "registry")
        os.makedirs(bdir)
        os.makedirs(rdir)
        backend = RedisServer(bdir, bpw).start()
        registry = RedisServer(rdir, rpw).start()
        env = Env(pg, backend, Registry(registry), pf.Tokens(secret), [], workdir)
        for i, spec in enumerate(procs):
            spec = dict(spec)
            pg_extra = spec.pop("pg_extra", None)
            redis_extra = spec.pop("redis_extra", None)
            sni = spec.pop("sni", None)
            cfg = proxy_config(workdir, pg, backend, registry, jwt_file, pg_pw, redis_pw_file,
                               reg_pw_file, tenants=spec, pg_extra=pg_extra,
                               redis_extra=redis_extra, sni=sni)
            proxy = h.Proxy(workdir, cfg, name=f"tg{i}")
            started.append(proxy)
            proxy.start()
            env.procs.append(Proc(env, proxy))
        for p in env.procs:
            wait_registry_up(p)
        yield env
    finally:
        errors = []
        for proxy in started:
            try:
                if proxy.rc is None and proxy.proc is not None:
                    proxy.stop()
                elif proxy.proc is not None:
                    proxy.check_sanitizers()
            except AssertionError as e:
                errors.append(str(e))
            finally:
                proxy.kill()
                proxy.close_files()
        # a test may have replaced the registry's server (killed and started again)
        for srv in {backend, registry, env.registry.server if env else None} - {None}:
            srv.stop()
        if own_pg and pg is not None:
            pg.stop()
        assert not errors, "\n".join(errors)


# ---- observing sessions -------------------------------------------------------------------------


def pg_fatal_and_close(raw, timeout):
    """Waits up to timeout for a FATAL on an idle RawPg, then EOF; returns its fields."""
    deadline = time.monotonic() + timeout
    fields = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no FATAL within {timeout:.2f} s")
        try:
            t, body = raw.read_msg(timeout=left)
        except (EOFError, ConnectionResetError):
            assert fields is not None, "closed without a FATAL"
            return fields
        except TimeoutError:
            raise AssertionError(f"no FATAL within {timeout:.2f} s")
        if t == "E":
            fields = pf.error_fields(body)
            assert fields.get("S") == "FATAL", fields


def redis_error_and_close(raw, timeout):
    """Waits up to timeout for an error reply on an idle Raw connection, then EOF; returns the
    error text."""
    raw.s.settimeout(timeout)
    try:
        reply = raw.read()
    except (EOFError, ConnectionResetError):
        raise AssertionError("closed without an error reply")
    except OSError as e:
        raise AssertionError(f"no error reply within {timeout:.2f} s: {e}")
    assert isinstance(reply, tuple) and reply[0] == "ERR", reply
    assert raw.closed(timeout), "not closed after the error"
    return reply[1].decode()

