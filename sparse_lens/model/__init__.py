"""The hooked weight-sparse transformer (paper Sec. 1): config, components, checkpoints."""

import lazy_loader

# Attributes load on first use (``sparse-lens --help`` imports no torch).
__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "abs_topk": ["AbsTopK", "abs_topk"],
        "checkpoint": ["list_pretrained"],
        "config": ["NODE_LOCATIONS", "SPARSITY_LOCATIONS", "SparseTransformerConfig"],
        "hook_point": ["HookPoint"],
        "hooked_sparse_transformer": ["HookedSparseTransformer"],
    },
)

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
