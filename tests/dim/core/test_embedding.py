"""The one embedding path: files streamed through decoding workers, or images already in memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import dim.core.embedding
from dim.core.embedding import decoding_split, embed_images
from dim.core.features import FeatureExtractor
from dim.core.files import ImageFiles
from dim.core.memory import ImageDataset


def mean_colour_model() -> FeatureExtractor:
    """Features = the mean of each channel in [-1, 1] plus (1, 2, 3): easy to compute by hand."""

    class MeanColour(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.offset = nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return images.mean(dim=(2, 3)) + self.offset  # (B, 3)

    return FeatureExtractor(MeanColour(), image_size=8, channels=3, feature_dim=3, name="test:mean").eval()


@pytest.fixture
def files(tmp_path):
    """Five flat-coloured PNGs and two unreadable files, in name order."""
    colours = [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]
    paths = []
    for index, colour in enumerate(colours):
        path = tmp_path / f"img{index}.png"
        Image.new("RGB", (8, 8), colour).save(path)
        paths.append(path)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    return paths[:2] + [tmp_path / "empty.png"] + paths[2:] + [tmp_path / "text.jpg"], colours


def expected_features(colours) -> np.ndarray:
    return np.array(colours, dtype=np.float32) / 127.5 - 1 + np.array([1, 2, 3], dtype=np.float32)


@pytest.mark.parametrize("workers", [0, 1])
def test_files_stream_in_order_and_unreadable_ones_are_reported(files, workers):
    paths, colours = files
    embedded = embed_images(mean_colour_model(), paths, batch_size=2, num_workers=workers, normalize=False)
    assert embedded.positions.tolist() == [0, 1, 3, 4, 5]
    assert [position for position, _ in embedded.skipped] == [2, 6]
    np.testing.assert_allclose(embedded.vectors, expected_features(colours), atol=1e-5)


def test_normalised_rows_have_unit_length_and_the_raw_direction(files):
    paths, colours = files
    embedded = embed_images(mean_colour_model(), ImageFiles(paths, 8, 3), batch_size=3, num_workers=0)
    raw = expected_features(colours)
    np.testing.assert_allclose(embedded.vectors, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-5)


def test_images_in_memory_take_the_same_path(files):
    paths, colours = files
    images = torch.tensor(colours, dtype=torch.uint8)[:, :, None, None].expand(-1, -1, 8, 8).contiguous()
    dataset = ImageDataset(images, torch.arange(5), [], "colours", "test")
    embedded = embed_images(mean_colour_model(), dataset, batch_size=2, normalize=False)
    assert embedded.positions.tolist() == [0, 1, 2, 3, 4] and embedded.skipped == []
    np.testing.assert_allclose(embedded.vectors, expected_features(colours), atol=1e-5)


def test_bad_batch_size_is_refused(files):
    with pytest.raises(ValueError, match="batch_size must be positive"):
        embed_images(mean_colour_model(), files[0], batch_size=0)


@pytest.mark.parametrize("num_workers, cores, split", [
    (None, 1, (1, 0)),  # one core: decode in the main process, on its one thread
    (None, 2, (1, 2)),  # the measured best on two cores: a worker per core, the network on one thread
    (None, 4, (1, 4)),
    (None, 16, (8, 8)),  # at most 8 workers; the network takes the rest
    (0, 2, (2, 0)),  # no workers: the network has every core
    (1, 2, (1, 1)),
    (3, 2, (1, 3)),  # more workers than cores: still one thread
])
def test_decoding_split_gives_every_core_a_decoder_and_the_network_the_rest(num_workers, cores, split):
    assert decoding_split(num_workers, cores) == split


def test_decoding_split_refuses_negative_workers():
    with pytest.raises(ValueError, match="num_workers must be >= 0 .*got -1"):
        decoding_split(-1, 2)


def thread_recording_model(seen: list[int]) -> FeatureExtractor:
    """:func:`mean_colour_model` that records torch's thread count at each forward pass."""
    model = mean_colour_model()
    model.register_forward_pre_hook(lambda module, inputs: seen.append(torch.get_num_threads()))
    return model


def test_files_embed_on_the_split_threads_and_the_count_is_restored(files, monkeypatch):
    paths, _ = files
    monkeypatch.setattr(dim.core.embedding, "available_cores", lambda: 3)
    before, seen = torch.get_num_threads(), []
    embed_images(thread_recording_model(seen), paths, batch_size=8, num_workers=1)  # 3 cores, 1 worker: 2 threads
    embed_images(thread_recording_model(seen), paths, batch_size=8, num_workers=0, threads=1)
    assert seen == [2, 1] and torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads must be >= 1, got 0"):
        embed_images(mean_colour_model(), paths, threads=0)
