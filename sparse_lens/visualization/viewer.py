"""The circuit viewer: one self-contained HTML file per circuit (works from ``file://``, offline).

    from sparse_lens.visualization import write_circuit_html
    write_circuit_html(circuit, "quote.html")            # or circuit.to_html("quote.html")
    circuit.show()                                       # the same view inline in Jupyter

Export (`export_circuit_view`) computes everything the page shows, once, with the model's own
forward and hooks: the graph (`circuit_graph`) and each node's panel (`node_panel`). The page
(`circuit_html`) inlines the vendored d3 (``static/vendor``), the circuitsvis bundle shipped inside
the circuitsvis package, the viewer's own JavaScript and CSS (``static/``) and the data as JSON; no
request leaves the page (its Content-Security-Policy forbids any).

For a page with several circuits (a report), put `viewer_assets()` once in the page and one
`circuit_fragment(view)` per circuit; or embed whole pages with `circuit_iframe`.
"""

from __future__ import annotations

import html
import itertools
import json
import re
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Union

import torch
from jaxtyping import Int
from torch import Tensor

from sparse_lens.io import atomic_write_text
from sparse_lens.pruning.nodes import NODE_KINDS
from sparse_lens.visualization.circuit_graph import EDGE_KINDS, CircuitMismatchError, check_circuit_fits, circuit_graph
from sparse_lens.visualization.node_panel import (
    ablation_losses, attention_patterns, context_examples, task_activations, token_strings,
)

FORMAT = "sparse_lens.circuit_view/1"
STATIC = Path(__file__).resolve().parent / "static"
# Our scripts, in load order (after d3 and circuitsvis).
SCRIPTS = ("dom.js", "node_panel.js", "circuit_viewer.js")
STYLE = "circuit_viewer.css"
VENDOR_SCRIPTS = ("vendor/d3.v7.min.js",)
# Nothing may be fetched: every script, style and image is inline.
CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
       "img-src data:; font-src data:")


# ---------------------------------------------------------------------------- export
def _load_model(circuit, source: str):
    if not circuit.model:
        raise ValueError(f"{source}: the circuit records no model name; pass the model (model=...) to view it")
    from sparse_lens.model import HookedSparseTransformer

    try:
        return HookedSparseTransformer.from_pretrained(circuit.model)
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise ValueError(f"{source}: cannot load its model {circuit.model!r} ({err})") from err


def _task_batch(model, task: str, n_pairs: int, seed: int, source: str):
    from sparse_lens.tasks import get_task, tokenize_pairs

    try:
        spec = get_task(task)
    except (KeyError, ValueError) as err:
        raise ValueError(f"{source}: task {task!r} is not registered, so its pairs cannot be made; "
                         "pass task_batch=... (sparse_lens.tasks.tokenize_pairs)") from err
    pairs = spec.generate(n_pairs, seed=seed, split="test", tokenizer=model.tokenizer, max_tokens=model.cfg.n_ctx)
    return tokenize_pairs(pairs, model.tokenizer, n_ctx=model.cfg.n_ctx, task_name=task)


