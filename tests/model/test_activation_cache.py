"""TransformerLens's ActivationCache, patching and analysis tools, run on our model."""

import inspect

import pytest
import torch
from transformer_lens import ActivationCache

from .conftest import make_model


@pytest.fixture
def pos_model():
    return make_model(positional_embeddings=True)


def test_run_with_cache_returns_activation_cache(model, tokens):
    _, cache = model.run_with_cache(tokens)
    assert isinstance(cache, ActivationCache)
    _, raw = model.run_with_cache(tokens, return_cache_object=False)
    assert isinstance(raw, dict)


def test_protocols(model):
    protocol = pytest.importorskip("transformer_lens.model_protocol", reason="TransformerLens >= 4 only")
    TransformerLensModel, TransformerLensModelWithWeights = protocol.TransformerLensModel, protocol.TransformerLensModelWithWeights
    assert isinstance(model, TransformerLensModel)
    assert isinstance(model, TransformerLensModelWithWeights)
    assert model.cfg.normalization_type == "RMS" and model.cfg.uses_rms_norm


@pytest.mark.parametrize("positional", [False, True])
def test_logit_attribution_adds_up_exactly(tokens, positional):
    """decompose_resid -> apply_ln_to_stack -> logit_attrs, plus b_U and hook_bigram, equals the logits."""
    model = make_model(positional_embeddings=positional)
    logits, cache = model.run_with_cache(tokens)
    stack, labels = cache.decompose_resid(layer=-1, return_labels=True)
    assert labels[0] == "embed" and ("pos_embed" in labels) == positional
    assert torch.allclose(stack.sum(0), cache["blocks.1.hook_resid_post"], atol=1e-5)
    scaled = cache.apply_ln_to_stack(stack, layer=-1)
    assert torch.allclose(model.unembed(scaled.sum(0) * model.ln_final.w) + cache["hook_bigram"], logits, atol=1e-4)
    target = tokens.roll(-1, dims=1)  # the next token at each position (wrapping at the end)
    attrs = cache.logit_attrs(stack, tokens=target)  # [component, batch, pos]; applies the final norm
    picked = logits.gather(-1, target[..., None]).squeeze(-1)
    bias = model.b_U[target] + cache["hook_bigram"].gather(-1, target[..., None]).squeeze(-1)
    assert torch.allclose(attrs.sum(0) + bias, picked, atol=1e-4)


def test_accumulated_resid_logit_lens_final_entry_is_logits(model, tokens):
    logits, cache = model.run_with_cache(tokens)
    accum = cache.accumulated_resid(layer=-1, apply_ln=True)
    assert accum.shape[0] == model.cfg.n_layers + 1
    # TransformerLens >= 3 recomputes ln_final (gain included) on each entry; 2.x divides by the
    # cached scale only, so there the final gain is applied here
    gain = 1 if "recompute_ln" in inspect.signature(cache.apply_ln_to_stack).parameters else model.ln_final.w
    final = model.unembed(accum[-1] * gain) + cache["hook_bigram"]
    assert torch.allclose(final, logits, atol=1e-5)


def test_head_and_neuron_stacks(model, tokens):
    _, cache = model.run_with_cache(tokens)
    heads, labels = cache.stack_head_results(layer=-1, return_labels=True)
    assert heads.shape[0] == model.cfg.n_layers * model.cfg.n_heads and labels[0] == "L0H0"
    # per-head results summed plus b_O equal the attention output before its AbsTopK
    z = cache["blocks.0.attn.hook_z"]
    pre_topk = z.flatten(-2) @ model.blocks[0].attn.W_O.flatten(0, 1) + model.blocks[0].attn.b_O
    assert torch.allclose(heads[: model.cfg.n_heads].sum(0) + model.blocks[0].attn.b_O, pre_topk, atol=1e-5)
    neurons = cache.stack_neuron_results(layer=1)
    assert neurons.shape[0] == model.cfg.d_mlp
    mlp0 = cache["blocks.0.mlp.hook_post"] @ model.blocks[0].mlp.W_out + model.blocks[0].mlp.b_out
    assert torch.allclose(neurons.sum(0) + model.blocks[0].mlp.b_out, mlp0, atol=1e-5)
    full = cache.get_full_resid_decomposition(layer=1, expand_neurons=True)
    assert full.shape[-1] == model.cfg.d_model


