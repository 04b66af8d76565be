"""The circuit viewer in a real browser: headless Chromium opens the file from file:// with every
network request blocked (the ``chromium_page`` fixture, tests/visualization/conftest.py)."""

from __future__ import annotations

import pytest
import torch

from sparse_lens.pruning import Circuit
from sparse_lens.visualization.viewer import CircuitViewHTML, circuit_html, export_circuit_view, write_circuit_html

from .circuits import planted_circuit, random_circuit

READY = "document.querySelector('.sl-viewer') && document.querySelector('.sl-viewer').dataset.ready === '1'"


@pytest.fixture(scope="module")
def random_page(tmp_path_factory):
    model, circuit, batch, windows = random_circuit(keep=0.2, seed=1)
    view = export_circuit_view(circuit, model, task_batch=batch, context_tokens=windows)
    path = tmp_path_factory.mktemp("viewer") / "random.html"
    write_circuit_html(circuit, path, view=view)
    return path, circuit, view


def _node_with_edges(view, kind=None):
    degree = {}
    for s, t in zip(view["edges"]["source"], view["edges"]["target"]):
        degree[s] = degree.get(s, 0) + 1
        degree[t] = degree.get(t, 0) + 1
    nodes = [n for n in view["nodes"][2:] if kind is None or n["kind"] == kind]
    best = max(nodes, key=lambda n: degree.get(n["id"], 0))
    return best, degree.get(best["id"], 0)


def test_the_viewer_opens_offline_with_every_node_and_edge(chromium_page, random_page):
    path, circuit, view = random_page
    chromium_page.open(path, wait_for=READY)
    page = chromium_page.page
    counts = page.evaluate("""() => ({
        nodes: document.querySelectorAll('.sl-nodes .sl-node').length,
        edges: document.querySelectorAll('.sl-edges path.sl-edge').length,
        header: document.querySelector('.sl-header').textContent })""")
    assert counts["nodes"] == circuit.n_nodes > 0
    assert counts["edges"] == circuit.n_edges > 0
    assert "random" in counts["header"] and "held-out sufficiency" in counts["header"]
    chromium_page.screenshot("viewer.png")
    assert chromium_page.errors == [] and chromium_page.blocked == []


def test_hover_highlights_the_node_edges_and_click_opens_its_panel(chromium_page, random_page):
    path, circuit, view = random_page
    chromium_page.open(path, wait_for=READY)
    page = chromium_page.page
    node, degree = _node_with_edges(view, "neuron")
    assert degree > 0
    target = page.locator(f".sl-nodes .sl-node[data-node='{node['id']}'] circle.node")
    target.hover()
    assert page.locator(".sl-highlight path").count() == degree
    assert page.evaluate("() => document.querySelector('.sl-viewer').classList.contains('sl-focus')")
    target.click()
    panel = page.locator(".sl-panel")
    assert panel.locator(".sl-node-title").inner_text() == node["label"]
    assert panel.locator(".sl-edge-row").count() == degree
    # pretraining contexts and task prompts, coloured by circuitsvis
    assert panel.locator(".sl-example").count() >= 4
    page.wait_for_function("document.querySelectorAll('.sl-panel .colored-tokens').length >= 6")
    chromium_page.screenshot("panel.png")
    # hovering a node in the panel lights it up in the graph; clicking moves the panel there
    link = panel.locator(".sl-edge-row a.sl-node-link").first
    other = link.get_attribute("data-node")
    link.hover()
    assert page.locator(f".sl-nodes .sl-node.sl-hover[data-node='{other}']").count() == 1
    link.click()
    page.wait_for_function(f"document.querySelector('.sl-panel').dataset.node !== '{node['id']}'")
    assert chromium_page.errors == [] and chromium_page.blocked == []


def test_q_channel_panel_shows_its_head_attention_with_the_sink(chromium_page, random_page):
    path, circuit, view = random_page
    chromium_page.open(path, wait_for=READY)
    page = chromium_page.page
    node, _ = _node_with_edges(view, "q")
    page.locator(f".sl-nodes .sl-node[data-node='{node['id']}'] circle.node").click()
    panel = page.locator(".sl-panel")
    assert f"h{node['head']}" in panel.locator("h4", has_text="Attention").inner_text()
    assert "Sink share at the last token" in panel.inner_text()
    page.wait_for_function("document.querySelector('.sl-panel .sl-cv canvas, .sl-panel .sl-cv svg') !== null")
    chromium_page.screenshot("attention.png")
    assert chromium_page.errors == [] and chromium_page.blocked == []


