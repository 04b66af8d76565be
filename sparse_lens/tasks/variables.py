"""Variable-tracking tasks: ``set_or_string``, ``set_or_string_fixedvarname``, ``var_swap`` and
``var_if``. Grammar accepts both completions in all of them; each has a rule (see `rules`)."""

from __future__ import annotations

import random

from sparse_lens.tasks import rules
from sparse_lens.tasks.base import Task, TaskPair
from sparse_lens.tasks.snippets import (
    COMMON_NAMES, FUNC_NAMES, SHORT_NAMES, STEP, VAR_NAMES, atom, budget, distinct, distractor, scaffold, string,
    try_tail,
)  # fmt: skip

ACCUMULATOR_NAMES = (
    "result", "out", "seen", "acc", "buf", "names", "parts", "text", "value", "tags", "keys", "words",
    "chars", "collected", "found", "output", "res", "s", "items", "total", "merged", "pending", "unique",
)  # fmt: skip
ELEMENT_NAMES = ("word", "item", "token", "part", "ch", "name", "key", "line", "piece", "tag", "x", "label")


def _set_or_string(rng: random.Random, max_chars: int, fixed: bool) -> TaskPair:
    name = "current" if fixed else rng.choice(ACCUMULATOR_NAMES)
    elem = rng.choice(ELEMENT_NAMES)
    seq = rng.choice((f"{elem}s", "items", "data", "values", "tokens", "lines", "source", "parts"))
    avoid = (name, elem, seq)
    levels = rng.choice((1, 1, 2))
    room = budget(rng, max_chars, 80 + 34 * levels)
    before, between = rng.randint(0, 2 * room // 3), rng.randint(0, room // 3)
    prefix, indent = scaffold(rng, before, levels, avoid=avoid, function=True)
    middle = distractor(rng, between, indent, avoid)
    loop = ""
    use_indent = indent
    shape = rng.random()
    if shape < 0.75:
        loop = f"{indent}for {elem} in {seq}:\n"
        use_indent = indent + STEP
        if rng.random() < 0.4:
            loop += f"{use_indent}if {rng.choice((f'{elem} not in {rng.choice(VAR_NAMES)}', f'{elem}', f'len({elem}) > {rng.randint(0, 3)}', f'not {elem}.startswith({string(rng)})'))}:\n"
            use_indent += STEP
    else:
        loop = f"{indent}{elem} = {rng.choice(FUNC_NAMES)}({seq})\n"
    empty = rng.choice(('""', "''", '""'))
    tail = try_tail(prefix)
    positive = f"{prefix}{indent}{name} = set()\n{middle}{loop}{use_indent}{name}"
    negative = f"{prefix}{indent}{name} = {empty}\n{middle}{loop}{use_indent}{name}"
    return TaskPair(positive, negative, ".", " +=", f"add({elem})\n{tail}", f" {elem}\n{tail}")


_SOS_DOC = "a variable last initialized as set() is updated with .add(...), one initialized as a string with +="

SET_OR_STRING = Task(
    name="set_or_string",
    description="update a variable with `.add` (`.` is the answer token) if it was initialized as set(), ` +=` if as a string",
    completions=(".", " +="),
    sampler=lambda rng, max_chars: _set_or_string(rng, max_chars, fixed=False),
    cue="the variable's initializer earlier in the function: set() or an empty string",
    rule=rules.set_or_string,
    rule_doc=_SOS_DOC,
    grammar_sides=(),
)

SET_OR_STRING_FIXEDVARNAME = Task(
    name="set_or_string_fixedvarname",
    description="as set_or_string, with the variable always named `current`",
    completions=(".", " +="),
    sampler=lambda rng, max_chars: _set_or_string(rng, max_chars, fixed=True),
    cue="the initializer of `current`: set() or an empty string",
    rule=rules.set_or_string,
    rule_doc=_SOS_DOC,
    grammar_sides=(),
)

SWAP_NAMES = SHORT_NAMES + ("key", "value", "first", "start", "end", "new", "node", "data", "name", "lo", "last", "other")


def _var_swap(rng: random.Random, max_chars: int) -> TaskPair:
    a, b = distinct(rng, SWAP_NAMES, 2)
    levels = rng.choice((0, 1, 1, 2))
    prefix, indent = scaffold(rng, budget(rng, max_chars, 60 + 34 * levels), levels, avoid=(a, b))
    setup = ""
    if rng.random() < 0.6:
        first, second = (a, b) if rng.random() < 0.5 else (b, a)
        setup = f"{indent}{first} = {atom(rng)}\n{indent}{second} = {atom(rng)}\n"
    if rng.random() < 0.5:
        setup += f"{indent}if {rng.choice((f'{a} > {b}', f'{b} < {a}', f'{a} > {b}', 'swap', f'{rng.choice(FUNC_NAMES)}({a}, {b})'))}:\n"
        indent += STEP
    tail = try_tail(prefix)
    head = prefix + setup + indent
    return TaskPair(f"{head}{a}, {b} = {b},", f"{head}{b}, {a} = {a},", f" {a}", f" {b}", "\n" + tail, "\n" + tail)


VAR_SWAP = Task(
    name="var_swap",
    description="finish a swap `a, b = b, a`: the second value is the first target",
    completions=None,
    sampler=_var_swap,
    cue="the order of the names on the left of the tuple assignment",
    rule=rules.var_swap,
    rule_doc="a tuple assignment `a, b = b, ...` swaps: its value is `b, a`",
    grammar_sides=(),
)

IF_NAMES = SHORT_NAMES + COMMON_NAMES


def _source_call(rng: random.Random) -> str:
    return rng.choice((
        f"re.match({string(rng)}, {rng.choice(VAR_NAMES)})",
        f"{rng.choice(VAR_NAMES)}.get({string(rng)})",
        f"os.environ.get({string(rng).upper()})",
        f"self.cache.get({rng.choice(VAR_NAMES)})",
        f"{rng.choice(FUNC_NAMES)}({rng.choice(VAR_NAMES)})",
        f"next(iter({rng.choice(VAR_NAMES)}), None)",
        f"shutil.which({string(rng)})",
        f"{rng.choice(VAR_NAMES)}.find({string(rng)})",
        f"getattr({rng.choice(VAR_NAMES)}, {string(rng)}, None)",
    ))  # fmt: skip


def _var_if(rng: random.Random, max_chars: int) -> TaskPair:
    a, b = distinct(rng, IF_NAMES, 2)
    levels = rng.choice((0, 1, 1, 2, 3))
    in_function = levels > 0 and rng.random() < 0.7
    prefix, indent = scaffold(rng, budget(rng, max_chars, 60 + 34 * levels), levels, avoid=(a, b), function=in_function)
    if rng.random() < 0.5:  # both names already in use before the cue
        first, second = (a, b) if rng.random() < 0.5 else (b, a)
        prefix += f"{indent}{first} = {atom(rng)}\n{indent}{second} = {_source_call(rng)}\n"
    call = _source_call(rng)
    test = rng.choice((":", ":", " is None:", " is not None:", " is not None:"))
    actions = [f"print({rng.choice(VAR_NAMES)})", f"raise ValueError({string(rng)})", "pass"]
    if in_function:
        actions += ["return", "return None", f"return {atom(rng)}"]
    body = f"\n{indent}{STEP}{rng.choice(actions)}"
    tail = try_tail(prefix)
    return TaskPair(
        f"{prefix}{indent}{a} = {call}\n{indent}if", f"{prefix}{indent}{b} = {call}\n{indent}if", f" {a}", f" {b}",
        f"{test}{body}\n{tail}", f"{test}{body}\n{tail}",
    )


VAR_IF = Task(
    name="var_if",
    description="the `if` right after an assignment tests the variable just assigned",
    completions=None,
    sampler=_var_if,
    cue="the target of the assignment on the previous line",
    rule=rules.var_if,
    rule_doc="an `if` right after `NAME = ...` tests NAME",
    grammar_sides=(),
)

TASKS = (SET_OR_STRING, SET_OR_STRING_FIXEDVARNAME, VAR_SWAP, VAR_IF)
