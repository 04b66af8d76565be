"""The authors' reference checkpoint: logits and every recorded intermediate, bit-pattern exact."""

import pytest
import torch

from sparse_lens.model import HookedSparseTransformer

from .conftest import REFERENCE_DIR

pytestmark = pytest.mark.skipif(not REFERENCE_DIR.is_dir(), reason="../shared/reference not present")


def _ours(name: str, cache, n_layers: int) -> torch.Tensor:
    """Map the authors' hook-recorder names onto ours (heads concatenated as they record them)."""
    if name == "final_resid":
        return cache[f"blocks.{n_layers - 1}.hook_resid_post"]
    layer, rest = name.split(".", 1)
    b = f"blocks.{layer}."
    table = {
        "resid_in": b + "hook_resid_pre",
        "attn.act_in": b + "ln1.hook_normalized",
        "attn.q": b + "attn.hook_q",
        "attn.k": b + "attn.hook_k",
        "attn.v": b + "attn.hook_v",
        "attn.y": b + "attn.hook_z",
        "attn.resid_delta": b + "hook_attn_out",
        "resid_mid": b + "hook_resid_mid",
        "mlp.act_in": b + "ln2.hook_normalized",
        "mlp.post_act": b + "mlp.hook_post",
        "mlp.resid_delta": b + "hook_mlp_out",
    }
    t = cache[table[rest]]
    return t.flatten(-2) if t.ndim == 4 else t


def test_reference_logits_and_every_hook_match():
    model = HookedSparseTransformer.from_circuit_sparsity(REFERENCE_DIR)
    inputs = torch.load(REFERENCE_DIR / "inputs.pt", weights_only=True)
    expected = torch.load(REFERENCE_DIR / "expected.pt", weights_only=True)
    with torch.no_grad():
        logits, cache = model.run_with_cache(inputs)
    assert (logits - expected["logits"]).abs().max() <= 1e-5
    assert len(expected["hooks"]) == 23
    for name, want in expected["hooks"].items():
        got = _ours(name, cache, model.cfg.n_layers)
        assert got.shape == want.shape, name
        assert (got - want).abs().max() <= 1e-5, name
        assert torch.equal(got != 0, want != 0), f"sparsity pattern differs at {name}"


def test_reference_config_is_translated():
    model = HookedSparseTransformer.from_circuit_sparsity(REFERENCE_DIR)
    cfg = model.cfg
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp, cfg.d_vocab, cfg.n_ctx) == (2, 64, 4, 16, 256, 512, 64)
    assert cfg.attention_sink and cfg.bigram_table and cfg.positional_embeddings and not cfg.tied_embeddings
    assert "resid_post_mlp" in cfg.activation_sparsity_locations
    assert torch.allclose(model.blocks[1].attn.b_sink, torch.tensor([0.4669, 1.1182, -0.7295, -2.0016]), atol=1e-4)
