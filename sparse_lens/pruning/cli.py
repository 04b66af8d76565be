"""`sparse-lens prune MODEL --task NAME [--task NAME ...] | --all-tasks`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

# model.set_execution's modes (sparse_lens.model.execution.EXECUTION_MODES; not imported: parsing stays torch-free)
EXECUTION_MODES = ("dense", "sparse", "auto")


def add_parser(subparsers) -> None:
    from sparse_lens.cli import non_negative_int, positive_float, positive_int
    from sparse_lens.pruning.config import SWEEP_MODES, PruningConfig

    defaults = PruningConfig()
    p = subparsers.add_parser(
        "prune",
        help="find task circuits by pruning (paper Sec. 2.2)",
        description="Prune MODEL for each task: learned node masks with mean ablation, bisection to the "
        "target loss, logit calibration, edge counts, held-out sufficiency/necessity. Writes one circuit "
        "per task (JSON + safetensors) and summary.md / summary.json into --out (created by the first write; "
        "other files there are left alone).",
    )
    p.add_argument("model", metavar="MODEL", help="shipped model name (e.g. python-sparse-tiny), a save_pretrained directory, "
                   "a training run or checkpoint, or a Python entry point package.module:function (or :model) giving "
                   "a TransformerLens model (HookedTransformer, TransformerBridge) with our tokenizer")
    p.add_argument("--task", action="append", default=[], metavar="NAME", help="task name (repeatable)")
    p.add_argument("--all-tasks", action="store_true", help="every registered task (with --tasks-file: theirs too)")
    p.add_argument("--tasks-file", action="append", default=[], metavar="JSONL",
                   help="add user tasks from a JSONL file of pairs, as in `tasks eval` (repeatable)")
    p.add_argument("--target-loss", type=positive_float, default=defaults.target_loss,
                   help="task loss (nats) the circuit must reach on the fit pairs")
    p.add_argument("--steps", type=positive_int, default=defaults.steps, help="mask-training steps")
    p.add_argument("--tie-qk", action="store_true", help="tie q and k channel masks")
    p.add_argument("--discretization", choices=PruningConfig.DISCRETIZATIONS, default=defaults.discretization,
                   help="paper: bisect over k in τ order over every unit (App. A.5); bisected: within the units mask "
                   "training kept; refined: bisected, then drop units while the loss stays at the target (--refine-method)")
    p.add_argument("--refine-method", choices=PruningConfig.REFINE_METHODS, default=defaults.refine_method,
                   help="with --discretization refined: attribution (drop groups in attribution order; default) or "
                   "greedy (try every kept unit alone; slower)")
    p.add_argument("--refine-margin", type=float, default=defaults.refine_margin,
                   help="with --discretization refined: keep a drop only while the check loss stays this far (nats) "
                   "under the target (default: %(default)s)")
    p.add_argument("--sweep-rounds", type=non_negative_int, default=0,
                   help="Optuna rounds of hyperparameter search (paper: 32); 0 = Table 2 centers only")
    p.add_argument("--sweep-parallel", type=positive_int, default=8, help="suggestions per round, run in parallel")
    p.add_argument("--sweep-mode", choices=SWEEP_MODES, default="processes",
                   help="how a round's suggestions run: worker processes each holding the model, one batched mask "
                        "training over the shared model, or one after another (default: processes)")
    p.add_argument("--sweep-storage", default=None, help="Optuna journal file or RDB URL shared across machines (default: in memory)")
    p.add_argument("--n-train", type=positive_int, default=512, help="training pairs (mask training)")
    p.add_argument("--n-fit", type=positive_int, default=128, help="fixed pairs for bisection and calibration")
    p.add_argument("--n-test", type=positive_int, default=128, help="held-out pairs for validation")
    p.add_argument("--seed", type=int, default=0, help="seed of the pairs and of mask training")
    p.add_argument("--device", default=None, help="e.g. cpu or cuda (default: cpu)")
    p.add_argument("--execution", choices=EXECUTION_MODES, default="dense",
                   help="how the frozen weight products run (model.set_execution; docs/sparse_execution.md): dense, sparse, "
                        "or auto (sparse where a matrix is sparse and large enough; pays at the authors' shapes, not ours)")
    p.add_argument("--out", type=Path, default=Path("runs/prune"), help="output directory")
    p.set_defaults(func=run)

    from sparse_lens.pruning import compare

    compare.add_parser(subparsers)


def check_prune_arguments(args: argparse.Namespace) -> tuple[list[str], Optional[str]]:
    """Everything the arguments name, checked before any work: (task names, device)."""
    from sparse_lens.io import check_output_dir
    from sparse_lens.pruning.model_source import check_model_source
    from sparse_lens.tasks.cli import _load_files, task_argument
    from sparse_lens.tasks.registry import task_names

    _load_files(args.tasks_file)
    if args.all_tasks:
        tasks = task_names()
    else:
        tasks = [task_argument(name).name for name in args.task]
    if not tasks:
        raise ValueError("--task: give --task NAME (repeatable) or --all-tasks")
    for argument, name in getattr(args, "models", None) or [("MODEL", args.model)]:
        check_model_source(name, argument)
    device = None
    if args.device:
        from sparse_lens.model.devices import check_device

        device = str(check_device(args.device, "--device"))
    check_output_dir(args.out, "--out")
    return tasks, device


def run(args: argparse.Namespace) -> int:
    tasks, device = check_prune_arguments(args)
    from sparse_lens.pruning.config import PruningConfig
    from sparse_lens.pruning.runner import PruneJob, prune_tasks, summary_markdown

    cfg = PruningConfig(target_loss=args.target_loss, tie_qk=args.tie_qk, seed=args.seed, steps=args.steps,
                        discretization=args.discretization, refine_margin=args.refine_margin,
                        refine_method=args.refine_method)
    job = PruneJob(model=args.model, task=tasks[0], n_train=args.n_train, n_fit=args.n_fit, n_test=args.n_test,
                   data_seed=args.seed, device=device, tasks_files=tuple(args.tasks_file), execution=args.execution)
    results = prune_tasks(job, tasks, cfg, args.out, sweep_rounds=args.sweep_rounds,
                          sweep_parallel=args.sweep_parallel, sweep_storage=args.sweep_storage, sweep_mode=args.sweep_mode)
    print()
    print(summary_markdown(results))
    print(f"artifacts: {args.out}/<task>.json + .safetensors, {args.out}/summary.md, {args.out}/summary.json")
    return 0
