"""The paper's nodes (App. A.5): every element at these hook points is one node.

- ``blocks.{l}.ln1.hook_normalized`` / ``ln2.hook_normalized``: residual reads (after RMSNorm)
- ``blocks.{l}.attn.hook_q`` / ``hook_k`` / ``hook_v``: attention channels [n_heads, d_head]
- ``blocks.{l}.mlp.hook_post``: MLP neurons (after the activation)
- ``blocks.{l}.hook_attn_out`` / ``hook_mlp_out``: residual writes (block outputs)
"""

from __future__ import annotations

from dataclasses import dataclass

# kind -> hook name template, in forward order within a block
NODE_KINDS: dict[str, str] = {
    "attn_read": "blocks.{l}.ln1.hook_normalized",
    "q": "blocks.{l}.attn.hook_q",
    "k": "blocks.{l}.attn.hook_k",
    "v": "blocks.{l}.attn.hook_v",
    "attn_write": "blocks.{l}.hook_attn_out",
    "mlp_read": "blocks.{l}.ln2.hook_normalized",
    "neuron": "blocks.{l}.mlp.hook_post",
    "mlp_write": "blocks.{l}.hook_mlp_out",
}


@dataclass(frozen=True)
class NodeSite:
    """One hook point holding a block of nodes (its trailing dimensions)."""

    name: str
    kind: str
    layer: int
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


def node_sites(cfg) -> list[NodeSite]:
    """All node sites of a model config, in forward order."""
    sites = []
    for l in range(cfg.n_layers):
        for kind, template in NODE_KINDS.items():
            if kind in ("q", "k", "v"):
                shape = (cfg.n_heads, cfg.d_head)
            elif kind == "neuron":
                shape = (cfg.d_mlp,)
            else:
                shape = (cfg.d_model,)
            sites.append(NodeSite(template.format(l=l), kind, l, shape))
    return sites


def site_for(cfg, name: str) -> NodeSite:
    for site in node_sites(cfg):
        if site.name == name:
            return site
    raise KeyError(f"{name!r} is not a node site; node sites are the hooks {sorted(NODE_KINDS.values())}")
