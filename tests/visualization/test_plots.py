"""Plots: each shows the numbers it is given (read back from the figure's artists), saves as PNG and
SVG atomically with the user's umask, fails clearly on bad input; `sparse-lens plot` finds what a
run directory holds."""

import json
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from sparse_lens.cli import main as cli_main
from sparse_lens.pruning.circuit import Circuit
from sparse_lens.pruning.compare import compare_summaries
from sparse_lens.pruning.discretize import BisectionResult, bisect_k
from sparse_lens.pruning.mask_training import TrainingHistory
from sparse_lens.training.metrics import MetricsLogger
from sparse_lens.visualization.plots import (
    plot_bisection,
    plot_edges_sparse_vs_dense,
    plot_mask_training,
    plot_training_curves,
    save_figure,
)


TARGET = 0.15


def diagnostics(curve: dict[int, float], n_units: int = 64, steps: int = 40) -> dict:
    """Diagnostics as the pipeline records them (through the same producers)."""
    k, seen = bisect_k(n_units, curve.__getitem__, TARGET)
    result = BisectionResult(k, None, seen[k] if k is not None else seen[n_units], seen, n_units)
    history = TrainingHistory(task_loss=[1.0 / (1 + s) for s in range(steps)], kept=[float(n_units - s) for s in range(steps)],
                              seconds=2.0)
    return {"full_fit_loss": curve[n_units], "skipped": False, "bisection": result.diagnostics(TARGET),
            "mask_training": history.diagnostics()}


def smooth(n_units: int = 64) -> dict[int, float]:
    return {k: 2.0 * 0.9 ** k + 0.05 for k in range(n_units + 1)}


def circuit_with(diag: dict, task: str = "single_double_quote") -> Circuit:
    masks = {"blocks.0.mlp.hook_post": torch.zeros(8, dtype=torch.bool)}
    masks["blocks.0.mlp.hook_post"][:3] = True
    return Circuit(task=task, target_loss=TARGET, masks=masks, means={"blocks.0.mlp.hook_post": torch.zeros(8)},
                   model="python-sparse-tiny", diagnostics=diag)


