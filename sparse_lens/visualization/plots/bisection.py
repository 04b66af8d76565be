"""Task loss vs k along the bisection: every (k, loss) the bisection evaluated, numbered in the order
it did, the target, the chosen k, and a warning where loss(k) was not monotone. Two panels: every
evaluation (log k), and a close-up around the chosen k (linear k), where the last steps happen."""

from __future__ import annotations

from typing import Optional

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from sparse_lens.visualization.plots.sources import CircuitSource, circuit_info, require
from sparse_lens.visualization.plots.style import BLUE, GREY, ORANGE, PURPLE, RED, new_figure, plain_log, styled

RISE = PURPLE  # segments where the loss goes up with k


def _close_up(by_k: list[tuple[int, float]], chosen: int) -> list[tuple[int, float]]:
    """The evaluations within a factor 1.25 of the chosen k (at least its neighbours)."""
    near = [(k, l) for k, l in by_k if chosen / 1.25 <= k <= chosen * 1.25]
    i = [k for k, _ in by_k].index(chosen)
    around = by_k[max(0, i - 1): i + 2]
    return sorted(set(near) | set(around))


def _draw(ax, by_k, evaluations, bisection, full, numbered: set[int], task_target: Optional[float] = None) -> None:
    target, chosen = bisection["target"], bisection["k"]
    ks, losses = zip(*by_k)
    ax.plot(ks, losses, color=BLUE, lw=1, alpha=0.5, zorder=1)
    ax.scatter(ks, losses, color=BLUE, s=24, zorder=3)
    for (k0, l0), (k1, l1) in zip(by_k, by_k[1:]):
        if l1 > l0 + 1e-6:
            ax.plot([k0, k1], [l0, l1], color=RISE, lw=2.4, zorder=2)
    for order, e in enumerate(evaluations, 1):
        if e["k"] in numbered:
            ax.annotate(str(order), (e["k"], e["loss"]), textcoords="offset points", xytext=(4, 4), fontsize=8,
                        color="#444444")
    ax.axhline(target, color=RED, ls="--", lw=1.2)
    if task_target is not None:  # the bisection ran to refinement's bound: the task's target too, fainter
        ax.axhline(task_target, color=RED, ls="--", lw=0.9, alpha=0.35)
    if full is not None:
        ax.axhline(full, color=GREY, ls=":", lw=1.2)
    if chosen is not None:
        ax.axvline(chosen, color=ORANGE, lw=1, alpha=0.7)
        ax.scatter([chosen], [bisection["loss"]], marker="*", s=200, color=ORANGE, edgecolor="black", lw=0.6, zorder=4)
    positive = [v for v in losses + (target,) + ((task_target,) if task_target else ()) if v > 0]
    if positive and max(positive) / min(positive) > 20:
        plain_log(ax)


def _to_bound(bisected_to: float, task_target: float) -> bool:
    """Whether the bisection ran to refinement's bound (target − margin) rather than to the target."""
    return task_target == task_target and abs(bisected_to - task_target) > 1e-9  # task_target not NaN


def _target_label(bisected_to: float, task_target: float) -> str:
    """The dashed line: the task's target loss, or refinement's bound when the bisection ran to it."""
    if _to_bound(bisected_to, task_target):
        return f"refinement's bound {bisected_to:g} (target {task_target:g} − margin)"
    return f"target loss {bisected_to:g}"


def plot_bisection(source: CircuitSource) -> Figure:
    """Loss on the fit pairs vs mask units kept (k), for a pruned circuit (a `Circuit`, its JSON file
    or its ``diagnostics``)."""
    info = circuit_info(source)
    bisection = require(info, "bisection")
    evaluations = bisection["evaluations"]
    target, chosen = bisection["target"], bisection["k"]
    full = info.diagnostics.get("full_fit_loss")
    by_k = sorted((e["k"], e["loss"]) for e in evaluations)
    zoom = _close_up(by_k, chosen) if chosen is not None else []
    fig = new_figure(10.0, 4.6)
    with styled():
        if len(zoom) >= 2:
            ax, ax_zoom = fig.subplots(1, 2, width_ratios=[1.5, 1])
        else:
            ax, ax_zoom = fig.add_subplot(), None
        zoom_ks = {k for k, _ in zoom}
        task_target = info.target_loss if _to_bound(target, info.target_loss) else None
        _draw(ax, by_k, evaluations, bisection, full, {k for k, _ in by_k} - (zoom_ks - {chosen}), task_target)
        if by_k[0][0] > 0:
            plain_log(ax, "x")
        else:  # k = 0 was evaluated
            ax.set_xscale("symlog", linthresh=1)
            ax.xaxis.set_major_formatter(ScalarFormatter())
        ranked_by = {"kept_fraction": "how often kept late in training"}.get(bisection.get("ranking"), "τ")
        ax.set_xlabel(f"k: mask units kept, ranked by {ranked_by} (of {bisection['n_units']:,}; log scale)")
        ax.set_ylabel("task loss on the fit pairs (nats)")
        ax.set_title("every evaluation (number: order)", fontsize=10, fontweight="normal")
        if ax_zoom is not None:
            _draw(ax_zoom, zoom, evaluations, bisection, full, zoom_ks, task_target)
            ax_zoom.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
            ax_zoom.set_xlabel("k (close-up around the chosen k)")
            ax_zoom.set_title(f"close-up: k = {zoom[0][0]}…{zoom[-1][0]}", fontsize=10, fontweight="normal")
            ax.axvspan(zoom[0][0], zoom[-1][0], color=ORANGE, alpha=0.12, lw=0)
        if chosen is None:
            ax.text(0.5, 0.95, "target unreachable even with every node kept", transform=ax.transAxes,
                    ha="center", va="top", color=RED, fontweight="bold")
        handles = [Line2D([], [], color=BLUE, marker="o", lw=1, alpha=0.8, label="evaluated k"),
                   Line2D([], [], color=RED, ls="--", label=_target_label(target, info.target_loss))]
        if task_target is not None:
            handles.append(Line2D([], [], color=RED, ls="--", lw=0.9, alpha=0.35, label=f"task target {task_target:g}"))
        if full is not None:
            handles.append(Line2D([], [], color=GREY, ls=":", label=f"unpruned model {full:.3f}"))
        if chosen is not None:
            handles.append(Line2D([], [], color=ORANGE, marker="*", ms=13, mec="black", lw=0,
                                  label=f"chosen k = {chosen} (loss {bisection['loss']:.3f})"))
        refinement = info.diagnostics.get("refinement")
        if refinement:
            handles.append(Line2D([], [], lw=0, label=f"refined after bisection: {refinement['units_after']} units "
                                  f"(loss {refinement['loss']:.3f} on {refinement['check_pairs']} check pairs)"))
        if not bisection.get("monotone", True):
            handles.append(Line2D([], [], color=RISE, lw=2.4,
                                  label="loss rises with k: not monotone, so the chosen k may not be the smallest"))
        fig.legend(handles=handles, loc="outside lower center", ncol=3 if len(handles) > 4 else len(handles),
                   fontsize=8.5, frameon=False)
        what = " — ".join(x for x in (info.task, info.model) if x)
        fig.suptitle(f"Bisection over k{': ' + what if what else ''} ({len(evaluations)} evaluation{'' if len(evaluations) == 1 else 's'})",
                     fontweight="bold")
    return fig
