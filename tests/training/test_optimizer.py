"""Adam(eps=0.1) + manual weight decay + gradient RMS normalization."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sparse_lens.training import OptimizerConfig, apply_weight_decay_, build_optimizer, normalize_gradients_
from sparse_lens.training.optimizer import decay_parameters, gradient_rms


def _params_with_grads(seed=0):
    g = torch.Generator().manual_seed(seed)
    params = [nn.Parameter(torch.randn(5, 7, generator=g)), nn.Parameter(torch.randn(11, generator=g))]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * 3.0
    return params


def test_grad_rms_normalized_to_one_always():
    for scale in (1e-3, 1.0, 50.0):
        params = _params_with_grads()
        for p in params:
            p.grad *= scale
        before = normalize_gradients_(params, "normalize")
        n = sum(p.numel() for p in params)
        after = math.sqrt(sum(float((p.grad**2).sum()) for p in params) / n)
        assert after == pytest.approx(1.0, rel=1e-4 if scale >= 1 else 1e-2)
        assert before == pytest.approx(float(gradient_rms(_params_with_grads())) * scale, rel=1e-5)


def test_grad_clip_only_above_threshold():
    params = _params_with_grads()
    for p in params:
        p.grad *= 1e-2
    ref = [p.grad.clone() for p in params]
    normalize_gradients_(params, "clip", 1.0)
    assert all(torch.equal(p.grad, r) for p, r in zip(params, ref))  # small gradients untouched
    params = _params_with_grads()
    normalize_gradients_(params, "clip", 1.0)
    assert float(gradient_rms(params)) == pytest.approx(1.0, rel=1e-4)
    params = _params_with_grads()
    ref = [p.grad.clone() for p in params]
    normalize_gradients_(params, "none")
    assert all(torch.equal(p.grad, r) for p, r in zip(params, ref))


def test_manual_weight_decay_matches_formula():
    params = _params_with_grads()
    before = [p.detach().clone() for p in params]
    apply_weight_decay_([p.data for p in params], weight_decay=0.1, lr=3e-3)
    for p, b in zip(params, before):
        torch.testing.assert_close(p.data, b - 0.1 * 3e-3 * b, rtol=1e-7, atol=0)


def test_adam_step_then_decay_equals_reference():
    """One full optimizer update equals Adam(eps=0.1, wd=0) followed by p -= wd*lr*p."""
    cfg = OptimizerConfig(lr=0.05, eps=0.1, betas=(0.9, 0.95), weight_decay=0.1)
    params = _params_with_grads()
    ref = [nn.Parameter(p.detach().clone()) for p in params]
    for r, p in zip(ref, params):
        r.grad = p.grad.clone()
    opt = build_optimizer(params, cfg)
    assert opt.defaults["eps"] == 0.1 and opt.defaults["weight_decay"] == 0 and opt.defaults["betas"] == (0.9, 0.95)
    opt.step()
    apply_weight_decay_([params[0].data], cfg.weight_decay, cfg.lr)
    # hand-written first Adam step: m = (1-b1) g, v = (1-b2) g^2, bias-corrected -> g / (|g| + eps)
    for r, p, decays in zip(ref, params, (True, False)):
        g = r.grad
        m_hat, v_hat = g, g * g
        expected = r.detach() - cfg.lr * m_hat / (v_hat.sqrt() + cfg.eps)
        if decays:
            expected = expected - cfg.weight_decay * cfg.lr * expected
        torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=1e-7)


def test_decay_parameters_are_matrices_except_bigram():
    from sparse_lens.model import HookedSparseTransformer, SparseTransformerConfig

    model = HookedSparseTransformer(SparseTransformerConfig(n_layers=1, d_model=16, n_ctx=8, d_vocab=32, d_head=8))
    names = {n for n, p in model.named_parameters() if any(p is q for q in decay_parameters(model))}
    assert "bigram.W_bigram" not in names
    assert {"embed.W_E", "unembed.W_U", "blocks.0.attn.W_Q", "blocks.0.mlp.W_out"} <= names
    assert not any(n.endswith((".w", "b_in", "b_sink", "b_U")) for n in names)
