"""The training loop: learning, exact resume, run-directory contents, augmentation."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from dim.config import PRESET_FIELDS, PRESETS, TrainConfig
from dim.core.checkpoint import load_checkpoint
from dim.core.shapes import make_shapes
from dim.train import FOLDER_IMAGE_SIZES, Trainer, epoch_order, folder_image_size, train, train_folder

TINY = TrainConfig(dataset="shapes", batch_size=8, critic_hidden=16, z_dim=16, knn=False, log_every=2, device="cpu")


# The best preset's cosine rate depends on max_steps, which the resumed run changes: hold it constant here.
@pytest.mark.parametrize("settings", [{"preset": "su-jianlin"}, {"preset": "best", "lr_schedule": "constant"}],
                         ids=["su-jianlin", "best"])
def test_resume_continues_exactly(tmp_path, settings):
    base = dataclasses.replace(TINY, **settings)
    straight = train(dataclasses.replace(base, out=str(tmp_path / "a"), max_steps=6), progress=False)
    first = train(dataclasses.replace(base, out=str(tmp_path / "b"), max_steps=3), progress=False)
    assert first.step == 3
    resumed = train(dataclasses.replace(base, out=str(tmp_path / "b"), max_steps=6), resume=True, progress=False)
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


@pytest.mark.parametrize(("settings", "expected"), [({}, "MI local "), ({"alpha": 0.5}, "MI global ")])
def test_the_epoch_line_gives_the_mi_of_the_terms_that_are_on(tmp_path, capsys, settings, expected):
    train(dataclasses.replace(TINY, out=str(tmp_path / "run"), max_steps=1, **settings), progress=True)
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if " step 1: loss " in line]
    assert lines and expected in lines[0] and ("global" in lines[0]) == ("alpha" in settings)


def test_resume_needs_a_checkpoint_and_a_fresh_run_needs_an_empty_dir(tmp_path):
    with pytest.raises(FileNotFoundError):
        train(dataclasses.replace(TINY, out=str(tmp_path / "none"), max_steps=1), resume=True, progress=False)
    train(dataclasses.replace(TINY, out=str(tmp_path / "run"), max_steps=1), progress=False)
    with pytest.raises(ValueError, match="already holds a run"):
        train(dataclasses.replace(TINY, out=str(tmp_path / "run"), max_steps=1), progress=False)


def test_config_fills_presets_and_checks_choices():
    paper = TrainConfig(preset="paper", batch_size=32).resolved()
    assert paper.batch_size == 32  # given explicitly: wins over the preset's 64
    assert {name: getattr(paper, name) for name in PRESET_FIELDS if name != "batch_size"} == {
        name: value for name, value in PRESETS["paper"].items() if name != "batch_size"
    }
    assert TrainConfig().resolved().preset == "best"
    with pytest.raises(ValueError, match="unknown preset 'slow'; choose one of best, paper, su-jianlin, gpu"):
        TrainConfig(preset="slow").resolved()
    with pytest.raises(ValueError, match="augment"):
        TrainConfig(augment="mixup").resolved()
    with pytest.raises(ValueError, match="augment"):
        TrainConfig(preset="su-jianlin", views=2).resolved()  # two identical views
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="step").resolved()
    with pytest.raises(ValueError, match="critic_temperature.*separable critic"):
        TrainConfig(preset="su-jianlin", critic_temperature=0.1).resolved()  # concat critics have no cosine scores
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp16").resolved()


def test_the_faithful_presets_keep_their_sources_settings():
    su = TrainConfig(preset="su-jianlin").resolved()  # kexue.fm/archives/6024
    assert (su.bound, su.negatives, su.critic, su.prior, su.augment) == ("jsd", "shuffle", "concat", "kl", "none")
    assert (su.alpha, su.beta, su.gamma) == (0.5, 1.5, 0.01)
    paper = TrainConfig(preset="paper").resolved()  # Hjelm et al. 2019, DIM(L) infoNCE
    assert (paper.bound, paper.negatives, paper.critic, paper.prior) == ("infonce", "locations", "separable", "adversarial")
    assert (paper.alpha, paper.beta, paper.gamma, paper.lr, paper.critic_hidden) == (0.0, 1.0, 0.1, 1e-4, 512)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_trains_at_tiny_size(tmp_path, preset):
    assert set(PRESETS[preset]) == set(PRESET_FIELDS)  # each preset sets every preset field
    config = dataclasses.replace(
        TINY, preset=preset, out=str(tmp_path / preset), max_steps=2, batch_size=8, compile=False, critic_hidden=16
    )
    result = train(config, progress=False)
    assert result.step == 2 and math.isfinite(result.metrics["loss"])
    assert load_checkpoint(tmp_path / preset, "dim")["config"]["preset"] == preset


def test_epoch_order_depends_on_seed_and_epoch_only():
    assert torch.equal(epoch_order(50, 1, 2), epoch_order(50, 1, 2))
    assert not torch.equal(epoch_order(50, 1, 2), epoch_order(50, 1, 3))
    assert sorted(epoch_order(50, 1, 2).tolist()) == list(range(50))


# ---------------------------------------------------------------- image folders, larger images, streaming

def write_folder(root, count: int = 48, size: tuple[int, int] = (60, 45), bad: str | None = None):
    """``root/{train,test}/<shape>/*.jpg``: shapes scenes at ``size`` (w, h); ``bad`` names a corrupt training file."""
    from PIL import Image

    for split, number, seed in [("train", count, 0), ("test", 12, 1)]:
        images, labels = make_shapes(number, image_size=max(size), seed=seed)
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = root / split / ("circle", "square", "triangle")[int(label)]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.permute(1, 2, 0).numpy()).resize(size).save(folder / f"{i:03d}.jpg", quality=90)
    if bad is not None:
        (root / "train" / bad).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def test_streaming_trains_the_same_model_as_memory_and_resumes_mid_epoch(tmp_path):
    folder = write_folder(tmp_path / "photos")
    base = dataclasses.replace(TINY, dataset=str(folder), lr_schedule="constant", num_workers=1)  # 6 steps an epoch
    memory = train(dataclasses.replace(base, out=str(tmp_path / "memory"), stream=False, max_steps=9), progress=False)
    first = train(dataclasses.replace(base, out=str(tmp_path / "stream"), stream=True, max_steps=4), progress=False)
    assert first.step == 4 and load_checkpoint(tmp_path / "stream", "dim")["state"]["batch"] == 4  # stopped mid-epoch
    resumed = train(dataclasses.replace(base, out=str(tmp_path / "stream"), stream=True, max_steps=9),
                    resume=True, progress=False)
    assert memory.step == resumed.step == 9
    expected, actual = load_checkpoint(tmp_path / "memory", "dim"), load_checkpoint(tmp_path / "stream", "dim")
    for name, tensor in expected["modules"]["model"].items():  # same pixels, batches and augmentations
        assert torch.equal(tensor, actual["modules"]["model"][name]), name
    assert (actual["state"]["epoch"], actual["state"]["batch"]) == (1, 3)


def test_a_bad_file_mid_stream_is_reported_and_training_goes_on(tmp_path, caplog):
    folder = write_folder(tmp_path / "photos", bad="circle/zz-broken.jpg")
    config = dataclasses.replace(TINY, dataset=str(folder), out=str(tmp_path / "run"), stream=True, num_workers=0,
                                 epochs=1, knn=True, knn_k=5)
    trainer = Trainer(config, progress=False)
    try:
        result = trainer.run()
        assert list(trainer.skipped) == ["circle/zz-broken.jpg"] and "corrupt" in trainer.skipped["circle/zz-broken.jpg"]
    finally:
        trainer.close()
    assert result.step == 49 // 8 and 0.0 <= result.metrics["knn_top1"] <= 1.0
    assert "skipped the unreadable training image circle/zz-broken.jpg" in caplog.text


def test_streaming_needs_image_files(tmp_path):
    with pytest.raises(ValueError, match="--stream needs an image folder"):
        train(dataclasses.replace(TINY, out=str(tmp_path / "run"), stream=True, max_steps=1), progress=False)


@pytest.mark.parametrize("size, local", [(64, 8), (96, 6), (128, 8)])
def test_large_images_train_at_their_size_and_the_model_records_it(tmp_path, size, local):
    from dim import load_features

    folder = write_folder(tmp_path / "photos", count=16, size=(200, 150))
    config = dataclasses.replace(TINY, dataset=str(folder), out=str(tmp_path / "run"), image_size=size, batch_size=4,
                                 max_steps=2, stream=size == 96, num_workers=0)
    trainer = Trainer(config, progress=False)
    try:
        assert trainer.model.encoder.local_shape[1:] == (local, local)
        assert trainer.train_set.image_size == size
        trainer.run()
    finally:
        trainer.close()
    extractor = load_features(tmp_path / "run")
    assert extractor.image_size == size
    assert extractor(torch.zeros(2, 3, size, size, dtype=torch.uint8)).shape == (2, 16)


@pytest.mark.parametrize("median_side, size", [(None, 32), (20, 32), (63, 32), (64, 64), (95, 64), (96, 96),
                                               (375, 96)])
def test_the_folder_image_size_is_the_largest_that_does_not_enlarge(median_side, size):
    assert FOLDER_IMAGE_SIZES == (32, 64, 96)
    assert folder_image_size(median_side) == size


def test_train_folder_trains_the_best_preset_for_the_budget(tmp_path):
    folder = write_folder(tmp_path / "photos", count=16, size=(90, 70))  # 16 in train/; shorter side 70: 64 px
    run_dir = train_folder(folder, tmp_path / "run", minutes=2.5, max_steps=2, device="cpu", progress=False)
    assert run_dir == tmp_path / "run"
    config = load_checkpoint(run_dir, "dim")["config"]
    assert config["preset"] == "best" and config["image_size"] == 64 and not config["knn"]
    assert config["time_limit"] == 2.5 and config["max_steps"] == 2 and config["lr_schedule"] == "cosine"
    assert config["batch_size"] == 16 // 4  # a small folder: 4 steps per epoch, not one batch of 128
    assert load_checkpoint(run_dir, "dim")["step"] == 2
    with pytest.raises(ValueError, match="minutes must be positive, got 0"):
        train_folder(folder, tmp_path / "other", minutes=0)
    single = write_folder(tmp_path / "one", count=1, size=(40, 40))
    with pytest.raises(ValueError, match="has 1 training images; training needs at least 2"):
        train_folder(single, tmp_path / "other", minutes=1, image_size=32)
