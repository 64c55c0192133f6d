"""Encoder shapes, the DIM objective and loading a trained encoder."""

from __future__ import annotations

import hashlib

import pytest
import torch

import dim
from dim.config import TrainConfig
from dim.core.atomic import atomic_save
from dim.core.checkpoint import make_checkpoint
from dim.mi import LocalSeparableCritic
from dim.models import Encoder, FeatureHead, downsampling_stages
from dim.objective import CrossLocationInfoNCE, DeepInfoMax
from dim.train import build_model

CHANNELS = {"dcgan": (128, 256, 1024), "resnet18": (256, 512, 512)}  # local, conv, fc
# size -> (local side, dcgan conv side, resnet18 conv side); 48 and 80 are sizes between the usual ones
SIDES = {28: (7, 3, 4), 32: (8, 4, 4), 48: (6, 3, 3), 64: (8, 4, 4), 80: (10, 5, 5), 96: (6, 3, 3), 128: (8, 4, 4)}

# The 32-px (and 28-px) layouts as the encoder had them before it scaled with the input size: old
# checkpoints must keep loading. Each digest is sha256 of the state dict's "name (shape)" lines.
DCGAN_32_STATE = [
    ("local.0.0.weight", (64, 3, 4, 4)), ("local.0.0.bias", (64,)),
    ("local.1.0.weight", (128, 64, 4, 4)), ("local.1.1.weight", (128,)), ("local.1.1.bias", (128,)),
    ("local.1.1.running_mean", (128,)), ("local.1.1.running_var", (128,)), ("local.1.1.num_batches_tracked", ()),
    ("top.0.weight", (256, 128, 4, 4)), ("top.1.weight", (256,)), ("top.1.bias", (256,)),
    ("top.1.running_mean", (256,)), ("top.1.running_var", (256,)), ("top.1.num_batches_tracked", ()),
    ("fc.1.weight", (1024, 4096)), ("fc.2.weight", (1024,)), ("fc.2.bias", (1024,)),
    ("fc.2.running_mean", (1024,)), ("fc.2.running_var", (1024,)), ("fc.2.num_batches_tracked", ()),
    ("head.weight", (128, 1024)), ("head.bias", (128,)),
]
OLD_STATE_DIGESTS = {
    ("dcgan", 3, 32): (22, "05983823f9283d8a91cf6df2d92499463d3ab8a3713d96aaa1e67abb3f54f636"),
    ("dcgan", 1, 28): (22, "aa15dfbdb6ce8933709ce74d1e0d06a671fe993c9d7dafc177acbbdbbf782809"),
    ("resnet18", 3, 32): (122, "b7f39e604570de32231a34527801bc59a05e364e0c261a544c6a288011be2f14"),
    ("resnet18", 1, 28): (122, "28356056aa50f1ed9bcbe017b634f91028e05469bb6fb9d9cd13d73b83a4a735"),
}


def test_downsampling_stages_bring_the_size_closest_to_32_on_a_log_scale():
    expected = {16: 0, 28: 0, 32: 0, 45: 0, 46: 1, 64: 1, 90: 1, 91: 2, 96: 2, 128: 2, 181: 2, 182: 3, 256: 3, 363: 4}
    assert {size: downsampling_stages(size) for size in expected} == expected


def test_the_32_px_layouts_are_unchanged():
    assert [(k, tuple(v.shape)) for k, v in Encoder("dcgan", 3, 32).state_dict().items()] == DCGAN_32_STATE
    for (arch, channels, size), (count, digest) in OLD_STATE_DIGESTS.items():
        state = Encoder(arch, channels, size).state_dict()
        lines = "\n".join(f"{k} {tuple(v.shape)}" for k, v in state.items())
        assert (len(state), hashlib.sha256(lines.encode()).hexdigest()) == (count, digest), (arch, size)


