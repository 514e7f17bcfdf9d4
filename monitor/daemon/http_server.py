"""The HTTP endpoint: /metrics for Prometheus, /healthz and /readyz for the supervisor.

A stdlib ThreadingHTTPServer in a daemon thread: a scrape never waits for
the worker (the collector takes the state lock briefly) and a slow client
never blocks the next scrape. ``/healthz`` answers "restart me?" (process and
worker thread alive), ``/readyz`` answers "send me traffic / trust my
metrics?" (connected, subscribed, models loaded); each says why when 503.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from .. import logs
from ..errors import ConfigError

log = logs.get("http")

#: A check returns the reasons it fails (empty: healthy).
Check = Callable[[], list[str]]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept") or "")
            self._send(200, encoder(self.server.registry), content_type)
        elif path in ("/healthz", "/readyz"):
            failing = (self.server.health if path == "/healthz" else self.server.ready)()
            body = ("ok\n" if not failing else "".join(f"{r}\n" for r in failing)).encode()
            self._send(503 if failing else 200, body, "text/plain; charset=utf-8")
        elif path == "/":
            self._send(200, b"plantwatch monitor: /metrics /healthz /readyz\n", "text/plain; charset=utf-8")
        else:
            self._send(404, b"not found\n", "text/plain; charset=utf-8")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: scrapes every few seconds would drown the real events."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], registry: CollectorRegistry, health: Check, ready: Check) -> None:
        self.registry, self.health, self.ready = registry, health, ready
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        super().__init__(addr, _Handler)


class HttpServer:
    """Serves the registry and the two probes on ``bind:port`` (port 0: any free port)."""

    def __init__(self, bind: str, port: int, registry: CollectorRegistry, health: Check, ready: Check) -> None:
        try:
            self._server = _Server((bind, port), registry, health, ready)
        except OSError as exc:
            raise ConfigError(
                f"metrics.bind/metrics.port: cannot listen on {bind}:{port}: {exc.strerror or exc}"
            ) from None
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="plantwatch-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        log.info("http_listening", address=f"{self._server.server_address[0]!s}:{self.port}")

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
