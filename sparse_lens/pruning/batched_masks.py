"""Several mask trainings as one batched computation over the shared frozen model (issue 25 item 5).

A sweep round trains masks for several hyperparameter suggestions on the same model and task. Run
separately, each process holds its own copy of the model and runs its own small forward passes. Here
the runs' minibatches are stacked into one batch: every row belongs to one run, and one hook per node
site applies *that run's* mask to *its* rows (``x ↦ m_r·x + (1 − m_r)·mean``). Rows never interact in
the forward, so each run sees exactly the activations it would see alone; each run keeps its own τ,
its own AdamW (lr, betas, weight decay), schedule, gradient clipping, Heaviside temperature, k_coef and
random stream (initial noise and minibatch draws), so the trained τ equal those of `train_masks` run
one config at a time, up to the order of floating-point sums.

    histories = train_masks_batched(model, [NodeMasks(...) for _ in cfgs], data.train, cfgs)
    circuits = prune_batched(model, data, means, cfgs, task="single_double_quote")
"""

from __future__ import annotations

import math
import time
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from sparse_lens.pruning.config import PruningConfig
from sparse_lens.pruning.mask_training import TrainingHistory, frozen_weights, lr_at
from sparse_lens.pruning.masks import Hook, NodeMasks
from sparse_lens.pruning.pipeline import circuit_from_masks, new_masks, prepare, skips
from sparse_lens.pruning.task_batch import (
    ROWS_PER_CHUNK, TaskBatch, length_chunks, logit_difference, task_logits)


def _check(masks: Sequence[NodeMasks], cfgs: Sequence[PruningConfig], train: TaskBatch) -> None:
    if not cfgs or len(masks) != len(cfgs):
        raise ValueError(f"masks, cfgs: expected one NodeMasks per config (at least one), got {len(masks)} and {len(cfgs)}")
    if len({c.steps for c in cfgs}) != 1:
        raise ValueError(f"cfgs: batched runs must train for the same number of steps, got {sorted({c.steps for c in cfgs})}")
    if len({tuple(s.name for s in m.sites) for m in masks}) != 1:
        raise ValueError("masks: batched runs must cover the same node sites (the same model)")
    if len(train) % 2:
        raise ValueError("train: expected an even number of sequences (positive, negative) pairs")


def _row_mask_hooks(masks: Sequence[NodeMasks], runs: dict[str, Int[Tensor, "rows"]]) -> list[Hook]:
    """One hook per site: each row gets its run's mask (``runs["rows"]``: the run of every row of the
    forward being run, set before it)."""
    hooks = []
    for site in masks[0].sites:
        means = torch.stack([m.means[site.name] for m in masks])  # [runs, *node]

        def hook(x: Tensor, hook=None, name=site.name, means=means) -> Tensor:
            per_run = torch.stack([m.mask(name) for m in masks]).to(x)  # [runs, *node]
            rows = runs["rows"]
            # x: [rows, pos, *node]; the row's mask and mean broadcast over positions
            m = per_run[rows].unsqueeze(1)
            mu = means.to(x)[rows].unsqueeze(1)
            return x * m + (1 - m) * mu

        hooks.append((site.name, hook))
    return hooks


def train_masks_batched(model, masks: Sequence[NodeMasks], train: TaskBatch, cfgs: Sequence[PruningConfig],
                        rows_per_chunk: Optional[int] = None) -> list[TrainingHistory]:
    """`train_masks` for every (masks, cfg) at once: one forward and backward per step over all runs'
    minibatches. Returns each run's history (its ``seconds`` is the shared wall time)."""
    _check(masks, cfgs, train)
    rows_per_chunk = rows_per_chunk or ROWS_PER_CHUNK * len(cfgs)
    generators = [torch.Generator().manual_seed(c.seed) for c in cfgs]
    optimizers = []
    for m, c, g in zip(masks, cfgs, generators):
        m.init_(c.init_noise_bias, c.init_noise_scale, g)
        optimizers.append(torch.optim.AdamW(m.parameters(), lr=c.lr, betas=(c.beta1, 1 - c.inv_beta2), weight_decay=c.wd))
    n_pairs = len(train) // 2
    histories = [TrainingHistory() for _ in cfgs]
    runs: dict[str, Tensor] = {}
    hooks = _row_mask_hooks(masks, runs)
    start = time.perf_counter()
    with frozen_weights(model):
        for step in range(cfgs[0].steps):
            picked, owner = [], []
            for k, (c, g) in enumerate(zip(cfgs, generators)):
                pairs = torch.randint(0, n_pairs, (min(c.batch_pairs, n_pairs),), generator=g)
                picked.append(torch.stack([2 * pairs, 2 * pairs + 1], dim=1).reshape(-1))
                owner.append(torch.full((len(picked[-1]),), k))
            batch, owner = train.select(torch.cat(picked)), torch.cat(owner)
            run_rows = torch.bincount(owner, minlength=len(cfgs)).float()
            for opt, c in zip(optimizers, cfgs):
                opt.zero_grad(set_to_none=True)
                for group in opt.param_groups:
                    group["lr"] = lr_at(step, c)
            task = torch.zeros(len(cfgs))
            for rows in length_chunks(batch, rows_per_chunk):
                chunk, chunk_owner = batch.select(rows), owner[rows.to(owner.device)]
                runs["rows"] = chunk_owner.to(batch.tokens.device)
                d = logit_difference(task_logits(model, chunk, hooks), chunk)
                losses: Float[Tensor, "rows"] = F.softplus(-d.float())  # per row; its mean is task_loss_from_difference
                per_run = torch.zeros(len(cfgs)).index_add(0, chunk_owner, losses.cpu()) / run_rows
                per_run.sum().backward()  # each run's τ only reaches its own rows
                task += per_run.detach()
            for k, (m, opt, c) in enumerate(zip(masks, optimizers, cfgs)):
                kept = m.expected_count()
                (c.k_coef * kept).backward()
                torch.nn.utils.clip_grad_norm_(m.parameters(), c.grad_clip)
                opt.step()
                m.clamp_()
                histories[k].task_loss.append(float(task[k]))
                histories[k].kept.append(float(kept.detach()))
                if not math.isfinite(histories[k].task_loss[-1]):
                    raise FloatingPointError(f"mask training (run {k}): task loss became {histories[k].task_loss[-1]} "
                                             f"at step {step}")
    seconds = time.perf_counter() - start
    for h in histories:
        h.seconds = seconds
    return histories


def prune_batched(model, data, means, cfgs: Sequence[PruningConfig], task: str = "", model_name: str = ""):
    """`prune` for every config, the mask training batched (`train_masks_batched`); discretization,
    calibration and validation then run per config. Returns one `Circuit` per config."""
    start = time.perf_counter()
    data, full_fit_loss = prepare(model, data)
    masks = [new_masks(model, means, c) for c in cfgs]
    skipped = [skips(c, full_fit_loss) for c in cfgs]
    trained = [k for k, s in enumerate(skipped) if not s]
    histories: list[Optional[TrainingHistory]] = [None] * len(cfgs)
    if trained:
        for k, h in zip(trained, train_masks_batched(model, [masks[k] for k in trained], data.train,
                                                     [cfgs[k] for k in trained])):
            histories[k] = h
    return [circuit_from_masks(model, data, means, c, m, h, full_fit_loss, task, model_name, start)
            for c, m, h in zip(cfgs, masks, histories)]
