"""Interventions through a bridge: a zero edit changes nothing, a real edit is carried as
g(h_s') − g(h_s) added to the dense residual (= a manual run_with_hooks), hooks are removed also
after an error, and the flip study runs on the shipped models with a random-node control."""

from __future__ import annotations

import pytest
import torch

from sparse_lens.bridges import BridgedPair, Node, flip_study, intervene

from .conftest import all_hooks_removed, make_dense, make_sparse


def test_a_zero_edit_changes_nothing(tokens, pair):
    for positions in (None, torch.tensor([11, 4, 0])):
        res = intervene(pair, tokens, [("blocks.0.mlp.hook_post", 7), Node("blocks.0.attn.hook_k", 10)],
                        value=lambda a: a, positions=positions)
        assert res.site == "blocks.1.hook_resid_pre"
        assert torch.equal(res.delta, torch.zeros_like(res.delta))
        assert torch.equal(res.dense_edited, res.dense_clean) and torch.equal(res.sparse_edited, res.sparse_clean)
    assert all_hooks_removed(pair.sparse)


def test_an_edit_is_carried_as_the_decoded_difference(tokens, pair):
    node = Node("blocks.0.hook_attn_out", 5)
    last = torch.tensor([11, 11, 11])
    res = intervene(pair, tokens, node, value=torch.tensor([3.0, -2.0, 0.5]), positions=last)
    site = pair.bridges.index(res.site)
    assert res.site == "blocks.0.hook_resid_mid"
    with torch.no_grad():
        clean = pair.sparse_side.run_to(tokens, site)
        edited = pair.sparse.run_with_hooks(tokens, stop_at_layer=res.site, fwd_hooks=[(node.hook, _set(node.index, last, [3.0, -2.0, 0.5]))])
        expected_delta = (edited - clean) @ pair.bridges.decoders[site].weight.T
        manual = pair.dense.module.run_with_hooks(tokens, fwd_hooks=[(res.site, lambda x, hook: x + res.delta)])
    torch.testing.assert_close(res.delta, expected_delta, atol=1e-5, rtol=1e-5)
    assert res.delta[:, :11].abs().max() < 1e-6 < res.delta[:, 11].abs().max()  # only the edited position moves
    torch.testing.assert_close(res.dense_edited, manual, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res.dense_clean, pair.dense.module(tokens), atol=1e-5, rtol=1e-5)
    d, s = res.logit_diff_change(torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6]), last)
    assert d.shape == (3,) and d.abs().max() > 0 and s.abs().max() > 0


def _set(index, positions, values):
    def hook(x, hook):
        flat = x.reshape(*x.shape[:2], -1).clone()
        flat[torch.arange(x.shape[0]), positions, index] = torch.tensor(values)
        return flat.view(x.shape)

    return hook


def test_bad_interventions_are_refused_and_leave_no_hook(tokens, pair):
    with pytest.raises(ValueError, match="last block"):
        intervene(pair, tokens, ("blocks.1.mlp.hook_post", 0), value=1.0)
    with pytest.raises(ValueError, match="comes before"):
        intervene(pair, tokens, ("blocks.0.hook_mlp_out", 0), value=1.0, site="blocks.0.hook_resid_mid")
    with pytest.raises(ValueError, match="not a hook"):
        intervene(pair, tokens, ("blocks.0.mlp.hook_nothing", 0), value=1.0)
    with pytest.raises(ValueError, match="out of range"):
        intervene(pair, tokens, ("blocks.0.mlp.hook_post", 10_000), value=1.0)
    with pytest.raises(ValueError, match="positions"):
        intervene(pair, tokens, ("blocks.0.mlp.hook_post", 0), value=1.0, positions=torch.tensor([0, 1]))
    assert all_hooks_removed(pair.sparse) and all_hooks_removed(pair.dense.module)


def test_flip_study_on_the_shipped_models():
    """The worked example's machinery on python-dense-tiny / python-sparse-tiny with least-squares
    bridges (no training): the most separating node moves the sparse model's answer; the study
    reports per-prompt changes and a random-node control."""
    from sparse_lens.model import HookedSparseTransformer

    dense = HookedSparseTransformer.from_pretrained("python-dense-tiny")
    sparse = HookedSparseTransformer.from_pretrained("python-sparse-tiny")
    pair = BridgedPair(dense, sparse, seed=0)
    batch = sparse.to_tokens(["def f(x):\n    return 'a' + \"b\"\n", "for i in range(10):\n    print(i, 'x')\n"])
    with torch.no_grad():
        _, hd = pair.dense.forward_with_sites(batch)
        _, hs = pair.sparse_side.forward_with_sites(batch)
    pair.bridges.fit_least_squares(hd, hs)
    study = flip_study(pair, n_fit=12, n_test=8, n_random=3, seed=0)
    summary = study.summary()
    assert study.task == "single_double_quote" and study.n_test_rows == 16
    assert len(study.dense_change) == len(study.sparse_change) == 16 and len(study.random_nodes) == 3
    assert study.node not in study.random_nodes and study.separation > 1
    assert summary["sparse_mean"] < 0  # flipping the most separating node moves the sparse model's answer
    assert "random nodes" in study.format()
    again = flip_study(pair, n_fit=12, n_test=8, n_random=3, seed=0, node=Node(*_parse(study.node)))
    assert again.dense_change == pytest.approx(study.dense_change, abs=1e-5)


def _parse(text: str) -> tuple[str, int]:
    hook, index = text[:-1].split("[")
    return hook, int(index)
