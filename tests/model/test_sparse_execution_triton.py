"""Triton kernels (sparse_lens.kernels) under the interpreter, on CPU: small shapes, against torch."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton compiles anything: run kernels on the CPU

import pytest
import torch

pytest.importorskip("triton")

from sparse_lens.kernels.abs_topk import triton_abs_topk  # noqa: E402
from sparse_lens.kernels.spmm import triton_gather_sum  # noqa: E402
from sparse_lens.model.abs_topk import abs_topk, keep_mask  # noqa: E402
from sparse_lens.model.sparse_linear import SparseMatrix, gather_sum, sparse_matmul  # noqa: E402


def _sparse(shape, density, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g) * (torch.rand(shape, generator=g) < density)).to(dtype)


@pytest.mark.parametrize("dtype,tokens", [(torch.float32, 1), (torch.float32, 130), (torch.bfloat16, 5)])
def test_gather_sum_matches_torch(dtype, tokens):
    W = _sparse((12, 20), 0.2, dtype=dtype)
    W[:, 3] = 0  # an empty row of Wᵀ
    form = SparseMatrix.from_dense(W)
    table = torch.randn(12, tokens).to(dtype)
    got = triton_gather_sum(table, form.t)
    want = gather_sum(table.float(), SparseMatrix.from_dense(W.float()).t)
    assert got.dtype == dtype and got.shape == (20, tokens)
    torch.testing.assert_close(got.float(), want, atol=1e-2 if dtype == torch.bfloat16 else 1e-5, rtol=1e-2)
    assert (got[3] == 0).all()


def test_triton_forward_and_activation_gradient_match_dense():
    W = _sparse((16, 24), 0.3, seed=1)
    form = SparseMatrix.from_dense(W)
    x = torch.randn(2, 3, 16, requires_grad=True)
    out = sparse_matmul(x, form, kernel=triton_gather_sum)
    grad_out = torch.randn(2, 3, 24)
    (g_sparse,) = torch.autograd.grad(out, x, grad_out)
    x_dense = x.detach().requires_grad_(True)
    (g_dense,) = torch.autograd.grad(x_dense @ W, x_dense, grad_out)
    torch.testing.assert_close(out, x.detach() @ W, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g_sparse, g_dense, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype,d,k", [
    (torch.float32, 8, 2), (torch.float32, 64, 63), (torch.float32, 64, 1), (torch.bfloat16, 24, 6), (torch.float16, 24, 6),
])
def test_abs_topk_matches_torch(dtype, d, k):
    x = torch.randn(5, d, generator=torch.Generator().manual_seed(d + k)).to(dtype)
    out, keep = triton_abs_topk(x, k)
    assert out.dtype == dtype
    assert torch.equal(keep, keep_mask(x.float(), k))
    assert torch.equal(out, abs_topk(x.float(), k).to(dtype))
    if dtype == torch.float32:
        assert (keep.sum(-1) == k).all()  # no ties in continuous fp32 data (bf16 / fp16 have some)


def test_abs_topk_keeps_ties_and_extremes():
    x = torch.tensor([[1.0, -1.0, 1.0, 0.5, 0.0, 0.0], [float("inf"), 2.0, -3.0, 0.0, 1.0, 1.0]])
    _, keep = triton_abs_topk(x, 2)
    assert keep.tolist() == [[True, True, True, False, False, False], [True, False, True, False, False, False]]


def test_abs_topk_rejects_bad_k():
    with pytest.raises(ValueError, match="k: expected"):
        triton_abs_topk(torch.randn(2, 4), 4)
