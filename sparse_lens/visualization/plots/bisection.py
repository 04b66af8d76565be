"""Task loss vs k along the bisection: every (k, loss) the bisection evaluated, in the order it did,
the target, the chosen k, and a warning where loss(k) was not monotone."""

from __future__ import annotations

from matplotlib.figure import Figure

from sparse_lens.visualization.plots.sources import CircuitSource, circuit_info, require
from sparse_lens.visualization.plots.style import BLUE, GREY, ORANGE, RED, new_figure, plain_log, styled


def plot_bisection(source: CircuitSource) -> Figure:
    """Loss on the fit pairs vs mask units kept (k), for a pruned circuit (a `Circuit`, its JSON file
    or its ``diagnostics``)."""
    info = circuit_info(source)
    bisection = require(info, "bisection")
    evaluations = bisection["evaluations"]
    target, chosen = bisection["target"], bisection["k"]
    by_k = sorted((e["k"], e["loss"]) for e in evaluations)
    fig = new_figure(7.0, 4.2)
    with styled():
        ax = fig.add_subplot()
        ks, losses = zip(*by_k)
        ax.plot(ks, losses, color=BLUE, lw=1, alpha=0.5, zorder=1)
        ax.scatter(ks, losses, color=BLUE, s=22, zorder=3, label="evaluated k (number: evaluation order)")
        for order, e in enumerate(evaluations, 1):
            ax.annotate(str(order), (e["k"], e["loss"]), textcoords="offset points", xytext=(4, 4), fontsize=7.5,
                        color=GREY)
        ax.axhline(target, color=RED, ls="--", lw=1.2, label=f"target loss {target:g}")
        full = info.diagnostics.get("full_fit_loss")
        if full is not None:
            ax.axhline(full, color=GREY, ls=":", lw=1.2, label=f"unpruned model {full:.3f}")
        if chosen is not None:
            ax.axvline(chosen, color=ORANGE, lw=1, alpha=0.7)
            ax.scatter([chosen], [bisection["loss"]], marker="*", s=180, color=ORANGE, edgecolor="black", lw=0.6,
                       zorder=4, label=f"chosen k = {chosen} (loss {bisection['loss']:.3f})")
        else:
            ax.text(0.5, 0.95, "target unreachable even with every node kept", transform=ax.transAxes,
                    ha="center", va="top", color=RED, fontweight="bold")
        rises = [(a, b) for a, b in zip(by_k, by_k[1:]) if b[1] > a[1] + 1e-6]
        for (k0, l0), (k1, l1) in rises:
            ax.plot([k0, k1], [l0, l1], color=RED, lw=2.2, zorder=2)
        if not bisection.get("monotone", True):
            ax.text(0.99, 0.02, "loss(k) is not monotone (red segments):\nthe chosen k may not be the smallest",
                    transform=ax.transAxes, ha="right", va="bottom", fontsize=8.5, color=RED,
                    bbox=dict(boxstyle="round", fc="white", ec=RED, alpha=0.9))
        ax.set_xscale("symlog", linthresh=1)
        positive = [v for v in losses if v > 0]
        if positive and max(positive) / min(positive) > 20:
            plain_log(ax)
        ax.set_xlabel(f"k: mask units kept, ranked by τ (of {bisection['n_units']:,})")
        ax.set_ylabel("task loss on the fit pairs (nats)")
        what = " — ".join(x for x in (info.task, info.model) if x)
        ax.set_title(f"Bisection over k{': ' + what if what else ''} ({len(evaluations)} evaluations)")
        ax.legend(loc="upper right")
    return fig
