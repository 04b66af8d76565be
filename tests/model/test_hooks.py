"""Hook points: names, shapes, placement after AbsTopK, ablation, removal, backward hooks, sites."""

import pytest
import torch
from sparse_lens.model.tl_compat import get_act_name  # transformer_lens.utilities (3.x, 4.x) or .utils (2.x)

from .conftest import make_model


def expected_shapes(cfg, batch, pos):
    d, H, D = cfg.d_model, cfg.n_heads, cfg.d_head
    shapes = {"hook_embed": (batch, pos, d), "hook_bigram": (batch, pos, cfg.d_vocab),
              "ln_final.hook_scale": (batch, pos, 1), "ln_final.hook_normalized": (batch, pos, d)}
    if cfg.positional_embeddings:
        shapes["hook_pos_embed"] = (batch, pos, d)
    for l in range(cfg.n_layers):
        b = f"blocks.{l}."
        for name in ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post",
                     "ln1.hook_normalized", "ln2.hook_normalized"):
            shapes[b + name] = (batch, pos, d)
        shapes[b + "ln1.hook_scale"] = shapes[b + "ln2.hook_scale"] = (batch, pos, 1)
        for name in ("q", "k", "v", "z"):
            shapes[b + f"attn.hook_{name}"] = (batch, pos, H, D)
        shapes[b + "attn.hook_attn_scores"] = shapes[b + "attn.hook_pattern"] = (batch, H, pos, pos)
        shapes[b + "mlp.hook_pre"] = shapes[b + "mlp.hook_post"] = (batch, pos, cfg.d_mlp)
    return shapes


@pytest.mark.parametrize("pos_embed", [False, True])
def test_every_hook_shape(pos_embed, tokens):
    model = make_model(positional_embeddings=pos_embed)
    _, cache = model.run_with_cache(tokens)
    want = expected_shapes(model.cfg, *tokens.shape)
    assert set(cache.keys()) == set(want)
    for name, shape in want.items():
        assert tuple(cache[name].shape) == shape, name


def test_tl_act_names_resolve(model, tokens):
    _, cache = model.run_with_cache(tokens)
    for short, layer, kind in [("k", 1, None), ("pre", 0, None), ("normalized", 1, "ln2"), ("scale", 0, "ln1"),
                               ("resid_pre", 1, None), ("pattern", 0, None), ("z", 1, None), ("post", 1, None)]:
        assert get_act_name(short, layer, kind) in model.hook_dict
        cache[get_act_name(short, layer, kind)]
    assert cache["k", 1].shape[-2:] == (model.cfg.n_heads, model.cfg.d_head)


def test_node_hooks_see_values_after_abstopk(model, tokens):
    cfg = model.cfg
    _, cache = model.run_with_cache(tokens)
    for l in range(cfg.n_layers):
        b = f"blocks.{l}."
        assert (cache[b + "ln1.hook_normalized"] != 0).sum(-1).max() <= int(0.25 * cfg.d_model)
        assert (cache[b + "mlp.hook_post"] != 0).sum(-1).max() <= int(0.25 * cfg.d_mlp)
        assert (cache[b + "hook_attn_out"] != 0).sum(-1).max() <= int(0.25 * cfg.d_model)
        q = cache[b + "attn.hook_q"].flatten(-2)
        assert (q != 0).sum(-1).max() <= int(0.25 * cfg.n_heads * cfg.d_head)
        # the residual itself is not sparsified by default
        assert (cache[b + "hook_resid_mid"] != 0).sum(-1).min() > int(0.25 * cfg.d_model)


def test_sink_pattern_rows_sum_below_one_and_z_equals_pattern_v(model, tokens):
    _, cache = model.run_with_cache(tokens)
    pattern = cache["blocks.0.attn.hook_pattern"]
    rows = pattern.sum(-1)
    assert (rows < 1).all() and (rows > 0).all()
    assert torch.all(pattern.triu(1) == 0)
    z = torch.einsum("bhqk,bkhd->bqhd", pattern, cache["blocks.0.attn.hook_v"])
    assert torch.allclose(z, cache["blocks.0.attn.hook_z"], atol=1e-6)
    sink = model.blocks[0].attn.b_sink
    scores = cache["blocks.0.attn.hook_attn_scores"]
    # position 0 attends to itself and the sink only
    expected0 = torch.exp(scores[:, :, 0, 0]) / (torch.exp(scores[:, :, 0, 0]) + torch.exp(sink))
    assert torch.allclose(pattern[:, :, 0, 0], expected0, atol=1e-6)


