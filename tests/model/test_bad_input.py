"""Bad input gets a clear error naming the argument, never a silent wrong result."""

import pytest
import torch


def test_token_ids_out_of_vocab(model):
    with pytest.raises(ValueError, match=r"tokens: ids must lie in \[0, 50\)"):
        model(torch.tensor([[1, 2, 50]]))
    with pytest.raises(ValueError, match="tokens: ids"):
        model(torch.tensor([[-1, 2]]))


def test_too_long(model):
    with pytest.raises(ValueError, match="exceeds n_ctx=16"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_wrong_dtype_and_rank(model):
    with pytest.raises(ValueError, match="integer tensor"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"shape \[batch, pos\]"):
        model(torch.zeros(1, 2, 3, dtype=torch.long))
    assert model(torch.arange(5)).shape == (1, 5, 50)  # a 1-D sequence gets a batch dim, as in TL


def test_residual_input_checks(model):
    with pytest.raises(ValueError, match="residual of shape"):
        model(torch.zeros(1, 4, 7), start_at_layer=1)
    with pytest.raises(ValueError, match="tokens:"):
        model(torch.zeros(1, 4, 32), start_at_layer=1)  # bigram logits need tokens
    with pytest.raises(ValueError, match="stop_at_layer"):
        model(torch.zeros(1, 4, dtype=torch.long), stop_at_layer="blocks.0.hook_mlp_out")
    with pytest.raises(ValueError, match="out of range"):
        model(torch.zeros(1, 4, dtype=torch.long), stop_at_layer=5)


def test_unknown_hook_names_suggest(model, tokens):
    with pytest.raises(KeyError, match="did you mean.*blocks.0.mlp.hook_post"):
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.mlp.hook_pots", lambda x, hook: x)])
    assert all(not hp.fwd_hooks for hp in model.hook_dict.values())
    with pytest.raises(KeyError, match="hook_resid_pre"):
        model.run_with_cache(tokens, names_filter=["blocks.0.hook_resid_pree"])
    with pytest.raises(KeyError, match="unknown hook name"):
        model.add_hook("nope", lambda x, hook: x)


def test_hook_returning_wrong_shape(model, tokens):
    with pytest.raises(ValueError, match="blocks.0.hook_attn_out.*expected a tensor of shape"):
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_attn_out", lambda x, hook: x[:, :1])])
    with pytest.raises(ValueError, match="returned int"):
        model.run_with_hooks(tokens, fwd_hooks=[("hook_embed", lambda x, hook: 3)])
    assert all(not hp.fwd_hooks for hp in model.hook_dict.values())


def test_bad_return_type(model, tokens):
    with pytest.raises(ValueError, match="return_type"):
        model(tokens, return_type="probs")


def test_text_without_tokenizer(model):
    with pytest.raises(ValueError, match="no tokenizer attached"):
        model("def f(): pass")


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_hook_returning_another_dtype(model, tokens, dtype):
    with pytest.raises(ValueError, match=f"blocks.0.mlp.hook_post.*{str(dtype)[6:]}.*expected a tensor of shape .*dtype float32"):
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.mlp.hook_post", lambda x, hook: x.to(dtype))])
    assert all(not hp.fwd_hooks for hp in model.hook_dict.values())
