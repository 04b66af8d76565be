"""Logit calibration after discretization (App. A.5: a scale + shift fit with 16 LBFGS steps).

A shift added to every logit changes nothing under softmax, so we calibrate the quantity the task
loss reads: the oriented logit difference ``d = logit[A] − logit[B]`` between the task's two
completions (A = the first). Calibrated, ``d' = a·d + b``: ``a`` rescales confidence and ``b`` is a
bias toward A. A sequence whose correct completion is A has loss ``softplus(−d')``, otherwise
``softplus(d')``. If LBFGS fails to lower the loss on the fitting pairs, the identity is kept, so
calibration never increases the loss it was fit on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Calibration:
    scale: float = 1.0
    shift: float = 0.0

    def loss(self, oriented: Tensor, positive: Tensor) -> float:
        return float(_loss(oriented, positive, torch.tensor(self.scale), torch.tensor(self.shift)))


def _loss(oriented: Tensor, positive: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    d = scale * oriented.double() + shift
    sign = positive.double() * 2 - 1
    return F.softplus(-sign * d).mean()


def oriented_difference(correct_minus_incorrect: Tensor, positive: Tensor) -> Tensor:
    """logit[A] − logit[B] from logit[correct] − logit[incorrect]."""
    return torch.where(positive, correct_minus_incorrect, -correct_minus_incorrect)


def fit_calibration(oriented: Tensor, positive: Tensor, steps: int = 16) -> Calibration:
    oriented, positive = oriented.detach(), positive.detach()
    identity = Calibration()
    if steps == 0:
        return identity
    scale = torch.ones((), dtype=torch.float64, requires_grad=True)
    shift = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([scale, shift], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = _loss(oriented, positive, scale, shift)
        loss.backward()
        return loss

    optimizer.step(closure)
    fitted = Calibration(float(scale.detach()), float(shift.detach()))
    if not (fitted.loss(oriented, positive) < identity.loss(oriented, positive)):
        return identity
    return fitted
