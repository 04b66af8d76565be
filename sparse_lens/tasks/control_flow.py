"""Control-flow tasks: ``for_while``, ``else_elif``, ``if_ternary``, ``if_equals``, ``indent_for``,
``while_return_true`` and ``enumerate_range``.

Where the answer is the first word of an indented line, the prompt ends with the indentation minus
one space and the completion carries that space (``" else"``): that is how GPT-2-style byte-level
pre-tokenizers split ``"    else"``."""

from __future__ import annotations

import random

from sparse_lens.tasks import rules
from sparse_lens.tasks.base import Task, TaskPair
from sparse_lens.tasks.snippets import (
    FUNC_NAMES, STEP, VAR_NAMES, atom, budget, distinct, expression, number, scaffold, string, try_tail,
)  # fmt: skip

LOOP_NAMES = (
    "node", "item", "line", "chunk", "current", "task", "job", "entry", "batch", "token", "msg", "data",
    "block", "record", "frame", "event", "child", "value", "key", "name", "part", "x", "n", "p",
)  # fmt: skip


def _statement(rng: random.Random, names: tuple[str, ...] = ()) -> str:
    a = rng.choice(names) if names else rng.choice(VAR_NAMES)
    b = rng.choice(VAR_NAMES)
    return rng.choice((
        f"{b} = {expression(rng, names)}",
        f"{rng.choice(FUNC_NAMES)}({a})",
        f"{b}.append({a})",
        f"print({a})",
        f"{b} += {number(rng)}",
        f"{b} = {a}",
        "pass",
    ))  # fmt: skip


def _for_while(rng: random.Random, max_chars: int) -> TaskPair:
    name = rng.choice(LOOP_NAMES)
    seq = rng.choice(("items", "nodes", "lines", "queue", "pending", "tasks", "rows", "values", "entries", f"{name}s"))
    levels = rng.choice((0, 1, 1, 2, 3))
    prefix, indent = scaffold(rng, budget(rng, max_chars, 30 + 34 * levels), levels, avoid=(name,))
    body_for = f"{indent}{STEP}{_statement(rng, (name,))}\n"
    body_while = f"{indent}{STEP}{rng.choice((f'{name} = {name}.next', f'{name} = {seq}.pop()', f'{name} = next_{name}({name})'))}\n"
    tail = try_tail(prefix)
    return TaskPair(
        f"{prefix}{indent}for {name}", f"{prefix}{indent}while {name}", " in", ":",
        f" {seq}:\n{body_for}{tail}", f"\n{body_while}{tail}",
    )


FOR_WHILE = Task(
    name="for_while",
    description="after `for NAME` comes ` in`; after `while NAME` the header ends with `:`",
    completions=(" in", ":"),
    sampler=_for_while,
    cue="the loop keyword: for or while",
    rule=rules.for_while,
    rule_doc="a while header tests truth, it is never a membership test `while x in y`",
    grammar_sides=("positive",),
)


def _else_elif(rng: random.Random, max_chars: int) -> TaskPair:
    levels = rng.choice((1, 1, 2, 3))
    x, seq, found = distinct(rng, VAR_NAMES, 3)
    prefix, indent = scaffold(rng, budget(rng, max_chars, 120 + 34 * levels), levels, avoid=(x, seq, found), function=True)
    inner = indent + STEP
    kind = rng.choice(("for", "for", "while", "try"))
    if kind == "for":
        block = (
            f"{indent}for {x} in {seq}:\n"
            f"{inner}if {x} {rng.choice(('==', '>', 'is', 'in'))} {atom(rng)}:\n"
            f"{inner}{STEP}{found} = {x}\n"
            f"{inner}{STEP}break\n"
        )
    elif kind == "while":
        block = (
            f"{indent}while {x} > {number(rng)}:\n"
            f"{inner}{x} -= {rng.randint(1, 3)}\n"
            f"{inner}if {rng.choice(FUNC_NAMES)}({x}):\n"
            f"{inner}{STEP}break\n"
        )
    else:
        block = (
            f"{indent}try:\n"
            f"{inner}{found} = {rng.choice(('int', 'float', 'json.loads', 'parse'))}({x})\n"
            f"{indent}except {rng.choice(('ValueError', 'KeyError', 'TypeError', '(ValueError, TypeError)'))}:\n"
            f"{inner}{found} = {atom(rng)}\n"
        )
    options = [string(rng, '"') for _ in range(4)] if rng.random() < 0.6 else [str(i) for i in rng.sample(range(10), 4)]
    branches = rng.randint(1, 3)
    chain = f"{indent}if {x} == {options[0]}:\n{inner}{found} = {expression(rng)}\n"
    for i in range(1, branches):
        chain += f"{indent}elif {x} == {options[i]}:\n{inner}{found} = {expression(rng)}\n"
    cut = indent[:-1]  # the last space of the indentation goes with the keyword
    tail = try_tail(prefix)
    return TaskPair(
        prefix + block + cut, prefix + chain + cut, " else", " elif",
        f":\n{inner}{found} = {atom(rng)}\n{tail}", f" {x} == {options[branches]}:\n{inner}{found} = {expression(rng)}\n{tail}",
    )


