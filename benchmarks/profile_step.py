"""Profile of the DIM training step on this CPU: where its time goes, fp32 against bf16, and OMP_WAIT_POLICY.

Usage:
    # the profile: the best preset's step at batch 128, 256 and 512, fp32 and bf16, and the wait-policy A/B,
    # with one thread (as each arm of the screen below) and with two (as the confirmation)
    python benchmarks/profile_step.py --threads 1 --batch-size 128 256 512
    python benchmarks/profile_step.py --threads 2 --batch-size 128 256 512
    # the same step through torch.compile (the first steps compile it: minutes)
    python benchmarks/profile_step.py --threads 2 --compile --policy-rounds 0
    # on CIFAR-10 itself, or another recipe
    python benchmarks/profile_step.py --threads 2 --dataset cifar10 --data-dir DATA --set local_maps=local+conv
    # a smoke test of the script
    python benchmarks/profile_step.py --threads 1 --rounds 1 --per-round 1 --profile-steps 1 --policy-rounds 1

    # what the profile informs (benchmarks/dim_cifar10.py): the 10-minute screen of every arm, one thread
    # each, two at a time, and the 30-minute confirmation of the default with two threads; prefix either
    # with OMP_WAIT_POLICY=PASSIVE where the A/B below finds it faster
    python benchmarks/dim_cifar10.py --data-dir DATA --minutes 10 --threads 1 --parallel 2
    python benchmarks/dim_cifar10.py --data-dir DATA --minutes 30 --threads 2 --arms dim

The step is ``dim train``'s own: a :class:`dim.train.Trainer` per batch size and
number format (``precision`` fp32 and bf16) on ``--dataset`` (default ``shapes``,
32x32 RGB images as CIFAR-10's, generated, so no data is needed), drawing its
batches by the trainer's indexing of the resident uint8 images in the trainer's
epoch order and running ``Trainer.train_step`` (normalise, augment, forward in
channels-last, loss, backward, Adam). The trainer always feeds channels-last
(the model and every batch); it has no switch to turn that off, so there is
nothing to A/B there. ``--compile`` trains through ``torch.compile`` (the
``compile`` setting).

Printed, in order:

1. the CPU's model name, whether torch sees AVX-512 BF16 and AMX, the threads;
2. images/s of each (batch size, format), timed in alternating rounds of
   ``--per-round`` steps after a warm-up round (so a busy machine slows every
   arm alike), the median round; with the step's FLOPs per image (counted with
   ``torch.utils.flop_counter``) the GFLOP/s it reaches, as a share of the fp32
   and of the bf16 2048^3 matmul throughput measured here;
3. for each batch size, the self CPU time per step of ``--profile-steps``
   profiled steps (``torch.profiler``) by group, fp32 and bf16 side by side:
   data indexing, augmentation, encoder convolutions (``local`` and ``top``),
   encoder fc and code head, critics (with the negatives' pairing), bounds,
   adversarial prior, optimizer (``Optimizer.step`` and ``zero_grad``), each
   forward pass and backward pass apart, and what falls in none (``other``:
   the views' concatenation, the prior's KL, the loss sum, the statistics);
   then the top ``--top`` operators by self CPU time with their group.
   Forward work is grouped by ``torch.profiler.record_function`` scopes put
   around the modules' forward passes (hooks) and around ``dim.train``'s
   augmentation (for the profiled steps only); each backward node is charged
   to the group of the forward operator that made it (the autograd sequence
   number). Under ``--compile`` the compiled graph is one group;
4. the OMP_WAIT_POLICY A/B: this script again, in fresh processes with
   ``OMP_WAIT_POLICY`` unset and ``PASSIVE`` in turn (the variable is read when
   the OpenMP runtime starts, so it takes a process each), ``--policy-rounds``
   alternating rounds, timing the training format (``precision`` as resolved
   for training: fp32 on a CPU under ``auto``) at the first batch size; the
   median images/s of each. torch and faiss each bring an OpenMP runtime, whose
   idle threads spin (``ACTIVE``) or sleep (``PASSIVE``).

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from data_root import (
    add_data_dir_argument,  # the benchmarks' --data-dir / $DIM_DATA_DIR
)
from dim_cifar10 import matmul_flops_per_s, parse_setting, training_flops_per_image
from precision import FORMATS, alternate, cpu_name
from torch import Tensor, nn
from torch.autograd.profiler_util import FunctionEvent
from torch.profiler import ProfilerActivity, profile, record_function

import dim.train
from dim.config import PRESETS, TrainConfig
from dim.core.device import uses_bf16
from dim.train import Trainer, epoch_order

# The groups of the profile, in the order printed; module groups are split into their forward and backward passes.
DATA_INDEXING = "data indexing"
AUGMENTATION = "augmentation"
ENCODER_CONV = "encoder conv"
ENCODER_FC = "encoder fc + code"
CRITICS = "critics"
BOUNDS = "bounds"
PRIOR = "adversarial prior"
COMPILED = "compiled graph"
OTHER = "other"
OPTIMIZER = "optimizer"
PASS_GROUPS = (ENCODER_CONV, ENCODER_FC, CRITICS, BOUNDS, PRIOR, COMPILED, OTHER)  # each with fwd and bwd
GROUPS = (DATA_INDEXING, AUGMENTATION, *(f"{group} {side}" for group in PASS_GROUPS for side in ("fwd", "bwd")),
          OPTIMIZER)
BACKWARD_NODE = "autograd::engine::evaluate_function: "  # the profiler's name prefix of a backward node's evaluation
OPTIMIZER_SCOPE = "Optimizer."  # torch's own scopes: Optimizer.step#Adam.step, Optimizer.zero_grad#Adam.zero_grad
COMPILED_SCOPE = "CompiledFunction"  # torch.compile's autograd function (its backward: CompiledFunctionBackward)
WAIT_POLICIES = ("unset", "PASSIVE")


class StepRunner:
    """One :class:`dim.train.Trainer`'s training steps, each on its next batch, epoch after epoch.

    A call is one step: the trainer's indexing of its resident images (in a
    ``data indexing`` scope) and ``Trainer.train_step``.
    """

    def __init__(self, config: TrainConfig) -> None:
        self.trainer = Trainer(config, progress=False)
        self.batches = self._batches()

    def _batches(self) -> Iterator[Tensor]:
        trainer, epoch = self.trainer, 0
        while True:
            order = epoch_order(len(trainer.train_set), trainer.config.seed, epoch)
            yield from trainer.batches(order, trainer.steps_per_epoch)  # uint8 (B, C, H, W)
            epoch += 1

    def __call__(self) -> None:
        with record_function(DATA_INDEXING):
            batch = next(self.batches)
        self.trainer.train_step(batch)

    def close(self) -> None:
        self.trainer.close()


def scoped(function: Callable, name: str) -> Callable:
    """``function`` run inside a ``record_function(name)`` scope."""
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with record_function(name):
            return function(*args, **kwargs)

    return wrapper


def scope_forward(module: nn.Module, name: str) -> list[torch.utils.hooks.RemovableHandle]:
    """Hooks that run every forward pass of ``module`` inside a ``record_function(name)`` scope."""
    open_scopes: list[record_function] = []

    def enter(module: nn.Module, inputs: Any) -> None:
        scope = record_function(name)
        scope.__enter__()
        open_scopes.append(scope)

    def leave(module: nn.Module, inputs: Any, output: Any) -> None:
        open_scopes.pop().__exit__(None, None, None)

    return [module.register_forward_pre_hook(enter), module.register_forward_hook(leave, always_call=True)]


def scoped_modules(trainer: Trainer) -> list[tuple[nn.Module, str]]:
    """The trainer's modules and the group of their forward passes (an inner module's group wins)."""
    model, encoder = trainer.model, trainer.model.encoder
    modules = [(encoder.local, ENCODER_CONV), (encoder.top, ENCODER_CONV), (encoder.fc, ENCODER_FC),
               (encoder.head, ENCODER_FC)]
    for term in (model.global_mi, model.local_mi, model.conv_local_mi):
        if term is not None:  # a dim.mi.MIEstimator: critic and negatives, then its bound
            modules.append((term, CRITICS))
            if isinstance(getattr(term, "bound", None), nn.Module):
                modules.append((term.bound, BOUNDS))
    if trainer.adversary is not None:
        modules.append((trainer.adversary, PRIOR))
    return modules


@contextmanager
def group_scopes(trainer: Trainer) -> Iterator[None]:
    """Scopes for the profiler around the step's parts (modules only without torch.compile)."""
    with ExitStack() as stack:
        for name in ("augment", "normalize_images"):
            stack.enter_context(mock.patch.object(dim.train, name, scoped(getattr(dim.train, name), AUGMENTATION)))
        handles = []
        if not trainer.config.compile:  # a compiled graph cannot open a scope in one hook and close it in another
            for module, group in scoped_modules(trainer):
                handles += scope_forward(module, group)
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


