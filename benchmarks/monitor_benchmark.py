"""Throughput, latency and memory of ``plantwatch monitor`` against two baselines (a script, not a test).

On a private mosquitto (unbounded queue and in-flight window), 100 assets x
52 sensors at QoS 1, the same pre-published backlog is consumed by:

1. a bare paho subscriber that only counts messages (the ceiling of a stock Python MQTT client);
   beside it, for reference, the same bare subscriber on plantwatch's client
   (:mod:`monitor.mqtt_client`: buffered reads, one write per batch of acks);
2. a naive monitor written the textbook way: per message ``json.loads``, a
   batch-of-one forward pass of the same model, ``Gauge.set`` per asset and per sensor;
3. ``plantwatch monitor`` as a subprocess, its progress read from /metrics every 0.5 s (the rate between
   the first and last readings inside the drain: see :func:`drain_rate`); and the same with a state
   directory (``state_dir``: each asset's seq saved before every acknowledgement, streams every 10 s),
   which is what it costs to recognise redeliveries after a crash.

4. Sparkplug B (``[source] format = "sparkplug"``): the same 100 assets as devices of 10 edge nodes,
   births first, then report-by-exception DDATA by alias with half of the 52 metrics changed per message
   consumed by
   ``plantwatch monitor`` and by a bare paho subscriber that only decodes each payload with protobuf.
   Sparkplug data travels at QoS 0, as the specification has it (``--sparkplug-qos 1``: as JSON does).
   Targets: the Sparkplug rate >= 0.8x the JSON rate and >= 0.8x that bare decoding subscriber.

Bare and plantwatch alternate for ``--rounds`` rounds (best of each is
reported, with CPU microseconds per message, which the other load on a shared
host disturbs less than wall-clock rates). Then a publisher process paces
telemetry at 1/8 and 1/4 of plantwatch's rate for 10 s each and at half of it
for ``--soak`` seconds: p99 of payload-ts-to-scored (from the histogram, per
phase) and the monitor's RSS over time. Prints the rates and ratios against
the targets (>= 0.8x bare, >= 6x naive, p99 < 50 ms, RSS <= 300 MB and flat).

    python benchmarks/monitor_benchmark.py                 # ~6 minutes, 60 s soak
    python benchmarks/monitor_benchmark.py --soak 600      # the real run
    python benchmarks/monitor_benchmark.py --only-sparkplug # just the JSON vs Sparkplug throughput (~2 min)
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.parser import text_string_to_metric_families

from monitor import wire
from monitor.mqtt import Client as FastClient
from monitor.sparkplug import payload as spb
from monitor.sparkplug import topics as spb_topics
from simulator.local_broker import free_port, wait_for_port

ASSETS = 100
SENSORS = [f"xmeas_{i}" for i in range(1, 42)] + [f"xmv_{i}" for i in range(1, 12)]
CONF = """listener {port} 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_queued_bytes 0
max_inflight_messages 0
queue_qos0_messages true
log_dest none
"""


def train_model(workdir: Path) -> Path:
    """A small model on synthetic correlated data with the benchmark's 52 sensors."""
    rng = np.random.default_rng(0)
    n = 1000
    x = rng.normal(size=(n, 6)) @ rng.normal(size=(6, len(SENSORS))) + 0.2 * rng.normal(size=(n, len(SENSORS)))
    csv = workdir / "history.csv"
    with open(csv, "w") as f:
        f.write("timestamp," + ",".join(SENSORS) + "\n")
        for i, row in enumerate(x):
            f.write(f"{1.7e9 + i}," + ",".join(f"{v:.5f}" for v in row) + "\n")
    out = workdir / "model"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "monitor",
            "--log-level",
            "warning",
            "train",
            "--data",
            str(csv),
            "--out",
            str(out),
            "--epochs",
            "3",
            "--folds",
            "2",
        ],
        check=True,
    )
    return out


