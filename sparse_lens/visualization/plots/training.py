"""Training curves from a trainer's ``metrics.jsonl``: train and validation loss, learning rate, the
nonzero fraction of the weights (target and actual), and the gradient RMS."""

from __future__ import annotations

from pathlib import Path
from typing import Union

from matplotlib.figure import Figure

from sparse_lens.visualization.plots.mask_training import running_mean
from sparse_lens.visualization.plots.sources import metrics_records, series
from sparse_lens.visualization.plots.style import BLUE, GREEN, ORANGE, PURPLE, RED, new_figure, plain_log, styled

# (panel title, y label, [(metrics key, label, colour)], log y)
PANELS = (
    ("Loss", "cross-entropy (nats / token)", [("loss", "train", BLUE), ("val_loss", "validation", RED)], False),
    ("Learning rate", "learning rate", [("lr", "lr", GREEN)], False),
    ("Weight sparsity", "nonzero fraction of the weights", [("l0_current", "actual", PURPLE), ("l0_target", "target", ORANGE)], False),
    ("Gradient RMS", "RMS of the gradient", [("grad_rms", "grad RMS", BLUE)], True),
)


def plot_training_curves(source: Union[str, Path, list]) -> Figure:
    """One panel per quantity the metrics have (a dense run has no sparsity panel), step on the x axis.
    ``source``: a training run directory, its ``metrics.jsonl``, or the records themselves."""
    records, label = metrics_records(source)
    panels = [p for p in PANELS if any(series(records, key)[0] for key, _, _ in p[2])]
    if not panels:
        raise ValueError(f"{label}: the metrics have none of {[k for p in PANELS for k, _, _ in p[2]]}")
    columns = 2 if len(panels) > 1 else 1
    rows = -(-len(panels) // columns)
    fig = new_figure(5.0 * columns, 3.2 * rows + 0.4)
    last = records[-1]
    with styled():
        axes = fig.subplots(rows, columns, squeeze=False, sharex=True)
        for ax, (title, ylabel, keys, log) in zip(axes.flat, panels):
            for key, name, colour in keys:
                steps, values = series(records, key)
                if not steps:
                    continue
                marker = "o" if len(steps) <= 30 else None
                if key == "loss" and len(steps) > 50:
                    ax.plot(steps, values, color=colour, lw=0.7, alpha=0.3)
                    ax.plot(steps, running_mean(values, max(2, len(steps) // 50)), color=colour, lw=1.6,
                            label=f"{name} (running mean)")
                else:
                    ax.plot(steps, values, color=colour, lw=1.5, marker=marker, ms=3, label=name)
            if log:
                plain_log(ax)
            ax.set_title(title)
            ax.set_ylabel(ylabel)
            ax.legend(loc="best")
        for ax in axes[-1]:
            ax.set_xlabel("optimizer step")
        for ax in list(axes.flat)[len(panels):]:
            ax.set_visible(False)
        tokens = last.get("tokens")
        summary = f"step {int(last['step']):,}" + (f", {int(tokens):,} tokens" if isinstance(tokens, (int, float)) else "")
        fig.suptitle(f"Training curves: {label} ({summary})", fontweight="bold")
    return fig
