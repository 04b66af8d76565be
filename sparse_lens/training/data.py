"""Token data for pretraining, built with :mod:`sparse_lens.data`.

``source: corpus`` (default) loads ``data.corpus`` with :func:`sparse_lens.data.load_corpus` (real Python
source split train/validation by file), takes the tokenizer from ``data.tokenizer_path`` (default: the
shipped ``tokenizer-python-2k``; if the file does not exist a BPE tokenizer is trained on the train
split with :func:`sparse_lens.data.train_tokenizer` and saved there), and packs each split into rows of
n_ctx tokens with :func:`sparse_lens.data.pack` (``<|endoftext|>`` before every document; cached on disk).
``source: tokens`` reads pre-packed ``train`` / ``validation`` tensors from a safetensors file;
``source: synthetic`` makes a small learnable token stream (tests, benchmarks).

Batches come from :class:`sparse_lens.data.TokenBatches`: a pure function of (seed, step), so a
resumed run needs only the step; process r of W takes the r-th of W equal slices of the global batch,
then the trainer cuts its slice into micro-batches — which is why W processes see exactly the rows
(and, with ``micro_batch_size = batch / W``, compute exactly the gradients) one process would.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors.torch import load_file
from torch import Tensor

from sparse_lens.training.config import DataConfig

LONGEST_CANDIDATES = 16  # documents (by bytes) tokenized to find the longest one in tokens


@dataclass
class TokenData:
    train: Tensor  # [rows, n_ctx] int64
    validation: Tensor  # [rows, n_ctx] int64
    tokenizer: Any = None  # tokenizers.Tokenizer or None
    description: dict[str, Any] = field(default_factory=dict)


def batch_sampler(n_rows_or_tokens: Any, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
    """A :class:`sparse_lens.data.TokenBatches` over the training rows (its ``indices(step)`` is this
    rank's share of the global batch of ``step``)."""
    from sparse_lens.data import TokenBatches

    return TokenBatches(n_rows_or_tokens, batch_size, seed=seed, rank=rank, world_size=world_size)


def load_token_data(cfg: DataConfig, n_ctx: int, d_vocab: int, seed: int = 0, validation_only: bool = False) -> TokenData:
    """Build (or read from the caches) the packed train/validation tokens for ``cfg``
    (``validation_only``: a ``corpus`` source packs only the validation split; ``train`` is empty)."""
    if cfg.source == "synthetic":
        return synthetic_data(cfg, n_ctx, d_vocab, seed)
    if cfg.source == "tokens":
        return _pretokenized(cfg, n_ctx, d_vocab)
    return _corpus(cfg, n_ctx, d_vocab, validation_only)


def default_tokenizer_path() -> Path:
    from sparse_lens.data import PRETRAINED_TOKENIZER

    return Path(PRETRAINED_TOKENIZER)


def _corpus(cfg: DataConfig, n_ctx: int, d_vocab: int, validation_only: bool = False) -> TokenData:
    from sparse_lens import data as sld

    source = cfg.corpus if isinstance(cfg.corpus, str) else list(cfg.corpus)
    try:
        corpus = sld.load_corpus(source, val_fraction=cfg.val_fraction, cache_dir=cfg.cache_dir, max_files=cfg.max_files)
    except FileNotFoundError as err:
        raise ValueError(f"data.corpus: {err}") from err
    except ValueError as err:
        raise ValueError(f"data.corpus: empty corpus — {err}") from err
    if len(corpus["train"]) == 0:
        raise ValueError(f"data.corpus: empty corpus — no training documents in {source!r}")
    if len(corpus["validation"]) == 0:
        raise ValueError(f"data.val_fraction: no validation documents in {source!r} (val_fraction={cfg.val_fraction})")

    tok_path = Path(cfg.tokenizer_path) if cfg.tokenizer_path else default_tokenizer_path()
    if not cfg.tokenizer_path and not tok_path.is_file():
        raise ValueError(
            f"data.tokenizer_path: not set and the shipped tokenizer {tok_path} does not exist; build it with "
            f"`python -m sparse_lens.data.build_tokenizer --out {tok_path.parent}` or give a tokenizer_path "
            "(a missing file there is trained on the train split and saved)"
        )
    if tok_path.is_dir():
        tok_path = tok_path / "tokenizer.json"
    if tok_path.is_file():
        tokenizer = sld.load_tokenizer(tok_path)
        if tokenizer.token_to_id(sld.EOT) is None:
            raise ValueError(f"data.tokenizer_path: {tok_path} has no {sld.EOT} token")
    else:
        train_split = corpus["train"]
        tokenizer = sld.train_tokenizer(sld.iter_texts(train_split), vocab_size=cfg.vocab_size, length=len(train_split))
        tok_path = sld.save_tokenizer(tokenizer, tok_path.parent)
    vocab = tokenizer.get_vocab_size()
    if vocab > d_vocab:
        raise ValueError(f"model.d_vocab: {d_vocab} is smaller than the tokenizer's vocabulary ({vocab}, {tok_path})")

    if validation_only:
        try:
            val = sld.pack(corpus["validation"], tokenizer, n_ctx, cache_dir=cfg.cache_dir)
        except ValueError as err:
            raise ValueError(f"model.n_ctx: {n_ctx} is too long for the validation split ({err})") from err
        desc = {"source": "corpus", "corpus": source, "validation_documents": len(corpus["validation"]),
                "validation_tokens": int(val.numel()), "tokenizer": str(tok_path),
                "tokenizer_hash": sld.tokenizer_hash(tokenizer)}
        return TokenData(torch.zeros(0, n_ctx, dtype=torch.long), val.long(), tokenizer, desc)
    longest = _longest_document_tokens(corpus, tokenizer)
    if longest < n_ctx:
        raise ValueError(f"model.n_ctx: {n_ctx} is larger than every document of the corpus (longest: {longest} tokens)")
    splits = {}
    for split in ("train", "validation"):
        try:
            splits[split] = sld.pack(corpus[split], tokenizer, n_ctx, cache_dir=cfg.cache_dir)
        except ValueError as err:
            raise ValueError(f"model.n_ctx: {n_ctx} is too long for the {split} split ({err})") from err
    train, val = splits["train"], splits["validation"]
    train, oversampled = _oversample(cfg, corpus["train"], tokenizer, n_ctx, train)
    fingerprint = _hash([str(source), cfg.val_fraction, cfg.max_files, sld.tokenizer_hash(tokenizer), n_ctx,
                         list(train.shape), list(val.shape), _tensor_hash(train[:4]), _tensor_hash(train[-4:])]
                        + ([oversampled] if oversampled else []))
    desc = {
        "source": "corpus", "corpus": source, "train_documents": len(corpus["train"]),
        "validation_documents": len(corpus["validation"]), "train_tokens": int(train.numel()),
        "validation_tokens": int(val.numel()), "longest_document_tokens": longest, "tokenizer": str(tok_path),
        "tokenizer_hash": sld.tokenizer_hash(tokenizer), "fingerprint": fingerprint,
    }
    if oversampled:
        desc["oversample"] = oversampled
    return TokenData(train.long(), val.long(), tokenizer, desc)


def _oversample(cfg: DataConfig, train_docs: Any, tokenizer: Any, n_ctx: int, train: Tensor) -> tuple[Tensor, list[dict[str, Any]]]:
    """Append ``repeat`` copies of the packed excerpts around each ``data.oversample`` pattern
    (excerpts of the train split only; see :mod:`sparse_lens.data.excerpts`)."""
    from sparse_lens import data as sld
    from sparse_lens.data.excerpts import corpus_excerpts
    from sparse_lens.training.config import OVERSAMPLE_DEFAULTS

    parts, report = [train], []
    for i, spec in enumerate(cfg.oversample):
        opts = {**OVERSAMPLE_DEFAULTS, **{k: v for k, v in spec.items() if k in OVERSAMPLE_DEFAULTS}}
        excerpts = corpus_excerpts(sld.iter_texts(train_docs), spec["pattern"], **opts)
        if not excerpts:
            raise ValueError(f"data.oversample[{i}].pattern: {spec['pattern']!r} occurs nowhere in the train split")
        rows = sld.pack(excerpts, tokenizer, n_ctx, cache_dir=cfg.cache_dir, dtype=train.dtype)
        if rows.shape[0] == 0:
            raise ValueError(f"data.oversample[{i}]: the excerpts of {spec['pattern']!r} are shorter than one row of {n_ctx} tokens")
        parts += [rows] * spec["repeat"]
        report.append({**spec, **opts, "excerpts": len(excerpts), "rows": int(rows.shape[0]),
                       "added_tokens": int(rows.numel()) * spec["repeat"]})
    return (torch.cat(parts) if len(parts) > 1 else train), report


def _longest_document_tokens(corpus: Any, tokenizer: Any) -> int:
    """Token length of the longest document, checked over the longest documents by characters."""
    import numpy as np
    import pyarrow.compute as pc

    lengths = []
    for split in ("train", "validation"):
        n_bytes = pc.binary_length(corpus[split].data.column("text")).to_numpy(zero_copy_only=False)
        top = np.argsort(n_bytes)[::-1][:LONGEST_CANDIDATES]
        lengths.extend((int(n_bytes[i]), split, int(i)) for i in top)
    lengths.sort(reverse=True)
    longest = 0
    for _, split, i in lengths[:LONGEST_CANDIDATES]:
        longest = max(longest, len(tokenizer.encode(corpus[split][i]["text"]).ids) + 1)  # + the separator
    return longest


def synthetic_data(cfg: DataConfig, n_ctx: int, d_vocab: int, seed: int) -> TokenData:
    """A learnable random stream: with prob. 3/4 the next token is perm[token], else uniform."""
    g = torch.Generator().manual_seed(10_007 + seed)
    perm = torch.randperm(d_vocab, generator=g)
    rows = cfg.synthetic_rows + max(1, cfg.synthetic_rows // 8)
    out = torch.empty(rows, n_ctx, dtype=torch.long)
    out[:, 0] = torch.randint(0, d_vocab, (rows,), generator=g)
    jump = torch.rand(rows, n_ctx, generator=g) < 0.25
    noise = torch.randint(0, d_vocab, (rows, n_ctx), generator=g)
    for t in range(1, n_ctx):
        out[:, t] = torch.where(jump[:, t], noise[:, t], perm[out[:, t - 1]])
    n_train = cfg.synthetic_rows
    desc = {"source": "synthetic", "rows": rows, "seed": seed, "fingerprint": _tensor_hash(out)}
    return TokenData(out[:n_train], out[n_train:], None, desc)


def _pretokenized(cfg: DataConfig, n_ctx: int, d_vocab: int) -> TokenData:
    path = Path(cfg.paths[0])
    if not path.is_file():
        raise ValueError(f"data.paths: no token file {path}")
    stored = load_file(str(path))
    splits = []
    for name in ("train", "validation"):
        if name not in stored:
            raise ValueError(f"data.paths: {path} has no '{name}' tensor")
        flat = stored[name].reshape(-1).long()
        if flat.numel() == 0:
            raise ValueError(f"data.paths: empty corpus — the '{name}' tensor of {path} is empty")
        rows = flat.numel() // n_ctx
        if rows == 0:
            raise ValueError(f"model.n_ctx: {n_ctx} is larger than the whole '{name}' split of {path} ({flat.numel()} tokens)")
        if int(flat.max()) >= d_vocab or int(flat.min()) < 0:
            raise ValueError(f"model.d_vocab: {path} has token ids outside [0, {d_vocab})")
        splits.append(flat[: rows * n_ctx].view(rows, n_ctx))
    tokenizer = None
    if cfg.tokenizer_path and Path(cfg.tokenizer_path).is_file():
        from sparse_lens.data import load_tokenizer

        tokenizer = load_tokenizer(cfg.tokenizer_path)
    desc = {"source": "tokens", "path": str(path), "fingerprint": _tensor_hash(splits[0])}
    return TokenData(splits[0], splits[1], tokenizer, desc)


def _hash(obj: Any) -> str:
    import json

    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _tensor_hash(tokens: Tensor) -> str:
    return hashlib.sha256(tokens.to(torch.int64).contiguous().numpy().tobytes()).hexdigest()[:16]
