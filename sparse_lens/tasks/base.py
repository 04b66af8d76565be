"""`TaskPair` (one datapoint: two prompts that differ in the cue) and `Task` (a named, seeded
generator of pairs with a validity check).

A pair gives two sequences: the positive prompt must be continued with ``positive_completion`` and the
negative prompt with ``negative_completion``. Each completion is the other sequence's alternative, so
every pair contributes one sequence to each completion and a task is balanced by construction.

Train and test sets are disjoint by a hash of the prompt text: a prompt belongs to ``train`` or
``test`` by one bit of its BLAKE2b digest, and a pair belongs to a split only if both of its prompts do.
No prompt string can therefore occur in both splits, for any seeds or sizes.
"""

from __future__ import annotations

import ast
import hashlib
import random
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

SPLITS: tuple[str, ...] = ("train", "test")
DEFAULT_MAX_CHARS = 400  # at most ~205 tokens with the shipped tokenizer (numbers tokenize at ~2 chars/token)

Sampler = Callable[[random.Random, int], "TaskPair"]  # (rng, max_chars) -> pair
Rule = Callable[[str], bool]  # completed program -> does it follow the task's rule


@dataclass(frozen=True)
class TaskPair:
    """Two prompts differing in the cue; each must be continued with its own completion.

    ``positive_suffix`` / ``negative_suffix``: the minimal text that, after the prompt and its correct
    completion, makes a complete program. The validity check parses it, and tokenization takes the
    answer token from the running text (``]]\\n`` under a tokenizer whose closers carry their line
    end). Optional for user tasks."""

    positive: str
    negative: str
    positive_completion: str
    negative_completion: str
    positive_suffix: Optional[str] = None
    negative_suffix: Optional[str] = None

    def sequences(self) -> list[tuple[str, str, str]]:
        """``[(prompt, target, alternative)]`` for the positive then the negative sequence."""
        return [
            (self.positive, self.positive_completion, self.negative_completion),
            (self.negative, self.negative_completion, self.positive_completion),
        ]

    def rows(self) -> list[tuple[str, str, Optional[str]]]:
        """``[(prompt, completion, suffix)]`` for the positive then the negative sequence: the running
        text each row continues with."""
        return [
            (self.positive, self.positive_completion, self.positive_suffix),
            (self.negative, self.negative_completion, self.negative_suffix),
        ]

    def to_dict(self) -> dict[str, Any]:
        d = {
            "positive": self.positive,
            "negative": self.negative,
            "positive_completion": self.positive_completion,
            "negative_completion": self.negative_completion,
        }
        if self.positive_suffix is not None:
            d["positive_suffix"] = self.positive_suffix
        if self.negative_suffix is not None:
            d["negative_suffix"] = self.negative_suffix
        return d


def split_of(prompt: str) -> str:
    """``"train"`` or ``"test"``: the split a prompt string belongs to (one bit of its hash)."""
    digest = hashlib.blake2b(prompt.encode("utf-8"), digest_size=8).digest()
    return SPLITS[digest[0] & 1]


