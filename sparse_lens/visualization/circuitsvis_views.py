"""circuitsvis views that render offline, in notebooks and in files.

circuitsvis's own objects (``RenderedHTML``) show the CDN version (JavaScript from unpkg.com) whenever
the kernel can reach google.com, and ``str()`` of them is always the CDN version: a saved notebook or
HTML file is blank on a machine without network. The views here always inline the JavaScript bundle
that ships inside the installed circuitsvis package (``circuitsvis/dist/cdn/iife.js``), so they need
no network and no server:

- in a notebook, each view is self-contained (``_repr_html_`` carries the bundle; the bundle runs
  once per page, later views reuse it);
- ``view.to_html(path)`` writes one standalone page; ``views_page([...])`` / ``write_views_page``
  put many views on one page with the bundle loaded once; ``ViewGroup`` does the same inline.

Helpers for the model: :func:`attention_heads` (with each head's attention-sink share),
:func:`node_tokens` (a node's activation coloured on any text) and :func:`top_contexts_view`
(a node's top and bottom activating contexts over a list of texts).
"""

from __future__ import annotations

import html
import json
import re
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from jaxtyping import Float
from torch import Tensor

from sparse_lens.io import atomic_write_text
from sparse_lens.visualization.node_activations import Context, NodeLike, node_values, parse_node, top_contexts

SINK_TOKEN = "⟨sink⟩"


# ------------------------------------------------------------------------------------------ bundle
def bundle_path() -> Path:
    import circuitsvis

    return Path(circuitsvis.__file__).resolve().parent / "dist" / "cdn" / "iife.js"


@lru_cache(maxsize=1)
def circuitsvis_bundle() -> str:
    """The circuitsvis browser bundle (an IIFE defining ``CircuitsVis``), ready to inline."""
    path = bundle_path()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the installed circuitsvis has no browser bundle; reinstall circuitsvis>=1.43")
    source = path.read_text(encoding="utf-8")
    source = re.sub(r"^//# sourceMappingURL=.*$", "", source, flags=re.MULTILINE)  # no request for a .map file
    return _script_safe(source)


def _script_safe(text: str) -> str:
    """Text that cannot end the <script> element it sits in (``</script`` and ``<!--`` escaped; both
    only occur inside JavaScript strings, where ``<\\/`` and ``<\\!`` mean the same characters)."""
    return re.sub(r"</(script)", r"<\\/\1", text, flags=re.IGNORECASE).replace("<!--", "<\\!--")


def bundle_script() -> str:
    """A <script> that defines ``window.CircuitsVis`` unless the page already has it."""
    return ("<script>if (!window.CircuitsVis) { window.CircuitsVis = (function () {\n"
            + circuitsvis_bundle() + "\nreturn CircuitsVis; })(); }</script>")


def _props_json(props: dict[str, Any]) -> str:
    def convert(value: Any) -> Any:
        if isinstance(value, Tensor):
            return value.detach().cpu().tolist()
        if hasattr(value, "tolist"):  # numpy
            return value.tolist()
        return value

    try:
        text = json.dumps({k: convert(v) for k, v in props.items() if v is not None}, allow_nan=False)
    except ValueError as err:  # NaN / inf have no JSON form: say which view, not just "out of range float"
        raise ValueError(f"view data: {err} (a NaN or infinite value in {sorted(props)})") from err
    return _script_safe(text)


# ------------------------------------------------------------------------------------------ views
class _Displayable:
    """What a view and a group of views share: a title and note heading, a self-contained HTML form
    (the bundle, run once per page, then the fragment) for notebooks, and ``to_html``."""

    title: str
    note: str

    def fragment(self) -> str:
        raise NotImplementedError

    def _heading(self, title_class: str) -> str:
        head = f'<div class="{title_class}">{html.escape(self.title)}</div>' if self.title else ""
        note = f'<div class="sl-view-note">{html.escape(self.note)}</div>' if self.note else ""
        return head + note

    def _default_page_title(self) -> str:
        raise NotImplementedError

    @property
    def local_src(self) -> str:
        """Self-contained HTML: the bundle (run once per page) and the view."""
        return bundle_script() + "\n" + _STYLE + self.fragment()

    def _repr_html_(self) -> str:
        return self.local_src

    def __html__(self) -> str:
        return self.local_src

    def __str__(self) -> str:
        return self.local_src

    def to_html(self, path: Optional[Union[str, Path]] = None, title: Optional[str] = None) -> Union[str, Path]:
        """A standalone page (returned, or written atomically to ``path`` and its path returned)."""
        return _page_or_file([self], path, title or self.title or self._default_page_title())


