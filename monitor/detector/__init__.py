"""The detector: from raw sensor rows to scores, thresholds and alarm episodes, and its model folders.

Pipeline (each step a module here): :mod:`.windows` (causal windows) ->
:mod:`.model` (the denoising autoencoder) -> :mod:`.scoring` (residual
energy and shift, per-sensor contributions) with :mod:`.smoothing` ->
:mod:`.threshold` (rolling thresholds) -> :mod:`.alarms` (hysteresis into
episodes); :class:`Detector` runs them for many streams at once. Training:
:mod:`.fit` (one network), :mod:`.calibration` (out-of-fold), :mod:`.train`
(history table to model folder), :mod:`.promise` (the threshold for a
false-alarm target and what train promises, counting :mod:`.episodes`),
:mod:`.coverage` (how much of the process a history spans), :mod:`.baseline`
(an operating point the operator accepted). Folders: :mod:`.model_folder` on the shared
:mod:`.folder_format`. Plausible sensor values: :mod:`.value_bounds`. Nothing here knows about MQTT, the daemon or the CLI.
"""

from . import folder_format, model_store
from .alarms import AlarmLogic, AlarmSettings, Episode, Transition
from .baseline import ACCEPT_ROWS
from .calibration import promise_of
from .detector import FAR_SIGMA, Detector, DetectorSettings, StreamResult, StreamState
from .fit import Budget, resolve_device
from .model import single_thread
from .model_folder import fingerprint, read_manifest
from .model_folder import load as load_model
from .model_folder import save as save_model
from .promise import Promise, describe
from .threshold import METHODS, Bounds
from .train import TrainSettings, check_out, train_table
from .value_bounds import TrainingRange, ValueBounds

__all__ = [
    "ACCEPT_ROWS",
    "FAR_SIGMA",
    "METHODS",
    "AlarmLogic",
    "AlarmSettings",
    "Bounds",
    "Budget",
    "Detector",
    "DetectorSettings",
    "Episode",
    "Promise",
    "StreamResult",
    "StreamState",
    "TrainSettings",
    "TrainingRange",
    "Transition",
    "ValueBounds",
    "check_out",
    "describe",
    "fingerprint",
    "folder_format",
    "load_model",
    "model_store",
    "promise_of",
    "read_manifest",
    "resolve_device",
    "save_model",
    "single_thread",
    "train_table",
]
