"""AbsTopK against an independent topk + scatter oracle (the authors' formulation)."""

import pytest
import torch

from sparse_lens.model import AbsTopK, abs_topk
from sparse_lens.model.abs_topk import keep_mask


def oracle(x: torch.Tensor, k: int) -> torch.Tensor:
    _, index = torch.topk(x.abs(), k, dim=-1)
    return torch.zeros_like(x).scatter(-1, index, x.gather(-1, index))


def distinct_magnitudes(shape, dtype, seed=0) -> torch.Tensor:
    """Values ±1..±d with a random order and sign per row: no ties in |x|, exact in every dtype."""
    g = torch.Generator().manual_seed(seed)
    *rows, d = shape
    magnitude = torch.rand(*rows, d, generator=g).argsort(-1) + 1.0
    sign = torch.randint(0, 2, shape, generator=g) * 2 - 1
    return (magnitude * sign).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(7,), (3, 9), (4, 33, 128), (2, 5, 256), (6, 600), (5, 1024), (3, 1536)])
def test_matches_topk_oracle(dtype, shape):
    if dtype == torch.bfloat16 and shape[-1] > 256:
        pytest.skip("bfloat16 holds distinct integers only up to 256")
    x = distinct_magnitudes(shape, dtype)
    d = shape[-1]
    for k in sorted({1, d // 8, d // 4, d // 2, d - 1}):  # wide rows: blockwise candidates when k < d / blocks
        assert torch.equal(abs_topk(x, k), oracle(x, k)), (k, dtype, shape)
        assert int((abs_topk(x, k) != 0).sum(-1).min()) == k


def test_random_float32_rows_keep_exactly_k():
    x = torch.randn(64, 512, generator=torch.Generator().manual_seed(1))
    y = abs_topk(x, 128)
    assert torch.equal(y, oracle(x, 128))
    assert torch.equal((y != 0).sum(-1), torch.full((64,), 128))


def test_gradient_is_the_mask():
    x = torch.randn(8, 16, 128, dtype=torch.float64, generator=torch.Generator().manual_seed(2), requires_grad=True)
    g = torch.randn(8, 16, 128, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    (ours,) = torch.autograd.grad(abs_topk(x, 32), x, g)
    (ref,) = torch.autograd.grad(oracle(x, 32), x, g)
    assert torch.equal(ours, ref)
    assert torch.autograd.gradcheck(lambda t: abs_topk(t, 3), (x[0, :4, :9].detach().clone().requires_grad_(),))


def test_non_contiguous_input():
    x = distinct_magnitudes((24, 32), torch.float32).t().contiguous().t()  # same values, column-major
    assert not x.is_contiguous()
    assert torch.equal(abs_topk(x, 8), oracle(x, 8))


def test_ties_at_the_threshold_are_all_kept():
    x = torch.tensor([[5.0, -2.0, 2.0, 1.0, 2.0, -0.5]])
    assert torch.equal(abs_topk(x, 2), torch.tensor([[5.0, -2.0, 2.0, 0.0, 2.0, 0.0]]))
    assert torch.equal(keep_mask(x, 2), torch.tensor([[True, True, True, False, True, False]]))


def test_non_finite_values_rank_largest():
    x = torch.tensor([[1.0, float("nan"), -3.0, float("-inf"), 0.5]])
    y = abs_topk(x, 3)
    assert y[0, 1].isnan() and y[0, 3] == float("-inf") and y[0, 2] == -3.0
    assert y[0, 0] == 0 and y[0, 4] == 0


def test_k_bounds_and_module():
    x = torch.randn(3, 8)
    assert abs_topk(x, 8) is x
    assert torch.equal(abs_topk(x, 0), torch.zeros_like(x))
    assert AbsTopK(None)(x) is x
    assert AbsTopK(0.25).k_for(10) == 2  # int() truncation, as in the authors' code
    assert torch.equal(AbsTopK(0.25)(x), oracle(x, 2))


def test_second_derivative_is_refused():
    x = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(abs_topk(x, 2).pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(g.sum(), x)


def test_inputs_beyond_the_scratch_limit_use_fresh_buffers(monkeypatch):
    import sys

    module = sys.modules["sparse_lens.model.abs_topk"]
    monkeypatch.setattr(module, "SCRATCH_MAX_BYTES", 1024)
    x = distinct_magnitudes((16, 1024), torch.float32, seed=5)
    assert torch.equal(abs_topk(x, 100), oracle(x, 100))
    assert torch.equal(abs_topk(x[:, :64], 16), oracle(x[:, :64], 16))


def test_abs_topk_compiles_into_one_graph_with_the_same_values_and_gradients():
    """Under torch.compile the selection is one custom operator (no graph break: fullgraph=True would
    raise) and the product with the mask is traced, so the compiled output and the gradient equal the
    eager ones."""
    import torch._dynamo

    torch._dynamo.reset()
    x = torch.randn(6, 64, dtype=torch.float64)

    def f(x):
        return (abs_topk(x * 2.0, 16) ** 2).sum(), abs_topk(x, 16)

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    loss_e, out_e = f(xe)
    loss_c, out_c = compiled(xc)
    loss_e.backward()
    loss_c.backward()
    assert torch.equal(out_c, out_e) and torch.equal(loss_c, loss_e)
    assert torch.equal(xc.grad, xe.grad) and int((xc.grad != 0).sum(-1).max()) == 16
