"""Which partition an asset's telemetry lands in, and which partitions a monitor instance owns.

The stream's subject transform ``{{partition(P, k)}}`` puts a message in partition
``fnv1a32(token) mod P`` of the asset's subject token (nats-server's hash), so a monitor can name
the partition of an asset itself: its checkpoint key carries it, and a takeover loads only the keys of
the partitions it took. Instance ``k`` of ``N`` owns the partitions ``p`` with ``p mod N == k``.

NATS's MQTT listener maps topic levels to subject tokens, a ``.`` inside a level to ``//``:

>>> subject_of("plantwatch/boiler.1/telemetry"), topic_of("plantwatch.boiler//1.telemetry")
('plantwatch.boiler//1.telemetry', 'plantwatch/boiler.1/telemetry')
>>> partition_of("b1", 8), owned(1, 3, 8)
(4, (1, 4, 7))
"""

from __future__ import annotations

import re

_FNV_OFFSET, _FNV_PRIME = 0x811C9DC5, 0x01000193
_PARTITION_RE = re.compile(r"\{\{\s*partition\(\s*(\d+)\s*,")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def fnv1a32(data: bytes) -> int:
    """32-bit FNV-1a, the hash nats-server's ``partition()`` transform uses."""
    h = _FNV_OFFSET
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def token_of(asset: str) -> str:
    """The subject token NATS's MQTT listener makes of a topic level (``.`` becomes ``//``)."""
    return asset.replace(".", "//")


def partition_of(asset: str, partitions: int) -> int:
    """The partition the stream's transform puts ``asset``'s telemetry in."""
    return fnv1a32(token_of(asset).encode()) % partitions


def owned(index: int, instances: int, partitions: int) -> tuple[int, ...]:
    """Partitions of instance ``index`` of ``instances``: p = index (mod instances)."""
    return tuple(range(index, partitions, instances))


def subject_of(topic: str) -> str:
    """The NATS subject of an MQTT topic, as the MQTT listener maps it."""
    return ".".join(level.replace(".", "//") for level in topic.split("/"))


def topic_of(subject: str) -> str:
    """The MQTT topic of a NATS subject (the inverse of :func:`subject_of`)."""
    return "/".join(token.replace("//", ".") for token in subject.split("."))


def telemetry_source(prefix: str) -> str:
    """The stream's subject filter for telemetry under ``prefix`` (the transform's source)."""
    return subject_of(prefix) + ".*.telemetry"


def transform_dest(prefix: str, partitions: int, head: str) -> str:
    """The transform's destination: ``<head>.<partition>.<original subject>``."""
    return f"{head}.{{{{partition({partitions},1)}}}}.{subject_of(prefix)}.{{{{wildcard(1)}}}}.telemetry"


def partitions_of_dest(dest: str) -> int | None:
    """The partition count a transform destination names (None: it does not partition)."""
    m = _PARTITION_RE.search(dest)
    return int(m.group(1)) if m else None


def key_of(asset: str, partitions: int) -> str:
    """The KV key of an asset's checkpoint: ``p<partition>.<name>`` (hex after ``=`` for other characters).

    >>> key_of("b1", 8), key_of("a b", 8)
    ('p4.b1', 'p2.=612062')
    """
    name = asset if _PLAIN_KEY.fullmatch(asset) else "=" + asset.encode().hex()
    return f"p{partition_of(asset, partitions)}.{name}"
