"""``plantwatch train`` and ``plantwatch score`` as a user runs them."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from monitor.cli import main
from monitor.detector import model_folder as artefact
from tests.monitor.detector.fixtures import SENSORS, history, tiny_model, write_csv  # noqa: F401

TRAIN = ["--epochs", "6", "--window", "4", "--folds", "2"]


def _scores(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_same_seed_same_model(tmp_path: Path) -> None:
    """Training twice with one seed writes bit-identical weights; another seed does not."""
    data = write_csv(tmp_path / "h.csv", history(300))
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert main(["train", "--data", str(data), "--out", str(tmp_path / name), "--seed", seed, *TRAIN]) == 0
    h = {n: artefact.sha256_file(tmp_path / n / "weights.safetensors") for n in "abc"}
    assert h["a"] == h["b"] != h["c"]


def test_score_writes_every_row_with_the_timestamp_column(tiny_model: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "t.csv", history(50, seed=3))
    assert main(["score", "--model", str(tiny_model), "--data", str(data), "--out", str(tmp_path / "s.csv")]) == 0
    rows = _scores(tmp_path / "s.csv")
    assert len(rows) == 50
    assert list(rows[0])[:4] == ["timestamp", "score", "threshold", "anomaly"]
    assert rows[0]["timestamp"] == "2026-01-01T00:00:00Z"
    assert rows[1]["top_sensor"] in SENSORS and all(r["anomaly"] in ("0", "1") for r in rows)


def test_fewer_rows_than_the_window_are_still_scored(tiny_model: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "t.csv", history(2, seed=3))
    assert main(["score", "--model", str(tiny_model), "--data", str(data), "--out", str(tmp_path / "s.csv")]) == 0
    assert len(_scores(tmp_path / "s.csv")) == 2


def test_prefix_of_a_file_scores_like_the_whole(tiny_model: Path, tmp_path: Path) -> None:
    """Causality through the command: the first 70 rows score identically alone and within 200."""
    x = history(200, seed=8)
    x[100:, 1] += 5
    whole = write_csv(tmp_path / "whole.csv", x)
    part = write_csv(tmp_path / "part.csv", x[:70])
    main(["score", "--model", str(tiny_model), "--data", str(whole), "--out", str(tmp_path / "w.csv")])
    main(["score", "--model", str(tiny_model), "--data", str(part), "--out", str(tmp_path / "p.csv")])
    assert _scores(tmp_path / "w.csv")[:70] == _scores(tmp_path / "p.csv")


def test_columns_may_come_in_another_order(tiny_model: Path, tmp_path: Path) -> None:
    x = history(40, seed=9)
    a = write_csv(tmp_path / "a.csv", x)
    b = write_csv(tmp_path / "b.csv", x[:, ::-1], sensors=SENSORS[::-1])
    main(["score", "--model", str(tiny_model), "--data", str(a), "--out", str(tmp_path / "sa.csv")])
    main(["score", "--model", str(tiny_model), "--data", str(b), "--out", str(tmp_path / "sb.csv")])
    assert _scores(tmp_path / "sa.csv") == _scores(tmp_path / "sb.csv")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case", ["missing_value", "non_numeric", "other_columns", "empty", "too_few_rows", "no_file"])
def test_bad_input_gives_one_line_and_nonzero_exit(tiny_model: Path, tmp_path: Path, case: str) -> None:
    """A user's mistake is one line naming the file (and row/column), exit 2, never a traceback."""
    good = history(300)
    path = tmp_path / f"{case}.csv"
    if case == "missing_value":
        write_csv(path, good)
        lines = path.read_text().splitlines()
        lines[5] = lines[5].rsplit(",", 1)[0] + ","
        path.write_text("\n".join(lines) + "\n")
        expect = ["row 6", "'s5'", "missing value"]
    elif case == "non_numeric":
        write_csv(path, good)
        path.write_text(path.read_text().replace(repr(float(good[9, 2])), "oops", 1))
        expect = ["row 11", "'s2'", "oops"]
    elif case == "other_columns":
        write_csv(path, good[:, :5], sensors=["s0", "s1", "s2", "s3", "x9"])
        expect = ["missing s4, s5", "not in training x9"]
    elif case == "empty":
        path.write_text("")
        expect = ["empty file"]
    elif case == "too_few_rows":
        write_csv(path, good[:20])
        expect = ["20 data rows", "needs at least"]
    else:
        expect = ["no such file"]
    if case in ("too_few_rows", "missing_value", "non_numeric", "empty", "no_file"):
        r = _cli("train", "--data", str(path), "--out", str(tmp_path / "m"), *TRAIN)
    else:
        r = _cli("score", "--model", str(tiny_model), "--data", str(path), "--out", str(tmp_path / "s.csv"))
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert str(path) in last and all(e in last for e in expect), last
    assert not (tmp_path / "s.csv").exists()


