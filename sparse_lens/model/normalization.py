"""RMSNorm (paper Sec. 1.3; LayerNorm kept for the authors' ``rms_norm=false`` option).

Zeros keep a privileged meaning under RMSNorm. The hook layout follows TransformerLens:
``hook_scale`` is the [batch, pos, 1] divisor, ``hook_normalized`` the output. Unlike TL, the output
hook sits after the gain and after the read node's AbsTopK, because that product *is* the paper's
"residual read" node; attributions fold the gain into the reading directions instead.
"""

from __future__ import annotations

from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor, nn
from sparse_lens.model.tl_compat import HookPoint

from sparse_lens.model.abs_topk import AbsTopK
from sparse_lens.model.config import SparseTransformerConfig


class RMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) · w, then optional AbsTopK (the read node)."""

    def __init__(self, cfg: SparseTransformerConfig, sparsity: Optional[float] = None):
        super().__init__()
        self.cfg = cfg
        self.center = cfg.normalization_type == "LN"
        self.w = nn.Parameter(torch.ones(cfg.d_model, dtype=cfg.dtype))
        if cfg.ln_bias:
            self.b = nn.Parameter(torch.zeros(cfg.d_model, dtype=cfg.dtype))
        else:
            self.b = None
        self.topk = AbsTopK(sparsity)
        self.hook_scale = HookPoint()  # [batch, pos, 1]
        self.hook_normalized = HookPoint()  # [batch, pos, d_model]

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        if self.center:
            x = x - x.mean(-1, keepdim=True)
            scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.cfg.eps).sqrt())
        else:
            scale = self.hook_scale(torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.cfg.eps))
        out = x / scale * self.w
        if self.b is not None:
            out = out + self.b
        return self.hook_normalized(self.topk(out))
