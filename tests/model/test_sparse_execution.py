"""Sparse execution (model.set_execution): the sparse product and the model's sparse forward agree
with dense (outputs, hook values, activation gradients); "auto" follows its documented rule."""

from __future__ import annotations

import pytest
import torch

from sparse_lens.model.execution import (
    AUTO_MAX_DENSITY,
    AUTO_MIN_ENTRIES,
    ExecutionPlan,
    auto_uses_sparse,
    plan_summary,
)
from sparse_lens.model.sparse_linear import SparseMatrix, sparse_matmul
from tests.model.conftest import make_model

WEIGHTS = ("W_E", "W_Q", "W_K", "W_V", "W_O", "W_in", "W_out", "W_U")
TOL = {torch.float32: 1e-5, torch.float64: 1e-12, torch.bfloat16: 3e-2}


def _matrix(shape, density, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * (torch.rand(shape, generator=g) < density)).to(dtype)


def _sparsify(model, density, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.rsplit(".", 1)[-1] in WEIGHTS:
                p.mul_(torch.rand(p.shape, generator=g) < density)
    return model.requires_grad_(False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("density", [0.0, 0.05, 0.3, 1.0])
@pytest.mark.parametrize("lead", [(1,), (4,), (2, 3)])
def test_sparse_matmul_matches_dense(dtype, density, lead):
    W = _matrix((20, 36), density, dtype)
    W[:, 5] = 0  # an empty row of Wᵀ (output feature with no input)
    W[7] = 0  # an empty row of W (input feature that reaches nothing)
    form = SparseMatrix.from_dense(W)
    x = torch.randn(*lead, 20, dtype=torch.float64).to(dtype).requires_grad_(True)
    out = sparse_matmul(x, form)
    grad_out = torch.randn(*lead, 36, dtype=torch.float64).to(dtype)
    (grad_sparse,) = torch.autograd.grad(out, x, grad_out)
    x_dense = x.detach().requires_grad_(True)
    dense = x_dense @ W
    (grad_dense,) = torch.autograd.grad(dense, x_dense, grad_out)
    tol = TOL[dtype]
    assert out.shape == dense.shape and out.dtype == dtype
    torch.testing.assert_close(out, dense.detach(), atol=tol, rtol=tol)
    torch.testing.assert_close(grad_sparse, grad_dense, atol=tol, rtol=tol)
    assert (out[..., 5] == 0).all() and (grad_sparse[..., 7] == 0).all()


def test_sparse_matmul_chains_through_its_transposed_output():
    """A product's output feeds the next product and dense ops (rows contiguous)."""
    W1, W2 = _matrix((16, 24), 0.2), _matrix((24, 8), 0.2, seed=1)
    x = torch.randn(3, 5, 16)
    h = sparse_matmul(x, SparseMatrix.from_dense(W1))
    assert h.is_contiguous()
    out = sparse_matmul(torch.relu(h), SparseMatrix.from_dense(W2))
    torch.testing.assert_close(out, torch.relu(x @ W1) @ W2, atol=1e-5, rtol=1e-5)


def test_sparse_matmul_bad_input():
    form = SparseMatrix.from_dense(_matrix((4, 6), 0.5))
    with pytest.raises(ValueError, match="x: expected last dimension 4"):
        sparse_matmul(torch.randn(2, 5), form)
    with pytest.raises(ValueError, match="dtype"):
        sparse_matmul(torch.randn(2, 4, dtype=torch.float64), form)
    with pytest.raises(ValueError, match="2-D"):
        SparseMatrix.from_dense(torch.randn(2, 3, 4))


@pytest.mark.parametrize("overrides", [{}, {"tied_embeddings": True, "attention_sink": False}])
@pytest.mark.parametrize("density", [0.1, 1.0])
@pytest.mark.parametrize("batch", [1, 3])
def test_model_sparse_forward_matches_dense(overrides, density, batch):
    model = _sparsify(make_model(**overrides), density)
    tokens = torch.randint(0, 50, (batch, 12), generator=torch.Generator().manual_seed(1))
    logits_dense, cache_dense = model.run_with_cache(tokens)
    model.set_execution("sparse")
    assert model.execution == "sparse"
    logits_sparse, cache_sparse = model.run_with_cache(tokens)
    assert set(plan_summary(model).values()) == {"sparse"}
    torch.testing.assert_close(logits_sparse, logits_dense, atol=1e-5, rtol=1e-5)
    assert cache_sparse.keys() == cache_dense.keys()
    for name in cache_dense.keys():
        torch.testing.assert_close(cache_sparse[name], cache_dense[name], atol=1e-5, rtol=1e-5, msg=name)
    narrow = torch.full((batch,), 7)
    torch.testing.assert_close(model(tokens, logit_positions=narrow), logits_dense[:, 7], atol=1e-5, rtol=1e-5)


def test_hooks_fire_with_the_same_values_and_edits_apply():
    model = _sparsify(make_model(), 0.2)
    tokens = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(2))
    seen: dict[str, list[torch.Tensor]] = {"dense": [], "sparse": []}

    def run(mode):
        model.set_execution(mode)

        def ablate(x, hook):
            seen[mode].append(x.clone())
            return x * (torch.arange(x.shape[-1]) % 2)

        return model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.mlp.hook_post", ablate), ("blocks.1.attn.hook_v", ablate)])

    torch.testing.assert_close(run("sparse"), run("dense"), atol=1e-5, rtol=1e-5)
    for a, b in zip(seen["sparse"], seen["dense"], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_activation_gradients_match_dense(dtype):
    """What mask training needs: gradients with respect to activations (here a multiplicative mask
    on the neurons and the residual fed in) through frozen sparse weights."""
    model = _sparsify(make_model(dtype=dtype), 0.15)
    tokens = torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(3))
    resid = model.embed(tokens).detach()
    grads = {}
    for mode in ("dense", "sparse"):
        model.set_execution(mode)
        mask = torch.ones(model.cfg.d_mlp, dtype=dtype, requires_grad=True)
        x = resid.clone().requires_grad_(True)
        logits = model.run_with_hooks(x, start_at_layer=0, tokens=tokens,
                                      fwd_hooks=[("blocks.0.mlp.hook_post", lambda a, hook: a * mask)])
        logits.logsumexp(-1).sum().backward()
        grads[mode] = (x.grad, mask.grad)
    tol = TOL[dtype]
    for a, b in zip(grads["sparse"], grads["dense"], strict=True):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)


