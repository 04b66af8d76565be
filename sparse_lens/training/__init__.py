"""Weight-sparse pretraining (paper Sec. 2 and 4): top-k weight projection with annealed L0, the
authors' optimizer (Adam eps 0.1, manual weight decay, gradient RMS normalization), a resumable,
distributed trainer and the ``sparse-lens train`` command. See docs/training.md."""

import lazy_loader

# Attributes load on first use (``sparse-lens --help`` imports no torch).
__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "config": ["DataConfig", "OptimizerConfig", "SparsityConfig", "TrainingConfig"],
        "data": ["TokenData", "batch_sampler", "load_token_data"],
        "optimizer": ["apply_weight_decay_", "build_optimizer", "normalize_gradients_"],
        "schedule": ["base_lr", "l0_fraction", "lr_at", "sharkfin_factor"],
        "trainer": ["TrainResult", "Trainer", "TrainingDiverged", "export_checkpoint", "load_checkpoint_model", "train"],
        "weight_sparsity": ["WeightSparsifier", "project_topk_", "sparse_tensor_specs"],
    },
)

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
