"""Bracket tasks: ``bracket_counting`` and ``bracket_brace``.

The answer always closes a bracket at the end of a line (or alone at the start of one), so the
closing token is not fused with what follows under any byte-level BPE."""

from __future__ import annotations

import functools
import random
from typing import Optional

from sparse_lens.tasks.base import Task, TaskPair
from sparse_lens.tasks.snippets import COMMON_NAMES, SHORT_NAMES, VAR_NAMES, budget, distinct, scaffold, string, try_tail


def _scalar(rng: random.Random, last: bool = False) -> str:
    """A list element; the last one before the answer is a number or a name (never a string, whose
    closing quote some tokenizers would fuse with the bracket)."""
    r = rng.random()
    if r < 0.55:
        return str(rng.randint(-9, 99) if rng.random() < 0.9 else rng.randint(100, 9999))
    if r < 0.65:
        return f"{rng.uniform(0, 10):.{rng.randint(1, 2)}f}"
    if r < 0.85 or last:
        return rng.choice(SHORT_NAMES + COMMON_NAMES)
    return string(rng)


def _lhs(rng: random.Random, in_function: bool) -> str:
    a, b = distinct(rng, VAR_NAMES, 2)
    forms = [f"{a} = ", f"{a} = ", f"{a} = ", f"{a} += ", f"{a} = {b} + ", f"{a}[{rng.randint(0, 9)}] = ", f"self.{a} = "]
    if in_function:
        forms += ["return ", "return ", "yield "]
    return rng.choice(forms)


def _bracket_counting(rng: random.Random, max_chars: int, n_final: Optional[int] = None, plain: bool = False) -> TaskPair:
    """A pair; ``n_final`` fixes the number of elements after the last open bracket (the list whose
    length dilutes the bracket detectors' average), ``plain`` drops the closed elements before it and
    the enclosing function or class (the code around the line stays)."""
    # Elements before the final group: scalars and closed inner lists (depth 2 at most).
    before: list[str] = []
    for _ in range(0 if plain else rng.choice((0, 0, 1, 2, 3, 4, 6))):
        if rng.random() < 0.6:
            inner = [_scalar(rng) for _ in range(rng.randint(1, 5))]
            before.append("[" + ", ".join(inner) + "]")
        else:
            before.append(_scalar(rng))
    n_final = rng.choice((1, 2, 2, 3, 3, 4, 5, 6, 8, 12)) if n_final is None else n_final
    final = [_scalar(rng) for _ in range(n_final - 1)] + [_scalar(rng, last=True)]
    levels = 0 if plain else rng.choice((0, 0, 1, 1, 2))
    in_function = levels > 0 and rng.random() < 0.7
    lhs = _lhs(rng, in_function)
    core = len(lhs) + sum(len(x) + 2 for x in before + final) + 34 * levels
    prefix, indent = scaffold(rng, budget(rng, max_chars, core), levels, function=in_function)
    head = f"{prefix}{indent}{lhs}["
    lead = ", ".join(before) + (", " if before else "")
    positive = head + lead + "[" + ", ".join(final)  # an inner list is open: depth 2
    negative = head + lead + ", ".join(final)  # only the outer list is open: depth 1
    suffix = "\n" + try_tail(prefix)
    return TaskPair(positive, negative, "]]", "]", suffix, suffix)


BRACKET_COUNTING = Task(
    name="bracket_counting",
    description="close a list literal at the end of its line with ]] when a nested list is open, ] otherwise",
    completions=("]]", "]"),
    sampler=_bracket_counting,
    cue="the nesting depth of open [ brackets on the line (2 vs 1)",
)