def test_weights_that_need_gradients_run_dense():
    """A weight that requires grad with autograd on gets its (dense) gradient under "sparse" too."""
    model = _sparsify(make_model(), 0.2).requires_grad_(True)
    tokens = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(4))
    grads = {}
    for mode in ("dense", "sparse"):
        model.zero_grad()
        model.set_execution(mode)
        model(tokens, return_type="loss").backward()
        grads[mode] = model.blocks[0].mlp.W_in.grad.clone()
    torch.testing.assert_close(grads["sparse"], grads["dense"])
    assert grads["sparse"].count_nonzero() > model.blocks[0].mlp.W_in.count_nonzero()  # dense gradient


def test_default_is_dense_and_unchanged():
    model = _sparsify(make_model(), 0.2)
    tokens = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(5))
    before = model(tokens)
    assert model.execution == "dense" and set(plan_summary(model).values()) == {"dense"}
    model.set_execution("sparse").set_execution("dense")
    assert torch.equal(model(tokens), before)  # "dense" is the plain forward again, bit for bit


def test_sparse_forms_follow_weight_edits():
    model = _sparsify(make_model(), 0.3)
    tokens = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(6))
    model.set_execution("sparse")
    model(tokens)  # builds the sparse forms
    with torch.no_grad():
        model.blocks[0].mlp.W_in.mul_(2.0)  # in place: version counter
        model.blocks[1].attn.W_O[0] = 0.0
    model.set_execution("sparse")
    sparse = model(tokens)
    model.set_execution("dense")
    torch.testing.assert_close(sparse, model(tokens), atol=1e-5, rtol=1e-5)
    model.set_execution("sparse")
    model.to(torch.float64)  # new storage and dtype
    torch.testing.assert_close(model(tokens), sparse.double(), atol=1e-5, rtol=1e-5)


