"""Duplicate groups: exact copies (same bytes) and near-duplicates (vectors at least ``threshold`` alike).

Every indexed vector is range-searched against the Faiss index itself, which
returns all pairs with inner product (cosine, the vectors being unit length) at
or above the threshold. Files with the same bytes are paired too, whatever
their score: the files are compared by size, and those that share a size with
another by SHA-256. The pairs are the edges of a graph on the images, and the
groups are its connected components (``scipy.sparse.csgraph``): a resized copy
of a copy lands in the group of the original even when the two copies alone
would fall below the threshold.

A group is *exact* when all its files have the same bytes, *near* otherwise
(a near group may still hold some identical files: their ``sha256`` agree).
Exact groups come first, then near ones, largest first within each kind.

On an exact (flat) index the pairs are exact; on IVF or HNSW they are what the
approximate search finds with the index's tuned parameters; on IVF-PQ the scores
are also those of the decoded codes, not of the exact vectors. To judge a
threshold, :func:`score_histogram` counts each image's nearest-neighbour score.

Example:
    >>> from retrieval import Index, find_duplicates
    >>> for group in find_duplicates(Index.load("photos.idx"), threshold=0.95):
    ...     print(group.kind, group.size, [image.path for image in group.images])
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import combinations
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torchvision.utils import make_grid, save_image

from dim.core.atomic import atomic_write, atomic_write_text
from retrieval import ann
from retrieval.grid import GRID_PADDING, open_or_none, thumbnail
from retrieval.index import Index

DEFAULT_THRESHOLD = 0.95
GROUP_KINDS = ("exact", "near")  # same bytes; vectors at least the threshold alike
HISTOGRAM_BIN_WIDTH = 0.01
EXPORT_FIELDS = (
    "group", "kind", "action", "id", "path", "file_size", "width", "height", "modified", "best_score", "sha256",
)
_BATCH = 4096  # query vectors per range search, to bound the memory of its result
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class GroupImage:
    """One image of a group: its id, full path, best score against another member, and its file's facts.

    Attributes:
        id: the image's index id.
        path: its full path.
        best_score: its highest cosine similarity to another member of the group.
        file_size: the file's size in bytes, ``None`` when the file is gone.
        width: the image's width in pixels (from its header), ``None`` when unreadable.
        height: its height in pixels, ``None`` when unreadable.
        modified: the file's modification time (seconds since the epoch), ``None`` when gone.
        sha256: the hex SHA-256 of the file when another indexed file has its size (files of
            a size no other has cannot be identical, and are not read), else ``None``.
    """

    id: int
    path: str
    best_score: float
    file_size: int | None
    width: int | None
    height: int | None
    modified: float | None
    sha256: str | None

    @property
    def exists(self) -> bool:
        return self.file_size is not None

    @property
    def pixels(self) -> int:
        """``width * height``, 0 when unknown."""
        return (self.width or 0) * (self.height or 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "best_score": self.best_score,
            "file_size": self.file_size,
            "width": self.width,
            "height": self.height,
            "modified": iso_time(self.modified),
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class DuplicateGroup:
    """Images that are duplicates of each other (one connected component).

    Attributes:
        images: the members, by id.
        pairs: ``(id_a, id_b, score)`` for every pair at or above the threshold or with
            the same bytes, ``id_a < id_b``, best score first.
    """

    images: list[GroupImage]
    pairs: list[tuple[int, int, float]]

    @property
    def size(self) -> int:
        return len(self.images)

    @property
    def kind(self) -> str:
        """``"exact"`` when every member has the same bytes, else ``"near"`` (see :data:`GROUP_KINDS`)."""
        hashes = {image.sha256 for image in self.images}
        return "exact" if len(hashes) == 1 and None not in hashes else "near"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "size": self.size,
            "images": [image.to_dict() for image in self.images],
            "pairs": [{"ids": [a, b], "score": score} for a, b, score in self.pairs],
        }


def iso_time(seconds: float | None) -> str | None:
    """Seconds since the epoch as ISO 8601 in UTC (``None`` stays ``None``)."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------- finding groups


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


