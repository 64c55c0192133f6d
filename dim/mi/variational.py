"""InfoGAN's variational lower bound L_I on I(c; G(z, c)).

Chen et al., *InfoGAN: Interpretable Representation Learning by Information
Maximizing Generative Adversarial Nets*, NeurIPS 2016, Section 5:

    I(c; G(z, c)) >= E_{c ~ P(c), x ~ G(z, c)}[ log Q(c | x) ] + H(c) =: L_I.

The recognition network Q predicts the parameters of Q(c | x) from a generated
image; minimising the negative log-likelihood of the code that produced the
image maximises L_I. Each bound here returns the loss to minimise (the mean
negative log-likelihood) and L_I in nats per code, so a log can show a 10-way
categorical code approaching ln 10 = 2.303 when it is perfectly recovered.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dim.mi.bounds.base import BoundOutput


class CategoricalQBound(nn.Module):
    """L_I for one categorical code c ~ Uniform{0, ..., K-1}.

    Computed as

        loss = CE = -(1/B) sum_b log softmax(logits_b)[c_b]
        L_I  = H(c) - CE = ln K - CE

    so L_I <= ln K, with equality when Q puts all its mass on the true code.

    Args:
        num_classes: K, the number of categories (>= 2).

    Shapes:
        logits: ``(B, K)`` unnormalised log-probabilities from Q.
        codes: ``(B,)`` integer codes in ``[0, K)`` that generated the images.
        output: ``loss`` and ``mi`` are scalars.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a categorical code needs num_classes >= 2, got {num_classes}")
        self.num_classes = num_classes

    def forward(self, logits: Tensor, codes: Tensor) -> BoundOutput:
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"logits must have shape (B, {self.num_classes}), got {tuple(logits.shape)}")
        if codes.shape != logits.shape[:1]:
            raise ValueError(f"codes must have shape ({logits.shape[0]},), got {tuple(codes.shape)}")
        cross_entropy = F.cross_entropy(logits, codes)
        return BoundOutput(loss=cross_entropy, mi=math.log(self.num_classes) - cross_entropy.detach())


class GaussianQBound(nn.Module):
    """L_I for D continuous codes, with Q(c_d | x) = N(mu_d(x), sigma_d(x)^2).

    The negative log-likelihood of each code dimension is

        NLL_d = (1/B) sum_b [ log sigma_bd + 0.5 log(2 pi) + (c_bd - mu_bd)^2 / (2 sigma_bd^2) ]

    with sigma = 1 when ``log_sigma`` is not given (the official InfoGAN code:
    then NLL is a scaled squared error plus a constant), or
    ``log sigma = clamp(log_sigma, *log_sigma_range)`` when Q predicts it. The
    clamp keeps the bound finite: for a deterministic generator the true MI of a
    continuous code is unbounded and a free sigma would shrink without limit.

        loss  = sum_d NLL_d
        L_I_d = H(c_d) - NLL_d            (nats, one value per code)

    Args:
        code_entropy: differential entropy H(c_d) of each code's prior in nats;
            the default ln 2 is that of Uniform(-1, 1), InfoGAN's choice.
        log_sigma_range: (min, max) clamp for a predicted log sigma.

    Shapes:
        mean: ``(B, D)`` predicted means.
        codes: ``(B, D)`` the continuous codes that generated the images.
        log_sigma: optional ``(B, D)`` predicted log standard deviations.
        output: ``loss`` is a scalar, ``mi`` has shape ``(D,)``.
    """

    def __init__(self, code_entropy: float = math.log(2.0), log_sigma_range: tuple[float, float] = (-5.0, 2.0)) -> None:
        super().__init__()
        low, high = log_sigma_range
        if not low < high:
            raise ValueError(f"log_sigma_range must be (min, max) with min < max, got {log_sigma_range}")
        self.code_entropy = code_entropy
        self.log_sigma_range = (float(low), float(high))

    def forward(self, mean: Tensor, codes: Tensor, log_sigma: Tensor | None = None) -> BoundOutput:
        if mean.dim() != 2:
            raise ValueError(f"mean must have shape (B, D), got {tuple(mean.shape)}")
        if codes.shape != mean.shape:
            raise ValueError(f"codes must have the shape of mean {tuple(mean.shape)}, got {tuple(codes.shape)}")
        if log_sigma is None:
            log_sigma = torch.zeros_like(mean)
        elif log_sigma.shape != mean.shape:
            raise ValueError(f"log_sigma must have the shape of mean {tuple(mean.shape)}, got {tuple(log_sigma.shape)}")
        else:
            log_sigma = log_sigma.clamp(*self.log_sigma_range)
        nll = log_sigma + 0.5 * math.log(2 * math.pi) + 0.5 * ((codes - mean) * torch.exp(-log_sigma)) ** 2
        nll_per_code = nll.mean(dim=0)  # (D,)
        return BoundOutput(loss=nll_per_code.sum(), mi=self.code_entropy - nll_per_code.detach())
