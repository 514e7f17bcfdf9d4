"""The detector: one code path from raw rows to scores, thresholds and alarms.

The daemon and the offline ``score`` command both call :meth:`Detector.score_many`
with per-stream state, so a file scored offline and the same rows streamed
over MQTT give the same numbers. Everything is causal: a row's outputs depend
only on the rows before it, whatever the batch boundaries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .alarms import AlarmLogic, AlarmSettings, Transition
from .baseline import ACCEPT_ROWS, Baseline
from .model import DenoisingAE, Scaler
from .scoring import Calibration, combine, initial_state, raw_components, saturate, smooth, top_k
from .threshold import METHODS, Bounds, QuantileThreshold, SpotThreshold, StaticThreshold, Threshold
from .value_bounds import Z_LIMIT, TrainingRange, ValueBounds
from .windows import stream_windows

#: standard deviations from its training mean past which a sensor is "outside the training range"
FAR_SIGMA = 10.0


@dataclass(frozen=True)
class DetectorSettings:
    """Run-time behaviour that may differ per deployment without retraining."""

    threshold_method: str = "spot"
    bounds: Bounds = Bounds()
    alarm: AlarmSettings = AlarmSettings()
    top_k: int = 3
    holdoff: int = 50  # samples after a flagged one before the threshold learns again

    def __post_init__(self) -> None:
        if self.threshold_method not in METHODS:
            raise ValueError(f"threshold method must be one of {', '.join(METHODS)}, got {self.threshold_method!r}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold_method": self.threshold_method,
            "top_k": self.top_k,
            "holdoff": self.holdoff,
            "bounds": self.bounds.__dict__,
            "alarm": self.alarm.__dict__,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DetectorSettings:
        return cls(
            threshold_method=d["threshold_method"],
            top_k=int(d["top_k"]),
            holdoff=int(d.get("holdoff", 50)),
            bounds=Bounds(**d["bounds"]),
            alarm=AlarmSettings(**d["alarm"]),
        )


#: Layout of :meth:`StreamState.to_state`; a state of another layout is refused, never guessed at.
STATE_VERSION = 1


@dataclass
class StreamState:
    """Everything one asset's stream carries from batch to batch."""

    threshold: Threshold
    alarm: AlarmLogic
    history: np.ndarray | None = None  # last window-1 standardised rows
    energy: np.ndarray | None = None  # smoothed energy per sensor
    shift: np.ndarray | None = None  # smoothed signed residual per sensor
    rows: int = 0
    quiet: int = 0  # samples since the last flagged one
    #: set by the caller (a maintenance window): rows are scored, but raise no alarm and teach the threshold
    #: nothing; run-time only, not part of :meth:`to_state`
    muted: bool = False
    baseline: Baseline = field(default_factory=Baseline)  # an operating point the operator accepted

    def to_state(self) -> dict[str, Any]:
        """A copy of the stream as numbers, lists and float arrays, for a checkpoint.

        :meth:`Detector.restore_stream` turns it back into a stream that
        continues exactly as this one would (same scores, thresholds, alarms),
        which is what lets a stream move to another process or survive a crash.
        """
        return {
            "version": STATE_VERSION,
            "rows": self.rows,
            "quiet": self.quiet,
            "history": None if self.history is None else self.history.copy(),
            "energy": None if self.energy is None else self.energy.copy(),
            "shift": None if self.shift is None else self.shift.copy(),
            "threshold": self.threshold.to_state(),
            "alarm": self.alarm.to_state(),
            "baseline": self.baseline.to_state(),
        }


@dataclass
class StreamResult:
    score: np.ndarray  # (n,)
    threshold: np.ndarray  # (n,) threshold in force for each row
    anomaly: np.ndarray  # (n,) uint8, 1 while an alarm is active
    top: np.ndarray  # (n, k) sensor indices, largest contribution first
    contrib: np.ndarray  # (d,) contributions of the last row
    transitions: list[tuple[int, Transition]] = field(default_factory=list)
    outside: np.ndarray | None = None  # (n,) True where a sensor is far outside its training range (None: none)


