"""The pruning report: one offline HTML page for a `sparse-lens prune --out DIR` run (what `make demo`
writes as ``runs/demo/report.html``).

The page holds the results table (``summary.json``), and for each task its plots (task loss against k
along the bisection, the mask-training curves) and its interactive circuit viewer, inline. Every
script, style, image and datum is in the file: it opens from ``file://`` with no network and no server.
Each circuit's viewer is also written on its own page (``DIR/TASK.html``) and each plot as PNG and SVG
(``DIR/plots/``).
"""

from __future__ import annotations

import base64
import datetime
import html
import io
from pathlib import Path
from typing import Any, Optional, Union

from sparse_lens.io import atomic_write_text, read_json_object

REPORT_FILE = "report.html"
SUMMARY_FILE = "summary.json"

_STYLE = """
body.sl-report { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2328;
  margin: 0 auto; max-width: 1500px; padding: 24px 32px 64px; background: #fafafa; }
.sl-report h1 { font-size: 24px; margin: 0 0 4px; }
.sl-report h2 { font-size: 19px; margin: 36px 0 8px; padding-top: 12px; border-top: 1px solid #ddd; }
.sl-report .sub { color: #59636e; margin: 0 0 16px; }
.sl-report table.results { border-collapse: collapse; background: #fff; margin: 8px 0 4px; }
.sl-report table.results th, .sl-report table.results td { border: 1px solid #d0d7de; padding: 5px 10px;
  text-align: right; font-variant-numeric: tabular-nums; }
.sl-report table.results th { background: #f0f3f6; font-weight: 600; }
.sl-report table.results td:first-child, .sl-report table.results th:first-child { text-align: left; }
.sl-report .note { color: #59636e; font-size: 13px; }
.sl-report .plots { display: flex; gap: 16px; flex-wrap: wrap; margin: 8px 0 16px; }
.sl-report .plots img { max-width: 700px; width: 100%; background: #fff; border: 1px solid #d0d7de; border-radius: 6px; }
.sl-report .viewer-box { height: 860px; background: #fff; border: 1px solid #d0d7de; border-radius: 6px; }
.sl-report a { color: #0969da; }
"""

_COLUMNS = (  # (summary.json key, header, format)
    ("nodes", "nodes", "{:d}"),
    ("edges", "edges", "{:,d}"),
    ("fit_loss", "loss at target (fit)", "{:.3f}"),
    ("sufficiency_loss", "held-out sufficiency", "{:.3f}"),
    ("necessity_loss", "held-out necessity", "{:.3f}"),
    ("full_loss", "full model", "{:.3f}"),
    ("seconds", "time (s)", "{:.0f}"),
)


def _cell(value: Any, fmt: str) -> str:
    return "—" if value is None else html.escape(fmt.format(value))


