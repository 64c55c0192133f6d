"""Categorical accuracy: the confusion matrix, Hungarian matching and the evaluation of a run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from infogan.evaluate import (
    confusion_matrix,
    evaluate,
    match_categories,
    save_confusion_png,
)


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


def test_confusion_png(tmp_path):
    path = tmp_path / "confusion.png"
    save_confusion_png(np.array([[3, 1], [0, 4]]), ["cat", "dog"], {1: 0, 0: 1}, path, "title")
    assert Image.open(path).size[0] > 80


def test_evaluate_a_run(shapes_run):
    result = evaluate(shapes_run, device="cpu")
    assert result["dataset"] == "shapes" and result["iterations"] == 5 and result["num_images"] == 2000
    assert 0 < result["cat_accuracy"] <= 1
    assert len(result["mapping"]) == 3 and set(result["mapping"].values()) == {0, 1, 2}
    assert np.array(result["confusion"]).sum() == 2000
    assert (shapes_run / "confusion.png").is_file()
    assert json.loads((shapes_run / "eval_test.json").read_text())["cat_accuracy"] == result["cat_accuracy"]
