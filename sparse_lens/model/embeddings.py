"""Token and position embeddings, the unembedding, and the dense bigram table (paper Sec. 1.4-1.5)."""

from __future__ import annotations

from typing import Optional

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from sparse_lens.model.config import SparseTransformerConfig
from sparse_lens.model.execution import frozen_matmul


class Embed(nn.Module):
    """Token embedding W_E [d_vocab, d_model]."""

    def __init__(self, cfg: SparseTransformerConfig):
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model, dtype=cfg.dtype))

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        return self.W_E[tokens]


class PosEmbed(nn.Module):
    """Learned absolute position embedding W_pos [n_ctx, d_model] (off in most of the paper)."""

    def __init__(self, cfg: SparseTransformerConfig):
        super().__init__()
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model, dtype=cfg.dtype))

    def forward(
        self, tokens: Int[Tensor, "batch pos"], positions: Optional[Int[Tensor, "batch pos"]] = None
    ) -> Float[Tensor, "batch pos d_model"]:
        """Row t of W_pos at position t, or row ``positions[b, t]`` (left padding shifts them)."""
        batch, pos = tokens.shape
        if positions is not None:
            return self.W_pos[positions]
        return self.W_pos[:pos].unsqueeze(0).expand(batch, pos, -1)


class Unembed(nn.Module):
    """W_U [d_model, d_vocab] and the final logits bias b_U [d_vocab].

    With tied embeddings, W_U is W_Eᵀ (a view of the embedding, not a separate parameter).
    """

    uses_frozen_matmul = True  # its weight product follows model.set_execution (execution.py)

    def __init__(self, cfg: SparseTransformerConfig, embed: Embed):
        super().__init__()
        self.tied = cfg.tied_embeddings
        self._embed = [embed]  # a list, so the tied embedding is not registered twice
        if not self.tied:
            self.W_U = nn.Parameter(torch.empty(cfg.d_model, cfg.d_vocab, dtype=cfg.dtype))
        if cfg.final_logits_bias:
            self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab, dtype=cfg.dtype))
        else:
            self.register_buffer("b_U", torch.zeros(cfg.d_vocab, dtype=cfg.dtype), persistent=False)

    def __getattr__(self, name: str):
        if name == "W_U" and self.__dict__.get("tied", False):
            return self._embed[0].W_E.T
        return super().__getattr__(name)

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_vocab"]:
        weight, matrix = self.frozen_matrices()["W_U"]
        return frozen_matmul(self, x, weight, matrix) + self.b_U

    def frozen_matrices(self) -> dict:
        """W_U (tied: the embedding, transposed) with the function that makes it the matrix."""
        if self.tied:
            return {"W_U": (self._embed[0].W_E, lambda w: w.T)}
        return {"W_U": (self.W_U, lambda w: w)}


class BigramTable(nn.Module):
    """Dense [d_vocab, d_vocab] table: row ``tokens[b, t]`` is added to the logits at position t.

    It spares the sparse weights from memorizing bigram statistics; it is never weight-sparse.
    """

    def __init__(self, cfg: SparseTransformerConfig):
        super().__init__()
        self.W_bigram = nn.Parameter(torch.zeros(cfg.d_vocab, cfg.d_vocab, dtype=cfg.dtype))

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_vocab"]:
        return self.W_bigram[tokens]
