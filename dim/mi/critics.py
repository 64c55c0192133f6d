"""Critics: networks T(x, z) that score how likely a pair is to be a positive.

Every critic offers two ways to score, and follows one convention: row i holds
the code z_i, column j the input x_j, so positives lie on the diagonal.

* ``critic(x, z)`` scores all pairs: ``scores[i, j] = T(x_j, z_i)``, shape
  ``(B, B)`` for global critics and ``(B, B, L)`` for local ones (L = H * W).
* ``critic.pairs(x, z, x_index)`` scores only the pairs a negative sampler asks
  for: ``scores[i, k] = T(x_{x_index[i, k]}, z_i)``, shape ``(B, K)`` or
  ``(B, K, L)``. Nothing of size B * B is built.

Two families, global (x is a vector) and local (x is a feature map whose H * W
positions are each scored against the image's global code z):

* *concat* critics (the setting of Su Jianlin's 2018 derivation of DIM,
  "深度学习的互信息：无监督提取特征", kexue.fm/archives/6024; see ``docs/mi.md``):
  an MLP on the concatenation
  ``[x, z]``; for a feature map, a stack of 1x1 convolutions over ``[C_ij, z]``
  with z tiled over the map. The first layer is linear, so
  ``W [x; z] = W_x x + W_z z`` is computed once per input and broadcast over
  pairs; pairs are only materialised from the first hidden layer on.
* *separable* critics (the DIM paper, Hjelm et al. ICLR 2019, App. A.2): the
  dot product of two learned projections, ``T(x, z) = g(x) . h(z)``; all B * B
  (* L) scores then cost a single matrix product.

A 1x1 convolution over a ``(B, C, H, W)`` map is a linear layer applied to the
C channels at every position; the local critics flatten the map to
``(B, H*W, C)`` and use ``nn.Linear``, which is the same operation.

:data:`CRITICS` maps each form's short name to its (global, local) classes and
:func:`make_critic` builds one by form and scope, as :func:`dim.mi.make_bound`
does for bounds.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _check_pair_inputs(x: Tensor, z: Tensor, x_rank: int) -> None:
    if x.dim() != x_rank:
        layout = "(B, D_x)" if x_rank == 2 else "(B, C, H, W)"
        raise ValueError(f"x must have shape {layout}, got {tuple(x.shape)}")
    if z.dim() != 2:
        raise ValueError(f"z must have shape (B, D_z), got {tuple(z.shape)}")
    if x.shape[0] != z.shape[0]:
        raise ValueError(f"x and z must hold the same number of samples, got {x.shape[0]} and {z.shape[0]}")


def _check_index(x_index: Tensor, batch: int) -> None:
    if x_index.dim() != 2 or x_index.shape[0] != batch:
        raise ValueError(f"x_index must have shape (B={batch}, K), got {tuple(x_index.shape)}")


class Projection(nn.Module):
    """``Linear -> ReLU -> Linear`` plus a linear shortcut (DIM's projection block).

    Shapes: ``(..., in_dim) -> (..., out_dim)``.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))
        self.shortcut = nn.Linear(in_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x) + self.shortcut(x)


class _PairCritic(nn.Module):
    """Shared plumbing: inputs are handled as ``(B, L, D)`` with L = 1 for global critics."""

    local = False

    def _positions(self, x: Tensor, z: Tensor) -> Tensor:
        """Check the inputs and return x as ``(B, L, D_x)``."""
        _check_pair_inputs(x, z, 4 if self.local else 2)
        if self.local:
            return x.flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, H*W, C)
        return x.unsqueeze(1)  # (B, D) -> (B, 1, D)

    def _finish(self, scores: Tensor) -> Tensor:
        """(B, N, L) -> (B, N, L) for local critics, (B, N) for global ones."""
        return scores if self.local else scores.squeeze(-1)


