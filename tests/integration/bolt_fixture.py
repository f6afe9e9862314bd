"""The Bolt test backend (tests/backends/bolt/server.mjs): a Bolt 4.4/5.x server over the
embedded kuzu graph engine, standing in for Neo4j, which cannot be installed here.

  with bolt_backend(schema=SCHEMA) as b:    # a free port, a random user and password
      b.port, b.user, b.password, b.uri("neo4j")
      b.driver(steps)                       # the official JS driver (client/driver.mjs)
      b.log()                               # the server's stderr (--log-messages lines)

The backend runs on 127.0.0.1 with port 0 (the kernel picks a free one); the fixture
waits for its "listening on <port>" line and stops it by PID. `schema` is Cypher run on
every database the backend creates (kuzu needs node and rel tables declared up front).
`driver()` runs client/driver.mjs with a JSON program (see that file) and returns each
step's outcome; it can point at any Bolt server, e.g. tenantgate in front of the backend.
"""

import contextlib
import json
import os
import secrets
import select
import shutil
import subprocess
import tempfile
import time

import tghelpers as h

SOURCE_DIR = h.TG_SOURCE_DIR or os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BOLT_DIR = os.path.join(SOURCE_DIR, "tests", "backends", "bolt")
SERVER = os.path.join(BOLT_DIR, "server.mjs")
DRIVER = os.path.join(BOLT_DIR, "client", "driver.mjs")
NODE = shutil.which("node") or "/usr/bin/node"


def require_node_modules():
    """Fails with the fix when the backend's npm packages are not installed."""
    for pkg in ("kuzu", "neo4j-driver"):
        if not os.path.isdir(os.path.join(BOLT_DIR, "node_modules", pkg)):
            raise AssertionError(
                f"{BOLT_DIR}/node_modules/{pkg} is missing: run `npm ci` in tests/backends/bolt "
                "(tests/run.sh does it)")


def run_driver(program, timeout=120):
    """Runs client/driver.mjs with `program` (a dict); returns the list of step outcomes."""
    p = subprocess.run([NODE, DRIVER], input=json.dumps(program).encode(), capture_output=True,
                       timeout=h.scaled(timeout), cwd=BOLT_DIR)
    if p.returncode != 0:
        raise AssertionError(f"driver.mjs exited {p.returncode}: {p.stderr.decode(errors='replace')}")
    return json.loads(p.stdout)["steps"]


class BoltBackend:
    def __init__(self, proc, port, user, password, log_path):
        self.proc, self.port, self.user, self.password = proc, port, user, password
        self.log_path = log_path
        self.host = "127.0.0.1"

    def uri(self, scheme="bolt"):
        return f"{scheme}://127.0.0.1:{self.port}"

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def driver(self, steps, uri=None, auth=None, config=None, timeout=120):
        program = {"uri": uri or self.uri(), "steps": steps, "config": config or {},
                   "auth": auth or {"scheme": "basic", "user": self.user,
                                    "password": self.password}}
        return run_driver(program, timeout=timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(h.scaled(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _wait_listening(proc, deadline):
    buf = b""
    while time.time() < deadline:
        if proc.poll() is not None:
            break
        r, _, _ = select.select([proc.stdout], [], [], 0.1)
        if not r:
            continue
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            break
        buf += chunk
        if b"\n" in buf:
            line = buf.split(b"\n", 1)[0].decode()
            if line.startswith("listening on "):
                return int(line.split()[2])
            raise AssertionError(f"unexpected first line from the Bolt backend: {line!r}")
    return None


@contextlib.contextmanager
def bolt_backend(schema="", user=None, password=None, args=(), log_messages=True):
    """Starts the backend on a free port; yields a BoltBackend; stops it by PID."""
    require_node_modules()
    workdir = tempfile.mkdtemp(prefix="tg-bolt-")
    user = user or "svc_" + secrets.token_hex(4)
    password = password or secrets.token_urlsafe(18)
    cmd = [NODE, SERVER, "--port", "0", "--user", user, "--password", password]
    if schema:
        schema_path = os.path.join(workdir, "schema.cypher")
        with open(schema_path, "w") as f:
            f.write(schema)
        cmd += ["--schema", schema_path]
    if log_messages:
        cmd.append("--log-messages")
    cmd += list(args)
    log_path = os.path.join(workdir, "backend.log")
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, cwd=BOLT_DIR)
    backend = BoltBackend(proc, None, user, password, log_path)
    try:
        port = _wait_listening(proc, time.time() + h.scaled(30))
        if port is None:
            backend.stop()
            raise AssertionError(f"the Bolt backend did not start (exit {proc.poll()}):\n"
                                 + backend.log())
        backend.port = port
        yield backend
    finally:
        backend.stop()
        proc.stdout.close()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)
