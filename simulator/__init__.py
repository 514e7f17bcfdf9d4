"""plantwatch simulator: realistic multi-asset process data, replay, fault injection and drills.

It may import the monitor's wire contract, MQTT helpers and model artefacts;
the monitor never imports it.
"""

__all__ = [
    "amqtt_broker",
    "cli",
    "commands",
    "demo",
    "drill",
    "faults",
    "gan",
    "history",
    "local_broker",
    "process",
    "publish",
    "replay",
    "view",
]