class _ConcatCritic(_PairCritic):
    def __init__(self, x_dim: int, z_dim: int, hidden_dim: int, num_layers: int) -> None:
        super().__init__()
        if min(x_dim, z_dim, hidden_dim) < 1:
            raise ValueError(f"dimensions must be positive, got x_dim={x_dim}, z_dim={z_dim}, hidden_dim={hidden_dim}")
        if num_layers < 1:
            raise ValueError(f"num_layers (hidden layers) must be >= 1, got {num_layers}")
        self.x_in = nn.Linear(x_dim, hidden_dim)  # the x columns of the first layer's weight (and its bias)
        self.z_in = nn.Linear(z_dim, hidden_dim, bias=False)  # the z columns
        layers: list[nn.Module] = [nn.ReLU()]
        for _ in range(num_layers - 1):
            layers += [nn.Linear(hidden_dim, hidden_dim), nn.ReLU()]
        layers.append(nn.Linear(hidden_dim, 1))
        self.head = nn.Sequential(*layers)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        hx = self.x_in(self._positions(x, z))  # (B, L, H)
        hz = self.z_in(z)  # (B, H)
        hidden = hx.unsqueeze(0) + hz[:, None, None, :]  # (B_z, B_x, L, H)
        return self._finish(self.head(hidden).squeeze(-1))

    def pairs(self, x: Tensor, z: Tensor, x_index: Tensor) -> Tensor:
        hx = self.x_in(self._positions(x, z))  # (B, L, H)
        _check_index(x_index, z.shape[0])
        hidden = hx[x_index] + self.z_in(z)[:, None, None, :]  # (B, K, L, H)
        return self._finish(self.head(hidden).squeeze(-1))


