"""The paper's headline in one run (Sec. 3.1, Fig. 3): circuits of a weight-sparse model and of a dense
model at matched pretraining loss, pruned to the same target task loss, over several mask-training
seeds.

:func:`reproduce` (1) scores both models on the same validation rows
(:mod:`sparse_lens.training.matching`), (2) keeps the tasks both models reach (full-model task loss
under the target on the test split), (3) prunes each of them on both models for every seed with the
pruning runner (:func:`sparse_lens.pruning.runner.prune_tasks`; one directory per seed laid out like
a ``prune-compare`` run: ``seed_S/<model>/<task>.json`` + ``summary.json``, ``seed_S/comparison.json``)
and joins them with :func:`sparse_lens.pruning.compare.compare_summaries`, and (4) writes
``report.json`` and ``report.md``: per task nodes and edges of both models with held-out sufficiency
and necessity, the geometric-mean dense/sparse edge ratio with its spread over tasks and seeds, the
closing-quote circuit's edges, both validation losses, the command and its wall time.

With ``resume=True`` (``--resume``) a circuit already in ``OUT/seed_S/<model>/`` is kept instead of
pruned again when it was made with this run's settings (:func:`reusable_circuits`): a run stopped
half-way picks up where it stopped, and ``seed_S`` directories of runs with the same settings (seeds run
in parallel, one process each) join into one report.

The command line is ``sparse-lens reproduce`` (:mod:`sparse_lens.visualization.reproduce_cli`,
which adds the plots).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from sparse_lens.io import atomic_write_text
from sparse_lens.pruning.compare import default_dense_model, default_sparse_model, geometric_mean
from sparse_lens.pruning.config import PruningConfig

FORMAT = "sparse_lens.reproduce/1"
QUOTE_TASK = "single_double_quote"


@dataclass(frozen=True)
class ReproduceConfig:
    """What :func:`reproduce` runs. ``tasks=None``: every registered task (only those both models
    reach are pruned). :meth:`fast` is a setting for tests and smoke runs (few pairs, few steps)."""

    sparse: str = field(default_factory=default_sparse_model)  # the matched pair once shipped (compare.default_pair)
    dense: str = field(default_factory=default_dense_model)
    tasks: Optional[tuple[str, ...]] = None
    seeds: tuple[int, ...] = (0, 1)
    target_loss: float = 0.15
    steps: Optional[int] = None  # mask-training steps (None: PruningConfig's)
    discretization: str = PruningConfig.discretization
    eval_pairs: int = 200  # test pairs per task for "does the full model reach the target"
    n_train: int = 512
    n_fit: int = 128
    n_test: int = 128
    data_seed: int = 0  # the pairs; the seeds above are the mask-training seeds
    val_rows: int = 1024  # rows evenly spaced over the sparse model's validation split
    device: Optional[str] = None

    @classmethod
    def fast(cls, **overrides: Any) -> "ReproduceConfig":
        # bisected: refining the circuits of a few mask-training steps (thousands of units) is not a smoke test
        base = cls(steps=20, eval_pairs=32, n_train=32, n_fit=16, n_test=16, val_rows=16, discretization="bisected")
        return replace(base, **overrides)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["tasks"] = None if self.tasks is None else list(self.tasks)
        out["seeds"] = list(self.seeds)
        return out


# The settings a circuit depends on (an earlier run's circuits are reused only when all of them agree);
# tasks, seeds, eval_pairs and val_rows decide which circuits are made and how the models are scored.
CIRCUIT_SETTINGS = ("sparse", "dense", "target_loss", "steps", "discretization", "n_train", "n_fit", "n_test",
                    "data_seed", "device")


def is_reproduce_dir(directory: Path) -> bool:
    """An earlier report directory (so a re-run may write into it)."""
    try:
        return json.loads((Path(directory) / "report.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


@dataclass
class Pair:
    """The two loaded models, checked to read text the same way."""

    sparse: Any
    dense: Any
    names: tuple[str, str]
    tokenizer_hash: str = ""


def check_arguments(cfg: ReproduceConfig, out_dir: Path) -> list[str]:
    """Everything checkable before any work: the task names, both model sources, distinct names, the
    output directory. Returns the candidate task names."""
    from sparse_lens.io import check_output_dir
    from sparse_lens.pruning.model_source import check_model_source
    from sparse_lens.tasks.registry import task_names

    known = task_names()
    tasks = list(cfg.tasks) if cfg.tasks is not None else known
    if not tasks:
        raise ValueError("--task: no task to run")
    for name in tasks:
        if name not in known:
            raise ValueError(f"--task: unknown task {name!r}; known: {', '.join(known)}")
    if not cfg.seeds:
        raise ValueError("--seed: give at least one mask-training seed")
    check_model_source(cfg.sparse, "--sparse")
    check_model_source(cfg.dense, "--dense")
    if model_label(cfg.sparse) == model_label(cfg.dense):
        raise ValueError(f"--dense: {cfg.dense!r} has the same name as --sparse; give two different models")
    check_output_dir(out_dir, "--out", is_own=is_reproduce_dir, what="a `sparse-lens reproduce` report")
    return tasks


def earlier_settings(cfg: ReproduceConfig, out_dir: Path) -> Optional[dict[str, Any]]:
    """For ``--resume``: the settings of the run that wrote ``out_dir`` (None: there is none). Raises
    when they differ from ``cfg``'s in anything the circuits depend on (nothing could be reused)."""
    try:
        earlier = json.loads((Path(out_dir) / "report.json").read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    now = json.loads(json.dumps(cfg.to_dict()))
    differ = [f"{k} {earlier.get(k)!r} (now {now[k]!r})" for k in CIRCUIT_SETTINGS if earlier.get(k) != now[k]]
    if differ:
        raise ValueError(f"--resume: {out_dir} was written with other settings: {'; '.join(differ)}; its circuits "
                         "cannot be reused (drop --resume to replace them, or choose another --out)")
    return earlier


def reusable_circuits(directory: Path, tasks: Sequence[str], prune_cfg: PruningConfig, fingerprint: str) -> dict[str, Any]:
    """The tasks whose circuit in ``directory`` (one model, one seed) can stand for this run's, as
    :class:`~sparse_lens.pruning.runner.TaskResult`: the circuit file loads, records exactly ``prune_cfg``
    (seed included) and the model's weights ``fingerprint``, and its row in ``summary.json`` holds
    its pruning time. The pairs are checked once per directory, by :func:`earlier_settings`."""
    from sparse_lens.pruning.circuit import Circuit
    from sparse_lens.pruning.runner import TaskResult

    try:
        rows = {r["task"]: r for r in json.loads((directory / "summary.json").read_text())["tasks"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    wanted = json.loads(json.dumps(prune_cfg.to_dict()))
    kept = {}
    for task in tasks:
        path = directory / f"{task}.json"
        if task not in rows or not path.is_file():
            continue
        try:
            circuit = Circuit.load(path)
        except (OSError, ValueError):
            continue
        if circuit.task == task and circuit.config == wanted and circuit.model_fingerprint == fingerprint:
            kept[task] = TaskResult(task, circuit, float(rows[task]["seconds"]), int(rows[task].get("sweep_trials", 0)))
    return kept


def model_label(spec: str) -> str:
    return Path(str(spec)).name.replace(":", "_")


def load_pair(cfg: ReproduceConfig) -> Pair:
    """Both models; a pair whose tokenizers differ is refused (the tasks and the validation rows
    would not be the same tokens)."""
    from sparse_lens.data import encoding_hash
    from sparse_lens.pruning.model_adapter import adapter_for
    from sparse_lens.pruning.model_source import load_model

    sparse = load_model(cfg.sparse, cfg.device, "--sparse")
    dense = load_model(cfg.dense, cfg.device, "--dense")
    hashes = [encoding_hash(adapter_for(m).backend_tokenizer()) for m in (sparse, dense)]
    if hashes[0] != hashes[1]:
        raise ValueError(f"--dense: {cfg.dense!r} uses another tokenizer than --sparse {cfg.sparse!r} "
                         f"({hashes[1]} vs {hashes[0]}); a comparison needs the same tokens")
    if int(sparse.cfg.n_ctx) != int(dense.cfg.n_ctx):
        raise ValueError(f"--dense: n_ctx {dense.cfg.n_ctx} differs from --sparse's {sparse.cfg.n_ctx}")
    return Pair(sparse, dense, (model_label(cfg.sparse), model_label(cfg.dense)), hashes[0])


def validation_losses(pair: Pair, cfg: ReproduceConfig, data: Any = None) -> dict[str, Any]:
    """Both models' validation loss on the same rows: ``cfg.val_rows`` evenly spaced over the sparse model's
    (else the dense model's) validation split; ``data`` (a DataConfig) overrides where they come from."""
    from sparse_lens.training.matching import model_data_config, validation_loss, validation_rows

    if data is None:
        errors = []
        for spec in (cfg.sparse, cfg.dense):
            try:
                data = model_data_config(spec)
                break
            except (OSError, ValueError) as err:
                errors.append(str(err))
        else:
            raise ValueError(f"validation rows: neither model records its pretraining data ({'; '.join(errors)})")
    rows = validation_rows(data, int(pair.sparse.cfg.n_ctx), cfg.val_rows)
    return {"rows": rows.description, "sparse": validation_loss(pair.sparse, rows), "dense": validation_loss(pair.dense, rows)}


def reachable_tasks(pair: Pair, tasks: Sequence[str], cfg: ReproduceConfig, progress: Callable = None) -> list[dict[str, Any]]:
    """Full-model task loss of both models on ``cfg.eval_pairs`` test pairs; ``reached`` when both are
    under the target."""
    from sparse_lens.tasks import evaluate_task

    rows = []
    for task in tasks:
        losses = {}
        for side, model in (("sparse", pair.sparse), ("dense", pair.dense)):
            result = evaluate_task(model, task, n_pairs=cfg.eval_pairs, seed=cfg.data_seed, split="test")
            losses[side] = None if result.error else float(result.loss)
            losses[f"{side}_stderr"] = None if result.error else float(result.loss_stderr)
        reached = all(losses[s] is not None and losses[s] < cfg.target_loss for s in ("sparse", "dense"))
        rows.append({"task": task, "sparse_full_loss": losses["sparse"], "dense_full_loss": losses["dense"],
                     "sparse_full_loss_stderr": losses["sparse_stderr"], "dense_full_loss_stderr": losses["dense_stderr"],
                     "reached": reached})
        if progress:
            progress(task)
    return rows


def reproduce(
    cfg: ReproduceConfig,
    out_dir: str | Path,
    *,
    data: Any = None,
    command: str = "",
    plot: Optional[Callable[[Path, dict[str, Any]], list[Path]]] = None,
    progress_bar: bool = True,
    resume: bool = False,
) -> dict[str, Any]:
    """Run the comparison and write ``report.json`` / ``report.md`` into ``out_dir``; returns the
    report. ``plot(out_dir, report)`` (the command line passes the visualization's plots) returns the
    files it wrote, listed in the report. ``resume``: keep the circuits an earlier run with the same
    settings left in ``out_dir`` (:func:`reusable_circuits`) and prune only the others."""
    from tqdm.auto import tqdm

    from sparse_lens.pruning.compare import compare_summaries
    from sparse_lens.pruning.runner import PruneJob, prune_tasks, summary_payload, write_summary

    start = time.perf_counter()
    out_dir = Path(out_dir)
    candidates = check_arguments(cfg, out_dir)
    can_reuse = resume and earlier_settings(cfg, out_dir) is not None
    pair = load_pair(cfg)
    if can_reuse:
        from sparse_lens.model.identity import weights_fingerprint

        fingerprints = {id(m): weights_fingerprint(m) for m in (pair.sparse, pair.dense)}
    losses = validation_losses(pair, cfg, data)
    # every check passed: mark the directory as this command's (a run stopped half-way can be re-run into it)
    atomic_write_text(out_dir / "report.json", json.dumps({"format": FORMAT, "status": "running", "config": cfg.to_dict()}) + "\n")
    with tqdm(total=len(candidates), desc="full-model task loss", disable=not progress_bar) as bar:
        considered = reachable_tasks(pair, candidates, cfg, progress=lambda _: bar.update(1))
    tasks = [r["task"] for r in considered if r["reached"]]
    per_seed: list[dict[str, Any]] = []
    reused: list[dict[str, Any]] = []
    prune_cfg = PruningConfig(target_loss=cfg.target_loss, discretization=cfg.discretization)
    if cfg.steps is not None:
        prune_cfg = prune_cfg.replace(steps=cfg.steps)
    with tqdm(total=len(tasks) * len(cfg.seeds) * 2, desc="pruning", disable=not progress_bar or not tasks) as bar:
        def log(message: str) -> None:
            bar.update(1)
            bar.write(message)

        for seed in cfg.seeds if tasks else ():
            summaries = []
            for spec, label, model in ((cfg.sparse, pair.names[0], pair.sparse), (cfg.dense, pair.names[1], pair.dense)):
                bar.set_postfix_str(f"seed {seed}, {label}")
                seed_cfg, directory = prune_cfg.replace(seed=seed), out_dir / f"seed_{seed}" / label
                kept = reusable_circuits(directory, tasks, seed_cfg, fingerprints[id(model)]) if can_reuse else {}
                for task, result in kept.items():
                    reused.append({"seed": seed, "model": label, "task": task, "seconds": result.seconds})
                    log(f"seed {seed}, {label}: {task}: kept from the earlier run ({result.circuit.n_nodes} nodes, "
                        f"{result.circuit.n_edges} edges)")
                missing = [t for t in tasks if t not in kept]
                job = PruneJob(model=spec, task=tasks[0], n_train=cfg.n_train, n_fit=cfg.n_fit, n_test=cfg.n_test,
                               data_seed=cfg.data_seed, device=cfg.device)
                fresh = {r.task: r for r in prune_tasks(job, missing, seed_cfg, directory,
                                                        log=lambda m, label=label: log(f"seed {seed}, {label}: {m}"))} if missing else {}
                results = [kept[t] if t in kept else fresh[t] for t in tasks]
                if kept:
                    write_summary(results, directory)
                summaries.append(summary_payload(results))
            comparison = compare_summaries(*summaries)
            atomic_write_text(out_dir / f"seed_{seed}" / "comparison.json", json.dumps(comparison, indent=2) + "\n")
            per_seed.append({"seed": seed, "comparison": comparison, "summaries": {"sparse": summaries[0], "dense": summaries[1]}})
    report = build_report(cfg, pair.names, losses, considered, per_seed)
    report["command"] = command
    report["reused"] = reused
    report["wall_s"] = round(time.perf_counter() - start, 1)
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2) + "\n")  # before the plots read it
    if plot is not None and per_seed:
        report["plots"] = [str(Path(p).relative_to(out_dir)) if Path(p).is_relative_to(out_dir) else str(p)
                           for p in plot(out_dir, report)]
        report["wall_s"] = round(time.perf_counter() - start, 1)
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out_dir / "report.md", report_markdown(report))
    return report


