"""The hooked weight-sparse transformer (paper Sec. 1): config, components, checkpoints."""

from sparse_lens.model.abs_topk import AbsTopK, abs_topk
from sparse_lens.model.checkpoint import list_pretrained
from sparse_lens.model.config import NODE_LOCATIONS, SPARSITY_LOCATIONS, SparseTransformerConfig
from sparse_lens.model.hook_point import HookPoint
from sparse_lens.model.hooked_sparse_transformer import HookedSparseTransformer

__all__ = [
    "AbsTopK",
    "abs_topk",
    "HookPoint",
    "HookedSparseTransformer",
    "NODE_LOCATIONS",
    "SPARSITY_LOCATIONS",
    "SparseTransformerConfig",
    "list_pretrained",
]
