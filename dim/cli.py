"""The ``dim`` command line: Deep InfoMax training, evaluation and embedding export.

Each command is a thin wrapper over the Python API (:func:`dim.train.train`,
:func:`dim.core.probes.evaluate_checkpoint`, :func:`dim.embed.embed`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from types import SimpleNamespace

import click

from dim import __version__
from dim.augment import AUGMENTATIONS
from dim.config import LR_SCHEDULES, PRESETS, RESUMABLE, TrainConfig
from dim.core.device import PRECISIONS
from dim.models import ARCHS, FEATURES
from dim.objective import BOUNDS, CRITICS, LOCAL_MAPS, NEGATIVES, PRIORS, VIEWS
from dim.train import train

DATA_DIR_HELP = "Root of the named datasets (default $DIM_DATA_DIR, else ./data)."

# `dim train`'s defaults, read off the dataclass; None: the preset's value (see preset_hint).
_DEFAULTS = SimpleNamespace(**{field.name: field.default for field in fields(TrainConfig)})


def preset_hint(name: str) -> str:
    """What each preset sets ``name`` to, for a help text: ``[preset: best: infonce, paper: infonce, ...]``."""
    return "[preset: " + ", ".join(f"{preset}: {values[name]}" for preset, values in PRESETS.items()) + "]"


@contextmanager
def _user_errors() -> Iterator[None]:
    """Show bad settings and missing files as one-line errors instead of tracebacks."""
    try:
        yield
    except (ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from error


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dim")
def main() -> None:
    """Deep InfoMax: learn image features without labels by maximising the
    mutual information between an image and its code.

    Run `dim COMMAND --help` for the options of each command.
    """


@main.command("train")
@click.argument("dataset")
@click.option("--data-dir", type=click.Path(file_okay=False), help=DATA_DIR_HELP)
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default runs/dim-DATASET-TIME).")
@click.option("--preset", type=click.Choice(list(PRESETS)), default=_DEFAULTS.preset, show_default=True,
              help="Fills in the options marked [preset: ...] that are not given. best: the recipe that "
                   "measured best at a 30-minute CPU budget; paper: the DIM paper's DIM(L) infoNCE (Hjelm et "
                   "al., ICLR 2019); su-jianlin: the setting of Su Jianlin's 2018 derivation of DIM "
                   "(kexue.fm/archives/6024); gpu: the best recipe on a ResNet-18 with large batches and "
                   "torch.compile, for one GPU. What each measured: benchmarks/RESULTS.md.")
@click.option("--image-size", type=click.IntRange(min=16),
              help="Side of the square training images [default: the dataset's own: MNIST 28, STL-10 96, others "
                   "and folders 32]. The encoder adds stride-2 stages for larger images (64, 96, 128, ...) so its "
                   "local feature map stays about 8x8; the model records its size for embedding and search.")
@click.option("--stream/--no-stream", default=None,
              help="Decode the training images from their files while training (in --num-workers processes) "
                   "instead of holding them in memory [default: stream when the decoded images would take more "
                   "than half the available RAM; image folders only].")
@click.option("--num-workers", type=click.IntRange(min=0), default=None,
              help="Decoding processes when streaming [default: CPU cores - 1, at most 8].")
@click.option("--epochs", type=int, default=_DEFAULTS.epochs, show_default=True)
@click.option("--max-steps", type=int, default=_DEFAULTS.max_steps,
              help="Stop after this many optimiser steps in total.")
@click.option("--time-limit", type=float, default=_DEFAULTS.time_limit,
              help="Stop after this many minutes of training.")
@click.option("--batch-size", type=int, help=f"Images per step and process {preset_hint('batch_size')}.")
@click.option("--lr", type=float, help=f"Adam learning rate {preset_hint('lr')}.")
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES),
              help="constant, or cosine decay to zero over the epochs / --max-steps / --time-limit budget, "
                   f"whichever runs out first {preset_hint('lr_schedule')}.")
@click.option("--bound", type=click.Choice(BOUNDS), help=f"MI bound of both terms {preset_hint('bound')}.")
@click.option("--negatives", type=click.Choice(NEGATIVES),
              help="shuffle: one shuffled negative; all: all in-batch pairs; locations: all pairs and, for the "
                   f"local term, every position of every other image (infonce) {preset_hint('negatives')}.")
@click.option("--critic", type=click.Choice(CRITICS), help=f"Critic form {preset_hint('critic')}.")
@click.option("--prior", type=click.Choice(PRIORS),
              help="kl: Gaussian code with closed-form KL to N(0, I); adversarial: discriminator; none "
                   f"{preset_hint('prior')}.")
@click.option("--alpha", type=float, help=f"Weight of the global MI term {preset_hint('alpha')}.")
@click.option("--beta", type=float, help=f"Weight of the local MI term {preset_hint('beta')}.")
@click.option("--gamma", type=float, help=f"Weight of the prior term {preset_hint('gamma')}.")
@click.option("--arch", type=click.Choice(ARCHS), help=f"Encoder {preset_hint('arch')}.")
@click.option("--critic-hidden", type=click.IntRange(min=1), help=f"Hidden width of the critics {preset_hint('critic_hidden')}.")
@click.option("--critic-temperature", type=click.FloatRange(min=0),
              help="0: the separable critics score raw dot products; T > 0: cosine similarities divided by T "
                   f"{preset_hint('critic_temperature')}.")
@click.option("--local-maps", type=click.Choice(LOCAL_MAPS),
              help="Maps whose positions the local term scores against z: local (C(x), as DIM) or local+conv "
                   f"(also the last convolutional map's, multi-scale as AMDIM) {preset_hint('local_maps')}.")
@click.option("--precision", type=click.Choice(PRECISIONS), default=_DEFAULTS.precision, show_default=True,
              help="Number format of training and embedding: auto is bf16 on CUDA; on a CPU with fast bf16 "
                   "(AVX-512 BF16 or AMX) it trains in fp32 and embeds in bf16, as measured best "
                   "(benchmarks/RESULTS.md).")
@click.option("--z-dim", type=int, default=_DEFAULTS.z_dim, show_default=True, help="Size of the code z.")
@click.option("--augment", type=click.Choice(AUGMENTATIONS), help=f"Augmentation {preset_hint('augment')}.")
@click.option("--views", type=click.IntRange(min(VIEWS), max(VIEWS)),
              help="2: two augmented views per image, each view's features scored against the other view's code "
                   f"(needs --augment) {preset_hint('views')}.")
@click.option("--device", default=_DEFAULTS.device, show_default=True, help="auto, cpu, cuda, cuda:1, mps.")
@click.option("--seed", type=int, default=_DEFAULTS.seed, show_default=True)
@click.option("--threads", type=click.IntRange(min=0), default=_DEFAULTS.threads, show_default=True,
              help="CPU threads torch may use (0: torch's default).")
@click.option("--knn/--no-knn", default=_DEFAULTS.knn, show_default=True,
              help="kNN top-1 on the test split after each epoch (a subset) and at the end (all of it).")
@click.option("--compile/--no-compile", "compile_", default=None,
              help=f"Run the training step through torch.compile {preset_hint('compile')}.")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out from its checkpoint (only "
                   f"{', '.join('--' + name.replace('_', '-') for name in RESUMABLE)} may change).")
def train_command(compile_: bool | None, resume: bool, **options) -> None:
    """Train a DIM encoder on DATASET: a name (cifar10, cifar100, stl10, svhn,
    mnist, fashion-mnist, shapes) or an image folder.

    Under `torchrun --nproc_per_node N -m dim train ...` the run is data-parallel
    and negatives are drawn from the global batch.
    """
    with _user_errors():
        result = train(TrainConfig(compile=compile_, **options), resume=resume)
    knn_top1 = result.metrics["knn_top1"]
    knn = "" if knn_top1 is None else f", kNN top-1 {knn_top1:.4f}"
    click.echo(f"trained to epoch {result.metrics['epoch']:g} (step {result.step}){knn}; run directory {result.run_dir}")


@main.command("eval")
@click.argument("checkpoint", type=click.Path(exists=True))
@click.option("--data-dir", type=click.Path(file_okay=False), help=DATA_DIR_HELP + " Default: the run's.")
@click.option("--k", type=int, default=200, show_default=True, help="Neighbours that vote.")
@click.option("--temperature", type=float, default=0.1, show_default=True, help="Vote weight exp(cos / T).")
@click.option("--feature", type=click.Choice(FEATURES), default="z", show_default=True,
              help="z: the code; fc: fully connected features; conv: the last conv map.")
@click.option("--linear", is_flag=True, help="Also fit a linear probe on the training features.")
@click.option("--device", default="auto", show_default=True)
@click.option("--batch-size", type=int, default=512, show_default=True)
def eval_command(checkpoint: str, **options) -> None:
    """Weighted kNN accuracy (cosine, k=200, T=0.1) of a trained encoder on
    its dataset's test split, with the training split as memory.

    CHECKPOINT is a run directory or a checkpoint.pt; knn.png (queries and
    their 9 nearest neighbours) is written next to it. The last line printed
    is one JSON object.
    """
    from dim.evaluate import evaluate_checkpoint

    with _user_errors():
        summary = evaluate_checkpoint(checkpoint, **options)
    click.echo(f"dataset {summary['dataset']} ({summary['num_classes']} classes), feature {summary['feature']}: "
               f"{summary['num_train']} training images as memory, {summary['num_test']} test queries")
    click.echo(f"kNN top-1 (k={summary['k']}, T={summary['temperature']}): {summary['knn_top1']:.4f}")
    if "linear_top1" in summary:
        click.echo(f"linear probe top-1: {summary['linear_top1']:.4f}")
    click.echo(json.dumps(summary))


@main.command("embed")
@click.argument("checkpoint", type=click.Path(exists=True))
@click.argument("source")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The .npy file (CSV written next to it).")
@click.option("--split", default="test", show_default=True, help="Split of a named dataset.")
@click.option("--data-dir", type=click.Path(file_okay=False), help=DATA_DIR_HELP)
@click.option("--feature", type=click.Choice(FEATURES), default="z", show_default=True)
@click.option("--batch-size", type=int, default=512, show_default=True)
@click.option("--device", default="auto", show_default=True)
def embed_command(checkpoint: str, source: str, **options) -> None:
    """Write the features of SOURCE (a dataset name or an image folder) to
    --out (.npy) and a CSV of filenames, features and labels next to it.
    """
    from dim.embed import embed

    with _user_errors():
        result = embed(checkpoint, source, **options)
    if result.skipped:
        click.echo(f"skipped {len(result.skipped)} unreadable files", err=True)
    click.echo(f"{result.count} x {result.feature_dim} features -> {result.features_path} and {result.csv_path} "
               f"({result.images_per_s:.0f} images/s)")


if __name__ == "__main__":
    main()
