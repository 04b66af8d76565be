"""Tiny random models for the bridge tests: a 'dense' and a 'sparse' HookedSparseTransformer of the
same depth and vocabulary (different widths), and synthetic token rows."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from sparse_lens.bridges import BridgedPair
from sparse_lens.model import HookedSparseTransformer, SparseTransformerConfig

VOCAB = 50


def randomize(model: HookedSparseTransformer, seed: int = 0) -> HookedSparseTransformer:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g) if name.endswith(".w") else 0.3 * torch.randn(p.shape, generator=g))
    return model


def make_model(seed: int = 0, **overrides: Any) -> HookedSparseTransformer:
    fields = dict(n_layers=2, d_model=32, n_ctx=16, d_vocab=VOCAB, n_heads=3, d_head=8, d_mlp=48, seed=seed)
    fields.update(overrides)
    return randomize(HookedSparseTransformer(SparseTransformerConfig(**fields)), seed)


def make_dense(seed: int = 1, **overrides: Any) -> HookedSparseTransformer:
    return make_model(seed, **{"d_model": 24, "activation_sparsity": None, **overrides})


def make_sparse(seed: int = 2, **overrides: Any) -> HookedSparseTransformer:
    return make_model(seed, **{"activation_sparsity": 0.5, **overrides})


def all_hooks_removed(model: torch.nn.Module) -> bool:
    return all(not hp.fwd_hooks and not hp.bwd_hooks and not hp._forward_hooks for hp in model.hook_dict.values())


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one torch thread (several threads only wait on each other here, badly so on a
    loaded machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tokens() -> torch.Tensor:
    return torch.randint(0, VOCAB, (3, 12), generator=torch.Generator().manual_seed(5))


@pytest.fixture
def pair() -> BridgedPair:
    return BridgedPair(make_dense(), make_sparse(), seed=0)


def identical_pair(**overrides: Any) -> BridgedPair:
    """The same weights on both sides, identity bridges (no encoder AbsTopK)."""
    model = make_model(3, **overrides)
    pair = BridgedPair(copy.deepcopy(model), model, encoder_topk=None)
    pair.bridges.set_identity()
    return pair


def tiny_tl_model(d_vocab: int = VOCAB, n_layers: int = 2, tokenizer: Any = None):
    native = pytest.importorskip("transformer_lens.model_bridge.sources.native")
    from transformer_lens.config import TransformerBridgeConfig

    torch.manual_seed(11)
    cfg = TransformerBridgeConfig(d_model=20, d_head=5, n_heads=4, n_layers=n_layers, n_ctx=16, d_mlp=40,
                                  d_vocab=d_vocab, act_fn="gelu", normalization_type="LN")
    return native.boot(cfg, tokenizer=tokenizer)