def test_bad_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "t.csv", history(10))
    r = _cli("score", "--model", str(tmp_path), "--data", str(data), "--out", str(tmp_path / "s.csv"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "manifest.json" in r.stderr


def test_train_refuses_to_overwrite_without_force(tiny_model: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "h.csv", history(300))
    r = _cli("train", "--data", str(data), "--out", str(tiny_model), *TRAIN)
    assert r.returncode == 2 and "already exists" in r.stderr


def test_semicolon_file_without_timestamps_trains_and_scores(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "h.csv", history(300), times=False, delimiter=";")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "m"), *TRAIN]) == 0
    assert main(["score", "--model", str(tmp_path / "m"), "--data", str(data), "--out", str(tmp_path / "s.csv")]) == 0
    rows = _scores(tmp_path / "s.csv")
    assert len(rows) == 300 and next(iter(rows[0])) == "score"
    assert np.mean([int(r["anomaly"]) for r in rows]) < 0.1


@pytest.mark.parametrize("poison", [1e20, 1e38, 1e39, 1e100, 1e308, -1e308])
def test_a_poisoned_row_is_left_out_and_the_fault_after_it_is_detected_as_without_it(
    tiny_model: Path, tmp_path: Path, poison: float, capsys: pytest.CaptureFixture[str]
) -> None:
    """One implausible value: its row has an empty score, every other row scores exactly as if it were absent,
    and a +-15 sigma fault later is detected the same (on the landed main the score stayed NaN or +Inf)."""
    x = history(600, seed=11)
    x[400:, 2] += 15 * x[:300, 2].std()
    poisoned = np.insert(x, 50, x[50], axis=0)
    poisoned[50, 1] = poison
    clean_csv, poisoned_csv = write_csv(tmp_path / "c.csv", x), write_csv(tmp_path / "p.csv", poisoned)
    assert main(["score", "--model", str(tiny_model), "--data", str(clean_csv), "--out", str(tmp_path / "sc.csv")]) == 0
    assert (
        main(["score", "--model", str(tiny_model), "--data", str(poisoned_csv), "--out", str(tmp_path / "sp.csv")]) == 0
    )
    clean, got = _scores(tmp_path / "sc.csv"), _scores(tmp_path / "sp.csv")
    assert [got[50][k] for k in ("score", "threshold", "anomaly", "top_sensor")] == ["", "", "", ""]
    strip = [{k: v for k, v in r.items() if k != "timestamp"} for r in got[:50] + got[51:]]
    assert strip == [{k: v for k, v in r.items() if k != "timestamp"} for r in clean]
    assert any(r["anomaly"] == "1" for r in got[401:460])
    err = capsys.readouterr().err
    assert "1 row(s) not scored" in err and "row 52: s1=" in err and "outside [" in err


def test_bounds_from_a_toml_sensors_table_narrow_the_defaults(tiny_model: Path, tmp_path: Path) -> None:
    x = history(40, seed=12)
    data = write_csv(tmp_path / "t.csv", x)
    limit = float(np.sort(x[:, 0])[-3])  # the two largest values of s0 are past it
    (tmp_path / "b.toml").write_text(f"[broker]\nurl = 'mqtt://x:1'\n[sensors.s0]\nmax = {limit!r}\n")
    out = tmp_path / "s.csv"
    assert (
        main(
            [
                "score",
                "--model",
                str(tiny_model),
                "--data",
                str(data),
                "--out",
                str(out),
                "--bounds",
                str(tmp_path / "b.toml"),
            ]
        )
        == 0
    )
    assert sum(r["score"] == "" for r in _scores(out)) == 2
    (tmp_path / "bad.toml").write_text("[sensors.s0]\nmin = 3\nmax = 1\n")
    r = _cli(
        "score",
        "--model",
        str(tiny_model),
        "--data",
        str(data),
        "--out",
        str(out),
        "--bounds",
        str(tmp_path / "bad.toml"),
    )
    assert r.returncode == 2 and "sensors.s0: min must be below max" in r.stderr and "Traceback" not in r.stderr