def test_accumulated_bias(model):
    b = model.accumulated_bias(2)
    want = sum(model.blocks[i].attn.b_O + model.blocks[i].mlp.b_out for i in range(2))
    assert torch.allclose(b, want)
    assert torch.allclose(model.accumulated_bias(1, mlp_input=True), want - model.blocks[1].mlp.b_out)


def test_tl_activation_patching_runs(model, tokens):
    from transformer_lens import patching

    model.eval()
    clean, corrupt = tokens[:1], tokens[1:2]
    _, clean_cache = model.run_with_cache(clean)

    def metric(logits):
        return logits[0, -1, 0]

    result = patching.get_act_patch_resid_pre(model, corrupt, clean_cache, metric)
    assert result.shape == (model.cfg.n_layers, clean.shape[1])
    # each entry equals our own patch of one (layer, position) through run_with_hooks
    for layer, pos in [(0, 0), (1, 5), (1, 11)]:
        def patch(x, hook, pos=pos, layer=layer):
            x = x.clone()
            x[:, pos] = clean_cache[f"blocks.{layer}.hook_resid_pre"][:, pos]
            return x

        ours = metric(model.run_with_hooks(corrupt, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", patch)]))
        assert torch.allclose(result[layer, pos], ours, atol=1e-5)
    full_patch = model.run_with_hooks(
        corrupt, fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, hook: clean_cache["blocks.0.hook_resid_pre"])]
    )
    bigram_swap = model.bigram(clean) - model.bigram(corrupt)  # the bigram reads the input tokens directly
    assert torch.allclose(full_patch + bigram_swap, model(clean), atol=1e-5)


def test_tl_interchange_tools_run(model, tokens):
    collect_activations = pytest.importorskip(
        "transformer_lens.tools.analysis", reason="TransformerLens >= 4 only").collect_activations

    model.eval()
    positions = torch.tensor([3, 5, 11])
    acts = collect_activations(model, "blocks.1.hook_resid_mid", tokens, model, positions=positions)
    _, cache = model.run_with_cache(tokens)
    assert torch.allclose(acts, cache["blocks.1.hook_resid_mid"][torch.arange(3), positions])


def test_factored_circuits_and_labels(model):
    assert model.QK.AB.shape == (2, 3, 32, 32)
    assert torch.allclose(model.OV.AB[1, 2], model.blocks[1].attn.W_V[2] @ model.blocks[1].attn.W_O[2], atol=1e-6)
    assert model.all_head_labels()[:4] == ["L0H0", "L0H1", "L0H2", "L1H0"]


def _resid_at(cache, model, layer, mlp_input):
    if layer == model.cfg.n_layers:
        return cache[f"blocks.{layer - 1}.hook_resid_post"]
    return cache[f"blocks.{layer}.hook_resid_{'mid' if mlp_input else 'pre'}"]


