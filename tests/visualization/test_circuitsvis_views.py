"""circuitsvis views that render offline: the bundle is inlined (once per page), the numbers shown
are the model's, and the HTML renders in headless Chromium with every network request blocked."""

import json
import re

import pytest
import torch

from sparse_lens.model import HookedSparseTransformer
from sparse_lens.visualization.circuitsvis_views import (
    SINK_TOKEN,
    OfflineView,
    ViewGroup,
    attention_heads,
    bundle_script,
    node_tokens,
    top_contexts_view,
    views_page,
    write_views_page,
)
from sparse_lens.visualization.node_activations import Node, node_values, parse_node, top_contexts


TEXT = 'def greet(name):\n    print("Hello, " + name + "'
TEXTS = [
    "x = [1, 2, 3]\nprint(len(x))\n",
    "def add(a, b):\n    return a + b\n",
    "name = 'world'\nmessage = \"hello \" + name\n",
    "for i in range(10):\n    if i % 2:\n        continue\n    total += i\n",
]
BUNDLE_MARK = "var CircuitsVis="  # the bundle's own definition: once per page


@pytest.fixture(scope="module")
def model():
    return HookedSparseTransformer.from_pretrained("python-sparse-tiny")


def render_calls(page: str) -> list[str]:
    return re.findall(r'CircuitsVis\.render\("([\w-]+)"', page)


# ------------------------------------------------------------------------------ offline HTML
def test_a_view_inlines_the_bundle_and_loads_nothing_from_the_network():
    view = OfflineView("ColoredTokens", {"tokens": ["a", "b"], "values": [0.5, -1.0]}, title="t")
    for src in (view.local_src, view._repr_html_(), str(view), view.to_html()):
        assert src.count(BUNDLE_MARK) == 1
        assert "unpkg.com" not in src and "cdn" not in src.lower().replace("circuitsvis", "")
        assert not re.search(r"<script[^>]*\bsrc=", src)  # no external script
        assert "sourceMappingURL" not in src
    assert render_calls(view.local_src) == [view.element_id]


def test_a_page_with_many_views_loads_the_bundle_once():
    views = [OfflineView("ColoredTokens", {"tokens": ["a"], "values": [float(i)]}) for i in range(5)]
    page = views_page([views[0], ViewGroup(views[1:], title="group")], title="many")
    assert page.count(BUNDLE_MARK) == 1
    assert sorted(render_calls(page)) == sorted(v.element_id for v in views)
    group = ViewGroup(views)
    assert group.local_src.count(BUNDLE_MARK) == 1 and len(render_calls(group.local_src)) == 5
    assert bundle_script().startswith("<script>if (!window.CircuitsVis)")  # a second copy on a page is skipped


def test_text_cannot_break_out_of_the_script(tmp_path):
    nasty = ["</script><script>alert(1)</script>", "<!--", "</SCRIPT>"]
    view = OfflineView("ColoredTokens", {"tokens": nasty, "values": [1.0, 2.0, 3.0]}, title="</title><b>")
    page = view.to_html()
    assert "</script><script>alert" not in page and "</SCRIPT>" not in page.replace("</script>", "")
    props = re.search(r"CircuitsVis\.ColoredTokens, (\{.*\})\);</script>", page).group(1)
    assert json.loads(props.replace("<\\/", "</").replace("<\\!", "<!"))["tokens"] == nasty
    assert "&lt;/title&gt;" in page
    path = write_views_page([view], tmp_path / "sub" / "page.html", title="x")
    assert path.read_text() == views_page([view], title="x")
    with pytest.raises(ValueError, match="no views"):
        views_page([])


# ------------------------------------------------------------------------------ the numbers shown
def test_attention_heads_show_the_pattern_and_the_sink_share(model):
    view = attention_heads(model, TEXT, heads=[(0, 1), (1, 3)])
    tokens = model.to_tokens(TEXT)
    _, cache = model.run_with_cache(tokens)
    expected = torch.stack([cache["pattern", 0][0, 1], cache["pattern", 1][0, 3]])
    assert torch.allclose(view.pattern, expected)
    assert torch.allclose(view.sink_share, 1 - expected.sum(-1), atol=1e-6)
    shown = torch.as_tensor(view.props["attention"])
    n = tokens.shape[1]
    assert shown.shape == (2, n + 1, n + 1) and view.props["tokens"][0] == SINK_TOKEN
    assert torch.allclose(shown[:, 1:].sum(-1), torch.ones(2, n), atol=1e-5)  # sink column + keys = 1
    assert torch.allclose(shown[:, 1:, 0], view.sink_share)
    assert view.head_labels == [f"L0H1 sink {float(view.sink_share[0].mean()):.0%}",
                                f"L1H3 sink {float(view.sink_share[1].mean()):.0%}"]
    assert "↵" in "".join(view.props["tokens"]) and "\n" not in "".join(view.props["tokens"])
    plain = attention_heads(model, TEXT, layer=1, show_sink=False)
    assert len(plain.head_labels) == model.cfg.n_heads and plain.props["tokens"][0] != SINK_TOKEN


def test_attention_heads_reject_bad_heads(model):
    with pytest.raises(ValueError, match="layer"):
        attention_heads(model, TEXT, layer=model.cfg.n_layers)
    with pytest.raises(ValueError, match=r"head \(0, 99\)"):
        attention_heads(model, TEXT, heads=[(0, 99)])
    with pytest.raises(ValueError, match="layer="):
        attention_heads(model, TEXT, heads=[1])


