from __future__ import annotations

import numpy as np
import pytest
import torch

import sparse_lens.data.packing as packing_mod
from sparse_lens.data import TokenBatches, iter_texts, pack, tokenize_stream

N_CTX = 128


@pytest.fixture(scope="module")
def packed(corpus, small_tokenizer, cache_dir):
    return pack(corpus["train"], small_tokenizer, N_CTX, cache_dir=cache_dir)


def test_pack_shapes_and_separators(corpus, small_tokenizer, packed):
    texts = list(iter_texts(corpus["train"]))
    stream = tokenize_stream(small_tokenizer, texts)
    assert stream.dtype == np.uint16
    assert packed.dtype == torch.int64 and packed.shape == (len(stream) // N_CTX, N_CTX)
    assert torch.equal(packed.flatten(), torch.from_numpy(stream[: packed.numel()].astype(np.int64)))
    assert packed[0, 0] == 0  # every document starts with <|endoftext|>
    assert int((stream == 0).sum()) == len(texts)
    # splitting the stream at the separators gives back the documents
    bounds = np.flatnonzero(stream == 0).tolist() + [len(stream)]
    docs = [small_tokenizer.decode(stream[a + 1 : b].tolist()) for a, b in zip(bounds[:-1], bounds[1:])]
    assert docs == texts


def test_pack_literal_endoftext_is_not_a_separator(small_tokenizer):
    rows = pack(["a = '<|endoftext|>'\n" * 20], small_tokenizer, 8, use_cache=False)
    assert int((rows == 0).sum()) == 1


def test_pack_cache_hit(corpus, small_tokenizer, cache_dir, packed, monkeypatch):
    files = list((cache_dir / "packed").glob("*.npy"))
    assert files and np.load(files[0]).dtype == np.uint16
    monkeypatch.setattr(packing_mod, "tokenize_stream", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-tokenized")))
    assert torch.equal(pack(corpus["train"], small_tokenizer, N_CTX, cache_dir=cache_dir), packed)
    with pytest.raises(AssertionError, match="re-tokenized"):  # a different n_ctx is a different key
        pack(corpus["train"], small_tokenizer, N_CTX + 1, cache_dir=cache_dir)


def test_pack_bad_input(small_tokenizer):
    with pytest.raises(ValueError, match="n_ctx"):
        pack(["x = 1\n", "y = 2\n"], small_tokenizer, 1000, use_cache=False)
    with pytest.raises(ValueError, match="n_ctx"):
        pack(["x = 1\n"], small_tokenizer, 0, use_cache=False)
    # n_ctx longer than every document is fine when the documents together fill a row
    rows = pack(["x = 1\n"] * 50, small_tokenizer, 64, use_cache=False)
    assert rows.shape[1] == 64 and rows.shape[0] >= 1


def _rows(n=103, n_ctx=4):
    return torch.arange(n * n_ctx).reshape(n, n_ctx)


def test_batches_deterministic_and_epoch_coverage():
    tokens = _rows()
    a = [b.clone() for _, b in zip(range(30), TokenBatches(tokens, 8, seed=1))]
    b = [b.clone() for _, b in zip(range(30), TokenBatches(tokens, 8, seed=1))]
    c = [b.clone() for _, b in zip(range(30), TokenBatches(tokens, 8, seed=2))]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    assert a[0].dtype == torch.int64 and a[0].shape == (8, 4)
    it = TokenBatches(tokens, 8, seed=1)
    assert it.steps_per_epoch == 12
    epoch0 = np.concatenate([it.global_indices(s) for s in range(12)])
    epoch1 = np.concatenate([it.global_indices(s) for s in range(12, 24)])
    assert len(set(epoch0.tolist())) == 96 and len(set(epoch1.tolist())) == 96
    assert not np.array_equal(epoch0, epoch1)


def test_batches_accept_compact_dtypes(corpus, small_tokenizer, cache_dir, packed):
    small = pack(corpus["train"], small_tokenizer, N_CTX, cache_dir=cache_dir, dtype=torch.uint16)
    assert small.dtype == torch.uint16
    for rows in (small, small.numpy(), packed.int()):
        got = TokenBatches(rows, 4, seed=0, start_step=3).batch(3)
        assert got.dtype == torch.int64 and torch.equal(got, TokenBatches(packed, 4, seed=0).batch(3))


def test_batches_resume_bit_identical():
    tokens = _rows()
    full = TokenBatches(tokens, 8, seed=3)
    ref = [next(full) for _ in range(40)]
    assert full.state_dict() == {"step": 40}
    resumed = TokenBatches(tokens, 8, seed=3, start_step=17)
    assert all(torch.equal(next(resumed), ref[s]) for s in range(17, 40))
    other = TokenBatches(tokens, 8, seed=3)
    other.load_state_dict({"step": 25})
    assert torch.equal(next(other), ref[25])


def test_batches_ddp_partition():
    tokens = _rows()
    single = TokenBatches(tokens, 12, seed=5)
    ranks = [TokenBatches(tokens, 12, seed=5, rank=r, world_size=3) for r in range(3)]
    for step in range(20):
        parts = [next(r) for r in ranks]
        assert all(p.shape == (4, 4) for p in parts)
        assert torch.equal(torch.cat(parts), next(single))
        idx = [set(r.indices(step).tolist()) for r in ranks]
        assert not (idx[0] & idx[1]) and not (idx[1] & idx[2]) and not (idx[0] & idx[2])


def test_batches_bad_input():
    tokens = _rows(10)
    with pytest.raises(ValueError, match="world_size"):
        TokenBatches(tokens, 8, rank=0, world_size=3)
    with pytest.raises(ValueError, match="rank"):
        TokenBatches(tokens, 8, rank=2, world_size=2)
    with pytest.raises(ValueError, match="only 10 rows"):
        TokenBatches(tokens, 16)
    with pytest.raises(ValueError, match="n_seq, n_ctx"):
        TokenBatches(torch.arange(10), 2)
