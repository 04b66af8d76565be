"""Circuits and node means record the model they belong to and refuse another one (unless
strict=False); older circuit files load with an explicit unknown model; repr is one line."""

import json
import os
import stat
import warnings

import pytest
import torch

from sparse_lens.model import HookedSparseTransformer
from sparse_lens.model.identity import weights_fingerprint
from sparse_lens.pruning.circuit import Circuit
from sparse_lens.pruning.config import PruningConfig
from sparse_lens.pruning.mean_ablation import compute_node_means
from sparse_lens.pruning.pipeline import TaskData, prune
from sparse_lens.pruning.task_data import node_means_for

from .planted import planted_batch, planted_model, pretraining_batches


@pytest.fixture(scope="module")
def pruned():
    model = planted_model()
    means = compute_node_means(model, pretraining_batches())
    data = TaskData(train=planted_batch(64, 0), fit=planted_batch(32, 1), test=planted_batch(32, 2))
    circuit = prune(model, data, means, PruningConfig(steps=20, seed=1), task="planted", model_name="planted")
    return model, data, circuit


def other_weights(model):
    other = planted_model()
    with torch.no_grad():
        other.blocks[0].mlp.W_out.mul_(1.5)  # same shape, other weights
    return other


def test_a_circuit_applies_only_to_its_model(pruned):
    model, data, circuit = pruned
    assert circuit.model == "planted" and circuit.model_fingerprint == weights_fingerprint(model)
    with circuit.applied(model):
        model(data.test.tokens)
    other = other_weights(model)
    with pytest.raises(ValueError, match="circuit 'planted' belongs to model 'planted'.*strict=False"):
        with circuit.applied(other):
            pass
    assert all(not hp.fwd_hooks for hp in other.hook_dict.values())
    with circuit.applied(other, strict=False):
        other(data.test.tokens)


def test_the_model_is_saved_and_older_files_load_as_unknown(tmp_path, pruned):
    model, data, circuit = pruned
    circuit.save(tmp_path / "c.json")
    again = Circuit.load(tmp_path / "c.json")
    assert again.model_fingerprint == circuit.model_fingerprint and again.model == "planted"
    meta = json.loads((tmp_path / "c.json").read_text())
    del meta["model_fingerprint"]  # a circuit written before fingerprints were recorded
    (tmp_path / "c.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="records no model fingerprint"):
        old = Circuit.load(tmp_path / "c.json")
    assert old.model_fingerprint is None and "weights unknown" in repr(old)
    with pytest.warns(UserWarning, match="cannot be checked"):
        with old.applied(model):
            pass


def test_circuit_files_take_the_umask(tmp_path, pruned):
    old = os.umask(0o022)
    try:
        pruned[2].save(tmp_path / "out" / "c.json")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "out").iterdir()}
    assert modes == {"c.json": 0o644, "c.safetensors": 0o644}


def test_repr_is_a_one_line_summary(pruned):
    circuit = pruned[2]
    text = repr(circuit)
    assert "\n" not in text and len(text) < 300
    for part in ("'planted'", f"{circuit.n_nodes} nodes", f"{circuit.n_edges} edges", circuit.model_fingerprint,
                 "held-out sufficiency"):
        assert part in text


def test_node_means_of_another_model_are_refused():
    sparse = HookedSparseTransformer.from_pretrained("python-sparse-tiny")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the shipped means record their model: no warning
        means = node_means_for(sparse, "python-sparse-tiny")
    assert set(means)
    with pytest.raises(ValueError, match="node means .*python-dense-tiny.* belongs to model 'python-dense-tiny'.*strict=False"):
        node_means_for(sparse, "python-dense-tiny")
    assert set(node_means_for(sparse, "python-dense-tiny", strict=False)) == set(means)
