"""TLS on both sides of a tcp listener, with certificates made by the openssl CLI.

Client side: tls.mode require (TLS clients only; a plaintext client is closed) and allow
(both). Backend side: tls require / verify-full toward a Python ssl echo server; a wrong
server_name or an untrusted CA closes the client and counts a backend connect error.
"""

import json
import socket
import ssl
import subprocess
import time

import pytest

import tghelpers as h


def _run(args, cwd):
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"{args}: {r.stderr}"


def _make_ca(openssl, d, name):
    _run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
          "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
          "-subj", f"/CN=tenantgate test {name}",
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)


@pytest.fixture(scope="module")
def pki(openssl, tmp_path_factory):
    """ca.crt, server.crt/server.key (SAN 127.0.0.1 + localhost, signed by ca) and an
    unrelated other-ca.crt."""
    d = tmp_path_factory.mktemp("pki")
    _make_ca(openssl, d, "ca")
    _make_ca(openssl, d, "other-ca")
    (d / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n")
    _run([openssl, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
          "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"], d)
    _run([openssl, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
          "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext"], d)
    return {k: str(d / f) for k, f in (("ca", "ca.crt"), ("other_ca", "other-ca.crt"),
                                       ("cert", "server.crt"), ("key", "server.key"))}


def client_ctx(pki):
    ctx = ssl.create_default_context(cafile=pki["ca"])
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def tls_connect(pki, port, server_hostname="localhost"):
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return client_ctx(pki).wrap_socket(raw, server_hostname=server_hostname)


def client_tls(pki, mode):
    return {"mode": mode, "cert_file": pki["cert"], "key_file": pki["key"]}


def test_listener_tls_require(tg, echo, ports, pki):
    p = tg(h.base_config([h.tcp_listener("tls", ports(), echo.address,
                                         tls=client_tls(pki, "require"))], ports()))
    with tls_connect(pki, p.port("tls")) as s:
        assert s.version() in ("TLSv1.2", "TLSv1.3")
        h.echo_roundtrip(s, b"over TLS\n")
        h.echo_roundtrip(s, b"z" * 300_000)  # many records
    assert echo.used == 1
    # A plaintext client is closed and nothing it sent reaches the backend.
    with h.connect(p.port("tls")) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\nhello in plaintext\n")
        how, data, seconds = h.wait_closed(s, h.scaled(3))
    assert b"hello" not in data and b"GET" not in data
    assert echo.used == 1
    # The TLS side still works afterwards.
    with tls_connect(pki, p.port("tls")) as s:
        h.echo_roundtrip(s, b"again\n")
    assert echo.used == 2


def test_listener_tls_require_rejects_untrusting_client(tg, echo, ports, pki):
    """The proxy presents the configured certificate: a client trusting another CA fails."""
    p = tg(h.base_config([h.tcp_listener("tls", ports(), echo.address,
                                         tls=client_tls(pki, "require"))], ports()))
    ctx = ssl.create_default_context(cafile=pki["other_ca"])
    raw = socket.create_connection(("127.0.0.1", p.port("tls")), timeout=5)
    with pytest.raises(ssl.SSLCertVerificationError):
        ctx.wrap_socket(raw, server_hostname="localhost")
    raw.close()


def test_listener_tls_handshake_timeout(tg, echo, ports, pki):
    """timeouts.handshake_ms bounds the client's TLS handshake: a client that connects and
    never sends a ClientHello is closed, while a TLS session that went idle is not."""
    p = tg(h.base_config([h.tcp_listener("tls", ports(), echo.address,
                                         tls=client_tls(pki, "require"),
                                         timeouts={"handshake_ms": 500})], ports()))
    with tls_connect(pki, p.port("tls")) as good, h.connect(p.port("tls")) as silent:
        h.echo_roundtrip(good, b"handshake done\n")
        how, data, seconds = h.wait_closed(silent, h.scaled(4))
        assert data == b""
        assert 0.4 <= seconds < h.scaled(2.5), seconds
        time.sleep(0.3)  # well past the handshake deadline
        h.echo_roundtrip(good, b"still open\n")
    assert "handshake timeout" in p.log()


def test_listener_tls_allow(tg, echo, ports, pki):
    p = tg(h.base_config([h.tcp_listener("allow", ports(), echo.address,
                                         tls=client_tls(pki, "allow"))], ports()))
    with h.connect(p.port("allow")) as plain, tls_connect(pki, p.port("allow")) as secure:
        h.echo_roundtrip(plain, b"plain text\n")
        h.echo_roundtrip(secure, b"cipher text\n")
        h.echo_roundtrip(plain, b"p" * 100_000)
        h.echo_roundtrip(secure, b"s" * 100_000)
    assert echo.used == 2


@pytest.fixture
def tls_echo(server, pki):
    """A Python ssl echo server (certificate from pki); .sni lists the names clients sent."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki["cert"], pki["key"])
    names = []
    ctx.sni_callback = lambda sock, name, c: names.append(name)
    srv = server(h.echo_handler, ssl_ctx=ctx)
    srv.sni = names
    return srv


def test_backend_tls(tg, tls_echo, ports, pki):
    """verify-full with ca_file and server_name localhost, verify-full by IP (the default
    name), and require all relay; a wrong server_name or an untrusted CA close the client
    and count backend connect errors."""
    be = tls_echo.address
    listeners = [
        h.tcp_listener("full", ports(), be, backend_extra={
            "tls": "verify-full", "ca_file": pki["ca"], "server_name": "localhost"}),
        h.tcp_listener("fullip", ports(), be, backend_extra={
            "tls": "verify-full", "ca_file": pki["ca"]}),
        h.tcp_listener("req", ports(), be, backend_extra={"tls": "require"}),
        h.tcp_listener("wrongname", ports(), be, backend_extra={
            "tls": "verify-full", "ca_file": pki["ca"], "server_name": "wrong.example.com"}),
        h.tcp_listener("wrongca", ports(), be, backend_extra={
            "tls": "require", "ca_file": pki["other_ca"]}),
    ]
    p = tg(h.base_config(listeners, ports()))
    for name in ("full", "fullip", "req"):
        with h.connect(p.port(name)) as s:
            h.echo_roundtrip(s, f"through {name}\n".encode())
            h.echo_roundtrip(s, b"b" * 200_000)
        assert h.scrape(p.admin_port, "tenantgate_backend_connect_errors_total",
                        listener=name) == 0
    assert "localhost" in tls_echo.sni  # server_name is sent as SNI
    for name in ("wrongname", "wrongca"):
        before = h.scrape(p.admin_port, "tenantgate_backend_connect_errors_total", listener=name)
        with h.connect(p.port(name)) as s:
            try:
                s.sendall(b"must not arrive\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            how, data, seconds = h.wait_closed(s, h.scaled(3))
        assert data == b"", name
        h.wait_metric(p.admin_port, "tenantgate_backend_connect_errors_total",
                      lambda v, b=before: v == b + 1, listener=name)
    failures = {}
    for line in p.log().splitlines():
        rec = json.loads(line)
        if rec["msg"] == "tls handshake failed":
            assert rec["side"] == "backend", rec
            failures[rec["listener"]] = rec["error"]
    assert set(failures) == {"wrongname", "wrongca"}, failures
    assert "certificate verify failed" in failures["wrongname"]
    assert "hostname mismatch" in failures["wrongname"]
    assert "certificate verify failed" in failures["wrongca"]