def parses(source: str) -> bool:
    """Whether `source` is a syntactically valid Python module (per `ast.parse`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ast.parse(source)
        except (SyntaxError, ValueError):
            return False
    return True


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")


@dataclass
class Task:
    """A binary next-token task.

    name:        registry name (the paper's, for the 20 built-in tasks)
    description: one line: what the model must decide
    completions: ``(positive, negative)`` completion strings when fixed for the whole task; ``None``
                 when they vary per pair (e.g. the variable names of ``var_swap``)
    sampler:     ``(rng, max_chars) -> TaskPair``; one random pair whose prompts are at most
                 ``max_chars`` characters long (a sampler may ignore the bound; longer pairs are
                 rejected)
    cue:         what in the prompt decides the answer (documentation)
    rule:        for tasks decided (partly) by meaning: ``rule(program) -> bool``, True when the
                 completed program follows the task's rule
    rule_doc:    the rule in words
    grammar_sides: which sequences (``"positive"``, ``"negative"``) are decided by Python's grammar:
                 there the wrong completion followed by the other sequence's suffix must not parse
    """

    name: str
    description: str
    completions: Optional[tuple[str, str]]
    sampler: Sampler
    cue: str = ""
    rule: Optional[Rule] = None
    rule_doc: str = ""
    grammar_sides: tuple[str, ...] = ("positive", "negative")
    builtin: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"task name: expected a non-empty string, got {self.name!r}")
        if self.completions is not None:
            if (
                not isinstance(self.completions, (tuple, list))
                or len(self.completions) != 2
                or not all(isinstance(c, str) and c for c in self.completions)
            ):
                raise ValueError(f"task {self.name!r}: completions must be two non-empty strings, got {self.completions!r}")
            if self.completions[0] == self.completions[1]:
                raise ValueError(f"task {self.name!r}: the two completions are the same string {self.completions[0]!r}")
            self.completions = (self.completions[0], self.completions[1])
        self.grammar_sides = tuple(self.grammar_sides)
        bad = [s for s in self.grammar_sides if s not in ("positive", "negative")]
        if bad:
            raise ValueError(f"task {self.name!r}: grammar_sides must name 'positive'/'negative', got {bad}")
        if 0 < len(self.grammar_sides) < 2 and self.rule is None:
            raise ValueError(f"task {self.name!r}: a side not decided by grammar needs a rule")

    @property
    def decided_by(self) -> str:
        """``"grammar"``, ``"meaning"``, ``"grammar (positive) + rule (negative)"``, or ``"unchecked"``
        (a user task with neither)."""
        sides = self.grammar_sides
        if len(sides) == 2:
            return "grammar"
        if not sides:
            return "meaning" if self.rule is not None else "unchecked"
        other = "negative" if sides[0] == "positive" else "positive"
        return f"grammar ({sides[0]}) + rule ({other})"

    # ---------------------------------------------------------------- generation

    def sample(self, rng: random.Random, max_chars: int = DEFAULT_MAX_CHARS) -> TaskPair:
        """One random pair (no split filtering), shape-checked."""
        pair = self.sampler(rng, max_chars)
        self.check_pair(pair)
        return pair

    def generate(
        self,
        n: int,
        seed: int = 0,
        split: str = "train",
        max_chars: int = DEFAULT_MAX_CHARS,
        tokenizer: Any = None,
        max_tokens: Optional[int] = None,
    ) -> list[TaskPair]:
        """`n` distinct pairs of `split`, deterministic in (task, n, seed, split, max_chars).

        With `tokenizer` and `max_tokens` (e.g. the model's n_ctx), pairs whose prompts take more than
        `max_tokens` tokens (BOS included) are skipped too."""
        check_split(split)
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"n: expected a non-negative integer, got {n!r}")
        if max_chars <= 0:
            raise ValueError(f"max_chars: expected a positive integer, got {max_chars!r}")
        if (tokenizer is None) != (max_tokens is None):
            raise ValueError("tokenizer and max_tokens go together")
        counter = _TokenCounter(tokenizer) if tokenizer is not None else None
        rng = random.Random(f"sparse_lens.tasks/{self.name}/{split}/{seed}")
        seen: set[str] = set()
        out: list[TaskPair] = []
        attempts, limit = 0, 100 * n + 1000
        while len(out) < n:
            attempts += 1
            if attempts > limit:
                raise RuntimeError(
                    f"task {self.name!r}: only {len(out)} of {n} distinct {split} pairs after {limit} attempts "
                    f"(max_chars={max_chars}, max_tokens={max_tokens}); the task has too few distinct pairs "
                    "or the length limit is too small"
                )
            pair = self.sample(rng, max_chars)
            if split_of(pair.positive) != split or split_of(pair.negative) != split:
                continue
            if pair.positive in seen or pair.negative in seen:
                continue
            if len(pair.positive) > max_chars or len(pair.negative) > max_chars:
                continue
            if counter is not None and max(counter(pair.positive), counter(pair.negative)) > max_tokens:
                continue
            seen.add(pair.positive)
            seen.add(pair.negative)
            out.append(pair)
        return out

    def check_pair(self, pair: TaskPair) -> None:
        """Raise ValueError (naming the task) if `pair` is malformed for this task."""
        if not isinstance(pair, TaskPair):
            raise ValueError(f"task {self.name!r}: expected a TaskPair, got {type(pair).__name__}")
        for field_name in ("positive", "negative", "positive_completion", "negative_completion"):
            value = getattr(pair, field_name)
            if not isinstance(value, str):
                raise ValueError(f"task {self.name!r}: {field_name} must be a string, got {type(value).__name__}")
            if field_name.endswith("completion") and not value:
                raise ValueError(f"task {self.name!r}: {field_name} is empty")
        if pair.positive_completion == pair.negative_completion:
            raise ValueError(f"task {self.name!r}: both completions are {pair.positive_completion!r}")
        if pair.positive == pair.negative:
            raise ValueError(f"task {self.name!r}: positive and negative prompts are identical: {pair.positive!r}")
        if self.completions is not None and (pair.positive_completion, pair.negative_completion) != self.completions:
            raise ValueError(
                f"task {self.name!r}: pair completions {(pair.positive_completion, pair.negative_completion)!r} "
                f"differ from the task's {self.completions!r}"
            )

    # ---------------------------------------------------------------- validity

    def judge(self, program: str) -> bool:
        """Whether a completed program is valid for this task: it parses and follows the rule."""
        if not parses(program):
            return False
        return True if self.rule is None else bool(self.rule(program))

    def problems(self, pair: TaskPair) -> list[str]:
        """What is wrong with `pair` (empty when valid).

        For each sequence: the prompt + its completion + its suffix must parse (and follow the rule);
        the prompt + the other completion + the other sequence's suffix must not parse (sides decided
        by grammar) or must break the rule (sides decided by meaning)."""
        if self.decided_by == "unchecked":
            return [f"task {self.name!r}: has neither grammar sides nor a rule, so its validity cannot be checked"]
        if pair.positive_suffix is None or pair.negative_suffix is None:
            return [f"task {self.name!r}: pair has no suffixes, so its validity cannot be checked"]
        issues: list[str] = []
        sides = (
            ("positive", pair.positive, pair.positive_completion, pair.positive_suffix, pair.negative_completion, pair.negative_suffix),
            ("negative", pair.negative, pair.negative_completion, pair.negative_suffix, pair.positive_completion, pair.positive_suffix),
        )
        for side, prompt, right, right_suffix, wrong, wrong_suffix in sides:
            good = prompt + right + right_suffix
            bad = prompt + wrong + wrong_suffix
            if not parses(good):
                issues.append(f"{side}: the correct completion {right!r} does not parse:\n{good}")
                continue
            if self.rule is not None and not self.rule(good):
                issues.append(f"{side}: the correct completion {right!r} breaks the rule ({self.rule_doc}):\n{good}")
            if side in self.grammar_sides:
                if parses(bad):
                    issues.append(f"{side}: the wrong completion {wrong!r} also parses (grammar should decide):\n{bad}")
            elif self.judge(bad):
                issues.append(f"{side}: the wrong completion {wrong!r} parses and follows the rule:\n{bad}")
        return issues

    def validity_check(self, pair: TaskPair) -> None:
        """Raise ValueError listing the problems of `pair`, if any."""
        issues = self.problems(pair)
        if issues:
            raise ValueError(f"task {self.name!r}: invalid pair:\n" + "\n".join(issues))


class _TokenCounter:
    """Token count of a prompt with BOS, under a `tokenizers.Tokenizer` or a transformers tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        from sparse_lens.tasks.tokenize import backend

        self.tok = backend(tokenizer)

    def __call__(self, prompt: str) -> int:
        return len(self.tok.encode(prompt, add_special_tokens=False).ids) + 1


def describe(tasks: Sequence[Task]) -> str:
    """A plain-text table of tasks: name, completions, decided by, description."""
    rows = [("task", "completions", "decided by", "description")]
    for t in tasks:
        comp = " / ".join(repr(c) for c in t.completions) if t.completions else "(per pair)"
        rows.append((t.name, comp, t.decided_by, t.description))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows)
