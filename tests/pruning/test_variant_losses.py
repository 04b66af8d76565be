"""Batched variant losses (refinement's candidates, the viewer's one-node ablations): each variant's
loss equals a forward of its own, whichever stage it first changes and however rows are chunked, and
only variants that change the first stage run from the tokens."""

import pytest
import torch

from sparse_lens.pruning.discretize import fixed_mask_hooks
from sparse_lens.pruning.mean_ablation import compute_node_means
from sparse_lens.pruning.nodes import node_sites
from sparse_lens.pruning.task_batch import TaskBatch, evaluate_task
from sparse_lens.pruning.variant_losses import first_stage_changed, node_stage, variant_losses

from ..model.conftest import make_model
from .test_transformer_lens_models import BUILDERS


def ragged_batch(n_pairs: int, d_vocab: int, width: int = 12, seed: int = 0) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, d_vocab, (2 * n_pairs, width), generator=g)
    tokens[1::2, :-1] = tokens[0::2, :-1]
    last = torch.randint(2, width, (n_pairs,), generator=g).repeat_interleave(2)  # lengths vary by pair
    tokens[1::2][torch.arange(n_pairs), last[1::2]] = (tokens[0::2][torch.arange(n_pairs), last[0::2]] + 1) % d_vocab
    positive = torch.arange(2 * n_pairs) % 2 == 0
    target = torch.where(positive, torch.tensor(3), torch.tensor(4))
    return TaskBatch(tokens, last, target, torch.where(positive, torch.tensor(4), torch.tensor(3)), positive)


def variants_of(model, base, seed: int = 0):
    """One variant per node site flipping one node (dropping a kept one or adding a dropped one), one
    changing two stages, and one equal to the base."""
    g = torch.Generator().manual_seed(seed)
    sites = node_sites(model.cfg)
    out = []
    for s in sites:
        v = dict(base)
        v[s.name] = m = base[s.name].clone()
        flat = m.view(-1)
        i = int(torch.randint(0, flat.numel(), (1,), generator=g))
        flat[i] = ~flat[i]
        out.append(v)
    two = dict(base)
    for s in (sites[-1], sites[len(sites) // 2]):
        two[s.name] = ~base[s.name]
    return out + [two, dict(base)]


def one_by_one(model, batch, masks, means) -> float:
    return evaluate_task(model, batch, fixed_mask_hooks(masks, means))[0]


@pytest.mark.parametrize("rows_per_chunk,rows_per_forward", [(5, 12), (64, 1024)])
def test_each_variant_equals_its_own_forward(rows_per_chunk, rows_per_forward):
    model = make_model().eval()
    g = torch.Generator().manual_seed(1)
    means = compute_node_means(model, [torch.randint(0, 50, (16, 12), generator=g)])
    base = {s.name: torch.rand(s.shape, generator=g) < 0.6 for s in node_sites(model.cfg)}
    batch = ragged_batch(11, 50)
    variants = variants_of(model, base)
    base_loss, losses = variant_losses(model, batch, base, variants, means, rows_per_forward, rows_per_chunk)
    assert base_loss == pytest.approx(one_by_one(model, batch, base, means), rel=1e-5)
    expected = [one_by_one(model, batch, v, means) for v in variants]
    assert losses == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert losses[-1] == base_loss
    assert len({round(v, 5) for v in expected}) > len(variants) // 2  # the flips change the loss


def test_only_variants_that_change_the_first_stage_run_from_the_tokens():
    model = make_model().eval()
    sites = node_sites(model.cfg)
    means = compute_node_means(model, [torch.randint(0, 50, (16, 12), generator=torch.Generator().manual_seed(2))])
    base = {s.name: torch.ones(s.shape, dtype=torch.bool) for s in sites}
    variants = variants_of(model, base)
    stage_of = {s.name: node_stage(s) for s in sites}
    first = [first_stage_changed(base, v, stage_of, 2 * model.cfg.n_layers) for v in variants]
    assert sorted(set(first)) == [0, 1, 2, 3, 4]  # 2 layers: 4 stages, and "nowhere" (the copy of the base)
    batch = ragged_batch(6, 50)
    embedded = []
    model.hook_embed.add_hook(lambda x, hook: embedded.append(x.shape[0]))
    try:
        variant_losses(model, batch, base, variants, means, rows_per_forward=10_000, rows_per_chunk=4)
    finally:
        model.reset_hooks()
    assert sum(embedded) == len(batch) * (1 + first.count(0))  # the base once, then stage-0 variants only


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_a_transformer_lens_model_runs_every_variant_from_the_tokens(kind):
    model = BUILDERS[kind](n_layers=2).eval()
    g = torch.Generator().manual_seed(3)
    means = compute_node_means(model, [torch.randint(0, 8, (16, 12), generator=g)])
    base = {s.name: torch.rand(s.shape, generator=g) < 0.7 for s in node_sites(model.cfg)}
    batch = ragged_batch(7, 8, width=10)
    variants = variants_of(model, base, seed=4)
    _, losses = variant_losses(model, batch, base, variants, means, rows_per_forward=20, rows_per_chunk=3)
    assert losses == pytest.approx([one_by_one(model, batch, v, means) for v in variants], rel=1e-5, abs=1e-7)
