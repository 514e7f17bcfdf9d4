"""``plantwatch simulate``: check the argument combination, then publish, write history or replay.

SIGINT/SIGTERM only ask the publisher to stop (it drains and disconnects);
a second SIGINT/SIGTERM gives up at once.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any

from monitor import broker_login, logs, outputs, wire
from monitor.errors import InputError
from monitor.signals import stop_on_signals

from .faults import FaultTarget, Injection, bind_faults, parse_fault
from .process import MAX_SENSORS, MIN_SENSORS, AssetProcess, make_assets

log = logs.get("simulator")


def simulate_command(args: argparse.Namespace) -> int:
    """Entry point of ``plantwatch simulate``; InputError for a bad combination of options."""
    if not args.replay:
        args.sensors = _sensor_count(args.sensors)
    _check_common(args)
    if args.to_csv:
        return _to_csv(args)
    if not args.broker:
        raise InputError(
            "nothing to do: give --broker URL to publish (or --replay a CSV to it), "
            "or --to-csv FILE --samples N to write history"
        )
    _refuse(args, "--samples", args.samples is not None, "only applies to --to-csv")
    sparkplug_only = ("--group-id", args.group_id != "plantwatch"), ("--edge-node", args.edge_node != "plantwatch-sim")
    for option, given in (*sparkplug_only, ("--deadband", args.deadband != 0.0)):
        _refuse(args, option, given and args.format != "sparkplug", "only applies to --format sparkplug")
    _refuse(args, "--start-time", args.start_time is not None, "only applies to --to-csv")
    _refuse(
        args, "--asset-index", args.asset_index != 1, "only applies to --to-csv (use --assets N to publish several)"
    )
    if args.replay:
        return _replay(args)
    _refuse(args, "--asset", args.asset is not None, "only applies to --replay (name of the replayed asset)")
    _refuse(args, "--loop", args.loop, "only applies to --replay")
    _refuse(args, "--exclude", args.exclude is not None, "only applies to --replay (columns not to publish)")
    _refuse(args, "--missing", args.missing != "fail", "only applies to --replay (gaps in the file)")
    assets = make_assets(args.assets, args.seed, args.sensors)
    return _publish(args, list(assets), assets)


def _sensor_count(values: list[str] | None) -> int | None:
    """``--sensors K`` when simulating (patterns are for --replay)."""
    if not values:
        return None
    if len(values) > 1 or not values[0].strip().isdigit():
        raise InputError(
            f"--sensors {','.join(values)!r}: a number of sensors per asset ({MIN_SENSORS}-{MAX_SENSORS}); "
            "column patterns only apply to --replay"
        )
    return int(values[0])


def _check_common(args: argparse.Namespace) -> None:
    if not (math.isfinite(args.rate) and args.rate > 0):
        raise InputError(f"--rate must be > 0 samples per second, got {args.rate:g}")
    if not args.replay and args.sensors is not None and not MIN_SENSORS <= args.sensors <= MAX_SENSORS:
        raise InputError(f"--sensors must be {MIN_SENSORS}-{MAX_SENSORS}, got {args.sensors}")
    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    if args.assets < 1:
        raise InputError(f"--assets must be >= 1, got {args.assets}")
    if args.duration is not None and not (math.isfinite(args.duration) and args.duration > 0):
        raise InputError(f"--duration must be > 0 seconds, got {args.duration:g}")
    try:
        wire.telemetry_topic(args.prefix, "x")
    except ValueError as exc:
        raise InputError(f"--prefix: {exc}") from None


def _refuse(args: argparse.Namespace, option: str, given: bool, why: str) -> None:
    if given:
        raise InputError(f"{option} {why}")


def _to_csv(args: argparse.Namespace) -> int:
    from .history import DEFAULT_START_TIME, truth_path, write_history

    for option, given in (
        ("--broker", args.broker),
        ("--replay", args.replay),
        ("--duration", args.duration is not None),
        ("--loop", args.loop),
        ("--asset", args.asset is not None),
        ("--exclude", args.exclude is not None),
        ("--missing", args.missing != "fail"),
        *((f, True) for f in broker_login.given(args)),
    ):
        _refuse(args, option, bool(given), "does not apply to --to-csv (it writes a file and publishes nothing)")
    if args.samples is None:
        raise InputError("--to-csv needs --samples N (how many rows to write)")
    outputs.check_file(args.to_csv, "--to-csv")
    if args.samples < 1:
        raise InputError(f"--samples must be >= 1, got {args.samples}")
    if args.asset_index < 1:
        raise InputError(f"--asset-index must be >= 1, got {args.asset_index}")
    start = DEFAULT_START_TIME if args.start_time is None else args.start_time
    if not (math.isfinite(start) and start >= 0):
        raise InputError(f"--start-time must be a unix time >= 0, got {start:g}")
    process = AssetProcess(args.seed, args.asset_index, args.sensors)
    injections = _injections(args.fault, [process], args.seed, args.gan)
    late = [inj.injection_id for inj in injections if inj.start >= args.samples]
    if late:
        raise InputError(f"fault {late[0]} starts after the last of the {args.samples} rows")
    truths = write_history(args.to_csv, process, args.samples, rate=args.rate, start_time=start, injections=injections)
    if truths:
        log.info("truth_written", path=str(truth_path(args.to_csv)), faults=len(truths))
    return 0


def _replay(args: argparse.Namespace) -> int:
    from .replay import load_replay

    source = load_replay(args.replay, args.asset, args.loop, args)
    return _publish(args, [source], [source])


def _injections(specs: Sequence[str], sources: Sequence[Any], seed: int, gan: str | None = None) -> list[Injection]:
    parsed = [parse_fault(text) for text in specs]
    wants_gan = any(p.gan_class is not None for p in parsed)
    if gan is not None and not wants_gan:
        raise InputError("--gan only applies to gan:<class> faults, e.g. --fault 'gan:4@100+200'")
    patterns = None
    if wants_gan and gan is not None:
        from .gan.inject import load_patterns  # torch only when a GAN pattern is wanted

        patterns = load_patterns(gan)
    return bind_faults(parsed, [FaultTarget.of(s) for s in sources], seed, patterns) if parsed else []


def sparkplug_settings(args: argparse.Namespace) -> Any:
    """The Sparkplug edge node of ``--format sparkplug`` (None for JSON); InputError for a bad id."""
    if getattr(args, "format", "json") != "sparkplug":
        return None
    from .sparkplug_edge import SparkplugSettings

    s = SparkplugSettings(args.group_id, args.edge_node, args.deadband)
    try:
        s.check([])
    except ValueError as exc:
        raise InputError(f"--group-id/--edge-node/--deadband: {exc}") from None
    return s


def _publish(args: argparse.Namespace, sources: list[Any], targets: Sequence[Any]) -> int:
    from .publish import Publisher

    publisher = Publisher(
        broker_login.settings({}, args),
        sources,
        rate=args.rate,
        prefix=args.prefix,
        qos=args.qos,
        injections=_injections(args.fault, targets, args.seed, args.gan),
        duration=args.duration,
        sparkplug=sparkplug_settings(args),
    )
    with stop_on_signals(publisher.request_stop):
        publisher.run()
    return 0
