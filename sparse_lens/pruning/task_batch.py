"""Task sequences as pruning sees them, and the task loss — both from `sparse_lens.tasks`.

A batch is a `sparse_lens.tasks.TokenizedPairs`: rows (2i, 2i+1) are the positive and negative
sequence of pair i, right-padded; ``last`` indexes each row's last real token. The loss is the
authors' ``last_token_contrast_loss_fn`` (see `sparse_lens.tasks.loss`): with
``d = logit[correct] − logit[incorrect]`` at the last token, the mean of ``softplus(−d)``.

Task prompts vary in length (a long tail up to n_ctx), so a random batch padded to its longest row
is mostly padding. `length_chunks` sorts a batch's rows by length and cuts them into chunks, each
trimmed to its own longest row: the same sequences and the same loss, about half the tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from sparse_lens.pruning.model_adapter import adapter_for
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
    """Logits at each sequence's last real token, under the given hooks (any TransformerLens model:
    `sparse_lens.pruning.model_adapter`)."""
    adapter = adapter_for(model)
    with model.hooks(fwd_hooks=list(fwd_hooks)):
        return adapter.last_token_logits(batch.tokens, batch.last)


ROWS_PER_CHUNK = 32


def length_chunks(batch: TaskBatch, rows_per_chunk: int = ROWS_PER_CHUNK) -> list[Int[Tensor, "rows"]]:
    """Row indices of ``batch``, sorted by length, in chunks of at most ``rows_per_chunk``."""
    if rows_per_chunk < 1:
        raise ValueError(f"rows_per_chunk: expected a positive integer, got {rows_per_chunk!r}")
    return list(torch.argsort(batch.last, stable=True).split(rows_per_chunk))


def chunked_difference(model, batch: TaskBatch, fwd_hooks=(), rows_per_chunk: int = ROWS_PER_CHUNK
                       ) -> Float[Tensor, "seq"]:
    """`logit_difference` of every row (in the batch's order), run in length-sorted chunks."""
    parts, order = [], []
    for rows in length_chunks(batch, rows_per_chunk):
        chunk = batch.select(rows)
        parts.append(logit_difference(task_logits(model, chunk, fwd_hooks), chunk))
        order.append(rows)
    d = torch.cat(parts)
    return d[torch.argsort(torch.cat(order))]


def evaluate_task(model, batch: TaskBatch, fwd_hooks=()) -> tuple[float, float]:
    """(task loss, accuracy) under the given hooks."""
    with torch.no_grad():
        d = chunked_difference(model, batch, fwd_hooks)
    return float(task_loss_from_difference(d)), float((d > 0).float().mean())
