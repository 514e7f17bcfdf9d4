"""``plantwatch suppress`` / ``unsuppress`` / ``accept`` / ``feedback``: an operator's maintenance window or label, sent to the monitors.

The request goes to ``<prefix>/_monitor/control/<user>`` (the broker login,
which the shipped ACL lets write only its own topic, so the monitors know who
asked); every monitor answers on ``<prefix>/_monitor/<instance>/reply/<user>``
and this command prints each answer. Exit 0 when a monitor applied it, 2 when
the request is refused (here, or by every monitor that answered: unknown
asset pattern, window already passed, overlapping one), 3 when no monitor
answered (not running, another prefix, or the ACL dropped the request).
"""

from __future__ import annotations

import argparse
import getpass
import threading
import time
import uuid
from datetime import UTC, datetime

from .. import broker_login, mqtt, wire
from ..errors import BrokerError, InputError
from ..maintenance import parse_duration

#: after the first answer, how long to wait for the other monitors (shards) to answer too
_MORE_ANSWERS_S = 1.0


def suppress_command(args: argparse.Namespace) -> int:
    if not args.reason.strip():
        raise InputError("--reason: say why (it is logged and shown on the alarm topic)")
    now = time.time()
    if args.until is not None:
        until = _parse_until(args.until)
        if until <= now:
            raise InputError(f"--until {args.until}: that time has passed")
    else:
        try:
            until = now + parse_duration(args.for_)
        except ValueError as exc:
            raise InputError(f"--for: {exc}") from None
    return _send(args, "suppress", until)


def unsuppress_command(args: argparse.Namespace) -> int:
    return _send(args, "unsuppress", None)


def list_command(args: argparse.Namespace) -> int:
    return _send(args, "list", None)


def accept_command(args: argparse.Namespace) -> int:
    if not args.reason.strip():
        raise InputError("--reason: say why this operating point is normal (it is logged and shown on the alarm topic)")
    return _send(args, "accept", None)


def feedback_command(args: argparse.Namespace) -> int:
    if any(c in args.asset for c in "*?["):
        raise InputError(f"--asset {args.asset!r}: feedback names one asset, not a pattern")
    return _send(args, "feedback", None)


def _parse_until(text: str) -> float:
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"--until {text!r}: write an ISO 8601 time, e.g. 2026-12-05T14:00+01:00") from None
    return (t if t.tzinfo is not None else t.astimezone()).astimezone(UTC).timestamp()


def _send(args: argparse.Namespace, action: str, until: float | None) -> int:
    pattern = args.asset.strip()
    if not pattern or len(pattern) > wire.MAX_NAME_LENGTH:
        raise InputError(f"--asset {args.asset!r}: an asset name or pattern (boiler*), 1-{wire.MAX_NAME_LENGTH} chars")
    settings = broker_login.settings({}, args)
    user = settings.username or "anonymous"
    try:
        request_topic, replies = wire.control_topic(args.prefix, user), wire.reply_filter(args.prefix, user)
    except ValueError as exc:
        raise InputError(f"--prefix/--username: {exc}") from None
    req = wire.ControlRequest(
        id=uuid.uuid4().hex,
        action=action,
        asset=pattern,
        reason=(args.note if action == "feedback" else getattr(args, "reason", "")) or "",
        by=args.by or _login(),
        until=until,
        episode=getattr(args, "episode", "") or "",
        label=getattr(args, "label", "") or "",
        sent=time.time(),
    )
    answers = _ask(settings, request_topic, replies, req, args.timeout)
    if not answers:
        raise BrokerError(
            f"no monitor answered within {args.timeout:g}s on {replies}: is one running with prefix "
            f"'{args.prefix}', and may '{user}' write {request_topic} (deploy/mosquitto/plantwatch.acl)? "
            "A monitor that comes back within 5 minutes still applies it"
        )
    for a in answers:
        if action == "list":
            print("\n".join(f"{a.instance}: {line}" for line in a.message.splitlines()))
            continue
        print(f"{a.instance}: {'ok' if a.ok else 'refused (' + a.reason + ')'}: {a.message}")
    return 0 if any(a.ok for a in answers) else 2


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def _ask(
    settings: mqtt.BrokerSettings, topic: str, replies: str, req: wire.ControlRequest, timeout: float
) -> list[wire.ControlReply]:
    """Publish ``req`` once subscribed to the replies; collect the answers to it."""
    got: list[wire.ControlReply] = []
    subscribed, first = threading.Event(), threading.Event()
    client = mqtt.make_client(settings)

    def on_connect(c: object, userdata: object, flags: object, reason: object, props: object) -> None:
        if not getattr(reason, "is_failure", False):
            client.subscribe(replies, qos=1)

    def on_message(c: object, userdata: object, msg: object) -> None:
        reply = wire.decode_reply(getattr(msg, "payload", b""))
        if isinstance(reply, wire.ControlReply) and reply.id == req.id:
            got.append(reply)
            first.set()

    client.on_connect = on_connect
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_message = on_message
    mqtt.connect(client, settings, timeout=min(timeout, 10.0))
    client.loop_start()
    try:
        if not subscribed.wait(timeout):
            raise BrokerError(f"the broker at {settings.url} did not confirm the subscription to {replies}")
        client.publish(topic, req.encode(), qos=1).wait_for_publish(timeout)
        if first.wait(timeout):
            time.sleep(_MORE_ANSWERS_S)
    finally:
        client.disconnect()
        client.loop_stop()
    return list(got)
