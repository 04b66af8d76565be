"""One interface over the residual stream of a `HookedSparseTransformer` and of a TransformerLens model.

A bridge needs four things from each model: its shape (``n_layers``, ``d_model``, ``d_vocab``,
``tokenizer``), the residual stream at every bridge site of a forward pass, a forward *from* a site
(a residual in, logits out), and — to batch the hybrid passes — a forward from every site at once.
Everything goes through the models' own forward and TransformerLens hooks at the residual hook points
(``blocks.{l}.hook_resid_pre`` / ``hook_resid_mid``): nothing re-implements a model.

* :class:`SparseLensResidualModel` (our ``HookedSparseTransformer``, dense or sparse) runs from a site
  with ``start_at_layer=site`` and to a site with ``stop_at_layer=site``: no wasted prefix or suffix.
  :meth:`run_from_sites` batches the sites: one pass whose batch grows by one copy per site as the
  pass reaches that site (``start_at_layer`` / ``stop_at_layer`` between consecutive sites), so every
  sublayer runs once on all the copies that need it.
* :class:`TransformerLensResidualModel` (a ``TransformerBridge`` or ``HookedTransformer``) splices
  with a hook that replaces the residual at the site. TransformerBridge's own ``start_at_layer``
  runs the blocks before the site anyway (its docstring: "Blocks 0..k-1 still execute internally"),
  so the hook costs the same; it also handles ``hook_resid_mid``, which ``start_at_layer`` cannot.
  :meth:`run_from_sites` runs all sites in one batch: copy i of the tokens gets site i's residual.

Hooks are added with the models' own context managers (``run_with_hooks``), which remove them when
the pass ends, also when it raises.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from sparse_lens.bridges.sites import Site, SiteMixin, site_names
from sparse_lens.model import HookedSparseTransformer
from sparse_lens.model.identity import model_name, weights_fingerprint


class ResidualModel(SiteMixin):
    """A model seen through its residual stream at the bridge sites (see the module docstring)."""

    kind = "model"

    def __init__(self, module: nn.Module):
        self.module = module

    # ---------------------------------------------------------------- shape and identity
    @property
    def n_layers(self) -> int:
        return int(self.module.cfg.n_layers)

    @property
    def d_model(self) -> int:
        return int(self.module.cfg.d_model)

    @property
    def d_vocab(self) -> int:
        cfg = self.module.cfg
        return int(getattr(cfg, "d_vocab_out", None) or cfg.d_vocab)

    @property
    def tokenizer(self) -> Any:
        return getattr(self.module, "tokenizer", None)

    @property
    def name(self) -> str:
        return model_name(self.module)

    def fingerprint(self) -> str:
        return weights_fingerprint(self.module)

    def describe(self) -> dict[str, Any]:
        """What a saved bridge records about this model."""
        return {"kind": self.kind, "class": type(self.module).__name__, "name": self.name,
                "fingerprint": self.fingerprint(), "n_layers": self.n_layers, "d_model": self.d_model,
                "d_vocab": self.d_vocab}

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    # ---------------------------------------------------------------- passes
    def forward_with_sites(
        self, tokens: Int[Tensor, "batch pos"], sites: Optional[Sequence[Site]] = None
    ) -> tuple[Float[Tensor, "batch pos d_vocab"], list[Float[Tensor, "batch pos d_model"]]]:
        """One full forward: (logits, [the residual at each site]) — all sites unless ``sites``.

        The residuals are the hook points' tensors, not detached: under autograd, gradients flow
        through them into the model."""
        names = [self.sites[self.site_index(s)] for s in (range(self.n_sites) if sites is None else sites)]
        store: dict[str, Tensor] = {}

        def capture(name: str) -> Callable:
            def hook(x: Tensor, hook: Any) -> None:
                store[name] = x

            return hook

        logits = self.module.run_with_hooks(tokens, fwd_hooks=[(n, capture(n)) for n in names])
        missing = [n for n in names if n not in store]
        if missing:
            raise RuntimeError(f"{type(self.module).__name__}: the hooks {missing} did not fire in a forward pass")
        return logits, [store[n] for n in names]

    def run_to(self, tokens: Int[Tensor, "batch pos"], site: Site) -> Float[Tensor, "batch pos d_model"]:
        """The residual stream at ``site``."""
        raise NotImplementedError

    def run_from(
        self, residual: Float[Tensor, "batch pos d_model"], site: Site, tokens: Int[Tensor, "batch pos"]
    ) -> Float[Tensor, "batch pos d_vocab"]:
        """Logits of the rest of the model, with ``residual`` as the residual stream at ``site``."""
        raise NotImplementedError

    def run_from_sites(
        self, residuals: Mapping[int, Tensor], tokens: Int[Tensor, "batch pos"]
    ) -> Float[Tensor, "n_sites batch pos d_vocab"]:
        """``run_from`` for several sites at once ({site index: residual}); logits stacked in
        increasing site order."""
        raise NotImplementedError

    def loss(self, logits: Tensor, tokens: Tensor, per_token: bool = False) -> Tensor:
        """Next-token cross-entropy (position t predicts token t+1), as the models compute it."""
        return HookedSparseTransformer.loss_fn(logits, tokens, per_token=per_token)

    def _check_residual(self, residual: Tensor, tokens: Tensor, site: Site) -> None:
        if not isinstance(residual, Tensor) or residual.ndim != 3 or residual.shape[-1] != self.d_model:
            shape = tuple(residual.shape) if isinstance(residual, Tensor) else type(residual).__name__
            raise ValueError(
                f"residual at {site!r}: expected [batch, pos, {self.d_model}] for this {self.kind} model, got {shape}"
            )
        if tuple(residual.shape[:2]) != tuple(tokens.shape):
            raise ValueError(
                f"residual at {site!r}: [batch, pos] {tuple(residual.shape[:2])} does not match the tokens' {tuple(tokens.shape)}"
            )


class SparseLensResidualModel(ResidualModel):
    """A `HookedSparseTransformer` (weight-sparse or dense): sites via ``start_at_layer`` /
    ``stop_at_layer``."""

    kind = "sparse_lens"

    def run_to(self, tokens: Tensor, site: Site) -> Tensor:
        return self.module(tokens, stop_at_layer=self.sites[self.site_index(site)])

    def run_from(self, residual: Tensor, site: Site, tokens: Tensor) -> Tensor:
        name = self.sites[self.site_index(site)]
        self._check_residual(residual, tokens, name)
        return self.module(residual, start_at_layer=name, tokens=tokens)

    def run_from_sites(self, residuals: Mapping[int, Tensor], tokens: Tensor) -> Tensor:
        """One staggered pass: the batch starts with the earliest site's rows and, at each later
        site, the rows of that site join (concatenated); each segment between two sites is one
        ``start_at_layer``/``stop_at_layer`` call of the model's forward."""
        order = sorted(self.site_index(i) for i in residuals)
        if not order:
            raise ValueError("residuals: no site given")
        by_index = {self.site_index(i): r for i, r in residuals.items()}
        for i in order:
            self._check_residual(by_index[i], tokens, self.sites[i])
        x: Optional[Tensor] = None
        for stage in range(order[0], self.n_sites):
            if stage in by_index:
                new = by_index[stage]
                x = new if x is None else torch.cat([x, new.to(x.dtype)], dim=0)
            start = self.sites[stage]
            if stage + 1 < self.n_sites:
                x = self.module(x, start_at_layer=start, stop_at_layer=self.sites[stage + 1])
            else:
                logits = self.module(x, start_at_layer=start, tokens=tokens.repeat(len(order), 1))
        return logits.view(len(order), *tokens.shape, -1)


