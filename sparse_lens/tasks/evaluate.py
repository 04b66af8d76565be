"""Evaluate a model on tasks: task loss, accuracy and number of pairs.

The model contract (that of `HookedSparseTransformer`, duck-typed): ``model(tokens)`` returns logits
[batch, pos, vocab] (a ``logit_positions=`` keyword, if ``forward`` accepts it, is used to compute
logits only at the last prompt positions), ``model.tokenizer`` is the tokenizer and
``model.cfg.n_ctx`` the context length."""

from __future__ import annotations

import inspect
import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Optional, Sequence, Union

import torch
from einops import rearrange
from jaxtyping import Float
from torch import Tensor

from sparse_lens.tasks.base import Task, TaskPair
from sparse_lens.tasks.loss import last_logits, task_loss
from sparse_lens.tasks.registry import get_task, list_tasks
from sparse_lens.tasks.tokenize import TokenizedPairs, tokenize_pairs


@dataclass
class TaskResult:
    """`loss` / `accuracy` over all rows; `loss_positive` / `loss_negative` over the positive and the
    negative prompts alone (each pair gives one of each, so `loss` is their mean): which side of the
    task the model gets wrong, e.g. a model that never answers the rarer completion. `loss_stderr` is
    the standard error of `loss` over the pairs (sample standard deviation of the per-pair losses /
    √n_pairs): how far another draw of as many test pairs could move it. NaN below two pairs."""

    task: str
    loss: float
    accuracy: float
    n_pairs: int
    split: str = "test"
    error: Optional[str] = None
    loss_positive: float = float("nan")
    loss_negative: float = float("nan")
    loss_stderr: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        return torch.device("cpu")


def _accepts_logit_positions(model: Any) -> bool:
    forward = getattr(model, "forward", model)
    try:
        return "logit_positions" in inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return False


@torch.no_grad()
def model_logits(model: Any, batch: TokenizedPairs, batch_size: int = 64) -> Tensor:
    """[rows, vocab] logits at each row's last real token (float32, on the CPU)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
    device = _device(model)
    by_position = _accepts_logit_positions(model)
    out: list[Tensor] = []
    for start in range(0, len(batch), batch_size):
        part = batch.select(torch.arange(start, min(start + batch_size, len(batch)))).to(device)
        if by_position:
            logits = model(part.tokens, logit_positions=part.last)
        else:
            logits = model(part.tokens)
            if logits.ndim != 3 or logits.shape[:2] != part.tokens.shape:
                raise ValueError(
                    f"model: expected logits [batch, pos, vocab] for tokens {tuple(part.tokens.shape)}, got {tuple(logits.shape)}"
                )
            logits = last_logits(logits, part.last)
        out.append(logits.float().cpu())
    return torch.cat(out)


def evaluate_pairs(
    model: Any,
    pairs: Sequence[TaskPair],
    task_name: str = "",
    batch_size: int = 64,
    split: str = "test",
) -> TaskResult:
    """Loss and accuracy of `model` on the given pairs."""
    n_ctx = getattr(getattr(model, "cfg", None), "n_ctx", None)
    batch = tokenize_pairs(pairs, model.tokenizer, n_ctx=n_ctx, task_name=task_name)
    logits = model_logits(model, batch, batch_size)
    losses, correct = task_loss(logits, batch.target, batch.alternative, reduction="none")
    return TaskResult(
        task=task_name, loss=float(losses.mean()), accuracy=float(correct.mean()), n_pairs=len(pairs), split=split,
        loss_positive=float(losses[batch.positive].mean()), loss_negative=float(losses[~batch.positive].mean()),
        loss_stderr=standard_error(per_pair(losses)),
    )  # fmt: skip


def per_pair(row_losses: Float[Tensor, "rows"]) -> Float[Tensor, "pairs"]:
    """Each pair's loss: the mean of its positive and negative rows (rows come as pos_0, neg_0, ...)."""
    return rearrange(row_losses, "(pair side) -> pair side", side=2).mean(dim=1)


