"""protocol: tcp relay, end to end: Python clients -> tenantgate -> Python backends.

Covers: bytes both ways; 1 GiB each way through one connection with a slow reader
on the far side (data count + CRC32, the proxy's VmRSS stays bounded); full-duplex
echo under backpressure; half-close in both orders; data and EOF sent before the
backend connect completes; 1,000 concurrent connections (the connections_open gauge,
the proxy's fds afterwards); backend and client resets mid-stream (also while the
proxy holds the backend back); an unreachable, a silent and a named backend;
max_connections; timeouts.idle_s and timeouts.connect_ms.

Backends count only connections that carry data or pass the probe filter: the
proxy's readiness probe connects to every backend every 2 s (see tghelpers).
"""

import os
import socket
import threading
import time

import tghelpers as h

MIB = 1024 * 1024
# ASan/UBSan builds are several times slower: a quarter of the data, a looser bound
# (ASan's allocator keeps freed memory in quarantine and has its own metadata).
BIG = (256 if h.SANITIZED else 1024) * MIB
RSS_BOUND_KIB = (64 if h.SANITIZED else 48) * 1024
PAUSE_EVERY = 32 * MIB
PAUSE_S = 0.15


def relay_config(ports, backend, admin=True, **listener_extra):
    admin_port = ports() if admin else None
    return h.base_config([h.tcp_listener("relay", ports(), backend, **listener_extra)], admin_port)


def report(capsys, text):
    with capsys.disabled():
        print("\n    " + text)


def test_roundtrip_both_ways(tg, echo, server, ports):
    """Bytes sent by the client come back unchanged; a backend that speaks first is heard."""
    banner = server(lambda c, srv: (c.sendall(b"220 hello from the backend\r\n"),
                                    h.echo_handler(c, srv))[1])
    cfg = h.base_config([h.tcp_listener("relay", ports(), echo.address),
                         h.tcp_listener("banner", ports(), banner.address)], ports())
    p = tg(cfg)
    with h.connect(p.port("relay")) as s:
        for payload in (b"x", b"hello tenantgate\n", bytes(range(256)) * 4, b"\0" * 200_000):
            h.echo_roundtrip(s, payload)
        # Many small writes in a row arrive complete and in order.
        for i in range(200):
            s.sendall(b"%05d" % i)
        assert h.recv_exact(s, 1000, 5) == b"".join(b"%05d" % i for i in range(200))
    with h.connect(p.port("banner")) as s:
        assert h.recv_exact(s, 28, 5) == b"220 hello from the backend\r\n"
        h.echo_roundtrip(s, b"and back\n")
    assert echo.used == 1


def _transfer_report(capsys, what, nbytes, seconds, p, sampler):
    growth = sampler.peak - p.start_rss
    report(capsys, f"{what}: {nbytes / MIB:.0f} MiB in {seconds:.1f}s "
                   f"({nbytes / MIB / max(seconds, 1e-6):.0f} MiB/s); proxy VmRSS start "
                   f"{p.start_rss / 1024:.1f} MiB, peak {sampler.peak / 1024:.1f} MiB "
                   f"(+{growth / 1024:.1f} MiB, bound +{RSS_BOUND_KIB / 1024:.0f} MiB), "
                   f"{len(sampler.samples)} samples")
    assert len(sampler.samples) > 10
    assert growth < RSS_BOUND_KIB, f"VmRSS grew by {growth} KiB"


def test_big_upload_to_slow_backend(tg, server, ports, capsys):
    """BIG bytes client -> backend over one connection; the backend pauses 0.15 s every 32 MiB."""
    sink = server(h.slow_sink(PAUSE_EVERY, PAUSE_S))
    p = tg(relay_config(ports, sink.address))
    with h.RssSampler(p.pid) as sampler:
        t0 = time.monotonic()
        with h.connect(p.port("relay"), timeout=60) as s:
            count, crc = h.send_pattern(s, BIG)
            s.shutdown(socket.SHUT_WR)
            how, extra, _ = h.wait_closed(s, h.scaled(30))
        got = sink.wait_results(1, h.scaled(30))[0]
        seconds = time.monotonic() - t0
    assert not sink.errors, sink.errors
    assert (count, how, extra) == (BIG, "eof", b"")
    assert got["count"] == BIG
    assert got["crc"] == crc
    _transfer_report(capsys, "upload", BIG, seconds, p, sampler)


