"""Task loss of many variants of one circuit, batched: refinement's candidates (issue 22) and the
viewer's one-node ablations (issue 18) both ask "what is the loss with these few nodes changed?".

A variant differs from a **base** circuit at a few nodes. Nothing upstream of the first forward
*stage* it changes (stage 2l: block l's attention half, 2l + 1: its MLP half) differs from the
base, so with our model its forward starts from the base's residual stream there
(``start_at_layer``), computed once per rows. Variants that start at the same stage share one
forward: the rows are repeated once per variant and each copy gets its own masks from the site hooks
(``torch.where`` on boolean masks: exactly keep-or-mean). Rows run in short length-sorted chunks, so a
chunk is barely padded, and each forward holds about ``rows_per_forward`` rows: large blocks of
activations are allocated and freed (mmap, page faults) on every forward and cost more system time
than they save (measured in docs/visualization.md, "Cost").

Any other TransformerLens model runs each variant's forward from the tokens (the same numbers).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from sparse_lens.model.hooked_sparse_transformer import HookedSparseTransformer
from sparse_lens.pruning.model_adapter import adapter_for
from sparse_lens.pruning.nodes import NodeSite, node_sites
from sparse_lens.pruning.task_batch import TaskBatch, length_chunks
from sparse_lens.tasks.loss import logit_difference

BinaryMasks = dict[str, Bool[Tensor, "*node"]]

ATTENTION_HALF = {"attn_read", "q", "k", "v", "attn_write"}
ROWS_PER_FORWARD = 128  # rows (variants × chunk rows) per batched forward
ROWS_PER_CHUNK = 16


def node_stage(site: NodeSite) -> int:
    """The forward stage holding a node site: 2·layer for the attention half, 2·layer + 1 for the MLP half."""
    return 2 * site.layer + (0 if site.kind in ATTENTION_HALF else 1)


def stage_site(stage: int) -> str:
    """The residual site entering a stage (where a forward can start)."""
    return f"blocks.{stage // 2}.hook_resid_pre" if stage % 2 == 0 else f"blocks.{stage // 2}.hook_resid_mid"


def keep_or_mean(keep: Tensor, mean: Tensor) -> Callable:
    """The mean-ablation hook of a boolean mask (`sparse_lens.pruning.masks.ablation_hook` computes
    ``x·m + (1 − m)·mean``, which for m in {0, 1} is exactly this), in one pass over the activation."""

    def hook(x: Tensor, hook=None) -> Tensor:
        return torch.where(keep, x, mean.to(x.dtype))

    return hook


def first_stage_changed(base: BinaryMasks, variant: BinaryMasks, stage_of: dict[str, int], n_stages: int) -> int:
    """The first stage where ``variant``'s masks differ from ``base``'s (``n_stages``: nowhere)."""
    changed = [stage_of[name] for name, m in base.items() if not torch.equal(variant[name], m)]
    return min(changed, default=n_stages)


def _loss_sums(logits: Float[Tensor, "rows vocab"], chunk: TaskBatch, G: int) -> Float[Tensor, "variant"]:
    """Sum over the chunk's rows of softplus(−d), per variant (rows come as G equal blocks)."""
    d = logit_difference(logits, chunk.target.repeat(G), chunk.alternative.repeat(G))
    return F.softplus(-d.double()).reshape(G, len(chunk)).sum(1).cpu()


