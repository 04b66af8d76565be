"""Pretraining data: a Python-source corpus, a byte-level BPE tokenizer, packing and batches.

    from sparse_lens.data import load_corpus, train_tokenizer, pack, TokenBatches
    corpus = load_corpus("default")                       # DatasetDict: train / validation (text, path)
    tok = train_tokenizer(iter_texts(corpus["train"]))    # or load_tokenizer(PRETRAINED_TOKENIZER)
    train = pack(corpus["train"], tok, n_ctx=256)         # [n_seq, 256] int64, cached on disk
    for tokens in TokenBatches(train, batch_size=32, seed=0): ...
"""

from pathlib import Path

import lazy_loader

# Attributes load on first use (``sparse-lens --help`` imports no torch).
__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "corpus": ["CorpusFile", "TASK_PATTERNS", "corpus_stats", "count_patterns", "default_cache_dir", "default_corpus_files", "is_validation", "list_corpus_files", "load_corpus", "read_documents"],
        "packing": ["TokenBatches", "pack", "tokenize_stream"],
        "tokenizer": ["DEFAULT_VOCAB_SIZE", "EOT", "LINE_END_CLOSER_TOKENS", "PRE_TOKENIZER_PATTERN", "TASK_TOKENS", "build_pre_tokenizer", "check_round_trip", "check_task_tokens", "encode_ids", "encoding_hash", "force_single_tokens", "has_line_end_closers", "iter_texts", "load_tokenizer", "pre_tokenizer_pattern", "save_tokenizer", "task_token_report", "task_tokens", "tokenizer_hash", "train_tokenizer"],
    },
)

PRETRAINED_TOKENIZER = Path(__file__).resolve().parent.parent / "pretrained" / "tokenizer-python-2k" / "tokenizer.json"

__all__ = [
    "CorpusFile",
    "DEFAULT_VOCAB_SIZE",
    "EOT",
    "LINE_END_CLOSER_TOKENS",
    "PRETRAINED_TOKENIZER",
    "PRE_TOKENIZER_PATTERN",
    "TASK_PATTERNS",
    "TASK_TOKENS",
    "TokenBatches",
    "build_pre_tokenizer",
    "check_round_trip",
    "check_task_tokens",
    "corpus_stats",
    "count_patterns",
    "default_cache_dir",
    "default_corpus_files",
    "encode_ids",
    "force_single_tokens",
    "has_line_end_closers",
    "is_validation",
    "iter_texts",
    "list_corpus_files",
    "load_corpus",
    "load_tokenizer",
    "pack",
    "pre_tokenizer_pattern",
    "read_documents",
    "save_tokenizer",
    "task_token_report",
    "task_tokens",
    "tokenize_stream",
    "tokenizer_hash",
    "encoding_hash",
    "train_tokenizer",
]
