"""Top-k projection: exactly k kept, min-j per neuron, forced extras, ties, which tensors are sparse."""

from __future__ import annotations

import pytest
import torch

from sparse_lens.model import HookedSparseTransformer, SparseTransformerConfig
from sparse_lens.training import SparsityConfig, WeightSparsifier, project_topk_, sparse_tensor_specs
from sparse_lens.training.weight_sparsity import kth_largest, neuron_fan_sizes, unit_layout


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("k", [1, 7, 100, 511, 512])
def test_keeps_exactly_k_largest(k):
    w = _randn(16, 32)
    ref = w.clone()
    stats = project_topk_(w, k)
    assert int((w != 0).sum()) == min(k, w.numel()) == stats.kept
    assert stats.forced == 0
    kept = w != 0
    # the kept entries are the k largest |w| and are unchanged
    assert torch.equal(w[kept], ref[kept])
    if k < w.numel():
        assert ref.abs()[kept].min() >= ref.abs()[~kept].max()


def test_k_zero_and_full():
    w = _randn(8, 8)
    ref = w.clone()
    assert project_topk_(w, 64).kept == 64 and torch.equal(w, ref)
    project_topk_(w, 0)
    assert int((w != 0).sum()) == 0


def test_ties_at_threshold_broken_deterministically():
    w = torch.tensor([3.0, 1.0, -1.0, 1.0, 0.5, -1.0, 2.0])
    stats = project_topk_(w, 4)  # 3, 2, then two of the four tied 1.0s: the lowest indices
    assert stats.kept == 4
    assert w.tolist() == [3.0, 1.0, -1.0, 0.0, 0.0, 0.0, 2.0]


def test_fewer_nonzeros_than_k_keeps_them_all():
    w = torch.zeros(10)
    w[[2, 5]] = torch.tensor([1.0, -2.0])
    stats = project_topk_(w, 5)
    assert stats.kept == 2 and int((w != 0).sum()) == 2


def test_kth_largest_matches_sort():
    x = _randn(1000).abs()
    for k in (1, 10, 999, 1000):
        assert kth_largest(x, k) == x.sort(descending=True).values[k - 1].item()


@pytest.mark.parametrize("leaf,shape", [("W_Q", (4, 32, 8)), ("W_O", (4, 8, 32)), ("W_in", (32, 128)), ("W_out", (128, 32))])
@pytest.mark.parametrize("mode", ["neuron", "fan_in"])
def test_min_j_per_unit_holds_and_k_exact(leaf, shape, mode):
    w = _randn(*shape, seed=3)
    # make a few units very weak, so a plain top-k would leave them empty
    view, fan_dim = unit_layout(leaf, shape, mode)
    wv = w.view(view)
    weak = [slice(None)] * len(view)
    weak[1 - fan_dim if len(view) == 2 else 2] = slice(0, 2)  # two units
    wv[tuple(weak)] *= 1e-3
    n_units = w.numel() // view[fan_dim]
    j = 4
    k = j * n_units + 10  # enough budget for the rule
    stats = project_topk_(w, k, j, view, fan_dim)
    assert stats.kept == k and stats.forced == 0
    assert int((w != 0).sum()) == k
    per_unit = (w.view(view) != 0).sum(dim=fan_dim)
    assert int(per_unit.min()) >= j


def test_min_j_forces_more_than_k_and_reports_it():
    w = _randn(32, 64)  # W_in: 64 neurons, fan-in 32
    view, fan_dim = unit_layout("W_in", (32, 64))
    stats = project_topk_(w, 100, 4, view, fan_dim)  # 4 * 64 = 256 > 100
    assert stats.kept == 256 and stats.forced == 156
    assert int((w != 0).sum()) == 256
    assert int((w != 0).sum(dim=0).min()) == 4 and int((w != 0).sum(dim=0).max()) == 4


def test_min_j_protected_entries_are_each_units_largest():
    w = _randn(32, 64, seed=5)
    ref = w.clone()
    view, fan_dim = unit_layout("W_in", (32, 64))
    project_topk_(w, 300, 4, view, fan_dim)
    top4 = ref.abs().topk(4, dim=0).indices  # [4, 64]
    assert bool((w.gather(0, top4) != 0).all())


def _model(**kw):
    fields = dict(n_layers=2, d_model=32, n_ctx=16, d_vocab=64, n_heads=2, d_head=8, d_mlp=64, weight_sparsity=1 / 16, seed=0)
    fields.update(kw)
    return HookedSparseTransformer(SparseTransformerConfig(**fields))


def test_which_tensors_are_sparse():
    model = _model(positional_embeddings=True)
    names = lambda cfg: {s.name.split(".")[-1] for s in sparse_tensor_specs(model, cfg)}  # noqa: E731
    every = names(SparsityConfig())
    assert {"W_Q", "W_K", "W_V", "W_O", "W_in", "W_out", "W_E", "W_pos", "W_U", "b_Q", "b_in", "b_out", "b_O", "b_U"} <= every
    assert not every & {"W_bigram", "w", "b_sink"}
    assert names(SparsityConfig(sparse_embeddings=False, sparse_unembedding=False, sparse_biases=False)) == {
        "W_Q", "W_K", "W_V", "W_O", "W_in", "W_out"}


def test_sparsifier_bigram_dense_and_fractions_equal():
    model = _model()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(_randn(*p.shape, seed=p.numel()))
    bigram_before = model.bigram.W_bigram.clone()
    sp = WeightSparsifier(model, model.cfg, SparsityConfig(anneal_start=0.0, anneal_end=0.0), total_steps=10)
    stats = sp.project_(0)
    assert torch.equal(model.bigram.W_bigram, bigram_before)  # the bigram table stays dense
    for spec in sp.specs:
        nnz = int((spec.param != 0).sum())
        expected = int(spec.numel / 16)
        assert stats[spec.name].k == expected
        if stats[spec.name].forced == 0:
            assert nnz == expected, spec.name
        else:
            assert nnz == expected + stats[spec.name].forced
    # W_in: k = 2048/16 = 128 < 4 per neuron x 64 neurons = 256, so the rule forces 256
    assert stats["blocks.0.mlp.W_in"].forced == 128
    assert sp.nonzero_counts()["blocks.0.mlp.W_in"] == 256
    assert min(sp.min_nonzero_per_unit().values()) >= 4


def test_embed_bias_fraction_scale():
    model = _model(weight_sparsity=1 / 64, d_model=64, n_heads=4, d_mlp=256)
    sp = WeightSparsifier(model, model.cfg, SparsityConfig(anneal_start=0, anneal_end=0, embed_bias_fraction_scale=4), 10)
    by_name = {s.name: s for s in sp.specs}
    assert sp.k_for(by_name["embed.W_E"], 5) == int(64 * 64 / 16)
    assert sp.k_for(by_name["blocks.0.mlp.W_in"], 5) == int(64 * 256 / 64)


def test_neuron_fan_sizes():
    cfg = SparseTransformerConfig(n_layers=1, d_model=32, n_ctx=8, d_vocab=16, d_head=8, n_heads=2, d_mlp=64)
    assert neuron_fan_sizes(cfg, "neuron") == {"W_Q": 32, "W_K": 32, "W_V": 32, "W_O": 32, "W_in": 32, "W_out": 32}
    assert neuron_fan_sizes(cfg, "fan_in") == {"W_Q": 32, "W_K": 32, "W_V": 32, "W_O": 16, "W_in": 32, "W_out": 64}
