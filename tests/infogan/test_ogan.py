"""O-GAN (``--objective ogan``): the correlation term, the mean-score discriminator, its loss, training and resume.

The pictures, the feature loader and the evaluation of O-GAN runs are tested next to their InfoGAN
counterparts: ``test_sample.py``, ``test_checkpoint.py``, ``test_evaluate.py`` and ``test_cli.py``.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F

import infogan.objective
from dim.core.checkpoint import load_checkpoint
from infogan.codes import Latent, LatentSpec
from infogan.config import TrainConfig
from infogan.models import OGAN
from infogan.objective import GANBatch, OGANObjective, pearson_correlation
from infogan.train import TrainingDiverged, train
from tests.infogan.conftest import TINY_IMAGE_SIZE

# Two rows over D = 3 dimensions, by hand:
# row 0: x' = [-1, 0, 1]; y = [2, 4, 7] has mean 13/3, y' = [-7/3, -1/3, 8/3];
#        <x', y'> = 7/3 + 8/3 = 5, ||x'|| = sqrt(2), ||y'|| = sqrt(114) / 3, rho = 15 / sqrt(228).
# row 1: y = [3, 2, 1] falls as x rises, linearly: rho = -1.
X = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
Y = torch.tensor([[2.0, 4.0, 7.0], [3.0, 2.0, 1.0]])
RHO = [15 / math.sqrt(228), -1.0]


def test_correlation_is_the_hand_computed_pearson_coefficient_per_row():
    torch.testing.assert_close(pearson_correlation(X, Y), torch.tensor(RHO))
    assert RHO[0] == pytest.approx(0.99340, abs=1e-5)


def test_correlation_ignores_each_rows_mean_and_scale():
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 8, generator=generator), torch.randn(5, 8, generator=generator)
    scale = torch.rand(5, 1, generator=generator) * 10 + 0.1  # a positive factor per row
    shift = torch.randn(5, 1, generator=generator) * 100  # a constant per row, as a real/fake score moves E(x)
    torch.testing.assert_close(pearson_correlation(x, scale * y + shift), pearson_correlation(x, y))
    torch.testing.assert_close(pearson_correlation(x, -y), -pearson_correlation(x, y))  # a negative factor flips it
    with pytest.raises(ValueError, match="D >= 2"):
        pearson_correlation(x[:, :1], y[:, :1])


class IdentityEncoder:
    """A stand-in for O-GAN's networks whose E(x) is the input itself: ``(B, D)`` "images" -> their mean, themselves."""

    def discriminate(self, images, groups=1):
        return images.mean(dim=1), images


def test_the_losses_are_the_standard_gan_on_the_mean_score_minus_lambda_rho():
    real = torch.tensor([[1.0, 3.0, 5.0], [0.0, 0.0, 0.0]])  # scores avg(E(x)): 3 and 0
    fake = Y  # scores 13/3 and 2; E(G(z)) against z = X: rho as above
    latent = Latent(X, torch.zeros(2, 0, dtype=torch.int64), torch.zeros(2, 0))
    objective = OGANObjective(IdentityEncoder(), lambda_corr=0.5)

    def softplus(v):
        return math.log1p(math.exp(v))

    rho = (RHO[0] + RHO[1]) / 2
    d_adversarial = (softplus(-3) + softplus(0)) / 2 + (softplus(13 / 3) + softplus(2)) / 2
    total, adversarial = objective.discriminator(real, fake, latent)
    assert adversarial.item() == pytest.approx(d_adversarial)
    assert total.item() == pytest.approx(d_adversarial - 0.5 * rho)
    g = objective.generator(fake, latent)
    g_adversarial = (softplus(-13 / 3) + softplus(-2)) / 2
    assert (g.adversarial.item(), g.correlation.item()) == pytest.approx((g_adversarial, rho))
    assert g.total.item() == pytest.approx(g_adversarial - 0.5 * rho)
    # The interface's steps: the same losses, and the values named by metric_names (d_loss | g_loss, corr).
    batch = GANBatch(real, latent, fake)
    d_step, g_step = objective.discriminator_step(batch), objective.generator_step(batch)
    assert d_step.loss.item() == pytest.approx(d_adversarial - 0.5 * rho)
    assert g_step.loss.item() == pytest.approx(g_adversarial - 0.5 * rho)
    values = torch.cat([d_step.values, g_step.values]).tolist()
    assert objective.metric_names == ["d_loss", "g_loss", "corr"]
    assert values == pytest.approx([d_adversarial, g_adversarial, rho])


def test_the_discriminator_scores_an_image_by_the_mean_of_its_encoding():
    spec = LatentSpec(noise_dim=5, noise="normal", categorical=(), continuous=0, needs_code=False)
    model = OGAN(spec, 1, TINY_IMAGE_SIZE)
    assert model.encoder.head.out_features == 5 and not hasattr(model, "q_head")
    images = torch.rand(4, 1, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE) * 2 - 1
    scores, codes = model.discriminate(images)
    assert scores.shape == (4,) and codes.shape == (4, 5)
    torch.testing.assert_close(scores, codes.mean(dim=1))
    torch.testing.assert_close(codes, model.encoder(images))
    d_ids, g_ids = {id(p) for p in model.d_parameters()}, {id(p) for p in model.g_parameters()}
    assert not d_ids & g_ids and d_ids | g_ids == {id(p) for p in model.parameters()}
    assert model.generator.net[0].in_features == 5  # G reads the noise alone
    with pytest.raises(ValueError, match="no codes"):
        OGAN(LatentSpec(), 1, TINY_IMAGE_SIZE)


