"""`sparse-lens reproduce`: the report's numbers are the pruned circuits' numbers; bad input writes nothing."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from sparse_lens.cli import main
from sparse_lens.pruning.circuit import Circuit
from sparse_lens.pruning.reproduce import ReproduceConfig, build_report, report_markdown, reproduce

SPARSE, DENSE = "python-sparse-tiny", "python-dense-tiny"  # shipped, with their node means


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    from sparse_lens.training.matching import model_data_config

    return replace(model_data_config(SPARSE), corpus="stdlib", max_files=40, val_fraction=0.25,
                   cache_dir=str(tmp_path_factory.mktemp("cache")))


FAST = dict(sparse=SPARSE, dense=DENSE, tasks=("single_double_quote", "while_return_true"), seeds=(0, 1), target_loss=0.1,
            steps=4, val_rows=4, eval_pairs=16, n_train=16, n_fit=8, n_test=8)


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory, small_data):
    out = tmp_path_factory.mktemp("reproduce") / "report"
    cfg = ReproduceConfig.fast(**FAST)
    plotted = []
    report = reproduce(cfg, out, data=small_data, command="test", progress_bar=False,
                       plot=lambda d, r: plotted.append(r) or [d / "plots" / "x.png"])
    return out, report, plotted


def test_report_numbers_are_those_of_the_circuits_it_pruned(fast_run):
    out, report, plotted = fast_run
    saved = json.loads((out / "report.json").read_text())
    assert saved["geometric_mean_ratio"] == pytest.approx(report["geometric_mean_ratio"])
    reached = [r["task"] for r in report["tasks_considered"] if r["reached"]]
    assert reached == ["while_return_true"]  # the quote task is above 0.1 on the sparse model: not pruned
    assert [r["task"] for r in report["tasks"]] == reached
    ratios = []
    for row in report["tasks"]:
        assert [s["seed"] for s in row["seeds"]] == [0, 1]
        for s in row["seeds"]:
            sparse = Circuit.load(out / f"seed_{s['seed']}" / SPARSE / f"{row['task']}.json")
            dense = Circuit.load(out / f"seed_{s['seed']}" / DENSE / f"{row['task']}.json")
            assert (s["sparse_nodes"], s["sparse_edges"]) == (sparse.n_nodes, sparse.n_edges)
            assert (s["dense_nodes"], s["dense_edges"]) == (dense.n_nodes, dense.n_edges)
            assert s["sparse_sufficiency"] == pytest.approx(sparse.losses["test_sufficiency_loss"])
            assert s["dense_necessity"] == pytest.approx(dense.losses["test_necessity_loss"])
            matched = bool(sparse.losses.get("reachable") and dense.losses.get("reachable"))
            assert s["matched"] == matched
            if matched:
                assert s["edge_ratio"] == pytest.approx(dense.n_edges / max(sparse.n_edges, 1))
                ratios.append(s["edge_ratio"])
    if ratios:
        assert report["geometric_mean_ratio"] == pytest.approx(math.exp(sum(map(math.log, ratios)) / len(ratios)))
        assert report["ratio_spread"]["all"]["n"] == len(ratios)
        assert report["ratio_spread"]["all"]["min"] == pytest.approx(min(ratios))
    assert report["quote_circuit"] is None and "`single_double_quote` was not pruned" in (out / "report.md").read_text()
    for seed in (0, 1):  # each seed directory is a prune-compare run (`sparse-lens plot` reads it)
        comparison = json.loads((out / f"seed_{seed}" / "comparison.json").read_text())
        assert {r["task"] for r in comparison["tasks"]} == set(reached)
    assert plotted and saved["plots"] == ["plots/x.png"]


def test_report_records_both_validation_losses_on_the_same_rows_and_the_command(fast_run, small_data):
    from sparse_lens.model import HookedSparseTransformer
    from sparse_lens.training.matching import validation_loss, validation_rows

    out, report, _ = fast_run
    rows = validation_rows(small_data, 128, 4)
    assert report["validation"]["rows"] == rows.description
    for side, name in (("sparse", SPARSE), ("dense", DENSE)):
        expected = validation_loss(HookedSparseTransformer.from_pretrained(name), rows)
        assert report["validation"][f"{side}_loss"] == pytest.approx(expected)
    md = (out / "report.md").read_text()
    assert f"**{SPARSE} {report['validation']['sparse_loss']:.4f}**" in md and "Command: `test`" in md
    assert report["wall_s"] > 0 and report["config"]["seeds"] == [0, 1]
    if report["geometric_mean_ratio"] is not None:
        assert f"**dense/sparse edges: {report['geometric_mean_ratio']:.2f}×**" in md


def test_resume_keeps_the_circuits_made_with_the_same_settings_and_prunes_only_the_rest(fast_run, small_data, tmp_path, monkeypatch):
    import shutil

    import sparse_lens.pruning.runner as runner

    out, report, _ = fast_run
    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed)
    (resumed / "seed_1" / DENSE / "while_return_true.json").unlink()  # a run stopped before this circuit was saved
    changed = resumed / "seed_0" / SPARSE / "while_return_true.json"  # a circuit made with other settings
    meta = json.loads(changed.read_text())
    meta["config"]["steps"] = 5
    changed.write_text(json.dumps(meta))
    pruned = []
    real = runner.prune_tasks
    monkeypatch.setattr(runner, "prune_tasks", lambda job, tasks, cfg, out_dir, **kw: pruned.append(
        (cfg.seed, Path(out_dir).name, list(tasks))) or real(job, tasks, cfg, out_dir, **kw))
    again = reproduce(ReproduceConfig.fast(**FAST), resumed, data=small_data, command="again", progress_bar=False, resume=True)
    assert sorted(pruned) == [(0, SPARSE, ["while_return_true"]), (1, DENSE, ["while_return_true"])]
    assert sorted((r["seed"], r["model"]) for r in again["reused"]) == [(0, DENSE), (1, SPARSE)]
    before = {(s["seed"], row["task"]): s for row in report["tasks"] for s in row["seeds"]}
    after = {(s["seed"], row["task"]): s for row in again["tasks"] for s in row["seeds"]}
    assert (after[0, "while_return_true"]["dense_edges"], after[1, "while_return_true"]["sparse_edges"]) == (
        before[0, "while_return_true"]["dense_edges"], before[1, "while_return_true"]["sparse_edges"])  # the kept ones
    for seed in (0, 1):  # every circuit is in its summary again, and the report reads them
        for label in (SPARSE, DENSE):
            rows = json.loads((resumed / f"seed_{seed}" / label / "summary.json").read_text())["tasks"]
            assert [r["task"] for r in rows] == ["while_return_true"]
            circuit = Circuit.load(resumed / f"seed_{seed}" / label / "while_return_true.json")
            side = "sparse" if label == SPARSE else "dense"
            assert after[seed, "while_return_true"][f"{side}_edges"] == circuit.n_edges
    assert "2 of 4 circuits were kept from an earlier run" in (resumed / "report.md").read_text()
    with pytest.raises(ValueError, match=r"--resume: .* n_train 16 \(now 32\)"):  # other pairs: nothing to reuse
        reproduce(ReproduceConfig.fast(**{**FAST, "n_train": 32}), resumed, data=small_data, progress_bar=False, resume=True)


def test_build_report_ratio_and_spread_from_planted_summaries():
    def summary(rows):
        return {"tasks": [{"task": t, "reachable": ok, "nodes": e, "edges": e, "fit_loss": 0.1, "sufficiency_loss": 0.1,
                           "necessity_loss": 2.0, "full_loss": 0.05} for t, ok, e in rows]}

    from sparse_lens.pruning.compare import compare_summaries

    per_seed = []
    for seed, (a, b) in enumerate(((10, 4), (20, 4))):  # dense edges 160 / 64 on both seeds
        s, d = summary([("a", True, a), ("b", True, b), ("c", False, 9)]), summary([("a", True, 160), ("b", True, 64), ("c", True, 9)])
        per_seed.append({"seed": seed, "comparison": compare_summaries(s, d), "summaries": {"sparse": s, "dense": d}})
    losses = {"rows": {"rows": 4, "tokens": 512, "stride": 2}, "sparse": 3.0, "dense": 2.99}
    report = build_report(ReproduceConfig(), ("sp", "de"), losses, [], per_seed)
    # ratios: a 16, 8; b 16, 16 -> geometric mean (16*8*16*16)^(1/4)
    assert report["geometric_mean_ratio"] == pytest.approx((16 * 8 * 16 * 16) ** 0.25)
    by_task = {r["task"]: r for r in report["tasks"]}
    assert by_task["a"]["edge_ratio_geometric_mean"] == pytest.approx(math.sqrt(128))
    assert by_task["c"]["edge_ratio_geometric_mean"] is None  # missed by the sparse model
    assert report["ratio_spread"]["over_tasks"]["min"] == pytest.approx(math.sqrt(128))
    assert report["ratio_spread"]["over_seeds"]["max"] == pytest.approx(16)
    assert "| c | 0 | 9 / 9 | 9 / 9 | — (target missed)" in report_markdown(report)


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["reproduce", "--task", "no_such_task", "--out", str(out)]) == 2
    assert "--task: unknown task 'no_such_task'" in capsys.readouterr().err and not out.exists()
    assert main(["reproduce", "--sparse", SPARSE, "--dense", SPARSE, "--out", str(out)]) == 2
    assert "same name" in capsys.readouterr().err and not out.exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["reproduce", "--sparse", SPARSE, "--dense", DENSE, "--out", str(other)]) == 2
    assert "--out" in capsys.readouterr().err and [p.name for p in other.iterdir()] == ["notes.txt"]


def test_a_pair_with_different_tokenizers_is_refused(tmp_path, capsys):
    from sparse_lens.data import train_tokenizer
    from sparse_lens.model import HookedSparseTransformer

    model = HookedSparseTransformer.from_pretrained(DENSE)
    model.set_tokenizer(train_tokenizer(["def f(x):\n    return x\n"] * 20, vocab_size=300))
    model.save_pretrained(tmp_path / "other-tokenizer")
    out = tmp_path / "out"
    assert main(["reproduce", "--sparse", SPARSE, "--dense", str(tmp_path / "other-tokenizer"), "--out", str(out),
                 "--no-progress"]) == 2
    assert "another tokenizer" in capsys.readouterr().err and not out.exists()


def test_prune_compare_reports_both_validation_losses_on_the_same_rows(monkeypatch, small_data):
    import argparse

    import sparse_lens.training.matching as matching
    from sparse_lens.model import HookedSparseTransformer
    from sparse_lens.pruning.compare import _validation

    monkeypatch.setattr(matching, "model_data_config", lambda spec: small_data)
    got = _validation(argparse.Namespace(sparse=SPARSE, dense=DENSE, val_rows=4), None)["validation"]
    rows = matching.validation_rows(small_data, 128, 4)
    assert got["rows"] == rows.description
    assert got["sparse_loss"] == pytest.approx(matching.validation_loss(HookedSparseTransformer.from_pretrained(SPARSE), rows))
    assert got["dense_loss"] == pytest.approx(matching.validation_loss(HookedSparseTransformer.from_pretrained(DENSE), rows))
    # two models with no recorded pretraining data: the reason instead of numbers
    monkeypatch.setattr(matching, "model_data_config", lambda spec: (_ for _ in ()).throw(FileNotFoundError("no training.json")))
    assert "no training.json" in _validation(argparse.Namespace(sparse=SPARSE, dense=DENSE, val_rows=4), None)["validation_error"]
