"""Dense vs sparse report: joins two summaries at the same target loss."""

import json
import math

import pytest

from sparse_lens.pruning.compare import compare_summaries, comparison_markdown, main


def summary(rows):
    return {"tasks": [
        {"task": t, "reachable": ok, "nodes": n, "edges": e, "fit_loss": 0.1, "sufficiency_loss": 0.12}
        for t, ok, n, e in rows
    ]}


SPARSE = summary([("a", True, 10, 20), ("b", True, 5, 5), ("c", False, 100, 900), ("only_sparse", True, 1, 1)])
DENSE = summary([("a", True, 40, 320), ("b", True, 20, 80), ("c", True, 50, 400)])


def test_ratios_and_geometric_means_use_tasks_both_models_reach():
    report = compare_summaries(SPARSE, DENSE)
    assert [r["task"] for r in report["tasks"]] == ["a", "b", "c"]
    by_task = {r["task"]: r for r in report["tasks"]}
    assert by_task["a"]["edge_ratio"] == 16 and by_task["b"]["edge_ratio"] == 16
    assert by_task["c"]["edge_ratio"] is None and not by_task["c"]["matched"]
    assert report["matched_tasks"] == 2
    assert math.isclose(report["geometric_mean_edges_sparse"], math.sqrt(20 * 5))
    assert math.isclose(report["geometric_mean_edges_dense"], math.sqrt(320 * 80))
    assert math.isclose(report["geometric_mean_ratio"], 16)
    md = comparison_markdown(report)
    assert "16.0×" in md and "target missed" in md


def test_no_shared_task_or_bad_payload_is_an_error():
    with pytest.raises(ValueError, match="share no task"):
        compare_summaries(summary([("x", True, 1, 1)]), DENSE)
    with pytest.raises(ValueError, match="dense"):
        compare_summaries(SPARSE, {"rows": []})


def test_cli_from_summaries_writes_report(tmp_path, capsys):
    (tmp_path / "sparse").mkdir()
    (tmp_path / "dense").mkdir()
    (tmp_path / "sparse" / "summary.json").write_text(json.dumps(SPARSE))
    (tmp_path / "dense" / "summary.json").write_text(json.dumps(DENSE))
    out = tmp_path / "out"
    code = main(["--from-summaries", str(tmp_path / "sparse" / "summary.json"),
                 str(tmp_path / "dense" / "summary.json"), "--out", str(out)])
    assert code == 0
    assert json.loads((out / "comparison.json").read_text())["geometric_mean_ratio"] == pytest.approx(16)
    assert "dense/sparse 16.0×" in (out / "comparison.md").read_text()
    assert main(["--from-summaries", str(tmp_path / "missing.json"), str(tmp_path / "x.json"), "--out", str(out)]) == 2