@pytest.mark.parametrize("size", list(SIDES))
@pytest.mark.parametrize("arch", ["dcgan", "resnet18"])
def test_encoder_shapes(arch, size):
    channels = 1 if size == 28 else 3
    local_side, conv_side = SIDES[size][0], SIDES[size][1 if arch == "dcgan" else 2]
    local_channels, conv_channels, fc_dim = CHANNELS[arch]
    encoder = Encoder(arch, channels, size, z_dim=64)
    assert encoder.local_shape == (local_channels, local_side, local_side)
    assert encoder.conv_shape == (conv_channels, conv_side, conv_side)
    out = encoder(torch.randn(2, channels, size, size))
    assert out.local.shape == (2, local_channels, local_side, local_side)
    assert out.conv.shape == (2, conv_channels, conv_side, conv_side) and out.fc.shape == (2, fc_dim)
    assert out.mean.shape == out.log_var.shape == out.z.shape == (2, 64)
    assert not torch.equal(out.z, out.mean)  # sampled while training
    (out.local.mean() + out.z.square().mean()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in encoder.parameters())
    encoder.eval()
    assert torch.equal(encoder(torch.zeros(2, channels, size, size)).z, encoder(torch.zeros(2, channels, size, size)).mean)
    for feature in ("z", "fc", "conv"):
        assert encoder.features(torch.randn(2, channels, size, size), feature).shape == (2, encoder.feature_dim(feature))


@pytest.mark.parametrize("arch", ["dcgan", "resnet18"])
def test_parameters_do_not_grow_with_the_input_size(arch):
    small, large = Encoder(arch, 3, 32), Encoder(arch, 3, 128)
    assert large.conv_dim == small.conv_dim  # the dcgan fc layer and the global critic keep their 32-px size
    assert sum(p.numel() for p in large.parameters()) < 1.02 * sum(p.numel() for p in small.parameters())


def test_a_96_px_model_is_built_from_its_config_and_its_checkpoint_loads(tmp_path):
    config = TrainConfig(dataset="shapes", critic_hidden=16).resolved()
    model = build_model(config, 3, 96)
    assert model.encoder.local_shape[1:] == (6, 6)
    loss = model.loss(model(torch.randn(2, 3, 96, 96)))
    assert torch.isfinite(loss)
    state = {"encoder_config": model.encoder.config()}
    checkpoint = make_checkpoint("dim", {"precision": "fp32"}, 0, {"model": model}, {}, [], state)
    atomic_save(checkpoint, tmp_path / "checkpoint.pt")
    extractor = dim.load_encoder(tmp_path, feature="conv")  # rebuilds the 96-px layout from the stored image_size
    assert (extractor.image_size, extractor.feature_dim) == (96, 256 * 3 * 3)
    images = torch.randint(0, 256, (2, 3, 96, 96), dtype=torch.uint8)
    with torch.no_grad():
        expected = FeatureHead(model.encoder.eval(), "conv", "fp32")(images.float() / 127.5 - 1)
        assert torch.allclose(extractor(images), expected, atol=1e-5)


def test_deterministic_encoder_has_no_log_var():
    out = Encoder(stochastic=False)(torch.randn(2, 3, 32, 32))
    assert out.log_var is None and torch.equal(out.z, out.mean)


def test_encoder_rejects_bad_settings():
    with pytest.raises(ValueError, match="architecture"):
        Encoder("vgg")
    with pytest.raises(ValueError, match="channels"):
        Encoder(channels=2)
    with pytest.raises(ValueError, match="at least 16"):
        Encoder(image_size=15)
    with pytest.raises(ValueError, match="positive"):
        downsampling_stages(0)
    with pytest.raises(ValueError, match="feature"):
        Encoder().features(torch.randn(2, 3, 32, 32), "logits")


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"bound": "infonce", "negatives": "locations", "critic": "separable"},
        {"bound": "dv", "negatives": "all", "critic": "separable", "alpha": 0.0},
    ],
)
def test_objective_terms(options):
    torch.manual_seed(0)
    model = DeepInfoMax(Encoder(), critic_hidden=32, **options)
    output = model(torch.randn(6, 3, 32, 32))
    loss = model.loss(output)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert output.local_term is not None and output.local_term.mi.requires_grad is False
    assert (output.global_term is None) == (options.get("alpha") == 0.0)
    loss.backward()
    assert model.encoder.local[0][0].weight.grad is not None


