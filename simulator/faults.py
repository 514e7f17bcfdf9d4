"""Fault injection: parametric sensor and process faults, and additive patterns.

An :class:`Injection` covers rows ``start .. end`` (sample indices, inclusive)
of one asset and edits any block of samples in place with
``apply(block, first_index)``; blocks may be of any size and arrive in order,
and the result does not depend on how the rows were split into blocks. Random
parts (noise, spikes) are keyed by the row, for the same reason; an injection
keeps state between blocks (a stuck value), so it serves one pass. Magnitudes
are in units of each sensor's normal standard deviation. Every injection can
state its ground truth as a :class:`monitor.wire.DrillTruth`.

The ``gan:<class>`` injections of the GAN plug in as an :class:`AdditivePattern`
(any (duration, n_sensors) array of deviations): :func:`bind_faults` asks a
:class:`PatternSource` (:class:`simulator.gan.inject.GanPatterns`, which holds
the torch model; this module never imports it) for a pattern of the fault's
duration and adds it to the sensors of the asset with the same names. Specs
from the command line (:data:`SPEC_FORMAT`) are parsed by :func:`parse_fault`
and turned into injections by :func:`bind_faults`.

>>> str(parse_fault("bias@30+60:sensors=TI101,magnitude=4"))
'bias@30+60:sensors=TI101,magnitude=4'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from monitor.errors import InputError
from monitor.wire import DrillTruth

from .process import AssetProcess, run_ar2

SENSOR_FAULT_KINDS = ("bias", "drift", "stuck", "noise", "spikes", "intermittent")
PROCESS_KINDS = ("coefficient", "decorrelate")
KINDS = SENSOR_FAULT_KINDS + PROCESS_KINDS
#: In sensor standard deviations; coefficient: pole slowdown; decorrelate: innovation scale; stuck: unused.
DEFAULT_MAGNITUDE = {
    "bias": 4.0,
    "drift": 6.0,
    "stuck": 0.0,
    "noise": 3.0,
    "spikes": 8.0,
    "intermittent": 4.0,
    "coefficient": 3.0,
    "decorrelate": 1.0,
}
SPEC_FORMAT = "KIND@START+DURATION[:asset=A,sensors=S1;S2,magnitude=M]"
GAN_PREFIX = "gan:"
SPIKE_FRACTION = 0.1
_CHUNK = 1024


@dataclass(frozen=True)
class FaultSpec:
    """A fault as the user wrote it; None means "choose for me" (see :func:`bind_faults`)."""

    kind: str
    start: int
    duration: int
    asset: str | None = None
    sensors: tuple[str, ...] | None = None
    magnitude: float | None = None

    def __post_init__(self) -> None:
        me = repr(str(self))
        if self.gan_class is not None:
            if not self.gan_class or not all(c.isalnum() or c in "_.-" for c in self.gan_class):
                raise InputError(f"fault {me}: gan:<class> needs a class name (letters, digits, '_', '.', '-')")
            if self.magnitude is not None and not (math.isfinite(self.magnitude) and self.magnitude > 0):
                raise InputError(f"fault {me}: the magnitude of a gan pattern scales it and must be > 0")
            if self.start < 0 or self.duration < 1:
                raise InputError(f"fault {me}: START must be >= 0 and DURATION >= 1 (samples)")
            return
        if self.kind not in KINDS:
            raise InputError(f"fault {me}: unknown kind {self.kind!r}; kinds: {', '.join(KINDS)}")
        if self.start < 0 or self.duration < 1:
            raise InputError(f"fault {me}: START must be >= 0 and DURATION >= 1 (samples)")
        m = self.magnitude
        if m is None:
            return
        if not math.isfinite(m):
            raise InputError(f"fault {me}: magnitude must be a finite number")
        if self.kind in ("noise", *PROCESS_KINDS) and m <= 0:
            raise InputError(f"fault {me}: {self.kind} magnitude must be > 0")
        if self.kind not in ("stuck", "noise", *PROCESS_KINDS) and m == 0:
            raise InputError(f"fault {me}: a {self.kind} of magnitude 0 changes nothing")

    @property
    def gan_class(self) -> str | None:
        """The class of a ``gan:<class>`` spec, None for a parametric one."""
        return self.kind[len(GAN_PREFIX) :] if self.kind.startswith(GAN_PREFIX) else None

    def __str__(self) -> str:
        """The spec in :data:`SPEC_FORMAT`; :func:`parse_fault` reads it back unchanged."""
        opts = []
        if self.asset is not None:
            opts.append(f"asset={self.asset}")
        if self.sensors is not None:
            opts.append("sensors=" + ";".join(self.sensors))
        if self.magnitude is not None:
            short = f"{self.magnitude:g}"
            opts.append(f"magnitude={short if float(short) == self.magnitude else repr(self.magnitude)}")
        return f"{self.kind}@{self.start}+{self.duration}" + (":" + ",".join(opts) if opts else "")


def _whole(spec: str, what: str, text: str, least: int) -> int:
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()) or int(digits) < least:
        raise InputError(f"fault {spec!r}: {what} must be a whole number of samples >= {least}, got {text!r}")
    return int(digits)


def parse_fault(text: str) -> FaultSpec:
    """Parse ``KIND@START+DURATION[:asset=A,sensors=S1;S2,magnitude=M]`` (START, DURATION in samples).

    KIND is a parametric kind or ``gan:<class>``, a pattern drawn from a GAN
    (whose magnitude, default 1, scales the pattern).
    """
    head, at, rest = text.strip().partition("@")
    if not at:
        raise InputError(f"fault {text!r}: expected {SPEC_FORMAT}")
    kind = head.strip()
    if kind not in KINDS and not kind.startswith(GAN_PREFIX):
        raise InputError(f"fault {text!r}: unknown kind {kind!r}; kinds: {', '.join(KINDS)}, gan:<class>")
    window, colon, options = rest.partition(":")
    start, plus, duration = window.partition("+")
    if not plus:
        raise InputError(f"fault {text!r}: expected START+DURATION after '@', e.g. {kind}@100+50")
    opts: dict[str, str] = {}
    for item in options.split(",") if colon else []:
        key, eq, value = (part.strip() for part in item.partition("="))
        if key not in ("asset", "sensors", "magnitude"):
            raise InputError(f"fault {text!r}: unknown option {key!r}; options: asset, sensors, magnitude")
        if not eq or not value:
            raise InputError(f"fault {text!r}: option {key} needs a value ({key}=...)")
        if key in opts:
            raise InputError(f"fault {text!r}: option {key} given twice")
        opts[key] = value
    sensors = None
    if "sensors" in opts:
        sensors = tuple(s.strip() for s in opts["sensors"].split(";"))
        if not all(sensors) or len(set(sensors)) != len(sensors):
            raise InputError(f"fault {text!r}: sensors must be distinct names separated by ';'")
    magnitude = None
    if "magnitude" in opts:
        try:
            magnitude = float(opts["magnitude"])
        except ValueError:
            raise InputError(f"fault {text!r}: magnitude must be a number, got {opts['magnitude']!r}") from None
    return FaultSpec(
        kind,
        _whole(text, "START", start, 0),
        _whole(text, "DURATION", duration, 1),
        opts.get("asset"),
        sensors,
        magnitude,
    )


@dataclass(frozen=True)
class FaultTarget:
    """What a fault needs to know about an asset; ``process`` only for simulated ones."""

    name: str
    sensors: list[str]
    std: np.ndarray
    process: AssetProcess | None = None

    @classmethod
    def of(cls, source: Any) -> FaultTarget:
        """From an :class:`AssetProcess` or any source with name, sensors and sensor_std."""
        process = source if isinstance(source, AssetProcess) else None
        return cls(source.name, list(source.sensors), np.asarray(source.sensor_std, dtype=np.float64), process)


class RowNoise:
    """Random numbers indexed by row, identical whatever the block boundaries."""

    def __init__(self, key: Sequence[int], width: int) -> None:
        self._key, self._width = tuple(key), width
        self._cache: dict[tuple[str, int], np.ndarray] = {}

    def _chunk(self, what: str, c: int) -> np.ndarray:
        if (what, c) not in self._cache:
            self._cache.clear()
            rng = np.random.default_rng([*self._key, c, 1 if what == "normal" else 2])
            size = (_CHUNK, self._width)
            self._cache[(what, c)] = rng.standard_normal(size) if what == "normal" else rng.random(size)
        return self._cache[(what, c)]

    def rows(self, what: str, lo: int, hi: int) -> np.ndarray:
        """Rows lo..hi-1 of the "normal" or "uniform" stream, shape (hi - lo, width)."""
        parts = [
            self._chunk(what, c)[max(lo - c * _CHUNK, 0) : hi - c * _CHUNK]
            for c in range(lo // _CHUNK, (hi - 1) // _CHUNK + 1)
        ]
        return np.concatenate(parts) if len(parts) != 1 else parts[0]


class Injection:
    """Base: rows ``start..end`` of asset ``asset`` in the columns ``columns``."""

    #: Process faults re-make their columns from the latent trace, so they go first.
    rewrites = False

    def __init__(
        self,
        asset: str,
        injection_id: str,
        kind: str,
        start: int,
        duration: int,
        sensors: Sequence[str],
        columns: Sequence[int],
        magnitude: float,
        params: dict[str, Any] | None = None,
    ) -> None:
        if start < 0 or duration < 1:
            raise ValueError(f"{injection_id}: start must be >= 0 and duration >= 1, got {start}, {duration}")
        if len(sensors) != len(columns) or not sensors:
            raise ValueError(f"{injection_id}: need one column per sensor, at least one")
        self.asset, self.injection_id, self.kind = asset, injection_id, kind
        self.start, self.duration = start, duration
        self.sensors = tuple(sensors)
        self.columns = np.asarray(columns, dtype=np.intp)
        self.magnitude = float(magnitude)
        self.params = dict(params or {})

    @property
    def end(self) -> int:
        """Index of the last affected sample."""
        return self.start + self.duration - 1

    def apply(self, block: np.ndarray, first_index: int) -> None:
        """Edit the rows of ``block`` (rows first_index..) that this injection covers, in place."""
        lo, hi = max(self.start, first_index), min(self.end + 1, first_index + len(block))
        if lo < hi:
            self._apply(block[lo - first_index : hi - first_index], lo - self.start)

    def _apply(self, rows: np.ndarray, offset: int) -> None:
        """Edit ``rows`` (all columns), whose first row is row ``offset`` of the fault window."""
        raise NotImplementedError

    def truth(self, start_ts: float, end_ts: float, phase: str = "start") -> DrillTruth:
        """Ground truth with the payload timestamps of the first and last affected samples."""
        return DrillTruth(
            asset=self.asset,
            injection_id=self.injection_id,
            kind=self.kind,
            sensors=self.sensors,
            start=start_ts,
            end=end_ts,
            magnitude=self.magnitude,
            phase=phase,
            params=dict(self.params),
        )


class SensorFault(Injection):
    """bias, drift, stuck, noise, spikes, intermittent: what a failing instrument does."""

    def __init__(self, *args: Any, std: np.ndarray, key: Sequence[int], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._delta = self.magnitude * np.asarray(std, dtype=np.float64)[self.columns]
        self._random = RowNoise(key, len(self.columns))
        self._frozen: np.ndarray | None = None
        if self.kind == "intermittent":  # on for `period` samples, off for `period`, ...
            self.params.setdefault("period", int(np.random.default_rng([*key, 3]).integers(4, 16)))

    def apply(self, block: np.ndarray, first_index: int) -> None:
        before = self.start - 1 - first_index
        if self.kind == "stuck" and 0 <= before < len(block):
            self._frozen = block[before, self.columns].copy()  # the last good value
        super().apply(block, first_index)

    def _apply(self, rows: np.ndarray, offset: int) -> None:
        n, cols = len(rows), self.columns
        i = np.arange(offset, offset + n)[:, None]
        if self.kind == "bias":
            rows[:, cols] += self._delta
        elif self.kind == "drift":
            rows[:, cols] += self._delta * (i + 1) / self.duration
        elif self.kind == "stuck":
            if self._frozen is None:
                self._frozen = rows[0, cols].copy()
            rows[:, cols] = self._frozen
        elif self.kind == "noise":
            rows[:, cols] += self._delta * self._random.rows("normal", offset, offset + n)
        elif self.kind == "spikes":
            u = self._random.rows("uniform", offset, offset + n)
            hit = (u < SPIKE_FRACTION) | (i == 0) | (i == self.duration - 1)
            sign = np.where(self._random.rows("normal", offset, offset + n) < 0, -1.0, 1.0)
            rows[:, cols] += hit * sign * self._delta
        elif self.kind == "intermittent":
            on = ((i // self.params["period"]) % 2 == 0) | (i == self.duration - 1)
            rows[:, cols] += on * self._delta
        else:
            raise ValueError(f"unknown sensor fault kind {self.kind!r}")


class LatentFault(Injection):
    """coefficient, decorrelate: the process itself misbehaves, seen in the chosen sensors.

    The chosen sensors are re-made from a shadow latent trajectory that starts
    from the true state: ``coefficient`` runs it with slowed poles
    (:meth:`AssetProcess.coefficients`) on the same innovations;
    ``decorrelate`` runs it on independent innovations (times ``magnitude``),
    so those sensors stop following the others. The process itself is never
    changed, so the rows after the fault are the fault-free ones.
    """

    rewrites = True

    def __init__(self, *args: Any, process: AssetProcess, key: Sequence[int], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._process = process
        slowdown = self.magnitude if self.kind == "coefficient" else 0.0
        self._a1, self._a2 = process.coefficients(slowdown)
        self._random = RowNoise(key, process.n_latent)
        self._hist: np.ndarray | None = None

    def _apply(self, rows: np.ndarray, offset: int) -> None:
        trace = self._process.trace
        first = self.start + offset
        if trace is None or not trace.first_index <= first < trace.first_index + len(trace.innov):
            raise RuntimeError(f"{self.injection_id}: apply() must follow the process's generate() of the same rows")
        lo = first - trace.first_index
        sl = slice(lo, lo + len(rows))
        if self._hist is None or offset == 0:
            self._hist = trace.z[lo : lo + 2].copy()  # true state just before the fault
        innov = trace.innov[sl]
        if self.kind == "decorrelate":
            innov = self.magnitude * self._process.gain * self._random.rows("normal", offset, offset + len(rows))
        z = run_ar2(self._hist, self._a1, self._a2, innov)
        self._hist = z[-2:].copy()
        made = self._process.render(trace.setpoint[sl] + z[2:], first, trace.noise[sl])
        rows[:, self.columns] = made[:, self.columns]


class AdditivePattern(Injection):
    """Adds an arbitrary deviation pattern, shape (duration, len(sensors)), in units of sensor std.

    This is how ``gan:<class>`` injections plug in: the generator supplies the
    pattern, everything else (rows, ground truth, publishing) is shared.
    """

    def __init__(
        self,
        asset: str,
        injection_id: str,
        kind: str,
        start: int,
        sensors: Sequence[str],
        columns: Sequence[int],
        pattern: np.ndarray,
        std: np.ndarray,
        params: dict[str, Any] | None = None,
    ) -> None:
        pattern = np.asarray(pattern, dtype=np.float64)
        if pattern.ndim != 2 or pattern.shape[1] != len(columns) or not np.isfinite(pattern).all():
            raise ValueError(
                f"{injection_id}: pattern must be finite, shape (duration, {len(columns)}), got {pattern.shape}"
            )
        magnitude = float(np.abs(pattern).max()) if pattern.size else 0.0
        super().__init__(asset, injection_id, kind, start, pattern.shape[0], sensors, columns, magnitude, params)
        self._deviation = pattern * np.asarray(std, dtype=np.float64)[self.columns]

    def _apply(self, rows: np.ndarray, offset: int) -> None:
        rows[:, self.columns] += self._deviation[offset : offset + len(rows)]


class PatternSource(Protocol):
    """Where ``gan:<class>`` patterns come from (:class:`simulator.gan.inject.GanPatterns`)."""

    name: str  # for messages and the ground truth (e.g. the GAN folder)
    sensors: list[str]  # the pattern's columns, matched to an asset's sensors by name
    classes: list[str]

    def pattern(self, label: str, length: int, seed: int) -> np.ndarray:
        """(length, len(sensors)) deviation in standard deviations of each sensor, from the fault's onset."""
        ...


