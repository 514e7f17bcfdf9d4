"""What a challenger in shadow costs the worker: time per message against the same model without one.

The worker's batch step (decode, order, score, drift, metrics state; no MQTT)
runs on the same batches for three setups built in the same run: a plain
model folder (the baseline), a model store without a challenger, and the
store with a challenger, alternated, best of N rounds of 20 batches. Printed
per batch shape: microseconds per message and the ratios to the baseline.

    python benchmarks/shadow_benchmark.py
    python benchmarks/shadow_benchmark.py --rounds 5
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor import config, wire  # noqa: E402
from monitor.daemon import BatchQueue, State, load_models  # noqa: E402
from monitor.daemon.worker import Worker  # noqa: E402
from monitor.detector import model_store  # noqa: E402
from tests.monitor.conftest import SENSORS, history, train  # noqa: E402

Item = tuple[str, bytes, float, int, int, int, bool]


def worker(path: Path) -> Worker:
    cfg = config.parse({"models": {"default": str(path)}})
    return Worker(cfg, load_models(cfg), BatchQueue(10), State(), lambda items: None, lambda t, p: None)


def batches(assets: int, per: int, n: int, seq0: int) -> list[list[Item]]:
    rows = history(2000, seed=7)
    out = []
    for b in range(n):
        items: list[Item] = []
        for k in range(per):
            for a in range(assets):
                seq = seq0 + b * per + k
                payload = wire.encode_telemetry(1.7e9 + seq, seq, dict(zip(SENSORS, rows[seq % 2000].tolist())))
                items.append((f"plant/a{a}/telemetry", payload, time.time(), 0, 0, 0, False))
        out.append(items)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=9, help="rounds of 20 batches; the best counts (default: 9)")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pw-shadow-"))
    champion, challenger = train(tmp, seed=0), train(tmp, seed=1)
    stores = {}
    for name, shadow in (("store", False), ("store+challenger", True)):
        store = tmp / name / "boiler"
        store.mkdir(parents=True)
        shutil.copytree(champion, store / "v0001")
        shutil.copytree(challenger, store / "v0002")
        model_store.switch(store, "v0001", "initial", "benchmark", "")
        if shadow:
            model_store.set_pointer(store, model_store.CHALLENGER, "v0002")
        stores[name] = store
    setups = {"folder": champion, **stores}
    for assets, per in ((100, 1), (100, 10), (10, 100)):
        ws = {k: worker(v) for k, v in setups.items()}
        times: dict[str, list[float]] = {k: [] for k in setups}
        for b in batches(assets, per, 3, 0):  # warm-up: admit the assets, fill the windows
            for w in ws.values():
                w._process(b)
        seq = 3 * per
        for _ in range(args.rounds):
            bs = batches(assets, per, 20, seq)
            seq += 20 * per
            for k, w in ws.items():
                t = time.perf_counter()
                for b in bs:
                    w._process(b)
                times[k].append(time.perf_counter() - t)
        us = {k: min(v) / (20 * assets * per) * 1e6 for k, v in times.items()}
        print(
            f"{assets} assets x {per} rows per batch, {len(SENSORS)} sensors: "
            + ", ".join(f"{k} {v:.1f} us/msg" for k, v in us.items())
            + f"; store x{us['store'] / us['folder']:.2f}, with challenger x{us['store+challenger'] / us['folder']:.2f}"
            " of the folder"
        )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
