"""`PruningConfig`: mask-training hyperparameters, defaulting to the paper's Table 2 search centers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


SWEEP_MODES = ("processes", "batched", "serial")  # how a sweep round's suggestions run (`run_sweep`)


@dataclass
class PruningConfig:
    # Table 2 centers (App. A.5)
    k_coef: float = 1e-4
    init_noise_scale: float = 1e-2
    init_noise_bias: float = 1e-1
    wd: float = 1e-3
    lr: float = 3e-3
    inv_beta2: float = 5e-2  # AdamW beta2 = 1 - inv_beta2
    lr_warmup_frac: float = 5e-2
    heaviside_temp: float = 1.0
    # Not specified in the paper; our defaults
    steps: int = 400
    batch_pairs: int = 64  # 64 pairs = 128 sequences (App. A.5)
    grad_clip: float = 1.0  # global L2 norm of the τ gradient
    beta1: float = 0.9
    target_loss: float = 0.15
    tie_qk: bool = False
    calibration_steps: int = 16  # LBFGS steps (App. A.5)
    seed: int = 0
    # Skip mask training when the unpruned model's loss on the fit pairs exceeds this multiple of the
    # target (the task is not learned; pruning can lower a loss a little, not by this much). 0 = never skip.
    skip_above_target_factor: float = 3.0
    # Discretization (issue 22). "paper": rank by final τ, bisect over every unit (App. A.5, bit for bit
    # as before). "bisected": the same ranking, bisection within the trained circuit (τ > 0) when that
    # circuit meets the target (past it loss(k) rises). "refined" (default since session 17): bisected to
    # the target − ``refine_margin``, then kept units dropped while the loss on ``refine_pairs`` check
    # pairs (the fit pairs, then training pairs) stays ≤ that bound (the margin, in nats: a circuit that
    # ends right at the target on the check pairs lands above it on held-out pairs); ``refine_batch``
    # candidates per batched forward. ``refine_method``: "attribution" drops groups in the order of
    # their estimated loss changes (refinement.py); "greedy" tries every kept unit alone.
    discretization: str = "refined"  # measured on three circuits (docs/pruning.md, point 7)
    refine_pairs: int = 384
    refine_batch: int = 8
    refine_margin: float = 0.05
    refine_method: str = "attribution"

    DISCRETIZATIONS = ("paper", "bisected", "refined")
    REFINE_METHODS = ("greedy", "attribution")

    SEARCHABLE = ("k_coef", "init_noise_scale", "init_noise_bias", "wd", "lr", "inv_beta2", "lr_warmup_frac", "heaviside_temp")

    def __post_init__(self) -> None:
        positive = ("k_coef", "init_noise_scale", "lr", "heaviside_temp", "grad_clip", "target_loss")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected > 0, got {getattr(self, name)!r}")
        if not 0 < self.inv_beta2 < 1:
            raise ValueError(f"inv_beta2: expected in (0, 1), got {self.inv_beta2!r}")
        if not 0 <= self.lr_warmup_frac < 1:
            raise ValueError(f"lr_warmup_frac: expected in [0, 1), got {self.lr_warmup_frac!r}")
        if self.skip_above_target_factor < 0:
            raise ValueError(f"skip_above_target_factor: expected >= 0, got {self.skip_above_target_factor!r}")
        if not 0 <= self.refine_margin < self.target_loss:
            raise ValueError(f"refine_margin: expected in [0, target_loss={self.target_loss}), got {self.refine_margin!r}")
        if self.wd < 0:
            raise ValueError(f"wd: expected >= 0, got {self.wd!r}")
        if self.discretization not in self.DISCRETIZATIONS:
            raise ValueError(f"discretization: expected one of {self.DISCRETIZATIONS}, got {self.discretization!r}")
        if self.refine_method not in self.REFINE_METHODS:
            raise ValueError(f"refine_method: expected one of {self.REFINE_METHODS}, got {self.refine_method!r}")
        if self.refine_method == "attribution" and self.refine_batch < 2:
            raise ValueError(f"refine_batch: attribution refinement needs >= 2 candidates per forward, got {self.refine_batch!r}")
        for name in ("steps", "batch_pairs", "refine_pairs", "refine_batch"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)!r}")
        if not isinstance(self.calibration_steps, int) or self.calibration_steps < 0:
            raise ValueError(f"calibration_steps: expected a non-negative integer, got {self.calibration_steps!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PruningConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"pruning config: unknown field(s) {unknown}")
        return cls(**data)

    def replace(self, **changes: Any) -> "PruningConfig":
        return PruningConfig.from_dict({**self.to_dict(), **changes})
