"""What the viewer's node panel shows, computed once at export with the model's own forward and hooks.

For every kept node:

- **ablation**: the task loss when only this node is mean-ablated from the circuit (everything else
  outside the circuit ablated too) and when only this node is ablated from the full model, each
  minus the loss without that ablation. Many variants run in one forward, from the node's stage on
  (`ablation_losses`, `sparse_lens.pruning.variant_losses`).
- **contexts**: pretraining windows (the corpus's validation split) at several activation
  quantiles — the top and bottom tokens and the tokens nearest the 99/90/50/10/1 % quantiles —
  with every token's activation, from one cached forward of the full model.
- **task**: the node's activation at the last token (where the completion is predicted) on task
  pairs, positive vs negative class, under the circuit (and the means under the full model).
- **attention** (for heads with a kept q or k channel): the head's attention pattern under the
  circuit on one task prompt, with the attention sink as an extra first key.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from sparse_lens.pruning.nodes import node_sites
from sparse_lens.pruning.task_batch import TaskBatch
from sparse_lens.pruning.variant_losses import ROWS_PER_CHUNK, ROWS_PER_FORWARD, variant_losses

# Quantile levels of the pretraining contexts; "top"/"bottom" are the extreme tokens.
QUANTILES = (0.99, 0.9, 0.5, 0.1, 0.01)

Node = dict[str, Any]  # a record of `circuit_graph.kept_nodes`


def _r(x: float, digits: int = 4) -> float:
    return float(f"{float(x):.{digits}g}")


def _rl(t: Tensor, digits: int = 4) -> list[float]:
    return [float(f"{v:.{digits}g}") for v in t.float().tolist()]


# ---------------------------------------------------------------------------- ablations
@torch.no_grad()
def ablation_losses(
    model, circuit, batch: TaskBatch, nodes: Sequence[Node], rows_per_forward: int = ROWS_PER_FORWARD,
    rows_per_chunk: int = ROWS_PER_CHUNK, progress: Optional[Callable[[int], None]] = None,
) -> dict[str, Any]:
    """Task loss of the circuit and of the full model, and of each with one node ablated.

    Returns ``{"circuit_loss", "full_loss", "circuit_without": [...], "full_without": [...]}`` (one
    entry per node, in order). Each one-node ablation is a variant of its setting's masks
    (`sparse_lens.pruning.variant_losses`: batched, starting at the node's stage).
    """
    sites = node_sites(model.cfg)
    bases = {"circuit": {s.name: circuit.masks[s.name] for s in sites},
             "full": {s.name: torch.ones(s.shape, dtype=torch.bool) for s in sites}}
    out: dict[str, Any] = {}
    for setting, base in bases.items():
        variants = []
        for node in nodes:
            variant = dict(base)
            variant[node["site"]] = without = base[node["site"]].clone()
            without[tuple(node["index"])] = False
            variants.append(variant)
        loss, losses = variant_losses(model, batch, base, variants, circuit.means, rows_per_forward, rows_per_chunk,
                                      progress)
        out[f"{setting}_loss"] = _r(loss)
        out[f"{setting}_without"] = _rl(torch.tensor(losses, dtype=torch.float64) - loss)
    return out


# ---------------------------------------------------------------------------- activations
def _values(cache, node: Node) -> Float[Tensor, "batch pos"]:
    """The node's activation at every position: [batch, pos]."""
    act = cache[node["site"]]
    return act[(slice(None), slice(None), *node["index"])]


@torch.no_grad()
def _cached_run(model, tokens: Tensor, sites: set[str], hooks: list, batch_size: int = 64) -> dict[str, Tensor]:
    """Activations at ``sites`` over ``tokens`` [n, pos], in batches, under ``hooks``."""
    parts: dict[str, list[Tensor]] = {s: [] for s in sites}
    with model.hooks(fwd_hooks=hooks):
        for i in range(0, len(tokens), batch_size):
            _, cache = model.run_with_cache(tokens[i : i + batch_size], names_filter=lambda name: name in sites,
                                            return_type=None)
            for s in sites:
                parts[s].append(cache[s])
    return {s: torch.cat(v) for s, v in parts.items()}


def _distinct_windows(key: Tensor, width: int, n: int) -> list[int]:
    """The ``n`` flat positions with the smallest ``key`` that fall in different windows (rows);
    ties keep the earlier position."""
    order = torch.sort(key, stable=True).indices
    picked, rows = [], set()
    for start in range(0, len(order), 256):  # read the order a slice at a time: usually one is enough
        for flat in order[start : start + 256].tolist():
            row = flat // width
            if row not in rows:
                rows.add(row)
                picked.append(flat)
                if len(picked) == n:
                    return picked
    return picked


def _example(tokens: Tensor, values: Tensor, flat: int, before: int, after: int) -> dict[str, Any]:
    width = tokens.shape[1]
    row, pos = divmod(flat, width)
    lo, hi = max(0, pos - before), min(width, pos + after + 1)
    return {"tokens": tokens[row, lo:hi].tolist(), "values": _rl(values[row, lo:hi], 3), "focus": pos - lo,
            "value": _r(values[row, pos])}


@torch.no_grad()
def context_examples(
    model, nodes: Sequence[Node], tokens: Int[Tensor, "window pos"], n_extreme: int = 3, n_per_quantile: int = 2,
    before: int = 20, after: int = 6, quantiles: Sequence[float] = QUANTILES,
) -> list[dict[str, Any]]:
    """Per node: its activation's quantiles over ``tokens`` (pretraining windows, full model) and
    example windows at each level, every token with its activation."""
    cache = _cached_run(model, tokens, {n["site"] for n in nodes}, hooks=[])
    out = []
    for node in nodes:
        values = _values(cache, node).float()  # [window, pos]
        flat = values.reshape(-1)
        width = values.shape[1]
        levels = []
        top = _distinct_windows(-flat, width, n_extreme)
        levels.append({"level": "top", "examples": [_example(tokens, values, f, before, after) for f in top]})
        q_values = torch.quantile(flat, torch.tensor(list(quantiles), dtype=flat.dtype)) if len(flat) else flat
        previous = None
        for q, qv in zip(quantiles, q_values.tolist()):
            if previous is not None and abs(qv - previous) <= 1e-6 * max(1.0, abs(qv)):
                continue  # the same value as the level above (e.g. the zeros AbsTopK leaves): nothing new
            previous = qv
            picked = _distinct_windows((flat - qv).abs(), width, n_per_quantile)
            levels.append({"level": f"q{round(q * 100):g}", "quantile": q, "threshold": _r(qv),
                           "examples": [_example(tokens, values, f, before, after) for f in picked]})
        bottom = _distinct_windows(flat, width, n_extreme)
        levels.append({"level": "bottom", "examples": [_example(tokens, values, f, before, after) for f in bottom]})
        out.append({
            "levels": levels, "max": _r(flat.max()), "min": _r(flat.min()), "mean": _r(flat.mean()),
            "active_fraction": _r((flat != 0).float().mean(), 3),
        })
    return out


@torch.no_grad()
def task_activations(
    model, circuit, nodes: Sequence[Node], batch: TaskBatch, n_pairs_listed: int = 8, n_pairs_shown: int = 2,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per node: its activation at each row's last token on the task pairs, split by class.

    Returns (per-node records, the example pairs' rows) — each record has the class means under the
    circuit and under the full model, the first ``n_pairs_listed`` pairs' (positive, negative)
    values under the circuit, and every token's value in the ``n_pairs_shown`` example pairs."""
    sites = {n["site"] for n in nodes}
    in_circuit = _cached_run(model, batch.tokens, sites, hooks=circuit.hooks())
    in_full = _cached_run(model, batch.tokens, sites, hooks=[])
    rows = torch.arange(len(batch))
    pos_rows, neg_rows = rows[batch.positive], rows[~batch.positive]
    shown = [(int(pos_rows[i]), int(neg_rows[i])) for i in range(min(n_pairs_shown, len(pos_rows), len(neg_rows)))]
    examples = [{"positive": batch.tokens[p, : int(batch.last[p]) + 1].tolist(),
                 "negative": batch.tokens[n, : int(batch.last[n]) + 1].tolist()} for p, n in shown]
    out = []
    for node in nodes:
        record: dict[str, Any] = {}
        for setting, cache in (("circuit", in_circuit), ("full", in_full)):
            values = _values(cache, node).float()
            at_last = values[rows, batch.last]
            pos_mean, neg_mean = at_last[pos_rows].mean(), at_last[neg_rows].mean()
            record[setting] = {"positive": _r(pos_mean), "negative": _r(neg_mean), "difference": _r(pos_mean - neg_mean)}
            if setting == "circuit":
                k = min(n_pairs_listed, len(pos_rows), len(neg_rows))
                record["pairs"] = [[_r(at_last[pos_rows[i]]), _r(at_last[neg_rows[i]])] for i in range(k)]
                record["examples"] = [{"positive": _rl(values[p, : int(batch.last[p]) + 1], 3),
                                       "negative": _rl(values[n, : int(batch.last[n]) + 1], 3)} for p, n in shown]
        out.append(record)
    return out, examples


@torch.no_grad()
def attention_patterns(model, circuit, heads: Sequence[tuple[int, int]], batch: TaskBatch) -> dict[str, Any]:
    """Each head's attention pattern under the circuit on one task prompt (the shortest positive
    one), the sink prepended as key 0: row i is ``[sink share, pattern[i, :]]``; the sink's own row
    attends to itself, so the matrix is square over ``["<sink>"] + tokens`` as circuitsvis draws it."""
    if not heads:
        return {"tokens": [], "heads": {}}
    positive = torch.arange(len(batch))[batch.positive]
    row = int(positive[torch.argmin(batch.last[positive])]) if len(positive) else 0
    tokens = batch.tokens[row : row + 1, : int(batch.last[row]) + 1]
    names = {f"blocks.{l}.attn.hook_pattern" for l, _ in heads}
    cache = _cached_run(model, tokens, names, hooks=circuit.hooks())
    out = {}
    for l, h in heads:
        pattern = cache[f"blocks.{l}.attn.hook_pattern"][0, h].float()  # [query, key], rows sum to 1 - sink
        n = pattern.shape[0]
        sink = (1 - pattern.sum(-1)).clamp(min=0)
        square = torch.zeros(n + 1, n + 1)
        square[0, 0] = 1.0
        square[1:, 0] = sink
        square[1:, 1:] = pattern
        out[f"{l}.{h}"] = {"pattern": [_rl(r, 3) for r in square], "sink_share": _rl(sink, 3)}
    return {"tokens": tokens[0].tolist(), "heads": out}


def token_strings(model, ids: set[int]) -> dict[int, str]:
    """How each token id reads (its text; the id itself for a model without a tokenizer)."""
    if getattr(model, "tokenizer", None) is None:
        return {i: f"<{i}>" for i in ids}
    ordered = sorted(ids)
    return dict(zip(ordered, model.to_str_tokens(ordered)))
