"""A dense model at matched loss: the validation rows, the loss on them, and the choice of checkpoint."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sparse_lens.training import TrainingConfig, train
from sparse_lens.training.config import DataConfig
from sparse_lens.training.matching import (
    Candidate, model_data_config, pick_matched, run_candidates, validation_loss, validation_rows)

from .conftest import tiny_dict


def cand(step: int, loss: float, final: bool = True) -> Candidate:
    return Candidate(f"run/step_{step}", step, 100, step * 10, final, loss)


def test_pick_matched_takes_the_closest_within_tolerance():
    candidates = [cand(25, 2.70), cand(50, 2.58), cand(75, 2.52), cand(100, 2.49)]
    assert pick_matched(candidates, 2.567, 0.02).step == 50
    assert pick_matched(candidates, 2.50, 0.02).step == 100      # 0.01 away beats 0.02 away
    assert pick_matched([cand(1, 2.55), cand(2, 2.59)], 2.57, 0.05).step == 2  # a tie goes to the later one
    assert pick_matched(candidates, 2.70, 0.0001).step == 25      # exactly on target


def test_pick_matched_refuses_when_none_is_within_tolerance():
    with pytest.raises(ValueError, match=r"--tolerance: no checkpoint is within 0.02 .* 2\.4000.*closest is run/step_100 at 2\.4900"):
        pick_matched([cand(50, 2.58), cand(100, 2.49)], 2.40, 0.02)
    with pytest.raises(ValueError, match="no candidate has a validation loss"):
        pick_matched([cand(50, None)], 2.40)


def test_run_candidates_final_and_all(tmp_path):
    done = train(TrainingConfig.from_dict(tiny_dict(out_dir=str(tmp_path / "done"), model__weight_sparsity=None)))
    assert done.status == "completed"
    stopped = train(TrainingConfig.from_dict(tiny_dict(out_dir=str(tmp_path / "stopped"))), stop_after=5)
    assert stopped.step == 5
    final = run_candidates([tmp_path / "done", tmp_path / "stopped"], "final")
    assert [(c.step, c.final) for c in final] == [(12, True)]  # the stopped run has no final checkpoint
    every = run_candidates([tmp_path / "done"], "all")
    assert [c.step for c in every] == [4, 8, 12] and [c.final for c in every] == [False, False, True]
    assert [c.step for c in run_candidates([tmp_path / "done"], "all", (5, 12))] == [8, 12]  # --steps 5:12
    assert [c.step for c in run_candidates([tmp_path / "done"], "final", (12, 12))] == [12]
    with pytest.raises(ValueError, match=r"--steps: no final checkpoint of --runs has a step in 5\.\.8"):
        run_candidates([tmp_path / "done"], "final", (5, 8))
    with pytest.raises(ValueError, match="no run has finished"):
        run_candidates([tmp_path / "stopped"], "final")
    with pytest.raises(ValueError, match="--runs: .* holds no training checkpoint"):
        run_candidates([tmp_path], "final")


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> DataConfig:
    """The shipped models' data config, narrowed to 40 stdlib files (their tokenizer, their split rule)."""
    shipped = model_data_config("python-sparse-tiny")
    cache = tmp_path_factory.mktemp("cache")
    return replace(shipped, corpus="stdlib", max_files=40, val_fraction=0.25, cache_dir=str(cache))


def test_step_range_parses_first_last_and_names_what_it_expected():
    import argparse

    from sparse_lens.training.recipes.matched_dense import step_range

    assert step_range("100:250") == (100, 250) and step_range("7:7") == (7, 7)
    for bad in ("250:100", "100", "a:b", "-1:5", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="expected FIRST:LAST"):
            step_range(bad)


def test_validation_rows_are_deterministic_evenly_spaced_and_the_same_for_both_models(small_data):
    from sparse_lens.training.data import load_token_data

    rows = validation_rows(small_data, 128, 8)
    again = validation_rows(small_data, 128, 8)
    assert torch.equal(rows.tokens, again.tokens) and rows.description == again.description
    full = load_token_data(replace(small_data), 128, 2048).validation
    stride = full.shape[0] // 8
    assert rows.description["stride"] == stride and rows.description["split_rows"] == full.shape[0]
    assert torch.equal(rows.tokens, full[::stride][:8])
    # the dense model's data config gives the very same rows (same corpus rule, same tokenizer content)
    dense = replace(model_data_config("python-dense-tiny"), corpus="stdlib", max_files=40, val_fraction=0.25,
                    cache_dir=small_data.cache_dir)
    assert dense.oversample == [] and small_data.oversample == []
    assert torch.equal(validation_rows(dense, 128, 8).tokens, rows.tokens)
    assert validation_rows(small_data, 128, 10**6).description["rows"] == full.shape[0]  # every row if fewer
    with pytest.raises(ValueError, match="rows"):
        validation_rows(small_data, 128, 0)


