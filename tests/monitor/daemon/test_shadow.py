"""Shadow records: what each model flagged on the same rows, written per asset, read back by 'models compare'."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from monitor.commands.model_compare import compare, read_records
from monitor.daemon.shadow import ShadowLog


def test_lines_join_into_episodes_and_drills_count_apart(tmp_path: Path) -> None:
    log = ShadowLog(tmp_path, "a", every=60)
    ts = np.arange(0.0, 10.0)
    champ = np.array([0, 0, 1, 1, 1, 0, 0, 0, 1, 1], dtype=np.uint8)  # one episode, one still open
    chall = np.zeros(10, dtype=np.uint8)
    log.add("boiler", "boiler", ("v1", "v2"), ts, champ, chall)
    log.flush()  # the open span is cut at t=9 and continued in the next line
    log.add("boiler", "boiler", ("v1", "v2"), ts + 10, np.array([1, 1] + [0] * 8, dtype=np.uint8), chall)
    drill = np.array([0] * 5 + [1] * 5, dtype=np.uint8)
    log.add("boiler-drill", "boiler", ("v1", "v2"), ts + 10, drill, drill)
    log.add("pump", "pump", ("v7", "v8"), ts, chall, champ)
    log.flush()
    records, files = read_records(tmp_path)
    assert files == [str(tmp_path / "shadow-a.jsonl")] and len(records) == 4
    assert records[0]["spans"] == {"champion": [[2.0, 5.0], [8.0, 9.0]], "challenger": []}
    with (tmp_path / "shadow-a.jsonl").open("a") as f:
        f.write('{"cut by a cra')  # a torn last line is skipped

    c = compare(read_records(tmp_path)[0], "boiler", 3600, injections=[("boiler-drill", 14.0, 16.0), ("x", 1, 2)])
    assert c is not None and (c.champion.version, c.challenger.version) == ("v1", "v2")
    assert c.rows == 30 and c.assets == ["boiler", "boiler-drill"] and c.drills == 1
    assert c.champion.episodes == 2 and c.challenger.episodes == 0  # [2,5) and [8,12) joined across lines
    assert c.champion.alarm_seconds == 3.0 + 4.0
    assert c.champion.alone_rows == 7 and c.challenger.alone_rows == 0  # the drill copy's rows left out
    assert c.champion.drills_detected == c.challenger.drills_detected == 1
    assert abs(c.champion.episodes_per_day - 2 / (19 / 86400)) < 1e-6
    assert compare(records, "boiler", 3600, challenger="v9") is None
    assert json.dumps(c.to_dict())
