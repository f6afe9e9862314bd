"""A throwaway redis-server behind a tenantgate `protocol: redis` listener, for the Redis
integration tests (test_redis_proxy.py, test_redis_isolation.py, test_redis_pubsub.py,
test_redis_scripts.py).

  client --AUTH <jwt>--> tenantgate (key_prefix "t:{tenant}:") --AUTH svc--> redis-server
  env.direct: redis-py straight to redis-server as the default user (reads raw keys)
  env.raw():  a bare RESP connection to tenantgate (RESP2 and RESP3 replies, raw bytes)

redis_env(scripts=True): allow_scripts with per-tenant ACL users. redis-server then also
has a service user "tenantgate" with only the rules in `service_acl` (default: just
ACL SETUSER, all the mode needs), tenantgate logs in as it, and env.acl_key holds the
key that derives each tenant's ACL password (env.acl_secret(tenant)).

With TG_EXT_REDIS=redis://ADMIN:PW@HOST:PORT set, no redis-server is started: tenantgate and
env.direct use that server as ADMIN (scripts=True: a service user made for the suite), and
what the suite added is removed at the end (ext_backends.ExternalRedis).
"""

import contextlib
import hashlib
import hmac
import os
import shutil
import socket
import subprocess
import tempfile
import time

import redis

import ext_backends
import tghelpers as h
from pg_fixture import Tokens

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


SERVICE_USER = "tenantgate"  # env.svc_user: on an external server, one of its own per env
SERVICE_ACL_MIN = "-@all +acl|setuser"  # what allow_scripts needs of the service user


class Env:
    def __init__(self, port, rport, direct, tokens, proxy, password, acl_key=None,
                 svc_password=None, workdir=None, rhost="127.0.0.1", username=None,
                 svc_user=None):
        self.port, self.rport, self.direct = port, rport, direct
        self.rhost, self.username = rhost, username  # username: the external admin
        self.svc_user = SERVICE_USER if svc_user is None else svc_user
        self.tokens, self.proxy, self.password = tokens, proxy, password
        self.acl_key, self.svc_password, self.workdir = acl_key, svc_password, workdir

    def acl_secret(self, tenant):
        """The tenant's ACL password as tenantgate derives it (protocols/redis/acl.h)."""
        msg = b"tenantgate redis acl user\0" + tenant.encode()
        return hmac.new(self.acl_key, msg, hashlib.sha256).hexdigest()

    def backend_users(self):
        """The ACL user of every client connection of redis-server (CLIENT LIST)."""
        return [c.get("user") for c in self.direct.client_list()]

    def client(self, tenant=None, token=None, **kw):
        if token is None:
            token = self.tokens.mint(tenant)
        return redis.Redis(host="127.0.0.1", port=self.port, password=token,
                           socket_timeout=h.scaled(30), **kw)

    def direct_db(self, db):
        return redis.Redis(host=self.rhost, port=self.rport, username=self.username,
                           password=self.password, db=db)

    def raw(self, tenant=None, token=None):
        """A bare connection; AUTHed as `tenant` (or with `token`) when given."""
        r = Raw(self.port)
        if tenant is not None or token is not None:
            reply = r.cmd("AUTH", token or self.tokens.mint(tenant))
            assert reply == b"OK", reply
        return r


