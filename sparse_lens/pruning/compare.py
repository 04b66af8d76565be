"""Dense vs sparse: circuit sizes of two models pruned to the same target task loss (paper Sec. 3.1, Fig. 3).

The paper's claim: at matched task loss, circuits of weight-sparse models are about 16× smaller in
geometric-mean edges than those of dense models. This module prunes both models with the same
pipeline, target and data, and reports per task nodes and edges side by side, the dense/sparse edge
ratio, and the ratio of geometric means over the tasks both models reach.

    python -m sparse_lens.pruning.compare --task single_double_quote --task bracket_counting
    sparse-lens prune-compare --all-tasks --sparse python-sparse-small --dense python-dense-matched   # the first matched pair
    sparse-lens prune-compare --from-summaries runs/a/summary.json runs/b/summary.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Optional

from sparse_lens.io import atomic_write_text


# Dense at the sparse model's validation loss (±0.02). Since session 19 the continued pair (3.088 / 3.081 on the
# match rows; both reach 3 tasks); the first matched pair, python-sparse-small / python-dense-matched (3.222 /
# 3.203; 2 tasks), is still shipped: pass --sparse / --dense for it.
MATCHED_PAIR = ("python-sparse-small-continued", "python-dense-matched-continued")
UNMATCHED_PAIR = ("python-sparse-tiny", "python-dense-tiny")  # the dense one is the better language model


def default_pair() -> tuple[str, str]:
    """The (sparse, dense) models compared by default: the matched pair once both are shipped, else the
    tiny pair (the commands print both validation losses, so an unmatched comparison says so)."""
    pretrained = Path(__file__).resolve().parents[1] / "pretrained"
    shipped = all((pretrained / name / "config.json").is_file() for name in MATCHED_PAIR)
    return MATCHED_PAIR if shipped else UNMATCHED_PAIR


def default_sparse_model() -> str:
    return default_pair()[0]


def default_dense_model() -> str:
    return default_pair()[1]


def geometric_mean(values: list[float], floor: float = 1.0) -> Optional[float]:
    """Geometric mean of ``values``, each raised to at least ``floor`` (a circuit of 0 edges counts as 1);
    None for no values."""
    if not values:
        return None
    return math.exp(sum(math.log(max(v, floor)) for v in values) / len(values))


def compare_summaries(sparse: dict[str, Any], dense: dict[str, Any]) -> dict[str, Any]:
    """Join two ``summary.json`` payloads by task. A task counts towards the geometric means only if
    both models reach the target (comparing a circuit at the target with one that misses it is not
    a comparison at matched loss)."""
    for name, summary in (("sparse", sparse), ("dense", dense)):
        if not isinstance(summary, dict) or not isinstance(summary.get("tasks"), list):
            raise ValueError(f"{name}: expected a summary.json payload with a 'tasks' list")
    dense_rows = {r["task"]: r for r in dense["tasks"]}
    rows = []
    for s in sparse["tasks"]:
        d = dense_rows.get(s["task"])
        if d is None:
            continue
        matched = bool(s["reachable"] and d["reachable"])
        rows.append({
            "task": s["task"], "matched": matched,
            "sparse_nodes": s["nodes"], "dense_nodes": d["nodes"],
            "sparse_edges": s["edges"], "dense_edges": d["edges"],
            "edge_ratio": (d["edges"] / max(s["edges"], 1)) if matched else None,
            "sparse_loss": s["fit_loss"], "dense_loss": d["fit_loss"],
            "sparse_sufficiency": s["sufficiency_loss"], "dense_sufficiency": d["sufficiency_loss"],
        })
    if not rows:
        raise ValueError("the two summaries share no task")
    matched = [r for r in rows if r["matched"]]
    gm_sparse = geometric_mean([r["sparse_edges"] for r in matched])
    gm_dense = geometric_mean([r["dense_edges"] for r in matched])
    return {
        "tasks": rows,
        "matched_tasks": len(matched),
        "geometric_mean_edges_sparse": gm_sparse,
        "geometric_mean_edges_dense": gm_dense,
        "geometric_mean_ratio": (gm_dense / gm_sparse) if matched else None,
    }


def comparison_markdown(report: dict[str, Any], sparse_name: str = "sparse", dense_name: str = "dense") -> str:
    fmt = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [
        f"| task | nodes ({sparse_name}) | nodes ({dense_name}) | edges ({sparse_name}) | edges ({dense_name}) | "
        f"dense/sparse edges | loss ({sparse_name}) | loss ({dense_name}) | held-out sufficiency "
        f"({sparse_name} / {dense_name}) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["tasks"]:
        ratio = f"{r['edge_ratio']:.1f}×" if r["edge_ratio"] is not None else "— (target missed)"
        lines.append(
            f"| {r['task']} | {r['sparse_nodes']} | {r['dense_nodes']} | {r['sparse_edges']} | {r['dense_edges']} | "
            f"{ratio} | {fmt(r['sparse_loss'])} | {fmt(r['dense_loss'])} | "
            f"{fmt(r['sparse_sufficiency'])} / {fmt(r['dense_sufficiency'])} |")
    if report["geometric_mean_ratio"] is not None:
        lines.append(
            f"\nGeometric mean of edges over the {report['matched_tasks']} task(s) both models reach: "
            f"{sparse_name} {report['geometric_mean_edges_sparse']:.1f}, {dense_name} "
            f"{report['geometric_mean_edges_dense']:.1f} — dense/sparse {report['geometric_mean_ratio']:.1f}× "
            "(paper: ≈16×).")
    else:
        lines.append("\nNo task reached the target loss in both models; no geometric mean to compare.")
    return "\n".join(lines) + "\n"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("prune-compare", help="dense vs sparse circuit sizes at the same target loss",
                              description=__doc__.splitlines()[0])
    configure_parser(p)
    p.set_defaults(func=run)


def configure_parser(p: argparse.ArgumentParser) -> None:
    from sparse_lens.cli import non_negative_int, positive_float, positive_int
    from sparse_lens.pruning.config import SWEEP_MODES, PruningConfig

    p.add_argument("--sparse", default=default_sparse_model(), help="weight-sparse model (name, directory, or entry point "
                   f"package.module:function); default: {MATCHED_PAIR[0]} when the matched pair is shipped, else {UNMATCHED_PAIR[0]}")
    p.add_argument("--dense", default=default_dense_model(), help="dense model (name, directory, or entry point "
                   f"package.module:function); default: {MATCHED_PAIR[1]} (at {MATCHED_PAIR[0]}'s validation loss) "
                   f"when shipped, else {UNMATCHED_PAIR[1]}")
    p.add_argument("--task", action="append", default=[], metavar="NAME", help="task name (repeatable)")
    p.add_argument("--all-tasks", action="store_true", help="every registered task")
    p.add_argument("--tasks-file", action="append", default=[], metavar="JSONL",
                   help="add user tasks from a JSONL file of pairs (repeatable)")
    p.add_argument("--target-loss", type=positive_float, default=0.15, help="task loss (nats) both circuits must reach")
    p.add_argument("--steps", type=positive_int, default=None, help="mask-training steps (default: PruningConfig's)")
    p.add_argument("--sweep-rounds", type=non_negative_int, default=0, help="Optuna rounds per task and model; 0 = Table 2 centers only")
    p.add_argument("--sweep-parallel", type=positive_int, default=8, help="suggestions per round, run in parallel")
    p.add_argument("--sweep-mode", choices=SWEEP_MODES, default="processes",
                   help="how a round's suggestions run: worker processes each holding the model, one batched mask "
                        "training over the shared model, or one after another (default: processes)")
    p.add_argument("--discretization", choices=PruningConfig.DISCRETIZATIONS, default=PruningConfig.discretization,
                   help="the same for both models: paper (bisect in τ order), bisected, or refined (see prune --help)")
    p.add_argument("--seed", type=int, default=0, help="seed of the pairs and of mask training")
    p.add_argument("--device", default=None, help="e.g. cpu or cuda (default: cpu)")
    p.add_argument("--out", type=Path, default=Path("runs/dense-vs-sparse"), help="output directory")
    p.add_argument("--val-rows", type=positive_int, default=1024,
                   help="validation rows (evenly spaced over the sparse model's validation split) for both models' loss")
    p.add_argument("--from-summaries", nargs=2, type=Path, metavar=("SPARSE_JSON", "DENSE_JSON"),
                   help="only compare two existing summary.json files (no pruning)")


def run(args: argparse.Namespace) -> int:
    from sparse_lens.io import check_output_dir

    if args.from_summaries:
        check_output_dir(args.out, "--out")
        payloads = []
        for path in args.from_summaries:
            try:
                payloads.append(json.loads(Path(path).read_text()))
            except (OSError, json.JSONDecodeError) as err:
                raise ValueError(f"--from-summaries: {path}: {err}") from None
        sparse_name, dense_name = (str(p.parent.name) for p in args.from_summaries)
        try:
            report = compare_summaries(*payloads)
        except ValueError as err:
            raise ValueError(f"--from-summaries: {err}") from None
    else:
        report, sparse_name, dense_name = _prune_both(args)
    markdown = comparison_markdown(report, sparse_name, dense_name)
    if report.get("validation"):
        v = report["validation"]
        markdown += (f"\nValidation loss on the same {v['rows']['rows']:,} rows ({v['rows']['tokens']:,} tokens): "
                     f"{sparse_name} {v['sparse_loss']:.4f}, {dense_name} {v['dense_loss']:.4f}.\n")
    elif report.get("validation_error"):
        markdown += f"\nValidation loss: not measured ({report['validation_error']}).\n"
    atomic_write_text(args.out / "comparison.md", markdown)
    atomic_write_text(args.out / "comparison.json", json.dumps(report, indent=2) + "\n")
    print(markdown)
    print(f"written: {args.out}/comparison.md, {args.out}/comparison.json")
    return 0


def _prune_both(args: argparse.Namespace):
    from sparse_lens.pruning.cli import check_prune_arguments
    from sparse_lens.pruning.config import PruningConfig
    from sparse_lens.pruning.runner import PruneJob, prune_tasks, summary_payload

    args.models = [("--sparse", args.sparse), ("--dense", args.dense)]
    tasks, device = check_prune_arguments(args)
    cfg = PruningConfig(target_loss=args.target_loss, seed=args.seed, discretization=args.discretization)
    if args.steps is not None:
        cfg = cfg.replace(steps=args.steps)
    summaries, names = [], []
    for model in (args.sparse, args.dense):
        name = Path(str(model)).name
        job = PruneJob(model=model, task=tasks[0], data_seed=args.seed, device=device, tasks_files=tuple(args.tasks_file))
        results = prune_tasks(job, tasks, cfg, args.out / name, sweep_rounds=args.sweep_rounds,
                              sweep_parallel=args.sweep_parallel, sweep_mode=args.sweep_mode)
        summaries.append(summary_payload(results))
        names.append(name)
    report = compare_summaries(*summaries)
    report.update(_validation(args, device))
    return report, names[0], names[1]


def _validation(args: argparse.Namespace, device) -> dict[str, Any]:
    """Both models' validation loss on the same rows (`sparse_lens.pruning.reproduce`); a pair whose
    pretraining data is unknown (two entry points) gets the reason instead."""
    from sparse_lens.pruning.reproduce import ReproduceConfig, load_pair, validation_losses

    cfg = ReproduceConfig(sparse=args.sparse, dense=args.dense, val_rows=args.val_rows, device=device)
    try:
        losses = validation_losses(load_pair(cfg), cfg)
    except (OSError, ValueError) as err:
        return {"validation_error": " ".join(str(err).split())}
    return {"validation": {"rows": losses["rows"], "sparse_loss": losses["sparse"], "dense_loss": losses["dense"]}}


def main(argv: Optional[list[str]] = None) -> int:
    from sparse_lens.cli import main as cli_main

    return cli_main(["prune-compare", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
