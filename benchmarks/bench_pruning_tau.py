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
from sparse_lens.pruning.discretize import (bisect_k, count_nodes, fixed_mask_hooks, is_non_increasing, top_k_masks,
                                            units_masks)
from sparse_lens.pruning.edges import count_edges
from sparse_lens.pruning.mask_training import train_masks
from sparse_lens.pruning.masks import NodeMasks
from sparse_lens.pruning.ranking import RANKINGS, TauStatistics, flat_tau
from sparse_lens.pruning.refinement import extra_check_pairs, refine, screened_losses
from sparse_lens.pruning.runner import PruneJob
from sparse_lens.pruning.task_batch import evaluate_task


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
    p.add_argument("--grid", type=int, nargs="*", default=[25, 50, 75, 100, 125, 150, 175, 200, 225, 250, 300],
                   help="k at which to evaluate loss(k) for the paper's and the new ranking")
    p.add_argument("--no-refine", action="store_true")
    p.add_argument("--refine-pairs", type=int, nargs="+", default=[384], help="check pairs of each refinement to run")
    p.add_argument("--from-trajectory", type=Path, default=None,
                   help="a .pt this script wrote: take the trained τ from it instead of training")
    p.add_argument("--out", type=Path, default=Path("runs/tau/default.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = PruningConfig(steps=args.steps, lr=args.lr, heaviside_temp=args.heaviside_temp, k_coef=args.k_coef,
                        lr_warmup_frac=args.warmup)
    model, means, data = PruneJob(args.model, args.task).load()
    masks = NodeMasks(model.cfg, means, tie_qk=cfg.tie_qk, heaviside_temp=cfg.heaviside_temp)
    trajectory = []

    def record(step, m):
        trajectory.append(flat_tau(m))
        if step % 50 == 0:
            print(f"step {step}: {time.perf_counter() - start:.0f}s", flush=True)

    start = time.perf_counter()
    if args.from_trajectory is None:
        history = train_masks(model, masks, data.train, cfg, on_step=record)
        tau = torch.stack(trajectory)  # [steps, units]
        final_task_loss = history.task_loss[-1]
    else:
        tau, final_task_loss = torch.load(args.from_trajectory)["tau"].float(), None
        with torch.no_grad():
            offset = 0
            for p in masks.tau.values():
                p.copy_(tau[-1, offset: offset + p.numel()].reshape(p.shape))
                offset += p.numel()
    train_s = time.perf_counter() - start
    names = unit_names(masks)
    final = tau[-1]
    stats = TauStatistics.from_trajectory(tau, masks, 0.5)
    sign_changes = ((tau[1:] > 0) != (tau[:-1] > 0)).sum(0)

    def loss_of(binary, batch=data.fit) -> float:
        return evaluate_task(model, batch, fixed_mask_hooks(binary, means))[0]

    def edges(binary) -> int:
        return sum(count_edges(model, binary).values())

    start = time.perf_counter()
    loss_of({s.name: torch.ones(s.shape, dtype=torch.bool) for s in masks.sites})
    eval_s = time.perf_counter() - start
    print(f"trained in {train_s:.0f}s; one fit evaluation {eval_s:.2f}s", flush=True)

    results, rankings = {}, {}
    for name, rank in RANKINGS.items():
        ranking = rankings[name] = rank(masks, stats)
        start = time.perf_counter()
        k, seen = bisect_k(len(ranking), lambda k: loss_of(top_k_masks(masks, ranking, k)), cfg.target_loss)
        seconds = time.perf_counter() - start
        for g in args.grid:
            seen.setdefault(g, loss_of(top_k_masks(masks, ranking, g)))
        binary = top_k_masks(masks, ranking, k)
        results[name] = {"k": k, "nodes": count_nodes(binary), "edges": edges(binary), "fit_loss": seen.get(k),
                         "test_loss": loss_of(binary, data.test), "bisection_seconds": seconds,
                         "monotone": is_non_increasing(seen), "loss_by_k": sorted(seen.items())}
        print(f"ranking {name}: " + json.dumps({k: v for k, v in results[name].items() if k != "loss_by_k"}), flush=True)
        print(f"  loss(k): {[(k, round(v, 4)) for k, v in sorted(seen.items())]}", flush=True)
    if not args.no_refine:
        ranking, k = rankings["kept_fraction"], results["kept_fraction"]["k"]
        for n_pairs in args.refine_pairs:
            losses_of = screened_losses(model, data.fit, extra_check_pairs(data.fit, data.train, n_pairs), means,
                                        cfg.target_loss)
            start = time.perf_counter()
            refined = refine(ranking[:k], lambda units: units_masks(masks, units), losses_of, cfg.target_loss,
                             losses_of([top_k_masks(masks, ranking, k)])[0], cfg.refine_batch)
            binary = units_masks(masks, refined.units)
            results[f"refined_{n_pairs}"] = {
                "nodes": count_nodes(binary), "edges": edges(binary), "check_loss": refined.loss,
                "fit_loss": loss_of(binary), "test_loss": loss_of(binary, data.test),
                "seconds": time.perf_counter() - start, "candidates": refined.candidates_evaluated,
                "batched_forwards": refined.forwards}
            print(f"refined on {n_pairs} pairs: {json.dumps(results[f'refined_{n_pairs}'])}", flush=True)
    index = {n: i for i, n in enumerate(names)}

    def describe(unit: str) -> dict:
        j = index[unit]
        return {"unit": unit, "final_tau": float(final[j]), "kept_last_half": float(stats.kept_fraction[j]),
                "mean_tau_last_half": float(stats.mean_tau[j]), "sign_changes": int(sign_changes[j]),
                "max_tau": float(tau[:, j].max()), "paper_rank": rankings["tau"].index(tuple_of(unit)) + 1,
                "new_rank": rankings["kept_fraction"].index(tuple_of(unit)) + 1,
                "tau_every_25_steps": [round(float(v), 4) for v in tau[::25, j]]}

    k = results["tau"]["k"] or 1
    last = [describe(f"{site}[{i}]") for site, i in rankings["tau"][max(0, k - 3): k]]
    positive = final[final > 0]
    summary = {
        "config": {"steps": args.steps, "lr": args.lr, "heaviside_temp": args.heaviside_temp, "k_coef": args.k_coef,
                   "warmup": args.warmup},
        "train_seconds": train_s, "fit_eval_seconds": eval_s, "final_task_loss": final_task_loss,
        "units": len(names), "positive": int((final > 0).sum()), "max_tau": float(final.max()),
        "median_positive_tau": float(positive.median()) if len(positive) else None,
        "kept_whole_last_half": int((stats.kept_fraction == 1).sum()),
        "flipped_in_last_half": int(((stats.kept_fraction > 0) & (stats.kept_fraction < 1)).sum()),
        "sign_changes_of_flippers_median": float(sign_changes[(stats.kept_fraction > 0) & (stats.kept_fraction < 1)].float().median())
        if bool(((stats.kept_fraction > 0) & (stats.kept_fraction < 1)).any()) else None,
        "units_at_paper_k": last, "attn_out_0": describe("blocks.0.hook_attn_out[0]"),
    }
    print(json.dumps(summary, indent=1), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**summary, "rankings": results}, indent=1) + "\n")
    torch.save({"tau": tau, "names": names}, args.out.with_suffix(".pt"))


def tuple_of(unit: str) -> tuple[str, int]:
    site, index = unit[:-1].split("[")
    return site, int(index)


if __name__ == "__main__":
    main()
