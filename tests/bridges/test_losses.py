"""The loss terms: NMSE is scale- (and shift-) invariant, KL is exact, gradients reach the sparse model
and the bridges but never the dense model, sampled KL sites estimate the full sum."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sparse_lens.bridges import BridgedPair, LossWeights, kl_from_logits, nmse

from .conftest import make_dense, make_sparse, tiny_tl_model


def test_nmse_is_scale_and_shift_invariant():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(4, 7, 16, generator=g) * 3 + 1
    pred = target + 0.5 * torch.randn(4, 7, 16, generator=g)
    base = nmse(pred, target)
    for scale in (1e-3, 0.5, 7.0, -2.0):
        torch.testing.assert_close(nmse(scale * pred, scale * target), base, rtol=1e-4, atol=0)
    shift = torch.randn(16, generator=g) * 10
    torch.testing.assert_close(nmse(pred + shift, target + shift), base, rtol=1e-4, atol=0)
    assert nmse(target, target) == 0
    mean = target.reshape(-1, 16).mean(0).expand_as(target)
    torch.testing.assert_close(nmse(mean, target), torch.tensor(1.0), rtol=1e-5, atol=0)  # predicting the mean
    assert not torch.allclose(nmse(2 * pred, target), base)  # not invariant to scaling one side only
    with pytest.raises(ValueError, match="shape"):
        nmse(pred[:, :3], target)


def test_kl_is_exact():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(2, 5, 11, generator=g), torch.randn(2, 5, 11, generator=g)
    expected = F.kl_div(b.log_softmax(-1), a.log_softmax(-1), log_target=True, reduction="none").sum(-1).mean()
    torch.testing.assert_close(kl_from_logits(a, b), expected)
    assert kl_from_logits(a, a + 3.0).abs() < 1e-6  # a shift of every logit changes no probability
    assert kl_from_logits(a, b) > 0


@pytest.mark.parametrize("dense_kind", ["sparse_lens", "transformer_lens"])
def test_gradients_reach_the_sparse_model_and_bridges_never_the_dense_model(tokens, dense_kind):
    dense = make_dense() if dense_kind == "sparse_lens" else tiny_tl_model()
    pair = BridgedPair(dense, make_sparse(), seed=0)
    losses = pair.losses(tokens)
    losses.total.backward()
    for name, p in pair.bridges.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    sparse_grads = {n: p.grad for n, p in pair.sparse.named_parameters()}
    assert all(g is not None for g in sparse_grads.values())
    assert sum(bool(g.abs().sum() > 0) for g in sparse_grads.values()) >= 0.9 * len(sparse_grads)
    assert all(p.grad is None and not p.requires_grad for p in dense.parameters())
    assert set(dict(pair.named_parameters())) == {f"sparse.{n}" for n in sparse_grads} | {f"bridges.{n}" for n, _ in pair.bridges.named_parameters()}


def test_each_term_sends_gradients_where_it_should(tokens):
    """KL d→s reaches the encoders, not the decoders; KL s→d the decoders, not the encoders; the LM
    loss alone reaches no bridge."""
    for weights, enc, dec in ((LossWeights(lm=0, nmse=0, kl_d2s=1, kl_s2d=0), True, False),
                              (LossWeights(lm=0, nmse=0, kl_d2s=0, kl_s2d=1), False, True),
                              (LossWeights(lm=1, nmse=0, kl_d2s=0, kl_s2d=0), False, False)):
        pair = BridgedPair(make_dense(), make_sparse(), seed=0)
        out = pair.losses(tokens, weights)
        out.total.backward()
        assert (pair.bridges.encoders[0].weight.grad is not None) == enc
        assert (pair.bridges.decoders[0].weight.grad is not None) == dec
        assert set(out.terms()) == {n for n in ("lm", "kl_d2s", "kl_s2d") if getattr(weights, n)}


def test_total_is_the_weighted_sum_of_the_terms(tokens, pair):
    w = LossWeights(lm=0.5, nmse=2.0, kl_d2s=0.25, kl_s2d=3.0)
    out = pair.losses(tokens, w)
    expected = 0.5 * out.lm + 2.0 * (out.nmse_enc.sum() + out.nmse_dec.sum()) + 0.25 * out.kl_d2s.sum() + 3.0 * out.kl_s2d.sum()
    torch.testing.assert_close(out.total, expected)
    record = out.record()
    assert set(record["kl_s2d"]) == set(pair.sites) and record["bridge_loss"] == pytest.approx(float(expected.detach()), rel=1e-6)


def test_sampled_kl_sites_are_exact_where_computed_and_scale_the_sum(tokens, pair):
    full = pair.losses(tokens, LossWeights(lm=0, nmse=0))
    part = pair.losses(tokens, LossWeights(lm=0, nmse=0), kl_sites=[3, 1])
    assert part.kl_sites == [1, 3]
    torch.testing.assert_close(part.kl_d2s, full.kl_d2s[[1, 3]], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(part.kl_s2d, full.kl_s2d[[1, 3]], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(part.total, 2 * (part.kl_d2s.sum() + part.kl_s2d.sum()))
    assert set(part.record()["kl_d2s"]) == {pair.sites[1], pair.sites[3]}


def test_loss_weights_are_checked():
    for bad in (dict(lm=-1.0), dict(kl_d2s=float("nan")), dict(lm=0, nmse=0, kl_d2s=0, kl_s2d=0)):
        with pytest.raises(ValueError):
            LossWeights(**bad).validate()


def test_kl_per_site_equals_kl_from_logits_site_by_site():
    from sparse_lens.bridges.losses import kl_per_site

    g = torch.Generator().manual_seed(5)
    reference, hybrids = torch.randn(2, 6, 11, generator=g), torch.randn(3, 2, 6, 11, generator=g)
    expected = torch.stack([kl_from_logits(reference, y) for y in hybrids])
    torch.testing.assert_close(kl_per_site(reference, hybrids), expected, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="do not match"):
        kl_per_site(reference, hybrids[:, :1])
