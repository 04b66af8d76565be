"""Interventions through a bridge (paper App. A.4): edit a sparse-model node, carry the edit into the
dense model, and measure the dense model's response.

For an edit of nodes before bridge site i (a hook changes their activations):

    h_s  = sparse residual at site i, clean           h_s' = the same with the edit
    Δ    = g_i(h_s') − g_i(h_s)                        (the decoder's bias cancels: W_g (h_s' − h_s))
    dense output, edited = the dense model from site i on h_d + Δ

The sparse side runs only up to the site (``stop_at_layer``) and the dense side only from it, both
through the models' own forward; the edit is a hook removed when the pass ends (also on an error).

:func:`flip_study` is the paper's worked example for a binary task: choose the sparse node whose
activation at the last token best separates the task's two classes (or take the one given), set it to
the other class's mean on held-out prompts, and report the change of the dense model's logit
difference between the two answers — with its spread over prompts and a random-node control.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import torch
from jaxtyping import Float, Int
from torch import Tensor

from sparse_lens.bridges.pair import BridgedPair
from sparse_lens.bridges.sites import Site, next_site_after_hook

Value = Union[float, Tensor, Callable[[Tensor], Tensor]]


@dataclass(frozen=True)
class Node:
    """One sparse-model node: a node hook and a flat index into its trailing dimensions (for
    ``attn.hook_q/k/v`` [.., n_heads, d_head] the index is ``head * d_head + channel``)."""

    hook: str
    index: int

    def __str__(self) -> str:
        return f"{self.hook}[{self.index}]"


@dataclass
class InterventionResult:
    site: str
    nodes: list[Node]
    delta: Float[Tensor, "batch pos d_dense"]  # g(h_s') − g(h_s), added to the dense residual at `site`
    dense_clean: Tensor  # logits [batch, pos, vocab], or [batch, vocab] at logit_positions
    dense_edited: Tensor
    sparse_clean: Tensor
    sparse_edited: Tensor

    def logit_diff_change(self, target: Tensor, alternative: Tensor, last: Optional[Tensor] = None
                          ) -> tuple[Tensor, Tensor]:
        """(dense, sparse) change of z_target − z_alternative per row (edited minus clean)."""
        from sparse_lens.tasks import logit_difference

        def change(clean: Tensor, edited: Tensor) -> Tensor:
            lp = None if clean.ndim == 2 else last
            return logit_difference(edited, target, alternative, lp) - logit_difference(clean, target, alternative, lp)

        return change(self.dense_clean, self.dense_edited), change(self.sparse_clean, self.sparse_edited)


def _as_nodes(nodes: Any) -> list[Node]:
    if isinstance(nodes, Node):
        return [nodes]
    if isinstance(nodes, tuple) and len(nodes) == 2 and isinstance(nodes[0], str):
        return [Node(nodes[0], int(nodes[1]))]
    out = []
    for node in nodes:
        out.extend(_as_nodes(node))
    if not out:
        raise ValueError("node: no node given")
    return out


def _edit_hook(index: int, value: Value, positions: Optional[Tensor]) -> Callable:
    def hook(x: Tensor, hook: Any) -> Tensor:
        flat = x.reshape(*x.shape[:2], -1)
        if not 0 <= index < flat.shape[-1]:
            raise ValueError(f"node: index {index} out of range for {hook.name} ({flat.shape[-1]} nodes per position)")
        new = flat.clone()
        if positions is None:
            current = flat[:, :, index]
        else:
            rows = torch.arange(flat.shape[0], device=flat.device)
            current = flat[rows, positions, index]
        if callable(value):
            replacement = value(current)
        else:
            replacement = torch.as_tensor(value, dtype=flat.dtype, device=flat.device)
            if replacement.ndim == 1 and positions is None:
                replacement = replacement[:, None]  # one value per row, at every position
        replacement = torch.broadcast_to(replacement.to(flat.dtype), current.shape)
        if positions is None:
            new[:, :, index] = replacement
        else:
            new[rows, positions, index] = replacement
        return new.view(x.shape)

    return hook


@torch.no_grad()
def intervene(
    pair: BridgedPair,
    tokens: Int[Tensor, "batch pos"],
    nodes: Union[Node, tuple[str, int], Sequence[Any]],
    value: Value,
    positions: Optional[Int[Tensor, "batch"]] = None,
    site: Optional[Site] = None,
    logit_positions: Optional[Int[Tensor, "batch"]] = None,
) -> InterventionResult:
    """Edit sparse nodes and carry the edit into the dense model through the bridge at ``site``.

    Args:
        nodes: a :class:`Node`, a (hook, index) tuple, or a list of them.
        value: the new activation — a number, a [batch] tensor (one value per row), or a function of
            the current activations (``lambda a: -a`` flips the sign; ``lambda a: a`` is a no-op).
        positions: one position per row where the edit applies (e.g. the last token); None = every
            position.
        site: the bridge site carrying the edit; default: the first site after every edited node.
        logit_positions: keep only these positions' logits ([batch, vocab]) in the result.
    """
    tokens = pair._tokens(tokens)
    nodes = _as_nodes(nodes)
    n_layers = pair.bridges.n_layers
    hooks = pair.sparse.hook_dict
    for node in nodes:
        if node.hook not in hooks:
            raise ValueError(f"node: {node.hook!r} is not a hook of the sparse model")
    earliest = max(next_site_after_hook(node.hook, n_layers) for node in nodes)
    index = earliest if site is None else pair.bridges.index(site)
    if index < earliest:
        raise ValueError(
            f"site: {pair.sites[index]} comes before node(s) {[str(n) for n in nodes]}; the earliest site after "
            f"them is {pair.sites[earliest]}"
        )
    if positions is not None:
        positions = torch.as_tensor(positions, device=tokens.device, dtype=torch.long)
        if positions.shape != tokens.shape[:1] or int(positions.min()) < 0 or int(positions.max()) >= tokens.shape[1]:
            raise ValueError(f"positions: expected one position in [0, {tokens.shape[1]}) per row ({tokens.shape[0]} rows)")
    fwd_hooks = [(node.hook, _edit_hook(node.index, value, positions)) for node in nodes]

    sparse = pair.sparse_side
    h_clean = sparse.run_to(tokens, index)
    with pair.sparse.hooks(fwd_hooks=fwd_hooks):
        h_edited = sparse.run_to(tokens, index)
    delta = pair.bridges.decode(index, h_edited) - pair.bridges.decode(index, h_clean)
    h_dense = pair.dense.run_to(tokens, index)

    def keep(logits: Tensor) -> Tensor:
        if logit_positions is None:
            return logits
        rows = torch.arange(logits.shape[0], device=logits.device)
        return logits[rows, torch.as_tensor(logit_positions, device=logits.device)]

    return InterventionResult(
        site=pair.sites[index], nodes=nodes, delta=delta,
        dense_clean=keep(pair.dense.run_from(h_dense, index, tokens)),
        dense_edited=keep(pair.dense.run_from(h_dense + delta.to(h_dense.dtype), index, tokens)),
        sparse_clean=keep(sparse.run_from(h_clean, index, tokens)),
        sparse_edited=keep(sparse.run_from(h_edited, index, tokens)),
    )


# ---------------------------------------------------------------------- the worked example
@dataclass
class FlipStudy:
    """The result of :func:`flip_study` (all logit differences are z_target − z_alternative of each
    row's own answer, so a flip toward the other class makes the change negative)."""

    task: str
    node: str
    site: str
    separation: float  # |μ_pos − μ_neg| / pooled std of the node at the last token (fit prompts)
    means: dict[str, float]  # the node's mean activation per class (fit prompts)
    n_test_rows: int
    dense_change: list[float]  # per test row
    sparse_change: list[float]
    random_nodes: list[str]
    random_dense_mean_change: list[float]  # per random node: mean change over the test rows
    random_sparse_mean_change: list[float]
    clean_dense_logit_diff: float  # mean over test rows, before the edit
    clean_sparse_logit_diff: float
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def _stats(values: Sequence[float]) -> tuple[float, float, float]:
        n = len(values)
        mean = sum(values) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / max(n - 1, 1))
        return mean, std, std / math.sqrt(n)

    def summary(self) -> dict[str, float]:
        dm, ds, de = self._stats(self.dense_change)
        sm, ss, se = self._stats(self.sparse_change)
        out = {
            "dense_mean": dm, "dense_std": ds, "dense_stderr": de,
            "dense_frac_toward_other": sum(v < 0 for v in self.dense_change) / len(self.dense_change),
            "sparse_mean": sm, "sparse_std": ss, "sparse_stderr": se,
            "sparse_frac_toward_other": sum(v < 0 for v in self.sparse_change) / len(self.sparse_change),
        }
        if self.random_dense_mean_change:
            rm, rs, _ = self._stats(self.random_dense_mean_change)
            out.update(random_dense_mean=rm, random_dense_std=rs,
                       random_dense_max_abs=max(abs(v) for v in self.random_dense_mean_change))
            rm, rs, _ = self._stats(self.random_sparse_mean_change)
            out.update(random_sparse_mean=rm, random_sparse_std=rs)
        return out

    def format(self) -> str:
        s = self.summary()
        lines = [
            f"task {self.task}: node {self.node} (separation {self.separation:.2f}; class means "
            + ", ".join(f"{k} {v:+.3f}" for k, v in self.means.items()) + f"), carried through bridge site {self.site}",
            f"flipped to the other class's mean at the last token of {self.n_test_rows} held-out prompts;",
            f"change of z(answer) − z(other answer)   [clean: dense {self.clean_dense_logit_diff:+.3f}, sparse {self.clean_sparse_logit_diff:+.3f}]",
            f"  dense model (through the bridge): {s['dense_mean']:+.4f} ± {s['dense_std']:.4f} (std; stderr {s['dense_stderr']:.4f}), "
            f"{100 * s['dense_frac_toward_other']:.0f}% of prompts toward the other answer",
            f"  sparse model (directly):          {s['sparse_mean']:+.4f} ± {s['sparse_std']:.4f} (std; stderr {s['sparse_stderr']:.4f}), "
            f"{100 * s['sparse_frac_toward_other']:.0f}% toward the other answer",
        ]
        if self.random_nodes:
            lines.append(
                f"  control, {len(self.random_nodes)} random nodes flipped the same way: dense mean change "
                f"{s['random_dense_mean']:+.4f} ± {s['random_dense_std']:.4f} (largest |mean| {s['random_dense_max_abs']:.4f}); "
                f"sparse {s['random_sparse_mean']:+.4f} ± {s['random_sparse_std']:.4f}"
            )
        return "\n".join(lines)


