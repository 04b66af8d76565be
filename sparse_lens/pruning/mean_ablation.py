"""Per-node means over the pretraining distribution (paper Sec. 2.2: deleted nodes are mean-ablated).

The means are taken through the very same forward and hook points the masks use — after AbsTopK —
so an ablated node is replaced by the mean of exactly the value that would have flowed on.
We pool over every position of every sequence (the paper does not say; position-independent means
match "one mask per node, shared across all prompts and positions").
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor

from sparse_lens.pruning.model_adapter import adapter_for
from sparse_lens.pruning.nodes import node_sites


@torch.no_grad()
def compute_node_means(model, batches: Iterable[Tensor], max_tokens: int | None = None) -> dict[str, Tensor]:
    """Mean activation of every node site over the tokens in ``batches`` ([batch, pos] ids).

    Stops once ``max_tokens`` tokens have been seen (a partial last batch is trimmed by rows).
    """
    adapter_for(model)  # a clear error if the model lacks a node hook point
    sites = node_sites(model.cfg)
    sums = {s.name: torch.zeros(s.shape, dtype=torch.float64) for s in sites}
    seen = 0

    def accumulate(x: Tensor, hook, name: str) -> None:  # by site name: a TransformerBridge's alias
        sums[name] += x.reshape(-1, *x.shape[2:]).double().sum(0).cpu()  # hook is named otherwise

    hooks = [(s.name, lambda x, hook, name=s.name: accumulate(x, hook, name)) for s in sites]
    for batch in batches:
        if max_tokens is not None and seen >= max_tokens:
            break
        if max_tokens is not None and seen + batch.numel() > max_tokens:
            rows = max(1, (max_tokens - seen) // batch.shape[1])
            batch = batch[:rows]
        model.run_with_hooks(batch, return_type=None, fwd_hooks=hooks)
        seen += batch.numel()
    if seen == 0:
        raise ValueError("batches: no tokens to compute node means from")
    dtype = model.cfg.dtype
    return {name: (total / seen).to(dtype) for name, total in sums.items()}
