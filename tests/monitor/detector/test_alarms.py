"""Alarm hysteresis: on-delay, off-delay, deadband, and the episode it reports."""

from __future__ import annotations

from monitor.detector.alarms import AlarmLogic


def _run(logic: AlarmLogic, scores: list[float], thr: float = 1.0) -> list[int]:
    states = []
    for i, s in enumerate(scores):
        logic.step(float(i), s, thr, ("a", "b"))
        states.append(int(logic.active))
    return states


def test_on_delay_ignores_short_spikes() -> None:
    """Two samples above the threshold do not raise an alarm with an on-delay of three."""
    assert _run(AlarmLogic(on_delay=3, off_delay=2), [2, 2, 0, 2, 2, 0]) == [0] * 6


def test_raise_after_on_delay_and_episode_starts_at_the_first_hot_sample() -> None:
    """The alarm is raised on the third hot sample; the episode starts at the first."""
    logic = AlarmLogic(on_delay=3, off_delay=2)
    events = [logic.step(float(i), s, 1.0, ("x",)) for i, s in enumerate([0, 2, 3, 2.5])]
    raised = events[3]
    assert raised is not None and raised.kind == "raised"
    assert raised.episode.start == 1.0 and raised.episode.raised == 3.0 and raised.episode.peak == 3.0


def test_deadband_and_off_delay_prevent_chatter() -> None:
    """A score hovering just under the threshold (inside the deadband) keeps the alarm on."""
    states = _run(AlarmLogic(on_delay=1, off_delay=2, deadband=0.9), [2, 0.95, 0.95, 0.95, 0.5, 0.5, 0.5])
    assert states == [1, 1, 1, 1, 1, 0, 0]


def test_clear_reports_end_and_peak() -> None:
    """Clearing returns the finished episode with its end time and peak."""
    logic = AlarmLogic(on_delay=1, off_delay=1)
    logic.step(0.0, 5.0, 1.0, ("a",))
    logic.step(1.0, 7.0, 1.0, ("b",))
    cleared = logic.step(2.0, 0.1, 1.0, None)
    assert cleared is not None and cleared.kind == "cleared"
    assert cleared.episode.end == 2.0 and cleared.episode.peak == 7.0 and cleared.episode.top_sensors == ("b",)
