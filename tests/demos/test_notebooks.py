"""Every notebook in demos/ runs top to bottom on the shipped model (offline, CPU), is committed
without outputs, and every view it shows renders offline: its HTML loads nothing from the network,
and the notebook exported to HTML renders in headless Chromium with every request blocked."""

import re
from pathlib import Path

import pytest

from ..visualization.conftest import chromium_browser, chromium_page  # noqa: F401 (fixtures)

DEMOS = sorted((Path(__file__).resolve().parents[2] / "demos").glob("*.ipynb"))
IDS = [p.stem for p in DEMOS]
_EXECUTED: dict = {}


def executed(path: Path, tmp_path_factory):
    """The notebook run once per test session (in a temporary working directory)."""
    if path not in _EXECUTED:
        nbformat = pytest.importorskip("nbformat")
        nbclient = pytest.importorskip("nbclient")
        nb = nbformat.read(path, as_version=4)
        cwd = tmp_path_factory.mktemp(path.stem)
        nbclient.NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
        _EXECUTED[path] = nb
    return _EXECUTED[path]


def html_outputs(nb) -> list[str]:
    return [o["data"]["text/html"] for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
            if "text/html" in o.get("data", {})]


@pytest.mark.parametrize("path", DEMOS, ids=IDS)
def test_notebook_runs(path, tmp_path_factory):
    nb = executed(path, tmp_path_factory)
    errors = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", []) if o.output_type == "error"]
    assert not errors


@pytest.mark.parametrize("path", DEMOS, ids=IDS)
def test_notebook_is_committed_without_outputs(path):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)


@pytest.mark.parametrize("path", DEMOS, ids=IDS)
def test_notebook_views_load_nothing_from_the_network(path, tmp_path_factory):
    views = html_outputs(executed(path, tmp_path_factory))
    for page in views:
        assert not re.search(r"""<(?:script|link|img|iframe)[^>]*\s(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
        assert "unpkg.com" not in page
        if "CircuitsVis.render(" in page:  # a circuitsvis view carries its own bundle
            assert "var CircuitsVis=" in page


@pytest.mark.parametrize("path", DEMOS, ids=IDS)
def test_exported_notebook_renders_offline_in_chromium(path, tmp_path_factory, chromium_page, tmp_path):
    exporter = pytest.importorskip("nbconvert").HTMLExporter(
        require_js_url="data:text/javascript,", mathjax_url="data:text/javascript,")  # the template's CDN scripts
    body, _ = exporter.from_notebook_node(executed(path, tmp_path_factory))
    page = tmp_path / f"{path.stem}.html"
    page.write_text(body, encoding="utf-8")
    views = "document.querySelectorAll('[id^=sl-cv-]')"
    chromium_page.open(page, wait_for=f"[...{views}].every(d => d.childElementCount > 0)")
    counts = chromium_page.page.evaluate(f"""() => ({{
        views: {views}.length,
        empty: [...{views}].filter(d => d.innerText.trim() === '' && !d.querySelector('canvas, svg')).length,
        images: [...document.images].filter(i => i.naturalWidth > 0).length,
        iframes: document.querySelectorAll('iframe').length }})""")
    chromium_page.page.wait_for_timeout(1000)  # let charts finish drawing before the screenshot
    chromium_page.screenshot(f"{path.stem}.png")
    assert chromium_page.errors == [] and chromium_page.blocked == []
    expected_views = sum(page_html.count("CircuitsVis.render(") for page_html in html_outputs(executed(path, tmp_path_factory))
                         if "<iframe" not in page_html)
    assert counts["views"] == expected_views and counts["empty"] == 0
    if path.stem in ("quickstart", "prune_and_visualize"):
        assert expected_views > 0
    if path.stem == "prune_and_visualize":
        assert counts["images"] >= 3  # the pruning plots
        assert counts["iframes"] == 1  # the circuit viewer, drawn once it is scrolled into view
        frame = chromium_page.page.query_selector("iframe")
        frame.scroll_into_view_if_needed()
        frame.content_frame().wait_for_function("document.querySelectorAll('svg circle').length > 0", timeout=60_000)
        frame.screenshot(path=str(tmp_path / "viewer_in_notebook.png"))
        assert chromium_page.errors == [] and chromium_page.blocked == []


def test_there_is_a_demo():
    assert {"quickstart", "prune_and_visualize"} <= set(IDS), "demos/ should hold the quickstart and prune_and_visualize notebooks"
