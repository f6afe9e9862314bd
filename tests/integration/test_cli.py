"""The command line: --version, `check`, `token`, usage errors."""

import re
import time

import jwt
import pytest

import tghelpers as h


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def tcp_yaml(listen_port, backend, extra_listener_lines="", passthrough="true"):
    # Line numbers matter to the tests below: the listener's keys start on line 6.
    return (
        "workers: 2\n"                                     # 1
        "log:\n"                                           # 2
        "  level: info\n"                                  # 3
        "listeners:\n"                                     # 4
        "  - name: relay\n"                                # 5
        "    protocol: tcp\n"                              # 6
        f"    listen: 127.0.0.1:{listen_port}\n"           # 7
        f"    unsafe_passthrough: {passthrough}\n"         # 8
        "    backend:\n"                                   # 9
        f"      address: {backend}\n"                      # 10
        + extra_listener_lines                             # 11...
    )


def test_version():
    r = h.run_tg(["--version"])
    assert r.returncode == 0, r.stderr
    assert re.match(r"^tenantgate \S+\n$", r.stdout), r.stdout


def test_help():
    r = h.run_tg(["--help"])
    assert r.returncode == 0
    assert "usage:" in r.stdout and "check" in r.stdout and "token" in r.stdout


def test_check_valid_config_reachable_backend(tmp_path, echo):
    cfg = write(tmp_path, "ok.yaml", tcp_yaml(h.free_port(), echo.address))
    r = h.run_tg(["check", "-c", str(cfg)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok" in r.stdout
    assert f"backend {echo.address}: reachable" in r.stdout
    assert r.stderr == ""


@pytest.mark.parametrize("case", ["unknown_key", "tcp_without_passthrough", "missing_secret",
                                  "bad_value"])
def test_check_invalid_config(tmp_path, echo, case):
    port = h.free_port()
    if case == "unknown_key":
        text = tcp_yaml(port, echo.address, "    colour: blue\n")
        line, key = 11, "listeners[0].colour"
    elif case == "tcp_without_passthrough":
        text = tcp_yaml(port, echo.address, passthrough="false")
        line, key = 6, "listeners[0].protocol"
    elif case == "missing_secret":
        text = tcp_yaml(port, echo.address,
                        "      password_file: secrets/missing-password\n")
        line, key = 11, "listeners[0].backend.password_file"
    else:
        text = tcp_yaml(port, echo.address, "    max_connections: lots\n")
        line, key = 11, "listeners[0].max_connections"
    cfg = write(tmp_path, "bad.yaml", text)
    r = h.run_tg(["check", "-c", str(cfg)])
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert f"bad.yaml:{line}: {key}" in out, out
    if case == "missing_secret":
        assert "missing-password" in out
    if case == "tcp_without_passthrough":
        assert "unsafe_passthrough" in out
    # `run` refuses the same config the same way, without starting.
    r = h.run_tg(["-c", str(cfg)], timeout=10)
    assert r.returncode != 0
    assert f"bad.yaml:{line}: {key}" in r.stdout + r.stderr


def test_check_secret_file_is_read(tmp_path, echo):
    """The positive counterpart of missing_secret: the same config with the file present."""
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "password").write_text("s3cret\n")
    cfg = write(tmp_path, "ok.yaml", tcp_yaml(h.free_port(), echo.address,
                                              "      password_file: secrets/password\n"))
    r = h.run_tg(["check", "-c", str(cfg)])
    assert r.returncode == 0, r.stdout + r.stderr


def test_check_unreachable_backend(tmp_path):
    backend = f"127.0.0.1:{h.closed_port()}"
    cfg = write(tmp_path, "down.yaml", tcp_yaml(h.free_port(), backend))
    t0 = time.monotonic()
    r = h.run_tg(["check", "-c", str(cfg)])
    assert r.returncode != 0
    assert time.monotonic() - t0 < h.scaled(5)
    out = r.stdout + r.stderr
    assert backend in out and "unreachable" in out, out


def test_check_offline_skips_backends(tmp_path):
    """--offline validates the config without reaching any backend (image builds, CI), and
    still fails on a bad config."""
    backend = f"127.0.0.1:{h.closed_port()}"
    cfg = write(tmp_path, "down.yaml", tcp_yaml(h.free_port(), backend))
    r = h.run_tg(["check", "--offline", "-c", str(cfg)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok (1 listener)" in r.stdout and "unreachable" not in r.stdout
    bad = write(tmp_path, "bad.yaml", tcp_yaml(h.free_port(), backend, passthrough="maybe"))
    r = h.run_tg(["check", "--offline", "-c", str(bad)])
    assert r.returncode != 0


def test_check_missing_config_file(tmp_path):
    r = h.run_tg(["check", "-c", str(tmp_path / "nope.yaml")])
    assert r.returncode != 0
    assert "nope.yaml" in r.stdout + r.stderr


def test_token_decodes_with_the_secret(tmp_path):
    secret = "a-development-secret-of-32-bytes!"
    path = write(tmp_path, "jwt-secret", secret + "\n")  # one trailing newline is ignored
    r = h.run_tg(["token", "--hs256-secret-file", str(path), "--tenant", "acme",
                  "--ttl", "1h", "--claim", "role=admin"])
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert r.stdout.count("\n") == 1 and token.count(".") == 2
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"
    claims = jwt.decode(token, secret, algorithms=["HS256"])
    assert claims["tenant_id"] == "acme"
    assert claims["role"] == "admin"
    assert abs(claims["exp"] - (time.time() + 3600)) < 60
    if "iat" in claims:
        assert abs(claims["iat"] - time.time()) < 60
    # It does not verify with another secret (the newline was not part of the key).
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, secret + "\n", algorithms=["HS256"])


def test_token_default_ttl_and_equals_syntax(tmp_path):
    path = write(tmp_path, "jwt-secret", "k" * 32)
    r = h.run_tg(["token", f"--hs256-secret-file={path}", "--tenant=t-1", "--ttl=90s"])
    assert r.returncode == 0, r.stderr
    claims = jwt.decode(r.stdout.strip(), "k" * 32, algorithms=["HS256"])
    assert claims["tenant_id"] == "t-1"
    assert abs(claims["exp"] - (time.time() + 90)) < 30


@pytest.mark.parametrize("args", [
    [],
    ["--bogus"],
    ["-c"],
    ["check"],
    ["check", "-c", "x.yaml", "extra"],
    ["token"],
    ["token", "--tenant", "acme"],
    ["token", "--hs256-secret-file", "SECRET"],
    ["token", "--hs256-secret-file", "SECRET", "--tenant", "acme", "--ttl", "forever"],
    ["token", "--hs256-secret-file", "SECRET", "--tenant", "acme", "--claim", "novalue"],
    ["token", "--hs256-secret-file", "SECRET", "--tenant", "acme", "--what"],
])
def test_bad_usage_exits_2(tmp_path, args):
    secret = write(tmp_path, "secret", "s" * 32)
    args = [str(secret) if a == "SECRET" else a for a in args]
    r = h.run_tg(args, timeout=10)
    assert r.returncode == 2, (args, r.returncode, r.stdout, r.stderr)
    assert "usage" in r.stderr.lower()
    assert r.stdout == ""