def test_big_download_to_slow_client(tg, server, ports, capsys):
    """BIG bytes backend -> client over one connection; the client pauses 0.15 s every 32 MiB."""
    src = server(h.source(BIG))
    p = tg(relay_config(ports, src.address))
    with h.RssSampler(p.pid) as sampler:
        t0 = time.monotonic()
        with h.connect(p.port("relay"), timeout=60) as s:
            count, crc = h.recv_all(s, PAUSE_EVERY, PAUSE_S)
        sent = src.wait_results(1, h.scaled(30))[0]
        seconds = time.monotonic() - t0
    assert not src.errors, src.errors
    assert sent["count"] == BIG
    assert count == BIG
    assert crc == sent["crc"]
    _transfer_report(capsys, "download", BIG, seconds, p, sampler)


def test_half_close(tg, server, ports):
    """The client's EOF reaches the backend, which can still answer; then both close."""
    srv = server(h.half_close_reply(b"reply after your EOF\n" * 1000))
    p = tg(relay_config(ports, srv.address))
    with h.connect(p.port("relay")) as s:
        s.sendall(b"request line 1\nrequest line 2\n")
        s.shutdown(socket.SHUT_WR)
        how, data, _ = h.wait_closed(s, h.scaled(5))
    assert how == "eof"
    assert data == b"reply after your EOF\n" * 1000
    req = srv.wait_results(1, h.scaled(5))[0]
    assert req == b"request line 1\nrequest line 2\n"
    assert not srv.errors
    h.wait_metric(p.admin_port, "tenantgate_connections_open", lambda v: v == 0, listener="relay")


def test_half_close_backend_first(tg, server, ports):
    """The backend sends its greeting and half-closes first; the client sees EOF, then still
    sends its request, which the backend receives before the client's EOF."""
    def greet_then_read(c, srv):
        c.sendall(b"greeting, then EOF\n")
        c.shutdown(socket.SHUT_WR)
        req = bytearray()
        while True:
            data = c.recv(65536)
            if not data:
                return bytes(req)
            req += data

    srv = server(greet_then_read)
    p = tg(relay_config(ports, srv.address))
    with h.connect(p.port("relay")) as s:
        how, data, _ = h.wait_closed(s, h.scaled(5))
        assert (how, data) == ("eof", b"greeting, then EOF\n")
        s.sendall(b"late request " * 10000)
        s.shutdown(socket.SHUT_WR)
        assert srv.wait_results(1, h.scaled(5)) == [b"late request " * 10000]
        how, data, _ = h.wait_closed(s, h.scaled(5))
        assert data == b""
    h.wait_metric(p.admin_port, "tenantgate_connections_open", lambda v: v == 0, listener="relay")


def test_send_and_close_before_backend_is_ready(tg, server, ports):
    """Bytes and EOF sent right after connecting (before the backend connect completes) are
    delivered, then the EOF."""
    srv = server(h.recorder)
    p = tg(relay_config(ports, srv.address))
    for i in range(5):
        s = h.connect(p.port("relay"))
        s.sendall(b"q" * 1000)
        s.close()
    results = srv.wait_results(5, h.scaled(5))
    assert [(r["how"], r["count"]) for r in results] == [("eof", 1000)] * 5
    h.wait_metric(p.admin_port, "tenantgate_connections_open", lambda v: v == 0, listener="relay")


def _duplex(port, total):
    """Sends `total` pattern bytes while a second thread reads the echo; returns
    (sent (count, crc), received {count, crc})."""
    with h.connect(port, timeout=h.scaled(8)) as s:
        got = {}

        def read():
            got.update(zip(("count", "crc"), h.recv_all(s, deadline_s=h.scaled(60))))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            sent = h.send_pattern(s, total)
            s.shutdown(socket.SHUT_WR)
        except socket.timeout:
            sent = None
        reader.join(h.scaled(10))
        stuck = reader.is_alive()
    reader.join(5)
    assert sent is not None and not stuck, "the echo stalled: the relay deadlocked"
    return sent, got


def test_full_duplex_echo(tg, echo, ports):
    """64 MiB through an echo backend while reading concurrently: both directions flow at
    once under backpressure, nothing is lost or reordered."""
    p = tg(relay_config(ports, echo.address))
    (count, crc), got = _duplex(p.port("relay"), 64 * MIB)
    assert got == {"count": 64 * MIB, "crc": crc}


def test_full_duplex_backend_writes_before_reading(tg, server, ports):
    """The backend streams 32 MiB before it reads anything, while the client streams 32 MiB
    to it and reads at the same time (fine on a direct connection). The relay must keep
    draining the backend while the client->backend direction is congested; otherwise the
    backend never finishes writing, never reads, and both ends wait forever."""
    total = 32 * MIB
    srv = server(h.write_then_read(total))
    p = tg(relay_config(ports, srv.address))
    (count, crc), got = _duplex(p.port("relay"), total)
    res = srv.wait_results(1, h.scaled(10))[0]
    assert got == {"count": total, "crc": res["sent"][1]}
    assert res["got"] == (total, crc)


