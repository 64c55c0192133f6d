"""Tests for dim.core.memory."""

import pytest
import torch

from dim.core.memory import ImageDataset, fits_in_memory


def test_image_dataset_checks_its_tensors():
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.int64), [], "x", "train")
    with pytest.raises(ValueError, match="labels"):
        ImageDataset(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64), [], "x", "train")


def test_memory_is_judged_against_free_ram():
    assert fits_in_memory(1) and not fits_in_memory(10**15)
