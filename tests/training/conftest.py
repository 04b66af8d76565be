from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from sparse_lens.training import TrainingConfig
from sparse_lens.training.checkpoint import MODEL_FILE, latest_checkpoint

TINY: dict[str, Any] = dict(
    model=dict(n_layers=2, d_model=32, n_ctx=16, d_vocab=64, n_heads=2, d_head=8, d_mlp=64, weight_sparsity=0.125),
    data=dict(source="synthetic", synthetic_rows=128),
    optimizer=dict(lr=0.01),
    sparsity=dict(anneal_start=0.1, anneal_end=0.6),
    train_steps=12,
    batch_size=8,
    eval_every=6,
    eval_batches=2,
    checkpoint_every=4,
    keep_checkpoints=0,
    log_every=2,
    tensorboard=False,
    progress_bar=False,
)


def tiny_dict(**overrides: Any) -> dict[str, Any]:
    """The tiny synthetic-data config as a dict; ``section__field=value`` overrides nested fields."""
    data = copy.deepcopy(TINY)
    for key, value in overrides.items():
        if "__" in key:
            section, field = key.split("__", 1)
            data.setdefault(section, {})[field] = value
        else:
            data[key] = value
    return data


def tiny_config(tmp_path: Path, **overrides: Any) -> TrainingConfig:
    overrides.setdefault("out_dir", str(tmp_path / "run"))
    return TrainingConfig.from_dict(tiny_dict(**overrides))


def final_weights(out_dir: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(latest_checkpoint(out_dir) / MODEL_FILE))


@pytest.fixture
def tiny(tmp_path: Path):
    return lambda **kw: tiny_config(tmp_path, **kw)