def test_validation_loss_is_the_mean_next_token_loss_on_those_rows(small_data):
    from sparse_lens.model import HookedSparseTransformer

    rows = validation_rows(small_data, 128, 4)
    model = HookedSparseTransformer.from_pretrained("python-dense-tiny")
    with torch.no_grad():
        logits = model(rows.tokens)
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), rows.tokens[:, 1:].reshape(-1))
    assert math.isclose(validation_loss(model, rows, batch_size=3), float(expected), rel_tol=1e-5)
    assert not model.training


def test_match_loss_command_picks_the_run_at_the_target_and_refuses_otherwise(tmp_path, small_data, capsys):
    from sparse_lens.cli import main
    from sparse_lens.training.trainer import export_checkpoint

    data = {k: v for k, v in small_data.__dict__.items()}
    runs = {}
    for name, steps in (("short", 2), ("long", 10)):
        cfg = tiny_dict(out_dir=str(tmp_path / name), data=data, train_steps=steps, checkpoint_every=5, eval_every=0,
                        model__weight_sparsity=None, model__n_ctx=128, model__d_vocab=2048, batch_size=4)
        runs[name] = train(TrainingConfig.from_dict(cfg)).out_dir
    target = export_checkpoint(runs["long"], tmp_path / "target")
    assert main(["match-loss", "--target", str(target), "--runs", str(runs["short"]), str(runs["long"]), "--rows", "4"]) == 0
    out = capsys.readouterr().out
    assert f"chosen: {runs['long']}/checkpoints/step_00000010 " in out and "+0.0000 from the target" in out
    # only the short run: far from the target, refused with the closest named; nothing is written
    code = main(["match-loss", "--target", str(target), "--runs", str(runs["short"]), "--rows", "4",
                 "--to", str(tmp_path / "never")])
    err = capsys.readouterr().err
    assert code == 2 and "--tolerance: no checkpoint is within 0.02" in err and "step_00000002" in err
    assert not (tmp_path / "never").exists()
    assert json.loads((Path(target) / "training.json").read_text())["step"] == 10


def test_model_card_records_shape_data_hardware_and_the_matched_rows_loss(tmp_path, small_data):
    """`finish` (the shipped models' card): the loss on `match-loss`'s rows (the number compared across
    models) equals `validation_loss` on those rows, and the card names the shape, fractions, data,
    hardware and the nonzeros of every matrix."""
    from sparse_lens.model import HookedSparseTransformer
    from sparse_lens.training.recipes.shipped_models import finish
    from sparse_lens.training.trainer import export_checkpoint

    data = {k: v for k, v in small_data.__dict__.items()}
    cfg = tiny_dict(out_dir=str(tmp_path / "run"), data=data, train_steps=3, eval_every=0, model__n_ctx=128,
                    model__d_vocab=2048, batch_size=4)
    out = export_checkpoint(train(TrainingConfig.from_dict(cfg)).out_dir, tmp_path / "model")
    card = finish(out, means_tokens=256, eval_pairs=2)
    model = HookedSparseTransformer.from_pretrained(out)
    rows = validation_rows(model_data_config(out), model.cfg.n_ctx)
    assert card["validation"]["loss"] == pytest.approx(validation_loss(model, rows), rel=1e-6)
    assert card["validation"]["rows"]["rows_hash"] == rows.description["rows_hash"]
    assert "CPU core(s)" in card["hardware"]
    readme = (out / "README.md").read_text()
    assert f"**{card['validation']['loss']:.4f}**" in readme
    assert f"d_model {model.cfg.d_model}, d_mlp {model.cfg.d_mlp}" in readme and "weight L0" in readme
    assert "`blocks.0.attn.W_Q`" in readme and "± stderr" in readme
    assert json.loads((out / "training.json").read_text())["data_changes"] == []
    assert "continued from" not in readme
    from sparse_lens.training.recipes.shipped_models import model_card_markdown

    training = {**card["training"], "config": {**card["training"]["config"], "init_from": "python-sparse-small"}}
    assert "continued from `python-sparse-small` (its weights" in model_card_markdown({**card, "training": training}, "")
