import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from dim.mi import gaussian_kl, reparameterize


def test_kl_matches_monte_carlo_and_closed_form():
    torch.manual_seed(0)
    mean = torch.randn(4, 3) * 0.7
    log_var = torch.randn(4, 3) * 0.5
    kl = gaussian_kl(mean, log_var)
    posterior, prior = Normal(mean, (0.5 * log_var).exp()), Normal(0.0, 1.0)
    exact = kl_divergence(posterior, Normal(torch.zeros(4, 3), 1.0)).sum(1).mean()
    samples = torch.stack([reparameterize(mean, log_var) for _ in range(20000)])  # (S, B, D)
    monte_carlo = (posterior.log_prob(samples) - prior.log_prob(samples)).sum(-1).mean()
    assert kl.item() == pytest.approx(exact.item(), rel=1e-5)
    assert kl.item() == pytest.approx(monte_carlo.item(), abs=0.03)


def test_kl_is_zero_at_the_prior_and_has_gradients():
    mean = torch.zeros(2, 5, requires_grad=True)
    log_var = torch.zeros(2, 5, requires_grad=True)
    kl = gaussian_kl(mean, log_var)
    assert kl.item() == pytest.approx(0.0, abs=1e-7)
    (kl + gaussian_kl(mean + 1, log_var + 1)).backward()
    # By hand, d/dmean = mean / B and d/dlog_var = (exp(log_var) - 1) / (2B); B = 2, the second term at 1 and 1.
    assert torch.allclose(mean.grad, torch.full((2, 5), 0.5))
    assert torch.allclose(log_var.grad, torch.full((2, 5), (math.e - 1) / 4))


def test_reparameterize_moments():
    torch.manual_seed(0)
    mean = torch.tensor([[1.0, -2.0]]).expand(50000, 2)
    log_var = torch.tensor([[0.0, 2.0]]).expand(50000, 2)
    z = reparameterize(mean, log_var)
    assert torch.allclose(z.mean(0), torch.tensor([1.0, -2.0]), atol=0.05)
    assert torch.allclose(z.std(0), torch.tensor([1.0, 2.718 ** 1.0]), atol=0.05)


def test_shape_errors():
    with pytest.raises(ValueError, match="one shape"):
        reparameterize(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"shape \(B, D\)"):
        gaussian_kl(torch.zeros(3), torch.zeros(3))