class TransformerLensResidualModel(ResidualModel):
    """A TransformerLens model (``TransformerBridge``, ``HookedTransformer``): sites via hooks that
    replace the residual stream at ``blocks.{l}.hook_resid_pre|mid``."""

    kind = "transformer_lens"

    def run_to(self, tokens: Tensor, site: Site) -> Tensor:
        index = self.site_index(site)
        name = self.sites[index]
        store: dict[str, Tensor] = {}

        def capture(x: Tensor, hook: Any) -> None:
            store["x"] = x

        # stop after the block holding the site (TransformerLens stops at a block boundary)
        layer = index // 2
        stop = layer + 1 if layer + 1 < self.n_layers else None
        self.module.run_with_hooks(tokens, fwd_hooks=[(name, capture)], stop_at_layer=stop,
                                   return_type=None if stop is None else "logits")
        return store["x"]

    def run_from(self, residual: Tensor, site: Site, tokens: Tensor) -> Tensor:
        name = self.sites[self.site_index(site)]
        self._check_residual(residual, tokens, name)

        def replace(x: Tensor, hook: Any) -> Tensor:
            return residual.to(x.dtype)

        return self.module.run_with_hooks(tokens, fwd_hooks=[(name, replace)])

    def run_from_sites(self, residuals: Mapping[int, Tensor], tokens: Tensor) -> Tensor:
        order = sorted(self.site_index(i) for i in residuals)
        if not order:
            raise ValueError("residuals: no site given")
        by_index = {self.site_index(i): r for i, r in residuals.items()}
        batch = tokens.shape[0]
        hooks = []
        for copy, i in enumerate(order):
            self._check_residual(by_index[i], tokens, self.sites[i])

            def replace(x: Tensor, hook: Any, copy: int = copy, new: Tensor = by_index[i]) -> Tensor:
                lo, hi = copy * batch, (copy + 1) * batch
                return torch.cat([x[:lo], new.to(x.dtype), x[hi:]], dim=0)

            hooks.append((self.sites[i], replace))
        logits = self.module.run_with_hooks(tokens.repeat(len(order), 1), fwd_hooks=hooks)
        return logits.view(len(order), *tokens.shape, -1)


