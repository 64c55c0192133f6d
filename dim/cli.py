"""The ``dim`` command line: Deep InfoMax training, evaluation and embedding export.

Each command is a thin wrapper over the Python API (:func:`dim.train.train`,
:func:`dim.evaluate.evaluate`, :func:`dim.embed.embed`); the options every
product shares come from :mod:`dim.core.cli`.
"""

from __future__ import annotations

import inspect
import json

import click

from dim import __version__
from dim.augment import AUGMENTATIONS
from dim.config import LR_SCHEDULES, PRESETS, RESUMABLE, TrainConfig
from dim.core.cli import (
    config_defaults,
    data_dir_option,
    device_option,
    preset_hint,
    run_argument,
    threads_option,
    user_errors,
)
from dim.core.device import PRECISIONS
from dim.core.probes import KNN_K, KNN_TEMPERATURE
from dim.mi.estimate import CRITIC_DEFAULTS, LEARNING_RATES, estimate_mi
from dim.models import ARCHS, FEATURES
from dim.objective import BOUNDS, CRITICS, LOCAL_MAPS, NEGATIVES, PRIORS, VIEWS
from dim.train import train

# `dim train`'s defaults, read off the dataclass; None: the preset's value (see hint).
_DEFAULTS = config_defaults(TrainConfig)


def hint(name: str) -> str:
    """What each DIM preset sets ``name`` to, for a help text."""
    return preset_hint(PRESETS, name)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dim")
def main() -> None:
    """Deep InfoMax: learn image features without labels by maximising the
    mutual information between an image and its code.

    Run `dim COMMAND --help` for the options of each command.
    """


@main.command("train")
@click.argument("dataset")
@data_dir_option()
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
@click.option("--batch-size", type=int, help=f"Images per step and process {hint('batch_size')}.")
@click.option("--lr", type=float, help=f"Adam learning rate {hint('lr')}.")
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES),
              help="constant, or cosine decay to zero over the epochs / --max-steps / --time-limit budget, "
                   f"whichever runs out first {hint('lr_schedule')}.")
@click.option("--bound", type=click.Choice(BOUNDS), help=f"MI bound of both terms {hint('bound')}.")
@click.option("--negatives", type=click.Choice(NEGATIVES),
              help="shuffle: one shuffled negative; all: all in-batch pairs; locations: all pairs and, for the "
                   f"local term, every position of every other image {hint('negatives')}.")
@click.option("--critic", type=click.Choice(CRITICS), help=f"Critic form {hint('critic')}.")
@click.option("--prior", type=click.Choice(PRIORS),
              help="kl: Gaussian code with closed-form KL to N(0, I); adversarial: discriminator; none "
                   f"{hint('prior')}.")
@click.option("--alpha", type=float, help=f"Weight of the global MI term {hint('alpha')}.")
@click.option("--beta", type=float, help=f"Weight of the local MI term {hint('beta')}.")
@click.option("--gamma", type=float, help=f"Weight of the prior term {hint('gamma')}.")
@click.option("--arch", type=click.Choice(ARCHS), help=f"Encoder {hint('arch')}.")
@click.option("--critic-hidden", type=click.IntRange(min=1), help=f"Hidden width of the critics {hint('critic_hidden')}.")
@click.option("--critic-temperature", type=click.FloatRange(min=0),
              help="0: the separable critics score raw dot products; T > 0: cosine similarities divided by T "
                   f"{hint('critic_temperature')}.")
@click.option("--local-maps", type=click.Choice(LOCAL_MAPS),
              help="Maps whose positions the local term scores against z: local (C(x), as DIM) or local+conv "
                   f"(also the last convolutional map's, multi-scale as AMDIM) {hint('local_maps')}.")
@click.option("--precision", type=click.Choice(PRECISIONS), default=_DEFAULTS.precision, show_default=True,
              help="Number format of training and embedding: auto is bf16 where bf16 is fast (CUDA, or a CPU with "
                   "AVX-512 BF16 or AMX), with the critics' scores and the bounds in fp32; fp32 elsewhere "
                   "(measured: benchmarks/RESULTS.md).")
@click.option("--z-dim", type=int, default=_DEFAULTS.z_dim, show_default=True, help="Size of the code z.")
@click.option("--augment", type=click.Choice(AUGMENTATIONS), help=f"Augmentation {hint('augment')}.")
@click.option("--views", type=click.IntRange(min(VIEWS), max(VIEWS)),
              help="2: two augmented views per image, each view's features scored against the other view's code "
                   f"(needs --augment) {hint('views')}.")
