"""The pieces of TransformerLens the model uses, imported from where each supported version keeps them.

Supported: TransformerLens 2.16.1 and later 2.x (what SAELens 6 and circuit-tracer sit on), 3.x and
4.x. Everything else in sparse_lens imports these names from here, so a user sees the same behaviour
whichever version is installed; ``make test`` runs the model, tasks and pruning tests under the oldest
supported version too (``make test-compat``).

| piece | 4.x | 3.x | 2.x |
|---|---|---|---|
| ``TransformerLensConfig`` (our config's base) | ``transformer_lens.config`` | same | not there: the same dataclass below |
| ``HookedRootModule`` | ``transformer_lens`` | same | ``transformer_lens.hook_points`` |
| ``HookPoint`` | ``transformer_lens.hook_points`` | same | same |
| ``ActivationCache``, ``FactoredMatrix`` | ``transformer_lens`` | same | same |
| ``Slice``, ``get_act_name``, ``get_offset_position_ids``, ``get_attention_mask`` | ``transformer_lens.utilities`` | same | ``transformer_lens.utils`` |
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Optional

import torch
from transformer_lens import ActivationCache, FactoredMatrix
from transformer_lens.hook_points import HookPoint

try:  # 3.x, 4.x (4.x removed it from hook_points)
    from transformer_lens import HookedRootModule
except ImportError:  # 2.x
    from transformer_lens.hook_points import HookedRootModule  # type: ignore[no-redef]

try:  # 3.x, 4.x
    from transformer_lens.utilities import Slice, get_act_name, get_attention_mask, get_offset_position_ids
except ImportError:  # 2.x
    from transformer_lens.utils import (  # type: ignore[no-redef]
        Slice, get_act_name, get_attention_mask, get_offset_position_ids,
    )

try:  # 3.x, 4.x
    from transformer_lens.config import TransformerLensConfig
except ImportError:  # 2.x has only HookedTransformerConfig, whose __post_init__ assumes a dense GPT

    @dataclass
    class TransformerLensConfig:  # type: ignore[no-redef]
        """TransformerLens 3.x/4.x's minimal base config (the same fields and defaults), for 2.x."""

        d_model: int
        d_head: int
        n_layers: int
        n_ctx: int
        n_heads: int = -1
        d_mlp: Optional[int] = None
        d_vocab: int = -1
        device: Optional[str] = None
        use_attn_result: bool = False
        use_split_qkv_input: bool = False
        default_prepend_bos: bool = True
        positional_embedding_type: str = "standard"
        n_key_value_heads: Optional[int] = None
        attn_only: bool = False
        gated_mlp: bool = False
        uses_rms_norm: bool = False
        eps: float = 1e-5
        layer_norm_folding: bool = False
        act_fn: str = "relu"
        normalization_type: Optional[str] = "LN"
        num_experts: Optional[int] = None
        experts_per_token: Optional[int] = None
        final_rms: bool = False
        dtype: torch.dtype = torch.float32

        def __post_init__(self) -> None:
            if self.n_heads == -1:
                self.n_heads = self.d_model // self.d_head
            if self.device is None:
                self.device = "cuda" if torch.cuda.is_available() else "cpu"
            if self.d_mlp is None:
                self.d_mlp = self.d_model * 4


_MASK_TAKES_SIDE = "padding_side" in inspect.signature(get_attention_mask).parameters


def left_padding_mask(tokenizer, tokens: torch.Tensor, prepend_bos: bool) -> torch.Tensor:
    """TransformerLens's attention mask for a left-padded batch (2.x reads the side from the tokenizer)."""
    if _MASK_TAKES_SIDE:
        return get_attention_mask(tokenizer, tokens, prepend_bos, padding_side="left")
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        return get_attention_mask(tokenizer, tokens, prepend_bos)
    finally:
        tokenizer.padding_side = side


__all__ = [
    "ActivationCache", "FactoredMatrix", "HookPoint", "HookedRootModule", "Slice", "TransformerLensConfig",
    "get_act_name", "get_offset_position_ids", "left_padding_mask",
]
