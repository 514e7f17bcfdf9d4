"""The GAN on a tiny labelled CSV: data conventions, a few training steps, the folder round trip, sampling, evaluation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from monitor.cli import main
from monitor.errors import ArtefactError, InputError
from simulator.gan import artefact
from simulator.gan.data import TEP_SENSORS, Normaliser, load, normal_psd
from simulator.gan.sample import denoise, generate, noise_psd_at

SENSORS = ["T1", "T2", "P1", "P2", "F1", "F2"]
LEVELS = np.array([50.0, 80.0, 5.0, 7.0, 300.0, 120.0])
SPREAD = np.array([1.0, 2.0, 0.1, 0.2, 10.0, 4.0])
EPISODE = 80
WINDOW = 16


def normal_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """Autocorrelated normal operation around fixed levels."""
    z = np.zeros((n, len(SENSORS)))
    for t in range(1, n):
        z[t] = 0.6 * z[t - 1] + rng.normal(0, 0.8, len(SENSORS))
    return LEVELS + SPREAD * z


def fault(label: int, n: int) -> np.ndarray:
    """Class 1: T1 steps up 4 std; class 2: P1 drifts down to -6 std (deviations, std units)."""
    dev = np.zeros((n, len(SENSORS)))
    if label == 1:
        dev[:, 0] = 4.0
    else:
        dev[:, 2] = -6.0 * np.arange(1, n + 1) / n
    return dev * SPREAD


def labelled_csv(path: Path, seed: int, episodes: tuple[int, ...] = (1, 2, 1, 2)) -> Path:
    """Normal stretches with fault episodes between them, a ``fault`` column labelling every row."""
    rng = np.random.default_rng(seed)
    blocks, labels = [normal_rows(rng, 120)], [np.zeros(120, int)]
    for k in episodes:
        blocks += [normal_rows(rng, EPISODE) + fault(k, EPISODE), normal_rows(rng, 60)]
        labels += [np.full(EPISODE, k), np.zeros(60, int)]
    values, label = np.concatenate(blocks), np.concatenate(labels)
    with open(path, "w") as f:
        f.write("timestamp," + ",".join(SENSORS) + ",fault\n")
        for i, (row, k) in enumerate(zip(values, label)):
            f.write(f"{1.7e9 + i}," + ",".join(f"{v:.6f}" for v in row) + f",{k}\n")
    return path


def train_tiny(data: Path, out: Path, epochs: int = 3) -> Path:
    assert (
        main(
            [
                "gan",
                "train",
                "--data",
                str(data),
                "--out",
                str(out),
                "--epochs",
                str(epochs),
                "--window",
                str(WINDOW),
                "--checkpoint-every",
                "1",
                "--keep-checkpoints",
            ]
        )
        == 0
    )
    return out


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return labelled_csv(tmp_path_factory.mktemp("gan-data") / "episodes.csv", seed=1)


@pytest.fixture(scope="session")
def tiny_gan(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> Path:
    """A GAN trained for a few steps on the tiny CSV (seconds): for plumbing, not quality."""
    return train_tiny(tiny_data, tmp_path_factory.mktemp("gan") / "tiny")


def test_csv_episodes_are_the_runs_of_rows_with_the_same_nonzero_fault_label(tiny_data: Path) -> None:
    data = load(tiny_data)
    assert data.sensors == SENSORS and data.layout == "csv" and data.classes == ["1", "2"]
    assert [len(e) for e in data.episodes] == [EPISODE] * 4
    assert data.episodes[0].source == "episodes.csv rows 122-201"
    assert len(data.normal) == 120 + 4 * 60
    dev = Normaliser.fit(data.normal).deviation(data.episodes[0].values)
    assert dev[:, 0].mean() == pytest.approx(4.0, abs=0.6) and abs(dev[:, 1].mean()) < 0.6


def test_truth_files_written_by_the_simulator_label_the_rows_of_a_history_csv(tmp_path: Path) -> None:
    out = tmp_path / "hist.csv"
    assert (
        main(
            [
                "simulate",
                "--to-csv",
                str(out),
                "--samples",
                "400",
                "--sensors",
                "10",
                "--fault",
                "drift@100+80",
                "--fault",
                "bias@250+60",
            ]
        )
        == 0
    )
    data = load(out)
    assert data.classes == ["bias", "drift"]
    assert [len(e) for e in data.episodes] == [80, 60] and len(data.normal) == 400 - 140


@pytest.mark.parametrize(
    "content, message",
    [
        ("a,b\n1,2\n3,4\n", "no 'fault' column"),
        ("a,b,fault\n1,2,0\n3,4,1.5\n", "whole number"),
        ("a,b,fault\n" + "1,2,0\n" * 3 + "1,2,1\n" * 20, "at least 8 are needed"),
        ("a,b,fault\n" + "1,2,0\n" * 20, "no fault episodes"),
    ],
)
def test_unusable_csvs_are_refused_with_the_reason(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "x.csv").write_text(content)
    with pytest.raises(InputError, match=message):
        load(tmp_path / "x.csv")


def test_tep_folder_reads_training_runs_from_row_1_and_test_runs_from_row_161(tep_dir: Path) -> None:
    train, test = load(tep_dir, "train"), load(tep_dir, "test")
    assert train.sensors == TEP_SENSORS and train.normal.shape == (500, 52)
    assert train.classes == [str(k) for k in range(1, 22)] == test.classes
    assert len(train.of_class("4")[0]) == 480 and len(test.of_class("4")[0]) == 800


def test_a_few_training_steps_write_a_folder_that_loads_and_samples_reproducibly(tiny_gan: Path) -> None:
    gan = artefact.load(tiny_gan)
    assert gan.sensors == SENSORS and gan.classes == ["1", "2"] and gan.config.window == WINDOW
    manifest = json.loads((tiny_gan / "manifest.json").read_text())
    assert manifest["format"] == "plantwatch-gan" and manifest["training"]["episodes"] == {"1": 2, "2": 2}
    a, b = generate(gan, "1", 3, 40, seed=5), generate(gan, "1", 3, 40, seed=5)
    assert a.shape == (3, 40, 6) and np.isfinite(a).all() and np.array_equal(a, b)
    assert not np.array_equal(a, generate(gan, "1", 3, 40, seed=6))
    checkpoints = sorted((tiny_gan.parent / "tiny.checkpoints").iterdir())
    assert [c.name for c in checkpoints] == ["epoch-00001", "epoch-00002"]
    assert artefact.load(checkpoints[-1]).classes == ["1", "2"]


def test_a_tampered_truncated_or_foreign_folder_is_refused(tiny_gan: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(tiny_gan, bad)
    weights = bad / "weights.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(ArtefactError, match="SHA-256"):
        artefact.load(bad)
    weights.unlink()
    with pytest.raises(ArtefactError, match="missing"):
        artefact.load(bad)
    manifest = json.loads((tiny_gan / "manifest.json").read_text())
    shutil.copy(tiny_gan / "weights.safetensors", weights)
    (bad / "manifest.json").write_text(json.dumps({**manifest, "classes": manifest["classes"][::-1]}))
    with pytest.raises(ArtefactError, match="manifest does not match its SHA-256"):
        artefact.load(bad)  # the manifest is sealed with the weights: an edit is refused
    (bad / "manifest.json").write_text(json.dumps({**manifest, "format": "plantwatch-model"}))
    with pytest.raises(ArtefactError, match="not a plantwatch GAN"):
        artefact.load(bad)
    (bad / "manifest.json").write_text("{")
    with pytest.raises(ArtefactError, match="corrupted manifest"):
        artefact.load(bad)
    assert main(["gan", "sample", "--gan", str(bad), "--class", "1", "--out", str(tmp_path / "x.csv")]) == 2


def test_training_refuses_to_overwrite_and_windows_longer_than_every_episode(
    tiny_data: Path, tiny_gan: Path, tmp_path: Path
) -> None:
    assert main(["gan", "train", "--data", str(tiny_data), "--out", str(tiny_gan)]) == 2
    assert main(["gan", "train", "--data", str(tiny_data), "--out", str(tmp_path / "g"), "--window", "96"]) == 2
    assert not (tmp_path / "g").exists()


def test_sample_writes_csv_and_npy_of_the_requested_shape(tiny_gan: Path, tmp_path: Path) -> None:
    assert (
        main(
            [
                "gan",
                "sample",
                "--gan",
                str(tiny_gan),
                "--class",
                "2",
                "--n",
                "3",
                "--length",
                "24",
                "--out",
                str(tmp_path / "p.npy"),
            ]
        )
        == 0
    )
    assert np.load(tmp_path / "p.npy").shape == (3, 24, 6)
    assert (
        main(
            [
                "gan",
                "sample",
                "--gan",
                str(tiny_gan),
                "--class",
                "2",
                "--n",
                "2",
                "--denoise",
                "--units",
                "sensor",
                "--out",
                str(tmp_path / "p.csv"),
            ]
        )
        == 0
    )
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "pattern,step," + ",".join(SENSORS) and len(lines) == 1 + 2 * WINDOW
    assert main(["gan", "sample", "--gan", str(tiny_gan), "--class", "7", "--out", str(tmp_path / "q.csv")]) == 2


def test_denoising_removes_normal_noise_and_keeps_a_fault_shift() -> None:
    rng = np.random.default_rng(3)
    normal = rng.normal(0, 1, (4000, 3))
    psd = normal_psd(normal)
    ref = np.fft.rfftfreq(2 * (len(psd) - 1))
    at = np.stack([np.interp(np.fft.rfftfreq(400), ref, psd[:, j]) for j in range(3)], axis=1)
    noise = rng.normal(0, 1, (400, 3))
    assert (denoise(noise, at) ** 2).mean() < 0.1 * (noise**2).mean()
    step = noise + np.r_[np.zeros(100), np.full(300, 5.0)][:, None]
    out = denoise(step, at)
    assert out[150:, :].mean() == pytest.approx(5.0, abs=0.5) and abs(out[:80].mean()) < 1.0


def test_evaluate_writes_the_report_keys_markdown_and_figures(tiny_gan: Path, tiny_data: Path, tmp_path: Path) -> None:
    held_out = labelled_csv(tmp_path / "held_out.csv", seed=2, episodes=(2, 1, 2, 1))
    out = tmp_path / "report" / "REPORT.json"
    assert (
        main(
            [
                "gan",
                "evaluate",
                "--gan",
                str(tiny_gan),
                "--data",
                str(held_out),
                "--train-data",
                str(tiny_data),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    for key in ("discriminative_accuracy", "tstr_macro_recall", "trtr_macro_recall", "diversity"):
        assert key in report
    assert 0 <= report["discriminative_accuracy"] <= 1 and report["trtr_macro_recall"] > 0.9
    assert set(report["per_class"]) == {"1", "2"} and report["diversity"]["ratio"] > 0
    assert "TSTR macro recall" in out.with_suffix(".md").read_text()
    assert all((out.parent / f).is_file() for f in report["figures"]) and len(report["figures"]) == 3


def test_evaluate_refuses_the_files_the_gan_was_trained_on(tiny_gan: Path, tiny_data: Path, tmp_path: Path) -> None:
    assert (
        main(["gan", "evaluate", "--gan", str(tiny_gan), "--data", str(tiny_data), "--out", str(tmp_path / "r.json")])
        == 2
    )


def test_noise_spectrum_is_stored_on_a_fixed_grid_and_read_at_any_length(tiny_gan: Path) -> None:
    gan = artefact.load(tiny_gan)
    assert gan.noise_psd.shape == (65, 6)
    assert noise_psd_at(gan, 37).shape == (19, 6)


def test_the_progress_bar_shows_what_each_phase_learns_and_log_lines_go_above_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Warm-up: the moments only (the critic's numbers are 0 then, and were shown as g=0.000, w=0.000);
    adversarial: the critic's too. A log line while the bar is drawn goes on a line of its own above it."""
    import re

    from monitor import logs
    from simulator.gan.train import Progress

    logs.configure("info", json=True)
    bar = Progress(4, enabled=True)
    stats = {"wasserstein": 0.0, "gradient_penalty": 0.0, "critic_loss": 0.0, "generator_loss": 0.0, "moments": 0.5}
    bar(1, 4, stats, "warm-up")
    warm = capsys.readouterr().err
    assert "gan warm-up" in warm and "moments=0.5" in warm and "w=" not in warm and "wasserstein" not in warm
    bar(2, 4, {**stats, "wasserstein": 0.25, "generator_loss": -0.5}, "adversarial")
    logs.get("test").info("a_line_while_the_bar_is_drawn")
    bar.close()
    out = capsys.readouterr().err
    assert "gan adversarial" in out and "wasserstein=0.25" in out and "generator_loss=-0.5" in out
    [segment] = [s for s in re.split(r"[\r\n]", out) if "a_line_while_the_bar_is_drawn" in s]
    assert "%|" not in segment and segment.lstrip().startswith("{")