def results_table(rows: list[dict[str, Any]]) -> str:
    """The summary rows as an HTML table (a task the model does not reach is marked so)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in _COLUMNS)
    body = []
    for row in rows:
        note = "" if row.get("reachable") else (" (not learned: skipped)" if row.get("skipped") else " (target unreachable)")
        cells = "".join(f"<td>{_cell(row.get(key), fmt)}</td>" for key, _, fmt in _COLUMNS)
        body.append(f'<tr><td><a href="#task-{html.escape(row["task"])}">{html.escape(row["task"])}</a>'
                    f"{html.escape(note)}</td>{cells}</tr>")
    return f'<table class="results"><tr><th>task</th>{head}</tr>\n' + "\n".join(body) + "</table>"


def _png_data_uri(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _read_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / SUMMARY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"RUN: {run_dir} has no {SUMMARY_FILE}; expected the --out directory of 'sparse-lens prune'")
    summary = read_json_object(path, "a 'sparse-lens prune' summary")
    if not isinstance(summary.get("tasks"), list):
        raise ValueError(f"{path}: expected a 'sparse-lens prune' summary with a 'tasks' list")
    return summary


def write_report(
    run_dir: Union[str, Path],
    out: Optional[Union[str, Path]] = None,
    model=None,
    n_pairs: int = 32,
    n_windows: int = 256,
    progress: bool = True,
    **export: Any,
) -> Path:
    """Write the report of a `sparse-lens prune --out RUN_DIR` run (default ``RUN_DIR/report.html``).

    ``model``: the pruned model (default: loaded once by the name the circuits record).
    ``n_pairs`` / ``n_windows``: task pairs and pretraining windows for each viewer's node panel;
    other keyword arguments (``task_batch``, ``context_tokens``, ``seed``) go to `export_circuit_view`.
    A task the model does not reach gets its row and plots but no viewer: its "circuit" is every node.
    """
    from matplotlib import pyplot as plt

    from sparse_lens.pruning.circuit import Circuit
    from sparse_lens.visualization.plots import plot_bisection, plot_mask_training, save_figure
    from sparse_lens.visualization.viewer import circuit_fragment, circuit_html, export_circuit_view, viewer_assets

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / REPORT_FILE
    if out.is_dir():
        raise IsADirectoryError(f"--out: {out} is a directory; expected an .html file path")
    summary = _read_summary(run_dir)
    rows = summary["tasks"]
    circuits = {}
    for row in rows:  # check every circuit before the slow part
        circuits[row["task"]] = Circuit.load(run_dir / f"{row['task']}.json")
    models: dict[str, Any] = {}
    sections = []
    for row in rows:
        task = row["task"]
        circuit = circuits[task]
        if model is None and circuit.model:
            from sparse_lens.model import HookedSparseTransformer

            if circuit.model not in models:
                models[circuit.model] = HookedSparseTransformer.from_pretrained(circuit.model)
            task_model = models[circuit.model]
        else:
            task_model = model
        images = []
        for name, plot in (("bisection", plot_bisection), ("mask_training", plot_mask_training)):
            try:
                fig = plot(circuit)
            except ValueError as err:  # e.g. a circuit saved before pruning recorded its diagnostics
                images.append(f'<p class="note">{html.escape(name)} plot: {html.escape(str(err))}</p>')
                continue
            save_figure(fig, run_dir / "plots" / f"{task}_{name}")
            images.append(f'<img alt="{html.escape(task)}: {name}" src="{_png_data_uri(fig)}">')
            plt.close(fig)
        if not row.get("reachable"):  # the "circuit" is the whole model: nothing to read, and slow to export
            why = "the model has not learned the task" if row.get("skipped") else "the target loss was not reached"
            sections.append(
                f'<h2 id="task-{html.escape(task)}">{html.escape(task)}</h2>\n'
                f'<p class="sub">No circuit: {why} (full model\'s task loss {_cell(row.get("full_loss"), "{:.3f}")}, '
                f'target {circuit.target_loss:g}), so pruning keeps every node. Nothing is drawn.</p>\n'
                f'<div class="plots">{"".join(images)}</div>')
            continue
        if progress:
            print(f"report: exporting the {task} circuit's viewer", flush=True)
        view = export_circuit_view(circuit, task_model, n_pairs=n_pairs, n_windows=n_windows,
                                   source=str(run_dir / f"{task}.json"), progress=progress, **export)
        atomic_write_text(run_dir / f"{task}.html", circuit_html(view), argument="viewer page")
        sections.append(
            f'<h2 id="task-{html.escape(task)}">{html.escape(task)}</h2>\n'
            f'<p class="sub">{row["nodes"]} nodes, {row["edges"]:,} edges · '
            f'<a href="{html.escape(task)}.html">open the viewer on its own page</a></p>\n'
            f'<div class="plots">{"".join(images)}</div>\n'
            f'<div class="viewer-box">{circuit_fragment(view, element_id=f"sl-circuit-{task}")}</div>'
        )
    names = sorted({c.model for c in circuits.values() if c.model}) or ["(unnamed model)"]
    targets = sorted({c.target_loss for c in circuits.values()})
    gm = summary.get("geometric_mean_edges")
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    from sparse_lens.visualization.viewer import CSP

    page = (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>sparse_lens pruning report · {html.escape(', '.join(names))}</title>\n"
        f"<style>{_STYLE}</style>\n{viewer_assets()}\n</head>\n<body class=\"sl-report\">\n"
        f"<h1>Circuits of {html.escape(', '.join(names))}</h1>\n"
        f'<p class="sub">{len(rows)} task(s), target task loss {", ".join(f"{t:g}" for t in targets)} · '
        f"written {when} from <code>{html.escape(str(run_dir))}</code></p>\n"
        f"{results_table(rows)}\n"
        + (f'<p class="note">Geometric mean of edges over the tasks that reach the target: {gm:,.1f}.</p>\n'
           if gm is not None else "")
        + '<p class="note">Sufficiency: the task loss with only the circuit kept (every other node mean-ablated), on '
        "held-out pairs; necessity: with only the circuit's nodes ablated. Hover a node in a viewer to light up its "
        "edges; click it for its panel.</p>\n"
        + "\n".join(sections)
        + "\n</body>\n</html>\n"
    )
    return atomic_write_text(out, page, argument="report")
