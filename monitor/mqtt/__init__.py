"""MQTT as every plantwatch client speaks it: broker settings, paho configured once, the fast client.

The monitor's own session (persistent, acknowledge-after-scoring) is
:mod:`monitor.daemon.mqtt_session`; the simulator, the drill and the recorder
connect through the names here.
"""

from .client import connect, connect_properties, describe_error, make_client
from .fast_client import BufferedSocket, Client
from .settings import BrokerSettings, parse_url, settings_from_url

__all__ = [
    "BrokerSettings",
    "BufferedSocket",
    "Client",
    "connect",
    "connect_properties",
    "describe_error",
    "make_client",
    "parse_url",
    "settings_from_url",
]
