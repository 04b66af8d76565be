"""Matplotlib plots (PNG and SVG) of pruning and training. Each takes data — a `Circuit` (or its JSON
file), a `prune-compare` report, a trainer's metrics — and returns a `matplotlib.figure.Figure`;
`save_figure(fig, path)` writes ``path.png`` and ``path.svg`` atomically.

    from sparse_lens.visualization.plots import plot_bisection, save_figure
    save_figure(plot_bisection("runs/demo/single_double_quote.json"), "runs/demo/plots/quote_bisection")
"""

from sparse_lens.visualization.plots.bisection import plot_bisection
from sparse_lens.visualization.plots.dilution import plot_context_dilution
from sparse_lens.visualization.plots.edges import plot_edges_sparse_vs_dense
from sparse_lens.visualization.plots.mask_training import plot_mask_training
from sparse_lens.visualization.plots.style import save_figure
from sparse_lens.visualization.plots.training import plot_training_curves

__all__ = ["plot_bisection", "plot_context_dilution", "plot_edges_sparse_vs_dense", "plot_mask_training", "plot_training_curves", "save_figure"]
