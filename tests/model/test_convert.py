"""`sparse-lens convert`: the authors' format written once as ours (safetensors, config, tokenizer);
bad input is one clear error and leaves nothing behind."""

import json

import pytest
import torch

from sparse_lens.cli import main
from sparse_lens.model import HookedSparseTransformer

from .data_gym_files import shipped_merges, write_data_gym
from .test_circuit_sparsity_format import make_checkpoint


@pytest.fixture(autouse=True)
def no_environment_tokenizer(monkeypatch):
    monkeypatch.delenv("TINYPYTHON_TOK_DIR", raising=False)


@pytest.fixture
def authors(tmp_path):
    """<base>/models/csp_test in the authors' format and <base>/tinypython beside it."""
    model_dir = tmp_path / "base" / "models" / "csp_test"
    model_dir.mkdir(parents=True)
    make_checkpoint(model_dir, vocab_size=2048, block_size=32)
    write_data_gym(tmp_path / "base" / "tinypython", shipped_merges())
    return model_dir


def test_convert_writes_our_format(authors, tmp_path, capsys):
    out = tmp_path / "converted"
    assert main(["convert", str(authors), str(out)]) == 0
    assert "converted" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json"}
    original = HookedSparseTransformer.from_circuit_sparsity(authors)
    converted = HookedSparseTransformer.from_pretrained(out)  # safetensors + JSON: nothing is unpickled
    text = "def f(x):\n    return [x, 'a']\n"
    tokens = original.to_tokens(text)
    assert torch.equal(converted.to_tokens(text), tokens)
    with torch.no_grad():
        assert torch.equal(converted(tokens), original(tokens))
    assert converted.cfg.tokenizer_name == "tinypython_2k" and converted.bos_token_id == 2047
    assert json.loads((out / "tokenizer.json").read_text())["model"]["ignore_merges"] is True


def test_explicit_tokenizer_and_weights_only(authors, tmp_path):
    tok = write_data_gym(tmp_path / "elsewhere", shipped_merges())
    (authors.parent.parent / "tinypython" / "vocab.bpe").unlink()  # the layout no longer has it
    assert main(["convert", str(authors), str(tmp_path / "a"), "--tokenizer", str(tok)]) == 0
    assert main(["convert", str(authors), str(tmp_path / "b"), "--no-tokenizer"]) == 0
    assert not (tmp_path / "b" / "tokenizer.json").exists()
    assert HookedSparseTransformer.from_pretrained(tmp_path / "b").tokenizer is None


def _fails(args, capsys, message):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("sparse-lens convert: error: ") and message in err and "Traceback" not in err, err


def test_not_the_authors_format(tmp_path, capsys):
    (tmp_path / "ours").mkdir()
    _fails(["convert", str(tmp_path / "ours"), str(tmp_path / "out")], capsys, "missing beeg_config.json")
    assert not (tmp_path / "out").exists()


def test_unsupported_config_option(authors, tmp_path, capsys):
    config = json.loads((authors / "beeg_config.json").read_text())
    (authors / "beeg_config.json").write_text(json.dumps({**config, "d_pos_emb": 8}))
    _fails(["convert", str(authors), str(tmp_path / "out")], capsys, "concatenated positional embeddings")
    assert not (tmp_path / "out").exists()


def test_tokenizer_of_another_vocabulary_size(tmp_path, capsys):
    model_dir = tmp_path / "base" / "models" / "m"
    model_dir.mkdir(parents=True)
    make_checkpoint(model_dir, vocab_size=1024, block_size=32)
    write_data_gym(tmp_path / "base" / "tinypython", shipped_merges())
    _fails(["convert", str(model_dir), str(tmp_path / "out")], capsys, "2048 tokens, but the model")
    assert not (tmp_path / "out").exists()


def test_no_tokenizer_found_says_where_to_put_it(tmp_path, capsys):
    make_checkpoint(tmp_path, vocab_size=2048, block_size=32)
    _fails(["convert", str(tmp_path), str(tmp_path / "out")], capsys, "--tokenizer")
    assert not (tmp_path / "out").exists()


def test_corrupt_tokenizer_files(authors, tmp_path, capsys):
    (authors.parent.parent / "tinypython" / "encoder.json").write_text("{}")
    _fails(["convert", str(authors), str(tmp_path / "out")], capsys, "does not match vocab.bpe")


def test_a_directory_holding_other_files_is_not_overwritten(authors, tmp_path, capsys):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["convert", str(authors), str(out)]) == 2
    assert "error: " in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"
