"""The authors' optimizer: plain Adam (eps = 0.1), manual weight decay scaled by the LR, and gradients
normalized to RMS 1 every step.

* ``torch.optim.Adam`` with ``weight_decay=0`` (not AdamW). After the step (and after the top-k
  projection) every matrix except the bigram table decays as ``p -= weight_decay * lr * p``, with the
  step's actual LR (warmup, decay and sharkfin included). Biases, norm gains and attention-sink logits
  do not decay. This is the authors' code (their script: ``len(p.shape) > 1 and p is not bigram_table``).
* Gradient normalization: RMS = ||g||_2 / sqrt(N) over *all* N parameters (bigram table included),
  then ``g /= (RMS + 1e-5)`` — always, not only when RMS > 1 (the authors' ``gradclip=True`` branch;
  the paper text calls it clipping). ``grad_norm="clip"`` rescales only when RMS exceeds
  ``grad_rms``; ``"none"`` leaves gradients alone.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from sparse_lens.training.config import OptimizerConfig

NORMALIZE_EPS = 1e-5  # as in the authors' script: g / (rms + 1e-5)


def build_optimizer(params: Iterable[nn.Parameter], cfg: OptimizerConfig, device: torch.device | str = "cpu") -> torch.optim.Adam:
    params = list(params)
    cuda = torch.device(device).type == "cuda"
    return torch.optim.Adam(
        params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=0.0,
        fused=True if cuda else None, foreach=None if cuda else True,
    )


def decay_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters the manual weight decay applies to: matrices, except the dense bigram table."""
    return [p for name, p in model.named_parameters() if p.ndim >= 2 and not name.endswith("W_bigram")]


@torch.no_grad()
def gradient_rms(params: Sequence[nn.Parameter]) -> Tensor:
    """||g||_2 / sqrt(N) over all parameters (missing gradients count as zeros)."""
    grads = [p.grad for p in params if p.grad is not None]
    n = sum(p.numel() for p in params)
    if not grads:
        return torch.zeros(())
    norm = torch.nn.utils.get_total_norm(grads, norm_type=2.0, foreach=True)
    return norm / math.sqrt(n)


@torch.no_grad()
def normalize_gradients_(params: Sequence[nn.Parameter], mode: str = "normalize", target_rms: float = 1.0) -> float:
    """Rescale gradients in place; returns the RMS *before* rescaling."""
    rms = gradient_rms(params)
    grads = [p.grad for p in params if p.grad is not None]
    if mode == "normalize":
        scale = target_rms / (rms + NORMALIZE_EPS)
        torch._foreach_mul_(grads, scale)
    elif mode == "clip":
        if float(rms) > target_rms:
            torch._foreach_mul_(grads, target_rms / (rms + 1e-6))
    elif mode != "none":
        raise ValueError(f"optimizer.grad_norm: unknown mode {mode!r}")
    return float(rms)


@torch.no_grad()
def apply_weight_decay_(params: Sequence[Tensor], weight_decay: float, lr: float) -> None:
    """p -= weight_decay * lr * p for every tensor in ``params``."""
    if weight_decay == 0 or lr == 0 or not params:
        return
    torch._foreach_add_(list(params), list(params), alpha=-weight_decay * lr)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
