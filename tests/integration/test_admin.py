"""The admin HTTP server (admin.listen): /healthz, /readyz, /metrics, and its limits.

Readiness follows the backend probes, which run every 2 s, so readiness checks poll
with a bounded wait.
"""

import socket
import time

import tghelpers as h

PROBE_WAIT = h.scaled(7)  # two probe rounds and some slack


def start_proxy(tg, ports, backend):
    return tg(h.base_config([h.tcp_listener("relay", ports(), backend)], ports()))


def poll_readyz(port, status, timeout=PROBE_WAIT, pred=lambda body: True):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = h.http_get(port, "/readyz")
        if last[0] == status and pred(last[2]):
            return last
        time.sleep(0.1)
    raise AssertionError(f"/readyz never answered {status}; last answer: {last}")


def test_healthz(tg, echo, ports):
    p = start_proxy(tg, ports, echo.address)
    status, headers, body = h.http_get(p.admin_port, "/healthz")
    assert (status, body) == (200, "ok\n")
    assert headers["content-type"].startswith("text/plain")
    assert headers["connection"].lower() == "close"
    status, headers, body = h.http_get(p.admin_port, "/healthz", method="HEAD")
    assert (status, body) == (200, "")


def test_readyz_backend_up(tg, echo, ports):
    p = start_proxy(tg, ports, echo.address)
    status, _, body = poll_readyz(p.admin_port, 200)
    assert body == "ready\n"


def test_readyz_backend_down_then_up(tg, ports):
    """A backend nobody listens on -> 503 with the listener, the address and why; once the
    backend comes up, the next probe makes /readyz 200."""
    backend_port = h.closed_port()
    p = start_proxy(tg, ports, f"127.0.0.1:{backend_port}")
    status, _, body = poll_readyz(p.admin_port, 503, pred=lambda b: "not probed yet" not in b)
    assert body.startswith("not ready: ")
    assert "relay" in body and f"127.0.0.1:{backend_port}" in body
    assert "refused" in body.lower(), body
    backend = h.EchoServer(port=backend_port).start()
    try:
        status, _, body = poll_readyz(p.admin_port, 200)
        assert body == "ready\n"
    finally:
        backend.stop()


