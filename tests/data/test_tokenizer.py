from __future__ import annotations

import pytest

from sparse_lens.data import (
    EOT,
    PRETRAINED_TOKENIZER,
    TASK_TOKENS,
    build_pre_tokenizer,
    check_round_trip,
    check_task_tokens,
    has_line_end_closers,
    load_tokenizer,
    save_tokenizer,
    task_token_report,
    task_tokens,
    tokenizer_hash,
    train_tokenizer,
)


def pieces(text: str, line_end_closers: bool = False) -> list[str]:
    return [p for p, _ in build_pre_tokenizer(line_end_closers).pre_tokenize_str(text)]


def test_special_token_is_id_0_and_vocab_size(small_tokenizer):
    assert small_tokenizer.token_to_id(EOT) == 0
    assert small_tokenizer.get_vocab_size() == 512
    assert small_tokenizer.encode(EOT).ids == [0]


def test_round_trip_exact(small_tokenizer, texts):
    check_round_trip(small_tokenizer, texts)
    odd = ["héllo wörld 🐍\n\ttabs\r\n  'x'\"\"\"doc\"\"\"]]]", "s = '<|endoftext|>'\n", "", "\n\n\n", "\u00a0nbsp\ufeff"]
    check_round_trip(small_tokenizer, odd)


def test_round_trip_check_can_fail(small_tokenizer):
    class Lossy:
        encode_special_tokens = False

        def encode_batch(self, texts, add_special_tokens=False):
            return small_tokenizer.encode_batch(texts, add_special_tokens=add_special_tokens)

        encode_batch_fast = encode_batch

        def decode(self, ids, skip_special_tokens=False):
            return small_tokenizer.decode(ids).upper()

    with pytest.raises(ValueError, match="round trip differs"):
        check_round_trip(Lossy(), ["abc"])


@pytest.mark.parametrize(
    "text, must_contain",
    [
        ("f('a', \"b\")", ["(", "'", "a", "'", ",", " ", '"', "b", '"', ")"]),
        ("x = y[0]]\n", ["x", " =", " y", "[", "0", "]]", "\n"]),
        ("d['k'],\n", ["]", ","]),
        ("it's", ["it", "'", "s"]),
        ('"""doc"""', ['"""', "doc", '"""']),
        ("def __init__(self):\n", ["def", " __init__", "(", "self", ")", ":", "\n"]),
        ("    a += b == c\n", ["   ", " a", " +=", " b", " ==", " c", "\n"]),
        ("super().__init__()", [".", "__init__"]),
    ],
)
def test_pre_tokenizer_isolates_task_tokens(text, must_contain):
    got = [p.replace("Ġ", " ").replace("Ċ", "\n") for p in pieces(text)]
    assert "".join(got) == text
    for piece in must_contain:
        assert piece in got, (piece, got)
    assert not any(len(p) > 1 and ("'" in p or '"' in p) and p not in ("'''", '"""') for p in got)


@pytest.mark.parametrize(
    "text, alone, with_line_end",
    [
        ("x = y[0]]\n", ["]]", "\n"], ["]]\n"]),
        ("x = [[1], 2]\n\n", ["]", "\n", "\n"], ["]\n", "\n"]),
        ("x = y[0]], z\n", ["]]", ",", " z", "\n"], ["]]", ",", " z", "\n"]),  # not at a line end: the same
        ("s = {1}\n", ["}", "\n"], ["}\n"]),
        ("f(x)\n", [")", "\n"], [")", "\n"]),  # ) never takes the newline
        ("a]]]\n  b", ["]]]", "\n", " ", " b"], ["]]]\n", " ", " b"]),  # one newline, not the indentation
    ],
)
def test_line_end_closers(text, alone, with_line_end):
    for flag, expected in ((False, alone), (True, with_line_end)):
        got = [p.replace("Ġ", " ").replace("Ċ", "\n") for p in pieces(text, flag)]
        assert "".join(got) == text
        assert got[-len(expected) :] == expected, (flag, got)


def test_has_line_end_closers():
    assert has_line_end_closers(train_tokenizer(["x = [1]\n"], vocab_size=257))  # the default
    assert not has_line_end_closers(train_tokenizer(["x = [1]\n"], vocab_size=257, line_end_closers=False))


