import math

import pytest
import torch

from dim.mi import (
    NEGATIVES,
    AllPairsNegatives,
    CrossLocationNegatives,
    DonskerVaradhanBound,
    GlobalConcatCritic,
    InfoNCEBound,
    JensenShannonBound,
    LocalSeparableCritic,
    MIEstimator,
    NWJBound,
    ShuffleNegatives,
    make_bound,
    make_negatives,
    random_derangement,
)
from dim.mi.bounds import check_scores


@pytest.mark.parametrize("batch", [2, 3, 7, 64])
def test_derangement_is_a_permutation_without_fixed_points(batch):
    for _ in range(20):
        perm = random_derangement(batch)
        assert sorted(perm.tolist()) == list(range(batch))
        assert (perm != torch.arange(batch)).all()


def test_derangement_needs_two_samples():
    with pytest.raises(ValueError, match="at least 2"):
        random_derangement(1)


class RecordingCritic(GlobalConcatCritic):
    """Records which pairs the sampler asked for; scores are x_j * 100 + z_i so pairs are readable."""

    def __init__(self):
        super().__init__(1, 1, hidden_dim=1)
        self.calls = []

    def forward(self, x, z):
        self.calls.append("all")
        return x[:, 0].unsqueeze(0) * 100 + z  # (B, B): scores[i, j] = 100 x_j + z_i

    def pairs(self, x, z, x_index):
        self.calls.append(("pairs", x_index.clone()))
        return x[x_index, 0] * 100 + z  # (B, K)


def test_shuffle_pairs_each_code_with_another_input_only():
    batch = 9
    x = torch.arange(batch, dtype=torch.float32).unsqueeze(1)
    z = torch.arange(batch, dtype=torch.float32).unsqueeze(1)
    critic = RecordingCritic()
    positive, negative = ShuffleNegatives(num_negatives=3)(critic, x, z)
    assert positive.shape == (batch,) and negative.shape == (batch, 3)
    assert critic.calls[0][0] == "pairs" and "all" not in critic.calls  # never the B x B matrix
    assert torch.equal(positive, x[:, 0] * 100 + z[:, 0])
    partner = (negative - z) / 100  # which x each negative used
    assert (partner != torch.arange(batch).unsqueeze(1)).all()


def test_all_pairs_splits_diagonal_and_off_diagonal():
    batch = 4
    x = torch.arange(batch, dtype=torch.float32).unsqueeze(1)
    z = torch.arange(batch, dtype=torch.float32).unsqueeze(1)
    positive, negative = AllPairsNegatives()(RecordingCritic(), x, z)
    assert positive.tolist() == [101 * i for i in range(batch)]
    assert negative.shape == (batch, batch - 1)
    for i in range(batch):
        assert negative[i].tolist() == [100 * j + i for j in range(batch) if j != i]


@pytest.mark.parametrize(
    "sampler, negative_shape",
    [(ShuffleNegatives(2), (6, 2, 6)), (AllPairsNegatives(), (6, 5, 6)), (CrossLocationNegatives(), (6, 5 * 6, 1))],
)
def test_local_layouts(sampler, negative_shape):
    critic = LocalSeparableCritic(feature_channels=4, z_dim=3, embed_dim=8, hidden_dim=16)
    positive, negative = sampler(critic, torch.randn(6, 4, 2, 3), torch.randn(6, 3))
    assert positive.shape == (6, 6) and negative.shape == negative_shape


@pytest.mark.parametrize("sampler", [AllPairsNegatives(), CrossLocationNegatives()])
def test_all_pairs_samplers_need_two_samples(sampler):
    with pytest.raises(ValueError, match="at least 2"):
        sampler(GlobalConcatCritic(2, 2, 8), torch.randn(1, 2), torch.randn(1, 2))


def test_the_registry_names_each_sampler():
    assert {name: type(make_negatives(name)) for name in NEGATIVES} == {
        "shuffle": ShuffleNegatives, "all": AllPairsNegatives, "locations": CrossLocationNegatives,
    }


# ---------------------------------------------------------------- every position of every other image

def local_scores(batch: int = 3, side: int = 2, seed: int = 0):
    """A small local separable critic and inputs: (critic, x (B, 8, side, side), z (B, 4))."""
    torch.manual_seed(seed)
    critic = LocalSeparableCritic(8, 4, embed_dim=5, hidden_dim=6)
    return critic, torch.randn(batch, 8, side, side), torch.randn(batch, 4)


def test_cross_location_rows_hold_every_position_of_every_other_image():
    critic, x, z = local_scores(batch=3, side=2)
    scores = critic(x, z)  # (B, B, L): scores[i, j, l] = T(C_l(x_j), z_i)
    positive, negative = CrossLocationNegatives()(critic, x, z)
    assert positive.shape == (3, 4) and negative.shape == (3, 2 * 4, 1)
    for i in range(3):
        assert torch.equal(positive[i], scores[i, i])
        assert torch.equal(negative[i, :, 0], torch.cat([scores[i, j] for j in range(3) if j != i]))


def test_cross_location_reduces_to_all_pairs_for_global_scores():
    x = torch.arange(5, dtype=torch.float32).unsqueeze(1)
    z = torch.arange(5, dtype=torch.float32).unsqueeze(1)
    critic = RecordingCritic()
    across, every = CrossLocationNegatives()(critic, x, z), AllPairsNegatives()(critic, x, z)
    assert across[1].shape == (5, 4)
    assert torch.equal(across[0], every[0]) and torch.equal(across[1], every[1])


