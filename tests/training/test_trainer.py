"""The training loop: learning, resume bit-identity, NaN stop, Ctrl-C checkpoint, dense mode, metrics."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file

from sparse_lens.model import HookedSparseTransformer
from sparse_lens.training import Trainer, TrainingDiverged, export_checkpoint, train
from sparse_lens.training.checkpoint import OPTIMIZER_FILE, latest_checkpoint, list_checkpoints, read_state
from sparse_lens.training.metrics import read_metrics

from .conftest import final_weights


def test_sparse_training_learns_and_reaches_target(tiny):
    cfg = tiny(train_steps=30, eval_every=10)
    result = train(cfg)
    assert result.status == "completed" and result.step == 30
    records = read_metrics(cfg.out_dir)
    assert records[0]["step"] == 0 and records[0]["val_loss"] > records[-1]["val_loss"] + 0.3
    last = records[-1]
    assert last["l0_current"] == last["l0_target"] == 0.125
    for name, nnz in last["nnz"].items():  # exactly k per matrix (this config forces no extras)
        assert nnz <= last["k"][name]
        if ".W_" in name:
            assert nnz == last["k"][name], name
    assert last["forced_extra"] == 0
    for key in ("loss", "lr", "tokens_per_s", "tokens", "grad_rms"):
        assert key in last
    state = read_state(result.checkpoint)
    assert state["step"] == 30 and state["tokens"] == 30 * 8 * 16


def test_resume_is_bit_identical(tiny, tmp_path):
    full = tiny(out_dir=str(tmp_path / "full"))
    train(full)
    split = tiny(out_dir=str(tmp_path / "split"), checkpoint_every=0, eval_every=5)
    first = train(split, stop_after=6)
    assert first.status == "stopped" and first.step == 6
    second = train(split, resume=True)
    assert second.status == "completed" and second.step == 12
    a, b = final_weights(tmp_path / "full"), final_weights(tmp_path / "split")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    opt_a = load_file(str(latest_checkpoint(tmp_path / "full") / OPTIMIZER_FILE))
    opt_b = load_file(str(latest_checkpoint(tmp_path / "split") / OPTIMIZER_FILE))
    for name in opt_a:
        assert torch.equal(opt_a[name], opt_b[name]), name
    steps = [r["step"] for r in read_metrics(tmp_path / "split") if "loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 12  # one continuous log


def test_resume_from_different_config_is_rejected(tiny, tmp_path):
    cfg = tiny(out_dir=str(tmp_path / "a"))
    train(cfg, stop_after=2)
    other = tiny(out_dir=str(tmp_path / "a"), optimizer__lr=0.02)
    with pytest.raises(ValueError, match=r"optimizer\.lr"):
        Trainer(other, resume=True)
    other = tiny(out_dir=str(tmp_path / "a"), model__weight_sparsity=0.25)
    with pytest.raises(ValueError, match=r"model\.weight_sparsity"):
        Trainer(other, resume=True)
    with pytest.raises(ValueError, match="resume: no checkpoint"):
        Trainer(tiny(out_dir=str(tmp_path / "empty")), resume=True)


def test_nan_loss_stops_with_step_and_last_checkpoint(tiny):
    cfg = tiny(checkpoint_every=3)
    trainer = Trainer(cfg)
    calls = {"n": 0}

    def poison(x, hook):
        calls["n"] += 1
        return x * float("nan") if calls["n"] >= 7 else x  # 2 eval calls, steps 1..4 fine, step 5 poisoned

    trainer.model.add_hook("hook_embed", poison, is_permanent=True)
    try:
        with pytest.raises(TrainingDiverged) as err:
            trainer.run()
    finally:
        trainer.close()
    message = str(err.value)
    assert "at step 5" in message and "nan" in message
    assert "step_00000003" in message  # the last good checkpoint
    assert [p.name for p in list_checkpoints(cfg.out_dir)] == ["step_00000003"]


def test_sigint_saves_checkpoint_and_stops_cleanly(tiny):
    cfg = tiny(checkpoint_every=0)
    trainer = Trainer(cfg)
    calls = {"n": 0}

    def interrupt(x, hook):
        calls["n"] += 1
        if calls["n"] == 4:  # 2 eval calls, then during step 2
            os.kill(os.getpid(), signal.SIGINT)
        return x

    trainer.model.add_hook("hook_embed", interrupt, is_permanent=True)
    try:
        result = trainer.run()
    finally:
        trainer.close()
    assert result.status == "interrupted" and result.step == 2  # the step in progress finishes
    assert result.checkpoint is not None and result.checkpoint.name == "step_00000002"
    assert read_state(result.checkpoint)["step"] == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    resumed = train(tiny(checkpoint_every=0), resume=True)
    assert resumed.status == "completed" and resumed.step == 12


def test_dense_training_has_no_sparsity(tiny):
    cfg = tiny(model__weight_sparsity=None, model__activation_sparsity=None)
    result = train(cfg)
    assert result.status == "completed"
    last = read_metrics(cfg.out_dir)[-1]
    assert "nnz" not in last and "l0_current" not in last
    weights = final_weights(cfg.out_dir)
    assert bool((weights["blocks.0.mlp.W_in"] != 0).all())


def test_export_round_trip(tiny, tmp_path):
    cfg = tiny()
    result = train(cfg)
    out = export_checkpoint(cfg.out_dir, tmp_path / "exported")
    model = HookedSparseTransformer.from_pretrained(out)
    weights = final_weights(cfg.out_dir)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, weights[name]), name
    summary = json.loads((out / "training.json").read_text())
    assert summary["step"] == result.step == 12
    assert model.cfg.weight_sparsity == 0.125


def test_from_pretrained_loads_a_run_or_a_checkpoint(tiny, tmp_path):
    """A run directory loads its latest checkpoint, a checkpoint directory itself; overrides apply."""
    cfg = tiny()
    train(cfg)
    tokens = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    from_run = HookedSparseTransformer.from_pretrained(cfg.out_dir)
    weights = final_weights(cfg.out_dir)
    assert all(torch.equal(t, weights[n]) for n, t in from_run.state_dict().items())
    first = list_checkpoints(cfg.out_dir)[0]
    from_ckpt = HookedSparseTransformer.from_pretrained(first)
    assert read_state(first)["step"] == 4
    assert not torch.equal(from_ckpt(tokens), from_run(tokens))  # step 4, not the last step
    assert torch.equal(from_ckpt.blocks[0].mlp.W_in, load_file(str(first / "model.safetensors"))["blocks.0.mlp.W_in"])
    assert from_run.cfg.activation_sparsity == cfg.model.activation_sparsity == 0.25
    topk = HookedSparseTransformer.from_pretrained(cfg.out_dir, activation_sparsity=0.5)
    assert topk.cfg.activation_sparsity == 0.5 and not torch.equal(topk(tokens), from_run(tokens))
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ValueError, match="no checkpoint under"):
        HookedSparseTransformer.from_pretrained(tmp_path / "empty")


def test_fresh_run_refuses_to_overwrite_checkpoints(tiny):
    cfg = tiny()
    train(cfg, stop_after=2)
    with pytest.raises(ValueError, match=r"^out_dir: .* already holds checkpoints"):
        Trainer(cfg)
    result = train(cfg, resume="auto")
    assert result.step == 12


def test_resume_with_other_data_is_refused_unless_allowed_and_then_recorded(tiny, tmp_path):
    import dataclasses

    from sparse_lens.training.data import synthetic_data

    cfg = tiny(out_dir=str(tmp_path / "a"))
    train(cfg, stop_after=4)
    other_data = synthetic_data(dataclasses.replace(cfg.data, synthetic_rows=160), cfg.n_ctx, cfg.model.d_vocab, cfg.seed)
    with pytest.raises(ValueError, match=r"resume: data differs .*--allow-data-change"):
        Trainer(cfg, resume=True, data=other_data)
    result = train(cfg, resume=True, data=other_data, allow_data_change=True)
    assert result.status == "completed" and result.step == 12
    changes = read_state(latest_checkpoint(tmp_path / "a"))["data_changes"]
    assert len(changes) == 1 and changes[0]["step"] == 4 and changes[0]["from"] != changes[0]["to"]
    assert changes[0]["to"] == other_data.description["fingerprint"]


def test_init_from_continues_a_trained_model(tiny, tmp_path):
    first = tiny(out_dir=str(tmp_path / "first"), train_steps=20)
    train(first)
    donor = final_weights(tmp_path / "first")
    later = tiny(out_dir=str(tmp_path / "later"), init_from=str(tmp_path / "first"), train_steps=6,
                 sparsity__anneal_start=0.0, sparsity__anneal_end=0.0)
    trainer = Trainer(later)
    try:
        state = trainer.model.state_dict()
        for name, tensor in donor.items():  # starts exactly at the donor (already at the target L0: the projection keeps it)
            assert torch.equal(state[name], tensor), name
        start_loss = trainer.evaluate()
        result = trainer.run()
    finally:
        trainer.close()
    assert result.status == "completed"
    fresh = tiny(out_dir=str(tmp_path / "fresh"), train_steps=6)
    train(fresh)
    records = {r["step"]: r for r in read_metrics(tmp_path / "later") if "val_loss" in r}
    scratch = {r["step"]: r for r in read_metrics(tmp_path / "fresh") if "val_loss" in r}
    assert records[0]["val_loss"] == pytest.approx(start_loss)
    donor_end = [r for r in read_metrics(tmp_path / "first") if "val_loss" in r][-1]["val_loss"]
    assert records[0]["val_loss"] == pytest.approx(donor_end)  # the donor's loss, not a random init's
    assert records[0]["val_loss"] < scratch[0]["val_loss"] - 0.3
    assert read_state(result.checkpoint)["config"]["init_from"] == str(tmp_path / "first")


def test_init_from_rejects_another_architecture_or_a_missing_model(tiny, tmp_path):
    train(tiny(out_dir=str(tmp_path / "first"), train_steps=2))
    with pytest.raises(ValueError, match=r"init_from: .* another architecture — d_mlp: 64 .* != 128"):
        Trainer(tiny(out_dir=str(tmp_path / "b"), init_from=str(tmp_path / "first"), model__d_mlp=128))
    with pytest.raises(ValueError, match=r"init_from: cannot load"):
        Trainer(tiny(out_dir=str(tmp_path / "c"), init_from=str(tmp_path / "nowhere")))
    with pytest.raises(ValueError, match=r"init_from: expected the path"):
        tiny(out_dir=str(tmp_path / "d"), init_from="  ").validate()
