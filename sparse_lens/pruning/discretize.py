"""Discretization (App. A.5): rank nodes by τ and bisect over k, the number kept, for the smallest k
whose task loss is at most the target. Loss(k) is evaluated on a fixed set of pairs, so it is
deterministic; bisection assumes it is (close to) non-increasing in k.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor

from sparse_lens.pruning.masks import NodeMasks, ablation_hook

BinaryMasks = dict[str, Tensor]  # site name -> bool tensor of the site's node shape


def fixed_mask_hooks(masks: BinaryMasks, means: dict[str, Tensor]) -> list:
    """Hooks that keep the True nodes and mean-ablate the rest."""
    return [(name, ablation_hook(m.to(means[name].dtype), means[name])) for name, m in masks.items()]


def ranked_units(masks: NodeMasks) -> list[tuple[str, int]]:
    """Mask units (site of the τ, flat index) by τ descending; ties broken by position (stable)."""
    names = [key.replace("/", ".") for key in masks.tau.keys()]
    taus = torch.cat([masks.tau[key].detach().reshape(-1) for key in masks.tau.keys()])
    owners = [(name, i) for name in names for i in range(masks.tau[name.replace(".", "/")].numel())]
    order = torch.sort(-taus, stable=True).indices.tolist()
    return [owners[j] for j in order]


def top_k_masks(masks: NodeMasks, ranking: list[tuple[str, int]], k: int) -> BinaryMasks:
    return units_masks(masks, ranking[:k])


def units_masks(masks: NodeMasks, units: Sequence[tuple[str, int]]) -> BinaryMasks:
    """Binary masks keeping exactly ``units`` (with tied q/k, a kept q channel keeps its k channel)."""
    flat = {s.name: torch.zeros(s.size, dtype=torch.bool) for s in masks.sites}
    for name, i in units:
        flat[name][i] = True
    if masks.tie_qk:
        for s in masks.sites:
            if s.kind == "k":
                flat[s.name] = flat[s.name[: -len("hook_k")] + "hook_q"].clone()
    return {s.name: flat[s.name].reshape(s.shape) for s in masks.sites}


def count_nodes(binary: BinaryMasks) -> int:
    return int(sum(int(m.sum()) for m in binary.values()))


@dataclass
class BisectionResult:
    k: Optional[int]  # mask units kept; None if the target is unreachable even with every node
    masks: Optional[BinaryMasks]
    loss: float
    evaluations: dict[int, float]  # k -> loss, in the order the bisection evaluated them
    n_units: int = 0  # mask units ranked (the largest k)

    def diagnostics(self, target: float) -> dict[str, Any]:
        """What the bisection saw, for plots and checks: every (k, loss) evaluated (in order), the
        chosen k and its loss, the target, and whether loss(k) was non-increasing over the evaluated k."""
        return {
            "target": target,
            "n_units": self.n_units,
            "k": self.k,
            "loss": self.loss,
            "evaluations": [{"k": k, "loss": loss} for k, loss in self.evaluations.items()],
            "monotone": is_non_increasing(self.evaluations),
        }


def is_non_increasing(losses: dict[int, float], tolerance: float = 1e-6) -> bool:
    """Whether loss(k), over the evaluated k in increasing order, never rises by more than ``tolerance``
    (bisection assumes it does not; a rise means the chosen k may not be the smallest that works)."""
    values = [losses[k] for k in sorted(losses)]
    return all(later <= earlier + tolerance for earlier, later in zip(values, values[1:]))


def bisect_k(n_units: int, loss_of_k: Callable[[int], float], target: float, upper: Optional[int] = None,
             known: Optional[dict[int, float]] = None, lower: int = 0) -> tuple[Optional[int], dict[int, float]]:
    """Smallest k in [lower, n_units] with loss_of_k(k) <= target (None if loss_of_k(n_units) > target).
    With ``upper`` (e.g. the units mask training kept), bisect in [lower, upper] when loss_of_k(upper)
    is at the target, else up to every unit. ``known``: losses already evaluated (an earlier bisection
    of the same ranking), reused and returned with the new ones. ``lower``: every smaller k is known
    to miss the target."""
    seen: dict[int, float] = dict(known or {})

    def loss(k: int) -> float:
        if k not in seen:
            seen[k] = loss_of_k(k)
        return seen[k]

    if upper is not None and lower <= upper < n_units and loss(upper) <= target:
        hi = upper
    elif loss(n_units) > target:
        return None, seen
    else:
        hi = n_units
    lo = min(lower, hi)
    while lo < hi:
        mid = (lo + hi) // 2
        if loss(mid) <= target:
            hi = mid
        else:
            lo = mid + 1
    return hi, seen


def discretize(masks: NodeMasks, evaluate: Callable[[BinaryMasks], float], target: float,
               ranking: Optional[list[tuple[str, int]]] = None, upper: Optional[int] = None,
               known: Optional[dict[int, float]] = None, lower: int = 0) -> BisectionResult:
    """Bisect over k for the trained masks; ``evaluate(binary_masks)`` returns the task loss.
    ``ranking``: the units, most important first (default: the paper's, τ descending); ``upper``,
    ``known``, ``lower``: see `bisect_k`."""
    ranking = ranked_units(masks) if ranking is None else ranking
    k, seen = bisect_k(len(ranking), lambda k: evaluate(top_k_masks(masks, ranking, k)), target, upper, known, lower)
    if k is None:
        return BisectionResult(None, None, seen[len(ranking)], seen, len(ranking))
    return BisectionResult(k, top_k_masks(masks, ranking, k), seen[k], seen, len(ranking))
