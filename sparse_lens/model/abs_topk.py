"""AbsTopK activation sparsity (paper Sec. 1.7): keep the k entries of largest |x|, zero the rest.

On CPU (float32/float64) the selection, the mask and the product run in numpy: per row an integer
introselect on the sign-cleared bit patterns — ordered like |x| — finds the k-th largest |x|; no index
tensor is built. Elsewhere the threshold is ``topk(...).amin`` and the rest torch ops. (Splitting rows
across Python threads was measured ~4% slower inside a training step: torch's own threads compete.)
See benchmarks/RESULTS.md.
"""

from __future__ import annotations

import threading
from typing import Optional

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

# Clearing the sign bit of an IEEE float's bit pattern gives an integer ordered like |x| (NaN above
# inf, as in numpy's float order); numpy selects integers about twice as fast as floats.
_MAGNITUDE_BITS = {
    np.dtype(np.float32): (np.int32, np.int32(0x7FFF_FFFF)),
    np.dtype(np.float64): (np.int64, np.int64(0x7FFF_FFFF_FFFF_FFFF)),
}
_NUMPY_DTYPES = (torch.float32, torch.float64)
_SCRATCH = threading.local()
SCRATCH_MAX_BYTES = 64 << 20  # per buffer; two buffers per thread


def _numpy_path(x: Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype in _NUMPY_DTYPES and x.numel() > 0


def keep_mask(x: Float[Tensor, "... d"], k: int) -> Bool[Tensor, "... d"]:
    """True where |x| is at least the k-th largest |x| of its row (1 ≤ k < d)."""
    return _select(x, k)[1]


def _scratch(name: str, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    """A reusable per-thread buffer: fresh large temporaries page-fault on every call (a 2048×512
    AbsTopK measured 5.9 ms with them, 1.9 ms with reused buffers)."""
    need = int(np.prod(shape))
    if need * np.dtype(dtype).itemsize > SCRATCH_MAX_BYTES:  # huge inputs: don't pin the memory forever
        return np.empty(shape, dtype=dtype)
    buffers = _SCRATCH.__dict__
    buf = buffers.get(name)
    if buf is None or buf.dtype != dtype or buf.size < need:
        buf = buffers[name] = np.empty(need, dtype=dtype)
    return buf[:need].reshape(shape)


# numpy's partition of 32-bit integers takes a SIMD path for rows of at most this many entries and
# is ~4x slower per entry above it (numpy 2.x, x86; measured in benchmarks/RESULTS.md, "Model").
FAST_SELECT_WIDTH = 512


def kth_largest_per_row(bits: np.ndarray, k: int) -> np.ndarray:
    """[rows, 1]: the k-th largest entry of each row of a 2-D array (1 ≤ k ≤ width).

    Rows wider than FAST_SELECT_WIDTH are cut into equal blocks that fit it; the k largest of a row
    are among the k largest of its blocks, so the k-th largest of those candidates is the answer.
    """
    rows, d = bits.shape
    blocks = -(-d // FAST_SELECT_WIDTH)
    if blocks > 1 and d % blocks == 0 and k < d // blocks:
        width = d // blocks
        candidates = np.partition(bits.reshape(rows, blocks, width), width - k, axis=-1)[..., width - k :]
        return kth_largest_per_row(candidates.reshape(rows, blocks * k), k)  # blocks · k < d
    selected = _scratch("selected", bits.dtype, bits.shape)
    np.copyto(selected, bits)
    selected.partition(d - k, axis=-1)
    return selected[:, d - k : d - k + 1]


def _select(x: Tensor, k: int, use_triton: bool = False) -> tuple[Tensor, Tensor]:
    """(x · keep, keep) with keep = |x| ≥ the k-th largest |x| of its row (no autograd); with
    `use_triton`, a CUDA tensor's selection runs the Triton kernel when Triton is installed."""
    x = x.detach()
    if use_triton and x.is_cuda:
        from sparse_lens.kernels import triton_available

        if triton_available():
            from sparse_lens.kernels.abs_topk import triton_abs_topk

            return triton_abs_topk(x, k)
    if not _numpy_path(x):
        magnitude = x.abs()
        keep = magnitude >= magnitude.topk(k, dim=-1, sorted=False).values.amin(dim=-1, keepdim=True)
        return x * keep, keep
    d = x.shape[-1]
    flat = x.contiguous().numpy().reshape(-1, d)
    int_dtype, sign_cleared = _MAGNITUDE_BITS[flat.dtype]
    bits = np.bitwise_and(flat.view(int_dtype), sign_cleared, out=_scratch("bits", int_dtype, flat.shape))
    keep = np.greater_equal(bits, kth_largest_per_row(bits, k))
    return torch.from_numpy(np.multiply(flat, keep)).view(x.shape), torch.from_numpy(keep).view(x.shape)


class _AbsTopKFunction(torch.autograd.Function):
    """Forward: keep entries with |x| ≥ the k-th largest |x|; backward: the same mask on the gradient.

    The output is ``x · keep`` (several times faster than ``torch.where`` here). inf and NaN rank
    largest, so they are kept and every dropped entry is finite (``x · 0`` is exactly 0, with x's
    sign) unless a row holds more than k of them.
    """

    @staticmethod
    def forward(ctx, x: Tensor, k: int, use_triton: bool = False) -> Tensor:  # type: ignore[override]
        out, keep = _select(x, k, use_triton)
        ctx.save_for_backward(keep)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (keep,) = ctx.saved_tensors
        if not _numpy_path(grad):
            return grad * keep, None, None
        return torch.from_numpy(np.multiply(grad.detach().contiguous().numpy(), keep.numpy())), None, None


@torch.library.custom_op("sparse_lens::abs_topk_keep", mutates_args=())
def _keep_op(x: Tensor, k: int, use_triton: bool = False) -> Tensor:
    """The keep mask as one opaque operator for ``torch.compile``: the selection (numpy on CPU) is not
    traceable, so without it every AbsTopK would break the compiled graph in two."""
    return _select(x, k, use_triton)[1]


@_keep_op.register_fake
def _(x: Tensor, k: int, use_triton: bool = False) -> Tensor:
    return torch.empty_like(x, dtype=torch.bool)


def abs_topk(x: Float[Tensor, "... d"], k: int, use_triton: bool = False) -> Float[Tensor, "... d"]:
    """Keep, along the last dimension, the ``k`` entries with the largest absolute value.

    Kept entries keep their sign and value; all others become exactly 0. The selection is a
    threshold at the k-th largest |x|, so gradients flow to kept entries only. Entries tied with the
    k-th value are all kept (for continuous activations such ties have probability zero; a row with
    fewer than k nonzeros keeps its zeros, which changes nothing). ``use_triton``: on a CUDA tensor,
    select with the Triton kernel (sparse_lens.kernels; same result) when Triton is installed. Under
    ``torch.compile`` the mask comes from one custom operator and the product (and its gradient, the
    same mask) is left to the compiler to fuse.
    """
    d = x.shape[-1]
    if k >= d:
        return x
    if k <= 0:
        return torch.zeros_like(x)
    if torch.compiler.is_compiling():
        return x * _keep_op(x.detach(), k, use_triton)
    return _AbsTopKFunction.apply(x, k, use_triton)


class AbsTopK(nn.Module):
    """AbsTopK at one node location; ``frac=None`` makes it the identity.

    k = int(frac * d), truncated toward zero, exactly as in the authors' code. ``use_triton`` (set
    by ``model.set_execution``) selects with the Triton kernel on CUDA tensors.
    """

    def __init__(self, frac: Optional[float]):
        super().__init__()
        self.frac = frac
        self.use_triton = False

    def k_for(self, d: int) -> int:
        return d if self.frac is None else int(self.frac * d)

    def forward(self, x: Float[Tensor, "... d"]) -> Float[Tensor, "... d"]:
        if self.frac is None:
            return x
        return abs_topk(x, self.k_for(x.shape[-1]), self.use_triton)

    def extra_repr(self) -> str:
        return f"frac={self.frac}"
