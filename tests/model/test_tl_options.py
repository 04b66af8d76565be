"""TransformerLens's optional hooks (attn result, split q/k/v inputs, attn_in, mlp_in) and padded
batches (attention_mask, left padding), on the one forward pass."""

import pytest
import torch

from sparse_lens.model import HookedSparseTransformer

from .conftest import make_model

OPTIONAL = ("attn.hook_result", "hook_q_input", "hook_k_input", "hook_v_input", "hook_attn_in", "hook_mlp_in")


def test_optional_hooks_are_silent_by_default(model, tokens):
    _, cache = model.run_with_cache(tokens)
    assert not [k for k in cache.keys() if k.endswith(OPTIONAL)]
    assert all(f"blocks.0.{name}" in model.hook_dict for name in OPTIONAL)


@pytest.mark.parametrize("sink", [True, False])
def test_attn_result_sums_to_the_attention_output(sink, tokens):
    model = make_model(attention_sink=sink, activation_sparsity_locations=("attn_in", "attn_q", "mlp_neuron"))
    plain = model(tokens)
    model.set_use_attn_result(True)
    logits, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(logits, plain, rtol=0, atol=1e-5)
    for l in range(model.cfg.n_layers):
        result = cache[f"blocks.{l}.attn.hook_result"]
        assert result.shape == tokens.shape + (model.cfg.n_heads, model.cfg.d_model)
        torch.testing.assert_close(result.sum(-2) + model.b_O[l], cache["attn_out", l], rtol=0, atol=1e-5)
    # TL's head stacks read the hook once it exists
    stack = cache.stack_head_results(layer=-1)
    assert stack.shape[0] == model.cfg.n_layers * model.cfg.n_heads


def test_ablating_one_head_through_hook_result(tokens):
    model = make_model(activation_sparsity_locations=("mlp_neuron",))
    model.set_use_attn_result(True)

    def drop_head_1(result, hook):
        result[:, :, 1] = 0
        return result

    out = model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_result", drop_head_1)], return_type="logits")
    # the same ablation written on hook_z (head 1's z zeroed) gives the same logits
    def zero_z(z, hook):
        z[:, :, 1] = 0
        return z

    ref = model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_z", zero_z)])
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    assert not torch.allclose(out, model(tokens))


@pytest.mark.parametrize("sink", [True, False])
def test_split_qkv_input_keeps_the_forward_and_isolates_one_heads_keys(sink, tokens):
    model = make_model(attention_sink=sink)
    plain = model(tokens)
    model.set_use_split_qkv_input(True)
    logits, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(logits, plain, rtol=0, atol=1e-5)
    for name in ("hook_q_input", "hook_k_input", "hook_v_input"):
        x = cache[f"blocks.1.{name}"]
        assert x.shape == tokens.shape + (model.cfg.n_heads, model.cfg.d_model)
        torch.testing.assert_close(x[:, :, 2], cache["resid_pre", 1])

    # Without AbsTopK across heads, editing head 0's key input changes head 0's keys only.
    dense_heads = make_model(attention_sink=sink, activation_sparsity_locations=("mlp_neuron",))
    dense_heads.set_use_split_qkv_input(True)

    def scramble_head_0(x, hook):
        x[:, :, 0] = x[:, :, 0].flip(1)
        return x

    _, base = dense_heads.run_with_cache(tokens)
    dense_heads.add_hook("blocks.0.hook_k_input", scramble_head_0)
    _, edited = dense_heads.run_with_cache(tokens)
    dense_heads.reset_hooks()
    k0, k1 = base["k", 0], edited["k", 0]
    assert not torch.allclose(k0[:, :, 0], k1[:, :, 0])
    torch.testing.assert_close(k0[:, :, 1:], k1[:, :, 1:], rtol=0, atol=0)
    torch.testing.assert_close(base["q", 0], edited["q", 0], rtol=0, atol=0)


def test_attn_in_and_mlp_in_hooks(tokens):
    model = make_model()
    plain = model(tokens)
    model.set_use_attn_in(True)
    model.set_use_hook_mlp_in(True)
    logits, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(logits, plain, rtol=0, atol=1e-5)
    assert cache["blocks.0.hook_attn_in"].shape == tokens.shape + (model.cfg.n_heads, model.cfg.d_model)
    torch.testing.assert_close(cache["blocks.1.hook_mlp_in"], cache["resid_mid", 1], rtol=0, atol=0)
    # an edit at hook_mlp_in reaches the output
    out = model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.hook_mlp_in", lambda x, hook: x * 0)])
    assert not torch.allclose(out, plain)


