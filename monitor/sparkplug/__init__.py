"""Sparkplug B in: topics, payloads and a host application's state machine, beside the JSON contract.

:mod:`.topics` spells every Sparkplug topic (the only place that does); :mod:`.payload` is the protobuf
schema (``sparkplug_b.proto``, compiled by ``regenerate.sh`` into :mod:`.sparkplug_b_pb2`) with the
numeric datatypes and the payloads plantwatch writes; :mod:`.table` holds what a BIRTH defined and the
report-by-exception values since, and makes rows; :mod:`.host` follows nodes and devices through
births, data, deaths and ``seq``; :mod:`.data_read` reads a DATA payload's columns without state, which
:mod:`.read_process` does for a backlog in a helper process. The daemon's :mod:`monitor.daemon.sparkplug_intake` feeds the rows to
the same worker path as JSON telemetry.
"""

from . import payload, topics
from .data_read import ReadBatch
from .host import ALL_SENSORS, BIRTH, DEVICE_DEATH, NODE_DEATH, Host, Naming, Outcome
from .read_process import ReadProcess, Ticket
from .table import MetricTable, Staleness

__all__ = [
    "ALL_SENSORS",
    "BIRTH",
    "DEVICE_DEATH",
    "NODE_DEATH",
    "Host",
    "MetricTable",
    "Naming",
    "Outcome",
    "ReadBatch",
    "ReadProcess",
    "Staleness",
    "Ticket",
    "payload",
    "topics",
]
