"""A searchable image index: build it from a folder, load it, add to it, query it.

Example:
    >>> from retrieval import Index
    >>> from retrieval.index import train_model
    >>> run = train_model("photos/", "photos.index", minutes=10, progress=True)  # or a run trained elsewhere
    >>> index = Index.build(run, "photos/", "photos.index", progress=True)
    >>> index = Index.load("photos.index")  # the model comes from the manifest
    >>> for hit in index.search(["photos/cat.jpg"], k=5)[0].neighbours:
    ...     print(hit.rank, f"{hit.score:.3f}", hit.path)

The files in the index directory, and how a write switches them in as one, are
described in :mod:`retrieval.store`; :meth:`Index.build` and :meth:`Index.add` hold
the directory's lock (:mod:`retrieval.lock`) so that two writers never interleave.
Vectors are L2-normalised, so scores are cosine similarities in [-1, 1].
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Union

import faiss
import numpy as np
import torch
from PIL import Image

from dim.core.device import select_device
from dim.core.embedding import embed_batch, embed_images, eval_mode
from dim.core.features import FeatureExtractor
from dim.core.files import IMAGE_EXTENSIONS, find_images
from dim.core.images import describe_error, load_image, open_image
from dim.core.ray_embedding import check_engine, embed_images_ray
from dim.core.registry import folder_trainer
from retrieval import ann, store
from retrieval.lock import IndexLock, IndexLockedError
from retrieval.models import ModelFingerprint, fingerprint, load_model
from retrieval.store import DamagedIndexError, ImageRecord

MANIFEST_FORMAT = 2  # 2: the manifest records its write (id, and size and CRC-32 of every file)
READ_RETRY_SECONDS = 5.0  # how long a reader waits for a writer that is switching files in
MODEL_DIR = "model"  # where train_model keeps the model it trains, inside the index directory
TRAINER_KIND = "dim"  # the model family train_model trains (dim.core.registry.folder_trainer)
DEFAULT_TRAIN_MINUTES = 10.0
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
        faiss_index: faiss.Index | None,
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
        self._positions: dict[int, int] | None = None  # id -> position in the Faiss index, made on demand
        self._writing = False  # inside writing(): remove() and insert() may write

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
        wait: bool = True,
        engine: str = "local",
        address: str | None = None,
    ) -> Index:
        """Embed every image under ``image_dir`` and write a new index to ``index_dir``.

        Args:
            model: a :class:`FeatureExtractor`, or a DIM run directory / checkpoint
                file (DIM or InfoGAN) to load with :func:`retrieval.models.load_model`.
            image_dir: folder searched recursively for images (see ``dim.core.files.find_images``).
            index_dir: where to write the index (created if needed).
            index_type: ``"auto"`` (size rule of :mod:`retrieval.ann`), ``"flat"``, ``"hnsw"``, ``"ivf"`` or
                ``"ivfpq"``.
            batch_size: images per forward pass.
            num_workers: decoding processes of the local engine (default: one per CPU core,
                :func:`dim.core.embedding.decoding_split`).
            device: where to run the model (default: auto for a checkpoint, the
                model's own device for a model).
            progress: show a progress bar.
            overwrite: replace an index already in ``index_dir``.
            wait: if another writer holds the directory's lock, wait for it (printing
                who holds it); if false, raise :class:`~retrieval.lock.IndexLockedError`.
            engine: where the images are decoded and embedded: ``"local"``, in decoding
                processes here (:func:`dim.core.embedding.embed_images`), or ``"ray"``, by Ray
                Data actors holding one model each (:func:`dim.core.ray_embedding.embed_images_ray`;
                needs ``pip install 'dim-toolkit[ray]'``). Listing the folder and building the
                Faiss index stay in this process; both engines give the same vectors.
            address: with ``engine="ray"``, the Ray cluster to run on (e.g. ``"HEAD:6379"``); the
                images must then be readable at the same path on every node. ``None``: a Ray
                started on this machine.

        Returns:
            The loaded index. Unreadable files are listed in ``index.skipped`` and ``skipped.txt``.

        Raises:
            FileExistsError: if ``index_dir`` holds an index and ``overwrite`` is false.
            ValueError: for a bad ``index_type``, or a folder without image files; for an unknown
                ``engine``, an ``address`` without ``engine="ray"``, or ``num_workers`` with it.
            ImportError: for ``engine="ray"`` when Ray is not installed.
            IndexLockedError: if ``wait`` is false and another writer holds the lock.
        """
        check_engine(engine, address, num_workers)
        if index_type not in ann.INDEX_TYPES:
            raise ValueError(f"index_type must be one of {list(ann.INDEX_TYPES)}, got {index_type!r}")
        directory = Path(index_dir)
        _refuse_existing(directory, overwrite)
        root = _absolute(image_dir)
        paths = _images_under(root, directory)
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
        with IndexLock(directory, wait=wait):
            store.recover(directory)
            _refuse_existing(directory, overwrite)  # again: another writer may have built it meanwhile
            index._ingest(paths, batch_size, num_workers, progress, engine, address)
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

        A writer switching its files in at that moment is waited for (at most
        :data:`READ_RETRY_SECONDS`), and a write that was interrupted while switching
        is finished first, so the files read always belong to one write.

        Raises:
            FileNotFoundError: if a file of the index, or the recorded checkpoint, is missing.
            ValueError: if the manifest is of another format, or the Faiss ids and the metadata
                disagree (the message names both counts).
            DamagedIndexError: if a file is truncated, damaged or from another write (a
                ``ValueError``; the message names the file and says how to rebuild).
            ModelMismatchError: if ``model`` is not the model the index was built with.
        """
        directory = Path(index_dir)
        manifest, records, faiss_index, skipped = _read_files(directory)

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
        return cls(directory, model, faiss_index, records, skipped, manifest)

    # ------------------------------------------------------------------ updates

    def add(
        self,
        image_dir: str | os.PathLike,
        batch_size: int = 256,
        num_workers: int | None = None,
        progress: bool = False,
        wait: bool = True,
        engine: str = "local",
        address: str | None = None,
    ) -> AddSummary:
        """Index the image files under ``image_dir`` that are not in the index yet.

        Files already indexed (same path) are left alone, even if they changed;
        files skipped before are tried again. ``image_dir`` may be the image
        root, a sub-folder of it, or another folder (its paths are then stored
        absolute). With ``index_type="auto"`` the index is rebuilt as another
        type when the new size calls for one (e.g. flat -> HNSW).

        The directory's lock is held throughout. If another writer changed the
        index since it was loaded, the newer files are read first, so nothing it
        added is embedded twice or lost.

        Args:
            image_dir: the folder to search recursively for images.
            batch_size: images per forward pass.
            num_workers: decoding processes of the local engine (default: one per CPU core,
                :func:`dim.core.embedding.decoding_split`).
            progress: show a progress bar.
            wait: wait for another writer (see :meth:`build`); if false, raise
                :class:`~retrieval.lock.IndexLockedError` when the index is locked.
            engine: ``"local"`` or ``"ray"``, as in :meth:`build`.
            address: with ``engine="ray"``, the Ray cluster to run on, as in :meth:`build`.
        """
        check_engine(engine, address, num_workers)
        with IndexLock(self.directory, wait=wait):
            self._refresh()
            paths = _collection(Path(image_dir), self.directory)
            indexed = {record.path for record in self.records}
            new = [path for path in paths if self._key(path) not in indexed]
            added_before, skipped = len(self), self._ingest(new, batch_size, num_workers, progress, engine, address)
        return AddSummary(added=len(self) - added_before, skipped=skipped, already_indexed=len(paths) - len(new))

    def _refresh(self) -> None:
        """Under the lock: finish an interrupted write, and take over files another writer wrote since loading."""
        store.recover(self.directory)
        on_disk = store.read_manifest(self.directory).get("write", {}).get("id")
        if on_disk == self.manifest.get("write", {}).get("id"):
            return
        newer = Index.load(self.directory, model=self.model)
        self.faiss_index, self.records, self.skipped, self.manifest = (
            newer.faiss_index, newer.records, newer.skipped, newer.manifest
        )
        self._by_id, self._positions = newer._by_id, None

    @contextmanager
    def writing(self, wait: bool = True) -> Iterator[Index]:
        """Hold the directory's lock, with this index brought up to date, for a write made of several steps.

        :meth:`add` does the same for itself. :mod:`retrieval.cleanup` moves files and
        calls :meth:`remove` or :meth:`insert` inside it, so that no other writer comes between.

        Args:
            wait: wait for another writer (see :meth:`build`); if false, raise
                :class:`~retrieval.lock.IndexLockedError` when the index is locked.

        Example:
            >>> with index.writing():
            ...     vectors = index.remove([3, 7])
        """
        with IndexLock(self.directory, wait=wait):
            self._refresh()
            self._writing = True
            try:
                yield self
            finally:
                self._writing = False

    def remove(self, ids: Sequence[int]) -> np.ndarray:
        """Take images out of the index and write it as one write; call it inside :meth:`writing`.

        Nothing is embedded: the Faiss index is rebuilt from the stored vectors of the
        images that stay, as :meth:`add` builds one (the size rule of :mod:`retrieval.ann`,
        search parameters tuned again).

        Args:
            ids: the ids of the images to take out; at least one image must stay.

        Returns:
            ``(len(ids), D)`` float32: their vectors, in the order of ``ids`` (what :meth:`insert` takes back).

        Raises:
            KeyError: if an id is not in the index.
            ValueError: if no image would stay.
        """
        self._check_writing("remove")
        missing = [image_id for image_id in ids if image_id not in self._by_id]
        if missing:
            raise KeyError(f"{self.directory} holds no image with id {missing[0]}")
        gone = set(ids)
        if len(gone) >= len(self.records):
            raise ValueError(f"an index keeps at least one image; {self.directory} would be left empty")
        all_ids, vectors = ann.index_ids(self.faiss_index), ann.stored_vectors(self.faiss_index)
        position = {int(image_id): p for p, image_id in enumerate(all_ids)}
        removed = vectors[[position[image_id] for image_id in ids]]  # (len(ids), D)
        stay = ~np.isin(all_ids, np.fromiter(gone, dtype=np.int64))
        self.faiss_index = None
        self._update_faiss(vectors[stay], all_ids[stay])
        self.records = [record for record in self.records if record.id not in gone]
        self._by_id = {record.id: record for record in self.records}
        self._save(write_vectors=True)
        return removed

    def insert(self, records: Sequence[ImageRecord], vectors: np.ndarray) -> None:
        """Put images back with their vectors, and write the index; call it inside :meth:`writing`.

        Args:
            records: their metadata rows; neither their ids nor their paths may be in the index.
            vectors: ``(len(records), D)`` float32 unit vectors, as :meth:`remove` returned them.

        Raises:
            ValueError: if an id or a path is indexed already, or the vectors have another shape.
        """
        self._check_writing("insert")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(records), self.feature_dim):
            raise ValueError(f"expected vectors of shape ({len(records)}, {self.feature_dim}), got {vectors.shape}")
        indexed = {record.path for record in self.records}
        clash = [record for record in records if record.id in self._by_id or record.path in indexed]
        if clash:
            raise ValueError(f"{clash[0].path} (id {clash[0].id}) or its id is in {self.directory} already")
        if not records:
            return
        self._update_faiss(vectors, np.array([record.id for record in records], dtype=np.int64))
        self.records = sorted([*self.records, *records], key=lambda record: record.id)
        self._by_id = {record.id: record for record in self.records}
        for record in records:
            self.skipped.pop(record.path, None)
        self._save(write_vectors=True)

    def _check_writing(self, method: str) -> None:
        if not self._writing:
            raise RuntimeError(
                f"Index.{method} writes the index: call it inside `with index.writing():`, which holds its lock"
            )

    def _ingest(
        self, paths: list[Path], batch_size: int, num_workers: int | None, progress: bool, engine: str = "local",
        address: str | None = None,
    ) -> int:
        """Embed ``paths`` (with ``engine``), add the readable ones, record the others, write every file.

        Returns the number of files skipped.
        """
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
        if engine == "ray":
            embeddings = embed_images_ray(self.model, readable, batch_size, address, progress=progress)
        else:
            embeddings = embed_images(self.model, readable, batch_size, num_workers, progress)
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
        self._positions = None
        total = len(new_ids) + (0 if self.faiss_index is None else self.faiss_index.ntotal)
        wanted = ann.choose_index_spec(total, info["requested"], self.feature_dim)
        exact = None  # the vectors just indexed, when they are all the index holds
        if current is not None and current.kind == wanted.kind:
            spec = current
            self.faiss_index.add_with_ids(new_vectors, new_ids)
        else:  # first build, or the size rule now picks another index type
            if current is not None:
                new_vectors = np.concatenate([ann.stored_vectors(self.faiss_index), new_vectors])
                new_ids = np.concatenate([ann.index_ids(self.faiss_index), new_ids])
            spec = wanted
            self.faiss_index = ann.build_index(spec, new_vectors, new_ids)
            exact = new_vectors, new_ids
        recall = 1.0
        if spec.kind != "flat":
            # Exact vectors where at hand, so that an ivfpq index's recall includes its quantisation error; after
            # an add, what the index reads back (for ivfpq, the decoded vectors: the exact ones are kept nowhere).
            vectors, ids = exact or (ann.stored_vectors(self.faiss_index), ann.index_ids(self.faiss_index))
            spec.search, recall = ann.tune_search_params(self.faiss_index, spec, vectors, ids)
        self.manifest["index"] = {"requested": info["requested"], **spec.to_dict(), "recall_at_10": round(recall, 4)}

    def _save(self, write_vectors: bool) -> None:
        """Write the index files as one write (:func:`retrieval.store.write_files`), manifest last.

        The Faiss index and the metadata are rewritten only when they changed.
        """
        self.manifest["counts"] = {"indexed": len(self.records), "skipped": len(self.skipped)}
        self.manifest["updated"] = _now()
        files = {store.SKIPPED_FILE: store.skipped_writer(self.skipped)}
        if write_vectors:
            files[store.INDEX_FILE] = store.faiss_writer(self.faiss_index)
            files[store.METADATA_FILE] = store.metadata_writer(self.records)
        store.write_files(self.directory, files, self.manifest)

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
            dim.core.images.UnreadableImageError: if a query file cannot be decoded.
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
                images.append(open_image(query))  # at full size, for the result grids
        size, channels = self.model.image_size, self.model.channels
        batch = torch.stack([  # (Q, C, H, W) uint8; a file as the index read it (a JPEG at reduced scale)
            self.model.preprocess_uint8(query) if isinstance(query, Image.Image) else load_image(query, size, channels)
            for query in queries
        ])
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

    def neighbours_of(self, image_id: int, k: int = 10) -> QueryResult:
        """The ``k`` nearest images of an indexed image (itself first, score ~1), without decoding it.

        Raises:
            KeyError: if no image has this id.
        """
        scores, ids = self.search_vectors(self.vector_of(image_id)[None], k)
        return QueryResult(self.path_of(image_id), self._neighbours(scores[0], ids[0]))

    def vector_of(self, image_id: int) -> np.ndarray:
        """The stored ``(D,)`` unit vector of an indexed image.

        Raises:
            KeyError: if no image has this id.
        """
        if image_id not in self._by_id:
            raise KeyError(f"{self.directory} holds no image with id {image_id}")
        if self._positions is None:
            self._positions = {int(i): position for position, i in enumerate(ann.index_ids(self.faiss_index))}
        return ann.reconstruct(self.faiss_index, self._positions[image_id])

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