def naive_cross_location_infonce(scores: torch.Tensor) -> torch.Tensor:
    """The DIM paper's local infoNCE by a loop over rows i and positions l of ``scores`` (B, B, L)."""
    batch, _, locations = scores.shape
    terms = []
    for i in range(batch):
        negatives = torch.cat([scores[i, j] for j in range(batch) if j != i])  # (B-1) * L scores
        for l in range(locations):
            logits = torch.cat([scores[i, i, l : l + 1], negatives])
            terms.append(logits[0] - torch.logsumexp(logits, 0))
    return torch.stack(terms).mean() + math.log(1 + (batch - 1) * locations)


def former_cross_location_infonce(scores: torch.Tensor) -> torch.Tensor:
    """The formula DIM computed the cross-location infoNCE with before it became a sampler (``scores`` (B, B, L))."""
    batch, _, locations = scores.shape
    positive = scores.diagonal(dim1=0, dim2=1).t()  # (B, L)
    own = torch.eye(batch, dtype=torch.bool)[:, :, None]  # (B, B, 1)
    negative = torch.logsumexp(scores.masked_fill(own, float("-inf")).flatten(1), dim=1)  # (B,)
    return (positive - torch.logaddexp(positive, negative[:, None])).mean() + math.log(1 + (batch - 1) * locations)


@pytest.mark.parametrize("batch, side", [(2, 1), (3, 2), (5, 3)])
def test_cross_location_infonce_matches_the_naive_loop_and_the_former_formula(batch, side):
    critic, x, z = local_scores(batch, side)
    out = MIEstimator(critic, CrossLocationNegatives(), InfoNCEBound())(x, z)
    with torch.no_grad():
        scores = critic(x, z)
    assert torch.allclose(out.mi, naive_cross_location_infonce(scores), atol=1e-6)
    assert torch.allclose(out.mi, former_cross_location_infonce(scores), atol=1e-6)
    assert torch.equal(out.loss.detach(), -out.mi)


def test_cross_location_infonce_never_exceeds_log_of_one_plus_its_negatives():
    batch, locations = 4, 9
    scores = torch.full((batch, batch, locations), -50.0)
    scores[range(batch), range(batch)] = 50.0  # every position tells its own image apart perfectly

    class Fixed(torch.nn.Module):
        def forward(self, x, z):
            return scores

    mi = MIEstimator(Fixed(), CrossLocationNegatives(), InfoNCEBound())(torch.zeros(batch, 1), torch.zeros(batch, 1)).mi
    assert mi.item() == pytest.approx(math.log(1 + (batch - 1) * locations), abs=1e-4)


@pytest.mark.parametrize("bound", [JensenShannonBound(), InfoNCEBound(), DonskerVaradhanBound(), NWJBound()])
def test_bounds_read_shared_negatives_as_if_repeated_at_every_location(bound):
    critic, x, z = local_scores(batch=4, side=2)
    positive, negative = CrossLocationNegatives()(critic, x, z)  # (B, L), (B, K, 1)
    repeated = negative.expand(-1, -1, positive.shape[1])  # (B, K, L): the same K negatives at every position
    shared, full = bound(positive, negative), bound(positive, repeated.contiguous())
    assert torch.allclose(shared.loss, full.loss, atol=1e-6) and torch.allclose(shared.mi, full.mi, atol=1e-6)


@pytest.mark.parametrize("name", ["jsd", "nwj"])
def test_averaging_bounds_give_the_same_value_across_locations_as_with_all_pairs(name):
    # Both samplers hand these bounds the same set of off-diagonal scores; only their pairing with positions differs.
    critic, x, z = local_scores(batch=4, side=2)
    across = MIEstimator(critic, CrossLocationNegatives(), make_bound(name))(x, z)
    every = MIEstimator(critic, AllPairsNegatives(), make_bound(name))(x, z)
    assert torch.allclose(across.loss, every.loss, atol=1e-6) and torch.allclose(across.mi, every.mi, atol=1e-6)


def test_donsker_varadhan_across_locations_uses_one_normaliser_for_every_position():
    critic, x, z = local_scores(batch=4, side=2)
    mi = MIEstimator(critic, CrossLocationNegatives(), DonskerVaradhanBound())(x, z).mi
    with torch.no_grad():
        scores = critic(x, z)  # (B, B, L)
    batch, _, locations = scores.shape
    negatives = scores[~torch.eye(batch, dtype=torch.bool)]  # every T(C_l'(x_j), z_i), j != i
    log_mean_exp = torch.logsumexp(negatives.flatten(), 0) - math.log(batch * (batch - 1) * locations)
    expected = scores.diagonal(dim1=0, dim2=1).mean() - log_mean_exp
    assert torch.allclose(mi, expected, atol=1e-6)
    assert not torch.allclose(mi, MIEstimator(critic, AllPairsNegatives(), DonskerVaradhanBound())(x, z).mi)


def test_bounds_refuse_negatives_that_neither_match_nor_share_a_location_dimension():
    check_scores(torch.zeros(3, 4), torch.zeros(3, 6, 1))  # shared by the 4 locations
    check_scores(torch.zeros(3, 4, 5), torch.zeros(3, 6, 4, 1))  # shared along the last dimension only
    with pytest.raises(ValueError, match="with 1 for a location dimension"):
        check_scores(torch.zeros(3, 4), torch.zeros(3, 6, 2))
    with pytest.raises(ValueError, match="do not line up"):
        check_scores(torch.zeros(3, 4), torch.zeros(2, 6, 1))


def test_num_negatives_validated():
    with pytest.raises(ValueError, match="num_negatives"):
        ShuffleNegatives(0)