def pretraining_windows(model, n_windows: int = 256, window: int = 64) -> Int[Tensor, "n_windows window"]:
    """Token ids from the pretraining corpus's validation split (a fixed sample)."""
    from sparse_lens.pruning.task_data import validation_batches

    if not 1 <= window <= model.cfg.n_ctx:
        raise ValueError(f"window: expected 1 to the model's context ({model.cfg.n_ctx}) tokens, got {window}")
    if n_windows < 1:
        raise ValueError(f"n_windows: expected a positive number, got {n_windows}")
    per_row = model.cfg.n_ctx // window
    rows = torch.cat(validation_batches(model, -(-n_windows // per_row) * model.cfg.n_ctx))
    windows = rows[:, : per_row * window].reshape(-1, window)
    return windows[:n_windows]


def _completions(batch) -> Optional[tuple[int, int]]:
    """(A, B): the completion of the positive rows and of the negative rows, when every pair shares them."""
    a = batch.target[batch.positive].unique()
    b = batch.alternative[batch.positive].unique()
    return (int(a[0]), int(b[0])) if len(a) == 1 and len(b) == 1 else None


def _check_model(model, circuit, source: str) -> None:
    check_circuit_fits(model, circuit, source)
    try:
        circuit.check_model(model)  # the recorded weights fingerprint, where there is one
    except ValueError as err:
        raise CircuitMismatchError(f"{source}: {err}") from err


def export_circuit_view(
    circuit,
    model=None,
    *,
    task_batch=None,
    context_tokens: Optional[torch.Tensor] = None,
    n_pairs: int = 32,
    n_windows: int = 256,
    window: int = 64,
    seed: int = 0,
    source: Optional[str] = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Everything the viewer shows, as JSON-ready data.

    ``model``: the model the circuit was pruned on (default: loaded by the circuit's recorded name).
    ``task_batch``: the task pairs for the node panel (default: ``n_pairs`` held-out pairs of the
    circuit's task). ``context_tokens`` [windows, pos]: pretraining text for the top/bottom contexts
    (default: ``n_windows`` windows of ``window`` tokens of the validation split). ``source`` names
    the circuit in error messages (e.g. its file).
    """
    source = source or f"circuit {circuit.task!r}"
    start = time.perf_counter()
    steps = _progress(progress, total=6)
    timings: dict[str, float] = {}
    clock = [start]

    def lap(name: str) -> None:
        now = time.perf_counter()
        timings[name] = round(now - clock[0], 2)
        clock[0] = now
        steps.update(1, name)

    if model is None:
        model = _load_model(circuit, source)
    _check_model(model, circuit, source)
    lap("model")

    if task_batch is None:
        task_batch = _task_batch(model, circuit.task, n_pairs, seed, source)
    completions = _completions(task_batch)
    graph = circuit_graph(model, circuit, completions)
    n_drawn = len(graph["edges"]["source"])
    if circuit.edges and n_drawn != circuit.n_edges:
        raise CircuitMismatchError(
            f"{source}: records {circuit.n_edges} edges but the model's weights give {n_drawn} between its "
            "nodes — the circuit was made for another model (or other weights)")
    nodes = graph["nodes"][2:]
    lap("task pairs and graph")

    ablations = _with_progress(progress, len(nodes) * 2 * len(task_batch), "ablations (rows)",
                               lambda tick: ablation_losses(model, circuit, task_batch, nodes, progress=tick))
    lap("ablations")
    if context_tokens is None and nodes:
        context_tokens = pretraining_windows(model, n_windows, window)
    contexts = context_examples(model, nodes, context_tokens) if nodes else []
    lap("contexts")
    task, task_examples = task_activations(model, circuit, nodes, task_batch) if nodes else ([], [])
    heads = sorted({(n["layer"], n["head"]) for n in nodes if n["kind"] in ("q", "k")})
    attention = attention_patterns(model, circuit, heads, task_batch)
    lap("activations on task pairs")

    for i, node in enumerate(nodes):
        node["ablation"] = {"circuit": ablations["circuit_without"][i], "full": ablations["full_without"][i]}
        node["contexts"] = contexts[i]
        node["task"] = task[i]

    ids = set(attention["tokens"])
    for ex in task_examples:
        ids.update(ex["positive"], ex["negative"])
    for c in contexts:
        for level in c["levels"]:
            for ex in level["examples"]:
                ids.update(ex["tokens"])
    if completions:
        ids.update(completions)
    vocab = {str(i): s for i, s in token_strings(model, ids).items()}

    view = {
        "format": FORMAT,
        "meta": _meta(model, circuit, source, task_batch, completions, vocab, ablations,
                      {"n_pairs": len(task_batch) // 2, "n_windows": 0 if context_tokens is None else len(context_tokens),
                       "window": 0 if context_tokens is None else int(context_tokens.shape[1])}),
        **graph,
        "task_examples": task_examples,
        "attention": attention,
        "vocab": vocab,
    }
    lap("page data")
    view["meta"]["export_seconds"] = round(time.perf_counter() - start, 1)
    view["meta"]["export_timings"] = timings
    steps.close()
    return view


def _meta(model, circuit, source, batch, completions, vocab, ablations, settings) -> dict[str, Any]:
    cfg = model.cfg
    by_kind = {kind: 0 for kind in NODE_KINDS}  # forward order
    for key, n in circuit.nodes_by_kind().items():
        by_kind[key.split("@")[0]] += n
    edge_order = {k: i for i, k in enumerate(EDGE_KINDS)}
    edges = sorted(((k, v) for k, v in circuit.edges.items() if k != "total"), key=lambda kv: edge_order.get(kv[0], 99))
    losses = {k: v for k, v in circuit.losses.items() if isinstance(v, (int, float))}
    return {
        "source": source, "model": circuit.model, "task": circuit.task, "target_loss": circuit.target_loss,
        "n_nodes": circuit.n_nodes, "n_edges": circuit.n_edges, "nodes_by_kind": by_kind,
        "nodes_by_kind_and_layer": circuit.nodes_by_kind(),
        "edges_by_kind": dict(edges),
        "losses": losses,
        "calibration": {"scale": circuit.calibration.scale, "shift": circuit.calibration.shift},
        "model_fingerprint": getattr(circuit, "model_fingerprint", None),
        "cfg": {"n_layers": cfg.n_layers, "d_model": cfg.d_model, "n_heads": cfg.n_heads, "d_head": cfg.d_head,
                "d_mlp": cfg.d_mlp},
        "completions": [vocab.get(str(c), str(c)) for c in completions] if completions else None,
        "panel_losses": {"circuit": ablations["circuit_loss"], "full": ablations["full_loss"]},
        "settings": settings,
        "diagnostics": _diagnostics(circuit),
    }


def _diagnostics(circuit, max_points: int = 200) -> dict[str, Any]:
    """How pruning got to the circuit, for the overview's charts: loss(k) at every k the bisection
    evaluated, and the mask-training curves (at most ``max_points`` steps). Empty for circuits
    written before pruning recorded them."""
    d = getattr(circuit, "diagnostics", None) or {}
    out: dict[str, Any] = {}
    try:
        b = d.get("bisection") or {}
        points = sorted((int(e["k"]), float(e["loss"])) for e in b.get("evaluations") or [])
        if points:
            out["bisection"] = {"target": b.get("target", circuit.target_loss), "k": b.get("k"),
                                "n_units": b.get("n_units"), "points": [[k, _round(v)] for k, v in points]}
        m = d.get("mask_training") or {}
        steps = list(m.get("step") or [])
        if steps and len(m.get("task_loss") or []) == len(steps) and len(m.get("kept") or []) == len(steps):
            stride = max(1, -(-len(steps) // max_points))
            idx = sorted(set(range(0, len(steps), stride)) | {len(steps) - 1})
            out["mask_training"] = {"step": [int(steps[i]) for i in idx],
                                    "task_loss": [_round(float(m["task_loss"][i])) for i in idx],
                                    "kept": [_round(float(m["kept"][i])) for i in idx]}
    except (AttributeError, KeyError, TypeError, ValueError):
        return {}  # malformed diagnostics: the charts are left out, nothing else depends on them
    return out


def _round(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


class _Steps:
    def __init__(self, bar):
        self.bar = bar

    def update(self, n: int, label: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(label)
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _progress(enabled: bool, total: int) -> _Steps:
    if not enabled:
        return _Steps(None)
    from tqdm.auto import tqdm

    return _Steps(tqdm(total=total, desc="viewer export", unit="step", leave=False))


def _with_progress(enabled: bool, total: int, desc: str, fn):
    if not enabled:
        return fn(None)
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=f"  {desc}", unit="row", unit_scale=True, leave=False) as bar:
        return fn(bar.update)


# ---------------------------------------------------------------------------- HTML
def script_safe(text: str) -> str:
    """Text that cannot end the <script>/<style> element it is inlined in: ``</script`` (or
    ``</style``) and ``<!--`` escaped — inside JavaScript strings ``<\\/`` and ``<\\!`` read the same."""
    return re.sub(r"</(script|style)", r"<\\/\1", text, flags=re.IGNORECASE).replace("<!--", "<\\!--")


def json_script_safe(data: Any) -> str:
    """JSON for a ``<script type="application/json">`` element (``<``, ``>``, ``&`` as \\u escapes)."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@lru_cache(maxsize=None)
def _static(name: str) -> str:
    path = STATIC / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: a viewer asset is missing from the installed package (reinstall sparse-lens)")
    return path.read_text(encoding="utf-8")


def viewer_assets() -> str:
    """The style and scripts every viewer on a page needs (include once per page)."""
    from sparse_lens.visualization.circuitsvis_views import bundle_script

    parts = [f"<style>\n{script_safe(_static(STYLE))}\n</style>"]
    parts += [f"<script>\n{script_safe(_static(name))}\n</script>" for name in VENDOR_SCRIPTS]
    parts.append(bundle_script())
    parts += [f"<script>\n{script_safe(_static(name))}\n</script>" for name in SCRIPTS]
    return "\n".join(parts)


_ids = itertools.count()


def circuit_fragment(view: dict[str, Any], element_id: Optional[str] = None, height: Optional[int] = None) -> str:
    """One circuit's viewer as an HTML fragment (needs `viewer_assets()` earlier on the page)."""
    if view.get("format") != FORMAT:
        raise ValueError(f"view: expected data from export_circuit_view (format {FORMAT!r})")
    element_id = element_id or f"sl-circuit-{next(_ids)}"
    style = f' style="height:{int(height)}px"' if height else ""
    return (f'<div class="sl-viewer" id="{element_id}"{style}></div>\n'
            f'<script type="application/json" id="{element_id}-data">{json_script_safe(view)}</script>\n'
            f"<script>SparseLensViewer.mount(document.getElementById({json.dumps(element_id)}), "
            f"JSON.parse(document.getElementById({json.dumps(element_id + '-data')}).textContent));</script>")


def circuit_html(view: dict[str, Any], title: Optional[str] = None) -> str:
    """A whole page holding one circuit's viewer: every script, style and datum inline."""
    meta = view["meta"]
    title = title or f"circuit: {meta['task']} · {meta['model'] or 'model'}"
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n{viewer_assets()}\n</head>\n"
            f'<body class="sl-page">\n{circuit_fragment(view, element_id="sl-circuit")}\n</body>\n</html>\n')


def circuit_iframe(page: str, height: int = 900) -> str:
    """An ``<iframe srcdoc>`` holding a whole viewer page (isolated scripts and styles)."""
    return (f'<iframe class="sl-viewer-frame" style="width:100%;height:{int(height)}px;border:1px solid #ddd;'
            f'border-radius:6px" sandbox="allow-scripts" srcdoc="{html.escape(page, quote=True)}"></iframe>')


def write_circuit_html(circuit, path: Union[str, Path], model=None, view: Optional[dict[str, Any]] = None,
                       **export: Any) -> Path:
    """Export ``circuit`` (unless ``view`` is given) and write its viewer page to ``path`` atomically
    (a failed export writes nothing). ``export`` goes to `export_circuit_view`."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"out: {path} is a directory; expected an .html file path")
    if view is None:
        view = export_circuit_view(circuit, model, **export)
    page = circuit_html(view)
    return atomic_write_text(path, page, argument="viewer page")


class CircuitViewHTML:
    """A viewer page shown inline in Jupyter (an iframe, so several viewers never clash)."""

    def __init__(self, page: str, height: int = 900):
        self.page = page
        self.height = height

    def _repr_html_(self) -> str:
        return circuit_iframe(self.page, self.height)

    def save(self, path: Union[str, Path]) -> Path:
        return atomic_write_text(path, self.page, argument="viewer page")


def show_circuit(circuit, model=None, height: int = 900, **export: Any) -> Optional[CircuitViewHTML]:
    """Show the viewer inline: inside IPython / Jupyter it is displayed at once (and None returned,
    so it is not shown twice); elsewhere the object is returned (its ``_repr_html_`` is the view)."""
    view = CircuitViewHTML(circuit_html(export_circuit_view(circuit, model, **export)), height)
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return view
    if get_ipython() is None:
        return view
    display(view)
    return None
