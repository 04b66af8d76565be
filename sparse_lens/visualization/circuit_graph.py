"""A circuit as a graph for the viewer: its kept nodes and every edge between them, with weights.

The edges are `sparse_lens.pruning.edges.edge_groups` — the very list `count_edges` counts — so the
viewer always draws ``circuit.n_edges`` edges. Two pseudo-nodes stand for the token embedding
(source of every embed->read edge) and the unembedding (target of every write->unembed edge); they
are not circuit nodes and are not counted.

Edge weights are the model's weights on each connection (see `EdgeGroup`). A write->unembed edge
has no single weight (the unembedding is a row of ``W_U``); given the task's two completions A and B
its weight is ``ln_final.w[j] · (W_U[j, A] − W_U[j, B])``: how much channel j pushes the logit
difference the task loss reads, and so signed.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from sparse_lens.pruning.edges import EMBED, UNEMBED, edge_groups
from sparse_lens.pruning.nodes import NODE_KINDS, node_sites

# Short labels for node kinds (forward order within a block).
KIND_LABELS = {
    "attn_read": "attn read", "q": "q", "k": "k", "v": "v", "attn_write": "attn write",
    "mlp_read": "mlp read", "neuron": "neuron", "mlp_write": "mlp write",
}
EDGE_KINDS = ("read->q", "read->k", "read->v", "q-k", "v->write", "read->neuron", "neuron->write",
              "embed->read", "write->read", "write->unembed")


class CircuitMismatchError(ValueError):
    """A circuit file whose node sites do not fit the model it is being shown with."""


def check_circuit_fits(model, circuit, source: str = "circuit") -> None:
    """Raise `CircuitMismatchError` naming ``source`` unless the circuit has a mask and a mean of the
    right shape at exactly the model's node sites."""
    expected = {s.name: s.shape for s in node_sites(model.cfg)}
    model_name = circuit.model or "the model"
    missing = sorted(set(expected) - set(circuit.masks))
    extra = sorted(set(circuit.masks) - set(expected))
    if extra:
        raise CircuitMismatchError(
            f"{source}: made for another model — it has node sites {extra[:4]}{' ...' if len(extra) > 4 else ''} "
            f"that {model_name} ({model.cfg.n_layers} layers) does not have")
    if missing:
        raise CircuitMismatchError(
            f"{source}: missing masks for node sites {missing[:4]}{' ...' if len(missing) > 4 else ''} "
            f"({len(missing)} of {len(expected)}); the file is incomplete or made for another model")
    for name, shape in expected.items():
        for what, tensors in (("mask", circuit.masks), ("mean", circuit.means)):
            if name not in tensors:
                raise CircuitMismatchError(f"{source}: missing the {what} tensor of node site {name}")
            got = tuple(tensors[name].shape)
            if got != shape:
                raise CircuitMismatchError(
                    f"{source}: made for another model — {what} of {name} has shape {got}, but "
                    f"{model_name} has {shape} nodes there")


def node_label(kind: str, layer: int, index: tuple[int, ...]) -> str:
    """``"L0 q h3.5"``, ``"L1 neuron 412"``, ``"L0 attn read 17"``."""
    if kind in ("q", "k", "v"):
        return f"L{layer} {kind} h{index[0]}.{index[1]}"
    return f"L{layer} {KIND_LABELS[kind]} {index[0]}"


def node_name(site: str, index: tuple[int, ...]) -> str:
    """The hook and element, as code indexes it: ``"blocks.0.attn.hook_q[3, 5]"``."""
    return f"{site}[{', '.join(str(i) for i in index)}]"


def kept_nodes(model, circuit) -> list[dict[str, Any]]:
    """One record per kept node, in forward order (site order, then index order)."""
    out = []
    for site in node_sites(model.cfg):
        mask = circuit.masks[site.name]
        mean = circuit.means[site.name].float()
        for idx in mask.nonzero().tolist():
            index = tuple(int(i) for i in idx)
            out.append({
                "name": node_name(site.name, index), "label": node_label(site.kind, site.layer, index),
                "kind": site.kind, "layer": site.layer, "site": site.name, "index": list(index),
                "head": index[0] if site.kind in ("q", "k", "v") else None, "channel": index[-1],
                "mean": float(mean[index]),
            })
    return out


def circuit_graph(model, circuit, completions: Optional[tuple[int, int]] = None) -> dict[str, Any]:
    """Nodes (the embed / unembed pseudo-nodes first, then every kept node) and edges (columns:
    source id, target id, weight — None for q-k pairs — and kind, an index into ``edge_kinds``).

    ``completions``: the token ids (A, B) of the task's two completions, for write->unembed weights.
    """
    n_layers = model.cfg.n_layers
    nodes: list[dict[str, Any]] = [
        {"name": EMBED, "label": "embedding", "kind": "embed", "layer": -1, "site": EMBED, "index": [],
         "head": None, "channel": None, "mean": None},
        {"name": UNEMBED, "label": "logits", "kind": "unembed", "layer": n_layers, "site": UNEMBED, "index": [],
         "head": None, "channel": None, "mean": None},
    ]
    nodes += kept_nodes(model, circuit)
    for i, node in enumerate(nodes):
        node["id"] = i
    # site -> tensor of node ids over the site's node shape (-1 where not kept)
    ids: dict[str, Tensor] = {}
    for site in node_sites(model.cfg):
        ids[site.name] = torch.full(site.shape, -1, dtype=torch.long)
    for node in nodes[2:]:
        ids[node["site"]][tuple(node["index"])] = node["id"]
    ids[EMBED] = torch.tensor(0)
    ids[UNEMBED] = torch.tensor(1)

    unembed_direction = None
    if completions is not None:
        a, b = completions
        W_U = model.W_U.detach().float()
        unembed_direction = model.ln_final.w.detach().float() * (W_U[:, a] - W_U[:, b])

    source, target, weight, kind = [], [], [], []
    kind_index = {k: i for i, k in enumerate(EDGE_KINDS)}
    for group in edge_groups(model, circuit.masks):
        if not len(group):
            continue
        src = ids[group.source][tuple(group.source_index.T)] if group.source_index.shape[1] else ids[group.source].expand(len(group))
        dst = ids[group.target][tuple(group.target_index.T)] if group.target_index.shape[1] else ids[group.target].expand(len(group))
        if bool((src < 0).any() or (dst < 0).any()):  # edge_groups only joins kept nodes
            raise AssertionError(f"edge group {group.key}: an edge ends on a node outside the circuit")
        if group.weight is None:
            w: list = [None] * len(group)
        elif group.target == UNEMBED and unembed_direction is not None:
            w = _rounded(unembed_direction[group.source_index[:, 0]])
        else:
            w = _rounded(group.weight)
        source += src.tolist()
        target += dst.tolist()
        weight += w
        kind += [kind_index[group.key.split("@")[0]]] * len(group)
    return {
        "nodes": nodes,
        "edges": {"source": source, "target": target, "weight": weight, "kind": kind},
        "edge_kinds": list(EDGE_KINDS),
        "node_kinds": list(NODE_KINDS),
    }


def _rounded(t: Tensor, digits: int = 4) -> list[float]:
    """Values rounded to ``digits`` significant digits (the file stays small; the view loses nothing)."""
    return [float(f"{v:.{digits}g}") for v in t.float().tolist()]