def train_model(
    image_dir: str | os.PathLike,
    index_dir: str | os.PathLike,
    minutes: float = DEFAULT_TRAIN_MINUTES,
    max_steps: int | None = None,
    image_size: int | None = None,
    device: str | None = None,
    progress: bool = False,
    overwrite: bool = False,
) -> Path:
    """Train a model on the images under ``image_dir`` for an index in ``index_dir``: ``INDEX_DIR/model``.

    What ``dim-search build IMAGE_DIR --index INDEX_DIR`` does before indexing when it
    is given no model. The model family :data:`TRAINER_KIND` trains through its
    registered trainer (:func:`dim.core.registry.folder_trainer`; DIM's best preset,
    the image size chosen from the images unless given), and the run is kept in
    ``INDEX_DIR/`` :data:`MODEL_DIR`, beside the index it serves. Pass the returned
    directory to :meth:`Index.build`.

    Args:
        image_dir: the image folder (searched recursively).
        index_dir: the index directory (created if needed).
        minutes: the training budget, in minutes.
        max_steps: stop training after this many steps, if sooner (``None``: no step limit).
        image_size: side of the training images (``None``: chosen from the images).
        device: where to train (``None``: auto).
        progress: show what is trained and progress bars.
        overwrite: replace an index, and a model trained for it, already in ``index_dir``.

    Returns:
        The run directory ``INDEX_DIR/model``.

    Raises:
        FileExistsError: if ``index_dir`` holds an index or a model and ``overwrite`` is
            false, or ``INDEX_DIR/model`` is something other than a run directory.
        ValueError: for a folder without image files, or settings the trainer refuses.
    """
    directory = Path(index_dir)
    _refuse_existing(directory, overwrite)
    _images_under(_absolute(image_dir), directory)
    run_dir = directory / MODEL_DIR
    if run_dir.exists():
        if not overwrite:
            held = (f"a model trained for this index: index with it (--model {run_dir}), or train it again"
                    if (run_dir / "checkpoint.pt").is_file() else "an unfinished training run: train again")
            raise FileExistsError(f"{run_dir} already holds {held} with --overwrite")
        if not (run_dir / "config.json").is_file():
            raise FileExistsError(f"{run_dir} is not a run directory that dim-search trained: move it away first")
        shutil.rmtree(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    trainer = folder_trainer(TRAINER_KIND)
    return Path(trainer(Path(image_dir), run_dir, minutes=minutes, max_steps=max_steps, image_size=image_size,
                        device=device or "auto", progress=progress))


def _collection(root: Path, index_dir: str | os.PathLike) -> list[Path]:
    """The image files under ``root`` (:func:`~dim.core.files.find_images`) that do not lie in the index directory.

    An index kept inside its image folder holds pictures of its own (the trained model's
    ``curves.png`` and ``knn.png``); they are not part of the collection.
    """
    inside = Path(index_dir).resolve()
    return [path for path in find_images(root) if not path.resolve().is_relative_to(inside)]


def _images_under(root: Path, index_dir: str | os.PathLike) -> list[Path]:
    """:func:`_collection`, or a ValueError if it is empty."""
    paths = _collection(root, index_dir)
    if not paths:
        raise ValueError(
            f"no image files under {root} (looked recursively for {', '.join(sorted(IMAGE_EXTENSIONS))}, any case)"
        )
    return paths


def _refuse_existing(directory: Path, overwrite: bool) -> None:
    if (directory / store.MANIFEST_FILE).exists() and not overwrite:
        raise FileExistsError(
            f"{directory} already holds an index; use `dim-search add` (Index.add) to add images, "
            "or --overwrite (overwrite=True) to rebuild it"
        )


def _rebuild_advice(directory: Path, manifest: dict[str, Any] | None) -> str:
    """How to rebuild an index, with the model and image root it was built from where known."""
    model = (manifest or {}).get("model", {}).get("checkpoint") or "MODEL"
    root = (manifest or {}).get("image_root") or "IMAGE_DIR"
    return (
        f"rebuild the index, which embeds its images again: "
        f"`dim-search build {root} --index {directory} --model {model} --overwrite`, then `dim-search add` "
        "any other folders it held"
    )


def _read_once(directory: Path) -> tuple[dict[str, Any], list[ImageRecord], faiss.Index, dict[str, str]]:
    """Read and check the files of an index; the manifest is read again last to see no write came between."""
    manifest = None
    try:
        manifest = store.read_manifest(directory)
        if manifest.get("format") != MANIFEST_FORMAT:
            raise ValueError(
                f"{directory} is an index of manifest format {manifest.get('format')!r}, but this version of "
                f"dim-toolkit reads format {MANIFEST_FORMAT}: rebuild it with `dim-search build`"
            )
        store.verify_file(directory, store.INDEX_FILE, manifest)  # before Faiss parses it
        faiss_index = store.read_index(directory)
        records = store.read_metadata(directory)
        _check_consistent(directory, manifest, records, faiss_index)
        for name in (store.METADATA_FILE, store.SKIPPED_FILE):
            store.verify_file(directory, name, manifest)
        skipped = store.read_skipped(directory)
    except DamagedIndexError as error:
        raise DamagedIndexError(f"{error}; {_rebuild_advice(directory, manifest)}") from error
    return manifest, records, faiss_index, skipped


def current_write(directory: Path) -> dict[str, Any] | None:
    """The ``write`` entry of the manifest now on disk (``None`` if it cannot be read): it changes with every write."""
    try:
        return store.read_manifest(directory).get("write")
    except (OSError, ValueError):
        return None


def _read_files(directory: Path) -> tuple[dict[str, Any], list[ImageRecord], faiss.Index, dict[str, str]]:
    """:func:`_read_once`, retried while a writer switches files in, after finishing an interrupted write."""
    deadline = time.monotonic() + READ_RETRY_SECONDS
    while True:
        before = current_write(directory)
        try:
            found = _read_once(directory)
        except (ValueError, FileNotFoundError):
            # Staging folders first, then the manifest: a writer renames its manifest before it removes
            # its folder, so a switch that ends between the two looks is still seen.
            switching = bool(store.staging_dirs(directory))
            if not (switching or current_write(directory) != before) or time.monotonic() > deadline:
                raise
            if switching:
                _finish_interrupted_write(directory)
            time.sleep(0.05)
            continue
        if current_write(directory) == found[0]["write"]:  # no write switched files in while we read
            return found


def _finish_interrupted_write(directory: Path) -> None:
    """Switch in a write whose writer died mid-way; leave it to a live writer that holds the lock."""
    try:
        with IndexLock(directory, wait=False, on_wait=lambda message: None):
            store.recover(directory)
    except (IndexLockedError, OSError):
        pass  # a writer is at work and finishes its own switch, or this reader may not write here


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
