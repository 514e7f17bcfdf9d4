"""A GAN folder as the :class:`simulator.faults.PatternSource` of ``gan:<class>`` injections.

What an injection adds is :func:`simulator.gan.sample.injection_pattern`: one
generated pattern of the fault's duration, from its onset, with the normal
noise taken out (the live stream has its own), in standard deviations of
each sensor; :class:`simulator.faults.AdditivePattern` multiplies it by the
asset's own sensor spreads. Sensors are matched by name: an asset must have
every sensor the GAN was trained on (a TEP GAN applies to a TEP replay), or
the injection is refused with a message naming the first missing one.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from monitor.errors import ArtefactError

from . import artefact
from .sample import injection_pattern


class GanPatterns:
    """Draws denoised patterns from a loaded GAN; ``name`` is the folder, for the ground truth."""

    def __init__(self, gan: artefact.GAN, name: str) -> None:
        self.gan, self.name = gan, name
        self.sensors = list(gan.sensors)
        self.classes = list(gan.classes)

    def pattern(self, label: str, length: int, seed: int) -> np.ndarray:
        return injection_pattern(self.gan, label, length, seed=seed)


def load_patterns(path: str | Path) -> GanPatterns:
    """Load a GAN folder for injections (ArtefactError if it is not a sound one, or not there: then it says
    which command makes one)."""
    if not Path(path).exists():
        shown = os.path.normpath(path)
        raise ArtefactError(
            f"{shown}: no such GAN folder; make it with 'plantwatch gan train --data FAULT_HISTORY --out {shown}' "
            "(deploy/drills/README.md has the recipe of the demo's GAN, a few minutes)"
        )
    torch.set_num_threads(1)
    return GanPatterns(artefact.load(path), str(path))