def test_metrics_prometheus_text(tg, echo, ports):
    p = start_proxy(tg, ports, echo.address)
    status, headers, body = h.http_get(p.admin_port, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    assert "version=0.0.4" in headers["content-type"]
    assert int(headers["content-length"]) == len(body.encode())
    samples = h.parse_metrics(body)  # asserts every sample line is well formed
    families = {}
    for line in body.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert name not in families, f"family {name} declared twice"
            families[name] = kind
    for name, _, _ in samples:
        base = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[: -len(suffix)] in families:
                base = name[: -len(suffix)]
        assert base in families, f"sample {name} without a # TYPE line"
    assert families["tenantgate_connections_open"] == "gauge"
    assert families["tenantgate_connections_total"] == "counter"
    assert families["tenantgate_bytes_total"] == "counter"
    assert families["tenantgate_backend_connect_seconds"] == "histogram"
    assert any(n.startswith("tenantgate_") for n, _, _ in samples)
    assert h.metric_value(samples, "tenantgate_connections_open", listener="relay",
                          protocol="tcp") == 0
    rss = h.metric_value(samples, "process_resident_memory_bytes")
    assert rss and rss > 1024 * 1024
    assert h.metric_value(samples, "process_open_fds") >= 5
    start = h.metric_value(samples, "process_start_time_seconds")
    assert abs(start - time.time()) < 120
    assert h.metric_value(samples, "process_cpu_seconds_total") is not None


def test_metrics_counters_grow_with_traffic(tg, echo, ports):
    p = start_proxy(tg, ports, echo.address)

    def snapshot():
        _, _, body = h.http_get(p.admin_port, "/metrics")
        s = h.parse_metrics(body)
        out = {d: h.metric_value(s, "tenantgate_bytes_total", listener="relay", direction=d)
               for d in ("client_in", "client_out", "backend_in", "backend_out")}
        out["conns"] = h.metric_value(s, "tenantgate_connections_total", listener="relay")
        out["connect_count"] = h.metric_value(s, "tenantgate_backend_connect_seconds_count",
                                              listener="relay")
        return out

    before = snapshot()
    with h.connect(p.port("relay")) as s:
        h.echo_roundtrip(s, b"m" * 10_000)
        h.echo_roundtrip(s, b"n" * 2_345)
    after = snapshot()
    for d in ("client_in", "client_out", "backend_in", "backend_out"):
        assert after[d] - before[d] == 12_345, (d, before, after)
    assert after["conns"] - before["conns"] == 1
    assert after["connect_count"] - before["connect_count"] == 1


def test_sidecar_probe_aliases(tg, echo, ports):
    """/liveness and /startup answer like /healthz, /readiness like /readyz (Kubernetes probes)."""
    p = start_proxy(tg, ports, echo.address)
    assert h.http_get(p.admin_port, "/liveness")[::2] == (200, "ok\n")
    assert h.http_get(p.admin_port, "/startup")[::2] == (200, "started\n")
    deadline = time.monotonic() + PROBE_WAIT
    while h.http_get(p.admin_port, "/readiness")[0] != 200:
        assert time.monotonic() < deadline, "/readiness never became 200"
        time.sleep(0.1)
    assert h.http_get(p.admin_port, "/readiness")[2] == "ready\n"


def test_quitquitquit_disabled_by_default(tg, echo, ports):
    p = start_proxy(tg, ports, echo.address)
    status, _, _ = h.http_get(p.admin_port, "/quitquitquit", method="POST")
    assert status == 404
    time.sleep(0.3)
    assert p.running()
    assert "draining" not in p.log()


def test_quitquitquit_drains_and_exits(tg, echo, ports):
    """POST /quitquitquit: 200, then the SIGTERM drain: the open session keeps working,
    new connections are refused, and the process exits 0 once the session closes. A second
    POST does not turn the drain into a hard stop."""
    cfg = h.base_config([h.tcp_listener("relay", ports(), echo.address)], ports(),
                        drain_timeout_s=30)
    cfg["admin"]["quitquitquit"] = True
    p = tg(cfg)
    status, headers, _ = h.http_get(p.admin_port, "/quitquitquit")
    assert status == 405 and headers.get("allow") == "POST"
    s = h.connect(p.port("relay"))
    h.echo_roundtrip(s, b"before\n")
    status, _, body = h.http_get(p.admin_port, "/quitquitquit", method="POST")
    assert (status, body) == (200, "draining\n")
    p.wait_log("draining")
    h.wait_refused(p.port("relay"), timeout=h.scaled(1))
    assert h.http_get(p.admin_port, "/quitquitquit", method="POST")[0] == 200
    time.sleep(0.3)
    assert p.running()
    h.echo_roundtrip(s, b"during the drain\n")
    s.close()
    assert p.wait_exit(h.scaled(5)) == 0, p.log()
    p.assert_clean_exit()


def test_unknown_path_is_404(tg, echo, ports):
    p = start_proxy(tg, ports, echo.address)
    for path in ("/", "/metricsx", "/admin", "/healthz/../metrics"):
        status, _, _ = h.http_get(p.admin_port, path)
        assert status == 404, path


def test_post_is_405(tg, echo, ports):
    p = start_proxy(tg, ports, echo.address)
    for path in ("/metrics", "/healthz", "/readyz"):
        status, headers, _ = h.http_get(p.admin_port, path, method="POST", body=b"x=1")
        assert status == 405, path
        assert "GET" in headers.get("allow", "")
    status, _, _ = h.http_get(p.admin_port, "/metrics", method="DELETE")
    assert status == 405


def _raw_exchange(port, data, timeout=5.0):
    """Sends data on a fresh connection; returns what came back until close (or reset)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        how, got, _ = h.wait_closed(s, timeout)
        return got


def test_oversized_request_is_refused(tg, echo, ports):
    p = start_proxy(tg, ports, echo.address)
    big = (b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * 9000 + b"\r\n\r\n")
    got = _raw_exchange(p.admin_port, big)
    assert not got.startswith(b"HTTP/1.1 200"), got[:200]
    assert got == b"" or got.startswith(b"HTTP/1.1 431") or got.startswith(b"HTTP/1.1 400"), got
    # Many header lines adding up to more than 8 KiB, too.
    many = b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 90)
                                                   for i in range(120)) + b"\r\n"
    got = _raw_exchange(p.admin_port, many)
    assert not got.startswith(b"HTTP/1.1 200"), got[:200]
    # The server still answers.
    assert h.http_get(p.admin_port, "/healthz")[0] == 200


def test_slow_and_garbage_clients_do_not_block(tg, echo, ports):
    p = start_proxy(tg, ports, echo.address)
    t_open = time.monotonic()
    slow = []
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", p.admin_port), timeout=5)
        s.sendall(b"GET /metr")  # and nothing more
        slow.append(s)
    silent = socket.create_connection(("127.0.0.1", p.admin_port), timeout=5)
    try:
        got = _raw_exchange(p.admin_port, b"\x16\x03\x01\x00\xa5garbage\x00\xff\r\n\r\n")
        assert got == b"" or got.startswith(b"HTTP/1.1 400"), got[:200]
        worst = 0.0
        for _ in range(20):
            t0 = time.monotonic()
            status, _, body = h.http_get(p.admin_port, "/healthz", timeout=2)
            worst = max(worst, time.monotonic() - t0)
            assert (status, body) == (200, "ok\n")
        assert worst < h.scaled(0.5), f"a /healthz took {worst:.2f}s"
        assert h.http_get(p.admin_port, "/metrics", timeout=2)[0] == 200
        # The stalled clients are dropped by the admin server's 5 s deadline.
        for s in slow + [silent]:
            how, data, _ = h.wait_closed(s, t_open + h.scaled(9) - time.monotonic())
            assert not data.startswith(b"HTTP/1.1 200")
        waited = time.monotonic() - t_open
        assert waited >= 4.0, f"stalled clients dropped after only {waited:.1f}s"
    finally:
        for s in slow + [silent]:
            s.close()
