"""Seeing circuits: the interactive circuit viewer (``write_circuit_html`` / ``circuit.to_html`` /
``sparse-lens view``: one self-contained HTML file; ``circuit.show()`` in Jupyter), circuitsvis views
that render offline (attention heads with the sink's share, a node's activation on text, a node's
top contexts) and matplotlib plots of pruning and training (``sparse_lens.visualization.plots``).
Every HTML view inlines its JavaScript: no network, no server.
"""

import lazy_loader

# Attributes load on first use (``sparse-lens --help`` imports no torch).
__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "circuitsvis_views": ["OfflineView", "ViewGroup", "attention_heads", "node_tokens", "top_contexts_view", "views_page", "write_views_page"],
        "node_activations": ["Context", "Node", "node_values", "parse_node", "top_contexts"],
        "viewer": ["CircuitViewHTML", "circuit_fragment", "circuit_html", "circuit_iframe", "export_circuit_view",
                   "show_circuit", "viewer_assets", "write_circuit_html"],
        "circuit_graph": ["CircuitMismatchError", "circuit_graph"],
    },
)

__all__ = [
    "CircuitMismatchError",
    "CircuitViewHTML",
    "circuit_fragment",
    "circuit_graph",
    "circuit_html",
    "circuit_iframe",
    "export_circuit_view",
    "show_circuit",
    "viewer_assets",
    "write_circuit_html",
    "Context",
    "Node",
    "OfflineView",
    "ViewGroup",
    "attention_heads",
    "node_tokens",
    "node_values",
    "parse_node",
    "top_contexts",
    "top_contexts_view",
    "views_page",
    "write_views_page",
]
