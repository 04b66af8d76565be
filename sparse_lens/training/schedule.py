"""Schedules: the L0 (kept-fraction) anneal, the learning rate, and the "sharkfin" LR factor.

All functions take ``step``, the 0-based index of the optimizer step being taken, and
``total_steps``; step ``total_steps`` (one past the last) is accepted too, so "100 %" is defined.

* **L0 anneal** (paper Sec. 2; window from the authors' code): the kept fraction is 1.0 (dense) until
  ``anneal_start * total_steps``, falls *linearly* to the target by ``anneal_end * total_steps``
  (defaults 1 % and 50 %) and stays there.
* **Learning rate** (paper Sec. 4.4 and the authors' script): linear warmup over the first
  ``warmup_fraction`` (1 %) of steps, then linear decay to 0 at the last step (or cosine, or constant).
  Warmup is ``lr * (step + 1) / warmup_steps``, so no step has lr 0 (the authors' script uses
  ``lr * step / warmup_steps``, whose first step has lr 0 and only feeds Adam's moments).
* **Sharkfin** (paper Sec. 4.3: "LR x 1/sqrt(L0)"): the LR is multiplied by
  ``sqrt(target_L0 / current_L0)``, as the authors' script does (``lr * (pfrac / this_pfrac) ** 0.5``):
  1/sqrt(L0) normalised so that the configured ``lr`` is the one used once the target is reached.
  While the model is dense the factor is sqrt(target) (1/4 for a 1/16 target), rising to 1 at the end
  of the anneal; with the LR decay this draws the shark fin.
"""

from __future__ import annotations

import math

from sparse_lens.training.config import OptimizerConfig


def anneal_progress(step: int, total_steps: int, start: float, end: float) -> float:
    """0 before ``start * total_steps``, 1 after ``end * total_steps``, linear in between."""
    s0, s1 = start * total_steps, end * total_steps
    if step >= s1:
        return 1.0
    if step <= s0:
        return 0.0
    return (step - s0) / (s1 - s0)


def lerp_fraction(target: float, progress: float) -> float:
    """Kept fraction: 1.0 (dense) at progress 0, ``target`` at progress 1, linear in between."""
    return 1.0 + (target - 1.0) * progress


def l0_fraction(step: int, total_steps: int, target: float, start: float = 0.01, end: float = 0.5) -> float:
    """The kept (nonzero) fraction of each block matrix after optimizer step ``step``."""
    return lerp_fraction(target, anneal_progress(step, total_steps, start, end))


def warmup_steps(total_steps: int, warmup_fraction: float) -> int:
    return int(warmup_fraction * total_steps)


def base_lr(step: int, total_steps: int, cfg: OptimizerConfig) -> float:
    """Warmup then decay (without the sharkfin factor)."""
    warm = warmup_steps(total_steps, cfg.warmup_fraction)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.lr_decay == "constant" or total_steps <= warm:
        return cfg.lr
    progress = min(1.0, (step - warm) / (total_steps - warm))
    if cfg.lr_decay == "linear":
        shape = 1.0 - progress
    elif cfg.lr_decay == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        raise ValueError(f"optimizer.lr_decay: unknown schedule {cfg.lr_decay!r}")
    floor = cfg.min_lr_fraction
    return cfg.lr * (floor + (1.0 - floor) * shape)


def sharkfin_factor(current_fraction: float, target_fraction: float) -> float:
    """sqrt(target / current): 1/sqrt(L0) normalised to 1 at the target."""
    return math.sqrt(target_fraction / current_fraction)


def lr_at(step: int, total_steps: int, cfg: OptimizerConfig, current_fraction: float = 1.0, target_fraction: float = 1.0) -> float:
    """The learning rate of optimizer step ``step`` (0-based), sharkfin included if configured."""
    lr = base_lr(step, total_steps, cfg)
    if cfg.sharkfin:
        lr *= sharkfin_factor(current_fraction, target_fraction)
    return lr
