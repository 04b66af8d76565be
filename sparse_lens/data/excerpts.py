"""Pattern excerpts: the stretches of real code around a rare pattern, for oversampling it.

A pattern a task needs can be too rare in the corpus for a small model to learn it in a short run
(nested lists closed with ``]]``: ~45k occurrences in ~100M tokens). Repeating whole files that
contain it barely changes its density; repeating only the code *around* each occurrence does. An
excerpt is the run of whole lines from about `context_chars` characters before an occurrence to
`after_lines` lines after it; overlapping excerpts of one document are merged. The excerpts are real
code from the training split only, so validation stays untouched.

Used by the trainer's ``data.oversample`` (see :mod:`sparse_lens.training.data`)::

    pattern_excerpts("a = 1\\nx = [[1, 2], [3]]\\nb = 2\\n", r"\\]\\]", context_chars=0, after_lines=0)
    # -> ['x = [[1, 2], [3]]\\n']
"""

from __future__ import annotations

import re
from typing import Iterable, Union

Pattern = Union[str, "re.Pattern[str]"]


def compile_pattern(pattern: Pattern) -> "re.Pattern[str]":
    """`pattern` as a compiled multiline regex; a clear error for a bad one."""
    if isinstance(pattern, re.Pattern):
        return pattern
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"pattern: expected a non-empty regular expression string, got {pattern!r}")
    try:
        return re.compile(pattern, re.MULTILINE)
    except re.error as err:
        raise ValueError(f"pattern: {pattern!r} is not a valid regular expression ({err})") from err


def _check_counts(context_chars: int, after_lines: int) -> None:
    for name, value in (("context_chars", context_chars), ("after_lines", after_lines)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")


def excerpt_spans(text: str, pattern: Pattern, context_chars: int = 400, after_lines: int = 2) -> list[tuple[int, int]]:
    """``(start, end)`` character spans of the merged excerpts of `text` (whole lines)."""
    rx = compile_pattern(pattern)
    _check_counts(context_chars, after_lines)
    spans: list[tuple[int, int]] = []
    for m in rx.finditer(text):
        start = text.rfind("\n", 0, max(0, m.start() - context_chars)) + 1  # start of that line
        end = m.end()
        for _ in range(after_lines + 1):  # the end of the match's line, then `after_lines` more
            nl = text.find("\n", end)
            if nl < 0:
                end = len(text)
                break
            end = nl + 1
        if end <= start:  # an empty match at the very end of the text
            continue
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return spans


def pattern_excerpts(text: str, pattern: Pattern, context_chars: int = 400, after_lines: int = 2) -> list[str]:
    """The merged excerpts of `text` around every match of `pattern` (see the module docstring)."""
    return [text[a:b] for a, b in excerpt_spans(text, pattern, context_chars, after_lines)]


def corpus_excerpts(texts: Iterable[str], pattern: Pattern, context_chars: int = 400, after_lines: int = 2) -> list[str]:
    """`pattern_excerpts` of every document, in document order."""
    rx = compile_pattern(pattern)
    out: list[str] = []
    for text in texts:
        out += pattern_excerpts(text, rx, context_chars, after_lines)
    return out
