"""Attention with small heads (d_head = 16) and per-head attention sinks (paper Sec. 1.2, 1.6).

Nodes: the q, k and v channels. AbsTopK acts on each token's whole n_heads·d_head vector of q (and
of k, of v) across heads together, as in the authors' code, so one head may keep many channels and
another none.

The sink is a learned per-head logit b_h with a zero value vector: for query i,
``pattern[i, j] = exp(s_ij) / (exp(b_h) + Σ_j' exp(s_ij'))``. ``hook_pattern`` holds the pattern over
the real keys only, so rows sum to less than 1 (the sink's share is ``1 - row.sum()``) and
``z = pattern @ v`` holds exactly.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from jaxtyping import Float
from torch import Tensor, nn

from sparse_lens.model.abs_topk import AbsTopK
from sparse_lens.model.config import SparseTransformerConfig
from sparse_lens.model.hook_point import HookPoint


def _bias(shape: tuple[int, ...], cfg: SparseTransformerConfig, module: nn.Module, name: str) -> None:
    """A learned bias, or a fixed zero buffer when the config has no biases (so `b_O` etc. exist)."""
    if cfg.use_bias:
        setattr(module, name, nn.Parameter(torch.zeros(shape, dtype=cfg.dtype)))
    else:
        module.register_buffer(name, torch.zeros(shape, dtype=cfg.dtype), persistent=False)


class Attention(nn.Module):
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

    def _project(self, x: Float[Tensor, "batch pos d_model"], W: Tensor, b: Tensor, topk: AbsTopK) -> Tensor:
        flat = x @ rearrange(W, "h d c -> d (h c)") + b.reshape(-1)
        return rearrange(topk(flat), "b p (h c) -> b p h c", h=self.cfg.n_heads)

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        q = self.hook_q(self._project(x, self.W_Q, self.b_Q, self.topk_q))
        k = self.hook_k(self._project(x, self.W_K, self.b_K, self.topk_k))
        v = self.hook_v(self._project(x, self.W_V, self.b_V, self.topk_v))
        q_h = rearrange(q, "b p h c -> b h p c")
        k_h = rearrange(k, "b p h c -> b h c p")
        scores = (q_h @ k_h) * self.scale
        n = scores.shape[-1]
        future = torch.ones(n, n, dtype=torch.bool, device=scores.device).triu(1)
        scores = self.hook_attn_scores(scores.masked_fill(future, float("-inf")))
        pattern = self.hook_pattern(self._softmax_with_sink(scores))
        z = self.hook_z(rearrange(pattern @ rearrange(v, "b p h c -> b h p c"), "b h p c -> b p h c"))
        return rearrange(z, "b p h c -> b p (h c)") @ rearrange(self.W_O, "h c d -> (h c) d") + self.b_O

    def _softmax_with_sink(self, scores: Float[Tensor, "batch head q k"]) -> Float[Tensor, "batch head q k"]:
        if self.b_sink is None:
            return scores.softmax(dim=-1)
        sink = self.b_sink.view(1, -1, 1, 1)
        peak = torch.maximum(scores.amax(dim=-1, keepdim=True), sink)
        weights = (scores - peak).exp()
        return weights / (weights.sum(dim=-1, keepdim=True) + (sink - peak).exp())
