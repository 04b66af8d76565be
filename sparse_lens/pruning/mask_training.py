"""Training the node masks (App. A.5): task loss + k_coef · (kept nodes), AdamW, clamped τ."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from sparse_lens.pruning.config import PruningConfig
from sparse_lens.pruning.masks import NodeMasks
from sparse_lens.pruning.task_batch import TaskBatch, length_chunks, logit_difference, task_logits, task_loss_from_difference


@dataclass
class TrainingHistory:
    task_loss: list[float] = field(default_factory=list)
    kept: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def steps_per_second(self) -> float:
        return len(self.task_loss) / self.seconds if self.seconds else float("nan")

    def diagnostics(self) -> dict[str, Any]:
        """The curves per optimizer step (``step`` counts from 1): task loss on the minibatch and the
        expected number of kept nodes (the penalty's count), for plots."""
        return {
            "step": list(range(1, len(self.task_loss) + 1)),
            "task_loss": list(self.task_loss),
            "kept": list(self.kept),
            "seconds": self.seconds,
        }


def lr_at(step: int, cfg: PruningConfig) -> float:
    """Linear warmup over ``lr_warmup_frac`` of the steps, then linear decay to 0."""
    warm = int(cfg.lr_warmup_frac * cfg.steps)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    return cfg.lr * max(0.0, (cfg.steps - step) / max(1, cfg.steps - warm))


@contextmanager
def frozen_weights(model):
    """The model's own parameters without gradients for the duration (only masks learn); each
    parameter's ``requires_grad`` is restored afterwards."""
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)


def train_masks(model, masks: NodeMasks, train: TaskBatch, cfg: PruningConfig,
                on_step: Optional[Callable[[int, NodeMasks], None]] = None) -> TrainingHistory:
    """Optimize τ on random minibatches of ``cfg.batch_pairs`` pairs from ``train``.

    ``on_step(step, masks)`` is called after every optimizer step (τ clamped), e.g. to record τ
    trajectories or kept counts; it must not change τ or draw from the global RNG.

    ``train`` rows come in pairs (2i, 2i+1) = (positive, negative) of pair i. The model's own
    parameters are frozen for the duration.
    """
    import time

    if len(train) % 2:
        raise ValueError("train: expected an even number of sequences (positive, negative) pairs")
    generator = torch.Generator().manual_seed(cfg.seed)
    masks.init_(cfg.init_noise_bias, cfg.init_noise_scale, generator)
    optimizer = torch.optim.AdamW(
        masks.parameters(), lr=cfg.lr, betas=(cfg.beta1, 1 - cfg.inv_beta2), weight_decay=cfg.wd
    )
    n_pairs = len(train) // 2
    history = TrainingHistory()
    start = time.perf_counter()
    with frozen_weights(model):
        hooks = masks.hooks()
        for step in range(cfg.steps):
            pairs = torch.randint(0, n_pairs, (min(cfg.batch_pairs, n_pairs),), generator=generator)
            rows = torch.stack([2 * pairs, 2 * pairs + 1], dim=1).reshape(-1)
            batch = train.select(rows)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, cfg)
            optimizer.zero_grad(set_to_none=True)
            # loss = mean softplus(−d) + k_coef · kept; the mean is accumulated over length-sorted chunks
            # (same gradient as one padded batch, about half the tokens).
            task = torch.zeros(())
            for rows in length_chunks(batch):
                chunk = batch.select(rows)
                d = logit_difference(task_logits(model, chunk, hooks), chunk)
                part = task_loss_from_difference(d) * (len(chunk) / len(batch))  # this chunk's share of the mean
                part.backward()
                task += part.detach()
            kept = masks.expected_count()
            (cfg.k_coef * kept).backward()
            torch.nn.utils.clip_grad_norm_(masks.parameters(), cfg.grad_clip)
            optimizer.step()
            masks.clamp_()
            if on_step is not None:
                on_step(step, masks)
            history.task_loss.append(float(task.detach()))
            history.kept.append(float(kept.detach()))
            if not math.isfinite(history.task_loss[-1]):
                raise FloatingPointError(f"mask training: task loss became {history.task_loss[-1]} at step {step}")
    history.seconds = time.perf_counter() - start
    return history
