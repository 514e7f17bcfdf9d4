"""Output paths are checked before any work: one line, naming the flag and the path."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.errors import InputError
from monitor.outputs import check_file, check_folder


def test_a_file_output_needs_an_existing_folder_and_must_not_be_a_folder(tmp_path: Path) -> None:
    assert check_file(tmp_path / "s.csv", "--out") == tmp_path / "s.csv"
    with pytest.raises(InputError, match=r"--out .*: folder .* does not exist"):
        check_file(tmp_path / "no" / "s.csv", "--out")
    with pytest.raises(InputError, match=r"--out .*: is a folder"):
        check_file(tmp_path, "--out")
    (tmp_path / "f").write_text("")
    with pytest.raises(InputError, match="is a file, not a folder"):
        check_file(tmp_path / "f" / "s.csv", "--out")


def test_a_folder_output_may_be_created_but_not_under_a_file_nor_over_one(tmp_path: Path) -> None:
    assert check_folder(tmp_path / "a" / "b", "--out") == tmp_path / "a" / "b"
    (tmp_path / "f").write_text("")
    for p in (tmp_path / "f", tmp_path / "f" / "m", tmp_path / "f" / "x" / "m"):
        with pytest.raises(InputError, match="is a file, not a folder"):
            check_folder(p, "--out")
    (tmp_path / "m").mkdir()
    with pytest.raises(InputError, match="already exists"):
        check_folder(tmp_path / "m", "--out", exists_ok=False)
    assert check_folder(tmp_path / "m", "--out", exists_ok=False, force=True) == tmp_path / "m"
