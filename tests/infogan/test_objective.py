"""The objectives: L_I per code, where the information gradient goes, and the one interface the trainer calls."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dim.mi import PairedCategoricalMI
from infogan.augment import random_affine
from infogan.codes import LatentSpec, QParams
from infogan.models import OGAN, build_model
from infogan.objective import (
    GANBatch,
    GANObjective,
    InfoGANObjective,
    InfoLoss,
    OGANObjective,
    StepLoss,
    build_objective,
    discriminator_loss,
    generator_loss,
)
from infogan.train import Trainer
from tests.infogan.conftest import TINY_IMAGE_SIZE


def test_categorical_mi_is_ln10_minus_cross_entropy():
    spec = LatentSpec(continuous=0)
    latent = spec.sample(16)
    logits = torch.randn(16, 10)
    out = InfoLoss(spec)(QParams([logits], torch.zeros(16, 0), None), latent)
    cross_entropy = F.cross_entropy(logits, latent.categorical[:, 0])
    torch.testing.assert_close(out.loss, cross_entropy)
    torch.testing.assert_close(out.mi, (math.log(10) - cross_entropy).reshape(1))


def test_perfect_recovery_reaches_ln10_and_sigma1_bound():
    spec = LatentSpec()
    latent = spec.sample(32)
    logits = F.one_hot(latent.categorical[:, 0], 10).float() * 100
    out = InfoLoss(spec)(QParams([logits], latent.continuous.clone(), None), latent)
    # categorical: ln 10; continuous with sigma = 1 and an exact mean: ln 2 - ln(2 pi) / 2
    expected = [math.log(10), math.log(2) - 0.5 * math.log(2 * math.pi)] + [math.log(2) - 0.5 * math.log(2 * math.pi)]
    torch.testing.assert_close(out.mi, torch.tensor(expected), atol=1e-4, rtol=0)


def test_lambda_cont_weights_the_continuous_nll():
    spec = LatentSpec(categorical=(), continuous=2)
    latent = spec.sample(8)
    q = QParams([], torch.zeros(8, 2), None)
    torch.testing.assert_close(InfoLoss(spec, lambda_cont=0.5)(q, latent).loss, 0.5 * InfoLoss(spec)(q, latent).loss)


def test_gan_losses_are_softplus_cross_entropies():
    real, fake = torch.tensor([0.0, 2.0]), torch.tensor([0.0, -1.0])
    expected_d = -(torch.sigmoid(real).log().mean() + (1 - torch.sigmoid(fake)).log().mean())
    torch.testing.assert_close(discriminator_loss(real, fake), expected_d)
    torch.testing.assert_close(generator_loss(fake), -torch.sigmoid(fake).log().mean())


def _batch(trainer: Trainer):
    latent = trainer.spec.sample(8)
    fake = trainer.model.generator(trainer.spec.generator_input(latent))
    real = torch.rand(8, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE) * 2 - 1
    return real, fake, latent


def _grad_norms(loss, params):
    grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
    return [0.0 if g is None else g.norm().item() for g in grads]


def test_info_gradient_reaches_g_and_q(build_trainer):
    trainer = build_trainer()
    _, fake, latent = _batch(trainer)
    info = trainer.objective.generator(fake, latent).info
    model = trainer.model
    assert all(n > 0 for n in _grad_norms(info.loss, list(model.generator.parameters())))
    assert all(n > 0 for n in _grad_norms(info.loss, list(model.q_head.parameters())))


def test_shared_trunk_gets_the_info_gradient_in_the_d_step(build_trainer):
    trainer = build_trainer()
    real, fake, latent = _batch(trainer)
    total, adversarial = trainer.objective.discriminator(real, fake.detach(), latent)
    assert all(n > 0 for n in _grad_norms(total - adversarial, list(trainer.model.trunk.parameters())))


def test_separate_q_keeps_the_info_gradient_out_of_d(build_trainer):
    trainer = build_trainer(separate_q=True)
    real, fake, latent = _batch(trainer)
    total, adversarial = trainer.objective.discriminator(real, fake.detach(), latent)
    assert total is adversarial  # no information term in D's loss
    info = trainer.objective.generator(fake, latent).info
    assert all(n == 0 for n in _grad_norms(info.loss, trainer.model.d_parameters()))
    assert all(n > 0 for n in _grad_norms(info.loss, list(trainer.model.q_trunk.parameters())))


def test_lambda_info_zero_is_a_plain_gan(build_trainer):
    trainer = build_trainer(lambda_info=0.0)
    q_before = [p.detach().clone() for p in trainer.model.q_head.parameters()]
    g_before = [p.detach().clone() for p in trainer.model.generator.parameters()]
    values = trainer.train_step()
    assert torch.isfinite(values).all() and values.shape == (3 + 3,)
    assert all(torch.equal(a, b) for a, b in zip(q_before, trainer.model.q_head.parameters()))  # Q is not trained
    assert not all(torch.equal(a, b) for a, b in zip(g_before, trainer.model.generator.parameters()))


def test_categorical_loss_leaves_the_continuous_codes_out():
    spec = LatentSpec()
    latent = spec.sample(16)
    logits = torch.randn(16, 10)
    q = QParams([logits], torch.randn(16, 2), None)
    torch.testing.assert_close(InfoLoss(spec).categorical_loss(q, latent),
                               F.cross_entropy(logits, latent.categorical[:, 0]))


def test_invariance_term_scores_q_on_the_warped_fakes(build_trainer):
    trainer = build_trainer(lambda_invariance=0.5)
    real, fake, latent = _batch(trainer)
    warped = random_affine(fake)
    invariance = trainer.objective.generator(fake, latent, warped).invariance
    # D's trunk reads [fake; warped] as two BatchNorm groups: the same as Q on the warped batch alone
    expected = F.cross_entropy(trainer.model.recognize(warped).logits[0], latent.categorical[:, 0])
    torch.testing.assert_close(invariance, expected)
    model = trainer.model
    assert all(n > 0 for n in _grad_norms(invariance, list(model.generator.parameters())))  # through the warp
    assert all(n > 0 for n in _grad_norms(invariance, list(model.q_head.parameters())))

    total, adversarial = trainer.objective.discriminator(real, fake.detach(), latent, warped.detach())
    _, plain_adversarial = trainer.objective.discriminator(real, fake.detach(), latent)
    torch.testing.assert_close(adversarial, plain_adversarial)  # the warped group leaves D's game alone
    info = trainer.objective.info_loss(model.recognize(fake.detach()), latent).loss
    invariance_d = F.cross_entropy(model.recognize(warped.detach()).logits[0], latent.categorical[:, 0])
    torch.testing.assert_close(total - adversarial, info + 0.5 * invariance_d)


def test_invariance_is_logged_and_needs_a_categorical_code(build_trainer):
    trainer = build_trainer(lambda_invariance=1.0)
    values = trainer.train_step()
    assert trainer.metric_names[-1] == "invariance_loss"
    assert values.shape == (len(trainer.metric_names),) and torch.isfinite(values).all()


def test_iic_term_is_q_mutual_information_on_real_images_and_their_warps(build_trainer):
    trainer = build_trainer(lambda_iic=0.5)
    real, fake, latent = _batch(trainer)
    real_warped = random_affine(real)
    model, iic = trainer.model, PairedCategoricalMI()
    expected = -iic(model.recognize(real).logits[0], model.recognize(real_warped).logits[0]).loss

    g = trainer.objective.generator(fake, latent, None, real, real_warped)
    torch.testing.assert_close(g.iic, expected)  # D's trunk reads [real; warped] as two BatchNorm groups
    torch.testing.assert_close(g.total, g.adversarial + g.info.loss - 0.5 * g.iic)
    assert all(n > 0 for n in _grad_norms(g.iic, list(model.q_head.parameters())))
    assert all(n == 0 for n in _grad_norms(g.iic, [*model.generator.parameters(), *model.trunk.parameters()]))

    total, adversarial = trainer.objective.discriminator(real, fake.detach(), latent, None, real_warped)
    _, plain_adversarial = trainer.objective.discriminator(real, fake.detach(), latent)
    torch.testing.assert_close(adversarial, plain_adversarial)  # the warped real group leaves D's game alone
    info = trainer.objective.info_loss(model.recognize(fake.detach()), latent).loss
    torch.testing.assert_close(total - adversarial, info - 0.5 * expected)
    assert all(n > 0 for n in _grad_norms(total - adversarial - info, list(model.trunk.parameters())))


def test_iic_with_a_separate_q_trains_q_trunk_in_the_g_step(build_trainer):
    trainer = build_trainer(lambda_iic=1.0, separate_q=True)
    real, fake, latent = _batch(trainer)
    real_warped = random_affine(real)
    total, adversarial = trainer.objective.discriminator(real, fake.detach(), latent, None, real_warped)
    assert total is adversarial
    iic = trainer.objective.generator(fake, latent, None, real, real_warped).iic
    assert all(n > 0 for n in _grad_norms(iic, list(trainer.model.q_trunk.parameters())))
    assert all(n == 0 for n in _grad_norms(iic, trainer.model.d_parameters()))


def test_iic_is_logged_and_needs_a_categorical_code(build_trainer):
    trainer = build_trainer(lambda_iic=1.0, lambda_invariance=1.0)
    values = trainer.train_step()
    assert trainer.metric_names[-2:] == ["invariance_loss", "iic_mi"]
    assert values.shape == (len(trainer.metric_names),) and torch.isfinite(values).all()
    assert 0 <= values[-1].item() <= math.log(10) + 1e-6


@pytest.mark.parametrize("objective", ["infogan", "ogan"])
def test_each_objective_implements_the_interface_the_trainer_calls(make_config, objective):
    config = make_config(objective=objective, noise_dim=8).resolved()
    model = build_model(config, 3, TINY_IMAGE_SIZE)
    built = build_objective(config, model)
    assert isinstance(built, GANObjective)
    assert isinstance(built, OGANObjective if isinstance(model, OGAN) else InfoGANObjective)
    assert built.metric_names[:2] == ["d_loss", "g_loss"]
    latent = model.spec.sample(8)
    batch = GANBatch(torch.rand(8, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE) * 2 - 1, latent,
                     model.generator(model.spec.generator_input(latent)))
    d, g = built.discriminator_step(batch), built.generator_step(batch)
    assert isinstance(d, StepLoss) and isinstance(g, StepLoss)
    assert d.loss.dim() == 0 and d.loss.requires_grad and not d.values.requires_grad
    assert len(d.values) + len(g.values) == len(built.metric_names)
    generator = list(model.generator.parameters())
    assert all(grad is None for grad in torch.autograd.grad(d.loss, generator, allow_unused=True))  # fakes detached
    means = dict(zip(built.metric_names, torch.cat([d.values, g.values]).tolist()))
    assert built.summary(means).startswith(f"D={means['d_loss']:.3f} G={means['g_loss']:.3f}")


def test_the_trainer_steps_each_objective_through_the_interface(build_trainer):
    for objective in ("infogan", "ogan"):
        trainer = build_trainer(objective=objective, noise_dim=8, preset="best")  # InfoGAN: with both extra terms
        assert isinstance(trainer.objective, GANObjective)
        before = [p.detach().clone() for p in trainer.model.parameters()]
        values = trainer.train_step()
        assert values.shape == (len(trainer.metric_names),) and torch.isfinite(values).all()
        assert all(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))  # D and G both moved
