"""A searchable image index: build it from a folder, load it, add to it, query it.

Example:
    >>> from retrieval import Index
    >>> index = Index.build("runs/cifar10", "photos/", "photos.index", progress=True)
    >>> index = Index.load("photos.index")  # the model comes from the manifest
    >>> for hit in index.search(["photos/cat.jpg"], k=5)[0].neighbours:
    ...     print(hit.rank, f"{hit.score:.3f}", hit.path)

The files in the index directory are described in :mod:`retrieval.store`.
Vectors are L2-normalised, so scores are cosine similarities in [-1, 1].
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Union

import faiss
import numpy as np
import torch
from PIL import Image

from dim.core.data import IMAGE_EXTENSIONS, find_images, open_image
from dim.core.device import select_device
from dim.core.features import FeatureExtractor
from retrieval import ann, store
from retrieval.embedding import describe_error, embed_batch, embed_paths, eval_mode
from retrieval.models import ModelFingerprint, fingerprint, load_model
from retrieval.store import ImageRecord

MANIFEST_FORMAT = 1
ModelLike = Union[FeatureExtractor, str, os.PathLike]
QueryLike = Union[str, os.PathLike, Image.Image]


class ModelMismatchError(ValueError):
    """The model given for an index is not the one the index was built with."""


@dataclass
class Neighbour:
    """One search hit: ``rank`` 0 is the best, ``score`` the cosine similarity, ``path`` the image file."""

    rank: int
    score: float
    id: int
    path: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "score": self.score, "rank": self.rank, "id": self.id}


@dataclass
class QueryResult:
    """The neighbours of one query, best first.

    Attributes:
        query: the query's path, or a label for an in-memory image.
        neighbours: at most ``k`` hits, scores descending.
        image: the query image itself (for drawing result grids).
    """

    query: str
    neighbours: list[Neighbour]
    image: Image.Image | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "results": [hit.to_dict() for hit in self.neighbours]}


@dataclass
class AddSummary:
    """What :meth:`Index.add` did: images newly indexed, files skipped as unreadable, files already indexed."""

    added: int
    skipped: int
    already_indexed: int


def _absolute(path: str | os.PathLike) -> Path:
    """An absolute, normalised path that keeps symbolic links (a linked file stays inside its folder)."""
    return Path(os.path.abspath(path))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _resolve_model(model: ModelLike, device: str | torch.device | None) -> FeatureExtractor:
    """A checkpoint path is loaded (on ``device``, default auto); a model is moved to ``device`` if given."""
    if not isinstance(model, FeatureExtractor):
        return load_model(model, device)
    return model if device is None else model.to(select_device(str(device)))


class Index:
    """Image vectors in a Faiss index, with their file metadata and the model that made them.

    Create one with :meth:`build` or :meth:`load`, not with the constructor.

    Attributes:
        directory: the index directory.
        model: the feature extractor (its fingerprint matches the manifest).
        manifest: the parsed ``manifest.json``.
        records: one :class:`~retrieval.store.ImageRecord` per indexed image, by id order.
        skipped: relative path -> reason, for every file that could not be read.
    """

    def __init__(
        self,
        directory: Path,
        model: FeatureExtractor,
        faiss_index: faiss.IndexIDMap | None,
        records: list[ImageRecord],
        skipped: dict[str, str],
        manifest: dict[str, Any],
    ) -> None:
        self.directory = directory
        self.model = model
        self.faiss_index = faiss_index
        self.records = records
        self.skipped = skipped
        self.manifest = manifest
        self._by_id = {record.id: record for record in records}

    # ------------------------------------------------------------------ creation

    @classmethod
    def build(
        cls,
        model: ModelLike,
        image_dir: str | os.PathLike,
        index_dir: str | os.PathLike,
        index_type: str = "auto",
        batch_size: int = 256,
        num_workers: int | None = None,
        device: str | torch.device | None = None,
        progress: bool = False,
        overwrite: bool = False,
    ) -> Index:
        """Embed every image under ``image_dir`` and write a new index to ``index_dir``.

        Args:
            model: a :class:`FeatureExtractor`, or a DIM run directory / checkpoint
                file (DIM or InfoGAN) to load with :func:`retrieval.models.load_model`.
            image_dir: folder searched recursively for images (see ``dim.core.data.find_images``).
            index_dir: where to write the index (created if needed).
            index_type: ``"auto"`` (size rule of :mod:`retrieval.ann`), ``"flat"``, ``"hnsw"`` or ``"ivf"``.
            batch_size: images per forward pass.
            num_workers: decoding processes (default: one per spare CPU core).
            device: where to run the model (default: auto for a checkpoint, the
                model's own device for a model).
            progress: show a progress bar.
            overwrite: replace an index already in ``index_dir``.

        Returns:
            The loaded index. Unreadable files are listed in ``index.skipped`` and ``skipped.txt``.

        Raises:
            FileExistsError: if ``index_dir`` holds an index and ``overwrite`` is false.
            ValueError: for a bad ``index_type``, or a folder without image files.
        """
        if index_type not in ann.INDEX_TYPES:
            raise ValueError(f"index_type must be one of {list(ann.INDEX_TYPES)}, got {index_type!r}")
        directory = Path(index_dir)
        if (directory / store.MANIFEST_FILE).exists() and not overwrite:
            raise FileExistsError(
                f"{directory} already holds an index; use `dim-search add` (Index.add) to add images, "
                "or --overwrite (overwrite=True) to rebuild it"
            )
        root = _absolute(image_dir)
        paths = find_images(root)
        if not paths:
            raise ValueError(
                f"no image files under {root} (looked recursively for {', '.join(sorted(IMAGE_EXTENSIONS))}, any case)"
            )
        model = _resolve_model(model, device)
        created = _now()
        manifest = {
            "format": MANIFEST_FORMAT,
            "created": created,
            "updated": created,
            "model": fingerprint(model).to_dict(),
            "feature_dim": int(model.feature_dim),
            "preprocessing": {
                "image_size": int(model.image_size),
                "channels": int(model.channels),
                "resize": "shorter side to image_size (bicubic, antialiased), centre crop",
                "pixel_range": [-1.0, 1.0],
                "l2_normalized": True,
            },
            "metric": "inner_product (cosine similarity of L2-normalised vectors)",
            "image_root": str(root),
            "index": {"requested": index_type},
            "counts": {},
        }
        index = cls(directory, model, None, [], {}, manifest)
        index._ingest(paths, batch_size, num_workers, progress)
        return index

    @classmethod
    def load(
        cls,
        index_dir: str | os.PathLike,
        model: ModelLike | None = None,
        device: str | torch.device | None = None,
    ) -> Index:
        """Open an index and check it is consistent and matches the model.

        Args:
            index_dir: a directory written by :meth:`build`.
            model: the model to embed queries with; default the checkpoint recorded
                in the manifest. Pass a path or a model when the checkpoint moved.
            device: where to run the model (see :meth:`build`).

        Raises:
            FileNotFoundError: if a file of the index, or the recorded checkpoint, is missing.
            ValueError: if the manifest is of another format, or the Faiss ids and the metadata
                disagree (the message names both counts).
            ModelMismatchError: if ``model`` is not the model the index was built with.
        """
        directory = Path(index_dir)
        manifest = store.read_manifest(directory)
        if manifest.get("format") != MANIFEST_FORMAT:
            raise ValueError(
                f"{directory} is an index of manifest format {manifest.get('format')!r}, but this version of "
                f"dim-toolkit reads format {MANIFEST_FORMAT}: rebuild it with `dim-search build`"
            )
        records = store.read_metadata(directory)
        faiss_index = store.read_index(directory)
        _check_consistent(directory, manifest, records, faiss_index)

        expected = ModelFingerprint.from_dict(manifest["model"])
        if model is None:
            if expected.checkpoint is None:
                raise ValueError(f"{directory} was built with an in-memory model; pass the model to load it with")
            if not Path(expected.checkpoint).is_file():
                raise FileNotFoundError(
                    f"{directory} was built with {expected.checkpoint}, which no longer exists; "
                    "pass a copy of that checkpoint (--model)"
                )
            model = expected.checkpoint
        model = _resolve_model(model, device)
        actual = fingerprint(model)
        differences = expected.differences(actual)
        if differences:
            raise ModelMismatchError(
                f"{directory} was built with {expected.describe()}, but the model given is "
                f"{actual.describe()} (different {', '.join(differences)}); its vectors are not comparable. "
                "Query with the model the index was built with, or rebuild the index with this one."
            )
        ann.set_search_params(faiss_index, manifest["index"]["search"])
        return cls(directory, model, faiss_index, records, store.read_skipped(directory), manifest)

    # ------------------------------------------------------------------ updates

    def add(
        self,
        image_dir: str | os.PathLike,
        batch_size: int = 256,
        num_workers: int | None = None,
        progress: bool = False,
    ) -> AddSummary:
        """Index the image files under ``image_dir`` that are not in the index yet.

        Files already indexed (same path) are left alone, even if they changed;
        files skipped before are tried again. ``image_dir`` may be the image
        root, a sub-folder of it, or another folder (its paths are then stored
        absolute). With ``index_type="auto"`` the index is rebuilt as another
        type when the new size calls for one (e.g. flat -> HNSW).
        """
        paths = find_images(image_dir)
        indexed = {record.path for record in self.records}
        new = [path for path in paths if self._key(path) not in indexed]
        added_before, skipped = len(self), self._ingest(new, batch_size, num_workers, progress)
        return AddSummary(added=len(self) - added_before, skipped=skipped, already_indexed=len(paths) - len(new))

    def _ingest(self, paths: list[Path], batch_size: int, num_workers: int | None, progress: bool) -> int:
        """Embed ``paths``, add the readable ones, record the others, write every file. Returns #skipped."""
        stats, readable = {}, []
        skipped: dict[str, str] = {}
        for path in paths:
            key = self._key(path)
            self.skipped.pop(key, None)  # tried again now
            try:
                stats[key] = path.stat()
                readable.append(path)
            except OSError as error:
                skipped[key] = describe_error(error)
        embeddings = embed_paths(self.model, readable, batch_size, num_workers, progress)
        for position, reason in embeddings.skipped:
            skipped[self._key(readable[position])] = reason
        first_id = max(self._by_id, default=-1) + 1
        new_records = []
        for offset, position in enumerate(embeddings.positions):
            key = self._key(readable[position])
            stat = stats[key]
            new_records.append(ImageRecord(first_id + offset, key, stat.st_size, stat.st_mtime))
        new_ids = np.array([record.id for record in new_records], dtype=np.int64)
        first_build = self.faiss_index is None
        self._update_faiss(embeddings.vectors, new_ids)
        self.records.extend(new_records)
        self._by_id.update((record.id, record) for record in new_records)
        self.skipped.update(skipped)
        self._save(write_vectors=first_build or bool(new_records))
        return len(skipped)

    def _update_faiss(self, new_vectors: np.ndarray, new_ids: np.ndarray) -> None:
        """Add vectors to the Faiss index, building or rebuilding it as the size rule says, and retune."""
        info = self.manifest["index"]
        current = None if self.faiss_index is None else ann.IndexSpec.from_dict(info)
        if current is not None and not len(new_ids):
            return
        total = len(new_ids) + (0 if self.faiss_index is None else self.faiss_index.ntotal)
        wanted = ann.choose_index_spec(total, info["requested"])
        if current is not None and current.kind == wanted.kind:
            spec = current
            self.faiss_index.add_with_ids(new_vectors, new_ids)
        else:  # first build, or the size rule now picks another index type
            if current is not None:
                new_vectors = np.concatenate([ann.stored_vectors(self.faiss_index), new_vectors])
                new_ids = np.concatenate([ann.index_ids(self.faiss_index), new_ids])
            spec = wanted
            self.faiss_index = ann.build_index(spec, new_vectors, new_ids)
        recall = 1.0
        if spec.kind != "flat":
            spec.search, recall = ann.tune_search_params(
                self.faiss_index, spec, ann.stored_vectors(self.faiss_index), ann.index_ids(self.faiss_index)
            )
        self.manifest["index"] = {"requested": info["requested"], **spec.to_dict(), "recall_at_10": round(recall, 4)}

    def _save(self, write_vectors: bool) -> None:
        """Write the index files (the Faiss index and metadata only when they changed), manifest last."""
        self.manifest["counts"] = {"indexed": len(self.records), "skipped": len(self.skipped)}
        self.manifest["updated"] = _now()
        self.directory.mkdir(parents=True, exist_ok=True)
        if write_vectors:
            store.write_index(self.directory, self.faiss_index)
            store.write_metadata(self.directory, self.records)
        store.write_skipped(self.directory, self.skipped)
        store.write_manifest(self.directory, self.manifest)

    # ------------------------------------------------------------------ queries

    def search(self, queries: QueryLike | Sequence[QueryLike], k: int = 10) -> list[QueryResult]:
        """The ``k`` nearest indexed images of each query image, by cosine similarity.

        Args:
            queries: image paths (inside the index or not) and/or PIL images; one or a sequence.
            k: neighbours per query (fewer when the index holds fewer images).

        Returns:
            One :class:`QueryResult` per query, in order. A query that is itself
            indexed comes back as its own rank-0 hit with score ~1.

        Raises:
            dim.core.data.UnreadableImageError: if a query file cannot be decoded.
        """
        if isinstance(queries, (str, os.PathLike, Image.Image)):
            queries = [queries]
        if not queries:
            return []
        labels, images = [], []
        for number, query in enumerate(queries):
            if isinstance(query, Image.Image):
                labels.append(getattr(query, "filename", "") or f"<image {number}>")
                images.append(query)
            else:
                labels.append(str(query))
                images.append(open_image(query))
        batch = torch.stack([self.model.preprocess_uint8(image) for image in images])  # (Q, C, H, W) uint8
        with eval_mode(self.model):
            vectors = embed_batch(self.model, batch)
        scores, ids = self.search_vectors(vectors, k)
        return [
            QueryResult(label, self._neighbours(row_scores, row_ids), image)
            for label, image, row_scores, row_ids in zip(labels, images, scores, ids)
        ]

    def search_vectors(self, vectors: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Raw Faiss search with L2-normalised ``(Q, D)`` float32 vectors.

        Returns:
            ``scores (Q, k)`` float32 descending and ``ids (Q, k)`` int64; ``-1`` ids
            pad the rows when the index holds fewer than ``k`` vectors.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.feature_dim:
            raise ValueError(f"expected vectors of shape (Q, {self.feature_dim}), got {vectors.shape}")
        search = dict(self.manifest["index"]["search"])
        if "efSearch" in search:  # HNSW needs at least k candidates in its queue
            search["efSearch"] = max(search["efSearch"], k)
        ann.set_search_params(self.faiss_index, search)
        return self.faiss_index.search(vectors, k)

    def _neighbours(self, scores: np.ndarray, ids: np.ndarray) -> list[Neighbour]:
        hits = [(float(score), int(i)) for score, i in zip(scores, ids) if i >= 0]
        return [Neighbour(rank, score, i, self.path_of(i)) for rank, (score, i) in enumerate(hits)]

    # ------------------------------------------------------------------ helpers

    def record(self, image_id: int) -> ImageRecord:
        """The metadata row of an indexed image (``path`` relative to :attr:`image_root`)."""
        return self._by_id[image_id]

    def path_of(self, image_id: int) -> str:
        """The full path of an indexed image."""
        return str(self.image_root / self._by_id[image_id].path)

    @property
    def image_root(self) -> Path:
        return Path(self.manifest["image_root"])

    @property
    def index_type(self) -> str:
        return self.manifest["index"]["type"]

    @property
    def feature_dim(self) -> int:
        return int(self.manifest["feature_dim"])

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return (
            f"Index({str(self.directory)!r}, {len(self)} images, {self.index_type}, "
            f"model {self.manifest['model']['name']!r})"
        )

    def _key(self, path: Path) -> str:
        """The metadata path of a file: relative to the image root (POSIX), or absolute outside it."""
        absolute = _absolute(path)
        try:
            return absolute.relative_to(self.image_root).as_posix()
        except ValueError:
            return absolute.as_posix()


def _check_consistent(
    directory: Path, manifest: dict[str, Any], records: list[ImageRecord], faiss_index: faiss.Index
) -> None:
    """Raise ValueError unless the Faiss ids, the metadata rows and the manifest agree."""
    advice = (
        "the index is inconsistent (interrupted write or edited files?); "
        "rebuild it with `dim-search build --overwrite`"
    )
    if faiss_index.ntotal != len(records):
        raise ValueError(
            f"{directory}: {store.INDEX_FILE} holds {faiss_index.ntotal} vectors but {store.METADATA_FILE} "
            f"lists {len(records)} images; {advice}"
        )
    counted = manifest.get("counts", {}).get("indexed")
    if counted != len(records):
        raise ValueError(
            f"{directory}: {store.MANIFEST_FILE} counts {counted} indexed images but {store.METADATA_FILE} "
            f"lists {len(records)}; {advice}"
        )
    metadata_ids = np.array([record.id for record in records], dtype=np.int64)
    if not np.array_equal(np.sort(ann.index_ids(faiss_index)), np.sort(metadata_ids)):
        raise ValueError(f"{directory}: the ids in {store.INDEX_FILE} and {store.METADATA_FILE} differ; {advice}")
    if len(np.unique(metadata_ids)) != len(metadata_ids):
        raise ValueError(f"{directory}: {store.METADATA_FILE} repeats ids; {advice}")
    if faiss_index.d != manifest["feature_dim"]:
        raise ValueError(
            f"{directory}: {store.INDEX_FILE} holds {faiss_index.d}-d vectors but the manifest says "
            f"{manifest['feature_dim']}; {advice}"
        )