@dataclass
class OfflineView(_Displayable):
    """One circuitsvis component with its props; renders with the inlined bundle."""

    component: str  # a circuitsvis React component, e.g. "AttentionHeads", "ColoredTokens"
    props: dict[str, Any]
    title: str = ""
    note: str = ""  # a line under the title (plain text)
    element_id: str = field(default_factory=lambda: "sl-cv-" + uuid.uuid4().hex[:12])

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.component}: {self.title or 'untitled'}>"

    def fragment(self) -> str:
        """The view's HTML without the bundle (for a page that loads the bundle once)."""
        return (f'<div class="sl-view">{self._heading("sl-view-title")}<div id="{self.element_id}"></div>\n'
                f'<script>CircuitsVis.render("{self.element_id}", CircuitsVis.{self.component}, '
                f"{_props_json(self.props)});</script></div>")

    def _default_page_title(self) -> str:
        return self.component


@dataclass
class ViewGroup(_Displayable):
    """Several views shown together with the bundle loaded once (in a notebook or a page)."""

    views: list[Any]  # OfflineView or ViewGroup
    title: str = ""
    note: str = ""
    data: dict[str, Any] = field(default_factory=dict)  # what the views show, for code (e.g. the contexts)

    def __repr__(self) -> str:
        return f"<ViewGroup of {len(self.views)} views: {self.title or 'untitled'}>"

    def fragment(self) -> str:
        inner = "\n".join(v.fragment() for v in self.views)
        return f'<div class="sl-group">{self._heading("sl-group-title")}{inner}</div>'

    def _default_page_title(self) -> str:
        return "circuitsvis views"


_STYLE = """<style>
.sl-view { margin: 10px 0 18px 0; }
.sl-view-title { font: 600 14px system-ui, sans-serif; margin-bottom: 2px; }
.sl-group-title { font: 700 16px system-ui, sans-serif; margin: 8px 0 4px 0; }
.sl-view-note { font: 12px system-ui, sans-serif; color: #555; margin-bottom: 4px; }
</style>"""


def views_page(views: Sequence[Union[OfflineView, ViewGroup]], title: str = "circuitsvis views", intro: str = "") -> str:
    """One standalone HTML page holding every view, the bundle inlined once."""
    if not views:
        raise ValueError("views_page: no views to show")
    intro_html = f"<p>{html.escape(intro)}</p>" if intro else ""
    body = "\n".join(v.fragment() for v in views)
    single = len(views) == 1 and getattr(views[0], "title", None) == title  # its own title is the heading
    heading = "" if single else f'<h1 style="font-size:20px">{html.escape(title)}</h1>'
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>\n'
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; script-src \'unsafe-inline\' '
            "'unsafe-eval'; style-src 'unsafe-inline'; img-src data:; font-src data:\">\n"
            f"{_STYLE}\n<style>body {{ font-family: system-ui, sans-serif; margin: 20px; }}</style></head>\n"
            f"<body>{heading}{intro_html}\n"
            f"{bundle_script()}\n{body}\n</body></html>\n")


def write_views_page(views: Sequence[Union[OfflineView, ViewGroup]], path: Union[str, Path],
                     title: str = "circuitsvis views", intro: str = "") -> Path:
    """Write :func:`views_page` to ``path`` atomically."""
    return atomic_write_text(path, views_page(views, title, intro), argument="views page")


def _page_or_file(views, path, title):
    page = views_page(views, title)
    if path is None:
        return page
    return atomic_write_text(path, page, argument="view page")


# ------------------------------------------------------------------------------------------ helpers
def _display_tokens(tokens: list[str]) -> list[str]:
    """Tokens as circuitsvis shows them: a newline as ↵ (it would otherwise vanish)."""
    return [t.replace("\n", "↵") for t in tokens]


@dataclass(repr=False)
class AttentionView(OfflineView):
    """`OfflineView` of attention heads that also keeps the numbers it shows."""

    pattern: Optional[Float[Tensor, "head query key"]] = None
    sink_share: Optional[Float[Tensor, "head query"]] = None
    head_labels: list[str] = field(default_factory=list)


