"""Packing documents into fixed-length rows, and a deterministic, resumable, DDP-shardable batch iterator.

Layout: ``<|endoftext|> doc_1 <|endoftext|> doc_2 ... <|endoftext|> doc_N`` cut into rows of n_ctx
tokens (rows cross document boundaries; the ragged tail is dropped). ``<|endoftext|>`` (id 0) thus
separates documents and is the BOS of each one.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from sparse_lens.data.corpus import default_cache_dir
from sparse_lens.data.tokenizer import EOT, encode_ids, iter_texts, tokenizer_hash

PACK_FORMAT_VERSION = 1


def texts_hash(texts: Any) -> str:
    """sha256 of the documents (a ``datasets.Dataset`` with a ``text`` column, or strings)."""
    h = hashlib.sha256()
    for t in iter_texts(texts):
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:20]


def pack_key(tokenizer: Any, texts: Any, n_ctx: int) -> str:
    return f"v{PACK_FORMAT_VERSION}-{tokenizer_hash(tokenizer)}-{texts_hash(texts)}-n{n_ctx}"


def tokenize_stream(tokenizer: Any, texts: Any, batch_size: int = 256) -> np.ndarray:
    """All documents as one uint16 stream, each preceded by ``<|endoftext|>``."""
    eot = tokenizer.token_to_id(EOT)
    if eot is None:
        raise ValueError(f"tokenizer: has no {EOT} token")
    if tokenizer.get_vocab_size() > 2**16:
        raise ValueError("tokenizer: vocabulary larger than 65536 does not fit uint16")
    chunks: list[np.ndarray] = []
    batch: list[str] = []

    def flush() -> None:
        for ids in encode_ids(tokenizer, batch):
            chunks.append(np.asarray([eot] + ids, dtype=np.uint16))
        batch.clear()

    for t in iter_texts(texts):
        batch.append(t)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint16)


def _atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    from sparse_lens.io import atomic_write

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, arr)

    atomic_write(path, write)


def pack(
    texts: Any,
    tokenizer: Any,
    n_ctx: int,
    cache_dir: Optional[Union[str, os.PathLike]] = None,
    use_cache: bool = True,
    dtype: torch.dtype = torch.int64,
) -> Int[Tensor, "n_seq n_ctx"]:
    """Tokenize `texts` (a ``datasets.Dataset`` with a ``text`` column, or a list of strings) and cut
    the ``<|endoftext|>``-joined stream into rows of `n_ctx` tokens.

    The packed array is cached as uint16 ``.npy`` under ``cache_dir/packed/`` keyed by
    (tokenizer hash, document hash, n_ctx); a second call loads it without tokenizing.
    ``dtype=torch.uint16`` (or ``torch.int32``) saves memory on large corpora; `TokenBatches`
    accepts it and still yields int64 batches.
    """
    if not isinstance(n_ctx, int) or n_ctx < 1:
        raise ValueError(f"n_ctx: expected a positive integer, got {n_ctx!r}")
    path = None
    if use_cache:
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        path = root / "packed" / f"{pack_key(tokenizer, texts, n_ctx)}.npy"
        if path.is_file():
            return _to_tensor(np.load(path), dtype)
    stream = tokenize_stream(tokenizer, texts)
    n_seq = len(stream) // n_ctx
    if n_seq == 0:
        raise ValueError(
            f"n_ctx: the corpus has only {len(stream)} tokens (with separators), fewer than one sequence of "
            f"n_ctx={n_ctx}; use more documents or a smaller n_ctx"
        )
    rows = stream[: n_seq * n_ctx].reshape(n_seq, n_ctx)
    if path is not None:
        _atomic_save_npy(path, rows)
    return _to_tensor(rows, dtype)


def _to_tensor(rows: np.ndarray, dtype: torch.dtype) -> Tensor:
    if dtype == torch.uint16:
        return torch.from_numpy(rows)
    if dtype == torch.int64:
        return torch.from_numpy(rows.astype(np.int64))
    return torch.from_numpy(rows.astype(np.int32)).to(dtype)


class TokenBatches:
    """Shuffled batches of rows, epoch after epoch; a pure function of (seed, step).

    Epoch e is the permutation ``numpy.random.default_rng([seed, e]).permutation(n_seq)``; global
    step s uses rows ``perm[p*B:(p+1)*B]`` with ``e, p = divmod(s, n_seq // B)`` (the rows left over
    at the end of an epoch are skipped that epoch). Rank r of `world_size` gets the r-th of
    `world_size` equal, disjoint slices of the global batch. Resume with ``start_step`` (or
    `load_state_dict`): the batches are then bit-identical to an uninterrupted run.
    """

    def __init__(
        self,
        tokens: Union[Int[Tensor, "n_seq n_ctx"], np.ndarray],
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
    ):
        if isinstance(tokens, Tensor) and tokens.dtype == torch.uint16:
            tokens = tokens.numpy()  # few torch ops support uint16: index in numpy
        if tokens.ndim != 2:
            raise ValueError(f"tokens: expected [n_seq, n_ctx], got shape {tuple(tokens.shape)}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank/world_size: need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if batch_size < 1 or batch_size % world_size:
            raise ValueError(f"batch_size: {batch_size} must be a positive multiple of world_size={world_size}")
        if tokens.shape[0] < batch_size:
            raise ValueError(f"batch_size: {batch_size} rows per step but tokens has only {tokens.shape[0]} rows")
        if start_step < 0:
            raise ValueError(f"start_step: expected >= 0, got {start_step}")
        self.tokens = tokens
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.local_batch_size = batch_size // world_size
        self.n_seq = tokens.shape[0]
        self.steps_per_epoch = self.n_seq // batch_size
        self.step = start_step
        self._perm_epoch, self._perm = -1, np.zeros(0, dtype=np.int64)

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n_seq)
            self._perm_epoch = epoch
        return self._perm

    def global_indices(self, step: int) -> np.ndarray:
        """Row indices of the global batch of `step`."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        return self.permutation(epoch)[pos * self.batch_size : (pos + 1) * self.batch_size]

    def indices(self, step: int) -> np.ndarray:
        """Row indices of this rank's share of the global batch of `step`."""
        b = self.local_batch_size
        return self.global_indices(step)[self.rank * b : (self.rank + 1) * b]

    def batch(self, step: int) -> Int[Tensor, "local_batch n_ctx"]:
        """This rank's batch at `step` as int64."""
        idx = self.indices(step)
        if isinstance(self.tokens, np.ndarray):
            return torch.from_numpy(self.tokens[idx].astype(np.int64))
        return self.tokens[torch.from_numpy(idx)].long()

    def epoch(self, step: Optional[int] = None) -> float:
        return (self.step if step is None else step) / self.steps_per_epoch

    def __iter__(self) -> Iterator[Int[Tensor, "local_batch n_ctx"]]:
        return self

    def __next__(self) -> Int[Tensor, "local_batch n_ctx"]:
        out = self.batch(self.step)
        self.step += 1
        return out

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])
