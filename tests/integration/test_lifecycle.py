"""Process lifecycle: SIGHUP reload, SIGTERM drain (with and without a deadline, and a
second SIGTERM), and the log formats."""

import json
import re
import signal
import time

import tghelpers as h


def test_sighup_reload(tg, ports):
    """Reload keeps established sessions (also on a listener the new config drops), adds a
    new listener, removes a dropped one, moves a listener to a new backend for new
    sessions only; an invalid config is logged and the running one keeps serving."""
    echo1 = h.EchoServer().start()
    echo2 = h.EchoServer().start()
    try:
        a, b, c, admin = ports(), ports(), ports(), ports()
        cfg1 = h.base_config([h.tcp_listener("a", a, echo1.address),
                              h.tcp_listener("c", c, echo1.address)], admin)
        p = tg(cfg1)
        assert h.is_refused(b)
        sa = h.connect(a)
        sc = h.connect(c)
        h.echo_roundtrip(sa, b"a before\n")
        h.echo_roundtrip(sc, b"c before\n")
        assert echo1.used == 2

        cfg2 = h.base_config([h.tcp_listener("a", a, echo2.address),
                              h.tcp_listener("b", b, echo1.address)], admin)
        log = p.reload(cfg2)
        assert "config reloaded" in log
        p.wait_listening([a, b, admin])
        p.wait_not_listening([c])
        h.wait_refused(c)
        # Established sessions keep working, on their old backend.
        h.echo_roundtrip(sa, b"a after\n")
        h.echo_roundtrip(sc, b"c after, listener gone\n")
        assert echo2.used == 0
        # The new listener serves; the kept one sends new sessions to its new backend.
        with h.connect(b) as sb:
            h.echo_roundtrip(sb, b"b is new\n")
        assert echo1.used == 3
        with h.connect(a) as sa2:
            h.echo_roundtrip(sa2, b"a, new session\n")
        assert echo2.used == 1

        # An invalid config: logged, nothing changes.
        bad = h.to_yaml(cfg2).replace("workers: 2\n", "workers: 2\nbogus_key: 1\n", 1)
        assert "bogus_key" in bad
        log = p.reload(bad)
        failed = [json.loads(line) for line in log.splitlines()
                  if line.startswith("{") and "reload failed" in line]
        assert len(failed) == 1, log
        assert failed[0]["level"] == "error"
        assert re.search(r"tg\.yaml:2: bogus_key", failed[0]["error"]), failed[0]
        assert p.running()
        h.echo_roundtrip(sa, b"a after a bad reload\n")
        h.echo_roundtrip(sc, b"c after a bad reload\n")
        with h.connect(b) as sb:
            h.echo_roundtrip(sb, b"b still\n")
        with h.connect(a) as sa3:
            h.echo_roundtrip(sa3, b"a still on echo2\n")
        assert echo2.used == 2
        assert h.is_refused(c)
        assert h.http_get(admin, "/healthz")[0] == 200

        # A config whose new listener cannot bind (the port is taken) is refused as a whole.
        taken = h.EchoServer().start()
        try:
            cfg3 = h.base_config([h.tcp_listener("a", a, echo2.address),
                                  h.tcp_listener("b", b, echo1.address),
                                  h.tcp_listener("d", taken.port, echo1.address)], admin)
            log = p.reload(cfg3)
            assert log.count("reload failed") == 2, log
            with h.connect(b) as sb:
                h.echo_roundtrip(sb, b"b after a failed bind\n")
        finally:
            taken.stop()
        sa.close()
        sc.close()
    finally:
        echo1.stop()
        echo2.stop()


def test_reload_moves_admin_and_changes_log_format(tg, echo, ports):
    relay, admin1, admin2 = ports(), ports(), ports()
    p = tg(h.base_config([h.tcp_listener("relay", relay, echo.address)], admin1))
    assert h.http_get(admin1, "/healthz")[0] == 200
    with h.connect(relay) as s:
        h.echo_roundtrip(s, b"json era\n")
        cfg2 = h.base_config([h.tcp_listener("relay", relay, echo.address)], admin2)
        cfg2["log"] = {"level": "info", "format": "text"}
        p.reload(cfg2)
        p.wait_listening([admin2])
        h.wait_refused(admin1)
        assert h.http_get(admin2, "/healthz")[0] == 200
        assert h.scrape(admin2, "tenantgate_connections_open", listener="relay") == 1
        h.echo_roundtrip(s, b"text era\n")
    p.stop()
    lines = p.log().splitlines()
    # JSON up to the reload, text from then on (the new format applies from the reload's
    # own lines on).
    cut = next(i for i, line in enumerate(lines) if not line.startswith("{"))
    assert any("tenantgate started" in line for line in lines[:cut])
    assert not any(line.startswith("{") for line in lines[cut:]), lines
    assert any("config reloaded" in line for line in lines[cut:])
    assert re.search(r" INFO tenantgate stopped$", lines[-1]), lines[-1]


