"""The pruning report (`sparse-lens report RUN`, what `make demo` writes): one offline page with the
results table, each task's plots and its circuit viewer."""

from __future__ import annotations

import json
import re

import pytest

from sparse_lens.cli import main
from sparse_lens.pruning.runner import TaskResult, summary_payload
from sparse_lens.visualization.report import write_report

from .circuits import random_circuit

READY = "document.querySelectorAll('.sl-viewer').length && [...document.querySelectorAll('.sl-viewer')].every(v => v.dataset.ready === '1')"


@pytest.fixture(scope="module")
def prune_run(tmp_path_factory):
    """A prune output directory holding one reached circuit and one task the model has not learned."""
    run = tmp_path_factory.mktemp("run")
    model, circuit, batch, windows = random_circuit(keep=0.2, seed=3)
    circuit.diagnostics = {  # what pruning records (sparse_lens/pruning/pipeline.py)
        "full_fit_loss": 0.01, "skipped": False,
        "bisection": {"target": 0.15, "k": 40, "loss": 0.14, "monotone": True, "n_units": 120,
                      "evaluations": [{"k": 120, "loss": 0.01}, {"k": 60, "loss": 0.1}, {"k": 30, "loss": 0.4},
                                      {"k": 45, "loss": 0.2}, {"k": 40, "loss": 0.14}]},
        "mask_training": {"step": [1, 2, 3, 4], "task_loss": [0.9, 0.5, 0.3, 0.2], "kept": [120, 90, 60, 40],
                          "seconds": 1.0},
    }
    unlearned = random_circuit(keep=1.0, seed=4)[1]
    unlearned.task = "unlearned"
    unlearned.losses = {**unlearned.losses, "reachable": 0.0, "skipped": 1.0}
    results = [TaskResult("random", circuit, 1.0), TaskResult("unlearned", unlearned, 0.5)]
    for r in results:
        r.circuit.save(run / f"{r.task}.json")
    (run / "summary.json").write_text(json.dumps(summary_payload(results)))
    path = write_report(run, model=model, task_batch=batch, context_tokens=windows, progress=False)
    return run, path, circuit


def test_the_report_holds_the_table_plots_and_a_viewer_per_reached_task(prune_run):
    run, path, circuit = prune_run
    page = path.read_text()
    assert path == run / "report.html"
    assert page.count('class="sl-viewer"') == 1  # the unlearned task has no viewer, and says why
    assert "No circuit: the model has not learned the task" in page
    assert page.count("data:image/png;base64,") >= 2  # plots inline
    assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["']https?:""", page)  # nothing from the network
    assert (run / "random.html").is_file() and (run / "plots" / "random_bisection.png").is_file()


def test_the_report_opens_offline_in_a_browser(chromium_page, prune_run):
    run, path, circuit = prune_run
    chromium_page.open(path, wait_for=READY)
    page = chromium_page.page
    rows = page.evaluate("() => document.querySelectorAll('table.results tr').length")
    nodes = page.evaluate("() => document.querySelectorAll('.sl-viewer .sl-nodes .sl-node').length")
    assert rows == 3 and nodes == circuit.n_nodes > 0
    chromium_page.screenshot("report.png")
    assert chromium_page.errors == [] and chromium_page.blocked == []


def test_report_cli_refuses_a_directory_that_is_not_a_prune_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "summary.json" in err[0]