def test_auto_follows_its_rule():
    assert auto_uses_sparse(1024, 4096, int(AUTO_MAX_DENSITY * 1024 * 4096))
    assert not auto_uses_sparse(1024, 4096, int(AUTO_MAX_DENSITY * 1024 * 4096) + 1)
    side = int(AUTO_MIN_ENTRIES**0.5)
    assert not auto_uses_sparse(side - 1, side, 0)  # too small: overhead
    assert auto_uses_sparse(side, -(-AUTO_MIN_ENTRIES // side), 0)
    model = make_model(d_model=32, d_mlp=48)
    plan = ExecutionPlan("auto")
    for module_name, module in model.named_modules():
        if not hasattr(module, "uses_frozen_matmul"):
            continue
        for name, (weight, matrix) in module.frozen_matrices().items():
            d_in, d_out = matrix(weight).shape
            nnz = int(matrix(weight).count_nonzero())
            assert (plan.sparse_form(weight, matrix) is not None) == auto_uses_sparse(d_in, d_out, nnz), (module_name, name)


def test_auto_picks_per_matrix(monkeypatch):
    """With the size floor lowered to this tiny model, "auto" runs exactly the matrices at or
    below the density bound sparse, and the forward still matches dense."""
    import sparse_lens.model.execution as execution

    monkeypatch.setattr(execution, "AUTO_MIN_ENTRIES", 1)
    model = _sparsify(make_model(), 1.0)
    with torch.no_grad():
        model.blocks[0].mlp.W_in.mul_(torch.rand(model.blocks[0].mlp.W_in.shape) < AUTO_MAX_DENSITY / 2)
        model.blocks[1].attn.W_Q.zero_()
    tokens = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(7))
    dense = model(tokens)
    model.set_execution("auto")
    picks = plan_summary(model)
    assert {k for k, v in picks.items() if v == "sparse"} == {"blocks.0.mlp.W_in", "blocks.1.attn.W_Q"}
    torch.testing.assert_close(model(tokens), dense, atol=1e-5, rtol=1e-5)


def test_set_execution_bad_mode():
    with pytest.raises(ValueError, match="mode: expected one of"):
        make_model().set_execution("fast")


def test_forms_built_under_inference_mode_serve_gradients_later():
    model = _sparsify(make_model(), 0.2).set_execution("sparse")
    tokens = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(8))
    with torch.inference_mode():
        first = model(tokens)  # builds the sparse forms as inference tensors
    resid = model.embed(tokens).detach().requires_grad_(True)
    out = model(resid, start_at_layer=0, tokens=tokens)
    out.sum().backward()
    model.set_execution("dense")
    resid_dense = resid.detach().requires_grad_(True)
    model(resid_dense, start_at_layer=0, tokens=tokens).sum().backward()
    torch.testing.assert_close(out.detach(), first, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(resid.grad, resid_dense.grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("tokens", [7, 20, 300])
def test_token_blocks_cover_every_token(monkeypatch, tokens):
    """The CPU product runs over blocks of TOKEN_BLOCK tokens (the last one partial)."""
    import sparse_lens.model.sparse_linear as sparse_linear

    monkeypatch.setattr(sparse_linear, "TOKEN_BLOCK", 7)
    W = _matrix((24, 40), 0.1)
    x = torch.randn(tokens, 24, requires_grad=True)
    out = sparse_matmul(x, SparseMatrix.from_dense(W))
    grad_out = torch.randn(tokens, 40)
    (grad,) = torch.autograd.grad(out, x, grad_out)
    torch.testing.assert_close(out, x.detach() @ W, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad, grad_out @ W.T, atol=1e-5, rtol=1e-5)
    assert out.is_contiguous() and grad.is_contiguous()
