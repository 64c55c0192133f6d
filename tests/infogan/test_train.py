"""The training loop: run-directory outputs, exact resume and the divergence guard."""

from __future__ import annotations

import csv
import math

import pytest
import torch

import infogan.objective
from dim.core.checkpoint import load_checkpoint
from infogan.checkpoint import load_run
from infogan.config import TrainConfig
from infogan.train import Trainer, TrainingDiverged, train


def test_fit_writes_metrics_samples_and_checkpoint(tmp_path, tiny_grey_images, make_config):
    result = Trainer(make_config(), tiny_grey_images, tmp_path).fit(progress=False)
    assert result.step == result.steps == 4 and result.steps_per_s > 0
    assert math.isfinite(result.metrics["mi_c1"]) and result.run_dir == tmp_path
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [int(row["step"]) for row in rows] == [1, 2, 3, 4]
    assert {"d_loss", "g_loss", "info_loss", "mi_c1", "mi_c2", "mi_c3", "it_per_s"} <= set(rows[0])
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step_000002.png", "step_000004.png"]
    assert load_checkpoint(tmp_path, "infogan")["step"] == 4


@pytest.mark.parametrize(
    "options", [{}, {"lambda_invariance": 1.0}, {"lambda_iic": 1.0}], ids=["paper", "invariance", "iic"]
)
def test_resume_is_exact(tmp_path, make_config, options):
    """4 steps straight == 2 steps, then resume for 2 more (same seed, CPU; the warps replay too)."""
    straight = train(make_config(dataset="shapes", out=str(tmp_path / "a"), **options), progress=False)
    half = train(make_config(dataset="shapes", out=str(tmp_path / "b"), iterations=2, **options), progress=False)
    resumed = train(make_config(dataset="shapes", out=str(half.run_dir), iterations=4), resume=True, progress=False)
    a, b = load_checkpoint(straight.run_dir, "infogan"), load_checkpoint(resumed.run_dir, "infogan")
    assert a["step"] == b["step"] == 4 and resumed.steps == 2
    for name, tensor in a["modules"]["model"].items():
        assert torch.equal(tensor, b["modules"]["model"][name]), name
    for name in ("d", "g"):
        assert torch.equal(a["optimizers"][name]["state"][0]["exp_avg"], b["optimizers"][name]["state"][0]["exp_avg"])
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])


def test_existing_run_needs_resume(tmp_path, make_config):
    train(make_config(dataset="shapes", out=str(tmp_path), iterations=1), progress=False)
    with pytest.raises(ValueError, match="--resume"):
        train(make_config(dataset="shapes", out=str(tmp_path), iterations=1), progress=False)
    with pytest.raises(ValueError, match="already at step 1"):
        train(make_config(dataset="shapes", out=str(tmp_path), iterations=1), resume=True, progress=False)


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, tiny_grey_images, make_config, monkeypatch):
    calls = []

    def poisoned(fake_logits):  # G's loss turns NaN from the third step on
        calls.append(None)
        loss = fake_logits.mean() * 0 + 1
        return loss * math.nan if len(calls) >= 3 else loss

    monkeypatch.setattr(infogan.objective, "generator_loss", poisoned)
    trainer = Trainer(make_config(iterations=10), tiny_grey_images, tmp_path)
    with pytest.raises(TrainingDiverged, match=r"diverged by step 3: g_loss=nan.*checkpoint \(step 2\)"):
        trainer.fit(progress=False)
    run = load_run(tmp_path)
    assert run.step == 2
    assert all(torch.isfinite(p).all() for p in run.model.parameters())


def test_exploding_loss_stops_training(tmp_path, tiny_grey_images, make_config):
    trainer = Trainer(make_config(max_loss=1e-3), tiny_grey_images, tmp_path)
    with pytest.raises(TrainingDiverged, match="no checkpoint was written yet"):
        trainer.fit(progress=False)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_invalid_config_values(make_config):
    with pytest.raises(ValueError, match="batch_size"):
        make_config(batch_size=1)
    with pytest.raises(ValueError, match="lambda_info"):
        make_config(lambda_info=-1)


def test_presets_fill_the_objective_terms_unless_given():
    assert (TrainConfig().lambda_invariance, TrainConfig().lambda_iic) == (1.0, 1.0)  # best, the default
    paper = TrainConfig(preset="paper")
    assert (paper.preset, paper.lambda_invariance, paper.lambda_iic) == ("paper", 0.0, 0.0)
    assert TrainConfig(preset="paper", lambda_iic=0.5).lambda_iic == 0.5  # given explicitly: kept
    assert TrainConfig(categorical=()).lambda_iic == 0.0  # both terms act on a categorical code
    assert TrainConfig.from_dict(TrainConfig(preset="paper").to_dict()) == paper  # a saved run keeps its terms
    with pytest.raises(ValueError, match="unknown preset 'fast'; choose one of best, paper"):
        TrainConfig(preset="fast")