class Backlog:
    """Payloads for ``per_asset`` samples of every asset, published into a persistent session."""

    def __init__(self, port: int, per_asset: int, seq0: int = 0) -> None:
        rng = np.random.default_rng(1)
        mix = rng.normal(size=(6, len(SENSORS)))
        self.port = port
        self.items = []
        now = time.time()
        for i in range(per_asset):
            base = rng.normal(size=(ASSETS, 6)) @ mix + 0.2 * rng.normal(size=(ASSETS, len(SENSORS)))
            for a in range(ASSETS):
                payload = wire.encode_telemetry(now + i * 1e-3, seq0 + i, dict(zip(SENSORS, base[a])))
                self.items.append((wire.telemetry_topic("plant", f"asset{a:03d}"), payload))

    def publish(self, qos: int = 1) -> float:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}")
        c.max_inflight_messages_set(2000)
        c.connect("127.0.0.1", self.port)
        c.loop_start()
        t0 = time.perf_counter()
        info = None
        for i, (topic, payload) in enumerate(self.items, 1):
            info = c.publish(topic, payload, qos=qos)
            if qos and i % 30000 == 0:  # paho's message ids wrap at 65535: never that many unacknowledged
                info.wait_for_publish(120)
        assert info is not None
        info.wait_for_publish(120)
        dt = time.perf_counter() - t0
        c.disconnect()
        c.loop_stop()
        return len(self.items) / dt


GROUP, NODES = "bench", 10


class SparkplugBacklog(Backlog):
    """The same plant as Sparkplug B: NBIRTH per edge node, DBIRTH per device, then DDATA by alias with
    half of the metrics (a random half each time) changed; ``rows`` counts the messages that make rows."""

    def __init__(self, port: int, per_asset: int) -> None:
        rng = np.random.default_rng(1)
        mix = rng.normal(size=(6, len(SENSORS)))
        self.port, self.items = port, []
        now_ms = int(time.time() * 1000)
        seq = [0] * NODES
        node_of = [a % NODES for a in range(ASSETS)]
        topic = {
            (kind, a): spb_topics.message_topic(kind, GROUP, f"node{node_of[a]}", f"dev{a:03d}")
            for kind in ("DBIRTH", "DDATA")
            for a in range(ASSETS)
        }
        for n in range(NODES):
            self.items.append(
                (spb_topics.message_topic("NBIRTH", GROUP, f"node{n}"), spb.birth_payload(now_ms, 0, [], bd_seq=0))
            )
            seq[n] = 1
        half = len(SENSORS) // 2
        for i in range(per_asset):
            base = rng.normal(size=(ASSETS, 6)) @ mix + 0.2 * rng.normal(size=(ASSETS, len(SENSORS)))
            for a in range(ASSETS):
                n = node_of[a]
                if i == 0:
                    metrics = [
                        (s, j + 1, spb.DataType.Double, float(v)) for j, (s, v) in enumerate(zip(SENSORS, base[a]))
                    ]
                    payload = spb.birth_payload(now_ms, seq[n], metrics)
                    self.items.append((topic["DBIRTH", a], payload))
                else:
                    changed = np.sort(rng.choice(len(SENSORS), half, replace=False))
                    values = [(int(j) + 1, float(base[a, j])) for j in changed]
                    self.items.append((topic["DDATA", a], spb.data_payload(now_ms + i, seq[n], values)))
                seq[n] = (seq[n] + 1) % 256
        self.rows = len(self.items) - NODES


def make_session(port: int, client_id: str, filters: tuple[str, ...] = ("plant/+/telemetry",)) -> None:
    """Create the persistent session (subscribed at QoS 1) that will hold the backlog."""
    done = threading.Event()
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    c.on_subscribe = lambda *a: done.set()
    c.on_connect = lambda cl, *a: cl.subscribe([(f, 1) for f in filters])
    c.connect("127.0.0.1", port)
    c.loop_start()
    done.wait(10)
    c.disconnect()
    c.loop_stop()