@pytest.mark.parametrize("overrides", [
    {},                                                                    # AbsTopK at the 8 node locations
    {"activation_sparsity": None, "positional_embeddings": True},          # dense: TransformerLens's own terms
    {"activation_sparsity_locations": ("attn_out", "mlp_out", "resid_post_attn", "resid_post_mlp"),
     "residual_activation": "relu"},                                       # nonlinear residual stream
])
def test_full_resid_decomposition_adds_up_everywhere(tokens, overrides):
    """TransformerLens's contract: the components of get_full_resid_decomposition sum to the residual
    at that point (and, with apply_ln, to its normalized value; with project_output_onto, to its
    projection) for every layer, both mlp_input values and expand_neurons on and off."""
    model = make_model(**overrides)
    _, cache = model.run_with_cache(tokens)
    n = model.cfg.n_layers
    direction = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(2))
    for layer in range(n + 1):
        for mlp_input in ([False, True] if layer < n else [False]):
            resid = _resid_at(cache, model, layer, mlp_input)
            normed = cache.apply_ln_to_stack(resid[None], layer, mlp_input=mlp_input)[0]
            for expand in (False, True):
                kw = dict(layer=layer, mlp_input=mlp_input, expand_neurons=expand)
                stack, labels = cache.get_full_resid_decomposition(return_labels=True, **kw)
                assert len(labels) == stack.shape[0] == len(set(labels))
                torch.testing.assert_close(stack.sum(0), resid, atol=1e-4, rtol=0)
                ln_stack = cache.get_full_resid_decomposition(apply_ln=True, **kw)
                torch.testing.assert_close(ln_stack.sum(0), normed, atol=1e-4, rtol=0)
                projected = cache.get_full_resid_decomposition(apply_ln=True, project_output_onto=direction, **kw)
                torch.testing.assert_close(projected.sum(0), normed @ direction, atol=1e-3, rtol=0)
                last = cache.get_full_resid_decomposition(pos_slice=-1, **kw)
                torch.testing.assert_close(last.sum(0), resid[:, -1], atol=1e-4, rtol=0)
    sparse = model.cfg.sparsity_at("attn_out") is not None
    _, labels = cache.get_full_resid_decomposition(layer=n, return_labels=True)
    assert ("L0_attn_out_abstopk" in labels) == sparse and ("L1_mlp_out_abstopk" in labels) == sparse
    assert ("L0_resid_mid_nonlinearity" in labels) == (model.cfg.residual_activation == "relu")


def test_full_resid_decomposition_without_batch_dim(tokens):
    model = make_model()
    _, cache = model.run_with_cache(tokens[:1], remove_batch_dim=True)
    stack = cache.get_full_resid_decomposition(layer=1, mlp_input=True)
    torch.testing.assert_close(stack.sum(0), cache["blocks.1.hook_resid_mid"], atol=1e-4, rtol=0)


def test_tl_head_patching_matches_a_manual_patch(model, tokens):
    """transformer_lens.patching by head and position equals patching that head's z by hand."""
    from transformer_lens import patching

    model.eval()
    clean, corrupt = tokens[:1], tokens[1:2]
    _, clean_cache = model.run_with_cache(clean)

    def metric(logits):
        return logits[0, -1, 3]

    result = patching.get_act_patch_attn_head_out_by_pos(model, corrupt, clean_cache, metric)
    assert result.shape == (model.cfg.n_layers, clean.shape[1], model.cfg.n_heads)
    for layer, pos, head in [(0, 2, 1), (1, 11, 2)]:
        def patch(z, hook, layer=layer, pos=pos, head=head):
            z = z.clone()
            z[:, pos, head] = clean_cache["z", layer][:, pos, head]
            return z

        ours = metric(model.run_with_hooks(corrupt, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", patch)]))
        assert torch.allclose(result[layer, pos, head], ours, atol=1e-5)


def test_tl_head_detector_scores_our_patterns():
    """head_detector reads our cached patterns (real keys only; the sink's share is left out of both
    sums): its previous-token score of a head equals the same ratio computed by hand."""
    from transformer_lens import head_detector

    from sparse_lens.model import HookedSparseTransformer

    model = HookedSparseTransformer.from_pretrained("python-sparse-tiny")
    text = "def add(a, b):\n    return a + b\n"
    scores = head_detector.detect_head(model, text, "previous_token_head", exclude_bos=False)
    assert scores.shape == (model.cfg.n_layers, model.cfg.n_heads)
    _, cache = model.run_with_cache(text, remove_batch_dim=True)
    pattern = cache["pattern", 1][3]  # [query, key]
    previous = torch.diag(torch.ones(pattern.shape[0] - 1), -1)
    assert abs(float(scores[1, 3]) - float((pattern * previous).sum() / pattern.sum())) < 1e-5
