"""Batched mask training (issue 25 item 5): several pruning runs as one computation over the shared
frozen model give each run the τ it would get alone, and `prune_batched` the same circuits."""

from __future__ import annotations

import pytest
import torch

from sparse_lens.pruning.batched_masks import prune_batched, train_masks_batched
from sparse_lens.pruning.config import PruningConfig
from sparse_lens.pruning.mask_training import train_masks
from sparse_lens.pruning.masks import NodeMasks
from sparse_lens.pruning.pipeline import prune

from ..model.conftest import make_model
from .planted import planted_task

# Different lr, betas, weight decay, k_coef, noise, Heaviside temperature, warmup, minibatch and seed.
CONFIGS = [
    PruningConfig(steps=8, lr=0.05, k_coef=1e-3, seed=0, batch_pairs=8),
    PruningConfig(steps=8, lr=0.2, k_coef=1e-2, wd=1e-2, inv_beta2=0.1, init_noise_scale=0.5, heaviside_temp=0.3,
                  seed=7, batch_pairs=5, lr_warmup_frac=0.25),
    PruningConfig(steps=8, lr=0.01, k_coef=1e-4, init_noise_bias=0.3, seed=3, batch_pairs=12),
]


def _random_task():
    """A random 2-layer model (attention matters) and a task batch in its vocabulary."""
    model = make_model(d_vocab=8)
    _, means, data = planted_task(model=model)
    return model, means, data


def test_batched_training_gives_each_run_its_own_masks():
    model, means, data = _random_task()
    alone = []
    for cfg in CONFIGS:
        masks = NodeMasks(model.cfg, means, heaviside_temp=cfg.heaviside_temp)
        history = train_masks(model, masks, data.train, cfg)
        alone.append((masks.scores(), history))
    batched = [NodeMasks(model.cfg, means, heaviside_temp=c.heaviside_temp) for c in CONFIGS]
    histories = train_masks_batched(model, batched, data.train, CONFIGS)
    for (scores, history), masks, batched_history in zip(alone, batched, histories):
        for site, tau in masks.scores().items():
            assert torch.allclose(tau, scores[site], atol=1e-5), site
        assert batched_history.task_loss == pytest.approx(history.task_loss, rel=1e-4, abs=1e-6)
        assert batched_history.kept == pytest.approx(history.kept, rel=1e-5)
    assert not any(p.requires_grad for p in model.parameters()) or all(p.requires_grad for p in model.parameters())


def test_prune_batched_finds_the_planted_circuit_for_every_config():
    model, means, data = planted_task()
    cfgs = [PruningConfig(steps=40, lr=0.5, init_noise_scale=2.0, seed=s) for s in (0, 1)]
    circuits = prune_batched(model, data, means, cfgs, task="planted")
    for cfg, circuit in zip(cfgs, circuits):
        alone = prune(model, data, means, cfg, task="planted")
        assert circuit.kept_nodes() == alone.kept_nodes()
        assert circuit.losses["fit_loss"] == pytest.approx(alone.losses["fit_loss"], abs=1e-5)


def test_batched_training_rejects_mismatched_runs():
    model, means, data = _random_task()
    masks = [NodeMasks(model.cfg, means) for _ in range(2)]
    with pytest.raises(ValueError, match="one NodeMasks per config"):
        train_masks_batched(model, masks, data.train, CONFIGS)
    with pytest.raises(ValueError, match="same number of steps"):
        train_masks_batched(model, masks, data.train, [CONFIGS[0], CONFIGS[0].replace(steps=3)])
