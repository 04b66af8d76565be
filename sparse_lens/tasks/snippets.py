"""Building blocks shared by the task generators: identifier and literal pools, and distractor code.

Everything here is pure Python driven by a `random.Random`; only sequences (never sets) are iterated
or sampled, so the output does not depend on ``PYTHONHASHSEED``.

Distractor code is a run of complete, valid statements (assignments, calls, comments, prints, small
loops, ifs and functions) written at a given indentation; the generators put it before the cue so
prompts vary in length and content without changing the answer.
"""

from __future__ import annotations

import random
from typing import Sequence

# Plausible variable names. Names used as *answers* are drawn from the smaller pools below, chosen to
# be single tokens under a 2k-vocabulary BPE trained on Python.
VAR_NAMES: tuple[str, ...] = (
    "count", "total", "result", "items", "values", "data", "name", "names", "path", "paths", "text",
    "line", "lines", "key", "keys", "value", "index", "offset", "size", "length", "buf", "buffer",
    "config", "options", "params", "args", "kwargs", "record", "records", "row", "rows", "entry",
    "entries", "node", "nodes", "parent", "child", "children", "queue", "stack", "cache", "seen",
    "visited", "tokens", "token", "words", "word", "chunk", "chunks", "header", "headers", "body",
    "payload", "message", "msg", "response", "request", "status", "code", "score", "scores", "weight",
    "weights", "limit", "start", "stop", "step", "width", "height", "depth", "level", "mode", "label",
    "labels", "prefix", "suffix", "target", "source", "dest", "url", "host", "port", "user", "users",
    "group", "groups", "batch", "matrix", "vector", "point", "points", "delta", "ratio", "timeout",
    "retries", "flags", "state", "events", "handlers", "results", "output", "errors", "warnings",
    "filename", "content", "pattern", "fields", "columns", "counts", "mapping", "lookup", "registry",
)  # fmt: skip

FUNC_NAMES: tuple[str, ...] = (
    "load", "save", "parse", "process", "compute", "update", "render", "build", "validate", "fetch",
    "normalize", "transform", "encode", "decode", "merge", "split_words", "read_config", "get_value",
    "make_key", "format_row", "check", "handle", "collect", "flatten", "resolve", "lookup_user",
    "apply_patch", "scale", "clean", "summarize", "to_dict", "from_json", "find_index", "count_items",
)  # fmt: skip

MODULES: tuple[str, ...] = (
    "os", "sys", "re", "json", "math", "time", "random", "logging", "itertools", "functools",
    "collections", "pathlib", "typing", "datetime", "subprocess", "shutil", "string", "textwrap",
)  # fmt: skip

WORDS: tuple[str, ...] = (
    "hello", "world", "error", "done", "ready", "loading", "config", "data", "value", "result",
    "missing", "invalid", "input", "output", "user", "name", "path", "file", "not found", "ok",
    "success", "failed", "warning", "debug", "info", "starting", "stopping", "total", "count",
    "index", "default", "unknown", "empty", "header", "footer", "title", "message", "status",
    "alpha", "beta", "gamma", "delta", "red", "green", "blue", "north", "south", "east", "west",
    "utf-8", "ascii", "json", "csv", "txt", "log", "tmp", "cache", "data.json", "config.yaml",
)  # fmt: skip

# Single-letter and very common names: single tokens (with a leading space) under a small Python BPE.
SHORT_NAMES: tuple[str, ...] = ("x", "y", "a", "b", "i", "j", "k", "n", "m", "p", "s", "t", "u", "v", "w", "z")
COMMON_NAMES: tuple[str, ...] = (
    "key", "value", "name", "data", "result", "line", "path", "node", "text", "first", "start", "end", "new",
    "match", "error", "size", "args", "obj", "out", "res", "msg", "user", "config", "mode", "state", "other",
    "source", "output", "code", "file", "values", "names", "message", "default", "base", "last",
)  # fmt: skip
# Attribute names (after ``self.``, no leading space) that are single tokens under a small Python BPE.
ATTR_NAMES: tuple[str, ...] = (
    "name", "value", "size", "data", "path", "key", "x", "y", "width", "id", "level", "text", "state", "base",
    "url", "port", "config", "args", "items", "index", "user", "group", "type", "code", "line", "result",
    "output", "default", "error", "start", "end", "row", "col", "kwargs", "msg", "lines", "obj", "other",
)  # fmt: skip

OPS: tuple[str, ...] = ("+", "-", "*", "//", "%")


def ident(rng: random.Random, avoid: Sequence[str] = ()) -> str:
    """A plausible variable name not in `avoid`."""
    while True:
        name = rng.choice(VAR_NAMES)
        if name not in avoid:
            return name


def distinct(rng: random.Random, pool: Sequence[str], k: int, avoid: Sequence[str] = ()) -> list[str]:
    """`k` distinct names from `pool`, none in `avoid`."""
    choices = [p for p in pool if p not in avoid]
    return rng.sample(choices, k)


