"""Helpers for tenantgate's integration tests (imported by conftest.py and the tests).

Everything here runs on loopback only:

  * ports:    free_port() picks a port outside the kernel's ephemeral range that
              nothing is bound to, so it cannot collide with a client socket's
              automatically chosen local port; closed_port() is the same thing
              used as "nobody listens here".
  * config:   to_yaml() turns a dict into block YAML; tcp_listener() and
              base_config() build the usual tcp-only configuration.
  * proxy:    Proxy starts `$TG_BIN -c cfg.yaml` (stdout and stderr into a log
              file in the test's tmp dir), waits until every configured port is
              in LISTEN state and owned by that PID (seen in /proc, without
              connecting, so no connection is counted), sends signals by PID,
              samples VmRSS, and stop() asserts exit code 0 and, under
              TG_SANITIZED, no sanitizer report in the log.
  * admin:    http_get() with http.client; parse_metrics()/metric_value() for
              Prometheus text.
  * backends: EchoServer (selectors, one thread, thousands of connections),
              ThreadedServer(handler) (one thread per connection) with the
              handlers slow_sink, source, reset_after, half_close_reply and
              recorder; TLS variants wrap accepted sockets in an ssl context.

Every server binds 127.0.0.1 on a free port and is stopped through its handle
(stop() joins its threads with a timeout); every loop is bounded in count and
in time.
"""

import http.client
import json
import os
import re
import select
import selectors
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
import zlib

TG_BIN = os.environ.get("TG_BIN", "")
TG_SOURCE_DIR = os.environ.get("TG_SOURCE_DIR", "")
SANITIZED = os.environ.get("TG_SANITIZED", "") not in ("", "0")
# Deadlines stretch under ASan/UBSan (everything is several times slower there).
SLOW = 4.0 if SANITIZED else 1.0

SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
    "SUMMARY: AddressSanitizer",
    "SUMMARY: UndefinedBehaviorSanitizer",
    "ThreadSanitizer",
)


def scaled(seconds):
    """A deadline in seconds, stretched under sanitizers."""
    return seconds * SLOW


# ---- ports -------------------------------------------------------------------------------------

_used_ports = set()
_port_lock = threading.Lock()
_port_next = [0]


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except OSError:
        return 32768, 60999


def free_port():
    """A TCP port on 127.0.0.1 that nothing is bound to, outside the ephemeral range."""
    lo, hi = _ephemeral_range()
    # Candidates below the ephemeral range (or above it when it starts low).
    if lo > 12000:
        first, last = 10000, lo - 1
    else:
        first, last = hi + 1, 65535
    span = last - first + 1
    with _port_lock:
        if _port_next[0] == 0:
            _port_next[0] = (os.getpid() * 7919) % span
        for _ in range(2000):
            _port_next[0] = (_port_next[0] + 1) % span
            port = first + _port_next[0]
            if port in _used_ports:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            finally:
                s.close()
            _used_ports.add(port)
            return port
    raise RuntimeError("no free port found")


def closed_port():
    """A port nobody listens on (connecting to it is refused)."""
    return free_port()


# ---- config ------------------------------------------------------------------------------------

_PLAIN = re.compile(r"^[A-Za-z0-9_./:@-]+$")


def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    s = str(v)
    if _PLAIN.match(s) and s not in ("true", "false", "null", "~") and not s[0].isdigit():
        return s
    if _PLAIN.match(s) and ":" in s:  # host:port
        return s
    return json.dumps(s)


def _emit(obj, ind, out):
    pad = "  " * ind
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict) and v:
                out.append(f"{pad}{k}:")
                _emit(v, ind + 1, out)
            elif isinstance(v, list) and v and isinstance(v[0], dict):
                out.append(f"{pad}{k}:")
                _emit(v, ind + 1, out)
            elif isinstance(v, list):
                out.append(f"{pad}{k}: [" + ", ".join(_scalar(x) for x in v) + "]")
            else:
                out.append(f"{pad}{k}: {_scalar(v)}")
    elif isinstance(obj, list):
        for item in obj:
            sub = []
            _emit(item, ind + 1, sub)
            sub[0] = pad + "- " + sub[0][len(pad) + 2:]
            out.extend(sub)
    else:
        raise TypeError(obj)


