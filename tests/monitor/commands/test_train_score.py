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


# ---------------------------------------------------------------- the first hour (issue 13)


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    from tests.cli import PLANTWATCH

    return subprocess.run([*PLANTWATCH, *argv], capture_output=True, text=True, timeout=300)


def _one_error_line(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ": error: " in ln]
    assert len(errors) == 1 and needle in errors[0], proc.stderr


def test_output_paths_are_checked_before_any_work(tiny_model: Path, tmp_path: Path) -> None:
    """score --out in a missing folder or onto a folder, and train --out under a file, each fail at once
    with one line and exit 2: train never starts training (it does not even read the history)."""
    data = write_csv(tmp_path / "t.csv", history(50, seed=3))
    score = ["score", "--model", str(tiny_model), "--data", str(data), "--out"]
    _one_error_line(_run(*score, str(tmp_path / "nope" / "s.csv")), "does not exist")
    _one_error_line(_run(*score, str(tmp_path)), "is a folder")
    _one_error_line(_run(*score, str(tmp_path / "s.csv"), "--plot", str(tmp_path / "no" / "p.png")), "--plot")
    (tmp_path / "file").write_text("x")
    proc = _run("train", "--data", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "file" / "m"))
    _one_error_line(proc, "is a file, not a folder")
    _one_error_line(_run("train", "--data", str(data), "--out", str(tmp_path / "file")), "is a file, not a folder")
    assert not list(tmp_path.glob("**/weights.safetensors"))


def _export(path: Path, x: np.ndarray) -> Path:
    """A plant export: timestamp, the sensors, then a label, a change-point flag and a row id."""
    n = len(x)
    label = (np.arange(n) % 97 < 5).astype(int)
    with open(path, "w") as f:
        f.write("timestamp," + ",".join(SENSORS) + ",anomaly,changepoint,row_id\n")
        for i, row in enumerate(x):
            cells = [f"2026-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z", *map(repr, row.tolist())]
            f.write(",".join([*cells, str(label[i]), str(int(i % 50 == 0)), str(1000 + i)]) + "\n")
    return path


def test_train_names_its_sensors_warns_about_label_like_columns_and_exclude_leaves_them_out(tmp_path: Path) -> None:
    data = _export(tmp_path / "export.csv", history(300))
    proc = _run("train", "--data", str(data), "--out", str(tmp_path / "all"), *TRAIN)
    assert proc.returncode == 0, proc.stderr
    assert f"training on 9 sensor(s) of {data}: " in proc.stderr
    assert "\npromise: expect about " in proc.stderr and "% of samples flagged on normal operation" in proc.stderr
    warned = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning: column")]
    assert [w.split("'")[1] for w in warned] == ["anomaly", "changepoint", "row_id"]
    assert "only 0 and 1" in warned[0] and "increasing whole numbers" in warned[2]
    proc = _run("train", "--data", str(data), "--out", str(tmp_path / "m"), "--exclude", "anomaly,changepoint",
                "--exclude", "row_*", *TRAIN)  # fmt: skip
    assert proc.returncode == 0 and "warning: column" not in proc.stderr, proc.stderr
    assert list(artefact.load(tmp_path / "m").sensors) == SENSORS
    scores = ["score", "--model", str(tmp_path / "m"), "--data", str(data), "--out", str(tmp_path / "s.csv")]
    _one_error_line(_run(*scores), "not in training anomaly, changepoint, row_id (--exclude them)")
    assert _run(*scores, "--sensors", "s*").returncode == 0
    assert len(_scores(tmp_path / "s.csv")) == 300
    _one_error_line(_run(*scores, "--exclude", "anomalyy"), "--exclude 'anomalyy' matches no column")


