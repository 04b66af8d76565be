"""Bridges (paper Sec. 3.3, App. A.3–A.4): tie a frozen dense model to a weight-sparse one with a linear
encoder (+ AbsTopK) and decoder at every sublayer boundary, train them together, measure the hybrid
forward passes, and carry edits of sparse nodes into the dense model. See docs/bridges.md.

    from sparse_lens.bridges import BridgedPair, evaluate_bridges, intervene, flip_study, train_bridges
    pair = BridgedPair.load("runs/python-bridged-tiny")            # sparse model + bridges (+ its dense model)
    print(evaluate_bridges(pair, tokens).format_table())
"""

import lazy_loader

# Attributes load on first use (``sparse-lens --help`` imports no torch).
__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "bridge": ["Bridges"],
        "config": ["BridgeConfig", "BridgeTrainingConfig"],
        "evaluate": ["BridgeEvaluation", "evaluate_bridges"],
        "intervene": ["FlipStudy", "InterventionResult", "Node", "flip_study", "intervene"],
        "losses": ["BridgeLosses", "LossWeights", "kl_from_logits", "nmse"],
        "pair": ["BridgedPair"],
        "pretrained": ["list_bridged_pairs", "load_bridged_pair"],
        "residual_models": ["ResidualModel", "SparseLensResidualModel", "TransformerLensResidualModel", "as_residual_model"],
        "sites": ["site_index", "site_names"],
        "trainer": ["BridgeTrainer", "train_bridges"],
    },
)

__all__ = [
    "BridgeConfig", "BridgeEvaluation", "BridgeLosses", "BridgeTrainer", "BridgeTrainingConfig", "BridgedPair",
    "Bridges", "FlipStudy", "InterventionResult", "LossWeights", "Node", "ResidualModel", "SparseLensResidualModel",
    "TransformerLensResidualModel", "as_residual_model", "evaluate_bridges", "flip_study", "intervene",
    "kl_from_logits", "list_bridged_pairs", "load_bridged_pair", "nmse", "site_index", "site_names", "train_bridges",
]
