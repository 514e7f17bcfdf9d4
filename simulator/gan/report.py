"""REPORT.json of ``plantwatch gan evaluate`` rendered as Markdown, with PNG figures beside it.

``REPORT.md`` holds the headline metrics against their targets, a table per
class and links to ``REPORT_figures/``: one figure per class (the held-out
real episode and three generated patterns of the same length, on the four
sensors the fault moves most) and a bar chart of TSTR vs TRTR recall.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from monitor import logs

from .artefact import GAN
from .data import FaultData
from .sample import generate

log = logs.get("gan")

TRACE_SENSORS = 4
TRACE_PATTERNS = 3
MAX_TRACE = 480


def write(report: dict[str, Any], out: Path, gan: GAN, test: FaultData) -> list[Path]:
    """Write ``out`` (JSON), ``out.md`` and the figures; returns every path written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    figures: list[Path] = []
    if can_draw():
        figdir = out.with_name(out.stem + "_figures")
        figdir.mkdir(exist_ok=True)
        figures = [_recall_chart(report, figdir / "recall.png")]
        figures += [_traces(gan, test, c, figdir / f"class_{c}.png") for c in report["classes"]]
    else:
        log.warning("figures_not_drawn", reason="matplotlib is not installed: pip install 'plantwatch[plots]'")
    report["figures"] = [str(p.relative_to(out.parent)) for p in figures]
    _atomic(out, json.dumps(report, indent=1, allow_nan=False, default=_plain) + "\n")
    md = out.with_suffix(".md")
    _atomic(md, markdown(report))
    return [out, md, *figures]


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"not JSON: {type(v).__name__}")


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.0f}%" if pct else f"{v:.3f}"


def markdown(r: dict[str, Any]) -> str:
    ok = r["meets_targets"]
    div = r["diversity"]
    lines = [
        "# GAN evaluation on held-out fault episodes",
        "",
        f"Held-out data: `{r['held_out_data']}`; training data (TRTR): `{r['training_data']}`; "
        f"windows of {r['windows']['length']} samples; seed {r['seed']}.",
        "",
        "| metric | value | target |",
        "|---|---|---|",
        f"| discriminative accuracy (real vs generated; 0.5 = indistinguishable) | **{_fmt(r['discriminative_accuracy'])}** "
        f"| <= {r['targets']['discriminative_accuracy']} {'(met)' if ok['discriminative_accuracy'] else '(NOT met)'} |",
        f"| TSTR macro recall (train on generated, test on real) | **{_fmt(r['tstr_macro_recall'])}** "
        f"| >= {r['targets']['tstr_macro_recall']} {'(met)' if ok['tstr_macro_recall'] else '(NOT met)'} |",
        f"| TRTR macro recall (train on real training runs, same test) | {_fmt(r['trtr_macro_recall'])} | reference |",
        f"| diversity: generated / real mean pairwise distance (1 = as varied) | {_fmt(div['ratio'])} "
        f"(lowest class {_fmt(div['ratio_min'])}) | no collapse (near 1) |",
        f"| nearest training window: generated / held-out real (< 1 = copying) | {_fmt(div['nearest_train_ratio'])} | near 1 |",
        "",
        f"Macro recall over the detectable classes: {', '.join(r['detectable_classes'])}.",
        "",
        f"Classifiers: {r['classifiers']['discriminative']}; {r['classifiers']['class']}; "
        f"features {r['classifiers']['features']}.",
        "",
        "| class | held-out windows | discriminative acc. | TSTR recall | TRTR recall | diversity | nearest-train ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for c, v in r["per_class"].items():
        mark = "" if v["detectable"] else " (excluded)"
        lines.append(
            f"| {c}{mark} | {v['held_out_windows']} | {_fmt(v['discriminative_accuracy'])} | "
            f"{_fmt(v['tstr_recall'], True)} | {_fmt(v['trtr_recall'], True)} | {_fmt(v['diversity_ratio'])} | "
            f"{_fmt(v['nearest_train_ratio'])} |"
        )
    lines += ["", "## Figures", ""]
    lines += [f"![{Path(f).stem}]({f})" for f in r.get("figures", [])]
    return "\n".join(lines) + "\n"


def can_draw() -> bool:
    """Figures need matplotlib, an optional extra."""
    return importlib.util.find_spec("matplotlib") is not None


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _recall_chart(r: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    classes = r["detectable_classes"]
    x = np.arange(len(classes))
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(classes)), 3.2))
    tstr = [r["per_class"][c]["tstr_recall"] or 0 for c in classes]
    trtr = [r["per_class"][c]["trtr_recall"] or 0 for c in classes]
    ax.bar(x - 0.2, tstr, 0.4, label=f"TSTR (macro {r['tstr_macro_recall']:.2f})")
    ax.bar(
        x + 0.2, trtr, 0.4, label="TRTR" + (f" (macro {r['trtr_macro_recall']:.2f})" if r["trtr_macro_recall"] else "")
    )
    ax.set_xticks(x, classes)
    ax.set_xlabel("fault class")
    ax.set_ylabel("recall on held-out real windows")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _traces(gan: GAN, test: FaultData, label: str, path: Path) -> Path:
    plt = _plt()
    episode = test.of_class(label)[0]
    real = gan.normaliser.deviation(episode.values[:MAX_TRACE])
    fake = generate(gan, label, TRACE_PATTERNS, len(real), seed=99)
    top = np.argsort(-np.abs(real).mean(0))[:TRACE_SENSORS]
    fig, axes = plt.subplots(TRACE_SENSORS, 1, figsize=(8, 1.6 * TRACE_SENSORS), sharex=True)
    for ax, j in zip(axes, top):
        for k in range(TRACE_PATTERNS):
            ax.plot(fake[k, :, j], lw=0.7, alpha=0.8, color=f"C{k + 1}", label="generated" if k == 0 else None)
        ax.plot(real[:, j], lw=1.0, color="k", label="held-out real")
        ax.set_ylabel(gan.sensors[j], fontsize=8)
    axes[0].set_title(f"fault {label}: deviation from normal (std) after onset; {episode.source}", fontsize=9)
    axes[0].legend(fontsize=7, loc="upper left")
    axes[-1].set_xlabel("samples since onset")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
