"""Bad input gets a clear error naming what is wrong, before any work; nothing is half-written."""

from __future__ import annotations

import json

import pytest
import torch

from sparse_lens.bridges import BridgedPair, Bridges
from sparse_lens.bridges.bridge import BRIDGES_FILE, BRIDGES_META

from .conftest import VOCAB, make_dense, make_sparse, tiny_tl_model


def _tokenizer(words):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"<|endoftext|>": 0, **{w: i + 1 for i, w in enumerate(words)}}, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok


def test_depth_vocabulary_and_tokenizer_mismatches_are_refused():
    with pytest.raises(ValueError, match="n_layers: the dense model has 3 layers and the sparse model 2"):
        BridgedPair(make_dense(n_layers=3), make_sparse())
    with pytest.raises(ValueError, match="n_layers"):
        BridgedPair(tiny_tl_model(n_layers=1), make_sparse())
    with pytest.raises(ValueError, match="d_vocab"):
        BridgedPair(make_dense(d_vocab=VOCAB + 1), make_sparse())
    dense, sparse = make_dense(), make_sparse()
    dense.set_tokenizer(_tokenizer([f"w{i}" for i in range(20)]))
    sparse.set_tokenizer(_tokenizer([f"w{i}" for i in range(19)] + ["other"]))
    with pytest.raises(ValueError, match=r"tokenizer: the dense and sparse models' tokenizers differ.*only in dense: \['w19'\]"):
        BridgedPair(dense, sparse)
    sparse.set_tokenizer(_tokenizer([f"w{i}" for i in range(20)]))
    BridgedPair(dense, sparse)  # the same vocabulary: accepted
    with pytest.raises(ValueError, match="the sparse model has no tokenizer"):
        BridgedPair(dense, make_sparse())
    with pytest.raises(TypeError, match="sparse: expected a HookedSparseTransformer"):
        BridgedPair(make_dense(), tiny_tl_model())
    with pytest.raises(ValueError, match="same model object"):
        model = make_sparse()
        BridgedPair(model, model)


def test_unknown_sites_and_bad_tokens_are_refused(tokens, pair):
    for bad in ("blocks.0.hook_resid_post", "blocks.7.hook_resid_pre", 4):
        with pytest.raises(ValueError, match="site"):
            pair.hybrid_logits(tokens, bad, "d2s")
    with pytest.raises(ValueError, match="direction"):
        pair.hybrid_logits(tokens, 0, "sideways")
    with pytest.raises(ValueError, match="tokens"):
        pair.losses(tokens.float())
    with pytest.raises(ValueError, match="residual at"):
        pair.sparse_side.run_from(torch.zeros(3, 12, 7), 1, tokens)


def test_bridges_for_other_models_are_refused(tmp_path, tokens, pair):
    pair.bridges.save(tmp_path / "b", pair.dense, pair.sparse_side)
    meta = json.loads((tmp_path / "b" / BRIDGES_META).read_text())
    assert meta["dense"]["fingerprint"] and meta["sparse"]["fingerprint"] and meta["sites"] == pair.sites
    loaded = Bridges.load(tmp_path / "b", dense=pair.dense, sparse=pair.sparse_side)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), pair.bridges.state_dict().values()))
    other = BridgedPair(make_dense(seed=9), make_sparse(), seed=0)
    with pytest.raises(ValueError, match=r"dense side\) belongs to model"):
        Bridges.load(tmp_path / "b", dense=other.dense)
    Bridges.load(tmp_path / "b", dense=other.dense, strict=False)  # strict=False applies them anyway
    wide = BridgedPair(make_dense(d_model=28), make_sparse(), seed=0)
    with pytest.raises(ValueError, match="d_model 24"):
        Bridges.load(tmp_path / "b", dense=wide.dense, strict=False)
    with pytest.raises(ValueError, match="bridges: built for"):
        BridgedPair(wide.dense, make_sparse(), bridges=loaded)


def test_corrupt_or_foreign_files_are_refused(tmp_path, pair):
    pair.bridges.save(tmp_path / "b", pair.dense, pair.sparse_side)
    with pytest.raises(FileNotFoundError, match="bridges.json"):
        Bridges.load(tmp_path)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / BRIDGES_META).write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not a sparse_lens bridges file"):
        Bridges.load(tmp_path / "c")
    (tmp_path / "b" / BRIDGES_FILE).write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read"):
        Bridges.load(tmp_path / "b")


def test_a_failed_save_changes_nothing(tmp_path, pair):
    pair.bridges.save(tmp_path / "b", pair.dense, pair.sparse_side)
    before = {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}
    with torch.no_grad():
        pair.bridges.encoders[2].bias[0] = float("inf")
    with pytest.raises(ValueError, match=r"encoders\.2\.bias has non-finite values"):
        pair.bridges.save(tmp_path / "b", pair.dense, pair.sparse_side)
    assert {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()} == before


def test_a_saved_pair_loads_back_and_checks_its_dense_model(tmp_path, tokens):
    dense = make_dense()
    dense.save_pretrained(tmp_path / "dense")
    dense = type(dense).from_pretrained(tmp_path / "dense")  # loaded by a name the bridges can record
    pair = BridgedPair(dense, make_sparse(), seed=0)
    pair.save(tmp_path / "pair")
    loaded = BridgedPair.load(tmp_path / "pair")
    torch.testing.assert_close(loaded.hybrid_logits(tokens, 2, "s2d"), pair.hybrid_logits(tokens, 2, "s2d"))
    with pytest.raises(ValueError, match="belongs to model"):
        BridgedPair.load(tmp_path / "pair", dense=make_dense(seed=4))
