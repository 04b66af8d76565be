"""Sparse execution of frozen weight-sparse matrices: ``x @ W`` at the cost of W's nonzeros.

A weight matrix W [d_in, d_out] with few nonzeros (the paper's L0 1/16 … 1/1000) is stored once as two
CSR forms: rows of Wᵀ (what the forward reads) and rows of W (what the activation gradient reads).
The product runs over activations laid out feature-major, [d_in, tokens]: each output feature j is a
weighted sum of the input feature rows named by column j of W — exactly ``F.embedding_bag`` (mode
"sum", one bag per output feature, the nonzeros as per-sample weights), torch's optimized CPU kernel.
The result comes out feature-major too ([d_out, tokens]) and is transposed back to [tokens, d_out]
(the rest of the forward — AbsTopK, attention — wants rows). On CPU this runs over blocks of
``TOKEN_BLOCK`` tokens, so each block's activations stay in cache and its transposes are small.

Measured against CSR (`torch.sparse.mm`, MKL), COO and dense @ CSR in benchmarks/RESULTS.md
("Sparse execution"): the gather-sum was the fastest at every density measured here.

Gradients: activation gradients flow (``grad_x = grad_out @ Wᵀ``, the same kernel over W's rows);
gradients with respect to W do not: callers use the dense product when W requires grad (see
:mod:`sparse_lens.model.execution`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor


@dataclass(frozen=True)
class CSR:
    """Compressed rows of a [rows, cols] matrix: row r's nonzeros are ``values[crow[r]:crow[r+1]]``
    at columns ``cols[crow[r]:crow[r+1]]``."""

    crow: Int[Tensor, "rows_plus_1"]
    cols: Int[Tensor, "nnz"]
    values: Float[Tensor, "nnz"]
    shape: tuple[int, int]

    @classmethod
    def from_dense(cls, matrix: Float[Tensor, "rows cols"]) -> "CSR":
        matrix = matrix.detach()
        nonzero = matrix != 0
        counts = nonzero.sum(dim=1)
        # int32 indices (half the memory of int64) unless the nonzeros or columns outgrow them
        index = torch.int32 if max(int(counts.sum()), matrix.shape[1]) < 2**31 else torch.int64
        crow = torch.zeros(matrix.shape[0] + 1, dtype=index, device=matrix.device)
        torch.cumsum(counts, dim=0, out=crow[1:])
        cols = nonzero.nonzero()[:, 1].to(index).contiguous()  # row-major order, so rows stay grouped
        return cls(crow, cols, matrix[nonzero].contiguous(), (int(matrix.shape[0]), int(matrix.shape[1])))

    @property
    def nnz(self) -> int:
        return int(self.values.numel())


def gather_sum(table: Float[Tensor, "n_in tokens"], csr: CSR) -> Float[Tensor, "n_out tokens"]:
    """``csr @ table`` for a dense feature-major `table`: row r of the result is
    Σ values[k] · table[cols[k]] over row r's nonzeros (zero for an empty row)."""
    if table.shape[0] != csr.shape[1]:
        raise ValueError(f"table: expected {csr.shape[1]} rows, got {table.shape[0]}")
    if table.shape[1] == 0:
        return table.new_zeros(csr.shape[0], 0)
    return F.embedding_bag(
        csr.cols, table, csr.crow, mode="sum", per_sample_weights=csr.values, include_last_offset=True
    )


# A kernel computes `csr @ table` (both feature-major); the torch one above, or a Triton one on GPU.
Kernel = Callable[[Tensor, CSR], Tensor]


@dataclass(frozen=True)
class SparseMatrix:
    """A frozen W [d_in, d_out] in the two forms the products read: ``t`` = rows of Wᵀ (forward),
    ``w`` = rows of W (activation gradient)."""

    t: CSR
    w: CSR

    @classmethod
    def from_dense(cls, matrix: Float[Tensor, "d_in d_out"]) -> "SparseMatrix":
        if matrix.ndim != 2:
            raise ValueError(f"matrix: expected a 2-D weight matrix, got shape {tuple(matrix.shape)}")
        return cls(t=CSR.from_dense(matrix.T), w=CSR.from_dense(matrix))

    @property
    def shape(self) -> tuple[int, int]:
        return self.w.shape

    @property
    def density(self) -> float:
        d_in, d_out = self.shape
        return self.w.nnz / max(1, d_in * d_out)


def _feature_major(x: Float[Tensor, "tokens d"]) -> Float[Tensor, "d tokens"]:
    """xᵀ as a contiguous tensor (free when x is itself a transposed view)."""
    return x.T.contiguous()


# The torch kernel runs over blocks of this many tokens: a block's activations ([d_in, 128]) stay in
# cache while every output feature gathers from them, and its transposes are small. Measured 1.8-3.4x
# faster than one call over 1,024 tokens at L0 1/16 - 1/64, 1.3-1.6x at 1/1000 (d 1024-2048; 128
# beat 256 at every one of those shapes).
TOKEN_BLOCK = 128


def _rows_product(x: Float[Tensor, "tokens n_in"], csr: CSR, kernel: Kernel) -> Float[Tensor, "tokens n_out"]:
    """``x @ csrᵀ`` as a row-major [tokens, n_out] tensor, via the feature-major `kernel`."""
    if kernel is not gather_sum or x.shape[0] <= TOKEN_BLOCK:
        return kernel(_feature_major(x), csr).T.contiguous()
    out = x.new_empty(x.shape[0], csr.shape[0])
    for start in range(0, x.shape[0], TOKEN_BLOCK):
        block = x[start : start + TOKEN_BLOCK]
        out[start : start + TOKEN_BLOCK].copy_(kernel(_feature_major(block), csr).T)
    return out


class _SparseMatmul(torch.autograd.Function):
    """x [tokens, d_in] @ W [d_in, d_out] with W frozen: forward through Wᵀ's rows, backward
    (activation gradient only) through W's rows."""

    @staticmethod
    def forward(ctx, x: Tensor, matrix: SparseMatrix, kernel: Kernel) -> Tensor:  # type: ignore[override]
        ctx.matrix, ctx.kernel = matrix, kernel
        return _rows_product(x, matrix.t, kernel)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        grad_x = _rows_product(grad, ctx.matrix.w, ctx.kernel) if ctx.needs_input_grad[0] else None
        return grad_x, None, None


def sparse_matmul(
    x: Float[Tensor, "... d_in"], matrix: SparseMatrix, kernel: Optional[Kernel] = None
) -> Float[Tensor, "... d_out"]:
    """``x @ W`` for a frozen sparse W, differentiable in x (not in W); the values are those of the
    dense product up to float summation order."""
    d_in, d_out = matrix.shape
    if x.shape[-1] != d_in:
        raise ValueError(f"x: expected last dimension {d_in}, got shape {tuple(x.shape)}")
    if x.dtype != matrix.w.values.dtype:
        raise ValueError(f"x: dtype {x.dtype} does not match the weight's {matrix.w.values.dtype}")
    lead = x.shape[:-1]
    out = _SparseMatmul.apply(x.reshape(-1, d_in), matrix, kernel or gather_sum)
    return out.reshape(*lead, d_out)
