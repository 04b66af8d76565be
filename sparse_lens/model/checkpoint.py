"""Saving and loading models: safetensors + config JSON (+ tokenizer.json), written atomically.

Weight-sparse matrices are stored compactly: a matrix whose nonzero fraction is at most
``COMPACT_MAX_DENSITY`` is stored as its nonzero values plus their flat int32 indices, and rebuilt
exactly on load. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sparse_lens.model.config import SparseTransformerConfig

if TYPE_CHECKING:
    from sparse_lens.model.hooked_sparse_transformer import HookedSparseTransformer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
COMPACT_MAX_DENSITY = 0.25
_VALUES, _INDICES, _SHAPE = ".__nz_values", ".__nz_indices", ".__nz_shape"

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"


def list_pretrained() -> list[str]:
    """Names of the models shipped with the package."""
    if not PRETRAINED_DIR.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / CONFIG_FILE).is_file())


def compact_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Store sparse matrices as (values, flat indices, shape); everything else as is."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        tensor = tensor.detach().cpu().contiguous()
        if tensor.ndim >= 2 and tensor.is_floating_point() and tensor.numel() < 2**31:
            flat = tensor.reshape(-1)
            nz = flat.nonzero().squeeze(-1)
            if nz.numel() <= COMPACT_MAX_DENSITY * flat.numel():
                out[name + _VALUES] = flat[nz].clone()
                out[name + _INDICES] = nz.to(torch.int32)
                out[name + _SHAPE] = torch.tensor(tensor.shape, dtype=torch.int64)
                continue
        out[name] = tensor
    return out


def expand_state_dict(stored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`compact_state_dict`."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in stored.items():
        if key.endswith(_VALUES):
            name = key[: -len(_VALUES)]
            try:
                indices, shape = stored[name + _INDICES].long(), stored[name + _SHAPE].tolist()
            except KeyError as err:
                raise ValueError(f"weights: compact tensor {name!r} is missing its {err.args[0]!r} entry") from err
            dense = torch.zeros(int(torch.tensor(shape).prod()), dtype=tensor.dtype)
            if indices.numel() != tensor.numel() or (indices.numel() and (indices.min() < 0 or indices.max() >= dense.numel())):
                raise ValueError(f"weights: compact tensor {name!r} has inconsistent indices")
            dense[indices] = tensor
            out[name] = dense.reshape(shape)
        elif not (key.endswith(_INDICES) or key.endswith(_SHAPE)):
            out[key] = tensor
    return out


def atomic_directory(directory: Path):
    """Context-free helper: returns a fresh temp dir beside ``directory`` and a commit function."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))

    def commit() -> None:
        backup = None
        if directory.exists():
            backup = directory.parent / f".{directory.name}.old-{os.getpid()}"
            if backup.exists():
                shutil.rmtree(backup)
            os.replace(directory, backup)
        os.replace(tmp, directory)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)

    return tmp, commit


def save_pretrained(model: "HookedSparseTransformer", directory: str | Path) -> Path:
    directory = Path(directory)
    tmp, commit = atomic_directory(directory)
    try:
        model.cfg.to_json(tmp / CONFIG_FILE)
        state = {k: v for k, v in model.state_dict().items()}
        save_file(compact_state_dict(state), str(tmp / WEIGHTS_FILE), metadata={"format": "sparse_lens"})
        if model.tokenizer is not None:
            model.tokenizer.backend_tokenizer.save(str(tmp / TOKENIZER_FILE))
        commit()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def resolve_pretrained(name_or_dir: str | Path) -> Path:
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    candidate = PRETRAINED_DIR / str(name_or_dir)
    if candidate.is_dir():
        return candidate
    raise FileNotFoundError(
        f"{str(name_or_dir)!r} is neither a directory nor a shipped model; shipped models: {list_pretrained()}"
    )


def is_training_output(directory: Path) -> bool:
    """A `sparse-lens train` run directory (``checkpoints/`` inside) or one of its checkpoints
    (``state.json``), as opposed to a ``save_pretrained`` directory (``config.json``). The names are
    those of sparse_lens.training.checkpoint's layout, not imported: that would load the trainer on
    every model load."""
    if (directory / CONFIG_FILE).is_file():
        return False
    return (directory / "checkpoints").is_dir() or (directory / "state.json").is_file()


def load_pretrained(cls: type, name_or_dir: str | Path, **overrides: Any) -> "HookedSparseTransformer":
    directory = resolve_pretrained(name_or_dir)
    if is_training_output(directory):  # a run loads its latest checkpoint
        from sparse_lens.training.trainer import load_checkpoint_model

        return load_checkpoint_model(directory, model_class=cls, **overrides)
    config_path = directory / CONFIG_FILE
    weights_path = directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{directory}: missing {path.name} (not a sparse_lens checkpoint?)")
    cfg_dict = json.loads(config_path.read_text()) if config_path.stat().st_size else None
    if not isinstance(cfg_dict, dict):
        raise ValueError(f"{config_path}: expected a JSON object of config fields")
    cfg_dict.update(overrides)
    cfg = SparseTransformerConfig.from_dict(cfg_dict)
    try:
        stored = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{weights_path}: cannot read safetensors file ({err})") from err
    state = expand_state_dict(stored)
    model = cls(cfg)
    load_state_dict_strict(model, state, source=str(weights_path))
    tokenizer_path = directory / TOKENIZER_FILE
    if tokenizer_path.is_file():
        model.set_tokenizer(tokenizer_path)
    return model.eval()


def load_state_dict_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` into ``model`` only if every key and shape matches (nothing half-loaded)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{source}: state dict mismatch; missing {missing}, unexpected {unexpected}")
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise ValueError(
                f"{source}: {key} has shape {tuple(tensor.shape)}, the config expects {tuple(expected[key].shape)}"
            )
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{source}: {key} contains NaN or inf")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