def candidate_nodes(pair: BridgedPair) -> list[tuple[str, int]]:
    """(hook, number of nodes) for every pruning node site that has a bridge site after it."""
    from sparse_lens.pruning.nodes import node_sites

    out = []
    for s in node_sites(pair.sparse.cfg):
        try:
            next_site_after_hook(s.name, pair.bridges.n_layers)
        except ValueError:
            continue
        out.append((s.name, s.size))
    return out


@torch.no_grad()
def _last_token_activations(pair: BridgedPair, batch: Any, hooks: list[str], chunk: int) -> dict[str, Tensor]:
    """{hook: [rows, nodes]} at each row's last real token."""
    out: dict[str, list[Tensor]] = {h: [] for h in hooks}
    for lo in range(0, len(batch), chunk):
        part = batch.select(torch.arange(lo, min(lo + chunk, len(batch))))
        _, cache = pair.sparse.run_with_cache(part.tokens, names_filter=hooks, return_type=None)
        rows = torch.arange(len(part))
        for h in hooks:
            x = cache[h]
            out[h].append(x.reshape(*x.shape[:2], -1)[rows, part.last].float().cpu())
    return {h: torch.cat(v) for h, v in out.items()}


def flip_study(
    pair: BridgedPair,
    task: str = "single_double_quote",
    n_fit: int = 100,
    n_test: int = 100,
    node: Optional[Union[Node, tuple[str, int]]] = None,
    n_random: int = 20,
    seed: int = 0,
    chunk: int = 32,
) -> FlipStudy:
    """The App. A.4 experiment on a binary task (see the module docstring).

    ``n_fit`` train-split pairs choose the node (if none is given) and give the class means;
    ``n_test`` test-split pairs are edited. The edit sets the node, at each prompt's last token, to
    the mean of the *other* class; the random-node control does the same to ``n_random`` nodes drawn
    uniformly from every candidate node (seeded)."""
    from sparse_lens.tasks import get_task, tokenize_pairs

    if pair.sparse.tokenizer is None:
        raise ValueError("flip_study: the sparse model has no tokenizer")
    t = get_task(task)
    n_ctx = pair.sparse.cfg.n_ctx
    tok = pair.sparse.tokenizer
    fit = tokenize_pairs(t.generate(n_fit, seed=seed, split="train", tokenizer=tok, max_tokens=n_ctx), tok, n_ctx=n_ctx, task_name=t.name)
    test = tokenize_pairs(t.generate(n_test, seed=seed, split="test", tokenizer=tok, max_tokens=n_ctx), tok, n_ctx=n_ctx, task_name=t.name)
    device = pair.sparse.W_E.device
    fit, test = fit.to(device), test.to(device)

    candidates = candidate_nodes(pair)
    sizes = dict(candidates)
    if node is None:
        acts = _last_token_activations(pair, fit, [h for h, _ in candidates], chunk)
        best = (-1.0, None)
        for hook, a in acts.items():
            sep = _separation(a, fit.positive.cpu())
            j = int(sep.argmax())
            if float(sep[j]) > best[0]:
                best = (float(sep[j]), Node(hook, j))
        chosen = best[1]
    else:
        chosen = _as_nodes(node)[0]
        if chosen.hook not in sizes:
            raise ValueError(f"node: {chosen.hook!r} is not a node hook with a bridge site after it; candidates: {sorted(sizes)}")
    rng = random.Random(seed)
    total = sum(sizes.values())
    random_nodes: list[Node] = []
    while len(random_nodes) < min(n_random, total - 1):
        k = rng.randrange(total)
        for hook, size in candidates:
            if k < size:
                picked = Node(hook, k)
                break
            k -= size
        if picked != chosen and picked not in random_nodes:
            random_nodes.append(picked)

    hooks_needed = sorted({n.hook for n in [chosen, *random_nodes]})
    fit_acts = _last_token_activations(pair, fit, hooks_needed, chunk)
    positive = fit.positive.cpu()

    def class_means(n: Node) -> tuple[float, float]:
        a = fit_acts[n.hook][:, n.index]
        return float(a[positive].mean()), float(a[~positive].mean())

    def run(n: Node) -> tuple[list[float], list[float], float, float]:
        mean_pos, mean_neg = class_means(n)
        dense, sparse, clean_d, clean_s = [], [], 0.0, 0.0
        for lo in range(0, len(test), chunk):
            part = test.select(torch.arange(lo, min(lo + chunk, len(test))))
            other = torch.where(part.positive, torch.tensor(mean_neg), torch.tensor(mean_pos)).to(device)
            res = intervene(pair, part.tokens, n, other, positions=part.last, logit_positions=part.last)
            d, s = res.logit_diff_change(part.target, part.alternative)
            dense += d.tolist()
            sparse += s.tolist()
            from sparse_lens.tasks import logit_difference

            clean_d += float(logit_difference(res.dense_clean, part.target, part.alternative).sum())
            clean_s += float(logit_difference(res.sparse_clean, part.target, part.alternative).sum())
        return dense, sparse, clean_d / len(test), clean_s / len(test)

    dense, sparse, clean_d, clean_s = run(chosen)
    rand_d, rand_s = [], []
    for n in random_nodes:
        d, s, _, _ = run(n)
        rand_d.append(sum(d) / len(d))
        rand_s.append(sum(s) / len(s))
    sep = _separation(fit_acts[chosen.hook][:, chosen.index : chosen.index + 1], positive)
    mean_pos, mean_neg = class_means(chosen)
    return FlipStudy(
        task=t.name, node=str(chosen), site=pair.sites[next_site_after_hook(chosen.hook, pair.bridges.n_layers)],
        separation=float(sep[0]), means={"positive": mean_pos, "negative": mean_neg}, n_test_rows=len(test),
        dense_change=dense, sparse_change=sparse, random_nodes=[str(n) for n in random_nodes],
        random_dense_mean_change=rand_d, random_sparse_mean_change=rand_s,
        clean_dense_logit_diff=clean_d, clean_sparse_logit_diff=clean_s,
        info={"n_fit_rows": len(fit), "seed": seed, "chosen_by": "given" if node is not None else "separation"},
    )


def _separation(acts: Tensor, positive: Tensor) -> Tensor:
    """|μ_pos − μ_neg| / sqrt((σ²_pos + σ²_neg) / 2) per node column (0 where the node never varies)."""
    a, b = acts[positive], acts[~positive]
    pooled = ((a.var(0, unbiased=False) + b.var(0, unbiased=False)) / 2).sqrt()
    diff = (a.mean(0) - b.mean(0)).abs()
    return torch.where(pooled > 1e-6, diff / pooled.clamp_min(1e-6), torch.zeros_like(diff))
