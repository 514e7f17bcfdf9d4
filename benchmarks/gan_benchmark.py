"""Do GAN-injected TEP faults look like the real ones to the monitor? Detection rates per class, both ways.

Exactly as benchmarks/tep_benchmark.py: ``plantwatch train`` on d00.dat, then
``plantwatch score`` on files. For every fault class k it scores

- the real test run dNN_te.dat (fault from row 161), and
- the normal test run d00_te.dat with a ``gan:k`` pattern injected from row 161
  through the simulator's own injection path (``parse_fault`` ->
  ``bind_faults`` with the GAN -> ``InjectionSet.apply``, the pattern scaled by
  the replayed file's sensor spreads), ``--draws`` patterns per class,

and prints the fault detection rate (rows 161-960 flagged) of each, side by
side. The GAN must not have seen the test runs (``plantwatch gan train`` reads
dNN.dat only).

    python benchmarks/gan_benchmark.py --gan gans/tep [--data ../shared/data/tep] [--draws 2] [--seed 0]
    python benchmarks/gan_benchmark.py                  # trains a GAN first (default epochs, ~10 min)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tep_benchmark import EXCLUDED, FAULT_START, NAMES, load, plantwatch, read_flags, write_csv  # noqa: E402


def inject(normal: np.ndarray, gan_path: Path, label: str, seed: int) -> np.ndarray:
    """d00_te with a gan:<label> pattern from row 161 to the end, through the simulator's injection path."""
    from simulator.faults import FaultTarget, InjectionSet, bind_faults, parse_fault
    from simulator.replay import ReplaySource

    source = ReplaySource("d00_te", list(NAMES), normal)
    spec = parse_fault(f"gan:{label}@{FAULT_START}+{len(normal) - FAULT_START}")
    (injection,) = bind_faults([spec], [FaultTarget.of(source)], seed, _patterns(gan_path))  # type: ignore[arg-type]
    out = source.read(len(normal))
    InjectionSet([injection]).apply(out, 0)
    return out


_LOADED: dict[Path, object] = {}


def _patterns(path: Path) -> object:
    from simulator.gan.inject import load_patterns

    if path not in _LOADED:
        _LOADED[path] = load_patterns(path)
    return _LOADED[path]


def fdr(flags: np.ndarray) -> float:
    return float(flags[FAULT_START:].mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "tep")
    parser.add_argument(
        "--gan", type=Path, default=None, help="GAN folder (default: train one into a temporary folder)"
    )
    parser.add_argument("--draws", type=int, default=2, help="patterns injected per class (default: 2)")
    parser.add_argument("--seed", type=int, default=0, help="detector seed and first pattern seed (default: 0)")
    parser.add_argument(
        "--classes", type=int, nargs="+", default=list(range(1, 22)), help="fault classes (default: 1-21)"
    )
    args = parser.parse_args()
    if not (args.data / "d00.dat").exists():
        print(f"TEP data not found in {args.data}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(1)
    normal_te = load(args.data / "d00_te.dat")
    with tempfile.TemporaryDirectory(prefix="pw-gan-bench-") as d:
        work = Path(d)
        gan = args.gan
        if gan is None:
            gan = work / "gan"
            secs = plantwatch("gan", "train", "--data", str(args.data), "--out", str(gan))
            print(f"trained the GAN in {secs:.0f}s", file=sys.stderr)
        write_csv(load(args.data / "d00.dat"), work / "d00.csv")
        model = work / "model"
        plantwatch("train", "--data", str(work / "d00.csv"), "--out", str(model), "--seed", str(args.seed))
        rows = []
        started = time.perf_counter()
        for k in args.classes:
            write_csv(load(args.data / f"d{k:02d}_te.dat"), work / "real.csv")
            plantwatch("score", "--model", str(model), "--data", str(work / "real.csv"), "--out", str(work / "s.csv"))
            real = fdr(read_flags(work / "s.csv"))
            injected, pre = [], []
            for draw in range(args.draws):
                write_csv(inject(normal_te, gan, str(k), args.seed + 100 * draw + k), work / "inj.csv")
                plantwatch(
                    "score", "--model", str(model), "--data", str(work / "inj.csv"), "--out", str(work / "s.csv")
                )
                flags = read_flags(work / "s.csv")
                injected.append(fdr(flags))
                pre.append(float(flags[:FAULT_START].mean()))
            rows.append((k, real, float(np.mean(injected)), float(np.std(injected)), float(np.mean(pre))))
            print(
                f"fault {k:2d}: real {100 * real:5.1f}%  injected {100 * rows[-1][2]:5.1f}%",
                file=sys.stderr,
                flush=True,
            )
    print(
        f"\nGAN injection vs real fault, TEP: detector trained on d00.dat (seed {args.seed}), rows 161-960 flagged; "
        f"injected = d00_te.dat + gan:<class> from row 161 ({args.draws} draws, mean ± sd); GAN {gan}\n"
    )
    print("| fault | real dNN_te FDR % | injected FDR % | difference (points) |")
    print("|---|---|---|---|")
    for k, real, inj, sd, _ in rows:
        mark = " (excluded)" if k in EXCLUDED else ""
        print(f"| {k}{mark} | {100 * real:.1f} | {100 * inj:.1f} ± {100 * sd:.1f} | {100 * (inj - real):+.1f} |")
    det = [r for r in rows if r[0] not in EXCLUDED]
    real18, inj18 = np.mean([r[1] for r in det]), np.mean([r[2] for r in det])
    gap = np.mean([abs(r[2] - r[1]) for r in det])
    print(f"| **avg 18 detectable** | **{100 * real18:.1f}** | **{100 * inj18:.1f}** | mean abs gap {100 * gap:.1f} |")
    print(
        f"\nfalse-alarm rate of d00_te rows 1-160 (before the injections): {100 * rows[0][4]:.1f}%; "
        f"{time.perf_counter() - started:.0f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
