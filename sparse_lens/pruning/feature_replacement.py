"""Feature validation by replacement (paper Sec. 4): if a circuit node *means* "inside a single-quoted
string", then overwriting its activation with a hand-written labeller of the input — one value inside
single-quoted strings, another inside double-quoted ones, zero elsewhere — should leave the task
intact. The replacement is a hook on the one model: a forward pre-hook on ``model.embed`` reads the
token ids the forward was given, and a HookPoint hook at the node's site writes the labeller's values
into the node.

    labeller = quote_state_labeller(model.tokenizer, single=0.8, double=-0.6)
    with replace_node_with(model, ("blocks.0.hook_attn_out", (17,)), labeller):
        loss = model(tokens, return_type="loss")

`fit_quote_labeller` chooses the two values (the node's mean activation inside each kind of string
on task prompts), and `replacement_study` reports the task loss with the node as it is, replaced by
the labeller, mean-ablated, and replaced by a control labeller whose single/double values are swapped.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import torch
from jaxtyping import Float, Int
from torch import Tensor

from sparse_lens.tasks.evaluate import evaluate_pairs
from sparse_lens.tasks.registry import get_task

Labeller = Callable[[Int[Tensor, "batch pos"]], Float[Tensor, "batch pos"]]
NodeLike = Union[tuple[str, Sequence[int]], tuple[str, int]]

OUTSIDE, SINGLE, DOUBLE = 0, 1, 2


def _node(model: Any, node: NodeLike) -> tuple[str, tuple[int, ...]]:
    """(site, index) of ``node``, checked against the model's hook points."""
    if not (isinstance(node, (tuple, list)) and len(node) == 2 and isinstance(node[0], str)):
        raise ValueError(f"node: expected (hook name, index), e.g. ('blocks.0.hook_attn_out', (17,)), got {node!r}")
    site, index = node[0], node[1]
    index = (index,) if isinstance(index, int) else tuple(int(i) for i in index)
    if site not in model.hook_dict:
        raise ValueError(f"node: {site!r} is not a hook point of the model")
    return site, index


def token_texts(tokenizer: Any) -> Callable[[int], str]:
    """``id -> text`` of one token, each id decoded once."""
    return functools.lru_cache(maxsize=None)(lambda token_id: tokenizer.decode([token_id]))


def quote_states(tokenizer: Any, tokens: Int[Tensor, "batch pos"], text: Optional[Callable[[int], str]] = None
                 ) -> Int[Tensor, "batch pos"]:
    """Per token: OUTSIDE (0), SINGLE (1) or DOUBLE (2) — whether the text up to and including the token
    ends inside a ``'…'`` or ``"…"`` string literal. A quote opens a string outside one and closes the
    string it opened; a backslash escapes the next character inside a string; a line end closes a
    single-line string. Triple quotes count as three quotes (a simplification: rare in task prompts).
    ``text``: a `token_texts` decoder to reuse across calls."""
    text = text or token_texts(tokenizer)
    out = torch.zeros(tokens.shape, dtype=torch.long)
    for b, row in enumerate(tokens.tolist()):
        state, escaped = OUTSIDE, False
        for p, token_id in enumerate(row):
            for ch in text(token_id):
                if escaped:
                    escaped = False
                elif state != OUTSIDE and ch == "\\":
                    escaped = True
                elif ch == "\n":
                    state = OUTSIDE
                elif state == OUTSIDE and ch in "'\"":
                    state = SINGLE if ch == "'" else DOUBLE
                elif (state, ch) in ((SINGLE, "'"), (DOUBLE, '"')):
                    state = OUTSIDE
            out[b, p] = state
    return out


