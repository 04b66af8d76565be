"""Bridge training on the pretraining trainer: losses fall, checkpoints hold the sparse model and the
bridges, resume is bit-identical, a NaN names its term and site, bad configs fail before any work,
mixed precision keeps fp32 master weights, a TransformerLens dense model trains end to end, and the
command line trains and evaluates."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

from sparse_lens.bridges import BridgedPair, BridgeTrainer, evaluate_bridges, intervene, train_bridges
from sparse_lens.bridges.bridge import BRIDGES_FILE, BRIDGES_META
from sparse_lens.model import HookedSparseTransformer
from sparse_lens.training.checkpoint import MODEL_FILE, latest_checkpoint, list_checkpoints
from sparse_lens.training.metrics import read_metrics
from sparse_lens.training.trainer import TrainingDiverged

from .conftest import make_dense, tiny_tl_model

MODEL = dict(n_layers=2, d_model=32, n_ctx=16, d_vocab=50, n_heads=3, d_head=8, d_mlp=48,
             weight_sparsity=0.25, activation_sparsity=0.5)


@pytest.fixture(scope="module")
def dense_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dense") / "tiny-dense"
    make_dense().save_pretrained(path)
    return path


def config(tmp_path: Path, dense_dir: Path, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = dict(
        model=dict(MODEL), data=dict(source="synthetic", synthetic_rows=64), optimizer=dict(lr=0.01),
        sparsity=dict(anneal_start=0.1, anneal_end=0.5, min_nonzero_per_neuron=2),
        train_steps=8, batch_size=4, eval_every=4, eval_batches=1, checkpoint_every=4, keep_checkpoints=0,
        log_every=2, tensorboard=False, progress_bar=False, num_threads=1, out_dir=str(tmp_path / "run"),
        bridges=dict(dense=str(dense_dir), eval_rows=4, init_rows=8),
    )
    for key, value in overrides.items():
        node = cfg
        *parents, leaf = key.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return cfg


def test_training_lowers_the_losses_and_checkpoints_the_pair(tmp_path, dense_dir):
    cfg = config(tmp_path, dense_dir, train_steps=40, checkpoint_every=20, eval_every=20, log_every=5,
                 optimizer__lr=0.02, optimizer__warmup_fraction=0.05)
    result = train_bridges(cfg)
    assert result.status == "completed" and result.step == 40
    records = [r for r in read_metrics(tmp_path / "run") if "bridge_loss" in r]
    first, last = records[0], records[-1]
    assert last["bridge_loss"] < first["bridge_loss"]
    assert last["kl_d2s_sum"] < first["kl_d2s_sum"] and last["kl_s2d_sum"] < first["kl_s2d_sum"]
    sites = ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_mid", "blocks.1.hook_resid_pre", "blocks.1.hook_resid_mid"]
    for term in ("nmse_enc", "nmse_dec", "kl_d2s", "kl_s2d"):
        assert set(last[term]) == set(sites)
    evals = [r for r in read_metrics(tmp_path / "run") if "val_kl_d2s" in r]
    assert [r["step"] for r in evals] == [0, 20, 40] and set(evals[-1]["val_kl_s2d"]) == set(sites)

    ckpt = latest_checkpoint(tmp_path / "run")
    assert {MODEL_FILE, BRIDGES_FILE, BRIDGES_META} <= {p.name for p in ckpt.iterdir()}
    pair = BridgedPair.load(tmp_path / "run")  # the dense model by the name the bridges record
    sparse = HookedSparseTransformer.from_pretrained(tmp_path / "run")  # the sparse model alone
    for name, value in sparse.state_dict().items():
        assert torch.equal(value, pair.sparse.state_dict()[name])
    fraction = sum(int((p != 0).sum()) for n, p in pair.sparse.named_parameters() if n.endswith("W_in")) / (2 * 32 * 48)
    assert fraction <= 0.25 + 1e-9  # the weight-sparsity projection acted on the sparse model
    tokens = torch.randint(0, 50, (4, 16), generator=torch.Generator().manual_seed(0))
    ev = evaluate_bridges(pair, tokens, batch_size=2)
    assert len(ev.per_site["kl_d2s"]) == 4 and ev.sparse_kl > 0


@pytest.mark.parametrize("kl_sites_per_step", [None, 2])
def test_resume_is_bit_identical(tmp_path, dense_dir, kl_sites_per_step):
    common = dict(bridges__kl_sites_per_step=kl_sites_per_step, micro_batch_size=2)
    train_bridges(config(tmp_path / "a", dense_dir, **common))
    cfg_b = config(tmp_path / "b", dense_dir, **common)
    assert train_bridges(cfg_b, stop_after=4).status == "stopped"
    assert train_bridges(cfg_b, resume=True).step == 8
    a, b = latest_checkpoint(tmp_path / "a" / "run"), latest_checkpoint(tmp_path / "b" / "run")
    for name in (MODEL_FILE, BRIDGES_FILE):
        wa, wb = load_file(str(a / name)), load_file(str(b / name))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), name


def test_a_nan_names_its_term_and_site_and_writes_nothing(tmp_path, dense_dir):
    trainer = BridgeTrainer(config(tmp_path, dense_dir, bridges__eval_rows=0))
    try:
        with torch.no_grad():
            trainer.pair.bridges.decoders[1].weight[0, 0] = float("nan")
        with pytest.raises(TrainingDiverged, match=r"nmse_dec at blocks\.0\.hook_resid_mid"):
            trainer.run()
    finally:
        trainer.close()
    assert list_checkpoints(tmp_path / "run") == []
    assert all(r["step"] == 0 for r in read_metrics(tmp_path / "run"))


def test_bad_configs_fail_before_any_work(tmp_path, dense_dir):
    deep = tmp_path / "deep"
    make_dense(n_layers=3).save_pretrained(deep)
    cases = [
        (dict(bridges__dense=str(deep)), "n_layers"),
        (dict(bridges__dense="no-such-model"), "bridges.dense"),
        (dict(bridges__weights__kl_d2s=-1), "bridges.weights.kl_d2s"),
        (dict(bridges__encoder_topk=2.0), "bridges.encoder_topk"),
        (dict(bridges__kl_sites_per_step=9), "kl_sites_per_step"),
        (dict(bridges__typo=1), "unknown field"),
        (dict(bridges__sparse_init=str(dense_dir)), "model: the model section differs"),
        (dict(bridges__freeze_bigram=True), "bridges.freeze_bigram: needs bridges.sparse_init"),
        (dict(bridges__freeze_bigram="yes"), "bridges.freeze_bigram: expected true or false"),
    ]
    for overrides, message in cases:
        out = tmp_path / "never"
        with pytest.raises(ValueError, match=message):
            BridgeTrainer(config(tmp_path, dense_dir, out_dir=str(out), **overrides))
        assert not out.exists()


def test_a_dense_model_with_another_tokenizer_is_refused(tmp_path, dense_dir):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.add_special_tokens(["<|endoftext|>"])
    dense = make_dense()
    dense.set_tokenizer(tok)
    with pytest.raises(ValueError, match="tokenizer"):
        BridgeTrainer(config(tmp_path, dense_dir), dense_model=dense)


def test_mixed_precision_keeps_fp32_master_weights_and_optimizer_state(tmp_path, dense_dir):
    trainer = BridgeTrainer(config(tmp_path, dense_dir, train_steps=2, bridges__autocast_dtype="bfloat16",
                                   bridges__eval_rows=0, checkpoint_every=0))
    try:
        result = trainer.run()
        assert result.step == 2 and result.loss == result.loss  # finite
        assert all(p.dtype == torch.float32 for p in trainer.pair.parameters())
        states = [s for s in trainer.optimizer.state.values()]
        assert states and all(s["exp_avg"].dtype == torch.float32 and s["exp_avg_sq"].dtype == torch.float32 for s in states)
    finally:
        trainer.close()


def test_transformer_lens_dense_model_end_to_end(tmp_path, dense_dir):
    tl = tiny_tl_model()
    before = copy.deepcopy(tl.state_dict())
    cfg = config(tmp_path, dense_dir, train_steps=6, checkpoint_every=0, eval_every=3)
    trainer = BridgeTrainer(cfg, dense_model=tl)
    try:
        result = trainer.run()
    finally:
        trainer.close()
    assert result.step == 6
    assert all(torch.equal(before[k], v) for k, v in tl.state_dict().items())  # the dense model is frozen
    meta = json.loads((latest_checkpoint(tmp_path / "run") / BRIDGES_META).read_text())
    assert meta["dense"]["kind"] == "transformer_lens" and meta["d_dense"] == 20
    with pytest.raises(ValueError, match="pass that model as dense="):
        BridgedPair.load(tmp_path / "run")
    pair = BridgedPair.load(tmp_path / "run", dense=tl)
    tokens = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(3))
    ev = evaluate_bridges(pair, tokens)
    assert all(v > 0 for v in ev.per_site["kl_s2d"])
    res = intervene(pair, tokens, ("blocks.0.hook_attn_out", 3), value=5.0)
    assert res.site == "blocks.0.hook_resid_mid" and not torch.equal(res.dense_edited, res.dense_clean)


def _cli(*argv: str) -> int:
    from sparse_lens.cli import main

    return main(list(argv))


def test_command_line_trains_evaluates_and_reports_mistakes(tmp_path, dense_dir, capsys):
    path = tmp_path / "bridged.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path, dense_dir, train_steps=4)))
    assert _cli("bridges", "train", str(path), "--no-progress") == 0
    assert "completed at step 4" in capsys.readouterr().out
    out = tmp_path / "eval"
    assert _cli("bridges", "eval", str(tmp_path / "run"), "--rows", "4", "--batch-size", "2", "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "blocks.1.hook_resid_mid" in printed and "sparse alone" in printed
    saved = json.loads((out / "bridges_eval.json").read_text())
    assert len(saved["per_site"]["kl_d2s"]) == 4 and (out / "bridges_eval.png").stat().st_size > 1000

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config(tmp_path, dense_dir, bridges__init="magic")))
    assert _cli("bridges", "train", str(bad), "--out", str(tmp_path / "bad-run")) == 2
    assert "bridges.init" in capsys.readouterr().err and not (tmp_path / "bad-run").exists()
    assert _cli("bridges", "eval", str(tmp_path / "missing")) == 2
    assert "not a directory" in capsys.readouterr().err
    assert _cli("bridges", "intervene", str(tmp_path / "run"), "--node", "nonsense") == 2
    assert "--node" in capsys.readouterr().err


def test_a_stop_request_saves_a_checkpoint_with_the_bridges(tmp_path, dense_dir):
    """Ctrl-C (the trainer's stop flag, as its SIGINT handler sets it): the step finishes, then a
    checkpoint with the sparse model and the bridges is written, and the run resumes from it."""
    trainer = BridgeTrainer(config(tmp_path, dense_dir, bridges__eval_rows=0))
    try:
        trainer._stop_requested = True
        result = trainer.run()
    finally:
        trainer.close()
    assert result.status == "interrupted" and result.step == 1
    ckpt = latest_checkpoint(tmp_path / "run")
    assert ckpt.name == "step_00000001" and (ckpt / BRIDGES_FILE).is_file() and (ckpt / MODEL_FILE).is_file()
    assert train_bridges(config(tmp_path, dense_dir, bridges__eval_rows=0), resume=True).step == 8


def test_freeze_bigram_keeps_the_table_and_trains_the_rest(tmp_path, dense_dir):
    from sparse_lens.model import SparseTransformerConfig

    init = tmp_path / "init"
    start = HookedSparseTransformer(SparseTransformerConfig(**MODEL, seed=3))
    with torch.no_grad():
        start.bigram.W_bigram.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
    start.save_pretrained(init)
    cfg = config(tmp_path, dense_dir, train_steps=4, checkpoint_every=4, eval_every=0, bridges__sparse_init=str(init),
                 bridges__freeze_bigram=True, sparsity__anneal_start=0.0, sparsity__anneal_end=0.0)
    assert train_bridges(cfg).status == "completed"
    before, after = load_file(str(init / MODEL_FILE)), load_file(str(latest_checkpoint(tmp_path / "run") / MODEL_FILE))
    assert torch.equal(after["bigram.W_bigram"], before["bigram.W_bigram"])
    changed = [k for k in after if k != "bigram.W_bigram" and k in before and not torch.equal(after[k], before[k])]
    assert changed, "nothing but the frozen table was in the checkpoint, or nothing trained"


def test_training_rows_are_packed_text_without_padding():
    """The bridge losses do not mask padding because the trainer's rows never hold any: pack() cuts
    the <|endoftext|>-joined stream of documents into full rows and drops the remainder."""
    from sparse_lens.data import pack
    from sparse_lens.data.packing import tokenize_stream

    from tokenizers import Tokenizer

    from sparse_lens.training.data import default_tokenizer_path

    tok = Tokenizer.from_file(str(default_tokenizer_path()))
    docs = ["x = 1\n", "def f(a):\n    return a\n", "print('hi')\n" * 3, "y = [1, 2]\n"]
    rows = pack(docs, tok, n_ctx=8, use_cache=False)
    stream = torch.as_tensor(tokenize_stream(tok, docs)).long()
    assert rows.shape[1] == 8 and rows.shape[0] == len(stream) // 8
    assert torch.equal(rows.flatten(), stream[: rows.numel()])  # every row is a contiguous slice: no pad anywhere
