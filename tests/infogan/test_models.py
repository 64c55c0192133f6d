"""G, D and Q shapes for 28x28 grey and 32x32 colour, D's grouped BatchNorm, and building a run's model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from infogan.codes import LatentSpec
from infogan.config import TrainConfig
from infogan.models import (
    FEATURE_DIM,
    OGAN,
    InfoGAN,
    OGANEncoder,
    Trunk,
    batch_norm,
    build_model,
)


@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32)])
def test_shapes(channels, size):
    model = InfoGAN(LatentSpec(), channels, size)
    latent = model.spec.sample(4)
    images = model.generator(model.spec.generator_input(latent))
    assert images.shape == (4, channels, size, size)
    assert images.abs().max() <= 1  # tanh, like normalised data
    logits, features = model.discriminate(images)
    assert logits.shape == (4,) and features.shape == (4, FEATURE_DIM)
    q = model.recognize(images, features)
    assert q.logits[0].shape == (4, 10) and q.mean.shape == (4, 2) and q.log_sigma is None


def test_learn_sigma_and_separate_q():
    model = InfoGAN(LatentSpec(), 1, 28, separate_q=True, learn_sigma=True)
    q = model.recognize(torch.randn(3, 1, 28, 28))
    assert q.log_sigma.shape == (3, 2)
    d_ids = {id(p) for p in model.d_parameters()}
    g_ids = {id(p) for p in model.g_parameters()}
    assert not d_ids & g_ids
    assert {id(p) for p in model.q_trunk.parameters()} <= g_ids
    assert {id(p) for p in model.trunk.parameters()} <= d_ids


def test_unsupported_image_size():
    with pytest.raises(ValueError, match="multiple of 4"):
        InfoGAN(LatentSpec(), 1, 30)


def test_grouped_batch_norm_equals_two_separate_passes():
    """One pass over [real; fake] with groups=2 == two passes: outputs, gradients and running stats."""
    torch.manual_seed(0)
    joint = Trunk(1, 28).double()  # float64, so the comparison is not blurred by rounding
    separate = Trunk(1, 28).double()
    separate.load_state_dict(joint.state_dict())
    real = torch.randn(6, 1, 28, 28, dtype=torch.float64)
    fake = torch.randn(6, 1, 28, 28, dtype=torch.float64) * 2 + 1

    out_joint = joint(torch.cat([real, fake]), groups=2)
    out_separate = torch.cat([separate(real), separate(fake)])
    torch.testing.assert_close(out_joint, out_separate)

    weights = torch.randn_like(out_joint)
    (out_joint * weights).sum().backward()
    (out_separate * weights).sum().backward()
    for (name, a), b in zip(joint.named_parameters(), separate.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)
    for (name, a), b in zip(joint.named_buffers(), separate.buffers()):
        torch.testing.assert_close(a, b, msg=name)


def test_grouped_batch_norm_leaves_an_earlier_graph_intact():
    layer = nn.BatchNorm1d(4)
    x = torch.randn(8, 4, requires_grad=True)
    y = batch_norm(layer, x)  # a plain call saves the running statistics for its backward
    with torch.no_grad():
        batch_norm(layer, torch.randn(16, 4), groups=2)  # updates them
    y.pow(2).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_grouped_batch_norm_in_eval_mode_is_plain():
    trunk = Trunk(1, 28).eval()
    images = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(trunk(images, groups=2), trunk(images))


def test_build_model_follows_the_objective_and_the_q_options():
    infogan = build_model(TrainConfig(separate_q=True, learn_sigma=True).resolved(), 1, 28)
    assert isinstance(infogan, InfoGAN) and infogan.q_trunk is not None and infogan.learn_sigma
    assert infogan.spec == LatentSpec()  # the paper's latent space: 62 noise variables, c1 10-way, c2 and c3
    ogan = build_model(TrainConfig(objective="ogan", noise_dim=16).resolved(), 3, 32)
    assert isinstance(ogan, OGAN) and isinstance(ogan.encoder, OGANEncoder)
    assert ogan.encoder(torch.randn(2, 3, 32, 32)).shape == (2, 16)  # E(x): noise_dim values