def bind_faults(
    specs: Sequence[FaultSpec], targets: Sequence[FaultTarget], seed: int, patterns: PatternSource | None = None
) -> list[Injection]:
    """Turn parsed specs into injections, filling defaults; InputError names the bad spec.

    ``gan:<class>`` specs need ``patterns``; their pattern is drawn with a seed
    made from ``seed`` and the spec's position, so a run is reproducible.
    """
    by_name = {t.name: t for t in targets}
    out: list[Injection] = []
    for k, spec in enumerate(specs):
        name = spec.asset or targets[0].name
        target = by_name.get(name)
        if target is None:
            raise InputError(f"fault {str(spec)!r}: unknown asset {name!r}; assets: {', '.join(by_name)}")
        key = (seed, k, 7919)
        if spec.gan_class is not None:
            out.append(_bind_pattern(spec, target, k, patterns, int(np.random.default_rng(key).integers(2**31))))
            continue
        sensors = spec.sensors or _pick_sensors(target.sensors, np.random.default_rng(key))
        unknown = [s for s in sensors if s not in target.sensors]
        if unknown:
            raise InputError(
                f"fault {str(spec)!r}: {target.name} has no sensor {unknown[0]!r}; "
                f"its sensors: {', '.join(target.sensors[:12])}{' ...' if len(target.sensors) > 12 else ''}"
            )
        columns = [target.sensors.index(s) for s in sensors]
        magnitude = spec.magnitude if spec.magnitude is not None else DEFAULT_MAGNITUDE[spec.kind]
        args = (
            target.name,
            f"{k + 1:03d}-{spec.kind}-{target.name}",
            spec.kind,
            spec.start,
            spec.duration,
            sensors,
            columns,
            magnitude,
        )
        if spec.kind in PROCESS_KINDS:
            if target.process is None:
                raise InputError(
                    f"fault {str(spec)!r}: {spec.kind} faults change the simulated process; "
                    f"a replayed file has none (use bias, drift, stuck, noise, spikes or intermittent)"
                )
            out.append(LatentFault(*args, process=target.process, key=key))
        else:
            out.append(SensorFault(*args, std=target.std, key=key))
    return out


