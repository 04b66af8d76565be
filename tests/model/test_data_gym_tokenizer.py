"""The authors' tokenizer format (data-gym encoder.json + vocab.bpe) converted to a Hugging Face
tokenizer: identical ids and round trips to tiktoken itself, on real Python; discovery; bad files."""

import json
import random
import sysconfig
from pathlib import Path

import pytest
import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers

from sparse_lens.model import HookedSparseTransformer
from sparse_lens.model.data_gym_tokenizer import (
    TINYPYTHON_PATTERN,
    all_split_merges,
    data_gym_tokenizer,
    find_authors_tokenizer,
    read_data_gym,
)

from .data_gym_files import shipped_merges, shuffled_merges, write_data_gym
from .test_circuit_sparsity_format import make_checkpoint

tiktoken = pytest.importorskip("tiktoken")
from tiktoken.load import data_gym_to_mergeable_bpe_ranks  # noqa: E402

TRICKY = [
    "a\u00a0b  \u00a0 c\u2028x\u3000y",
    "line\r\nnext\r\n\r\n  \r\n\t\tz",
    "é😀中文 12345 ١٢٣ 0x1f 3.14e-5",
    "a_b1 _x __init__ self.data f.read()",
    "'''\"\"\"]]]\n))}}\n// ([{\"'",
    "    else:\n        return  \n\n\n",
    "<|endoftext|>def f(): pass<|endoftext|>x",
    "",
]


def real_python(n_files: int = 150, max_lines: int = 200, seed: int = 0) -> list[str]:
    """A deterministic sample of this Python's standard library: up to `max_lines` lines of each of
    `n_files` random .py files."""
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))
    texts = []
    for path in random.Random(seed).sample(files, min(n_files, len(files))):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        texts.append("".join(text.splitlines(keepends=True)[:max_lines]))
    return texts


def tiktoken_encoding(directory: Path):
    """The authors' construction (circuit_sparsity/tiktoken_ext/tinypython.py), on local files."""
    ranks = data_gym_to_mergeable_bpe_ranks(str(directory / "vocab.bpe"), str(directory / "encoder.json"))
    return tiktoken.Encoding("tinypython_2k", pat_str=TINYPYTHON_PATTERN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 2047})


@pytest.fixture(autouse=True)
def no_tiktoken_cache(monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # tiktoken would otherwise cache files by path in /tmp
    monkeypatch.delenv("TINYPYTHON_TOK_DIR", raising=False)


@pytest.mark.parametrize("vocabulary", ["shipped", "shuffled"])
def test_identical_to_tiktoken_on_real_python(tmp_path, vocabulary):
    merges = shipped_merges()
    if vocabulary == "shuffled":
        merges = shuffled_merges(merges)
    write_data_gym(tmp_path, merges)
    theirs, ours = tiktoken_encoding(tmp_path), data_gym_tokenizer(tmp_path)
    texts = real_python()
    assert sum(t.count("\n") for t in texts) > 10_000
    expected = theirs.encode_ordinary_batch(texts)
    got = [e.ids for e in ours.encode_batch(texts, add_special_tokens=False)]
    assert sum(map(len, expected)) > 100_000
    for text, a, b in zip(texts, expected, got):
        assert a == b
        assert ours.decode(b, skip_special_tokens=False) == text == theirs.decode(a)
    for text in TRICKY:
        ids = ours.encode(text, add_special_tokens=False).ids
        assert ids == theirs.encode(text, allowed_special="all")
        assert ours.decode(ids, skip_special_tokens=False) == text


def test_merging_by_the_file_order_would_differ(tmp_path):
    """What the equivalence test guards against: a BPE that applies vocab.bpe's merges as listed
    (instead of every split ordered by rank, as tiktoken effectively does) gives other ids."""
    merges = shuffled_merges(shipped_merges())
    write_data_gym(tmp_path, merges)
    ranks, _ = read_data_gym(tmp_path)
    naive = Tokenizer(models.BPE(vocab=ranks, merges=merges))
    naive.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(TINYPYTHON_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])  # fmt: skip
    texts = real_python(n_files=40)
    theirs = tiktoken_encoding(tmp_path).encode_ordinary_batch(texts)
    assert sum(a != e.ids for a, e in zip(theirs, naive.encode_batch(texts))) > 10


def test_all_split_merges_order():
    ranks = {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4, "abc": 5}
    assert all_split_merges(ranks) == [("a", "b"), ("b", "c"), ("a", "bc"), ("ab", "c")]


def test_special_token_and_vocab_size(tmp_path):
    write_data_gym(tmp_path, shipped_merges())
    tok = data_gym_tokenizer(tmp_path)
    assert tok.get_vocab_size() == 2048 and tok.token_to_id("<|endoftext|>") == 2047
    assert tok.encode("x<|endoftext|>", add_special_tokens=False).ids[-1] == 2047


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda d: (d / "vocab.bpe").unlink(), "no vocab.bpe"),
        (lambda d: (d / "encoder.json").write_text("[1, 2]"), "expected a JSON object"),
        (lambda d: (d / "encoder.json").write_text("{"), "not valid JSON"),
        (lambda d: (d / "vocab.bpe").write_text((d / "vocab.bpe").read_text() + "a b c\n"), "two space-separated"),
        (lambda d: (d / "vocab.bpe").write_text((d / "vocab.bpe").read_text() + "Ġ Ġ\n"), "already a token"),
        (lambda d: _swap_ids(d, "Ġ", "!"), "does not match vocab.bpe"),
    ],
)
def test_bad_files_are_clear_errors(tmp_path, corrupt, message):
    write_data_gym(tmp_path, shipped_merges())
    corrupt(tmp_path)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        data_gym_tokenizer(tmp_path)


