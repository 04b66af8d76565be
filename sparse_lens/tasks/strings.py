"""String tasks: ``single_double_quote`` and ``fstring_brace``."""

from __future__ import annotations

import random

from sparse_lens.tasks.base import Task, TaskPair
from sparse_lens.tasks.snippets import (
    COMMON_NAMES, FUNC_NAMES, VAR_NAMES, WORDS, budget, distinct, number, scaffold, try_tail,
)  # fmt: skip

_PUNCT = ("", "", "", ".", ":", "!", ",", " -", "?", " %s", " =")


def _content(rng: random.Random, punct: bool = True) -> str:
    """Text inside a string literal: no quotes, backslashes or braces."""
    words = [rng.choice(WORDS) for _ in range(rng.randint(1, 6))]
    text = " ".join(words)
    if rng.random() < 0.3:
        text = text.capitalize()
    if rng.random() < 0.15:
        text = f"{text} {number(rng)}"
    return text + rng.choice(_PUNCT) if punct else text


def _string_lhs(rng: random.Random, in_function: bool) -> str:
    """What comes before a string literal that ends its line."""
    a, b = distinct(rng, VAR_NAMES, 2)
    forms = [
        f"{a} = ",
        f"{a} = ",
        f"{a} += ",
        f"{a} = {b} + ",
        f"assert {b}, ",
        f"{a}[{number(rng)}] = ",
        f"{a} = {b} or ",
        f"{a}: str = ",
        f"self.{a} = ",
        f"{a} = {b} if {a} else ",
    ]
    if in_function:
        forms += ["return ", "return ", "yield ", f"return {b} + "]
    return rng.choice(forms)


def _single_double_quote(rng: random.Random, max_chars: int) -> TaskPair:
    levels = rng.choice((0, 0, 1, 1, 2, 3))
    in_function = levels > 0 and rng.random() < 0.8
    lhs = _string_lhs(rng, in_function)
    prefix_letter = rng.choice(("",) * 8 + ("f", "r", "b"))
    content = _content(rng)
    core = len(lhs) + len(content) + 4 * levels + 30 * levels
    prefix, indent = scaffold(rng, budget(rng, max_chars, core), levels, function=in_function)
    head = f"{prefix}{indent}{lhs}{prefix_letter}"
    suffix = "\n" + try_tail(prefix)
    return TaskPair(f'{head}"{content}', f"{head}'{content}", '"', "'", suffix, suffix)


SINGLE_DOUBLE_QUOTE = Task(
    name="single_double_quote",
    description="close a string literal with the quote character it was opened with",
    completions=('"', "'"),
    sampler=_single_double_quote,
    cue="the opening quote of the string literal that the line ends in",
)


def _field_expr(rng: random.Random) -> tuple[str, str]:
    """(expression inside a replacement field, the same text without braces' meaning)."""
    name = rng.choice(VAR_NAMES + COMMON_NAMES)
    base = rng.choice((
        name, name, name, f"self.{name}", f"len({name})", f"{name}[0]", f"{name}.{rng.choice(('name', 'id', 'value', 'size'))}",
        f"{rng.choice(FUNC_NAMES)}({name})", f"{name} + 1",
    ))  # fmt: skip
    spec = rng.choice(("",) * 6 + (":.2f", ":>8", "!r", ":,", ":03d"))
    return base + spec, base


def _fstring_brace(rng: random.Random, max_chars: int) -> TaskPair:
    levels = rng.choice((0, 0, 1, 1, 2, 3))
    in_function = levels > 0 and rng.random() < 0.8
    lhs = _string_lhs(rng, in_function)
    parts: list[str] = []
    for _ in range(rng.randint(0, 3)):  # earlier text and closed replacement fields
        parts.append(_content(rng) + " ")
        parts.append("{" + _field_expr(rng)[0] + "} ")
    parts.append(_content(rng, punct=False) + rng.choice((": ", " ", " = ", " (", ", ")))
    expr, text = _field_expr(rng)
    body = "".join(parts)
    core = len(lhs) + len(body) + len(expr) + 34 * levels
    prefix, indent = scaffold(rng, budget(rng, max_chars, core), levels, function=in_function)
    head = f'{prefix}{indent}{lhs}f"{body}'
    tail = try_tail(prefix)
    return TaskPair(head + "{" + expr, head + text, "}", '"', '"\n' + tail, "\n" + tail)


FSTRING_BRACE = Task(
    name="fstring_brace",
    description="inside an f-string, close an open replacement field with } ; without one, close the string",
    completions=("}", '"'),
    sampler=_fstring_brace,
    cue="whether an unclosed { opens a replacement field before the end of the f-string line",
)

TASKS = (SINGLE_DOUBLE_QUOTE, FSTRING_BRACE)
