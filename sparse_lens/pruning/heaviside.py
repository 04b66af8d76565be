"""The Heaviside mask with a sigmoid-derivative surrogate gradient (paper Sec. 2.2, App. A.5).

Forward: ``H(τ) = 1 if τ > 0 else 0`` (the paper leaves H(0) unspecified; we drop a node at τ = 0).
Backward: ``dH/dτ ≈ σ'(τ / T) / T`` with temperature ``T = heaviside_temp`` — the derivative of the
sigmoid that H approximates, a straight-through-style estimator.
"""

from __future__ import annotations

import torch
from torch import Tensor


class _HeavisideSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tau: Tensor, temperature: float) -> Tensor:
        ctx.save_for_backward(tau)
        ctx.temperature = temperature
        return (tau > 0).to(tau.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (tau,) = ctx.saved_tensors
        s = torch.sigmoid(tau / ctx.temperature)
        return grad * s * (1 - s) / ctx.temperature, None


def heaviside(tau: Tensor, temperature: float = 1.0) -> Tensor:
    """Binary mask from τ; differentiable through the sigmoid surrogate."""
    if temperature <= 0:
        raise ValueError(f"heaviside_temp: expected > 0, got {temperature}")
    return _HeavisideSTE.apply(tau, temperature)
