"""Sensor history as CSV, the one format train, score, record and replay share.

Header row; delimiter sniffed among ``,`` ``;`` and tab; an optional
timestamp column (name contains ``time`` or ``date``, or a first column that
parses as datetimes), every other column one numeric sensor, unless
``--sensors``/``--exclude`` patterns pick some (:mod:`monitor.columns`: the
others are never parsed). A missing value is an error unless the command's
``--missing`` policy fills or drops its row (:mod:`monitor.missing`). Files stream in
chunks so a huge file never has to fit in memory; every problem is an
:class:`InputError` naming the file, the row (1-based, header = row 1) and the
column, because a traceback does not tell a plant engineer which cell is bad.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from . import columns as columns_
from .errors import InputError
from .missing import MISSING_TEXTS, Filler

#: appended to a missing-value error: how to accept gaps instead
MISSING_HINT = "(--missing drop, or --missing hold:N to hold the last value, accepts gaps)"

DELIMITERS = (",", ";", "\t")
CHUNK_ROWS = 32768
MAX_TABLE_ROWS = 5_000_000


@dataclass(frozen=True)
class Layout:
    """What the header told us: where the data lives and how to split it."""

    path: Path
    delimiter: str
    time_column: str | None
    time_index: int | None
    sensors: list[str]
    columns: list[str]
    usecols: tuple[int, ...] = ()  # file columns of the sensors, in order (default: every non-time column)

    def __post_init__(self) -> None:
        if not self.usecols:
            index = {c: j for j, c in enumerate(self.columns)}
            object.__setattr__(self, "usecols", tuple(index[s] for s in self.sensors))


@dataclass
class Chunk:
    """Consecutive data rows of a file."""

    timestamps: list[str] | None
    values: np.ndarray  # (n, n_sensors) float64
    keep: np.ndarray | None = None  # (n,) False for rows a --missing policy dropped (None: all kept)


@dataclass
class Table:
    """A whole file in memory (training, replay); scoring uses :func:`iter_chunks`."""

    path: Path
    time_column: str | None
    timestamps: list[str] | None
    sensors: list[str]
    values: np.ndarray

    def __len__(self) -> int:
        return int(self.values.shape[0])


def csv_cell(text: str) -> str:
    """One cell as RFC 4180 writes it: quoted only when it holds a delimiter, a quote or a line break.

    >>> csv_cell("T1"), csv_cell("flow, main"), csv_cell('5" pipe')
    ('T1', '"flow, main"', '"5"" pipe"')
    """
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_line(cells: list[str]) -> str:
    """A row of text cells, comma-separated, without the line break."""
    return ",".join(csv_cell(c) for c in cells)


def parse_time(text: str) -> float | None:
    """Unix seconds from an ISO 8601 string or a number, else None."""
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _looks_like_datetime(text: str) -> bool:
    text = text.strip()
    try:
        float(text)
        return False
    except ValueError:
        return parse_time(text) is not None


def _open(path: Path) -> io.TextIOWrapper:
    try:
        return open(path, newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a CSV file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None


def _sniff(path: Path, header: str) -> str:
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def read_layout(path: str | Path, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> Layout:
    """Read and check the header (and peek at the first data row); ``include``/``exclude`` pick the sensors."""
    path = Path(path)
    with _open(path) as f:
        try:
            header_line = f.readline()
            first_line = f.readline()
        except UnicodeDecodeError:
            raise InputError(f"{path}: not a UTF-8 text file") from None
    if not header_line.strip():
        raise InputError(f"{path}: empty file (expected a header row and data rows)")
    delimiter = _sniff(path, header_line)
    columns = [c.strip() for c in next(csv.reader([header_line], delimiter=delimiter))]
    for j, name in enumerate(columns):
        if not name:
            raise InputError(f"{path}: row 1, column {j + 1}: empty column name")
    dup = {c for c in columns if columns.count(c) > 1}
    if dup:
        raise InputError(f"{path}: row 1: duplicate column name(s) {', '.join(sorted(dup))}")
    if all(_is_float(c) for c in columns):
        raise InputError(f"{path}: row 1 is numeric; a header row naming the sensors is required")
    first = next(csv.reader([first_line], delimiter=delimiter), []) if first_line.strip() else []
    time_index = None
    for j, name in enumerate(columns):
        low = name.lower()
        if "time" in low or "date" in low:
            time_index = j
            break
    if time_index is None and first and _looks_like_datetime(first[0]):
        time_index = 0
    sensors = [c for j, c in enumerate(columns) if j != time_index]
    if not sensors:
        raise InputError(f"{path}: no sensor columns besides the timestamp column")
    if include or exclude:
        sensors = columns_.select(sensors, include, exclude, str(path))
    return Layout(
        path, delimiter, columns[time_index] if time_index is not None else None, time_index, sensors, columns
    )


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _bad_cell(layout: Layout, rows: list[list[str]], numbers: list[int], gaps: bool = False) -> InputError:
    """Find the first offending cell of a chunk that failed the fast conversion (a gap only when not ``gaps``)."""
    for i, row in enumerate(rows):
        for j in layout.usecols:
            cell = row[j]
            name = layout.columns[j]
            text = cell.strip()
            where = f"{layout.path}: row {numbers[i]}, column {name!r}"
            if text.lower() in MISSING_TEXTS:
                if gaps:
                    continue
                return InputError(f"{where}: missing value {MISSING_HINT}")
            try:
                value = float(text)
            except ValueError:
                return InputError(f"{where}: not a number: {text[:40]!r}")
            if not np.isfinite(value):
                return InputError(f"{where}: not a finite number: {text[:40]!r}")
    return InputError(f"{layout.path}: rows {numbers[0]}-{numbers[-1]}: unreadable numbers")


def _convert(layout: Layout, rows: list[list[str]], numbers: list[int], gaps: bool = False) -> Chunk:
    width = len(layout.columns)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise InputError(f"{layout.path}: row {numbers[i]}: {len(row)} cells, the header has {width}")
    ti = layout.time_index
    stamps = [row[ti].strip() for row in rows] if ti is not None else None
    if stamps is not None:
        for i, s in enumerate(stamps):
            if not s:
                raise InputError(f"{layout.path}: row {numbers[i]}, column {layout.time_column!r}: missing timestamp")
    cols = layout.usecols
    if len(cols) == width - (ti is not None):
        cells = [row[:ti] + row[ti + 1 :] for row in rows] if ti is not None else rows
    else:
        cells = [[row[j] for j in cols] for row in rows]
    try:
        values = np.array(cells, dtype=np.float64)
    except ValueError:
        if not gaps:
            raise _bad_cell(layout, rows, numbers) from None
        values = _with_gaps(layout, cells, rows, numbers)
    if values.size and not (np.isfinite(values) | (gaps & np.isnan(values))).all():
        raise _bad_cell(layout, rows, numbers, gaps)
    return Chunk(stamps, values.reshape(len(rows), len(layout.sensors)))


def _with_gaps(layout: Layout, cells: list[list[str]], rows: list[list[str]], numbers: list[int]) -> np.ndarray:
    """Cells to floats with the texts that mean "no value" as NaN (the slow path, for chunks with gaps)."""
    gap = MISSING_TEXTS
    try:
        return np.array([["nan" if c.strip().lower() in gap else c for c in row] for row in cells], dtype=np.float64)
    except ValueError:
        raise _bad_cell(layout, rows, numbers, gaps=True) from None


def _fast(layout: Layout, lines: list[str], numbers: list[int], gaps: bool = False) -> Chunk:
    """C-speed conversion of unquoted lines; any problem falls back to the csv module."""
    ti = layout.time_index
    d = layout.delimiter
    cols = list(layout.usecols)
    try:
        if '"' in lines[0] or '"' in lines[-1]:
            raise ValueError("quoted")
        values = np.loadtxt(lines, delimiter=d, usecols=cols, dtype=np.float64, ndmin=2, comments=None, quotechar=None)
        finite = np.isfinite(values)
        if values.shape != (len(lines), len(cols)) or not (finite.all() or (gaps and not np.isinf(values).any())):
            raise ValueError("shape or non-finite")
        if any(ln.count(d) != len(layout.columns) - 1 for ln in lines):
            raise ValueError("ragged")
        stamps = [ln.split(d, ti + 1)[ti].strip() for ln in lines] if ti is not None else None
        if stamps is not None and not all(stamps):
            raise ValueError("timestamps")
    except ValueError:
        rows = list(csv.reader(lines, delimiter=d))
        return _convert(layout, rows, numbers, gaps)
    return Chunk(stamps, values)


def iter_chunks(
    path: str | Path, chunk_rows: int = CHUNK_ROWS, layout: Layout | None = None, gaps: Filler | None = None
) -> Iterator[Chunk]:
    """Stream the data rows in bounded chunks; blank lines are skipped.

    Rows are numbered as lines of the file (header = 1); a quoted cell may not
    span lines. Without ``gaps`` a missing value is an error; with it, missing
    values are filled or their rows marked in ``Chunk.keep``, in file order.
    """
    layout = layout or read_layout(path)
    for chunk in _chunks(layout, chunk_rows, gaps is not None):
        if gaps is not None:
            keep = gaps.apply(chunk.values)
            chunk.keep = None if keep.all() else keep
        yield chunk


def _chunks(layout: Layout, chunk_rows: int, gaps: bool) -> Iterator[Chunk]:
    with _open(layout.path) as f:
        line_no = 1
        try:
            f.readline()
            lines: list[str] = []
            numbers: list[int] = []
            for raw in f:
                line_no += 1
                if not raw.strip():
                    continue
                lines.append(raw.rstrip("\r\n"))
                numbers.append(line_no)
                if len(lines) >= chunk_rows:
                    yield _fast(layout, lines, numbers, gaps)
                    lines, numbers = [], []
            if lines:
                yield _fast(layout, lines, numbers, gaps)
        except csv.Error as exc:
            raise InputError(f"{layout.path}: near row {line_no}: {exc}") from None
        except UnicodeDecodeError:
            raise InputError(f"{layout.path}: row {line_no + 1}: not UTF-8 text") from None


def read_table(
    path: str | Path,
    max_rows: int = MAX_TABLE_ROWS,
    layout: Layout | None = None,
    gaps: Filler | None = None,
) -> Table:
    """The whole file in memory, for training and replay; refuses absurd sizes.

    ``layout`` picks the sensors (:func:`read_layout`); with ``gaps`` rows a
    --missing policy drops are left out.
    """
    layout = layout or read_layout(path)
    stamps: list[str] | None = [] if layout.time_index is not None else None
    blocks: list[np.ndarray] = []
    n = 0
    for chunk in iter_chunks(layout.path, layout=layout, gaps=gaps):
        n += len(chunk.values)
        if n > max_rows:
            raise InputError(f"{layout.path}: more than {max_rows:,} rows; use a representative sample of the history")
        keep = chunk.keep
        blocks.append(chunk.values if keep is None else chunk.values[keep])
        if stamps is not None and chunk.timestamps is not None:
            stamps.extend(chunk.timestamps if keep is None else [t for t, k in zip(chunk.timestamps, keep) if k])
    if n == 0:
        raise InputError(f"{layout.path}: no data rows after the header")
    if not sum(len(b) for b in blocks):
        raise InputError(f"{layout.path}: every row has a missing value that --missing drops")
    return Table(layout.path, layout.time_column, stamps, layout.sensors, np.concatenate(blocks))


def sample_period(timestamps: list[str] | None, default: float = 1.0) -> float:
    """Median spacing of the timestamps in seconds (``default`` when unknown)."""
    if not timestamps or len(timestamps) < 2:
        return default
    head = [parse_time(t) for t in timestamps[:10001]]
    if any(t is None for t in head):
        return default
    diffs = np.diff(np.array(head, dtype=np.float64))
    diffs = diffs[diffs > 0]
    return float(np.median(diffs)) if diffs.size else default
