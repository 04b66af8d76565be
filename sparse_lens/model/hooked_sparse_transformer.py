"""`HookedSparseTransformer`: the weight-sparse transformer of Gao et al. (2025) as a TransformerLens
`HookedRootModule`.

There is one forward pass. Caching, ablation, circuit masks and bridge splicing are all hooks on the
HookPoints below; nothing else re-implements the computation.

Hook names follow TransformerLens (see docs/model.md for the table of names, shapes and node kinds).
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from sparse_lens.model.activation_cache import SparseActivationCache
from sparse_lens.model.attention import at_positions
from sparse_lens.model.block import TransformerBlock
from sparse_lens.model.config import SparseTransformerConfig
from sparse_lens.model.devices import check_device
from sparse_lens.model.embeddings import BigramTable, Embed, PosEmbed, Unembed
from sparse_lens.model.hook_point import HookPoint
from sparse_lens.model.normalization import RMSNorm
from sparse_lens.model.tl_compat import FactoredMatrix, HookedRootModule, get_offset_position_ids, left_padding_mask
from sparse_lens.model.tokenization import TokenizerMixin

ReturnType = Optional[Literal["logits", "loss", "both"]]
Site = Union[int, str]

_SITE_RE = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|mid|post)$")


class HookedSparseTransformer(TokenizerMixin, HookedRootModule):
    """A weight-sparse transformer with a HookPoint at every node.

    Example::

        model = HookedSparseTransformer.from_pretrained("python-sparse-tiny")
        logits, cache = model.run_with_cache("def f(x):\\n    return x")
        cache["blocks.0.mlp.hook_post"]  # the layer-0 neuron nodes
    """

    def __init__(self, cfg: SparseTransformerConfig | dict, tokenizer: Any = None):
        super().__init__()
        if isinstance(cfg, dict):
            cfg = SparseTransformerConfig.from_dict(cfg)
        if not isinstance(cfg, SparseTransformerConfig):
            raise TypeError(f"cfg: expected a SparseTransformerConfig or dict, got {type(cfg).__name__}")
        self.cfg = cfg
        self.embed = Embed(cfg)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        if cfg.positional_embeddings:
            self.pos_embed = PosEmbed(cfg)
            self.hook_pos_embed = HookPoint()  # [batch, pos, d_model]
        self.blocks = nn.ModuleList([TransformerBlock(cfg, layer) for layer in range(cfg.n_layers)])
        self.ln_final = RMSNorm(cfg, sparsity=None)
        self.unembed = Unembed(cfg, self.embed)
        if cfg.bigram_table:
            self.bigram = BigramTable(cfg)
            self.hook_bigram = HookPoint()  # [batch, pos, d_vocab]: bigram logits
        from sparse_lens.model.checkpoint import weights_will_be_loaded

        if not weights_will_be_loaded():  # a loader overwrites every weight next: skip the random init
            self.init_weights(cfg.seed)
        self.tokenizer = None
        if tokenizer is not None:
            self.set_tokenizer(tokenizer)
        self.setup()
        if cfg.device is not None:  # the weights live where cfg.device says (TransformerLens semantics)
            self.to(cfg.device)

    def to(self, *args: Any, **kwargs: Any) -> "HookedSparseTransformer":  # type: ignore[override]
        """``nn.Module.to``, checking the device first and keeping ``cfg.device`` / ``cfg.dtype`` true
        to where the weights are (as TransformerLens does)."""
        try:
            device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        except RuntimeError:  # e.g. an unknown device string: say so as for any device argument
            check_device(args[0] if args else kwargs.get("device"))
            raise
        if device is not None:
            device = check_device(device)
        out = super().to(*args, **kwargs)
        if device is not None:
            self.cfg.device = str(device)
        if dtype is not None and dtype.is_floating_point:
            self.cfg.dtype = dtype
        return out

    def cuda(self, device: Any = None) -> "HookedSparseTransformer":  # type: ignore[override]
        return self.to("cuda" if device is None else torch.device("cuda", device) if isinstance(device, int) else device)

    def cpu(self) -> "HookedSparseTransformer":  # type: ignore[override]
        return self.to("cpu")

    # ------------------------------------------------------------------ initialisation
    @torch.no_grad()
    def init_weights(self, seed: Optional[int] = None) -> None:
        """GPT-2 style init, as in the authors' code: N(0, 0.02), residual-write matrices scaled by
        1/sqrt(2·n_layers), biases, sinks and the bigram table zero, norm gains one."""
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        std_out = 0.02 / math.sqrt(2 * self.cfg.n_layers)
        for name, p in self.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("W_O", "W_out"):
                p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * std_out)
            elif leaf.startswith("W_") and leaf != "W_bigram":
                p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * 0.02)
            elif leaf == "w":
                p.fill_(1.0)
            else:
                p.zero_()

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input: Union[str, list[str], Int[Tensor, "batch pos"], Float[Tensor, "batch pos d_model"]],
        return_type: ReturnType = "logits",
        loss_per_token: bool = False,
        prepend_bos: Optional[bool] = None,
        start_at_layer: Optional[Site] = None,
        stop_at_layer: Optional[Site] = None,
        tokens: Optional[Int[Tensor, "batch pos"]] = None,
        logit_positions: Optional[Int[Tensor, "batch"]] = None,
        attention_mask: Optional[Int[Tensor, "batch pos"]] = None,
        padding_side: Optional[Literal["left", "right"]] = None,
    ) -> Any:
        """Run the model.

        Args:
            input: text, a list of texts, token ids [batch, pos] (or [pos]); or, with
                ``start_at_layer``, the residual stream [batch, pos, d_model] at that site.
            return_type: "logits" [batch, pos, d_vocab], "loss" (mean next-token cross-entropy),
                "both" (logits, loss) or None.
            loss_per_token: return the loss per position [batch, pos - 1] instead of the mean.
            start_at_layer / stop_at_layer: a layer index (TransformerLens semantics: the residual
                entering block l) or a site name ``blocks.{l}.hook_resid_pre`` (entering block l),
                ``blocks.{l}.hook_resid_mid`` (entering the MLP of block l) or
                ``blocks.{l}.hook_resid_post`` (leaving block l). Stopping returns the residual
                stream there; stopping and restarting at one site reproduces the full forward,
                every hook running once.
            tokens: the input token ids, needed with ``start_at_layer`` for the bigram logits and
                the loss.
            logit_positions: one position per sequence; the logits are then computed only there
                and returned as [batch, d_vocab] (task losses read just the last real token). The
                last block then computes its queries, attention output and MLP only at these
                positions (nothing else can reach these logits), so its hooks from ``attn.hook_q``
                on see one position ([batch, 1, ...]); earlier hooks see every position.
            attention_mask: [batch, pos], 1 for tokens and 0 for padding (TransformerLens's
                argument): no query attends to a padding key, positional embeddings count from each
                row's first token, and the loss skips predictions from or of padding. Without it, a
                left-padded batch (``padding_side="left"``, or a tokenizer whose ``padding_side`` is
                "left") gets TransformerLens's mask: the leading pads are masked, apart from the BOS
                when BOS and pad share an id. Right padding needs no mask: causal attention keeps
                trailing pads out of every real position.
            padding_side: how a list of texts is padded, and so which pads the automatic mask finds;
                by default the tokenizer's ``padding_side`` (as in TransformerLens), else "right".
        """
        if return_type not in ("logits", "loss", "both", None):
            raise ValueError(f"return_type: expected 'logits', 'loss', 'both' or None, got {return_type!r}")
        start = 0 if start_at_layer is None else self._stage(start_at_layer, "start_at_layer")
        stop = None if stop_at_layer is None else self._stage(stop_at_layer, "stop_at_layer")
        if stop is not None and stop < start:
            raise ValueError(f"stop_at_layer ({stop_at_layer!r}) comes before start_at_layer ({start_at_layer!r})")

        side = self._padding_side(padding_side)
        if start == 0 and start_at_layer is None:
            tokens = self._as_tokens(input, prepend_bos, side)
            attention_mask = self._attention_mask(attention_mask, tuple(tokens.shape), tokens, prepend_bos, side)
            residual = self.hook_embed(self.embed(tokens))
            if self.cfg.positional_embeddings:
                positions = None if attention_mask is None else get_offset_position_ids(0, attention_mask)
                residual = residual + self.hook_pos_embed(self.pos_embed(tokens, positions))
        else:
            residual = self._as_residual(input)
            if tokens is not None:
                tokens = self._check_tokens(tokens)
                if tokens.shape != residual.shape[:2]:
                    raise ValueError(
                        f"tokens: shape {tuple(tokens.shape)} does not match the residual's "
                        f"[batch, pos] {tuple(residual.shape[:2])}"
                    )
            attention_mask = self._attention_mask(attention_mask, tuple(residual.shape[:2]), tokens, prepend_bos, side)

        end = 2 * self.cfg.n_layers if stop is None else stop
        if logit_positions is not None and stop is None:
            if return_type != "logits":
                raise ValueError("logit_positions: only with return_type='logits'")
            logit_positions = self._check_positions(logit_positions, residual)
        # With logit_positions, the last block's attention queries (and everything after) run only
        # at those positions: no other position can reach these logits.
        narrow_at = 2 * (self.cfg.n_layers - 1) if logit_positions is not None and stop is None else None
        for stage in range(start, end):
            block = self.blocks[stage // 2]
            if stage % 2 == 0:
                query_positions = logit_positions if stage == narrow_at else None
                residual = block.attention_half(residual, query_positions, attention_mask)
            else:
                residual = block.mlp_half(residual)
        if stop is not None:
            return residual
        if return_type is None:
            return None

        if tokens is None and (self.cfg.bigram_table or return_type != "logits"):
            raise ValueError(
                "tokens: a forward started mid-stream needs `tokens=` for the bigram logits and the loss"
            )
        if logit_positions is not None:
            if start > narrow_at:  # started after the last block's attention: not narrowed yet
                residual = at_positions(residual, logit_positions)
            tokens = at_positions(tokens, logit_positions) if tokens is not None else None
        logits = self.unembed(self.ln_final(residual))
        if self.cfg.bigram_table:
            logits = logits + self.hook_bigram(self.bigram(tokens))
        if logit_positions is not None:
            return logits[:, 0]
        if return_type == "logits":
            return logits
        loss = self.loss_fn(logits, tokens, per_token=loss_per_token, attention_mask=attention_mask)
        return loss if return_type == "loss" else (logits, loss)

    @staticmethod
    def _check_positions(positions: Any, residual: Tensor) -> Int[Tensor, "batch"]:
        positions = torch.as_tensor(positions, device=residual.device)
        if positions.shape != residual.shape[:1]:
            raise ValueError(f"logit_positions: expected shape [{residual.shape[0]}], got {tuple(positions.shape)}")
        if positions.dtype.is_floating_point or positions.dtype == torch.bool:
            raise ValueError(f"logit_positions: expected integer positions, got dtype {positions.dtype}")
        if len(positions) and (int(positions.min()) < 0 or int(positions.max()) >= residual.shape[1]):
            raise ValueError(f"logit_positions: positions must lie in [0, {residual.shape[1]})")
        return positions

    @staticmethod
    def loss_fn(
        logits: Float[Tensor, "batch pos d_vocab"],
        tokens: Int[Tensor, "batch pos"],
        per_token: bool = False,
        attention_mask: Optional[Int[Tensor, "batch pos"]] = None,
    ) -> Tensor:
        """Next-token cross-entropy: position t predicts token t+1. With `attention_mask`, a
        prediction counts only if both tokens are real (per token: 0 elsewhere), as in
        TransformerLens."""
        if tokens.shape[1] < 2:
            raise ValueError("tokens: the loss needs sequences of at least 2 tokens")
        log_probs = logits[:, :-1].float().log_softmax(dim=-1)
        nll = -log_probs.gather(-1, tokens[:, 1:, None]).squeeze(-1)
        if attention_mask is None:
            return nll if per_token else nll.mean()
        counted = (attention_mask[:, :-1].bool() & attention_mask[:, 1:].bool()).to(nll.dtype)
        nll = nll * counted
        return nll if per_token else nll.sum() / counted.sum().clamp(min=1)

    def _padding_side(self, padding_side: Optional[str]) -> str:
        """The side texts are padded on: the argument, else the tokenizer's (TransformerLens), else right."""
        if padding_side not in (None, "left", "right"):
            raise ValueError(f"padding_side: expected 'left', 'right' or None, got {padding_side!r}")
        return padding_side or getattr(self.tokenizer, "padding_side", None) or "right"

    def _attention_mask(
        self,
        attention_mask: Optional[Tensor],
        shape: tuple[int, ...],
        tokens: Optional[Int[Tensor, "batch pos"]],
        prepend_bos: Optional[bool],
        padding_side: str,
    ) -> Optional[Int[Tensor, "batch pos"]]:
        """The given mask, checked against the input's [batch, pos] `shape`; or TransformerLens's mask
        of left-padded `tokens`; or None (nothing to mask)."""
        if attention_mask is not None:
            attention_mask = torch.as_tensor(attention_mask)
            if attention_mask.ndim == 1:
                attention_mask = attention_mask.unsqueeze(0)
            if tuple(attention_mask.shape) != shape:
                raise ValueError(f"attention_mask: expected shape [batch, pos] {shape}, got {tuple(attention_mask.shape)}")
            if attention_mask.dtype.is_complex or not ((attention_mask == 0) | (attention_mask == 1)).all():
                raise ValueError("attention_mask: expected 0/1 (or bool) entries, 1 for tokens and 0 for padding")
            return attention_mask.to(device=self.embed.W_E.device, dtype=torch.long)
        if padding_side != "left" or tokens is None or self.tokenizer is None:
            return None
        prepend = self.cfg.default_prepend_bos if prepend_bos is None else prepend_bos
        mask = left_padding_mask(self.tokenizer, tokens, prepend)
        return None if bool(mask.all()) else mask

    # ------------------------------------------------------------------ sites
    def _stage(self, site: Site, arg: str) -> int:
        """Map a site to a stage index: 2l = entering block l, 2l+1 = entering its MLP."""
        n = self.cfg.n_layers
        if isinstance(site, bool) or not isinstance(site, (int, str)):
            raise TypeError(f"{arg}: expected a layer index or a site name, got {site!r}")
        if isinstance(site, int):
            layer = site + n if site < 0 else site
            if not 0 <= layer <= n:
                raise ValueError(f"{arg}: layer {site} out of range for a {n}-layer model")
            return 2 * layer
        match = _SITE_RE.match(site)
        if not match or int(match.group(1)) >= n:
            raise ValueError(
                f"{arg}: {site!r} is not a residual site; expected blocks.{{l}}.hook_resid_pre|mid|post "
                f"with 0 <= l < {n}"
            )
        layer, kind = int(match.group(1)), match.group(2)
        return 2 * layer + {"pre": 0, "mid": 1, "post": 2}[kind]

    def _as_tokens(self, input: Any, prepend_bos: Optional[bool], padding_side: str = "right"
                   ) -> Int[Tensor, "batch pos"]:
        if isinstance(input, (str, list)) and (isinstance(input, str) or all(isinstance(s, str) for s in input)):
            return self.to_tokens(input, prepend_bos=prepend_bos, padding_side=padding_side)
        if not isinstance(input, Tensor):
            raise TypeError(f"input: expected text, a list of texts or a token tensor, got {type(input).__name__}")
        return self._check_tokens(input)

    def _check_tokens(self, tokens: Tensor) -> Int[Tensor, "batch pos"]:
        if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
            raise ValueError(
                f"tokens: expected an integer tensor of token ids, got dtype {tokens.dtype} "
                "(pass start_at_layer to feed a residual stream)"
            )
        if tokens.ndim == 1:
            tokens = tokens.unsqueeze(0)
        if tokens.ndim != 2:
            raise ValueError(f"tokens: expected shape [batch, pos] or [pos], got {tuple(tokens.shape)}")
        if tokens.shape[1] == 0:
            raise ValueError("tokens: empty sequence")
        if tokens.shape[1] > self.cfg.n_ctx:
            raise ValueError(f"tokens: sequence length {tokens.shape[1]} exceeds n_ctx={self.cfg.n_ctx}")
        lo, hi = int(tokens.min()), int(tokens.max())
        if lo < 0 or hi >= self.cfg.d_vocab:
            raise ValueError(f"tokens: ids must lie in [0, {self.cfg.d_vocab}), got range [{lo}, {hi}]")
        return tokens.long()

    def _as_residual(self, input: Any) -> Float[Tensor, "batch pos d_model"]:
        if not isinstance(input, Tensor) or not input.dtype.is_floating_point:
            raise ValueError("input: with start_at_layer, expected a float residual tensor [batch, pos, d_model]")
        if input.ndim != 3 or input.shape[-1] != self.cfg.d_model:
            raise ValueError(
                f"input: expected a residual of shape [batch, pos, {self.cfg.d_model}], got {tuple(input.shape)}"
            )
        if input.shape[1] > self.cfg.n_ctx:
            raise ValueError(f"input: sequence length {input.shape[1]} exceeds n_ctx={self.cfg.n_ctx}")
        return input

    # ------------------------------------------------------------------ hooks
    def _check_hook_name(self, name: Any) -> None:
        if isinstance(name, str) and name not in self.hook_dict:
            close = difflib.get_close_matches(name, list(self.hook_dict), n=3)
            hint = f"; did you mean {close}?" if close else ""
            raise KeyError(f"unknown hook name {name!r}{hint}")

    def add_hook(self, name, hook, dir="fwd", is_permanent=False, level=None, prepend=False) -> None:  # type: ignore[override]
        self._check_hook_name(name)
        super().add_hook(name, hook, dir=dir, is_permanent=is_permanent, level=level, prepend=prepend)

    def _enable_hook(self, name, hook, dir):  # type: ignore[override]
        self._check_hook_name(name)
        return super()._enable_hook(name=name, hook=hook, dir=dir)

    def _check_names_filter(self, names_filter: Any) -> None:
        if isinstance(names_filter, str):
            self._check_hook_name(names_filter)
        elif isinstance(names_filter, (list, tuple)):
            for name in names_filter:
                self._check_hook_name(name)

    def get_caching_hooks(self, names_filter=None, *args, **kwargs):  # type: ignore[override]
        self._check_names_filter(names_filter)
        if isinstance(names_filter, tuple):
            names_filter = list(names_filter)
        return super().get_caching_hooks(names_filter, *args, **kwargs)

    def add_caching_hooks(self, names_filter=None, *args, **kwargs):  # type: ignore[override]
        self._check_names_filter(names_filter)
        if isinstance(names_filter, tuple):
            names_filter = list(names_filter)
        return super().add_caching_hooks(names_filter, *args, **kwargs)

    def run_with_cache(self, *model_args: Any, return_cache_object: bool = True, remove_batch_dim: bool = False, **kwargs: Any):  # type: ignore[override]
        """Run the model and return (output, cache), as HookedTransformer does; the cache is a
        `SparseActivationCache` (a TransformerLens `ActivationCache` whose residual decomposition
        adds up on this architecture)."""
        out, cache_dict = super().run_with_cache(*model_args, remove_batch_dim=remove_batch_dim, **kwargs)
        if return_cache_object:
            return out, SparseActivationCache(cache_dict, self, has_batch_dim=not remove_batch_dim)
        return out, cache_dict

    # ------------------------------------------------------------------ execution
    def set_execution(self, mode: Literal["dense", "sparse", "auto"]) -> "HookedSparseTransformer":
        """How the weight products run: "dense" (the default: ``x @ W``), "sparse" (a kernel over the
        nonzeros, for frozen weights) or "auto" (sparse where a matrix is sparse and large enough;
        the rule is ``sparse_lens.model.execution.auto_uses_sparse``). Outputs, hooks and activation
        gradients agree with "dense" to float tolerance; a weight that needs a gradient (requires
        grad, autograd on) always runs dense. See docs/sparse_execution.md."""
        from sparse_lens.model.execution import set_execution

        set_execution(self, mode)
        self._execution = mode
        return self

    @property
    def execution(self) -> str:
        """The mode set by :meth:`set_execution` ("dense" unless changed)."""
        return self.__dict__.get("_execution", "dense")

    # ------------------------------------------------------------------ TL optional hooks
    def set_use_attn_result(self, use_attn_result: bool) -> None:
        """Fire ``blocks.{l}.attn.hook_result``: each head's write [batch, pos, head, d_model]."""
        self.cfg.use_attn_result = bool(use_attn_result)

    def set_use_split_qkv_input(self, use_split_qkv_input: bool) -> None:
        """Give every head its own query, key and value input (``blocks.{l}.hook_q_input`` etc.,
        [batch, pos, head, d_model]), for path patching into one head's queries, keys or values."""
        self.cfg.use_split_qkv_input = bool(use_split_qkv_input)

    def set_use_attn_in(self, use_attn_in: bool) -> None:
        """Fire ``blocks.{l}.hook_attn_in``: the attention input per head [batch, pos, head, d_model]."""
        self.cfg.use_attn_in = bool(use_attn_in)

    def set_use_hook_mlp_in(self, use_hook_mlp_in: bool) -> None:
        """Fire ``blocks.{l}.hook_mlp_in``: the residual stream entering ``ln2`` [batch, pos, d_model]."""
        self.cfg.use_hook_mlp_in = bool(use_hook_mlp_in)

    # ------------------------------------------------------------------ TL weight views
    @property
    def W_E(self) -> Float[Tensor, "d_vocab d_model"]:
        return self.embed.W_E

    @property
    def W_pos(self) -> Float[Tensor, "n_ctx d_model"]:
        if not self.cfg.positional_embeddings:
            raise AttributeError("this model has no positional embeddings (cfg.positional_embeddings=False)")
        return self.pos_embed.W_pos

    @property
    def W_E_pos(self) -> Float[Tensor, "d_vocab_plus_n_ctx d_model"]:
        """W_E with W_pos below it (TransformerLens); W_E alone without positional embeddings."""
        return torch.cat([self.W_E, self.W_pos], dim=0) if self.cfg.positional_embeddings else self.W_E

    @property
    def W_U(self) -> Float[Tensor, "d_model d_vocab"]:
        return self.unembed.W_U

    @property
    def b_U(self) -> Float[Tensor, "d_vocab"]:
        return self.unembed.b_U

    def _stack(self, get: Callable[[TransformerBlock], Tensor]) -> Tensor:
        return torch.stack([get(block) for block in self.blocks], dim=0)

    W_Q = property(lambda self: self._stack(lambda b: b.attn.W_Q))
    W_K = property(lambda self: self._stack(lambda b: b.attn.W_K))
    W_V = property(lambda self: self._stack(lambda b: b.attn.W_V))
    W_O = property(lambda self: self._stack(lambda b: b.attn.W_O))
    b_Q = property(lambda self: self._stack(lambda b: b.attn.b_Q))
    b_K = property(lambda self: self._stack(lambda b: b.attn.b_K))
    b_V = property(lambda self: self._stack(lambda b: b.attn.b_V))
    b_O = property(lambda self: self._stack(lambda b: b.attn.b_O))
    W_in = property(lambda self: self._stack(lambda b: b.mlp.W_in))
    W_out = property(lambda self: self._stack(lambda b: b.mlp.W_out))
    b_in = property(lambda self: self._stack(lambda b: b.mlp.b_in))
    b_out = property(lambda self: self._stack(lambda b: b.mlp.b_out))

    @property
    def QK(self):
        """QK circuit per layer and head, as a TransformerLens FactoredMatrix (W_Q W_Kᵀ)."""
        return FactoredMatrix(self.W_Q, self.W_K.transpose(-2, -1))

    @property
    def OV(self):
        """OV circuit per layer and head (W_V W_O)."""
        return FactoredMatrix(self.W_V, self.W_O)

    def all_head_labels(self) -> list[str]:
        return [f"L{l}H{h}" for l in range(self.cfg.n_layers) for h in range(self.cfg.n_heads)]

    def accumulated_bias(
        self, layer: int, mlp_input: bool = False, include_mlp_biases: bool = True
    ) -> Float[Tensor, "d_model"]:
        """Sum of the attention/MLP output biases written to the residual before ``layer``."""
        bias = torch.zeros(self.cfg.d_model, dtype=self.cfg.dtype, device=self.W_E.device)
        for i in range(layer):
            bias = bias + self.blocks[i].attn.b_O
            if include_mlp_biases:
                bias = bias + self.blocks[i].mlp.b_out
        if mlp_input:
            if layer >= self.cfg.n_layers:
                raise ValueError(f"layer: {layer} has no MLP input in a {self.cfg.n_layers}-layer model")
            bias = bias + self.blocks[layer].attn.b_O
        return bias

    def tokens_to_residual_directions(
        self, tokens: Union[str, int, Int[Tensor, "..."]]
    ) -> Float[Tensor, "... d_model"]:
        """Unembedding directions with the final norm's gain folded in.

        ``(resid / ln_final.hook_scale) @ direction + b_U + bigram`` reproduces a logit, so
        TransformerLens's ``logit_attrs`` over a residual decomposition adds up exactly.
        """
        if isinstance(tokens, str):
            tokens = self.to_single_token(tokens)
        if isinstance(tokens, int):
            return self.ln_final.w * self.W_U[:, tokens]
        tokens = torch.as_tensor(tokens, device=self.W_U.device)
        return self.ln_final.w * self.W_U[:, tokens].movedim(0, -1)

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | Path, overwrite: bool = False) -> Path:
        """Write config.json, model.safetensors (sparse matrices stored compactly) and tokenizer.json
        into ``directory``, each file atomically; other files there are left alone. A non-empty
        directory that is not a saved model is refused unless ``overwrite=True``; a file is refused."""
        from sparse_lens.model.checkpoint import save_pretrained

        return save_pretrained(self, directory, overwrite=overwrite)

    @classmethod
    def from_pretrained(cls, name_or_dir: str | Path, **overrides: Any) -> "HookedSparseTransformer":
        """Load a shipped model by name (see ``list_pretrained()``), a directory written by
        ``save_pretrained``, or a `sparse-lens train` run directory (its latest checkpoint) or
        checkpoint. `overrides` replace config fields; ``device="cuda"`` puts the weights there (a
        device this machine lacks is an error)."""
        from sparse_lens.model.checkpoint import load_pretrained

        return load_pretrained(cls, name_or_dir, **overrides)

    @classmethod
    def from_circuit_sparsity(
        cls, directory: str | Path, tokenizer: Any = None, **overrides: Any
    ) -> "HookedSparseTransformer":
        """Load a checkpoint in the authors' format (``openai/circuit_sparsity``):
        ``beeg_config.json`` + ``final_model.pt``, with their tokenizer ``tinypython_2k``.

        ``tokenizer``: a directory with the authors' ``encoder.json`` + ``vocab.bpe`` (converted to
        a Hugging Face tokenizer encoding exactly as their tiktoken one), a tokenizer.json, or a
        tokenizer object; None finds it where the authors' code does (``$TINYPYTHON_TOK_DIR``, else
        ``<base>/tinypython`` beside ``<base>/models/<model>``), or attaches none; False attaches none.
        `sparse-lens convert` writes the result once in our format (docs/authors_models.md)."""
        from sparse_lens.model.circuit_sparsity_format import load_circuit_sparsity

        return load_circuit_sparsity(cls, directory, tokenizer=tokenizer, **overrides)
