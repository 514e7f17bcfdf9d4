"""What ``plantwatch score`` says after scoring: the alarm episodes, rows far outside the training range, a plot.

The scores CSV has every row; these are what a person reads first. The
episode list gives each alarm's start, end, duration, peak and top sensors;
the training-range line explains a file that scores high everywhere because
it is unlike the training history, not because of a fault; ``--plot`` draws
the score against the threshold with the episodes shaded, like the drill's
timelines.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import csvio
from ..detector import FAR_SIGMA, Detector, Episode, StreamResult, promise_of
from ..errors import InputError

#: episodes listed in full; the rest are counted (the scores CSV has them all)
SHOWN_EPISODES = 20
#: points drawn at most by --plot (longer files are reduced to the maximum score of each bucket)
PLOT_POINTS = 20000


def check_plot(path: str | None) -> None:
    """``--plot`` needs matplotlib (an optional extra): say so before the work, not after it."""
    if path and importlib.util.find_spec("matplotlib") is None:
        raise InputError("--plot needs matplotlib, which is not installed: pip install 'plantwatch[plots]'")


@dataclass
class _Row:
    """Where an episode's start or end lies: the file's timestamp text (if any) and the row index."""

    index: int
    stamp: str | None


@dataclass
class EpisodeLog:
    """Alarm episodes of one scored file, with the file's own timestamps for their start and end.

    The detector runs on file row indices as its times, so an episode's start,
    raise and end are row indices; their timestamp texts are looked up in the
    chunk (or the one before it: an alarm's run may start there).
    """

    episodes: list[tuple[Episode, _Row, _Row | None]] = field(default_factory=list)
    _open: dict[int, int] = field(default_factory=dict)  # id(episode) -> its index in episodes
    _prev: tuple[int, list[str] | None] = (0, None)
    last: _Row = field(default_factory=lambda: _Row(0, None))  # the file's last row, for an episode still open

    def add(self, first: int, n: int, stamps: list[str] | None, res: StreamResult) -> None:
        """Transitions of the ``n`` rows of a chunk whose first row is file row index ``first``."""
        for _, tr in res.transitions:
            ep = tr.episode
            if tr.kind == "raised":
                self._open[id(ep)] = len(self.episodes)
                self.episodes.append((ep, self._row(int(ep.start), first, stamps), None))
            elif id(ep) in self._open and ep.end is not None:
                k = self._open.pop(id(ep))
                self.episodes[k] = (ep, self.episodes[k][1], self._row(int(ep.end), first, stamps))
        self._prev = (first, stamps)
        self.last = _Row(first + n - 1, stamps[-1] if stamps else None)

    def _row(self, index: int, first: int, stamps: list[str] | None) -> _Row:
        for base, texts in ((first, stamps), self._prev):
            if texts is not None and 0 <= index - base < len(texts):
                return _Row(index, texts[index - base])
        return _Row(index, None)

    def lines(self) -> list[str]:
        """The episode list, one line each (or nothing when there was no alarm)."""
        out = []
        for ep, start, end in self.episodes[:SHOWN_EPISODES]:
            stop = end or self.last
            top = ", ".join(ep.top_sensors) or "-"
            ratio = ep.peak / ep.threshold if ep.threshold > 0 else math.inf
            out.append(
                f"  {_where(start):<26} {(_where(end) if end else 'still active at the end'):<26} "
                f"{_duration(start, stop):>10}  peak {ep.peak:.4g} ({ratio:.1f}x threshold)  top: {top}"
            )
        more = len(self.episodes) - SHOWN_EPISODES
        if more > 0:
            out.append(f"  ... and {more} more (the anomaly column of the scores CSV has them all)")
        return out


def promise_line(detector: Detector, rows: int, alarm_rows: int, episodes: int) -> str | None:
    """This file's false-alarm figures beside what training promised (models from before promises: none).

    Meaningful on normal operation only: on a file with faults the alarms are the point."""
    promise = promise_of(detector.calib)
    period = detector.manifest.get("sample_period")
    if promise is None or not isinstance(period, (int, float)) or period <= 0 or rows == 0:
        return None
    days = rows * float(period) / 86400.0
    return (
        f"alarms against the promise: {episodes} episode(s) in {rows} samples ({episodes / days:.3g} per day), "
        f"{100 * alarm_rows / rows:.3g} % of samples in alarm; trained to expect about "
        f"{promise.episodes_per_day:.3g} per day and {100 * promise.row_rate:.3g} % on normal operation"
    )


def _where(r: _Row) -> str:
    return r.stamp if r.stamp is not None else f"row {r.index + 2}"


def _duration(start: _Row, end: _Row) -> str:
    """Seconds between the timestamps when both parse, else rows."""
    t0 = csvio.parse_time(start.stamp) if start.stamp else None
    t1 = csvio.parse_time(end.stamp) if end.stamp else None
    if t0 is not None and t1 is not None:
        secs = t1 - t0
        return f"{secs:.0f} s" if secs < 120 else f"{secs / 60:.1f} min" if secs < 7200 else f"{secs / 3600:.1f} h"
    return f"{end.index - start.index + 1} rows"


class OutsideLog:
    """Rows with a sensor far outside its training range, and how far each sensor went."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self.rows = 0
        self.peak = np.zeros(detector.n_sensors)
        self.count = np.zeros(detector.n_sensors, dtype=np.int64)

    def add(self, values: np.ndarray, res: StreamResult) -> None:
        """``values``: the scored rows (model order) of ``res``."""
        if res.outside is None:
            return
        dist = self.detector.training_distance(values[res.outside])
        self.rows += len(dist)
        self.peak = np.maximum(self.peak, dist.max(axis=0))
        self.count += (dist > FAR_SIGMA).sum(axis=0)

    def line(self, scored: int) -> str:
        """One closing line ('' when every row was within the training range)."""
        if not self.rows:
            return ""
        names = self.detector.sensors
        far = [j for j in np.argsort(-self.peak) if self.count[j]][:5]
        parts = [
            f"{names[j]} {'moved (constant in training)' if math.isinf(self.peak[j]) else f'up to {self.peak[j]:.0f} sd'}"
            f" in {self.count[j]} row(s)"
            for j in far
        ]
        return (
            f"{self.rows} of {scored} scored row(s) lie far outside the training range (a sensor more than "
            f"{FAR_SIGMA:g} training standard deviations from its training mean): {'; '.join(parts)}. Their "
            "scores say the data is unlike the training history, not which fault; if this operating point "
            "is normal, train on history that includes it."
        )


class PlotData:
    """Score and threshold of every scored row, for ``--plot``."""

    def __init__(self) -> None:
        self.index: list[np.ndarray] = []
        self.score: list[np.ndarray] = []
        self.threshold: list[np.ndarray] = []

    def add(self, index: np.ndarray, res: StreamResult) -> None:
        self.index.append(index)
        self.score.append(res.score)
        self.threshold.append(res.threshold)

    def draw(self, path: Path, title: str, episodes: EpisodeLog) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        x, s, t = (np.concatenate(a) if a else np.zeros(0) for a in (self.index, self.score, self.threshold))
        if len(x) > PLOT_POINTS:  # the maximum of each bucket, so no peak disappears
            edges = np.linspace(0, len(x), PLOT_POINTS + 1).astype(np.int64)
            s = np.maximum.reduceat(s, edges[:-1])
            x, t = x[edges[:-1]], t[edges[1:] - 1]
        fig, ax = plt.subplots(figsize=(11, 3.4))
        for _, start, end in episodes.episodes:
            ax.axvspan(start.index + 2, (end or episodes.last).index + 2, color="tab:red", alpha=0.15)
        if len(x):
            ax.plot(x + 2, np.maximum(s, 1e-6), lw=0.8, color="k", label="score")
            ax.plot(x + 2, t, lw=1, ls="--", color="tab:red", label="threshold")
            ax.set_yscale("log")
            ax.legend(fontsize=7, loc="upper right")
        else:
            ax.text(0.5, 0.5, "no row was scored", transform=ax.transAxes, ha="center", va="center")
        ax.set_xlabel("row of the file (shaded: alarm episodes)", fontsize=8)
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
