"""The HTTP endpoint: /metrics for Prometheus, /healthz and /readyz for the supervisor.

One asyncio event loop in one thread holds every connection, so a thousand
slow or idle clients cost a thousand sockets, not a thousand threads, and a
scrape or a probe still gets in: the request line and headers (and, with TLS,
the handshake) must arrive within ``header_timeout``; at most
``max_connections`` may be waiting for theirs, and a new connection beyond
that closes the longest-waiting one; a TLS ClientHello sent to the plain port
is closed at once; a response must be taken within ``WRITE_TIMEOUT_S``. Each
response closes its connection. Rendering /metrics (and checking a bcrypt
password) runs on two worker threads, never on the loop. As with prometheus_client's
own server, ``/metrics?name[]=a&name[]=b`` renders only the series named (a
progress probe that reads two counters need not format every asset's series).

``/healthz`` answers "restart me?" (process and worker thread alive),
``/readyz`` answers "send me traffic / trust my metrics?" (connected,
subscribed, models loaded); each says why when 503. TLS and basic auth for
/metrics come from a web config file as Prometheus exporters read it
(:mod:`.web_config`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import RestrictedRegistry

from .. import logs
from ..errors import ConfigError
from .web_config import WebConfig

log = logs.get("http")

#: A check returns the reasons it fails (empty: healthy).
Check = Callable[[], list[str]]

MAX_CONNECTIONS = 256  # waiting for their request; far below the usual 1,024 open files
HEADER_TIMEOUT_S = 10.0  # TLS handshake + request line + headers
WRITE_TIMEOUT_S = 10.0
MAX_HEADER_BYTES = 16384
WORKER_THREADS = 2
_TEXT = "text/plain; charset=utf-8"


DROP_REASONS = ("timeout", "evicted", "tls_on_plain", "too_large")


class _Dropped:
    """``plantwatch_http_connections_dropped_total{reason}``: slow or hostile clients, made visible."""

    def __init__(self, dropped: Counter[str]) -> None:
        self.dropped = dropped

    def collect(self) -> Iterator[CounterMetricFamily]:
        fam = CounterMetricFamily(
            "plantwatch_http_connections_dropped",
            "HTTP connections closed without a response: no request within the timeout, evicted as the longest "
            "waiting beyond 256, a TLS handshake on the plain port, headers too large",
            labels=["reason"],
        )
        for reason in DROP_REASONS:
            fam.add_metric([reason], float(self.dropped[reason]))
        yield fam


class HttpServer:
    """Serves the registry and the two probes on ``bind:port`` (port 0: any free port)."""

    def __init__(
        self,
        bind: str,
        port: int,
        registry: CollectorRegistry,
        health: Check,
        ready: Check,
        web: WebConfig | None = None,
        *,
        max_connections: int = MAX_CONNECTIONS,
        header_timeout: float = HEADER_TIMEOUT_S,
    ) -> None:
        self.registry, self.health, self.ready = registry, health, ready
        self.web = web or WebConfig()  # swapped whole on reload
        self.max_connections, self.header_timeout = max_connections, header_timeout
        #: connections closed before a response: timeout, evicted (max_connections), tls_on_plain, too_large
        self.dropped: Counter[str] = Counter()
        self._collector = _Dropped(self.dropped)
        sock = socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((bind, port))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"metrics.bind/metrics.port: cannot listen on {bind}:{port}: {exc.strerror or exc}"
            ) from None
        sock.setblocking(False)
        self._sock = sock
        self._waiting: dict[asyncio.StreamWriter, None] = {}  # insertion order: longest waiting first
        self._open: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._pool = ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="plantwatch-http-work")
        self._thread = threading.Thread(target=self._run, name="plantwatch-http", daemon=True)
        self._started = threading.Event()
        self._failed: str | None = None

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def start(self) -> None:
        self.registry.register(self._collector)
        self._thread.start()
        self._started.wait(10)
        if self._failed is not None:
            self.stop()
            raise ConfigError(f"metrics: cannot serve HTTP: {self._failed}")
        scheme = "https" if self.web.tls is not None else "http"
        log.info("http_listening", address=f"{self._sock.getsockname()[0]!s}:{self.port}", scheme=scheme,
                 basic_auth=bool(self.web.users))  # fmt: skip

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        else:  # never started (or failed to): nothing else will close these
            self._sock.close()
            if not self._loop.is_closed():
                self._loop.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(KeyError):  # not registered: never started
            self.registry.unregister(self._collector)

    # ------------------------------------------------------------ the loop

    def _run(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            server = loop.run_until_complete(asyncio.start_server(self._serve, sock=self._sock, limit=MAX_HEADER_BYTES))
        except Exception as exc:  # said by start(), in the caller's thread
            self._failed = str(exc) or type(exc).__name__
            loop.close()
            self._sock.close()
            return
        finally:
            self._started.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            for writer in list(self._open):  # their reads end (EOF) and their tasks return
                writer.transport.abort()
            tasks = asyncio.all_tasks(loop)
            if tasks:
                loop.run_until_complete(asyncio.wait(tasks, timeout=1.0))
            loop.set_exception_handler(lambda _loop, _context: None)  # what is still running is cancelled quietly
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        self._waiting[writer] = None
        if len(self._waiting) > self.max_connections:  # the longest waiting gives way
            oldest = next(iter(self._waiting))
            del self._waiting[oldest]
            oldest.transport.abort()
            self.dropped["evicted"] += 1
        try:
            request = await self._read_request(reader, writer)
            self._waiting.pop(writer, None)
            if request is not None:
                await self._respond(writer, *request)
            writer.close()  # sends what is still buffered, then closes
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await writer.wait_closed()
        except TimeoutError:
            self.dropped["timeout"] += 1
        except (ConnectionError, ssl.SSLError, OSError, asyncio.IncompleteReadError):
            pass  # the client went away, or its TLS was wrong: nothing to answer
        finally:
            self._waiting.pop(writer, None)
            self._open.discard(writer)
            writer.transport.abort()  # a no-op once closed

    async def _read_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[str, str, str, dict[str, str]] | None:
        """(method, path, query, headers) once the header block is in, or None (answered or dropped already)."""
        buf = b""
        async with asyncio.timeout(self.header_timeout):
            web = self.web
            if web.tls is not None:
                await writer.start_tls(web.tls)
            while b"\r\n\r\n" not in buf:
                chunk = await reader.read(4096)
                if not chunk:
                    return None
                if not buf and web.tls is None and chunk[0] == 0x16:  # a TLS handshake record on the plain port
                    self.dropped["tls_on_plain"] += 1
                    return None
                buf += chunk
                if len(buf) > MAX_HEADER_BYTES:
                    self.dropped["too_large"] += 1
                    await self._send(writer, HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, b"headers too large\n", _TEXT)
                    return None
        head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        parts = head[0].split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            await self._send(writer, HTTPStatus.BAD_REQUEST, b"bad request\n", _TEXT)
            return None
        headers = {}
        for line in head[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        path, _, query = parts[1].partition("?")
        return parts[0], path, query, headers

    async def _respond(
        self, writer: asyncio.StreamWriter, method: str, path: str, query: str, headers: dict[str, str]
    ) -> None:
        if method not in ("GET", "HEAD"):
            await self._send(writer, HTTPStatus.METHOD_NOT_ALLOWED, b"GET only\n", _TEXT, {"Allow": "GET, HEAD"})
            return
        loop = asyncio.get_running_loop()
        if path == "/metrics":
            web = self.web
            if web.users and not await loop.run_in_executor(self._pool, web.authorized, headers.get("authorization")):
                await self._send(writer, HTTPStatus.UNAUTHORIZED, b"unauthorized\n", _TEXT,
                                 {"WWW-Authenticate": 'Basic realm="plantwatch"'})  # fmt: skip
                return
            encoder, content_type = choose_encoder(headers.get("accept") or "")
            gzipped = "gzip" in headers.get("accept-encoding", "")  # Prometheus asks for it
            names = parse_qs(query).get("name[]")  # as prometheus_client's own server: only these series
            registry = self.registry if names is None else self.registry.restricted_registry(names)
            body = await loop.run_in_executor(self._pool, _render, encoder, registry, gzipped)
            extra = {"Content-Encoding": "gzip"} if gzipped else None
            await self._send(writer, HTTPStatus.OK, body, content_type, extra, head=method == "HEAD")
        elif path in ("/healthz", "/readyz"):
            failing = (self.health if path == "/healthz" else self.ready)()
            body = ("ok\n" if not failing else "".join(f"{r}\n" for r in failing)).encode()
            code = HTTPStatus.SERVICE_UNAVAILABLE if failing else HTTPStatus.OK
            await self._send(writer, code, body, _TEXT, head=method == "HEAD")
        elif path == "/":
            await self._send(writer, HTTPStatus.OK, b"plantwatch monitor: /metrics /healthz /readyz\n", _TEXT)
        else:
            await self._send(writer, HTTPStatus.NOT_FOUND, b"not found\n", _TEXT)

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        code: HTTPStatus,
        body: bytes,
        content_type: str,
        extra: dict[str, str] | None = None,
        head: bool = False,
    ) -> None:
        lines = [f"HTTP/1.1 {code.value} {code.phrase}", f"Content-Type: {content_type}",
                 f"Content-Length: {len(body)}", "Connection: close"]  # fmt: skip
        lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else body))
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await writer.drain()


def _render(encoder: Callable[[Any], bytes], registry: CollectorRegistry | RestrictedRegistry, gzipped: bool) -> bytes:
    """The exposition, compressed when the scraper accepts gzip (thousands of series shrink about tenfold)."""
    body = encoder(registry)
    return gzip.compress(body, compresslevel=5) if gzipped else body
