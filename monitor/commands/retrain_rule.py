"""The rule ``plantwatch retrain`` promotes a challenger by: no worse on false alarms and on drill detection.

Kept apart from the command so the decision is a pure function of the
shadow comparison (:mod:`.model_compare`) and the rule, tested on its own,
and written into every report with the figures it was applied to.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .model_compare import Comparison


@dataclass(frozen=True)
class Rule:
    """When a challenger may replace the champion (every bound inclusive)."""

    #: challenger alarm episodes/day on the real assets <= ratio x the champion's + slack
    max_false_alarm_ratio: float = 1.0
    false_alarm_slack_per_day: float = 0.0
    #: challenger drill injections detected >= the champion's - slack
    drill_slack: int = 0
    #: fewer drill injections in the shadow window: not judged on drills but refused (0: drills optional)
    min_drills: int = 0
    #: fewer shadow rows than this: refused (too little evidence either way)
    min_rows: int = 1000

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        drills = f"; at least {self.min_drills} drill injection(s) in the window" if self.min_drills else ""
        return (
            f"promote when, over the same shadow rows (at least {self.min_rows}), the challenger's alarm episodes "
            f"per day on the real assets are <= {self.max_false_alarm_ratio:g} x the champion's + "
            f"{self.false_alarm_slack_per_day:g}, and it detects at least as many drill injections as the "
            f"champion{f' - {self.drill_slack}' if self.drill_slack else ''}{drills}"
        )


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: tuple[str, ...]  # one line per criterion, met or not

    def to_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "reasons": list(self.reasons)}


def decide(c: Comparison, rule: Rule) -> Decision:
    """Each criterion checked and said; the challenger is promoted only when all hold."""
    ch, cc = c.champion, c.challenger
    checks: list[tuple[bool, str]] = []
    checks.append((c.rows >= rule.min_rows, f"shadow rows: {c.rows} (need {rule.min_rows})"))
    bound = rule.max_false_alarm_ratio * ch.episodes_per_day + rule.false_alarm_slack_per_day
    checks.append(
        (
            cc.episodes_per_day <= bound + 1e-9,
            f"false alarms: challenger {cc.episodes_per_day:.2f} episodes/day vs champion "
            f"{ch.episodes_per_day:.2f} (bound {bound:.2f})",
        )
    )
    if c.drills < rule.min_drills:
        checks.append((False, f"drills: {c.drills} injection(s) in the window (need {rule.min_drills})"))
    elif c.drills == 0:
        checks.append((True, "drills: none in the window (not judged)"))
    else:
        checks.append(
            (
                cc.drills_detected >= ch.drills_detected - rule.drill_slack,
                f"drills: challenger detected {cc.drills_detected}/{c.drills}, champion "
                f"{ch.drills_detected}/{c.drills}",
            )
        )
    return Decision(all(ok for ok, _ in checks), tuple(("ok: " if ok else "NOT MET: ") + why for ok, why in checks))