def to_yaml(cfg):
    """Block-style YAML for a dict of dicts, lists and scalars."""
    out = []
    _emit(cfg, 0, out)
    return "\n".join(out) + "\n"


def tcp_listener(name, port, backend, **extra):
    """A `protocol: tcp` listener on 127.0.0.1:port relaying to backend ("host:port")."""
    d = {
        "name": name,
        "protocol": "tcp",
        "listen": f"127.0.0.1:{port}",
        "unsafe_passthrough": True,
        "backend": {"address": backend},
    }
    for k, v in extra.items():
        if k == "backend_extra":
            d["backend"].update(v)
        else:
            d[k] = v
    return d


def base_config(listeners, admin_port=None, **extra):
    """The common top level: 2 workers, admin on admin_port, JSON logs, a short drain."""
    cfg = {"workers": 2, "drain_timeout_s": 2}
    if admin_port:
        cfg["admin"] = {"listen": f"127.0.0.1:{admin_port}"}
    cfg["log"] = {"level": "info", "format": "json"}
    cfg.update(extra)
    cfg["listeners"] = listeners
    return cfg


def config_ports(cfg):
    """Every port the config makes the proxy listen on."""
    ports = []
    if cfg.get("admin"):
        ports.append(int(cfg["admin"]["listen"].rsplit(":", 1)[1]))
    for listener in cfg.get("listeners", []):
        ports.append(int(listener["listen"].rsplit(":", 1)[1]))
    return ports


# ---- /proc ---------------------------------------------------------------------------------------


def listening_ports(pid):
    """TCP ports in LISTEN state whose sockets belong to process pid."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return set()
    for fd in names:
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if len(parts) > 9 and parts[3] == "0A" and parts[9] in inodes:
                        ports.add(int(parts[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports


def rss_kib(pid):
    """VmRSS of pid in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class RssSampler:
    """Samples VmRSS of a PID every `interval` s in a thread; peak and samples afterwards."""

    def __init__(self, pid, interval=0.02):
        self.pid = pid
        self.interval = interval
        self.samples = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.samples.append(rss_kib(self.pid))
            except (OSError, RuntimeError):
                return
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(5)

    @property
    def peak(self):
        return max(self.samples) if self.samples else 0


# ---- the proxy -----------------------------------------------------------------------------------


