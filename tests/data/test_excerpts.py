"""Pattern excerpts: whole lines around every match, merged when they overlap, errors for bad input."""

from __future__ import annotations

import random

import pytest

from sparse_lens.data.excerpts import corpus_excerpts, excerpt_spans, pattern_excerpts

TEXT = "".join(f"line{i} = {i}\n" for i in range(10)).replace("line5 = 5", "x = [[5]]")


def test_match_line_only():
    assert pattern_excerpts(TEXT, r"\]\]", context_chars=0, after_lines=0) == ["x = [[5]]\n"]


def test_context_and_following_lines_are_whole_lines():
    (excerpt,) = pattern_excerpts(TEXT, r"\]\]", context_chars=12, after_lines=2)
    # 12 characters before the match reach into "line4 = 4", whose whole line is kept
    assert excerpt == "line4 = 4\nx = [[5]]\nline6 = 6\nline7 = 7\n"


def test_overlapping_excerpts_merge_and_far_ones_do_not():
    text = "a = [[1]]\nb = [[2]]\n" + "pass\n" * 50 + "c = [[3]]"
    out = pattern_excerpts(text, r"\]\]", context_chars=0, after_lines=1)
    assert out == ["a = [[1]]\nb = [[2]]\npass\n", "c = [[3]]"]  # the last line has no newline


def test_no_match_and_corpus_order():
    assert pattern_excerpts("x = 1\n", r"\]\]") == []
    docs = ["a = [[1]]\n", "b = 2\n", "c = [[3]]\n"]
    assert corpus_excerpts(docs, r"\]\]", 0, 0) == ["a = [[1]]\n", "c = [[3]]\n"]


def test_random_texts_every_match_covered_by_exactly_one_span():
    rng = random.Random(0)
    for _ in range(200):
        text = "".join(rng.choice(["]]", "x", "\n", " ", "["]) for _ in range(rng.randint(0, 120)))
        spans = excerpt_spans(text, r"\]\]", context_chars=rng.randint(0, 10), after_lines=rng.randint(0, 2))
        for (a, b), (c, _) in zip(spans, spans[1:]):
            assert b < c  # disjoint, not touching, sorted
        for a, b in spans:
            assert a == 0 or text[a - 1] == "\n"
            assert b == len(text) or text[b - 1] == "\n"
        start = 0
        while (i := text.find("]]", start)) >= 0:
            assert sum(a <= i and i + 2 <= b for a, b in spans) == 1
            start = i + 2  # re.finditer's non-overlapping matches


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(pattern="("), r"^pattern: '\(' is not a valid regular expression"),
        (dict(pattern=""), r"^pattern: expected a non-empty"),
        (dict(pattern=r"\]", context_chars=-1), r"^context_chars: expected a non-negative integer"),
        (dict(pattern=r"\]", after_lines=1.5), r"^after_lines: expected a non-negative integer"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pattern_excerpts(TEXT, **kwargs)
