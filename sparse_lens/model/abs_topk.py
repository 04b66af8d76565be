"""AbsTopK activation sparsity (paper Sec. 1.7): keep the k entries of largest |x|, zero the rest."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor, nn


def kth_largest_magnitude(magnitude: Float[Tensor, "... d"], k: int) -> Float[Tensor, "... 1"]:
    """Per row, the k-th largest value of ``magnitude`` (a threshold; no index tensor is built).

    On CPU float32/float64 this is numpy's introselect (``np.partition``), about 3× faster than
    ``torch.topk`` at the paper's sizes; elsewhere (GPU, half precision) it is ``topk(...).amin``.
    """
    d = magnitude.shape[-1]
    if magnitude.device.type == "cpu" and magnitude.dtype in (torch.float32, torch.float64) and magnitude.numel():
        column = np.partition(magnitude.numpy(), d - k, axis=-1)[..., d - k : d - k + 1]
        return torch.from_numpy(np.ascontiguousarray(column))
    return magnitude.topk(k, dim=-1, sorted=False).values.amin(dim=-1, keepdim=True)


class _AbsTopKFunction(torch.autograd.Function):
    """Forward: keep entries with |x| ≥ the k-th largest |x|; backward: the same mask on the gradient."""

    @staticmethod
    def forward(ctx, x: Tensor, k: int) -> Tensor:  # type: ignore[override]
        magnitude = x.detach().abs()
        keep = magnitude >= kth_largest_magnitude(magnitude, k).to(magnitude.device)
        ctx.save_for_backward(keep)
        return torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (keep,) = ctx.saved_tensors
        return torch.where(keep, grad, torch.zeros((), dtype=grad.dtype, device=grad.device)), None


def abs_topk(x: Float[Tensor, "... d"], k: int) -> Float[Tensor, "... d"]:
    """Keep, along the last dimension, the ``k`` entries with the largest absolute value.

    Kept entries keep their sign and value; all others become exactly 0. The selection is a
    threshold at the k-th largest |x|, so gradients flow to kept entries only. Entries tied with the
    k-th value are all kept (for continuous activations such ties have probability zero; a row with
    fewer than k nonzeros keeps its zeros, which changes nothing).
    """
    d = x.shape[-1]
    if k >= d:
        return x
    if k <= 0:
        return torch.zeros_like(x)
    return _AbsTopKFunction.apply(x, k)


class AbsTopK(nn.Module):
    """AbsTopK at one node location; ``frac=None`` makes it the identity.

    k = int(frac * d), truncated toward zero, exactly as in the authors' code.
    """

    def __init__(self, frac: Optional[float]):
        super().__init__()
        self.frac = frac

    def k_for(self, d: int) -> int:
        return d if self.frac is None else int(self.frac * d)

    def forward(self, x: Float[Tensor, "... d"]) -> Float[Tensor, "... d"]:
        if self.frac is None:
            return x
        return abs_topk(x, self.k_for(x.shape[-1]))

    def extra_repr(self) -> str:
        return f"frac={self.frac}"