@device_option(_DEFAULTS.device)
@click.option("--seed", type=int, default=_DEFAULTS.seed, show_default=True)
@threads_option(_DEFAULTS.threads)
@click.option("--knn/--no-knn", default=_DEFAULTS.knn, show_default=True,
              help="kNN top-1 on the test split after each epoch (a subset) and at the end (all of it).")
@click.option("--compile/--no-compile", "compile_", default=None,
              help=f"Run the training step through torch.compile {hint('compile')}.")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out from its checkpoint (only "
                   f"{', '.join('--' + name.replace('_', '-') for name in RESUMABLE)} may change).")
def train_command(compile_: bool | None, resume: bool, **options) -> None:
    """Train a DIM encoder on DATASET: a name (cifar10, cifar100, stl10, svhn,
    mnist, fashion-mnist, shapes) or an image folder.

    Under `torchrun --nproc_per_node N -m dim train ...` the run is data-parallel
    and negatives are drawn from the global batch.
    """
    with user_errors():
        result = train(TrainConfig(compile=compile_, **options), resume=resume)
    knn_top1 = result.metrics["knn_top1"]
    knn = "" if knn_top1 is None else f", kNN top-1 {knn_top1:.4f}"
    click.echo(f"trained to epoch {result.metrics['epoch']:g} (step {result.step}){knn}; run directory {result.run_dir}")


@main.command("eval")
@run_argument()
@data_dir_option("Default: the run's.")
@click.option("--split", default="test", show_default=True, help="The labelled split to score.")
@click.option("--k", type=click.IntRange(min=1), default=KNN_K, show_default=True, help="Neighbours that vote.")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=KNN_TEMPERATURE,
              show_default=True, help="Vote weight exp(cos / T).")
@click.option("--feature", type=click.Choice(FEATURES), default="z", show_default=True,
              help="z: the code; fc: fully connected features; conv: the last conv map.")
@click.option("--linear", is_flag=True, help="Also fit a linear probe on the training features.")
@device_option()
@click.option("--batch-size", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--num-workers", type=click.IntRange(min=0), default=None,
              help="Decoding processes for image files [default: one per CPU core, at most 8; the network gets the "
                   "cores left, at least one thread].")
def eval_command(run: str, **options) -> None:
    """Weighted kNN accuracy of a trained encoder on its dataset's test split,
    with the training split as memory: the --k most cosine-similar training
    images vote for their class with weight exp(cos / T).

    RUN is a run directory or its checkpoint.pt. Image files are streamed, so
    any folder size is judged in flat memory. knn.png (queries and their 9
    nearest neighbours) and eval_SPLIT.json are written into the run directory;
    the last line printed is the same JSON object.
    """
    from dim.evaluate import evaluate

    with user_errors():
        summary = evaluate(run, **options)
    click.echo(f"dataset {summary['dataset']} ({summary['num_classes']} classes), feature {summary['feature']}: "
               f"{summary['num_train']} training images as memory, {summary['num_test']} {summary['split']} queries")
    click.echo(f"kNN top-1 (k={summary['k']}, T={summary['temperature']}): {summary['knn_top1']:.4f}")
    if "linear_top1" in summary:
        click.echo(f"linear probe top-1: {summary['linear_top1']:.4f}")
    click.echo(json.dumps(summary))


@main.command("embed")
@run_argument()
@click.argument("source")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The .npy file (CSV written next to it).")
@click.option("--split", default="test", show_default=True, help="Split of a named dataset.")
@data_dir_option()
@click.option("--feature", type=click.Choice(FEATURES), default=None,
              help="DIM runs: z (the code, default), fc or conv. Other model families have one feature.")
@click.option("--batch-size", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--num-workers", type=click.IntRange(min=0), default=None,
              help="Decoding processes for image files [default: one per CPU core, at most 8; the network gets the "
                   "cores left, at least one thread].")
@device_option()
def embed_command(run: str, source: str, **options) -> None:
    """Write the features of SOURCE (a dataset name or an image folder) to
    --out (.npy) and a CSV of filenames, features and labels next to it.

    RUN is a trained run of any model family (DIM, InfoGAN, O-GAN). Image files
    are streamed, so a folder of any size embeds in flat memory.
    """
    from dim.embed import embed

    with user_errors():
        result = embed(run, source, **options)
    if result.skipped:
        click.echo(f"skipped {len(result.skipped)} unreadable files", err=True)
    click.echo(f"{result.count} x {result.feature_dim} features -> {result.features_path} and {result.csv_path} "
               f"({result.images_per_s:.0f} images/s)")


