"""What pruning needs from a model, for `HookedSparseTransformer` and any TransformerLens model.

Pruning touches a model only through TransformerLens's contracts: the node hook points
(``blocks.{l}.ln1/ln2.hook_normalized``, ``attn.hook_q/k/v``, ``mlp.hook_post``, ``hook_attn_out``,
``hook_mlp_out``), ``run_with_hooks`` / ``hooks()``, and the weight names ``W_Q W_K W_V W_O W_in W_out
W_E W_U`` (plus ``W_pos`` and the norm gains ``w`` where the model has them). So ``HookedTransformer``
(TransformerLens 2.x/3.x) and ``TransformerBridge`` (3.x/4.x) prune like our own model. This module
holds every place where models differ:

- **Logits at the last token.** Our forward takes ``logit_positions=`` (the last block runs only
  there); any other model runs the full forward and the logits are gathered at each row's last token
  (the same numbers, more compute).
- **Norm gains** for residual edges: ``norm.w`` where the norm has one; a norm without a gain
  (TransformerLens's ``LNPre``, folded LayerNorm) passes every channel (gain 1).
- **Embedding channels**: ``W_E`` and, with learned absolute positions, ``W_pos`` (rotary models
  have none).
- **Gated MLPs** read through ``W_in`` and ``W_gate``: a read→neuron edge is a nonzero in either.
- **The tokenizer** (pretraining text for node means): ``model.tokenizer``'s ``tokenizers`` backend.

`adapter_for(model)` checks the model once (every node hook exists and fires with the node shapes
`node_sites` expects; the weights exist with matching shapes) and raises a ValueError naming what is
missing — e.g. ``blocks.0.ln1.hook_normalized`` on a model without LayerNorm
(``normalization_type=None``) — instead of failing deep inside a forward.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Optional

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from sparse_lens.pruning.nodes import node_sites
from sparse_lens.tasks.evaluate import _accepts_logit_positions
from sparse_lens.tasks.loss import last_logits


@dataclass(frozen=True)
class BlockWeights:
    """One block's weights in TransformerLens's layout (what edges are counted from)."""

    W_Q: Float[Tensor, "head d_model d_head"]
    W_K: Float[Tensor, "head d_model d_head"]
    W_V: Float[Tensor, "head d_model d_head"]
    W_O: Float[Tensor, "head d_head d_model"]
    W_in: Float[Tensor, "d_model d_mlp"]  # with a gated MLP: nonzero where W_in or W_gate is
    W_out: Float[Tensor, "d_mlp d_model"]
    ln1_gain: Float[Tensor, "d_model"]
    ln2_gain: Float[Tensor, "d_model"]


class PruningModel:
    """A model seen the way pruning sees it (build it with `adapter_for`)."""

    def __init__(self, model: Any):
        self.model = model
        self.cfg = model.cfg
        self.takes_logit_positions = _accepts_logit_positions(model)
        self._check_hooks()

    # ------------------------------------------------------------------ checks
    def _check_hooks(self) -> None:
        model, sites = self.model, node_sites(self.model.cfg)
        hook_dict = getattr(model, "hook_dict", None)
        if hook_dict is None or not hasattr(model, "run_with_hooks"):
            raise ValueError(f"model: expected a TransformerLens model (hook points and run_with_hooks), "
                             f"got {type(model).__name__}")
        missing = [s.name for s in sites if s.name not in hook_dict]
        if missing:
            hint = ""
            if any("hook_normalized" in m for m in missing):
                hint = (f" (cfg.normalization_type={getattr(self.cfg, 'normalization_type', None)!r}: pruning reads "
                        "the residual stream at the LayerNorm/RMSNorm outputs, so the model needs ln1 and ln2)")
            raise ValueError(f"model: {type(model).__name__} lacks the node hook point(s) {missing[:4]}"
                             f"{' and more' if len(missing) > 4 else ''}{hint}")
        shapes: dict[str, tuple[int, ...]] = {}

        def record(x: Tensor, hook, name: str) -> None:
            shapes[name] = tuple(x.shape[2:])

        tokens = torch.zeros(1, 2, dtype=torch.long, device=self.device)
        with torch.no_grad():
            model.run_with_hooks(tokens, fwd_hooks=[(s.name, lambda x, hook, n=s.name: record(x, hook, n))
                                                    for s in sites])
        for s in sites:
            if s.name not in shapes:
                raise ValueError(f"model: the hook point {s.name} never fires in a forward pass")
            if shapes[s.name] != s.shape:
                raise ValueError(f"model: {s.name} gives activations [batch, pos, {', '.join(map(str, shapes[s.name]))}]; "
                                 f"pruning expects [batch, pos, {', '.join(map(str, s.shape))}] from the config "
                                 "(n_heads, d_head, d_mlp, d_model; grouped-query attention is not supported)")
        for l in range(self.cfg.n_layers):
            self.block_weights(l)  # raises naming a missing or misshapen weight

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ forward
    def last_token_logits(self, tokens: Int[Tensor, "seq pos"], last: Int[Tensor, "seq"]) -> Float[Tensor, "seq vocab"]:
        """Logits at each row's last real token (hooks already attached apply)."""
        if self.takes_logit_positions:
            return self.model(tokens, logit_positions=last)
        return last_logits(self.model(tokens), last)

    # ------------------------------------------------------------------ weights
    def _weight(self, owner: Any, name: str, where: str, shape: tuple[int, ...]) -> Tensor:
        try:
            w = getattr(owner, name)
        except AttributeError:
            w = None
        if not isinstance(w, Tensor):
            raise ValueError(f"model: {where}.{name} is missing (pruning counts edges from TransformerLens's "
                             "weights W_Q W_K W_V W_O W_in W_out W_E W_U)")
        if tuple(w.shape) != shape:
            raise ValueError(f"model: {where}.{name} has shape {tuple(w.shape)}, expected {shape}")
        return w.detach()

    def _gain(self, norm: Any) -> Float[Tensor, "d_model"]:
        w = getattr(norm, "w", None)
        if isinstance(w, Tensor) and tuple(w.shape) == (self.cfg.d_model,):
            return w.detach()
        return torch.ones(self.cfg.d_model, device=self.device)  # no gain (LNPre, folded): every channel passes

    def block_weights(self, layer: int) -> BlockWeights:
        c, block = self.cfg, self.model.blocks[layer]
        where = f"blocks.{layer}"
        qkv = (c.n_heads, c.d_model, c.d_head)
        W = {n: self._weight(block.attn, n, where + ".attn", qkv) for n in ("W_Q", "W_K", "W_V")}
        W_O = self._weight(block.attn, "W_O", where + ".attn", (c.n_heads, c.d_head, c.d_model))
        W_in = self._weight(block.mlp, "W_in", where + ".mlp", (c.d_model, c.d_mlp))
        gate = getattr(block.mlp, "W_gate", None)
        if isinstance(gate, Tensor):  # gated MLP: a read reaches a neuron through either matrix
            W_in = torch.where(W_in != 0, W_in, gate.detach())
        W_out = self._weight(block.mlp, "W_out", where + ".mlp", (c.d_mlp, c.d_model))
        return BlockWeights(W_Q=W["W_Q"], W_K=W["W_K"], W_V=W["W_V"], W_O=W_O, W_in=W_in, W_out=W_out,
                            ln1_gain=self._gain(block.ln1), ln2_gain=self._gain(block.ln2))

    def embedding_channels(self) -> Bool[Tensor, "d_model"]:
        """Residual channels the token (or learned position) embedding writes to."""
        d = self.cfg.d_model
        channels = self._weight(self.model, "W_E", "model", (self.cfg.d_vocab, d)).ne(0).any(0)
        W_pos = self._positional_embedding()
        if W_pos is not None:
            channels |= W_pos.ne(0).any(0)
        return channels

    def _positional_embedding(self) -> Optional[Tensor]:
        cfg = self.cfg
        if hasattr(cfg, "positional_embeddings"):  # ours: a flag
            learned = bool(cfg.positional_embeddings)
        else:  # TransformerLens: "standard" = learned absolute positions (rotary, shortformer, alibi: none in W_pos)
            learned = getattr(cfg, "positional_embedding_type", "standard") == "standard"
        if not learned:
            return None
        try:
            W_pos = self.model.W_pos
        except (AttributeError, ValueError, RuntimeError):
            return None
        return W_pos.detach() if isinstance(W_pos, Tensor) else None

    def unembedding_channels(self) -> tuple[Bool[Tensor, "d_model"], Float[Tensor, "d_model"]]:
        """(channels that reach the logits: a nonzero final-norm gain and a nonzero row of W_U, the gain)."""
        gain = self._gain(self.model.ln_final) if hasattr(self.model, "ln_final") else torch.ones(
            self.cfg.d_model, device=self.device)
        W_U = self.model.W_U.detach()
        if W_U.shape[0] != self.cfg.d_model:
            raise ValueError(f"model: W_U has shape {tuple(W_U.shape)}, expected [d_model={self.cfg.d_model}, d_vocab]")
        return gain.ne(0) & W_U.ne(0).any(1), gain

    # ------------------------------------------------------------------ text
    def backend_tokenizer(self) -> Any:
        """The `tokenizers.Tokenizer` the model reads text with (for node means over pretraining text)."""
        from sparse_lens.tasks.tokenize import backend

        own = getattr(self.model, "backend_tokenizer", None)  # ours: the plain tokenizer (no special tokens)
        if own is not None:
            return own
        tokenizer = getattr(self.model, "tokenizer", None)
        if tokenizer is None:
            raise ValueError("model: has no tokenizer; give it ours (e.g. HookedTransformer(cfg, tokenizer="
                             "sparse_model.tokenizer) or TransformerBridge.boot_native(cfg, tokenizer=...))")
        return backend(tokenizer)


_ADAPTERS: "weakref.WeakKeyDictionary[Any, PruningModel]" = weakref.WeakKeyDictionary()


def adapter_for(model: Any) -> PruningModel:
    """The model's `PruningModel`, checked once and cached for the model's lifetime."""
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        adapter = _ADAPTERS[model] = PruningModel(model)
    return adapter
