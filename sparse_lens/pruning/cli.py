"""`sparse-lens prune MODEL --task NAME [--task NAME ...] | --all-tasks`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "prune",
        help="find task circuits by pruning (paper Sec. 2.2)",
        description="Prune MODEL for each task: learned node masks with mean ablation, bisection to the "
        "target loss, logit calibration, edge counts, held-out sufficiency/necessity. Writes one circuit "
        "per task (JSON + safetensors) and summary.md / summary.json into --out.",
    )
    p.add_argument("model", help="shipped model name (e.g. python-sparse-tiny), a save_pretrained directory, or a training run or checkpoint")
    p.add_argument("--task", action="append", default=[], help="task name (repeatable)")
    p.add_argument("--all-tasks", action="store_true", help="every registered task")
    p.add_argument("--target-loss", type=float, default=0.15)
    p.add_argument("--steps", type=int, default=None, help="mask-training steps (default: PruningConfig)")
    p.add_argument("--tie-qk", action="store_true", help="tie q and k channel masks")
    p.add_argument("--sweep-rounds", type=int, default=0, help="Optuna rounds (paper: 32); 0 = Table 2 centers only")
    p.add_argument("--sweep-parallel", type=int, default=8, help="suggestions per round, run in parallel processes")
    p.add_argument("--sweep-storage", default=None, help="Optuna journal file or RDB URL shared across machines")
    p.add_argument("--n-train", type=int, default=512, help="training pairs")
    p.add_argument("--n-fit", type=int, default=128, help="fixed pairs for bisection and calibration")
    p.add_argument("--n-test", type=int, default=128, help="held-out pairs for validation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/prune"), help="output directory")
    p.set_defaults(func=run)

    from sparse_lens.pruning import compare

    compare.add_parser(subparsers)


def run(args: argparse.Namespace) -> int:
    from sparse_lens.pruning.config import PruningConfig
    from sparse_lens.pruning.runner import PruneJob, prune_tasks
    from sparse_lens.tasks import task_names

    if args.all_tasks:
        tasks = task_names()
    else:
        tasks = args.task
    if not tasks:
        print("error: give --task NAME (repeatable) or --all-tasks", file=sys.stderr)
        return 2
    known = set(task_names())
    unknown = [t for t in tasks if t not in known]
    if unknown:
        print(f"error: unknown task(s) {unknown}; known: {sorted(known)}", file=sys.stderr)
        return 2
    cfg = PruningConfig(target_loss=args.target_loss, tie_qk=args.tie_qk, seed=args.seed)
    if args.steps is not None:
        cfg = cfg.replace(steps=args.steps)
    job = PruneJob(model=args.model, task=tasks[0], n_train=args.n_train, n_fit=args.n_fit, n_test=args.n_test,
                   data_seed=args.seed)
    results = prune_tasks(job, tasks, cfg, args.out, sweep_rounds=args.sweep_rounds,
                          sweep_parallel=args.sweep_parallel, sweep_storage=args.sweep_storage)
    from sparse_lens.pruning.runner import summary_markdown

    print()
    print(summary_markdown(results))
    print(f"artifacts: {args.out}/<task>.json + .safetensors, {args.out}/summary.md, {args.out}/summary.json")
    return 0