def drop_session(port: int, client_id: str) -> None:
    """Connect once with a clean session so the broker stops queueing for ``client_id``."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    c.connect("127.0.0.1", port)
    c.loop_start()
    time.sleep(0.2)
    c.disconnect()
    c.loop_stop()


def consume(
    port: int, client_id: str, total: int, on_message: object = None, fast: bool = False
) -> tuple[float, float]:
    """(messages per second from the first to the last message, CPU microseconds per message).

    ``fast``: plantwatch's client, acknowledging every 1000 messages in one write.
    """
    count = [0]
    unacked: list[tuple[int, int]] = []
    first = [0.0, 0.0]
    finished = threading.Event()

    def counted(client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        if count[0] == 0:
            first[:] = [time.perf_counter(), time.process_time()]
        if on_message is not None:
            on_message(client, userdata, msg)  # type: ignore[operator]
        count[0] += 1
        if fast:
            unacked.append((msg.mid, msg.qos))
            if len(unacked) >= 1000 or count[0] >= total:
                client.ack_many(unacked)  # type: ignore[attr-defined]
                unacked.clear()
        if count[0] >= total:
            finished.set()

    cls = FastClient if fast else paho.Client
    c = cls(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, manual_ack=fast)
    c.on_message = counted
    c.connect("127.0.0.1", port)
    c.loop_start()
    finished.wait(600)
    end, cpu = time.perf_counter(), time.process_time()
    c.disconnect()
    c.loop_stop()
    n = count[0] - 1
    return n / max(end - first[0], 1e-9), (cpu - first[1]) / max(n, 1) * 1e6


class NaiveMonitor:
    """The textbook way: everything per message, in paho's callback."""

    def __init__(self, model_dir: Path) -> None:
        import torch

        from monitor.detector import model_folder as artefact

        torch.set_num_threads(1)
        self.torch = torch
        det = artefact.load(model_dir)
        self.model, self.mean, self.scale, self.window = det.model, det.scaler.mean, det.scaler.scale, det.window
        reg = CollectorRegistry()
        self.score = Gauge("naive_anomaly_score", "score", ["asset"], registry=reg)
        self.residual = Gauge("naive_sensor_residual", "residual", ["asset", "sensor"], registry=reg)
        self.history: dict[str, collections.deque[np.ndarray]] = {}
        self.threads_set = False

    def __call__(self, client: object, userdata: object, msg: paho.MQTTMessage) -> None:
        if not self.threads_set:  # per OS thread: paho's, not the main one
            self.torch.set_num_threads(1)
            self.threads_set = True
        doc = json.loads(msg.payload)
        asset = msg.topic.split("/")[1]
        x = (np.array([doc["values"][s] for s in SENSORS]) - self.mean) / self.scale
        h = self.history.setdefault(asset, collections.deque(maxlen=self.window))
        h.append(x)
        rows = list(h)
        rows = [rows[0]] * (self.window - len(rows)) + rows
        w = self.torch.tensor(np.concatenate(rows)[None, :], dtype=self.torch.float32)
        with self.torch.no_grad():
            r = (w - self.model(w)).view(self.window, -1).pow(2).mean(0).numpy()
        self.score.labels(asset).set(float(r.mean()))
        for s, v in zip(SENSORS, r):
            self.residual.labels(asset, s).set(float(v))


#: the series a drain's progress is read from: asking for these alone spares the monitor formatting the rest
PROGRESS = ("plantwatch_messages_total", "plantwatch_messages_rejected_total", "process_cpu_seconds_total")


