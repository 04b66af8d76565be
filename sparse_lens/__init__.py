"""sparse_lens: TransformerLens for the weight-sparse transformers of Gao et al. (2025).

Sub-packages, one per capability: ``model`` (the hooked weight-sparse transformer), ``data`` (corpus
and tokenizer), ``training`` (weight-sparse pretraining), ``tasks`` (the paper's 20 binary tasks),
``pruning`` (circuits), ``bridges`` and ``visualization``.
"""

from sparse_lens.model import HookedSparseTransformer, SparseTransformerConfig, list_pretrained

__version__ = "0.1.0"
__all__ = ["HookedSparseTransformer", "SparseTransformerConfig", "list_pretrained", "__version__"]
