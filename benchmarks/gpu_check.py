"""GPU check: the CUDA tests and the toolkit's figures on one CUDA GPU.

What it does, part by part (``--part``, may be given more than once; ``all`` is every part):

* every part: prints the environment (GPU, torch, CUDA, cuDNN, faiss or not) and measures the
  matrix-product ceiling: bf16 on an 8192^3 product on CUDA (fp32 too, for reference); on a CPU a
  2048^3 product (512^3 with ``--tiny``) in bf16 and fp32. The ceiling is bf16's where DIM's step
  runs under bf16 autocast (CUDA; CPUs with fast bf16), else fp32's.
* ``env-tests``: ``python -m pytest -q -m gpu tests/test_gpu.py`` in a subprocess (on a CPU every
  test skips), its output saved as ``pytest_gpu.txt``.
* ``dim``: trains DIM on CIFAR-10 for a fixed 5 minutes of training time (``time_limit``; the
  cosine learning rate decays to zero over them) and reports images/s, the fraction of the
  measured ceiling the step reaches (FLOPs per image from ``training_flops_per_image`` in
  ``benchmarks/dim_cifar10.py``), and the kNN top-1 at the end (k = 200, T = 0.1, z, the full test
  set against the full training split, as ``dim eval`` computes it).
* ``infogan-embed``: trains InfoGAN on MNIST with ``--lambda-invariance 1 --lambda-iic 1`` (the
  objective that met the accuracy targets in benchmarks/RESULTS.md) for 5,000 iterations at batch
  128, reporting it/s and the c1 accuracy on the test set (:func:`infogan.evaluate.evaluate`); then
  embeds the 10,000 CIFAR-10 test JPEGs through ``dim-search build``'s path
  (:func:`dim.core.embedding.embed_images`: decoding workers, the model's preprocessing, forward,
  L2 normalisation), reporting images/s (median of 3 runs after a warm-up run), and the forward
  pass alone on uint8 batches already on the GPU.

The DIM recipe, and why: ``--preset gpu`` (``dim.config.PRESETS``), which is the CPU's best
recipe (the DIM paper's local infoNCE across locations alone, separable critics,
the KL prior, flip + crop, a cosine learning rate; the most accuracy per minute measured in
benchmarks/RESULTS.md) with four settings for one GPU:

* ``arch resnet18``: the DCGAN encoder's kNN top-1 stopped at 52-54 % (on the per-epoch subset)
  between epochs 15 and 38 at a constant rate on the CPU and ended at 62 % with the cosine
  rate, so many more epochs of it are unlikely to reach 80 %; ResNet-18 is the usual backbone of
  CIFAR-10 kNN figures of 80 % and above. It also gives the GPU ~10x the FLOPs per image in wide
  3x3 convolutions, where tensor cores are used well, instead of a small network whose step is
  bound by kernel launches and memory traffic, for which the ceiling target is out of reach.
* ``batch_size 512`` and ``lr 2e-3``: a batch that fills the GPU with a ResNet-18 on 32x32
  images (each image's local positions are then scored against 511 x 64 negatives), and the
  preset's 1e-3 at batch 128 scaled by the square root of the batch ratio; neither was tuned.
* ``compile``: ``torch.compile`` of the step (fuses BatchNorm, ReLU and the critics' elementwise
  work). Its compile time counts inside the 5 minutes. If compiling fails the run is made again
  without it, for the time that is left, and the summary says so (``dim_compiled``,
  ``dim_compile_error``). ``tests/test_gpu.py`` (part ``env-tests``) checks that a compiled
  step matches the eager one, so a run of that part first tells whether to pass ``--no-compile``.

bf16 autocast, channels-last, the data resident on the GPU and augmentation there are what
``dim.train`` does on CUDA anyway. ``--dim-arch``, ``--dim-batch-size``, ``--dim-lr`` and
``--no-compile`` override the recipe.

The run writes its checkpoint once, at the end, instead of after every epoch (a ResNet-18
checkpoint with Adam's state is ~130 MB and an epoch takes seconds); ``dim.train`` is otherwise
used unchanged, and per-epoch kNN checks are off (they would take time outside the budget).

Targets (printed in the table with each figure): DIM kNN top-1 >= 80 % after 5 minutes; DIM step
>= 40 % of the bf16 ceiling; InfoGAN 5,000 iterations in < 2 minutes with c1 accuracy as on the
CPU (>= 97 %: the CPU's 5 seeds gave 97.56-98.64 %, median 98.37 %); embedding >= 20,000 images/s;
every GPU test passes.

Outputs, in ``--out``: ``gpu_check.json`` (environment, every figure, the targets, errors; rewritten
after each part, so a run cut short still leaves what it measured), ``gpu_check.txt`` (the printed
environment and table) and ``pytest_gpu.txt``. Run directories go to ``--runs-dir`` (default a
temporary folder, removed at the end: the ResNet-18 checkpoint alone is ~130 MB).

To run it, on a machine with a CUDA GPU, from the repository root::

    PYTHONPATH=. python benchmarks/gpu_check.py --data-dir DATA --out OUT      # every part, ~10 minutes

``DATA`` (default ``$DIM_DATA_DIR``) holds MNIST in torchvision's layout and CIFAR-10 as an
image-folder tree ``cifar10/{train,test}/<class>/``. ``MNIST/raw`` may hold the files gzipped:
the script decompresses them where the decompressed files are missing (torchvision's MNIST reads
those and would try to download otherwise). The project need not be installed (hence the
``PYTHONPATH``), and faiss is not needed: the kNN falls back to a torch search and the embedding
check builds no index.

The parts can also run as two shorter runs, each with its own ``--out`` (each writes its own
``gpu_check.json``): the first, ~4 minutes, needs MNIST and the CIFAR-10 test split; the second,
~6 minutes, all of CIFAR-10, and gets ``--no-compile`` if the first's
``test_compiled_dim_step_matches_the_eager_one`` failed::

    PYTHONPATH=. python benchmarks/gpu_check.py --data-dir DATA --out OUT1 --part env-tests --part infogan-embed
    PYTHONPATH=. python benchmarks/gpu_check.py --data-dir DATA --out OUT2 --part dim

On a CPU, ``--tiny`` runs every part at toy size on generated shapes written as PNG folders (a
few steps, small batches, a 512^3 product): what ``tests/benchmarks/test_gpu_check.py`` runs::

    python benchmarks/gpu_check.py --tiny --part all --out /tmp/gpu_check
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
for _path in (str(REPO), str(BENCHMARKS)):  # the project need not be installed
    if _path not in sys.path:
        sys.path.insert(0, _path)

import torch
from data_root import (  # the benchmarks' --data-dir / $DIM_DATA_DIR
    add_data_dir_argument,
    require_data_dir,
)
from PIL import Image

from dim.config import TrainConfig
from dim.core.device import select_device
from dim.core.embedding import decoding_split, embed_batch, embed_images, eval_mode
from dim.core.files import find_images
from dim.core.shapes import make_shapes
from dim.models import Encoder, feature_extractor

PARTS = ("env-tests", "dim", "infogan-embed")
GPU_TESTS = ("tests/test_gpu.py",)
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
SHAPE_CLASSES = ("circle", "square", "triangle")  # make_shapes' labels 0, 1, 2

# Every figure of the summary and its type; None where a part was not run or failed.
FIGURES: dict[str, type] = {
    "ceiling_tflops": float,  # bf16 on CUDA, fp32 on a CPU: what the DIM step's share is taken of
    "bf16_matmul_tflops": float,
    "fp32_matmul_tflops": float,
    "gpu_tests_returncode": int,
    "gpu_tests_passed": int,
    "gpu_tests_failed": int,
    "gpu_tests_skipped": int,
    "gpu_tests_errors": int,
    "dim_knn_top1": float,
    "dim_images_per_s": float,  # after the first epoch (compilation and warm-up excluded)
    "dim_images_per_s_all": float,  # over the whole run
    "dim_gflop_per_image": float,
    "dim_fraction_of_ceiling": float,
    "dim_epochs": float,
    "dim_steps": int,
    "dim_train_minutes": float,
    "dim_compiled": bool,
    "infogan_iterations": int,
    "infogan_seconds": float,
    "infogan_it_per_s": float,
    "infogan_c1_accuracy": float,
    "embed_images": int,
    "embed_images_per_s": float,
    "embed_forward_images_per_s": float,
}
PART_FIGURES = {
    "env-tests": [name for name in FIGURES if name.startswith("gpu_tests")],
    "dim": [name for name in FIGURES if name.startswith("dim_")],
    "infogan-embed": [name for name in FIGURES if name.startswith(("infogan_", "embed_"))],
}


# ---------------------------------------------------------------------------------- environment


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_tflops(device: torch.device, dtype: torch.dtype, size: int, repeats: int) -> float:
    """TFLOP/s of ``size^3`` products of random matrices (mean of ``repeats`` after 3 warm-ups)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return repeats * 2 * size**3 / (time.perf_counter() - start) / 1e12


