"""The ``infogan`` command line: training (InfoGAN or O-GAN), sample grids and reconstructions, evaluation.

O-GAN is an ``--objective`` of ``infogan train`` rather than a command of its
own: it trains on the same loop, run directories, checkpoints, resume and
divergence guard, and every option but the InfoGAN-only ones means the same.
The options every product shares come from :mod:`dim.core.cli`.
"""

from __future__ import annotations

import json

import click

from dim.core.cli import (
    config_defaults,
    data_dir_option,
    device_option,
    preset_hint,
    run_argument,
    user_errors,
)
from infogan import __version__
from infogan.config import (
    NOISE_DISTRIBUTIONS,
    OBJECTIVE_DEFAULTS,
    OBJECTIVES,
    PRESETS,
    RESUMABLE,
    TrainConfig,
)

# `infogan train`'s defaults, read off the dataclass; None: the objective's or the preset's value (see the hints).
_DEFAULTS = config_defaults(TrainConfig)


def objective_hint(name: str) -> str:
    """What each objective fills ``name`` in with, for a help text: ``[default: infogan: 2, ogan: 0]``."""
    values = {objective: defaults[name] for objective, defaults in OBJECTIVE_DEFAULTS.items() if name in defaults}
    return "[default: " + ", ".join(f"{objective}: {value}" for objective, value in values.items()) + "]"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="infogan")
def main() -> None:
    """InfoGAN: a GAN whose codes (a categorical digit class, continuous style
    variables) are made recoverable from the image by a variational
    mutual-information bound. With --objective ogan: O-GAN, whose discriminator
    is also an encoder of images.

    Run `infogan COMMAND --help` for the options of each command.
    """


@main.command()
@click.argument("dataset")
@data_dir_option()
@click.option("--out", "out", type=click.Path(file_okay=False),
              help="Run directory (default runs/infogan-DATASET-TIME). With --resume: the run to continue.")
@click.option("--iterations", type=click.IntRange(min=1), default=_DEFAULTS.iterations, show_default=True,
              help="D + G steps to train (in all, counting steps already done when resuming).")
@click.option("--batch-size", type=click.IntRange(min=2), default=_DEFAULTS.batch_size, show_default=True,
              help="Images per step for D and for G.")
@click.option("--seed", type=int, default=_DEFAULTS.seed, show_default=True,
              help="Seed of every random number generator.")
@device_option(_DEFAULTS.device)
@click.option("--resume", is_flag=True,
              help="Continue the run in --out from its checkpoint up to --iterations. The run's saved settings "
                   f"are kept; only {', '.join('--' + name.replace('_', '-') for name in RESUMABLE)} apply.")
@click.option("--objective", type=click.Choice(list(OBJECTIVES)), default=_DEFAULTS.objective, show_default=True,
              help="infogan: codes c made recoverable by Q. ogan: O-GAN, D outputs a vector E(x) of --noise-dim values "
                   "whose mean is the real/fake score, and corr(z, E(G(z))) is maximised, so D encodes images "
                   "(no Q, no codes; see docs/ogan.md).")
@click.option("--lambda-corr", type=click.FloatRange(min=0),
              help=f"O-GAN only: weight of -corr(z, E(G(z))) in the D and G losses {objective_hint('lambda_corr')}.")
@click.option("--separate-q", is_flag=True,
              help="Give Q its own convolutional trunk instead of sharing D's (the paper shares it).")
@click.option("--learn-sigma", is_flag=True,
              help="Q predicts a (clamped) standard deviation per continuous code instead of fixing it to 1.")
@click.option("--lambda-info", type=click.FloatRange(min=0), default=_DEFAULTS.lambda_info, show_default=True,
              help="Weight of the information term L_I; 0 trains a plain GAN (the baseline).")
@click.option("--lambda-cont", type=click.FloatRange(min=0), default=_DEFAULTS.lambda_cont, show_default=True,
              help="Weight of the continuous codes' Gaussian NLL relative to the categorical cross-entropy.")
@click.option("--preset", type=click.Choice(list(PRESETS)), default=_DEFAULTS.preset, show_default=True,
              help="Fills in --lambda-invariance and --lambda-iic when they are not given. best: both terms at 1, "
                   "the objective that measured best; paper: the InfoGAN paper's objective (both 0). What each "
                   "measured: benchmarks/RESULTS.md.")
@click.option("--lambda-invariance", type=click.FloatRange(min=0),
              help="Weight of the invariance term: Q must read the same categorical code from a randomly rotated, "
                   "sheared, scaled and shifted copy of each fake, so slant and width cannot carry it "
                   f"{preset_hint(PRESETS, 'lambda_invariance')}.")
@click.option("--lambda-iic", type=click.FloatRange(min=0),
              help="Weight of the IIC term on real images: maximise the mutual information between Q's "
                   f"categorical code for a real image and for a randomly warped copy of it {preset_hint(PRESETS, 'lambda_iic')}.")
