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

`edge_groups` lists every edge with its weight (the viewer draws them); `count_edges` counts the
same list, so both always agree.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Optional

import torch
from jaxtyping import Float, Int
from torch import Tensor

from sparse_lens.pruning.model_adapter import adapter_for

Masks = dict[str, Tensor]

EMBED = "embed"  # the source of embed->read edges (the token embedding, one pseudo-node)
UNEMBED = "unembed"  # the destination of write->unembed edges (the unembedding, one pseudo-node)


@dataclass(frozen=True)
class EdgeGroup:
    """Edges of one kind between two node sites (or the embed / unembed pseudo-nodes).

    ``source_index`` / ``target_index`` index the node inside its site ([n, 1] for residual and
    neuron sites, [n, 2] = (head, channel) for q/k/v; [n, 0] for embed / unembed). ``weight`` is the
    model's weight on the connection: W_Q/W_K/W_V[h, read, c], W_O[h, c, write], W_in[read, neuron],
    W_out[neuron, write]; for a residual link the norm gain of the read (``ln_final.w`` for the
    unembedding) that multiplies channel j on its way; None for q-k pairs (a product, no weight).
    """

    key: str  # "{kind}@L{layer}", as count_edges keys it
    source: str
    target: str
    source_index: Int[Tensor, "n a"]
    target_index: Int[Tensor, "n b"]
    weight: Optional[Float[Tensor, "n"]]

    def __len__(self) -> int:
        return int(self.source_index.shape[0])


def _nz(t: Tensor) -> Tensor:
    return t.detach() != 0


def _pairs(connected: Tensor, n_source_dims: int) -> tuple[Tensor, Tensor]:
    """Indices of the True entries of ``connected`` split into (source index, target index)."""
    idx = connected.nonzero()
    return idx[:, :n_source_dims], idx[:, n_source_dims:]


@torch.no_grad()
def edge_groups(model, masks: Masks) -> list[EdgeGroup]:
    """Every edge between kept nodes (``masks``: site -> bool, True = kept), grouped by kind and layer."""
    pm = adapter_for(model)
    groups: list[EdgeGroup] = []
    reads = []  # (order, layer, site, channel mask, norm gain)
    writes = []  # (order, layer, site, channel mask)
    for l in range(pm.cfg.n_layers):
        w = pm.block_weights(l)
        b = f"blocks.{l}."
        s_r1, s_r2, s_a, s_n, s_m = (b + x for x in ("ln1.hook_normalized", "ln2.hook_normalized", "hook_attn_out",
                                                      "mlp.hook_post", "hook_mlp_out"))
        s_q, s_k, s_v = (b + f"attn.hook_{x}" for x in "qkv")
        r1, r2, a, n, m = (masks[s].to(w.W_in.device) for s in (s_r1, s_r2, s_a, s_n, s_m))
        q, k, v = (masks[s].to(w.W_in.device) for s in (s_q, s_k, s_v))
        for name, site, W, ch in (("read->q", s_q, w.W_Q, q), ("read->k", s_k, w.W_K, k),
                                  ("read->v", s_v, w.W_V, v)):
            # W [head, d_model, d_head]: edge read r -> channel (h, c)
            idx = (_nz(W) & r1[None, :, None] & ch[:, None, :]).nonzero()  # (h, r, c)
            groups.append(EdgeGroup(f"{name}@L{l}", s_r1, site, idx[:, 1:2], idx[:, [0, 2]],
                                    W[idx[:, 0], idx[:, 1], idx[:, 2]].float()))
        idx = (q & k).nonzero()
        groups.append(EdgeGroup(f"q-k@L{l}", s_q, s_k, idx, idx.clone(), None))
        idx = (_nz(w.W_O) & v[:, :, None] & a[None, None, :]).nonzero()  # (h, c, write)
        groups.append(EdgeGroup(f"v->write@L{l}", s_v, s_a, idx[:, :2], idx[:, 2:],
                                w.W_O[idx[:, 0], idx[:, 1], idx[:, 2]].float()))
        src, dst = _pairs(_nz(w.W_in) & r2[:, None] & n[None, :], 1)
        groups.append(EdgeGroup(f"read->neuron@L{l}", s_r2, s_n, src, dst, w.W_in[src[:, 0], dst[:, 0]].float()))
        src, dst = _pairs(_nz(w.W_out) & n[:, None] & m[None, :], 1)
        groups.append(EdgeGroup(f"neuron->write@L{l}", s_n, s_m, src, dst, w.W_out[src[:, 0], dst[:, 0]].float()))
        reads += [(2 * l, l, s_r1, r1, w.ln1_gain), (2 * l + 1, l, s_r2, r2, w.ln2_gain)]
        writes += [(2 * l, l, s_a, a), (2 * l + 1, l, s_m, m)]

    embed_channels = pm.embedding_channels()
    for _, l, site, read, gain in reads:
        ch = (read & _nz(gain) & embed_channels).nonzero()
        groups.append(EdgeGroup(f"embed->read@L{l}", EMBED, site, torch.zeros(len(ch), 0, dtype=torch.long), ch, gain[ch[:, 0]].float()))
    for w_order, wl, w_site, write in writes:
        for r_order, rl, r_site, read, gain in reads:
            if r_order > w_order:  # a read strictly after the write (attn_out -> same layer's MLP read too)
                ch = (write & read & _nz(gain)).nonzero()
                groups.append(EdgeGroup(f"write->read@L{wl}->L{rl}", w_site, r_site, ch, ch.clone(),
                                        gain[ch[:, 0]].float()))
    unembed_channels, final_gain = pm.unembedding_channels()
    for _, l, site, write in writes:
        ch = (write & unembed_channels).nonzero()
        groups.append(EdgeGroup(f"write->unembed@L{l}", site, UNEMBED, ch, torch.zeros(len(ch), 0, dtype=torch.long),
                                final_gain[ch[:, 0]].float()))
    return groups


def count_edges(model, masks: Masks) -> Counter:
    """Edge counts keyed by ``"{kind}@L{layer}"`` (and ``"embed->read"``, ``"write->unembed"``)."""
    counts: Counter = Counter()
    for group in edge_groups(model, masks):
        counts[group.key] += len(group)
    return counts


def summarize_edges(counts: Counter) -> dict[str, int]:
    """Totals by edge kind (layers summed) plus ``"total"``."""
    out: Counter = Counter()
    for key, value in counts.items():
        out[key.split("@")[0]] += value
    out["total"] = sum(counts.values())
    return dict(out)