def texts(fig: Figure) -> str:
    return " ".join(t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")) if t.get_text())


def test_bisection_plot_shows_every_evaluation_the_target_and_the_chosen_k():
    diag = diagnostics(smooth())
    fig = plot_bisection(circuit_with(diag))
    ax = fig.axes[0]
    points = np.concatenate([c.get_offsets() for c in ax.collections])
    for e in diag["bisection"]["evaluations"]:
        assert any(np.allclose(p, (e["k"], e["loss"])) for p in points), e
    chosen = diag["bisection"]["k"]
    assert any(np.allclose(p, (chosen, diag["bisection"]["loss"])) for p in points)
    hlines = [line.get_ydata()[0] for line in ax.get_lines() if len(set(line.get_ydata())) == 1 and len(line.get_ydata()) == 2]
    assert TARGET in hlines and diag["full_fit_loss"] in hlines
    words = texts(fig)
    assert f"chosen k = {chosen}" in words and "single_double_quote" in words and "python-sparse-tiny" in words
    assert "not monotone" not in words
    numbers = [t.get_text() for a in fig.axes for t in a.texts]
    for order in range(1, len(diag["bisection"]["evaluations"]) + 1):
        assert str(order) in numbers  # each evaluation numbered in the panel that shows it best


def test_bisection_plot_names_refinements_bound_when_the_bisection_ran_to_it():
    """With a refinement margin the bisection runs to target − margin: the dashed line is that bound,
    and the legend says so instead of calling it the target."""
    k, seen = bisect_k(64, smooth().__getitem__, 0.10)
    bound = {"bisection": BisectionResult(k, None, seen[k], seen, 64).diagnostics(0.10), "full_fit_loss": 0.05}
    fig = plot_bisection(circuit_with(bound))  # the circuit's target stays 0.15
    hlines = [line.get_ydata()[0] for line in fig.axes[0].get_lines() if len(set(line.get_ydata())) == 1 and len(line.get_ydata()) == 2]
    assert 0.10 in hlines and TARGET in hlines  # the bound, and the task's target (fainter)
    assert "refinement's bound 0.1 (target 0.15 − margin)" in texts(fig) and "target loss 0.1" not in texts(fig)
    assert "task target 0.15" in texts(fig)
    plain = texts(plot_bisection(circuit_with(diagnostics(smooth()))))
    assert "target loss 0.15" in plain and "task target" not in plain and "bound" not in plain


def test_bisection_plot_flags_a_non_monotone_loss():
    curve = smooth() | {32: 0.1, 16: 0.3, 24: 0.05, 20: 0.2, 22: 0.4}  # a bump the bisection walks into
    diag = diagnostics(curve)
    assert diag["bisection"]["monotone"] is False
    fig = plot_bisection(diag)  # the diagnostics dict alone is enough
    assert "not monotone" in texts(fig)


def test_mask_training_plot_draws_the_recorded_curves(tmp_path):
    diag = diagnostics(smooth())
    path = circuit_with(diag).save(tmp_path / "quote.json")
    fig = plot_mask_training(path)  # from the JSON file
    top, bottom = fig.axes[:2]
    curves = diag["mask_training"]
    assert any(list(line.get_xdata()) == curves["step"] and list(line.get_ydata()) == curves["task_loss"] for line in top.get_lines())
    assert any(list(line.get_ydata()) == curves["kept"] for line in bottom.get_lines())
    assert "circuit after bisection: 3 nodes" in texts(fig)


def test_edges_plot_shows_both_models_per_task():
    def summary(edges):
        return {"tasks": [{"task": t, "reachable": e is not None, "nodes": 10, "edges": e or 5000, "fit_loss": 0.1,
                           "sufficiency_loss": 0.1} for t, e in edges.items()]}

    report = compare_summaries(summary({"a": 100, "b": 40, "c": None}), summary({"a": 1600, "b": 400, "c": 900}))
    fig = plot_edges_sparse_vs_dense(report, "python-sparse-tiny", "python-dense-tiny")
    widths = sorted(p.get_width() for p in fig.axes[0].patches if p.get_width() > 0)
    assert widths == sorted([100, 1600, 40, 400, 5000, 900])
    words = texts(fig)
    assert "16.0× fewer" in words and "10.0× fewer" in words and "target\nmissed" in words
    assert f"{report['geometric_mean_ratio']:.1f}×" in words and "python-dense-tiny" in words


def write_metrics(directory, n=20, dense=False):
    logger = MetricsLogger(directory, tensorboard=False)
    for step in range(n + 1):
        record = {"step": step, "tokens": 128 * step}
        if step:
            record.update(loss=4.0 - 0.1 * step, lr=0.01 * (1 - step / n), grad_rms=0.01 + 0.001 * step)
        if step % 5 == 0:
            record["val_loss"] = 4.1 - 0.1 * step
        if not dense:
            record.update(l0_target=0.25, l0_current=max(0.25, 1 - 0.1 * step), nnz={"embed.W_E": 10})
        logger.log(record)
    logger.close()
    return directory / "metrics.jsonl"


def test_training_curves_plot_every_logged_quantity(tmp_path):
    path = write_metrics(tmp_path / "run")
    fig = plot_training_curves(tmp_path / "run")
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["Loss", "Learning rate", "Weight sparsity", "Gradient RMS"]
    loss_ax = fig.axes[0]
    val = [line for line in loss_ax.get_lines() if line.get_label() == "validation"][0]
    assert list(val.get_xdata()) == [0, 5, 10, 15, 20] and np.allclose(val.get_ydata(), [4.1 - 0.1 * s for s in (0, 5, 10, 15, 20)])
    assert "step 20, 2,560 tokens" in texts(fig)
    dense = plot_training_curves(write_metrics(tmp_path / "dense", dense=True))
    assert "Weight sparsity" not in [ax.get_title() for ax in dense.axes if ax.get_visible()]
    # a last line torn by a crash is skipped; a bad line elsewhere is an error naming the file and line
    with open(path, "a") as fh:
        fh.write('{"step": 21, "lo')
    plot_training_curves(path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3] + ["not json"] + lines[3:]) + "\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl: line 4 is not JSON"):
        plot_training_curves(path)


