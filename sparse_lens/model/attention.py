"""Attention with small heads (d_head = 16) and per-head attention sinks (paper Sec. 1.2, 1.6).

Nodes: the q, k and v channels. AbsTopK acts on each token's whole n_heads·d_head vector of q (and
of k, of v) across heads together, as in the authors' code, so one head may keep many channels and
another none.

The sink is a learned per-head logit b_h with a zero value vector: for query i,
``pattern[i, j] = exp(s_ij) / (exp(b_h) + Σ_j' exp(s_ij'))``. ``hook_pattern`` holds the pattern over
the real keys only, so rows sum to less than 1 (the sink's share is ``1 - row.sum()``) and
``z = pattern @ v`` holds exactly.

z is computed by PyTorch's fused ``scaled_dot_product_attention`` without materializing the
[query, key] matrices: the sink becomes an extra key at the front (one extra head dimension carries
its logit) and a dummy query keeps the causal mask aligned. Scores and pattern are materialized only
when a hook observes them (one matmul with the sink as column 0, one softmax); caching them does
not change z, while a hook that edits them — returning a new tensor or writing in place — or takes
their gradient makes z = pattern @ v from the edited pattern. In-place writes are seen in the
tensors' version counters; under ``torch.inference_mode`` (whose tensors have none) scores and pattern
are made as ordinary no-grad tensors.

``key_mask`` [batch, key] (TransformerLens's ``attention_mask``: 1 = attend, 0 = padding) removes
padding keys; a query still sees itself, so a padding query's row is never empty. With
``cfg.use_attn_result`` (``model.set_use_attn_result(True)``), ``hook_result`` holds each head's
write [batch, pos, head, d_model] (before ``b_O`` and the block's ``attn_out`` AbsTopK). Inputs of
shape [batch, pos, head, d_model] (``model.set_use_split_qkv_input(True)``) give every head its own
query, key and value input.

``query_positions`` (one position per sequence) computes queries — and so z and the output — only
there, against every key up to that position: the model's ``logit_positions`` forward uses it in the
last block, where no other query can affect those logits. Hooks from ``hook_q`` on then hold one
query position ([batch, 1, ...]).
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from sparse_lens.model.abs_topk import AbsTopK
from sparse_lens.model.config import SparseTransformerConfig
from sparse_lens.model.execution import frozen_matmul
from sparse_lens.model.hook_point import HookPoint


def at_positions(x: Float[Tensor, "batch pos ..."], positions: Int[Tensor, "batch"]) -> Float[Tensor, "batch 1 ..."]:
    """Row b's entry at ``positions[b]``, keeping a length-1 position axis."""
    return x[torch.arange(x.shape[0], device=x.device), positions][:, None]


def _versioned_tensors() -> contextlib.AbstractContextManager:
    """Under ``torch.inference_mode`` (whose tensors have no version counter, so in-place writes by
    hooks cannot be seen), make tensors as ordinary no-grad ones; elsewhere change nothing."""
    if not torch.is_inference_mode_enabled():
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode(False))
    stack.enter_context(torch.no_grad())
    return stack


def _bias(shape: tuple[int, ...], cfg: SparseTransformerConfig, module: nn.Module, name: str) -> None:
    """A learned bias, or a fixed zero buffer when the config has no biases (so `b_O` etc. exist)."""
    if cfg.use_bias:
        setattr(module, name, nn.Parameter(torch.zeros(shape, dtype=cfg.dtype)))
    else:
        module.register_buffer(name, torch.zeros(shape, dtype=cfg.dtype), persistent=False)


def _heads_in(W: Tensor) -> Tensor:
    """W_Q/W_K/W_V [head, d_model, d_head] as one [d_model, head·d_head] matrix."""
    return rearrange(W, "h d c -> d (h c)")


def _heads_out(W: Tensor) -> Tensor:
    """W_O [head, d_head, d_model] as one [head·d_head, d_model] matrix."""
    return rearrange(W, "h c d -> (h c) d")


