"""The monitoring daemon: MQTT in, micro-batches scored by the detector, alarms and metrics out.

The path of one message: :mod:`.mqtt_session` (paho callback) ->
:mod:`.batch_queue` (bounded hand-over) -> :mod:`.worker` (decode, order by
:mod:`.sequence`, score with the asset's model from :mod:`.model_registry`,
publish :mod:`.alarm_events`, acknowledge) -> :mod:`.metrics` (rendered at
scrape time) served by :mod:`.http_server`. :mod:`.monitor` starts and stops
them and turns signals into reloads and stops.
"""

from .batch_queue import BatchQueue
from .log_sampler import LogSampler
from .metrics import State
from .model_registry import LoadedModel, ModelSet, load_models, model_problems
from .monitor import AssetSnapshot, Monitor, Snapshot
from .mqtt_session import Item, MqttSession
from .web_config import WebConfig
from .web_config import load as load_web_config

__all__ = [
    "AssetSnapshot",
    "BatchQueue",
    "Item",
    "LoadedModel",
    "LogSampler",
    "ModelSet",
    "Monitor",
    "MqttSession",
    "Snapshot",
    "State",
    "WebConfig",
    "load_models",
    "load_web_config",
    "model_problems",
]
