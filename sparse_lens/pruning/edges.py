"""Edges of a circuit: nonzero weights (or residual-stream links) between two kept nodes.

Within block l (R1/R2 = attention/MLP residual reads, A/M = attention/MLP residual writes)::

    R1 --W_Q--> q --(q·k, same head & channel)--> k <--W_K-- R1
    R1 --W_V--> v --W_O--> A          R2 --W_in--> neuron --W_out--> M

Across blocks, through the residual stream (channel j to channel j):

    embedding --> every read R1/R2 of channel j   (if W_E[:, j] or W_pos[:, j] has a nonzero)
    write A/M of layer l --> every later read of channel j whose norm gain w[j] != 0
    write A/M --> unembedding, for channel j with ln_final.w[j] != 0 and a nonzero in W_U[j]

Each counted once per (source node, destination node) pair. The bigram table is outside the
circuit (a dense lookup of the input token) and has no edges.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import Tensor

Masks = dict[str, Tensor]


def _nz(t: Tensor) -> Tensor:
    return t.detach() != 0


@torch.no_grad()
def count_edges(model, masks: Masks) -> Counter:
    """Edge counts keyed by ``"{kind}@L{layer}"`` (and ``"embed->read"``, ``"write->unembed"``)."""
    cfg = model.cfg
    counts: Counter = Counter()
    reads = []  # (order, layer, kind, channel mask, norm gain)
    writes = []  # (order, layer, kind, channel mask)
    for l, block in enumerate(model.blocks):
        b = f"blocks.{l}."
        r1, r2 = masks[b + "ln1.hook_normalized"], masks[b + "ln2.hook_normalized"]
        q, k, v = (masks[b + f"attn.hook_{x}"] for x in "qkv")
        a, n, m = masks[b + "hook_attn_out"], masks[b + "mlp.hook_post"], masks[b + "hook_mlp_out"]
        attn, mlp = block.attn, block.mlp
        for name, W, ch in (("read->q", attn.W_Q, q), ("read->k", attn.W_K, k), ("read->v", attn.W_V, v)):
            counts[f"{name}@L{l}"] += int((_nz(W) & r1[None, :, None] & ch[:, None, :]).sum())
        counts[f"q-k@L{l}"] += int((q & k).sum())
        counts[f"v->write@L{l}"] += int((_nz(attn.W_O) & v[:, :, None] & a[None, None, :]).sum())
        counts[f"read->neuron@L{l}"] += int((_nz(mlp.W_in) & r2[:, None] & n[None, :]).sum())
        counts[f"neuron->write@L{l}"] += int((_nz(mlp.W_out) & n[:, None] & m[None, :]).sum())
        reads += [(2 * l, l, r1, _nz(block.ln1.w)), (2 * l + 1, l, r2, _nz(block.ln2.w))]
        writes += [(2 * l, l, a), (2 * l + 1, l, m)]

    embed_channels = _nz(model.W_E).any(0)
    if cfg.positional_embeddings:
        embed_channels |= _nz(model.W_pos).any(0)
    for _, l, read, gain in reads:
        counts[f"embed->read@L{l}"] += int((read & gain & embed_channels).sum())
    for w_order, wl, write in writes:
        for r_order, rl, read, gain in reads:
            if r_order > w_order:  # a read strictly after the write (attn_out -> same layer's MLP read too)
                counts[f"write->read@L{wl}->L{rl}"] += int((write & read & gain).sum())
    unembed_channels = _nz(model.ln_final.w) & _nz(model.W_U).any(1)
    for _, l, write in writes:
        counts[f"write->unembed@L{l}"] += int((write & unembed_channels).sum())
    return counts


def summarize_edges(counts: Counter) -> dict[str, int]:
    """Totals by edge kind (layers summed) plus ``"total"``."""
    out: Counter = Counter()
    for key, value in counts.items():
        out[key.split("@")[0]] += value
    out["total"] = sum(counts.values())
    return dict(out)
