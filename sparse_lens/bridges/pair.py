"""`BridgedPair`: a frozen dense model, a weight-sparse model and the bridges between them.

    pair = BridgedPair(dense_model, sparse_model)          # new bridges (or bridges=Bridges.load(...))
    losses = pair.losses(tokens)                           # BridgeLosses: every term, per site
    losses.total.backward()                                # grads reach the sparse model and bridges
    logits = pair.hybrid_logits(tokens, "blocks.1.hook_resid_pre", "d2s")   # dense up to the site, sparse after

The pair is an ``nn.Module`` whose parameters are the sparse model's and the bridges'. The dense model
is held outside the module tree (not in ``parameters()`` or ``state_dict()``), put in eval mode and
frozen (``requires_grad=False``): gradients pass *through* it (to the decoders and the sparse model)
but never *into* it.

Every pass is the models' own forward (AbsTopK included), spliced at the site: a hybrid pass starts
at the site rather than re-running the prefix, and the sites of one direction are batched into one
pass (see :mod:`sparse_lens.bridges.residual_models`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Sequence, Union

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from sparse_lens.bridges.bridge import Bridges
from sparse_lens.bridges.losses import BridgeLosses, LossWeights, kl_per_site, nmse
from sparse_lens.bridges.residual_models import (
    ResidualModel,
    SparseLensResidualModel,
    as_residual_model,
    check_compatible,
)
from sparse_lens.bridges.sites import Site
from sparse_lens.model import HookedSparseTransformer

Direction = Literal["d2s", "s2d"]
SPARSE_FRACTION = "sparse"  # encoder_topk default: the sparse model's AbsTopK fraction


class BridgedPair(nn.Module):
    """Args:
        dense: the frozen dense model (a HookedSparseTransformer or a TransformerLens model).
        sparse: the weight-sparse HookedSparseTransformer (trained with the bridges).
        bridges: existing :class:`Bridges` (shapes checked); None creates new ones.
        encoder_topk: AbsTopK fraction of new encoders; "sparse" = the sparse model's
            ``activation_sparsity`` (None there: no AbsTopK).
        seed: initialization seed of new bridges.
    """

    def __init__(self, dense: Any, sparse: Any, bridges: Optional[Bridges] = None,
                 encoder_topk: Union[float, None, str] = SPARSE_FRACTION, seed: Optional[int] = None):
        super().__init__()
        dense_rm = as_residual_model(dense)
        sparse_rm = as_residual_model(sparse)
        if not isinstance(sparse_rm, SparseLensResidualModel):
            raise TypeError(f"sparse: expected a HookedSparseTransformer, got {type(sparse_rm.module).__name__}")
        if dense_rm.module is sparse_rm.module:
            raise ValueError("dense and sparse: the same model object on both sides; pass a copy (the dense side is frozen)")
        check_compatible(dense_rm, sparse_rm)
        self.sparse: HookedSparseTransformer = sparse_rm.module
        self.sparse_side = sparse_rm  # plain attributes: not modules, so not in parameters() / state_dict()
        self.dense = dense_rm
        self.freeze_dense()
        if bridges is None:
            if encoder_topk == SPARSE_FRACTION:
                encoder_topk = self.sparse.cfg.activation_sparsity
            bridges = Bridges(dense_rm.n_layers, dense_rm.d_model, sparse_rm.d_model, encoder_topk, seed=seed)
        elif (bridges.n_layers, bridges.d_dense, bridges.d_sparse) != (dense_rm.n_layers, dense_rm.d_model, sparse_rm.d_model):
            raise ValueError(
                f"bridges: built for {bridges.n_layers} layers, d_dense {bridges.d_dense}, d_sparse {bridges.d_sparse}; "
                f"these models have {dense_rm.n_layers} layers, d_model {dense_rm.d_model} (dense) and {sparse_rm.d_model} (sparse)"
            )
        self.bridges = bridges

    def freeze_dense(self) -> None:
        self.dense.module.eval()
        for p in self.dense.module.parameters():
            p.requires_grad_(False)

    @property
    def sites(self) -> list[str]:
        return self.bridges.sites

    @property
    def n_sites(self) -> int:
        return self.bridges.n_sites

    # ---------------------------------------------------------------- losses
    def forward(self, tokens: Int[Tensor, "batch pos"], weights: Optional[LossWeights] = None,
                kl_sites: Optional[Sequence[int]] = None) -> BridgeLosses:
        """The training losses of one batch (what DDP wraps); see :meth:`losses`."""
        return self.losses(tokens, weights, kl_sites=kl_sites)

    def losses(self, tokens: Int[Tensor, "batch pos"], weights: Optional[LossWeights] = None,
               compute_all: bool = False, keep_logits: bool = False,
               kl_sites: Optional[Sequence[int]] = None) -> BridgeLosses:
        """Every loss term of App. A.3 on one batch of token rows.

        One dense forward (no grad) gives y_d and h_d at every site; one sparse forward gives the LM
        loss and h_s; the NMSE terms compare f_i(h_d) with h_s and g_i(h_s) with h_d; one batched
        sparse pass from every site on f_i(h_d) and one batched dense pass on g_i(h_s) give the
        hybrid logits. Terms with weight 0 are skipped unless ``compute_all``.

        ``kl_sites`` (a training speed-up, never used for reported numbers): compute the two KL terms
        only at these sites and scale their sum by n_sites / len(kl_sites) — an unbiased estimate
        of the full sum when the sites are drawn uniformly. With ``keep_logits``,
        ``extra`` holds the (detached) dense, sparse and hybrid logits ("d2s", "s2d": [n_sites, ...])."""
        w = weights or LossWeights()
        tokens = self._tokens(tokens)
        need = {name: compute_all or getattr(w, name) > 0 for name in ("lm", "nmse", "kl_d2s", "kl_s2d")}
        with torch.no_grad():
            dense_logits, h_dense = self.dense.forward_with_sites(tokens)
        sparse_logits, h_sparse = self.sparse_side.forward_with_sites(tokens)
        out = BridgeLosses(self.sites, total=torch.zeros((), device=tokens.device))
        kl_index = list(range(self.n_sites))
        if kl_sites is not None:
            kl_index = sorted({self.bridges.index(i) for i in kl_sites})
            if not kl_index:
                raise ValueError("kl_sites: no site given")
            out.kl_sites = kl_index
        kl_scale = self.n_sites / len(kl_index)
        total = out.total
        if need["lm"]:
            out.lm = self.sparse_side.loss(sparse_logits, tokens)
            total = total + w.lm * out.lm
        encoded = decoded = None
        if need["nmse"] or need["kl_d2s"]:
            encoded = {i: self.bridges.encode(i, h) for i, h in enumerate(h_dense) if need["nmse"] or i in kl_index}
        if need["nmse"] or need["kl_s2d"]:
            decoded = {i: self.bridges.decode(i, h) for i, h in enumerate(h_sparse) if need["nmse"] or i in kl_index}
        if need["nmse"]:
            out.nmse_enc = torch.stack([nmse(encoded[i], h) for i, h in enumerate(h_sparse)])
            out.nmse_dec = torch.stack([nmse(decoded[i], h) for i, h in enumerate(h_dense)])
            total = total + w.nmse * (out.nmse_enc.sum() + out.nmse_dec.sum())
        for term, after, mapped in (("kl_d2s", self.sparse_side, encoded), ("kl_s2d", self.dense, decoded)):
            if not need[term]:
                continue
            hybrid = after.run_from_sites({i: mapped[i] for i in kl_index}, tokens)
            kl = kl_per_site(dense_logits, hybrid)
            setattr(out, term, kl)
            if keep_logits:
                out.extra[term[3:]] = hybrid.detach()
            total = total + getattr(w, term) * kl_scale * kl.sum()
        out.total = total
        if keep_logits:
            out.extra.update(dense=dense_logits.detach(), sparse=sparse_logits.detach())
        return out

    # ---------------------------------------------------------------- hybrid passes
    def hybrid_logits(self, tokens: Int[Tensor, "batch pos"], site: Site, direction: Direction
                      ) -> Float[Tensor, "batch pos d_vocab"]:
        """One one-transition hybrid pass. "d2s": the dense model up to ``site``, the encoder, the
        sparse model after it; "s2d": the sparse model up to ``site``, the decoder, the dense model
        after it. Each side runs only its part (stop_at / start_at the site)."""
        tokens = self._tokens(tokens)
        index = self.bridges.index(site)
        if direction == "d2s":
            h = self.dense.run_to(tokens, index)
            return self.sparse_side.run_from(self.bridges.encode(index, h), index, tokens)
        if direction == "s2d":
            h = self.sparse_side.run_to(tokens, index)
            return self.dense.run_from(self.bridges.decode(index, h), index, tokens)
        raise ValueError(f"direction: expected 'd2s' (dense then sparse) or 's2d' (sparse then dense), got {direction!r}")

    def hybrid_logits_all(self, tokens: Int[Tensor, "batch pos"], direction: Direction,
                          sites: Optional[Sequence[Site]] = None) -> Float[Tensor, "n_sites batch pos d_vocab"]:
        """:meth:`hybrid_logits` at every site (or ``sites``), batched into one pass per side;
        stacked in increasing site order."""
        tokens = self._tokens(tokens)
        indices = sorted({self.bridges.index(s) for s in (range(self.n_sites) if sites is None else sites)})
        if direction == "d2s":
            _, h = self.dense.forward_with_sites(tokens, indices)
            return self.sparse_side.run_from_sites({i: self.bridges.encode(i, x) for i, x in zip(indices, h)}, tokens)
        if direction == "s2d":
            _, h = self.sparse_side.forward_with_sites(tokens, indices)
            return self.dense.run_from_sites({i: self.bridges.decode(i, x) for i, x in zip(indices, h)}, tokens)
        raise ValueError(f"direction: expected 'd2s' (dense then sparse) or 's2d' (sparse then dense), got {direction!r}")

    def _tokens(self, tokens: Any) -> Tensor:
        if not isinstance(tokens, Tensor) or tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
            raise ValueError(f"tokens: expected an integer tensor [batch, pos], got {getattr(tokens, 'dtype', type(tokens).__name__)}")
        if tokens.ndim == 1:
            tokens = tokens.unsqueeze(0)
        if tokens.ndim != 2 or tokens.shape[1] < 2:
            raise ValueError(f"tokens: expected [batch, pos] with pos >= 2, got shape {tuple(tokens.shape)}")
        return tokens.long()

    # ---------------------------------------------------------------- persistence
    def save(self, directory: str | Path, overwrite: bool = False) -> Path:
        """The sparse model (``save_pretrained``) and the bridges (bridges.safetensors + .json) in one
        directory; load with :meth:`load`."""
        self.sparse.save_pretrained(directory, overwrite=overwrite)
        return self.bridges.save(directory, self.dense, self.sparse_side)

    @classmethod
    def load(cls, directory: str | Path, dense: Any = None, strict: bool = True) -> "BridgedPair":
        """Load a shipped pair by name (``"python-bridged-tiny"``), a directory written by :meth:`save`
        or a bridge training run / checkpoint. The dense
        model is ``dense``, or the HookedSparseTransformer the bridges name (a shipped model or a
        directory). Both models must be the ones the bridges were trained for (weights
        fingerprints; ``strict=False`` skips that check)."""
        from sparse_lens.bridges.bridge import read_metadata
        from sparse_lens.model.run_checkpoints import is_training_output, resolve_checkpoint

        from sparse_lens.bridges.pretrained import load_bridged_pair, shipped_pair_dir

        if shipped_pair_dir(directory) is not None:  # a shipped pair by name (python-bridged-tiny)
            return load_bridged_pair(directory, dense=dense, strict=strict)
        directory = Path(directory)
        if is_training_output(directory):
            directory = resolve_checkpoint(directory, "bridges")
        meta = read_metadata(directory)
        sparse = HookedSparseTransformer.from_pretrained(directory)
        if dense is None:
            recorded = meta["dense"]
            if recorded.get("kind") != "sparse_lens" or not recorded.get("name"):
                raise ValueError(
                    f"dense: the bridges in {directory} were trained against a {recorded.get('class', 'model')} "
                    f"{recorded.get('name') or '(unnamed)'}; pass that model as dense="
                )
            dense = HookedSparseTransformer.from_pretrained(recorded["name"])
        dense_rm = as_residual_model(dense)
        bridges = Bridges.load(directory, dense=dense_rm, sparse=as_residual_model(sparse), strict=strict)
        return cls(dense_rm, sparse, bridges=bridges)
