"""sparse_lens under whichever TransformerLens is installed (make test-compat runs 2.16.1 with SAELens)."""

import importlib.metadata

import pytest
import torch

from sparse_lens.model import HookedSparseTransformer, SparseTransformerConfig
from sparse_lens.model import tl_compat


def _tl_version() -> tuple[int, ...]:
    return tuple(int(p) for p in importlib.metadata.version("transformer-lens").split(".")[:2])


def test_the_model_is_a_transformer_lens_root_module_under_every_version():
    model = HookedSparseTransformer(SparseTransformerConfig(n_layers=1, d_model=32, n_ctx=8, d_vocab=20, d_head=8))
    assert isinstance(model, tl_compat.HookedRootModule)
    assert isinstance(model.cfg, tl_compat.TransformerLensConfig)
    assert model.cfg.n_heads == 4 and model.cfg.normalization_type == "RMS"
    _, cache = model.run_with_cache(torch.arange(6)[None])
    assert isinstance(cache, tl_compat.ActivationCache) and cache["blocks.0.hook_resid_pre"].shape == (1, 6, 32)


def test_left_padding_mask_matches_transformer_lens_whatever_its_signature():
    model = HookedSparseTransformer.from_pretrained("python-sparse-tiny")
    tokens = model.to_tokens(["x = 1", "for i in range(3):"], padding_side="left")
    mask = tl_compat.left_padding_mask(model.tokenizer, tokens, prepend_bos=True)
    assert model.tokenizer.padding_side == "right"  # 2.x reads the side from the tokenizer: restored
    assert mask[1].all() and not mask[0].all() and mask[0, -1] == 1
    padded = model(["x = 1", "for i in range(3):"], padding_side="left")[0, -1]
    alone = model("x = 1")[0, -1]
    torch.testing.assert_close(padded, alone, atol=1e-4, rtol=0)


def test_sae_lens_installs_beside_sparse_lens():
    """SAELens 6 pins TransformerLens < 4: where it is installed (make test-compat), both import and
    an SAE built by SAELens reads our model's residual stream."""
    sae_lens = pytest.importorskip("sae_lens")
    assert _tl_version() < (4, 0)
    model = HookedSparseTransformer.from_pretrained("python-sparse-tiny")
    _, cache = model.run_with_cache("def f(x):\n    return x\n")
    resid = cache["blocks.1.hook_resid_pre"]
    config = sae_lens.StandardSAEConfig(d_in=model.cfg.d_model, d_sae=4 * model.cfg.d_model)
    sae = sae_lens.StandardSAE(config)
    out = sae(resid)
    assert out.shape == resid.shape and torch.isfinite(out).all()