def scrape(port: int, names: tuple[str, ...] = ()) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics as {(series, labels): value}; ``names``: only those series (``?name[]=``), else all."""
    query = "?" + urllib.parse.urlencode([("name[]", n) for n in names]) if names else ""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics{query}", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(m: dict, name: str) -> float:
    return sum(v for (n, _), v in m.items() if n == name)


def p99(before: dict, after: dict, stage: str) -> float:
    """histogram_quantile(0.99) of the observations between two scrapes."""

    def buckets(m: dict) -> dict[float, float]:
        return {
            float(dict(lab)["le"]): v
            for (n, lab), v in m.items()
            if n == "plantwatch_scoring_lag_seconds_bucket" and dict(lab)["stage"] == stage
        }

    b0, b1 = buckets(before), buckets(after)
    les = sorted(b1)
    counts = [b1[le] - b0.get(le, 0.0) for le in les]
    n = counts[-1]
    if n <= 0:
        return float("nan")
    rank, prev_le, prev_c = 0.99 * n, 0.0, 0.0
    for le, c in zip(les, counts):
        if c >= rank:
            return prev_le if le == float("inf") else prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-9)
        prev_le, prev_c = le, c
    return float("nan")


class Monitor:
    """``plantwatch monitor`` as a subprocess with a fixed client id."""

    def __init__(
        self,
        broker_port: int,
        model: Path,
        workdir: Path,
        client_id: str = "bench-plantwatch",
        sparkplug: bool = False,
        state_dir: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.cmd = [
            sys.executable,
            "-m",
            "monitor",
            "--log-level",
            "warning",
            "monitor",
            "--broker",
            f"mqtt://127.0.0.1:{broker_port}",
            "--model",
            str(model),
            "--metrics-port",
            str(self.port),
        ]
        self.env = dict(
            os.environ, PLANTWATCH_BROKER_CLIENT_ID=client_id, PLANTWATCH_MAX_ASSETS="1000", PLANTWATCH_INSTANCE="bench"
        )
        if sparkplug:
            self.env.update(PLANTWATCH_SOURCE_FORMAT="sparkplug", PLANTWATCH_SOURCE_GROUP_IDS=GROUP)
        if state_dir is not None:  # each asset's seq saved before every acknowledgement, streams every 10 s
            self.env.update(PLANTWATCH_STATE_DIR=str(state_dir))
        self.log = open(workdir / "monitor.log", "ab")  # noqa: SIM115 (the monitor writes to it until stop())
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: str = "/readyz") -> None:
        """Start and wait until ``wait`` answers 200 (/metrics: up, not yet connected)."""
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{wait}", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.01)
        raise RuntimeError(f"plantwatch monitor did not answer {wait}")

    def rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)


class RawPublisher:
    """A lean QoS 1 load generator: MQTT 3.1.1 PUBLISH packets written straight to the socket.

    paho's ``publish`` costs ~90 us of CPU per message, so a paho pacer at
    10k msg/s takes most of a core from the monitor it is measuring on a
    2-core host. This one builds a tick's packets and writes them at once; a
    thread reads the broker's PUBACKs so it never stops reading.
    """

    def __init__(self, port: int, client_id: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        cid = client_id.encode()
        body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid  # clean session, keepalive 60
        self.sock.sendall(b"\x10" + _varint(len(body)) + body)
        connack = self.sock.recv(4)
        if len(connack) < 4 or connack[0] != 0x20 or connack[3] != 0:
            raise RuntimeError(f"broker refused the load generator: {connack!r}")
        self.mid = 0
        self.acked = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            self.acked += len(data) // 4  # PUBACKs only: 4 bytes each

    def packet(self, topic: bytes, payload: bytes) -> bytes:
        self.mid = self.mid % 65535 + 1
        body = len(topic).to_bytes(2, "big") + topic + self.mid.to_bytes(2, "big") + payload
        return b"\x32" + _varint(len(body)) + body

    def send(self, packets: list[bytes]) -> None:
        self.sock.sendall(b"".join(packets))

    def close(self) -> None:
        try:
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        finally:
            self.sock.close()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, byte = divmod(n, 128)
        out.append(byte | (128 if n else 0))
        if not n:
            return bytes(out)


def pace(port: int, rate: float, seconds: float, seq0: int) -> int:
    """Publish every asset at ``rate / ASSETS`` Hz with the current time as payload ts (own process)."""
    rng = np.random.default_rng(2)
    mix = rng.normal(size=(6, len(SENSORS)))
    pub = RawPublisher(port, f"bench-pacer-{os.getpid()}")
    topics = [wire.telemetry_topic("plant", f"asset{a:03d}").encode() for a in range(ASSETS)]
    t0, i, sent = time.monotonic(), 0, 0
    while time.monotonic() - t0 < seconds:
        due = t0 + i * ASSETS / rate
        wait = due - time.monotonic()
        if wait > 0:  # behind schedule: publish at once (one clock read, or the wait can turn negative)
            time.sleep(wait)
        base = rng.normal(size=(ASSETS, 6)) @ mix + 0.2 * rng.normal(size=(ASSETS, len(SENSORS)))
        now = time.time()
        pub.send(
            [
                pub.packet(topics[a], wire.encode_telemetry(now, seq0 + i, dict(zip(SENSORS, base[a]))))
                for a in range(ASSETS)
            ]
        )
        sent += ASSETS
        i += 1
    deadline = time.monotonic() + 10
    while pub.acked < sent and time.monotonic() < deadline:
        time.sleep(0.01)
    pub.close()
    return sent


def measure_plantwatch(
    port: int,
    model: Path,
    workdir: Path,
    n: int,
    client_id: str,
    sparkplug: bool = False,
    qos: int = 1,
    state_dir: Path | None = None,
) -> tuple[float, float, Monitor]:
    """Rate and CPU per message of a fresh plantwatch session consuming an ``n`` backlog."""
    mon = Monitor(port, model, workdir, client_id, sparkplug=sparkplug, state_dir=state_dir)
    mon.start()  # creates the persistent session
    mon.stop()
    if sparkplug:
        backlog: Backlog = SparkplugBacklog(port, n // ASSETS)
        n = backlog.rows  # its NBIRTHs make no row: progress counts rows scored or rejected
    else:
        backlog = Backlog(port, n // ASSETS)
    backlog.publish(qos)
    mon.start(wait="/metrics")  # HTTP is up before the broker connection: watch it all
    samples = []
    while True:
        m = scrape(mon.port, PROGRESS)
        done = total(m, "plantwatch_messages_total") + total(m, "plantwatch_messages_rejected_total")
        assert mon.proc is not None
        cpu = total(m, "process_cpu_seconds_total") + children_cpu(mon.proc.pid)
        samples.append((time.perf_counter(), done, cpu))
        if done >= n:
            break
        time.sleep(POLL_S)
    return (*drain_rate(samples, n), mon)


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a live process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu(pid: int) -> float:
    """CPU seconds of ``pid``'s live child processes (the Sparkplug read process): the monitor's CPU too."""
    spent = 0.0
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in task.read_text().split():
            try:
                spent += cpu_s(int(child))
            except OSError:  # it ended between the two reads
                continue
    return spent


POLL_S = 0.5


def drain_rate(samples: list[tuple[float, float, float]], n: int) -> tuple[float, float]:
    """(messages per second, CPU microseconds per message) of a drain read from /metrics every :data:`POLL_S`.

    Between the first and the last reading taken while the backlog was draining, as the bare subscriber is
    timed from its first to its last message: the reading that sees the end lands up to a poll after it.
    Polls are sparse and ask for the :data:`PROGRESS` series alone because a full scrape of 100 assets
    costs the monitor 16-20 ms of CPU under the GIL (ten a second took ~10 % of its rate; Prometheus scrapes
    every 15 s); the three series cost it 5-8 ms, most of it building the families before they are
    filtered. The bare subscriber counts its messages for free. A drain too short for two readings
    inside it falls back to first reading to end, which underrates the monitor.
    """
    inside = [x for x in samples if 0 < x[1] < n]
    if len(inside) < 2:
        inside = [x for x in samples if x[1] > 0]
    (t0, d0, c0), (t1, d1, c1) = inside[0], inside[-1]
    return (d1 - d0) / max(t1 - t0, 1e-9), (c1 - c0) / max(d1 - d0, 1) * 1e6


def latency(port: int, mon: Monitor, rate: float, seconds: float, seq0: int) -> tuple[float, int]:
    """(p99 payload-ts-to-scored in ms, samples per asset sent) under a short paced load."""
    before = scrape(mon.port)
    out = subprocess.run(
        [sys.executable, __file__, "--pace", str(port), str(rate), str(seconds), str(seq0)],
        stdout=subprocess.PIPE,
        check=True,
    ).stdout
    time.sleep(1.0)
    return p99(before, scrape(mon.port), "source") * 1e3, int(out.decode().strip()) // ASSETS


def soak(port: int, mon: Monitor, rate: float, seconds: float, seq0: int) -> dict[str, float]:
    """Paced load from a separate process: p99 latency of this phase only, RSS over time."""
    before = scrape(mon.port)
    pacer = subprocess.Popen(
        [sys.executable, __file__, "--pace", str(port), str(rate), str(seconds), str(seq0)], stdout=subprocess.PIPE
    )
    rss = []
    while pacer.poll() is None:
        rss.append(mon.rss_mb())
        time.sleep(min(5.0, max(seconds / 12, 0.5)))
    out, _ = pacer.communicate()
    sent = int(out.decode().strip() or 0)
    time.sleep(1.0)
    after = scrape(mon.port)
    lat, rec = p99(before, after, "source"), p99(before, after, "receive")
    half = len(rss) // 2
    drift = float(np.mean(rss[half:]) - np.mean(rss[:half])) if half else 0.0
    print(
        f"soak {seconds:.0f}s at {sent / seconds:.0f} msg/s (asked {rate:.0f}): p99 payload-ts->scored = "
        f"{lat * 1e3:.1f} ms (target < 50), p99 receive->scored = {rec * 1e3:.1f} ms",
        flush=True,
    )
    print(
        f"RSS: start {rss[0]:.0f} MB, max {max(rss):.0f} MB, end {rss[-1]:.0f} MB, "
        f"second half - first half = {drift:+.1f} MB (target <= 300 MB and flat)",
        flush=True,
    )
    return {
        "soak_rate": round(sent / seconds),
        "p99_source_ms": round(lat * 1e3, 2),
        "p99_receive_ms": round(rec * 1e3, 2),
        "rss_max_mb": round(max(rss), 1),
        "rss_drift_mb": round(drift, 1),
    }


def sparkplug_rounds(port: int, model: Path, workdir: Path, n: int, rounds: int, qos: int) -> dict[str, object]:
    """JSON and Sparkplug through plantwatch, and a bare paho subscriber decoding Sparkplug, alternating.

    JSON travels at QoS 1 (plantwatch's contract); Sparkplug at ``qos`` (the specification says 0 for its
    data; 1 makes it pay for delivery and acknowledgements as JSON does), to plantwatch and to the bare
    subscriber alike."""
    filters = tuple(spb_topics.read_filters([GROUP]))
    decode = spb.Payload.FromString
    json_runs, spb_runs, bare_runs = [], [], []
    for r in range(rounds):
        make_session(port, "bench-bare-spb", filters)
        backlog = SparkplugBacklog(port, n // ASSETS)
        backlog.publish(qos)
        bare_runs.append(consume(port, "bench-bare-spb", len(backlog.items), lambda c, u, m: decode(m.payload)))
        drop_session(port, "bench-bare-spb")
        for sparkplug, runs in ((False, json_runs), (True, spb_runs)):
            client_id = f"bench-pw-{'sparkplug' if sparkplug else 'json'}-{r}"
            rate, cpu, mon = measure_plantwatch(port, model, workdir, n, client_id, sparkplug, qos if sparkplug else 1)
            mon.stop()
            drop_session(port, client_id)  # the broker stops queueing for it
            runs.append((rate, cpu))
        print(
            f"  round {r + 1}: bare paho + protobuf decode {bare_runs[-1][0]:7.0f} msg/s ({bare_runs[-1][1]:.0f} us CPU), "
            f"plantwatch JSON {json_runs[-1][0]:7.0f} msg/s ({json_runs[-1][1]:.0f} us CPU), "
            f"plantwatch Sparkplug {spb_runs[-1][0]:7.0f} msg/s ({spb_runs[-1][1]:.0f} us CPU)",
            flush=True,
        )
    b, j, s = max(bare_runs), max(json_runs), max(spb_runs)
    print(
        f"Sparkplug at QoS {qos} ({ASSETS} devices x {len(SENSORS)} metrics, half changed per DDATA, best of {rounds}): "
        f"{s[0]:.0f} msg/s = {s[0] / j[0]:.2f}x the JSON rate (target >= 0.8), "
        f"{s[0] / b[0]:.2f}x a bare paho subscriber that only decodes the protobuf (target >= 0.8); "
        f"CPU per message {s[1]:.0f} us vs {j[1]:.0f} us (JSON) and {b[1]:.0f} us (bare decode)",
        flush=True,
    )
    return {
        "sparkplug_qos": qos,
        "sparkplug": round(s[0]),
        "sparkplug_json": round(j[0]),
        "sparkplug_bare_decode": round(b[0]),
        "ratio_sparkplug_json": round(s[0] / j[0], 3),
        "ratio_sparkplug_bare_decode": round(s[0] / b[0], 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--messages",
        type=int,
        default=150000,
        help="backlog for bare paho and plantwatch (default 150000: seconds of draining, several readings inside)",
    )
    ap.add_argument("--naive-messages", type=int, default=5000, help="backlog for the naive monitor (default 5000)")
    ap.add_argument("--rounds", type=int, default=2, help="bare/plantwatch rounds, best of each reported (default 2)")
    ap.add_argument("--soak", type=float, default=60.0, help="seconds of paced load for latency and RSS (default 60)")
    ap.add_argument("--model", type=Path, default=None, help="model folder with the 52 sensors (default: train one)")
    ap.add_argument(
        "--only-sparkplug", action="store_true", help="only the JSON vs Sparkplug throughput rounds (no naive, no soak)"
    )
    ap.add_argument(
        "--sparkplug-qos",
        type=int,
        default=0,
        choices=[0, 1],
        help="QoS of the Sparkplug backlog (default 0, the specification's for data; JSON is always QoS 1)",
    )
    ap.add_argument("--pace", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pace:
        port, rate, seconds, seq0 = args.pace
        print(pace(int(port), float(rate), float(seconds), int(seq0)))
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="pw-bench-"))
    port = free_port()
    (workdir / "mosquitto.conf").write_text(CONF.format(port=port))
    broker = subprocess.Popen(
        [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(workdir / "mosquitto.conf")]
    )
    mon: Monitor | None = None
    try:
        wait_for_port(port, proc=broker)  # type: ignore[arg-type]
        model = args.model or train_model(workdir)
        n = (args.messages // ASSETS) * ASSETS
        print(
            f"backlog: {n} messages ({ASSETS} assets x {len(SENSORS)} sensors, QoS 1); "
            f"rates from the first to the last message; CPU per message in microseconds",
            flush=True,
        )
        spb_result = sparkplug_rounds(port, model, workdir, n, args.rounds, args.sparkplug_qos)
        if args.only_sparkplug:
            print(json.dumps(spb_result))
            return 0
        bare, fast, pw, pw_state = [], [], [], []
        for r in range(args.rounds):
            make_session(port, "bench-bare")
            Backlog(port, n // ASSETS).publish()
            bare.append(consume(port, "bench-bare", n))
            drop_session(port, "bench-bare")
            make_session(port, "bench-fast")
            Backlog(port, n // ASSETS).publish()
            fast.append(consume(port, "bench-fast", n, fast=True))
            drop_session(port, "bench-fast")
            if mon is not None:
                mon.stop()
            # alone first: with a state directory (seq saved before acknowledging, streams every 10 s)
            st_rate, st_cpu, st_mon = measure_plantwatch(
                port, model, workdir, n, f"bench-plantwatch-state-{r}", state_dir=workdir / f"state-{r}"
            )
            st_mon.stop()
            drop_session(port, f"bench-plantwatch-state-{r}")
            pw_state.append((st_rate, st_cpu))
            rate, cpu, mon = measure_plantwatch(port, model, workdir, n, f"bench-plantwatch-{r}")
            pw.append((rate, cpu))
            print(
                f"  round {r + 1}: bare paho {bare[-1][0]:7.0f} msg/s ({bare[-1][1]:.0f} us CPU), "
                f"bare on plantwatch's client {fast[-1][0]:7.0f} msg/s ({fast[-1][1]:.0f} us CPU), "
                f"plantwatch {rate:7.0f} msg/s ({cpu:.0f} us CPU), "
                f"with a state dir {st_rate:7.0f} msg/s ({st_cpu:.0f} us CPU)",
                flush=True,
            )
        nn = (args.naive_messages // ASSETS) * ASSETS
        make_session(port, "bench-naive")
        Backlog(port, nn // ASSETS).publish()
        naive = consume(port, "bench-naive", nn, NaiveMonitor(model))
        drop_session(port, "bench-naive")
        b, f, p, ps = max(bare), max(fast), max(pw), max(pw_state)
        print(f"(1) bare paho subscriber : {b[0]:8.0f} msg/s  {b[1]:5.0f} us CPU/msg", flush=True)
        print(f"    (on plantwatch's client: {f[0]:8.0f} msg/s  {f[1]:5.0f} us CPU/msg)", flush=True)
        print(f"(2) naive monitor        : {naive[0]:8.0f} msg/s  {naive[1]:5.0f} us CPU/msg", flush=True)
        print(f"(3) plantwatch monitor   : {p[0]:8.0f} msg/s  {p[1]:5.0f} us CPU/msg", flush=True)
        print(
            f"    with a state directory: {ps[0]:8.0f} msg/s  {ps[1]:5.0f} us CPU/msg "
            f"({ps[0] / p[0]:.2f}x the rate, {ps[1] / p[1]:.2f}x the CPU per message)",
            flush=True,
        )
        print(
            f"ratios (best of {args.rounds}): plantwatch/bare = {p[0] / b[0]:.2f} (target >= 0.8; CPU-based "
            f"{b[1] / p[1]:.2f}), plantwatch/naive = {p[0] / naive[0]:.1f} (target >= 6); "
            f"plantwatch/bare on its own client = {p[0] / f[0]:.2f}",
            flush=True,
        )
        assert mon is not None
        result: dict[str, object] = {
            **spb_result,
            "bare": round(b[0]),
            "bare_fast_client": round(f[0]),
            "naive": round(naive[0]),
            "plantwatch": round(p[0]),
            "plantwatch_state": round(ps[0]),
            "cpu_us": {
                "plantwatch_state": round(ps[1], 1),
                "bare": round(b[1], 1),
                "bare_fast_client": round(f[1], 1),
                "naive": round(naive[1], 1),
                "plantwatch": round(p[1], 1),
            },
            "ratio_bare": round(p[0] / b[0], 3),
            "ratio_naive": round(p[0] / naive[0], 2),
        }
        seq0 = n // ASSETS
        for frac in (8, 4):
            ms, ticks = latency(port, mon, p[0] / frac, 10.0, seq0)
            seq0 += ticks
            print(
                f"p99 payload-ts->scored at 1/{frac} of plantwatch's rate ({p[0] / frac:.0f} msg/s, 10 s): {ms:.1f} ms",
                flush=True,
            )
            result[f"p99_ms_at_1/{frac}"] = round(ms, 1)
        result.update(soak(port, mon, p[0] / 2, args.soak, seq0))
        print(json.dumps(result))
    finally:
        if mon is not None:
            mon.stop()
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
