"""Classical mutual-information estimates, to set beside a neural one.

Neither trains anything, so both are cheap checks on :func:`dim.mi.estimate_mi`:
a neural estimate well below either of them on the same samples is a critic
that has not found the dependence.

* :func:`gaussian_mi` fits a Gaussian: ``-1/2 sum_i log(1 - rho_i^2)`` over
  the canonical correlations ``rho_i`` (Hotelling 1936). Exact for jointly
  Gaussian data; after a per-coordinate rank-Gaussianisation it is the MI of
  the Gaussian copula. It sees linear dependence only.
* :func:`ksg_mi` is the k-nearest-neighbour estimator of Kraskov, Stögbauer &
  Grassberger (*Estimating mutual information*, Phys. Rev. E 69, 066138, 2004),
  their estimator 1. It sees any dependence, but its bias grows with the
  dimension.

Both take ``x`` as ``(N, D_x)`` and ``y`` as ``(N, D_y)`` (a 1-D tensor is one
column) and return a 0-dim float64 tensor in nats.
"""

from __future__ import annotations

import math

from typing import Any

import torch
from torch import Tensor

# A tensor, or anything torch.as_tensor takes (a NumPy array, nested lists of numbers).
ArrayLike = Any


def paired_columns(x: ArrayLike, y: ArrayLike, min_samples: int = 2) -> tuple[Tensor, Tensor]:
    """Check two paired samples and return them as float64 ``(N, D_x)`` and ``(N, D_y)``.

    Accepts anything ``torch.as_tensor`` takes (a NumPy array, a list); a 1-D
    input is one column.

    Raises:
        ValueError: if an input is not 1-D or 2-D, the two hold different numbers
            of rows, there are fewer than ``min_samples`` rows, or a value is
            NaN or infinite.
    """
    columns = []
    for name, value in (("x", x), ("y", y)):
        value = torch.as_tensor(value)
        if value.dim() == 1:
            value = value.unsqueeze(1)  # (N,) -> (N, 1)
        if value.dim() != 2 or value.shape[1] == 0:
            raise ValueError(f"{name} must be (N,) or (N, D) with D >= 1: one row per sample; got shape "
                             f"{tuple(value.shape)}")
        if value.is_complex():
            raise ValueError(f"{name} is complex; pass its real and imaginary parts as separate columns")
        value = value.to(torch.float64)
        bad = ~torch.isfinite(value)
        if bad.any():
            rows = bad.any(dim=1).nonzero().flatten()
            raise ValueError(f"{name} has {len(rows)} row(s) with NaN or infinite values (first: row "
                             f"{rows[0].item()}); drop those rows from both x and y first")
        columns.append(value)
    x, y = columns
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same samples, one per row; got {x.shape[0]} rows in x and "
                         f"{y.shape[0]} in y")
    if x.shape[0] < min_samples:
        raise ValueError(f"at least {min_samples} samples are needed, got {x.shape[0]}")
    return x, y


def _cholesky(covariance: Tensor, name: str) -> Tensor:
    factor, info = torch.linalg.cholesky_ex(covariance)
    if info.item() != 0:
        raise ValueError(f"the covariance of {name} is singular (a constant column, a column that is a linear "
                         f"combination of others, or fewer samples than columns); drop such columns first")
    return factor


def canonical_correlations(x: ArrayLike, y: ArrayLike) -> Tensor:
    """The canonical correlations of x and y, largest first.

    With the sample covariances ``C_xx = L_x L_x^T`` and ``C_yy = L_y L_y^T``
    (Cholesky factors) and the cross-covariance ``C_xy``, the canonical
    correlations are the singular values of the whitened cross-covariance

        rho = svdvals( L_x^{-1} C_xy L_y^{-T} )

    (Hotelling, *Relations between two sets of variates*, Biometrika 1936).

    Shapes:
        x: ``(N, D_x)``; y: ``(N, D_y)``; returns ``(min(D_x, D_y),)``, float64.

    Raises:
        ValueError: on the inputs :func:`paired_columns` refuses, or a singular covariance.
    """
    x, y = paired_columns(x, y, min_samples=3)
    x, y = x - x.mean(dim=0), y - y.mean(dim=0)
    n = x.shape[0]
    lx = _cholesky(x.T @ x / (n - 1), "x")  # (D_x, D_x)
    ly = _cholesky(y.T @ y / (n - 1), "y")  # (D_y, D_y)
    cross = x.T @ y / (n - 1)  # (D_x, D_y)
    whitened = torch.linalg.solve_triangular(lx, cross, upper=False)  # L_x^{-1} C_xy
    whitened = torch.linalg.solve_triangular(ly, whitened.T, upper=False).T  # ... L_y^{-T}
    return torch.linalg.svdvals(whitened).clamp(max=1.0)