@torch.no_grad()
def variant_losses(
    model, batch: TaskBatch, base: BinaryMasks, variants: Sequence[BinaryMasks], means: dict[str, Tensor],
    rows_per_forward: int = ROWS_PER_FORWARD, rows_per_chunk: int = ROWS_PER_CHUNK,
    progress: Optional[Callable[[int], None]] = None, branch: bool = True,
) -> tuple[float, list[float]]:
    """(task loss of ``base``, task loss of each variant) on ``batch``, every circuit mean-ablating
    (``means``) the nodes its masks leave out. ``progress`` is called with the rows of each forward;
    ``branch=False`` runs every variant from the tokens (the benchmark's baseline)."""
    if rows_per_forward < 1:
        raise ValueError(f"rows_per_forward: expected a positive integer, got {rows_per_forward!r}")
    sites = [s for s in node_sites(model.cfg) if s.name in base]
    stage_of = {s.name: node_stage(s) for s in sites}
    n_stages = 2 * model.cfg.n_layers
    branches = branch and isinstance(model, HookedSparseTransformer)  # start mid-stream at a site name
    first = [first_stage_changed(base, v, stage_of, n_stages) if branches else 0 for v in variants]
    by_stage: dict[int, list[int]] = {}
    for i, stage in enumerate(first):
        by_stage.setdefault(stage, []).append(i)
    base_hooks = [(name, keep_or_mean(m, means[name])) for name, m in base.items() if not bool(m.all())]
    adapter = adapter_for(model)
    totals = torch.zeros(len(variants) + 1, dtype=torch.float64)  # [0] = the base

    for rows in length_chunks(batch, rows_per_chunk):
        chunk = batch.select(rows)
        R = len(chunk)
        residuals: dict[str, Tensor] = {}

        def keep_residual(x: Tensor, hook) -> None:
            residuals[hook.name] = x

        keeps = [(stage_site(s), keep_residual) for s in by_stage if 0 < s < n_stages] if branches else []
        with model.hooks(fwd_hooks=base_hooks + keeps):
            base_sums = _loss_sums(adapter.last_token_logits(chunk.tokens, chunk.last), chunk, 1)
        totals[0] += base_sums[0]
        for stage, members in sorted(by_stage.items()):
            if stage == n_stages:  # the same masks as the base
                totals[torch.tensor(members) + 1] += base_sums[0]
                continue
            G_max = max(1, rows_per_forward // R)
            for g0 in range(0, len(members), G_max):
                group = members[g0 : g0 + G_max]
                G = len(group)
                hooks = []
                for s in sites:
                    if stage_of[s.name] < stage:
                        continue  # upstream of the start: already in the residual
                    masks = [variants[i][s.name] for i in group]
                    if all(torch.equal(m, base[s.name]) for m in masks):
                        if not bool(base[s.name].all()):
                            hooks.append((s.name, keep_or_mean(base[s.name], means[s.name])))
                        continue
                    keep = torch.stack(masks).repeat_interleave(R, 0)[:, None]  # [G·R, 1, *node]
                    hooks.append((s.name, keep_or_mean(keep, means[s.name])))
                with model.hooks(fwd_hooks=hooks):
                    if stage == 0:
                        logits = adapter.last_token_logits(chunk.tokens.repeat(G, 1), chunk.last.repeat(G))
                    else:
                        logits = _from_stage(model, residuals[stage_site(stage)], stage, chunk, G)
                totals[torch.tensor(group) + 1] += _loss_sums(logits, chunk, G)
                if progress is not None:
                    progress(G * R)
    n = max(1, len(batch))
    return float(totals[0] / n), (totals[1:] / n).tolist()


def _from_stage(model, resid: Tensor, stage: int, chunk: TaskBatch, G: int) -> Float[Tensor, "rows vocab"]:
    """Our model's last-token logits from the residual entering ``stage``, repeated for G variants. A
    residual after the last block's narrowing ([R, 1, d]: only the last token) runs on its own."""
    narrowed = resid.shape[1] == 1 and chunk.tokens.shape[1] > 1
    tokens = chunk.tokens.gather(1, chunk.last[:, None]) if narrowed else chunk.tokens
    positions = torch.zeros(G * len(chunk), dtype=torch.long) if narrowed else chunk.last.repeat(G)
    return model(resid.repeat(G, 1, 1), start_at_layer=stage_site(stage), tokens=tokens.repeat(G, 1),
                 logit_positions=positions)
