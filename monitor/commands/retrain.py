"""``plantwatch retrain``: one step of the retraining loop, run on a schedule (deploy/systemd/plantwatch-retrain.timer).

Each run looks at the store and does the next step, so a restart or a
missed run loses nothing:

1. no challenger of ours: train one on the recorded history (``plantwatch
   record``) minus the rows of maintenance windows (the config's
   ``[[maintenance]]`` and every operator window the monitor logged in
   ``<state_dir>/suppressions-*.history.jsonl``) and of confirmed faults,
   with false-alarm ranges kept as normal (``<state_dir>/feedback-*.jsonl``);
   it becomes the store's challenger, which the running monitor scores in
   shadow within a second;
2. shadowing for less than ``--shadow``: say how long is left;
3. then compare both on the rows they scored (:mod:`.model_compare`), apply
   the rule (:mod:`.retrain_rule`), promote or drop the challenger, and write
   the report (JSON and Markdown: data, figures, rule, decision).

The state between runs is ``<store>/retrain.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .. import config, history_options, labels
from ..detector import load_model, model_store, train_table
from ..errors import ConfigError, InputError, PlantwatchError
from ..maintenance import Window, parse_duration
from .model_compare import compare, describe, drill_injections, read_records
from .retrain_rule import Decision, Rule, decide
from .train import settings_from_args

STATE = "retrain.json"
BY = "plantwatch retrain"


def retrain_command(args: argparse.Namespace) -> int:
    store = Path(args.store)
    if not model_store.is_store(store) or model_store.pointer(store) is None:
        raise InputError(
            f"--store {store}: not a model store with a current version (start one with "
            f"'plantwatch train --data CSV --store {store}')"
        )
    state_dir = Path(args.state_dir)
    if not state_dir.is_dir():
        raise InputError(f"--state-dir {state_dir}: no such folder (the monitor's state_dir)")
    try:
        shadow_s = parse_duration(args.shadow)
    except ValueError as exc:
        raise InputError(f"--shadow: {exc}") from None
    rule = rule_from_args(args)
    ours = _read_state(store)
    challenger = model_store.pointer(store, model_store.CHALLENGER)
    now = time.time()
    if challenger is None:
        return _train_challenger(args, store, state_dir)
    if ours.get("version") != challenger:  # set by hand ('models shadow'): judged like ours, from now on
        _write_state(store, {"version": challenger, "started": now, "trained": None})
        print(f"{store}: challenger {challenger} was set by hand; judging it after {args.shadow} of shadow from now")
        return 0
    elapsed = now - float(ours["started"])
    if elapsed < shadow_s:
        at = datetime.fromtimestamp(float(ours["started"]) + shadow_s, UTC).strftime("%Y-%m-%d %H:%M UTC")
        print(
            f"{store}: challenger {challenger} in shadow for {elapsed / 3600:.2f} h of {args.shadow}; decided after {at}"
        )
        return 0
    return _judge(args, store, state_dir, challenger, ours, rule, elapsed)


def rule_from_args(args: argparse.Namespace) -> Rule:
    try:
        rule = Rule(
            max_false_alarm_ratio=args.max_false_alarm_ratio,
            false_alarm_slack_per_day=args.false_alarm_slack,
            drill_slack=args.drill_slack,
            min_drills=args.min_drills,
            min_rows=args.min_shadow_rows,
        )
    except (TypeError, ValueError) as exc:
        raise InputError(f"rule: {exc}") from None
    if (
        not (rule.max_false_alarm_ratio >= 0 and rule.false_alarm_slack_per_day >= 0)
        or min(rule.drill_slack, rule.min_drills, rule.min_rows) < 0
    ):
        raise InputError("rule: ratios, slacks and minimums must be >= 0")
    return rule


# ---------------------------------------------------------------- step 1: train a challenger


def _train_challenger(args: argparse.Namespace, store: Path, state_dir: Path) -> int:
    ts = settings_from_args(args)
    table, _gaps = history_options.read_table(args.data, args)
    asset = args.asset or Path(args.data).stem
    said = [f"history: {len(table)} row(s) of {args.data} (asset {asset})"]
    t = labels.row_times(table, "--data")
    windows = suppressed_windows(state_dir, args.config, asset, float(t.min()), float(t.max()))
    drop = np.zeros(len(t), dtype=bool)
    for w in windows:
        drop |= (t >= w.start) & (t < w.end)
    said.append(f"maintenance: {int(drop.sum())} row(s) in {len(windows)} window(s) left out")
    table = labels.drop_rows(table, drop)
    with tempfile.TemporaryDirectory() as tmp:
        feedback = _merged_feedback(state_dir, Path(tmp))
        if feedback is not None:
            table, lines = labels.apply(table, str(feedback), asset)
            said.extend(lines)
        else:
            said.append(f"feedback: no {state_dir}/feedback-*.jsonl")
    for line in said:
        print(line, file=sys.stderr)
    with model_store.locked(store):
        version = model_store.next_version(store)
        det = train_table(table, ts, store / version)
        model_store.set_pointer(store, model_store.CHALLENGER, version)
        _write_state(store, {"version": version, "started": time.time(), "trained": {"rows": len(table), "said": said}})
    print(
        f"{store}: trained {version} on {len(table)} row(s) (threshold {det.calib.threshold:.3f}); it is the challenger, "
        f"scored in shadow by the monitor; the next run after {args.shadow} decides"
    )
    return 0


def suppressed_windows(state_dir: Path, config_path: str | None, asset: str, t0: float, t1: float) -> list[Window]:
    """Every maintenance window over [t0, t1] that covers ``asset``: operators' (logged by the monitor) and the
    config's scheduled ones."""
    out: list[Window] = []
    for path in sorted(state_dir.glob("suppressions-*.history.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                d = json.loads(line)
                w = Window(tuple(str(p) for p in d["patterns"]), float(d["start"]), float(d["end"]), str(d["reason"]))
            except (ValueError, KeyError, TypeError):
                continue
            if w.covers(asset) and w.start < t1 and w.end > t0:
                out.append(w)
    if config_path:
        try:
            cfg = config.parse(config.read_file(config_path))
        except ConfigError as exc:
            raise InputError(f"--config {config_path}: {exc}") from None
        out.extend(w for s in cfg.schedules() for w in s.occurrences(t0, t1) if w.covers(asset))
    return out


def _merged_feedback(state_dir: Path, tmp: Path) -> Path | None:
    files = sorted(state_dir.glob("feedback-*.jsonl"))
    if not files:
        return None
    merged = tmp / "feedback.jsonl"
    merged.write_text("".join(f.read_text(encoding="utf-8").rstrip("\n") + "\n" for f in files), encoding="utf-8")
    return merged


# ---------------------------------------------------------------- step 3: judge it


def _judge(
    args: argparse.Namespace,
    store: Path,
    state_dir: Path,
    challenger: str,
    ours: dict[str, Any],
    rule: Rule,
    elapsed: float,
) -> int:
    champion = model_store.pointer(store) or "-"
    records, _files = read_records(state_dir)
    c = compare(records, store.resolve().name, elapsed, challenger, drill_injections(args.drill_report or []))
    if c is None:
        decision = Decision(False, (f"NOT MET: no shadow results of {challenger} in {state_dir}/shadow-*.jsonl",))
    else:
        decision = decide(c, rule)
    promote = decision.promote
    with model_store.locked(store):
        if promote:
            try:
                load_model(store / challenger)
            except PlantwatchError as exc:
                promote = False
                decision = Decision(False, (*decision.reasons, f"NOT MET: {challenger} no longer loads: {exc}"))
        if promote:
            model_store.switch(store, challenger, "promote", BY, "retrain rule met: " + "; ".join(decision.reasons))
        else:
            model_store.set_pointer(store, model_store.CHALLENGER, None)
        os.unlink(store / STATE)
    report = {
        "store": str(store),
        "champion": champion,
        "challenger": challenger,
        "shadow_seconds": round(elapsed, 1),
        "trained": ours.get("trained"),
        "comparison": c.to_dict() if c is not None else None,
        "rule": {**rule.to_dict(), "text": rule.describe()},
        "decision": {**decision.to_dict(), "promoted": promote},
        "at": time.time(),
    }
    where = _write_report(Path(args.report) if args.report else store / "reports", challenger, report, c)
    verdict = (
        f"promoted {challenger} (was {champion})" if promote else f"kept {champion}; dropped challenger {challenger}"
    )
    print(f"{store}: {verdict}; report {where}")
    for line in decision.reasons:
        print(f"  {line}")
    return 0


def _write_report(folder: Path, version: str, report: dict[str, Any], c: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"retrain-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{version}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1, sort_keys=True, default=_finite))
    lines = [
        f"# Retrain {report['store']}: challenger {version} vs champion {report['champion']}",
        "",
        f"Decision: **{'promoted' if report['decision']['promoted'] else 'not promoted'}**",
        "",
        *[f"- {r}" for r in report["decision"]["reasons"]],
        "",
        f"Rule: {report['rule']['text']}",
        "",
        "```",
        *(describe(c) if c is not None else ["no shadow results"]),
        "```",
        "",
        "Training data:",
        "",
        *[f"- {s}" for s in (report["trained"] or {}).get("said", ["(challenger set by hand)"])],
        "",
    ]
    stem.with_suffix(".md").write_text("\n".join(lines))
    return stem.with_suffix(".json")


def _finite(v: object) -> object:
    return None if isinstance(v, float) and not math.isfinite(v) else str(v)


def _read_state(store: Path) -> dict[str, Any]:
    try:
        doc = json.loads((store / STATE).read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _write_state(store: Path, doc: dict[str, Any]) -> None:
    tmp = store / f".{STATE}.tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, store / STATE)
