"""docs/tasks.md documents every registered built-in task and the loss formula."""

from __future__ import annotations

from pathlib import Path

from sparse_lens.tasks import PAPER_TASKS, get_task

DOC = Path(__file__).resolve().parents[2] / "docs" / "tasks.md"


def test_every_task_has_a_table_row_with_its_completions():
    text = DOC.read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip().strip("`"): line for line in text.splitlines() if line.startswith("| `")}
    for name in PAPER_TASKS:
        assert name in rows, f"{name} missing from the task table of docs/tasks.md"
        task = get_task(name)
        row = rows[name]
        assert task.decided_by.split(" ")[0] in row
        if task.completions:
            for c in task.completions:
                assert f"`{c}`" in row or (c == "\n" and "`\\n`" in row), (name, c)


def test_loss_formula_is_documented():
    text = DOC.read_text(encoding="utf-8")
    assert "softplus(z_a - z_t)" in text and "0.15" in text and "pair_sum" in text
