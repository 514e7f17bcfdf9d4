"""``plantwatch simulate`` publishing over MQTT into NATS's MQTT listener, unchanged: each simulated asset
lands in the partition the monitor computes, and two instances score every simulated message once."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

from tests.monitor.conftest import MonitorProcess, wait_until
from tests.monitor.daemon.jetstream.helpers import Stream, counter, health, scored, stored
from tests.nats_cluster import NatsCluster

ASSETS = ["asset01", "asset02", "asset03"]


def _sim(level: str = "warning") -> list[str]:
    """``plantwatch simulate`` of the three 8-sensor assets, logging at ``level``."""
    return [sys.executable, "-m", "monitor", "--log-level", level, "simulate", "--assets", "3", "--sensors", "8"]


def _models(tmp: Path) -> dict[str, Path]:
    """A tiny model per simulated asset (each has its own sensors), trained on the simulator's own history."""
    import torch

    from monitor import csvio
    from monitor.detector import TrainSettings, train_table

    out = {}
    for i, asset in enumerate(ASSETS, start=1):
        csv = tmp / f"{asset}.csv"
        cmd = [*_sim(), "--to-csv", str(csv), "--samples", "400", "--asset-index", str(i)]
        subprocess.run(cmd, check=True, timeout=60, capture_output=True)
        torch.set_num_threads(1)
        with mock.patch.object(torch, "set_num_threads"):
            ts = TrainSettings(seed=0, window=4, folds=2, max_epochs=3, false_alarm_rate=0.001)
            train_table(csvio.read_table(csv), ts, tmp / f"model-{asset}")
        out[asset] = tmp / f"model-{asset}"
    return out


def _settled(stream: Stream) -> int:
    """The stream's message count once it has stopped growing for half a second."""
    before = stored(stream)
    time.sleep(0.5)
    after = stored(stream)
    return after if after == before else 0


def test_the_simulator_publishes_into_nats_and_two_instances_score_each_simulated_asset_once(
    nats_cluster: NatsCluster, monitor_process: Callable[..., MonitorProcess], tmp_path: Path
) -> None:
    stream = Stream(nats_cluster)
    models = _models(tmp_path)
    cfg = tmp_path / "monitor.toml"
    patterns = "".join(f'{a} = "{m}"\n' for a, m in models.items())
    cfg.write_text('[models]\nunknown_asset = "reject"\n[models.assets]\n' + patterns)
    mons = [monitor_process(["--config", str(cfg)], stream.env(k, 2), name=f"sim-m{k}") for k in (0, 1)]
    for m in mons:
        m.wait_ready(40)
    # NATS acknowledges an MQTT QoS 1 PUBLISH without waiting for the stream, so a stream without a current
    # leader and replicas (an earlier test restarted a node of this session's cluster) would drop them
    wait_until(lambda: health(stream) == "", 30, "the stream's leader and replicas current")
    broker = f"mqtt://127.0.0.1:{nats_cluster.mqtt[2]}"
    publish = [*_sim("info"), "--broker", broker, "--prefix", stream.prefix, "--rate", "20", "--duration", "2"]
    sim = subprocess.run(publish, capture_output=True, text=True, timeout=60)  # info: its publish_finished summary
    assert sim.returncode == 0, sim.stderr[-2000:]
    # ~40 per asset, all through NATS's MQTT listener into the stream; the stream's count can trail the
    # publisher's acknowledgements by a moment on a loaded machine (a CI run read 1 right after the exit)
    try:
        wait_until(lambda: _settled(stream) >= 3 * 30, 20, "the simulated messages stored in the stream")
    except AssertionError as e:  # say what the publisher and the stream saw (a CI run stored too few, once)
        finished = [ln for ln in sim.stderr.splitlines() if "publish_finished" in ln or '"warning"' in ln]
        raise AssertionError(f"{e}: stored {stored(stream)}; stream: {health(stream) or 'healthy'}; "
                             f"simulator: {finished[-5:]}") from None  # fmt: skip
    sent = stored(stream)
    wait_until(lambda: sum(scored(m, a) for m in mons for a in ASSETS) == sent, 30, "every simulated message scored")
    for k, m in enumerate(mons):
        assert counter(m, "plantwatch_jetstream_messages_total", kind="foreign") == 0
        for a in ASSETS:
            if stream.owner(a, 2) != k:
                assert scored(m, a) == 0
    assert all(any(scored(m, a) > 0 for m in mons) for a in ASSETS)
