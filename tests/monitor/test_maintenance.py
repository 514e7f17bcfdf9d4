"""Maintenance windows as the config spells them: time zones (daylight saving too), weekly days, overlaps, errors."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime

import pytest

from monitor import config
from monitor.maintenance import Schedule, parse_duration


def ts(text: str) -> float:
    return datetime.fromisoformat(text).astimezone(UTC).timestamp()


def test_a_weekly_window_follows_the_plants_clock_across_daylight_saving() -> None:
    s = Schedule.weekly(("boiler*",), "cleaning", "Sat 22:00", "4h", "Europe/Berlin")
    winter = s.occurrences(ts("2026-01-05T00:00+00:00"), ts("2026-01-12T00:00+00:00"))
    summer = s.occurrences(ts("2026-07-06T00:00+00:00"), ts("2026-07-13T00:00+00:00"))
    assert [w.start for w in winter] == [ts("2026-01-10T21:00+00:00")]
    assert [w.start for w in summer] == [ts("2026-07-11T20:00+00:00")]
    assert winter[0].end - winter[0].start == 4 * 3600 and winter[0].covers("boiler-2")
    days = Schedule.weekly(("p",), "r", "Fri-Mon 06:30", "1h", "UTC").occurrences(
        ts("2026-01-05T00:00+00:00"), ts("2026-01-12T00:00+00:00")
    )
    assert [datetime.fromtimestamp(w.start, UTC).strftime("%a %H:%M") for w in days] == [
        "Mon 06:30",
        "Fri 06:30",
        "Sat 06:30",
        "Sun 06:30",
    ]


def test_durations() -> None:
    assert parse_duration("90s") == 90 and parse_duration("1d") == 86400 and parse_duration("1h30m") == 5400
    for bad in ("", "2", "2x", "h", "0m", "-1h"):
        with pytest.raises(ValueError, match=r"90s, 15m, 2h|more than 0"):
            parse_duration(bad)


def problems(text: str) -> list[str]:
    return config.check(tomllib.loads(text + '\n[models]\ndefault = "m/"\n'))[1]


def test_the_config_names_every_bad_window_by_its_index() -> None:
    found = problems(
        """
[[maintenance]]
assets = ["boiler*"]
reason = "inspection"
weekly = "Sat 22:00"
duration = "4h"
timezone = "Europe/Berlin"
[[maintenance]]
assets = ["boiler-1"]
reason = "valve"
start = 2026-12-26T23:00:00
end = 2026-12-27T01:00:00
timezone = "Europe/Berlin"
[[maintenance]]
assets = []
reason = ""
weekly = "Sat 22:00"
[[maintenance]]
assets = ["a"]
reason = "r"
start = 2026-12-26T23:00:00
end = 2026-12-25T01:00:00
[[maintenance]]
assets = ["a"]
reason = "r"
weekly = "Caturday 2:00"
duration = "1h"
timezone = "Mars/Olympus"
"""
    )
    assert found == [
        "maintenance[4].timezone: must be an IANA time zone such as Europe/Berlin, got 'Mars/Olympus'",
        "maintenance[2].assets: name the assets, e.g. assets = ['boiler*']",
        "maintenance[2].reason: say why (it is logged and shown on the alarm topic)",
        "maintenance[2].duration: a weekly window needs both",
        "maintenance[3]: end 2026-12-25T01:00:00 is not after start 2026-12-26T23:00:00",
        "maintenance[4]: weekly day 'caturday': use Mon..Sun, a list (Mon,Thu), a range (Mon-Fri) or daily",
        "maintenance[1]: overlaps maintenance[0] for assets both name (2026-12-26T23:00:00+01:00 to "
        "2026-12-27T01:00:00+01:00 (Europe/Berlin) and Sat 22:00 for 4h (Europe/Berlin)); merge them or narrow "
        "the assets",
    ]


def test_windows_for_other_assets_or_other_hours_do_not_overlap() -> None:
    assert (
        problems(
            """
timezone = "America/New_York"
[[maintenance]]
assets = ["boiler*"]
reason = "a"
weekly = "Sat 22:00"
duration = "4h"
[[maintenance]]
assets = ["pump*"]
reason = "b"
weekly = "Sat 22:00"
duration = "4h"
[[maintenance]]
assets = ["boiler-1"]
reason = "c"
weekly = "Sun 02:00"
duration = "1h"
"""
        )
        == []
    )
    cfg = config.parse(tomllib.loads('[models]\ndefault = "m/"\n[[maintenance]]\nassets = ["b"]\nreason = "r"\n'
                                     'start = 2027-01-01T00:00:00\nend = 2027-01-01T01:00:00\n'))  # fmt: skip
    assert cfg.schedules()[0].occurrences(0, 2e9)[0].start == ts("2027-01-01T00:00+00:00")
