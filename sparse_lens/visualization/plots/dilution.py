"""Context dilution (paper Sec. 4): bracket_counting against the number of elements in the open list,
for the model and its circuit. Left: accuracy, with chance at 0.5. Right: the loss on each side of the
task — prompts whose answer is ``]]`` and prompts whose answer is ``]`` — so a reader sees which side
breaks as the list grows (the paper's prediction: the ``]]`` side, as the averaged depth signal fades)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence, Union

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from sparse_lens.visualization.plots.style import BLUE, GREY, ORANGE, new_figure, styled

DilutionSource = Union[Sequence[Any], dict, str, Path]


def dilution_points(source: DilutionSource) -> list[dict]:
    """The points of a dilution measurement as dicts (``n_elements``, ``model``, ``circuit``): from
    `context_dilution`'s list of `DilutionPoint`, its ``to_dict()`` rows, or a JSON file / dict holding
    them under ``"points"`` (a ``predictions.json`` under ``"dilution"``)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            source = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"source: could not read a dilution JSON from {path}: {e}") from None
    if isinstance(source, dict):
        source = source.get("dilution", source)  # a `sparse-lens predictions` report holds it under "dilution"
        if not isinstance(source, dict) or "points" not in source:
            raise ValueError("source: a dilution dict must hold its measurements under 'points'")
        source = source["points"]
    points = [p.to_dict() if hasattr(p, "to_dict") else p for p in source]
    for i, p in enumerate(points):
        if not (isinstance(p, dict) and "n_elements" in p and isinstance(p.get("model"), dict)):
            raise ValueError(f"source: point {i} is not a dilution point (expected n_elements and model results)")
    if not points:
        raise ValueError("source: no dilution points to plot")
    return sorted(points, key=lambda p: p["n_elements"])


def plot_context_dilution(source: DilutionSource, model_name: str = "model") -> Figure:
    """Accuracy and per-side loss of bracket_counting vs list length, for the model (solid) and, where
    measured, its circuit (dashed)."""
    points = dilution_points(source)
    n = [p["n_elements"] for p in points]
    has_circuit = any(p.get("circuit") for p in points)
    fig = new_figure(9.5, 3.6)
    with styled():
        acc_ax, loss_ax = fig.subplots(1, 2)
        for key, style in (("model", "-"), ("circuit", "--")):
            rows = [(x, p[key]) for x, p in zip(n, points) if p.get(key)]
            if not rows:
                continue
            xs = [x for x, _ in rows]
            acc_ax.plot(xs, [r["accuracy"] for _, r in rows], style, marker="o", color=BLUE, lw=1.6)
            loss_ax.plot(xs, [r["loss_positive"] for _, r in rows], style, marker="o", color=ORANGE, lw=1.6)
            loss_ax.plot(xs, [r["loss_negative"] for _, r in rows], style, marker="s", color=BLUE, lw=1.6)
        acc_ax.axhline(0.5, color=GREY, ls=":", lw=1.2)
        acc_ax.text(n[0], 0.48, "chance", ha="left", va="top", fontsize=8, color=GREY)
        acc_ax.set_ylim(0.0, 1.02)
        acc_ax.set_ylabel("accuracy (test pairs)")
        acc_ax.set_title("bracket_counting accuracy", loc="left")
        loss_ax.set_ylabel("task loss (nats)")
        loss_ax.set_title("loss on each side of the task", loc="left")
        loss_ax.set_ylim(bottom=0)
        for ax in (acc_ax, loss_ax):
            ax.set_xscale("log", base=2)
            ax.set_xticks(n, [str(x) for x in n])
            ax.set_xlabel("elements in the open list")
        handles = [Line2D([], [], color=BLUE, marker="o", label="accuracy"),
                   Line2D([], [], color=ORANGE, marker="o", label="loss, depth 2 (answer ]])"),
                   Line2D([], [], color=BLUE, marker="s", label="loss, depth 1 (answer ])"),
                   Line2D([], [], color="black", ls="-", label=model_name)]
        if has_circuit:
            handles.append(Line2D([], [], color="black", ls="--", label="its circuit (rest mean-ablated)"))
        fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
        fig.suptitle("Context dilution: does bracket counting break as the list grows?", x=0.01, ha="left",
                     fontweight="bold", fontsize=11)
    return fig
