"""sparse_lens: TransformerLens for the weight-sparse transformers of Gao et al. (2025).

Sub-packages, one per capability: ``model`` (the hooked weight-sparse transformer), ``data`` (corpus
and tokenizer), ``training`` (weight-sparse pretraining), ``tasks`` (the paper's 20 binary tasks),
``pruning`` (circuits), ``bridges`` and ``visualization``.
"""

import lazy_loader

# Attributes load on first use (``sparse-lens --help`` imports no torch).
__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "model": ["HookedSparseTransformer", "SparseTransformerConfig", "list_pretrained"],
    },
)

__version__ = "0.1.0"
__all__ = ["HookedSparseTransformer", "SparseTransformerConfig", "list_pretrained", "__version__"]