def test_node_tokens_colour_the_node_activation(model):
    node = "blocks.1.mlp.hook_post[5]"
    view = node_tokens(model, node, TEXT)
    _, cache = model.run_with_cache(model.to_tokens(TEXT))
    expected = cache["blocks.1.mlp.hook_post"][0, :, 5]
    assert torch.allclose(torch.tensor(view.props["values"]), expected, atol=1e-6)
    assert view.props["minValue"] == -view.props["maxValue"] == -float(expected.abs().max())
    q = node_tokens(model, ("blocks.0.attn.hook_q", (2, 7)), TEXT)
    assert torch.allclose(torch.tensor(q.props["values"]), cache["blocks.0.attn.hook_q"][0, :, 2, 7], atol=1e-6)


def test_nodes_are_parsed_and_checked(model):
    assert parse_node("blocks.0.attn.hook_k[3, 15]") == Node("blocks.0.attn.hook_k", (3, 15))
    assert parse_node(("blocks.0.mlp.hook_post", 4)).name == "blocks.0.mlp.hook_post[4]"
    with pytest.raises(ValueError, match="hook_name"):
        parse_node("blocks.0.mlp.hook_post")
    with pytest.raises(ValueError, match="out of range"):
        parse_node("blocks.0.mlp.hook_post[100000]", model.cfg)
    with pytest.raises(ValueError, match="out of range"):
        parse_node("blocks.0.attn.hook_q[1]", model.cfg)  # q nodes are [head, channel]
    with pytest.raises(KeyError, match="not a node site"):
        parse_node("blocks.0.attn.hook_pattern[1]", model.cfg)


def test_top_contexts_are_the_extremes_and_do_not_overlap(model):
    node = "blocks.0.mlp.hook_post[3]"
    values = node_values(model, node, TEXTS)
    best = top_contexts(model, node, TEXTS, k=3, before=4, after=2)
    worst = top_contexts(model, node, TEXTS, k=3, before=4, after=2, bottom=True)
    everything = torch.cat(values)
    assert best[0].value == pytest.approx(float(everything.max()))
    assert worst[0].value == pytest.approx(float(everything.min()))
    assert [c.value for c in best] == sorted((c.value for c in best), reverse=True)
    for c in best + worst:
        assert c.values[c.focus] == pytest.approx(c.value)
        assert c.value == pytest.approx(float(values[c.text_index][c.position]))
        assert len(c.tokens) == len(c.values) <= 4 + 1 + 2
    chosen = [(c.text_index, c.position) for c in best]
    assert all(abs(p - q) > 4 for (i, p) in chosen for (j, q) in chosen if i == j and p != q)
    group = top_contexts_view(model, node, TEXTS, k=2, before=4, after=2)
    assert [c.value for c in group.data["top"]] == [c.value for c in best[:2]]
    assert len(group.views) == 4 and group.local_src.count(BUNDLE_MARK) == 1
    # token rows (e.g. pretraining text already tokenized) give the same contexts as the texts
    rows = torch.stack([model.to_tokens(TEXTS[1])[0], model.to_tokens(TEXTS[2])[0, :len(model.to_tokens(TEXTS[1])[0])]])
    by_rows = top_contexts(model, node, rows, k=2, before=4, after=2)
    by_text = top_contexts(model, node, [model.to_string(r[1:]) for r in rows], k=2, before=4, after=2)
    assert [(c.text_index, c.position, c.tokens) for c in by_rows] == [(c.text_index, c.position, c.tokens) for c in by_text]
    assert [c.value for c in by_rows] == pytest.approx([c.value for c in by_text], abs=1e-6)
    with pytest.raises(ValueError, match="k:"):
        top_contexts(model, node, TEXTS, k=0)
    with pytest.raises(ValueError, match="texts"):
        top_contexts(model, node, "one string, not a list")


# ------------------------------------------------------------------------------ in a browser
# every view has content, and every large canvas (the zoomed attention pattern) has been drawn
RENDERED = """[...document.querySelectorAll('[id^=sl-cv-]')].every(d => d.childElementCount > 0) &&
    [...document.querySelectorAll('canvas')].filter(c => c.width >= 300).every(c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return n > 0.5 * c.width * c.height; })"""
STATS = """() => ({
    views: document.querySelectorAll('[id^=sl-cv-]').length,
    rendered: [...document.querySelectorAll('[id^=sl-cv-]')].filter(d => d.innerText.length > 0 || d.querySelector('canvas, svg')).length,
    text: document.body.innerText })"""


def test_attention_and_token_views_render_offline_in_chromium(model, chromium_page, tmp_path):
    attention = attention_heads(model, TEXT, layer=1, heads=[0, 1])
    # tall enough for the whole view: a full-page screenshot would resize the page and restart the
    # chart's drawing animation
    chromium_page.page.set_viewport_size({"width": 1400, "height": 1400})
    chromium_page.open(attention.to_html(tmp_path / "attention.html"), wait_for=RENDERED)
    stats = chromium_page.page.evaluate(STATS)
    shot = chromium_page.screenshot("attention.png", full_page=False)
    assert chromium_page.errors == [] and chromium_page.blocked == []
    assert stats["views"] == stats["rendered"] == 1
    assert "L1H0 sink" in stats["text"] and shot.stat().st_size > 10_000

    page = write_views_page([node_tokens(model, "blocks.1.mlp.hook_post[5]", TEXT),
                             top_contexts_view(model, "blocks.1.mlp.hook_post[5]", TEXTS, k=2, before=6)],
                            tmp_path / "tokens.html", title="tokens")
    chromium_page.open(page, wait_for=RENDERED)
    stats = chromium_page.page.evaluate(STATS)
    chromium_page.screenshot("tokens.png")
    assert chromium_page.errors == [] and chromium_page.blocked == []
    assert stats["views"] == stats["rendered"] == 5
    assert "greet" in stats["text"]