def test_gan_training_uses_one_thread_when_the_cores_are_already_busy() -> None:
    """Two threads on two busy cores wait on each other (each step twice as slow): one then, two when idle."""
    from simulator.gan.commands import threads

    assert threads(2, 0.2) == 2 and threads(2, 1.0) == 1 and threads(2, 3.5) == 1 and threads(1, 0.0) == 1


def test_a_plan_over_its_time_budget_is_shortened_with_its_warm_up_share_kept() -> None:
    """Measured step costs say 1000 steps would take ~17 s against a 10 s budget: the plan shrinks to fit,
    in whole epochs, still 40 % warm-up then adversarial; a plan that fits is left alone."""
    from simulator.gan.train import Plan

    plan = Plan(1000, 10, 0.4, budget=10.0)
    for _ in range(50):
        plan.record(True, 0.01)
    assert plan.step_cost(False) == pytest.approx(0.022)  # assumed from the warm-up until one is timed
    assert plan.fit(50, 0.5) and plan.steps < 1000 and plan.steps % 10 == 0
    assert plan.cost(plan.steps, 50) <= 9.5 < plan.cost(plan.steps + 10, 50)
    assert plan.warmup == pytest.approx(0.4 * plan.steps, abs=10)
    shortened = plan.steps
    assert not plan.fit(60, 0.6) and plan.steps == shortened  # said once; it fits now
    roomy = Plan(1000, 10, 0.4, budget=100.0)
    roomy.record(True, 0.01)
    assert not roomy.fit(10, 0.1) and roomy.steps == 1000 and roomy.warmup == 400
    for _ in range(50):  # a burst of load elsewhere: the plan shrinks, and grows back when it is over
        plan.record(False, 0.2)
    assert plan.fit(400, 4.0) is False and plan.steps < shortened
    for _ in range(50):
        plan.record(False, 0.01)
    assert not plan.fit(410, 4.1) and plan.steps == 1000
    late = Plan(1000, 10, 0.4, budget=1.0)
    late.record(True, 0.01)
    assert late.fit(20, 5.0) and late.steps == 20  # already over budget: stop at this epoch