def test_thousand_concurrent_connections(tg, echo, ports):
    """1,000 connections open at once, each echoes; the gauge reads 1000, then 0."""
    n = 1000
    p = tg(relay_config(ports, echo.address))
    fds_before = len(os.listdir(f"/proc/{p.pid}/fd"))
    socks = []
    try:
        for _ in range(n):
            socks.append(h.connect(p.port("relay"), timeout=h.scaled(10)))
        for i, s in enumerate(socks):
            s.sendall(b"conn %05d\n" % i)
        for i, s in enumerate(socks):
            assert h.recv_exact(s, 11, h.scaled(10)) == b"conn %05d\n" % i
        # Every connection is open and has just been used.
        h.wait_metric(p.admin_port, "tenantgate_connections_open", lambda v: v == n,
                      listener="relay")
        assert echo.used == n
        # All still usable after the scrape.
        for i, s in enumerate(socks[::97]):
            h.echo_roundtrip(s, b"again %d" % i)
        total = h.scrape(p.admin_port, "tenantgate_connections_total", listener="relay")
        assert total == n
    finally:
        for s in socks:
            s.close()
    h.wait_metric(p.admin_port, "tenantgate_connections_open", lambda v: v == 0,
                  timeout=h.scaled(10), listener="relay")
    deadline = time.monotonic() + h.scaled(10)
    while echo.open and time.monotonic() < deadline:
        time.sleep(0.05)
    assert echo.open == 0
    # Every socket of the 2,000 the proxy held is closed again.
    while len(os.listdir(f"/proc/{p.pid}/fd")) > fds_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(os.listdir(f"/proc/{p.pid}/fd")) <= fds_before


def test_backend_reset_midstream(tg, server, echo, ports):
    """A backend that resets mid-stream: the client sees EOF/reset promptly, and the proxy
    keeps serving new connections."""
    payload = bytes(range(256)) * 400  # 100 KiB
    srv = server(h.reset_after(payload, 0.3))
    cfg = h.base_config([h.tcp_listener("reset", ports(), srv.address),
                         h.tcp_listener("echo", ports(), echo.address)], ports())
    p = tg(cfg)
    for attempt in range(3):
        with h.connect(p.port("reset")) as s:
            s.sendall(b"GET something\n")
            how, data, seconds = h.wait_closed(s, h.scaled(3))
        assert how in ("eof", "reset")
        assert payload.startswith(data)
        assert len(data) > 0, "nothing of the stream arrived before the reset"
        assert seconds < h.scaled(2), f"closed only after {seconds:.2f}s"
    assert srv.wait_results(3, 5) == ["reset"] * 3
    with h.connect(p.port("echo")) as s:
        h.echo_roundtrip(s, b"still serving\n")
    h.wait_metric(p.admin_port, "tenantgate_connections_open", lambda v: v == 0, listener="reset")


def test_client_reset_midstream(tg, server, ports):
    """A client that resets mid-stream: the backend sees the connection close promptly."""
    srv = server(h.recorder)
    p = tg(relay_config(ports, srv.address))
    s = h.connect(p.port("relay"))
    s.sendall(b"y" * 65536)
    time.sleep(0.2)
    h.set_linger0(s)
    t_reset = time.monotonic()
    s.close()
    got = srv.wait_results(1, h.scaled(5))[0]
    assert got["how"] in ("eof", "reset")
    assert got["count"] == 65536
    assert got["t"] - t_reset < h.scaled(2)
    h.wait_metric(p.admin_port, "tenantgate_connections_open", lambda v: v == 0, listener="relay")


def test_client_reset_during_download(tg, server, ports):
    """The client stops reading (the proxy is holding back the backend) and then resets: the
    backend, blocked writing, sees the connection fail promptly."""
    src = server(h.source(BIG))
    p = tg(relay_config(ports, src.address))
    s = h.connect(p.port("relay"))
    h.recv_exact(s, MIB, 10)
    time.sleep(0.5)  # the buffers on the way fill up; the proxy stops reading the backend
    h.set_linger0(s)
    t_reset = time.monotonic()
    s.close()
    src.wait_results(1, h.scaled(5))
    assert time.monotonic() - t_reset < h.scaled(2)
    assert len(src.errors) == 1 and isinstance(src.errors[0], (ConnectionError, OSError))
    h.wait_metric(p.admin_port, "tenantgate_connections_open", lambda v: v == 0, listener="relay")


