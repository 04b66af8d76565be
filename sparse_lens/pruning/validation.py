"""Sufficiency and necessity of a circuit (paper Fig. 32), on held-out pairs.

- sufficiency: the circuit alone (every other node mean-ablated) — task loss, with and without the
  circuit's calibration; it should meet the target.
- necessity ("inverse pruning"): only the circuit's nodes mean-ablated — task loss, which should
  rise well above the full model's.
"""

from __future__ import annotations

import torch

from sparse_lens.pruning.calibration import oriented_difference
from sparse_lens.pruning.circuit import Circuit
from sparse_lens.pruning.task_batch import TaskBatch, chunked_difference, evaluate_task


@torch.no_grad()
def validate(model, circuit: Circuit, batch: TaskBatch) -> dict[str, float]:
    full_loss, full_acc = evaluate_task(model, batch)
    d = chunked_difference(model, batch, circuit.hooks())
    oriented = oriented_difference(d, batch.positive)
    suff_loss = circuit.calibration.__class__().loss(oriented, batch.positive)
    suff_cal = circuit.calibration.loss(oriented, batch.positive)
    nec_loss, nec_acc = evaluate_task(model, batch, circuit.complement_hooks())
    return {
        "full_loss": full_loss,
        "full_accuracy": full_acc,
        "sufficiency_loss": suff_loss,
        "sufficiency_loss_calibrated": suff_cal,
        "sufficiency_accuracy": float((d > 0).float().mean()),
        "necessity_loss": nec_loss,
        "necessity_accuracy": nec_acc,
        "necessity_loss_increase": nec_loss - full_loss,
    }
