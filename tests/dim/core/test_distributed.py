"""DDP on CPU with two gloo processes: negatives come from the global batch, and every rank ends with the same weights.

Each rank writes what it saw to a file; the test process compares. The references are a single process
computing the same loss on the concatenated global batch. A slow test runs `dim train` under two torchrun
agents that meet as two nodes on loopback, as on a cluster.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image

from dim.config import TrainConfig
from dim.core.distributed import DistributedContext, init_distributed
from dim.mi.gather import all_gather_with_local_grad
from dim.models import Encoder
from dim.objective import DeepInfoMax, build_objective
from dim.train import Trainer

WORLD_SIZE = 2
LOCAL_BATCH = 3  # images per rank in the gradient check: 6 in the global batch


def _digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def _objective(gather) -> DeepInfoMax:
    """The same small DIM objective on every call (seeded): in-batch negatives, so nothing is drawn at random."""
    torch.manual_seed(0)
    encoder = Encoder("dcgan", channels=3, image_size=16, z_dim=8, stochastic=False)
    config = TrainConfig(bound="infonce", negatives="all", critic="separable", prior="none", critic_hidden=16,
                         alpha=0.5, beta=1.5)  # both terms, so both critics' negatives are checked
    model = build_objective(encoder, config.resolved(), gather)
    return model.eval()  # BatchNorm on running statistics: each image's encoding is independent of the others


def _gradient_check(rank: int) -> dict:
    """The loss and the averaged gradient of each rank, against one process on the global batch."""
    images = torch.randn(WORLD_SIZE * LOCAL_BATCH, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    model = _objective(all_gather_with_local_grad)
    columns = []
    for critic in (model.global_mi.critic, model.local_mi.critic):
        critic.register_forward_hook(lambda module, inputs, scores: columns.append(tuple(scores.shape)))
    local = images[rank * LOCAL_BATCH : (rank + 1) * LOCAL_BATCH]
    loss = model.loss(model(local))
    loss.backward()
    for parameter in model.parameters():  # what DistributedDataParallel does with the gradients
        dist.all_reduce(parameter.grad)  # every parameter takes part in the loss: none has grad None
        parameter.grad.div_(WORLD_SIZE)

    reference = _objective(None)
    reference_loss = reference.loss(reference(images))
    reference_loss.backward()
    alone = _objective(None)  # the local shard without the other rank's negatives
    alone_loss = alone.loss(alone(local))
    differences = {
        name: (parameter.grad - reference.get_parameter(name).grad).abs().max().item()
        for name, parameter in model.named_parameters()
    }
    scale = max(reference.get_parameter(name).grad.abs().max().item() for name in differences)
    return {"scores_shapes": columns, "loss": loss.item(), "reference_loss": reference_loss.item(),
            "alone_loss": alone_loss.item(), "grad_differences": differences, "grad_scale": scale}


def _worker(rank: int, store: str, data: str, out: str, results: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    # A file store: no port to pick, so no other process can take it between picking and binding.
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD_SIZE)
    outcome: dict = {}
    context = init_distributed(torch.device("cpu"))  # joins the existing group
    outcome["context"] = (context.rank, context.world_size, context.enabled, context.is_main)
    outcome["gathered_objects"] = context.gather(f"rank {rank}")
    outcome["broadcast"] = context.broadcast(f"from rank {rank}")

    # The gather: rank order, and the gradient lands on the local shard only, times the world size.
    shard = torch.full((2, 3), float(rank), requires_grad=True)
    gathered = all_gather_with_local_grad(shard)  # (4, 3)
    weights = torch.arange(12.0).view(4, 3)
    (gathered * weights).sum().backward()
    outcome["gathered"] = gathered.detach()
    outcome["shard_grad"] = shard.grad

    outcome.update(_gradient_check(rank))

    # Two steps of DDP training on different shards; Trainer joins the existing process group.
    config = TrainConfig(dataset=data, batch_size=4, critic_hidden=16, z_dim=8, max_steps=2, knn=False,
                         device="cpu", out=out, log_every=1)
    trainer = Trainer(config, progress=False)
    before = {name: _digest(p) for name, p in trainer.model.named_parameters()}
    try:
        outcome["step"] = trainer.run().step
        outcome["parameters"] = {name: _digest(p) for name, p in trainer.model.named_parameters()}
    finally:
        trainer.close()
    outcome["changed"] = sorted(name for name in before if before[name] != outcome["parameters"][name])
    torch.save(outcome, os.path.join(results, f"{rank}.pt"))


def _write_images(folder: Path, count: int) -> None:
    """``count`` random 16x16 RGB images in one flat folder: an unlabelled dataset, so no kNN evaluation."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")


