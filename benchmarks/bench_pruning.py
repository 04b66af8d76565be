"""Pruning speed on a shipped model (issue: circuit pruning, "Speed").

Measures, on this CPU:
  - mask-training steps/s (64 pairs = 128 sequences per step, the library's length-sorted chunks),
    against same-process baselines on the same batches: the masked step as one padded batch; the
    masked chunks with the last block run at every position (logits of all positions, then the last
    token's — what `logit_positions` avoids); and the plain forward+backward of the padded batch
    without mask hooks;
  - one task end to end without a sweep (mask training + bisection + calibration + validation);
  - optionally (--all-tasks) every registered task with a reduced sweep (--sweep-rounds R --sweep-parallel P).
Targets: one task < 2 minutes; all 20 with a reduced sweep < 1 hour.

Run:  .venv/bin/python benchmarks/bench_pruning.py [--model python-sparse-tiny] [--task single_double_quote]
      [--all-tasks --sweep-rounds 2 --sweep-parallel 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from sparse_lens.model import HookedSparseTransformer
from sparse_lens.pruning import PruningConfig
from sparse_lens.pruning.masks import NodeMasks
from sparse_lens.pruning.runner import PruneJob, prune_tasks, summary_markdown
from sparse_lens.pruning.task_batch import length_chunks, logit_difference, task_logits


def full_width_logits(model, batch, hooks):
    """Logits at every position, then the last real token's (the last block runs at every position)."""
    with model.hooks(fwd_hooks=list(hooks)):
        return model(batch.tokens)[torch.arange(len(batch)), batch.last]


def step_rate(model, masks, batches, hooks, chunked: bool, logits=task_logits) -> float:
    """Steps/s of task loss + backward over ``batches`` (the first one is a warm-up)."""
    params = list(masks.parameters()) if hooks else [model.embed.W_E]
    for i, batch in enumerate(batches):
        if i == 1:
            start = time.perf_counter()
        parts = [batch.select(rows) for rows in length_chunks(batch)] if chunked else [batch]
        for part in parts:
            d = logit_difference(logits(model, part, hooks), part)
            torch.autograd.grad(F.softplus(-d).sum() / len(batch), params)
    return (len(batches) - 1) / (time.perf_counter() - start)


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
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(6):
        pairs = torch.randint(0, len(data.train) // 2, (64,), generator=g)
        batches.append(data.train.select(torch.stack([2 * pairs, 2 * pairs + 1], 1).reshape(-1)))
    model.requires_grad_(False)
    full = "masked, length-sorted chunks, last block at every position"
    rates = {"masked, length-sorted chunks (library)": [], "masked, one padded batch": [], full: []}
    plain = []
    for _ in range(3):  # interleaved repeats
        rates["masked, length-sorted chunks (library)"].append(step_rate(model, masks, batches, masks.hooks(), True))
        rates["masked, one padded batch"].append(step_rate(model, masks, batches, masks.hooks(), False))
        rates[full].append(step_rate(model, masks, batches, masks.hooks(), True, full_width_logits))
        model.requires_grad_(True)
        plain.append(step_rate(model, masks, batches, [], False))
        model.requires_grad_(False)
    print(f"setup (load model, node means, task pairs): {setup:.1f}s; threads {torch.get_num_threads()}")
    ours = statistics.median(rates["masked, length-sorted chunks (library)"])
    for name, r in rates.items():
        print(f"mask training step, {name}: {statistics.median(r):.2f} steps/s")
    print(f"plain forward+backward of the padded batch, no hooks: {statistics.median(plain):.2f} steps/s")
    print(f"ratio library / last block at every position = {ours / statistics.median(rates[full]):.2f}x")
    print(f"ratio chunked / padded = {ours / statistics.median(rates['masked, one padded batch']):.2f}x; "
          f"chunked masked / plain padded = {ours / statistics.median(plain):.2f}x")

    cfg = PruningConfig()
    model.requires_grad_(True)
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