@click.option("--noise-dim", type=click.IntRange(min=0), default=_DEFAULTS.noise_dim, show_default=True,
              help="Number of incompressible noise variables z.")
@click.option("--noise", type=click.Choice(NOISE_DISTRIBUTIONS),
              help=f"Prior of z: Uniform(-1, 1) or N(0, 1) {objective_hint('noise')}.")
@click.option("--categorical", type=click.IntRange(min=2), multiple=True,
              help="Categories of a categorical code; repeat for several codes (default: one 10-way code; "
                   "O-GAN takes none).")
@click.option("--no-categorical", is_flag=True, help="Use no categorical code (only continuous ones).")
@click.option("--continuous", type=click.IntRange(min=0),
              help=f"Number of continuous codes, each Uniform(-1, 1) {objective_hint('continuous')}.")
@click.option("--lr-d", type=float, default=_DEFAULTS.lr_d, show_default=True, help="Adam learning rate of D.")
@click.option("--lr-g", type=float, default=_DEFAULTS.lr_g, show_default=True, help="Adam learning rate of G and Q.")
@click.option("--image-size", type=int,
              help="Resize the images to this side (a multiple of 4; default: the dataset's own).")
@click.option("--channels", type=click.Choice(["1", "3"]), help="1 (grey) or 3 (RGB); default: the dataset's own.")
@click.option("--log-every", type=click.IntRange(min=1), default=_DEFAULTS.log_every, show_default=True,
              help="Steps between metrics.csv rows and divergence checks.")
@click.option("--sample-every", type=click.IntRange(min=1), default=_DEFAULTS.sample_every, show_default=True,
              help="Steps between samples/step_NNNNNN.png grids.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=_DEFAULTS.checkpoint_every, show_default=True,
              help="Steps between checkpoints (one is always written at the end).")
@click.option("--max-loss", type=float, default=_DEFAULTS.max_loss, show_default=True,
              help="Stop as diverged when the windowed D or G loss exceeds this (NaN/inf always stop).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def train(dataset: str, out: str | None, resume: bool, progress: bool, categorical: tuple[int, ...],
          no_categorical: bool, channels: str | None, **options) -> None:
    """Train InfoGAN (or, with --objective ogan, O-GAN) on DATASET: mnist,
    fashion-mnist, cifar10, ..., shapes (generated, offline) or a folder of images.

    The networks, latents and schedule are the paper's MNIST setting: 62 noise
    variables, a 10-way categorical code c1 and two continuous codes c2, c3;
    Adam (beta1 0.5) with learning rates 2e-4 (D) and 1e-3 (G, Q); batch 128;
    5000 iterations.

    The run directory gets config.json, metrics.csv, curves.png (with
    matplotlib), checkpoint.pt (written atomically, for an exact --resume) and
    samples/step_NNNNNN.png: one row per value of c1, one fixed noise sample per
    column. The progress bar shows the D and G losses and L_I per code in nats
    (c1 approaches ln 10 = 2.30 when Q recovers it perfectly).

    The objective is the best preset's by default: the paper's objective often
    lets c1 merge look-alike digits (4 and 9) and split others by style, and the
    invariance and IIC terms pin c1 to the class (accuracies over five seeds in
    benchmarks/RESULTS.md). --preset paper trains the paper's objective.

    --objective ogan trains O-GAN on the same networks and schedule: no Q and
    no codes, N(0, 1) noise, D's head widened to --noise-dim outputs E(x), and
    -lambda corr(z, E(G(z))) added to both losses (--lambda-corr, default
    0.5). The progress bar and metrics.csv show the D and G losses and the
    correlation; samples/ gets 10x10 grids of fixed noise, and the run
    directory reconstructions.png (test images above G(standardise(E(x)))).
    The run is a search model for dim-search, and infogan eval reports its kNN
    top-1.

    \b
    Examples:
      infogan train mnist --data-dir DATA --iterations 200
      infogan train mnist --data-dir DATA --preset paper
      infogan train mnist --data-dir DATA --objective ogan
    """
    from infogan.train import TrainingDiverged
    from infogan.train import train as run_training

    if no_categorical and categorical:
        raise click.UsageError("--no-categorical and --categorical exclude each other")
    codes = () if no_categorical else (categorical or None)  # None: the objective's default
    config = TrainConfig(dataset=dataset, out=out, categorical=codes, channels=int(channels) if channels else None,
                         **options)
    with user_errors(TrainingDiverged):
        result = run_training(config, resume=resume, progress=progress)
    click.echo(f"trained to step {result.step}; run directory: {result.run_dir}")


@main.command()
@run_argument()
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True, help="PNG file to write.")
@click.option("--reconstruct", "images", type=click.Path(exists=True, dir_okay=False), multiple=True,
              help="O-GAN runs: an image file to reconstruct as G(standardise(E(x))); repeat it, or list the files "
                   "after the option's first use. Draws each row of inputs above their reconstructions.")
