"""How good a GAN is, measured on held-out recorded episodes it was never trained on.

Real held-out windows: every window of ``cfg.window`` samples (stride half a
window) of the held-out episodes (TEP: the ``dNN_te.dat`` test runs from row
161), as deviations from the GAN's own normal mean and std. Each gets a
generated twin of the same class and the same offset from the onset.

- ``discriminative_accuracy``: a logistic regression on window features
  (:mod:`.classifiers`) learns real vs generated on the windows of one half
  of every episode (the earlier offsets) and is scored on the other half, then
  the other way round; the mean accuracy is reported. 0.5 = indistinguishable.
- ``tstr_macro_recall``: a shrinkage LDA of the fault class trained only on
  generated windows (offsets of the training episodes' windows, stride 8,
  :data:`TSTR_DRAWS` draws each) and tested on the real held-out windows;
  macro recall over the detectable classes (TEP: all but 3, 9 and 15).
- ``trtr_macro_recall``: the same LDA trained on the real training episodes.
- ``diversity``: per class, the mean pairwise distance between generated
  windows over that between real held-out windows (1 = as varied as real,
  near 0 = mode collapse), and how close generated windows come to the
  training windows compared with held-out real ones (below 1 = copying).

Every random draw has a fixed seed, so a report is reproducible.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor import logs
from monitor.errors import InputError

from .artefact import GAN
from .classifiers import ShrinkageLDA, logistic_accuracy, recalls, window_features
from .data import TEP_UNDETECTABLE, FaultData, deviations, windows
from .sample import generate

log = logs.get("gan")

TRAIN_STRIDE = 8
TSTR_DRAWS = 2
TARGETS = {"discriminative_accuracy": 0.75, "tstr_macro_recall": 0.7}
MAX_DIVERSITY_WINDOWS = 60


@dataclass
class WindowSet:
    """Windows (n, T, d) in standard deviations, with class index and onset offset of each."""

    x: np.ndarray
    label: np.ndarray
    t0: np.ndarray
    half: np.ndarray  # 0 for the earlier half of its episode's windows, 1 for the later

    def where(self, mask: np.ndarray) -> WindowSet:
        return WindowSet(self.x[mask], self.label[mask], self.t0[mask], self.half[mask])


def real_windows(gan: GAN, data: FaultData, classes: list[str], stride: int) -> WindowSet:
    T = gan.config.window
    dev = deviations(data, gan.normaliser, classes, T)
    xs, labels, t0s, halves = [], [], [], []
    for series, c in zip(dev.series, dev.class_index):
        w, starts = windows(series, T, stride)
        xs.append(w)
        labels.append(np.full(len(w), c))
        t0s.append(starts)
        halves.append((np.arange(len(w)) >= len(w) / 2).astype(int))
    if not xs:
        raise InputError(f"{data.source}: no episode of the GAN's classes is {T} rows long")
    return WindowSet(np.concatenate(xs), np.concatenate(labels), np.concatenate(t0s), np.concatenate(halves))


def generated_like(gan: GAN, classes: list[str], label: np.ndarray, t0: np.ndarray, seed: int) -> np.ndarray:
    """One generated window per (class, offset) pair, in the same order."""
    T = gan.config.window
    out = np.zeros((len(label), T, len(gan.sensors)))
    for c in np.unique(label):
        idx = np.flatnonzero(label == c)
        out[idx] = generate(gan, classes[c], len(idx), T, seed=seed + 1000 * int(c), t0=t0[idx])
    return out


def discriminative_accuracy(real: WindowSet, fake: np.ndarray) -> tuple[float, dict[int, float]]:
    """Mean two-fold accuracy (split by episode half) and the per-class accuracy on the test folds."""
    feats_r, feats_f = window_features(real.x), window_features(fake)
    accs: list[float] = []
    per_class_hits: dict[int, list[float]] = {}
    for fold in (0, 1):
        tr, te = real.half == fold, real.half != fold
        x_train = np.r_[feats_r[tr], feats_f[tr]]
        y_train = np.r_[np.ones(tr.sum()), np.zeros(tr.sum())]
        x_test = np.r_[feats_r[te], feats_f[te]]
        y_test = np.r_[np.ones(te.sum()), np.zeros(te.sum())]
        accs.append(logistic_accuracy(x_train, y_train, x_test, y_test))
        for c in np.unique(real.label[te]):  # per class: the same classifier, its windows only
            m = real.label[te] == c
            acc = logistic_accuracy(
                x_train, y_train, np.r_[feats_r[te][m], feats_f[te][m]], np.r_[np.ones(m.sum()), np.zeros(m.sum())]
            )
            per_class_hits.setdefault(int(c), []).append(acc)
    return float(np.mean(accs)), {c: float(np.mean(v)) for c, v in per_class_hits.items()}


def diversity(gan: GAN, real: WindowSet, fake: np.ndarray, train: WindowSet | None) -> dict[str, Any]:
    """Spread of generated windows vs real ones per class (squashed units), and nearness to training windows."""
    s = gan.config.squash
    per_class: dict[int, dict[str, float]] = {}
    rng = np.random.default_rng(0)
    for c in np.unique(real.label):
        idx = np.flatnonzero(real.label == c)
        if len(idx) > MAX_DIVERSITY_WINDOWS:
            idx = np.sort(rng.choice(idx, MAX_DIVERSITY_WINDOWS, replace=False))
        r, f = _flat(real.x[idx], s), _flat(fake[idx], s)
        entry = {"real_pairwise": _mean_pairwise(r), "generated_pairwise": _mean_pairwise(f)}
        entry["ratio"] = entry["generated_pairwise"] / max(entry["real_pairwise"], 1e-12)
        if train is not None and (train.label == c).any():
            t = _flat(train.x[train.label == c], s)
            entry["nearest_train_ratio"] = _nearest(f, t) / max(_nearest(r, t), 1e-12)
        per_class[int(c)] = entry
    ratios = [e["ratio"] for e in per_class.values()]
    nearest = [e["nearest_train_ratio"] for e in per_class.values() if "nearest_train_ratio" in e]
    return {
        "ratio": float(np.mean(ratios)),
        "ratio_min": float(np.min(ratios)),
        "generated_pairwise": float(np.mean([e["generated_pairwise"] for e in per_class.values()])),
        "real_pairwise": float(np.mean([e["real_pairwise"] for e in per_class.values()])),
        "nearest_train_ratio": float(np.mean(nearest)) if nearest else None,
        "per_class": per_class,
    }


def _flat(w: np.ndarray, s: float) -> np.ndarray:
    y = s * np.arcsinh(w / s)
    return y.reshape(len(y), -1) / np.sqrt(y.shape[1] * y.shape[2])


def _mean_pairwise(x: np.ndarray) -> float:
    sq = (x**2).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0)
    n = len(x)
    return float(np.sqrt(d2)[np.triu_indices(n, 1)].mean()) if n > 1 else 0.0


def _nearest(x: np.ndarray, ref: np.ndarray) -> float:
    d2 = np.maximum((x**2).sum(1)[:, None] + (ref**2).sum(1)[None, :] - 2 * x @ ref.T, 0)
    return float(np.sqrt(d2.min(1)).mean())


def tstr_windows(gan: GAN, classes: list[str], train: WindowSet | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Generated training windows for TSTR at the training windows' offsets (or the GAN's onset range)."""
    T = gan.config.window
    if train is not None:
        labels, t0 = np.repeat(train.label, TSTR_DRAWS), np.repeat(train.t0, TSTR_DRAWS)
    else:
        grid = np.arange(0, max(1, int(gan.config.time_scale) - T + 1), TRAIN_STRIDE)
        labels = np.repeat(np.arange(len(classes)), len(grid) * TSTR_DRAWS)
        t0 = np.tile(np.repeat(grid, TSTR_DRAWS), len(classes))
    return generated_like(gan, classes, labels, t0, seed + 7), labels


