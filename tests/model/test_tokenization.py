"""Tokenizer attachment: to_tokens / to_string / to_str_tokens / to_single_token / generate."""

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from .conftest import make_model

CODE = "def add(a, b):\n    return a + b\n\nfor i in range(10):\n    print(add(i, 1))\n"


@pytest.fixture(scope="module")
def tok():
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.train_from_iterator([CODE] * 20, trainers.BpeTrainer(vocab_size=120, special_tokens=["<|endoftext|>"],
                                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return t


@pytest.fixture
def tok_model(tok):
    model = make_model(d_vocab=tok.get_vocab_size(), n_ctx=128)
    model.set_tokenizer(tok)
    return model


def test_tokenizer_is_a_transformers_fast_tokenizer(tok_model):
    assert isinstance(tok_model.tokenizer, PreTrainedTokenizerFast)
    assert tok_model.tokenizer.bos_token_id == 0 == tok_model.bos_token_id
    hf = tok_model.tokenizer
    assert hf.decode(hf.encode("return a + b", add_special_tokens=False)) == "return a + b"
    # like the tokenizers TransformerLens keeps (get_tokenizer_with_bos): BOS added with special tokens
    assert hf("return a")["input_ids"] == tok_model.to_tokens("return a")[0].tolist()
    assert hf.add_bos_token and hf.name_or_path


def test_attaching_does_not_change_the_callers_tokenizer_or_what_is_saved(tok, tok_model, tmp_path):
    before = tok.to_str()
    tok_model.set_tokenizer(tok)
    assert tok.to_str() == before and tok.encode("return a").ids == tok_model.backend_tokenizer.encode("return a").ids
    tok_model.save_pretrained(tmp_path / "m")
    assert Tokenizer.from_file(str(tmp_path / "m" / "tokenizer.json")).to_str() == before


def test_transformer_lens_accepts_the_tokenizer(tok_model):
    """TransformerBridge.boot_native (TransformerLens 3.x/4.x) takes model.tokenizer as it is and
    tokenizes exactly as the model does."""
    native = pytest.importorskip("transformer_lens.model_bridge.sources.native")
    from transformer_lens.config import TransformerBridgeConfig

    cfg = TransformerBridgeConfig(d_model=32, d_head=8, n_heads=4, n_layers=1, n_ctx=128, d_mlp=64,
                                  d_vocab=tok_model.cfg.d_vocab, act_fn="gelu", normalization_type="LN")
    bridge = native.boot(cfg, tokenizer=tok_model.tokenizer)
    for text in ("return a + b", CODE):
        assert torch.equal(bridge.to_tokens(text), tok_model.to_tokens(text))
        assert torch.equal(bridge.to_tokens(text, prepend_bos=False), tok_model.to_tokens(text, prepend_bos=False))
    assert bridge.to_str_tokens("return a") == tok_model.to_str_tokens("return a")


def test_to_tokens_prepends_bos_and_pads(tok_model):
    toks = tok_model.to_tokens(["return a", "for i in range(10):"])
    assert toks.shape[0] == 2 and (toks[:, 0] == 0).all()
    assert tok_model.to_tokens("x", prepend_bos=False)[0, 0] != 0
    left = tok_model.to_tokens(["return a", "for i in range(10):"], padding_side="left")
    assert left[0, -1] == toks[0, (toks[0] != 0).nonzero().max()]


def test_round_trips(tok_model):
    toks = tok_model.to_tokens(CODE, prepend_bos=False)[0]
    assert tok_model.to_string(toks) == CODE
    assert "".join(tok_model.to_str_tokens(CODE, prepend_bos=False)) == CODE
    assert tok_model.to_str_tokens(CODE)[0] == "<|endoftext|>"
    single = tok_model.to_single_token("(")
    assert tok_model.to_string([single]) == "("
    with pytest.raises(ValueError, match="not a single token"):
        tok_model.to_single_token("def add(a, b): pass")


def test_text_forward_equals_token_forward(tok_model):
    assert torch.equal(tok_model("return a + b"), tok_model(tok_model.to_tokens("return a + b")))


def test_generate_greedy_and_sampled(tok_model):
    greedy = tok_model.generate("def add(", max_new_tokens=5, temperature=0, stop_at_eos=False)
    assert greedy.startswith("def add(") and greedy == tok_model.generate("def add(", max_new_tokens=5, temperature=0, stop_at_eos=False)
    a = tok_model.generate(tok_model.to_tokens("for i"), max_new_tokens=6, top_k=5, seed=3, stop_at_eos=False)
    b = tok_model.generate(tok_model.to_tokens("for i"), max_new_tokens=6, top_k=5, seed=3, stop_at_eos=False)
    assert torch.equal(a, b) and a.shape[1] == tok_model.to_tokens("for i").shape[1] + 6
    with pytest.raises(ValueError, match="top_k"):
        tok_model.generate("x", top_k=0)


def test_tokenizer_bigger_than_vocab_is_rejected(tok):
    with pytest.raises(ValueError, match="exceeds the model's d_vocab"):
        make_model(d_vocab=10).set_tokenizer(tok)


def test_token_position_helpers(tok_model):
    toks = tok_model.to_tokens("print(add(i, 1))")
    paren = tok_model.to_single_token("(")
    assert tok_model.get_token_position("(", toks) == int((toks[0] == paren).nonzero()[0])
    assert tok_model.get_token_position(paren, toks, mode="last") == int((toks[0] == paren).nonzero()[-1])
    assert tok_model.to_single_str_token(paren) == "("
    with pytest.raises(ValueError, match="does not occur"):
        tok_model.get_token_position(paren, tok_model.to_tokens("def"))


def test_generate_accepts_transformer_lens_arguments(tok_model):
    greedy = tok_model.generate("def add(", max_new_tokens=4, do_sample=False, stop_at_eos=False, verbose=False,
                                use_past_kv_cache=True)
    assert greedy == tok_model.generate("def add(", max_new_tokens=4, temperature=0, stop_at_eos=False)
    batch = tok_model.generate(["x = ", "def f"], max_new_tokens=3, seed=0, stop_at_eos=False)
    assert isinstance(batch, list) and len(batch) == 2 and batch[0].startswith("x = ")
    tokens = tok_model.generate("for i", max_new_tokens=3, return_type="tokens", seed=1, top_p=0.5, stop_at_eos=False)
    assert tokens.shape[1] == tok_model.to_tokens("for i").shape[1] + 3
    # a huge frequency penalty forbids repeating any token already present
    out = tok_model.generate("a a a", max_new_tokens=1, do_sample=False, freq_penalty=1e6, return_type="tokens",
                             stop_at_eos=False)
    assert int(out[0, -1]) not in set(out[0, :-1].tolist())
    # top_p keeps at least the most likely token; a tiny nucleus is greedy
    nucleus = tok_model.generate("for i", max_new_tokens=3, top_p=1e-9, seed=5, stop_at_eos=False)
    assert nucleus == tok_model.generate("for i", max_new_tokens=3, do_sample=False, stop_at_eos=False)
    with pytest.raises(ValueError, match="top_p"):
        tok_model.generate("x", top_p=0)
    with pytest.raises(ValueError, match="return_type"):
        tok_model.generate("x", return_type="list")