class Raw:
    """A bare RESP connection: send commands, read replies as raw bytes."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=h.scaled(10))
        self.buf = b""

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def send(self, *args):
        self.s.sendall(self.encode(*args))

    def send_raw(self, data):
        self.s.sendall(data)

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read(self):
        """One reply as a Python value; errors as ('ERR', text); RESP3 attributes skipped."""
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest
        if t in (b"-", b"!"):
            if t == b"!":
                n = int(rest)
                while len(self.buf) < n + 2:
                    self._fill()
                rest, self.buf = self.buf[:n], self.buf[n + 2:]
            return ("ERR", rest)
        if t == b":":
            return int(rest)
        if t == b"_":
            return None
        if t in (b"$", b"="):
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            v, self.buf = self.buf[:n], self.buf[n + 2:]
            return v
        if t in (b"*", b"~", b">"):
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        if t == b"%":
            return {self._key(self.read()): self.read() for _ in range(int(rest))}
        if t == b"|":
            for _ in range(2 * int(rest)):
                self.read()
            return self.read()
        if t == b"#":
            return rest == b"t"
        if t in (b",", b"("):
            return rest
        raise AssertionError(f"unexpected reply type {line!r}")

    @staticmethod
    def _key(k):
        return tuple(k) if isinstance(k, list) else k

    def cmd(self, *args):
        self.send(*args)
        return self.read()

    def closed(self, timeout=5.0):
        self.s.settimeout(timeout)
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    return True
                self.buf += d
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.s.close()


def is_err(reply, prefix=b""):
    return isinstance(reply, tuple) and reply[0] == "ERR" and reply[1].startswith(prefix)


@contextlib.contextmanager
def redis_env(listener_extra=None, scripts=False, service_acl=SERVICE_ACL_MIN, **cfg_extra):
    """Starts redis-server (requirepass, no persistence) and tenantgate; yields an Env."""
    workdir = tempfile.mkdtemp(prefix="tg-redis-")
    password = "svc-" + os.urandom(8).hex()
    svc_password = "tg-" + os.urandom(8).hex() if scripts else None
    ext, rhost, user, svc_user = ext_backends.url("redis"), "127.0.0.1", "default", SERVICE_USER
    if ext:  # a real server: its admin is the service user (or makes the scripts one)
        ext = ext_backends.ExternalRedis(ext)
        rhost, rport, user, password = ext.host, ext.port, ext.user, ext.password
        if scripts:
            svc_user = f"{SERVICE_USER}-suite-{os.urandom(3).hex()}"
            ext.make_user(svc_user, svc_password, service_acl.split())
    else:
        rport = h.free_port()
    users = ["--user", SERVICE_USER, "on", ">" + svc_password] + service_acl.split() \
        if scripts else []
    rs = None if ext else subprocess.Popen(
        [REDIS_SERVER, "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir, "--requirepass", password,
         "--protected-mode", "no"] + users,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proxy = None
    try:
        direct = ext.client() if ext else redis.Redis(host="127.0.0.1", port=rport,
                                                      password=password)
        deadline = time.time() + h.scaled(10)
        while not ext:
            try:
                direct.ping()
                break
            except redis.ConnectionError:
                if time.time() > deadline or rs.poll() is not None:
                    raise
                time.sleep(0.05)
        secret = os.urandom(32).hex()
        jwt_file = os.path.join(workdir, "jwt-secret")
        pw_file = os.path.join(workdir, "redis-password")
        with open(jwt_file, "w") as f:
            f.write(secret + "\n")
        with open(pw_file, "w") as f:
            f.write(password + "\n")
        port = h.free_port()
        listener = {"name": "redis", "protocol": "redis", "listen": f"127.0.0.1:{port}",
                    "backend": {"address": f"{rhost}:{rport}", "user": user,
                                "password_file": pw_file}}
        acl_key = None
        if scripts:
            acl_key = os.urandom(32).hex().encode()  # the key is the file's bytes
            key_file = os.path.join(workdir, "acl-key")
            with open(key_file, "wb") as f:
                f.write(acl_key + b"\n")
            with open(pw_file, "w") as f:
                f.write(svc_password + "\n")
            listener["backend"]["user"] = svc_user
            listener["redis"] = {"allow_scripts": True, "acl_key_file": key_file}
        listener.update(listener_extra or {})
        cfg = h.base_config(
            [listener], auth={"jwt": {"algorithms": ["HS256"], "hs256_secret_file": jwt_file}},
            **cfg_extra)
        proxy = h.Proxy(workdir, cfg, name="tg").start()
        yield Env(port, rport, direct, Tokens(secret), proxy, password, acl_key, svc_password,
                  workdir, rhost, user if ext else None, svc_user)
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
            if ext:
                ext.close()
            else:
                rs.terminate()
                try:
                    rs.wait(10)
                except subprocess.TimeoutExpired:
                    rs.kill()
            shutil.rmtree(workdir, ignore_errors=True)
