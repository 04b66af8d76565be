"""Which kernel runs a weight matrix product: ``model.set_execution("dense" | "sparse" | "auto")``.

Every weight product of the forward (q/k/v, attention output, MLP in/out, unembedding) goes through
:func:`frozen_matmul`. With no plan (the default, "dense") it is ``x @ W`` exactly as before. With a
plan it may instead run :func:`sparse_lens.model.sparse_linear.sparse_matmul`, whose values equal the
dense product up to float summation order; hooks see the same activations either way.

The rule (:func:`auto_uses_sparse`): "auto" runs a matrix sparse when its nonzero fraction is at most
``AUTO_MAX_DENSITY`` and it has at least ``AUTO_MIN_ENTRIES`` entries; "sparse" runs every matrix
sparse. Both fall back to the dense product when the weight would need a gradient (it requires grad
and autograd is on: training), when the input's dtype differs from the weight's, or for the
per-head products of split inputs / ``use_attn_result`` (einsums kept dense). The sparse form of a
matrix is built on first use and rebuilt when the weight changes (its version counter, storage,
dtype or device).

On CUDA the product runs the Triton kernel when Triton is installed (sparse_lens.kernels), else the
torch gather-sum; AbsTopK modules likewise use the Triton selection on CUDA tensors under "sparse"
and "auto".
"""

from __future__ import annotations

from typing import Callable, Literal, Optional

import torch
from jaxtyping import Float
from torch import Tensor, nn

from sparse_lens.model.sparse_linear import Kernel, SparseMatrix, gather_sum, sparse_matmul

ExecutionMode = Literal["dense", "sparse", "auto"]
EXECUTION_MODES: tuple[str, ...] = ("dense", "sparse", "auto")

# Measured in benchmarks/bench_sparse_execution.py (benchmarks/RESULTS.md, "Sparse execution"),
# single-threaded, with token blocks: the product beat dense at every density <= 1/16 with
# d_in·d_out >= 2^20 (1.7x at 512 x 2048 and L0 1/16, up to 10x), and so did the whole forward at
# d_model 1024 / 2048 (1.3-1.4x at 1/16); it gave nothing at d_in·d_out = 2^18 (0.95-1.05x at every
# density). Denser than 1/16 was not measured, so "auto" leaves it dense.
AUTO_MAX_DENSITY = 1 / 16
AUTO_MIN_ENTRIES = 1 << 20


def auto_uses_sparse(d_in: int, d_out: int, nnz: int) -> bool:
    """The "auto" rule: sparse iff density = nnz / (d_in·d_out) ≤ AUTO_MAX_DENSITY and
    d_in·d_out ≥ AUTO_MIN_ENTRIES."""
    entries = d_in * d_out
    return entries >= AUTO_MIN_ENTRIES and nnz <= AUTO_MAX_DENSITY * entries


def check_mode(mode: str) -> str:
    if mode not in EXECUTION_MODES:
        raise ValueError(f"mode: expected one of {EXECUTION_MODES}, got {mode!r}")
    return mode


def _kernel_for(x: Tensor) -> Kernel:
    if x.is_cuda:
        from sparse_lens.kernels import triton_available

        if triton_available():
            from sparse_lens.kernels.spmm import triton_gather_sum

            return triton_gather_sum
    return gather_sum


class ExecutionPlan:
    """Per-module state of the execution mode: each weight's nonzero count and sparse form (built
    when a mode first runs it sparse), cached by the weight's identity and version, so switching
    modes does not rebuild them."""

    def __init__(self, mode: str):
        self.mode = check_mode(mode)
        self._cache: dict[int, tuple[tuple, int, tuple[int, int], Optional[SparseMatrix]]] = {}

    def sparse_form(self, weight: Tensor, matrix: Callable[[Tensor], Tensor]) -> Optional[SparseMatrix]:
        """The sparse form of ``matrix(weight)``, or None when this mode runs it dense."""
        if self.mode == "dense":
            return None
        key = (weight._version, weight.data_ptr(), weight.dtype, weight.device)
        cached = self._cache.get(id(weight))
        with torch.no_grad():
            if cached is None or cached[0] != key:
                dense = matrix(weight.detach())
                cached = (key, int(torch.count_nonzero(dense)), tuple(dense.shape), None)
            _, nnz, (d_in, d_out), form = cached
            use = self.mode == "sparse" or auto_uses_sparse(d_in, d_out, nnz)
            if use and form is None:
                form = SparseMatrix.from_dense(matrix(weight.detach()))
        self._cache[id(weight)] = (key, nnz, (d_in, d_out), form)
        return form if use else None

    def matmul(self, x: Tensor, weight: Tensor, matrix: Callable[[Tensor], Tensor]) -> Tensor:
        if self.mode == "dense" or (weight.requires_grad and torch.is_grad_enabled()) or x.dtype != weight.dtype \
                or x.ndim < 2:
            return x @ matrix(weight)
        form = self.sparse_form(weight, matrix)
        if form is None:
            return x @ matrix(weight)
        return sparse_matmul(x, form, _kernel_for(x))


def _identity(w: Tensor) -> Tensor:
    return w


def frozen_matmul(
    owner: nn.Module, x: Float[Tensor, "... d_in"], weight: Tensor,
    matrix: Callable[[Tensor], Float[Tensor, "d_in d_out"]] = _identity,
) -> Float[Tensor, "... d_out"]:
    """``x @ matrix(weight)``, by the kernel `owner`'s execution plan chooses (dense without one)."""
    plan: Optional[ExecutionPlan] = owner.__dict__.get("execution_plan")
    if plan is None or plan.mode == "dense":
        return x @ matrix(weight)
    return plan.matmul(x, weight, matrix)


def set_execution(model: nn.Module, mode: str) -> None:
    """Set `mode` on every module with weight products (keeping their cached sparse forms) and on
    every AbsTopK; under "dense" the products are plain ``x @ W`` (today's forward, exactly)."""
    from sparse_lens.model.abs_topk import AbsTopK

    check_mode(mode)
    for module in model.modules():
        if isinstance(module, AbsTopK):
            module.use_triton = mode != "dense"
        elif hasattr(module, "uses_frozen_matmul"):
            plan = module.__dict__.get("execution_plan")
            if plan is None:
                module.execution_plan = plan = ExecutionPlan(mode)
            plan.mode = mode


def plan_summary(model: nn.Module) -> dict[str, str]:
    """Which kernel each weight matrix gets under the model's current plans, from its current
    values ("sparse" or "dense"): the rule made visible, for docs and tests."""
    out: dict[str, str] = {}
    for name, module in model.named_modules():
        if not hasattr(module, "uses_frozen_matmul"):
            continue
        plan: Optional[ExecutionPlan] = module.__dict__.get("execution_plan")
        for weight_name, (weight, matrix) in module.frozen_matrices().items():
            full = f"{name}.{weight_name}"
            out[full] = "dense" if plan is None else (
                "sparse" if plan.sparse_form(weight, matrix) is not None else "dense"
            )
    return out