def test_ddp_two_processes_on_cpu(tmp_path):
    data, out, results = tmp_path / "images", tmp_path / "run", tmp_path / "results"
    _write_images(data, 40)  # ~36 in the train split: two global batches of 2 x 4
    results.mkdir()
    mp.spawn(_worker, args=(str(tmp_path / "store"), str(data), str(out), str(results)), nprocs=WORLD_SIZE, join=True)
    outcomes = [torch.load(results / f"{rank}.pt", weights_only=True) for rank in range(WORLD_SIZE)]

    for rank, outcome in enumerate(outcomes):
        assert outcome["context"] == (rank, WORLD_SIZE, True, rank == 0)
        assert outcome["gathered_objects"] == ["rank 0", "rank 1"] and outcome["broadcast"] == "from rank 0"
        assert torch.equal(outcome["gathered"][:, 0], torch.tensor([0.0, 0.0, 1.0, 1.0]))
        assert torch.equal(outcome["shard_grad"], torch.arange(12.0).view(4, 3)[2 * rank : 2 * rank + 2] * WORLD_SIZE)

        # Negatives from the global batch: every critic scores the rank's codes against all 6 images' features...
        global_batch = WORLD_SIZE * LOCAL_BATCH
        assert [shape[:2] for shape in outcome["scores_shapes"]] == [(global_batch, global_batch)] * 2
        # ... so each rank's loss is the loss of one process on the whole batch, not of its shard alone,
        assert abs(outcome["loss"] - outcome["reference_loss"]) < 1e-5
        assert abs(outcome["alone_loss"] - outcome["reference_loss"]) > 1e-3
        # ... and the averaged gradient is that process's gradient, for the encoder and the critics alike.
        tolerance = 1e-5 * max(outcome["grad_scale"], 1.0)
        wrong = {name: diff for name, diff in outcome["grad_differences"].items() if diff > tolerance}
        assert not wrong, f"rank {rank}: gradients differ from one process on the global batch: {wrong}"
        assert any(name.startswith("encoder.") for name in outcome["grad_differences"])

        assert outcome["step"] == 2
    # Both ranks trained (the weights moved) and ended with the same weights, bit for bit.
    assert len(outcomes[0]["changed"]) > 0 and outcomes[0]["changed"] == outcomes[1]["changed"]
    first, second = outcomes[0]["parameters"], outcomes[1]["parameters"]
    differing = [name for name in first if first[name] != second[name]]
    assert not differing, f"rank 1's weights differ from rank 0's after DDP training: {differing}"

    assert (out / "metrics.csv").is_file()
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)  # written by rank 0 alone
    assert checkpoint["step"] == 2 and len(checkpoint["rng"]) == WORLD_SIZE  # every rank's RNG, for resume
    model = checkpoint["modules"]["model"] if "modules" in checkpoint else checkpoint["model"]  # format 2, format 1
    saved = {name: _digest(tensor) for name, tensor in model.items()}
    assert all(saved[name] == digest for name, digest in outcomes[0]["parameters"].items())


def test_a_world_of_one_communicates_nothing(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    context = init_distributed(torch.device("cpu"))
    assert context == DistributedContext() and not context.enabled and context.is_main
    assert not dist.is_initialized()
    assert context.gather("x") == ["x"] and context.broadcast("y") == "y"
    context.barrier()  # a no-op: no process group


def test_the_gather_needs_a_process_group():
    with pytest.raises(RuntimeError, match="initialised torch.distributed process group"):
        all_gather_with_local_grad(torch.zeros(2, 3))


def _free_port() -> int:
    """A TCP port that was free a moment ago: bound to port 0, the socket closed again (another process may take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _two_nodes(data: Path, outs: list[Path], port: int, timeout: float) -> list[subprocess.CompletedProcess]:
    """``torchrun`` twice, as two nodes of one process each meeting at a c10d rendezvous on loopback."""
    nodes = []
    for node_rank, out in enumerate(outs):
        command = [
            sys.executable, "-m", "torch.distributed.run",  # the torchrun command
            "--nnodes", "2", "--nproc_per_node", "1", "--node-rank", str(node_rank),
            "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--local-addr", "127.0.0.1",
            "-m", "dim", "train", str(data), "--out", str(out),
            "--max-steps", "2", "--no-knn", "--batch-size", "4", "--threads", "1", "--device", "cpu",
        ]
        nodes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    finished = []
    for node in nodes:
        try:
            output, _ = node.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other in nodes:
                other.kill()
            raise
        finished.append(subprocess.CompletedProcess(node.args, node.returncode, output))
    return finished


@pytest.mark.slow  # about 30 s on two cores: two torchrun agents, each starting a training process
def test_training_across_two_nodes_with_torchrun(tmp_path):
    data = tmp_path / "images"
    _write_images(data, 40)
    outs = [tmp_path / "node0", tmp_path / "node1"]  # each node's own disk, as on a cluster
    for attempt in range(2):  # the port may be taken between picking and binding: try a second one
        nodes = _two_nodes(data, outs, _free_port(), timeout=600)  # generous: only a hang should reach it
        in_use = any("address already in use" in node.stdout.lower() for node in nodes)
        if not (in_use and attempt == 0):
            break
    for node in nodes:
        assert node.returncode == 0, node.stdout[-3000:]
    # The rendezvous, not --node-rank, decides which node holds rank 0; that one alone writes the checkpoint.
    written = [out for out in outs if (out / "checkpoint.pt").is_file()]
    assert len(written) == 1, f"checkpoints in {written}"
    checkpoint = torch.load(written[0] / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 2 and len(checkpoint["rng"]) == WORLD_SIZE  # both processes' RNG states
