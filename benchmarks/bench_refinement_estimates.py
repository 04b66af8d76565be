"""How well attribution refinement's estimates rank single-unit drops (issue 22, item 3).

On the bisected circuit of saved masks (`bench_pruning_discretization.py --out` writes them), every kept
unit is dropped alone and its check-pair loss evaluated; the true loss changes are compared with two
estimates from one forward and backward (`pair_attributions`): the mean attribution ḡ_u (session 16's
order) and `drop_estimates` (each pair's d moved by its own attribution, then softplus). Prints the
Spearman correlation of each with the truth, how many of the first 8/16/32 units by each estimate can
really go alone, and `prefix_estimates` against real prefix losses.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_refinement_estimates.py \\
        --task while_return_true --masks-from runs/discretization/sparse_wrt_attribution.masks.pt
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

import torch

from sparse_lens.pruning import PruningConfig
from sparse_lens.pruning.discretize import discretize, fixed_mask_hooks, ranked_units, units_masks
from sparse_lens.pruning.masks import NodeMasks
from sparse_lens.pruning.pipeline import prepare
from sparse_lens.pruning.refinement import (candidate_losses, drop_estimates, extra_check_pairs, pair_attributions,
                                           prefix_estimates)
from sparse_lens.pruning.runner import PruneJob
from sparse_lens.pruning.task_batch import evaluate_task


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ranks = torch.stack([a.argsort().argsort().float(), b.argsort().argsort().float()])
    return float(torch.corrcoef(ranks)[0, 1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="python-sparse-tiny")
    p.add_argument("--task", default="single_double_quote")
    p.add_argument("--masks-from", type=Path, required=True, help="a .masks.pt bench_pruning_discretization.py wrote")
    args = p.parse_args()
    torch.set_num_threads(1)
    model, means, data = PruneJob(args.model, args.task).load()
    data, _ = prepare(model, data)
    cfg = PruningConfig()
    masks = NodeMasks(model.cfg, means, tie_qk=cfg.tie_qk, heaviside_temp=cfg.heaviside_temp)
    saved = torch.load(args.masks_from)
    with torch.no_grad():
        for key, tau in masks.tau.items():
            tau.copy_(saved["tau"][key])
    ranking = ranked_units(masks)
    upper = int(sum(int((t > 0).sum()) for t in masks.tau.values()))
    bisection = discretize(masks, lambda b: evaluate_task(model, data.fit, fixed_mask_hooks(b, means))[0],
                           cfg.target_loss, ranking, upper)
    kept = ranking[: bisection.k]
    extra = extra_check_pairs(data.fit, data.train, cfg.refine_pairs)
    to_masks = partial(units_masks, masks)

    def check_losses(circuits) -> torch.Tensor:
        fit, rest = candidate_losses(model, data.fit, circuits, means), candidate_losses(model, extra, circuits, means)
        n, m = len(data.fit), len(extra)
        return torch.tensor([(a * n + b * m) / (n + m) for a, b in zip(fit, rest)])

    base = float(check_losses([to_masks(kept)])[0])
    start = time.perf_counter()
    parts = [pair_attributions(model, b, to_masks(kept), means, kept, masks.tie_qk) for b in (data.fit, extra)]
    d, g = torch.cat([x for x, _ in parts]), torch.cat([x for _, x in parts])
    print(f"{args.model} {args.task}: bisected circuit {len(kept)} units, check loss {base:.4f} on {len(d)} pairs; "
          f"attributions {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    true = check_losses([to_masks([v for v in kept if v != u]) for u in kept]) - base
    print(f"every single drop evaluated: {time.perf_counter() - start:.1f} s; "
          f"{int((true + base <= cfg.target_loss).sum())} of {len(kept)} can go alone")
    for name, estimate in (("mean attribution (session 16)", g.mean(0)), ("drop_estimates (per pair)", drop_estimates(d, g))):
        order = estimate.argsort()
        can_go = (true[order] + base <= cfg.target_loss).int().cumsum(0)
        print(f"{name}: Spearman {spearman(estimate, true):.3f}; can go alone among the first 8/16/32: "
              f"{[int(can_go[n - 1]) for n in (8, 16, 32) if n <= len(kept)]}")
    order = drop_estimates(d, g).argsort()
    predicted = prefix_estimates(d, g[:, order])
    lengths = [n for n in (1, 2, 4, 8, 16, 32, 48) if n <= len(kept)]
    real = check_losses([to_masks([u for j, u in enumerate(kept) if j not in set(order[:n].tolist())]) for n in lengths])
    print("prefix of the per-pair order: n, predicted, real loss: "
          + "; ".join(f"{n}: {float(predicted[n - 1]):.3f} / {float(r):.3f}" for n, r in zip(lengths, real)))


if __name__ == "__main__":
    main()