ELSE_ELIF = Task(
    name="else_elif",
    description="after a for/while/try block the next branch is ` else`; after an if-dispatch block it is ` elif`",
    completions=(" else", " elif"),
    sampler=_else_elif,
    cue="the kind of block just closed at this indentation: for/while/try vs if",
    rule=rules.else_elif,
    rule_doc="after an `if NAME == LITERAL:` block the dispatch continues with elif",
    grammar_sides=("positive",),
)


def _condition(rng: random.Random, a: str, b: str) -> str:
    return rng.choice((
        a, a, f"not {a}", f"{a} is None", f"{a} is not None", f"{a} > {number(rng)}", f"{a}.{rng.choice(('ready', 'done', 'enabled'))}",
        f"len({a}) > {rng.randint(0, 5)}", f"{a} in {b}", f"isinstance({a}, {rng.choice(('str', 'int', 'dict', 'list'))})",
        f"{a} == {atom(rng)}",
    ))  # fmt: skip


def _if_ternary(rng: random.Random, max_chars: int) -> TaskPair:
    a, b, target = distinct(rng, VAR_NAMES, 3)
    cond = _condition(rng, a, b)
    levels = rng.choice((0, 1, 1, 2, 3))
    in_function = levels > 0 and rng.random() < 0.7
    prefix, indent = scaffold(rng, budget(rng, max_chars, 40 + len(cond) + 34 * levels), levels, function=in_function)
    value, other = atom(rng, (a, b)), atom(rng, (a, b))
    lead = rng.choice((f"{target} = ", f"{target} = ", "return ")) if in_function else f"{target} = "
    tail = try_tail(prefix)
    return TaskPair(
        f"{prefix}{indent}if {cond}", f"{prefix}{indent}{lead}{value} if {cond}", ":", " else",
        f"\n{indent}{STEP}{_statement(rng, (a,))}\n{tail}", f" {other}\n{tail}",
    )


IF_TERNARY = Task(
    name="if_ternary",
    description="after an `if` condition: `:` when the if starts a statement, ` else` inside a conditional expression",
    completions=(":", " else"),
    sampler=_if_ternary,
    cue="whether `if` starts the line (statement) or follows a value (ternary)",
)


def _if_equals(rng: random.Random, max_chars: int) -> TaskPair:
    name, other = distinct(rng, VAR_NAMES, 2)
    lhs = rng.choice((name, name, name, f"self.{name}", f"{other}.{name}", f"{other}[{string(rng)}]", f"{other}[{rng.randint(0, 9)}]"))
    levels = rng.choice((0, 1, 1, 2, 3))
    prefix, indent = scaffold(rng, budget(rng, max_chars, 40 + 34 * levels), levels)
    keyword = rng.choice(("if ", "if ", "if ", "if ", f"if {other} and ", f"if {other} or "))
    value = atom(rng)
    tail = try_tail(prefix)
    return TaskPair(
        f"{prefix}{indent}{keyword}{lhs}", f"{prefix}{indent}{lhs}", " ==", " =",
        f" {value}:\n{indent}{STEP}{_statement(rng)}\n{tail}", f" {value}\n{tail}",
    )


IF_EQUALS = Task(
    name="if_equals",
    description="` ==` when comparing inside an `if` condition, ` =` when the line assigns",
    completions=(" ==", " ="),
    sampler=_if_equals,
    cue="whether the name follows `if` or starts the statement",
    rule=rules.if_equals,
    rule_doc="a statement is never a bare comparison: at the start of a statement the name is assigned",
    grammar_sides=("positive",),
)