def _spread(values: Sequence[float]) -> Optional[dict[str, float]]:
    if not values:
        return None
    logs = [math.log(max(v, 1e-12)) for v in values]
    mean = sum(logs) / len(logs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / (len(logs) - 1)) if len(logs) > 1 else 0.0
    return {"min": min(values), "max": max(values), "geometric_sd": math.exp(sd), "n": len(values)}


def build_report(cfg: ReproduceConfig, names: tuple[str, str], losses: dict[str, Any], considered: list[dict[str, Any]],
                 per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """The report from the per-seed comparisons (every number is read from the circuits' summaries)."""
    tasks: dict[str, dict[str, Any]] = {}
    for entry in per_seed:
        details = {side: {r["task"]: r for r in entry["summaries"][side]["tasks"]} for side in ("sparse", "dense")}
        for row in entry["comparison"]["tasks"]:
            s, d = details["sparse"][row["task"]], details["dense"][row["task"]]
            tasks.setdefault(row["task"], {"task": row["task"], "seeds": []})["seeds"].append({
                "seed": entry["seed"], "matched": row["matched"], "edge_ratio": row["edge_ratio"],
                "sparse_nodes": s["nodes"], "dense_nodes": d["nodes"], "sparse_edges": s["edges"], "dense_edges": d["edges"],
                "sparse_sufficiency": s["sufficiency_loss"], "dense_sufficiency": d["sufficiency_loss"],
                "sparse_necessity": s["necessity_loss"], "dense_necessity": d["necessity_loss"],
                "sparse_full": s["full_loss"], "dense_full": d["full_loss"],
            })
    all_ratios = []
    for row in tasks.values():
        ratios = [s["edge_ratio"] for s in row["seeds"] if s["matched"]]
        all_ratios += ratios
        row["edge_ratio_geometric_mean"] = geometric_mean(ratios, floor=1e-12)
        row["edge_ratio_spread"] = _spread(ratios)
    seed_ratios = [e["comparison"]["geometric_mean_ratio"] for e in per_seed if e["comparison"]["geometric_mean_ratio"] is not None]
    task_ratios = [r["edge_ratio_geometric_mean"] for r in tasks.values() if r["edge_ratio_geometric_mean"] is not None]
    quote = tasks.get(QUOTE_TASK)
    return {
        "format": FORMAT,
        "config": cfg.to_dict(),
        "models": {"sparse": names[0], "dense": names[1]},
        "validation": {"rows": losses["rows"], "sparse_loss": losses["sparse"], "dense_loss": losses["dense"],
                       "difference": losses["dense"] - losses["sparse"]},
        "tasks_considered": considered,
        "tasks": list(tasks.values()),
        "per_seed": [{"seed": e["seed"], "matched_tasks": e["comparison"]["matched_tasks"],
                      "geometric_mean_edges_sparse": e["comparison"]["geometric_mean_edges_sparse"],
                      "geometric_mean_edges_dense": e["comparison"]["geometric_mean_edges_dense"],
                      "geometric_mean_ratio": e["comparison"]["geometric_mean_ratio"]} for e in per_seed],
        "geometric_mean_ratio": geometric_mean(all_ratios, floor=1e-12),
        "ratio_spread": {"all": _spread(all_ratios), "over_seeds": _spread(seed_ratios), "over_tasks": _spread(task_ratios)},
        "quote_circuit": None if quote is None else {
            "sparse_edges": [s["sparse_edges"] for s in quote["seeds"]], "dense_edges": [s["dense_edges"] for s in quote["seeds"]],
            "sparse_nodes": [s["sparse_nodes"] for s in quote["seeds"]], "seeds": [s["seed"] for s in quote["seeds"]]},
    }


def reused_note(report: dict[str, Any]) -> str:
    """How much of the report an earlier run made (``--resume``): its time is not in the wall time."""
    reused = report.get("reused") or []
    if not reused:
        return ""
    total = 2 * len(report["per_seed"]) * len(report["tasks"])
    seconds = sum(r["seconds"] for r in reused)
    return (f"; {len(reused)} of {total} circuits were kept from an earlier run with the same settings (`--resume`), "
            f"whose pruning took {seconds:.0f} s more")


def report_markdown(report: dict[str, Any]) -> str:
    fmt = lambda v, spec=".3f": "—" if v is None else format(v, spec)  # noqa: E731
    sparse, dense = report["models"]["sparse"], report["models"]["dense"]
    val, cfg = report["validation"], report["config"]
    lines = [
        f"# Dense vs weight-sparse circuits: {sparse} vs {dense} (validation losses below)", "",
        f"Command: `{report.get('command') or 'reproduce(...)'}` — wall time {report.get('wall_s', 0):.0f} s{reused_note(report)}.", "",
        f"Validation loss on the same {val['rows']['rows']:,} rows (evenly spaced over the validation split, every "
        f"{val['rows']['stride']}th; {val['rows']['tokens']:,} tokens): **{sparse} {val['sparse_loss']:.4f}**, **{dense} {val['dense_loss']:.4f}** "
        f"(dense − sparse {val['difference']:+.4f}).", "",
        f"Target task loss {cfg['target_loss']}, mask-training seeds {cfg['seeds']}, pairs: {cfg['n_train']} train / "
        f"{cfg['n_fit']} fit / {cfg['n_test']} held-out test (data seed {cfg['data_seed']}), mask-training steps "
        f"{cfg['steps'] or 'default'}, discretization {cfg['discretization']}.", "",
        "## Tasks both models reach", "",
        f"Full-model task loss on {cfg['eval_pairs']} test pairs (± standard error); a task is pruned when both are "
        f"under {cfg['target_loss']}.", "",
        f"| task | {sparse} | {dense} | pruned |", "|---|---|---|---|",
    ]
    for r in report["tasks_considered"]:
        cell = lambda side: "error" if r[f"{side}_full_loss"] is None else (  # noqa: E731
            f"{r[f'{side}_full_loss']:.3f} ± {fmt(r[f'{side}_full_loss_stderr'])}")
        lines.append(f"| {r['task']} | {cell('sparse')} | {cell('dense')} | {'yes' if r['reached'] else 'no'} |")
    lines += ["", "## Circuits", "",
              "Held-out sufficiency: task loss with only the circuit; necessity: with only the circuit ablated.", "",
              f"| task | seed | nodes ({sparse} / {dense}) | edges ({sparse} / {dense}) | dense/sparse edges | "
              f"sufficiency ({sparse} / {dense}) | necessity ({sparse} / {dense}) |",
              "|---|---|---|---|---|---|---|"]
    for row in report["tasks"]:
        for s in row["seeds"]:
            ratio = f"{s['edge_ratio']:.1f}×" if s["matched"] else "— (target missed)"
            lines.append(f"| {row['task']} | {s['seed']} | {s['sparse_nodes']} / {s['dense_nodes']} | "
                         f"{s['sparse_edges']} / {s['dense_edges']} | {ratio} | {fmt(s['sparse_sufficiency'])} / "
                         f"{fmt(s['dense_sufficiency'])} | {fmt(s['sparse_necessity'])} / {fmt(s['dense_necessity'])} |")
    lines += ["", "## Geometric-mean edge ratio", ""]
    spread = report["ratio_spread"]
    if report["geometric_mean_ratio"] is None:
        lines.append("No task was pruned to the target on both models: no ratio to report.")
    else:
        a = spread["all"]
        lines.append(f"**dense/sparse edges: {report['geometric_mean_ratio']:.2f}×** (geometric mean over {a['n']} "
                     f"task × seed circuits both at the target; range {a['min']:.2f}–{a['max']:.2f}×, geometric SD "
                     f"{a['geometric_sd']:.2f}; paper: ≈16×).")
        for key, what in (("over_tasks", "over tasks (each task's geometric mean over seeds)"),
                          ("over_seeds", "over seeds (each seed's ratio of geometric means over its tasks)")):
            if spread[key]:
                lines.append(f"- {what}: {spread[key]['min']:.2f}–{spread[key]['max']:.2f}× ({spread[key]['n']} values)")
        lines.append("")
        lines.append("| seed | tasks at the target on both | geometric-mean edges (sparse / dense) | ratio |")
        lines.append("|---|---|---|---|")
        for e in report["per_seed"]:
            lines.append(f"| {e['seed']} | {e['matched_tasks']} | {fmt(e['geometric_mean_edges_sparse'], '.1f')} / "
                         f"{fmt(e['geometric_mean_edges_dense'], '.1f')} | {fmt(e['geometric_mean_ratio'], '.2f')}× |")
    quote = report.get("quote_circuit")
    lines += ["", "## The closing-quote circuit", ""]
    if quote:
        lines.append(f"`{QUOTE_TASK}` edges per seed {quote['seeds']}: {sparse} {quote['sparse_edges']} "
                     f"({quote['sparse_nodes']} nodes), {dense} {quote['dense_edges']} (paper: 12 nodes, 9 edges).")
    else:
        lines.append(f"`{QUOTE_TASK}` was not pruned (not reached by both models, or not among the tasks).")
    if report.get("plots"):
        lines += ["", "## Plots", ""] + [f"- [{p}]({p})" for p in report["plots"]]
    return "\n".join(lines) + "\n"
