"""FeatureExtractor: the shared interface of trained models, its preprocessing and its input checks."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

from dim.core.features import FeatureExtractor
from dim.core.images import image_to_uint8, normalize_images


class Recorder(nn.Module):
    """Mean colour per channel plus a constant, and remembers what it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = nn.Parameter(torch.tensor([10.0, 20.0, 30.0]))
        self.seen: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.seen.append(images)
        return images.mean(dim=(2, 3)) + self.offset  # (B, 3)


@pytest.fixture
def extractor() -> FeatureExtractor:
    return FeatureExtractor(Recorder(), image_size=4, channels=3, feature_dim=3, name="test:mean", source="x.pt")


def test_attributes_and_device(extractor):
    assert (extractor.image_size, extractor.channels, extractor.feature_dim) == (4, 3, 3)
    assert (extractor.name, extractor.source) == ("test:mean", "x.pt")
    assert extractor.device == torch.device("cpu")
    assert FeatureExtractor(Recorder(), 4, 3, 3, "n").source is None


def test_uint8_input_is_normalised_and_float_input_is_passed_as_is(extractor):
    images = torch.tensor([0, 255, 51], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 4, 4).contiguous()
    features = extractor(images)
    expected = torch.tensor([-1.0, 1.0, 51 / 127.5 - 1]) + torch.tensor([10.0, 20.0, 30.0])
    assert torch.allclose(features, expected.expand(2, 3), atol=1e-6)
    assert torch.equal(extractor.network.seen[-1], normalize_images(images))
    floats = torch.full((1, 3, 4, 4), 7.0)
    extractor(floats)
    assert extractor.network.seen[-1] is floats  # already a float: not scaled again


@pytest.mark.parametrize(
    "shape", [(3, 4, 4), (2, 1, 4, 4), (2, 4, 4, 3), (1, 2, 3, 4, 4)], ids=["no-batch", "grey", "channels-last", "5d"]
)
def test_a_wrongly_shaped_batch_is_refused_with_both_shapes(extractor, shape):
    with pytest.raises(ValueError) as error:
        extractor(torch.zeros(shape, dtype=torch.uint8))
    assert str(error.value) == f"expected images of shape (B, 3, H, W), got {shape}"
    assert extractor.network.seen == []  # refused before the network ran


def test_preprocess_is_the_shared_image_pipeline(extractor):
    image = Image.new("RGB", (12, 6), (255, 0, 51))  # resized to 8x4, centre-cropped to 4x4
    as_uint8 = extractor.preprocess_uint8(image)
    assert torch.equal(as_uint8, image_to_uint8(image, 4, 3)) and as_uint8.shape == (3, 4, 4)
    assert torch.equal(extractor.preprocess(image), normalize_images(as_uint8))
    grey = FeatureExtractor(Recorder(), image_size=4, channels=1, feature_dim=3, name="grey")
    assert grey.preprocess_uint8(image).shape == (1, 4, 4)


def test_embed_batches_pil_images_without_gradients(extractor):
    images = [Image.new("RGB", (4, 4), (255, 0, 51)), Image.new("RGB", (9, 5), (0, 255, 255))]
    features = extractor.embed(images)
    assert features.shape == (2, 3) and not features.requires_grad
    expected = torch.stack([extractor(extractor.preprocess_uint8(image)[None])[0] for image in images])
    assert torch.allclose(features, expected)
    assert torch.allclose(features[0], torch.tensor([1.0 + 10, -1.0 + 20, 51 / 127.5 - 1 + 30]), atol=1e-6)  # (255, 0, 51)
