"""Every notebook in demos/ runs top to bottom on the shipped model (offline, CPU)."""

from pathlib import Path

import pytest

DEMOS = sorted((Path(__file__).resolve().parents[2] / "demos").glob("*.ipynb"))


@pytest.mark.parametrize("path", DEMOS, ids=[p.stem for p in DEMOS])
def test_notebook_runs(path, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", []) if o.output_type == "error"]
    assert not errors


def test_there_is_a_demo():
    assert DEMOS, "demos/ should hold at least one notebook"
