"""Tests for dim.core.files on tiny generated image folders."""

import logging

import numpy as np
import pytest
import torch
from PIL import Image

import dim.core.files
from dim.core.files import ImageFiles, find_images, load_image_folder, median_shorter_side
from dim.core.images import UnreadableImageError, image_to_uint8, load_image, open_image
from tests.dim.core.conftest import write_image


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DIM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DIM_DATA_DIR", raising=False)


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
    with caplog.at_level(logging.WARNING, logger="dim.core.files"):
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


def test_second_load_uses_the_cache(tmp_path, monkeypatch):
    for i in range(4):
        write_image(tmp_path / "imgs" / f"{i}.png", value=50 * i)
    first = load_image_folder(tmp_path / "imgs", image_size=8, progress=False)
    cache_files = list((tmp_path / "cache").iterdir())
    assert len(cache_files) == 1

    def fail(path, image_size, channels):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(dim.core.files, "load_image", fail)
    second = load_image_folder(tmp_path / "imgs", image_size=8, progress=False)
    assert torch.equal(first.images, second.images) and first.paths == second.paths
    monkeypatch.setattr(dim.core.files, "load_image", load_image)

    cache_files[0].write_bytes(b"corrupt")  # a broken cache is ignored and rebuilt
    third = load_image_folder(tmp_path / "imgs", image_size=8, progress=False)
    assert torch.equal(first.images, third.images)
    write_image(tmp_path / "imgs" / "9.png")  # a changed folder gets a new cache entry
    assert len(load_image_folder(tmp_path / "imgs", image_size=8, progress=False)) == 5
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2


def test_image_files_refuse_labels_of_another_length(tmp_path):
    with pytest.raises(ValueError, match="labels for"):
        ImageFiles([tmp_path / "a.png"], labels=torch.zeros(2, dtype=torch.int64))


def test_median_shorter_side_reads_headers_and_leaves_out_unreadable_files(tmp_path):
    paths = [write_image(tmp_path / f"{name}.png", size=size)
             for name, size in [("a", (10, 20)), ("b", (40, 30)), ("c", (50, 60)), ("d", (90, 70))]]
    (tmp_path / "e.jpg").write_text("not an image")
    paths.append(tmp_path / "e.jpg")
    assert median_shorter_side(paths) == 30  # shorter sides 10, 30, 50, 70: the lower median
    assert median_shorter_side(paths, sample=2) == 10  # every second file: a (10) and c (50)
    assert median_shorter_side(paths[-1:]) is None
    with pytest.raises(ValueError, match="sample must be positive, got 0"):
        median_shorter_side(paths, sample=0)
