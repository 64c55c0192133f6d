import pytest
import torch

from dim.mi import (
    AllPairsNegatives,
    GlobalConcatCritic,
    LocalSeparableCritic,
    ShuffleNegatives,
    random_derangement,
)


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


@pytest.mark.parametrize("sampler, k", [(ShuffleNegatives(2), 2), (AllPairsNegatives(), 5)])
def test_local_layouts(sampler, k):
    critic = LocalSeparableCritic(feature_channels=4, z_dim=3, embed_dim=8, hidden_dim=16)
    positive, negative = sampler(critic, torch.randn(6, 4, 2, 3), torch.randn(6, 3))
    assert positive.shape == (6, 6) and negative.shape == (6, k, 6)


def test_all_pairs_needs_two_samples():
    with pytest.raises(ValueError, match="at least 2"):
        AllPairsNegatives()(GlobalConcatCritic(2, 2, 8), torch.randn(1, 2), torch.randn(1, 2))


def test_num_negatives_validated():
    with pytest.raises(ValueError, match="num_negatives"):
        ShuffleNegatives(0)
