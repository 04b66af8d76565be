"""Closing brackets by nesting depth: does the corpus teach ``bracket_counting`` under a tokenizer?

The task asks for ``]]`` after a line whose nested list is still open (depth 2) and ``]`` after one at
depth 1, both closing the line. A model trained on real code can only learn what the corpus says: for
each token that starts with ``]`` we record the line's nesting depth before it (``[`` minus ``]`` since
the line started) and the token. `answer_rates` then gives, per depth, how often the first of two
candidate tokens is the one that occurs, and `task_loss_bound` the task loss of a model that knew
exactly those rates (its positives are depth 2, its negatives depth 1).

Under a tokenizer whose ``]`` runs never carry the newline, ``]`` at depth 2 mostly closes an inner list
that the line continues after (``[[1, 2], [3, 4]]``): the two candidates are about equally likely, and no
model of this corpus can get the task loss much below log(2)/2. When the closing run carries its line end
(``]]\\n`` vs ``]\\n``, as in the paper's tokenizer) the corpus answers the task. docs/pretrained.md has
the numbers; reproduce them with

    python -m sparse_lens.data.bracket_depth --tokenizer OLD/tokenizer.json --candidates ']]' ']'
    python -m sparse_lens.data.bracket_depth --candidates ']]\\n' ']\\n'
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from itertools import islice
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from sparse_lens.data.packing import tokenize_stream
from sparse_lens.data.tokenizer import EOT, iter_texts


def closing_tokens_by_depth(texts: Iterable[str], tokenizer: Any, max_depth: int = 3, batch_docs: int = 1000) -> Counter:
    """``Counter[(depth, token_text)]`` over every token starting with ``]`` in `texts`; depth is the
    line's ``[`` minus ``]`` before the token, clipped to ``0..max_depth``. Vectorized over the packed
    token stream of `batch_docs` documents at a time."""
    if not isinstance(max_depth, int) or max_depth < 1:
        raise ValueError(f"max_depth: expected a positive integer, got {max_depth!r}")
    if not isinstance(batch_docs, int) or batch_docs < 1:
        raise ValueError(f"batch_docs: expected a positive integer, got {batch_docs!r}")
    pieces = [tokenizer.decode([i]) for i in range(tokenizer.get_vocab_size())]
    after_newline = [p.rsplit("\n", 1)[-1] for p in pieces]
    change = np.array([t.count("[") - t.count("]") for t in after_newline], dtype=np.int64)  # depth moved by the token
    resets = np.array(["\n" in p for p in pieces])  # the token ends a line: depth restarts from its tail
    resets[tokenizer.token_to_id(EOT)] = True  # as does every document
    closer = np.array([p.startswith("]") for p in pieces])
    counts: Counter = Counter()
    documents = iter(iter_texts(texts))
    while batch := list(islice(documents, batch_docs)):
        ids = tokenize_stream(tokenizer, batch).astype(np.int64)
        total = np.cumsum(change[ids])
        # Depth after token k = total[k] - total[r - 1], r the last reset at or before k (total[-1] = 0).
        last_reset = np.maximum.accumulate(np.where(resets[ids], np.arange(len(ids)), 0))
        after = total - np.where(last_reset > 0, total[last_reset - 1], 0)
        at = np.nonzero(closer[ids])[0]
        depth = np.clip(np.where(at > 0, after[at - 1], 0), 0, max_depth)
        counts.update(zip(depth.tolist(), (pieces[i] for i in ids[at].tolist())))
    return counts


def answer_rates(counts: Counter, first: str, second: str) -> dict[int, tuple[int, int, float]]:
    """Per depth: (count of `first`, count of `second`, fraction that is `first`)."""
    out: dict[int, tuple[int, int, float]] = {}
    for depth in sorted({d for d, _ in counts}):
        a, b = counts[(depth, first)], counts[(depth, second)]
        if a + b:
            out[depth] = (a, b, a / (a + b))
    return out


def task_loss_bound(rates: dict[int, tuple[int, int, float]], smoothing: float = 0.5) -> float:
    """Task loss of a model that predicts the corpus rates: mean of −log P(first | depth 2) and
    −log P(second | depth 1), with `smoothing` added to both counts (no zero probabilities)."""
    for depth in (1, 2):
        if depth not in rates:
            raise ValueError(f"rates: no closing token at depth {depth}; the corpus is too small")

    def p_first(depth: int) -> float:
        a, b, _ = rates[depth]
        return (a + smoothing) / (a + b + 2 * smoothing)

    return 0.5 * (-math.log(p_first(2)) - math.log(1 - p_first(1)))


def main(argv: Optional[Sequence[str]] = None) -> dict:
    from sparse_lens.data import PRETRAINED_TOKENIZER
    from sparse_lens.data.corpus import load_corpus
    from sparse_lens.data.tokenizer import load_tokenizer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", default=None, help="tokenizer.json (default: the shipped tokenizer-python-2k)")
    ap.add_argument("--source", nargs="+", default=["default"], help="corpus sources (default: stdlib + site-packages)")
    ap.add_argument("--split", default="train", choices=("train", "validation"))
    ap.add_argument("--candidates", nargs=2, default=["]]\n", "]\n"], metavar=("FIRST", "SECOND"),
                    help="the two answers; backslash escapes are read (default: ']]\\n' ']\\n')")  # fmt: skip
    ap.add_argument("--max-files", type=int, default=None)
    args = ap.parse_args(argv)
    first, second = (c.encode().decode("unicode_escape") for c in args.candidates)
    tok = load_tokenizer(args.tokenizer or PRETRAINED_TOKENIZER)
    for c in (first, second):
        if len(tok.encode(c, add_special_tokens=False).ids) != 1:
            raise ValueError(f"--candidates: {c!r} is not a single token under this tokenizer")
    corpus = load_corpus(args.source if len(args.source) > 1 else args.source[0], max_files=args.max_files)
    counts = closing_tokens_by_depth(iter_texts(corpus[args.split]), tok)
    rates = answer_rates(counts, first, second)
    result = {
        "candidates": [first, second],
        "by_depth": {d: {"first": a, "second": b, "p_first": round(p, 4)} for d, (a, b, p) in rates.items()},
        "task_loss_bound": round(task_loss_bound(rates), 4),
    }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
