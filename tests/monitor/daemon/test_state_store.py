"""The state directory's files: atomic replacement, the newer sequence file on top, bad files set aside."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from monitor import config
from monitor.daemon.state_store import StateStore
from monitor.errors import ConfigError


def test_the_sequence_file_written_after_the_streams_wins_and_streams_are_kept(tmp_path: Path) -> None:
    store = StateStore.open(str(tmp_path / "state"), "a")
    assert store is not None
    stream = {"rows": 3, "history": np.zeros((2, 2), np.float32)}
    store.write_streams({"boiler": {"seq": {"last": 5}, "scored": 6, "model": "m1", "stream": stream}})
    store.write_seq({"boiler": {"seq": {"last": 9}, "scored": 10}, "pump": {"seq": {"last": 1}, "scored": 2}})
    again = StateStore(tmp_path / "state", "a").load()
    assert again["boiler"]["seq"] == {"last": 9} and again["boiler"]["scored"] == 10
    assert again["boiler"]["model"] == "m1" and again["boiler"]["stream"]["history"] == [[0.0, 0.0], [0.0, 0.0]]
    assert again["pump"]["seq"] == {"last": 1} and "stream" not in again["pump"]
    assert not list((tmp_path / "state").glob("*.tmp"))


def test_an_unreadable_file_is_set_aside_and_logged(tmp_path: Path) -> None:
    (tmp_path / "seq-a.json").write_text('{"format": 1, "assets": {"boiler"')  # cut off
    with capture_logs() as logs:
        assert StateStore(tmp_path, "a").load() == {}
    assert (tmp_path / "seq-a.json.bad").exists() and not (tmp_path / "seq-a.json").exists()
    assert [e["event"] for e in logs] == ["state_unreadable"]


def test_a_folder_that_cannot_be_written_is_a_config_error_and_none_is_no_store(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="state_dir: cannot write to"):
        StateStore.open(str(tmp_path / "file" / "state"), "a")
    assert StateStore.open(None, "a") is None


def test_the_folder_defaults_to_systemds_state_directory() -> None:
    cfg = config.parse({"models": {"default": "m"}})
    assert cfg.state_folder({}) is None
    assert cfg.state_folder({"STATE_DIRECTORY": "/var/lib/plantwatch:/x"}) == "/var/lib/plantwatch"
    cfg = config.parse({"models": {"default": "m"}, "state_dir": "/srv/pw"})
    assert cfg.state_folder({"STATE_DIRECTORY": "/var/lib/plantwatch"}) == "/srv/pw"
