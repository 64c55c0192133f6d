"""The shared mutual-information module, used by DIM and by InfoGAN.

Three kinds of composable pieces (see ``docs/mi.md`` and each class's
docstring for the math), each with a registry of short names and a builder:

* critics (:mod:`dim.mi.critics`, :data:`CRITICS`, :func:`make_critic`) turn
  inputs into score tensors, positives on the diagonal: global ``(B, B)``,
  local ``(B, B, H*W)``;
* negative samplers (:mod:`dim.mi.negatives`, :data:`NEGATIVES`,
  :func:`make_negatives`) choose which pairs to score and return
  ``(positive (B, *L), negative (B, K, *L))``, a location dimension of
  ``negative`` being 1 where all locations share its negatives;
* bounds (:mod:`dim.mi.bounds`, :data:`BOUNDS`, :func:`make_bound`) turn those
  scores into a loss and an MI estimate in nats.

:class:`MIEstimator` is one critic + one sampler + one bound.

Plus InfoGAN's variational Q bound (:mod:`dim.mi.variational`), the closed
form Gaussian prior term (:mod:`dim.mi.prior`) and the mutual information of
two paired categorical assignments that IIC maximises (:mod:`dim.mi.clustering`).

:func:`estimate_mi` (:mod:`dim.mi.estimate`) estimates I(X; Y) of two paired
arrays with held-out evaluation and a k-fold interval, beside the classical
Gaussian (CCA) and KSG estimates of :mod:`dim.mi.baselines`.
"""

from __future__ import annotations

from torch import nn

from dim.mi.baselines import canonical_correlations, gaussian_mi, ksg_mi
from dim.mi.bounds import (
    BOUNDS,
    BoundOutput,
    DonskerVaradhanBound,
    InfoNCEBound,
    JensenShannonBound,
    NWJBound,
    make_bound,
)
from dim.mi.clustering import PairedCategoricalMI
from dim.mi.critics import (
    CRITIC_SCOPES,
    CRITICS,
    GlobalConcatCritic,
    GlobalSeparableCritic,
    LocalConcatCritic,
    LocalSeparableCritic,
    Projection,
    make_critic,
)
from dim.mi.estimate import FoldCurve, MIEstimate, estimate_mi, rank_gaussianize
from dim.mi.estimator import MIEstimator
from dim.mi.negatives import (
    AllPairsNegatives,
    CrossLocationNegatives,
    ShuffleNegatives,
    random_derangement,
)
from dim.mi.prior import gaussian_kl, reparameterize
from dim.mi.variational import CategoricalQBound, GaussianQBound

NEGATIVES: dict[str, type[nn.Module]] = {
    "shuffle": ShuffleNegatives,
    "all": AllPairsNegatives,
    "locations": CrossLocationNegatives,
}


def make_negatives(name: str) -> nn.Module:
    """Build a negative sampler by its short name, a key of :data:`NEGATIVES`."""
    if name not in NEGATIVES:
        raise ValueError(f"unknown negative sampler {name!r}; choose one of {', '.join(NEGATIVES)}")
    return NEGATIVES[name]()


__all__ = [
    "BOUNDS",
    "CRITICS",
    "CRITIC_SCOPES",
    "NEGATIVES",
    "AllPairsNegatives",
    "BoundOutput",
    "CategoricalQBound",
    "CrossLocationNegatives",
    "DonskerVaradhanBound",
    "FoldCurve",
    "GaussianQBound",
    "GlobalConcatCritic",
    "GlobalSeparableCritic",
    "InfoNCEBound",
    "JensenShannonBound",
    "LocalConcatCritic",
    "LocalSeparableCritic",
    "MIEstimate",
    "MIEstimator",
    "NWJBound",
    "PairedCategoricalMI",
    "Projection",
    "ShuffleNegatives",
    "canonical_correlations",
    "estimate_mi",
    "gaussian_kl",
    "gaussian_mi",
    "ksg_mi",
    "make_bound",
    "make_critic",
    "make_negatives",
    "random_derangement",
    "rank_gaussianize",
    "reparameterize",
]
