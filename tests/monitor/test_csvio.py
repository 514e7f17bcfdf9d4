"""CSV history: delimiters, timestamp columns, and errors that name the file, row and column."""

from __future__ import annotations

import functools
import operator
from pathlib import Path

import numpy as np
import pytest

from monitor import csvio
from monitor.errors import InputError


def _write(tmp_path: Path, text: str, name: str = "d.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("sep", [",", ";", "\t"])
def test_delimiter_is_detected(tmp_path: Path, sep: str) -> None:
    t = csvio.read_table(_write(tmp_path, f"a{sep}b\n1{sep}2\n3{sep}4\n"))
    assert t.sensors == ["a", "b"] and t.values.tolist() == [[1, 2], [3, 4]]


def test_time_column_by_name_and_by_content(tmp_path: Path) -> None:
    t = csvio.read_table(_write(tmp_path, "x,Date_UTC,y\n1,d1,2\n"))
    assert t.time_column == "Date_UTC" and t.timestamps == ["d1"] and t.sensors == ["x", "y"]
    t = csvio.read_table(_write(tmp_path, "when,y\n2026-01-01T00:00:00Z,2\n"))
    assert t.time_column == "when"
    t = csvio.read_table(_write(tmp_path, "a,b\n1,2\n"))
    assert t.time_column is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty file"),
        ("a,b\n", "no data rows"),
        ("1,2\n3,4\n", "header row naming the sensors is required"),
        ("a,a\n1,2\n", "duplicate column"),
        ("a,b\n1,2\n3,\n", "row 3, column 'b': missing value"),
        ("a,b\n1,2\n3,x\n", "row 3, column 'b': not a number: 'x'"),
        ("a,b\n1,2\n3,nan\n", "row 3, column 'b': missing value"),
        ("a,b\n1,2\n3,4,5\n", "row 3: 3 cells, the header has 2"),
        ("a,b\n1,2\n\n3,inf\n", "row 4, column 'b': not a finite number"),
    ],
)
def test_bad_files_name_file_row_and_column(tmp_path: Path, text: str, message: str) -> None:
    p = _write(tmp_path, text)
    with pytest.raises(InputError) as exc:
        csvio.read_table(p)
    assert str(p) in str(exc.value) and message in str(exc.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        csvio.read_table(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="directory"):
        csvio.read_table(tmp_path)


def test_chunks_cover_the_file_in_order(tmp_path: Path) -> None:
    """Streaming in small chunks yields exactly the rows of the whole file."""
    rows = "\n".join(f"t{i},{i},{i * 2}" for i in range(1000))
    p = _write(tmp_path, "time,a,b\n" + rows + "\n")
    chunks = list(csvio.iter_chunks(p, chunk_rows=64))
    assert len(chunks) == 16
    values = np.concatenate([c.values for c in chunks])
    assert values[:, 0].tolist() == list(range(1000))
    assert functools.reduce(operator.iadd, (c.timestamps for c in chunks), [])[-1] == "t999"


def test_quoted_cells_are_read(tmp_path: Path) -> None:
    t = csvio.read_table(_write(tmp_path, 'time,"a,1",b\n"2026-01-01",1,"2"\n'))
    assert t.sensors == ["a,1", "b"] and t.values.tolist() == [[1, 2]]


def test_row_cap_refuses_absurd_training_files(tmp_path: Path) -> None:
    p = _write(tmp_path, "a\n" + "1\n" * 50)
    with pytest.raises(InputError, match="more than 10 rows"):
        csvio.read_table(p, max_rows=10)


def test_sample_period_from_timestamps() -> None:
    assert csvio.sample_period(["2026-01-01T00:00:00Z", "2026-01-01T00:00:30Z", "2026-01-01T00:01:00Z"]) == 30.0
    assert csvio.sample_period(None, default=5.0) == 5.0
