"""``with`` tasks: ``with_as`` and ``with_open``."""

from __future__ import annotations

import random

from sparse_lens.tasks import rules
from sparse_lens.tasks.base import Task, TaskPair
from sparse_lens.tasks.snippets import STEP, VAR_NAMES, budget, distractor, scaffold, string, try_tail

_SHORT_MODES = ('"r"', '"w"', "'rb'", "'a'")
_ENCODINGS = ('"utf-8"', "'utf-8'", "encoding")
HANDLE_NAMES = ("f", "f", "fh", "fp", "handle", "stream", "fobj", "conn", "tmp", "ctx", "z", "db")


def _path(rng: random.Random) -> str:
    return rng.choice((
        "path", "filename", "self.path", "fname", "config_path", "os.path.join(root, " + string(rng) + ")",
        string(rng), "tmp_path", "args.output", "path_for(name)",
    ))  # fmt: skip


def _manager_call(rng: random.Random) -> str:
    """A context-manager expression that ends with `)`."""
    return rng.choice((
        f"open({_path(rng)})",
        f"open({_path(rng)}, {rng.choice(_SHORT_MODES)})",
        f"open({_path(rng)}, encoding={string(rng)})",
        "tempfile.TemporaryDirectory()",
        f"zipfile.ZipFile({_path(rng)})",
        f"tarfile.open({_path(rng)})",
        f"sqlite3.connect({_path(rng)})",
        f"gzip.open({_path(rng)}, {string(rng, chr(34))})",
        "socket.create_connection((host, port))",
        f"urllib.request.urlopen({rng.choice(('url', 'request', 'self.url'))})",
        f"ThreadPoolExecutor(max_workers={rng.randint(1, 16)})",
        f"self.{rng.choice(('session', 'connect', 'transaction', 'lock_for'))}()",
        f"{rng.choice(('requests', 'httpx'))}.Session()",
    ))  # fmt: skip


def _with_as(rng: random.Random, max_chars: int) -> TaskPair:
    call = _manager_call(rng)
    handle = rng.choice(HANDLE_NAMES)
    levels = rng.choice((0, 1, 1, 2, 3))
    prefix, indent = scaffold(rng, budget(rng, max_chars, len(call) + 30 + 34 * levels), levels, avoid=(handle,))
    use = rng.choice((f"{handle}.read()", f"{handle}.close()", f"process({handle})", f"print({handle})"))
    tail = try_tail(prefix)
    return TaskPair(
        f"{prefix}{indent}with {call}", f"{prefix}{indent}{handle} = {call}", " as", "\n",
        f" {handle}:\n{indent}{STEP}{rng.choice(VAR_NAMES)} = {use}\n{tail}", tail,
    )


WITH_AS = Task(
    name="with_as",
    description="after the context-manager call of a `with` statement comes ` as`; after the same call assigned with `=`, a newline",
    completions=(" as", "\n"),
    sampler=_with_as,
    cue="whether the line starts with `with` or with `NAME =`",
)


def _mode_arg(rng: random.Random, mode: str | None, binary: bool) -> str:
    if mode is None:
        args = ""
    else:
        q = rng.choice(("'", '"'))
        args = f", {q}{mode}{q}" if rng.random() < 0.8 else f", mode={q}{mode}{q}"
    if not binary and rng.random() < 0.35:
        args += f", encoding={rng.choice(_ENCODINGS)}"
    return args


def _with_open(rng: random.Random, max_chars: int) -> TaskPair:
    handle = rng.choice(("f", "f", "fh", "fp", "handle", "stream", "fobj", "file"))
    path = _path(rng)
    read_mode = rng.choice((None, None, "r", "r", "rt", "rb"))
    write_mode = rng.choice(("w", "w", "w", "a", "wb", "wt", "x", "ab"))
    levels = rng.choice((0, 1, 1, 2, 3))
    in_function = levels > 0 and rng.random() < 0.7
    prefix, indent = scaffold(rng, budget(rng, max_chars, 80 + 34 * levels), levels, avoid=(handle,), function=in_function)
    inner = indent + STEP
    between = distractor(rng, rng.choice((0, 0, 60, 120)), inner, avoid=(handle,), max_statements=2)
    lead = rng.choice(("", "", "return ")) if in_function else ""
    data = rng.choice(("text", "data", "content", "json.dumps(obj)", "line + '\\n'", "payload", string(rng)))
    tail = try_tail(prefix)

    def prompt(mode: str | None) -> str:
        args = _mode_arg(rng, mode, binary=mode is not None and "b" in mode)
        return f"{prefix}{indent}with open({path}{args}) as {handle}:\n{between}{inner}{lead}{handle}."

    state = rng.getstate()
    positive = prompt(read_mode)
    rng.setstate(state)  # the same mode spelling and encoding choice in both prompts
    negative = prompt(write_mode)
    return TaskPair(positive, negative, "read", "write", f"()\n{tail}", f"({data})\n{tail}")


WITH_OPEN = Task(
    name="with_open",
    description="inside `with open(path, mode) as f:`, call `f.read` when the mode reads and `f.write` when it writes",
    completions=("read", "write"),
    sampler=_with_open,
    cue="the mode argument of open(): absent/'r'/'rb'/'rt' vs 'w'/'a'/'x' (+'b'/'t')",
    rule=rules.with_open,
    rule_doc="a file opened for reading is read, one opened for writing/appending/creating is written",
    grammar_sides=(),
)

TASKS = (WITH_AS, WITH_OPEN)
