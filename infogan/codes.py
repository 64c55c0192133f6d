"""InfoGAN's latent space: incompressible noise z plus structured codes c.

Chen et al., *InfoGAN*, NeurIPS 2016, Section 4: the generator's input is split
into noise z and a latent code c = (c_1, ..., c_L) with a factored prior. On
MNIST the paper uses 62 noise variables, one 10-way categorical code
c_1 ~ Cat(K=10, p=0.1) and two continuous codes c_2, c_3 ~ Uniform(-1, 1):
74 inputs in all. Codes are named ``c1, c2, ...``: the categorical codes first,
then the continuous ones, as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from infogan.config import NOISE_DISTRIBUTIONS


class Latent(NamedTuple):
    """One batch of generator inputs, kept apart so Q's targets are at hand.

    Attributes:
        noise: ``(B, noise_dim)`` float noise z.
        categorical: ``(B, num_categorical)`` int64 category of each categorical code.
        continuous: ``(B, num_continuous)`` float continuous codes.
    """

    noise: Tensor
    categorical: Tensor
    continuous: Tensor


class QParams(NamedTuple):
    """Q's prediction of the codes, split out of its flat output.

    Attributes:
        logits: one ``(B, K_i)`` tensor of logits per categorical code.
        mean: ``(B, num_continuous)`` predicted means of the continuous codes.
        log_sigma: ``(B, num_continuous)`` predicted log standard deviations, or
            ``None`` when sigma is fixed to 1.
    """

    logits: list[Tensor]
    mean: Tensor
    log_sigma: Tensor | None


@dataclass(frozen=True)
class LatentSpec:
    """Sizes and priors of the generator's input.

    Args:
        noise_dim: number of incompressible noise variables z.
        noise: prior of z, ``"uniform"`` (Uniform(-1, 1), the official code) or
            ``"normal"`` (N(0, 1)).
        categorical: the number of categories of each categorical code (uniform prior).
        continuous: the number of continuous codes, each Uniform(-1, 1).
        needs_code: refuse a space without codes (InfoGAN's Q needs one). O-GAN,
            whose generator reads the noise alone, passes ``False`` with
            ``categorical=()`` and ``continuous=0``.
    """

    noise_dim: int = 62
    noise: str = "uniform"
    categorical: tuple[int, ...] = (10,)
    continuous: int = 2
    needs_code: bool = True

    def __post_init__(self) -> None:
        if self.noise_dim < 0:
            raise ValueError(f"noise_dim must be >= 0, got {self.noise_dim}")
        if self.noise not in NOISE_DISTRIBUTIONS:
            raise ValueError(f"noise must be one of {', '.join(NOISE_DISTRIBUTIONS)}, got {self.noise!r}")
        object.__setattr__(self, "categorical", tuple(int(k) for k in self.categorical))
        if any(k < 2 for k in self.categorical):
            raise ValueError(f"every categorical code needs at least 2 categories, got {self.categorical}")
        if self.continuous < 0:
            raise ValueError(f"continuous must be >= 0, got {self.continuous}")
        if self.needs_code and not self.categorical and self.continuous == 0:
            raise ValueError("InfoGAN needs at least one code: give a categorical code or continuous > 0")

    @property
    def noise_std(self) -> float:
        """Standard deviation of each noise variable under the prior: 1 for N(0, 1), 1/sqrt(3) for Uniform(-1, 1)."""
        return 1.0 if self.noise == "normal" else 3.0 ** -0.5

    @property
    def input_dim(self) -> int:
        """Size of G's input: noise, one-hot categorical codes and continuous codes."""
        return self.noise_dim + sum(self.categorical) + self.continuous

    @property
    def code_names(self) -> list[str]:
        """``["c1", "c2", ...]``: the categorical codes first, then the continuous ones."""
        return [f"c{i + 1}" for i in range(len(self.categorical) + self.continuous)]

    def q_output_dim(self, learn_sigma: bool) -> int:
        """Size of Q's flat output: logits, means and (with ``learn_sigma``) log sigmas."""
        return sum(self.categorical) + self.continuous * (2 if learn_sigma else 1)

    def sample(
        self, batch_size: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None
    ) -> Latent:
        """Draw a batch from the prior on ``device`` (from ``generator``, on that device, or the global RNG)."""
        if self.noise == "uniform":
            noise = torch.rand(batch_size, self.noise_dim, device=device, generator=generator) * 2 - 1
        else:
            noise = torch.randn(batch_size, self.noise_dim, device=device, generator=generator)
        categorical = torch.empty(batch_size, len(self.categorical), dtype=torch.int64, device=device)
        for i, k in enumerate(self.categorical):
            categorical[:, i] = torch.randint(k, (batch_size,), device=device, generator=generator)
        continuous = torch.rand(batch_size, self.continuous, device=device, generator=generator) * 2 - 1
        return Latent(noise, categorical, continuous)

    def generator_input(self, latent: Latent) -> Tensor:
        """``(B, input_dim)``: ``[z, one_hot(c_1), ..., one_hot(c_n), continuous codes]``."""
        # A comparison rather than F.one_hot, which checks the range and so syncs with a GPU.
        one_hot = [
            (latent.categorical[:, i, None] == torch.arange(k, device=latent.categorical.device)).to(latent.noise.dtype)
            for i, k in enumerate(self.categorical)
        ]  # each (B, K_i)
        return torch.cat([latent.noise, *one_hot, latent.continuous], dim=1)

    def split_q_output(self, output: Tensor, learn_sigma: bool) -> QParams:
        """Split Q's flat ``(B, q_output_dim)`` output into logits, means and log sigmas."""
        if output.dim() != 2 or output.shape[1] != self.q_output_dim(learn_sigma):
            raise ValueError(f"Q's output must be (B, {self.q_output_dim(learn_sigma)}), got {tuple(output.shape)}")
        sizes = [*self.categorical, self.continuous] + ([self.continuous] if learn_sigma else [])
        pieces = list(torch.split(output, sizes, dim=1))
        num_categorical = len(self.categorical)
        log_sigma = pieces[num_categorical + 1] if learn_sigma else None
        return QParams(pieces[:num_categorical], pieces[num_categorical], log_sigma)

    def traversal(
        self,
        vary: str,
        columns: int = 10,
        rows: int | None = None,
        value_range: float = 1.0,
        seed: int = 0,
    ) -> Latent:
        """A fixed grid of latents, row-major, for pictures of what one code controls.

        * Varying a categorical code: one row per category; each column has its
          own noise (and other categorical codes), shared down the column.
        * Varying a continuous code: it goes from ``-value_range`` to
          ``value_range`` across the columns; each row has its own noise and
          steps through the categories of ``c1`` (when there is a categorical code).

        Continuous codes that are not varied are held at 0, the middle of their range.

        Args:
            vary: the code's name, ``"c1"``, ``"c2"``, ... (see :attr:`code_names`).
            columns: images per row.
            rows: rows for a continuous code (default: the categories of ``c1``, or 10);
                ignored for a categorical code.
            value_range: half-width of a continuous code's sweep; the paper shows
                -2..2, beyond the training range -1..1.
            seed: seeds the noise, so a grid is the same at every call.

        Returns:
            A :class:`Latent` of ``rows * columns`` items on the CPU.
        """
        if not self.code_names:
            raise ValueError("this latent space has no codes to vary (an O-GAN run: its generator reads the noise alone)")
        if vary not in self.code_names:
            raise ValueError(f"unknown code {vary!r}: this model has the codes {', '.join(self.code_names)}")
        if columns < 1:
            raise ValueError(f"columns must be >= 1, got {columns}")
        generator = torch.Generator().manual_seed(seed)
        index = int(vary[1:]) - 1
        num_categorical = len(self.categorical)
        if index < num_categorical:
            rows = self.categorical[index]
            per_column = self.sample(columns, generator=generator)
            latent = Latent(*(t.repeat(rows, 1) for t in per_column))  # (rows * columns, ...), row-major
            latent.categorical[:, index] = torch.arange(rows).repeat_interleave(columns)
            latent.continuous.zero_()
            return latent
        rows = rows or (self.categorical[0] if self.categorical else 10)
        per_row = self.sample(rows, generator=generator)
        latent = Latent(*(t.repeat_interleave(columns, dim=0) for t in per_row))
        if self.categorical:
            latent.categorical[:, 0] = (torch.arange(rows) % self.categorical[0]).repeat_interleave(columns)
        latent.continuous.zero_()
        latent.continuous[:, index - num_categorical] = torch.linspace(-value_range, value_range, columns).repeat(rows)
        return latent
