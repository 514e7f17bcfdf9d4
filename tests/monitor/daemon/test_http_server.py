"""The metrics endpoint under hostile clients: idle and slow sockets, a TLS handshake on the plain port,
and TLS + basic auth from an exporter web config file, with real certificates and real sockets."""

from __future__ import annotations

import base64
import gzip
import http.client
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from prometheus_client import CollectorRegistry, Counter

from monitor import config
from monitor.daemon import Monitor, load_web_config
from monitor.daemon.http_server import MAX_CONNECTIONS, WORKER_THREADS, HttpServer
from monitor.daemon.metrics import build_registry
from monitor.errors import ConfigError
from tests.monitor.conftest import wait_until

PASSWORD = "s3cret-scrape"


def registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    Counter("pw_test_things", "things", registry=reg).inc(3)
    return reg


@pytest.fixture
def server() -> Iterator[HttpServer]:
    s = HttpServer("127.0.0.1", 0, registry(), lambda: [], lambda: ["not connected"], header_timeout=1.0)
    s.start()
    yield s
    s.stop()


def get(port: int, path: str, timeout: float = 5.0, **kw: Any) -> tuple[int, bytes, dict[str, str]]:
    headers = kw.pop("headers", None) or {}
    conn_cls = http.client.HTTPSConnection if "context" in kw else http.client.HTTPConnection
    conn = conn_cls("127.0.0.1", port, timeout=timeout, **kw)
    try:
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        return r.status, r.read(), {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()


def test_name_parameters_render_only_the_series_asked_for() -> None:
    reg = build_registry()  # the monitor's: with the process collector
    Counter("pw_test_things", "things", registry=reg).inc(3)
    Counter("pw_test_other", "other things", ["asset"], registry=reg).labels("a").inc()
    s = HttpServer("127.0.0.1", 0, reg, lambda: [], lambda: [])
    s.start()
    try:
        _, everything, _ = get(s.port, "/metrics")
        _, some, _ = get(s.port, "/metrics?name[]=pw_test_things_total")
        _, encoded, _ = get(s.port, "/metrics?name%5B%5D=pw_test_other_total&name%5B%5D=process_cpu_seconds_total")
    finally:
        s.stop()
    assert b"pw_test_things_total 3.0" in everything and b'pw_test_other_total{asset="a"} 1.0' in everything
    assert b"pw_test_things_total 3.0" in some and b"pw_test_other" not in some and b"process_" not in some
    assert b'pw_test_other_total{asset="a"} 1.0' in encoded and b"\nprocess_cpu_seconds_total " in encoded
    assert b"pw_test_things" not in encoded and b"pw_test_other_created" not in encoded  # only the series named


def client_hello() -> bytes:
    """The first bytes a TLS client sends (a real ClientHello, from the ssl module)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


@pytest.fixture
def patient_server() -> Iterator[HttpServer]:
    """The default header timeout (10 s): the sockets below stay until they are evicted."""
    s = HttpServer("127.0.0.1", 0, registry(), lambda: [], lambda: ["not connected"])
    s.start()
    yield s
    s.stop()


def test_hundreds_of_idle_and_slow_connections_cost_no_threads_and_the_endpoints_still_answer(
    patient_server: HttpServer,
) -> None:
    """300 sockets (silent, a request line without its end, a TLS ClientHello): at most the two worker
    threads appear (the stdlib server made one per connection: 1,002 threads at 1,000), /metrics and /healthz
    answer at once, and beyond MAX_CONNECTIONS waiting ones the longest waiting are closed."""
    server = patient_server
    before = threading.active_count()
    hello = client_hello()
    socks = []
    try:
        for i in range(300):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            if i % 3 == 1:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            socks.append(s)
        wait_until(lambda: server.dropped["evicted"] >= 300 - MAX_CONNECTIONS, 5, "the oldest closed")
        t0 = time.monotonic()
        code, body, _ = get(server.port, "/metrics")
        assert code == 200 and b"pw_test_things_total 3.0" in body
        code, zipped, headers = get(server.port, "/metrics", headers={"Accept-Encoding": "gzip"})
        assert headers["content-encoding"] == "gzip" and gzip.decompress(zipped) == body
        assert get(server.port, "/healthz")[:2] == (200, b"ok\n")
        assert get(server.port, "/readyz")[:2] == (503, b"not connected\n")
        took = time.monotonic() - t0
        assert threading.active_count() - before <= WORKER_THREADS
        assert socks[0].recv(1) == b""  # the longest waiting: closed to let the scrapes in
        tls = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        tls.sendall(hello)
        assert tls.recv(1) == b""  # closed at once, not held open
        tls.close()
    finally:
        for s in socks:
            s.close()
    print(f"three requests behind 300 idle sockets: {took * 1000:.0f} ms")


def test_a_silent_or_slow_client_is_closed_after_the_header_timeout(server: HttpServer) -> None:
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        t0 = time.monotonic()
        for part in (b"GET /met", b"rics HTTP/1.1\r\n", b"Host: x\r\n"):
            slow.sendall(part)
            time.sleep(0.3)
        assert slow.recv(1) == b"" and silent.recv(1) == b""
        assert time.monotonic() - t0 < 5  # header_timeout = 1 s, not forever
        assert server.dropped["timeout"] == 2
        body = get(server.port, "/metrics")[1]
        assert b'plantwatch_http_connections_dropped_total{reason="timeout"} 2.0' in body
    finally:
        silent.close()
        slow.close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a server certificate for 127.0.0.1 (openssl), and a web config with a bcrypt user."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed: run the tests through 'bash tests/run', which installs it")
    d = tmp_path_factory.mktemp("web-tls")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=pw-test-ca")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$")  # as htpasswd
    (d / "web.yml").write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"basic_auth_users:\n  prometheus: {hashed}\n"
    )
    return d


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_tls_and_basic_auth_from_an_exporter_web_config(certs: Path) -> None:
    """HTTPS with the configured certificate (verified against its CA); /metrics needs the user's password
    (none or a wrong one: 401 with a Basic challenge), the probes do not; plain HTTP on the port gets nothing."""
    s = HttpServer("127.0.0.1", 0, registry(), lambda: [], lambda: [], load_web_config(certs / "web.yml"))
    s.start()
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    try:
        code, _, headers = get(s.port, "/metrics", context=ctx)
        assert code == 401 and headers["www-authenticate"].startswith("Basic")
        assert get(s.port, "/metrics", context=ctx, headers=basic("prometheus", "wrong"))[0] == 401
        assert get(s.port, "/metrics", context=ctx, headers=basic("nobody", PASSWORD))[0] == 401
        code, body, _ = get(s.port, "/metrics", context=ctx, headers=basic("prometheus", PASSWORD))
        assert code == 200 and b"pw_test_things_total 3.0" in body
        assert get(s.port, "/healthz", context=ctx)[:2] == (200, b"ok\n")
        with pytest.raises((ConnectionError, http.client.RemoteDisconnected, OSError)):
            get(s.port, "/healthz")  # plain HTTP to the TLS port
        with pytest.raises(ssl.SSLCertVerificationError):
            get(s.port, "/healthz", context=ssl.create_default_context())  # a client without the CA
    finally:
        s.stop()


def test_the_monitor_serves_https_with_basic_auth_from_metrics_web_config_file(
    certs: Path, mosquitto: Any, model_dir: Path, tmp_path: Path
) -> None:
    doc = {"broker": {"url": mosquitto.url}, "models": {"default": str(model_dir)},
           "metrics": {"port": 0, "web_config_file": str(certs / "web.yml")}}  # fmt: skip
    mon = Monitor(config.parse(doc))
    mon.start()
    try:
        ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        assert get(mon.metrics_port, "/metrics", context=ctx)[0] == 401
        code, body, _ = get(mon.metrics_port, "/metrics", context=ctx, headers=basic("prometheus", PASSWORD))
        assert code == 200 and b"plantwatch_build_info" in body
        # a reload (SIGHUP) re-reads the file: a changed password applies without a restart
        rotated = tmp_path / "web.yml"
        hashed = bcrypt.hashpw(b"rotated", bcrypt.gensalt(4)).decode()
        rotated.write_text((certs / "web.yml").read_text().split("basic_auth_users:")[0].replace(
            "server.", f"{certs}/server.") + f"basic_auth_users:\n  prometheus: {hashed}\n")  # fmt: skip
        assert mon.reload(config.parse({**doc, "metrics": {"port": 0, "web_config_file": str(rotated)}}))
        assert get(mon.metrics_port, "/metrics", context=ctx, headers=basic("prometheus", PASSWORD))[0] == 401
        assert get(mon.metrics_port, "/metrics", context=ctx, headers=basic("prometheus", "rotated"))[0] == 200
        (tmp_path / "broken.yml").write_text("basic_auth_users: [nope]\n")
        assert not mon.reload(
            config.parse({**doc, "metrics": {"port": 0, "web_config_file": str(tmp_path / "broken.yml")}})
        )
        assert get(mon.metrics_port, "/metrics", context=ctx, headers=basic("prometheus", "rotated"))[0] == 200
    finally:
        mon.stop()


def test_web_config_problems_are_all_named_by_key(tmp_path: Path, certs: Path) -> None:
    bad = tmp_path / "web.yml"
    bad.write_text(
        "tls_server_config:\n  cert_file: nope.crt\n  client_auth_type: Sometimes\n"
        "basic_auth_users:\n  alice: plain-password\nhttp2: true\n"
    )
    with pytest.raises(ConfigError) as err:
        load_web_config(bad)
    problems = "\n".join(err.value.problems)
    assert "http2: unknown key" in problems
    assert "basic_auth_users.alice: must be a bcrypt hash" in problems
    assert "tls_server_config: needs both cert_file and key_file" in problems
    assert "tls_server_config.client_auth_type: must be one of" in problems
    (tmp_path / "web2.yml").write_text(f"tls_server_config:\n  cert_file: {certs}/server.crt\n  key_file: nope.key\n")
    with pytest.raises(ConfigError, match=r"cannot load cert_file .*server\.crt with key_file .*nope\.key"):
        load_web_config(tmp_path / "web2.yml")


def test_check_config_reads_the_web_config_file_next_to_the_config(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str], cli_logging: None
) -> None:
    from monitor import cli

    (tmp_path / "web.yml").write_text("basic_auth_users:\n  prometheus: hunter2\n")
    cfg = tmp_path / "plantwatch.toml"
    cfg.write_text(f'[models]\ndefault = "{model_dir}"\n[metrics]\nweb_config_file = "web.yml"\n')
    assert cli.main(["check-config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"web_config_file {tmp_path / 'web.yml'}: basic_auth_users.prometheus: must be a bcrypt hash" in err


def test_a_server_stopped_without_starting_leaves_nothing_open() -> None:
    """The monitor stops its HTTP server when a later start-up step fails; nothing may be left to the GC."""
    import gc
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        s = HttpServer("127.0.0.1", 0, registry(), lambda: [], lambda: [])
        port = s.port
        s.stop()
        del s
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))  # the port is free again
