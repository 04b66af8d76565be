"""AbsTopK activation sparsity (paper Sec. 1.7): keep the k entries of largest |x|, zero the rest."""

from __future__ import annotations

from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor, nn


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
    magnitude = x.abs()
    threshold = magnitude.topk(k, dim=-1, sorted=False).values.amin(dim=-1, keepdim=True)
    return torch.where(magnitude >= threshold, x, torch.zeros((), dtype=x.dtype, device=x.device))


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