def _indent_for(rng: random.Random, max_chars: int) -> TaskPair:
    levels = rng.choice((1, 1, 2))
    x, seq = distinct(rng, VAR_NAMES, 2)
    prefix, indent = scaffold(rng, budget(rng, max_chars, 60 + 34 * levels), levels)
    header = f"{indent}for {x} in {seq}:\n"
    if rng.random() < 0.5:
        plain = f"{indent}for {x} in {seq}: {_statement(rng, (x,))}\n"  # a one-line loop: no new block
    else:
        plain = f"{indent}{x} = {rng.choice((f'{seq}[0]', f'next(iter({seq}))', f'{seq}.pop()', f'len({seq})'))}\n"
    deeper = " " * (len(indent) + len(STEP) - 1)
    same = " " * (len(indent) - 1)
    tail = try_tail(prefix)
    return TaskPair(
        prefix + header, prefix + plain, deeper, same,
        f" {_statement(rng, (x,))}\n{tail}", f" {_statement(rng, (x,))}\n{tail}",
    )


INDENT_FOR = Task(
    name="indent_for",
    description="the indentation of the line after a `for ...:` header is one level deeper; after a simple statement it stays",
    completions=None,
    sampler=_indent_for,
    cue="whether the previous line is a `for` header ending in `:`",
)


def _while_return_true(rng: random.Random, max_chars: int) -> TaskPair:
    levels = rng.choice((1, 1, 2, 2, 3))
    prefix, indent = scaffold(rng, budget(rng, max_chars, 40 + 34 * levels), levels, function=True)
    if rng.random() < 0.4:  # the statement sits in an if block
        a = rng.choice(VAR_NAMES)
        prefix += f"{indent}if {_condition(rng, a, rng.choice(VAR_NAMES))}:\n"
        indent += STEP
    body = rng.choice((
        f"{rng.choice(VAR_NAMES)} = {rng.choice(FUNC_NAMES)}()",
        f"if not {rng.choice(VAR_NAMES)}:\n{indent}{STEP}{STEP}break",
        f"{rng.choice(VAR_NAMES)} = queue.get()",
        "time.sleep(1)",
    ))  # fmt: skip
    tail = try_tail(prefix)
    return TaskPair(
        f"{prefix}{indent}while True", f"{prefix}{indent}return True", ":", "\n",
        f"\n{indent}{STEP}{body}\n{tail}", tail,
    )


WHILE_RETURN_TRUE = Task(
    name="while_return_true",
    description="after `True`: `:` in `while True`, a newline in `return True`",
    completions=(":", "\n"),
    sampler=_while_return_true,
    cue="the keyword before True: while or return",
)


def _enumerate_range(rng: random.Random, max_chars: int) -> TaskPair:
    i = rng.choice(("i", "i", "idx", "index", "j", "k", "n", "pos", "lineno", "row_index"))
    x = rng.choice(("item", "line", "row", "x", "value", "name", "word", "ch", "entry", "node", "arg", "col"))
    seq = rng.choice(("items", "lines", "rows", "values", "names", "words", "text", "entries", "nodes", "args", f"{x}s"))
    levels = rng.choice((0, 1, 1, 2, 3))
    prefix, indent = scaffold(rng, budget(rng, max_chars, 60 + 34 * levels), levels, avoid=(i, x, seq))
    tail = try_tail(prefix)
    if rng.random() < 0.75:
        body = f"{indent}{STEP}{rng.choice((f'print({i}, {seq}[{i}])', f'{rng.choice(FUNC_NAMES)}({i})', f'total += {i}'))}\n"
        return TaskPair(
            f"{prefix}{indent}for {i}, {x} in", f"{prefix}{indent}for {i} in", " enumerate", " range",
            f"({seq}):\n{body}{tail}", f"(len({seq})):\n{body}{tail}",
        )
    target, fn = rng.choice(VAR_NAMES), rng.choice(FUNC_NAMES)
    return TaskPair(
        f"{prefix}{indent}{target} = [{fn}({i}, {x}) for {i}, {x} in", f"{prefix}{indent}{target} = [{fn}({i}) for {i} in",
        " enumerate", " range", f"({seq})]\n{tail}", f"(len({seq}))]\n{tail}",
    )


ENUMERATE_RANGE = Task(
    name="enumerate_range",
    description="` enumerate` when the loop unpacks `index, item`, ` range` when it binds a single index",
    completions=(" enumerate", " range"),
    sampler=_enumerate_range,
    cue="the loop target: a pair `i, x` or a single name `i`",
    rule=rules.enumerate_range,
    rule_doc="a two-name target iterates enumerate(...), a single-name target range(...)",
    grammar_sides=(),
)

TASKS = (FOR_WHILE, ELSE_ELIF, IF_TERNARY, IF_EQUALS, INDENT_FOR, WHILE_RETURN_TRUE, ENUMERATE_RANGE)
