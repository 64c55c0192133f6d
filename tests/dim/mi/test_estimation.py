"""End to end: train a critic on a correlated Gaussian and read the MI estimate in nats."""

import math

import pytest
import torch

from dim.mi import (
    AllPairsNegatives,
    GlobalConcatCritic,
    MIEstimator,
    ShuffleNegatives,
    make_bound,
)

RHO = 0.9
TRUE_MI = -0.5 * math.log(1 - RHO**2)  # 0.830 nats


def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 1)
    return x, RHO * x + math.sqrt(1 - RHO**2) * torch.randn(n, 1)


def train_and_estimate(bound: str, negatives: torch.nn.Module, steps: int = 250) -> float:
    torch.manual_seed(0)
    estimator = MIEstimator(GlobalConcatCritic(1, 1, hidden_dim=64), negatives, make_bound(bound))
    optimizer = torch.optim.Adam(estimator.parameters(), lr=5e-3)
    for _ in range(steps):
        loss, _ = estimator(*sample(128))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():  # read out on fresh batches, all pairs, to average the noise away
        readout = MIEstimator(estimator.critic, AllPairsNegatives(), estimator.bound)
        return torch.stack([readout(*sample(512)).mi for _ in range(8)]).mean().item()


def test_true_mi_value():
    assert TRUE_MI == pytest.approx(0.830, abs=1e-3)


@pytest.mark.parametrize("bound", ["jsd", "nwj"])
def test_one_dimensional_gaussian_is_estimated_within_a_tenth_of_a_nat(bound):
    assert train_and_estimate(bound, AllPairsNegatives()) == pytest.approx(TRUE_MI, abs=0.1)


def test_jensen_shannon_with_shuffled_negatives():
    assert train_and_estimate("jsd", ShuffleNegatives(num_negatives=4), steps=400) == pytest.approx(TRUE_MI, abs=0.1)
