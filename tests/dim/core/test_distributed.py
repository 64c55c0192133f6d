"""DDP on CPU: two gloo processes, negatives gathered across ranks, gradients to the local shard."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dim.config import TrainConfig
from dim.mi.gather import all_gather_with_local_grad
from dim.train import train

WORLD_SIZE = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, port: int, out: str, results: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD_SIZE), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    # The gather: rank order, and the gradient lands on the local shard only, times the world size.
    shard = torch.full((2, 3), float(rank), requires_grad=True)
    gathered = all_gather_with_local_grad(shard)  # (4, 3)
    weights = torch.arange(12.0).view(4, 3)
    (gathered * weights).sum().backward()
    gather_ok = torch.equal(gathered.detach()[:, 0], torch.tensor([0.0, 0.0, 1.0, 1.0])) and torch.equal(
        shard.grad, weights[2 * rank : 2 * rank + 2] * WORLD_SIZE
    )
    # A short DDP training run: train() joins the existing process group.
    config = TrainConfig(dataset="shapes", batch_size=8, critic_hidden=16, z_dim=16, max_steps=2, knn=False,
                         device="cpu", out=out)
    result = train(config, progress=False)
    torch.save({"gather_ok": gather_ok, "step": result.step}, os.path.join(results, f"{rank}.pt"))


def test_ddp_two_processes_on_cpu(tmp_path):
    out, results = tmp_path / "run", tmp_path / "results"
    results.mkdir()
    mp.spawn(_worker, args=(_free_port(), str(out), str(results)), nprocs=WORLD_SIZE, join=True)
    outcomes = [torch.load(results / f"{rank}.pt", weights_only=True) for rank in range(WORLD_SIZE)]
    assert all(outcome["gather_ok"] for outcome in outcomes)
    assert [outcome["step"] for outcome in outcomes] == [2, 2]
    assert (out / "metrics.csv").is_file()
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)  # written by rank 0 alone
    assert checkpoint["step"] == 2 and len(checkpoint["rng"]) == WORLD_SIZE  # every rank's RNG, for resume
    assert all(torch.isfinite(tensor).all() for tensor in checkpoint["model"].values() if tensor.is_floating_point())
