"""Every Sparkplug B topic plantwatch reads or writes, spelt here and nowhere else.

Sparkplug 3.0 (chapter 4) fixes the namespace::

    spBv1.0/<group_id>/<NBIRTH|NDATA|NDEATH|NCMD>/<edge_node_id>
    spBv1.0/<group_id>/<DBIRTH|DDATA|DDEATH|DCMD>/<edge_node_id>/<device_id>
    spBv1.0/STATE/<host_id>

>>> parse("spBv1.0/plant1/DDATA/gw7/boiler")
SparkplugTopic(group_id='plant1', kind='DDATA', edge_node_id='gw7', device_id='boiler')
>>> parse("spBv1.0/plant1/DDATA/gw7").reason
'bad_topic'
>>> message_topic("NCMD", "plant1", "gw7")
'spBv1.0/plant1/NCMD/gw7'
"""

from __future__ import annotations

from typing import NamedTuple

from ..wire import Rejection, valid_name

NAMESPACE = "spBv1.0"
NODE_KINDS = ("NBIRTH", "NDATA", "NDEATH", "NCMD")
DEVICE_KINDS = ("DBIRTH", "DDATA", "DDEATH", "DCMD")
#: what a host application reads (commands are written, never read)
READ_KINDS = ("NBIRTH", "NDATA", "NDEATH", "DBIRTH", "DDATA", "DDEATH")


class SparkplugTopic(NamedTuple):
    group_id: str
    kind: str
    edge_node_id: str
    device_id: str | None


def valid_id(name: str) -> bool:
    """Whether ``name`` can be a group, edge node or device id (one topic level, no wildcards)."""
    return valid_name(name)


def _check(kind: str, name: str) -> None:
    if not valid_id(name):
        raise ValueError(f"invalid Sparkplug {kind} {name!r}: one topic level without '/', '+', '#' or NUL")


def message_topic(kind: str, group_id: str, edge_node_id: str, device_id: str | None = None) -> str:
    """The topic of one message; device kinds need ``device_id``, node kinds must not have one."""
    _check("group_id", group_id)
    _check("edge_node_id", edge_node_id)
    if kind in NODE_KINDS and device_id is None:
        return f"{NAMESPACE}/{group_id}/{kind}/{edge_node_id}"
    if kind in DEVICE_KINDS and device_id is not None:
        _check("device_id", device_id)
        return f"{NAMESPACE}/{group_id}/{kind}/{edge_node_id}/{device_id}"
    raise ValueError(f"Sparkplug message type {kind!r} with device_id={device_id!r}")


def read_filters(group_ids: list[str] | tuple[str, ...]) -> list[str]:
    """Subscription filters for everything a host reads in these groups (births, data, deaths)."""
    out = []
    for g in group_ids:
        _check("group_id", g)
        for kind in READ_KINDS:
            out.append(f"{NAMESPACE}/{g}/{kind}/+" + ("/+" if kind in DEVICE_KINDS else ""))
    return out


def command_filter(group_id: str, edge_node_id: str) -> str:
    """What an edge node subscribes to for its NCMD (and its devices' DCMD) messages."""
    _check("group_id", group_id)
    _check("edge_node_id", edge_node_id)
    return f"{NAMESPACE}/{group_id}/NCMD/{edge_node_id}"


def parse(topic: str) -> SparkplugTopic | Rejection:
    """The parts of a Sparkplug message topic, or a ``bad_topic`` rejection."""
    parts = topic.split("/")
    if len(parts) not in (4, 5) or parts[0] != NAMESPACE or not all(map(valid_id, parts[1:])):
        return Rejection("bad_topic", topic[:200])
    kind = parts[2]
    if len(parts) == 4 and kind in NODE_KINDS:
        return SparkplugTopic(parts[1], kind, parts[3], None)
    if len(parts) == 5 and kind in DEVICE_KINDS:
        return SparkplugTopic(parts[1], kind, parts[3], parts[4])
    return Rejection("bad_topic", topic[:200])
