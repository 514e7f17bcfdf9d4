"""How ``plantwatch train`` scales with the history: seconds, peak memory and held-out false alarms (a script).

For each history length (10^3 .. 10^6 rows of a simulated 52-sensor asset:
latent dynamics, operating modes, sensor noise) it runs, each in its own
subprocess so the peak RSS is that size's alone (``os.wait4``):

1. a baseline that only reads the CSV and standardises it (the floor: what
   holding the history costs, measured in the same run);
2. ``plantwatch train`` with default options (plus any given after ``--``);
3. ``plantwatch score`` of fresh normal data of the same process (another
   realisation, never trained on), for the false-alarm ratio: the share of
   rows in alarm, and of rows above the threshold, over the target rate the
   model was calibrated for (1.0 = the promise held).

Targets (issue 12): 10^5 x 52 in <= 5 min, 10^6 x 52 in <= 20 min with peak
RSS <= 4 GB, on the 2-core machine. The load average is printed beside each
row: other work on a shared host slows training.

    python benchmarks/training_benchmark.py --max-rows 10000      # quick: 10^3 and 10^4 (~1 min)
    python benchmarks/training_benchmark.py                       # up to 10^6 (~30 min)
    python benchmarks/training_benchmark.py --sizes 100000 -- --device cpu
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator.history import write_history  # noqa: E402
from simulator.process import AssetProcess  # noqa: E402

TARGET_SECONDS = {100_000: 300.0, 1_000_000: 1200.0}
TARGET_RSS_MB = {1_000_000: 4096.0}
SEED = 11
BASELINE = (
    "import sys; from monitor import csvio; from monitor.detector.model import Scaler; "
    "t = csvio.read_table(sys.argv[1]); Scaler.fit(t.values).transform(t.values)"
)


@dataclass
class Run:
    seconds: float
    peak_mb: float
    stderr: str


def run(args: list[str], timeout: float) -> Run:
    """One subprocess; its wall time and its own peak RSS (wait4's rusage is per child)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=ROOT)
        try:
            _, status, usage = _wait4(proc.pid, started + timeout)
        except TimeoutError:
            proc.kill()
            proc.wait()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        err.seek(0)
        text = err.read()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({proc.returncode}):\n{text[-3000:]}")
    return Run(seconds, usage.ru_maxrss / 1024.0, text)  # ru_maxrss is in KiB on Linux


def _wait4(pid: int, deadline: float) -> tuple[int, int, os.struct_rusage]:  # type: ignore[name-defined]
    while True:
        got, status, usage = os.wait4(pid, os.WNOHANG)
        if got == pid:
            return got, status, usage
        if time.perf_counter() > deadline:
            raise TimeoutError(f"pid {pid} still running")
        time.sleep(0.2)


def plantwatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "monitor", "--log-level", "warning", *args]


def held_out_rates(scores: Path) -> tuple[float, float]:
    """Share of rows in alarm and of rows above the threshold."""
    alarm = above = n = 0
    with open(scores) as f:
        for row in csv.DictReader(f):
            if not row["score"]:
                continue
            n += 1
            alarm += row["anomaly"] == "1"
            above += float(row["score"]) > float(row["threshold"])
    return alarm / max(n, 1), above / max(n, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--max-rows", type=int, default=None, help="leave out the histories longer than this")
    parser.add_argument("--sensors", type=int, default=52)
    parser.add_argument("--held-out", type=int, default=20_000, help="rows of new normal data scored per size")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per training run")
    parser.add_argument("--keep", type=Path, default=None, help="keep the histories and models in this folder")
    parser.add_argument("train_options", nargs="*", help="extra options for 'plantwatch train' (after --)")
    args = parser.parse_args()
    sizes = sorted(s for s in args.sizes if args.max_rows is None or s <= args.max_rows)
    if not sizes:
        parser.error("no size left under --max-rows")
    with tempfile.TemporaryDirectory(prefix="training-bench-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        fresh = work / "held-out.csv"
        write_history(fresh, AssetProcess(SEED, 1, n_sensors=args.sensors, realization=2), args.held_out)
        print(
            f"{args.sensors} sensors, held-out {args.held_out} rows of another realisation; "
            f"train options: {' '.join(args.train_options) or '(defaults)'}; {os.cpu_count()} CPUs",
            flush=True,
        )
        header = (
            f"{'rows':>9} {'sensors':>7} {'train s':>8} {'target s':>8} {'peak MB':>8} {'target MB':>9} "
            f"{'read s':>7} {'read MB':>8} {'alarm/tgt':>9} {'above/tgt':>9} {'stopped':>8} {'load':>9}"
        )
        print(header, flush=True)
        for n in sizes:
            history = work / f"history-{n}.csv"
            write_history(history, AssetProcess(SEED, 1, n_sensors=args.sensors, realization=1), n)
            load_before = os.getloadavg()[0]
            base = run([sys.executable, "-c", BASELINE, str(history)], args.timeout)
            model = work / f"model-{n}"
            train = run(
                plantwatch("train", "--data", str(history), "--out", str(model), "--force", *args.train_options),
                args.timeout,
            )
            load_after = os.getloadavg()[0]
            scores = work / f"scores-{n}.csv"
            run(plantwatch("score", "--model", str(model), "--data", str(fresh), "--out", str(scores)), args.timeout)
            manifest = json.loads((model / "manifest.json").read_text())
            target = float(manifest["calibration"]["target_rate"])
            alarm, above = held_out_rates(scores)
            stopped = manifest["training"].get("stopped_by_budget", 0)
            t_target = TARGET_SECONDS.get(n)
            m_target = TARGET_RSS_MB.get(n)
            print(
                f"{n:>9} {args.sensors:>7} {train.seconds:>8.1f} {_opt(t_target, '.0f'):>8} {train.peak_mb:>8.0f} "
                f"{_opt(m_target, '.0f'):>9} {base.seconds:>7.1f} {base.peak_mb:>8.0f} {alarm / target:>9.2f} "
                f"{above / target:>9.2f} {stopped:>8} {load_before:>4.1f}-{load_after:<4.1f}",
                flush=True,
            )
            if not args.keep:
                history.unlink()
                scores.unlink()
        print(
            "train s / peak MB: wall time and peak RSS of 'plantwatch train'; read s / read MB: reading and "
            "standardising the same CSV alone; alarm/tgt, above/tgt: held-out share of rows in alarm / above the "
            "threshold over the calibrated target rate; stopped: fits ended by --max-seconds; load: 1-min load "
            "average before-after training"
        )
    return 0


def _opt(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


if __name__ == "__main__":
    raise SystemExit(main())