def _bind_pattern(
    spec: FaultSpec, target: FaultTarget, k: int, patterns: PatternSource | None, seed: int
) -> AdditivePattern:
    """A ``gan:<class>`` spec as an AdditivePattern on the asset's sensors of the same names."""
    me, label = repr(str(spec)), spec.gan_class
    assert label is not None
    if patterns is None:
        raise InputError(f"fault {me}: gan:<class> patterns come from a trained GAN; give --gan PATH")
    if label not in patterns.classes:
        raise InputError(
            f"fault {me}: the GAN {patterns.name} has no class {label!r}; its classes: {', '.join(patterns.classes)}"
        )
    missing = [s for s in patterns.sensors if s not in target.sensors]
    if missing:
        raise InputError(
            f"fault {me}: {target.name} lacks {len(missing)} of the GAN's {len(patterns.sensors)} "
            f"sensors (first: {missing[0]!r}); a GAN pattern is applied by sensor name and needs "
            f"every sensor it was trained on (extra sensors of the asset are left alone)"
        )
    chosen = list(spec.sensors) if spec.sensors is not None else list(patterns.sensors)
    unknown = [s for s in chosen if s not in patterns.sensors]
    if unknown:
        raise InputError(f"fault {me}: {unknown[0]!r} is not one of the GAN's sensors")
    pattern = patterns.pattern(label, spec.duration, seed) * (1.0 if spec.magnitude is None else spec.magnitude)
    pattern = pattern[:, [patterns.sensors.index(s) for s in chosen]]
    strongest = np.argsort(-np.abs(pattern).mean(axis=0))[:5]
    params = {
        "gan": patterns.name,
        "class": label,
        "seed": seed,
        "scale": 1.0 if spec.magnitude is None else spec.magnitude,
        "top_sensors": [chosen[j] for j in strongest],
    }
    return AdditivePattern(
        target.name,
        f"{k + 1:03d}-gan{label}-{target.name}",
        spec.kind,
        spec.start,
        chosen,
        [target.sensors.index(s) for s in chosen],
        pattern,
        target.std,
        params,
    )


