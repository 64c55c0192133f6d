"""All-gather along the batch with the gradient routed back to the local shard (for DDP).

With data parallelism each process encodes its own shard of the global batch;
gathering the codes and feature maps of every process lets the negative
samplers draw negatives from the whole global batch (Hjelm et al., ICLR 2019,
use in-batch negatives; more processes then mean more negatives).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


class _AllGatherLocalGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:  # (B, ...) -> (W * B, ...)
        world_size, rank = dist.get_world_size(), dist.get_rank()
        ctx.world_size, ctx.rank, ctx.batch = world_size, rank, tensor.shape[0]
        shards = [torch.empty_like(tensor) for _ in range(world_size)]
        dist.all_gather(shards, tensor.contiguous())
        return torch.cat(shards, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # (W * B, ...) -> (B, ...)
        start = ctx.rank * ctx.batch
        return grad[start : start + ctx.batch] * ctx.world_size


def all_gather_with_local_grad(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` from every process, in rank order; backpropagate into the local part only.

    Every process computes the same loss on the gathered global batch, so the
    gradient of the loss with respect to shard r is computed (in full) by
    process r alone. DistributedDataParallel averages gradients over the W
    processes, so the local shard's gradient is multiplied by W here: the
    averaged update then equals single-process training on the global batch
    (up to the negatives, which each process draws at random on its own).
    No communication happens in the backward pass.

    Shapes: ``(B, ...)`` on each process -> ``(W * B, ...)``; B must be the
    same on every process.

    Raises:
        RuntimeError: if ``torch.distributed`` is not initialised.
    """
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("all_gather_with_local_grad needs an initialised torch.distributed process group")
    return _AllGatherLocalGrad.apply(tensor)