def standard_error(values: Float[Tensor, "n"]) -> float:
    """Standard error of the mean of `values` (sample std / √n); NaN for fewer than two values."""
    n = values.numel()
    return float(values.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")


def evaluate_task(
    model: Any,
    task: Union[str, Task],
    n_pairs: int = 200,
    seed: int = 0,
    split: str = "test",
    batch_size: int = 64,
    max_chars: Optional[int] = None,
) -> TaskResult:
    """Generate `n_pairs` pairs of `task` (prompts fitting the model's n_ctx) and evaluate on them.

    ``max_chars`` defaults to 3 × n_ctx; prompts longer than n_ctx tokens are skipped during
    generation."""
    task = get_task(task)
    n_ctx = int(model.cfg.n_ctx)
    pairs = task.generate(
        n_pairs, seed=seed, split=split, max_chars=max_chars or 3 * n_ctx, tokenizer=model.tokenizer, max_tokens=n_ctx,
    )  # fmt: skip
    return evaluate_pairs(model, pairs, task_name=task.name, batch_size=batch_size, split=split)


def evaluate_tasks(
    model: Any,
    tasks: Optional[Iterable[Union[str, Task]]] = None,
    n_pairs: int = 200,
    seed: int = 0,
    split: str = "test",
    batch_size: int = 64,
    max_chars: Optional[int] = None,
    raise_errors: bool = False,
) -> list[TaskResult]:
    """`evaluate_task` for each task: a name, a Task, or a list of them (default: all registered).
    A task that cannot be posed under the model's tokenizer (ValueError, e.g. a completion that is
    not a single token) gets a result with ``error`` set and NaN loss, unless ``raise_errors``."""
    if isinstance(tasks, (str, Task)):  # one task (a string is a name, not a list of one-letter names)
        tasks = [tasks]
    chosen = list_tasks() if tasks is None else [get_task(t) for t in tasks]
    results = []
    for task in chosen:
        try:
            results.append(evaluate_task(model, task, n_pairs, seed, split, batch_size, max_chars))
        except (ValueError, RuntimeError) as err:
            if raise_errors:
                raise
            results.append(TaskResult(task.name, float("nan"), float("nan"), 0, split, error=str(err).splitlines()[0]))
    return results


def format_results(results: Sequence[TaskResult]) -> str:
    """A plain-text table: task, loss, its standard error, accuracy, pairs (and the error, if any).
    The mean row's standard error treats the tasks' test sets as independent."""
    rows = [("task", "loss", "± stderr", "accuracy", "pairs")]
    for r in results:
        if r.error:
            rows.append((r.task, "-", "-", "-", "0"))
        else:
            rows.append((r.task, f"{r.loss:.4f}", f"{r.loss_stderr:.4f}", f"{r.accuracy:.3f}", str(r.n_pairs)))
    good = [r for r in results if not r.error]
    footer = []
    if len(good) > 1:
        k = len(good)
        mean_se = math.sqrt(sum(r.loss_stderr**2 for r in good)) / k
        footer = [("mean", f"{sum(r.loss for r in good) / k:.4f}", f"{mean_se:.4f}",
                   f"{sum(r.accuracy for r in good) / k:.3f}", str(sum(r.n_pairs for r in good)))]  # fmt: skip
    w = [max(len(row[i]) for row in rows + footer) for i in range(5)]

    def line(row: tuple[str, ...]) -> str:
        return f"{row[0]:<{w[0]}}" + "".join(f"  {cell:>{x}}" for cell, x in zip(row[1:], w[1:]))

    rule = ["  ".join("-" * x for x in w)]
    lines = [line(rows[0])] + rule + [line(r) for r in rows[1:]] + (rule + [line(footer[0])] if footer else [])
    for r in results:
        if r.error:
            lines.append(f"error in {r.task}: {r.error}")
    return "\n".join(lines)