def test_two_views_score_each_views_features_against_the_other_views_code():
    torch.manual_seed(0)
    model = DeepInfoMax(Encoder(stochastic=False), "infonce", "all", "separable", "none", critic_hidden=16).eval()
    views = torch.randn(8, 3, 32, 32)  # two views of 4 images: rows 0-3 and 4-7
    output = model(views, views=2)
    encoding = model.encoder(views)  # eval mode: each row's encoding does not depend on the others
    for term, estimator, features in [
        (output.local_term, model.local_mi, encoding.local),
        (output.global_term, model.global_mi, encoding.conv.flatten(1)),
    ]:
        first = estimator(features[:4], encoding.z[4:])  # view a's features, view b's code
        second = estimator(features[4:], encoding.z[:4])
        assert torch.allclose(term.loss, (first.loss + second.loss) / 2, atol=1e-5)
        assert torch.allclose(term.mi, (first.mi + second.mi) / 2, atol=1e-5)
    assert not torch.allclose(output.local_term.mi, model(views).local_term.mi)  # one view of 8 images differs
    with pytest.raises(ValueError, match="views"):
        model(views, views=3)


def test_multi_scale_local_term_averages_the_terms_of_both_maps():
    torch.manual_seed(0)
    model = DeepInfoMax(Encoder(stochastic=False), "infonce", "locations", "separable", "none", critic_hidden=16,
                        local_maps="local+conv").eval()
    images = torch.randn(5, 3, 32, 32)
    output = model(images)
    encoding = model.encoder(images)
    local = model.local_mi(encoding.local, encoding.z)  # 8x8 positions of C(x)
    conv = model.conv_local_mi(encoding.conv, encoding.z)  # 4x4 positions of the last conv map, own critic
    assert model.conv_local_mi.critic is not model.local_mi.critic
    assert torch.allclose(output.local_term.loss, (local.loss + conv.loss) / 2, atol=1e-5)
    assert torch.allclose(output.local_term.mi, (local.mi + conv.mi) / 2, atol=1e-5)
    model.loss(output).backward()
    assert model.conv_local_mi.critic.x_projection.shortcut.weight.grad is not None
    assert DeepInfoMax(Encoder(stochastic=False), "infonce", "locations", "separable", "none").conv_local_mi is None
    with pytest.raises(ValueError, match="local_maps.*local\\+conv"):
        DeepInfoMax(Encoder(), local_maps="conv")
    with pytest.raises(ValueError, match="beta=0 turns off; set beta > 0"):
        DeepInfoMax(Encoder(), alpha=1.0, beta=0.0, local_maps="local+conv")  # a setting with no effect is refused


def test_objective_rejects_inconsistent_choices():
    with pytest.raises(ValueError, match="infonce"):
        DeepInfoMax(Encoder(), bound="jsd", negatives="locations")
    with pytest.raises(ValueError, match="log 2"):
        DeepInfoMax(Encoder(), bound="infonce", negatives="shuffle")
    with pytest.raises(ValueError, match="stochastic"):
        DeepInfoMax(Encoder(stochastic=False), prior="kl")


def test_cross_location_infonce_matches_a_direct_softmax():
    torch.manual_seed(0)
    critic = LocalSeparableCritic(8, 4, embed_dim=5, hidden_dim=6)
    x, z = torch.randn(3, 8, 2, 2), torch.randn(3, 4)
    mi = CrossLocationInfoNCE(critic)(x, z).mi
    scores = critic(x, z)  # (B, B, L)
    expected = []
    for i in range(3):
        negatives = torch.cat([scores[i, j] for j in range(3) if j != i])  # (B-1) * L scores
        for l in range(4):
            logits = torch.cat([scores[i, i, l : l + 1], negatives])
            expected.append(logits[0] - torch.logsumexp(logits, 0))
    assert torch.allclose(mi, torch.stack(expected).mean() + torch.log(torch.tensor(1.0 + 2 * 4)), atol=1e-5)


def test_feature_head_in_bf16_stays_close_to_fp32_and_returns_float32():
    torch.manual_seed(0)
    encoder = Encoder(z_dim=16).eval()
    images = torch.rand(8, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        exact = FeatureHead(encoder, "z", "fp32")(images)
        fast = FeatureHead(encoder, "z", "bf16")(images)
    assert fast.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(exact, fast).min() > 0.99  # bf16 keeps the direction kNN uses
