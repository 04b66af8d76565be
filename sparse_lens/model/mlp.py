"""The MLP: its neurons (post-activation, after AbsTopK) are nodes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from sparse_lens.model.abs_topk import AbsTopK
from sparse_lens.model.attention import _bias
from sparse_lens.model.config import SparseTransformerConfig
from sparse_lens.model.execution import frozen_matmul
from sparse_lens.model.hook_point import HookPoint


class MLP(nn.Module):
    uses_frozen_matmul = True  # its weight products follow model.set_execution (execution.py)

    def __init__(self, cfg: SparseTransformerConfig):
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp, dtype=cfg.dtype))
        self.W_out = nn.Parameter(torch.empty(cfg.d_mlp, cfg.d_model, dtype=cfg.dtype))
        _bias((cfg.d_mlp,), cfg, self, "b_in")
        _bias((cfg.d_model,), cfg, self, "b_out")
        self.act = F.gelu if cfg.act_fn == "gelu" else F.relu  # exact erf GELU
        self.topk = AbsTopK(cfg.sparsity_at("mlp_neuron"))
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]
        self.hook_post = HookPoint()  # [batch, pos, d_mlp]: the neuron nodes

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        pre = self.hook_pre(frozen_matmul(self, x, self.W_in) + self.b_in)
        post = self.hook_post(self.topk(self.act(pre)))
        return frozen_matmul(self, post, self.W_out) + self.b_out

    def frozen_matrices(self) -> dict:
        """Each weight with the function that makes it the matrix its product uses."""
        return {"W_in": (self.W_in, lambda w: w), "W_out": (self.W_out, lambda w: w)}
