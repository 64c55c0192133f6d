"""Deep InfoMax training: the loop behind ``dim train``.

Example:
    >>> from dim.config import TrainConfig
    >>> from dim.train import train
    >>> result = train(TrainConfig(dataset="shapes", epochs=1, out="runs/shapes"))
    >>> result.metrics["knn_top1"]

The whole training split is decoded once and kept on the training device as
uint8 and each batch is drawn by indexing; or, for image folders larger than
memory (``stream``), each batch is decoded from its files in DataLoader worker
processes (:class:`dim.core.files.ImageFiles`), in the same order. Batches are
normalised, augmented on the device and fed in channels-last layout, under bf16 autocast on CUDA (``precision``,
:func:`dim.core.device.autocast`). Loss terms and MI
estimates are accumulated on the device and read back once per log interval,
so the hot path never waits for the device.

The run directory (:mod:`dim.core.runs`) holds ``config.json``,
``checkpoint.pt`` (:mod:`dim.core.checkpoint`'s layout, written atomically at
the end of every epoch and of the run; it stores the optimiser, the position in
the epoch and every RNG, so ``resume=True`` continues exactly), ``metrics.csv``
(one row per epoch: losses, MI estimates in nats, kNN top-1, images/s),
``curves.png`` (with matplotlib) and ``knn.png`` (test queries and their 9
nearest training images).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from dim.augment import augment
from dim.checkpoint import KINDS
from dim.config import PRESETS, RESUMABLE, TrainConfig
from dim.core.atomic import atomic_save
from dim.core.checkpoint import make_checkpoint
from dim.core.datasets import image_files, load_dataset
from dim.core.device import adam, autocast, seed_everything, select_device
from dim.core.distributed import (
    DistributedContext,
    init_distributed,
    process_device,
    shutdown_distributed,
)
from dim.core.files import ImageFiles, collate_files, default_num_workers, find_images, median_shorter_side
from dim.core.images import normalize_images
from dim.core.memory import ImageDataset, fits_in_memory
from dim.core.metrics import MetricsLog, MetricWindow
from dim.core.probes import evaluate, subset_indices
from dim.core.runs import TrainResult, open_run, restore_rng, rng_state, write_config
from dim.mi.gather import all_gather_with_local_grad
from dim.models import build_model, feature_extractor
from dim.objective import AdversarialPrior

logger = logging.getLogger(__name__)

KIND = KINDS[0]  # the kind of the checkpoints this trainer writes
FOLDER_IMAGE_SIZES = (32, 64, 96)  # the training sizes train_folder chooses from
FOLDER_PRESET = "best"  # the recipe train_folder trains with
MIN_FOLDER_STEPS_PER_EPOCH = 4  # train_folder's batch leaves at least this many steps between checkpoints
# Statistics accumulated on the device each step, in this order.
STATS = ("loss", "global_loss", "local_loss", "prior", "global_mi", "local_mi")


def epoch_order(size: int, seed: int, epoch: int) -> Tensor:
    """The shuffled sample order of one epoch, a function of (seed, epoch) only, the same on every process."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(size, generator=generator)


