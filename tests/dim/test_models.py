"""Encoder shapes, the model a configuration builds and loading a trained encoder."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
import torch

import dim
from dim.config import TrainConfig
from dim.core.atomic import atomic_save
from dim.core.checkpoint import make_checkpoint
from dim.models import Encoder, FeatureHead, build_model, downsampling_stages

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
    config = TrainConfig(dataset="shapes", critic_hidden=16, precision="fp32").resolved()
    model = build_model(config, 3, 96)
    assert model.encoder.local_shape[1:] == (6, 6)
    loss = model.loss(model(torch.randn(2, 3, 96, 96)))
    assert torch.isfinite(loss)
    state = {"encoder_config": model.encoder.config(), "classes": []}
    checkpoint = make_checkpoint("dim", dataclasses.asdict(config), 0, {"model": model}, {}, [], state)
    atomic_save(checkpoint, tmp_path / "checkpoint.pt")
    extractor = dim.load_features(tmp_path, feature="conv")  # rebuilds the 96-px layout from the stored image_size
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


def test_feature_head_in_bf16_stays_close_to_fp32_and_returns_float32():
    torch.manual_seed(0)
    encoder = Encoder(z_dim=16).eval()
    images = torch.rand(8, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        exact = FeatureHead(encoder, "z", "fp32")(images)
        fast = FeatureHead(encoder, "z", "bf16")(images)
    assert fast.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(exact, fast).min() > 0.99  # bf16 keeps the direction kNN uses
