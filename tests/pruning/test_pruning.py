"""Circuit pruning: planted circuit recovery and the invariants of each step."""

import math

import pytest
import torch

from sparse_lens.pruning.calibration import Calibration, fit_calibration
from sparse_lens.pruning.circuit import Circuit
from sparse_lens.pruning.config import PruningConfig
from sparse_lens.pruning.discretize import bisect_k, fixed_mask_hooks
from sparse_lens.pruning.edges import count_edges, summarize_edges
from sparse_lens.pruning.heaviside import heaviside
from sparse_lens.pruning.mask_training import train_masks
from sparse_lens.pruning.masks import NodeMasks
from sparse_lens.pruning.mean_ablation import compute_node_means
from sparse_lens.pruning.nodes import node_sites
from sparse_lens.pruning.pipeline import TaskData, prune
from sparse_lens.pruning.task_batch import evaluate_task

from .planted import PLANTED, planted_batch, planted_model, planted_task, pretraining_batches
from ..model.conftest import make_model


@pytest.fixture(scope="module")
def planted():
    return planted_task(128, 64, 64)


def test_planted_model_solves_task_and_needs_its_nodes(planted):
    model, means, data = planted
    assert evaluate_task(model, data.test)[0] < 0.01
    everything_else = {s.name: torch.ones(s.shape, dtype=torch.bool) for s in node_sites(model.cfg)}
    everything_else["blocks.0.mlp.hook_post"][0] = False
    assert evaluate_task(model, data.test, fixed_mask_hooks(everything_else, means))[0] > 0.6


def test_pruning_finds_exactly_the_planted_nodes(planted):
    model, means, data = planted
    circuit = prune(model, data, means, PruningConfig(steps=300, seed=0), task="planted")
    kept = {}
    for name, idx in circuit.kept_nodes():
        kept.setdefault(name, []).append(idx)
    assert kept == PLANTED
    assert circuit.losses["reachable"] == 1.0
    assert circuit.losses["fit_loss"] <= 0.15
    assert circuit.losses["test_sufficiency_loss"] <= 0.15
    assert circuit.losses["test_necessity_loss"] > 0.6  # ablating the circuit destroys the task
    # edges: read0 -> neuron0 (W_in), neuron0 -> write1 (W_out), embed -> read0, write1 -> unembed
    assert circuit.edges == {**{k: 0 for k in circuit.edges if k not in ("read->neuron", "neuron->write", "embed->read", "write->unembed", "total")},
                             "read->neuron": 1, "neuron->write": 1, "embed->read": 1, "write->unembed": 1, "total": 4}


def test_masks_at_one_reproduce_the_model(planted):
    model = make_model()
    tokens = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(0))
    means = compute_node_means(model, [tokens])
    masks = NodeMasks(model.cfg, means)
    with torch.no_grad():
        for p in masks.tau.values():
            p.fill_(1.0)
    assert torch.equal(model.run_with_hooks(tokens, fwd_hooks=masks.hooks()), model(tokens))


def test_masks_at_zero_give_the_mean_ablated_output():
    model = make_model()
    tokens = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(0))
    means = compute_node_means(model, [torch.randint(0, 50, (4, 16), generator=torch.Generator().manual_seed(1))])
    masks = NodeMasks(model.cfg, means)
    with torch.no_grad():
        for p in masks.tau.values():
            p.fill_(-1.0)
    manual = [(name, lambda x, hook, m=m: m.expand_as(x).clone()) for name, m in means.items()]
    assert torch.allclose(model.run_with_hooks(tokens, fwd_hooks=masks.hooks()),
                          model.run_with_hooks(tokens, fwd_hooks=manual), atol=1e-6)


def test_means_are_taken_after_abstopk_at_the_hook_points():
    model = make_model()
    batch = torch.randint(0, 50, (3, 16), generator=torch.Generator().manual_seed(2))
    means = compute_node_means(model, [batch])
    _, cache = model.run_with_cache(batch)
    for name, mean in means.items():
        assert torch.allclose(mean, cache[name].reshape(-1, *mean.shape).mean(0), atol=1e-6)


def test_tau_stays_clamped(planted):
    model, means, data = planted
    masks = NodeMasks(model.cfg, means)
    train_masks(model, masks, data.train, PruningConfig(steps=40, lr=0.5, init_noise_scale=2.0))
    assert all(float(p.detach().min()) >= -1 and float(p.detach().max()) <= 1 for p in masks.tau.values())
    assert all(p.requires_grad for p in model.parameters())  # model unfrozen afterwards


def test_tied_qk_masks_share_parameters():
    model = make_model()
    means = compute_node_means(model, [torch.randint(0, 50, (2, 8))])
    masks = NodeMasks(model.cfg, means, tie_qk=True)
    assert masks.tau_of("blocks.1.attn.hook_k") is masks.tau_of("blocks.1.attn.hook_q")
    assert len(masks.tau) == len(node_sites(model.cfg)) - model.cfg.n_layers