def _pick_sensors(sensors: Sequence[str], rng: np.random.Generator) -> tuple[str, ...]:
    picked = rng.choice(len(sensors), size=min(int(rng.integers(1, 4)), len(sensors)), replace=False)
    return tuple(sensors[i] for i in sorted(picked))


class InjectionSet:
    """The injections of one asset, applied block by block in sample order."""

    def __init__(self, injections: Sequence[Injection]) -> None:
        self._queue = sorted(injections, key=lambda inj: inj.start)
        self._next = 0
        self.active: list[Injection] = []

    def apply(self, block: np.ndarray, first_index: int) -> tuple[list[Injection], list[Injection]]:
        """Apply to rows first_index..; returns the injections that started and that ended in them."""
        last = first_index + len(block) - 1
        while self._next < len(self._queue) and self._queue[self._next].start - 1 <= last:
            self.active.append(self._queue[self._next])  # one row early: stuck needs the last good value
            self._next += 1
        for inj in sorted(self.active, key=lambda inj: not inj.rewrites):
            inj.apply(block, first_index)
        started = [inj for inj in self.active if first_index <= inj.start <= last]
        ended = [inj for inj in self.active if first_index <= inj.end <= last]
        self.active = [inj for inj in self.active if inj.end > last]
        return started, ended

    @property
    def pending(self) -> int:
        """Injections not finished yet."""
        return len(self._queue) - self._next + len(self.active)


