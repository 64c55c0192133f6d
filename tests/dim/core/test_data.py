"""Tests for dim.core.data on tiny generated data (no real datasets, no network)."""

import logging
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dim.core.data
from dim.core.data import (
    DATASET_NAMES,
    ImageDataset,
    ImageFiles,
    collate_files,
    fits_in_memory,
    image_files,
    find_images,
    load_dataset,
    load_image_folder,
    make_shapes,
    resolve_data_dir,
)
from dim.core.images import UnreadableImageError, image_to_uint8, load_image, open_image


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DIM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DIM_DATA_DIR", raising=False)


def write_image(path: Path, value: int = 128, size: tuple[int, int] = (8, 8)) -> Path:
    """A small solid-colour RGB image; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image_format = Image.registered_extensions()[path.suffix.lower()]
    Image.new("RGB", size, (value, 255 - value, value // 2)).save(path, format=image_format)
    return path


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an uint8 array in the MNIST idx format (magic 0x0000080N, big-endian int32 dims)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_make_shapes_is_deterministic_and_well_formed():
    images, labels = make_shapes(64, image_size=24, seed=3)
    again, again_labels = make_shapes(64, image_size=24, seed=3)
    other, _ = make_shapes(64, image_size=24, seed=4)
    assert images.shape == (64, 3, 24, 24) and images.dtype == torch.uint8
    assert labels.shape == (64,) and labels.dtype == torch.int64
    assert set(labels.tolist()) == {0, 1, 2}
    assert torch.equal(images, again) and torch.equal(labels, again_labels)
    assert not torch.equal(images, other)
    assert images.float().std() > 30  # bright shapes on a dark background, not blank images


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


def test_image_folder_with_class_subfolders_is_labelled(tmp_path):
    for name in ["zebra", "ant", "moth"]:
        for i in range(2):
            write_image(tmp_path / "photos" / name / f"{i}.png", value=40 * i)
    dataset = load_image_folder(tmp_path / "photos", image_size=8, progress=False)
    assert dataset.classes == ["ant", "moth", "zebra"]
    assert dataset.images.shape == (6, 3, 8, 8) and dataset.split == "all"
    assert dataset.paths[0] == "ant/0.png"
    assert [dataset.classes[label] for label in dataset.labels] == [p.split("/")[0] for p in dataset.paths]


def test_flat_image_folder_is_unlabelled(tmp_path):
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "sub" / "b.png")  # one image at the top level makes the whole folder unlabelled
    dataset = load_image_folder(tmp_path, image_size=8, progress=False)
    assert dataset.classes == [] and dataset.num_classes == 0 and not dataset.is_labelled
    assert dataset.labels.tolist() == [-1, -1]
    assert dataset.paths == ["a.png", "sub/b.png"]


def test_unreadable_files_are_skipped_and_reported(tmp_path, caplog):
    write_image(tmp_path / "good.jpg", size=(64, 64))
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image at all")
    whole = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(whole).save(tmp_path / "whole.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "whole.jpg").read_bytes()[:600])
    (tmp_path / "link.png").symlink_to(tmp_path / "gone.png")  # a broken link is skipped too
    with caplog.at_level(logging.WARNING, logger="dim.core.data"):
        dataset = load_image_folder(tmp_path, progress=False)
    assert dataset.paths == ["good.jpg", "whole.jpg"]
    reasons = dict(dataset.skipped)
    assert set(reasons) == {"cut.jpg", "empty.jpg", "link.png", "text.jpg"}
    assert "empty" in reasons["empty.jpg"]
    assert "not an image" in reasons["text.jpg"]
    assert "truncated" in reasons["cut.jpg"].lower()
    assert "cannot read the file" in reasons["link.png"]
    assert "skipped 4 of 6" in caplog.text
    with pytest.raises(UnreadableImageError) as error:
        open_image(tmp_path / "empty.jpg")
    assert error.value.path == tmp_path / "empty.jpg" and isinstance(error.value, ValueError)


def test_folder_with_only_unreadable_or_no_images_raises(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"junk")
    with pytest.raises(ValueError, match="none of the 1 image files"):
        load_image_folder(tmp_path, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        load_image_folder(tmp_path / "empty", progress=False)
    with pytest.raises(FileNotFoundError):
        load_image_folder(tmp_path / "missing")


def test_extensions_are_case_insensitive(tmp_path):
    for name in ["a.JPG", "b.png", "c.webp", "d.Jpeg"]:
        write_image(tmp_path / name)
    (tmp_path / "notes.txt").write_text("skip me")
    dataset = load_image_folder(tmp_path, image_size=8, progress=False)
    assert dataset.paths == ["a.JPG", "b.png", "c.webp", "d.Jpeg"]


def test_images_are_resized_and_centre_cropped(tmp_path):
    wide = np.zeros((30, 60, 3), dtype=np.uint8)
    wide[:, 15:45] = (200, 100, 50)  # the central square of a 60x30 image is coloured, its sides black
    Image.fromarray(wide).save(tmp_path / "wide.png")
    dataset = load_image_folder(tmp_path, image_size=16, channels=1, progress=False)
    assert dataset.images.shape == (1, 1, 16, 16) and dataset.image_size == 16 and dataset.channels == 1
    assert torch.equal(dataset.images[0], image_to_uint8(Image.open(tmp_path / "wide.png"), 16, 1))  # as at inference
    grey = round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)  # PIL's ITU-R 601-2 luma
    assert (dataset.images[0, 0, :, 2:-2] - grey).abs().max() <= 1  # the black sides are cropped away


def test_find_images_recurses_sorted_and_skips_hidden(tmp_path):
    for name in ["b/z.png", "a/deep/er/x.gif", "top.bmp", ".hidden.png", ".git/objects/y.png", "a/.cache/w.png"]:
        write_image(tmp_path / name)
    (tmp_path / "a" / "readme.md").write_text("no")
    found = [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)]
    assert found == ["a/deep/er/x.gif", "b/z.png", "top.bmp"]


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


def test_second_load_uses_the_cache(tmp_path, monkeypatch):
    for i in range(4):
        write_image(tmp_path / "imgs" / f"{i}.png", value=50 * i)
    first = load_image_folder(tmp_path / "imgs", image_size=8, progress=False)
    cache_files = list((tmp_path / "cache").iterdir())
    assert len(cache_files) == 1

    def fail(path, image_size, channels):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(dim.core.data, "load_image", fail)
    second = load_image_folder(tmp_path / "imgs", image_size=8, progress=False)
    assert torch.equal(first.images, second.images) and first.paths == second.paths
    monkeypatch.setattr(dim.core.data, "load_image", load_image)

    cache_files[0].write_bytes(b"corrupt")  # a broken cache is ignored and rebuilt
    third = load_image_folder(tmp_path / "imgs", image_size=8, progress=False)
    assert torch.equal(first.images, third.images)
    write_image(tmp_path / "imgs" / "9.png")  # a changed folder gets a new cache entry
    assert len(load_image_folder(tmp_path / "imgs", image_size=8, progress=False)) == 5
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2


def test_resolve_data_dir_precedence(tmp_path, monkeypatch):
    assert resolve_data_dir(None) == Path("data")
    monkeypatch.setenv("DIM_DATA_DIR", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path
    assert resolve_data_dir("elsewhere") == Path("elsewhere")


def test_image_dataset_checks_its_tensors():
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.int64), [], "x", "train")
    with pytest.raises(ValueError, match="labels"):
        ImageDataset(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64), [], "x", "train")


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


def test_named_datasets_in_memory_have_no_image_files_and_memory_is_judged_against_free_ram(tmp_path):
    assert image_files("shapes", "train") is None  # generated in memory
    assert image_files("mnist", "train", tmp_path) is None  # torchvision's files
    with pytest.raises(ValueError, match="has no split"):
        image_files("mnist", "valid", tmp_path)
    assert fits_in_memory(1) and not fits_in_memory(10**15)
    with pytest.raises(ValueError, match="labels for"):
        ImageFiles([tmp_path / "a.png"], labels=torch.zeros(2, dtype=torch.int64))