def _grad_norms(loss, params):
    grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
    return [0.0 if g is None else g.norm().item() for g in grads]


def test_the_correlation_trains_g_in_the_g_step_and_e_in_the_d_step(build_trainer):
    trainer = build_trainer(objective="ogan", noise_dim=8)
    model, objective = trainer.model, trainer.objective
    latent = trainer.spec.sample(8)
    fake = model.generator(trainer.spec.generator_input(latent))
    g = objective.generator(fake, latent)
    assert all(n > 0 for n in _grad_norms(g.correlation, model.g_parameters()))
    real = torch.rand(8, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE) * 2 - 1
    total, adversarial = objective.discriminator(real, fake.detach(), latent)
    assert all(n > 0 for n in _grad_norms(adversarial - total, list(model.encoder.head.parameters())))
    values = trainer.train_step()
    assert trainer.metric_names == ["d_loss", "g_loss", "corr"] and values.shape == (3,)
    assert -1 <= values[2].item() <= 1


def test_configs_fill_in_each_objectives_latent_space():
    ogan = TrainConfig(objective="ogan").resolved()
    assert (ogan.noise, ogan.categorical, ogan.continuous, ogan.lambda_corr) == ("normal", (), 0, 0.5)
    assert (ogan.lambda_invariance, ogan.lambda_iic) == (0.0, 0.0)  # the preset's terms need a categorical code
    spec = ogan.latent_spec()
    assert spec.input_dim == 62 and spec.code_names == [] and spec.noise_std == 1.0
    infogan_config = TrainConfig().resolved()
    assert (infogan_config.noise, infogan_config.categorical, infogan_config.continuous) == ("uniform", (10,), 2)
    assert infogan_config.lambda_corr is None and infogan_config.latent_spec().noise_std == pytest.approx(3 ** -0.5)
    assert TrainConfig(**asdict(ogan)).resolved() == ogan  # a saved run keeps its objective


@pytest.mark.parametrize(
    "options, message",
    [
        ({"objective": "vae"}, "unknown objective 'vae'; choose one of infogan, ogan"),
        ({"lambda_corr": 0.5}, "pass --objective ogan"),
        ({"objective": "ogan", "categorical": (10,)}, "noise z alone, without codes: drop --categorical"),
        ({"objective": "ogan", "continuous": 2}, "drop --categorical and --continuous"),
        ({"objective": "ogan", "noise_dim": 1}, "O-GAN needs noise_dim >= 2"),
        ({"objective": "ogan", "separate_q": True}, "--separate-q is an option of InfoGAN's Q"),
        ({"objective": "ogan", "learn_sigma": True}, "--learn-sigma is an option of InfoGAN's Q"),
        ({"objective": "ogan", "lambda_iic": 1.0}, "lambda_iic is an InfoGAN term"),
        ({"objective": "ogan", "lambda_info": 0.5}, "O-GAN's weight is --lambda-corr"),
        ({"objective": "ogan", "lambda_corr": -1.0}, "lambda_corr must be >= 0"),
    ],
)
def test_bad_configs_are_refused_with_what_to_do(options, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**options).resolved()


def test_run_writes_the_correlation_samples_reconstructions_and_an_ogan_checkpoint(build_trainer):
    trainer = build_trainer(objective="ogan", noise_dim=8)
    result = trainer.run()
    run_dir = trainer.run_dir
    assert result.step == 4 and -1 <= result.metrics["corr"] <= 1
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert list(rows[0]) == ["step", "d_loss", "g_loss", "corr", "it_per_s"] and len(rows) == 4
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == ["step_000002.png", "step_000004.png"]
    assert (run_dir / "reconstructions.png").is_file()
    checkpoint = load_checkpoint(run_dir, "ogan")
    assert checkpoint["step"] == 4 and any(name.startswith("encoder.head") for name in checkpoint["modules"]["model"])


def test_resume_is_exact(tmp_path, make_config):
    """4 steps straight == 2 steps, then resume for 2 more; the resumed run is O-GAN without saying so again."""
    options = {"objective": "ogan", "noise_dim": 8}
    straight = train(make_config(out=str(tmp_path / "a"), **options), progress=False)
    half = train(make_config(out=str(tmp_path / "b"), iterations=2, **options), progress=False)
    resumed = train(make_config(out=str(half.run_dir), iterations=4), resume=True, progress=False)
    a, b = load_checkpoint(straight.run_dir, "ogan"), load_checkpoint(resumed.run_dir, "ogan")
    assert a["step"] == b["step"] == 4 and resumed.steps == 2 and b["config"]["objective"] == "ogan"
    for name, tensor in a["modules"]["model"].items():
        assert torch.equal(tensor, b["modules"]["model"][name]), name
    for name in ("d", "g"):
        assert torch.equal(a["optimizers"][name]["state"][0]["exp_avg"], b["optimizers"][name]["state"][0]["exp_avg"])
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])


def test_nan_stops_an_ogan_run_and_keeps_the_last_good_checkpoint(build_trainer, monkeypatch):
    calls = []

    def poisoned(fake_logits):  # G's loss turns NaN from the third step on
        calls.append(None)
        loss = F.softplus(-fake_logits).mean()
        return loss * math.nan if len(calls) >= 3 else loss

    monkeypatch.setattr(infogan.objective, "generator_loss", poisoned)
    trainer = build_trainer(objective="ogan", noise_dim=8, iterations=10)
    with pytest.raises(TrainingDiverged, match=r"diverged by step 3: g_loss=nan.*step 2"):
        trainer.run()
    assert load_checkpoint(trainer.run_dir, "ogan")["step"] == 2
