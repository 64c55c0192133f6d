"""The training loop: learning, exact resume, run-directory contents, augmentation."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from dim.config import TrainConfig
from dim.core.checkpoint import load_checkpoint
from dim.core.data import make_shapes
from dim.core.images import normalize_images
from dim.models import Encoder
from dim.objective import DeepInfoMax
from dim.train import Trainer, epoch_order, train

TINY = TrainConfig(dataset="shapes", batch_size=8, critic_hidden=16, z_dim=16, knn=False, log_every=2, device="cpu")


def test_loss_falls_on_shapes():
    torch.manual_seed(0)
    images = normalize_images(make_shapes(32, seed=1)[0])  # (32, 3, 32, 32)
    model = DeepInfoMax(Encoder(z_dim=16), critic_hidden=32)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(12):
        loss = model.loss(model(images))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) < sum(losses[:3])


def test_resume_continues_exactly(tmp_path):
    straight = train(dataclasses.replace(TINY, out=str(tmp_path / "a"), max_steps=6), progress=False)
    first = train(dataclasses.replace(TINY, out=str(tmp_path / "b"), max_steps=3), progress=False)
    assert first.step == 3
    resumed = train(dataclasses.replace(TINY, out=str(tmp_path / "b"), max_steps=6), resume=True, progress=False)
    assert straight.step == resumed.step == 6
    expected, actual = load_checkpoint(tmp_path / "a", "dim"), load_checkpoint(tmp_path / "b", "dim")
    for name, tensor in expected["modules"]["model"].items():
        assert torch.equal(tensor, actual["modules"]["model"][name]), name
    expected_adam, actual_adam = expected["optimizers"]["model"]["state"], actual["optimizers"]["model"]["state"]
    assert expected_adam[0]["exp_avg"].equal(actual_adam[0]["exp_avg"])
    assert (expected["state"]["epoch"], expected["state"]["batch"]) == (actual["state"]["epoch"], actual["state"]["batch"])


def test_cosine_schedule_decays_over_the_budget_that_runs_out_first(tmp_path):
    trainer = Trainer(dataclasses.replace(TINY, out=str(tmp_path / "steps"), max_steps=4, lr=1e-3, lr_schedule="cosine"),
                      progress=False)
    try:
        result = trainer.run()
        # set before the 4th and last step, at progress 3/4 of max_steps (the 10 epochs are far off)
        last = 1e-3 * 0.5 * (1 + math.cos(math.pi * 3 / 4))
        assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(last)
        assert result.rows[-1]["lr"] == pytest.approx(last)  # and logged in metrics.csv
    finally:
        trainer.close()
    timed = Trainer(dataclasses.replace(TINY, out=str(tmp_path / "time"), time_limit=2.0), progress=False)
    try:
        assert timed.budget_used(60.0) == pytest.approx(0.5)  # one of two minutes
        assert timed.budget_used(600.0) == 1.0
        timed.epoch = 5
        assert timed.budget_used(6.0) == pytest.approx(0.5)  # 5 of 10 epochs outruns 6 s of 120
    finally:
        timed.close()


def test_two_view_training_runs(tmp_path):
    config = dataclasses.replace(TINY, out=str(tmp_path / "run"), max_steps=2, views=2, augment="flip-crop-jitter")
    result = train(config, progress=False)
    assert result.step == 2 and all(math.isfinite(result.metrics[name]) for name in ("loss", "local_mi"))


def test_resume_needs_a_checkpoint_and_a_fresh_run_needs_an_empty_dir(tmp_path):
    with pytest.raises(FileNotFoundError):
        train(dataclasses.replace(TINY, out=str(tmp_path / "none"), max_steps=1), resume=True, progress=False)
    train(dataclasses.replace(TINY, out=str(tmp_path / "run"), max_steps=1), progress=False)
    with pytest.raises(ValueError, match="already holds a run"):
        train(dataclasses.replace(TINY, out=str(tmp_path / "run"), max_steps=1), progress=False)


def test_config_fills_presets_and_checks_choices():
    fast = TrainConfig(preset="fast", batch_size=32).resolved()
    assert (fast.bound, fast.negatives, fast.critic, fast.augment, fast.batch_size) == (
        "infonce", "locations", "separable", "flip-crop", 32
    )
    assert (fast.lr_schedule, TrainConfig().resolved().lr_schedule) == ("cosine", "constant")
    assert TrainConfig().resolved().bound == "jsd"
    with pytest.raises(ValueError, match="preset"):
        TrainConfig(preset="slow").resolved()
    with pytest.raises(ValueError, match="augment"):
        TrainConfig(augment="mixup").resolved()
    with pytest.raises(ValueError, match="augment"):
        TrainConfig(views=2).resolved()  # two identical views
    assert TrainConfig(preset="fast", views=2).resolved().views == 2
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="step").resolved()
    with pytest.raises(ValueError, match="critic_temperature.*separable critic"):
        TrainConfig(preset="default", critic_temperature=0.1).resolved()  # concat critics have no cosine scores
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp16").resolved()


def test_epoch_order_depends_on_seed_and_epoch_only():
    assert torch.equal(epoch_order(50, 1, 2), epoch_order(50, 1, 2))
    assert not torch.equal(epoch_order(50, 1, 2), epoch_order(50, 1, 3))
    assert sorted(epoch_order(50, 1, 2).tolist()) == list(range(50))