def environment(device: torch.device) -> dict[str, Any]:
    """What the figures were measured on."""
    try:
        import faiss

        faiss_version = faiss.__version__
    except ImportError:
        faiss_version = None
    import torchvision

    info: dict[str, Any] = {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "gpu_memory_gib": round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
        if device.type == "cuda" else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "faiss": faiss_version,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    return info


def measure_ceiling(device: torch.device, tiny: bool) -> dict[str, Any]:
    """bf16 and fp32 matmul TFLOP/s, and the ceiling: bf16 where DIM's step runs under bf16 autocast, else fp32."""
    from dim.core import device as devices

    if device.type == "cuda":
        size, bf16_repeats, fp32_repeats = 8192, 10, 3
    else:
        size, bf16_repeats, fp32_repeats = (512 if tiny else 2048), 5, 5
    bf16 = matmul_tflops(device, torch.bfloat16, size, bf16_repeats)
    fp32 = matmul_tflops(device, torch.float32, size, fp32_repeats)
    fast_bf16 = getattr(devices, "bf16_is_fast", lambda d: d.type == "cuda")  # trees before the precision setting
    dtype = "bf16" if fast_bf16(device) else "fp32"
    return {"bf16_matmul_tflops": bf16, "fp32_matmul_tflops": fp32, "ceiling_tflops": bf16 if dtype == "bf16" else fp32,
            "ceiling_dtype": dtype, "matmul_size": size}


# ---------------------------------------------------------------------------------- GPU tests


def pytest_counts(output: str) -> dict[str, int]:
    """passed / failed / skipped / errors from pytest's closing line (0 for what it does not name)."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    for number, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)\b", last):
        counts["errors" if word.startswith("error") else word] += int(number)
    return counts


def run_gpu_tests(out: Path) -> dict[str, Any]:
    """``python -m pytest -q -m gpu`` over :data:`GPU_TESTS` in a subprocess; its output goes to ``pytest_gpu.txt``."""
    command = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "-n", "0", "-rfEs", *GPU_TESTS]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    output = completed.stdout + completed.stderr
    (out / "pytest_gpu.txt").write_text(f"$ {' '.join(command)}\n{output}")
    counts = pytest_counts(completed.stdout)
    print(f"pytest -m gpu ({time.perf_counter() - start:.0f} s, exit {completed.returncode}):")
    print("\n".join("  " + line for line in output.strip().splitlines()[-15:]))
    return {"gpu_tests_returncode": completed.returncode, **{f"gpu_tests_{k}": v for k, v in counts.items()}}


# ---------------------------------------------------------------------------------- data


def prepare_mnist(data_dir: Path) -> None:
    """Decompress ``MNIST/raw/*.gz`` where the decompressed file is missing (torchvision reads those)."""
    raw = data_dir / "MNIST" / "raw"
    for name in MNIST_FILES:
        target, packed = raw / name, raw / f"{name}.gz"
        if not target.exists() and packed.exists():
            with gzip.open(packed, "rb") as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink)


def write_tiny_dataset(root: Path, train: int = 240, test: int = 120) -> Path:
    """Generated shapes as PNG files in ``root/{train,test}/<class>/``: an image-folder tree like CIFAR-10's copy."""
    for split, count, seed in (("train", train, 0), ("test", test, 1)):
        images, labels = make_shapes(count, 32, seed)
        for number, (image, label) in enumerate(zip(images, labels.tolist())):
            folder = root / split / SHAPE_CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{number:05d}.png")
    return root


# ---------------------------------------------------------------------------------- DIM


def dim_recipe(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The preset of the DIM run and the settings given over it (the command line's last)."""
    preset, settings = "gpu", {}
    chosen = {"arch": args.dim_arch, "batch_size": args.dim_batch_size, "lr": args.dim_lr}
    settings.update({name: value for name, value in chosen.items() if value is not None})
    if args.no_compile:
        settings["compile"] = False
    if args.tiny:  # the same preset at toy size on a CPU
        settings.update(arch="dcgan", batch_size=32, compile=False)
    return preset, settings


def dim_config(args: argparse.Namespace, data: dict[str, Path], out: Path) -> TrainConfig:
    preset, settings = dim_recipe(args)
    common = {"preset": preset, "time_limit": args.dim_minutes, "knn": False, "out": str(out), **settings}
    if args.tiny:
        return TrainConfig(dataset=str(data["tiny"]), epochs=2, max_steps=6, log_every=2, **common)
    return TrainConfig(dataset="cifar10", data_dir=str(data["root"]), epochs=10_000, log_every=50, **common)


def train_dim(config: TrainConfig) -> Any:
    """Train with :class:`dim.train.Trainer`, writing the checkpoint at the end only."""
    from dim.train import Trainer

    class EndCheckpointTrainer(Trainer):
        def _save(self) -> None:  # once, at the end: a checkpoint per epoch costs seconds outside the budget
            if self._finished():
                super()._save()

    trainer = EndCheckpointTrainer(config, progress=False)
    try:
        return trainer.run()
    finally:
        trainer.close()


def run_dim(args: argparse.Namespace, data: dict[str, Path], runs: Path, ceiling_tflops: float) -> dict[str, Any]:
    from dim_cifar10 import training_flops_per_image

    from dim.evaluate import evaluate

    config = dim_config(args, data, runs / "dim").resolved()
    flops = training_flops_per_image(config)  # one forward + backward of the objective, per image
    recipe = asdict(config)
    shown = ("preset", "arch", "batch_size", "lr", "lr_schedule", "bound", "negatives", "critic", "augment", "views",
             "prior", "precision", "time_limit", "compile")
    print(f"DIM recipe: {({name: recipe[name] for name in shown if name in recipe})}; "
          f"{flops / 1e9:.3f} GFLOP per image per step")
    start, compile_error = time.perf_counter(), None
    try:
        result = train_dim(config)
    except Exception as error:  # compilation failing on this machine: train eagerly for the time left
        if not config.compile:
            raise
        compile_error = f"{type(error).__name__}: {error}"[-2000:]
        spent = (time.perf_counter() - start) / 60
        print(f"DIM with torch.compile failed after {spent:.1f} min ({compile_error.splitlines()[0]}); "
              "training again without it")
        config = replace(config, compile=False, out=str(runs / "dim-eager"),
                         time_limit=max(config.time_limit - spent, 0.5))
        result = train_dim(config)
    rows = result.rows
    images = [row["images_per_s"] * row["seconds"] for row in rows]
    seconds = [row["seconds"] for row in rows]
    steady = slice(1, None) if len(rows) > 1 else slice(None)  # the first epoch holds compilation and warm-up
    images_per_s = sum(images[steady]) / max(sum(seconds[steady]), 1e-9)
    evaluation = evaluate(result.run_dir, progress=False)  # `dim eval`: full test set vs full training split
    figures = {
        "dim_knn_top1": float(evaluation["knn_top1"]),
        "dim_images_per_s": images_per_s,
        "dim_images_per_s_all": sum(images) / max(sum(seconds), 1e-9),
        "dim_gflop_per_image": flops / 1e9,
        "dim_fraction_of_ceiling": images_per_s * flops / (ceiling_tflops * 1e12),
        "dim_epochs": float(result.metrics["epoch"]),
        "dim_steps": int(result.step),
        "dim_train_minutes": result.seconds / 60,
        "dim_compiled": bool(config.compile),
    }
    print(f"DIM: kNN top-1 {figures['dim_knn_top1']:.4f} after {figures['dim_epochs']:.1f} epochs "
          f"({figures['dim_steps']} steps, {figures['dim_train_minutes']:.2f} min of training); "
          f"{images_per_s:,.0f} images/s after the first epoch ({figures['dim_images_per_s_all']:,.0f} overall), "
          f"{100 * figures['dim_fraction_of_ceiling']:.1f} % of the {ceiling_tflops:.1f} TFLOP/s ceiling")
    extra = {"dim_recipe": {**recipe, "compile": config.compile, "time_limit": config.time_limit}, "dim_kNN": {
        key: evaluation[key] for key in ("k", "temperature", "num_train", "num_test", "feature")}}
    if compile_error:
        extra["dim_compile_error"] = compile_error
    return {**figures, **extra}


# ---------------------------------------------------------------------------------- InfoGAN


def run_infogan(args: argparse.Namespace, data: dict[str, Path], runs: Path) -> dict[str, Any]:
    from infogan.config import TrainConfig as InfoGANConfig
    from infogan.evaluate import evaluate
    from infogan.train import train

    iterations = args.infogan_iterations
    dataset, data_dir = (str(data["tiny"]), None) if args.tiny else ("mnist", str(data["root"]))
    if not args.tiny:
        prepare_mnist(data["root"])
    config = InfoGANConfig(dataset=dataset, data_dir=data_dir, out=str(runs / "infogan"), iterations=iterations,
                           batch_size=args.infogan_batch_size, lambda_invariance=1.0, lambda_iic=1.0,
                           log_every=min(50, iterations), sample_every=iterations, checkpoint_every=iterations)
    result = train(config, progress=False)
    accuracy = evaluate(result.run_dir, data_dir=data_dir)["cat_accuracy"]
    figures = {
        "infogan_iterations": int(result.steps),
        "infogan_seconds": result.seconds,
        "infogan_it_per_s": result.steps_per_s,
        "infogan_c1_accuracy": float(accuracy),
    }
    print(f"InfoGAN (--lambda-invariance 1 --lambda-iic 1, batch {config.batch_size}): {result.steps} iterations "
          f"in {result.seconds:.1f} s ({result.steps_per_s:.1f} it/s); c1 accuracy {100 * accuracy:.2f} %")
    return figures


# ---------------------------------------------------------------------------------- embedding


def run_embedding(args: argparse.Namespace, data: dict[str, Path], device: torch.device) -> dict[str, Any]:
    folder = data["tiny"] / "test" if args.tiny else data["root"] / "cifar10" / "test"
    paths = find_images(folder)
    preset, settings = dim_recipe(args)
    arch = TrainConfig(preset=preset, **settings).resolved().arch  # the DIM recipe's encoder
    # An untrained encoder, wrapped as dim.load_features wraps a trained one: the speed does not depend on training.
    model = feature_extractor(Encoder(arch, 3, 32, 64)).to(device)
    batch_size = args.embed_batch_size
    _, workers = decoding_split()  # what Index.build (dim-search build) uses by default
    embed_images(model, paths, batch_size, workers)  # warm-up: page cache, kernels, worker start-up
    rates = []
    for _ in range(3):
        start = time.perf_counter()
        embedded = embed_images(model, paths, batch_size, workers)
        rates.append(len(paths) / (time.perf_counter() - start))
    if len(embedded.vectors) != len(paths):
        raise RuntimeError(f"embedded {len(embedded.vectors)} of {len(paths)} images: {embedded.skipped[:3]}")
    batch = torch.randint(0, 256, (batch_size, 3, 32, 32), dtype=torch.uint8, device=device)
    with eval_mode(model):
        embed_batch(model, batch)
        sync(device)
        start, runs = time.perf_counter(), 0
        while time.perf_counter() - start < (0.5 if args.tiny else 3.0):
            embed_batch(model, batch)  # includes the copy of the vectors back to the CPU
            runs += 1
        sync(device)
        forward = runs * batch_size / (time.perf_counter() - start)
    figures = {
        "embed_images": len(paths),
        "embed_images_per_s": statistics.median(rates),
        "embed_forward_images_per_s": forward,
    }
    print(f"embedding {len(paths)} images of {folder} ({model.name}, batch {batch_size}, {workers} decoding "
          f"workers): {', '.join(f'{r:,.0f}' for r in rates)} images/s (median {figures['embed_images_per_s']:,.0f}); "
          f"forward alone {forward:,.0f} images/s")
    return {**figures, "embed_runs_images_per_s": rates, "embed_workers": workers, "embed_model": model.name}


# ---------------------------------------------------------------------------------- report


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def number(value: float | None, unit: str = "") -> str:
    return "–" if value is None else f"{value:,.0f}{unit}"


def targets(figures: dict[str, Any], on_cuda: bool) -> list[dict[str, Any]]:
    """One row per target: what was measured, the target, and whether it is met (None: not measured)."""
    f = figures.get

    def check(value: Any, test: Any) -> bool | None:
        return None if value is None else bool(test(value))

    tests_ran = f("gpu_tests_returncode") is not None
    tests_text = "–" if not tests_ran else (
        f"{f('gpu_tests_passed')} passed, {f('gpu_tests_failed')} failed, {f('gpu_tests_errors')} errors, "
        f"{f('gpu_tests_skipped')} skipped")
    tests_met = None if not tests_ran else (
        f("gpu_tests_returncode") == 0 and f("gpu_tests_failed") == 0 and f("gpu_tests_errors") == 0
        and (f("gpu_tests_skipped") == 0 or not on_cuda))
    fraction = f("dim_fraction_of_ceiling")
    dim_speed = "–" if fraction is None else (
        f"{percent(fraction)} ({number(f('dim_images_per_s'))} images/s x {f('dim_gflop_per_image'):.2f} GFLOP)")
    it_per_s = f("infogan_it_per_s")
    seconds_5000 = None if it_per_s is None else 5000 / it_per_s
    infogan_time = "–" if it_per_s is None else (
        f"{seconds_5000:.0f} s for 5,000 ({it_per_s:.1f} it/s; {f('infogan_iterations')} run in {f('infogan_seconds'):.1f} s)")
    return [
        {"figure": "GPU tests (pytest -m gpu)", "measured": tests_text,
         "target": "all pass, none skipped", "met": tests_met},
        {"figure": "matmul ceiling (bf16 8192^3 on CUDA)", "measured": number(f("ceiling_tflops"), " TFLOP/s")
         if f("ceiling_tflops") is None or f("ceiling_tflops") >= 10 else f"{f('ceiling_tflops'):.2f} TFLOP/s",
         "target": "– (KINDS.md: 769-798 TFLOP/s)", "met": None},
        {"figure": "DIM kNN top-1 after 5 min", "measured": percent(f("dim_knn_top1")),
         "target": ">= 80 %", "met": check(f("dim_knn_top1"), lambda v: v >= 0.80)},
        {"figure": "DIM step, share of the ceiling", "measured": dim_speed,
         "target": ">= 40 %", "met": check(fraction, lambda v: v >= 0.40)},
        {"figure": "InfoGAN 5,000 iterations, batch 128", "measured": infogan_time,
         "target": "< 120 s", "met": check(seconds_5000, lambda v: v < 120)},
        {"figure": "InfoGAN c1 accuracy (MNIST test)", "measured": percent(f("infogan_c1_accuracy")),
         "target": ">= 97 % (CPU, 5 seeds: 97.56-98.64 %)", "met": check(f("infogan_c1_accuracy"), lambda v: v >= 0.97)},
        {"figure": "embedding CIFAR-10 test (decode + forward)",
         "measured": number(f("embed_images_per_s"), " images/s"),
         "target": ">= 20,000 images/s", "met": check(f("embed_images_per_s"), lambda v: v >= 20_000)},
    ]


def table(rows: list[dict[str, Any]], tiny: bool) -> str:
    mark = {True: "met", False: "MISSED", None: "–"}
    lines = ["| figure | measured | target | met |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['figure']} | {r['measured']} | {r['target']} | {mark[r['met']]} |" for r in rows]
    if tiny:
        lines.append("(--tiny: generated shapes, a few steps on this machine; no figure is comparable with its target)")
    return "\n".join(lines)


def write_summary(out: Path, summary: dict[str, Any], header: str) -> None:
    on_cuda = summary["environment"]["device"].startswith("cuda")
    summary["targets"] = targets(summary["figures"], on_cuda)
    (out / "gpu_check.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "gpu_check.txt").write_text(header + "\n\n" + table(summary["targets"], summary["tiny"]) + "\n")


# ---------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_dir_argument(parser, "holds MNIST (torchvision layout, .gz allowed) and cifar10/ (image-folder tree)")
    parser.add_argument("--out", required=True, help="where gpu_check.json, gpu_check.txt and pytest_gpu.txt go")
    parser.add_argument("--part", action="append", choices=[*PARTS, "all"],
                        help="what to run (repeatable; default all)")
    parser.add_argument("--tiny", action="store_true", help="toy sizes on generated shapes (the CPU test)")
    parser.add_argument("--runs-dir", default=None, help="run directories (default: a temporary folder)")
    parser.add_argument("--dim-minutes", type=float, default=None, help="DIM training time (default 5; tiny 0.2)")
    parser.add_argument("--dim-arch", default=None, choices=["dcgan", "resnet18"], help="default: the recipe's")
    parser.add_argument("--dim-batch-size", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--dim-lr", type=float, default=None, help="default: the recipe's")
    parser.add_argument("--no-compile", action="store_true", help="train DIM without torch.compile")
    parser.add_argument("--infogan-iterations", type=int, default=None, help="default 5000 (tiny 8)")
    parser.add_argument("--infogan-batch-size", type=int, default=None, help="default 128 (tiny 16)")
    parser.add_argument("--embed-batch-size", type=int, default=None, help="default 256, as dim-search build (tiny 32)")
    args = parser.parse_args(argv)
    tiny = args.tiny
    args.dim_minutes = args.dim_minutes if args.dim_minutes is not None else (0.2 if tiny else 5.0)
    args.infogan_iterations = args.infogan_iterations or (8 if tiny else 5000)
    args.infogan_batch_size = args.infogan_batch_size or (16 if tiny else 128)
    args.embed_batch_size = args.embed_batch_size or (32 if tiny else 256)
    parts = args.part or ["all"]
    args.parts = [p for p in PARTS if p in parts or "all" in parts]
    if not tiny and {"dim", "infogan-embed"} & set(args.parts):
        args.data_dir = require_data_dir(args.data_dir)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = Path(args.runs_dir) if args.runs_dir else Path(tempfile.mkdtemp(prefix="gpu_check_"))
    runs.mkdir(parents=True, exist_ok=True)
    try:
        return check(args, out, runs)
    finally:
        if not args.runs_dir:
            shutil.rmtree(runs, ignore_errors=True)


def check(args: argparse.Namespace, out: Path, runs: Path) -> int:
    """Run the chosen parts with run directories under ``runs``; returns the exit status (1 if a part failed)."""
    os.environ.setdefault("DIM_CACHE_DIR", str(runs / "cache"))  # decoded datasets, not in the home folder
    data = {"root": Path(args.data_dir)} if args.data_dir else {}
    if args.tiny:
        data["tiny"] = write_tiny_dataset(runs / "tiny-shapes")
    device = select_device("auto")

    env = environment(device)
    header_lines = [f"GPU check, parts {', '.join(args.parts)}{' (--tiny)' if args.tiny else ''}",
                    *(f"  {key}: {value}" for key, value in env.items())]
    print("\n".join(header_lines), flush=True)
    ceiling = measure_ceiling(device, args.tiny)
    header_lines.append(f"  matmul {ceiling['matmul_size']}^3: bf16 {ceiling['bf16_matmul_tflops']:.2f} TFLOP/s, "
                        f"fp32 {ceiling['fp32_matmul_tflops']:.2f} TFLOP/s; the ceiling is {ceiling['ceiling_dtype']}'s")
    print(header_lines[-1], flush=True)
    header = "\n".join(header_lines)

    summary: dict[str, Any] = {
        "tiny": args.tiny, "parts": args.parts, "environment": env,
        "settings": {key: value for key, value in vars(args).items() if key != "part"},
        "figures": {**dict.fromkeys(FIGURES), **{k: v for k, v in ceiling.items() if k in FIGURES}},
        "ceiling": ceiling, "errors": {},
    }
    summary["settings"]["runs_dir"] = str(runs)
    steps = {"env-tests": [("gpu-tests", lambda: run_gpu_tests(out))],
             "dim": [("dim", lambda: run_dim(args, data, runs, ceiling["ceiling_tflops"]))],
             "infogan-embed": [("infogan", lambda: run_infogan(args, data, runs)),
                               ("embedding", lambda: run_embedding(args, data, device))]}
    write_summary(out, summary, header)
    for part in args.parts:
        for name, step in steps[part]:
            print(f"\n== {name} ==", flush=True)
            start = time.perf_counter()
            try:
                values = step()
            except Exception as error:  # noqa: BLE001 -- recorded with its traceback; the other parts go on
                summary["errors"][name] = traceback.format_exc()[-4000:]
                print(f"{name} failed: {type(error).__name__}: {error}", flush=True)
                values = {}
            for key, value in values.items():  # figures, and details such as the DIM recipe beside them
                if key in FIGURES:
                    summary["figures"][key] = value
                else:
                    summary[key] = value
            summary.setdefault("seconds", {})[name] = round(time.perf_counter() - start, 1)
            write_summary(out, summary, header)
    print("\n" + table(summary["targets"], args.tiny))
    if summary["errors"]:
        print(f"\nerrors in: {', '.join(summary['errors'])} (tracebacks in {out / 'gpu_check.json'})")
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