@click.option("--vary", default="c1", show_default=True,
              help="The code to vary: c1 (categorical on the paper preset), c2, c3, ...")
@click.option("--range", "value_range", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="A continuous code sweeps -RANGE..RANGE (it was trained on -1..1).")
@click.option("--columns", type=click.IntRange(min=1), default=10, show_default=True, help="Images per row.")
@click.option("--rows", type=click.IntRange(min=1),
              help="Rows when varying a continuous code (default: c1's categories). "
                   "A categorical code has one row per category.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fixed noise.")
@device_option()
@click.argument("extra_images", nargs=-1, type=click.Path(exists=True, dir_okay=False))
def sample(
    run: str, out: str, images: tuple[str, ...], extra_images: tuple[str, ...], vary: str, value_range: float,
    columns: int, rows: int | None, seed: int, device: str,
) -> None:
    """Write a traversal grid of a trained run: vary one code with the rest fixed;
    or, for an O-GAN run with --reconstruct, its reconstructions of images.

    Varying a categorical code gives one row per category (each column one noise
    sample); varying a continuous code sweeps it across the columns from -RANGE
    to RANGE, each row a different noise sample and c1 value, as in the paper's
    Figure 2.

    --reconstruct IMAGES... (O-GAN runs) encodes each image with the
    discriminator, E(x), and draws G(standardise(E(x))) below it, COLUMNS
    images to a row; the files are resized and centre-cropped to the model's
    input as training images are.

    \b
    Examples:
      infogan sample runs/mnist --vary c2 --range 2 --out c2.png
      infogan sample runs/ogan-mnist --reconstruct digits/*.png --out reconstructions.png
    """
    from infogan.sample import save_reconstruction, save_traversal

    files = images + extra_images
    if extra_images and not images:
        raise click.UsageError(f"got extra arguments {' '.join(extra_images)}: image files follow --reconstruct")
    with user_errors():
        if files:
            path = save_reconstruction(run, files, out, columns, device)
        else:
            path = save_traversal(run, out, vary, value_range, columns, rows, seed, device)
    click.echo(f"wrote {path}")


@main.command(name="eval")
@run_argument()
@data_dir_option("Default: the run's.")
@click.option("--split", default="test", show_default=True, help="The labelled split to score.")
@click.option("--confusion", "confusion_png", type=click.Path(dir_okay=False),
              help="Where to draw the confusion matrix (default: confusion.png in the run directory).")
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True,
              help="Images per forward pass.")
@device_option()
def evaluate(
    run: str, data_dir: str | None, split: str, confusion_png: str | None, batch_size: int, device: str
) -> None:
    """Score the categorical code c1 as an unsupervised classifier (O-GAN
    runs: the kNN top-1 of the encoding E(x)).

    Q reads off c1 for every real image of the split; its categories are matched
    one-to-one to the labels by the Hungarian algorithm on the confusion matrix,
    and the accuracy under that matching is reported (the paper: 95% on MNIST).
    Prints a summary, then, as the last line, one JSON object with cat_accuracy,
    mapping (category -> class index), dataset, iterations and more.

    For an O-GAN run, E(x) of the split's images is classified by the weighted
    vote of their k most cosine-similar training images, dim eval's kNN
    protocol; the JSON object then has knn_top1, k, temperature, num_train,
    num_test, feature_dim and knn_png (10 queries and their nearest neighbours).
    Either result is also saved as eval_SPLIT.json in the run directory.
    """
    from infogan.evaluate import evaluate as run_evaluation

    with user_errors():
        result = run_evaluation(run, data_dir, split, device=device, batch_size=batch_size, confusion_png=confusion_png)
    if "knn_top1" in result:  # an O-GAN run
        click.echo(f"{result['dataset']} {result['split']} ({result['num_test']} images, {result['num_train']} "
                   f"training images as memory), after {result['iterations']} iterations")
        click.echo(f"kNN top-1 of E(x) ({result['feature_dim']}-d; k={result['k']}, T={result['temperature']:g}): "
                   f"{100 * result['knn_top1']:.2f}%")
        click.echo(f"neighbour grid: {result['knn_png']}")
        click.echo(json.dumps(result))
        return
    classes = result["classes"]
    click.echo(f"{result['dataset']} {result['split']} ({result['num_images']} images), "
               f"after {result['iterations']} iterations")
    click.echo(f"categorical accuracy of c1: {100 * result['cat_accuracy']:.2f}%")
    by_class = {label: int(category) for category, label in result["mapping"].items()}
    for label, name in enumerate(classes):
        row = result["confusion"][label]
        matched = f"c1={by_class[label]}: {row[by_class[label]]:>6}" if label in by_class else "no category:      0"
        click.echo(f"  {name:<16} {matched} of {sum(row)} images")
    click.echo(f"confusion matrix: {result['confusion_png']}")
    click.echo(json.dumps({key: value for key, value in result.items() if key != "confusion"}))


if __name__ == "__main__":
    main()
