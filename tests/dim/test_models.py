"""Encoder shapes, the DIM objective and loading a trained encoder."""

from __future__ import annotations

import pytest
import torch

from dim.mi import LocalSeparableCritic
from dim.models import Encoder, FeatureHead
from dim.objective import CrossLocationInfoNCE, DeepInfoMax


@pytest.mark.parametrize(
    ("arch", "channels", "size", "local", "conv"),
    [
        ("dcgan", 3, 32, (128, 8, 8), (256, 4, 4)),
        ("dcgan", 1, 28, (128, 7, 7), (256, 3, 3)),
        ("resnet18", 3, 32, (256, 8, 8), (512, 4, 4)),
    ],
)
def test_encoder_shapes(arch, channels, size, local, conv):
    encoder = Encoder(arch, channels, size, z_dim=64)
    out = encoder(torch.randn(2, channels, size, size))
    assert out.local.shape == (2, *local) and out.conv.shape == (2, *conv)
    assert out.mean.shape == out.log_var.shape == out.z.shape == (2, 64)
    assert not torch.equal(out.z, out.mean)  # sampled while training
    encoder.eval()
    assert torch.equal(encoder(torch.zeros(2, channels, size, size)).z, encoder(torch.zeros(2, channels, size, size)).mean)
    for feature in ("z", "fc", "conv"):
        assert encoder.features(torch.randn(2, channels, size, size), feature).shape == (2, encoder.feature_dim(feature))


def test_deterministic_encoder_has_no_log_var():
    out = Encoder(stochastic=False)(torch.randn(2, 3, 32, 32))
    assert out.log_var is None and torch.equal(out.z, out.mean)


def test_encoder_rejects_bad_settings():
    with pytest.raises(ValueError, match="architecture"):
        Encoder("vgg")
    with pytest.raises(ValueError, match="channels"):
        Encoder(channels=2)
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
