"""Embedding image files with Ray Data: on this machine's cores, or spread over a Ray cluster.

:func:`embed_images_ray` returns what :func:`dim.core.embedding.embed_images`
returns for the same files (the vectors in input order, their positions, the
skipped files with the same reasons); only where the work runs differs. The
flow, one Ray Data pipeline::

    (position, path) rows           ray.data.from_items, made on the driver
      -> decoding (map_batches)     dim.core.files.decode_file on each path:
                                    (B, C, H, W) uint8 at the model's size, or a reason
      -> embedding actors           one model per actor (ray.put once, fetched by each),
                                    (B, D) float32 vectors, L2-normalised
      -> the driver                 collects the rows and puts them back in input order

Ray Data fuses the decoding into the embedding actors' processes (both ask
for one CPU), so each actor decodes the batch it then embeds and no decoded
image crosses the network; the actors spread over the cluster's CPUs.
Decoding goes through the same function as the local engine
(:func:`~dim.core.files.decode_file`: JPEGs decoded at reduced scale, EXIF
orientation, alpha on white), and the vectors through the same
:func:`~dim.core.embedding.embed_batch`, so the two engines agree to float
rounding. Ray is an optional dependency (``pip install 'dim-toolkit[ray]'``),
imported only when this engine is used.

On a cluster every node reads the files by the paths the driver listed: the
images must lie on a filesystem that every node mounts at the same path, and
every node needs the same dim-toolkit and torch installed (the model's classes
are imported there to unpickle it).
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from dim.core.embedding import Embeddings, embed_batch, eval_mode
from dim.core.features import FeatureExtractor
from dim.core.files import available_cores, decode_file

ENGINES: tuple[str, ...] = ("local", "ray")  # where embedding runs: DataLoader workers here, or Ray
RAY_INSTALL_HINT = "pip install 'dim-toolkit[ray]'"


def import_ray() -> ModuleType:
    """``ray``, with Ray Data loaded, or an ``ImportError`` that says how to install it."""
    try:
        import ray
        import ray.data  # the pipeline; a plain `pip install ray` lacks its dependencies
    except ImportError as error:
        raise ImportError(
            f"the Ray engine needs Ray Data, which is not installed ({error}); install it with {RAY_INSTALL_HINT}, "
            "or embed on this machine with the local engine"
        ) from error
    return ray


def check_engine(engine: str, address: str | None = None, num_workers: int | None = None) -> None:
    """Refuse an unknown engine, an address without the Ray engine, decoding workers with it, and Ray missing.

    Cheap, and meant to run before any long work (listing a folder, training a model). The messages name
    each argument and its ``dim-search`` flag, so the command line shows them as they are.

    Raises:
        ValueError: for an engine not in :data:`ENGINES`, an ``address`` with the local engine, or
            ``num_workers`` (the local engine's decoding processes) with the Ray engine.
        ImportError: for the Ray engine when Ray Data is not installed (the message says how to install it).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {list(ENGINES)}, got {engine!r}")
    if address is not None and engine != "ray":
        raise ValueError(
            f"address {address} (--address) is where a Ray cluster runs: use it with engine='ray' (--engine ray), "
            "or leave it out to embed on this machine"
        )
    if engine == "ray" and num_workers is not None:
        raise ValueError(
            f"num_workers {num_workers} (--num-workers) sets the local engine's decoding processes; the Ray engine "
            "decodes in its actors, on the cluster's CPUs: leave num_workers (--num-workers) out"
        )
    if engine == "ray":
        import_ray()


class _EmbeddingActor:
    """One model per Ray actor: decoded rows in, ``{position, vector, reason}`` rows out.

    Args:
        model: the feature extractor, or the Ray object reference of one (fetched once, here).
        normalize: L2-normalise every vector.
    """

    def __init__(self, model: Any, normalize: bool) -> None:
        import ray

        self.model: FeatureExtractor = ray.get(model) if isinstance(model, ray.ObjectRef) else model
        self.normalize = normalize
        torch.set_num_threads(1)  # the one CPU Ray reserved for this actor

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        readable = batch["reason"] == ""  # (B,)
        vectors = np.zeros((len(readable), self.model.feature_dim), np.float32)  # (B, D); unreadable rows stay 0
        if readable.any():
            images = torch.from_numpy(np.ascontiguousarray(batch["image"][readable]))  # (B_ok, C, H, W) uint8
            with eval_mode(self.model):
                vectors[readable] = embed_batch(self.model, images, self.normalize)
        return {"position": batch["position"], "vector": vectors, "reason": batch["reason"]}


def _decode_rows(batch: dict[str, np.ndarray], image_size: int, channels: int) -> dict[str, np.ndarray]:
    """``{position, path}`` rows -> ``{position, image (B, C, H, W) uint8, reason}``.

    An unreadable file's row keeps a zero image and the reason; a readable one's reason is ``""``.
    """
    images = np.zeros((len(batch["path"]), channels, image_size, image_size), np.uint8)
    reasons = []
    for row, path in enumerate(batch["path"]):
        image, reason = decode_file(os.fsdecode(bytes(path)), image_size, channels)
        if image is not None:
            images[row] = image.numpy()
        reasons.append(reason or "")
    return {"position": batch["position"], "image": images, "reason": np.array(reasons, dtype=object)}


def embed_images_ray(
    model: FeatureExtractor,
    paths: Sequence[str | os.PathLike],
    batch_size: int = 256,
    address: str | None = None,
    actors: int | None = None,
    progress: bool = False,
    normalize: bool = True,
) -> Embeddings:
    """Embed image files with Ray Data, skipping (and reporting) the files that cannot be read.

    Returns what :func:`dim.core.embedding.embed_images` returns for ``paths``
    (see the module docstring for the flow). The driver (this process) lists
    nothing and decodes nothing: it sends the paths, and collects the vectors.

    Ray: if this process is already connected (``ray.is_initialized()``), that
    connection is used and kept. Otherwise, with ``address`` it connects to
    that cluster (``"HEAD:6379"``, or ``"auto"`` for the cluster this node
    belongs to; this process must run on a node of it); without one it starts
    a Ray of its own on this machine's cores. Either connection is closed
    again at the end.

    Args:
        model: the feature extractor. The actors run it on their CPUs, in eval
            mode, one torch thread each (a model on a GPU is copied to the CPU
            first; the caller's model is left as it is).
        paths: image files, in the order the rows should come out; on a cluster,
            paths that every node can read (a shared filesystem, mounted at the
            same path everywhere).
        batch_size: images per decoding task and per forward pass.
        address: the Ray cluster to connect to (``None``: a local Ray).
        actors: embedding actors, one model each (``None``: as many as Ray
            Data's autoscaling gives, from 1 up to the cluster's CPUs).
        progress: show a tqdm bar in images/s.
        normalize: L2-normalise every row (for cosine search); ``False`` keeps the raw features.

    Returns:
        :class:`~dim.core.embedding.Embeddings` with the vectors of the readable
        images in input order and the ``(position, reason)`` of the others.

    Raises:
        ValueError: for a ``batch_size`` or ``actors`` below 1.
        ImportError: if Ray Data is not installed (the message says how to install it).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if actors is not None and actors < 1:
        raise ValueError(f"actors must be >= 1 (one model each), or None for Ray's autoscaling; got {actors}")
    ray = import_ray()
    if not len(paths):
        return Embeddings(np.zeros((0, model.feature_dim), np.float32), np.zeros(0, np.int64), [])
    if model.device.type != "cpu":
        model = copy.deepcopy(model).cpu()
    started = not ray.is_initialized()
    if started and address is None:
        ray.init(address="local", num_cpus=available_cores(), include_dashboard=False, logging_level=logging.WARNING)
    elif started:
        ray.init(address=address, logging_level=logging.WARNING)
    context = ray.data.DataContext.get_current()
    bars_before, context.enable_progress_bars = context.enable_progress_bars, False  # ours below, in images/s
    try:
        rows = [{"position": position, "path": os.fsencode(os.fspath(path))} for position, path in enumerate(paths)]
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        pool = ray.data.ActorPoolStrategy(size=actors) if actors else ray.data.ActorPoolStrategy(min_size=1,
                                                                                                  max_size=cpus)
        dataset = (
            ray.data.from_items(rows)
            .map_batches(_decode_rows, batch_size=batch_size, batch_format="numpy", num_cpus=1,
                         fn_kwargs={"image_size": model.image_size, "channels": model.channels})
            .map_batches(_EmbeddingActor, batch_size=batch_size, batch_format="numpy", num_cpus=1, compute=pool,
                         fn_constructor_kwargs={"model": ray.put(model), "normalize": normalize})
        )
        positions, vectors, reasons = [], [], []
        with tqdm(total=len(paths), unit="img", desc="embedding (ray)", disable=not progress, smoothing=0.1) as bar:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                positions.append(np.asarray(batch["position"], np.int64))
                vectors.append(np.asarray(batch["vector"], np.float32))
                reasons.append(np.asarray(batch["reason"], dtype=object))
                bar.update(len(positions[-1]))
    finally:
        context.enable_progress_bars = bars_before
        if started:
            ray.shutdown()
    position = np.concatenate(positions)  # (N,) in the order the blocks finished
    order = np.argsort(position, kind="stable")
    position, vector, reason = position[order], np.concatenate(vectors)[order], np.concatenate(reasons)[order]
    readable = reason == ""
    return Embeddings(
        vectors=np.ascontiguousarray(vector[readable]),
        positions=position[readable],
        skipped=[(int(p), str(r)) for p, r in zip(position[~readable], reason[~readable])],
    )
