"""Mask-training curves: the task loss on each minibatch and the number of kept nodes (τ > 0) per
optimizer step (two panels sharing the step axis)."""

from __future__ import annotations

import statistics

from matplotlib.figure import Figure

from sparse_lens.visualization.plots.sources import CircuitSource, circuit_info, require
from sparse_lens.visualization.plots.style import BLUE, GREEN, ORANGE, RED, new_figure, plain_log, styled


def running_mean(values: list[float], window: int) -> list[float]:
    """Mean of the last ``window`` values at each point (fewer at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def running_median(values: list[float], window: int) -> list[float]:
    """Median of the last ``window`` values at each point (fewer at the start): a trend that single
    spiky minibatches do not drag along, unlike a mean."""
    return [statistics.median(values[max(0, i + 1 - window): i + 1]) for i in range(len(values))]


def plot_mask_training(source: CircuitSource) -> Figure:
    """Task loss and kept nodes during mask training, for a pruned circuit (a `Circuit`, its JSON file
    or its ``diagnostics``)."""
    info = circuit_info(source)
    curves = require(info, "mask_training")
    steps, loss, kept = curves["step"], curves["task_loss"], curves["kept"]
    window = max(1, len(steps) // 25)
    fig = new_figure(7.0, 5.0)
    with styled():
        top, bottom = fig.subplots(2, 1, sharex=True)
        top.plot(steps, loss, color=BLUE, lw=0.8 if window > 1 else 1.6, alpha=0.35 if window > 1 else 1.0,
                 label="per step (minibatch)")
        if window > 1:
            top.plot(steps, running_median(loss, window), color=BLUE, lw=1.8, label=f"median of the last {window} steps")
        if info.target_loss == info.target_loss:  # not NaN
            top.axhline(info.target_loss, color=RED, ls="--", lw=1.2, label=f"target loss {info.target_loss:g}")
        if min(loss) > 0 and max(loss) / min(loss) > 20:
            plain_log(top)
        top.set_ylabel("task loss (nats)")
        top.legend(loc="upper right")
        what = " — ".join(x for x in (info.task, info.model) if x)
        top.set_title(f"Mask training{': ' + what if what else ''}")
        bottom.plot(steps, kept, color=GREEN, lw=1.6, label="kept nodes (τ > 0; q and k counted apart)")
        bisection = info.diagnostics.get("bisection") or {}
        if bisection.get("k") is not None and info.n_nodes:
            bottom.axhline(info.n_nodes, color=ORANGE, ls="--", lw=1.2,
                           label=f"circuit after bisection: {info.n_nodes} nodes")
        plain_log(bottom)
        bottom.set_ylabel("kept nodes")
        seconds = curves.get("seconds")
        bottom.set_xlabel("mask-training step" + (f" ({len(steps)} steps in {seconds:.0f} s)" if seconds else ""))
        bottom.legend(loc="upper right")
    return fig
