"""Plots (PNG + SVG) of a training run, a prune run, a prune-compare run or a predictions run:
``sparse-lens plot RUN [--out DIR]``.

RUN may be a training run (its ``metrics.jsonl``: loss, validation loss, learning rate, weight
sparsity, gradient RMS), a ``prune`` output (for every circuit JSON with pruning diagnostics: the
loss vs k along the bisection and the mask-training curves), a ``prune-compare`` output
(``comparison.json``: edges per task, sparse vs dense), a ``predictions`` output
(``predictions.json``: context dilution, model and circuit), or one of those files. Plots go to
``--out`` (default ``RUN/plots``).

Examples::

    sparse-lens plot runs/python-sparse-tiny          # training curves
    sparse-lens plot runs/demo --out runs/demo/plots   # bisection + mask training per task
    sparse-lens plot runs/dense-vs-sparse              # edges, sparse vs dense (and both prune runs' plots)
    sparse-lens plot runs/demo/predictions             # context dilution
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable


def add_parser(subparsers) -> argparse.ArgumentParser:
    from sparse_lens.cli import add_documented_parser

    p = add_documented_parser(subparsers, "plot", "plots (PNG + SVG) of a training run, a prune run or a prune-compare run",
                              __doc__)
    p.add_argument("run", type=Path, help="run directory (training, prune or prune-compare), or a metrics.jsonl, "
                                         "circuit .json or comparison.json file")
    p.add_argument("--out", type=Path, default=None, help="output directory (default: RUN/plots)")
    p.set_defaults(func=run)
    return p


def _is_circuit_json(path: Path) -> bool:
    from sparse_lens.pruning.circuit import FORMAT

    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT


def plan(run: Path) -> list[tuple[str, Callable, Path]]:
    """(output name, plot function, its input) for everything plottable in ``run``."""
    from sparse_lens.visualization.plots import (
        plot_bisection, plot_context_dilution, plot_edges_sparse_vs_dense, plot_mask_training, plot_training_curves)

    if not run.exists():
        raise FileNotFoundError(f"RUN: {run} does not exist")
    jobs: list[tuple[str, Callable, Path]] = []
    files = [run] if run.is_file() else sorted(run.iterdir())
    for path in files:
        if path.name == "metrics.jsonl":
            jobs.append(("training_curves", plot_training_curves, path))
        elif path.name == "predictions.json":
            jobs.append(("context_dilution", plot_context_dilution, path))
        elif path.name == "comparison.json":
            sparse, dense = _compared_names(run if run.is_dir() else run.parent)
            jobs.append(("edges_sparse_vs_dense",
                         lambda p, s=sparse, d=dense: plot_edges_sparse_vs_dense(p, s, d), path))
        elif path.suffix == ".json" and _is_circuit_json(path):
            meta = json.loads(path.read_text())
            diagnostics = meta.get("diagnostics") or {}
            if diagnostics.get("bisection"):
                jobs.append((f"{path.stem}_bisection", plot_bisection, path))
            if diagnostics.get("mask_training"):
                jobs.append((f"{path.stem}_mask_training", plot_mask_training, path))
    if run.is_file() and not jobs:
        if _is_circuit_json(run):
            raise ValueError(f"RUN: {run} has no pruning diagnostics to plot (the task was skipped, or the "
                             "circuit was saved before diagnostics were recorded: prune again)")
        raise ValueError(f"RUN: {run} is not a metrics.jsonl, a circuit JSON, a comparison.json or a predictions.json")
    if run.is_dir():  # a prune-compare directory holds one prune run per model
        for sub in sorted(p for p in run.iterdir() if p.is_dir() and p.name != "plots"):
            if (sub / "summary.json").is_file():
                jobs += [(f"{sub.name}/{name}", fn, src) for name, fn, src in plan(sub)]
    if not jobs:
        raise ValueError(f"RUN: nothing to plot in {run} (looked for metrics.jsonl, circuit JSON files with "
                         "pruning diagnostics, comparison.json, predictions.json)")
    return jobs


def _compared_names(directory: Path) -> tuple[str, str]:
    """The names of the two models prune-compare wrote into ``directory`` (one sub-directory with a
    summary.json each), told apart by their edge counts; "sparse" / "dense" when that fails."""
    names = {"sparse": "sparse", "dense": "dense"}
    try:
        report = json.loads((directory / "comparison.json").read_text())
        for sub in (p for p in directory.iterdir() if (p / "summary.json").is_file()):
            rows = {r["task"]: r["edges"] for r in json.loads((sub / "summary.json").read_text())["tasks"]}
            for side in names:
                if all(rows.get(r["task"]) == r[f"{side}_edges"] for r in report["tasks"]):
                    names[side] = sub.name
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return names["sparse"], names["dense"]


def run(args: argparse.Namespace) -> int:
    """Bad input raises ValueError / OSError naming RUN and what was expected (the command line
    reports it as one line, exit code 2)."""
    from sparse_lens.io import check_output_dir
    from sparse_lens.visualization.plots import save_figure

    jobs = plan(args.run)
    out = args.out or ((args.run if args.run.is_dir() else args.run.parent) / "plots")
    check_output_dir(out, "--out")
    for name, plot, source in jobs:
        for path in save_figure(plot(source), out / name):
            print(path)
    return 0
