"""Critics against straightforward reference implementations of T(x, z)."""

import pytest
import torch
import torch.nn.functional as F

from dim import mi
from dim.mi import (
    GlobalConcatCritic,
    GlobalSeparableCritic,
    LocalConcatCritic,
    LocalSeparableCritic,
    make_critic,
)

B, DX, DZ, CC, H, W = 5, 6, 3, 4, 2, 3


def reference_concat_global(critic, x, z):
    """scores[i, j] = MLP(concat(x_j, z_i)), one pair at a time."""
    weight = torch.cat([critic.x_in.weight, critic.z_in.weight], dim=1)
    scores = torch.empty(len(z), len(x))
    for i in range(len(z)):
        for j in range(len(x)):
            hidden = F.linear(torch.cat([x[j], z[i]]), weight, critic.x_in.bias)
            scores[i, j] = critic.head(hidden)
    return scores


def reference_concat_local(critic, feature_map, z):
    """scores[i, j, l]: 1x1 convolutions over the map C_j with z_i tiled and concatenated."""
    layers = [critic.x_in] + [m for m in critic.head if isinstance(m, torch.nn.Linear)]
    first_weight = torch.cat([critic.x_in.weight, critic.z_in.weight], dim=1)
    scores = torch.empty(len(z), len(feature_map), H * W)
    for i in range(len(z)):
        for j in range(len(feature_map)):
            tiled = z[i].view(-1, 1, 1).expand(-1, H, W)
            h = torch.cat([feature_map[j], tiled]).unsqueeze(0)  # (1, Cc + Dz, H, W)
            h = F.conv2d(h, first_weight[:, :, None, None], critic.x_in.bias)
            for layer in layers[1:]:
                h = F.conv2d(F.relu(h), layer.weight[:, :, None, None], layer.bias)
            scores[i, j] = h.flatten()
    return scores


@torch.no_grad()
def test_global_concat_matches_mlp_on_concatenation():
    critic = GlobalConcatCritic(DX, DZ, hidden_dim=7, num_layers=2)
    x, z = torch.randn(B, DX), torch.randn(B, DZ)
    expected = reference_concat_global(critic, x, z)
    assert torch.allclose(critic(x, z), expected, atol=1e-5)


@torch.no_grad()
def test_local_concat_matches_1x1_convolutions():
    critic = LocalConcatCritic(CC, DZ, hidden_dim=7, num_layers=3)
    feature_map, z = torch.randn(B, CC, H, W), torch.randn(B, DZ)
    expected = reference_concat_local(critic, feature_map, z)
    assert critic(feature_map, z).shape == (B, B, H * W)
    assert torch.allclose(critic(feature_map, z), expected, atol=1e-5)


@torch.no_grad()
def test_separable_critics_are_dot_products_of_projections():
    critic = GlobalSeparableCritic(DX, DZ, embed_dim=4, hidden_dim=8)
    x, z = torch.randn(B, DX), torch.randn(B, DZ)
    expected = critic.z_projection(z) @ critic.x_projection(x).T
    assert torch.allclose(critic(x, z), expected, atol=1e-5)

    local = LocalSeparableCritic(CC, DZ, embed_dim=4, hidden_dim=8)
    feature_map = torch.randn(B, CC, H, W)
    g = local.x_projection(feature_map.permute(0, 2, 3, 1)).reshape(B, H * W, 4)  # per-position projection
    h = local.z_projection(z)
    expected = torch.stack([torch.stack([g[j] @ h[i] for j in range(B)]) for i in range(B)])
    assert torch.allclose(local(feature_map, z), expected, atol=1e-5)


@torch.no_grad()
def test_a_temperature_makes_separable_scores_cosines_over_it():
    critic = GlobalSeparableCritic(DX, DZ, embed_dim=4, hidden_dim=8, temperature=0.2)
    x, z = torch.randn(B, DX), torch.randn(B, DZ)
    g, h = critic.x_projection(x), critic.z_projection(z)
    expected = torch.tensor([[F.cosine_similarity(g[j], h[i], dim=0) / 0.2 for j in range(B)] for i in range(B)])
    assert torch.allclose(critic(x, z), expected, atol=1e-5)
    assert critic(x, z).abs().max() <= 1 / 0.2 + 1e-5  # bounded by 1 / T
    index = torch.tensor([[1, 2]] * B)
    assert torch.allclose(critic.pairs(x, z, index), expected.gather(1, index), atol=1e-5)

    local = LocalSeparableCritic(CC, DZ, embed_dim=4, hidden_dim=8, temperature=0.5)
    feature_map = torch.randn(B, CC, H, W)
    g = local.x_projection(feature_map.permute(0, 2, 3, 1)).reshape(B, H * W, 4)
    h = local.z_projection(z)
    expected = F.cosine_similarity(h[:, None, None, :], g[None], dim=-1) / 0.5  # (B, B, H*W)
    assert torch.allclose(local(feature_map, z), expected, atol=1e-5)
    with pytest.raises(ValueError, match="temperature must be positive"):
        GlobalSeparableCritic(DX, DZ, temperature=0.0)


