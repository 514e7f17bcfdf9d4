"""Recorded fault episodes -> standardised deviations, the data the GAN learns from.

Two layouts are read, both through :func:`load`:

**TEP folder** (a folder holding ``d00.dat``): ``d00.dat`` is normal operation
(stored transposed, 52 x 500, either orientation is accepted), ``dNN.dat`` the
training run of fault NN and ``dNN_te.dat`` its test run, whitespace separated,
41 measurements then 11 manipulated variables (named ``xmeas_1`` ..
``xmeas_41``, ``xmv_1`` .. ``xmv_11``, as in ``benchmarks/tep_benchmark.py``).
The fault is present from the first row of ``dNN.dat`` (its trajectory matches
``dNN_te.dat`` from row 161 to within 2 samples for the step faults 1, 2, 5, 6
and 7) and from row 161 of ``dNN_te.dat``. ``split="train"`` reads the training
runs, ``split="test"`` the held-out test runs.

**Labelled CSV** (a file, or a folder of ``*.csv`` files, all with the same
sensors): the layout ``plantwatch train`` reads (header, optional timestamp
column, numeric sensor columns) plus either

- a ``fault`` column: integer class per row, ``0`` = normal; an *episode* is a
  maximal run of consecutive rows with the same non-zero class (and, if there
  is a ``run`` column, the same run id), its first row the onset; or
- no ``fault`` column but ``FILE.truth.jsonl`` beside it (what ``plantwatch
  simulate --to-csv FILE --fault ...`` writes): rows whose timestamp falls in
  a truth's ``start..end`` belong to an episode of class ``kind``.

Rows of class 0 (or outside every truth) are normal: they fix each sensor's
mean and standard deviation and the normal noise spectrum. A *deviation* is
``(x - normal mean) / normal std`` on the rows from the onset on, so a pattern
can be added to any normal stream with the same sensors, whatever its level.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from monitor import csvio
from monitor.errors import InputError

TEP_SENSORS = [f"xmeas_{i + 1}" for i in range(41)] + [f"xmv_{i + 1}" for i in range(11)]
TEP_ONSET = {"train": 0, "test": 160}
TEP_UNDETECTABLE = ("3", "9", "15")  # faults known not to show in the data
LABEL_COLUMN = "fault"
RUN_COLUMN = "run"
NORMAL = "0"
PSD_SEGMENT = 128
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Episode:
    """The faulty rows of one recorded fault, from its onset on, in raw sensor units."""

    label: str
    values: np.ndarray  # (n, d)
    source: str  # file and first row, for messages and the report

    def __len__(self) -> int:
        return int(self.values.shape[0])


@dataclass(frozen=True)
class FaultData:
    """Normal rows and fault episodes of one data source, sensors in a fixed order."""

    sensors: list[str]
    normal: np.ndarray  # (m, d) normal rows
    episodes: list[Episode]
    source: str
    layout: str  # "tep" or "csv"

    @property
    def classes(self) -> list[str]:
        return sort_labels({e.label for e in self.episodes})

    def of_class(self, label: str) -> list[Episode]:
        return [e for e in self.episodes if e.label == label]


def sort_labels(labels: Iterable[str]) -> list[str]:
    """Numeric classes in numeric order, then the others alphabetically ("2" < "10" < "bias")."""
    return sorted(labels, key=lambda s: (0, int(s), "") if s.isdigit() else (1, 0, s))


@dataclass(frozen=True)
class Normaliser:
    """Per-sensor normal mean and standard deviation; a constant sensor gets std 1."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, normal: np.ndarray) -> Normaliser:
        mean = normal.mean(axis=0)
        std = normal.std(axis=0)
        std = np.where(std > 1e-9 * np.maximum(np.abs(mean), 1.0), std, 1.0)
        return cls(mean.astype(np.float64), std.astype(np.float64))

    def deviation(self, values: np.ndarray) -> np.ndarray:
        """(x - mean) / std: the distance from normal in standard deviations."""
        return (np.asarray(values, dtype=np.float64) - self.mean) / self.std

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normaliser:
        return cls(np.asarray(d["mean"], dtype=np.float64), np.asarray(d["std"], dtype=np.float64))


