"""A pre-norm transformer block, split at the residual stream so a forward can start or stop mid-block.

Node locations per block (paper Sec. 2.2): ``ln1.hook_normalized`` and ``ln2.hook_normalized``
(residual reads), ``attn.hook_q/k/v`` (attention channels), ``mlp.hook_post`` (neurons), and
``hook_attn_out`` / ``hook_mlp_out`` (residual writes). Each hook sits after its AbsTopK.

TransformerLens's optional input hooks fire only when switched on (``model.set_use_attn_in``,
``set_use_split_qkv_input``, ``set_use_hook_mlp_in``): ``hook_attn_in`` and ``hook_q_input`` /
``hook_k_input`` / ``hook_v_input`` hold the residual stream copied per head [batch, pos, head,
d_model] (``ln1`` and its read node then act on each head's copy), ``hook_mlp_in`` the residual
stream entering ``ln2``.
"""

from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from einops import repeat
from jaxtyping import Float, Int
from torch import Tensor, nn

from sparse_lens.model.abs_topk import AbsTopK
from sparse_lens.model.attention import Attention, at_positions
from sparse_lens.model.config import SparseTransformerConfig
from sparse_lens.model.hook_point import HookPoint
from sparse_lens.model.mlp import MLP
from sparse_lens.model.normalization import RMSNorm


class TransformerBlock(nn.Module):
    def __init__(self, cfg: SparseTransformerConfig, layer: int):
        super().__init__()
        self.cfg = cfg
        self.layer = layer
        self.ln1 = RMSNorm(cfg, cfg.sparsity_at("attn_in"))
        self.attn = Attention(cfg)
        self.ln2 = RMSNorm(cfg, cfg.sparsity_at("mlp_in"))
        self.mlp = MLP(cfg)
        self.topk_attn_out = AbsTopK(cfg.sparsity_at("attn_out"))
        self.topk_mlp_out = AbsTopK(cfg.sparsity_at("mlp_out"))
        self.topk_resid_mid = AbsTopK(cfg.sparsity_at("resid_post_attn"))
        self.topk_resid_post = AbsTopK(cfg.sparsity_at("resid_post_mlp"))
        self.hook_resid_pre = HookPoint()
        self.hook_attn_out = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()
        self.hook_attn_in = HookPoint()  # [batch, pos, head, d_model], with cfg.use_attn_in
        self.hook_q_input = HookPoint()  # [batch, pos, head, d_model], with cfg.use_split_qkv_input
        self.hook_k_input = HookPoint()
        self.hook_v_input = HookPoint()
        self.hook_mlp_in = HookPoint()  # [batch, pos, d_model], with cfg.use_hook_mlp_in

    def _per_head(self, resid: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos head d_model"]:
        """The residual stream copied once per head (TransformerLens's split inputs)."""
        return repeat(resid, "b p d -> b p h d", h=self.cfg.n_heads).clone()

    def _residual(self, x: Tensor) -> Tensor:
        return F.relu(x) if self.cfg.residual_activation == "relu" else x

    def attention_half(
        self,
        resid_pre: Float[Tensor, "batch pos d_model"],
        query_positions: Optional[Int[Tensor, "batch"]] = None,
        attention_mask: Optional[Int[Tensor, "batch pos"]] = None,
    ) -> Float[Tensor, "batch pos d_model"]:
        """resid_pre -> resid_mid; with ``query_positions`` (one per sequence) only at those positions
        ([batch, 1, d_model]): attention reads every key, but queries and writes only there.
        ``attention_mask`` (1 = token, 0 = padding) keeps attention off padding keys."""
        resid_pre = self.hook_resid_pre(resid_pre)
        if self.cfg.use_split_qkv_input:
            q_in, k_in, v_in = (
                self.ln1(hook(self._per_head(resid_pre))) for hook in (self.hook_q_input, self.hook_k_input, self.hook_v_input)
            )
            attn = self.attn(q_in, query_positions, key_input=k_in, value_input=v_in, key_mask=attention_mask)
        else:
            attn_in = self.hook_attn_in(self._per_head(resid_pre)) if self.cfg.use_attn_in else resid_pre
            attn = self.attn(self.ln1(attn_in), query_positions, key_mask=attention_mask)
        attn_out = self.hook_attn_out(self.topk_attn_out(attn))
        if query_positions is not None:
            resid_pre = at_positions(resid_pre, query_positions)
        return self.hook_resid_mid(self.topk_resid_mid(self._residual(resid_pre + attn_out)))

    def mlp_half(self, resid_mid: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        """resid_mid -> resid_post."""
        mlp_in = self.hook_mlp_in(resid_mid.clone()) if self.cfg.use_hook_mlp_in else resid_mid
        mlp_out = self.hook_mlp_out(self.topk_mlp_out(self.mlp(self.ln2(mlp_in))))
        return self.hook_resid_post(self.topk_resid_post(self._residual(resid_mid + mlp_out)))

    def forward(self, resid_pre: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        return self.mlp_half(self.attention_half(resid_pre))
