"""One look for every plot, figures made without pyplot (no global state, no GUI backend), and
`save_figure`: PNG and SVG side by side, written atomically."""

from __future__ import annotations

import io
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

from sparse_lens.io import atomic_write_files

STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "axes.grid": True,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "legend.fontsize": 8.5,
    "legend.framealpha": 0.9,
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "svg.hashsalt": "sparse_lens",  # stable ids: the same figure gives the same SVG
    "svg.fonttype": "none",  # text stays text in the SVG
}

# Colours (Okabe-Ito, distinguishable with colour-blindness)
BLUE, ORANGE, GREEN, RED, PURPLE, GREY = "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#777777"


@contextmanager
def styled() -> Iterator[None]:
    with matplotlib.rc_context(STYLE):
        yield


class PlotFigure(Figure):
    """A matplotlib Figure that shows itself in a notebook (as PNG) without pyplot or ``%matplotlib``."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        with styled():
            self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()


def new_figure(width: float, height: float) -> Figure:
    """A figure not registered with pyplot (so nothing accumulates), with constrained layout."""
    with styled():
        return PlotFigure(figsize=(width, height), layout="constrained")


class _PlainLogFormatter(LogFormatter):
    """Log-axis labels as plain numbers (0.05, 200, 3000), not 5×10⁻²."""

    def _num_to_string(self, x, vmin, vmax):  # noqa: D401 (matplotlib's hook)
        return f"{x:g}"


def plain_log(ax, which: str = "y") -> None:
    """Log scale on ``ax``'s ``which`` axis, labelled with plain numbers (minor ticks labelled where
    the range spans few decades)."""
    (ax.set_yscale if which == "y" else ax.set_xscale)("log")
    axis = ax.yaxis if which == "y" else ax.xaxis
    axis.set_major_formatter(_PlainLogFormatter(labelOnlyBase=False))
    axis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def save_figure(fig: Figure, path: str | Path) -> list[Path]:
    """Write ``fig`` as ``<path>.png`` and ``<path>.svg`` (a ``.png`` / ``.svg`` suffix on ``path`` is
    replaced), both atomically. Returns the two paths."""
    path = Path(path)
    if path.suffix.lower() in (".png", ".svg"):
        path = path.with_suffix("")
    stem = path.name
    if not stem:
        raise ValueError(f"save_figure: {path!s} has no file name")

    def writer(fmt: str):
        metadata = {"Date": None} if fmt == "svg" else {"Software": None}

        def write(tmp: Path) -> None:
            with styled():
                fig.savefig(tmp, format=fmt, metadata=metadata, bbox_inches="tight")

        return write

    names = {f"{stem}.png": writer("png"), f"{stem}.svg": writer("svg")}
    atomic_write_files(path.parent if str(path.parent) else Path("."), names, argument="figure path")
    return [path.parent / name for name in names]