def train(config: TrainConfig, *, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train a DIM encoder (under ``torchrun``: one process of a DDP job).

    Args:
        config: the run's settings.
        resume: continue the run in ``config.out`` from its checkpoint; its saved
            settings are used except for those in :data:`RESUMABLE`.
        progress: show a progress bar and per-epoch summaries.

    Raises:
        ValueError: for invalid settings, a fresh run into a directory that
            already holds a checkpoint, or a dataset smaller than one batch.
        FileNotFoundError: for ``resume`` without a checkpoint.
    """
    trainer = Trainer(config, resume=resume, progress=progress)
    try:
        return trainer.run()
    finally:
        trainer.close()


class Trainer:
    """One DIM training run: ``Trainer(config).run()``, then :meth:`close` (:func:`train` does all three).

    Args:
        config: the run's settings.
        resume: continue the run in ``config.out`` from its checkpoint (see :func:`train`).
        progress: show a progress bar and per-epoch summaries.
    """

    def __init__(self, config: TrainConfig, *, resume: bool = False, progress: bool = True) -> None:
        self.context: DistributedContext = init_distributed(select_device(config.device))
        config, self.run_dir, checkpoint = open_run(
            config, kind=KIND, resume=resume, resumable=RESUMABLE,
            from_dict=lambda values: TrainConfig(**values), broadcast=self.context.broadcast,
        )
        config = config.resolved()
        device = select_device(config.device)
        self.device = process_device(device, self.context)
        self.progress = progress and self.context.is_main
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        self.config = config
        seed_everything(config.seed + self.context.rank)

        self._load_data()
        self.global_batch = config.batch_size * self.context.world_size
        self.steps_per_epoch = len(self.train_set) // self.global_batch
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"{config.dataset} has {len(self.train_set)} training images, fewer than one batch of "
                f"{self.global_batch}: lower --batch-size"
            )
        self.skipped: dict[str, str] = {}  # streamed files that could not be read: relative path -> reason

        gather = all_gather_with_local_grad if self.context.enabled else None
        self.model = build_model(config, self.train_set.channels, self.train_set.image_size, gather).to(
            self.device, memory_format=torch.channels_last
        )
        self.optimizer = adam(self.model.parameters(), self.device, lr=config.lr)
        self.adversary: AdversarialPrior | None = None
        self.adversary_optimizer: torch.optim.Optimizer | None = None
        if config.prior == "adversarial":
            self.adversary = AdversarialPrior(config.z_dim).to(self.device)
            self.adversary_optimizer = adam(self.adversary.parameters(), self.device, lr=config.lr)
        self.step_model: torch.nn.Module = self.model
        if self.context.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.step_model = DistributedDataParallel(self.model, device_ids=device_ids)
        if config.compile:
            self.step_model = torch.compile(self.step_model)

        self.step = 0  # optimiser steps so far
        self.epoch = 0  # completed epochs
        self.batch = 0  # next batch within the current epoch
        self.train_seconds = 0.0  # time spent in training steps in this session
        self.session_start_step = 0  # self.step when this session began
        if checkpoint is not None:
            self.load_state_dict(checkpoint)
        elif self.context.is_main:
            write_config(self.run_dir, dataclasses.asdict(config))
        self.metrics = MetricsLog(self.run_dir) if self.context.is_main else None
        self.autocast = autocast(self.device, config.precision)

    def _load_data(self) -> None:
        """The training and test splits, decoded into memory or (``stream``) as files.

        Streaming keeps only the kNN check's subsets in memory (``knn_memory``
        training and ``knn_queries`` test images, also for the last evaluation).
        """
        config = self.config
        size = {"image_size": config.image_size}
        files = image_files(config.dataset, "train", config.data_dir, **size)
        self.streaming = config.stream
        if self.streaming is None:
            self.streaming = files is not None and not fits_in_memory(files.nbytes)
            if self.streaming:
                self._print(f"{config.dataset}: {len(files)} training images would take {files.nbytes / 2**30:.1f} "
                            "GiB decoded, more than half the available memory: streaming them from their files "
                            "(--no-stream to decode them into memory)")
        if self.streaming and files is None:
            raise ValueError(f"{config.dataset} is not stored as image files (it is generated or read from "
                             "torchvision's files, and held in memory): --stream needs an image folder")
        self.train_set: ImageDataset | ImageFiles
        self.test_set: ImageDataset | ImageFiles | None = None
        if self.streaming:
            self.train_set = files
            if files.is_labelled and config.knn:
                self.test_set = image_files(config.dataset, "test", config.data_dir, **size)
        else:
            self.train_set = files.load(self.progress) if files is not None else load_dataset(
                config.dataset, "train", config.data_dir, progress=self.progress, **size)
            if self.train_set.is_labelled and config.knn:  # the test split serves the kNN check only
                self.test_set = load_dataset(config.dataset, "test", config.data_dir, progress=self.progress, **size)
            self.train_images = self.train_set.images.to(self.device)  # (N, C, H, W) uint8, resident
        self.knn_sets: tuple[ImageDataset, ImageDataset] | None = None  # streaming: (memory, queries), decoded
        if self.streaming and self.test_set is not None and self.context.is_main:
            memory = subset_indices(len(self.train_set), config.knn_memory, config.seed)
            queries = subset_indices(len(self.test_set), config.knn_queries, config.seed + 1)
            memory_set = self.train_set.subset(memory).load(self.progress, cache=False)
            memory_set.images = memory_set.images.to(self.device)  # resident, as the training images would be
            self.knn_sets = (memory_set, self.test_set.subset(queries).load(self.progress, cache=False))

    # ------------------------------------------------------------------ training

    def run(self) -> TrainResult:
        rows: list[dict[str, Any]] = []
        knn_top1 = None
        if self._finished():
            self._print(f"{self.run_dir}: already trained to epoch {self.epoch}, step {self.step}; nothing to do")
        while not self._finished():
            totals, images, seconds = self._train_epoch()
            last = self._finished()
            evaluation = self._evaluate(full=last)
            knn_top1 = evaluation["knn_top1"] if evaluation else None
            means = {name: total / max(images // self.global_batch, 1) for name, total in totals.items()}
            row = {
                "epoch": round(self.epoch + self.batch / self.steps_per_epoch, 4),
                **means,
                "knn_top1": "" if knn_top1 is None else knn_top1,
                "images_per_s": images / max(seconds, 1e-9),
                "lr": self.optimizer.param_groups[0]["lr"],  # the last step's
                "seconds": seconds,
            }
            if self.metrics is not None:
                self.metrics.log(self.step, **row)
            rows.append({"step": self.step, **row})
            self.save_checkpoint()
            full = last and self.knn_sets is None  # a streamed run evaluates on its subsets to the end
            knn_text = "" if knn_top1 is None else f", kNN top-1 {knn_top1:.4f} ({'full' if full else 'subset'})"
            self._print(
                f"epoch {row['epoch']:g} step {self.step}: loss {row['loss']:.4f}, MI "
                f"{' '.join(f'{term} {value}' for term, value in self._mi_text(row).items())} nats{knn_text}, "
                f"{row['images_per_s']:.0f} images/s"
            )
        epoch = self.epoch + self.batch / self.steps_per_epoch
        last = {**(rows[-1] if rows else {}), "epoch": epoch, "knn_top1": knn_top1}
        return TrainResult(self.run_dir, self.step, self.train_seconds, self.step - self.session_start_step, last, rows)

    def _finished(self) -> bool:
        max_steps, time_limit = self.config.max_steps, self.config.time_limit
        return (
            self.epoch >= self.config.epochs
            or (max_steps is not None and self.step >= max_steps)
            or (time_limit is not None and self.train_seconds >= 60 * time_limit)
        )

    def _train_epoch(self) -> tuple[dict[str, float], int, float]:
        """Train until the end of the epoch or ``max_steps``; returns summed stats, images, seconds."""
        config = self.config
        order = epoch_order(len(self.train_set), config.seed, self.epoch)
        window = MetricWindow(STATS, self.device)
        totals = dict.fromkeys(STATS, 0.0)  # the epoch's sums, added to at each read of the window
        steps = self.steps_per_epoch - self.batch
        if config.max_steps is not None:
            steps = min(steps, config.max_steps - self.step)
        bar = tqdm(total=steps, desc=f"epoch {self.epoch + 1}/{config.epochs}", disable=not self.progress,
                   dynamic_ncols=True, leave=False)
        self.model.train()
        start, done = time.perf_counter(), 0
        clock = self.train_seconds  # training seconds so far, rank 0's, so every process stops at the same step
        batches = self.batches(order, steps)
        for _ in range(steps):
            if config.time_limit is not None and clock >= 60 * config.time_limit:
                break
            self._set_learning_rate(clock)
            window.add(self.train_step(next(batches)))
            self.batch, self.step, done = self.batch + 1, self.step + 1, done + 1
            bar.update()
            if done % config.log_every == 0:
                values = self._read(window, totals)  # the only sync
                mi = {f"mi_{term}": value for term, value in self._mi_text(values).items()}
                bar.set_postfix({"loss": f"{values['loss']:.3f}", **mi, "prior": f"{values['prior']:.3f}"})
                clock = self.context.broadcast(self.train_seconds + time.perf_counter() - start)
        self._read(window, totals)  # waits for the device, so the timing below is complete
        seconds = time.perf_counter() - start
        batches.close()  # stops the decoding workers of a run stopped mid-epoch
        self.train_seconds = self.context.broadcast(self.train_seconds + seconds)
        bar.close()
        if self.batch == self.steps_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        return totals, done * self.global_batch, seconds

    def batches(self, order: Tensor, steps: int) -> Iterator[Tensor]:
        """This process's next ``steps`` uint8 ``(B, C, H, W)`` batches of the epoch ``order``, on the device.

        Batch ``b`` of the epoch is ``order[(b * world_size + rank) * B :][:B]``,
        from the resident images or, streaming, decoded by a DataLoader over the
        files. A streamed file that cannot be read is reported once and its place
        in the batch is taken by another image of the batch, so every process keeps
        the batch size the gathers of a DDP run need.
        """
        batch_size, world_size, rank = self.config.batch_size, self.context.world_size, self.context.rank
        starts = [((self.batch + i) * world_size + rank) * batch_size for i in range(steps)]
        if not self.streaming:
            order = order.to(self.device)
            for start in starts:
                yield self.train_images[order[start : start + batch_size]]
            return
        workers = default_num_workers() if self.config.num_workers is None else self.config.num_workers
        loader = torch.utils.data.DataLoader(
            self.train_set, batch_sampler=[order[start : start + batch_size].tolist() for start in starts],
            num_workers=workers, collate_fn=collate_files, pin_memory=self.device.type == "cuda",
            generator=torch.Generator(),  # its own: seeding the workers must not draw from the augmentations' RNG
        )
        for _, images, skipped in loader:
            for index, reason in skipped:
                self._skip(self.train_set.relative_path(index), reason)
            if images is None:
                raise ValueError(f"no file of a training batch of {batch_size} could be read (see the warnings above): "
                                 f"check {self.config.dataset}")
            if len(images) < batch_size:
                images = images[torch.arange(batch_size) % len(images)]  # (B, C, H, W): refill the unreadable places
            yield images.to(self.device, non_blocking=True)

    def _skip(self, path: str, reason: str) -> None:
        """Report a streamed file that cannot be read, once per run session."""
        if path not in self.skipped:
            self.skipped[path] = reason
            logger.warning(f"{self.config.dataset}: skipped the unreadable training image {path}: {reason} "
                           f"({len(self.skipped)} so far)")

    @staticmethod
    def _read(window: MetricWindow, totals: dict[str, float]) -> dict[str, float]:
        """Read the window's means (a device sync) and add its sums to the epoch's ``totals``."""
        steps = window.steps
        values = window.read()
        for name, value in values.items():
            totals[name] += value * steps
        return values

    def _mi_text(self, values: dict[str, float]) -> dict[str, str]:
        """The MI estimate of each term that is on (a weight of 0 leaves its term out), by term, as text."""
        terms = {"global": self.model.global_mi, "local": self.model.local_mi}
        return {term: f"{values[f'{term}_mi']:.3f}" for term, module in terms.items() if module is not None}

    def budget_used(self, seconds: float) -> float:
        """The largest used-up fraction of the run's budgets after ``seconds`` of training, in [0, 1]."""
        config = self.config
        fractions = [(self.epoch + self.batch / self.steps_per_epoch) / config.epochs]
        if config.max_steps is not None:
            fractions.append(self.step / config.max_steps)
        if config.time_limit is not None:
            fractions.append(seconds / (60 * config.time_limit))
        return min(max(fractions), 1.0)

    def _set_learning_rate(self, seconds: float) -> None:
        if self.config.lr_schedule == "constant":
            return
        lr = self.config.lr * 0.5 * (1.0 + math.cos(math.pi * self.budget_used(seconds)))  # cosine
        optimizers = [self.optimizer] + ([self.adversary_optimizer] if self.adversary_optimizer is not None else [])
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr

    def train_step(self, batch: Tensor) -> Tensor:
        """One optimiser step on uint8 ``(B, C, H, W)``; returns the :data:`STATS` as a device tensor."""
        images = normalize_images(batch)  # (B, C, H, W) in [-1, 1]
        images = torch.cat([augment(images, self.config.augment) for _ in range(self.config.views)])  # (V*B, C, H, W)
        images = images.contiguous(memory_format=torch.channels_last)
        with self.autocast:
            output = self.step_model(images, views=self.config.views)
            if self.adversary is not None:
                output = output._replace(prior=self.adversary.encoder_loss(output.encoding.z.float()))
            loss = self.model.loss(output)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.adversary is not None:
            self.adversary_optimizer.zero_grad(set_to_none=True)  # drop what the encoder's loss left there
            with self.autocast:
                adversary_loss = self.adversary.discriminator_loss(output.encoding.z.float())
            adversary_loss.backward()
            self.context.average_gradients(self.adversary)
            self.adversary_optimizer.step()
        self.optimizer.step()
        zero = loss.new_zeros(())
        terms = [output.global_term, output.local_term]
        return torch.stack(
            [loss.detach(), *(zero if t is None else t.loss.detach() for t in terms), output.prior.detach(),
             *(zero if t is None else t.mi for t in terms)]
        ).float()

    # ---------------------------------------------------------------- evaluation

    def _evaluate(self, full: bool) -> dict[str, Any] | None:
        """kNN top-1 on rank 0 (a fixed subset after each epoch, everything at the end with ``knn.png``)."""
        if self.test_set is None or not self.config.knn:
            return None
        result = None
        if self.context.is_main:
            config = self.config
            if self.knn_sets is not None:  # streaming: the decoded subsets, at the end too
                memory_set, query_set = self.knn_sets
                memory_images, memory_labels = memory_set.images, memory_set.labels
                query_images, query_labels = query_set.images, query_set.labels
            else:
                memory = subset_indices(len(self.train_set), None if full else config.knn_memory, config.seed)
                queries = subset_indices(len(self.test_set), None if full else config.knn_queries, config.seed + 1)
                memory_images, memory_labels = self.train_images[memory.to(self.device)], self.train_set.labels[memory]
                query_images, query_labels = self.test_set.images[queries], self.test_set.labels[queries]
            extractor = feature_extractor(self.model.encoder, "z", config.precision)
            result = evaluate(
                extractor, memory_images, memory_labels, query_images, query_labels,
                self.train_set.num_classes, config.knn_k, config.knn_temperature,
                grid_path=self.run_dir / "knn.png" if full else None,
            )
            self.model.train()
        self.context.barrier()
        return self.context.broadcast(result)

    # --------------------------------------------------------------- checkpoints

    def _networks(self) -> tuple[dict[str, torch.nn.Module], dict[str, torch.optim.Optimizer]]:
        """The modules and optimisers a checkpoint holds, by name."""
        modules: dict[str, torch.nn.Module] = {"model": self.model}
        optimizers: dict[str, torch.optim.Optimizer] = {"model": self.optimizer}
        if self.adversary is not None:
            modules["adversary"], optimizers["adversary"] = self.adversary, self.adversary_optimizer
        return modules, optimizers

    def save_checkpoint(self) -> None:
        """Atomically write ``checkpoint.pt`` (a collective under DDP: every process calls it; rank 0 writes)."""
        rng = self.context.gather(rng_state())  # every process's RNG (a collective: all ranks call it)
        if not self.context.is_main:
            return
        modules, optimizers = self._networks()
        state = {
            "epoch": self.epoch,
            "batch": self.batch,
            "encoder_config": self.model.encoder.config(),
            "dataset": self.train_set.name,
            "classes": self.train_set.classes,
        }
        checkpoint = make_checkpoint(
            KIND, dataclasses.asdict(self.config), self.step, modules, optimizers, rng, state
        )
        atomic_save(checkpoint, self.run_dir / "checkpoint.pt")

    def load_state_dict(self, checkpoint: dict) -> None:
        """Continue from a checkpoint dict of this run: weights, optimisers, position and RNG."""
        modules, optimizers = self._networks()
        for name, module in modules.items():
            module.load_state_dict(checkpoint["modules"][name])
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(checkpoint["optimizers"][name])
        self.step = self.session_start_step = checkpoint["step"]
        self.epoch, self.batch = checkpoint["state"]["epoch"], checkpoint["state"]["batch"]
        restore_rng(checkpoint["rng"], self.context.rank, self.context.world_size)
        if self.context.is_main:
            write_config(self.run_dir, dataclasses.asdict(self.config))

    def _print(self, message: str) -> None:
        if self.progress:
            tqdm.write(message)

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
        shutdown_distributed(self.context)


