"""Categorical accuracy: the confusion matrix, Hungarian matching and the evaluation of a run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from dim.core.probes import KNN_K, KNN_TEMPERATURE
from infogan.evaluate import (
    confusion_matrix,
    evaluate,
    match_categories,
    save_confusion_png,
)
from tests.infogan.conftest import OGAN_NOISE_DIM


def test_confusion_matrix_counts_label_rows_and_category_columns():
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    predicted = torch.tensor([1, 1, 0, 3, 3, 1])
    expected = [[0, 2, 0, 0], [1, 0, 0, 0], [0, 1, 0, 2]]
    assert confusion_matrix(labels, predicted, 3, 4).tolist() == expected


def test_a_permuted_labelling_is_perfect():
    permutation = torch.tensor([3, 0, 4, 1, 2])  # class i is always category permutation[i]
    labels = torch.arange(5).repeat(20)
    mapping, accuracy = match_categories(confusion_matrix(labels, permutation[labels], 5, 5))
    assert accuracy == 1.0
    assert mapping == {3: 0, 0: 1, 4: 2, 1: 3, 2: 4}  # category -> class


def test_a_partial_confusion_gives_the_hand_computed_accuracy():
    # rows: classes, columns: categories (24 images). Classes 0 and 1 both peak in
    # category 0; the best one-to-one matching gives it to class 1 (6) and
    # category 1 to class 0 (4), category 2 to class 2 (5): 15 of 24 images.
    confusion = np.array([[5, 4, 0], [6, 0, 1], [0, 3, 5]])
    mapping, accuracy = match_categories(confusion)
    assert mapping == {0: 1, 1: 0, 2: 2}
    assert accuracy == pytest.approx(15 / 24)


def test_more_categories_than_classes():
    confusion = np.array([[5, 0, 1, 0], [0, 0, 1, 4]])
    mapping, accuracy = match_categories(confusion)
    assert mapping == {0: 0, 3: 1} and accuracy == pytest.approx(9 / 11)


def test_empty_confusion_is_an_error():
    with pytest.raises(ValueError, match="non-empty"):
        match_categories(np.zeros((3, 3), dtype=np.int64))


CELL, TOP = 40, 58  # save_confusion_png's layout: 40 px cells below a 58 px header


def check_confusion_picture(path, confusion: np.ndarray, classes: list[str], order: list[int]) -> None:
    """Each cell of the picture: shaded by its share of the row, with its count written in it.

    ``order`` is the category of each column. The shade runs from white (share 0) to (30, 80, 175) (share 1);
    the count is written at the cell's left, in white on cells above half the row, else in black.
    """
    with Image.open(path) as opened:
        picture = opened.convert("RGB")
    left = 8 + 7 * max(len(name) for name in classes)
    num_classes, num_categories = confusion.shape
    assert picture.size == (left + CELL * num_categories + 8, TOP + CELL * num_classes + 8)
    font = ImageFont.load_default()
    for row in range(num_classes):
        for column, category in enumerate(order):
            count = int(confusion[row, category])
            share = count / max(confusion[row].sum(), 1)
            fill = (int(255 - 225 * share), int(255 - 175 * share), int(255 - 80 * share))
            x, y = left + column * CELL, TOP + row * CELL
            cell = picture.crop((x, y, x + CELL, y + CELL))
            assert cell.getpixel((CELL - 4, CELL - 4)) == fill, (row, column)  # a corner away from the text
            expected = Image.new("RGB", (CELL, CELL), fill)
            draw = ImageDraw.Draw(expected)
            draw.rectangle([0, 0, CELL - 1, CELL - 1], fill=fill, outline=(200, 200, 200))
            draw.text((4, CELL // 3), str(count), fill="white" if share > 0.5 else "black", font=font)
            assert np.array_equal(np.asarray(cell), np.asarray(expected)), f"cell {row}, {column} should show {count}"


def test_confusion_png_shades_and_labels_each_cell_in_matched_order(tmp_path):
    # Class 0 ("cat") peaks in category 1, class 1 ("dog") in category 0; category 2 is matched to no class.
    confusion = np.array([[1, 5, 0], [4, 0, 2]])
    mapping, _ = match_categories(confusion)
    assert mapping == {1: 0, 0: 1}
    path = tmp_path / "confusion.png"
    save_confusion_png(confusion, ["cat", "dog"], mapping, path, "title")
    check_confusion_picture(path, confusion, ["cat", "dog"], order=[1, 0, 2])
    # By hand: row 0's matched cell holds 5 of 6 images, shaded (67, 109, 188); row 1's unmatched cell 2 of 6.
    with Image.open(path) as picture:
        left = 8 + 7 * 3
        assert picture.convert("RGB").getpixel((left + CELL - 4, TOP + CELL - 4)) == (67, 109, 188)
        assert picture.convert("RGB").getpixel((left + 3 * CELL - 4, TOP + 2 * CELL - 4)) == (180, 196, 228)
    with pytest.raises(AssertionError, match="should show 10"):  # the check reads the counts, not only shades
        check_confusion_picture(path, 2 * confusion, ["cat", "dog"], order=[1, 0, 2])  # same shades


def test_evaluate_a_run(shapes_run):
    result = evaluate(shapes_run, device="cpu")
    assert result["dataset"] == "shapes" and result["iterations"] == 5 and result["num_images"] == 2000
    assert 0 < result["cat_accuracy"] <= 1
    assert len(result["mapping"]) == 3 and set(result["mapping"].values()) == {0, 1, 2}
    assert np.array(result["confusion"]).sum() == 2000
    mapping = {int(category): label for category, label in result["mapping"].items()}
    by_class = {label: category for category, label in mapping.items()}
    order = [by_class[label] for label in range(3)]
    order += [category for category in range(len(result["confusion"][0])) if category not in order]
    check_confusion_picture(shapes_run / "confusion.png", np.array(result["confusion"]), result["classes"], order)
    assert json.loads((shapes_run / "eval_test.json").read_text()) == result


def test_evaluate_an_ogan_run_by_the_knn_top1_of_its_encoding(ogan_run):
    result = evaluate(ogan_run, device="cpu")
    assert result["dataset"] == "shapes" and result["iterations"] == 4 and result["feature_dim"] == OGAN_NOISE_DIM
    assert (result["k"], result["temperature"], result["num_train"], result["num_test"]) == (
        KNN_K, KNN_TEMPERATURE, 20000, 2000
    )
    assert 0 < result["knn_top1"] <= 1 and "cat_accuracy" not in result
    assert (ogan_run / "knn.png").is_file()
    assert json.loads((ogan_run / "eval_test.json").read_text()) == result