def as_residual_model(model: Any) -> ResidualModel:
    """Wrap a model in the interface above (a ResidualModel is returned as it is)."""
    if isinstance(model, ResidualModel):
        return model
    if isinstance(model, HookedSparseTransformer):
        return SparseLensResidualModel(model)
    if isinstance(model, nn.Module) and hasattr(model, "run_with_hooks") and hasattr(model, "cfg"):
        hooks = getattr(model, "hook_dict", {})
        missing = [n for n in site_names(int(model.cfg.n_layers)) if n not in hooks]
        if missing:
            raise ValueError(
                f"model: {type(model).__name__} has no hook points {missing[:3]}; a bridged model must expose "
                "the residual stream at TransformerLens hook names blocks.{l}.hook_resid_pre / hook_resid_mid"
            )
        return TransformerLensResidualModel(model)
    raise TypeError(
        f"model: expected a HookedSparseTransformer or a TransformerLens model (TransformerBridge, HookedTransformer), "
        f"got {type(model).__name__}"
    )


def tokenizer_vocabulary(tokenizer: Any) -> Optional[dict[str, int]]:
    """token -> id of a transformers or tokenizers tokenizer (None if there is none)."""
    if tokenizer is None:
        return None
    get = getattr(tokenizer, "get_vocab", None)
    if get is None:
        raise TypeError(f"tokenizer: {type(tokenizer).__name__} has no get_vocab(); cannot compare vocabularies")
    return dict(get())


def check_compatible(dense: ResidualModel, sparse: ResidualModel) -> None:
    """Same depth, same vocabulary size, same tokenizer (compared token by token); a ValueError
    naming what differs otherwise. Widths may differ (the bridges map between them)."""
    if dense.n_layers != sparse.n_layers:
        raise ValueError(
            f"n_layers: the dense model has {dense.n_layers} layers and the sparse model {sparse.n_layers}; "
            "bridges pair the sites of two models of the same depth"
        )
    if dense.d_vocab != sparse.d_vocab:
        raise ValueError(f"d_vocab: the dense model has {dense.d_vocab} output tokens and the sparse model {sparse.d_vocab}")
    dv, sv = tokenizer_vocabulary(dense.tokenizer), tokenizer_vocabulary(sparse.tokenizer)
    if (dv is None) != (sv is None):
        which = "dense" if dv is None else "sparse"
        raise ValueError(
            f"tokenizer: the {which} model has no tokenizer and the other has one, so they cannot be checked to "
            f"match; give the {which} model the same tokenizer (model.set_tokenizer(...))"
        )
    if dv is not None and dv != sv:
        only_dense = sorted(set(dv) - set(sv))
        only_sparse = sorted(set(sv) - set(dv))
        moved = sorted(t for t in set(dv) & set(sv) if dv[t] != sv[t])
        raise ValueError(
            "tokenizer: the dense and sparse models' tokenizers differ "
            f"({len(dv)} vs {len(sv)} tokens; only in dense: {only_dense[:5]}, only in sparse: {only_sparse[:5]}, "
            f"different ids: {moved[:5]}); bridged models must share one tokenizer"
        )