def test_heaviside_forward_and_surrogate_gradient():
    tau = torch.tensor([-0.5, 0.0, 0.3], requires_grad=True)
    out = heaviside(tau, temperature=0.5)
    assert out.tolist() == [0.0, 0.0, 1.0]
    out.sum().backward()
    s = torch.sigmoid(torch.tensor([-0.5, 0.0, 0.3]) / 0.5)
    assert torch.allclose(tau.grad, s * (1 - s) / 0.5)


@pytest.mark.parametrize("threshold", [0, 1, 37, 99, 100])
def test_bisection_finds_minimal_k_on_monotone_toy(threshold):
    calls = []

    def loss(k):
        calls.append(k)
        return 1.0 if k < threshold else 0.1

    k, seen = bisect_k(100, loss, target=0.15)
    assert k == threshold
    assert len(set(calls)) <= math.ceil(math.log2(101)) + 2
    assert bisect_k(100, lambda k: 1.0, target=0.15)[0] is None  # unreachable


def test_calibration_never_increases_loss():
    g = torch.Generator().manual_seed(0)
    for trial in range(5):
        positive = torch.rand(200, generator=g) < 0.5
        oriented = torch.randn(200, generator=g) * 3 + torch.where(positive, 1.0, -1.0) * (trial - 2)
        cal = fit_calibration(oriented, positive)
        assert cal.loss(oriented, positive) <= Calibration().loss(oriented, positive) + 1e-12
    # a pure bias is fixed by the shift
    positive = torch.arange(100) % 2 == 0
    oriented = torch.where(positive, 1.0, -1.0) + 5.0
    cal = fit_calibration(oriented, positive)
    assert cal.shift < -1 and cal.loss(oriented, positive) < 0.5 * Calibration().loss(oriented, positive)


def test_circuit_round_trip(tmp_path, planted):
    model, means, data = planted
    circuit = prune(model, data, means, PruningConfig(steps=50, seed=1), task="planted", model_name="planted")
    circuit.save(tmp_path / "c.json")
    again = Circuit.load(tmp_path / "c.json")
    assert again.task == "planted" and again.n_nodes == circuit.n_nodes and again.edges == circuit.edges
    assert all(torch.equal(again.masks[k], circuit.masks[k]) for k in circuit.masks)
    with again.applied(model):
        a = model(data.test.tokens)
    assert torch.equal(a, model.run_with_hooks(data.test.tokens, fwd_hooks=circuit.hooks()))
    assert all(not hp.fwd_hooks for hp in model.hook_dict.values())
    (tmp_path / "c.json").write_text("{}")
    with pytest.raises(ValueError, match="not a sparse_lens circuit"):
        Circuit.load(tmp_path / "c.json")


def test_config_validation():
    with pytest.raises(ValueError, match="inv_beta2"):
        PruningConfig(inv_beta2=1.5)
    with pytest.raises(ValueError, match="steps"):
        PruningConfig(steps=0)
    with pytest.raises(ValueError, match="unknown field"):
        PruningConfig.from_dict({"k_coeff": 1})


def _planted_setup():
    model = planted_model()
    means = compute_node_means(model, pretraining_batches())
    data = TaskData(train=planted_batch(64, 0), fit=planted_batch(32, 1), test=planted_batch(32, 2))
    return model, means, data


def _planted_run(cfg):
    model, means, data = _planted_setup()
    return prune(model, data, means, cfg, task="planted")


def test_sweep_batches_and_shared_storage(tmp_path):
    from sparse_lens.pruning.sweep import SEARCH_SPACE, run_sweep

    storage = str(tmp_path / "sweep.journal")
    base = PruningConfig(steps=30)
    result = run_sweep(_planted_run, base, rounds=2, parallel=2, storage=storage, mode="serial")
    assert len(result.trials) == 4
    first = min(result.trials, key=lambda t: t["number"])
    assert first["params"] == {k: getattr(base, k) for k in SEARCH_SPACE}  # seeded at Table 2 centers
    assert result.best is not None and result.best.n_edges == min(t["value"] for t in result.trials)
    again = run_sweep(_planted_run, base, rounds=1, parallel=2, storage=storage, mode="serial")
    assert len(again.trials) == 6  # a second worker joins the same study


class _PlantedJob:
    """A sweep job with both entry points `run_sweep` uses: one config, or a round batched."""

    def __call__(self, cfg):
        return _planted_run(cfg)

    def run_batch(self, cfgs):
        from sparse_lens.pruning.batched_masks import prune_batched

        model, means, data = _planted_setup()
        return prune_batched(model, data, means, cfgs, task="planted")


