"""Pruning diagnostics (Circuit.diagnostics): the bisection's (k, loss) evaluations and the
mask-training curves are recorded as they happened, describe the circuit that was returned, and
survive a save / load."""

import json

import pytest
import torch

from sparse_lens.pruning.circuit import Circuit
from sparse_lens.pruning.config import PruningConfig
from sparse_lens.pruning.discretize import BisectionResult, bisect_k, is_non_increasing
from sparse_lens.pruning.mean_ablation import compute_node_means
from sparse_lens.pruning.pipeline import TaskData, prune
from sparse_lens.pruning.task_batch import evaluate_task

from .planted import planted_batch, planted_model, pretraining_batches

STEPS = 120


@pytest.fixture(scope="module")
def pruned():
    model = planted_model()
    means = compute_node_means(model, pretraining_batches())
    data = TaskData(train=planted_batch(64, 0), fit=planted_batch(32, 1), test=planted_batch(32, 2))
    circuit = prune(model, data, means, PruningConfig(steps=STEPS, seed=0), task="planted")
    return model, data, circuit


def test_bisection_diagnostics_describe_the_returned_circuit(pruned):
    model, data, circuit = pruned
    bisection = circuit.diagnostics["bisection"]
    assert circuit.losses["reachable"] == 1.0
    assert bisection["target"] == circuit.target_loss
    assert bisection["k"] == circuit.n_nodes  # q and k untied: one mask unit per node
    assert bisection["loss"] == circuit.losses["fit_loss"]
    # the recorded loss is the circuit's own loss on the fit pairs, recomputed from its masks
    assert evaluate_task(model, data.fit, circuit.hooks())[0] == pytest.approx(bisection["loss"], abs=1e-6)
    seen = {e["k"]: e["loss"] for e in bisection["evaluations"]}
    assert len(seen) == len(bisection["evaluations"]) == circuit.losses["bisection_evaluations"]
    assert seen[bisection["k"]] == bisection["loss"]
    # the first evaluation: the units mask training kept (default), or every node ("paper")
    first = bisection["upper"] if bisection.get("upper") is not None else bisection["n_units"]
    assert seen[first] <= bisection["target"] and bisection["evaluations"][0]["k"] == first
    # the chosen k is the smallest evaluated k at the target, and k - 1 was evaluated above it
    assert min(k for k, loss in seen.items() if loss <= bisection["target"]) == bisection["k"]
    assert seen[bisection["k"] - 1] > bisection["target"]
    assert bisection["monotone"] == is_non_increasing(seen)


def test_mask_training_curves_have_one_point_per_step(pruned):
    _, _, circuit = pruned
    curves = circuit.diagnostics["mask_training"]
    assert curves["step"] == list(range(1, STEPS + 1))
    assert len(curves["task_loss"]) == len(curves["kept"]) == STEPS
    assert curves["task_loss"][-1] == circuit.losses["mask_training_final_task_loss"]
    assert curves["kept"][0] > curves["kept"][-1]  # the penalty prunes nodes away during training
    assert circuit.diagnostics["full_fit_loss"] == circuit.losses["full_fit_loss"]
    assert circuit.diagnostics["skipped"] is False


def test_diagnostics_survive_save_and_load_and_old_files_still_load(pruned, tmp_path):
    _, _, circuit = pruned
    path = circuit.save(tmp_path / "planted.json")
    loaded = Circuit.load(path)
    assert loaded.diagnostics == json.loads(json.dumps(circuit.diagnostics))
    meta = json.loads(path.read_text())
    del meta["diagnostics"]  # a circuit saved before diagnostics existed
    path.write_text(json.dumps(meta))
    old = Circuit.load(path)
    assert old.diagnostics == {}
    assert old.n_nodes == circuit.n_nodes and all(torch.equal(old.masks[k], circuit.masks[k]) for k in circuit.masks)


def test_non_monotone_loss_is_flagged():
    assert is_non_increasing({0: 1.0, 5: 0.5, 10: 0.1})
    assert is_non_increasing({10: 0.1, 0: 1.0, 5: 0.1})  # flat is fine; order of evaluation is not
    assert not is_non_increasing({0: 1.0, 5: 0.05, 10: 0.2})
    # a loss curve with a bump: bisection still returns a k, and the flag says not to trust minimality
    curve = {k: 1.0 - k / 16 for k in range(17)} | {8: 0.3, 10: 0.2, 11: 0.4, 12: 0.05, 16: 0.1}
    k, seen = bisect_k(16, curve.__getitem__, target=0.15)
    assert list(seen) == [16, 8, 12, 10, 11]
    result = BisectionResult(k, None, seen[k], seen, 16)
    diagnostics = result.diagnostics(0.15)
    assert diagnostics["k"] == 12 and diagnostics["monotone"] is False
    assert [e["k"] for e in diagnostics["evaluations"]] == list(seen)


def test_skipped_task_records_no_curves():
    model = planted_model()
    means = compute_node_means(model, pretraining_batches())
    # completions swapped: the model gets every pair wrong, so the task counts as not learned
    data = TaskData(*(type(b)(b.tokens, b.last, b.alternative, b.target, b.positive)
                      for b in (planted_batch(8, 0), planted_batch(8, 1), planted_batch(8, 2))))
    circuit = prune(model, data, means, PruningConfig(steps=5), task="planted")
    assert circuit.diagnostics["skipped"] is True
    assert circuit.diagnostics["bisection"] is None and circuit.diagnostics["mask_training"] is None