def test_no_sink_pattern_rows_sum_to_one(tokens):
    model = make_model(attention_sink=False)
    _, cache = model.run_with_cache(tokens)
    assert torch.allclose(cache["blocks.1.attn.hook_pattern"].sum(-1), torch.ones(1), atol=1e-6)


def test_zero_ablation_changes_output_and_is_removed(model, tokens):
    clean = model(tokens)
    ablated = model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.mlp.hook_post", lambda x, hook: torch.zeros_like(x))])
    assert not torch.allclose(clean, ablated)
    assert all(not hp.fwd_hooks for hp in model.hook_dict.values())
    assert torch.equal(model(tokens), clean)


def test_hook_replacement_flows_on(model, tokens):
    """Zeroing one head's q channels removes exactly that head's dependence on keys."""
    def zero_head0(q, hook):
        q = q.clone()
        q[:, :, 0] = 0
        return q

    with model.hooks(fwd_hooks=[("blocks.1.attn.hook_q", zero_head0)]):
        _, cache = model.run_with_cache(tokens)
    scores = cache["blocks.1.attn.hook_attn_scores"][:, 0]
    assert torch.all((scores == 0) | torch.isinf(scores))


def test_names_filter_and_function_filters(model, tokens):
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_post"))
    assert set(cache.keys()) == {"blocks.0.mlp.hook_post", "blocks.1.mlp.hook_post"}
    _, cache = model.run_with_cache(tokens, names_filter=["hook_embed"])
    assert list(cache.keys()) == ["hook_embed"]
    _, cache = model.run_with_cache(tokens, names_filter="hook_bigram")
    assert list(cache.keys()) == ["hook_bigram"]


def test_cache_equals_plain_forward(model, tokens):
    logits, cache = model.run_with_cache(tokens)
    assert torch.equal(logits, model(tokens))
    final = model.unembed(cache["ln_final.hook_normalized"]) + cache["hook_bigram"]
    assert torch.allclose(final, logits, atol=1e-5)


def test_remove_batch_dim(model, tokens):
    _, cache = model.run_with_cache(tokens[:1], remove_batch_dim=True)
    assert cache["blocks.0.hook_resid_pre"].shape == (tokens.shape[1], model.cfg.d_model)


def test_backward_hooks(model, tokens):
    grads = {}

    def save_grad(grad, hook):
        grads[hook.name] = grad.detach().clone()

    model.add_hook("blocks.0.hook_resid_mid", save_grad, dir="bwd")
    model.add_hook("blocks.1.mlp.hook_post", save_grad, dir="bwd")
    loss = model(tokens, return_type="loss")
    loss.backward()
    model.reset_hooks()
    assert grads["blocks.0.hook_resid_mid"].shape == (*tokens.shape, model.cfg.d_model)
    assert grads["blocks.0.hook_resid_mid"].abs().sum() > 0
    assert all(not hp.bwd_hooks for hp in model.hook_dict.values())


def test_backward_cache(model, tokens):
    model.zero_grad()
    _, cache = model.run_with_cache(tokens, return_type="loss", incl_bwd=True)
    assert "blocks.0.hook_resid_pre_grad" in cache.keys()
    assert cache["blocks.0.hook_resid_pre_grad"].abs().sum() > 0


@pytest.mark.parametrize("site", ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_mid", "blocks.0.hook_resid_post",
                                  "blocks.1.hook_resid_mid", "blocks.1.hook_resid_post", 1, 0])
def test_stop_and_restart_at_a_site_reproduces_forward(model, tokens, site):
    full = model(tokens)
    calls = []
    counter = [(name, lambda x, hook: calls.append(hook.name)) for name in model.hook_dict]
    with model.hooks(fwd_hooks=counter):
        resid = model(tokens, stop_at_layer=site)
        resumed = model(resid, start_at_layer=site, tokens=tokens)
    assert torch.allclose(resumed, full, atol=1e-6)
    active = model.run_with_cache(tokens)[1].keys()  # every hook but TL's optional, switched-off ones
    assert sorted(calls) == sorted(active)  # every hook ran exactly once