def test_sigterm_drains_idle_session(tg, echo, ports):
    """SIGTERM: new connections are refused at once, the open session keeps working, and the
    process exits 0 once it closes."""
    p = tg(h.base_config([h.tcp_listener("relay", ports(), echo.address)], ports(),
                         drain_timeout_s=30))
    s = h.connect(p.port("relay"))
    h.echo_roundtrip(s, b"before\n")
    t_term = time.monotonic()
    p.signal(signal.SIGTERM)
    t_refused = h.wait_refused(p.port("relay"), timeout=h.scaled(1))
    assert t_refused - t_term < h.scaled(1)
    p.wait_log("draining")
    status, _, body = h.http_get(p.admin_port, "/readyz")
    assert status == 503 and "draining" in body
    time.sleep(0.5)
    assert p.running()
    h.echo_roundtrip(s, b"during the drain\n")
    h.echo_roundtrip(s, b"x" * 100_000)
    assert p.running()
    t_close = time.monotonic()
    s.close()
    assert p.wait_exit(h.scaled(5)) == 0, p.log()
    assert time.monotonic() - t_close < h.scaled(2)
    p.assert_clean_exit()
    assert "tenantgate stopped" in p.log()


def test_drain_deadline_closes_session(tg, echo, ports):
    """drain_timeout_s: 1 and a session that stays open: exit 0 within a bounded time and the
    session is closed."""
    p = tg(h.base_config([h.tcp_listener("relay", ports(), echo.address)], ports(),
                         drain_timeout_s=1))
    s = h.connect(p.port("relay"))
    h.echo_roundtrip(s, b"hello\n")
    t_term = time.monotonic()
    p.signal(signal.SIGTERM)
    rc = p.wait_exit(5)
    elapsed = time.monotonic() - t_term
    assert rc == 0, p.log()
    assert 0.8 <= elapsed < 5, elapsed
    how, data, _ = h.wait_closed(s, 1)
    assert data == b""
    s.close()
    p.assert_clean_exit()
    assert "drain deadline reached" in p.log()


def test_second_sigterm_stops_at_once(tg, echo, ports):
    p = tg(h.base_config([h.tcp_listener("relay", ports(), echo.address)], ports(),
                         drain_timeout_s=30))
    s = h.connect(p.port("relay"))
    h.echo_roundtrip(s, b"hello\n")
    p.signal(signal.SIGTERM)
    p.wait_log("draining")
    time.sleep(0.3)
    assert p.running()
    h.echo_roundtrip(s, b"still draining\n")
    t_second = time.monotonic()
    p.signal(signal.SIGTERM)
    rc = p.wait_exit(h.scaled(3))
    assert rc == 0, p.log()
    assert time.monotonic() - t_second < h.scaled(2)
    how, data, _ = h.wait_closed(s, 1)
    assert data == b""
    s.close()
    p.assert_clean_exit()
    assert "second signal" in p.log()


def test_sigint_drains_too(tg, echo, ports):
    p = tg(h.base_config([h.tcp_listener("relay", ports(), echo.address)], ports()))
    p.signal(signal.SIGINT)
    assert p.wait_exit(h.scaled(5)) == 0, p.log()
    p.assert_clean_exit()
    assert '"signal":"SIGINT"' in p.log()


TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def test_json_log_lines(tg, ports):
    """Every stderr line is a JSON object with ts, level and msg (plus fields)."""
    p = tg(h.base_config([h.tcp_listener("relay", ports(), f"127.0.0.1:{h.closed_port()}")],
                         ports()))
    with h.connect(p.port("relay")) as s:  # a warn line: backend connect failed
        h.wait_closed(s, h.scaled(3))
    p.wait_log("backend connect failed")
    p.stop()
    lines = [line for line in p.log().splitlines() if line.strip()]
    assert len(lines) >= 5
    records = []
    for line in lines:
        rec = json.loads(line)
        assert isinstance(rec, dict)
        assert TS.match(rec["ts"]), rec
        assert rec["level"] in ("debug", "info", "warn", "error"), rec
        assert isinstance(rec["msg"], str) and rec["msg"], rec
        records.append(rec)
    started = [r for r in records if r["msg"] == "tenantgate started"]
    assert len(started) == 1 and started[0]["pid"] == p.pid and started[0]["workers"] == 2
    ready = [r for r in records if r["msg"] == "listener ready"]
    assert ready and ready[0]["listener"] == "relay" and ready[0]["protocol"] == "tcp"
    warn = [r for r in records if r["msg"] == "backend connect failed"]
    assert warn and warn[0]["level"] == "warn" and warn[0]["listener"] == "relay"
    assert records[-1]["msg"] == "tenantgate stopped"


def test_text_log_lines(tg, echo, ports):
    cfg = h.base_config([h.tcp_listener("relay", ports(), echo.address)], ports())
    cfg["log"] = {"level": "debug", "format": "text"}
    p = tg(cfg)
    with h.connect(p.port("relay")) as s:
        h.echo_roundtrip(s, b"hi\n")
    p.stop()
    lines = [line for line in p.log().splitlines() if line.strip()]
    assert len(lines) >= 4
    pat = re.compile(r"^\d{4}-\d\d-\d\dT\S+Z (DEBUG|INFO|WARN|ERROR) \S")
    for line in lines:
        assert not line.startswith("{"), line
        assert pat.match(line), line
    assert any("tenantgate started" in line and f"pid={p.pid}" in line for line in lines)
    assert any("listener ready" in line and "listener=relay" in line for line in lines)