def quote_state_labeller(tokenizer: Any, single: float, double: float, outside: float = 0.0) -> Labeller:
    """A labeller: ``single`` inside single-quoted strings, ``double`` inside double-quoted ones,
    ``outside`` elsewhere (see `quote_states`)."""
    values = torch.tensor([outside, single, double])
    text = token_texts(tokenizer)

    def label(tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos"]:
        return values[quote_states(tokenizer, tokens.cpu(), text)]

    return label


@contextmanager
def replace_node_with(model: Any, node: NodeLike, labeller: Labeller) -> Iterator[Any]:
    """Within the block, every forward of ``model`` has ``node``'s activation replaced by
    ``labeller(tokens)`` (a [batch, pos] tensor of values) at every position."""
    site, index = _node(model, node)
    if not callable(labeller):
        raise ValueError(f"labeller: expected a function of the token ids, got {type(labeller).__name__}")
    seen: dict[str, Any] = {}

    def remember_tokens(module: Any, args: tuple) -> None:
        seen["tokens"] = args[0]

    def remember_positions(module: Any, args: tuple, kwargs: dict) -> None:
        # A forward with ``logit_positions`` runs its last block only at those positions.
        seen["positions"] = kwargs.get("logit_positions")

    def replace(act: Tensor, hook: Any) -> Tensor:
        tokens, positions = seen.get("tokens"), seen.get("positions")
        if tokens is None or tokens.shape[0] != act.shape[0]:
            raise RuntimeError(f"replace_node_with: no token ids for the activation at {site} (shape {tuple(act.shape)})")
        values = torch.as_tensor(labeller(tokens))
        if values.shape != tokens.shape:
            raise ValueError(f"labeller: returned shape {tuple(values.shape)}, expected [batch, pos] = {tuple(tokens.shape)}")
        if act.shape[1] != tokens.shape[1]:  # narrowed to the logit positions
            if positions is None or act.shape[1] != 1:
                raise RuntimeError(f"replace_node_with: activation at {site} has {act.shape[1]} positions, "
                                   f"the tokens {tokens.shape[1]}")
            values = values.gather(1, positions.to(values.device)[:, None].long())
        act = act.clone()
        act[(slice(None), slice(None), *index)] = values.to(device=act.device, dtype=act.dtype)
        return act

    handles = [model.embed.register_forward_pre_hook(remember_tokens),
               model.register_forward_pre_hook(remember_positions, with_kwargs=True)]
    try:
        with model.hooks(fwd_hooks=[(site, replace)]):
            yield model
    finally:
        for handle in handles:
            handle.remove()


def node_activations(model: Any, node: NodeLike, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos"]:
    """``node``'s activation at every position of ``tokens``."""
    site, index = _node(model, node)
    _, cache = model.run_with_cache(tokens, names_filter=site)
    return cache[site][(slice(None), slice(None), *index)].detach()


def fit_quote_labeller(
    model: Any, node: NodeLike, tokens: Int[Tensor, "batch pos"], mask: Optional[Tensor] = None
) -> tuple[float, float]:
    """The node's mean activation inside single- and inside double-quoted strings over ``tokens``
    (over the positions where ``mask`` is True, e.g. not padding)."""
    return _quote_means(model.tokenizer, node_activations(model, node, tokens), tokens, mask)


def _quote_means(tokenizer: Any, acts: Float[Tensor, "batch pos"], tokens: Int[Tensor, "batch pos"],
                 mask: Optional[Tensor]) -> tuple[float, float]:
    states = quote_states(tokenizer, tokens.cpu()).to(acts.device)
    mask = torch.ones_like(states, dtype=torch.bool) if mask is None else mask.to(acts.device)
    means = []
    for state, name in ((SINGLE, "single"), (DOUBLE, "double")):
        inside = (states == state) & mask
        if not bool(inside.any()):
            raise ValueError(f"tokens: no token is inside a {name}-quoted string; cannot fit the labeller")
        means.append(float(acts[inside].mean()))
    return means[0], means[1]


def _generate_kwargs(model: Any) -> dict[str, Any]:
    n_ctx = int(model.cfg.n_ctx)
    return dict(max_chars=3 * n_ctx, tokenizer=model.tokenizer, max_tokens=n_ctx)


def _fit_prompts(model: Any, task: Any, n_fit: int, seed: int) -> tuple[Int[Tensor, "batch pos"], Tensor]:
    """Token ids of ``n_fit`` train pairs' prompts and a mask of their real (not padding) positions."""
    from sparse_lens.tasks.tokenize import tokenize_pairs

    pairs = task.generate(n_fit, seed=seed, split="train", **_generate_kwargs(model))
    fit = tokenize_pairs(pairs, model.tokenizer, n_ctx=int(model.cfg.n_ctx), task_name=task.name)
    real = torch.arange(fit.tokens.shape[1])[None, :] <= fit.last[:, None]
    return fit.tokens, real


@dataclass
class QuoteNode:
    """A node's quote-type separation: its mean activation inside single- and inside double-quoted
    strings, and ``separation`` = |single − double| / the pooled standard deviation inside strings."""

    node: str
    site: str
    index: tuple[int, ...]
    single: float
    double: float
    separation: float


def rank_quote_nodes(
    model: Any, nodes: Sequence[NodeLike], task: str = "single_double_quote", n_fit: int = 64, seed: int = 0
) -> list[QuoteNode]:
    """``nodes`` ordered by how well their activation tells single- from double-quoted strings on the
    task's train prompts (best first): the candidates for a quote-type feature. One forward for all."""
    resolved = [_node(model, n) for n in nodes]
    if not resolved:
        raise ValueError("nodes: expected at least one node to rank")
    tokens, real = _fit_prompts(model, get_task(task), n_fit, seed)
    states = quote_states(model.tokenizer, tokens)
    single_mask, double_mask = (states == SINGLE) & real, (states == DOUBLE) & real
    if not (bool(single_mask.any()) and bool(double_mask.any())):
        raise ValueError(f"task: {task!r} prompts have no tokens inside both kinds of string; cannot rank quote nodes")
    _, cache = model.run_with_cache(tokens, names_filter=sorted({site for site, _ in resolved}))
    ranked = []
    for site, index in resolved:
        acts = cache[site][(slice(None), slice(None), *index)].detach().float().cpu()
        a, b = acts[single_mask], acts[double_mask]
        pooled = float(torch.sqrt((a.var(unbiased=False) * a.numel() + b.var(unbiased=False) * b.numel())
                                  / (a.numel() + b.numel())))
        gap = abs(float(a.mean()) - float(b.mean()))
        separation = gap / pooled if pooled > 0 else (float("inf") if gap > 0 else 0.0)
        ranked.append(QuoteNode(f"{site}{list(index)}", site, index, float(a.mean()), float(b.mean()), separation))
    return sorted(ranked, key=lambda q: -q.separation)


@dataclass
class ReplacementResult:
    """Task loss on the test pairs with the node as it is, replaced by the fitted labeller, replaced
    by the control (single and double swapped), and mean-ablated (its mean over the fit prompts)."""

    task: str
    node: str
    single: float
    double: float
    n_pairs: int
    loss_clean: float
    loss_replaced: float
    loss_swapped: float
    loss_mean_ablated: float
    accuracy_clean: float
    accuracy_replaced: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def replacement_study(
    model: Any,
    node: NodeLike,
    task: str = "single_double_quote",
    n_fit: int = 64,
    n_test: int = 128,
    seed: int = 0,
    circuit: Any = None,
) -> ReplacementResult:
    """Fit the quote labeller on ``n_fit`` train pairs' prompts, then measure the task on ``n_test``
    test pairs (within ``circuit`` when given: every other node mean-ablated)."""
    site, index = _node(model, node)
    task_obj = get_task(task)
    tokens, real = _fit_prompts(model, task_obj, n_fit, seed)
    test_pairs = task_obj.generate(n_test, seed=seed, split="test", **_generate_kwargs(model))
    acts = node_activations(model, (site, index), tokens)
    single, double = _quote_means(model.tokenizer, acts, tokens, real)
    mean = float(acts[real.to(acts.device)].mean())

    def loss_with(labeller: Optional[Labeller]):
        with (circuit.applied(model) if circuit is not None else nullcontext()):
            if labeller is None:
                return evaluate_pairs(model, test_pairs, task_name=task_obj.name)
            with replace_node_with(model, (site, index), labeller):
                return evaluate_pairs(model, test_pairs, task_name=task_obj.name)

    clean = loss_with(None)
    replaced = loss_with(quote_state_labeller(model.tokenizer, single, double))
    swapped = loss_with(quote_state_labeller(model.tokenizer, double, single))
    ablated = loss_with(lambda tokens: torch.full(tokens.shape, mean))
    return ReplacementResult(
        task=task_obj.name, node=f"{site}{list(index)}", single=single, double=double, n_pairs=len(test_pairs),
        loss_clean=clean.loss, loss_replaced=replaced.loss, loss_swapped=swapped.loss, loss_mean_ablated=ablated.loss,
        accuracy_clean=clean.accuracy, accuracy_replaced=replaced.accuracy,
    )

