"""What each discretization buys on a real task, and what refinement costs (issue 22, items 3 and 7).

Trains one task's masks once (the pipeline's own steps: `train_masks` with the task's seed), then
builds the circuit of every discretization ("paper", "bisected", "refined") from those masks with the
pipeline's `circuit_from_masks` (discretize, calibrate, count edges, validate on the held-out pairs).
One task's wall time without refinement is mask training + the "bisected" circuit; with refinement,
mask training + the "refined" circuit; the ratio is printed.

Run (one thread; a training run had the other core):
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_pruning_discretization.py --task single_double_quote \\
      [--model python-sparse-tiny] [--out runs/discretization/quote.json]
  (--masks-from runs/discretization/quote.masks.pt: the discretizations of masks an earlier run trained;
   --refine-margins 0 0.05: one refined circuit per refine_margin;
   --refine-methods greedy attribution: one per refinement method, "refined-attribution" etc.)
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from sparse_lens.io import atomic_write_text
from sparse_lens.pruning import PruningConfig
from sparse_lens.pruning.mask_training import TrainingHistory, train_masks
from sparse_lens.pruning.masks import NodeMasks
from sparse_lens.pruning.pipeline import circuit_from_masks
from sparse_lens.pruning.runner import PruneJob
from sparse_lens.pruning.task_batch import evaluate_task

KEYS = ("fit_loss", "bisection_nodes", "bisection_edges", "bisection_evaluations", "test_sufficiency_loss",
        "test_sufficiency_loss_calibrated", "test_necessity_loss", "test_full_loss", "refinement_check_loss",
        "refinement_seconds")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="python-sparse-tiny")
    p.add_argument("--task", default="single_double_quote")
    p.add_argument("--discretizations", nargs="+", default=list(PruningConfig.DISCRETIZATIONS))
    p.add_argument("--steps", type=int, default=PruningConfig().steps, help="mask-training steps")
    p.add_argument("--masks-from", type=Path, default=None,
                   help="a .masks.pt this script wrote: take the trained τ from it instead of training")
    p.add_argument("--out", type=Path, default=None, help="results JSON; the trained τ go beside it (.masks.pt)")
    p.add_argument("--refine-methods", nargs="+", default=[PruningConfig().refine_method],
                   choices=PruningConfig.REFINE_METHODS, help="one refined circuit per method (and margin)")
    p.add_argument("--refine-margins", type=float, nargs="+", default=[0.0],
                   help="refine_margin values for the 'refined' discretization (one circuit each: refined@MARGIN)")
    args = p.parse_args()
    torch.set_num_threads(1)
    job = PruneJob(args.model, args.task)
    model, means, data = job.load()
    cfg = PruningConfig(steps=args.steps)
    torch.manual_seed(cfg.seed)  # as PruneJob does before `prune`
    start = time.perf_counter()
    masks = NodeMasks(model.cfg, means, tie_qk=cfg.tie_qk, heaviside_temp=cfg.heaviside_temp)
    full_fit_loss = evaluate_task(model, data.fit)[0]

    def progress(step: int, _masks) -> None:
        if step % 100 == 0:
            print(f"step {step}: {time.perf_counter() - start:.0f} s", flush=True)

    if args.masks_from is None:
        history = train_masks(model, masks, data.train, cfg, on_step=progress)
    else:  # the discretizations only (mask-training time and history from the run that saved them)
        saved = torch.load(args.masks_from)
        with torch.no_grad():
            for key, p in masks.tau.items():
                p.copy_(saved["tau"][key])
        history = TrainingHistory(**saved["history"])
    train_s = time.perf_counter() - start if args.masks_from is None else saved["train_seconds"]
    if args.out and args.masks_from is None:  # saved before the discretizations (refinement can take long)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"tau": {k: p.detach().clone() for k, p in masks.tau.items()}, "history": asdict(history),
                    "train_seconds": train_s}, args.out.with_suffix(".masks.pt"))
    print(f"{args.model} {args.task}: full fit loss {full_fit_loss:.4f}; mask training {train_s:.0f} s "
          f"({history.steps_per_second:.2f} steps/s)", flush=True)
    results = {}
    variants = [(name, name, 0.0, cfg.refine_method) for name in args.discretizations if name != "refined"]
    if "refined" in args.discretizations:  # one circuit per method and margin; "refined" when it is the default's only one
        for method in args.refine_methods:
            named = args.refine_margins != [0.0]
            prefix = "refined" if method == cfg.refine_method else f"refined-{method}"
            variants += [(f"{prefix}@{m:g}" if named else prefix, "refined", m, method) for m in args.refine_margins]
    for name, kind, margin, method in variants:
        circuit = circuit_from_masks(model, data, means, cfg.replace(discretization=kind, refine_margin=margin,
                                                                     refine_method=method), masks,
                                     history, full_fit_loss, args.task, args.model)
        after = circuit.losses["seconds"]
        results[name] = {"nodes": circuit.n_nodes, "edges": circuit.n_edges, "seconds_after_training": after,
                         "task_seconds": train_s + after, **{k: circuit.losses[k] for k in KEYS if k in circuit.losses},
                         "loss_by_k_monotone": circuit.diagnostics["bisection"]["monotone"],
                         "refinement": circuit.diagnostics["refinement"]}
        print(f"{name}: " + json.dumps(results[name]), flush=True)
    refined = [n for n in results if n.startswith("refined")] if "bisected" in results else []
    for name in refined:
        ratio = results[name]["task_seconds"] / results["bisected"]["task_seconds"]
        print(f"task time with {name} / without refinement: {ratio:.2f}x "
              f"({results[name]['task_seconds']:.0f} s vs {results['bisected']['task_seconds']:.0f} s)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps({"model": args.model, "task": args.task, "train_seconds": train_s,
                                                "full_fit_loss": full_fit_loss, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