def _left_pad(rows: list[torch.Tensor], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(r) for r in rows)
    tokens = torch.full((len(rows), n), pad, dtype=torch.long)
    mask = torch.zeros_like(tokens)
    for i, r in enumerate(rows):
        tokens[i, n - len(r):] = r
        mask[i, n - len(r):] = 1
    return tokens, mask


@pytest.mark.parametrize("overrides", [{}, {"attention_sink": False}, {"positional_embeddings": True},
                                       {"positional_embeddings": True, "attention_sink": False}])
def test_left_padding_with_attention_mask_matches_each_row_alone(overrides):
    model = make_model(**overrides)
    g = torch.Generator().manual_seed(3)
    rows = [torch.randint(1, 50, (n,), generator=g) for n in (12, 5, 9)]
    tokens, mask = _left_pad(rows)
    logits = model(tokens, attention_mask=mask)
    torch.testing.assert_close(model(tokens, attention_mask=mask.bool()), logits, rtol=0, atol=0)
    torch.testing.assert_close(model(tokens, attention_mask=mask.float()), logits, rtol=0, atol=0)
    for i, row in enumerate(rows):
        alone = model(row[None])[0]
        torch.testing.assert_close(logits[i, -len(row):], alone, rtol=0, atol=2e-5)
    assert torch.isfinite(logits).all()
    # without the mask the padding leaks into the short rows
    unmasked = model(tokens)
    assert not torch.allclose(unmasked[1, -5:], model(rows[1][None])[0], atol=1e-3)
    # the loss skips predictions from or of padding
    losses = torch.stack([model(r[None], return_type="loss") * (len(r) - 1) for r in rows])
    expected = losses.sum() / sum(len(r) - 1 for r in rows)
    torch.testing.assert_close(model(tokens, attention_mask=mask, return_type="loss"), expected, rtol=1e-5, atol=1e-5)
    per_token = model(tokens, attention_mask=mask, return_type="loss", loss_per_token=True)
    assert (per_token[1, : tokens.shape[1] - 5] == 0).all()
    # the last-position logits agree too
    last = torch.full((3,), tokens.shape[1] - 1)
    torch.testing.assert_close(model(tokens, attention_mask=mask, logit_positions=last), logits[:, -1], rtol=0, atol=2e-5)


def test_attention_mask_bad_input(model, tokens):
    with pytest.raises(ValueError, match="attention_mask: expected shape"):
        model(tokens, attention_mask=torch.ones(3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask: expected 0/1"):
        model(tokens, attention_mask=torch.full(tokens.shape, 2))
    with pytest.raises(ValueError, match="attention_mask: expected 0/1"):
        model(tokens, attention_mask=torch.full(tokens.shape, 0.5))
    with pytest.raises(ValueError, match="padding_side"):
        model(tokens, padding_side="middle")


def test_left_padded_texts_on_the_shipped_model():
    model = HookedSparseTransformer.from_pretrained("python-sparse-tiny")
    texts = ["x = 1", 'def greet(name):\n    print("Hello, " + name']
    batch = model(texts, padding_side="left")
    for i, text in enumerate(texts):
        alone = model(text)[0]
        torch.testing.assert_close(batch[i, -alone.shape[0]:], alone, rtol=0, atol=5e-5)
    # right padding (the default) needs no mask: the real positions are unaffected
    right = model(texts)
    short = model(texts[0])[0]
    torch.testing.assert_close(right[0, : short.shape[0]], short, rtol=0, atol=5e-5)


def test_generate_a_left_padded_batch_continues_each_row():
    model = HookedSparseTransformer.from_pretrained("python-sparse-tiny")
    texts = ["import os\nimport", 'def greet(name):\n    print("Hello, " + name']
    batch = model.generate(texts, max_new_tokens=4, do_sample=False, padding_side="left")
    alone = [model.generate(t, max_new_tokens=4, do_sample=False) for t in texts]
    assert batch == alone
    assert all(b.startswith(t) for b, t in zip(batch, texts))


def test_a_left_padding_tokenizer_pads_and_masks_texts_on_the_left():
    model = HookedSparseTransformer.from_pretrained("python-sparse-tiny")
    texts = ["x = 1", 'def greet(name):\n    print("Hello, " + name']
    model.tokenizer.padding_side = "left"
    try:
        batch = model(texts)
        generated = model.generate(texts, max_new_tokens=3, do_sample=False)
    finally:
        model.tokenizer.padding_side = "right"
    for i, text in enumerate(texts):
        alone = model(text)[0]
        torch.testing.assert_close(batch[i, -alone.shape[0]:], alone, rtol=0, atol=5e-5)
    assert generated == [model.generate(t, max_new_tokens=3, do_sample=False) for t in texts]
