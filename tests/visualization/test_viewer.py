"""The circuit viewer's export and page (no browser): edges, ablations, contexts, the page's
self-containment, bad input. The browser checks are in test_viewer_browser.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sparse_lens.cli import main
from sparse_lens.pruning import Circuit
from sparse_lens.pruning.discretize import fixed_mask_hooks
from sparse_lens.pruning.edges import count_edges
from sparse_lens.pruning.nodes import node_sites
from sparse_lens.pruning.task_batch import evaluate_task
from sparse_lens.visualization.circuit_graph import CircuitMismatchError, circuit_graph, kept_nodes
from sparse_lens.visualization.node_panel import ablation_losses, context_examples
from sparse_lens.visualization.viewer import (
    FORMAT, STATIC, circuit_html, export_circuit_view, json_script_safe, script_safe, write_circuit_html,
)

from ..model.conftest import make_model
from .circuits import planted_circuit, random_circuit


@pytest.fixture(scope="module")
def planted():
    return planted_circuit()


@pytest.fixture(scope="module")
def random_view():
    model, circuit, batch, windows = random_circuit()
    view = export_circuit_view(circuit, model, task_batch=batch, context_tokens=windows)
    return model, circuit, batch, windows, view


# ------------------------------------------------------------------------------------ the graph
@pytest.mark.parametrize("keep", [0.05, 0.3, 1.0])
def test_the_viewer_draws_exactly_the_counted_edges(keep):
    model, circuit, _, _ = random_circuit(keep=keep, seed=3)
    graph = circuit_graph(model, circuit)
    edges = graph["edges"]
    assert len(edges["source"]) == circuit.n_edges == sum(count_edges(model, circuit.masks).values())
    per_kind = {}
    for k in edges["kind"]:
        per_kind[graph["edge_kinds"][k]] = per_kind.get(graph["edge_kinds"][k], 0) + 1
    assert per_kind == {k: v for k, v in circuit.edges.items() if k != "total" and v}
    assert len(graph["nodes"]) == circuit.n_nodes + 2  # + the embedding and the logits
    assert len(set(zip(edges["source"], edges["target"], edges["kind"]))) == len(edges["source"])  # no duplicates


def test_edge_weights_are_the_model_weights():
    model, circuit, _, _ = random_circuit(keep=0.3, seed=4)
    graph = circuit_graph(model, circuit)
    nodes, E = graph["nodes"], graph["edges"]
    checked = set()
    for s, t, w, k in zip(E["source"], E["target"], E["weight"], E["kind"]):
        kind = graph["edge_kinds"][k]
        a, b = nodes[s], nodes[t]
        block = model.blocks[b["layer"]] if b["layer"] < model.cfg.n_layers else None
        if kind in ("read->q", "read->k", "read->v"):
            W = getattr(block.attn, "W_" + kind[-1].upper())
            expected = W[b["index"][0], a["index"][0], b["index"][1]]
        elif kind == "v->write":
            expected = model.blocks[a["layer"]].attn.W_O[a["index"][0], a["index"][1], b["index"][0]]
        elif kind == "read->neuron":
            expected = block.mlp.W_in[a["index"][0], b["index"][0]]
        elif kind == "neuron->write":
            expected = block.mlp.W_out[a["index"][0], b["index"][0]]
        elif kind in ("write->read", "embed->read"):
            assert b["channel"] == (a["channel"] if kind == "write->read" else b["channel"])
            expected = (block.ln1.w if b["kind"] == "attn_read" else block.ln2.w)[b["channel"]]
        elif kind == "write->unembed":
            expected = model.ln_final.w[a["channel"]]
        else:
            assert kind == "q-k" and w is None
            assert (a["layer"], a["head"], a["channel"]) == (b["layer"], b["head"], b["channel"])
            checked.add(kind)
            continue
        assert w == pytest.approx(float(expected.detach()), rel=1e-3, abs=1e-6), kind
        checked.add(kind)
    assert checked >= {"read->q", "read->k", "read->v", "q-k", "v->write", "read->neuron", "neuron->write",
                       "write->read", "embed->read", "write->unembed"}


def test_planted_circuit_graph(planted):
    model, circuit, batch, _ = planted
    graph = circuit_graph(model, circuit, completions=(3, 4))
    labels = [n["label"] for n in graph["nodes"]]
    assert labels == ["embedding", "logits", "L0 mlp read 0", "L0 neuron 0", "L0 mlp write 1"]
    E = graph["edges"]
    edges = {(labels[s], labels[t]): w for s, t, w in zip(E["source"], E["target"], E["weight"])}
    # W_in[0, 0] = 1, W_out[0, 1] = 1, ln2 gain 1; the logits: ln_final.w[1] * (W_U[1, X] - W_U[1, Y]) = 8
    assert edges == {("L0 mlp read 0", "L0 neuron 0"): 1.0, ("L0 neuron 0", "L0 mlp write 1"): 1.0,
                     ("embedding", "L0 mlp read 0"): 1.0, ("L0 mlp write 1", "logits"): 8.0}


# ------------------------------------------------------------------------------------ the node panel
@pytest.mark.parametrize("rows_per_chunk", [5, 64])  # several length chunks (with a ragged last one), and one
def test_ablations_in_one_batch_equal_one_forward_per_node(rows_per_chunk):
    model, circuit, batch, _ = random_circuit(keep=0.3, seed=5)
    assert len(batch) > rows_per_chunk or rows_per_chunk == 64
    nodes = kept_nodes(model, circuit)
    picked = [nodes[i] for i in torch.randperm(len(nodes), generator=torch.Generator().manual_seed(0))[:12].tolist()]
    got = ablation_losses(model, circuit, batch, picked, rows_per_forward=40, rows_per_chunk=rows_per_chunk)
    full = {s.name: torch.ones(s.shape, dtype=torch.bool) for s in node_sites(model.cfg)}
    base_circuit = evaluate_task(model, batch, circuit.hooks())[0]
    base_full = evaluate_task(model, batch)[0]
    assert got["circuit_loss"] == pytest.approx(base_circuit, rel=1e-3)
    assert got["full_loss"] == pytest.approx(base_full, rel=1e-3)
    assert len({n["layer"] * 2 + (n["kind"] in ("mlp_read", "neuron", "mlp_write")) for n in picked}) >= 3
    for i, node in enumerate(picked):
        for key, masks, base in (("circuit_without", circuit.masks, base_circuit), ("full_without", full, base_full)):
            ablated = {k: v.clone() for k, v in masks.items()}
            ablated[node["site"]][tuple(node["index"])] = False
            expected = evaluate_task(model, batch, fixed_mask_hooks(ablated, circuit.means))[0] - base
            assert got[key][i] == pytest.approx(expected, abs=2e-4), (node["label"], key)


def test_planted_export_shows_what_each_node_does(planted):
    model, circuit, batch, windows = planted
    view = export_circuit_view(circuit, model, task_batch=batch, context_tokens=windows)
    assert view["format"] == FORMAT
    nodes = {n["label"]: n for n in view["nodes"][2:]}
    assert set(nodes) == {"L0 mlp read 0", "L0 neuron 0", "L0 mlp write 1"}
    for node in nodes.values():  # each of the three is needed: ablating it from the circuit breaks the task
        assert node["ablation"]["circuit"] > 0.5
        assert node["ablation"]["full"] > 0.5
    # the read carries +1 for A (positive prompts) and -1 for B at the last token
    task = nodes["L0 mlp read 0"]["task"]
    assert task["circuit"]["positive"] > 0 > task["circuit"]["negative"]
    assert task["circuit"]["difference"] == pytest.approx(task["circuit"]["positive"] - task["circuit"]["negative"], rel=1e-3)
    assert all(p > 0 > n for p, n in task["pairs"])
    # contexts: the top example is the largest activation over the windows; the bottom the smallest
    contexts = nodes["L0 mlp read 0"]["contexts"]
    top, bottom = contexts["levels"][0], contexts["levels"][-1]
    assert (top["level"], bottom["level"]) == ("top", "bottom")
    assert top["examples"][0]["value"] == pytest.approx(contexts["max"])
    assert bottom["examples"][0]["value"] == pytest.approx(contexts["min"])
    assert view["meta"]["n_nodes"] == 3 and view["meta"]["n_edges"] == 4
    assert view["meta"]["completions"] == ["<3>", "<4>"]  # no tokenizer: ids


def test_context_examples_are_at_their_quantiles():
    model, circuit, _, windows = random_circuit(keep=0.3, seed=6)
    node = next(n for n in kept_nodes(model, circuit) if n["kind"] == "neuron")
    (record,) = context_examples(model, [node], windows, n_extreme=3, n_per_quantile=2)
    _, cache = model.run_with_cache(windows, names_filter=node["site"])
    values = cache[node["site"]][:, :, node["index"][0]]
    for level in record["levels"]:
        rows = set()
        for ex in level["examples"]:
            # the example's focus token carries its value, and the example's tokens are the window's
            assert ex["values"][ex["focus"]] == pytest.approx(ex["value"], rel=5e-3, abs=1e-3)
            assert ex["value"] in [pytest.approx(float(v), abs=1e-3) for v in values.flatten()]
            rows.add(tuple(ex["tokens"]))
        assert len(rows) == len(level["examples"])  # from different windows
        if level["level"].startswith("q"):
            others = (values.flatten() - level["threshold"]).abs()
            assert min(abs(ex["value"] - level["threshold"]) for ex in level["examples"]) <= float(others.min()) + 1e-3
    assert record["levels"][0]["examples"][0]["value"] == pytest.approx(float(values.max()), abs=1e-3)


def test_attention_patterns_include_the_sink(random_view):
    model, circuit, batch, _, view = random_view
    heads = view["attention"]["heads"]
    qk = {(n["layer"], n["head"]) for n in view["nodes"][2:] if n["kind"] in ("q", "k")}
    assert {tuple(int(x) for x in k.split(".")) for k in heads} == qk and qk
    n = len(view["attention"]["tokens"])
    for head in heads.values():
        pattern = torch.tensor(head["pattern"])
        assert pattern.shape == (n + 1, n + 1)
        assert torch.allclose(pattern.sum(-1), torch.ones(n + 1), atol=5e-3)  # sink + keys = 1 per query
        assert torch.allclose(pattern[1:, 0], torch.tensor(head["sink_share"]), atol=1e-3)
        assert torch.all(pattern[1:, 1:].triu(1) == 0)  # causal


# ------------------------------------------------------------------------------------ the page
def test_the_page_is_one_self_contained_file(random_view, tmp_path):
    model, circuit, batch, windows, view = random_view
    page = circuit_html(view)
    # nothing to fetch: no src/href to anything, a Content-Security-Policy that forbids fetching
    assert not re.search(r"""\b(src|href)\s*=\s*["']?(https?:|//)""", page, re.IGNORECASE)
    assert "default-src 'none'" in page
    assert "d3js.org v7" in page and "CircuitsVis" in page  # the libraries are inline
    for name in ("dom.js", "circuit_viewer.js", "node_panel.js", "circuit_viewer.css"):
        body = (STATIC / name).read_text()
        assert script_safe(body) in page
    data = re.search(r'<script type="application/json" id="sl-circuit-data">(.*?)</script>', page, re.S).group(1)
    assert json.loads(data) == json.loads(json.dumps(view))


