"""Closing brackets by line depth (the corpus statistics behind bracket_counting)."""

from __future__ import annotations

import math

import pytest

from sparse_lens.data.bracket_depth import answer_rates, closing_tokens_by_depth, task_loss_bound
from sparse_lens.data.tokenizer import train_tokenizer

TEXT = "x = [[1, 2], [3, 4]]\ny = [1, 2]\nz = a[b[0]]\nw = [[5]], 6\n"


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer([TEXT * 10], vocab_size=300, force_single=("]]\n", "]\n", "]]", "]"), line_end_closers=True)


def test_counts_by_line_depth(tok):
    counts = closing_tokens_by_depth([TEXT, "v = [\n    1]\n"], tok)
    # `], ` inside [[1, 2], ...; `]]\n` at depth 2 twice; `]\n` at depth 1; `]]` before ", 6";
    # the `]\n` after a line break inside a list is at line depth 0.
    assert counts == {(2, "]"): 1, (2, "]]\n"): 2, (1, "]\n"): 1, (2, "]]"): 1, (0, "]\n"): 1}
    rates = answer_rates(counts, "]]\n", "]\n")
    assert rates == {0: (0, 1, 0.0), 1: (0, 1, 0.0), 2: (2, 0, 1.0)}
    # Smoothed: -log((2.5)/(3)) at depth 2 and -log(1.5/2) at depth 1.
    assert task_loss_bound(rates) == pytest.approx(0.5 * (-math.log(2.5 / 3) - math.log(1.5 / 2)))


def test_depth_is_clipped_and_validated(tok):
    counts = closing_tokens_by_depth(["a = [[[[1]]]]\n"], tok, max_depth=2)
    assert {d for d, _ in counts} == {2}
    with pytest.raises(ValueError, match="max_depth"):
        closing_tokens_by_depth([TEXT], tok, max_depth=0)
    with pytest.raises(ValueError, match="batch_docs"):
        closing_tokens_by_depth([TEXT], tok, batch_docs=0)
    # Batching documents does not change the counts (depth restarts at every document).
    assert closing_tokens_by_depth([TEXT, "y = [[1\n", TEXT], tok, batch_docs=1) == closing_tokens_by_depth([TEXT, "y = [[1\n", TEXT], tok)
    with pytest.raises(ValueError, match="no closing token at depth 1"):
        task_loss_bound(answer_rates(closing_tokens_by_depth(["a = [[1]]\n"], tok), "]]\n", "]\n"))