def file_sha256(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def content_hashes(paths: Sequence[str | os.PathLike]) -> list[str | None]:
    """The SHA-256 of each file that has the size of another one (size first, then hash).

    Returns:
        One entry per path: the hex SHA-256, or ``None`` for a file whose size no
        other file has (it cannot be identical to any) or that cannot be read.
    """
    sizes: list[int | None] = []
    for path in paths:
        try:
            sizes.append(os.stat(path).st_size)
        except OSError:
            sizes.append(None)
    shared = {size for size, count in Counter(size for size in sizes if size is not None).items() if count > 1}
    hashes: list[str | None] = []
    for path, size in zip(paths, sizes):
        try:
            hashes.append(file_sha256(path) if size in shared else None)
        except OSError:
            hashes.append(None)
    return hashes


def _file_facts(path: str) -> tuple[int | None, float | None, int | None, int | None]:
    """``(size, mtime, width, height)`` of an image file; ``None`` for what cannot be read."""
    try:
        stat = os.stat(path)
    except OSError:
        return None, None, None, None
    try:
        with Image.open(path) as image:  # reads the header only
            width, height = image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        width = height = None
    return stat.st_size, stat.st_mtime, width, height


def find_duplicates(index: Index, threshold: float = DEFAULT_THRESHOLD) -> list[DuplicateGroup]:
    """Group the indexed images that have the same bytes or whose vectors are at least ``threshold`` alike.

    Args:
        index: a loaded index.
        threshold: the cosine similarity that makes two images near-duplicates,
            in [-1, 1]; identical files score 1.

    Returns:
        The groups of two or more images: exact groups (every file the same bytes)
        first, then near ones; within each kind largest first (ties: the higher
        best score, then the lower first id).
    """
    a, b, scores = similar_pairs(index, threshold)
    ids = [record.id for record in index.records]
    hashes = dict(zip(ids, content_hashes([index.path_of(i) for i in ids])))
    found = set(zip(a.tolist(), b.tolist()))
    same_bytes: dict[str, list[int]] = defaultdict(list)
    for image_id in ids:
        if hashes[image_id] is not None:
            same_bytes[hashes[image_id]].append(image_id)
    extra = [  # identical files the range search did not pair (threshold 1, or an approximate index)
        pair for members in same_bytes.values() for pair in combinations(sorted(members), 2) if pair not in found
    ]
    if extra:
        extra_scores = [float(index.vector_of(x) @ index.vector_of(y)) for x, y in extra]
        a = np.concatenate([a, np.array([x for x, _ in extra], dtype=np.int64)])
        b = np.concatenate([b, np.array([y for _, y in extra], dtype=np.int64)])
        scores = np.concatenate([scores, np.array(extra_scores, dtype=np.float32)])
        order = np.lexsort((b, a, -scores))
        a, b, scores = a[order], b[order], scores[order]
    if not len(a):
        return []
    members = np.unique(np.concatenate([a, b]))
    rows, columns = np.searchsorted(members, a), np.searchsorted(members, b)
    graph = coo_matrix((np.ones(len(a)), (rows, columns)), shape=(len(members), len(members)))
    _, labels = connected_components(graph, directed=False)
    best = np.full(len(members), -np.inf)
    np.maximum.at(best, rows, scores)
    np.maximum.at(best, columns, scores)
    groups = []
    for label in np.unique(labels):
        in_group = np.flatnonzero(labels == label)
        images = []
        for position in in_group:
            image_id = int(members[position])
            path = index.path_of(image_id)
            size, mtime, width, height = _file_facts(path)
            images.append(
                GroupImage(image_id, path, float(best[position]), size, width, height, mtime, hashes[image_id])
            )
        pair_rows = np.flatnonzero(labels[rows] == label)
        groups.append(DuplicateGroup(images, [(int(a[p]), int(b[p]), float(scores[p])) for p in pair_rows]))
    groups.sort(key=lambda g: (GROUP_KINDS.index(g.kind), -g.size, -g.pairs[0][2], g.images[0].id))
    return groups


# ---------------------------------------------------------------------- judging the threshold


@dataclass(frozen=True)
class ScoreHistogram:
    """How many images have their nearest neighbour at each score.

    Attributes:
        edges: ``(B + 1,)`` bin edges, :data:`HISTOGRAM_BIN_WIDTH` apart, ending at 1.
        counts: ``(B,)`` images per bin; bin ``i`` is ``[edges[i], edges[i + 1])``, the last one closed.
    """

    edges: np.ndarray
    counts: np.ndarray

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def at_or_above(self, threshold: float) -> int:
        """Images whose nearest-neighbour score is at or above ``threshold``, to the bin (the bins from it up)."""
        return int(self.counts[self.edges[:-1] >= threshold - 1e-9].sum())

    def to_dict(self) -> dict[str, Any]:
        return {"bin_width": HISTOGRAM_BIN_WIDTH, "edges": self.edges.tolist(), "counts": self.counts.tolist()}


def nearest_scores(index: Index) -> np.ndarray:
    """``(N,)`` float32: each indexed image's cosine similarity to its most similar *other* image.

    Each stored vector is searched with ``k = 2``: the hit that is not the image
    itself is its nearest neighbour (with identical copies, both hits may be others,
    which score the same). Empty for an index of fewer than two images.
    """
    ids, vectors = ann.index_ids(index.faiss_index), ann.stored_vectors(index.faiss_index)
    if len(ids) < 2:
        return np.zeros(0, dtype=np.float32)
    found = []
    for start in range(0, len(vectors), _BATCH):
        scores, hits = index.search_vectors(vectors[start : start + _BATCH], k=2)  # (Q, 2) each
        itself = hits[:, 0] == ids[start : start + _BATCH]
        found.append(np.where(itself, scores[:, 1], scores[:, 0]))
    return np.concatenate(found).astype(np.float32)


def score_histogram(index: Index) -> ScoreHistogram:
    """Histogram of :func:`nearest_scores`, in bins :data:`HISTOGRAM_BIN_WIDTH` wide from the lowest score to 1.

    Duplicates show up as a hump near 1, apart from the bulk of the collection; a
    threshold in the gap between the two separates them. Scores a rounding error
    above 1 count in the last bin.
    """
    scores = nearest_scores(index)
    width = HISTOGRAM_BIN_WIDTH
    low = max(-1.0, math.floor(float(scores.min()) / width) * width) if len(scores) else 1.0 - width
    bins = max(1, round((1.0 - low) / width))
    edges = np.round(1.0 - width * np.arange(bins, -1, -1), 6)  # ascending, the last edge exactly 1
    counts, _ = np.histogram(np.clip(scores, edges[0], 1.0), bins=edges)
    return ScoreHistogram(edges, counts.astype(np.int64))


def draw_histogram(
    histogram: ScoreHistogram, threshold: float | None = None, size: tuple[int, int] = (720, 360)
) -> Image.Image:
    """The histogram as a picture: bars on a log scale, those at or above ``threshold`` in red, with its line.

    Args:
        histogram: from :func:`score_histogram`.
        threshold: the cosine similarity to mark, or ``None``.
        size: ``(width, height)`` of the picture in pixels.

    Returns:
        An RGB image. A bar's height is ``log10(1 + count) / log10(1 + max count)`` of the
        plot, so a few duplicates stay visible next to thousands of unrelated images.
    """
    width, height = size
    left, right, top, bottom = 56, 16, 36, 40
    plot_width, plot_height = width - left - right, height - top - bottom
    picture = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=13)
    edges, counts = histogram.edges, histogram.counts
    low, high = float(edges[0]), float(edges[-1])

    def x_of(score: float) -> float:
        return left + (score - low) / (high - low) * plot_width

    scale = math.log10(1 + max(int(counts.max(initial=0)), 1))
    for start, end, count in zip(edges[:-1], edges[1:], counts):
        if count:
            bar_top = top + plot_height * (1 - math.log10(1 + int(count)) / scale)
            over = threshold is not None and start >= threshold - 1e-9
            draw.rectangle([x_of(start) + 0.5, bar_top, x_of(end) - 0.5, top + plot_height],
                           fill=(198, 40, 40) if over else (84, 110, 122))
    draw.line([left, top + plot_height, left + plot_width, top + plot_height], fill="black")
    draw.line([left, top, left, top + plot_height], fill="black")
    tick = math.ceil(low * 10 - 1e-9) / 10
    while tick <= high + 1e-9:
        x = x_of(tick)
        draw.line([x, top + plot_height, x, top + plot_height + 4], fill="black")
        draw.text((x, top + plot_height + 6), f"{tick:.1f}", fill="black", font=font, anchor="mt")
        tick = round(tick + 0.1, 6)
    most = int(counts.max(initial=0))
    for count in sorted({10**power for power in range(len(str(most))) if 2 * 10**power <= most} | {most} - {0}):
        y = top + plot_height * (1 - math.log10(1 + count) / scale)
        draw.line([left - 4, y, left, y], fill="black")
        draw.text((left - 6, y), f"{count:,}", fill="black", font=font, anchor="rm")
    title = f"nearest-neighbour score of each of {histogram.total:,} images (count, log scale)"
    if threshold is not None:
        x = x_of(min(max(threshold, low), high))
        draw.line([x, top, x, top + plot_height], fill=(183, 28, 28), width=2)
        title += f"; {histogram.at_or_above(threshold):,} at or above {threshold:g}"
    draw.text((left, 10), title, fill="black", font=font)
    draw.text((left + plot_width, height - 4), "cosine similarity", fill="black", font=font, anchor="rd")
    return picture