def test_text_in_the_data_cannot_end_the_script():
    view = {"x": "</script><script>alert(1)</script><!--"}
    text = json_script_safe(view)
    assert "</" not in text and "<!--" not in text and json.loads(text) == view
    assert "<\\/script" in script_safe("a = '</script>';") and "<\\/SCRIPT" in script_safe("'</SCRIPT>'")


def test_write_is_atomic_and_a_failed_export_writes_nothing(planted, tmp_path, monkeypatch):
    model, circuit, batch, windows = planted
    out = tmp_path / "viewer.html"
    path = write_circuit_html(circuit, out, model=model, task_batch=batch, context_tokens=windows)
    assert path == out and out.read_text().startswith("<!DOCTYPE html>")
    before = out.read_text()

    import sparse_lens.visualization.viewer as viewer

    def broken(*args, **kwargs):
        raise RuntimeError("export failed half way")

    monkeypatch.setattr(viewer, "context_examples", broken)
    with pytest.raises(RuntimeError):
        write_circuit_html(circuit, out, model=model, task_batch=batch, context_tokens=windows)
    assert out.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["viewer.html"]


def test_a_circuit_with_no_nodes_exports_an_empty_view(planted):
    model, circuit, batch, windows = planted
    empty = Circuit(task="planted", target_loss=0.15, masks={k: torch.zeros_like(m) for k, m in circuit.masks.items()},
                    means=circuit.means, model="planted", edges={"total": 0})
    view = export_circuit_view(empty, model, task_batch=batch, context_tokens=windows)
    assert [n["kind"] for n in view["nodes"]] == ["embed", "unembed"] and view["edges"]["source"] == []
    assert view["meta"]["n_nodes"] == 0 and "sl-viewer" in circuit_html(view)


