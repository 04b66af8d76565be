"""TrainingConfig: round trip, packaged configs, and bad input rejected before any training starts."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from sparse_lens.training import Trainer, TrainingConfig, train
from sparse_lens.training.cli import CONFIG_DIR, list_configs

from .conftest import tiny_dict


def test_yaml_round_trip(tmp_path):
    cfg = TrainingConfig.from_dict(tiny_dict(out_dir=str(tmp_path / "r")))
    path = tmp_path / "c.yaml"
    cfg.to_yaml(path)
    again = TrainingConfig.from_yaml(path)
    assert again.to_dict() == cfg.to_dict()
    assert again.optimizer.betas == (0.9, 0.95) and again.model.weight_sparsity == 0.125


def test_packaged_configs_validate():
    names = list_configs()
    assert {"python-sparse-tiny", "python-dense-tiny"} <= set(names)
    for name in names:
        cfg = TrainingConfig.from_yaml(CONFIG_DIR / f"{name}.yaml")
        cfg.validate()
    sparse = TrainingConfig.from_yaml(CONFIG_DIR / "python-sparse-tiny.yaml")
    dense = TrainingConfig.from_yaml(CONFIG_DIR / "python-dense-tiny.yaml")
    assert 0 < sparse.model.weight_sparsity < 1 and 0 < sparse.model.activation_sparsity < 1
    assert dense.model.weight_sparsity is None and dense.model.activation_sparsity is None
    assert sparse.optimizer.eps == 0.1 and sparse.optimizer.grad_norm == "normalize"
    # the packaged configs reproduce the shipped models: same config as their training.json (up to
    # bookkeeping such as where the tokenizer was read from), and the tokenizer they were trained with
    # (named by hash) is the shipped one the packaged configs use
    import json

    from sparse_lens.data import PRETRAINED_TOKENIZER, load_tokenizer, tokenizer_hash

    pretrained = Path(__file__).resolve().parents[2] / "sparse_lens" / "pretrained"
    shipped_configs = [("python-sparse-tiny", sparse), ("python-dense-tiny", dense)] + [
        (name, TrainingConfig.from_yaml(CONFIG_DIR / f"{name}.yaml")) for name in ("python-sparse-small", "python-dense-matched", "python-sparse-small-continued",
                                                                   "python-dense-matched-continued")]
    for name, cfg in shipped_configs:
        training = json.loads((pretrained / name / "training.json").read_text())
        shipped = TrainingConfig.from_dict(training["config"])
        assert cfg.data.tokenizer_path is None, name
        assert cfg.fingerprint_dict() == shipped.fingerprint_dict(), name
        assert training["data"]["tokenizer_hash"] == tokenizer_hash(load_tokenizer(PRETRAINED_TOKENIZER)), name


def _rejects(tmp_path: Path, match: str, **overrides):
    out = tmp_path / "never"
    with pytest.raises(ValueError, match=match):
        cfg = TrainingConfig.from_dict(tiny_dict(out_dir=str(out), **overrides))
        Trainer(cfg)
    assert not out.exists()  # rejected before anything was written


@pytest.mark.parametrize("fraction", [0, -0.5, 1.5])
def test_bad_weight_sparsity(tmp_path, fraction):
    _rejects(tmp_path, r"^model\.weight_sparsity", model__weight_sparsity=fraction)


def test_min_nonzero_larger_than_row(tmp_path):
    _rejects(tmp_path, r"^sparsity\.min_nonzero_per_neuron: j=33 is larger than the 32", sparsity__min_nonzero_per_neuron=33)
    # in fan_in mode W_O's fan-in is n_heads * d_head = 16
    _rejects(tmp_path, r"^sparsity\.min_nonzero_per_neuron: j=17.*W_O", sparsity__min_nonzero_per_neuron=17,
             sparsity__min_nonzero_mode="fan_in")


@pytest.mark.parametrize(
    "overrides,match",
    [
        (dict(sparsity__anneal_start=0.6, sparsity__anneal_end=0.5), r"^sparsity\.anneal_end"),
        (dict(sparsity__anneal_start=-0.1), r"^sparsity\.anneal_start"),
        (dict(optimizer__lr=0), r"^optimizer\.lr"),
        (dict(optimizer__eps=0), r"^optimizer\.eps"),
        (dict(optimizer__grad_norm="clipp"), r"^optimizer\.grad_norm"),
        (dict(optimizer__lr_decay="exp"), r"^optimizer\.lr_decay"),
        (dict(optimizer__warmup_fraction=1.0), r"^optimizer\.warmup_fraction"),
        (dict(batch_size=0), r"^batch_size"),
        (dict(micro_batch_size=3), r"^micro_batch_size"),
        (dict(train_steps=0), r"^train_steps"),
        (dict(data__source="web"), r"^data\.source"),
        (dict(data__val_fraction=0), r"^data\.val_fraction"),
        (dict(model__d_model=0), r"^model\.d_model"),
        (dict(model__activation_sparsity_locations=["mlp_neurons"]), r"^model\.activation_sparsity_locations"),
        (dict(batch_size=1000), r"^batch_size: 1000 rows per step but tokens has only 128 rows"),
        (dict(data__oversample=[{"pattern": "x", "repeat": 2}]), r"^data\.oversample: only for source 'corpus'"),
    ],
)
def test_bad_values_name_the_field(tmp_path, overrides, match):
    _rejects(tmp_path, match, **overrides)


def test_unknown_fields_rejected():
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['lr'\]"):
        TrainingConfig.from_dict(tiny_dict(lr=0.1))
    with pytest.raises(ValueError, match=r"^optimizer: unknown field\(s\) \['learning_rate'\]"):
        TrainingConfig.from_dict(tiny_dict(optimizer__learning_rate=0.1))
    with pytest.raises(ValueError, match=r"^model: missing"):
        TrainingConfig.from_dict({"train_steps": 3})


def _corpus(root: Path, n_files: int, lines: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        body = "".join(f"def f{i}_{j}(x):\n    return x + {j}\n" for j in range(lines))
        (root / f"m{i}.py").write_text(body)
    return root


def _files_config(tmp_path: Path, corpus: Path, n_ctx: int) -> dict:
    return tiny_dict(
        out_dir=str(tmp_path / "never"),
        model__n_ctx=n_ctx, model__d_vocab=512,
        data__source="corpus", data__corpus=str(corpus), data__vocab_size=300, data__val_fraction=0.2,
        data__cache_dir=str(tmp_path / "cache"), data__tokenizer_path=str(tmp_path / "tok" / "tokenizer.json"),
    )


def test_resume_takes_the_tokenizer_from_another_path_but_not_another_tokenizer(tmp_path):
    import shutil

    from sparse_lens.data import save_tokenizer, train_tokenizer

    corpus = _corpus(tmp_path / "corpus", n_files=12, lines=40)
    first = _files_config(tmp_path, corpus, 16) | {"out_dir": str(tmp_path / "run")}
    train(TrainingConfig.from_dict(first), stop_after=2)
    moved = tmp_path / "moved" / "tokenizer.json"
    moved.parent.mkdir()
    shutil.copy(first["data"]["tokenizer_path"], moved)
    same = copy.deepcopy(first)
    same["data"]["tokenizer_path"] = str(moved)
    Trainer(TrainingConfig.from_dict(same), resume=True).close()  # the same tokenizer, read elsewhere
    other = tmp_path / "other"
    save_tokenizer(train_tokenizer(["def g(y):\n    return [y]\n"] * 20, vocab_size=280), other)
    different = copy.deepcopy(first)
    different["data"]["tokenizer_path"] = str(other / "tokenizer.json")
    with pytest.raises(ValueError, match="resume: data differs"):
        Trainer(TrainingConfig.from_dict(different), resume=True)


def test_empty_corpus(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg = TrainingConfig.from_dict(_files_config(tmp_path, empty, 16))
    with pytest.raises(ValueError, match=r"^data\.corpus: empty corpus"):
        Trainer(cfg)
    (empty / "a.py").write_text("")
    (empty / "b.py").write_text("   \n")
    with pytest.raises(ValueError, match=r"^data\.corpus: empty corpus"):
        Trainer(cfg)


def test_n_ctx_longer_than_every_document(tmp_path):
    corpus = _corpus(tmp_path / "small", n_files=12, lines=2)  # each file: a few dozen tokens
    cfg = TrainingConfig.from_dict(_files_config(tmp_path, corpus, 128))
    with pytest.raises(ValueError, match=r"^model\.n_ctx: 128 is larger than every document"):
        Trainer(cfg)


def test_small_file_corpus_trains(tmp_path):
    corpus = _corpus(tmp_path / "ok", n_files=12, lines=40)
    data = _files_config(tmp_path, corpus, 16)
    data.update(train_steps=2, out_dir=str(tmp_path / "run"))
    from sparse_lens.training import train

    result = train(TrainingConfig.from_dict(data))
    assert result.status == "completed"
    assert (result.checkpoint / "tokenizer.json").is_file()


@pytest.mark.parametrize(
    "spec,match",
    [
        ({"pattern": "]]"}, r"^data\.oversample\[0\]: expected keys 'pattern', 'repeat'"),
        ({"pattern": "]]", "repeat": 2, "window": 3}, r"^data\.oversample\[0\]: expected keys"),
        ({"pattern": "(", "repeat": 2}, r"^data\.oversample\[0\]\.pattern: '\(' is not a valid regular expression"),
        ({"pattern": "]]", "repeat": 0}, r"^data\.oversample\[0\]\.repeat: expected a positive integer, got 0"),
        ({"pattern": "]]", "repeat": 2, "context_chars": -1}, r"^data\.oversample\[0\]\.context_chars: expected a non-negative"),
        ("]]", r"^data\.oversample\[0\]: expected a mapping"),
    ],
)
def test_bad_oversample(tmp_path, spec, match):
    corpus = _corpus(tmp_path / "ok", n_files=12, lines=40)
    cfg = _files_config(tmp_path, corpus, 16)
    cfg["data"]["oversample"] = [spec]
    with pytest.raises(ValueError, match=match):
        Trainer(TrainingConfig.from_dict(cfg))
    assert not (tmp_path / "never").exists()


def test_oversample_appends_repeated_excerpts_of_the_train_split(tmp_path):
    from sparse_lens.training.data import load_token_data

    corpus = _corpus(tmp_path / "ok", n_files=12, lines=40)
    for i in (1, 4, 5, 8, 11):  # a rare pattern in some files
        (corpus / f"m{i}.py").write_text((corpus / f"m{i}.py").read_text() + "table = [[1, 2], [3, 4]]\n")
    base = TrainingConfig.from_dict(_files_config(tmp_path, corpus, 16))
    plain = load_token_data(base.data, 16, 512)
    spec = {"pattern": r"\]\]", "repeat": 3, "context_chars": 40, "after_lines": 0}
    base.data.oversample = [spec]
    data = load_token_data(base.data, 16, 512)
    assert torch.equal(data.validation, plain.validation)
    assert torch.equal(data.train[: len(plain.train)], plain.train)
    extra = data.train[len(plain.train):]
    (report,) = data.description["oversample"]
    n_train_with_pattern = sum("[[" in t for t in plain_train_texts(base))
    assert report["excerpts"] == n_train_with_pattern > 0
    assert len(extra) == 3 * report["rows"] and report["added_tokens"] == extra.numel()
    assert torch.equal(extra[: report["rows"]], extra[-report["rows"]:])
    text = data.tokenizer.decode(extra[: report["rows"]].reshape(-1).tolist())
    assert text.count("]]") == n_train_with_pattern or text.count("]]") == n_train_with_pattern - 1  # last row may be cut
    assert data.description["fingerprint"] != plain.description["fingerprint"]
    base.data.oversample = [{"pattern": "no such code", "repeat": 2}]
    with pytest.raises(ValueError, match=r"^data\.oversample\[0\]\.pattern: 'no such code' occurs nowhere"):
        load_token_data(base.data, 16, 512)


def plain_train_texts(cfg: TrainingConfig) -> list[str]:
    from sparse_lens.data import load_corpus

    return list(load_corpus(cfg.data.corpus, val_fraction=cfg.data.val_fraction, cache_dir=cfg.data.cache_dir)["train"]["text"])