def _swap_ids(directory: Path, a: str, b: str) -> None:
    enc = json.loads((directory / "encoder.json").read_text())
    enc[a], enc[b] = enc[b], enc[a]
    (directory / "encoder.json").write_text(json.dumps(enc))


def test_tiktoken_rejects_what_we_reject(tmp_path):
    """Our encoder/merges check is tiktoken's: a swapped id fails both."""
    write_data_gym(tmp_path, shipped_merges())
    _swap_ids(tmp_path, "Ġ", "!")
    with pytest.raises(AssertionError):
        tiktoken_encoding(tmp_path)


def test_special_token_id_collision(tmp_path):
    write_data_gym(tmp_path, shipped_merges())
    with pytest.raises(ValueError, match="collides"):
        data_gym_tokenizer(tmp_path, special_tokens={"<|endoftext|>": 5})


def authors_layout(tmp_path: Path, vocab_size: int = 2048) -> tuple[Path, Path]:
    """<base>/models/csp_test (beeg_config.json + final_model.pt) and <base>/tinypython."""
    model_dir = tmp_path / "circuit-sparsity" / "models" / "csp_test"
    model_dir.mkdir(parents=True)
    make_checkpoint(model_dir, vocab_size=vocab_size, block_size=32, enable_bigram_table=False)
    tok_dir = write_data_gym(tmp_path / "circuit-sparsity" / "tinypython", shipped_merges())
    return model_dir, tok_dir


def test_from_circuit_sparsity_finds_the_authors_layout(tmp_path):
    model_dir, tok_dir = authors_layout(tmp_path)
    assert find_authors_tokenizer(model_dir) == tok_dir.resolve()
    model = HookedSparseTransformer.from_circuit_sparsity(model_dir)
    assert model.tokenizer is not None and model.tokenizer.name_or_path == str(tok_dir.resolve())
    assert model.bos_token_id == 2047 and model.tokenizer.bos_token_id == 2047
    text = 'print("hi")\n'
    ids = tiktoken_encoding(tok_dir).encode_ordinary(text)
    assert model.to_tokens(text).tolist() == [ids]  # the authors' models take no BOS by default
    assert model.to_tokens(text, prepend_bos=True).tolist() == [[2047] + ids]
    assert model.tokenizer(text)["input_ids"] == [2047] + ids  # the transformers wrapper adds BOS, as in TL
    assert model.to_string(model.to_tokens(text)[0]) == text
    assert HookedSparseTransformer.from_circuit_sparsity(model_dir, tokenizer=False).tokenizer is None


def test_explicit_tokenizer_and_environment_variable(tmp_path, monkeypatch):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    make_checkpoint(model_dir, vocab_size=2048, block_size=32, enable_bigram_table=False)
    assert HookedSparseTransformer.from_circuit_sparsity(model_dir).tokenizer is None  # nothing to find
    tok_dir = write_data_gym(tmp_path / "tok", shipped_merges())
    explicit = HookedSparseTransformer.from_circuit_sparsity(model_dir, tokenizer=tok_dir)
    monkeypatch.setenv("TINYPYTHON_TOK_DIR", str(tok_dir))
    found = HookedSparseTransformer.from_circuit_sparsity(model_dir)
    assert explicit.to_tokens("x = [1]\n").tolist() == found.to_tokens("x = [1]\n").tolist()
    monkeypatch.setenv("TINYPYTHON_TOK_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="TINYPYTHON_TOK_DIR"):
        HookedSparseTransformer.from_circuit_sparsity(model_dir)


def test_other_tokenizer_names_are_not_guessed(tmp_path, monkeypatch):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    make_checkpoint(model_dir, vocab_size=2048, block_size=32, enable_bigram_table=False, tokenizer_name="other")
    monkeypatch.setenv("TINYPYTHON_TOK_DIR", str(write_data_gym(tmp_path / "tok", shipped_merges())))
    assert HookedSparseTransformer.from_circuit_sparsity(model_dir).tokenizer is None


def test_vocabulary_size_must_match(tmp_path):
    model_dir, tok_dir = authors_layout(tmp_path, vocab_size=2000)
    with pytest.raises(ValueError, match="2048 tokens, but the model .* vocab_size=2000"):
        HookedSparseTransformer.from_circuit_sparsity(model_dir)
    with pytest.raises(ValueError, match="2048 tokens"):
        HookedSparseTransformer.from_circuit_sparsity(model_dir, tokenizer=tok_dir)
    with pytest.raises(FileNotFoundError, match="no file or directory"):
        HookedSparseTransformer.from_circuit_sparsity(model_dir, tokenizer=tmp_path / "missing")


def test_logits_do_not_depend_on_the_tokenizer(tmp_path):
    model_dir, _ = authors_layout(tmp_path)
    with_tok = HookedSparseTransformer.from_circuit_sparsity(model_dir)
    without = HookedSparseTransformer.from_circuit_sparsity(model_dir, tokenizer=False)
    tokens = with_tok.to_tokens("def f(x):\n    return x\n")
    assert torch.equal(with_tok(tokens), without(tokens))