def test_check_task_tokens_lists_failures():
    bytes_only = train_tokenizer(["abc"], vocab_size=257)
    with pytest.raises(ValueError) as err:
        check_task_tokens(bytes_only)
    msg = str(err.value)
    assert "' enumerate'" in msg and "']]'" in msg and "\"'\"" not in msg.split("not single tokens:")[1].split("->")[0]
    check_task_tokens(bytes_only, ["'", '"', "]", ")", ":", "\n"])  # single bytes always pass


def test_force_single_tokens(small_tokenizer):
    from sparse_lens.data import force_single_tokens

    words = [" enumerate", " lambda", "__init__", "]]"]
    forced = force_single_tokens(small_tokenizer, words)
    check_task_tokens(forced, words)
    assert forced.get_vocab_size() == small_tokenizer.get_vocab_size() and forced.token_to_id(EOT) == 0
    check_round_trip(forced, ["for i, x in enumerate(xs): enumerated = [[1]]\n"])
    with pytest.raises(ValueError, match="pre-tokens"):
        force_single_tokens(small_tokenizer, ["x = 1"])
    # Forcing more strings later keeps the earlier ones single (their merges are not the ones dropped).
    again = force_single_tokens(forced, words + [" enumerated_value"])
    check_task_tokens(again, words + [" enumerated_value"])
    assert again.get_vocab_size() == small_tokenizer.get_vocab_size()


def test_vocab_too_small():
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["abc"], vocab_size=100)


def test_save_load_and_hash(small_tokenizer, tmp_path):
    path = save_tokenizer(small_tokenizer, tmp_path / "tok")
    assert path.name == "tokenizer.json"
    again = load_tokenizer(tmp_path / "tok")
    assert tokenizer_hash(again) == tokenizer_hash(small_tokenizer)
    assert again.encode("x = 1").ids == small_tokenizer.encode("x = 1").ids
    with pytest.raises(FileNotFoundError):
        load_tokenizer(tmp_path / "missing")


def test_training_is_deterministic(corpus):
    sample = corpus["train"]["text"][:10]
    a, b = train_tokenizer(sample, vocab_size=400), train_tokenizer(sample, vocab_size=400)
    assert tokenizer_hash(a) == tokenizer_hash(b)


@pytest.mark.skipif(not PRETRAINED_TOKENIZER.is_file(), reason="shipped tokenizer not built yet")
def test_shipped_tokenizer(texts):
    tok = load_tokenizer(PRETRAINED_TOKENIZER)
    assert tok.get_vocab_size() == 2048 and tok.token_to_id(EOT) == 0
    check_task_tokens(tok, task_tokens(has_line_end_closers(tok)))
    check_round_trip(tok, texts)
    # in context, task tokens do not fuse with their neighbours
    ids = tok.encode("x = [[1, 2]]\nif a == 'b':\n    s.add(\"c\")\n").tokens
    closer = "]]Ċ" if has_line_end_closers(tok) else "]]"
    for t in [closer, "Ċ", "'", '"', "add", "Ġ==", ")", ":"]:
        assert t in ids, (t, ids)



def test_encoding_hash_ignores_a_no_op_post_processor_only(small_tokenizer, corpus):
    """The shipped tiny models' tokenizer files carry a no-op TemplateProcessing that later saves do
    not: same ids for every text as we encode (no special tokens), so the same `encoding_hash`; a
    tokenizer with other merges differs."""
    from tokenizers import Tokenizer
    from tokenizers.processors import TemplateProcessing

    from sparse_lens.data import encode_ids, encoding_hash

    with_template = Tokenizer.from_str(small_tokenizer.to_str())
    with_template.post_processor = TemplateProcessing(single="$A", pair="$A $B:1")
    assert tokenizer_hash(with_template) != tokenizer_hash(small_tokenizer)
    assert encoding_hash(with_template) == encoding_hash(small_tokenizer)
    text = "x = ['a', \"b\"]\n"
    assert encode_ids(with_template, [text]) == encode_ids(small_tokenizer, [text])
    other = train_tokenizer(corpus["train"]["text"][:5], vocab_size=300)
    assert encoding_hash(other) != encoding_hash(small_tokenizer)