def test_threshold_search_and_residual_toggle(chromium_page, random_page):
    path, circuit, view = random_page
    chromium_page.open(path, wait_for=READY)
    page = chromium_page.page
    visible = lambda: int(page.evaluate("() => document.querySelector('.sl-viewer').dataset.visibleEdges"))  # noqa: E731
    assert visible() == circuit.n_edges
    page.locator(".sl-threshold").fill("0.6")
    page.wait_for_function(f"+document.querySelector('.sl-viewer').dataset.visibleEdges < {circuit.n_edges}")
    weights = view["edges"]["weight"]
    kinds = view["edges"]["kind"]
    top = {}
    for w, k in zip(weights, kinds):
        if w is not None:
            top[k] = max(top.get(k, 0), abs(w))
    expected = sum(1 for w, k in zip(weights, kinds) if w is None or abs(w) >= 0.6 * top[k] - 1e-9)
    assert abs(visible() - expected) <= 2  # rounding of the relative weights at the boundary
    hidden = page.evaluate("() => [...document.querySelectorAll('.sl-edges path')].filter(p => p.style.display === 'none').length")
    assert hidden == circuit.n_edges - visible()
    page.locator(".sl-threshold").fill("0")
    page.locator(".sl-residual-toggle").uncheck()
    residual = sum(1 for k in kinds if view["edge_kinds"][k] in ("write->read", "embed->read", "write->unembed"))
    assert visible() == circuit.n_edges - residual
    # find a node by name: typing its label pins it and opens its panel
    node = view["nodes"][-1]
    page.locator(".sl-search").fill(node["label"])
    page.wait_for_function(f"document.querySelector('.sl-panel').dataset.node === '{node['id']}'")
    assert page.locator(f".sl-node.sl-pinned[data-node='{node['id']}']").count() == 1
    assert chromium_page.errors == []


@pytest.mark.parametrize("dense", [False, True], ids=["svg", "dense"])
def test_zoom_and_pan_move_the_drawing(chromium_page, random_page, dense):
    path, circuit, view = random_page
    chromium_page.open(path, wait_for=READY)
    page = chromium_page.page
    if dense:  # the mode of graphs with many edges: layers move as bitmaps, the transform is drawn after a pause
        page.evaluate("""() => { const root = document.querySelector('.sl-viewer');
            SparseLensViewer.mount(root, JSON.parse(document.getElementById(root.id + '-data').textContent), {denseEdges: 1}); }""")
    transform = "() => document.querySelector('.sl-layer-edges .sl-zoom').getAttribute('transform')"
    before = page.evaluate(transform)
    page.evaluate("""() => { window.cssTransforms = [];  // every CSS transform the edge layer gets
        new MutationObserver(() => cssTransforms.push(document.querySelector('.sl-layer-edges').style.transform))
            .observe(document.querySelector('.sl-layer-edges'), {attributes: true, attributeFilter: ['style']}); }""")
    box = page.locator(".sl-graph").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -400)
    page.wait_for_function(f"({transform})() !== {before!r}")
    assert any("scale" in t for t in page.evaluate("() => cssTransforms")) == dense
    page.wait_for_function("document.querySelector('.sl-layer-edges').style.transform === ''")
    zoomed = page.evaluate(transform)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 80, box["y"] + box["height"] / 2 + 40, steps=4)
    page.mouse.up()
    page.wait_for_function(f"({transform})() !== {zoomed!r}")
    # every layer shows the same transform
    assert len(set(page.evaluate("() => [...document.querySelectorAll('.sl-zoom')].map(g => g.getAttribute('transform'))"))) == 1
    assert chromium_page.errors == []


def test_a_circuit_with_no_nodes_shows_an_explicit_empty_state(chromium_page, tmp_path):
    model, circuit, batch, windows = planted_circuit()
    empty = Circuit(task="planted", target_loss=0.15, masks={k: torch.zeros_like(m) for k, m in circuit.masks.items()},
                    means=circuit.means, model="planted", edges={"total": 0}, losses={"fit_loss": 0.69})
    path = write_circuit_html(empty, tmp_path / "empty.html", model=model, task_batch=batch, context_tokens=windows)
    chromium_page.open(path, wait_for=READY)
    text = chromium_page.page.locator(".sl-empty").inner_text()
    assert "no nodes" in text
    assert chromium_page.page.locator(".sl-edges path").count() == 0
    chromium_page.screenshot("empty.png")
    assert chromium_page.errors == [] and chromium_page.blocked == []


def test_show_renders_the_same_viewer_in_an_iframe(chromium_page, tmp_path):
    model, circuit, batch, windows = planted_circuit()
    view = export_circuit_view(circuit, model, task_batch=batch, context_tokens=windows)
    notebook_output = CircuitViewHTML(circuit_html(view), height=700)._repr_html_()
    host = tmp_path / "notebook.html"
    host.write_text(f"<!DOCTYPE html><html><body><h1>a notebook cell</h1>{notebook_output}</body></html>")
    chromium_page.open(host)
    frame = chromium_page.page.frame_locator("iframe.sl-viewer-frame")
    frame.locator(".sl-viewer[data-ready='1']").wait_for()
    assert frame.locator(".sl-nodes .sl-node").count() == circuit.n_nodes
    assert frame.locator(".sl-edges path").count() == circuit.n_edges
    chromium_page.screenshot("iframe.png")
    assert chromium_page.errors == [] and chromium_page.blocked == []
