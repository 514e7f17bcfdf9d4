"""``plantwatch demo``: the whole chain on one machine, nothing to install beyond pip.

broker (mosquitto if installed, else the embedded amqtt) -> simulator with a
fault every little while -> monitor (models trained on simulated history at
first start, cached afterwards) -> /metrics, /healthz, /readyz and a live
terminal view, until Ctrl-C or ``--duration``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

from monitor import __version__, csvio, logs, signals
from monitor.config import parse
from monitor.daemon import Monitor
from monitor.detector import TrainSettings, read_manifest, train_table
from monitor.errors import ArtefactError
from monitor.mqtt import settings_from_url

from .faults import FaultTarget, bind_faults, periodic_faults
from .history import write_history
from .local_broker import LocalBroker
from .local_broker import start as start_broker
from .process import AssetProcess, make_assets
from .publish import Publisher
from .sparkplug_edge import SparkplugSettings
from .view import Footer, render

log = logs.get("demo")

SEED = 7
HISTORY_SAMPLES = 1500
FAULT_EVERY_S = 45.0
DEMO_TRAINING = TrainSettings(seed=0, window=10, folds=3, max_epochs=40)


def cache_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "plantwatch" / "demo"


def _usable(folder: Path) -> bool:
    """A cached model this plantwatch reads (one from an older version is trained again)."""
    if not (folder / "manifest.json").exists():
        return False
    try:
        read_manifest(folder)
    except ArtefactError:
        return False
    return True


def ensure_models(assets: list[AssetProcess], rate: float, cache: Path) -> dict[str, str]:
    """One model per asset, trained on another run of the same simulated plant; cached by version."""
    models: dict[str, str] = {}
    for asset in assets:
        folder = cache / f"v{__version__}-seed{SEED}-{asset.name}-{asset.n_sensors}s"
        if not _usable(folder):
            print(
                f"training the demo model for {asset.name} ({asset.n_sensors} sensors, "
                f"{HISTORY_SAMPLES} samples of simulated history; cached in {cache}) ...",
                file=sys.stderr,
                flush=True,
            )
            folder.parent.mkdir(parents=True, exist_ok=True)
            history = folder.parent / f"{folder.name}.csv"
            past = AssetProcess(SEED, asset.asset_index, realization=1)
            write_history(history, past, HISTORY_SAMPLES, rate=rate)
            train_table(csvio.read_table(history), DEMO_TRAINING, folder, force=True)
            history.unlink()
        models[asset.name] = str(folder)
    return models


def demo_command(args: argparse.Namespace) -> int:
    if args.assets < 1 or args.rate <= 0:
        from monitor.errors import InputError

        raise InputError("--assets must be >= 1 and --rate > 0")
    stop = threading.Event()
    # SIGHUP too (the terminal closed): every way out goes through _run's cleanup (broker and its temp folder)
    ends = (*signals.STOP_SIGNALS, signal.SIGHUP)
    with signals.handlers(dict.fromkeys(ends, lambda signum, frame: stop.set())):
        return _run(args, stop)


def _run(args: argparse.Namespace, stop: threading.Event) -> int:
    assets = make_assets(args.assets, SEED)
    models = ensure_models(assets, args.rate, cache_dir(args.cache))
    broker = start_broker(args.broker_port, prefer=args.broker_kind)
    print(f"broker: {broker.url} ({broker.kind})", flush=True)
    monitor = publisher = None
    sparkplug = SparkplugSettings() if getattr(args, "format", "json") == "sparkplug" else None
    if sparkplug is not None:  # the monitor names a Sparkplug device <edge_node_id>/<device_id>
        models = {f"*/{name}": folder for name, folder in models.items()}  # and a drill's <edge_node>/<asset>-drill
    try:
        monitor = _start_monitor(broker, models, args.metrics_port, sparkplug)
        publisher, thread = _start_publisher(broker, assets, args.rate, stop, sparkplug)
        if not monitor.wait_ready(30):
            log.error("demo_not_ready", problems=monitor.readiness_problems())
            return 1
        metrics = f"http://127.0.0.1:{monitor.metrics_port}/metrics"
        print(f"metrics: {metrics}  (also /healthz, /readyz); Ctrl-C to stop", flush=True)
        footer = Footer(broker.url, metrics, publisher.injecting)
        _watch(monitor, stop, args.duration, footer, view=not args.no_view and sys.stdout.isatty())
    finally:
        stop.set()
        if publisher is not None:
            thread.join(10)
        if monitor is not None:
            monitor.stop()
        broker.stop()
    print("demo stopped", flush=True)
    return 0


def model_patterns(models: dict[str, str]) -> dict[str, str]:
    """Each demo asset and its drill copy (``<asset>-drill``, deploy/drills/README.md) to the asset's model.

    >>> model_patterns({"asset01": "m1"})
    {'asset01': 'm1', 'asset01-drill': 'm1'}
    """
    return {pattern: folder for name, folder in models.items() for pattern in (name, f"{name}-drill")}


def _start_monitor(
    broker: LocalBroker, models: dict[str, str], port: int, sparkplug: SparkplugSettings | None = None
) -> Monitor:
    settings: dict[str, object] = {
        "instance": "demo",
        "broker": {"url": broker.url, "client_id": "plantwatch-demo-monitor"},
        "metrics": {"port": port},
        "models": {"assets": model_patterns(models), "unknown_asset": "reject"},
    }
    if sparkplug is not None:
        settings["source"] = {"format": "sparkplug", "group_ids": [sparkplug.group_id]}
    cfg = parse(settings)
    monitor = Monitor(cfg)
    monitor.start()
    return monitor


def _start_publisher(
    broker: LocalBroker,
    assets: list[AssetProcess],
    rate: float,
    stop: threading.Event,
    sparkplug: SparkplugSettings | None = None,
) -> tuple[Publisher, threading.Thread]:
    specs = periodic_faults([a.name for a in assets], FAULT_EVERY_S, rate, SEED, duration_s=(15.0, 30.0))
    injections = bind_faults(specs, [FaultTarget.of(a) for a in assets], SEED)
    publisher = Publisher(
        settings_from_url(broker.url),
        assets,
        rate=rate,
        injections=injections,
        stop_event=stop,
        client_id="plantwatch-demo-simulator",
        sparkplug=sparkplug,
    )
    thread = threading.Thread(target=publisher.run, name="simulator", daemon=True)
    thread.start()
    return publisher, thread


def _watch(monitor: Monitor, stop: threading.Event, duration: float | None, footer: Footer, view: bool) -> None:
    """Refresh the live view each second (or log a summary every 10 s off a terminal)."""
    deadline = None if duration is None else time.monotonic() + duration
    last_log = 0.0
    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
        snap = monitor.snapshot()
        if view:
            sys.stdout.write("\x1b[H\x1b[2J" + render(snap, footer.now()) + "\n")
            sys.stdout.flush()
        elif time.monotonic() - last_log >= 10:
            last_log = time.monotonic()
            log.info(
                "demo_status",
                connected=snap.connected,
                ready=snap.ready,
                assets={
                    a.asset: {
                        "score": round(a.score, 3),
                        "threshold": round(a.threshold, 3),
                        "alarm": a.alarm,
                        "messages": a.messages,
                    }
                    for a in snap.assets
                },
            )
        stop.wait(1.0 if view else 0.5)
