"""Refinement after bisection (issue 22): shrink the bisected circuit one mask unit at a time while the
task loss on the check pairs stays at or under the target.

Bisection keeps a prefix of a ranking; a unit ranked low but needed forces every unit above it in.
Refinement walks the kept units from the lowest-ranked up and drops each one whose removal keeps the
loss on the check pairs ≤ the target (a greedy pass; every accepted circuit was evaluated, so the
result is at the target on the check pairs by construction).

Candidates are evaluated **batched**: ``batch`` removals (each "the current circuit minus one unit")
run in one forward, each candidate's masks on its own copy of the rows, from the first stage where it
differs (`sparse_lens.pruning.variant_losses`), and every decision is the
greedy pass's own (the result equals one-at-a-time evaluation). After a rejection a batch holds ``batch``
single removals (the first passing one is accepted; the rest are tried again against the new circuit);
after an acceptance it holds ``batch`` nested removals (drop the next 1, 2, … units together: all
accepted up to the first failing one, which is rejected), so long runs of droppable units cost one
forward per ``batch`` units too.

The check pairs are the fit pairs and some training pairs: with only the 128 fit pairs a search this
fine overfits them (issue 22: 91 units at fit loss ≤ 0.15, held-out 0.198). Each candidate is screened
on the fit pairs first; only one at the target there is evaluated on the training pairs too, and its
loss is the mean over all check pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from sparse_lens.pruning.task_batch import TaskBatch
from sparse_lens.pruning.variant_losses import BinaryMasks, variant_losses

Unit = tuple[str, int]


@torch.no_grad()
def candidate_losses(model, batch: TaskBatch, candidates: Sequence[BinaryMasks], means: dict[str, Tensor]) -> list[float]:
    """Task loss on ``batch`` of each candidate circuit, batched (`variant_losses`): the candidates
    are variants of their union, which differs from each only downstream of the units it drops."""
    union = {name: torch.stack([c[name] for c in candidates]).any(0) for name in candidates[0]}
    return variant_losses(model, batch, union, candidates, means)[1]


@dataclass
class RefinementResult:
    units: list[Unit]  # kept units, in the ranking's order
    loss: float  # on the check pairs
    start_units: int
    candidates_evaluated: int = 0
    forwards: int = 0  # batched evaluations (each over all check pairs)
    dropped: list[Unit] = field(default_factory=list)
    seconds: float = 0.0

    def diagnostics(self, target: float, n_check_pairs: int) -> dict:
        return {"target": target, "check_pairs": n_check_pairs, "units_before": self.start_units,
                "units_after": len(self.units), "loss": self.loss, "candidates_evaluated": self.candidates_evaluated,
                "batched_forwards": self.forwards, "seconds": self.seconds}


def refine(units: Sequence[Unit], to_masks: Callable[[Sequence[Unit]], BinaryMasks],
           losses_of: Callable[[Sequence[BinaryMasks]], list[float]], target: float, start_loss: float,
           batch: int = 8) -> RefinementResult:
    """Greedy pass over ``units`` (ranked, most important first), lowest-ranked first: drop a unit if
    the circuit without it has loss ≤ ``target`` (``losses_of`` evaluates several circuits at once).
    ``start_loss`` is the loss of the circuit of all ``units`` (assumed ≤ target)."""
    import time

    if batch < 1:
        raise ValueError(f"batch: expected a positive integer, got {batch!r}")
    start = time.perf_counter()
    kept = list(units)
    result = RefinementResult(kept, start_loss, len(kept))
    order = list(reversed(units))
    i, prefixes = 0, False
    while i < len(order):
        tried = order[i: i + batch]
        if prefixes:  # candidate j drops tried[0..j] together: accepts up to `batch` units per forward
            circuits = [to_masks([u for u in kept if u not in tried[: j + 1]]) for j in range(len(tried))]
        else:  # candidate j drops tried[j] alone: rejects up to `batch` units per forward
            circuits = [to_masks([u for u in kept if u != cand]) for cand in tried]
        losses = losses_of(circuits)
        result.forwards += 1
        passing = [loss <= target for loss in losses]
        # Each decision is the greedy pass's own test: tried[j] dropped from the circuit as it is then.
        if prefixes:  # tried[:n] all pass in turn; tried[n] (if any) fails after them
            n = passing.index(False) if False in passing else len(tried)
            accept, stop = tried[:n], n + 1
        else:  # tried[:n] each fail; tried[n] (if any) passes
            n = passing.index(True) if True in passing else len(tried)
            accept, stop = tried[n: n + 1], n + 1
        result.candidates_evaluated += min(stop, len(tried))
        for j, cand in enumerate(accept):
            kept.remove(cand)
            result.dropped.append(cand)
            result.loss = losses[j if prefixes else n]
        i += min(stop, len(tried))
        prefixes = bool(accept)
    result.units = kept
    result.seconds = time.perf_counter() - start
    return result


def extra_check_pairs(fit: TaskBatch, train: TaskBatch, n_pairs: int) -> Optional[TaskBatch]:
    """The training pairs that, with every fit pair, make up ``n_pairs`` check pairs (None if none)."""
    extra = max(0, min(n_pairs * 2, len(fit) + len(train)) - len(fit))
    return train.select(torch.arange(extra)) if extra else None


def screened_losses(model, fit: TaskBatch, extra: Optional[TaskBatch], means: dict[str, Tensor], target: float
                    ) -> Callable[[Sequence[BinaryMasks]], list[float]]:
    """Loss of each candidate on the check pairs (``fit`` and ``extra``), screened on ``fit``: a
    candidate above the target on the fit pairs is rejected without the rest (its loss is +inf); the
    others get the exact check loss, the mean over both parts."""
    def losses_of(circuits: Sequence[BinaryMasks]) -> list[float]:
        on_fit = candidate_losses(model, fit, circuits, means)
        passing = [i for i, loss in enumerate(on_fit) if loss <= target]
        out = [math.inf] * len(circuits)
        on_extra = candidate_losses(model, extra, [circuits[i] for i in passing], means) if passing and extra else []
        for n, i in enumerate(passing):
            out[i] = on_fit[i] if extra is None else (on_fit[i] * len(fit) + on_extra[n] * len(extra)) / (len(fit) + len(extra))
        return out

    return losses_of
