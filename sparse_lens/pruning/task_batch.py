"""A batch of task sequences, and the authors' task loss (their `last_token_contrast_loss_fn`).

Each task pair gives two sequences; at its last real token each must prefer its own completion over
the other's. With ``d = logit[correct] − logit[incorrect]``, the loss of a sequence is the binary
cross-entropy of the two-way softmax, ``−log σ(d) = softplus(−d)``; the task loss is the mean over
sequences and accuracy the fraction with ``d > 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor


@dataclass
class TaskBatch:
    tokens: Int[Tensor, "seq pos"]  # right-padded to the batch's longest prompt
    last: Int[Tensor, "seq"]  # index of each sequence's last real token
    correct: Int[Tensor, "seq"]  # token id the sequence should predict next
    incorrect: Int[Tensor, "seq"]  # the other completion
    positive: Bool[Tensor, "seq"]  # True where `correct` is the task's first completion

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def select(self, rows: Tensor) -> "TaskBatch":
        rows = torch.as_tensor(rows)
        width = int(self.last[rows].max()) + 1
        return TaskBatch(self.tokens[rows, :width], self.last[rows], self.correct[rows], self.incorrect[rows], self.positive[rows])


def logit_difference(logits: Float[Tensor, "seq vocab"], batch: TaskBatch) -> Float[Tensor, "seq"]:
    rows = torch.arange(len(batch), device=logits.device)
    return logits[rows, batch.correct] - logits[rows, batch.incorrect]


def task_loss_from_difference(d: Float[Tensor, "seq"]) -> Tensor:
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