class Proxy:
    """One tenantgate process: config file, log file, PID."""

    def __init__(self, workdir, cfg, name="tg"):
        self.dir = str(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.name = name
        self.cfg_path = os.path.join(self.dir, f"{name}.yaml")
        self.log_path = os.path.join(self.dir, f"{name}.log")
        self.cfg = None
        self.proc = None
        self.rc = None
        self.write_config(cfg)

    # config
    def write_config(self, cfg):
        """Writes cfg (a dict, or YAML text) to the config file."""
        self.cfg = cfg if isinstance(cfg, dict) else self.cfg
        text = to_yaml(cfg) if isinstance(cfg, dict) else cfg
        tmp = self.cfg_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.cfg_path)

    @property
    def pid(self):
        return self.proc.pid

    @property
    def admin_port(self):
        return int(self.cfg["admin"]["listen"].rsplit(":", 1)[1])

    def port(self, listener_name):
        for listener in self.cfg["listeners"]:
            if listener["name"] == listener_name:
                return int(listener["listen"].rsplit(":", 1)[1])
        raise KeyError(listener_name)

    # process
    def start(self, wait=True, extra_env=None):
        env = dict(os.environ)
        if extra_env:
            env.update(extra_env)
        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [TG_BIN, "-c", self.cfg_path],
            stdin=subprocess.DEVNULL,
            stdout=self._logf,
            stderr=self._logf,
            env=env,
            cwd=self.dir,
        )
        if wait:
            self.wait_listening(config_ports(self.cfg))
            self.wait_log("tenantgate started")
        self.start_rss = rss_kib(self.pid) if self.running() else 0
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_listening(self, ports, timeout=None):
        """Waits until every port is in LISTEN state and held by this process."""
        deadline = time.monotonic() + (timeout or scaled(10))
        want = set(ports)
        while time.monotonic() < deadline:
            if not self.running():
                raise AssertionError(f"tenantgate exited with {self.proc.returncode}:\n{self.log()}")
            if want <= listening_ports(self.pid):
                return
            time.sleep(0.02)
        raise AssertionError(
            f"ports {sorted(want - listening_ports(self.pid))} not listening:\n{self.log()}")

    def wait_not_listening(self, ports, timeout=None):
        deadline = time.monotonic() + (timeout or scaled(5))
        want = set(ports)
        while time.monotonic() < deadline:
            if not (want & listening_ports(self.pid)):
                return
            time.sleep(0.02)
        raise AssertionError(f"ports {sorted(want & listening_ports(self.pid))} still listening")

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, needle, timeout=None, count=1):
        """Waits until `needle` occurs `count` times in the log; returns the log."""
        deadline = time.monotonic() + (timeout or scaled(10))
        while time.monotonic() < deadline:
            text = self.log()
            if text.count(needle) >= count:
                return text
            if not self.running():
                break
            time.sleep(0.02)
        raise AssertionError(f"{needle!r} not logged:\n{self.log()}")

    def signal(self, sig):
        os.kill(self.pid, sig)

    def sighup(self):
        self.signal(signal.SIGHUP)

    def reload(self, cfg):
        """Writes a new config, sends SIGHUP and waits for the reload's log line; returns it."""
        before = self.log().count("config reloaded") + self.log().count("reload failed")
        self.write_config(cfg)
        self.sighup()
        deadline = time.monotonic() + scaled(10)
        while time.monotonic() < deadline:
            text = self.log()
            if text.count("config reloaded") + text.count("reload failed") > before:
                return text
            time.sleep(0.02)
        raise AssertionError("no reload outcome logged:\n" + self.log())

    def rss(self):
        return rss_kib(self.pid)

    def wait_exit(self, timeout):
        try:
            self.rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.rc

    def check_sanitizers(self):
        text = self.log()
        for marker in SANITIZER_MARKERS:
            assert marker not in text, f"sanitizer report in the log:\n{text}"

    def assert_clean_exit(self):
        assert self.rc == 0, f"tenantgate exited with {self.rc}:\n{self.log()}"
        self.check_sanitizers()

    def stop(self, timeout=None):
        """SIGTERM; waits for the exit; asserts exit code 0 and a clean log. Returns seconds."""
        if self.proc is None:
            return 0.0
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        rc = self.wait_exit(timeout or scaled(15))
        elapsed = time.monotonic() - t0
        if rc is None:
            self.kill()
            raise AssertionError("tenantgate did not exit after SIGTERM:\n" + self.log())
        self.assert_clean_exit()
        return elapsed

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close_files(self):
        f = getattr(self, "_logf", None)
        if f:
            f.close()
            self._logf = None


