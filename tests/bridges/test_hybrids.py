"""Sites, the residual-model adapters and the hybrid passes: identity bridges between identical models
are exact, a hybrid pass equals a manual splice with run_with_hooks, batched sites equal one site at a
time, and every splice hook is removed (also after an exception)."""

from __future__ import annotations

import pytest
import torch

from sparse_lens.bridges import BridgedPair, site_index, site_names
from sparse_lens.bridges.sites import next_site_after_hook

from .conftest import VOCAB, all_hooks_removed, identical_pair, make_dense, make_sparse, tiny_tl_model


def test_sites_are_before_each_attention_and_mlp():
    assert site_names(2) == ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_mid",
                             "blocks.1.hook_resid_pre", "blocks.1.hook_resid_mid"]
    assert site_index("blocks.1.hook_resid_mid", 2) == 3 and site_index(-1, 2) == 3 and site_index(0, 2) == 0
    for bad in ("blocks.2.hook_resid_pre", "blocks.0.hook_resid_post", "blocks.0.attn.hook_q", 4, -5):
        with pytest.raises(ValueError, match="site"):
            site_index(bad, 2)
    assert next_site_after_hook("hook_embed", 2) == 0
    assert next_site_after_hook("blocks.0.attn.hook_v", 2) == 1
    assert next_site_after_hook("blocks.0.hook_mlp_out", 2) == 2
    assert next_site_after_hook("blocks.1.hook_attn_out", 2) == 3
    with pytest.raises(ValueError, match="last block"):
        next_site_after_hook("blocks.1.mlp.hook_post", 2)


@pytest.mark.parametrize("activation_sparsity", [None, 0.5])
def test_identity_bridges_between_identical_models_make_every_hybrid_exact(tokens, activation_sparsity):
    pair = identical_pair(activation_sparsity=activation_sparsity)
    losses = pair.losses(tokens, compute_all=True)
    assert torch.all(losses.kl_d2s.abs() < 1e-6) and torch.all(losses.kl_s2d.abs() < 1e-6)
    assert torch.all(losses.nmse_enc == 0) and torch.all(losses.nmse_dec == 0)
    full = pair.dense.module(tokens)
    for site in pair.sites:
        for direction in ("d2s", "s2d"):
            torch.testing.assert_close(pair.hybrid_logits(tokens, site, direction), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dense_kind", ["sparse_lens", "transformer_lens"])
def test_hybrid_pass_equals_a_manual_splice_with_run_with_hooks(tokens, dense_kind):
    dense = make_dense() if dense_kind == "sparse_lens" else tiny_tl_model()
    pair = BridgedPair(dense, make_sparse(), seed=0)
    d2s_all, s2d_all = pair.hybrid_logits_all(tokens, "d2s"), pair.hybrid_logits_all(tokens, "s2d")
    for i, site in enumerate(pair.sites):
        with torch.no_grad():
            _, h_dense = pair.dense.forward_with_sites(tokens)
            _, h_sparse = pair.sparse_side.forward_with_sites(tokens)
            encoded, decoded = pair.bridges.encode(i, h_dense[i]), pair.bridges.decode(i, h_sparse[i])
        manual_d2s = pair.sparse.run_with_hooks(tokens, fwd_hooks=[(site, lambda x, hook: encoded)])
        manual_s2d = dense.run_with_hooks(tokens, fwd_hooks=[(site, lambda x, hook: decoded)])
        one_d2s, one_s2d = pair.hybrid_logits(tokens, site, "d2s"), pair.hybrid_logits(tokens, site, "s2d")
        for got in (one_d2s, d2s_all[i]):
            torch.testing.assert_close(got, manual_d2s, atol=1e-5, rtol=1e-5)
        for got in (one_s2d, s2d_all[i]):
            torch.testing.assert_close(got, manual_s2d, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(manual_d2s, pair.sparse(tokens))  # the splice changed something
    assert all_hooks_removed(pair.sparse) and all_hooks_removed(dense)


def test_a_hybrid_pass_starts_at_the_site(tokens, pair):
    """d→s at site 3 runs only the sparse model's last MLP: block 0 and the last attention never run."""
    calls: list[str] = []
    handles = [pair.sparse.blocks[0].register_forward_hook(lambda *a: calls.append("block0")),
               pair.sparse.blocks[1].attn.register_forward_hook(lambda *a: calls.append("attn1")),
               pair.sparse.blocks[1].mlp.register_forward_hook(lambda *a: calls.append("mlp1"))]
    try:
        pair.hybrid_logits(tokens, "blocks.1.hook_resid_mid", "d2s")
        pair.hybrid_logits_all(tokens, "d2s", sites=["blocks.1.hook_resid_mid"])
    finally:
        for h in handles:
            h.remove()
    assert calls == ["mlp1", "mlp1"]


@pytest.mark.parametrize("dense_kind", ["sparse_lens", "transformer_lens"])
def test_splice_hooks_are_removed_after_use_and_after_an_exception(tokens, dense_kind):
    dense = make_dense() if dense_kind == "sparse_lens" else tiny_tl_model()
    pair = BridgedPair(dense, make_sparse(), seed=0)
    pair.losses(tokens).total.backward()
    assert all_hooks_removed(pair.sparse) and all_hooks_removed(dense)

    def boom(*args):
        raise RuntimeError("boom")

    for module in (pair.sparse.blocks[1].mlp, dense.blocks[1] if dense_kind == "transformer_lens" else dense.blocks[1].mlp):
        handle = module.register_forward_hook(boom)
        try:
            for call in (lambda: pair.losses(tokens), lambda: pair.hybrid_logits_all(tokens, "s2d"),
                         lambda: pair.hybrid_logits_all(tokens, "d2s")):
                try:
                    call()
                except RuntimeError as err:
                    assert "boom" in str(err)
                assert all_hooks_removed(pair.sparse) and all_hooks_removed(dense)
        finally:
            handle.remove()


def test_transformer_lens_run_to_and_sites(tokens):
    tl = tiny_tl_model()
    pair = BridgedPair(tl, make_sparse(), seed=0)
    _, residuals = pair.dense.forward_with_sites(tokens)
    for i in range(pair.n_sites):
        torch.testing.assert_close(pair.dense.run_to(tokens, i), residuals[i])
        torch.testing.assert_close(pair.dense.run_from(residuals[i], i, tokens), tl(tokens), atol=1e-5, rtol=1e-5)
    assert pair.dense.d_model == 20 and pair.dense.d_vocab == VOCAB
