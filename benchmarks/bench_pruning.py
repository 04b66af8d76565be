"""Pruning speed on a shipped model (issue: circuit pruning, "Speed").

Measures, on this CPU:
  - mask-training steps/s (64 pairs = 128 sequences per step) and the plain forward+backward of the
    same batch without mask hooks, as a same-process baseline ratio;
  - one task end to end without a sweep (mask training + bisection + calibration + validation);
  - optionally (--all-tasks) every registered task with a reduced sweep (--sweep-rounds R --sweep-parallel P).
Targets: one task < 2 minutes; all 20 with a reduced sweep < 1 hour.

Run:  .venv/bin/python benchmarks/bench_pruning.py [--model python-sparse-tiny] [--task single_double_quote]
      [--all-tasks --sweep-rounds 2 --sweep-parallel 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from sparse_lens.model import HookedSparseTransformer
from sparse_lens.pruning import PruningConfig
from sparse_lens.pruning.masks import NodeMasks
from sparse_lens.pruning.runner import PruneJob, prune_tasks, summary_markdown
from sparse_lens.pruning.task_batch import logit_difference, task_logits, task_loss_from_difference


def step_rate(model, masks, batch, hooks, steps: int = 5) -> float:
    params = list(masks.parameters()) if hooks else [model.embed.W_E]
    for i in range(steps + 1):
        if i == 1:
            start = time.perf_counter()
        loss = task_loss_from_difference(logit_difference(task_logits(model, batch, hooks), batch))
        grads = torch.autograd.grad(loss, params)
    return steps / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="python-sparse-tiny")
    p.add_argument("--task", default="single_double_quote")
    p.add_argument("--all-tasks", action="store_true")
    p.add_argument("--sweep-rounds", type=int, default=2)
    p.add_argument("--sweep-parallel", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("runs/bench-pruning"))
    args = p.parse_args()

    job = PruneJob(model=args.model, task=args.task)
    t0 = time.perf_counter()
    model, means, data = job.load()
    setup = time.perf_counter() - t0
    masks = NodeMasks(model.cfg, means)
    masks.init_(0.1, 0.01)
    batch = data.train.select(torch.arange(128))
    with_masks = step_rate(model, masks, batch, masks.hooks())
    model.requires_grad_(True)
    plain = step_rate(model, masks, batch, [])
    print(f"setup (load model, node means, task pairs): {setup:.1f}s")
    print(f"mask training: {with_masks:.2f} steps/s; plain forward+backward of the same batch: {plain:.2f}/s "
          f"(ratio {plain / with_masks:.2f})")

    cfg = PruningConfig()
    t0 = time.perf_counter()
    results = prune_tasks(job, [args.task], cfg, args.out / "one")
    print(f"one task without sweep ({args.task}, {cfg.steps} steps): {time.perf_counter() - t0:.1f}s (target < 120s)")
    if args.all_tasks:
        from sparse_lens.tasks import task_names

        t0 = time.perf_counter()
        results = prune_tasks(job, task_names(builtin_only=True), cfg, args.out / "all",
                              sweep_rounds=args.sweep_rounds, sweep_parallel=args.sweep_parallel)
        print(f"all tasks, sweep {args.sweep_rounds}x{args.sweep_parallel}: {time.perf_counter() - t0:.0f}s (target < 3600s)")
    print(summary_markdown(results))


if __name__ == "__main__":
    main()
