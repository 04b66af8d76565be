"""Triton AbsTopK selection: per row, keep the entries with |x| ≥ the k-th largest |x|.

One program per row holds the whole row (up to ``MAX_WIDTH`` entries), upcast to fp32 right after
the load; clearing the sign bit of the fp32 pattern gives an int32 ordered like |x| (NaN above inf,
as the numpy path on CPU). A bitwise radix select (31 counting passes, high bit first) finds the
k-th largest pattern τ; the kept entries are those with pattern ≥ τ, so ties with the k-th value are
all kept, exactly as :func:`sparse_lens.model.abs_topk.abs_topk`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from jaxtyping import Bool, Float
from torch import Tensor

MAX_WIDTH = 1 << 16


@triton.jit
def _abs_topk_kernel(x_ptr, out_ptr, keep_ptr, d, k, BLOCK_D: tl.constexpr):
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK_D)
    in_row = offs < d
    x = tl.load(x_ptr + row * d + offs, mask=in_row, other=0.0).to(tl.float32)
    bits = x.to(tl.int32, bitcast=True) & 0x7FFFFFFF
    bits = tl.where(in_row, bits, -1)  # padding never counts
    tau = tl.zeros([], dtype=tl.int32)
    for i in tl.static_range(31):
        candidate = tau | (1 << (30 - i))
        count = tl.sum((bits >= candidate).to(tl.int32), axis=0)
        tau = tl.where(count >= k, candidate, tau)
    keep = bits >= tau
    tl.store(out_ptr + row * d + offs, tl.where(keep, x, 0.0).to(out_ptr.dtype.element_ty), mask=in_row)
    tl.store(keep_ptr + row * d + offs, keep.to(tl.int8), mask=in_row)


def triton_abs_topk(x: Float[Tensor, "... d"], k: int) -> tuple[Float[Tensor, "... d"], Bool[Tensor, "... d"]]:
    """(x · keep, keep) along the last dimension, for 1 ≤ k < d."""
    d = x.shape[-1]
    if not 1 <= k < d:
        raise ValueError(f"k: expected 1 <= k < {d}, got {k}")
    if d > MAX_WIDTH:
        raise ValueError(f"x: rows of at most {MAX_WIDTH} entries, got {d}")
    flat = x.detach().contiguous().reshape(-1, d)
    out = torch.empty_like(flat)
    keep = torch.empty(flat.shape, dtype=torch.int8, device=flat.device)
    if flat.shape[0]:
        _abs_topk_kernel[(flat.shape[0],)](flat, out, keep, d, k, BLOCK_D=triton.next_power_of_2(d))
    return out.view(x.shape), keep.view(x.shape).bool()
