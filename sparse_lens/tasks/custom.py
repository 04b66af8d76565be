"""User tasks without touching the library: from a template function or from a JSONL file.

Template::

    def my_template(rng: random.Random) -> TaskPair:
        name = rng.choice(["x", "y", "z"])
        return TaskPair(f"{name} = [1, 2", f"{name} = (1, 2", "]", ")", "\\n", "\\n")

    register_task("list_or_tuple", my_template, completions=("]", ")"), grammar_sides=("positive", "negative"))

JSONL, one pair per line (``name`` optional, default: the file's stem; ``*_suffix`` and ``split``
optional)::

    {"name": "t", "positive": "x = [1", "negative": "x = (1", "positive_completion": "]", "negative_completion": ")"}

    load_tasks_jsonl("pairs.jsonl")        # registers and returns the tasks found in the file
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from sparse_lens.tasks.base import DEFAULT_MAX_CHARS, Rule, Task, TaskPair, check_split, split_of

REQUIRED_FIELDS = ("positive", "negative", "positive_completion", "negative_completion")
OPTIONAL_FIELDS = ("name", "positive_suffix", "negative_suffix", "split")


def task_from_template(
    name: str,
    template: Callable[[random.Random], TaskPair],
    *,
    completions: Optional[tuple[str, str]] = None,
    description: str = "",
    cue: str = "",
    rule: Optional[Rule] = None,
    rule_doc: str = "",
    grammar_sides: Sequence[str] = (),
) -> Task:
    """A task whose pairs come from ``template(rng)``.

    completions: ``(positive, negative)`` if fixed (checked on every pair), else None.
    grammar_sides / rule: how `Task.validity_check` decides (see `Task`); with neither, the task is
    "unchecked"."""
    if not callable(template):
        raise TypeError(f"task {name!r}: template must be a function (rng) -> TaskPair, got {type(template).__name__}")

    def sampler(rng: random.Random, max_chars: int) -> TaskPair:
        return template(rng)

    return Task(
        name=name, description=description or f"user task {name}", completions=completions, sampler=sampler, cue=cue,
        rule=rule, rule_doc=rule_doc, grammar_sides=tuple(grammar_sides),
    )  # fmt: skip


class FixedPairsTask(Task):
    """A task with a fixed list of pairs per split (from a JSONL file)."""

    def __init__(self, name: str, pairs: dict[str, list[TaskPair]], description: str = "", **kwargs: Any) -> None:
        all_pairs = pairs.get("train", []) + pairs.get("test", [])
        kinds = {(p.positive_completion, p.negative_completion) for p in all_pairs}
        completions = next(iter(kinds)) if len(kinds) == 1 else None
        super().__init__(
            name=name, description=description or f"user task {name} ({len(all_pairs)} pairs)", completions=completions,
            sampler=self._no_sampler, **kwargs,
        )  # fmt: skip
        self.pairs = {split: list(pairs.get(split, [])) for split in ("train", "test")}

    def _no_sampler(self, rng: random.Random, max_chars: int) -> TaskPair:
        raise RuntimeError(f"task {self.name!r} has a fixed set of pairs; use generate()")

    def generate(
        self,
        n: int,
        seed: int = 0,
        split: str = "train",
        max_chars: int = DEFAULT_MAX_CHARS,
        tokenizer: Any = None,
        max_tokens: Optional[int] = None,
    ) -> list[TaskPair]:
        """Up to `n` pairs of `split`, in a seeded order (all of them if the file has fewer).
        Length limits are applied as filters."""
        check_split(split)
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"n: expected a non-negative integer, got {n!r}")
        pool = list(self.pairs[split])
        random.Random(f"sparse_lens.tasks/{self.name}/{split}/{seed}").shuffle(pool)
        pool = [p for p in pool if len(p.positive) <= max_chars and len(p.negative) <= max_chars] if max_chars else pool
        if tokenizer is not None and max_tokens is not None:
            from sparse_lens.tasks.base import _TokenCounter

            count = _TokenCounter(tokenizer)
            pool = [p for p in pool if max(count(p.positive), count(p.negative)) <= max_tokens]
        return pool[:n]


def _row_error(path: Path, line: int, message: str) -> ValueError:
    return ValueError(f"{path}:{line}: {message}")


def load_tasks_jsonl(
    path: str | os.PathLike,
    register: bool = True,
    overwrite: bool = False,
    grammar_sides: Sequence[str] = (),
    rule: Optional[Rule] = None,
) -> list[Task]:
    """Tasks from a JSONL file of pairs (see the module docstring); registered unless
    ``register=False``.

    Rows without a ``split`` go to a split by the hash of their positive prompt (`split_of`); a pair
    of the test split that shares a prompt with a train pair is dropped, so the splits are disjoint.
    A row with an explicit ``split`` that collides with the other split raises. Errors name the line
    and the field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tasks file: no file {path}")
    by_task: dict[str, list[tuple[int, TaskPair, Optional[str]]]] = {}
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise _row_error(path, line_no, f"not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise _row_error(path, line_no, f"expected a JSON object, got {type(row).__name__}")
            unknown = sorted(set(row) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
            if unknown:
                raise _row_error(path, line_no, f"unknown field(s) {unknown}; expected {REQUIRED_FIELDS + OPTIONAL_FIELDS}")
            for field in REQUIRED_FIELDS:
                if field not in row:
                    raise _row_error(path, line_no, f"missing field {field!r}")
                if not isinstance(row[field], str):
                    raise _row_error(path, line_no, f"field {field!r} must be a string, got {type(row[field]).__name__}")
            for field in ("positive_completion", "negative_completion"):
                if not row[field]:
                    raise _row_error(path, line_no, f"field {field!r} is empty")
            if row["positive_completion"] == row["negative_completion"]:
                raise _row_error(path, line_no, f"fields 'positive_completion' and 'negative_completion' are both {row['positive_completion']!r}")
            if row["positive"] == row["negative"]:
                raise _row_error(path, line_no, "fields 'positive' and 'negative' are the same prompt")
            for field in ("name", "positive_suffix", "negative_suffix", "split"):
                if field in row and not isinstance(row[field], str):
                    raise _row_error(path, line_no, f"field {field!r} must be a string, got {type(row[field]).__name__}")
            if row.get("name") == "":
                raise _row_error(path, line_no, "field 'name' is empty")
            split = row.get("split")
            if split is not None and split not in ("train", "test"):
                raise _row_error(path, line_no, f"field 'split' must be 'train' or 'test', got {split!r}")
            pair = TaskPair(
                row["positive"], row["negative"], row["positive_completion"], row["negative_completion"],
                row.get("positive_suffix"), row.get("negative_suffix"),
            )  # fmt: skip
            by_task.setdefault(row.get("name", path.stem), []).append((line_no, pair, split))
    if not by_task:
        raise ValueError(f"{path}: no pairs")
    tasks: list[Task] = []
    for name, rows in by_task.items():
        splits = _assign_splits(path, rows)
        tasks.append(FixedPairsTask(name, splits, grammar_sides=tuple(grammar_sides), rule=rule))
    if register:
        from sparse_lens.tasks.registry import register_task

        for task in tasks:
            register_task(task, overwrite=overwrite)
    return tasks


def _assign_splits(path: Path, rows: list[tuple[int, TaskPair, Optional[str]]]) -> dict[str, list[TaskPair]]:
    owner: dict[str, tuple[str, int, bool]] = {}  # prompt -> (split, line, explicit)
    out: dict[str, list[TaskPair]] = {"train": [], "test": []}
    # Explicit splits first, then hashed ones; train before test so collisions drop test pairs.
    ordered = sorted(rows, key=lambda r: (r[2] is None, (r[2] or split_of(r[1].positive)) != "train", r[0]))
    for line, pair, explicit in ordered:
        split = explicit or split_of(pair.positive)
        clash = [owner[p] for p in (pair.positive, pair.negative) if p in owner and owner[p][0] != split]
        if clash:
            if explicit is not None:  # explicit rows come first, so the clash is with an explicit row
                raise _row_error(path, line, f"a prompt of this {split} pair is also in the {clash[0][0]} split (line {clash[0][1]})")
            continue  # keep the splits disjoint: drop the hashed pair (test ones come last)
        if any(p in owner and owner[p][0] == split for p in (pair.positive, pair.negative)):
            continue  # duplicate prompt within the split
        for p in (pair.positive, pair.negative):
            owner[p] = (split, line, explicit is not None)
        out[split].append(pair)
    return out


def save_pairs_jsonl(path: str | os.PathLike, pairs: Sequence[TaskPair], name: Optional[str] = None, split: Optional[str] = None) -> Path:
    """Write pairs as JSONL rows readable by `load_tasks_jsonl`."""
    from sparse_lens.io import atomic_write_text

    lines = []
    for pair in pairs:
        row = pair.to_dict()
        if name:
            row = {"name": name, **row}
        if split:
            row["split"] = split
        lines.append(json.dumps(row) + "\n")
    return atomic_write_text(path, "".join(lines))