def save_histogram(histogram: ScoreHistogram, path: str | os.PathLike, threshold: float | None = None) -> None:
    """Write :func:`draw_histogram` as a PNG (atomically)."""
    picture = draw_histogram(histogram, threshold)
    atomic_write(path, lambda tmp: picture.save(tmp, format="PNG"))


# ---------------------------------------------------------------------- export


def export_rows(groups: Sequence[DuplicateGroup], actions: Mapping[int, str] | None = None) -> list[dict[str, Any]]:
    """One row per image of every group, with the fields of :data:`EXPORT_FIELDS`.

    Args:
        groups: from :func:`find_duplicates`; numbered from 1 in this order.
        actions: image id -> ``"keep"`` or ``"move"`` (see :func:`retrieval.cleanup.actions`);
            images it does not name get an empty action.
    """
    actions = actions or {}
    return [
        {"group": number, "kind": group.kind, "action": actions.get(image.id, ""), **image.to_dict()}
        for number, group in enumerate(groups, start=1)
        for image in group.images
    ]


def save_csv(
    groups: Sequence[DuplicateGroup], path: str | os.PathLike, actions: Mapping[int, str] | None = None
) -> None:
    """Write :func:`export_rows` as CSV (a header of :data:`EXPORT_FIELDS`, then one row per image; atomically)."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(export_rows(groups, actions))
    atomic_write_text(path, buffer.getvalue())


def report(
    groups: Sequence[DuplicateGroup], threshold: float, actions: Mapping[int, str] | None = None
) -> dict[str, Any]:
    """The groups as one JSON-ready object: ``{threshold, exact: [group], near: [group]}``.

    Each group is :meth:`DuplicateGroup.to_dict` plus its number ``group`` (from 1,
    as in :func:`export_rows`) and each image's ``action`` (see :func:`export_rows`).
    """
    actions = actions or {}
    found: dict[str, Any] = {"threshold": threshold, **{kind: [] for kind in GROUP_KINDS}}
    for number, group in enumerate(groups, start=1):
        data = group.to_dict()
        for image in data["images"]:
            image["action"] = actions.get(image["id"], "")
        found[group.kind].append({"group": number, **data})
    return found


# ---------------------------------------------------------------------- contact sheet


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
