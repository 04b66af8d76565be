"""Bridge sites: the residual stream before each attention block and before each MLP block.

A model with ``n_layers`` blocks has ``2 * n_layers`` sites, numbered in forward order::

    site 2l     blocks.{l}.hook_resid_pre   (entering block l; site 0 is the embedding output)
    site 2l+1   blocks.{l}.hook_resid_mid   (entering the MLP of block l)

The names are TransformerLens hook names, so one site means the same point in a
``HookedSparseTransformer`` and in a TransformerLens model.
"""

from __future__ import annotations

import re
from typing import Union

Site = Union[int, str]

_SITE_RE = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|mid)$")


def site_names(n_layers: int) -> list[str]:
    """The ``2 * n_layers`` bridge sites of a model, in forward order."""
    return [f"blocks.{l}.hook_resid_{kind}" for l in range(n_layers) for kind in ("pre", "mid")]


def site_index(site: Site, n_layers: int) -> int:
    """The index (0 .. 2·n_layers − 1) of a site given by index or name; a clear error otherwise."""
    n = 2 * n_layers
    if isinstance(site, bool) or not isinstance(site, (int, str)):
        raise TypeError(f"site: expected a site index or a name like 'blocks.0.hook_resid_mid', got {site!r}")
    if isinstance(site, int):
        index = site + n if site < 0 else site
        if not 0 <= index < n:
            raise ValueError(f"site: index {site} out of range for {n} sites (a {n_layers}-layer model)")
        return index
    match = _SITE_RE.match(site)
    if not match or int(match.group(1)) >= n_layers:
        raise ValueError(
            f"site: unknown bridge site {site!r}; the sites of a {n_layers}-layer model are "
            f"{site_names(n_layers)} (before each attention and each MLP block)"
        )
    return 2 * int(match.group(1)) + (0 if match.group(2) == "pre" else 1)


class SiteMixin:
    """``n_sites``, ``sites`` and ``site_index(site)`` for anything with ``n_layers`` (a bridged
    model's residual view, the bridges)."""

    n_layers: int

    @property
    def n_sites(self) -> int:
        return 2 * self.n_layers

    @property
    def sites(self) -> list[str]:
        return site_names(self.n_layers)

    def site_index(self, site: Site) -> int:
        return site_index(site, self.n_layers)


def site_name(site: Site, n_layers: int) -> str:
    return site_names(n_layers)[site_index(site, n_layers)]


def next_site_after_hook(hook_name: str, n_layers: int) -> int:
    """The first bridge site downstream of a node hook of the sparse model.

    ``hook_embed`` / ``hook_pos_embed`` feed site 0; a hook in the attention half of block l
    (``blocks.{l}.hook_resid_pre``, ``ln1.*``, ``attn.*``, ``hook_attn_out``) feeds site 2l+1 (the
    MLP input); one in the MLP half (``hook_resid_mid``, ``ln2.*``, ``mlp.*``, ``hook_mlp_out``)
    feeds site 2l+2 — which does not exist after the last block: no bridge reads it.
    """
    if hook_name in ("hook_embed", "hook_pos_embed"):
        return 0
    match = re.match(r"^blocks\.(\d+)\.(.+)$", hook_name)
    if not match or int(match.group(1)) >= n_layers:
        raise ValueError(f"node: {hook_name!r} is not a hook inside a block of this {n_layers}-layer model")
    layer, rest = int(match.group(1)), match.group(2)
    attention_half = rest == "hook_resid_pre" or rest.startswith(("ln1.", "attn.", "hook_attn_out", "hook_q_input",
                                                                 "hook_k_input", "hook_v_input", "hook_attn_in"))
    mlp_half = rest in ("hook_resid_mid", "hook_mlp_out", "hook_mlp_in") or rest.startswith(("ln2.", "mlp."))
    if attention_half:
        return 2 * layer + 1
    if mlp_half:
        if layer + 1 >= n_layers:
            raise ValueError(
                f"node: {hook_name!r} is in the MLP of the last block; no bridge site lies after it "
                f"(the sites are {site_names(n_layers)})"
            )
        return 2 * layer + 2
    raise ValueError(f"node: cannot place {hook_name!r} before a bridge site (hooks after a block's MLP have none)")