def enclosing(event: FunctionEvent) -> tuple[str | None, FunctionEvent | None]:
    """(the innermost group scope around ``event``, the backward node evaluation around it), each or ``None``."""
    scopes = (DATA_INDEXING, AUGMENTATION, *PASS_GROUPS)
    scope = node = None
    parent = event
    while parent is not None:
        name = parent.name
        if node is None and name.startswith(BACKWARD_NODE):
            node = parent
        if scope is None:
            if name in scopes:
                scope = name
            elif name.startswith(OPTIMIZER_SCOPE):
                scope = OPTIMIZER
            elif name.startswith(COMPILED_SCOPE):
                scope = COMPILED
        parent = parent.cpu_parent
    return scope, node


def self_time_by_group(events: list[FunctionEvent]) -> dict[tuple[str, str], float]:
    """Self CPU microseconds of the profiled events by (group, operator name); groups as in :data:`GROUPS`.

    A forward operator belongs to its innermost scope; a backward node's
    operators to the forward group of the operator that made the node, found by
    the autograd sequence number (the last forward operator recorded with it:
    the one that created the node, as operators record the number the next node will take).
    """
    placed = [(event, *enclosing(event)) for event in events]
    forward_group: dict[int, str | None] = {}
    for event, scope, node in sorted(placed, key=lambda item: item[0].time_range.start):
        if node is None and event.sequence_nr >= 0:
            forward_group[event.sequence_nr] = scope
    times: dict[tuple[str, str], float] = defaultdict(float)
    for event, scope, node in placed:
        if node is not None:
            group = f"{forward_group.get(node.sequence_nr) or OTHER} bwd"
        elif scope in PASS_GROUPS or scope is None:
            group = f"{scope or OTHER} fwd"
        else:
            group = scope
        times[group, event.name] += event.self_cpu_time_total
    return times