def test_stop_at_returns_matching_cache_value(model, tokens):
    _, cache = model.run_with_cache(tokens)
    assert torch.equal(model(tokens, stop_at_layer="blocks.1.hook_resid_mid"), cache["blocks.1.hook_resid_mid"])
    assert torch.equal(model(tokens, stop_at_layer=1), cache["blocks.1.hook_resid_pre"])
    assert torch.equal(model(tokens, stop_at_layer=-1), cache["blocks.1.hook_resid_pre"])


def test_return_types(model, tokens):
    logits, loss = model(tokens, return_type="both")
    assert logits.shape == (*tokens.shape, model.cfg.d_vocab)
    assert torch.allclose(loss, model(tokens, return_type="loss"))
    per_tok = model(tokens, return_type="loss", loss_per_token=True)
    assert per_tok.shape == (tokens.shape[0], tokens.shape[1] - 1)
    manual = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
    assert torch.allclose(loss, manual, atol=1e-6)
    assert model(tokens, return_type=None) is None


def test_residual_topk_locations(tokens):
    model = make_model(activation_sparsity_locations=("resid_post_attn", "resid_post_mlp"))
    _, cache = model.run_with_cache(tokens)
    assert (cache["blocks.0.hook_resid_mid"] != 0).sum(-1).max() == 8
    assert (cache["blocks.0.mlp.hook_post"] != 0).sum(-1).min() > 12


@pytest.mark.parametrize("sink", [True, False])
def test_fused_and_explicit_attention_agree(sink, tokens):
    """The fused path (nothing observes the pattern) equals the explicit one, values and gradients."""
    model = make_model(attention_sink=sink)
    fused_logits = model(tokens)
    observe = [(f"blocks.{l}.attn.hook_pattern", lambda x, hook: None) for l in range(2)]
    explicit_logits = model.run_with_hooks(tokens, fwd_hooks=observe)
    assert torch.allclose(fused_logits, explicit_logits, atol=1e-5)
    fused_grads = torch.autograd.grad(model(tokens, return_type="loss"), list(model.parameters()))
    with model.hooks(fwd_hooks=observe):
        explicit_grads = torch.autograd.grad(model(tokens, return_type="loss"), list(model.parameters()))
    for a, b in zip(fused_grads, explicit_grads):
        assert torch.allclose(a, b, atol=1e-5)


