"""The task loss of the paper: the authors' ``last_token_contrast_loss_fn``.

For a sequence with target token t and alternative token a, let z be the model's logits at the last
prompt position. The two-way log-softmax restricted to {t, a} gives

    loss = -log( exp(z_t) / (exp(z_t) + exp(z_a)) ) = softplus(z_a - z_t) = log(1 + exp(-(z_t - z_a)))

i.e. the binary cross-entropy of picking t over a. A pair gives two sequences: the positive prompt
with t = positive completion, a = negative completion, and the negative prompt with the roles swapped.
The task loss is the mean over all 2N sequences; accuracy is the fraction of sequences with
z_t > z_a (a tie counts as wrong). The pruning target 0.15 refers to this mean.

The authors' function returns, per datapoint (a pair), the *sum* of its two sequences' losses,
``-(logp_pos[t] + logp_neg[a])``; averaged over pairs that is twice our per-sequence mean. Which of
the two the paper's 0.15 refers to is not stated in the material we have; ``reduction="pair_sum"``
gives the per-pair-sum convention.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

REDUCTIONS = ("mean", "pair_sum", "none")


def last_logits(logits: Tensor, last: Tensor) -> Tensor:
    """[rows, pos, vocab] logits → [rows, vocab] at each row's last real position."""
    if logits.ndim != 3:
        raise ValueError(f"logits: expected [rows, pos, vocab], got shape {tuple(logits.shape)}")
    last = torch.as_tensor(last, device=logits.device, dtype=torch.long)
    if last.shape != logits.shape[:1]:
        raise ValueError(f"last: expected shape [{logits.shape[0]}], got {tuple(last.shape)}")
    if len(last) and (int(last.min()) < 0 or int(last.max()) >= logits.shape[1]):
        raise ValueError(f"last: positions must lie in [0, {logits.shape[1]})")
    return logits[torch.arange(logits.shape[0], device=logits.device), last]


def logit_difference(logits: Tensor, target: Tensor, alternative: Tensor, last: Optional[Tensor] = None) -> Tensor:
    """z_target - z_alternative per row; `logits` is [rows, vocab], or [rows, pos, vocab] with `last`."""
    if logits.ndim == 3:
        if last is None:
            raise ValueError("last: required with [rows, pos, vocab] logits")
        logits = last_logits(logits, last)
    elif logits.ndim != 2:
        raise ValueError(f"logits: expected [rows, vocab] or [rows, pos, vocab], got shape {tuple(logits.shape)}")
    target = torch.as_tensor(target, device=logits.device, dtype=torch.long)
    alternative = torch.as_tensor(alternative, device=logits.device, dtype=torch.long)
    rows = logits.shape[0]
    if rows == 0:
        raise ValueError("logits: no rows")
    for name, ids in (("target", target), ("alternative", alternative)):
        if ids.shape != (rows,):
            raise ValueError(f"{name}: expected shape [{rows}], got {tuple(ids.shape)}")
        if int(ids.min()) < 0 or int(ids.max()) >= logits.shape[1]:
            raise ValueError(f"{name}: token ids must lie in [0, {logits.shape[1]})")
    index = torch.arange(rows, device=logits.device)
    return logits[index, target].float() - logits[index, alternative].float()


def task_loss(
    logits: Tensor,
    target: Tensor,
    alternative: Tensor,
    last: Optional[Tensor] = None,
    reduction: str = "mean",
) -> tuple[Tensor, Tensor]:
    """(loss, accuracy) of the two-way contrast at the last position; see the module docstring.

    logits: [rows, vocab] at the last position, or [rows, pos, vocab] with `last` [rows].
    reduction: "mean" (over sequences; the default and the pruning target's convention),
    "pair_sum" (rows 2i and 2i+1 summed, then averaged over pairs: the authors' per-datapoint value),
    "none" (per-row losses and per-row correctness)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")
    d = logit_difference(logits, target, alternative, last)
    losses = F.softplus(-d)  # = -log_softmax([z_t, z_a])[0]
    correct = (d > 0).float()
    if reduction == "none":
        return losses, correct
    if reduction == "pair_sum":
        if len(d) % 2:
            raise ValueError("reduction='pair_sum' needs an even number of rows (positive, negative pairs)")
        return losses.view(-1, 2).sum(-1).mean(), correct.mean()
    return losses.mean(), correct.mean()
