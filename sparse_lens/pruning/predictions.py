"""The circuits' predictions, tested (paper Sec. 4) in one call: context dilution of bracket counting
for the model and its circuit, and feature validation by replacement on the quote circuit's most
quote-type nodes.

    report = circuit_predictions(model, circuits_dir="runs/demo")
    print(predictions_markdown(report))

``circuits_dir`` is a ``sparse-lens prune`` output: ``bracket_counting.json`` and
``single_double_quote.json`` are used when present (each prediction is measured on the model alone
otherwise, and the report says so).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from sparse_lens.model.identity import model_name
from sparse_lens.pruning.circuit import Circuit
from sparse_lens.pruning.context_dilution import DEFAULT_LENGTHS, context_dilution, format_dilution
from sparse_lens.pruning.feature_replacement import rank_quote_nodes, replacement_study

BRACKETS, QUOTES = "bracket_counting", "single_double_quote"


def _circuit(circuits_dir: Optional[Path], task: str, model: Any) -> Optional[Circuit]:
    if circuits_dir is None:
        return None
    path = Path(circuits_dir) / f"{task}.json"
    if not path.is_file():
        return None
    circuit = Circuit.load(path)
    circuit.check_model(model)
    return circuit


def _circuit_info(circuit: Optional[Circuit], path: Optional[Path]) -> Optional[dict[str, Any]]:
    if circuit is None:
        return None
    return {"file": str(path), "nodes": circuit.n_nodes, "edges": circuit.n_edges,
            "target_loss": circuit.target_loss, "losses": dict(circuit.losses)}


def circuit_predictions(
    model: Any,
    circuits_dir: Optional[str | Path] = None,
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    n_pairs: int = 64,
    n_nodes: int = 3,
    n_fit: int = 64,
    n_test: int = 128,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Both predictions as a JSON-ready dict: ``dilution`` (points per list length, for the model and
    the bracket circuit when there is one) and ``replacement`` (the ``n_nodes`` circuit nodes that best
    separate single- from double-quoted strings, each replaced by the fitted quote labeller)."""
    if n_nodes < 1:
        raise ValueError(f"n_nodes: expected an integer >= 1, got {n_nodes}")
    circuits_dir = Path(circuits_dir) if circuits_dir is not None else None
    if circuits_dir is not None and not circuits_dir.is_dir():
        raise FileNotFoundError(f"circuits_dir: {circuits_dir} is not a directory (a `sparse-lens prune` output)")
    brackets = _circuit(circuits_dir, BRACKETS, model)
    quotes = _circuit(circuits_dir, QUOTES, model)

    points = context_dilution(model, lengths=lengths, circuit=brackets, n_pairs=n_pairs, seed=seed)

    # The candidates are the quote circuit's nodes, studied within it (every other node mean-ablated).
    replacement: dict[str, Any] = {"circuit": None, "nodes": []}
    if quotes is not None:
        ranked = rank_quote_nodes(model, quotes.kept_nodes(), task=QUOTES, n_fit=n_fit, seed=seed)
        for q in ranked[:n_nodes]:
            study = replacement_study(model, (q.site, q.index), task=QUOTES, n_fit=n_fit, n_test=n_test,
                                     seed=seed, circuit=quotes)
            replacement["nodes"].append({"separation": q.separation, **study.to_dict()})
            if progress:
                print(f"replaced {q.node}: loss {study.loss_clean:.3f} -> {study.loss_replaced:.3f}", flush=True)
        replacement["circuit"] = _circuit_info(quotes, circuits_dir / f"{QUOTES}.json")
    return {
        "model": model_name(model) or type(model).__name__,
        "seed": seed,
        "dilution": {"n_pairs": n_pairs, "circuit": _circuit_info(brackets, circuits_dir / f"{BRACKETS}.json" if brackets else None),
                     "points": [p.to_dict() for p in points], "table": format_dilution(points)},
        "replacement": replacement,
    }


def predictions_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: the dilution table and the replacement table."""
    d, r = report["dilution"], report["replacement"]
    lines = ["# The circuits' predictions", "", f"Model: `{report['model']}`, seed {report['seed']}.", "",
             "## Context dilution (bracket_counting vs list length)", ""]
    if d["circuit"]:
        c = d["circuit"]
        lines.append(f"Circuit: `{c['file']}` ({c['nodes']} nodes, {c['edges']} edges; every other node mean-ablated).")
    else:
        lines.append("No bracket_counting circuit given: the model alone.")
    lines += ["", f"{d['n_pairs']} test pairs per length; `loss ]]`: prompts with a nested list open "
              "(depth 2, answer `]]`), `loss ]`: prompts with one list open (depth 1, answer `]`).", "", "```", d["table"], "```", "",
              "## Feature validation by replacement (single_double_quote)", ""]
    if not r["circuit"]:
        lines.append("No single_double_quote circuit given: not measured.")
        return "\n".join(lines) + "\n"
    c = r["circuit"]
    lines += [f"Circuit: `{c['file']}` ({c['nodes']} nodes, {c['edges']} edges). Each node below is one of the "
              "circuit's nodes that best separate single- from double-quoted strings (separation = |mean inside "
              "'…' − mean inside \"…\"| / pooled std). Its activation is replaced at every position by the labeller "
              "(its mean inside '…', its mean inside \"…\", 0 elsewhere); *swapped* exchanges the two values; "
              "*mean-ablated* holds its mean. Task loss on the test pairs, within the circuit:", "",
              "| node | separation | labeller '…' / \"…\" | clean | replaced | swapped | mean-ablated | acc clean → replaced |",
              "|---|---|---|---|---|---|---|---|"]
    for n in r["nodes"]:
        lines.append(f"| `{n['node']}` | {n['separation']:.2f} | {n['single']:.3f} / {n['double']:.3f} | "
                     f"{n['loss_clean']:.3f} | {n['loss_replaced']:.3f} | {n['loss_swapped']:.3f} | "
                     f"{n['loss_mean_ablated']:.3f} | {n['accuracy_clean']:.2f} → {n['accuracy_replaced']:.2f} |")
    return "\n".join(lines) + "\n"
