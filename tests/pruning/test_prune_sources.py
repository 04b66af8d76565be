"""`prune` takes the task sources `tasks eval` takes (--tasks-file) and --device; worker processes
register the file's tasks again."""

import json

import pytest

from sparse_lens.cli import build_parser
from sparse_lens.pruning.cli import check_prune_arguments
from sparse_lens.pruning.runner import PruneJob
from sparse_lens.tasks import task_names, unregister_task


def write_pairs(path, n=48):
    rows = []
    for i in range(n):
        name = "abcdefgh"[i % 8] + str(i)
        rows.append({"name": "list_or_tuple", "positive": f"{name} = [{i}, {i + 1}", "negative": f"{name} = ({i}, {i + 1}",
                     "positive_completion": "]", "negative_completion": ")", "split": "train" if i % 4 else "test"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prune_takes_a_tasks_file_and_a_device(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.jsonl")
    args = build_parser().parse_args(["prune", "python-sparse-tiny", "--tasks-file", str(pairs), "--task", "list_or_tuple",
                                      "--device", "cpu", "--out", str(tmp_path / "out")])
    try:
        assert check_prune_arguments(args) == (["list_or_tuple"], "cpu")
    finally:
        unregister_task("list_or_tuple")
    assert "list_or_tuple" not in task_names()  # as in a fresh worker process of the sweep
    job = PruneJob(model="python-sparse-tiny", task="list_or_tuple", n_train=8, n_fit=4, n_test=4, device="cpu",
                   tasks_files=(str(pairs),))
    try:
        model, means, data = job.load()
    finally:
        unregister_task("list_or_tuple")
    assert model.cfg.device == "cpu" and len(data.train) == 16 and len(data.test) == 8
    assert not (tmp_path / "out").exists()


def test_prune_runs_the_frozen_products_sparse_when_asked_with_the_same_circuit(monkeypatch):
    import torch

    import sparse_lens.model.execution as execution
    from sparse_lens.pruning.config import PruningConfig

    calls = []
    real = execution.sparse_matmul
    monkeypatch.setattr(execution, "sparse_matmul", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = PruningConfig(steps=3, discretization="bisected")
    circuits = {}
    for mode in ("dense", "sparse"):
        job = PruneJob(model="python-sparse-tiny", task="single_double_quote", n_train=16, n_fit=8, n_test=8, execution=mode)
        before = len(calls)
        circuits[mode] = job(cfg)
        assert (len(calls) > before) == (mode == "sparse")  # mask training, bisection and validation ran sparse
        model, _, _ = job.load()
        assert model.execution == mode
    for site, mask in circuits["dense"].masks.items():
        assert torch.equal(mask, circuits["sparse"].masks[site]), site
    for key, value in circuits["dense"].losses.items():
        if isinstance(value, float) and "loss" in key:  # not the timings
            assert circuits["sparse"].losses[key] == pytest.approx(value, abs=1e-4), key


def test_sparse_execution_of_a_transformer_lens_model_is_a_clear_error():
    from tests.pruning.test_transformer_lens_models import ENTRY_POINT

    with pytest.raises(ValueError, match="--execution: 'sparse' needs a sparse_lens model"):
        PruneJob(model=ENTRY_POINT, task="single_double_quote", execution="sparse").load()


def test_the_execution_choices_of_prune_are_the_models_modes():
    from sparse_lens.model.execution import EXECUTION_MODES
    from sparse_lens.pruning import cli

    assert cli.EXECUTION_MODES == EXECUTION_MODES
