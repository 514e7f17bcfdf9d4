"""Fault patterns learnt from recorded fault episodes: a conditional WGAN-GP over sensor deviations.

A *pattern* is how a fault moves an asset's sensors away from normal over
time, in units of each sensor's normal standard deviation, starting at the
fault's onset: shape (samples, sensors). Patterns are learnt per fault class
from recorded episodes (:mod:`.data`), drawn from the generator
(:mod:`.sample`) and added onto a live or replayed normal stream by the
simulator's ``gan:<class>`` injections (:mod:`simulator.faults`).

Modules, in the order data flows:

- :mod:`.data`: recorded episodes (TEP folder or labelled CSV) -> deviation windows
- :mod:`.model`: generator and critic (torch)
- :mod:`.train`: WGAN-GP training, progress, checkpoints
- :mod:`.artefact`: GAN folders (safetensors + JSON manifest, SHA-256, atomic)
- :mod:`.sample`: patterns of any length, with the normal noise removed for injection
- :mod:`.evaluate` / :mod:`.report`: held-out metrics, REPORT.json/.md and figures
- :mod:`.commands`: the ``plantwatch gan`` handlers

Everything here imports torch; nothing in :mod:`monitor` imports this package.
"""

__all__ = ["cli", "inject"]  # the command list, and what gan:<class> injections load
