"""Build the default corpus, train the 2048-token tokenizer, save it and print statistics.

    python -m sparse_lens.data.build_tokenizer --out sparse_lens/pretrained/tokenizer-python-2k
    python -m sparse_lens.data.build_tokenizer --no-line-end-closers --out runs/tokenizer-alone   # ] runs and } alone
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Optional, Sequence

from sparse_lens.data.corpus import corpus_stats, count_patterns, load_corpus
from sparse_lens.data.tokenizer import (
    DEFAULT_VOCAB_SIZE,
    check_round_trip,
    check_task_tokens,
    force_single_tokens,
    iter_texts,
    save_tokenizer,
    task_token_report,
    task_tokens,
    tokenizer_hash,
    train_tokenizer,
)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="directory to write tokenizer.json into")
    ap.add_argument("--source", nargs="+", default=["default"], help="corpus sources (default: stdlib + site-packages)")
    ap.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE)
    ap.add_argument("--max-files", type=int, default=None)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--line-end-closers", action=argparse.BooleanOptionalAction, default=True,
                    help="a closing ] run or } takes the newline after it (]]\\n, ]\\n, }\\n; the paper's convention, "
                         "which its bracket task needs; default on)")  # fmt: skip
    ap.add_argument("--no-force", dest="force", action="store_false", help="do not force task strings to single tokens")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    corpus = load_corpus(args.source if len(args.source) > 1 else args.source[0], cache_dir=args.cache_dir, max_files=args.max_files)
    t1 = time.perf_counter()
    train = corpus["train"]
    strings = task_tokens(args.line_end_closers)
    raw = train_tokenizer(iter_texts(train), vocab_size=args.vocab_size, length=len(train), line_end_closers=args.line_end_closers)
    bpe_report = task_token_report(raw, strings)
    tok = force_single_tokens(raw, strings) if args.force else raw
    t2 = time.perf_counter()
    path = save_tokenizer(tok, args.out)

    texts = {split: list(iter_texts(corpus[split])) for split in corpus}
    stats = {split: corpus_stats(texts[split], tok) for split in texts}
    t3 = time.perf_counter()
    check_round_trip(tok, texts["validation"])
    t4 = time.perf_counter()
    report = task_token_report(tok, strings)
    check_task_tokens(tok, strings) if args.force else None
    patterns = count_patterns(texts["train"] + texts["validation"])
    result = {
        "tokenizer": str(path),
        "tokenizer_hash": tokenizer_hash(tok),
        "vocab_size": tok.get_vocab_size(),
        "stats": stats,
        "seconds": {"load_corpus": t1 - t0, "train_tokenizer": t2 - t1, "tokenize_all": t3 - t2, "round_trip_validation": t4 - t3},
        "single_tokens": {s: len(v) == 1 for s, v in report.items()},
        "forced_single_tokens": {s: v for s, v in bpe_report.items() if len(v) > 1},
        "task_token_pieces": report,
        "pattern_counts": patterns,
    }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
