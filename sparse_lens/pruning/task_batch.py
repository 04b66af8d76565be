"""Task sequences as pruning sees them, and the task loss — both from `sparse_lens.tasks`.

A batch is a `sparse_lens.tasks.TokenizedPairs`: rows (2i, 2i+1) are the positive and negative
sequence of pair i, right-padded; ``last`` indexes each row's last real token. The loss is the
authors' ``last_token_contrast_loss_fn`` (see `sparse_lens.tasks.loss`): with
``d = logit[correct] − logit[incorrect]`` at the last token, the mean of ``softplus(−d)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from sparse_lens.tasks.loss import logit_difference as _logit_difference
from sparse_lens.tasks.tokenize import TokenizedPairs

TaskBatch = TokenizedPairs


def logit_difference(logits: Float[Tensor, "seq vocab"], batch: TaskBatch) -> Float[Tensor, "seq"]:
    """logit[correct] − logit[incorrect] per sequence."""
    return _logit_difference(logits, batch.target, batch.alternative)


def task_loss_from_difference(d: Float[Tensor, "seq"]) -> Tensor:
    """Mean of softplus(−d): the task loss `sparse_lens.tasks.task_loss` computes, from d."""
    return F.softplus(-d.float()).mean()


def task_logits(model, batch: TaskBatch, fwd_hooks=()) -> Float[Tensor, "seq vocab"]:
    """Logits at each sequence's last real token, under the given hooks."""
    with model.hooks(fwd_hooks=list(fwd_hooks)):
        return model(batch.tokens, logit_positions=batch.last)


def evaluate_task(model, batch: TaskBatch, fwd_hooks=()) -> tuple[float, float]:
    """(task loss, accuracy) under the given hooks."""
    with torch.no_grad():
        d = logit_difference(task_logits(model, batch, fwd_hooks), batch)
    return float(task_loss_from_difference(d)), float((d > 0).float().mean())
