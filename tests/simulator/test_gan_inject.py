"""gan:<class> injections: parsed beside the parametric kinds, bound by sensor name, published where the truth says."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from monitor import csvio, wire
from monitor.cli import main
from monitor.errors import InputError
from simulator.faults import AdditivePattern, FaultSpec, FaultTarget, InjectionSet, bind_faults, parse_fault
from simulator.gan.inject import load_patterns
from tests.conftest import Mosquitto

from .test_gan import SENSORS, normal_rows, tiny_data, tiny_gan  # noqa: F401 - fixtures
from .test_publish import Subscriber


class Ramp:
    """A PatternSource without torch: class "up" ramps every sensor from 0 to 1 std."""

    name = "ramp"
    classes: ClassVar[list[str]] = ["up"]

    def __init__(self, sensors: list[str]) -> None:
        self.sensors = sensors

    def pattern(self, label: str, length: int, seed: int) -> np.ndarray:
        return np.linspace(0, 1, length)[:, None] * np.ones(len(self.sensors))


TARGET = FaultTarget("pump", ["x", "a", "b", "c"], np.array([1.0, 2.0, 3.0, 4.0]))


def test_gan_specs_parse_and_print_back_unchanged() -> None:
    spec = parse_fault("gan:4@100+200:asset=d00_te,magnitude=1.5")
    assert spec == FaultSpec("gan:4", 100, 200, "d00_te", None, 1.5) and spec.gan_class == "4"
    assert parse_fault(str(spec)) == spec and parse_fault("bias@1+2").gan_class is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("gan:@1+2", "needs a class name"),
        ("gan:a/b@1+2", "needs a class name"),
        ("gan:4@1+2:magnitude=0", "must be > 0"),
        ("gan:4@1+0", "DURATION"),
    ],
)
def test_bad_gan_specs_are_refused(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_fault(text)


def test_a_gan_spec_binds_to_the_sensors_of_the_same_names_scaled_by_each_sensor_std() -> None:
    (inj,) = bind_faults([parse_fault("gan:up@10+5:magnitude=2")], [TARGET], 0, Ramp(["c", "a"]))
    assert isinstance(inj, AdditivePattern) and inj.kind == "gan:up" and inj.sensors == ("c", "a")
    assert list(inj.columns) == [3, 1] and inj.params["class"] == "up" and inj.params["scale"] == 2.0
    block = np.zeros((20, 4))
    InjectionSet([inj]).apply(block, 0)
    assert np.allclose(block[10:15, 3], 2 * np.linspace(0, 1, 5) * 4.0)
    assert np.allclose(block[10:15, 1], 2 * np.linspace(0, 1, 5) * 2.0)
    assert not block[:10].any() and not block[15:].any() and not block[:, [0, 2]].any()
    truth = inj.truth(1.0, 2.0)
    assert truth.kind == "gan:up" and truth.sensors == ("c", "a") and truth.magnitude == pytest.approx(2.0)


@pytest.mark.parametrize(
    "spec, source, message",
    [
        ("gan:up@1+5", None, "give --gan PATH"),
        ("gan:down@1+5", Ramp(["a"]), "has no class 'down'; its classes: up"),
        ("gan:up@1+5", Ramp(["a", "zz"]), "lacks 1 of the GAN's 2 sensors \\(first: 'zz'\\)"),
        ("gan:up@1+5:sensors=x", Ramp(["a"]), "'x' is not one of the GAN's sensors"),
    ],
)
def test_gan_specs_without_a_gan_or_with_foreign_sensors_are_refused(
    spec: str, source: Ramp | None, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        bind_faults([parse_fault(spec)], [TARGET], 0, source)


def test_a_pattern_from_a_trained_gan_is_reproducible_for_a_seed(tiny_gan: Path) -> None:
    patterns = load_patterns(tiny_gan)
    a, b = patterns.pattern("1", 50, 3), patterns.pattern("1", 50, 3)
    assert a.shape == (50, len(SENSORS)) and np.array_equal(a, b)


def test_gan_and_parametric_faults_are_published_exactly_where_the_ground_truth_says(
    tiny_gan: Path, tmp_path: Path, mosquitto: Mosquitto, subscriber: Subscriber
) -> None:
    rows = normal_rows(np.random.default_rng(5), 120)
    replay = tmp_path / "pump.csv"
    with open(replay, "w") as f:
        f.write(",".join(SENSORS) + "\n")
        f.writelines(",".join(f"{v:.9g}" for v in row) + "\n" for row in rows)
    clean = csvio.read_table(replay).values
    assert (
        main(
            [
                "simulate",
                "--broker",
                mosquitto.url,
                "--replay",
                str(replay),
                "--rate",
                "400",
                "--gan",
                str(tiny_gan),
                "--fault",
                "gan:1@20+40",
                "--fault",
                "bias@80+10:sensors=F2,magnitude=5",
            ]
        )
        == 0
    )
    subscriber.wait_for(lambda: len(subscriber.telemetry("pump")) == 120 and len(subscriber.drills("pump")) == 4)
    sent = np.array([[m.values[s] for s in SENSORS] for m in sorted(subscriber.telemetry("pump"), key=lambda m: m.seq)])
    ts = {m.seq: m.ts for m in subscriber.telemetry("pump")}
    changed = np.abs(sent - clean) > 1e-9
    truths = {t.kind: t for t in subscriber.drills("pump") if t.phase == "end"}
    gan, bias = truths["gan:1"], truths["bias"]
    assert (gan.start, gan.end) == (ts[20], ts[59]) and set(gan.sensors) == set(SENSORS)
    assert gan.params["class"] == "1" and gan.params["gan"] == str(tiny_gan)
    assert (bias.start, bias.end, bias.sensors) == (ts[80], ts[89], ("F2",))
    rows_changed = np.flatnonzero(changed.any(axis=1))
    assert rows_changed.min() == 20 and set(rows_changed) <= set(range(20, 60)) | set(range(80, 90))
    assert changed[80:90, SENSORS.index("F2")].all() and not changed[80:90, :5].any()
    expected = load_patterns(tiny_gan).pattern("1", 40, int(gan.params["seed"])) * csvio.read_table(replay).values.std(
        0
    )
    assert np.allclose(sent[20:60] - clean[20:60], expected, atol=1e-6)
    assert wire.drill_topic("plant", "pump") in {t for t, _ in subscriber.messages}


def test_simulate_refuses_gan_faults_without_a_gan_and_a_gan_without_gan_faults(tmp_path: Path, tiny_gan: Path) -> None:
    assert main(["simulate", "--to-csv", str(tmp_path / "h.csv"), "--samples", "50", "--fault", "gan:1@1+5"]) == 2
    assert main(["simulate", "--to-csv", str(tmp_path / "h.csv"), "--samples", "50", "--gan", str(tiny_gan)]) == 2


def test_a_gan_is_refused_for_an_asset_without_its_sensors(tmp_path: Path, tiny_gan: Path) -> None:
    assert (
        main(
            [
                "simulate",
                "--to-csv",
                str(tmp_path / "h.csv"),
                "--samples",
                "50",
                "--gan",
                str(tiny_gan),
                "--fault",
                "gan:1@1+5",
            ]
        )
        == 2
    )
