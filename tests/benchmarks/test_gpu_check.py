"""benchmarks/gpu_check.py at toy size on the CPU: every figure comes out with its type, as on a GPU.

The whole-script test hides faiss (a package on the path that fails to import), as it may be
missing where CUDA is: the kNN then searches with torch, and the embedding check needs only
``dim.core.embedding``, not the ``retrieval`` package's faiss-backed index.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import struct
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # about 20 s: the whole script in a subprocess (run with `python -m pytest -m slow`)
def test_tiny_run_reports_every_figure_without_faiss(tmp_path, gpu_check):
    blocker = tmp_path / "no-faiss" / "faiss"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named faiss (hidden, as on the GPU machine)')\n")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker.parent), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--part", "all", "--out", str(out), "--runs-dir", str(tmp_path / "runs")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    summary = json.loads((out / "gpu_check.json").read_text())
    assert summary["errors"] == {}
    assert summary["environment"]["faiss"] is None and summary["environment"]["device"] == "cpu"
    assert summary["parts"] == ["env-tests", "dim", "infogan-embed"]
    for name, kind in gpu_check.FIGURES.items():
        assert type(summary["figures"][name]) is kind, (name, summary["figures"][name])
    figures = summary["figures"]
    assert figures["gpu_tests_returncode"] == 0 and figures["gpu_tests_failed"] == 0
    assert figures["gpu_tests_skipped"] > 0  # no CUDA here: every GPU test skips
    assert 0.0 <= figures["dim_knn_top1"] <= 1.0 and 0.0 <= figures["infogan_c1_accuracy"] <= 1.0
    assert figures["dim_steps"] == 6 and figures["infogan_iterations"] == 8 and figures["embed_images"] == 120
    assert figures["dim_fraction_of_ceiling"] > 0 and figures["dim_compiled"] is False
    assert [row["figure"] for row in summary["targets"]][2:4] == ["DIM kNN top-1 after 5 min",
                                                                 "DIM step, share of the ceiling"]
    assert all(row["met"] in (True, False, None) for row in summary["targets"])
    text = (out / "gpu_check.txt").read_text()
    assert "| DIM kNN top-1 after 5 min |" in text and "torch:" in text
    assert "skipped" in (out / "pytest_gpu.txt").read_text()
    assert "| embedding CIFAR-10 test (decode + forward) |" in completed.stdout


def write_idx(path: Path, magic: int, shape: tuple[int, ...], data: bytes) -> None:
    """An MNIST idx file, gzipped: big-endian magic number and sizes, then the bytes."""
    with gzip.open(path, "wb") as file:
        file.write(struct.pack(">" + "I" * (1 + len(shape)), magic, *shape) + data)


def test_gzipped_mnist_is_decompressed_for_torchvision(tmp_path, gpu_check):
    from dim.core.datasets import load_dataset

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, count in (("train", 6), ("t10k", 4)):
        pixels = bytes(range(count)) * 28 * 28
        write_idx(raw / f"{split}-images-idx3-ubyte.gz", 2051, (count, 28, 28), pixels)
        write_idx(raw / f"{split}-labels-idx1-ubyte.gz", 2049, (count,), bytes(range(count)))
    gpu_check.prepare_mnist(tmp_path)
    gpu_check.prepare_mnist(tmp_path)  # a second call leaves the decompressed files as they are
    test = load_dataset("mnist", "test", tmp_path, download=False, progress=False)
    assert test.images.shape == (4, 1, 28, 28) and test.labels.tolist() == [0, 1, 2, 3]
    assert len(load_dataset("mnist", "train", tmp_path, download=False, progress=False)) == 6


def test_a_failing_compile_falls_back_to_eager_training(tmp_path, gpu_check, monkeypatch):
    args = gpu_check.parse_args(["--tiny", "--out", str(tmp_path / "out")])
    data = {"root": tmp_path, "tiny": gpu_check.write_tiny_dataset(tmp_path / "shapes", train=96, test=48)}
    make_config, train = gpu_check.dim_config, gpu_check.train_dim
    monkeypatch.setattr(gpu_check, "dim_config", lambda *a: replace(make_config(*a), compile=True, max_steps=2))
    attempts = []

    def failing_when_compiled(config):
        attempts.append(config.compile)
        if config.compile:
            raise RuntimeError("inductor: no working C compiler")
        return train(config)

    monkeypatch.setattr(gpu_check, "train_dim", failing_when_compiled)
    figures = gpu_check.run_dim(args, data, tmp_path / "runs", ceiling_tflops=1.0)
    assert attempts == [True, False]
    assert figures["dim_compiled"] is False and "no working C compiler" in figures["dim_compile_error"]
    assert figures["dim_steps"] == 2 and figures["dim_recipe"]["compile"] is False


def test_pytest_counts_reads_the_closing_line(gpu_check):
    output = "....F\n=== short test summary ===\n3 passed, 1 failed, 2 skipped, 1 error in 2.01s\n"
    assert gpu_check.pytest_counts(output) == {"passed": 3, "failed": 1, "skipped": 2, "errors": 1}
    assert gpu_check.pytest_counts("9 skipped in 4.03s") == {"passed": 0, "failed": 0, "skipped": 9, "errors": 0}
    assert torch.cuda.is_available() or gpu_check.select_device("auto").type in ("cpu", "mps")
