"""``sparse-lens reproduce``: the paper's headline (Sec. 3.1, Fig. 3) in one command — circuits of a
weight-sparse model and a dense model at matched pretraining loss, pruned to the same target on every
task both reach, over several mask-training seeds, in a report.

Writes into --out: report.md and report.json (per task nodes and edges of both models, held-out
sufficiency and necessity, the geometric-mean dense/sparse edge ratio with its spread over tasks and
seeds, the closing-quote circuit, both models' validation losses on the same rows, the command and
its wall time), seed_S/ (each a prune-compare run: both models' circuits and comparison.json; `sparse-lens
plot OUT/seed_S` draws the rest), and plots/ (edges, sparse vs dense, per seed). The work is
sparse_lens.pruning.reproduce; this module adds the command line and the plots.

Examples::

    sparse-lens reproduce                                  # the matched pair, every task both reach, seeds 0 1
    sparse-lens reproduce --task single_double_quote --seed 0 --seed 1 --seed 2 --out runs/quote
    sparse-lens reproduce --sparse python-sparse-tiny --dense python-dense-tiny   # the tiny pair (not matched)
    sparse-lens reproduce --fast --task single_double_quote --out /tmp/smoke    # seconds: few pairs and steps
    sparse-lens reproduce --seed 0 --seed 1 --resume --out runs/reproduce   # after a stop: prune only what is missing
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from sparse_lens.cli import add_documented_parser, positive_float, positive_int

    p = add_documented_parser(subparsers, "reproduce", "dense vs sparse circuits at matched loss: every task, several seeds, one report",
                              __doc__, intro_paragraphs=2)
    from sparse_lens.pruning.compare import MATCHED_PAIR, UNMATCHED_PAIR, default_dense_model, default_sparse_model
    from sparse_lens.pruning.config import PruningConfig

    p.add_argument("--sparse", default=default_sparse_model(), help="weight-sparse model (name, directory, or entry point "
                   f"package.module:function); default: {MATCHED_PAIR[0]} once the matched pair is shipped, else {UNMATCHED_PAIR[0]}")
    p.add_argument("--dense", default=default_dense_model(), help=f"dense model at the sparse model's validation loss; "
                   f"default: {MATCHED_PAIR[1]} once shipped, else {UNMATCHED_PAIR[1]}")
    p.add_argument("--task", action="append", default=[], metavar="NAME",
                   help="consider only this task (repeatable; default: every task; only those both models reach are pruned)")
    p.add_argument("--seed", action="append", type=int, default=[], metavar="S", help="mask-training seed (repeatable; default: 0 and 1)")
    p.add_argument("--target-loss", type=positive_float, default=0.15, help="task loss (nats) both circuits must reach")
    p.add_argument("--steps", type=positive_int, default=None, help="mask-training steps (default: PruningConfig's; --fast: 20)")
    p.add_argument("--discretization", choices=PruningConfig.DISCRETIZATIONS, default=None,
                   help=f"as in prune-compare (default: {PruningConfig.discretization}; --fast: bisected)")
    p.add_argument("--eval-pairs", type=positive_int, default=None, help="test pairs per task for the full-model loss (default 200; --fast: 32)")
    p.add_argument("--val-rows", type=positive_int, default=None, help="validation rows for both models' loss (default 1024; --fast: 16)")
    p.add_argument("--fast", action="store_true", help="few pairs and steps: a smoke test in seconds per task, not a result")
    p.add_argument("--device", default=None, help="e.g. cpu or cuda (default: cpu)")
    p.add_argument("--out", type=Path, default=Path("runs/reproduce"), help="report directory (new, empty, or an earlier report)")
    p.add_argument("--resume", action="store_true", help="keep the circuits an earlier run with the same settings left in "
                   "--out (a run stopped half-way, or seed_S directories copied from runs of the same settings) and prune "
                   "only the missing ones")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


def config_from_args(args: argparse.Namespace):
    from sparse_lens.pruning.reproduce import ReproduceConfig

    cfg = ReproduceConfig.fast() if args.fast else ReproduceConfig()
    overrides: dict[str, Any] = {"sparse": args.sparse, "dense": args.dense, "target_loss": args.target_loss,
                                 "device": args.device}
    if args.task:
        overrides["tasks"] = tuple(args.task)
    if args.seed:
        overrides["seeds"] = tuple(args.seed)
    for name in ("steps", "eval_pairs", "val_rows", "discretization"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    from dataclasses import replace

    return replace(cfg, **overrides)


def edge_plots(out_dir: Path, report: dict[str, Any]) -> list[Path]:
    """Edges per task, sparse vs dense, for each seed (`plot_edges_sparse_vs_dense`)."""
    from sparse_lens.visualization.plots import plot_edges_sparse_vs_dense, save_figure

    written: list[Path] = []
    sparse, dense = report["models"]["sparse"], report["models"]["dense"]
    for entry in report["per_seed"]:
        comparison = out_dir / f"seed_{entry['seed']}" / "comparison.json"
        figure = plot_edges_sparse_vs_dense(comparison, sparse, dense)
        written += save_figure(figure, out_dir / "plots" / f"edges_sparse_vs_dense_seed_{entry['seed']}")
    return written


def run(args: argparse.Namespace) -> int:
    from sparse_lens.pruning.reproduce import reproduce

    if args.device:
        from sparse_lens.model.devices import check_device

        check_device(args.device, "--device")
    command = "sparse-lens " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["reproduce"] else \
        "sparse-lens reproduce " + " ".join(shlex.quote(a) for a in _argv_of(args))
    report = reproduce(config_from_args(args), args.out, command=command, plot=edge_plots, progress_bar=not args.no_progress,
                       resume=args.resume)
    print((args.out / "report.md").read_text())
    print(f"written: {args.out}/report.md, {args.out}/report.json, {args.out}/seed_*/ ({report['wall_s']:.0f} s)")
    return 0


def _argv_of(args: argparse.Namespace) -> list[str]:
    """The options as given (for the report when not run from the shell)."""
    out = []
    for key in ("sparse", "dense", "target_loss", "out"):
        out += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    for task in args.task:
        out += ["--task", task]
    for seed in args.seed:
        out += ["--seed", str(seed)]
    return out + (["--fast"] if args.fast else []) + (["--resume"] if getattr(args, "resume", False) else [])
