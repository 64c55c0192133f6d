"""Near-duplicate groups: images whose vectors are at least ``threshold`` alike (cosine).

Every indexed vector is range-searched against the Faiss index itself, which
returns all pairs with inner product (cosine, the vectors being unit length) at
or above the threshold. The pairs are the edges of a graph on the images, and
the groups are its connected components (``scipy.sparse.csgraph``): a resized
copy of a copy lands in the group of the original even when the two copies
alone would fall below the threshold. Groups come largest first.

On an exact (flat) index the pairs are exact; on IVF or HNSW they are what the
approximate search finds with the index's tuned parameters.

Example:
    >>> from retrieval import Index, find_duplicates
    >>> for group in find_duplicates(Index.load("photos.idx"), threshold=0.95):
    ...     print(group.size, [image.path for image in group.images])
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torchvision.utils import make_grid, save_image

from retrieval import ann
from retrieval.grid import GRID_PADDING, open_or_none, thumbnail
from retrieval.index import Index

DEFAULT_THRESHOLD = 0.95
_BATCH = 4096  # query vectors per range search, to bound the memory of its result


@dataclass(frozen=True)
class GroupImage:
    """One image of a group: its id, full path, and its best score against another member."""

    id: int
    path: str
    best_score: float


@dataclass(frozen=True)
class DuplicateGroup:
    """Images that are near-duplicates of each other (one connected component).

    Attributes:
        images: the members, by id.
        pairs: ``(id_a, id_b, score)`` for every pair at or above the threshold, ``id_a < id_b``,
            best score first.
    """

    images: list[GroupImage]
    pairs: list[tuple[int, int, float]]

    @property
    def size(self) -> int:
        return len(self.images)

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "images": [{"id": image.id, "path": image.path, "best_score": image.best_score} for image in self.images],
            "pairs": [{"ids": [a, b], "score": score} for a, b, score in self.pairs],
        }


def similar_pairs(index: Index, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs of distinct indexed images with cosine similarity >= ``threshold``.

    Returns:
        ``(a, b, score)``: int64 ids with ``a < b`` (each pair once) and float32 scores.
    """
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a cosine similarity, between -1 and 1; got {threshold}")
    ids, vectors = ann.index_ids(index.faiss_index), ann.stored_vectors(index.faiss_index)
    radius = float(np.nextafter(np.float32(threshold), np.float32(-np.inf)))  # Faiss keeps scores > radius
    found_a, found_b, found_scores = [], [], []
    for start in range(0, len(vectors), _BATCH):
        limits, scores, neighbours = index.faiss_index.range_search(vectors[start : start + _BATCH], radius)
        queries = ids[start : start + _BATCH].repeat(np.diff(limits).astype(np.int64))
        keep = (queries < neighbours) & (scores >= threshold)  # each pair once, never an image with itself
        found_a.append(queries[keep])
        found_b.append(neighbours[keep])
        found_scores.append(scores[keep])
    a, b, score = (np.concatenate(parts) for parts in (found_a, found_b, found_scores))
    order = np.lexsort((b, a, -score))
    return a[order], b[order], score[order].astype(np.float32)


def find_duplicates(index: Index, threshold: float = DEFAULT_THRESHOLD) -> list[DuplicateGroup]:
    """Group the indexed images whose vectors are at least ``threshold`` alike.

    Args:
        index: a loaded index.
        threshold: the cosine similarity that makes two images near-duplicates,
            in [-1, 1]; identical files score 1.

    Returns:
        The groups of two or more images, largest first (ties: the higher best score first).
    """
    a, b, scores = similar_pairs(index, threshold)
    if not len(a):
        return []
    members = np.unique(np.concatenate([a, b]))
    position = {int(image_id): i for i, image_id in enumerate(members)}
    rows, columns = np.searchsorted(members, a), np.searchsorted(members, b)
    graph = coo_matrix((np.ones(len(a)), (rows, columns)), shape=(len(members), len(members)))
    _, labels = connected_components(graph, directed=False)
    best = np.full(len(members), -np.inf)
    np.maximum.at(best, rows, scores)
    np.maximum.at(best, columns, scores)
    groups = []
    for label in np.unique(labels):
        in_group = members[labels == label]
        pair_rows = np.flatnonzero(labels[rows] == label)
        groups.append(
            DuplicateGroup(
                images=[
                    GroupImage(int(i), index.path_of(int(i)), float(best[position[int(i)]])) for i in in_group
                ],
                pairs=[(int(a[p]), int(b[p]), float(scores[p])) for p in pair_rows],
            )
        )
    groups.sort(key=lambda group: (-group.size, -group.pairs[0][2], group.images[0].id))
    return groups


def contact_sheet(groups: list[DuplicateGroup], tile_size: int = 96, max_columns: int = 12) -> torch.Tensor:
    """Draw duplicate groups, one row per group, as a ``(3, H, W)`` float32 image in [0, 1].

    Args:
        groups: from :func:`find_duplicates`.
        tile_size: side of each square thumbnail, in pixels.
        max_columns: at most this many images per row (a larger group shows its first ones).

    Returns:
        Rows of ``min(max group size, max_columns)`` tiles; shorter groups are padded
        with grey tiles, an image whose file has gone is grey too. Tiles are separated
        by white padding (``torchvision.utils.make_grid``).
    """
    if not groups:
        raise ValueError("no duplicate groups to draw; lower the threshold to find some")
    if max_columns < 2:
        raise ValueError(f"max_columns must be at least 2 (a group has two images or more), got {max_columns}")
    columns = min(max_columns, max(group.size for group in groups))
    tiles = []
    for group in groups:
        row = [thumbnail(open_or_none(image.path), tile_size) for image in group.images[:columns]]
        tiles += row + [thumbnail(None, tile_size)] * (columns - len(row))
    return make_grid(torch.stack(tiles).float().div_(255), nrow=columns, padding=GRID_PADDING, pad_value=1.0)


def save_contact_sheet(
    groups: list[DuplicateGroup], path: str | os.PathLike, tile_size: int = 96, max_columns: int = 12
) -> None:
    """Write :func:`contact_sheet` to an image file (PNG by extension)."""
    save_image(contact_sheet(groups, tile_size, max_columns), path)
