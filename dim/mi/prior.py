"""The prior term of DIM's objective in closed form (see docs/mi.md, "The Gaussian prior term").

Instead of matching p(z) to N(0, I) with a discriminator, the encoder outputs a
Gaussian N(mu(x), diag(sigma(x)^2)); the code is sampled with the
reparameterisation trick and the per-image KL to the prior is the VAE's closed
form (Kingma & Welling, *Auto-Encoding Variational Bayes*, ICLR 2014, App. B).
"""

from __future__ import annotations

import torch
from torch import Tensor


def reparameterize(mean: Tensor, log_var: Tensor) -> Tensor:
    """Sample z = mean + exp(log_var / 2) * eps with eps ~ N(0, I).

    Shapes: ``mean`` and ``log_var`` are ``(B, D)``; so is the result.
    """
    if mean.shape != log_var.shape:
        raise ValueError(f"mean and log_var must have one shape, got {tuple(mean.shape)} and {tuple(log_var.shape)}")
    return mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)


def gaussian_kl(mean: Tensor, log_var: Tensor) -> Tensor:
    """E_x[ KL(N(mean, exp(log_var)) || N(0, I)) ], in nats, averaged over the batch.

    Computed as

        (1/B) sum_b 0.5 * sum_d ( mean_bd^2 + exp(log_var_bd) - log_var_bd - 1 ).

    Shapes: ``mean`` and ``log_var`` are ``(B, D)``; the result is a scalar.
    """
    if mean.shape != log_var.shape or mean.dim() != 2:
        raise ValueError(
            f"mean and log_var must both have shape (B, D), got {tuple(mean.shape)} and {tuple(log_var.shape)}"
        )
    return 0.5 * (mean.pow(2) + log_var.exp() - log_var - 1.0).sum(dim=1).mean()