def test_logit_positions_equal_full_logits(model, tokens):
    positions = torch.tensor([11, 0, 5])
    picked = model(tokens, logit_positions=positions)
    assert picked.shape == (3, model.cfg.d_vocab)
    assert torch.allclose(picked, model(tokens)[torch.arange(3), positions], atol=1e-6)
    with pytest.raises(ValueError, match="logit_positions"):
        model(tokens, logit_positions=torch.tensor([12, 0, 0]))
    with pytest.raises(ValueError, match="logit_positions"):
        model(tokens, logit_positions=torch.tensor([1.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="logit_positions"):
        model(tokens, logit_positions=torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="logit_positions"):
        model(tokens, return_type="loss", logit_positions=positions)


@pytest.mark.parametrize("overrides", [{}, {"attention_sink": False}, {"positional_embeddings": True},
                                       {"activation_sparsity": 0.5, "n_layers": 3}])
def test_logit_positions_run_the_last_block_at_those_positions_only(overrides, tokens):
    """Same logits and gradients as the full forward; last-block hooks after the keys see one position."""
    model = make_model(**overrides)
    positions = torch.tensor([11, 0, 5])
    full = model(tokens)[torch.arange(3), positions]
    _, cache = model.run_with_cache(tokens, logit_positions=positions)
    last = f"blocks.{model.cfg.n_layers - 1}."
    assert cache[last + "hook_resid_pre"].shape[1] == tokens.shape[1]
    assert cache[last + "attn.hook_k"].shape[1] == cache[last + "attn.hook_v"].shape[1] == tokens.shape[1]
    for name in ("attn.hook_q", "attn.hook_z", "hook_attn_out", "hook_resid_mid", "mlp.hook_post", "hook_resid_post"):
        assert cache[last + name].shape[1] == 1, name
    assert cache[last + "attn.hook_pattern"].shape[2:] == (1, tokens.shape[1])
    for hooks in ([], [(last + "attn.hook_pattern", lambda x, hook: x * 1.0)]):  # fused and explicit attention
        with model.hooks(fwd_hooks=hooks):
            picked = model(tokens, logit_positions=positions)
        assert torch.allclose(picked, full, atol=1e-5)
    params = [p for p in model.parameters()]
    picked_grads = torch.autograd.grad(model(tokens, logit_positions=positions).logsumexp(-1).sum(), params, allow_unused=True)
    full_grads = torch.autograd.grad(model(tokens)[torch.arange(3), positions].logsumexp(-1).sum(), params, allow_unused=True)
    for a, b in zip(picked_grads, full_grads):
        assert (a is None and (b is None or not b.any())) or torch.allclose(a, b, atol=1e-5)
    resid = model(tokens, stop_at_layer=model.cfg.n_layers - 1)
    restarted = model(resid, start_at_layer=model.cfg.n_layers - 1, tokens=tokens, logit_positions=positions)
    assert torch.allclose(restarted, full, atol=1e-5)


def _zero_head_inplace(x, hook):
    x[:, 1] = 0.0  # the TransformerLens idiom: edit in place, return the same tensor
    return x


def _zero_head_in_place_no_return(x, hook):
    x[:, 1].zero_()


def _zero_head_new(x, hook):
    x = x.clone()
    x[:, 1] = 0.0
    return x


@pytest.mark.parametrize("sink", [True, False])
@pytest.mark.parametrize("site", ["hook_pattern", "hook_attn_scores"])
@pytest.mark.parametrize("inference", [False, True])
def test_in_place_pattern_and_score_edits_change_the_output(sink, site, inference, tokens):
    """An in-place edit of scores or pattern is as effective as returning an edited copy (not
    silently dropped in favour of the fused attention), with and without inference mode."""
    model = make_model(attention_sink=sink)
    positions = torch.tensor([11, 0, 5])
    name = f"blocks.0.attn.{site}"
    for kwargs in ({}, {"logit_positions": positions}):
        with torch.inference_mode(inference):
            base = model(tokens, **kwargs)
            expected = model.run_with_hooks(tokens, fwd_hooks=[(name, _zero_head_new)], **kwargs)
            assert not torch.allclose(expected, base, atol=1e-4)
            for fn in (_zero_head_inplace, _zero_head_in_place_no_return):
                got = model.run_with_hooks(tokens, fwd_hooks=[(name, fn)], **kwargs)
                assert torch.allclose(got, expected, atol=1e-5), (fn.__name__, kwargs)


def test_observed_pattern_matches_the_sink_softmax(tokens):
    """The one-softmax pattern (sink as column 0) equals exp(s) / (exp(b) + Σ exp(s)) per row."""
    model = make_model(attention_sink=True)
    with torch.no_grad():
        model.blocks[1].attn.b_sink.copy_(torch.linspace(-2.0, 3.0, model.cfg.n_heads))
    _, cache = model.run_with_cache(tokens)
    scores, pattern = cache["blocks.1.attn.hook_attn_scores"], cache["blocks.1.attn.hook_pattern"]
    sink = model.blocks[1].attn.b_sink.view(1, -1, 1, 1)
    expected = scores.exp() / (scores.exp().sum(-1, keepdim=True) + sink.exp())
    assert torch.allclose(pattern, expected, atol=1e-6)
    assert torch.isinf(scores.triu(1)[scores.triu(1) != 0]).all()


def test_cache_equals_plain_forward_in_inference_mode(model, tokens):
    """Caching under torch.inference_mode keeps the fused z too (bit-identical logits)."""
    with torch.inference_mode():
        logits, cache = model.run_with_cache(tokens)
        assert torch.equal(logits, model(tokens))
    assert cache["blocks.0.attn.hook_pattern"].shape[-1] == tokens.shape[1]
