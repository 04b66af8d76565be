"""Small circuits to view, built in the test: the planted circuit (three known nodes) and a random
circuit on a tiny random model (every node kind, q-k pairs, attention heads)."""

from __future__ import annotations

import torch

from sparse_lens.pruning import Circuit
from sparse_lens.pruning.discretize import fixed_mask_hooks
from sparse_lens.pruning.edges import count_edges, summarize_edges
from sparse_lens.pruning.mean_ablation import compute_node_means
from sparse_lens.pruning.nodes import node_sites
from sparse_lens.pruning.task_batch import TaskBatch, evaluate_task

from ..model.conftest import make_model
from ..pruning.planted import PLANTED, planted_batch, planted_model, pretraining_batches


def _circuit(model, masks, means, batch, task: str, name: str) -> Circuit:
    circuit = Circuit(task=task, target_loss=0.15, masks=masks, means=means, model=name)
    circuit.edges = summarize_edges(count_edges(model, masks))
    full = evaluate_task(model, batch)[0]
    suff = evaluate_task(model, batch, fixed_mask_hooks(masks, means))[0]
    nec = evaluate_task(model, batch, fixed_mask_hooks({k: ~m for k, m in masks.items()}, means))[0]
    circuit.losses = {"reachable": 1.0, "fit_loss": suff, "test_sufficiency_loss": suff, "test_necessity_loss": nec,
                      "test_full_loss": full}
    return circuit


def planted_circuit():
    """(model, circuit, task pairs, pretraining windows) for the planted three-node circuit."""
    model = planted_model()
    means = compute_node_means(model, pretraining_batches())
    masks = {s.name: torch.zeros(s.shape, dtype=torch.bool) for s in node_sites(model.cfg)}
    for site, indices in PLANTED.items():
        for idx in indices:
            masks[site][idx] = True
    batch = planted_batch(16, 2)
    return model, _circuit(model, masks, means, batch, "planted", "planted"), batch, torch.cat(pretraining_batches(2))


def random_task_batch(n_pairs: int, d_vocab: int, seed: int, length: int = 10) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, d_vocab, (2 * n_pairs, length), generator=g)
    tokens[1::2, :-1] = tokens[0::2, :-1]  # a pair differs in its last token only
    positive = torch.arange(2 * n_pairs) % 2 == 0
    correct = torch.where(positive, torch.tensor(3), torch.tensor(4))
    incorrect = torch.where(positive, torch.tensor(4), torch.tensor(3))
    last = torch.full((2 * n_pairs,), length - 1)
    last[4:8] = length - 3  # some rows are shorter (right-padded)
    return TaskBatch(tokens, last, correct, incorrect, positive)


def random_circuit(keep: float = 0.25, seed: int = 0):
    """(model, circuit, task pairs, pretraining windows) for a random circuit of a tiny random model."""
    model = make_model().eval()
    g = torch.Generator().manual_seed(seed)
    windows = torch.randint(0, 50, (24, 12), generator=g)
    means = compute_node_means(model, [windows])
    masks = {s.name: torch.rand(s.shape, generator=g) < keep for s in node_sites(model.cfg)}
    batch = random_task_batch(12, 50, seed)
    return model, _circuit(model, masks, means, batch, "random", "random-tiny"), batch, windows
