"""Why bisection over τ stops far from the smallest circuit (issue 22, item 1): τ trajectories during
mask training, and what each ranking of the trained masks gives.

Trains the masks of one task once (the library's `train_masks`, recording every unit's τ after every
step), then bisects over k with each ranking of `sparse_lens.pruning.ranking` on the fit pairs, and
prints for the units bisection needed last (the units at the paper ranking's chosen k) their τ
trajectory: sign changes, the fraction of the last half of training they were kept, final τ.

Run (one thread; a training run had the other core):
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_pruning_tau.py [--steps 400] [--lr 3e-3]
      [--heaviside-temp 1] [--k-coef 1e-4] [--warmup 0.05] [--out runs/tau/default.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from sparse_lens.pruning import PruningConfig
from sparse_lens.pruning.discretize import bisect_k, fixed_mask_hooks, ranked_units, top_k_masks
from sparse_lens.pruning.mask_training import train_masks
from sparse_lens.pruning.masks import NodeMasks
from sparse_lens.pruning.runner import PruneJob
from sparse_lens.pruning.task_batch import evaluate_task


def flat_tau(masks: NodeMasks) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in masks.tau.values()]).clone()


def unit_names(masks: NodeMasks) -> list[str]:
    return [f"{key.replace('/', '.')}[{i}]" for key, p in masks.tau.items() for i in range(p.numel())]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="python-sparse-tiny")
    p.add_argument("--task", default="single_double_quote")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--heaviside-temp", type=float, default=1.0)
    p.add_argument("--k-coef", type=float, default=1e-4)
    p.add_argument("--warmup", type=float, default=5e-2)
    p.add_argument("--out", type=Path, default=Path("runs/tau/default.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = PruningConfig(steps=args.steps, lr=args.lr, heaviside_temp=args.heaviside_temp, k_coef=args.k_coef,
                        lr_warmup_frac=args.warmup)
    model, means, data = PruneJob(args.model, args.task).load()
    masks = NodeMasks(model.cfg, means, tie_qk=cfg.tie_qk, heaviside_temp=cfg.heaviside_temp)
    trajectory = []
    start = time.perf_counter()
    history = train_masks(model, masks, data.train, cfg, on_step=lambda step, m: trajectory.append(flat_tau(m)))
    train_s = time.perf_counter() - start
    tau = torch.stack(trajectory)  # [steps, units]
    names = unit_names(masks)
    final = tau[-1]
    half = tau[len(tau) // 2:]
    kept_frac = (half > 0).float().mean(0)
    sign_changes = ((tau[1:] > 0) != (tau[:-1] > 0)).sum(0)

    def loss_of(binary) -> float:
        return evaluate_task(model, data.fit, fixed_mask_hooks(binary, means))[0]

    start = time.perf_counter()
    loss_of({s.name: torch.ones(s.shape, dtype=torch.bool) for s in masks.sites})
    eval_s = time.perf_counter() - start

    from sparse_lens.pruning.ranking import RANKINGS, TrajectoryStats

    stats = TrajectoryStats.from_trajectory(tau, masks)
    results = {}
    for name, rank in RANKINGS.items():
        ranking = rank(masks, stats)
        k, seen = bisect_k(len(ranking), lambda k: loss_of(top_k_masks(masks, ranking, k)), cfg.target_loss)
        results[name] = {"k": k, "loss": seen.get(k), "evaluations": sorted(seen.items())}
        print(f"ranking {name}: k = {k}, loss {seen.get(k)}, evaluations {sorted(seen.items())}", flush=True)
    paper = ranked_units(masks)
    k = results["tau"]["k"]
    last = []
    index = {n: i for i, n in enumerate(names)}
    for site, i in paper[max(0, (k or 1) - 3): (k or 0) + 1]:
        j = index[f"{site}[{i}]"]
        last.append({"unit": names[j], "final_tau": float(final[j]), "kept_last_half": float(kept_frac[j]),
                     "sign_changes": int(sign_changes[j]), "max_tau": float(tau[:, j].max()),
                     "tau_every_25_steps": [round(float(v), 4) for v in tau[::25, j]]})
    positive = final[final > 0]
    summary = {
        "config": {"steps": args.steps, "lr": args.lr, "heaviside_temp": args.heaviside_temp, "k_coef": args.k_coef,
                   "warmup": args.warmup},
        "train_seconds": train_s, "fit_eval_seconds": eval_s, "final_task_loss": history.task_loss[-1],
        "units": len(names), "positive": int((final > 0).sum()), "max_tau": float(final.max()),
        "median_positive_tau": float(positive.median()) if len(positive) else None,
        "kept_whole_last_half": int((kept_frac == 1).sum()), "ever_flipped_in_last_half": int(((kept_frac > 0) & (kept_frac < 1)).sum()),
        "rankings": results, "units_at_paper_k": last,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "rankings"}, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    torch.save({"tau": tau.half(), "names": names}, args.out.with_suffix(".pt"))


if __name__ == "__main__":
    main()