def folder_image_size(median_side: int | None) -> int:
    """The training size for images whose median shorter side is ``median_side`` px.

    The largest of :data:`FOLDER_IMAGE_SIZES` not above ``median_side``, so the
    images are reduced, never enlarged; the smallest for smaller images (or when
    no image could be opened, ``None``).
    """
    fitting = [size for size in FOLDER_IMAGE_SIZES if median_side is not None and size <= median_side]
    return max(fitting, default=FOLDER_IMAGE_SIZES[0])


def train_folder(
    folder: str | os.PathLike,
    out: str | os.PathLike,
    *,
    minutes: float,
    max_steps: int | None = None,
    image_size: int | None = None,
    device: str = "auto",
    progress: bool = True,
) -> Path:
    """Train a DIM encoder on a folder of images with the best preset, for a time budget.

    What ``dim-search build FOLDER`` runs when it is given no model: the trainer
    of kind ``dim`` in :mod:`dim.core.registry` (entry point ``dim_toolkit.trainers``).
    It trains on the folder's training split (:func:`dim.core.files.list_folder_split`:
    a ``train/`` sub-folder, else about 9 in 10 files), labels or not, with the
    :data:`FOLDER_PRESET` preset; the learning rate decays to zero on a cosine over
    the budget (``minutes`` of training, or ``max_steps`` steps if that comes first).
    The batch is the preset's (128), smaller for small folders so that an epoch
    (which ends with a checkpoint) has at least :data:`MIN_FOLDER_STEPS_PER_EPOCH`
    steps. There is no kNN check, so no labels are needed.

    With ``progress``, one line on stderr says what is trained and at which size,
    and bars follow the decoding of the images and the budget.

    Args:
        folder: the image folder (searched recursively).
        out: the new run directory (it must not hold a checkpoint yet).
        minutes: the training budget, in minutes (positive).
        max_steps: stop after this many optimiser steps, if sooner (``None``: no step limit).
        image_size: side of the training images; ``None`` chooses it from the images
            (:func:`folder_image_size` of their median shorter side).
        device: ``auto``, ``cpu``, ``cuda``, ...
        progress: show the line and the bars.

    Returns:
        The run directory ``out``, with ``checkpoint.pt`` and ``config.json``.

    Raises:
        ValueError: for a budget that is not positive, a folder without images, or
            fewer than 2 training images (a batch needs negatives).
    """
    if not minutes > 0:
        raise ValueError(f"minutes must be positive, got {minutes}")
    root = str(Path(folder).absolute())  # a path, never taken for a dataset name such as "shapes"
    how = "as asked"
    if image_size is None:
        median_side = median_shorter_side(find_images(root))
        image_size = folder_image_size(median_side)
        how = f"chosen from the images: their median shorter side is {median_side} px"
    images = len(image_files(root, "train", image_size=image_size))
    if images < 2:
        raise ValueError(f"{folder} has {images} training images; training needs at least 2 (negatives come from "
                         "the batch): add images, or use a model trained elsewhere")
    batch_size = min(PRESETS[FOLDER_PRESET]["batch_size"], max(2, images // MIN_FOLDER_STEPS_PER_EPOCH))
    config = TrainConfig(
        dataset=root, image_size=image_size, out=str(out), preset=FOLDER_PRESET, batch_size=batch_size,
        epochs=sys.maxsize, time_limit=minutes, max_steps=max_steps, knn=False, device=device,
    )
    if progress:
        steps = "" if max_steps is None else f" or {max_steps} steps"
        tqdm.write(f"training a DIM encoder (preset {FOLDER_PRESET}, batch {batch_size}) on {images:,} images of "
                   f"{folder} at {image_size} px ({how}) for {minutes:g} min{steps}, into {out}", file=sys.stderr)
    trainer = Trainer(config, progress=progress)  # progress: the bar of decoding the images into memory
    trainer.progress = False  # the epochs of a small folder are short: one bar for the whole budget instead
    try:
        _run_with_budget_bar(trainer, progress)
    finally:
        trainer.close()
    return Path(trainer.run_dir)


def _run_with_budget_bar(trainer: Trainer, progress: bool) -> TrainResult:
    """``trainer.run()`` under one bar of the budget used (:meth:`Trainer.budget_used`), read twice a second.

    The trainer counts its training seconds at the end of each epoch (checkpoints
    and evaluation do not count); between two ends the bar adds the time since the last.
    """
    bar = tqdm(total=100, desc="training", disable=not progress, dynamic_ncols=True,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}")
    finished = threading.Event()

    def follow() -> None:
        counted, counted_at = trainer.train_seconds, time.perf_counter()
        while not finished.wait(0.5):
            now = time.perf_counter()
            if trainer.train_seconds != counted:  # an epoch ended
                counted, counted_at = trainer.train_seconds, now
            bar.n = min(99.0, 100 * trainer.budget_used(counted + now - counted_at))  # 100 when it has ended
            bar.set_postfix(step=trainer.step)  # refreshes the bar

    watcher = threading.Thread(target=follow, name="training-bar", daemon=True)
    if progress:
        watcher.start()
    try:
        return trainer.run()
    finally:
        finished.set()
        if progress:
            watcher.join()
            bar.n = 100
            bar.set_postfix(step=trainer.step)
        bar.close()