def periodic_faults(
    asset_names: Sequence[str],
    every_s: float,
    rate: float,
    seed: int,
    *,
    kinds: Sequence[str] = KINDS,
    first_s: float | None = None,
    duration_s: tuple[float, float] = (20.0, 60.0),
    horizon_s: float = 86400.0,
) -> list[FaultSpec]:
    """A varied fault every ``every_s`` seconds, assets in turn, kinds shuffled per round.

    For the demo: faults never overlap (each lasts less than ``every_s``), the
    first starts at ``first_s`` (default ``every_s``) so a monitor can warm up,
    and sensors are left for :func:`bind_faults` to pick from the seed.
    """
    if not asset_names or every_s <= 0 or rate <= 0 or not kinds:
        raise ValueError("periodic_faults needs assets, kinds, every_s > 0 and rate > 0")
    rng = np.random.default_rng([seed, 4241])
    every = max(2, round(every_s * rate))
    first = round((every_s if first_s is None else first_s) * rate)
    lo, hi = (max(1, min(round(d * rate), every - 1)) for d in duration_s)
    specs: list[FaultSpec] = []
    order: list[str] = []
    for j in range(max(0, int((horizon_s * rate - first) // every) + 1)):
        if not order:
            order = [str(k) for k in rng.permutation(list(kinds))]
        kind = order.pop()
        scale = float(rng.uniform(0.75, 1.5))
        magnitude = DEFAULT_MAGNITUDE[kind] * scale if kind != "stuck" else None
        specs.append(
            FaultSpec(
                kind,
                first + j * every,
                int(rng.integers(lo, max(lo, hi) + 1)),
                asset=asset_names[j % len(asset_names)],
                magnitude=magnitude,
            )
        )
    return specs
