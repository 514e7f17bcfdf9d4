"""Sparkplug messages through the real worker, one batch at a time: births and deaths cut it into segments."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from monitor import config
from monitor.daemon import BatchQueue, State, load_models
from monitor.daemon.worker import Worker
from monitor.sparkplug import payload as spb
from monitor.sparkplug import topics
from tests.monitor.conftest import SENSORS, history

ROWS = history(400, seed=7)[300:400]
D = spb.DataType


class Edge:
    """Messages of edge node 'gw' (group 'g') with device 'd1', as worker items."""

    def __init__(self) -> None:
        self.seq, self.t = 0, 1_000_000

    def item(self, kind: str, raw: bytes) -> Any:
        device = None if kind.startswith("N") else "d1"
        self.t += 100
        return (topics.message_topic(kind, "g", "gw", device), raw, time.time(), 0, 0, 0, False)  # received now

    def next(self) -> int:
        seq, self.seq = self.seq, (self.seq + 1) % 256
        return seq

    def births(self, row: np.ndarray) -> list[Any]:
        self.seq = 0
        metrics = [(s, i + 1, D.Double, float(v)) for i, (s, v) in enumerate(zip(SENSORS, row))]
        return [
            self.item("NBIRTH", spb.birth_payload(self.t, self.next(), [], bd_seq=1)),
            self.item("DBIRTH", spb.birth_payload(self.t, self.next(), metrics)),
        ]

    def data(self, row: np.ndarray) -> Any:
        return self.item("DDATA", spb.data_payload(self.t, self.next(), [(i + 1, float(v)) for i, v in enumerate(row)]))


def worker(model_dir: Path, **extra: Any) -> tuple[Worker, State, list[tuple[str, bytes]]]:
    source = {"format": "sparkplug", "group_ids": ["g"], **extra.pop("source", {})}
    cfg = config.parse({"models": {"default": str(model_dir)}, "source": source, **extra})
    state = State()
    published: list[tuple[str, bytes]] = []
    w = Worker(cfg, load_models(cfg), BatchQueue(10), state, lambda items: None, lambda t, p: published.append((t, p)))
    return w, state, published


def test_a_death_and_a_rebirth_inside_one_batch_score_each_row_with_the_stream_it_belongs_to(model_dir: Path) -> None:
    w, state, published = worker(model_dir)
    e = Edge()
    batch = [*e.births(ROWS[0]), *(e.data(r) for r in ROWS[1:6])]
    batch.append(e.item("NDEATH", spb.death_payload(e.t, bd_seq=1)))
    batch += [*e.births(ROWS[10]), e.data(ROWS[11])]
    w._process(batch)
    a = state.assets["gw/d1"]
    assert a.messages == 6 + 2 and a.online and a.warming_up  # 2 rows after the rebirth < the window of 4
    states = [json.loads(p)["state"] for t, p in published if t == "plant/gw/d1/alarm"]
    assert states == ["offline", "online"]
    assert sum(state.rejected.values()) == 0
    w._process([e.data(r) for r in ROWS[12:20]])
    assert state.assets["gw/d1"].messages == 16 and not state.assets["gw/d1"].warming_up


def test_a_bad_message_in_a_batch_is_counted_and_the_others_are_scored(model_dir: Path) -> None:
    w, state, _ = worker(model_dir)
    e = Edge()
    batch = [*e.births(ROWS[0]), e.data(ROWS[1]), e.item("DDATA", b"\xff\xff"), e.data(ROWS[2])]
    batch.insert(3, e.item("DDATA", spb.data_payload(e.t, e.seq - 1, [(1, 1.0)])))  # the previous seq again
    w._process(batch)
    assert state.assets["gw/d1"].messages == 3
    assert state.rejected["undecodable"] == 1 and state.rejected["duplicate"] == 1


def test_the_missing_policy_holds_a_sensor_that_went_stale(model_dir: Path) -> None:
    """[missing] hold: a stale sensor is NaN in the Sparkplug row and the worker holds its last value."""
    w, state, _ = worker(model_dir, source={"stale_after": 0.5}, missing={"policy": "hold"})
    e = Edge()
    batch = e.births(ROWS[0])
    for r in ROWS[1:6]:  # T1 (alias 1) is never reported again: stale after 0.5 s of payload time
        e.t += 200
        batch.append(
            e.item("DDATA", spb.data_payload(e.t, e.next(), [(i + 1, float(v)) for i, v in enumerate(r) if i]))
        )
    w._process(batch)
    a = state.assets["gw/d1"]
    assert a.messages == 6 and a.missing_filled >= 1
    assert state.rejected["stale_metric"] == 0