# `dim mi`'s defaults, read off estimate_mi's signature.
_MI_DEFAULTS = {name: parameter.default for name, parameter in inspect.signature(estimate_mi).parameters.items()}


@main.command("mi")
@click.argument("x", metavar="X")
@click.argument("y", metavar="Y")
@click.option("--critic", type=click.Choice(CRITICS), default=_MI_DEFAULTS["critic"], show_default=True,
              help="concat: an MLP on [x, y]; separable: the dot product of two embeddings.")
@click.option("--bound", type=click.Choice(BOUNDS), default=_MI_DEFAULTS["bound"], show_default=True,
              help="The bound trained and read on held-out pairs (docs/mi.md).")
@click.option("--hidden-dim", type=click.IntRange(min=1), default=None,
              help="Width of the critic's hidden layers [default: " + ", ".join(
                  f"{form} {options['hidden_dim']}" for form, options in CRITIC_DEFAULTS.items()) + "].")
@click.option("--folds", type=click.IntRange(min=3), default=_MI_DEFAULTS["folds"], show_default=True,
              help="k: each fold is held out once; the interval is over the k estimates.")
@click.option("--max-steps", type=click.IntRange(min=1), default=_MI_DEFAULTS["max_steps"], show_default=True,
              help="The most training steps per fold (training stops earlier once validation stops improving).")
@click.option("--batch-size", type=click.IntRange(min=1), default=_MI_DEFAULTS["batch_size"], show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="AdamW learning rate [default: " + ", ".join(
                  f"{form} {lr:g}" for form, lr in LEARNING_RATES.items()) + "].")
@click.option("--rank-gaussian/--no-rank-gaussian", default=_MI_DEFAULTS["rank_gaussian"], show_default=True,
              help="Map each column to normal scores of its ranks first (MI is unchanged; long tails and warped "
                   "margins are gone), or only standardise it.")
@click.option("--baselines/--no-baselines", default=_MI_DEFAULTS["baselines"], show_default=True,
              help="Also print the Gaussian (CCA) and KSG estimates of the same samples.")
@click.option("--seed", type=int, default=_MI_DEFAULTS["seed"], show_default=True)
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Draw the validation estimate of each fold over the steps into this PNG (needs matplotlib).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as one JSON object, the last line.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="A progress bar on stderr (when it is a terminal).")
@device_option()
@threads_option(1)
def mi_command(x: str, y: str, hidden_dim: int | None, plot: str | None, as_json: bool, progress: bool,
               device: str, threads: int, **options) -> None:
    """Estimate the mutual information I(X; Y) of two paired arrays, in nats
    and bits, with an interval.

    X and Y hold one sample per row, rows paired: a .npy file, an .npz archive
    (FILE.npz:KEY), or a .csv of numbers (a header row is skipped). A critic is
    trained on all folds but one and read on the held-out fold, k times; see
    docs/mi.md ("Estimating the MI of two arrays"). The critics are small: one
    CPU thread (the default --threads) runs them fastest.
    """
    import torch
    from tqdm import tqdm

    from dim.core.device import select_device
    from dim.mi_io import load_array, plot_estimate

    with user_errors():
        x_values, y_values = load_array(x), load_array(y)
        critic_options = {} if hidden_dim is None else {"hidden_dim": hidden_dim}
        if threads > 0:
            torch.set_num_threads(threads)
        with tqdm(unit="step", desc="dim mi", disable=None if progress else True, leave=False) as bar:
            result = estimate_mi(x_values, y_values, critic_options=critic_options, device=select_device(device),
                                 progress=bar, **options)
    low, high = result.interval
    click.echo(f"I(X; Y) = {result.nats:.4f} nats ({result.bits:.4f} bits), {result.confidence:.0%} interval "
               f"{low:.4f} to {high:.4f} nats, from {result.num_samples} samples held out in {len(result.folds)} "
               "folds")
    if result.baselines:
        click.echo("baselines: " + ", ".join(f"{name} {value:.4f} nats" for name, value in result.baselines.items()))
    for note in result.diagnostics:
        click.echo(f"warning: {note}")
    if plot is not None:
        written = plot_estimate(result, plot, title=f"I({x}; {y})")
        click.echo(f"curves: {written}" if written else "curves skipped: pip install matplotlib")
    if as_json:
        click.echo(json.dumps(result.to_dict()))


if __name__ == "__main__":
    main()