def test_a_plan_shortened_below_its_minimum_adversarial_phase_is_moment_matching_throughout() -> None:
    """A budget that leaves fewer adversarial epochs than the minimum spends them all on moment matching;
    a plan that fits, or one asked for explicitly, keeps its warm-up share and adversarial phase."""
    from simulator.gan.train import Plan

    short = Plan(1000, 10, 0.4, budget=5.0, min_adversarial=30)
    for _ in range(50):
        short.record(True, 0.01)
    assert short.fit(50, 0.5) and short.steps < 1000
    assert short.warmup == short.steps and not short.adversarial
    assert short.cost(short.steps, 50) <= 4.5  # priced as warm-up steps, which it now is
    asked = Plan(100, 10, 0.4, budget=None, min_adversarial=30)
    assert asked.warmup == 40 and asked.adversarial  # not shortened: what was asked for
    roomy = Plan(1000, 10, 0.4, budget=100.0, min_adversarial=30)
    roomy.record(True, 0.01)
    assert not roomy.fit(10, 0.1) and roomy.warmup == 400 and roomy.adversarial


def test_moment_spread_tells_windows_that_are_all_alike_from_windows_that_vary() -> None:
    """Generated windows each equal to their group's average match the means but not the spread:
    only the spread term sees the difference, and it is 0 for windows that vary as the real ones do."""
    import torch

    from simulator.gan.train import _moment_loss

    gen = torch.Generator().manual_seed(0)
    groups = torch.arange(4).repeat_interleave(8)
    level = torch.randn((4, 3, 1), generator=gen).repeat_interleave(8, 0)
    real = level + 2.0 * torch.randn((32, 3, 1), generator=gen) + 0.5 * torch.randn((32, 3, 16), generator=gen)
    per_group = torch.stack([real[groups == g].mean(0) for g in range(4)])
    alike = per_group[groups]  # every window its group's average: the levels agree, nothing varies
    means_only = _moment_loss(real, alike, groups, 4.0, spread=0.0)
    with_spread = _moment_loss(real, alike, groups, 4.0, spread=1.0)
    assert with_spread > means_only + 0.5
    assert _moment_loss(real, real, groups, 4.0, spread=1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_a_flat_generated_window_gives_a_finite_moment_gradient() -> None:
    """A generated window with a flat sensor has spread 0; the square root's infinite slope
    there made the whole generator NaN in the full 600-epoch schedule's warm-up (step 1739 at seed 0)."""
    import torch

    from simulator.gan.train import _moment_loss

    gen = torch.Generator().manual_seed(1)
    groups = torch.arange(2).repeat_interleave(4)
    real = torch.randn((8, 3, 16), generator=gen)
    fake = torch.randn((8, 3, 16), generator=gen)
    fake[0, 1] = 3.0  # one sensor of one window exactly flat
    fake.requires_grad_(True)
    _moment_loss(real, fake, groups, 4.0, spread=1.0).backward()
    assert fake.grad is not None and bool(torch.isfinite(fake.grad).all())


def test_a_step_with_a_non_finite_gradient_is_skipped_and_the_weights_stay_finite() -> None:
    import torch

    from simulator.gan.train import _step_if_finite

    layer = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(layer.parameters(), lr=0.1)
    before = [p.detach().clone() for p in layer.parameters()]
    (layer(torch.tensor([[1.0, float("nan"), 0.0]])).sum()).backward()
    assert not _step_if_finite(opt)
    assert all(torch.equal(a, b) for a, b in zip(before, layer.parameters()))
    layer(torch.ones(1, 3)).sum().backward()
    assert _step_if_finite(opt)
    assert not torch.equal(before[0], layer.weight)


def test_gan_train_leaves_out_and_counts_updates_with_a_non_finite_gradient(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the command: one warm-up loss poisoned with NaN; that update is left out, the manifest counts
    it and the GAN written is finite (without the guard every weight went NaN and stayed so)."""
    import torch

    from simulator.gan import train as gan_train

    calls = [0]
    moment_loss = gan_train._moment_loss

    def poisoned(*args: object, **kwargs: object) -> torch.Tensor:
        calls[0] += 1
        loss = moment_loss(*args, **kwargs)  # type: ignore[arg-type]
        return loss * float("nan") if calls[0] == 2 else loss

    monkeypatch.setattr(gan_train, "_moment_loss", poisoned)
    out = train_tiny(tiny_data, tmp_path / "poisoned", epochs=4)
    assert calls[0] >= 4  # training went on after the poisoned update
    assert json.loads((out / "manifest.json").read_text())["training"]["skipped_updates"] == 1
    gan = artefact.load(out)
    nets = [gan.generator, gan.trained_generator or gan.generator]
    assert all(bool(torch.isfinite(p).all()) for net in nets for p in net.parameters())


def test_training_over_its_time_budget_stops_in_time_with_a_gan_that_loads_without_unpickling(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--max-minutes bounds the whole command: 100,000 epochs asked, the schedule is shortened, the folder says
    so and loads with pickle and torch.load unavailable."""
    import pickle

    import torch

    out = tmp_path / "budget"
    args = ["gan", "train", "--data", str(tiny_data), "--out", str(out), "--window", str(WINDOW)]
    assert main([*args, "--epochs", "100000", "--max-minutes", "0.02"]) == 0
    assert "shortened from 100000" in capsys.readouterr().err
    training = json.loads((out / "manifest.json").read_text())["training"]
    assert training["shortened_by_time_budget"] and 1 <= training["epochs"] < 100000
    assert training["options"]["max_seconds"] == 1.0  # the 1.2 s budget minus loading and the save reserve

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("a GAN folder must load without unpickling")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert artefact.load(out).classes == ["1", "2"]
    assert main([*args, "--out", str(tmp_path / "x"), "--max-minutes", "-1"]) == 2
