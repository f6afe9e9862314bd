"""Idle memory per connection: N idle client connections through a fresh proxy.

    idle_clients.py --N--> proxy (fresh instance) --N--> idle_server.py

For each proxy in IDLE_PEERS a fresh instance is started in front of the idle
server, its VmRSS read, N connections opened and held (the server's fd count
must grow by N, so the proxy has really paired them), VmRSS read again after
a short settle; the result is (after - before) / N bytes. The proxy holds two
fds per connection, so N is capped below half the process's hard
RLIMIT_NOFILE (and the report says so when it was).
"""

import os
import resource
import subprocess
import sys
import time

from . import peers, procs

HERE = os.path.dirname(os.path.abspath(__file__))


def connections_for(wanted):
    """(N, note): N is `wanted`, or the largest round figure a proxy can hold with its fd limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = ((hard - 1000) // 2 // 1000) * 1000
    if wanted <= cap:
        return wanted, ""
    return cap, ("%d instead of %d connections: the hard RLIMIT_NOFILE is %d and the proxy "
                 "holds 2 fds per connection" % (cap, wanted, hard))


def _start_tenantgate(ctx, backend_port, n):
    port = procs.free_port()
    listener, _ = peers.tcp_listener(ctx, "idle", ("127.0.0.1", backend_port), port)
    proc = peers.start_tenantgate(ctx, "tenantgate-idle", [listener], max_connections=n + 100)
    return proc, port


def _start_haproxy(ctx, backend_port, n):
    port = procs.free_port()
    proc = peers.start_haproxy(ctx, "haproxy-idle", [("idle", port, ("127.0.0.1", backend_port))],
                               maxconn=n + 100)
    return proc, port


# (row label, starter). A starter returns (Proc, listen port) of a fresh instance.
IDLE_PEERS = [
    ("tenantgate-tcp", _start_tenantgate),
    ("haproxy", _start_haproxy),
]


def _wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting for " + what)
        time.sleep(0.2)


def measure_one(ctx, server, label, starter, n):
    proc, port = starter(ctx, server.port_, n)
    row = {"proxy": label, "connections": n, "rss_before": None, "rss_after": None,
           "bytes_per_conn": None, "proxy_fds": None, "error": None}
    clients = None
    try:
        procs.wait_port(port, proc)
        time.sleep(1.0)  # let the probe connection above close on both sides
        base = procs.fd_count(server.pid)
        row["rss_before"] = procs.rss_bytes(proc.pid)
        clients = ctx.reg.start("idle-clients-" + label,
                                [sys.executable, "-B", os.path.join(HERE, "idle_clients.py"),
                                 str(port), str(n)], stdin=subprocess.PIPE)

        def paired():
            if not clients.alive() and clients.popen.returncode != 0:
                raise RuntimeError("idle clients failed: " + clients.log_tail(3))
            if not proc.alive():
                raise RuntimeError("%s died (exit %s): %s"
                                   % (label, proc.popen.returncode, proc.log_tail(5)))
            return procs.fd_count(server.pid) >= base + n

        _wait(paired, 120, "%d connections through %s" % (n, label))
        time.sleep(2.0)
        row["rss_after"] = procs.rss_bytes(proc.pid)
        row["proxy_fds"] = procs.fd_count(proc.pid)
        row["bytes_per_conn"] = (row["rss_after"] - row["rss_before"]) / n
    except Exception as e:
        row["error"] = str(e)
    finally:
        if clients is not None:
            try:
                clients.popen.stdin.close()
            except OSError:
                pass
            ctx.reg.stop(clients)
        ctx.reg.stop(proc)
    return row


def run(ctx, wanted, only=None):
    """Returns (rows, note). `only`: optional set of labels to measure."""
    n, note = connections_for(wanted)
    port = procs.free_port()
    server = ctx.reg.start("idle-backend", [sys.executable, "-B",
                                            os.path.join(HERE, "idle_server.py"), str(port)])
    server.port_ = port
    rows = []
    try:
        procs.wait_port(port, server)
        for label, starter in IDLE_PEERS:
            if only and label not in only:
                continue
            print("bench: idle memory: %s, %d connections" % (label, n), flush=True)
            rows.append(measure_one(ctx, server, label, starter, n))
    finally:
        ctx.reg.stop(server)
    return rows, note
