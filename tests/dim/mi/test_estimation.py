"""End to end: train a critic on a correlated Gaussian and read the MI estimate in nats."""

import math

import pytest
import torch

from dim.mi import (
    AllPairsNegatives,
    GlobalConcatCritic,
    InfoNCEBound,
    LocalConcatCritic,
    MIEstimator,
    ShuffleNegatives,
    make_bound,
)

RHO = 0.9
TRUE_MI = -0.5 * math.log(1 - RHO**2)  # 0.830 nats


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared 2-core machine the all-pairs MLP's parallel regions slow down 20-fold."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 1)
    return x, RHO * x + math.sqrt(1 - RHO**2) * torch.randn(n, 1)


def train_and_estimate(bound: str, negatives: torch.nn.Module, steps: int = 250, batch: int = 64) -> float:
    """Train a critic for ``steps`` batches, then read the estimate off 4 fresh batches of 512 (all pairs).

    All pairs of a batch of 64 are 4,096 scores a step; at 128 (16,384) a step costs 20 times as much on a CPU.
    """
    torch.manual_seed(0)
    estimator = MIEstimator(GlobalConcatCritic(1, 1, hidden_dim=64), negatives, make_bound(bound))
    optimizer = torch.optim.Adam(estimator.parameters(), lr=5e-3)
    for _ in range(steps):
        loss, _ = estimator(*sample(batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():  # read out on fresh batches, all pairs, to average the noise away
        readout = MIEstimator(estimator.critic, AllPairsNegatives(), estimator.bound)
        return torch.stack([readout(*sample(512)).mi for _ in range(4)]).mean().item()


def test_the_samples_have_the_reference_mi():
    """The reference is right for what ``sample`` draws: MI of a Gaussian pair from its sample correlation."""
    torch.manual_seed(0)
    x, y = sample(200_000)
    r = torch.corrcoef(torch.cat([x, y], dim=1).T)[0, 1].item()
    assert -0.5 * math.log(1 - r**2) == pytest.approx(TRUE_MI, abs=0.01)


@pytest.mark.parametrize("bound", ["jsd", "nwj"])
def test_an_untrained_critic_is_far_from_the_truth(bound):
    """So a trained estimate within a tenth of a nat shows the training, not the tolerance."""
    assert abs(train_and_estimate(bound, AllPairsNegatives(), steps=0) - TRUE_MI) > 0.5


@pytest.mark.parametrize("bound", ["jsd", "nwj", "dv", "infonce"])
def test_one_dimensional_gaussian_is_estimated_within_a_tenth_of_a_nat(bound):
    assert train_and_estimate(bound, AllPairsNegatives()) == pytest.approx(TRUE_MI, abs=0.1)


def test_jensen_shannon_with_shuffled_negatives():
    estimate = train_and_estimate("jsd", ShuffleNegatives(num_negatives=4), steps=400, batch=128)
    assert estimate == pytest.approx(TRUE_MI, abs=0.1)


def test_the_bound_runs_in_float32_under_bf16_autocast():
    """Scores in bf16 come out of the critic; the bound's loss and estimate are float32 and match float32's."""
    torch.manual_seed(0)
    critic = LocalConcatCritic(8, 4, hidden_dim=16)
    estimator = MIEstimator(critic, AllPairsNegatives(), InfoNCEBound())
    x, z = torch.randn(6, 8, 3, 3), torch.randn(6, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = estimator(x, z)
        positive, negative = AllPairsNegatives()(critic, x, z)
    assert output.loss.dtype == output.mi.dtype == torch.float32
    expected = InfoNCEBound()(positive.float(), negative.float())  # outside autocast: float32 throughout
    torch.testing.assert_close(output.mi, expected.mi)