def evaluate(
    gan: GAN, test: FaultData, train: FaultData | None, *, seed: int = 0, exclude: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """Every metric of the report as plain data (numbers, lists, dicts)."""
    started = time.perf_counter()
    if test.sensors != gan.sensors:
        raise InputError(f"{test.source}: sensors differ from the GAN's ({len(test.sensors)} vs {len(gan.sensors)})")
    classes = [c for c in gan.classes if c in test.classes]
    if not classes:
        raise InputError(f"{test.source}: no held-out episode of the GAN's classes ({', '.join(gan.classes)})")
    excluded = set(TEP_UNDETECTABLE if exclude is None and test.layout == "tep" else exclude or ())
    detectable = [i for i, c in enumerate(classes) if c not in excluded]
    T = gan.config.window
    real = real_windows(gan, test, classes, T // 2)
    fake = generated_like(gan, classes, real.label, real.t0, seed)
    train_set = real_windows(gan, train, classes, TRAIN_STRIDE) if train is not None else None
    disc, disc_per_class = discriminative_accuracy(real, fake)
    x_syn, y_syn = tstr_windows(gan, classes, train_set, seed)
    keep = np.isin(real.label, detectable)
    x_test, y_test = window_features(real.x[keep]), real.label[keep]
    syn = np.isin(y_syn, detectable)
    tstr = recalls(y_test, ShrinkageLDA().fit(window_features(x_syn[syn]), y_syn[syn]).predict(x_test), detectable)
    trtr: list[float] | None = None
    if train_set is not None and np.isin(detectable, train_set.label).all():
        m = np.isin(train_set.label, detectable)
        lda = ShrinkageLDA().fit(window_features(train_set.x[m]), train_set.label[m])
        trtr = recalls(y_test, lda.predict(x_test), detectable)
    div = diversity(gan, real, fake, train_set)
    per_class = {
        classes[c]: {
            "held_out_windows": int((real.label == c).sum()),
            "discriminative_accuracy": disc_per_class.get(c),
            "tstr_recall": tstr[detectable.index(c)] if c in detectable else None,
            "trtr_recall": trtr[detectable.index(c)] if trtr is not None and c in detectable else None,
            "diversity_ratio": div["per_class"][c]["ratio"],
            "nearest_train_ratio": div["per_class"][c].get("nearest_train_ratio"),
            "detectable": c in detectable,
        }
        for c in range(len(classes))
    }
    div["per_class"] = {classes[c]: v for c, v in div["per_class"].items()}
    report = {
        "discriminative_accuracy": disc,
        "tstr_macro_recall": float(np.mean(tstr)),
        "trtr_macro_recall": float(np.mean(trtr)) if trtr is not None else None,
        "diversity": div,
        "targets": TARGETS,
        "meets_targets": {
            "discriminative_accuracy": disc <= TARGETS["discriminative_accuracy"],
            "tstr_macro_recall": float(np.mean(tstr)) >= TARGETS["tstr_macro_recall"],
        },
        "classes": classes,
        "detectable_classes": [classes[c] for c in detectable],
        "per_class": per_class,
        "windows": {
            "length": T,
            "held_out": len(real.label),
            "held_out_stride": T // 2,
            "tstr_generated": int(syn.sum()),
            "trtr_real": len(train_set.label) if train_set else 0,
        },
        "held_out_data": test.source,
        "training_data": train.source if train is not None else None,
        "seed": seed,
        "classifiers": {
            "discriminative": "L2 logistic regression (l2=1e-3) on window features, two-fold by episode half",
            "class": "shrinkage LDA (0.01) on window features",
            "features": "per sensor: mean, std, mean |first difference|, slope",
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    log.info(
        "gan_evaluated",
        discriminative_accuracy=round(disc, 3),
        tstr=round(float(np.mean(tstr)), 3),
        trtr=None if trtr is None else round(float(np.mean(trtr)), 3),
        diversity=round(div["ratio"], 3),
    )
    return report
