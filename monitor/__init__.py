"""plantwatch monitor: the daemon and the detector.

Public surface: the ``plantwatch`` CLI, the config file, the wire contract
(:mod:`monitor.wire`) and the metric names. Everything else may change.
"""

__version__ = "0.1.0"