class Detector:
    """A trained model plus its calibration and run-time settings."""

    def __init__(
        self,
        model: DenoisingAE,
        scaler: Scaler,
        calib: Calibration,
        sensors: Sequence[str],
        settings: DetectorSettings | None = None,
        manifest: dict[str, Any] | None = None,
        training_range: TrainingRange | None = None,
    ) -> None:
        self.model = model.eval()
        self.scaler = scaler
        self.calib = calib
        self.sensors = tuple(sensors)
        self.window = model.cfg.window
        self.settings = settings or DetectorSettings()
        self.manifest = manifest or {}
        self.training_range = training_range
        #: rows with a value outside these are not scored (see :mod:`.value_bounds`); callers may narrow them
        self.bounds = (
            training_range.plausible() if training_range is not None else ValueBounds.unbounded(len(self.sensors))
        )

    @property
    def n_sensors(self) -> int:
        return len(self.sensors)

    def new_threshold(self) -> Threshold:
        c, s = self.calib, self.settings
        if s.threshold_method == "static":
            return StaticThreshold(c.threshold)
        if s.threshold_method == "spot":
            rate = c.spot_rate or max(len(c.spot_peaks) / max(c.oof_rows, 1), 1e-4)
            risk = c.spot_risk or c.target_rate
            return SpotThreshold(c.threshold, c.spot_level, c.spot_peaks, risk, rate, s.bounds)
        return QuantileThreshold(c.threshold, max(c.reference, 1e-9), bounds=s.bounds)

    def new_stream(self) -> StreamState:
        return StreamState(self.new_threshold(), AlarmLogic.from_settings(self.settings.alarm))

    def restore_stream(self, state: Mapping[str, Any]) -> StreamState:
        """The stream :meth:`StreamState.to_state` saved, checked against this model.

        Raises ValueError naming the first thing that does not fit (layout
        version, threshold method, sensor count, window), so a foreign or
        corrupted state is refused instead of scoring nonsense.
        """
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"stream state version {state.get('version')!r}, this detector reads {STATE_VERSION}")
        rows, quiet = state.get("rows"), state.get("quiet")
        for key, v in (("rows", rows), ("quiet", quiet)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"stream state {key!r} must be a count >= 0, got {v!r}")
        assert isinstance(rows, int) and isinstance(quiet, int)  # checked above; for the type checker
        d = self.n_sensors
        st = self.new_stream()
        st.threshold.load_state(_table(state, "threshold"))
        st.alarm.load_state(_table(state, "alarm"))
        st.rows, st.quiet = rows, quiet
        if state.get("baseline") is not None:  # states saved before accepted operating points have none
            st.baseline.load_state(_table(state, "baseline"), d)
        if rows:
            st.history = _array(state, "history", (self.window - 1, d), np.float32)  # standardised, edge-padded
            st.energy, st.shift = _array(state, "energy", (d,)), _array(state, "shift", (d,))
        return st

    def accept(self, state: StreamState, rows: int = ACCEPT_ROWS, ts: float | None = None) -> Transition | None:
        """The operator accepts where the stream runs now as its new normal (see :mod:`.baseline`).

        A running alarm clears at once (the transition is returned for the
        caller to publish); the next ``rows`` samples are learned without
        alarms, and the score then measures departures from them.
        """
        tr = state.alarm.clear(float(state.rows) if ts is None else ts)
        state.baseline.accept(self.n_sensors, rows)
        return tr

    def score(self, state: StreamState, values: np.ndarray, ts: np.ndarray | None = None) -> StreamResult:
        return self.score_many([(state, values, ts)])[0]

    def score_many(self, items: Sequence[tuple[StreamState, np.ndarray, np.ndarray | None]]) -> list[StreamResult]:
        """Score several streams' new rows with one forward pass; updates each state.

        The daemon calls this with ~1 row for each of many assets, the offline
        scorer with many rows of one stream; both are vectorised over rows and
        streams, and only the threshold and alarm logic runs per row in Python.
        """
        sizes = [len(v) for _, v, _ in items]
        active = [k for k, n in enumerate(sizes) if n]
        if not active:
            return [self._empty() for _ in items]
        states = [items[k][0] for k in active]
        ns = [sizes[k] for k in active]
        x = self._rows([items[k][1] for k in active])
        with np.errstate(over="ignore"):  # 1e39 is inf in float32: clipped just below
            z = self.scaler.transform(x)
        np.clip(z, -Z_LIMIT, Z_LIMIT, out=z)  # whatever the bounds, a finite input gives a finite score
        windows, seen, tails = stream_windows(
            z, ns, [st.history for st in states], self.window, [st.rows for st in states]
        )
        energy, shift = raw_components(self.model, windows, self.n_sensors, seen if seen.min() < self.window else None)
        c = self.calib
        e0, s0 = initial_state(self.n_sensors)
        prev_e = [e0 if st.energy is None else st.energy for st in states]
        prev_s = [s0 if st.shift is None else st.shift for st in states]
        learned, seg_sizes, last = [0] * len(states), list(ns), list(range(len(states)))
        if any(st.baseline.offset is not None or st.baseline.learning for st in states):
            learned, seg_sizes, prev_e, prev_s, last = _accepted(states, ns, energy, shift, prev_e, prev_s)
        saturate(energy, shift, c)
        sm = smooth(energy, shift, c.resid_scale, c.alpha, np.stack(prev_e), np.stack(prev_s), seg_sizes)
        for i, st in enumerate(states):
            st.history, st.energy, st.shift = tails[i], sm.last_energy[last[i]], sm.last_shift[last[i]]
        score, contrib = combine(sm, c.shift_scale, c.energy_norm, c.shift_norm)
        top, outside = self._attribute(contrib, self.training_distance(x, z))
        out: list[StreamResult | None] = [None] * len(items)
        start = 0
        for i, k in enumerate(active):
            sl = slice(start, start + sizes[k])
            r = self._decide(items[k][0], score[sl], contrib[sl], top[sl], items[k][2], learned[i])
            if outside is not None and outside[sl].any():
                r.outside = outside[sl]
            out[k] = r
            start += sizes[k]
        return [r if r is not None else self._empty() for r in out]

    def training_distance(self, x: np.ndarray, z: np.ndarray | None = None) -> np.ndarray:
        """(n, d) how far each value lies from its sensor's training mean, in training standard deviations.

        A sensor that was constant in training and is not now is infinitely far
        (the model ignores it, so nothing else would tell).
        """
        if z is None:
            with np.errstate(over="ignore"):
                z = self.scaler.transform(x)
        dist = np.abs(z)
        const = self.scaler.constant
        if const.any():
            mean = self.scaler.mean[const]
            moved = np.abs(x[:, const] - mean) > 1e-9 * np.maximum(np.abs(mean), 1.0)
            dist[:, const] = np.where(moved, np.inf, 0.0)
        return dist

    def _attribute(self, contrib: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Top sensors per row, and which rows are outside the training range.

        Far from training, the reconstruction residuals stop meaning much (the
        network extrapolates; a shifted sensor can be reconstructed as shifted
        while its neighbours take the blame), so in those rows the sensors
        furthest outside come first, by distance, then the others by contribution.
        """
        far = dist > FAR_SIGMA
        rows = np.asarray(far.any(axis=1))
        if not rows.any():
            return top_k(contrib, self.settings.top_k), None
        key = contrib.astype(np.float64, copy=True)
        sub = key[rows]
        lead = sub.max(axis=1, keepdims=True) + 1.0
        key[rows] = np.where(far[rows], lead + np.minimum(dist[rows], 1e12), sub)
        return top_k(key, self.settings.top_k), rows

    def _rows(self, blocks: list[np.ndarray]) -> np.ndarray:
        """The streams' rows end to end; a block whose width is not the model's sensor count is refused."""
        try:
            x = np.concatenate(blocks)
        except ValueError:
            x = next(b for b in blocks if b.ndim != 2 or b.shape[1] != self.n_sensors)
        if x.ndim != 2 or x.shape[1] != self.n_sensors:
            raise ValueError(f"rows must have the model's {self.n_sensors} sensors, got shape {x.shape}")
        return x

    def _empty(self) -> StreamResult:
        k = min(self.settings.top_k, self.n_sensors)
        return StreamResult(
            np.zeros(0), np.zeros(0), np.zeros(0, np.uint8), np.zeros((0, k), np.int64), np.zeros(self.n_sensors)
        )

    def _decide(
        self,
        state: StreamState,
        score: np.ndarray,
        contrib: np.ndarray,
        top: np.ndarray,
        ts: np.ndarray | None,
        learning: int = 0,
    ) -> StreamResult:
        """Threshold and alarm logic, row by row: each row's threshold depends on the rows before.
        The first ``learning`` rows are an accepted operating point being learned: no alarm, no learning."""
        n = len(score)
        times = ts if ts is not None else np.arange(state.rows, state.rows + n, dtype=np.float64)
        thresholds = np.empty(n)
        anomaly = np.zeros(n, dtype=np.uint8)
        transitions: list[tuple[int, Transition]] = []
        th, al = state.threshold, state.alarm
        names = self.sensors
        holdoff = self.settings.holdoff
        if state.muted:  # scored and exported, nothing learned, no episode; holdoff counts again from its end
            thresholds[:] = th.value
            state.quiet = 0
            state.rows += n
            return StreamResult(score, thresholds, anomaly, top, contrib[-1], transitions)
        for i, s in enumerate(score.tolist()):
            t = th.value
            thresholds[i] = t
            if i < learning:
                state.quiet = 0
                continue
            hot = s > t
            tr = al.step(float(times[i]), s, t, tuple(names[j] for j in top[i]) if hot and not al.active else None)
            if tr is not None:
                transitions.append((i, tr))
            if al.active:
                anomaly[i] = 1
            if hot or al.active:
                state.quiet = 0
            else:
                state.quiet += 1
                if state.quiet > holdoff:
                    th.learn(s)
        state.rows += n
        return StreamResult(score, thresholds, anomaly, top, contrib[-1], transitions)


def _table(state: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    v = state.get(key)
    if not isinstance(v, Mapping):
        raise ValueError(f"stream state {key!r} must be a table, got {type(v).__name__}")
    return v


def _array(state: Mapping[str, Any], key: str, shape: tuple[int, ...], dtype: type = np.float64) -> np.ndarray:
    v = state.get(key)
    a: np.ndarray | None
    try:
        a = None if v is None else np.array(v, dtype=dtype)
    except (TypeError, ValueError):
        a = None
    if a is None or a.shape != shape or not np.isfinite(a).all():
        got = "nothing" if a is None else f"shape {a.shape}"
        raise ValueError(f"stream state {key!r} must be finite numbers of shape {shape} for this model, got {got}")
    return a


def _accepted(
    states: Sequence[StreamState],
    ns: Sequence[int],
    energy: np.ndarray,
    shift: np.ndarray,
    prev_e: list[np.ndarray],
    prev_s: list[np.ndarray],
) -> tuple[list[int], list[int], list[np.ndarray], list[np.ndarray], list[int]]:
    """Accepted operating points applied to each stream's rows (in place): per stream the rows learned,
    and the smoothing segments (a stream whose accepted offset starts in this batch restarts its
    smoothing there from the normal expectation, as a new stream would)."""
    e0, s0 = initial_state(energy.shape[1])
    learned: list[int] = []
    sizes: list[int] = []
    pe: list[np.ndarray] = []
    ps: list[np.ndarray] = []
    last: list[int] = []
    start = 0
    for i, st in enumerate(states):
        sl = slice(start, start + ns[i])
        k, restart = (
            st.baseline.apply(energy[sl], shift[sl])
            if st.baseline.offset is not None or st.baseline.learning
            else (0, -1)
        )
        learned.append(k)
        if restart >= 0:
            sizes += [restart, ns[i] - restart]
            pe += [prev_e[i], e0]
            ps += [prev_s[i], s0]
        else:
            sizes.append(ns[i])
            pe.append(prev_e[i])
            ps.append(prev_s[i])
        last.append(len(sizes) - 1)
        start += ns[i]
    return learned, sizes, pe, ps, last
