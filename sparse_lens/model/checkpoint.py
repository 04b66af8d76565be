"""Saving and loading models: safetensors + config JSON (+ tokenizer.json), each file written atomically.

Weight-sparse matrices are stored compactly: a matrix whose nonzero fraction is at most
``COMPACT_MAX_DENSITY`` is stored as its nonzero values plus their flat int32 indices, and rebuilt
exactly on load. Nothing is ever unpickled.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sparse_lens.io import atomic_write_files, check_output_dir
from sparse_lens.model.config import SparseTransformerConfig
from sparse_lens.model.run_checkpoints import is_training_output, load_checkpoint_model

if TYPE_CHECKING:
    from sparse_lens.model.hooked_sparse_transformer import HookedSparseTransformer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
COMPACT_MAX_DENSITY = 0.25
_VALUES, _INDICES, _SHAPE = ".__nz_values", ".__nz_indices", ".__nz_shape"

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"


_WEIGHTS_WILL_BE_LOADED: ContextVar[bool] = ContextVar("sparse_lens_weights_will_be_loaded", default=False)


@contextmanager
def constructing_for_load() -> Iterator[None]:
    """Models constructed inside skip their random initialization: every weight is about to be
    overwritten by a strict load (at the authors' scale, 415M parameters, the initialization is
    most of the construction time). Use only before :func:`load_state_dict_strict`."""
    token = _WEIGHTS_WILL_BE_LOADED.set(True)
    try:
        yield
    finally:
        _WEIGHTS_WILL_BE_LOADED.reset(token)


def weights_will_be_loaded() -> bool:
    """True inside :func:`constructing_for_load`."""
    return _WEIGHTS_WILL_BE_LOADED.get()


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


def is_checkpoint_dir(directory: Path) -> bool:
    """A directory written by ``save_pretrained`` (it has a ``config.json``)."""
    return (Path(directory) / CONFIG_FILE).is_file()


def save_pretrained(model: "HookedSparseTransformer", directory: str | Path, overwrite: bool = False) -> Path:
    """Write config.json, model.safetensors and tokenizer.json into ``directory``, each file atomically.

    A new or empty directory, or one that already holds a saved model, is written into; its other
    files are left alone (a stale tokenizer.json is removed when the model has none). A non-empty
    directory holding something else is refused unless ``overwrite=True`` (its files are still kept);
    a path that is a file is refused.
    """
    directory = Path(directory)
    check_output_dir(directory, "save_pretrained", is_own=is_checkpoint_dir, what="a saved model (no config.json)",
                     overwrite=overwrite)
    state = compact_state_dict(model.state_dict())
    writers = {
        CONFIG_FILE: lambda tmp: tmp.write_text(model.cfg.to_json_text()),
        WEIGHTS_FILE: lambda tmp: save_file(state, str(tmp), metadata={"format": "sparse_lens"}),
    }
    if model.tokenizer is not None:
        writers[TOKENIZER_FILE] = lambda tmp: model.backend_tokenizer.save(str(tmp))
    atomic_write_files(directory, writers, remove=[TOKENIZER_FILE], argument="save_pretrained")
    return directory


def resolve_pretrained(name_or_dir: str | Path) -> Path:
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    candidate = PRETRAINED_DIR / str(name_or_dir)
    if candidate.is_dir() and str(name_or_dir) in list_pretrained():
        return candidate
    if path.exists():
        raise NotADirectoryError(f"model: {str(name_or_dir)!r} is a file; expected a shipped model name or a model directory")
    raise FileNotFoundError(
        f"model: {str(name_or_dir)!r} is neither a directory nor a shipped model; shipped models: {list_pretrained()}"
    )


def load_pretrained(cls: type, name_or_dir: str | Path, **overrides: Any) -> "HookedSparseTransformer":
    """A shipped model, a ``save_pretrained`` directory, or a training run / checkpoint; ``overrides``
    replace config fields (``device="cuda"`` loads the weights there)."""
    directory = resolve_pretrained(name_or_dir)
    if is_training_output(directory):  # a run loads its latest checkpoint
        model, state = load_checkpoint_model(cls, directory, argument="model", **overrides)
        model._training_state = state  # type: ignore[attr-defined]
    else:
        config_path = directory / CONFIG_FILE
        weights_path = directory / WEIGHTS_FILE
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(f"{directory}: missing {path.name} (not a sparse_lens checkpoint?)")
        cfg = SparseTransformerConfig.from_json(config_path, **overrides)
        try:
            stored = load_file(str(weights_path))
        except (SafetensorError, OSError, ValueError) as err:
            raise ValueError(f"{weights_path}: cannot read safetensors file ({err})") from err
        state = expand_state_dict(stored)
        with constructing_for_load():
            model = cls(cfg)
        load_state_dict_strict(model, state, source=str(weights_path))
        tokenizer_path = directory / TOKENIZER_FILE
        if tokenizer_path.is_file():
            model.set_tokenizer(tokenizer_path)
    model.cfg.model_name = str(name_or_dir)
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