def profile_runner(runner: StepRunner, steps: int) -> dict[tuple[str, str], float]:
    """Self CPU milliseconds per step by (group, operator) over ``steps`` profiled steps."""
    with group_scopes(runner.trainer):
        runner()  # a step under the scopes before the profile
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            for _ in range(steps):
                runner()
    return {key: micros / 1000 / steps for key, micros in self_time_by_group(profiler.events()).items()}


def step_config(args: argparse.Namespace, batch_size: int, precision: str, out: Path) -> TrainConfig:
    return TrainConfig(dataset=args.dataset, data_dir=args.data_dir, out=str(out), preset=args.preset,
                       batch_size=batch_size, precision=precision, compile=args.compile, threads=args.threads,
                       knn=False, device="cpu", **dict(args.set)).resolved()


def training_format(args: argparse.Namespace) -> str:
    """The number format ``dim train`` trains in on this CPU under the chosen ``precision``."""
    precision = dict(args.set).get("precision", TrainConfig.precision)
    return "bf16" if uses_bf16(torch.device("cpu"), precision) else "fp32"


def measure(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """images/s of the training format at the first batch size, the median of alternating rounds (one process)."""
    batch_size, name = args.batch_size[0], training_format(args)
    runner = StepRunner(step_config(args, batch_size, name, scratch / "run"))
    try:
        seconds = alternate({name: runner}, args.rounds, args.per_round)[name]
    finally:
        runner.close()
    return {"format": name, "batch_size": batch_size, "images_per_s": batch_size / seconds,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset")}


def wait_policy_ab(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`measure` in fresh processes with OMP_WAIT_POLICY unset and PASSIVE in turn; each one's median."""
    runs: dict[str, list[float]] = {policy: [] for policy in WAIT_POLICIES}
    for _ in range(args.policy_rounds):
        for policy in WAIT_POLICIES:
            env = {name: value for name, value in os.environ.items() if name != "OMP_WAIT_POLICY"}
            if policy != "unset":
                env["OMP_WAIT_POLICY"] = policy
            done = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--measure"], check=False, env=env,
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"the OMP_WAIT_POLICY={policy} process failed:\n{done.stderr[-3000:]}")
            runs[policy].append(json.loads(done.stdout.strip().splitlines()[-1])["images_per_s"])
    return {"format": training_format(args), "batch_size": args.batch_size[0], "rounds": args.policy_rounds,
            "images_per_s": {policy: statistics.median(values) for policy, values in runs.items()},
            "runs": runs}


def print_groups(batch_size: int, profiles: dict[str, dict[tuple[str, str], float]], top: int) -> None:
    """The group table and the top operators of one batch size, the formats side by side."""
    totals = {name: sum(times.values()) for name, times in profiles.items()}
    by_group = {name: defaultdict(float) for name in profiles}
    for name, times in profiles.items():
        for (group, _), ms in times.items():
            by_group[name][group] += ms
    print(f"\nbatch {batch_size}: self CPU time per step by group (profiled; ms and share of the profiled step)")
    print(f"{'group':<26}" + "".join(f"{name:>18}" for name in profiles))
    for group in GROUPS:
        if any(by_group[name][group] > 0 for name in profiles):
            cells = "".join(f"{by_group[name][group]:>10.2f} {100 * by_group[name][group] / totals[name]:>5.1f} %"
                            for name in profiles)
            print(f"{group:<26}{cells}")
    print(f"{'total':<26}" + "".join(f"{totals[name]:>10.2f} {100.0:>5.1f} %" for name in profiles))
    first = next(iter(profiles))
    keys = set()
    for times in profiles.values():
        keys |= set(sorted(times, key=times.get, reverse=True)[:top])
    print(f"\nbatch {batch_size}: top operators by self CPU time (ms per step)")
    print(f"{'operator':<52}{'group':<26}" + "".join(f"{name:>9}" for name in profiles))
    for key in sorted(keys, key=lambda key: profiles[first].get(key, 0.0), reverse=True):
        group, operator = key
        print(f"{operator[:51]:<52}{group:<26}" + "".join(f"{profiles[name].get(key, 0.0):>9.2f}" for name in profiles))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="shapes", help="training images (default: generated 32x32 shapes)")
    add_data_dir_argument(parser, "root of a named --dataset such as cifar10")
    parser.add_argument("--preset", default=TrainConfig.preset, choices=list(PRESETS))
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", type=parse_setting,
                        help="override a TrainConfig field, e.g. --set local_maps=local+conv")
    parser.add_argument("--batch-size", type=int, nargs="+", default=None,
                        help="one or more batch sizes, e.g. 128 256 512 (default: the preset's)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="train through torch.compile (default: the preset's choice)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per arm (after one warm-up round)")
    parser.add_argument("--per-round", type=int, default=5, help="steps per round")
    parser.add_argument("--profile-steps", type=int, default=5, help="steps profiled per arm")
    parser.add_argument("--top", type=int, default=15, help="operators listed per batch size")
    parser.add_argument("--policy-rounds", type=int, default=3,
                        help="alternating rounds of the OMP_WAIT_POLICY A/B, a process each (0: skip it)")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # a process of the A/B
    args = parser.parse_args()
    args.batch_size = args.batch_size or [PRESETS[args.preset]["batch_size"]]
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as scratch:
        if args.measure:
            print(json.dumps(measure(args, Path(scratch))))
            return
        summary: dict[str, Any] = {
            "cpu": cpu_name(), "avx512_bf16": torch.cpu._is_avx512_bf16_supported(),
            "amx": torch.cpu._is_amx_tile_supported(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
            "preset": args.preset, "settings": dict(args.set), "dataset": args.dataset,
            "compile": step_config(args, args.batch_size[0], "fp32", Path(scratch) / "probe").compile,
            "memory_format": "channels_last",
        }
        print(f"{summary['cpu']}: AVX-512 BF16 {summary['avx512_bf16']}, AMX {summary['amx']}; "
              f"{summary['threads']} threads; torch {summary['torch']}; OMP_WAIT_POLICY {summary['omp_wait_policy']}")
        print(f"preset {args.preset}{''.join(f' {name}={value}' for name, value in args.set)}, "
              f"compile {summary['compile']}, channels-last "
              f"(dim train always feeds channels-last), on {args.dataset}")
        peaks = {name: matmul_flops_per_s(dtype=dtype) for name, dtype in zip(FORMATS, (torch.float32, torch.bfloat16), strict=True)}
        summary["matmul_gflop_per_s"] = {name: peak / 1e9 for name, peak in peaks.items()}

        runners = {(batch_size, name): StepRunner(step_config(args, batch_size, name,
                                                              Path(scratch) / f"{name}-{batch_size}"))
                   for batch_size in args.batch_size for name in FORMATS}
        try:
            trainers = {batch_size: runners[batch_size, FORMATS[0]].trainer for batch_size in args.batch_size}
            flops = {batch_size: training_flops_per_image(trainer.config, trainer.train_set.channels,
                                                          trainer.train_set.image_size)
                     for batch_size, trainer in trainers.items()}
            seconds = alternate({f"{name} {batch_size}": runners[batch_size, name] for batch_size, name in runners},
                                args.rounds, args.per_round)
            print(f"\n{'batch':>5} {'format':>6} {'images/s':>9} {'MFLOP/image':>12} {'GFLOP/s':>8} "
                  f"{'of fp32 peak':>13} {'of bf16 peak':>13}   (matmul 2048^3: fp32 "
                  f"{peaks['fp32'] / 1e9:.0f}, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s)")
            summary["steps"] = []
            for batch_size, name in runners:
                images_per_s = batch_size / seconds[f"{name} {batch_size}"]
                achieved = images_per_s * flops[batch_size]
                row = {"batch_size": batch_size, "format": name, "images_per_s": images_per_s,
                       "mflop_per_image": flops[batch_size] / 1e6, "gflop_per_s": achieved / 1e9,
                       **{f"share_of_{peak}_matmul": achieved / peaks[peak] for peak in FORMATS}}
                summary["steps"].append(row)
                print(f"{batch_size:>5} {name:>6} {images_per_s:>9.0f} {row['mflop_per_image']:>12.0f} "
                      f"{row['gflop_per_s']:>8.1f} {100 * row['share_of_fp32_matmul']:>11.0f} % "
                      f"{100 * row['share_of_bf16_matmul']:>11.0f} %")

            summary["profile"] = {}
            for batch_size in args.batch_size:
                profiles = {name: profile_runner(runners[batch_size, name], args.profile_steps) for name in FORMATS}
                print_groups(batch_size, profiles, args.top)
                summary["profile"][batch_size] = {
                    name: {f"{group}|{operator}": ms for (group, operator), ms in times.items()}
                    for name, times in profiles.items()}
        finally:
            for runner in runners.values():
                runner.close()

    if args.policy_rounds:
        policy = wait_policy_ab(args)
        summary["omp_wait_policy_ab"] = policy
        speeds = policy["images_per_s"]
        print(f"\nOMP_WAIT_POLICY ({policy['format']}, batch {policy['batch_size']}, {policy['rounds']} alternating "
              f"rounds of a fresh process each, median images/s): "
              + ", ".join(f"{name} {value:.0f}" for name, value in speeds.items())
              + f"; PASSIVE / unset {speeds['PASSIVE'] / speeds['unset']:.3f}x")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
