"""Weight-sparse pretraining (paper Sec. 2 and 4): top-k weight projection with annealed L0, the
authors' optimizer (Adam eps 0.1, manual weight decay, gradient RMS normalization), a resumable,
distributed trainer and the ``sparse-lens train`` command. See docs/training.md."""

from sparse_lens.training.config import DataConfig, OptimizerConfig, SparsityConfig, TrainingConfig
from sparse_lens.training.data import TokenData, batch_sampler, load_token_data
from sparse_lens.training.optimizer import apply_weight_decay_, build_optimizer, normalize_gradients_
from sparse_lens.training.schedule import base_lr, l0_fraction, lr_at, sharkfin_factor
from sparse_lens.training.trainer import (
    Trainer,
    TrainingDiverged,
    TrainResult,
    export_checkpoint,
    load_checkpoint_model,
    train,
)
from sparse_lens.training.weight_sparsity import WeightSparsifier, project_topk_, sparse_tensor_specs

__all__ = [
    "DataConfig",
    "OptimizerConfig",
    "SparsityConfig",
    "TokenData",
    "TrainResult",
    "Trainer",
    "TrainingConfig",
    "TrainingDiverged",
    "WeightSparsifier",
    "apply_weight_decay_",
    "base_lr",
    "batch_sampler",
    "build_optimizer",
    "export_checkpoint",
    "l0_fraction",
    "load_checkpoint_model",
    "load_token_data",
    "lr_at",
    "normalize_gradients_",
    "project_topk_",
    "sharkfin_factor",
    "sparse_tensor_specs",
    "train",
]
