"""Which model scores which asset: the model folders a config names, loaded with its run-time overrides."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np

from .. import logs, missing
from ..config import DetectorConfig, MonitorConfig
from ..detector import AlarmSettings, Detector, DetectorSettings, ValueBounds, load_model, model_store
from ..errors import ConfigError, PlantwatchError

log = logs.get("models")


@dataclass(frozen=True)
class LoadedModel:
    """A model folder loaded with this config's overrides; ``identity`` says when it really changed."""

    name: str
    version: str
    detector: Detector
    identity: tuple[str, str, str]
    #: per sensor, what a message without it gets (:mod:`monitor.missing`: -1 fail, 0 drop, N rows held)
    missing: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    #: plausible values per sensor: the model's (from its training range), [sensors.NAME] min/max replacing them
    bounds: ValueBounds | None = None
    #: a store's challenger version, scored beside this model in shadow (no alarms, nothing the champion uses)
    challenger: LoadedModel | None = None

    @property
    def optional(self) -> tuple[str, ...]:
        """Sensors a message may lack (its row is then filled or dropped, not rejected)."""
        return tuple(s for s, limit in zip(self.detector.sensors, self.missing.tolist()) if limit >= 0)

    @property
    def slot_key(self) -> tuple[str, ...]:
        """Same model and same missing-value policy: rows can share one decoder and buffer."""
        return (*self.identity, repr(self.missing.tolist()))


class ModelSet:
    """Which model scores which asset: first matching pattern, else the default or nothing."""

    def __init__(self, cfg: MonitorConfig, loaded: dict[str, LoadedModel]) -> None:
        self.default = loaded[cfg.models.default] if cfg.models.default else None
        self.patterns = [(pattern, loaded[path]) for pattern, path in cfg.models.assets.items()]
        self.policy = cfg.models.unknown_asset
        self.loaded = list({m.identity: m for m in loaded.values()}.values())

    def configured(self, asset: str) -> bool:
        """Whether a pattern of ``[models.assets]`` names ``asset`` (not only the default model)."""
        return any(fnmatchcase(asset, pattern) for pattern, _ in self.patterns)

    def resolve(self, asset: str) -> LoadedModel | None:
        for pattern, model in self.patterns:
            if fnmatchcase(asset, pattern):
                return model
        return self.default if self.policy == "default" else None


def _overrides(base: DetectorSettings, d: DetectorConfig, path: str) -> DetectorSettings:
    try:
        alarm = AlarmSettings(
            d.on_delay or base.alarm.on_delay,
            d.off_delay or base.alarm.off_delay,
            base.alarm.deadband if d.deadband is None else d.deadband,
        )
        return dataclasses.replace(
            base, threshold_method=d.threshold_method or base.threshold_method, alarm=alarm, top_k=d.top_k
        )
    except ValueError as exc:
        raise ConfigError(f"detector: {exc} (with the settings of model {path})") from None


def _load(cfg: MonitorConfig, path: str, shadow: bool = True) -> LoadedModel:
    """The model a configured path names: a plain folder, or a store's current version (and its challenger)."""
    folder = model_store.resolve(path)
    det = load_model(folder)
    det.settings = _overrides(det.settings, cfg.detector, path)
    sha = str(det.manifest.get("weights", {}).get("sha256", ""))
    ident = (os.path.realpath(folder), sha, repr(det.settings.to_dict()))
    policy = missing.limits(det.sensors, cfg.missing.policy, cfg.missing.sensors)
    bounds = det.bounds.with_overrides(det.sensors, cfg.sensor_bounds())
    stored = model_store.name_and_version(path)
    name, version = (stored[0], stored[1]) if stored is not None else (Path(path).name or path, sha[:12])
    other = model_store.challenger(path) if shadow else None
    challenger = _challenger(cfg, str(other), det) if other is not None else None
    return LoadedModel(name, version, det, ident, policy, bounds, challenger)


def _challenger(cfg: MonitorConfig, path: str, champion: Detector) -> LoadedModel | None:
    """The challenger, if it loads and reads the same sensors; else logged and left out (the champion runs)."""
    try:
        m = _load(cfg, path, shadow=False)
    except PlantwatchError as exc:
        log.error("challenger_not_loaded", path=path, reason=str(exc), note="the champion runs alone")
        return None
    if list(m.detector.sensors) != list(champion.sensors):
        log.error(
            "challenger_not_loaded",
            path=path,
            reason=f"reads other sensors than the champion ({len(m.detector.sensors)} vs {len(champion.sensors)})",
            note="the champion runs alone",
        )
        return None
    return m


def signature(cfg: MonitorConfig) -> tuple[str, ...]:
    """Where every configured model path and its challenger point now: a change means a promotion to pick up."""
    out = []
    for path in cfg.model_paths():
        try:
            folder = model_store.resolve(path)
        except PlantwatchError:
            out.append(f"{path}: unresolved")
            continue
        other = model_store.challenger(path)
        out.append(os.path.realpath(folder) + "|" + (os.path.realpath(other) if other is not None else ""))
    return tuple(out)


def load_models(cfg: MonitorConfig) -> ModelSet:
    """Load every model folder the config names; ArtefactError names the unreadable one."""
    return ModelSet(cfg, {path: _load(cfg, path) for path in cfg.model_paths()})


def model_problems(cfg: MonitorConfig) -> tuple[list[LoadedModel], list[str]]:
    """Every model folder the config names, loaded one by one: those that load, and one problem per folder
    that does not, naming the key that names it (for ``check-config``, which reports everything at once)."""
    keys = ([("models.default", cfg.models.default)] if cfg.models.default else []) + [
        (f"models.assets.{pattern!r}", path) for pattern, path in cfg.models.assets.items()
    ]
    loaded: dict[str, LoadedModel] = {}
    problems: dict[str, str] = {}
    for key, path in keys:
        if path in loaded:
            continue
        if path not in problems:
            try:
                loaded[path] = _load(cfg, path)
                continue
            except PlantwatchError as exc:
                problems[path] = f"{key}: {exc}"
    return list({m.identity: m for m in loaded.values()}.values()), list(problems.values())