def test_batched_sweep_finds_what_the_serial_sweep_finds():
    """mode="batched" runs a round as one batched mask training: the same suggestions (same sampler
    seed) give the same circuits as running them one by one."""
    from sparse_lens.pruning.sweep import run_sweep

    base = PruningConfig(steps=20)
    serial = run_sweep(_PlantedJob(), base, rounds=2, parallel=2, mode="serial")
    batched = run_sweep(_PlantedJob(), base, rounds=2, parallel=2, mode="batched")
    key = lambda r: [(t["number"], t["value"], t["n_nodes"]) for t in sorted(r.trials, key=lambda t: t["number"])]  # noqa: E731
    assert len(batched.trials) == 4
    assert key(batched) == key(serial)
    assert batched.best.kept_nodes() == serial.best.kept_nodes()
    with pytest.raises(ValueError, match="run_batch"):
        run_sweep(_planted_run, base, rounds=1, parallel=2, mode="batched")
    with pytest.raises(ValueError, match="mode"):
        run_sweep(_PlantedJob(), base, rounds=1, parallel=2, mode="threads")


@pytest.mark.slow
def test_sweep_runs_in_worker_processes():
    from sparse_lens.pruning.sweep import run_sweep

    result = run_sweep(_planted_run, PruningConfig(steps=20), rounds=1, parallel=2, mode="processes")
    assert len(result.trials) == 2


def test_length_chunks_give_the_same_differences_and_mask_gradient():
    """Length-sorted chunks trim padding without changing any sequence's logit difference, and the
    chunked mask-training gradient equals the gradient of one padded batch."""
    from sparse_lens.pruning.task_batch import (
        TaskBatch, chunked_difference, length_chunks, logit_difference, task_logits, task_loss_from_difference,
    )  # fmt: skip

    model = make_model(n_layers=2, d_model=32, n_ctx=24, d_vocab=50, seed=3)
    g = torch.Generator().manual_seed(0)
    n = 40
    tokens = torch.randint(1, 50, (n, 24), generator=g)
    last = torch.randint(2, 24, (n,), generator=g)
    for i, l in enumerate(last):
        tokens[i, l + 1 :] = 0  # right padding
    batch = TaskBatch(tokens, last, torch.randint(0, 50, (n,), generator=g), torch.randint(0, 50, (n,), generator=g),
                      torch.arange(n) % 2 == 0)
    chunks = length_chunks(batch, 8)
    assert sorted(torch.cat(chunks).tolist()) == list(range(n))
    assert all(batch.last[c].max() <= batch.last[d].min() for c, d in zip(chunks, chunks[1:]))
    with torch.no_grad():
        whole = logit_difference(task_logits(model, batch), batch)
        assert torch.allclose(chunked_difference(model, batch, rows_per_chunk=8), whole, atol=1e-5)
    means = compute_node_means(model, [torch.randint(1, 50, (4, 24), generator=g)])
    masks = NodeMasks(model.cfg, means)
    masks.init_(0.1, 0.5, torch.Generator().manual_seed(1))
    model.requires_grad_(False)
    task_loss_from_difference(logit_difference(task_logits(model, batch, masks.hooks()), batch)).backward()
    expected = {k: p.grad.clone() for k, p in masks.tau.items()}
    masks.zero_grad()
    for rows in length_chunks(batch, 8):
        chunk = batch.select(rows)
        (torch.nn.functional.softplus(-logit_difference(task_logits(model, chunk, masks.hooks()), chunk)).sum() / n).backward()
    for k, p in masks.tau.items():
        assert torch.allclose(p.grad, expected[k], atol=1e-6), k
    assert any(p.grad.abs().sum() > 0 for p in masks.tau.values())


def test_a_task_the_model_has_not_learned_is_reported_unreachable_without_training(planted, monkeypatch):
    import sparse_lens.pruning.pipeline as pipeline

    model, means, data = planted
    swapped = TaskData(*(type(b)(b.tokens, b.last, b.alternative, b.target, b.positive) for b in (data.train, data.fit, data.test)))
    monkeypatch.setattr(pipeline, "train_masks", lambda *a, **k: pytest.fail("mask training should be skipped"))
    circuit = prune(model, swapped, means, PruningConfig(steps=5), task="swapped")
    assert circuit.losses["reachable"] == 0 and circuit.losses["skipped"] == 1
    assert circuit.losses["full_fit_loss"] > 3 * 0.15
    with pytest.raises(ValueError, match="skip_above_target_factor"):
        PruningConfig(skip_above_target_factor=-1)


def test_sweep_trials_are_written_best_first(tmp_path):
    import json

    from sparse_lens.pruning.runner import write_sweep_trials
    from sparse_lens.pruning.sweep import UNREACHABLE

    trials = [{"number": 0, "value": 50.0, "params": {"lr": 3e-3}, "n_nodes": 9},
              {"number": 1, "value": UNREACHABLE, "params": {"lr": 1e-1}, "n_nodes": 40},
              {"number": 2, "value": 20.0, "params": {"lr": 1e-2}, "n_nodes": 5}]
    path = tmp_path / "t.sweep.json"
    write_sweep_trials(path, "t", 2, 2, trials)
    payload = json.loads(path.read_text())
    assert [t["number"] for t in payload["trials"]] == [2, 0, 1]
    assert payload["unreachable_value"] == UNREACHABLE and payload["rounds"] == 2
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left