def run_tg(args, timeout=30, **kw):
    """Runs `$TG_BIN args...`; returns the CompletedProcess (text mode)."""
    return subprocess.run([TG_BIN] + list(args), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


# ---- admin ---------------------------------------------------------------------------------------


def http_get(port, path, method="GET", body=None, headers=None, timeout=5.0):
    """One request to the admin server; returns (status, headers dict, body str)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read().decode("utf-8", "replace")
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


_SAMPLE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*)\})?'
    r' (-?[0-9.eE+-]+|\+Inf|-Inf|NaN)( -?[0-9]+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text -> list of (name, labels dict, value). Asserts every line is well formed."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            if line.startswith("# TYPE") or line.startswith("# HELP"):
                assert len(line.split(" ", 3)) >= 3, line
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = dict(_LABEL.findall(m.group(3) or ""))
        samples.append((m.group(1), labels, float(m.group(4))))
    return samples


def metric_value(samples_or_text, name, **labels):
    """Sum of the samples called name whose labels include `labels`; None when there is none."""
    samples = parse_metrics(samples_or_text) if isinstance(samples_or_text, str) else samples_or_text
    found = [v for n, lab, v in samples
             if n == name and all(lab.get(k) == str(x) for k, x in labels.items())]
    return sum(found) if found else None


def scrape(port, name, **labels):
    status, _, body = http_get(port, "/metrics")
    assert status == 200, body
    return metric_value(body, name, **labels)


def wait_metric(port, name, pred, timeout=None, **labels):
    """Polls /metrics until pred(value) holds; returns the value (asserts on timeout)."""
    deadline = time.monotonic() + (timeout or scaled(5))
    value = None
    while time.monotonic() < deadline:
        value = scrape(port, name, **labels)
        if value is not None and pred(value):
            return value
        time.sleep(0.05)
    raise AssertionError(f"{name}{labels} stayed at {value}")


# ---- sockets -------------------------------------------------------------------------------------


def connect(port, timeout=5.0):
    """A blocking client socket connected to 127.0.0.1:port."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(s, n, timeout=None):
    """Reads exactly n bytes (asserts on EOF or timeout)."""
    if timeout is not None:
        s.settimeout(timeout)
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk, f"EOF after {len(buf)} of {n} bytes"
        buf += chunk
    return bytes(buf)


def echo_roundtrip(s, payload, timeout=5.0):
    s.sendall(payload)
    got = recv_exact(s, len(payload), timeout)
    assert got == payload
    return got


def wait_closed(s, timeout):
    """Reads until EOF or reset within timeout. Returns (how, bytes read, seconds): how is
    "eof" or "reset"; asserts when the connection is still open at the deadline."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    got = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"connection still open after {timeout:.1f}s ({len(got)} bytes)")
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            return "reset", bytes(got), time.monotonic() - t0
        except ssl.SSLError:
            return "reset", bytes(got), time.monotonic() - t0
        if not chunk:
            return "eof", bytes(got), time.monotonic() - t0
        got += chunk


def is_refused(port):
    """True when a connect to 127.0.0.1:port is refused."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        # The SYN met a listening socket that was being closed: not accepted, but not
        # the settled state either; the caller polls again.
        return False
    s.close()
    return False


def wait_refused(port, timeout=None):
    deadline = time.monotonic() + (timeout or scaled(3))
    while time.monotonic() < deadline:
        if is_refused(port):
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError(f"port {port} still accepts connections")


def set_linger0(s):
    """Makes close() send a RST."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


# ---- data ----------------------------------------------------------------------------------------


class Pattern:
    """A stream of `total` pseudo-random bytes, produced block by block: each 256 KiB block is a
    fixed random block whose first 8 bytes carry the block number, so a lost, duplicated or
    reordered block changes the CRC."""

    BLOCK = 256 * 1024

    def __init__(self, total):
        self.total = total
        self.block = bytearray(os.urandom(self.BLOCK))

    def blocks(self):
        sent = 0
        i = 0
        mv = memoryview(self.block)
        while sent < self.total:
            n = min(self.BLOCK, self.total - sent)
            self.block[0:8] = i.to_bytes(8, "little")
            yield mv[:n]
            sent += n
            i += 1


def send_pattern(s, total, pause_every=0, pause_s=0.0):
    """Sends `total` pattern bytes on s; returns (count, crc32)."""
    crc = 0
    count = 0
    next_pause = pause_every
    for block in Pattern(total).blocks():
        s.sendall(block)
        crc = zlib.crc32(block, crc)
        count += len(block)
        if pause_every and count >= next_pause:
            time.sleep(pause_s)
            next_pause += pause_every
    return count, crc


def recv_all(s, pause_every=0, pause_s=0.0, bufsize=256 * 1024, deadline_s=300.0):
    """Reads until EOF; returns (count, crc32). Pauses pause_s every pause_every bytes."""
    buf = bytearray(bufsize)
    mv = memoryview(buf)
    crc = 0
    count = 0
    next_pause = pause_every
    deadline = time.monotonic() + deadline_s
    s.settimeout(30)
    while True:
        n = s.recv_into(buf)
        if n == 0:
            return count, crc
        crc = zlib.crc32(mv[:n], crc)
        count += n
        if pause_every and count >= next_pause:
            time.sleep(pause_s)
            next_pause += pause_every
        if time.monotonic() > deadline:
            raise AssertionError(f"transfer took longer than {deadline_s}s")


# ---- backends ------------------------------------------------------------------------------------


def _listen_socket(port=None, backlog=4096, sockopts=()):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    for opt, value in sockopts:  # inherited by accepted sockets (buffer sizes)
        s.setsockopt(socket.SOL_SOCKET, opt, value)
    s.bind(("127.0.0.1", port or free_port()))
    s.listen(backlog)
    return s


class EchoServer:
    """Echoes every byte back; one thread, non-blocking sockets, a selector.

    Per connection at most 1 MiB waits to be sent back; beyond that it stops reading
    (backpressure). On the client's EOF it sends what is left and closes.
    Counters: accepted (connections ever accepted), open (now), used (connections that
    sent at least one byte; tenantgate's readiness probes connect and close without data).
    """

    MAX_PENDING = 1 << 20

    def __init__(self, port=None):
        self.port = port or free_port()
        self.accepted = 0
        self.open = 0
        self.used = 0
        self._stop = threading.Event()
        self._sel = selectors.DefaultSelector()
        self._lsock = None
        self._t = None
        self._conns = {}

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        self._lsock = _listen_socket(self.port)
        self._lsock.setblocking(False)
        self._sel.register(self._lsock, selectors.EVENT_READ, None)
        self._t = threading.Thread(target=self._run, name="echo", daemon=True)
        self._t.start()
        return self

    def _update(self, s, st):
        ev = 0
        if not st["eof"] and len(st["out"]) < self.MAX_PENDING:
            ev |= selectors.EVENT_READ
        if st["out"]:
            ev |= selectors.EVENT_WRITE
        if ev == 0:
            if st["eof"]:
                self._close(s)
                return
            ev = selectors.EVENT_WRITE
        if ev != st["ev"]:
            self._sel.modify(s, ev, st)
            st["ev"] = ev

    def _close(self, s):
        try:
            self._sel.unregister(s)
        except (KeyError, ValueError):
            pass
        self._conns.pop(s, None)
        s.close()
        self.open -= 1

    def _run(self):
        while not self._stop.is_set():
            for key, ev in self._sel.select(timeout=0.05):
                if key.data is None:
                    for _ in range(256):  # bounded accept burst
                        try:
                            c, _ = self._lsock.accept()
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError:
                            break
                        c.setblocking(False)
                        st = {"out": bytearray(), "eof": False, "ev": selectors.EVENT_READ}
                        self._conns[c] = st
                        self._sel.register(c, selectors.EVENT_READ, st)
                        self.accepted += 1
                        self.open += 1
                    continue
                s, st = key.fileobj, key.data
                if s not in self._conns:
                    continue
                try:
                    if ev & selectors.EVENT_READ:
                        data = s.recv(65536)
                        if data:
                            if not st["out"] and not st.get("used"):
                                st["used"] = True
                                self.used += 1
                            st["out"] += data
                        else:
                            st["eof"] = True
                    if st["out"]:
                        try:
                            n = s.send(st["out"])
                            del st["out"][:n]
                        except BlockingIOError:
                            pass
                except (ConnectionError, OSError):
                    self._close(s)
                    continue
                if st["eof"] and not st["out"]:
                    self._close(s)
                    continue
                self._update(s, st)

    def stop(self):
        self._stop.set()
        if self._t:
            self._t.join(5)
        for s in list(self._conns):
            try:
                s.close()
            except OSError:
                pass
        self._conns.clear()
        if self._lsock:
            self._lsock.close()
        self._sel.close()


class ThreadedServer:
    """Accepts connections and runs handler(sock, server) in one thread per connection.

    handler results go into server.results (a list); exceptions into server.errors.
    With ssl_ctx, each accepted socket is wrapped (server side) before the handler runs.
    sockopts: (SOL_SOCKET option, value) pairs set on the listening socket (inherited).

    tenantgate's readiness probe connects to every backend every 2 s and closes at once
    without sending anything. Such a connection (EOF with no data within 0.2 s of the
    accept) is counted in server.probes and not handed to the handler.
    """

    def __init__(self, handler, port=None, ssl_ctx=None, sockopts=()):
        self.handler = handler
        self.port = port or free_port()
        self.ssl_ctx = ssl_ctx
        self.sockopts = sockopts
        self.results = []
        self.errors = []
        self.accepted = 0
        self.probes = 0
        self.event = threading.Event()  # set by handlers that finish
        self._stop = threading.Event()
        self._lsock = None
        self._t = None
        self._threads = []
        self._socks = []
        self._lock = threading.Lock()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        self._lsock = _listen_socket(self.port, backlog=128, sockopts=self.sockopts)
        self._lsock.settimeout(0.05)
        self._t = threading.Thread(target=self._accept_loop, name="srv-accept", daemon=True)
        self._t.start()
        return self

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                c, _ = self._lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self._socks.append(c)
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            self._threads.append(t)
            t.start()

    def _is_probe(self, c):
        readable, _, _ = select.select([c], [], [], 0.2)
        if not readable:
            return False
        try:
            return c.recv(1, socket.MSG_PEEK) == b""
        except ConnectionError:
            return True

    def _serve(self, c):
        try:
            if self._is_probe(c):
                with self._lock:
                    self.probes += 1
                c.close()
                return
            c.settimeout(60)
            if self.ssl_ctx is not None:
                c = self.ssl_ctx.wrap_socket(c, server_side=True)
                with self._lock:
                    self._socks.append(c)
            r = self.handler(c, self)
            with self._lock:
                self.results.append(r)
        except Exception as e:  # recorded, the test decides
            with self._lock:
                self.errors.append(e)
        finally:
            try:
                c.close()
            except OSError:
                pass
            self.event.set()

    def wait_results(self, n, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.results) + len(self.errors) >= n:
                    return list(self.results)
            time.sleep(0.01)
        raise AssertionError(f"{len(self.results)} results, {len(self.errors)} errors: {self.errors}")

    def stop(self):
        self._stop.set()
        if self._t:
            self._t.join(5)
        if self._lsock:
            self._lsock.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(5)


# Handlers for ThreadedServer -------------------------------------------------------------------


def echo_handler(c, srv):
    """Blocking echo until EOF (used behind TLS)."""
    n = 0
    while True:
        data = c.recv(65536)
        if not data:
            return n
        c.sendall(data)
        n += len(data)


def write_then_read(total):
    """Writes `total` pattern bytes first (blocking, reading nothing meanwhile, as a server
    streaming a large result does), then reads the peer's bytes until EOF.
    Result {sent: (count, crc), got: (count, crc)}."""
    def handler(c, srv):
        sent = send_pattern(c, total)
        got = recv_all(c)
        return {"sent": sent, "got": got}
    return handler


def slow_sink(pause_every, pause_s):
    """Reads until EOF, pausing pause_s every pause_every bytes; result {count, crc}."""
    def handler(c, srv):
        count, crc = recv_all(c, pause_every, pause_s)
        return {"count": count, "crc": crc}
    return handler


def source(total):
    """Writes `total` pattern bytes, then half-closes and waits for the peer's EOF."""
    def handler(c, srv):
        count, crc = send_pattern(c, total)
        c.shutdown(socket.SHUT_WR)
        c.settimeout(30)
        while c.recv(65536):
            pass
        return {"count": count, "crc": crc}
    return handler


def reset_after(payload, delay):
    """Sends payload, waits delay seconds, then resets the connection (SO_LINGER 0)."""
    def handler(c, srv):
        c.sendall(payload)
        time.sleep(delay)
        set_linger0(c)
        c.close()
        return "reset"
    return handler


def half_close_reply(reply):
    """Reads the request until EOF, then sends reply and closes; result = request bytes."""
    def handler(c, srv):
        req = bytearray()
        while True:
            data = c.recv(65536)
            if not data:
                break
            req += data
        c.sendall(reply)
        c.shutdown(socket.SHUT_WR)
        return bytes(req)
    return handler


def recorder(c, srv):
    """Reads until EOF or error; result {how: eof|reset|timeout, count, t: monotonic time}."""
    n = 0
    c.settimeout(30)
    try:
        while True:
            data = c.recv(65536)
            if not data:
                return {"how": "eof", "count": n, "t": time.monotonic()}
            n += len(data)
    except (ConnectionResetError, BrokenPipeError):
        return {"how": "reset", "count": n, "t": time.monotonic()}
    except socket.timeout:
        return {"how": "timeout", "count": n, "t": time.monotonic()}


class BlackholeServer:
    """A listening socket whose accept queue is full (backlog 0, one connection parked and
    never accepted): further connects get no SYN-ACK and hang until the caller gives up."""

    def __init__(self):
        self.port = free_port()
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.bind(("127.0.0.1", self.port))
        self._lsock.listen(0)
        self._filler = []
        for _ in range(4):  # until a connect times out: the queue is full
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(0.3)
            try:
                s.connect(("127.0.0.1", self.port))
            except (socket.timeout, OSError):
                s.close()
                return
            self._filler.append(s)
        raise RuntimeError("could not fill the accept queue")

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def stop(self):
        for s in self._filler:
            s.close()
        self._lsock.close()