def number(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.6:
        return str(rng.randint(0, 100))
    if r < 0.8:
        return str(rng.randint(100, 100000))
    return f"{rng.uniform(0, 100):.{rng.randint(1, 3)}f}"


def word(rng: random.Random) -> str:
    """String content without quotes, backslashes or braces."""
    w = rng.choice(WORDS)
    if rng.random() < 0.3:
        w = f"{w} {rng.choice(WORDS)}"
    if rng.random() < 0.2:
        w = w.capitalize()
    return w


def string(rng: random.Random, quote: str | None = None) -> str:
    q = quote or rng.choice("'\"")
    return f"{q}{word(rng)}{q}"


def atom(rng: random.Random, names: Sequence[str] = ()) -> str:
    """A simple expression: a literal or a name."""
    r = rng.random()
    if r < 0.35:
        return number(rng)
    if r < 0.6:
        return string(rng)
    if r < 0.7:
        return rng.choice(("None", "True", "False"))
    return rng.choice(names) if names else ident(rng)


def expression(rng: random.Random, names: Sequence[str] = ()) -> str:
    """A small valid expression."""
    r = rng.random()
    pick = (lambda: rng.choice(names)) if names else (lambda: ident(rng))
    if r < 0.3:
        return atom(rng, names)
    if r < 0.45:
        return f"{pick()} {rng.choice(OPS)} {number(rng)}"
    if r < 0.6:
        return f"{rng.choice(FUNC_NAMES)}({pick()})"
    if r < 0.7:
        return f"[{', '.join(atom(rng, names) for _ in range(rng.randint(0, 4)))}]"
    if r < 0.78:
        items = ", ".join(f"{string(rng)}: {atom(rng, names)}" for _ in range(rng.randint(0, 3)))
        return "{" + items + "}"
    if r < 0.86:
        return f"len({pick()})"
    if r < 0.93:
        return f"{pick()}.{rng.choice(('get', 'pop', 'copy', 'strip', 'split', 'lower', 'keys', 'items'))}()"
    return f"{pick()}[{rng.randint(0, 9)}]"


def _statement(rng: random.Random, indent: str, avoid: Sequence[str], top_level: bool) -> list[str]:
    """One complete statement (possibly a small block) as lines, each indented by `indent`."""
    step = "    "
    name = ident(rng, avoid)
    other = ident(rng, avoid)
    r = rng.random()
    if r < 0.28:
        return [f"{indent}{name} = {expression(rng)}"]
    if r < 0.36:
        return [f"{indent}{name} {rng.choice(('+=', '-=', '*='))} {number(rng)}"]
    if r < 0.46:
        call = rng.choice((
            f"print({expression(rng)})",
            f"logger.{rng.choice(('info', 'debug', 'warning'))}({string(rng)})",
            f"{other}.append({atom(rng)})",
            f"{rng.choice(FUNC_NAMES)}({other}, {atom(rng)})",
            f"{other}.update({expression(rng)})",
        ))
        return [f"{indent}{call}"]
    if r < 0.54:
        return [f"{indent}# {word(rng)} {rng.choice(WORDS)}"]
    if r < 0.60 and top_level:
        if rng.random() < 0.5:
            return [f"import {rng.choice(MODULES)}"]
        return [f"from {rng.choice(MODULES)} import {rng.choice(FUNC_NAMES)}"]
    if r < 0.70:
        acc = rng.choice(("total", "result", "out"))
        return [f"{indent}for {name} in {other}:", f"{indent}{step}{acc} {rng.choice(('+=', '-='))} {name}"]
    if r < 0.80:
        lines = [f"{indent}if {name} {rng.choice(('>', '<', '==', '!=', 'is', 'is not'))} {atom(rng)}:"]
        lines.append(f"{indent}{step}{other} = {expression(rng)}")
        if rng.random() < 0.4:
            lines += [f"{indent}else:", f"{indent}{step}{other} = {atom(rng)}"]
        return lines
    if r < 0.86:
        return [f"{indent}{name}, {other} = {atom(rng)}, {atom(rng)}"] if name != other else [f"{indent}{name} = None"]
    if r < 0.93 or not top_level:
        return [f"{indent}{name} = {rng.choice(FUNC_NAMES)}({', '.join(atom(rng) for _ in range(rng.randint(0, 3)))})"]
    fn = rng.choice(FUNC_NAMES)
    params = distinct(rng, VAR_NAMES, rng.randint(1, 3), avoid)
    return [
        f"{indent}def {fn}({', '.join(params)}):",
        f"{indent}{step}return {expression(rng, params)}",
    ]


def distractor(
    rng: random.Random,
    max_chars: int,
    indent: str = "",
    avoid: Sequence[str] = (),
    max_statements: int = 40,
) -> str:
    """Valid statements at `indent`, at most `max_chars` characters in all (possibly empty); every
    line ends with a newline. Names in `avoid` are never assigned or used."""
    if max_chars <= 0:
        return ""
    out: list[str] = []
    used = 0
    top_level = indent == ""
    for _ in range(max_statements):
        lines = _statement(rng, indent, avoid, top_level)
        if any(_mentions(line, a) for a in avoid for line in lines):
            continue
        block = "\n".join(lines) + "\n"
        if used + len(block) > max_chars:
            break
        out.append(block)
        used += len(block)
    return "".join(out)


def _mentions(line: str, name: str) -> bool:
    """Whether `name` occurs in `line` as a whole identifier."""
    start = 0
    while True:
        i = line.find(name, start)
        if i < 0:
            return False
        before = line[i - 1] if i > 0 else " "
        j = i + len(name)
        after = line[j] if j < len(line) else " "
        if not (before.isalnum() or before == "_") and not (after.isalnum() or after == "_"):
            return True
        start = i + 1


def budget(rng: random.Random, max_chars: int, core: int) -> int:
    """Characters left for distractor code: uniform between 0 and what `max_chars` allows after the
    task's own `core` characters, skewed toward short prompts (half of the prompts get at most a
    quarter of the room)."""
    room = max(0, max_chars - core)
    if rng.random() < 0.5:
        return rng.randint(0, room // 4)
    return rng.randint(0, room)


def split_budget(rng: random.Random, total: int) -> tuple[int, int]:
    """Split a distractor budget between module level and function body."""
    a = rng.randint(0, total)
    return a, total - a


CLASS_NAMES: tuple[str, ...] = (
    "Parser", "Config", "Node", "Client", "Handler", "Cache", "Point", "Vector", "Record", "Session",
    "Job", "Worker", "Reader", "Writer", "Buffer", "Tree", "Graph", "Item", "Account", "Rule", "Model",
)  # fmt: skip

STEP = "    "


def header(rng: random.Random, indent: str, avoid: Sequence[str], kind: str) -> list[str]:
    """Lines opening one block at `indent` (its body is at ``indent + STEP``)."""
    a, b = distinct(rng, VAR_NAMES, 2, avoid)
    if kind == "def":
        params = distinct(rng, VAR_NAMES, rng.randint(0, 3), avoid)
        if indent and rng.random() < 0.7:
            params = ["self", *params]
        return [f"{indent}def {rng.choice(FUNC_NAMES)}({', '.join(params)}):"]
    if kind == "class":
        base = rng.choice(("", "", "(object)", "(Base)", "(dict)"))
        return [f"{indent}class {rng.choice(CLASS_NAMES)}{base}:"]
    if kind == "for":
        return [f"{indent}for {a} in {b}:"]
    if kind == "if":
        return [f"{indent}if {a} {rng.choice(('>', '<', '==', '!=', 'is not'))} {atom(rng)}:"]
    if kind == "while":
        return [f"{indent}while {a} {rng.choice(('>', '<', '!='))} {number(rng)}:"]
    if kind == "with":
        return [f"{indent}with {rng.choice(('self._lock', 'lock', 'contextlib.suppress(KeyError)', 'warnings.catch_warnings()'))}:"]
    if kind == "try":
        return [f"{indent}try:"]
    raise ValueError(f"unknown block kind {kind!r}")


def scaffold(
    rng: random.Random,
    room: int,
    levels: int,
    avoid: Sequence[str] = (),
    function: bool = False,
) -> tuple[str, str]:
    """Code that opens `levels` nested blocks, with distractor statements (at most `room` characters
    in all) at module level and inside each block. Returns ``(prefix, indent)``: the prefix ends
    with a newline and the cue lines go at `indent`. With `function`, the outermost block is a
    function (or a method), so ``return`` is legal at the cue."""
    kinds: list[str] = []
    if levels > 0:
        if levels >= 2 and rng.random() < 0.3:
            kinds = ["class", "def"]
        elif function or rng.random() < 0.8:
            kinds = ["def"]
        while len(kinds) < levels:
            kinds.append(rng.choice(("for", "if", "while", "with", "try", "if", "for")))
    shares = [rng.random() for _ in range(levels + 1)]
    total = sum(shares) or 1.0
    parts: list[str] = []
    indent = ""
    for level in range(levels + 1):
        share = int(room * shares[level] / total)
        if level > 0 and kinds[level - 1] == "class":
            share = 0  # a class body gets no loose statements before its method
        parts.append(distractor(rng, share, indent, avoid))
        if level < levels:
            parts.append("\n".join(header(rng, indent, avoid, kinds[level])) + "\n")
            indent += STEP
    return "".join(parts), indent


def try_tail(prefix: str) -> str:
    """``except`` clause closing every ``try:`` block that `prefix` opened and left open (to append
    after the cue's suffix so the program parses)."""
    lines = prefix.split("\n")
    tails = []
    for line in lines:
        stripped = line.lstrip(" ")
        if stripped == "try:":
            tails.append(line[: len(line) - len(stripped)])
    return "".join(f"{ind}except Exception:\n{ind}    pass\n" for ind in reversed(tails))
