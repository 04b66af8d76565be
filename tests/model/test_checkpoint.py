"""save_pretrained / from_pretrained: round trip, compact sparse storage, atomicity, clear errors."""

import json

import pytest
import torch

from sparse_lens.model import HookedSparseTransformer, SparseTransformerConfig
from sparse_lens.model.checkpoint import compact_state_dict, expand_state_dict

from .conftest import make_model


def sparsify_(model, keep=0.1):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.split(".")[-1] in ("W_Q", "W_K", "W_V", "W_O", "W_in", "W_out"):
                p.mul_(torch.rand(p.shape, generator=torch.Generator().manual_seed(0)) < keep)
    return model


@pytest.mark.parametrize("overrides", [{}, {"tied_embeddings": True}, {"use_bias": False, "positional_embeddings": True},
                                       {"normalization_type": "LN", "ln_bias": True, "eps": 1e-5}])
def test_round_trip_exact(tmp_path, tokens, overrides):
    model = sparsify_(make_model(**overrides))
    model.save_pretrained(tmp_path / "m")
    loaded = HookedSparseTransformer.from_pretrained(tmp_path / "m")
    assert loaded.cfg.to_dict() == model.cfg.to_dict()
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    assert torch.equal(loaded(tokens), model(tokens))
    assert not loaded.training


def test_sparse_matrices_are_stored_compactly():
    model = sparsify_(make_model(), keep=0.05)
    stored = compact_state_dict(model.state_dict())
    assert "blocks.0.mlp.W_in.__nz_values" in stored and "blocks.0.mlp.W_in" not in stored
    assert "bigram.W_bigram" in stored  # dense stays dense
    restored = expand_state_dict(stored)
    assert all(torch.equal(restored[k], v) for k, v in model.state_dict().items())


def test_tokenizer_is_saved(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["def f(x):\n    return x\n"] * 10, trainers.BpeTrainer(vocab_size=40, special_tokens=["<|endoftext|>"]))
    model = make_model(d_vocab=tok.get_vocab_size())
    model.set_tokenizer(tok)
    model.save_pretrained(tmp_path / "m")
    loaded = HookedSparseTransformer.from_pretrained(tmp_path / "m")
    assert loaded.to_str_tokens("return x")[0] == "<|endoftext|>"
    assert loaded.to_string(loaded.to_tokens("return x", prepend_bos=False)[0]) == "return x"


def test_overwrite_is_atomic_and_leaves_no_temp(tmp_path):
    first, second = make_model(), make_model(seed=1)
    with torch.no_grad():
        second.embed.W_E.add_(1)
    first.save_pretrained(tmp_path / "m")
    second.save_pretrained(tmp_path / "m")
    loaded = HookedSparseTransformer.from_pretrained(tmp_path / "m")
    assert torch.equal(loaded.embed.W_E, second.embed.W_E)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_failed_save_leaves_old_checkpoint(tmp_path, monkeypatch):
    model = make_model()
    model.save_pretrained(tmp_path / "m")
    before = (tmp_path / "m" / "model.safetensors").read_bytes()
    import sparse_lens.model.checkpoint as ckpt

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a directory nor a shipped model"):
        HookedSparseTransformer.from_pretrained("no-such-model")
    make_model().save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read safetensors"):
        HookedSparseTransformer.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="missing model.safetensors"):
        HookedSparseTransformer.from_pretrained(tmp_path / "m")


def test_config_weight_mismatch(tmp_path):
    make_model().save_pretrained(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["d_mlp"] = 64
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="shape"):
        HookedSparseTransformer.from_pretrained(tmp_path / "m")
    cfg["d_mlp"], cfg["bigram_table"] = 48, False
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="unexpected"):
        HookedSparseTransformer.from_pretrained(tmp_path / "m")


def test_config_json_round_trip_and_validation(tmp_path):
    cfg = SparseTransformerConfig(n_layers=2, d_model=64, n_ctx=32, d_vocab=100, weight_sparsity=1 / 16, dtype="float64")
    cfg.to_json(tmp_path / "c.json")
    again = SparseTransformerConfig.from_json(tmp_path / "c.json")
    assert again.to_dict() == cfg.to_dict() and again.dtype == torch.float64
    for bad, field in [(dict(d_model=0), "d_model"), (dict(activation_sparsity=1.5), "activation_sparsity"),
                       (dict(activation_sparsity_locations=("attn_inn",)), "activation_sparsity_locations"),
                       (dict(act_fn="swish"), "act_fn"), (dict(weight_sparsity=0.0), "weight_sparsity"),
                       (dict(d_head=24), "n_heads"), (dict(ln_bias=True), "ln_bias"),
                       (dict(residual_activation="tanh"), "residual_activation"), (dict(dtype="int8"), "dtype")]:
        fields = dict(n_layers=2, d_model=64, n_ctx=32, d_vocab=100)
        fields.update(bad)
        with pytest.raises(ValueError, match=field):
            SparseTransformerConfig(**fields)
    with pytest.raises(ValueError, match="unknown field"):
        SparseTransformerConfig.from_dict({"n_layers": 1, "d_model": 16, "n_ctx": 8, "d_vocab": 10, "n_layer": 3})