def _with_gaps(path: Path, x: np.ndarray, gaps: dict[int, tuple[int, str]]) -> Path:
    """``x`` as CSV with the cells ``gaps`` names (row -> (column, text)) left empty or written as n/a."""
    with open(path, "w") as f:
        f.write("timestamp," + ",".join(SENSORS) + "\n")
        for i, row in enumerate(x):
            cells = [repr(v) for v in row.tolist()]
            if i in gaps:
                cells[gaps[i][0]] = gaps[i][1]
            f.write(f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z," + ",".join(cells) + "\n")
    return path


def test_missing_values_fail_with_a_hint_by_default_and_are_dropped_or_held_when_asked(
    tiny_model: Path, tmp_path: Path
) -> None:
    x = history(300, seed=4)
    data = _with_gaps(tmp_path / "g.csv", x, {58: (2, ""), 100: (1, "n/a"), 101: (1, "n/a"), 102: (1, "NaN")})
    proc = _run("train", "--data", str(data), "--out", str(tmp_path / "m"), *TRAIN)
    _one_error_line(proc, "row 60, column 's2': missing value (--missing drop")
    for policy, note in (("drop", "4 row(s) dropped"), ("hold:2", "3 row(s) with a held value")):
        proc = _run("train", "--data", str(data), "--out", str(tmp_path / policy), "--missing", policy, *TRAIN)
        assert proc.returncode == 0 and note in proc.stderr, proc.stderr
    assert artefact.read_manifest(tmp_path / "drop")["training"]["rows"] == 296
    assert artefact.read_manifest(tmp_path / "hold:2")["training"]["rows"] == 299  # row 102: a third in a row
    out = tmp_path / "s.csv"
    proc = _run("score", "--model", str(tiny_model), "--data", str(data), "--out", str(out), "--missing", "hold:2")
    assert proc.returncode == 0, proc.stderr
    rows = _scores(out)
    assert len(rows) == 300 and rows[102]["score"] == "" and all(r["score"] for i, r in enumerate(rows) if i != 102)
    filled = x.copy()
    filled[58, 2], filled[100:102, 1] = filled[57, 2], filled[99, 1]
    ref = write_csv(tmp_path / "ref.csv", np.delete(filled, 102, axis=0))
    assert main(["score", "--model", str(tiny_model), "--data", str(ref), "--out", str(tmp_path / "r.csv")]) == 0
    held = [r["score"] for i, r in enumerate(rows) if i != 102]
    assert held == [r["score"] for r in _scores(tmp_path / "r.csv")]  # as if the held values had been there
    _one_error_line(_run("score", "--model", str(tiny_model), "--data", str(data), "--out", str(out),
                         "--missing", "hold:0"), "--missing 'hold:0'")  # fmt: skip


def test_score_says_when_rows_are_far_outside_the_training_range_and_names_the_sensors_that_moved(
    tiny_model: Path, tmp_path: Path
) -> None:
    """Rows 100-199 have s1 and s4 shifted 40 training sd: a closing line counts them and names both
    sensors, whose names lead top_sensors there; rows that are within range are not counted."""
    sd = artefact.load(tiny_model).scaler.scale
    x = history(200, seed=12)
    x[100:, 1] += 40 * sd[1]
    x[100:, 4] += 40 * sd[4]
    data = write_csv(tmp_path / "shift.csv", x)
    proc = _run("score", "--model", str(tiny_model), "--data", str(data), "--out", str(tmp_path / "s.csv"))
    assert proc.returncode == 0, proc.stderr
    [line] = [ln for ln in proc.stderr.splitlines() if "far outside the training range" in ln]
    assert line.startswith("100 of 200 scored row(s)") and "s1 up to " in line and "s4 up to " in line
    rows = _scores(tmp_path / "s.csv")
    assert all(set(r["top_sensors"].split(";")[:2]) == {"s1", "s4"} for r in rows[100:])
    assert "far outside" not in _run("score", "--model", str(tiny_model), "--data", str(write_csv(
        tmp_path / "ok.csv", history(200, seed=12))), "--out", str(tmp_path / "o.csv")).stderr  # fmt: skip


def test_score_lists_the_alarm_episodes_and_plots_them(tiny_model: Path, tmp_path: Path) -> None:
    x = history(400, seed=9)
    x[100:140, 2] += 4.0
    x[250:300, 3] -= 4.0
    data = write_csv(tmp_path / "f.csv", x)
    png = tmp_path / "s.png"
    proc = _run("score", "--model", str(tiny_model), "--data", str(data), "--out", str(tmp_path / "s.csv"),
                "--plot", str(png))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("scored 400 rows"))
    n = int(lines[head].split(": ")[-1].split()[0])
    episodes = lines[head + 1 : head + 1 + n]
    assert n >= 2 and all("peak" in e and "top:" in e for e in episodes)
    assert any(e.split()[0] >= "2026-01-01T00:01:40Z" and "s2" in e for e in episodes)
    assert any(e.split()[0] >= "2026-01-01T00:04:10Z" and "s3" in e for e in episodes)
    assert f"alarms against the promise: {n} episode(s) in 400 samples" in lines[head + 1 + n]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"plot written to {png}" in proc.stderr


def test_plot_without_matplotlib_says_how_to_install_it_before_scoring(monkeypatch: pytest.MonkeyPatch) -> None:
    from monitor.commands import score_report
    from monitor.errors import InputError

    monkeypatch.setattr(score_report.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError, match=r"pip install 'plantwatch\[plots\]'"):
        score_report.check_plot("x.png")
