"""Shared fixtures for tenantgate's integration tests (helpers live in tghelpers.py).

  tg      factory: tg(cfg_dict, name="tg") writes the config into the test's tmp dir,
          starts `$TG_BIN -c cfg.yaml` and waits until its ports listen. At teardown
          every proxy still running is stopped with SIGTERM, and its exit code (0) and
          log (no sanitizer report) are asserted.
  echo    a started EchoServer, stopped at teardown.
  server  factory: server(handler, ssl_ctx=None, sockopts=()) -> a started ThreadedServer.
  ports   factory for free ports (outside the ephemeral range).

The file-descriptor limit is raised to the hard limit: the concurrency test holds
2,000+ sockets in this process.
"""

import os
import resource
import shutil

import pytest

import ext_backends
import tghelpers as h

_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if _soft < _hard:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))


@pytest.fixture(scope="session", autouse=True)
def _binary():
    if not h.TG_BIN:
        pytest.fail("TG_BIN is not set (path to the tenantgate binary)")
    if not (os.path.isfile(h.TG_BIN) and os.access(h.TG_BIN, os.X_OK)):
        pytest.fail(f"TG_BIN={h.TG_BIN} is not an executable file")
    return h.TG_BIN


@pytest.fixture
def ports():
    return h.free_port


@pytest.fixture
def tg(tmp_path):
    started = []

    def start(cfg, name="tg", wait=True, extra_env=None):
        p = h.Proxy(tmp_path, cfg, name=name)
        started.append(p)
        return p.start(wait=wait, extra_env=extra_env)

    yield start
    errors = []
    for p in started:
        try:
            if p.proc is not None and p.rc is None:
                p.stop()
            elif p.proc is not None:
                p.check_sanitizers()
        except AssertionError as e:
            errors.append(str(e))
        finally:
            p.kill()
            p.close_files()
    if errors:
        pytest.fail("\n".join(errors))


@pytest.fixture
def echo():
    srv = h.EchoServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def server():
    started = []

    def start(handler, ssl_ctx=None, sockopts=()):
        srv = h.ThreadedServer(handler, ssl_ctx=ssl_ctx, sockopts=sockopts).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def openssl():
    exe = shutil.which("openssl")
    if not exe:
        pytest.skip("the openssl command-line tool is not installed")
    return exe


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "local_backend(kind, reason): needs the local throwaway/test backend of "
        "kind (postgres, redis, mongodb, neo4j); skipped when TG_EXT_<KIND> is set")


def pytest_collection_modifyitems(items):
    """Skips tests marked local_backend(kind, reason) when kind's server is external."""
    for item in items:
        for m in item.iter_markers("local_backend"):
            kind, reason = m.args
            if ext_backends.active(kind):
                item.add_marker(pytest.mark.skip(
                    reason=f"{ext_backends.VARS[kind]} is set: {reason}"))
