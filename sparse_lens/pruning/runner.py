"""Prune one or many tasks of a model and write the artifacts and the summary table.

The summary (Markdown and JSON) has one row per task: nodes, edges, fit loss (at the target),
held-out sufficiency / necessity losses, and wall time; plus the geometric mean of edges.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from sparse_lens.io import atomic_write_text
from sparse_lens.pruning.circuit import Circuit
from sparse_lens.pruning.compare import geometric_mean
from sparse_lens.pruning.config import PruningConfig
from sparse_lens.pruning.pipeline import prune
from sparse_lens.pruning.sweep import UNREACHABLE, run_sweep


@dataclass
class PruneJob:
    """Everything a worker process needs to prune one task (picklable, for the sweep)."""

    model: str  # shipped name, directory, or entry point package.module:attr (`model_source`)
    task: str
    n_train: int = 512
    n_fit: int = 128
    n_test: int = 128
    data_seed: int = 0
    means_tokens: int = 65_536
    device: Optional[str] = None  # None: the CPU
    tasks_files: tuple[str, ...] = ()  # JSONL files of user tasks (registered again in worker processes)
    # How the frozen weight products run ("dense", "sparse", "auto": `HookedSparseTransformer.set_execution`);
    # set before the node means, so every forward of the pruning (mask training included) runs that way.
    execution: str = "dense"

    def load(self):
        from sparse_lens.pruning.model_source import load_model
        from sparse_lens.pruning.task_data import node_means_for, task_data
        from sparse_lens.tasks.custom import load_tasks_jsonl

        for path in self.tasks_files:
            load_tasks_jsonl(path, register=True, overwrite=True)
        model = load_model(self.model, self.device)
        if self.execution != "dense":
            if not hasattr(model, "set_execution"):
                raise ValueError(f"--execution: {self.execution!r} needs a sparse_lens model (HookedSparseTransformer); "
                                 f"{self.model!r} is a {type(model).__name__}, which runs dense")
            model.set_execution(self.execution)
        means = node_means_for(model, self.model, self.means_tokens)
        data = task_data(model, self.task, self.n_train, self.n_fit, self.n_test, self.data_seed)
        return model, means, data

    def __call__(self, cfg: PruningConfig) -> Circuit:
        torch.manual_seed(cfg.seed)
        model, means, data = _cached_load(self)
        return prune(model, data, means, cfg, task=self.task, model_name=self.model)

    def run_batch(self, cfgs: list[PruningConfig]) -> list[Circuit]:
        """Every config's pruning with the mask trainings batched over the one loaded model
        (`prune_batched`): what ``run_sweep(mode="batched")`` calls for a round."""
        from sparse_lens.pruning.batched_masks import prune_batched

        model, means, data = _cached_load(self)
        return prune_batched(model, data, means, cfgs, task=self.task, model_name=self.model)


_LOADED: dict[Any, Any] = {}


def _cached_load(job: PruneJob):
    key = (job.model, job.task, job.n_train, job.n_fit, job.n_test, job.data_seed, job.means_tokens, job.device,
           job.tasks_files, job.execution)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = job.load()
    return _LOADED[key]


@dataclass
class TaskResult:
    task: str
    circuit: Circuit
    seconds: float
    sweep_trials: int = 0

    def row(self) -> dict[str, Any]:
        loss = self.circuit.losses
        return {
            "task": self.task,
            "reachable": bool(loss.get("reachable")),
            "skipped": bool(loss.get("skipped")),
            "nodes": self.circuit.n_nodes,
            "edges": self.circuit.n_edges,
            "fit_loss": loss.get("fit_loss"),
            "fit_loss_calibrated": loss.get("fit_loss_calibrated"),
            "full_loss": loss.get("test_full_loss"),
            "sufficiency_loss": loss.get("test_sufficiency_loss"),
            "sufficiency_loss_calibrated": loss.get("test_sufficiency_loss_calibrated"),
            "necessity_loss": loss.get("test_necessity_loss"),
            "seconds": round(self.seconds, 1),
            "sweep_trials": self.sweep_trials,
            **self.discretization(),
        }

    def discretization(self) -> dict[str, Any]:
        """What each discretization step bought: the bisection's circuit (nodes, edges) before
        refinement, loss(k) at every k the bisection evaluated, whether it was non-increasing, and why
        refinement did not start when it did not (its check loss above its bound), and the second
        bisection, on the check pairs, when refinement started from one."""
        diag, loss = self.circuit.diagnostics or {}, self.circuit.losses
        bisection = diag.get("bisection") or {}
        evaluations = sorted((e["k"], e["loss"]) for e in bisection.get("evaluations", []))
        return {
            "discretization": diag.get("discretization", "paper"),
            "bisection_nodes": None if loss.get("bisection_nodes") is None else int(loss["bisection_nodes"]),
            "bisection_edges": None if loss.get("bisection_edges") is None else int(loss["bisection_edges"]),
            "loss_by_k": [{"k": k, "loss": v} for k, v in evaluations],
            "loss_by_k_monotone": bisection.get("monotone"),
            "refinement_not_started": diag.get("refinement_not_started"),
            "check_bisection": diag.get("check_bisection"),
        }


def prune_tasks(
    job_template: PruneJob,
    tasks: list[str],
    cfg: PruningConfig,
    out_dir: Path,
    sweep_rounds: int = 0,
    sweep_parallel: int = 8,
    sweep_storage: Optional[str] = None,
    log=print,
    sweep_mode: str = "processes",
) -> list[TaskResult]:
    out_dir = Path(out_dir)  # created by the first write (a run that fails before leaves nothing)
    results = []
    for task in tasks:
        job = PruneJob(**{**job_template.__dict__, "task": task})
        start = time.perf_counter()
        if sweep_rounds > 0:
            sweep = run_sweep(job, cfg, rounds=sweep_rounds, parallel=sweep_parallel, storage=sweep_storage,
                              study_name=f"{Path(str(job.model)).name}-{task}", seed=cfg.seed, mode=sweep_mode)
            circuit, trials = sweep.best, len(sweep.trials)
            write_sweep_trials(out_dir / f"{task}.sweep.json", task, sweep_rounds, sweep_parallel, sweep.trials)
        else:
            circuit, trials = job(cfg), 0
        result = TaskResult(task, circuit, time.perf_counter() - start, trials)
        circuit.save(out_dir / f"{task}.json")
        results.append(result)
        r = result.row()
        log(f"{task}: {r['nodes']} nodes, {r['edges']} edges, fit loss {r['fit_loss']:.3f}, "
            f"held-out sufficiency {r['sufficiency_loss']:.3f}, necessity {r['necessity_loss']:.3f}, {r['seconds']}s")
        write_summary(results, out_dir)  # after every task: a run stopped later keeps what it finished
    return results


def write_sweep_trials(path: Path, task: str, rounds: int, parallel: int, trials: list[dict[str, Any]]) -> None:
    """Every completed trial of a task's sweep: hyperparameters, objective (edges at the target;
    ``UNREACHABLE`` when the target was missed), nodes and fit loss — best first."""
    payload = {
        "task": task, "rounds": rounds, "parallel": parallel, "objective": "edges at the target loss",
        "unreachable_value": UNREACHABLE, "trials": sorted(trials, key=lambda t: (t["value"], t["number"])),
    }
    atomic_write_text(path, json.dumps(payload, indent=1) + "\n")


def geometric_mean_edges(results: list[TaskResult]) -> Optional[float]:
    return geometric_mean([r.circuit.n_edges for r in results if r.circuit.losses.get("reachable")])


def summary_markdown(results: list[TaskResult]) -> str:
    header = ("| task | nodes | edges | after bisection (nodes / edges) | loss at target (fit) | calibrated | "
              "held-out sufficiency | held-out necessity | full model | time (s) |\n"
              "|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for res in results:
        r = res.row()
        fmt = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
        note = "" if r["reachable"] else " (not learned: skipped)" if r["skipped"] else " (target unreachable)"
        bisected = "—" if r["bisection_nodes"] is None else f"{r['bisection_nodes']} / {r['bisection_edges']}"
        if r["loss_by_k_monotone"] is False:
            bisected += " (loss(k) not monotone)"
        if r["refinement_not_started"]:
            ns = r["refinement_not_started"]
            bisected += f" (not refined: check loss {ns['check_loss']:.3f} > bound {ns['bound']:.3f})"
        if r["check_bisection"]:
            cb = r["check_bisection"]
            bisected += (f" (check loss {cb['from_check_loss']:.3f} above the bound at {cb['from_k']} units: "
                         f"bisected again on the check pairs, refined from {cb['k']})")
        lines.append(f"| {r['task']}{note} | {r['nodes']} | {r['edges']} | {bisected} | {fmt(r['fit_loss'])} | "
                     f"{fmt(r['fit_loss_calibrated'])} | {fmt(r['sufficiency_loss'])} | {fmt(r['necessity_loss'])} | "
                     f"{fmt(r['full_loss'])} | {r['seconds']} |")
    gm = geometric_mean_edges(results)
    footer = f"\n\nGeometric mean of edges over reachable tasks: {gm:.1f}\n" if gm is not None else "\n"
    return header + "\n".join(lines) + footer


def summary_payload(results: list[TaskResult]) -> dict[str, Any]:
    """What summary.json holds: one row per task and the geometric mean of edges."""
    return {"tasks": [r.row() for r in results], "geometric_mean_edges": geometric_mean_edges(results)}


def write_summary(results: list[TaskResult], out_dir: Path) -> None:
    atomic_write_text(out_dir / "summary.md", summary_markdown(results))
    atomic_write_text(out_dir / "summary.json", json.dumps(summary_payload(results), indent=2) + "\n")