CRITICS = [
    (GlobalConcatCritic(DX, DZ, hidden_dim=8), (B, DX)),
    (GlobalSeparableCritic(DX, DZ, embed_dim=4, hidden_dim=8), (B, DX)),
    (LocalConcatCritic(CC, DZ, hidden_dim=8), (B, CC, H, W)),
    (LocalSeparableCritic(CC, DZ, embed_dim=4, hidden_dim=8), (B, CC, H, W)),
]


@pytest.mark.parametrize("critic, x_shape", CRITICS)
def test_pairs_agree_with_all_pairs(critic, x_shape):
    x, z = torch.randn(x_shape), torch.randn(B, DZ)
    index = torch.randint(0, B, (B, 3))
    full = critic(x, z)  # (B, B, *L)
    expected = torch.stack([full[i, index[i]] for i in range(B)])
    assert torch.allclose(critic.pairs(x, z, index), expected, atol=1e-5)


@pytest.mark.parametrize("critic, x_shape", CRITICS)
def test_gradients_reach_critic_and_inputs(critic, x_shape):
    x = torch.randn(x_shape, requires_grad=True)
    z = torch.randn(B, DZ, requires_grad=True)
    critic.zero_grad()
    critic(x, z).sum().backward()
    assert x.grad.abs().sum() > 0 and z.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in critic.parameters())


@pytest.mark.parametrize("critic, x_shape", CRITICS)
def test_bad_inputs_are_refused(critic, x_shape):
    x, z = torch.randn(x_shape), torch.randn(B, DZ)
    with pytest.raises(ValueError, match="same number of samples"):
        critic(x, z[:-1])
    with pytest.raises(ValueError, match="x must have shape"):
        critic(x.unsqueeze(0), z)
    with pytest.raises(ValueError, match="x_index"):
        critic.pairs(x, z, torch.zeros(B, dtype=torch.long))


def test_constructor_validation():
    with pytest.raises(ValueError, match="num_layers"):
        GlobalConcatCritic(2, 2, num_layers=0)
    with pytest.raises(ValueError, match="positive"):
        LocalSeparableCritic(0, 2)


@pytest.mark.parametrize(
    "form, scope, expected, x_shape, scores_shape",
    [
        ("concat", "global", GlobalConcatCritic, (B, DX), (B, B)),
        ("concat", "local", LocalConcatCritic, (B, CC, H, W), (B, B, H * W)),
        ("separable", "global", GlobalSeparableCritic, (B, DX), (B, B)),
        ("separable", "local", LocalSeparableCritic, (B, CC, H, W), (B, B, H * W)),
    ],
)
def test_make_critic_builds_the_registered_class(form, scope, expected, x_shape, scores_shape):
    assert mi.CRITICS[form][mi.CRITIC_SCOPES.index(scope)] is expected
    critic = make_critic(form, scope, x_shape[1], DZ, hidden_dim=7)
    assert type(critic) is expected
    assert critic(torch.randn(x_shape), torch.randn(B, DZ)).shape == scores_shape


def test_make_critic_passes_options_on():
    assert len(make_critic("concat", "global", DX, DZ, hidden_dim=4, num_layers=3).head) == 6
    assert make_critic("separable", "local", CC, DZ, hidden_dim=4, embed_dim=9).z_projection.shortcut.out_features == 9


def test_make_critic_names_the_choices():
    with pytest.raises(ValueError, match="unknown critic form 'bilinear'; choose one of concat, separable"):
        make_critic("bilinear", "global", DX, DZ)
    with pytest.raises(ValueError, match="unknown critic scope 'patch'; choose one of global, local"):
        make_critic("concat", "patch", DX, DZ)


@pytest.mark.parametrize("temperature", [None, 0.1])
@pytest.mark.parametrize("local", [False, True])
def test_separable_scores_are_float32_products_under_bf16_autocast(local, temperature):
    """The projections may run in bf16; the score products (and normalisation) may not."""
    torch.manual_seed(0)
    critic_class = LocalSeparableCritic if local else GlobalSeparableCritic
    critic = critic_class(CC if local else DX, DZ, embed_dim=64, hidden_dim=32, temperature=temperature)
    x = 3 * torch.randn((B, CC, H, W) if local else (B, DX))
    z = 3 * torch.randn(B, DZ)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gx, hz = critic._embed(x, z)
        scores, pairs = critic(x, z), critic.pairs(x, z, torch.tensor([[1], [2], [0], [1], [0]][:B]))
    assert gx.dtype == hz.dtype == scores.dtype == pairs.dtype == torch.float32
    reference = torch.einsum("ie,jle->ijl", hz.double(), gx.double())  # the same embeddings, products in float64
    reference = reference if local else reference.squeeze(-1)
    torch.testing.assert_close(scores.double(), reference, rtol=1e-5, atol=1e-5)
    bf16 = torch.einsum("ie,jle->ijl", hz.bfloat16(), gx.bfloat16()).double()  # what autocast alone would give
    assert (bf16.squeeze(-1) if not local else bf16).sub(reference).abs().max() > 10 * scores.double().sub(
        reference).abs().max()
