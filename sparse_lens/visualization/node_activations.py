"""A node's activations on text: which node (a hook point and an index, as in
`sparse_lens.pruning.nodes`), its value at every token of some texts, and its top and bottom
activating contexts (windows of tokens around the strongest and weakest positions).

    node = parse_node("blocks.0.mlp.hook_post[17]")          # or ("blocks.1.attn.hook_q", (3, 5))
    values = node_values(model, node, ["x = 'a'", "y = 1"])   # one [pos] tensor per text
    best = top_contexts(model, node, texts, k=5)             # Context(text_index, position, tokens, values, ...)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence, Union

import torch
from jaxtyping import Float, Int
from torch import Tensor

from sparse_lens.pruning.nodes import site_for


@dataclass(frozen=True)
class Node:
    """One node: a node site (hook point) and an index into its trailing dimensions."""

    site: str
    index: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"{self.site}[{', '.join(map(str, self.index))}]"

    def __str__(self) -> str:
        return self.name


NodeLike = Union[Node, str, tuple]
_NODE_RE = re.compile(r"^\s*([\w.]+)\s*\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]\s*$")


def parse_node(node: NodeLike, cfg=None) -> Node:
    """A `Node` from ``"site[i]"`` / ``"site[head, channel]"``, ``(site, i)``, ``(site, (i, j))`` or a
    `Node`; with ``cfg`` (a model config), the site and index are checked against the model."""
    if isinstance(node, Node):
        parsed = node
    elif isinstance(node, str):
        match = _NODE_RE.match(node)
        if not match:
            raise ValueError(f"node: expected 'hook_name[index]' such as 'blocks.0.mlp.hook_post[17]', got {node!r}")
        parsed = Node(match.group(1), tuple(int(i) for i in match.group(2).split(",")))
    elif isinstance(node, tuple) and len(node) == 2 and isinstance(node[0], str):
        index = node[1] if isinstance(node[1], (tuple, list)) else (node[1],)
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in index):
            raise ValueError(f"node: index must be integers, got {node[1]!r}")
        parsed = Node(node[0], tuple(index))
    else:
        raise ValueError(f"node: expected 'hook_name[index]', (hook_name, index) or a Node, got {node!r}")
    if cfg is not None:
        site = site_for(cfg, parsed.site)  # KeyError naming the node sites
        if len(parsed.index) != len(site.shape) or not all(0 <= i < n for i, n in zip(parsed.index, site.shape)):
            raise ValueError(f"node {parsed.name}: index out of range for {site.name} (node shape {site.shape})")
    return parsed


def _token_rows(model, texts: Union[Sequence[str], Tensor]) -> list[Int[Tensor, "pos"]]:
    if isinstance(texts, Tensor):
        if texts.ndim != 2:
            raise ValueError(f"texts: expected a list of strings or a [batch, pos] token tensor, got shape {tuple(texts.shape)}")
        return list(texts)
    if not isinstance(texts, str) and texts and all(isinstance(t, Tensor) and t.ndim == 1 for t in texts):
        return list(texts)  # token rows already
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts: expected a list of strings or a [batch, pos] token tensor")
    return [model.to_tokens(t)[0, : model.cfg.n_ctx] for t in texts]


@torch.no_grad()
def node_values(model, node: NodeLike, texts: Union[Sequence[str], Tensor], batch_size: int = 16
                ) -> list[Float[Tensor, "pos"]]:
    """The node's activation at every token of each text (texts are tokenized as ``model.to_tokens``
    does, BOS first, and cut to the context length), or of each row of a token tensor."""
    node = parse_node(node, model.cfg)
    rows = _token_rows(model, texts)
    out: list[Tensor] = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        if len({len(r) for r in chunk}) == 1:
            groups = [torch.stack(chunk)]
        else:  # different lengths: one at a time (no padding, so no padding artefacts)
            groups = [r[None] for r in chunk]
        for tokens in groups:
            _, cache = model.run_with_cache(tokens, names_filter=node.site)
            acts = cache[node.site]  # [batch, pos, *node shape]
            out.extend(acts[(slice(None), slice(None), *node.index)].float().cpu())
    return out


@dataclass
class Context:
    """A window of tokens around one position of one text, with the node's value at each token."""

    text_index: int
    position: int  # of the selected token, in the text's tokens
    value: float  # the node's value there
    tokens: list[str]
    values: list[float]
    focus: int  # index of the selected token within the window


@torch.no_grad()
def top_contexts(model, node: NodeLike, texts: Union[Sequence[str], Tensor], k: int = 5, before: int = 24,
                 after: int = 4, bottom: bool = False) -> list[Context]:
    """The ``k`` positions where the node is largest (``bottom=True``: smallest) over all tokens of
    ``texts``, each with ``before`` tokens of context before it and ``after`` after; positions closer
    than the window to an already chosen one in the same text are skipped, so contexts do not repeat."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected a positive integer, got {k!r}")
    node = parse_node(node, model.cfg)
    rows = _token_rows(model, texts)
    values = node_values(model, node, rows)
    flat = torch.cat(values)
    owner = torch.cat([torch.full((len(v),), i) for i, v in enumerate(values)])
    offset = torch.cat([torch.arange(len(v)) for v in values])
    order = torch.sort(flat, descending=not bottom, stable=True).indices
    chosen: list[Context] = []
    taken: dict[int, list[int]] = {}
    for j in order.tolist():
        i, p = int(owner[j]), int(offset[j])
        if any(abs(p - q) <= max(before, after) for q in taken.get(i, [])):
            continue
        taken.setdefault(i, []).append(p)
        lo, hi = max(0, p - before), min(len(values[i]), p + after + 1)
        chosen.append(Context(i, p, float(values[i][p]), model.to_str_tokens(rows[i][lo:hi]),
                              values[i][lo:hi].tolist(), p - lo))
        if len(chosen) == k:
            break
    return chosen