class _SeparableCritic(_PairCritic):
    def __init__(
        self, x_dim: int, z_dim: int, embed_dim: int, hidden_dim: int, temperature: float | None = None
    ) -> None:
        super().__init__()
        if min(x_dim, z_dim, embed_dim, hidden_dim) < 1:
            raise ValueError(
                f"dimensions must be positive, got x_dim={x_dim}, z_dim={z_dim}, "
                f"embed_dim={embed_dim}, hidden_dim={hidden_dim}"
            )
        if temperature is not None and not temperature > 0:
            raise ValueError(f"temperature must be positive (or None for raw dot products), got {temperature}")
        self.temperature = temperature
        self.x_projection = Projection(x_dim, hidden_dim, embed_dim)
        self.z_projection = Projection(z_dim, hidden_dim, embed_dim)

    def _embed(self, x: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """``g(x)`` as ``(B, L, E)`` and ``h(z)`` as ``(B, E)``; unit vectors over T^(1/2) with a temperature.

        The projections run in whatever precision the caller set (bf16 under
        autocast); their outputs are taken to float32 with autocast off, so the
        normalisation and the score products are float32 (a bf16 dot product of
        E terms keeps about 3 significant digits, too few for scores that a
        log-sum-exp over thousands of pairs compares).
        """
        gx, hz = self.x_projection(self._positions(x, z)), self.z_projection(z)
        with torch.autocast(z.device.type, enabled=False):
            gx, hz = gx.float(), hz.float()
            if self.temperature is None:
                return gx, hz
            scale = self.temperature**-0.5  # cos(g, h) / T = (g / |g| / sqrt(T)) . (h / |h| / sqrt(T))
            return F.normalize(gx, dim=-1) * scale, F.normalize(hz, dim=-1) * scale

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        gx, hz = self._embed(x, z)  # (B, L, E), (B, E) float32
        with torch.autocast(z.device.type, enabled=False):
            return self._finish(torch.einsum("ie,jle->ijl", hz, gx))  # (B_z, B_x, L) float32

    def pairs(self, x: Tensor, z: Tensor, x_index: Tensor) -> Tensor:
        gx, hz = self._embed(x, z)  # (B, L, E), (B, E) float32
        _check_index(x_index, z.shape[0])
        with torch.autocast(z.device.type, enabled=False):
            return self._finish(torch.einsum("ie,ikle->ikl", hz, gx[x_index]))  # (B, K, L) float32


class GlobalConcatCritic(_ConcatCritic):
    """T(x, z) = MLP([x, z]): the global concat critic (Su Jianlin, kexue.fm/archives/6024).

    Args:
        x_dim: size of x (for DIM's global term, the encoder's code or features).
        z_dim: size of the code z.
        hidden_dim: width of the hidden layers.
        num_layers: number of hidden ReLU layers.

    Shapes:
        x: ``(B, x_dim)``; z: ``(B, z_dim)``; ``forward`` -> ``(B, B)``;
        ``pairs(x, z, x_index (B, K))`` -> ``(B, K)``.
    """

    def __init__(self, x_dim: int, z_dim: int, hidden_dim: int = 512, num_layers: int = 2) -> None:
        super().__init__(x_dim, z_dim, hidden_dim, num_layers)


class LocalConcatCritic(_ConcatCritic):
    """T(C_ij, z) = 1x1 convolutions over [C_ij, z], z tiled over the map (Su Jianlin, kexue.fm/archives/6024).

    Args:
        feature_channels: channels Cc of the local feature map.
        z_dim: size of the global code z.
        hidden_dim: channels of the hidden 1x1 convolutions.
        num_layers: number of hidden ReLU layers.

    Shapes:
        x: ``(B, Cc, H, W)``; z: ``(B, z_dim)``; ``forward`` -> ``(B, B, H*W)``;
        ``pairs(x, z, x_index (B, K))`` -> ``(B, K, H*W)``. All pairs cost
        ``B * B * H * W * hidden_dim`` activations: use ShuffleNegatives or a
        separable critic for large batches.
    """

    local = True

    def __init__(self, feature_channels: int, z_dim: int, hidden_dim: int = 512, num_layers: int = 2) -> None:
        super().__init__(feature_channels, z_dim, hidden_dim, num_layers)


class GlobalSeparableCritic(_SeparableCritic):
    """T(x, z) = g(x) . h(z) with two projections (the DIM paper's encoder-and-dot critic).

    With a temperature, ``T(x, z) = cos(g(x), h(z)) / temperature``: the scores of
    L2-normalised embeddings, bounded by ``1 / temperature`` (as in SimCLR's
    NT-Xent, Chen et al. 2020, and AMDIM's regularised scores).

    Args:
        x_dim: size of x.
        z_dim: size of the code z.
        embed_dim: size of the space the dot product is taken in.
        hidden_dim: width of each projection's hidden layer.
        temperature: ``None`` for raw dot products, else the temperature of the cosine scores.

    Shapes:
        x: ``(B, x_dim)``; z: ``(B, z_dim)``; ``forward`` -> ``(B, B)``;
        ``pairs(x, z, x_index (B, K))`` -> ``(B, K)``.
    """

    def __init__(
        self, x_dim: int, z_dim: int, embed_dim: int = 128, hidden_dim: int = 512, temperature: float | None = None
    ) -> None:
        super().__init__(x_dim, z_dim, embed_dim, hidden_dim, temperature)


class LocalSeparableCritic(_SeparableCritic):
    """T(C_ij, z) = g(C)_ij . h(z), g a 1x1-convolution projection of the map (the DIM paper).

    With a temperature, ``T(C_ij, z) = cos(g(C)_ij, h(z)) / temperature``.

    Args:
        feature_channels: channels Cc of the local feature map.
        z_dim: size of the global code z.
        embed_dim: size of the space the dot product is taken in.
        hidden_dim: width of each projection's hidden layer.
        temperature: ``None`` for raw dot products, else the temperature of the cosine scores.

    Shapes:
        x: ``(B, Cc, H, W)``; z: ``(B, z_dim)``; ``forward`` -> ``(B, B, H*W)``;
        ``pairs(x, z, x_index (B, K))`` -> ``(B, K, H*W)``.
    """

    local = True

    def __init__(
        self,
        feature_channels: int,
        z_dim: int,
        embed_dim: int = 128,
        hidden_dim: int = 512,
        temperature: float | None = None,
    ) -> None:
        super().__init__(feature_channels, z_dim, embed_dim, hidden_dim, temperature)


# Critic forms by short name: (global critic, local critic).
CRITICS: dict[str, tuple[type[nn.Module], type[nn.Module]]] = {
    "concat": (GlobalConcatCritic, LocalConcatCritic),
    "separable": (GlobalSeparableCritic, LocalSeparableCritic),
}
# What a critic scores x against z for: a vector per sample, or every position of a feature map.
CRITIC_SCOPES = ("global", "local")


def make_critic(form: str, scope: str, x_dim: int, z_dim: int, hidden_dim: int = 512, **options: Any) -> nn.Module:
    """Build a critic by its form (a key of :data:`CRITICS`) and scope (``global`` or ``local``).

    Args:
        form: ``concat`` or ``separable``.
        scope: ``global`` (x is ``(B, x_dim)``) or ``local`` (x is a ``(B, x_dim, H, W)`` map).
        x_dim: size of x for a global critic, channels of the feature map for a local one.
        z_dim: size of the code z.
        hidden_dim: width of the hidden layers.
        **options: further arguments of the class (``num_layers``, ``embed_dim``).
    """
    if form not in CRITICS:
        raise ValueError(f"unknown critic form {form!r}; choose one of {', '.join(CRITICS)}")
    if scope not in CRITIC_SCOPES:
        raise ValueError(f"unknown critic scope {scope!r}; choose one of {', '.join(CRITIC_SCOPES)}")
    critic_class = CRITICS[form][CRITIC_SCOPES.index(scope)]
    return critic_class(x_dim, z_dim, hidden_dim=hidden_dim, **options)
