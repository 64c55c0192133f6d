import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal

from dim.mi import CategoricalQBound, GaussianQBound


def test_categorical_is_log_k_minus_cross_entropy():
    logits = torch.randn(32, 10)
    codes = torch.randint(0, 10, (32,))
    out = CategoricalQBound(10)(logits, codes)
    reference = -torch.log_softmax(logits, dim=1)[torch.arange(32), codes].mean()
    assert out.loss.item() == pytest.approx(reference.item(), abs=1e-5)
    assert out.mi.item() == pytest.approx(math.log(10) - reference.item(), abs=1e-5)


def test_categorical_reaches_log_k_when_code_is_predictable():
    codes = torch.randint(0, 10, (64,))
    logits = 50.0 * F.one_hot(codes, 10).float()
    assert CategoricalQBound(10)(logits, codes).mi.item() == pytest.approx(math.log(10), abs=1e-6)
    uniform = CategoricalQBound(10)(torch.zeros(64, 10), codes)
    assert uniform.mi.item() == pytest.approx(0.0, abs=1e-6)


def test_gaussian_fixed_sigma_matches_normal_log_prob():
    mean, codes = torch.randn(16, 2), torch.rand(16, 2) * 2 - 1
    out = GaussianQBound()(mean, codes)
    nll = -Normal(mean, 1.0).log_prob(codes).mean(dim=0)  # (D,)
    assert out.loss.item() == pytest.approx(nll.sum().item(), rel=1e-6)
    assert torch.allclose(out.mi, math.log(2) - nll, atol=1e-6)
    assert out.mi.shape == (2,)


def test_gaussian_learned_sigma_is_clamped():
    mean, codes = torch.zeros(8, 3), torch.full((8, 3), 0.5)
    log_sigma = torch.tensor([-20.0, 0.3, 20.0]).expand(8, 3)
    out = GaussianQBound(log_sigma_range=(-4.0, 1.0))(mean, codes, log_sigma)
    sigma = torch.tensor([math.exp(-4.0), math.exp(0.3), math.exp(1.0)])
    nll = -Normal(torch.zeros(3), sigma).log_prob(torch.full((3,), 0.5))
    assert torch.allclose(out.mi, math.log(2) - nll, atol=1e-5)


def test_gaussian_gradient_reaches_mean_and_sigma():
    mean = torch.zeros(4, 2, requires_grad=True)
    log_sigma = torch.zeros(4, 2, requires_grad=True)
    GaussianQBound()(mean, torch.full((4, 2), 2.0), log_sigma).loss.backward()
    # NLL = log sigma + (c - mean)^2 / (2 sigma^2) + const, averaged over B = 4 and summed over codes:
    # d/dmean = -(c - mean) / (B sigma^2) = -0.5, d/dlog_sigma = (1 - (c - mean)^2 / sigma^2) / B = -0.75.
    assert torch.allclose(mean.grad, torch.full((4, 2), -0.5))
    assert torch.allclose(log_sigma.grad, torch.full((4, 2), -0.75))


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_classes >= 2"):
        CategoricalQBound(1)
    with pytest.raises(ValueError, match=r"shape \(B, 10\)"):
        CategoricalQBound(10)(torch.zeros(4, 9), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="min < max"):
        GaussianQBound(log_sigma_range=(1.0, -1.0))
    with pytest.raises(ValueError, match="shape of mean"):
        GaussianQBound()(torch.zeros(4, 2), torch.zeros(4, 3))
