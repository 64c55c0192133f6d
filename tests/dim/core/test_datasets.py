"""Tests for dim.core.datasets on tiny generated data (no real datasets, no network)."""

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dim.core.datasets import DATASET_NAMES, image_files, load_dataset, resolve_data_dir
from dim.core.files import collate_files
from dim.core.images import image_to_uint8
from dim.core.shapes import make_shapes
from tests.dim.core.conftest import write_image


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an uint8 array in the MNIST idx format (magic 0x0000080N, big-endian int32 dims)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_shapes_dataset_splits_and_conversion():
    test = load_dataset("shapes", "test", image_size=16, channels=1)
    assert len(test) == 2000 and test.images.shape == (2000, 1, 16, 16)
    assert test.classes == ["circle", "square", "triangle"] and test.num_classes == 3 and test.is_labelled
    image, label = test[0]
    assert image.shape == (1, 16, 16) and 0 <= int(label) < 3
    rgb, _ = make_shapes(2000, image_size=16, seed=1)
    as_pil = torch.stack([image_to_uint8(Image.fromarray(x.permute(1, 2, 0).numpy()), 16, 1) for x in rgb[:20]])
    assert torch.equal(test.images[:20], as_pil)  # RGB -> grey exactly as the folder/inference path does
    with pytest.raises(ValueError, match="no split"):
        load_dataset("shapes", "unlabeled")


def test_flat_folder_split_is_deterministic_and_disjoint(tmp_path):
    for i in range(40):
        write_image(tmp_path / ("cats" if i % 2 else "dogs") / f"{i:03d}.png", value=i)
    train = load_dataset(tmp_path, "train", image_size=8, progress=False)
    test = load_dataset(tmp_path, "test", image_size=8, progress=False)
    assert set(train.paths).isdisjoint(test.paths)
    assert len(train) + len(test) == 40 and 0 < len(test) < 10
    assert train.classes == test.classes == ["cats", "dogs"]
    assert load_dataset(tmp_path, "test", image_size=8, progress=False).paths == test.paths
    with pytest.raises(ValueError, match="'train' and 'test'"):
        load_dataset(tmp_path, "val")


def test_folder_with_train_and_test_subfolders_uses_them(tmp_path):
    write_image(tmp_path / "train" / "a" / "1.png")
    write_image(tmp_path / "train" / "b" / "2.png")
    write_image(tmp_path / "test" / "a" / "3.png")
    test = load_dataset(tmp_path, "test", image_size=8, progress=False)
    assert test.paths == ["a/3.png"] and test.split == "test" and test.name == str(tmp_path)


def test_named_dataset_from_image_folder_tree(tmp_path):
    for split, count in [("train", 3), ("test", 1)]:
        for name in ["dog", "cat"]:
            for i in range(count):
                write_image(tmp_path / "cifar10" / split / name / f"{i:04d}.jpg", size=(32, 32))
    train = load_dataset("cifar10", "train", data_dir=tmp_path, download=False, progress=False)
    assert train.name == "cifar10" and train.split == "train"
    assert train.classes == ["cat", "dog"] and train.images.shape == (6, 3, 32, 32)
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    test = load_dataset("cifar10", "test", data_dir=tmp_path, image_size=16, channels=1, progress=False)
    assert test.images.shape == (2, 1, 16, 16)


def test_mnist_from_torchvision_layout(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    for prefix, n in [("train", 5), ("t10k", 3)]:
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    monkeypatch.setenv("DIM_DATA_DIR", str(tmp_path))
    train = load_dataset("mnist", "train", download=False)
    assert train.images.shape == (5, 1, 28, 28) and train.labels.tolist() == [0, 1, 2, 3, 4]
    assert train.num_classes == 10 and train.paths is None
    big = load_dataset("mnist", "test", image_size=32, channels=3, download=False)
    assert big.images.shape == (3, 3, 32, 32) and big.images.dtype == torch.uint8
    assert torch.equal(big.images[:, 0], big.images[:, 2])  # grey copied into RGB


def test_missing_named_dataset_says_where_to_put_files(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load_dataset("mnist", "train", data_dir=tmp_path / "nothing", download=False)
    message = str(error.value)
    assert str(tmp_path / "nothing" / "MNIST" / "raw") in message
    assert str(tmp_path / "nothing" / "mnist" / "train") in message
    assert "download" in message


def test_unknown_name_raises_and_lists_every_name():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet-42'") as error:
        load_dataset("imagenet-42")
    assert f"use one of {', '.join(DATASET_NAMES)}, or the path" in str(error.value)


@pytest.mark.parametrize("name", [name for name in DATASET_NAMES if name != "shapes"])
def test_every_listed_name_is_a_named_dataset(tmp_path, name):
    """Each name is looked for in the data dir (not refused as unknown), its own folder in the message."""
    with pytest.raises(FileNotFoundError) as error:
        load_dataset(name, "train", data_dir=tmp_path, download=False)
    assert f"{name} (train split) was not found in the data dir {tmp_path}" in str(error.value)
    assert str(tmp_path / name / "train") in str(error.value)


def test_resolve_data_dir_precedence(tmp_path, monkeypatch):
    assert resolve_data_dir(None) == Path("data")
    monkeypatch.setenv("DIM_DATA_DIR", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path
    assert resolve_data_dir("elsewhere") == Path("elsewhere")


def test_image_files_list_what_load_dataset_decodes_and_decode_on_read(tmp_path):
    for i in range(6):
        write_image(tmp_path / "folder" / ("cats" if i % 2 else "dogs") / f"{i}.png", value=40 * i, size=(12, 9))
    (tmp_path / "folder" / "dogs" / "bad.jpg").write_bytes(b"not an image")
    files = image_files(tmp_path / "folder", "train", image_size=8)
    memory = load_dataset(tmp_path / "folder", "train", image_size=8, progress=False)
    assert (files.classes, files.image_size, files.channels, files.nbytes) == (["cats", "dogs"], 8, 3, len(files) * 192)
    readable = [i for i in range(len(files)) if files[i][1] is not None]
    assert [files.relative_path(i) for i in readable] == memory.paths
    assert torch.equal(torch.stack([files[i][1] for i in readable]), memory.images)  # the same pixels either way
    assert torch.equal(files.labels[readable], memory.labels)
    (bad,) = [i for i in range(len(files)) if files[i][1] is None]
    assert files.relative_path(bad) == "dogs/bad.jpg" and "not an image" in files[bad][2]
    indices, images, skipped = collate_files([files[i] for i in range(len(files))])
    assert images.shape == (len(readable), 3, 8, 8) and indices.tolist() == readable and len(skipped) == 1
    picked = files.subset([readable[2], readable[0]])
    assert torch.equal(picked.load(progress=False, cache=False).images, memory.images[[2, 0]])


def test_named_datasets_in_memory_have_no_image_files(tmp_path):
    assert image_files("shapes", "train") is None  # generated in memory
    assert image_files("mnist", "train", tmp_path) is None  # torchvision's files
    with pytest.raises(ValueError, match="has no split"):
        image_files("mnist", "valid", tmp_path)
