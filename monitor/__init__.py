"""plantwatch monitor: the daemon, the detector and the commands around them.

Public surface: the ``plantwatch`` CLI, the config file (:mod:`.config`),
the wire contract (:mod:`.wire`) and the metric names; for the simulator
and tests, the packages' declared names below. Everything else may change.

Layout: :mod:`.detector` (model, training, scoring, thresholds, alarms,
model folders), :mod:`.daemon` (MQTT in, batches scored, metrics out),
:mod:`.commands` (train, score, monitor, check-config, record), :mod:`.mqtt`
(broker settings and clients), and the shared modules :mod:`.wire`,
:mod:`.config`, :mod:`.csvio`, :mod:`.broker_login`, :mod:`.signals`,
:mod:`.errors`, :mod:`.logs`; :mod:`.cli` builds the one ``plantwatch`` command.
"""

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "broker_login",
    "cli",
    "commands",
    "config",
    "csvio",
    "daemon",
    "detector",
    "errors",
    "logs",
    "mqtt",
    "signals",
    "wire",
]
