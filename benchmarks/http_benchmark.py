"""The metrics endpoint under slow clients: threads, memory and /metrics latency, against a baseline.

N sockets connect to the endpoint and send a request line without ever
finishing the request (a slowloris, or a TLS client on the plain port), then
/metrics and /healthz are fetched. The same is done, in the same run, to the
stdlib thread-per-connection server the monitor used before (the baseline):
it made one thread per socket and had no timeout (issue 14: 1,002 threads,
+32 MB and a 19.5 s /metrics at 1,000 connections on a busy machine).

    python benchmarks/http_benchmark.py                 # 1,000 slow connections
    python benchmarks/http_benchmark.py --connections 300
"""

from __future__ import annotations

import argparse
import resource
import socket
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prometheus_client import CollectorRegistry, Counter, generate_latest  # noqa: E402

from monitor.daemon.http_server import HttpServer  # noqa: E402


class _Baseline(BaseHTTPRequestHandler):
    """The thread-per-connection handler as the monitor had it (no timeout)."""

    registry: CollectorRegistry

    def do_GET(self) -> None:
        body = generate_latest(self.registry) if self.path == "/metrics" else b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _BaselineServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """The sockets this benchmark closes unanswered: not worth a traceback each."""


def rss_mb() -> float:
    return int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) / 1024


def measure(port: int, n: int) -> dict[str, float]:
    threads, rss = threading.active_count(), rss_mb()
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /metrics HTTP/1.1\r\n")  # the rest never comes
        socks.append(s)
    time.sleep(1.0)
    out = {"threads": threading.active_count() - threads, "rss_mb": rss_mb() - rss}
    for path in ("/metrics", "/healthz"):
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=120) as r:
            r.read()
        out[path] = (time.perf_counter() - t0) * 1000
    for s in socks:
        s.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=1000)
    n = ap.parse_args().connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 2 * n + 64:  # both ends of every socket live in this process
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2 * n + 64), hard))
    reg = CollectorRegistry()
    Counter("bench_things", "things", registry=reg).inc()
    ours = HttpServer("127.0.0.1", 0, reg, lambda: [], lambda: [])
    ours.start()
    try:
        new = measure(ours.port, n)
    finally:
        ours.stop()
    _Baseline.registry = reg
    base_server = _BaselineServer(("127.0.0.1", 0), _Baseline)
    threading.Thread(target=base_server.serve_forever, daemon=True).start()
    try:
        base = measure(base_server.server_address[1], n)
    finally:
        base_server.shutdown()
        base_server.server_close()
    print(f"{n} slow connections           plantwatch   baseline (thread per connection)")
    print(f"  threads added               {new['threads']:10.0f}   {base['threads']:10.0f}")
    print(f"  RSS added (MB)              {new['rss_mb']:10.1f}   {base['rss_mb']:10.1f}")
    for path in ("/metrics", "/healthz"):
        print(f"  {path} (ms)               {new[path]:10.1f}   {base[path]:10.1f}")
    ratio = (new["threads"] + 1) / (base["threads"] + 1)
    print(f"threads ratio plantwatch/baseline: {ratio:.3f}x")


if __name__ == "__main__":
    main()