class Attention(nn.Module):
    uses_frozen_matmul = True  # its weight products follow model.set_execution (execution.py)

    def __init__(self, cfg: SparseTransformerConfig):
        super().__init__()
        self.cfg = cfg
        H, D, d = cfg.n_heads, cfg.d_head, cfg.d_model
        self.W_Q = nn.Parameter(torch.empty(H, d, D, dtype=cfg.dtype))
        self.W_K = nn.Parameter(torch.empty(H, d, D, dtype=cfg.dtype))
        self.W_V = nn.Parameter(torch.empty(H, d, D, dtype=cfg.dtype))
        self.W_O = nn.Parameter(torch.empty(H, D, d, dtype=cfg.dtype))
        for name in ("b_Q", "b_K", "b_V"):
            _bias((H, D), cfg, self, name)
        _bias((d,), cfg, self, "b_O")
        self.b_sink = nn.Parameter(torch.zeros(H, dtype=cfg.dtype)) if cfg.attention_sink else None
        self.topk_q = AbsTopK(cfg.sparsity_at("attn_q"))
        self.topk_k = AbsTopK(cfg.sparsity_at("attn_k"))
        self.topk_v = AbsTopK(cfg.sparsity_at("attn_v"))
        self.scale = 1.0 / math.sqrt(D)
        self.hook_q = HookPoint()  # [batch, pos, head, d_head]
        self.hook_k = HookPoint()
        self.hook_v = HookPoint()
        self.hook_attn_scores = HookPoint()  # [batch, head, query, key], -inf above the diagonal
        self.hook_pattern = HookPoint()  # [batch, head, query, key], rows sum to 1 - sink share
        self.hook_z = HookPoint()  # [batch, pos, head, d_head]
        self.hook_result = HookPoint()  # [batch, pos, head, d_model], with cfg.use_attn_result

    def _project(
        self, x: Float[Tensor, "batch pos d_model"] | Float[Tensor, "batch pos head d_model"], W: Tensor, b: Tensor,
        topk: AbsTopK,
    ) -> Float[Tensor, "batch pos head d_head"]:
        if x.ndim == 4:  # split inputs: head h reads its own copy of the residual
            flat = rearrange(torch.einsum("bphd,hdc->bphc", x, W) + b, "b p h c -> b p (h c)")
        else:
            flat = frozen_matmul(self, x, W, _heads_in) + b.reshape(-1)
        return rearrange(topk(flat), "b p (h c) -> b p h c", h=self.cfg.n_heads)

    def forward(
        self,
        x: Float[Tensor, "batch pos d_model"] | Float[Tensor, "batch pos head d_model"],
        query_positions: Optional[Int[Tensor, "batch"]] = None,
        key_input: Optional[Tensor] = None,
        value_input: Optional[Tensor] = None,
        key_mask: Optional[Int[Tensor, "batch key"]] = None,
    ) -> Float[Tensor, "batch query d_model"]:
        """`x` is the query input, and the key and value input unless `key_input` / `value_input`
        are given (split inputs)."""
        x_k = x if key_input is None else key_input
        x_v = x if value_input is None else value_input
        x_q = x if query_positions is None else at_positions(x, query_positions)
        q = self.hook_q(self._project(x_q, self.W_Q, self.b_Q, self.topk_q))
        k = self.hook_k(self._project(x_k, self.W_K, self.b_K, self.topk_k))
        v = self.hook_v(self._project(x_v, self.W_V, self.b_V, self.topk_v))
        q_h, k_h, v_h = (rearrange(t, "b p h c -> b h p c") for t in (q, k, v))
        allowed = self._allowed(query_positions, key_mask, q.shape[1], k.shape[1], q.device)
        z_h = self._fused_attention(q_h, k_h, v_h, allowed)
        if self._pattern_observed():
            # Materialize scores and pattern for the hooks. z keeps the fused value unless a hook
            # edits them (returns a new tensor or writes in place) or wants their gradients, so
            # caching never changes the forward pass. In-place writes show in the tensors' version
            # counters, which inference-mode tensors lack: there, build them as plain no-grad tensors.
            with _versioned_tensors():
                z_h = self._observed_attention(q_h, k_h, v_h, z_h, allowed)
        z = self.hook_z(rearrange(z_h, "b h p c -> b p h c"))
        if self.cfg.use_attn_result:
            result = self.hook_result(torch.einsum("bphc,hcd->bphd", z, self.W_O))
            return result.sum(dim=2) + self.b_O
        return frozen_matmul(self, rearrange(z, "b p h c -> b p (h c)"), self.W_O, _heads_out) + self.b_O

    def frozen_matrices(self) -> dict[str, tuple[Tensor, Callable[[Tensor], Tensor]]]:
        """Each weight with the function that makes it the matrix its product uses."""
        return {"W_Q": (self.W_Q, _heads_in), "W_K": (self.W_K, _heads_in), "W_V": (self.W_V, _heads_in),
                "W_O": (self.W_O, _heads_out)}

    @staticmethod
    def _allowed(
        query_positions: Optional[Int[Tensor, "batch"]], key_mask: Optional[Int[Tensor, "batch key"]],
        n_queries: int, n_keys: int, device: torch.device,
    ) -> Optional[Bool[Tensor, "batch 1 query key"]]:
        """Which keys each query may attend to, or None for the plain causal mask. Queries sit at
        ``query_positions`` (one per sequence) or at every position; `key_mask` drops padding keys
        except a query's own position."""
        if query_positions is None and key_mask is None:
            return None
        keys = torch.arange(n_keys, device=device)
        queries = keys[None, :n_queries] if query_positions is None else query_positions[:, None]  # [batch or 1, query]
        allowed = keys[None, None, :] <= queries[:, :, None]  # [batch or 1, query, key]
        if key_mask is not None:
            itself = keys[None, None, :] == queries[:, :, None]
            allowed = allowed & (key_mask[:, None, :].bool() | itself)
        return allowed[:, None]

    def _observed_attention(self, q: Tensor, k: Tensor, v: Tensor, z_fused: Tensor, allowed: Optional[Tensor]
                            ) -> Float[Tensor, "batch head pos d_head"]:
        """Run ``hook_attn_scores`` and ``hook_pattern``; z from the (possibly edited) pattern, or
        `z_fused` when the hooks only read."""
        logits = self._logits_with_sink(q, k, allowed)  # [..., 0] is the sink when there is one
        first = 0 if self.b_sink is None else 1
        raw_scores = logits[..., first:]
        scores_version = raw_scores._version
        scores = self.hook_attn_scores(raw_scores)
        if scores is not raw_scores:  # a replacement (in-place edits of the view are in `logits` already)
            logits = scores if self.b_sink is None else torch.cat([self._sink_column(scores), scores], dim=-1)
        raw_pattern = logits.softmax(dim=-1)[..., first:]
        pattern_version = raw_pattern._version
        pattern = self.hook_pattern(raw_pattern)
        edited = (
            scores is not raw_scores or pattern is not raw_pattern
            or raw_scores._version != scores_version or raw_pattern._version != pattern_version
        )
        if edited or self._pattern_grad_observed():
            return pattern @ v
        return z_fused

    def _pattern_observed(self) -> bool:
        return any(
            hp._forward_hooks or hp._backward_hooks or hp._forward_pre_hooks
            for hp in (self.hook_attn_scores, self.hook_pattern)
        )

    def _pattern_grad_observed(self) -> bool:
        return any(hp._backward_hooks for hp in (self.hook_attn_scores, self.hook_pattern))

    def _sink_key(self, batch: int) -> Float[Tensor, "batch head 1 d_head_plus_1"]:
        """The sink as an extra key of a (d_head + 1)-dim head: with queries padded by a 1, its
        scaled score is b_h for every query (and its value is zero)."""
        H, D = self.cfg.n_heads, self.cfg.d_head
        key = torch.cat([self.b_sink.new_zeros(H, D), (self.b_sink / self.scale)[:, None]], dim=-1)
        return key.view(1, H, 1, D + 1).expand(batch, H, 1, D + 1)

    def _sink_column(self, scores: Float[Tensor, "batch head q k"]) -> Float[Tensor, "batch head q 1"]:
        """The sink's logit b_h as a column beside `scores`."""
        return self.b_sink.to(scores.dtype).view(1, -1, 1, 1).expand(*scores.shape[:-1], 1)

    def _logits_with_sink(self, q: Tensor, k: Tensor, allowed: Optional[Tensor] = None
                          ) -> Float[Tensor, "batch head q sink_and_keys"]:
        """Scaled scores with -inf at masked keys (above the diagonal); with a sink, the sink's
        logit b_h comes first (column 0), so one softmax gives the pattern."""
        if self.b_sink is not None:
            k = torch.cat([self._sink_key(q.shape[0]), F.pad(k, (0, 1))], dim=2)
            q = F.pad(q, (0, 1), value=1.0)
            allowed = None if allowed is None else F.pad(allowed, (1, 0), value=True)
        n_queries, n_keys = q.shape[2], k.shape[2]
        if allowed is not None:
            return ((q * self.scale) @ k.transpose(-1, -2)).masked_fill_(~allowed, float("-inf"))
        # causal (with a sink, key j sits in column j + 1): the mask is baddbmm's additive input, so the
        # scores are written once (a masked_fill after the bmm passes over them again); the same values
        causal = torch.ones(n_queries, n_keys, dtype=torch.bool, device=q.device).triu(1 if self.b_sink is None else 2)
        bias = torch.zeros(n_queries, n_keys, dtype=q.dtype, device=q.device).masked_fill_(causal, float("-inf"))
        lead = q.shape[:2]
        logits = torch.baddbmm(bias.expand(lead.numel(), n_queries, n_keys), (q * self.scale).reshape(-1, n_queries, q.shape[-1]),
                               k.reshape(-1, n_keys, k.shape[-1]).transpose(-1, -2))
        return logits.view(*lead, n_queries, n_keys)

    def _fused_attention(self, q: Tensor, k: Tensor, v: Tensor, allowed: Optional[Tensor] = None
                         ) -> Float[Tensor, "batch head pos d_head"]:
        """Attention with the sink through F.scaled_dot_product_attention: causal, or masked by
        ``allowed`` [batch, 1, query, key]."""
        if self.b_sink is None:
            if allowed is None:
                return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=self.scale)
        D = q.shape[-1]
        # The sink is key 0 (zero value); head dim D carries its logit (see _sink_key).
        q_aug = F.pad(q, (0, 1), value=1.0)
        k_aug = torch.cat([self._sink_key(q.shape[0]), F.pad(k, (0, 1))], dim=2)
        v_aug = F.pad(v, (0, 1, 1, 0))  # same head dim as q, k keeps the fused kernel
        if allowed is None:
            # a dummy query at the front keeps the causal mask aligned with the extra key
            out = F.scaled_dot_product_attention(F.pad(q_aug, (0, 0, 1, 0)), k_aug, v_aug, is_causal=True, scale=self.scale)
            return out[:, :, 1:, :D]
        allowed = F.pad(allowed, (1, 0), value=True)  # every query sees the sink
        return F.scaled_dot_product_attention(q_aug, k_aug, v_aug, attn_mask=allowed, scale=self.scale)[..., :D]
