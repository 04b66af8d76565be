"""Multi-process / multi-node data parallelism with ``torch.distributed`` (DDP).

Launch with torchrun, e.g. ``torchrun --nproc_per_node 2 -m sparse_lens.cli train CONFIG.yaml`` (one
node) or with ``--nnodes N --node_rank R --rdzv_endpoint HOST:PORT`` across nodes. The backend is gloo
on CPU and NCCL on GPU (each process takes ``cuda:LOCAL_RANK``). Without torchrun's environment
(``WORLD_SIZE`` unset or 1) everything runs in-process with no process group.

Each of W processes computes the gradient of its 1/W of the global batch; DDP averages gradients
(all-reduce), optionally in float64 (``grad_reduce_dtype``). Everything after that — gradient
normalization, Adam, the top-k projection, weight decay — runs identically on every rank, so weights
stay bit-identical across ranks without further communication. One small all-reduce per step carries
the loss and the stop flags (Ctrl-C, non-finite loss), so all ranks stop at the same step. Only rank 0
writes checkpoints, metrics and the progress bar.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: str = "auto") -> DistContext:
    """Initialise the process group from torchrun's environment (if any) and pick the device."""
    world = env_world_size()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' requested but CUDA is not available")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    ctx = DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
        ctx.initialized_here = True
    elif dist.is_initialized():
        ctx.rank, ctx.world_size = dist.get_rank(), dist.get_world_size()
    return ctx


def teardown(ctx: DistContext) -> None:
    if ctx.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(model: nn.Module, ctx: DistContext, reduce_dtype: str = "float32") -> nn.Module:
    """DistributedDataParallel around ``model`` (identity for one process)."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ddp = DDP(
        model,
        device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None,
        broadcast_buffers=False,
    )
    if reduce_dtype == "float64":
        ddp.register_comm_hook(state=None, hook=_float64_allreduce_hook)
    return ddp


def _float64_allreduce_hook(state, bucket):
    """Average a gradient bucket in float64: each rank's g/W is exact, the sum is rounded once."""
    buffer = bucket.buffer()
    wide = buffer.to(torch.float64).div_(dist.get_world_size())
    future = dist.all_reduce(wide, async_op=True).get_future()

    def finish(fut):
        buffer.copy_(fut.value()[0])
        return buffer

    return future.then(finish)


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()