def bracket_counting_of_length(n_elements: int) -> Task:
    """``bracket_counting`` with exactly ``n_elements`` elements in the open list before the answer and
    nothing else on the line (no closed elements before it, no enclosing block): the task at one list
    length, for measuring context dilution (the paper predicts the circuit, which averages bracket
    detectors over the context, fails as lists grow)."""
    if isinstance(n_elements, bool) or not isinstance(n_elements, int) or n_elements < 1:
        raise ValueError(f"n_elements: expected an integer >= 1, got {n_elements!r}")
    return Task(
        name=f"bracket_counting[n={n_elements}]",
        description=f"{BRACKET_COUNTING.description}; the open list holds {n_elements} elements",
        completions=BRACKET_COUNTING.completions,
        sampler=functools.partial(_bracket_counting, n_final=n_elements, plain=True),
        cue=BRACKET_COUNTING.cue,
    )


def _group(rng: random.Random) -> str:
    """A closed container: list, tuple, dict or set."""
    items = [_scalar(rng) for _ in range(rng.randint(1, 3))]
    kind = rng.choice(("list", "tuple", "dict", "set"))
    if kind == "list":
        return "[" + ", ".join(items) + "]"
    if kind == "tuple":
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if kind == "set":
        return "{" + ", ".join(items) + "}"
    return "{" + ", ".join(f"{string(rng)}: {x}" for x in items) + "}"


def _bracket_brace(rng: random.Random, max_chars: int) -> TaskPair:
    form = rng.random()
    if form < 0.25:
        return _bracket_brace_multiline(rng, max_chars)
    levels = rng.choice((0, 0, 1, 1, 2))
    in_function = levels > 0 and rng.random() < 0.7
    lhs = _lhs(rng, in_function)
    if form < 0.65:
        # The same elements in a list or a set.
        elems = [_scalar(rng) for _ in range(rng.randint(0, 7))] + [_scalar(rng, last=True)]
        body = ", ".join(elems)
        pos_body, neg_body = body, body
    else:
        # Closed containers inside a list, or the same containers as the values of a dict.
        values = [_group(rng) if rng.random() < 0.6 else _scalar(rng) for _ in range(rng.randint(1, 5))]
        values.append(_scalar(rng, last=True))
        keys = [string(rng) for _ in values]
        pos_body = ", ".join(values)
        neg_body = ", ".join(f"{k}: {v}" for k, v in zip(keys, values))
    core = len(lhs) + len(neg_body) + 34 * levels
    prefix, indent = scaffold(rng, budget(rng, max_chars, core), levels, function=in_function)
    head = f"{prefix}{indent}{lhs}"
    suffix = "\n" + try_tail(prefix)
    return TaskPair(head + "[" + pos_body, head + "{" + neg_body, "]", "}", suffix, suffix)


def _bracket_brace_multiline(rng: random.Random, max_chars: int) -> TaskPair:
    """A literal spread over lines at module level; the answer closes it alone at column 0."""
    name = rng.choice(VAR_NAMES).upper() if rng.random() < 0.5 else rng.choice(VAR_NAMES)
    n = rng.randint(1, 6)
    values = [_group(rng) if rng.random() < 0.3 else _scalar(rng) for _ in range(n)]
    if rng.random() < 0.5:
        values = [string(rng) for _ in range(n)]
    keys = [string(rng) for _ in range(n)]
    trailing = rng.random() < 0.8
    pos_lines = [f"    {v}" for v in values]
    neg_lines = [f"    {k}: {v}" for k, v in zip(keys, values)]
    end = ",\n" if trailing else "\n"
    pos_body = ",\n".join(pos_lines) + end
    neg_body = ",\n".join(neg_lines) + end
    prefix, _ = scaffold(rng, budget(rng, max_chars, len(neg_body) + len(name) + 6), 0)
    return TaskPair(f"{prefix}{name} = [\n{pos_body}", f"{prefix}{name} = {{\n{neg_body}", "]", "}", "\n", "\n")


BRACKET_BRACE = Task(
    name="bracket_brace",
    description="close the innermost open bracket: ] for a list opened with [, } for a dict or set opened with {",
    completions=("]", "}"),
    sampler=_bracket_brace,
    cue="the innermost unclosed opener: [ or {",
)

TASKS = (BRACKET_COUNTING, BRACKET_BRACE)
