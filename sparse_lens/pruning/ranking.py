"""Ranking the mask units for discretization (App. A.5 ranks by τ; issue 22).

The paper keeps the k units of largest τ. At the end of mask training τ is not an importance order:
a unit the task needs but the penalty pushes down oscillates around τ = 0 (kept → the penalty lowers
τ; dropped → the task-loss gradient raises it) and ends wherever the last step leaves it, often just
above or below 0, below many units the task does not need. Statistics over the last part of training
see the oscillation: a unit kept in most of the last steps ranks above one that drifted down.

``TauStatistics`` accumulates, over the last ``window`` fraction of the steps, how often each unit
was kept (τ > 0) and its mean τ; it is `train_masks`'s ``on_step`` callback and costs one comparison
and one add per unit per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from jaxtyping import Float
from torch import Tensor

from sparse_lens.pruning.masks import NodeMasks

Unit = tuple[str, int]  # (site of the τ, flat index)


def unit_owners(masks: NodeMasks) -> list[Unit]:
    """Every mask unit in τ-parameter order (the order of `flat_tau`)."""
    names = [key.replace("/", ".") for key in masks.tau.keys()]
    return [(name, i) for name, p in zip(names, masks.tau.values()) for i in range(p.numel())]


def flat_tau(masks: NodeMasks) -> Float[Tensor, "units"]:
    return torch.cat([p.detach().reshape(-1) for p in masks.tau.values()])


@dataclass
class TauStatistics:
    """Running statistics of τ over the steps ``>= start`` (a `train_masks` ``on_step`` callback)."""

    start: int
    steps: int = 0
    kept: Optional[Tensor] = None  # [units] steps with τ > 0
    tau_sum: Optional[Tensor] = None  # [units]
    owners: list[Unit] = field(default_factory=list)

    @classmethod
    def for_training(cls, total_steps: int, window: float) -> "TauStatistics":
        """Statistics over the last ``window`` fraction of ``total_steps`` (at least the last step)."""
        return cls(start=min(total_steps - 1, int(round(total_steps * (1 - window)))))

    def __call__(self, step: int, masks: NodeMasks) -> None:
        if step < self.start:
            return
        tau = flat_tau(masks).float().cpu()
        if self.kept is None:
            self.kept, self.tau_sum, self.owners = torch.zeros_like(tau), torch.zeros_like(tau), unit_owners(masks)
        self.kept += tau > 0
        self.tau_sum += tau
        self.steps += 1

    @classmethod
    def from_trajectory(cls, tau: Float[Tensor, "steps units"], masks: NodeMasks, window: float = 0.5) -> "TauStatistics":
        stats = cls.for_training(len(tau), window)
        part = tau[stats.start:].float()
        stats.steps, stats.kept, stats.tau_sum = len(part), (part > 0).sum(0).float(), part.sum(0)
        stats.owners = unit_owners(masks)
        return stats

    @property
    def kept_fraction(self) -> Tensor:
        return self.kept / max(self.steps, 1)

    @property
    def mean_tau(self) -> Tensor:
        return self.tau_sum / max(self.steps, 1)


def _order(owners: list[Unit], *keys: Tensor) -> list[Unit]:
    """Units sorted by ``keys`` descending, lexicographically (first key first); ties by position."""
    order = torch.arange(len(owners))
    for key in reversed(keys):  # stable sorts, least significant key first
        order = order[torch.sort(-key[order], stable=True).indices]
    return [owners[j] for j in order.tolist()]


def rank_by_tau(masks: NodeMasks, stats: Optional[TauStatistics] = None) -> list[Unit]:
    """The paper's order: final τ, descending (ties by position)."""
    return _order(unit_owners(masks), flat_tau(masks).float().cpu())


def rank_by_mean_tau(masks: NodeMasks, stats: TauStatistics) -> list[Unit]:
    """τ averaged over the statistics' window, descending (ties by final τ)."""
    return _order(stats.owners, stats.mean_tau, flat_tau(masks).float().cpu())


def rank_by_kept_fraction(masks: NodeMasks, stats: TauStatistics) -> list[Unit]:
    """How often the unit was kept in the window, descending; ties by mean τ, then final τ."""
    return _order(stats.owners, stats.kept_fraction, stats.mean_tau, flat_tau(masks).float().cpu())


RANKINGS: dict[str, Callable[[NodeMasks, TauStatistics], list[Unit]]] = {
    "tau": rank_by_tau,
    "mean_tau": rank_by_mean_tau,
    "kept_fraction": rank_by_kept_fraction,
}
