"""Bridges (paper Sec. 3.3, App. A.3–A.4): tie a frozen dense model to a weight-sparse one with a linear
encoder (+ AbsTopK) and decoder at every sublayer boundary, train them together, measure the hybrid
forward passes, and carry edits of sparse nodes into the dense model. See docs/bridges.md.

    from sparse_lens.bridges import BridgedPair, evaluate_bridges, intervene, flip_study, train_bridges
    pair = BridgedPair.load("runs/python-bridged-tiny")            # sparse model + bridges (+ its dense model)
    print(evaluate_bridges(pair, tokens).format_table())
"""

from sparse_lens.bridges.bridge import Bridges
from sparse_lens.bridges.config import BridgeConfig, BridgeTrainingConfig
from sparse_lens.bridges.evaluate import BridgeEvaluation, evaluate_bridges
from sparse_lens.bridges.intervene import FlipStudy, InterventionResult, Node, flip_study, intervene
from sparse_lens.bridges.losses import BridgeLosses, LossWeights, kl_from_logits, nmse
from sparse_lens.bridges.pair import BridgedPair
from sparse_lens.bridges.residual_models import (
    ResidualModel,
    SparseLensResidualModel,
    TransformerLensResidualModel,
    as_residual_model,
)
from sparse_lens.bridges.sites import site_index, site_names
from sparse_lens.bridges.trainer import BridgeTrainer, train_bridges

__all__ = [
    "BridgeConfig", "BridgeEvaluation", "BridgeLosses", "BridgeTrainer", "BridgeTrainingConfig", "BridgedPair",
    "Bridges", "FlipStudy", "InterventionResult", "LossWeights", "Node", "ResidualModel", "SparseLensResidualModel",
    "TransformerLensResidualModel", "as_residual_model", "evaluate_bridges", "flip_study", "intervene",
    "kl_from_logits", "nmse", "site_index", "site_names", "train_bridges",
]
