"""Drills: inject known faults into telemetry, publish the truth, check the monitoring chain reacted in time.

How a drill reaches the monitor (the design choice): a plant's gateway cannot
be told to inject, so the drill never touches an asset's own stream. It
publishes a *copy* of each asset under its own name (``<asset>-drill`` by
default): a simulated run of the same process (``source = "demo"``, the
assets of ``plantwatch demo``) or a replayed CSV of the asset's normal
history, with the same sensors, so the monitor scores it with the asset's
model through its ``[models.assets]`` patterns (e.g. ``"boiler*"`` matches
``boiler-drill``). The monitor is not told about the drill: it learns of the
faults only from the data, exactly as it would of real ones, while the real
asset keeps being watched undisturbed. The ground truth goes to the drill
topic of the copy (``<prefix>/<asset>-drill/drill``).

Modules: :mod:`.scenario` (the TOML file), :mod:`.run` (publish and observe),
:mod:`.observe` (alarm topic and /metrics followers), :mod:`.alerts` (the
alert rule's firing and resolution in Prometheus), :mod:`.report` (verdicts,
report.json/.md, timelines), :mod:`.commands`.
"""

__all__ = ["cli"]  # the command list; the handlers are named as text
