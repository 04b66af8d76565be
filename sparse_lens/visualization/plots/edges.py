"""Edges per task, weight-sparse vs dense model, from a `prune-compare` report (paper Fig. 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Union

from matplotlib.figure import Figure
from matplotlib.patches import Patch

from sparse_lens.visualization.plots.sources import comparison_report
from sparse_lens.visualization.plots.style import BLUE, GREY, ORANGE, new_figure, styled


def plot_edges_sparse_vs_dense(source: Union[dict, str, Path], sparse_name: str = "sparse",
                               dense_name: str = "dense") -> Figure:
    """Horizontal bars of circuit edges per task for both models (log scale), the dense/sparse ratio
    beside each matched task, and the geometric-mean ratio in the title. Tasks that either model did
    not prune to the target are drawn hatched and marked "target missed"."""
    report = comparison_report(source)
    rows = report["tasks"]
    fig = new_figure(7.5, 1.4 + 0.55 * len(rows))
    with styled():
        ax = fig.add_subplot()
        height = 0.38
        ys = list(range(len(rows)))[::-1]  # first task on top
        for y, row in zip(ys, rows):
            hatch = None if row["matched"] else "///"
            alpha = 1.0 if row["matched"] else 0.45
            for offset, key, colour in ((height / 2, "sparse_edges", BLUE), (-height / 2, "dense_edges", ORANGE)):
                ax.barh(y + offset, max(row[key], 1), height=height, color=colour, alpha=alpha, hatch=hatch,
                        edgecolor="white" if hatch else None)
                ax.text(max(row[key], 1) * 1.08, y + offset, f"{row[key]:,}", va="center", fontsize=8)
        ax.set_xscale("log")
        xmin = min(min(r["sparse_edges"], r["dense_edges"]) for r in rows)
        xmax = max(max(r["sparse_edges"], r["dense_edges"], 1) for r in rows)
        ax.set_xlim(max(0.8, xmin / 4), xmax * 4)
        for y, row in zip(ys, rows):  # the ratio in a column right of the axes
            matched = row["matched"] and row.get("edge_ratio")
            ax.text(1.02, y, f"{row['edge_ratio']:.1f}× fewer" if matched else "target\nmissed", va="center",
                    ha="left", fontsize=9, transform=ax.get_yaxis_transform(), clip_on=False,
                    color="black" if matched else GREY, fontweight="bold" if matched else None)
        ax.set_yticks(ys, [r["task"] for r in rows])
        ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("circuit edges at the target loss (log scale)")
        handles = [Patch(color=BLUE, label=f"weight-sparse ({sparse_name})"),
                   Patch(color=ORANGE, label=f"dense ({dense_name})")]
        if not all(r["matched"] for r in rows):
            handles.append(Patch(facecolor=GREY, alpha=0.45, hatch="///", edgecolor="white",
                                 label="a model missed the target: not compared"))
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8.5, frameon=False)
        ratio = report.get("geometric_mean_ratio")
        ax.set_title("Circuit edges per task: weight-sparse vs dense", loc="left", pad=20)
        subtitle = (f"dense/sparse geometric mean over {report.get('matched_tasks', '?')} matched task(s): "
                    f"{ratio:.1f}× (paper ≈ 16×)" if ratio else "no task reached the target in both models")
        ax.text(0, 1.01, subtitle, transform=ax.transAxes, fontsize=9, color="#444444", va="bottom")
    return fig
