"""Triton gather-sum: ``csr @ table`` for a CSR weight and a dense feature-major table [n_in, tokens].

The same product as :func:`sparse_lens.model.sparse_linear.gather_sum` (which the forward uses as
Wᵀ @ xᵀ and the activation gradient as W @ gradᵀ): one program per (output row, block of tokens)
walks that row's nonzeros and accumulates ``value · table[col, tokens]`` in fp32. Each load is upcast
to fp32 right away (bf16 arithmetic is wrong in the interpreter otherwise). No autotuning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import triton
import triton.language as tl
from jaxtyping import Float
from torch import Tensor

if TYPE_CHECKING:  # the kernels package sits below the model: no runtime import of it
    from sparse_lens.model.sparse_linear import CSR

BLOCK_TOKENS = 128


@triton.jit
def _gather_sum_kernel(crow_ptr, cols_ptr, vals_ptr, table_ptr, out_ptr, n_tokens, stride_table, stride_out,
                       BLOCK_T: tl.constexpr):
    row = tl.program_id(0)
    offs = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
    in_range = offs < n_tokens
    start = tl.load(crow_ptr + row)
    end = tl.load(crow_ptr + row + 1)
    acc = tl.zeros([BLOCK_T], dtype=tl.float32)
    for k in range(start, end):
        col = tl.load(cols_ptr + k)
        value = tl.load(vals_ptr + k).to(tl.float32)
        x = tl.load(table_ptr + col * stride_table + offs, mask=in_range, other=0.0).to(tl.float32)
        acc += value * x
    tl.store(out_ptr + row * stride_out + offs, acc.to(out_ptr.dtype.element_ty), mask=in_range)


def triton_gather_sum(table: Float[Tensor, "n_in tokens"], csr: "CSR") -> Float[Tensor, "n_out tokens"]:
    """Row r of the result is Σ values[k] · table[cols[k]] over row r's nonzeros (zero if none)."""
    if table.shape[0] != csr.shape[1]:
        raise ValueError(f"table: expected {csr.shape[1]} rows, got {table.shape[0]}")
    table = table.contiguous()
    n_tokens = table.shape[1]
    out = torch.empty(csr.shape[0], n_tokens, dtype=table.dtype, device=table.device)
    if n_tokens == 0 or csr.shape[0] == 0:
        return out.zero_()
    block = min(BLOCK_TOKENS, triton.next_power_of_2(n_tokens))
    grid = (csr.shape[0], triton.cdiv(n_tokens, block))
    _gather_sum_kernel[grid](csr.crow, csr.cols, csr.values, table, out, n_tokens, table.stride(0), out.stride(0),
                             BLOCK_T=block)
    return out
