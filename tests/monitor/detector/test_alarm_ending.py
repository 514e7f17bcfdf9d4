"""Alarms end (issue 12 item 1): after the process is back to normal within a bounded, documented time."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.detector import Detector
from monitor.detector.scoring import clear_within
from tests.monitor.detector.fixtures import detector, history, tiny_model  # noqa: F401

FAULT = slice(500, 700)


@pytest.mark.parametrize("size", [12.0, 1e5])
def test_an_alarm_clears_within_the_documented_time_after_the_fault_ends(detector: Detector, size: float) -> None:
    """However large the fault (a sensor 1e5 off used to hold the alarm for ~200 samples), the alarm clears
    within :func:`clear_within` samples of the last faulty row once the rows are normal again."""
    x = history(1500, seed=7)
    x[FAULT, 2] += size
    res = detector.score(detector.new_stream(), x)
    raised = [i for i, tr in res.transitions if tr.kind == "raised" and FAULT.start <= i < FAULT.stop]
    assert raised, "the fault raised no alarm"
    cleared = [i for i, tr in res.transitions if tr.kind == "cleared" and i > raised[0]]
    al = detector.settings.alarm
    bound = clear_within(detector.calib, detector.window, al.off_delay, al.deadband)
    assert bound < 80
    assert cleared and cleared[0] - (FAULT.stop - 1) <= bound, (cleared[:1], bound)


def test_an_accepted_new_operating_point_clears_the_alarm_and_later_faults_still_raise(detector: Detector) -> None:
    """The plant settles 3 sd off on one sensor: without acceptance the alarm never ends (the threshold cannot
    learn a state it flags); accepted, the alarm clears at once, and after the learned samples the score is
    normal again while a new fault on another sensor still raises."""
    x = history(2200, seed=8)
    x[400:, 2] += 3.0 * x[:400, 2].std()
    x[1800:, 4] += 12.0  # a real fault later, at the new operating point
    held = detector.score(detector.new_stream(), x)
    assert held.anomaly[700:1800].mean() > 0.9  # not accepted: in alarm all along

    st = detector.new_stream()
    before = detector.score(st, x[:800])
    assert before.anomaly[-1] == 1
    tr = detector.accept(st, rows=200)
    assert tr is not None and tr.kind == "cleared" and not st.alarm.active
    after = detector.score(st, x[800:])
    assert after.anomaly[:200].sum() == 0  # learning
    assert after.anomaly[200:1000].mean() < 0.05
    assert after.anomaly[1000 + detector.settings.alarm.on_delay + 20 :].mean() > 0.9  # the new fault


def test_a_stream_accepting_a_point_continues_the_same_after_a_checkpoint(detector: Detector) -> None:
    x = history(1200, seed=9)
    x[300:, 1] += 2.0
    whole = detector.new_stream()
    detector.score(whole, x[:400])
    detector.accept(whole, rows=150)
    detector.score(whole, x[400:470])
    a = detector.score(whole, x[470:])
    part = detector.new_stream()
    detector.score(part, x[:400])
    detector.accept(part, rows=150)
    detector.score(part, x[400:470])  # checkpoint in the middle of learning
    resumed = detector.restore_stream(part.to_state())
    b = detector.score(resumed, x[470:])
    np.testing.assert_array_equal(a.score, b.score)
    np.testing.assert_array_equal(a.anomaly, b.anomaly)