def test_backend_unreachable(tg, ports):
    """Nobody listens at the backend address: the client is closed promptly and
    backend_connect_errors counts each attempt."""
    p = tg(relay_config(ports, f"127.0.0.1:{h.closed_port()}"))
    before = h.scrape(p.admin_port, "tenantgate_backend_connect_errors_total", listener="relay")
    assert before == 0
    for _ in range(3):
        with h.connect(p.port("relay")) as s:
            try:
                s.sendall(b"hello?\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            how, data, seconds = h.wait_closed(s, h.scaled(3))
        assert data == b""
        assert seconds < h.scaled(2)
    h.wait_metric(p.admin_port, "tenantgate_backend_connect_errors_total", lambda v: v == 3,
                  listener="relay")
    assert "backend connect failed" in p.log()


def test_backend_connect_timeout(tg, ports):
    """A backend that never answers the SYN: timeouts.connect_ms closes the client and counts a
    backend connect error."""
    hole = h.BlackholeServer()
    try:
        p = tg(relay_config(ports, hole.address, timeouts={"connect_ms": 500}))
        with h.connect(p.port("relay")) as s:
            how, data, seconds = h.wait_closed(s, h.scaled(4))
        assert data == b""
        assert 0.4 <= seconds < h.scaled(2.5), seconds
        assert h.scrape(p.admin_port, "tenantgate_backend_connect_errors_total",
                        listener="relay") == 1
        assert "backend connect timeout" in p.log()
    finally:
        hole.stop()


def test_backend_by_host_name(tg, echo, ports):
    """A backend given by name ("localhost:port") is resolved and relayed to."""
    p = tg(relay_config(ports, f"localhost:{echo.port}"))
    with h.connect(p.port("relay")) as s:
        s.sendall(b"sent before the backend is resolved\n")
        assert h.recv_exact(s, 36, 5) == b"sent before the backend is resolved\n"
        h.echo_roundtrip(s, b"and after\n")


def test_max_connections(tg, echo, ports):
    """max_connections: 3 -> a 4th concurrent connection is closed without reaching the backend;
    once one closes, a new one is served."""
    p = tg(relay_config(ports, echo.address, max_connections=3))
    socks = [h.connect(p.port("relay")) for _ in range(3)]
    try:
        for i, s in enumerate(socks):
            h.echo_roundtrip(s, b"slot %d\n" % i)
        with h.connect(p.port("relay")) as extra:
            try:
                extra.sendall(b"let me in\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            how, data, seconds = h.wait_closed(extra, h.scaled(3))
        assert data == b""
        assert echo.used == 3
        rejected = h.scrape(p.admin_port, "tenantgate_messages_rejected_total", listener="relay",
                            reason="max_connections")
        assert rejected == 1
        # The first three still work.
        for i, s in enumerate(socks):
            h.echo_roundtrip(s, b"still %d\n" % i)
        socks.pop().close()
        h.wait_metric(p.admin_port, "tenantgate_connections_open", lambda v: v == 2,
                      listener="relay")
        with h.connect(p.port("relay")) as again:
            h.echo_roundtrip(again, b"freed slot\n")
        assert echo.used == 4
    finally:
        for s in socks:
            s.close()


def test_idle_timeout(tg, echo, ports):
    """timeouts.idle_s: 1 closes an idle connection after about a second; an active one
    (a byte each 0.25 s) stays open."""
    p = tg(relay_config(ports, echo.address, timeouts={"idle_s": 1}))
    with h.connect(p.port("relay")) as idle, h.connect(p.port("relay")) as active:
        h.echo_roundtrip(idle, b"i")
        h.echo_roundtrip(active, b"a")
        t_last = time.monotonic()
        idle.setblocking(False)
        closed_after = None
        deadline = t_last + h.scaled(4)
        i = 0
        while time.monotonic() < deadline:
            if closed_after is None:
                try:
                    data = idle.recv(16)
                    assert data == b"", data
                    closed_after = time.monotonic() - t_last
                except BlockingIOError:
                    pass
                except ConnectionResetError:
                    closed_after = time.monotonic() - t_last
            elif time.monotonic() - t_last > 2.5:
                break
            h.echo_roundtrip(active, b"%d" % (i % 10))
            i += 1
            time.sleep(0.25)
        assert closed_after is not None, "the idle connection was not closed"
        assert 0.8 <= closed_after <= h.scaled(2.5), closed_after
        # The active one outlived the idle deadline several times over.
        assert time.monotonic() - t_last > 2.5
        h.echo_roundtrip(active, b"still here\n")
    assert "idle timeout" in p.log()