def test_save_figure_writes_png_and_svg_atomically_with_the_umask(tmp_path):
    fig = plot_bisection(diagnostics(smooth()))
    old = os.umask(0o027)
    try:
        paths = save_figure(fig, tmp_path / "plots" / "bisection.png")  # the suffix is replaced
    finally:
        os.umask(old)
    assert [p.name for p in paths] == ["bisection.png", "bisection.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    root = ET.parse(paths[1]).getroot()
    assert root.tag.endswith("svg") and "Bisection over k" in ET.tostring(root, encoding="unicode")
    assert sorted(os.listdir(tmp_path / "plots")) == ["bisection.png", "bisection.svg"]  # no temporary files left
    assert all(p.stat().st_mode & 0o777 == 0o640 for p in paths)
    before = paths[1].read_bytes()
    save_figure(fig, tmp_path / "plots" / "bisection")
    assert paths[1].read_bytes() == before  # the same figure gives the same SVG


def test_bad_input_is_a_clear_error(tmp_path):
    old = circuit_with({}).save(tmp_path / "old.json")
    with pytest.raises(ValueError, match=r"old.json: cannot plot the bisection: .*prune again"):
        plot_bisection(old)
    skipped = circuit_with({"skipped": True, "bisection": None, "mask_training": None}).save(tmp_path / "skip.json")
    with pytest.raises(ValueError, match="skipped"):
        plot_mask_training(skipped)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ValueError, match="junk.json: not valid JSON"):
        plot_bisection(tmp_path / "junk.json")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        plot_bisection(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="comparison.json"):
        plot_edges_sparse_vs_dense({"tasks": []})
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        plot_training_curves(tmp_path)


def test_plot_command_plots_what_a_run_directory_holds(tmp_path, capsys):
    run = tmp_path / "prune"
    circuit_with(diagnostics(smooth())).save(run / "single_double_quote.json")
    circuit_with({"skipped": True, "bisection": None, "mask_training": None}, task="bracket_counting").save(
        run / "bracket_counting.json")
    (run / "summary.json").write_text(json.dumps({"tasks": []}))
    assert cli_main(["plot", str(run)]) == 0
    written = sorted(p.name for p in (run / "plots").iterdir())
    assert written == sorted(f"single_double_quote_{kind}.{ext}" for kind in ("bisection", "mask_training")
                             for ext in ("png", "svg"))
    write_metrics(tmp_path / "train")
    assert cli_main(["plot", str(tmp_path / "train"), "--out", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["training_curves.png", "training_curves.svg"]
    capsys.readouterr()
    assert cli_main(["plot", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli_main(["plot", str(tmp_path / "empty")]) == 2
    assert "nothing to plot" in capsys.readouterr().err
    assert cli_main(["plot", str(run / "bracket_counting.json")]) == 2
    assert "no pruning diagnostics" in capsys.readouterr().err


def test_plot_svg_renders_in_chromium(chromium_page, tmp_path):
    png, svg = save_figure(plot_mask_training(diagnostics(smooth())), tmp_path / "mask_training")
    page = tmp_path / "page.html"
    page.write_text(f'<!DOCTYPE html><html><body><img id="svg" src="{svg.name}"><img id="png" src="{png.name}"></body></html>')
    chromium_page.open(page, wait_for="[...document.images].every(i => i.complete)")
    sizes = chromium_page.page.evaluate("() => [...document.images].map(i => [i.naturalWidth, i.naturalHeight])")
    shot = chromium_page.screenshot("page.png")
    assert chromium_page.errors == [] and chromium_page.blocked == []
    assert all(w > 300 and h > 200 for w, h in sizes)  # both formats decode to a real picture
    assert shot.stat().st_size > 10_000


def test_plot_command_on_a_prune_compare_directory_names_both_models(tmp_path):
    def summary(edges):
        return {"tasks": [{"task": "single_double_quote", "reachable": True, "nodes": 10, "edges": edges,
                           "fit_loss": 0.1, "sufficiency_loss": 0.1}]}

    run = tmp_path / "dense-vs-sparse"
    for name, edges in (("python-sparse-tiny", 1566), ("python-dense-tiny", 12009)):
        (run / name).mkdir(parents=True)
        (run / name / "summary.json").write_text(json.dumps(summary(edges)))
        circuit_with(diagnostics(smooth())).save(run / name / "single_double_quote.json")
    (run / "comparison.json").write_text(json.dumps(compare_summaries(summary(1566), summary(12009))))
    assert cli_main(["plot", str(run)]) == 0
    plots = run / "plots"
    assert (plots / "edges_sparse_vs_dense.svg").is_file()
    assert (plots / "python-dense-tiny" / "single_double_quote_bisection.png").is_file()
    assert (plots / "python-sparse-tiny" / "single_double_quote_mask_training.svg").is_file()
    svg = (plots / "edges_sparse_vs_dense.svg").read_text()
    assert "weight-sparse (python-sparse-tiny)" in svg and "dense (python-dense-tiny)" in svg