def test_the_javascript_parses():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the JavaScript syntax check is skipped")
    for path in sorted(STATIC.glob("*.js")):
        result = subprocess.run([node, "--check", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, f"{path.name}: {result.stderr}"


def test_the_vendored_d3_is_there_with_its_licence():
    d3 = (STATIC / "vendor" / "d3.v7.min.js").read_text()
    assert d3.startswith("// https://d3js.org v7")
    assert "ISC" in (STATIC / "vendor" / "d3.LICENSE").read_text() or "Permission to use" in (STATIC / "vendor" / "d3.LICENSE").read_text()


# ------------------------------------------------------------------------------------ bad input
def _saved(circuit, directory: Path) -> Path:
    path = directory / "circuit.json"
    circuit.save(path)
    return path


def test_a_circuit_of_another_model_is_refused_naming_the_file(planted, tmp_path):
    model, circuit, batch, windows = planted
    other = make_model()  # 2 layers, other widths
    with pytest.raises(CircuitMismatchError, match=r"quote\.json.*(another model|missing)"):
        export_circuit_view(circuit, other, task_batch=batch, context_tokens=windows, source="quote.json")
    # same architecture, other weights: the recorded edges no longer match
    changed = type(model)(model.cfg)
    changed.load_state_dict(model.state_dict())
    with torch.no_grad():
        changed.blocks[0].mlp.W_in.zero_()
    with pytest.raises(ValueError, match=r"quote\.json"):
        export_circuit_view(circuit, changed, task_batch=batch, context_tokens=windows, source="quote.json")


def _run_view(args, capsys):
    code = main(["view", *map(str, args)])
    return code, capsys.readouterr().err


def test_view_command_reports_a_truncated_or_incomplete_file_and_writes_no_html(planted, tmp_path, capsys):
    model, circuit, batch, windows = planted
    path = _saved(circuit, tmp_path)
    out = tmp_path / "out.html"
    tensors = path.with_suffix(".safetensors")

    # a truncated JSON file
    good_json = path.read_text()
    path.write_text(good_json[: len(good_json) // 2])
    code, err = _run_view([path, "--out", out], capsys)
    assert code == 2 and "circuit.json" in err and "JSON" in err and not out.exists()
    path.write_text(good_json)

    # a truncated tensor file
    good = tensors.read_bytes()
    tensors.write_bytes(good[: len(good) // 2])
    code, err = _run_view([path, "--out", out], capsys)
    assert code == 2 and "circuit.safetensors" in err and not out.exists()

    # missing tensors: one site's mask and mean gone
    tensors.write_bytes(good)
    data = load_file(str(tensors))
    del data["mask/blocks.0.mlp.hook_post"], data["mean/blocks.0.mlp.hook_post"]
    save_file(data, str(tensors))
    code, err = _run_view([path, "--out", out, "--model", _saved_model(model, tmp_path)], capsys)
    assert code == 2 and "circuit.json" in err and "blocks.0.mlp.hook_post" in err and not out.exists()

    # a missing tensor file
    tensors.unlink()
    code, err = _run_view([path, "--out", out], capsys)
    assert code == 2 and "circuit.safetensors" in err and not out.exists()


def _saved_model(model, directory: Path) -> Path:
    target = directory / "planted-model"
    if not target.exists():
        model.save_pretrained(target)
    return target


def test_view_command_refuses_a_circuit_of_another_model(planted, tmp_path, capsys):
    model, circuit, batch, windows = planted
    path = _saved(circuit, tmp_path)
    other = tmp_path / "other-model"
    make_model().save_pretrained(other)
    out = tmp_path / "out.html"
    code, err = _run_view([path, "--out", out, "--model", other], capsys)
    assert code == 2 and "circuit.json" in err and "another model" in err and not out.exists()


def test_view_command_checks_its_arguments(tmp_path, capsys):
    code, err = _run_view([tmp_path / "nothing.json"], capsys)
    assert code == 2 and "nothing.json" in err
    code, err = _run_view([tmp_path / "circuit.safetensors"], capsys)
    assert code == 2 and ".json" in err
    code, err = _run_view([tmp_path / "c.json", "--pairs", "0"], capsys)
    assert code == 2 and "--pairs" in err


def test_pruning_diagnostics_reach_the_overview_charts(planted):
    from sparse_lens.visualization.viewer import _diagnostics

    model, circuit, batch, windows = planted
    circuit.diagnostics = {
        "bisection": {"target": 0.15, "k": 3, "n_units": 40,
                      "evaluations": [{"k": 40, "loss": 0.01}, {"k": 3, "loss": 0.1}, {"k": 10, "loss": 0.05}]},
        "mask_training": {"step": list(range(1, 1001)), "task_loss": [1 / s for s in range(1, 1001)],
                          "kept": [40 - s / 100 for s in range(1, 1001)]},
    }
    try:
        d = _diagnostics(circuit)
        assert d["bisection"]["points"] == [[3, 0.1], [10, 0.05], [40, 0.01]] and d["bisection"]["k"] == 3
        t = d["mask_training"]
        assert len(t["step"]) <= 201 and t["step"][0] == 1 and t["step"][-1] == 1000
        assert t["task_loss"][-1] == pytest.approx(1 / 1000) and len(t["kept"]) == len(t["step"])
        circuit.diagnostics = {"bisection": {"evaluations": [{"k": "x"}]}}  # malformed: no charts, no error
        assert _diagnostics(circuit) == {}
    finally:
        circuit.diagnostics = {}