@torch.no_grad()
def attention_heads(model, text: Union[str, Tensor], heads: Optional[Sequence[Union[int, tuple[int, int]]]] = None,
                    layer: Optional[int] = None, show_sink: bool = True) -> AttentionView:
    """circuitsvis ``AttentionHeads`` for ``text`` (a string or one row of token ids).

    ``heads``: ``(layer, head)`` pairs, or head indices of ``layer``; default every head of ``layer``
    (or of every layer when ``layer`` is None). Each head's name carries its attention-sink share
    (the mean over query positions of ``1 - pattern.sum(-1)``: the probability mass on the sink, a
    learned logit with a zero value). With ``show_sink`` the sink is drawn as an extra first key
    column ``⟨sink⟩``, so each row of the heatmap sums to 1.
    """
    cfg = model.cfg
    if layer is not None and not 0 <= layer < cfg.n_layers:
        raise ValueError(f"layer: expected 0..{cfg.n_layers - 1}, got {layer}")
    if heads is None:
        layers = [layer] if layer is not None else list(range(cfg.n_layers))
        pairs = [(l, h) for l in layers for h in range(cfg.n_heads)]
    else:
        pairs = [h if isinstance(h, tuple) else (layer, h) for h in heads]
        if any(l is None for l, _ in pairs):
            raise ValueError("heads: give (layer, head) pairs, or head indices together with layer=")
    for l, h in pairs:
        if not (0 <= l < cfg.n_layers and 0 <= h < cfg.n_heads):
            raise ValueError(f"head ({l}, {h}): out of range ({cfg.n_layers} layers, {cfg.n_heads} heads)")
    tokens = model.to_tokens(text) if isinstance(text, str) else torch.as_tensor(text).reshape(1, -1)
    names = sorted({f"blocks.{l}.attn.hook_pattern" for l, _ in pairs})
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    pattern = torch.stack([cache[f"blocks.{l}.attn.hook_pattern"][0, h] for l, h in pairs]).float()  # [head, q, k]
    sink = (1 - pattern.sum(-1)).clamp_min(0)  # [head, q]; 0 without a sink
    has_sink = bool(getattr(cfg, "attention_sink", True)) and bool(sink.max() > 1e-6)
    str_tokens = _display_tokens(model.to_str_tokens(tokens[0]))
    labels = [f"L{l}H{h}" + (f" sink {float(s.mean()):.0%}" if has_sink else "") for (l, h), s in zip(pairs, sink)]
    shown, shown_tokens = pattern, str_tokens
    if show_sink and has_sink:
        n = pattern.shape[-1]
        shown = torch.zeros(len(pairs), n + 1, n + 1)
        shown[:, 1:, 0] = sink
        shown[:, 1:, 1:] = pattern
        shown_tokens = [SINK_TOKEN] + str_tokens
    note = ("Rows: query tokens, columns: keys; " + ("the first column is the attention sink (its share in each head's "
            "name: mean over queries)." if show_sink and has_sink else "rows sum to 1 minus the sink's share.")
            if has_sink else "Rows: query tokens, columns: keys.")
    return AttentionView(
        "AttentionHeads",
        {"attention": shown, "tokens": shown_tokens, "attentionHeadNames": labels, "maskUpperTri": True,
         "maxValue": 1.0, "minValue": 0.0},
        title=f"Attention heads ({', '.join(labels[:4])}{', …' if len(labels) > 4 else ''})", note=note,
        pattern=pattern, sink_share=sink, head_labels=labels,
    )


def _value_range(values: Sequence[float]) -> tuple[float, float]:
    """A colour range symmetric about 0 (circuitsvis colours positive values blue, negative red)."""
    top = max((abs(v) for v in values), default=0.0) or 1.0
    return -top, top


def node_tokens(model, node: NodeLike, text: Union[str, Tensor]) -> OfflineView:
    """circuitsvis ``ColoredTokens``: the node's activation at every token of ``text`` (hover a token
    for its value)."""
    parsed = parse_node(node, model.cfg)
    tokens = model.to_tokens(text) if isinstance(text, str) else torch.as_tensor(text).reshape(1, -1)
    values = node_values(model, parsed, tokens)[0].tolist()
    lo, hi = _value_range(values)
    strongest = max(range(len(values)), key=lambda i: abs(values[i])) if values else 0
    return OfflineView(
        "ColoredTokens",
        {"tokens": _display_tokens(model.to_str_tokens(tokens[0])), "values": values, "minValue": lo, "maxValue": hi},
        title=f"{parsed.name} on the text",
        note=f"max {max(values):+.3f}, min {min(values):+.3f}, strongest at token {strongest}; hover a token for its value",
    )


def _contexts_view(contexts: list[Context], label: str, lo: float, hi: float) -> list[OfflineView]:
    return [OfflineView("ColoredTokens", {"tokens": _display_tokens(c.tokens), "values": c.values,
                                          "minValue": lo, "maxValue": hi},
                        title=f"{label} #{rank}: {c.value:+.3f} at “{c.tokens[c.focus].replace(chr(10), '↵')}”",
                        note=f"text {c.text_index}, token {c.position}")
            for rank, c in enumerate(contexts, 1)]


def top_contexts_view(model, node: NodeLike, texts: Union[Sequence[str], Tensor], k: int = 5, before: int = 24,
                      after: int = 4, bottom: bool = True) -> ViewGroup:
    """The node's ``k`` top (and, with ``bottom``, ``k`` bottom) activating contexts over ``texts``, each
    a ``ColoredTokens`` window on one colour scale; the bundle is loaded once for the group. The
    contexts themselves are in ``group.data`` (``{"top": [Context, ...], "bottom": [...]}``)."""
    parsed = parse_node(node, model.cfg)
    top = top_contexts(model, parsed, texts, k, before, after)
    low = top_contexts(model, parsed, texts, k, before, after, bottom=True) if bottom else []
    lo, hi = _value_range([v for c in top + low for v in c.values])
    views = _contexts_view(top, "top", lo, hi) + _contexts_view(low, "bottom", lo, hi)
    n_texts = len(texts)
    return ViewGroup(views, title=f"{parsed.name}: top{' and bottom' if bottom else ''} {k} contexts over {n_texts} texts",
                     note=f"{before} tokens before and {after} after each selected token; one colour scale "
                          f"({lo:+.2f} … {hi:+.2f}); hover a token for its value",
                     data={"top": top, "bottom": low})
