"""Compact checkpoints: sparse matrices stored as values + indices (safetensors, no pickle); dense
checkpoints of before still load; loading skips the random initialization it would overwrite."""

from __future__ import annotations

import torch
from safetensors.torch import load_file, save_file

from sparse_lens.model import HookedSparseTransformer
from sparse_lens.model.checkpoint import WEIGHTS_FILE, constructing_for_load, weights_will_be_loaded
from tests.model.conftest import make_model

SPARSE = ("W_E", "W_Q", "W_K", "W_V", "W_O", "W_in", "W_out", "W_U")


def _sparse_model(density: float, seed: int = 0) -> HookedSparseTransformer:
    model = make_model(d_model=64, d_mlp=256, n_heads=4, d_head=16, d_vocab=64)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.rsplit(".", 1)[-1] in SPARSE:
                p.mul_(torch.rand(p.shape, generator=g) < density)
    return model


def test_file_size_follows_the_nonzeros(tmp_path):
    sizes = {}
    for density in (1.0, 0.01):
        model = _sparse_model(density)
        model.save_pretrained(tmp_path / str(density))
        sizes[density] = (tmp_path / str(density) / WEIGHTS_FILE).stat().st_size
    dense_bytes = sum(p.numel() * 4 for n, p in _sparse_model(1.0).named_parameters() if n.rsplit(".", 1)[-1] in SPARSE)
    sparse_bytes = sizes[1.0] - sizes[0.01]  # what compact storage saved
    assert sparse_bytes > 0.9 * dense_bytes


def test_round_trip_is_exact_and_runs_sparse(tmp_path):
    model = _sparse_model(0.05)
    model.save_pretrained(tmp_path / "m")
    loaded = HookedSparseTransformer.from_pretrained(tmp_path / "m")
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    stored = load_file(str(tmp_path / "m" / WEIGHTS_FILE))
    assert "blocks.0.mlp.W_in.__nz_indices" in stored and "blocks.0.mlp.W_in" not in stored
    tokens = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(0))
    loaded.requires_grad_(False).set_execution("sparse")
    torch.testing.assert_close(loaded(tokens), model(tokens).detach(), atol=1e-5, rtol=1e-5)


def test_dense_checkpoints_still_load(tmp_path):
    """A weights file with every matrix stored dense (as older writers may have) loads the same."""
    model = _sparse_model(0.05)
    model.save_pretrained(tmp_path / "m")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "m" / WEIGHTS_FILE))
    loaded = HookedSparseTransformer.from_pretrained(tmp_path / "m")
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_loading_skips_the_random_init(tmp_path, monkeypatch):
    model = _sparse_model(0.05)
    model.save_pretrained(tmp_path / "m")
    calls = []
    original = HookedSparseTransformer.init_weights
    monkeypatch.setattr(HookedSparseTransformer, "init_weights", lambda self, seed=None: calls.append(seed) or original(self, seed))
    HookedSparseTransformer.from_pretrained(tmp_path / "m")
    assert calls == []
    assert not weights_will_be_loaded()  # the flag does not leak out of the loader
    make_model()
    assert len(calls) == 1  # a model built outside a loader is initialized
    with constructing_for_load():
        assert weights_will_be_loaded()