def gaussian_mi(x: ArrayLike, y: ArrayLike, bias_correction: bool = False) -> Tensor:
    """The MI of the Gaussian with the samples' covariance: ``-1/2 sum_i log(1 - rho_i^2)`` nats.

    ``rho_i`` are the :func:`canonical_correlations`. It equals
    ``1/2 (log det C_xx + log det C_yy - log det C)`` and is the exact MI of a
    jointly Gaussian pair; for other data it measures the linear part of the
    dependence only. Infinite when a canonical correlation is 1 (y a linear
    function of x).

    From N samples it is biased upwards, by about ``D_x D_y / (2 N)`` nats (the
    spurious correlations of finite samples). With ``bias_correction`` the
    exact bias for Gaussian data is subtracted: ``(N - 1) C`` is Wishart with
    N - 1 degrees of freedom, so ``E[log det C_d] = log det Sigma_d + b(d)``
    with ``b(d) = sum_{i=1}^{d} psi((N - i) / 2) + d log(2 / (N - 1))``
    (psi the digamma function), and

        I_corrected = I - 1/2 ( b(D_x) + b(D_y) - b(D_x + D_y) )

    Shapes:
        x: ``(N, D_x)``; y: ``(N, D_y)``; returns a 0-dim float64 tensor.
    """
    x, y = paired_columns(x, y, min_samples=3)
    mi = -0.5 * torch.log1p(-canonical_correlations(x, y).square()).sum()
    if not bias_correction:
        return mi
    (n, dx), dy = x.shape, y.shape[1]

    def log_det_bias(d: int) -> Tensor:
        i = torch.arange(1, d + 1, dtype=torch.float64)
        return torch.special.digamma((n - i) / 2).sum() + d * math.log(2 / (n - 1))

    return mi - 0.5 * (log_det_bias(dx) + log_det_bias(dy) - log_det_bias(dx + dy))


def ksg_mi(x: ArrayLike, y: ArrayLike, k: int = 3, chunk_size: int = 1024) -> Tensor:
    """Kraskov-Stögbauer-Grassberger estimator 1 (Phys. Rev. E 69, 066138, 2004, eq. 8).

    Distances are max-norms, in each space and jointly:
    ``d((x, y), (x', y')) = max(|x - x'|_inf, |y - y'|_inf)``. For each sample
    i, ``eps_i`` is the distance to its k-th nearest neighbour in the joint
    space, and ``n_x(i)`` (``n_y(i)``) counts the other samples strictly closer
    than ``eps_i`` to it in x (in y) alone. Then

        I = psi(k) + psi(N) - mean_i[ psi(n_x(i) + 1) + psi(n_y(i) + 1) ]

    with psi the digamma function. The estimate is near unbiased in low
    dimension and biased downwards as the dimension grows; it is not invariant
    to per-coordinate transforms in finite samples (rank-Gaussianise first to
    make it so). Distances are computed in chunks of ``chunk_size`` rows
    against all N: memory ``chunk_size * N``, time ``N^2 (D_x + D_y)``.

    Args:
        x: ``(N, D_x)`` samples.
        y: ``(N, D_y)`` samples paired with x.
        k: neighbours; 3 is the usual choice (larger: less variance, more bias).
        chunk_size: rows of the distance matrix computed at a time.

    Returns:
        A 0-dim float64 tensor in nats.

    Raises:
        ValueError: on bad inputs, ``k >= N``, or repeated samples (a zero
            k-th neighbour distance; KSG assumes continuous data, so add a
            little noise to discrete values first).
    """
    x, y = paired_columns(x, y, min_samples=2)
    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be between 1 and N - 1 = {n - 1}, got {k}")
    counts = torch.empty(n, 2, dtype=torch.float64)  # n_x(i), n_y(i)
    for start in range(0, n, chunk_size):
        rows = torch.arange(start, min(start + chunk_size, n))
        dx = torch.cdist(x[rows], x, p=float("inf"))  # (C, N)
        dy = torch.cdist(y[rows], y, p=float("inf"))  # (C, N)
        joint = torch.maximum(dx, dy)
        joint[torch.arange(len(rows)), rows] = float("inf")  # a sample is not its own neighbour
        eps = joint.kthvalue(k, dim=1).values[:, None]  # (C, 1)
        if (eps == 0).any():
            raise ValueError(f"{int((eps == 0).sum())} samples have {k} or more exact duplicates, so their k-th "
                             "neighbour distance is 0; KSG needs continuous values: add a little noise to "
                             "discrete columns, or raise k")
        # Strictly closer than eps, less the sample itself (at distance 0).
        counts[rows, 0] = (dx < eps).sum(dim=1).to(torch.float64) - 1
        counts[rows, 1] = (dy < eps).sum(dim=1).to(torch.float64) - 1
    digamma = torch.special.digamma
    k_n = digamma(torch.tensor(float(k), dtype=torch.float64)) + digamma(torch.tensor(float(n), dtype=torch.float64))
    return k_n - digamma(counts + 1).sum(dim=1).mean()