def normal_psd(z: np.ndarray, segment: int = PSD_SEGMENT) -> np.ndarray:
    """Welch power spectrum per sensor of standardised normal rows: (segment // 2 + 1, d).

    Used to take the normal noise back out of a generated pattern before it
    is added to a stream that has its own (see :func:`simulator.gan.sample.denoise`).
    """
    seg = min(segment, 1 << int(np.log2(max(len(z), 2))))
    if seg < 8:
        raise InputError(f"need at least 8 normal rows to measure the normal noise, got {len(z)}")
    window = np.hanning(seg)[:, None]
    starts = range(0, len(z) - seg + 1, seg // 2)
    spectra = [np.abs(np.fft.rfft((z[s : s + seg] - z[s : s + seg].mean(0)) * window, axis=0)) ** 2 for s in starts]
    psd = np.mean(spectra, axis=0) / float((window**2).sum())
    if seg != segment:  # keep one grid in the manifest whatever the amount of normal data
        f, g = np.fft.rfftfreq(seg), np.fft.rfftfreq(segment)
        psd = np.stack([np.interp(g, f, psd[:, j]) for j in range(psd.shape[1])], axis=1)
    return psd


def hold_periods(normal: np.ndarray, max_period: int = 60) -> np.ndarray:
    """Per sensor, how many samples a value is held (1 = a new value every sample).

    Analysers that report less often than the others show up as runs of
    identical values; the period is the median run length when at least 30%
    of consecutive values are identical.
    """
    periods = np.ones(normal.shape[1], dtype=np.int64)
    same = np.abs(np.diff(normal, axis=0)) <= 1e-12 * np.maximum(np.abs(normal[1:]), 1.0)
    for j in np.flatnonzero(same.mean(axis=0) >= 0.3):
        changes = np.flatnonzero(~same[:, j])
        runs = np.diff(changes)
        if runs.size:
            periods[j] = int(min(max_period, max(1, round(float(np.median(runs))))))
    return periods


def resolutions(normal: np.ndarray, normaliser: Normaliser, least: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Per sensor, the step between recorded values and where the steps fall, in standard deviations.

    A sensor recorded with few decimals (TEP's reactor temperature: steps of
    half a standard deviation) only takes values on a lattice; generated
    values are put on the same lattice. 0 = continuous (steps below ``least``).
    """
    res = np.zeros(normal.shape[1])
    offset = np.zeros(normal.shape[1])
    for j in range(normal.shape[1]):
        values = np.unique(normal[:, j])
        gaps = np.diff(values)
        if gaps.size == 0:
            continue
        q = float(gaps[gaps > 0].min())
        on_lattice = np.abs((values - values[0]) / q - np.round((values - values[0]) / q)) < 1e-3
        if q / normaliser.std[j] >= least and on_lattice.mean() > 0.99:
            res[j] = q / normaliser.std[j]
            offset[j] = ((values[0] - normaliser.mean[j]) / normaliser.std[j]) % res[j]
    return res, offset


# ---------------------------------------------------------------- loading


def load(path: str | Path, split: str = "train") -> FaultData:
    """A TEP folder (``split`` picks dNN.dat or dNN_te.dat), a labelled CSV or a folder of them."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = Path(path)
    if path.is_dir() and (path / "d00.dat").is_file():
        return load_tep(path, split)
    if path.is_dir():
        files = sorted(path.glob("*.csv"))
        if not files:
            raise InputError(f"{path}: neither a TEP folder (no d00.dat) nor a folder of labelled *.csv files")
        return load_csv(files, str(path))
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    return load_csv([path], str(path))


def read_dat(path: Path) -> np.ndarray:
    """One TEP ``.dat`` file as (rows, 52), whichever way it is stored."""
    try:
        a = np.loadtxt(path, ndmin=2)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable TEP file: {exc}") from None
    if a.shape[0] == len(TEP_SENSORS) and a.shape[1] != len(TEP_SENSORS):
        a = a.T
    if a.shape[1] != len(TEP_SENSORS) or not np.isfinite(a).all():
        raise InputError(f"{path}: expected finite rows of {len(TEP_SENSORS)} values, got shape {a.shape}")
    return a


def load_tep(folder: Path, split: str) -> FaultData:
    suffix, onset = ("" if split == "train" else "_te"), TEP_ONSET[split]
    normal = read_dat(folder / "d00.dat")
    episodes = []
    for f in sorted(folder.glob(f"d[0-9][0-9]{suffix}.dat")):
        k = int(f.name[1:3])
        if k == 0:
            continue
        values = read_dat(f)
        if len(values) <= onset:
            raise InputError(f"{f}: {len(values)} rows, the fault starts at row {onset + 1}")
        episodes.append(Episode(str(k), values[onset:], f"{f.name} rows {onset + 1}-{len(values)}"))
    if not episodes:
        raise InputError(f"{folder}: no d01{suffix}.dat .. d21{suffix}.dat fault runs")
    return FaultData(list(TEP_SENSORS), normal, episodes, str(folder), "tep")


def load_csv(files: Sequence[Path], source: str) -> FaultData:
    sensors: list[str] | None = None
    normal, episodes = [], []
    for f in files:
        table = csvio.read_table(f)
        labels, columns = _labels(table)
        names = [table.sensors[j] for j in columns]
        if sensors is None:
            sensors = names
        elif names != sensors:
            raise InputError(f"{f}: sensors differ from {files[0]} (every file needs the same sensor columns)")
        values = table.values[:, columns]
        runs = table.values[:, table.sensors.index(RUN_COLUMN)] if RUN_COLUMN in table.sensors else None
        normal.append(values[labels == NORMAL])
        episodes += _episodes(f, values, labels, runs)
    assert sensors is not None
    normal_rows = np.concatenate(normal) if normal else np.zeros((0, len(sensors)))
    if len(normal_rows) < 8:
        raise InputError(
            f"{source}: {len(normal_rows)} normal rows (class 0); at least 8 are needed to know what normal looks like"
        )
    if not episodes:
        raise InputError(f"{source}: no fault episodes (rows with a non-zero '{LABEL_COLUMN}')")
    return FaultData(sensors, normal_rows, episodes, source, "csv")


def _labels(table: csvio.Table) -> tuple[np.ndarray, list[int]]:
    """Class of every row (as text) and the columns that are sensors."""
    skip = {LABEL_COLUMN, RUN_COLUMN}
    columns = [j for j, s in enumerate(table.sensors) if s not in skip]
    if not columns:
        raise InputError(f"{table.path}: no sensor columns besides '{LABEL_COLUMN}' and '{RUN_COLUMN}'")
    if LABEL_COLUMN in table.sensors:
        raw = table.values[:, table.sensors.index(LABEL_COLUMN)]
        bad = np.flatnonzero((raw != np.round(raw)) | (raw < 0))
        if bad.size:
            raise InputError(
                f"{table.path}: row {bad[0] + 2}, column '{LABEL_COLUMN}': class must be a whole "
                f"number >= 0 (0 = normal), got {raw[bad[0]]!r}"
            )
        return np.array([str(int(v)) for v in raw], dtype=object), columns
    return _labels_from_truth(table), columns


def _labels_from_truth(table: csvio.Table) -> np.ndarray:
    from monitor.wire import DrillTruth, decode_drill

    from ..history import truth_path

    truth = truth_path(table.path)
    if not truth.is_file():
        raise InputError(
            f"{table.path}: no '{LABEL_COLUMN}' column (class per row, 0 = normal) and no "
            f"{truth.name} beside it; fault episodes need labels"
        )
    if not table.timestamps:
        raise InputError(f"{table.path}: labels from {truth.name} need a timestamp column")
    stamps = np.array([csvio.parse_time(t) for t in table.timestamps], dtype=np.float64)
    labels = np.full(len(table), NORMAL, dtype=object)
    for n, line in enumerate(truth.read_bytes().splitlines(), 1):
        t = decode_drill(line)
        if not isinstance(t, DrillTruth):
            raise InputError(f"{truth}: line {n}: not a drill ground truth ({t.reason})")
        label = re.sub(r"[^A-Za-z0-9_.-]", "_", t.kind)
        labels[(stamps >= t.start - 1e-6) & (stamps <= t.end + 1e-6)] = label
    return labels


def _episodes(path: Path, values: np.ndarray, labels: np.ndarray, runs: np.ndarray | None) -> list[Episode]:
    key = labels if runs is None else np.array([f"{a}\x00{b}" for a, b in zip(labels, runs)], dtype=object)
    edges = np.flatnonzero(key[1:] != key[:-1]) + 1
    out = []
    for lo, hi in zip(np.r_[0, edges], np.r_[edges, len(labels)]):
        if labels[lo] != NORMAL:
            out.append(Episode(str(labels[lo]), values[lo:hi], f"{path.name} rows {lo + 2}-{hi + 1}"))
    return out


# ---------------------------------------------------------------- deviations


@dataclass(frozen=True)
class Deviations:
    """Standardised deviations of every episode, each tagged with its class index."""

    classes: list[str]
    series: list[np.ndarray]  # (n_i, d) each
    class_index: np.ndarray  # (episodes,)
    sources: list[str]

    def of_class(self, c: int) -> list[np.ndarray]:
        return [s for s, k in zip(self.series, self.class_index) if k == c]


def deviations(data: FaultData, normaliser: Normaliser, classes: Sequence[str], min_length: int) -> Deviations:
    """Deviation series of the episodes of ``classes`` at least ``min_length`` long (others dropped)."""
    index = {c: i for i, c in enumerate(classes)}
    keep = [e for e in data.episodes if e.label in index and len(e) >= min_length]
    return Deviations(
        list(classes),
        [normaliser.deviation(e.values) for e in keep],
        np.array([index[e.label] for e in keep], dtype=np.int64),
        [e.source for e in keep],
    )


def windows(series: np.ndarray, length: int, stride: int, first: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Windows (k, length, d) of one series and their start offsets from the onset."""
    starts = np.arange(first, len(series) - length + 1, stride)
    if starts.size == 0:
        return np.zeros((0, length, series.shape[1])), starts
    return np.stack([series[s : s + length] for s in starts]), starts
