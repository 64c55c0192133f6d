"""The settings and the training loop: resolving a config, run-directory outputs, exact resume, divergence guard."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict

import pytest
import torch

import infogan.objective
from dim.core.checkpoint import load_checkpoint
from infogan.checkpoint import load_run
from infogan.config import TrainConfig
from infogan.train import TrainingDiverged, train


def test_resolved_returns_a_filled_in_copy_and_leaves_the_original_alone():
    given = TrainConfig(preset="paper", lambda_iic=0.5)
    resolved = given.resolved()
    assert resolved is not given
    assert (given.noise, given.categorical, given.continuous, given.lambda_invariance, given.lambda_iic) == (
        None, None, None, None, 0.5
    )
    assert (resolved.noise, resolved.categorical, resolved.continuous) == ("uniform", (10,), 2)  # InfoGAN's defaults
    assert (resolved.lambda_invariance, resolved.lambda_iic) == (0.0, 0.5)  # the preset's, unless given
    assert resolved.resolved() == resolved  # idempotent: a saved run resolves to itself
    assert TrainConfig(**asdict(resolved)) == resolved  # and is stored as a plain dict


def test_presets_fill_the_objective_terms_unless_given():
    best = TrainConfig().resolved()  # the default preset
    assert (best.lambda_invariance, best.lambda_iic) == (1.0, 1.0)
    assert TrainConfig(categorical=()).resolved().lambda_iic == 0.0  # both terms act on a categorical code
    assert TrainConfig(categorical=[3, 4]).resolved().categorical == (3, 4)  # a JSON list becomes a tuple


@pytest.mark.parametrize(
    "options, message",
    [
        ({"objective": "vae"}, "unknown objective 'vae'; choose one of infogan, ogan"),
        ({"preset": "fast"}, "unknown preset 'fast'; choose one of best, paper"),
        ({"noise": "cauchy"}, "noise must be one of uniform, normal, got 'cauchy'"),
        ({"batch_size": 1}, r"batch_size must be >= 2 \(BatchNorm needs a batch\)"),
        ({"lambda_info": -1.0}, "lambda_info must be >= 0"),
        ({"lr_g": 0.0}, "lr_g must be positive"),
        ({"beta1": 1.0}, r"Adam's betas must lie in \[0, 1\)"),
        ({"categorical": (), "continuous": 0}, "InfoGAN needs at least one code"),
        ({"lambda_invariance": 1.0, "categorical": ()}, "lambda_invariance needs a categorical code"),
        ({"lambda_iic": 1.0, "categorical": ()}, "lambda_iic needs a categorical code"),
        ({"lambda_iic": -1.0}, "lambda_iic must be >= 0"),
    ],
)
def test_resolved_refuses_bad_settings_with_what_to_do(options, message):
    config = TrainConfig(**options)  # a plain record: building it checks nothing
    with pytest.raises(ValueError, match=message):
        config.resolved()


def test_run_writes_metrics_samples_and_checkpoint(build_trainer):
    trainer = build_trainer()
    result = trainer.run()
    run_dir = trainer.run_dir
    assert result.step == result.steps == 4 and result.steps_per_s > 0
    assert math.isfinite(result.metrics["mi_c1"]) and result.run_dir == run_dir
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert [int(row["step"]) for row in rows] == [1, 2, 3, 4]
    assert {"d_loss", "g_loss", "info_loss", "mi_c1", "mi_c2", "mi_c3", "it_per_s"} <= set(rows[0])
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == ["step_000002.png", "step_000004.png"]
    assert load_checkpoint(run_dir, "infogan")["step"] == 4
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["noise"] == "uniform" and saved["categorical"] == [10]  # the resolved settings


@pytest.mark.parametrize(
    "options", [{}, {"lambda_invariance": 1.0}, {"lambda_iic": 1.0}], ids=["paper", "invariance", "iic"]
)
def test_resume_is_exact(tmp_path, make_config, options):
    """4 steps straight == 2 steps, then resume for 2 more (same seed, CPU; the warps replay too)."""
    straight = train(make_config(out=str(tmp_path / "a"), **options), progress=False)
    half = train(make_config(out=str(tmp_path / "b"), iterations=2, **options), progress=False)
    resumed = train(make_config(out=str(half.run_dir), iterations=4), resume=True, progress=False)
    a, b = load_checkpoint(straight.run_dir, "infogan"), load_checkpoint(resumed.run_dir, "infogan")
    assert a["step"] == b["step"] == 4 and resumed.steps == 2
    for name, tensor in a["modules"]["model"].items():
        assert torch.equal(tensor, b["modules"]["model"][name]), name
    for name in ("d", "g"):
        assert torch.equal(a["optimizers"][name]["state"][0]["exp_avg"], b["optimizers"][name]["state"][0]["exp_avg"])
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])


def test_existing_run_needs_resume(tmp_path, make_config):
    train(make_config(out=str(tmp_path), iterations=1), progress=False)
    with pytest.raises(ValueError, match="--resume"):
        train(make_config(out=str(tmp_path), iterations=1), progress=False)
    with pytest.raises(ValueError, match="already at step 1"):
        train(make_config(out=str(tmp_path), iterations=1), resume=True, progress=False)


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(build_trainer, monkeypatch):
    calls = []

    def poisoned(fake_logits):  # G's loss turns NaN from the third step on
        calls.append(None)
        loss = fake_logits.mean() * 0 + 1
        return loss * math.nan if len(calls) >= 3 else loss

    monkeypatch.setattr(infogan.objective, "generator_loss", poisoned)
    trainer = build_trainer(iterations=10)
    with pytest.raises(TrainingDiverged, match=r"diverged by step 3: g_loss=nan.*checkpoint \(step 2\)"):
        trainer.run()
    run = load_run(trainer.run_dir)
    assert run.step == 2
    assert all(torch.isfinite(p).all() for p in run.model.parameters())


def test_exploding_loss_stops_training(build_trainer):
    trainer = build_trainer(max_loss=1e-3)
    with pytest.raises(TrainingDiverged, match="no checkpoint was written yet"):
        trainer.run()
    assert not (trainer.run_dir / "checkpoint.pt").exists()
