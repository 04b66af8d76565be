"""Training checkpoints: written atomically, read without unpickling.

Layout of ``<out_dir>/checkpoints/step_00001234/``::

    model.safetensors       model.state_dict()
    optimizer.safetensors   Adam state per parameter name ("<name>::exp_avg", "::exp_avg_sq", "::step")
                            + RNG states ("rng::torch_cpu", "rng::torch_cuda")
    state.json              step, tokens seen, config fingerprint, Python / NumPy RNG states, data
                            description, world size, last metrics
    config.yaml             the full TrainingConfig
    tokenizer.json          the tokenizer (if any), so a checkpoint exports on its own

Each checkpoint is written into a temporary directory beside its final name and moved into place with
``os.replace``; a crash mid-write leaves no partial checkpoint under a ``step_*`` name.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sparse_lens.io import atomic_directory
from sparse_lens.model.run_checkpoints import (  # noqa: F401 (re-exported)
    MODEL_FILE,
    STATE_FILE,
    TOKENIZER_FILE,
    checkpoint_path,
    checkpoints_root,
    latest_checkpoint,
    list_checkpoints,
    read_state,
    resolve_checkpoint,
)

OPTIMIZER_FILE = "optimizer.safetensors"
CONFIG_FILE = "config.yaml"
# The layout's names and the reading rule (run directory -> latest checkpoint -> model) belong to the
# model package, which loads runs in `from_pretrained`; they are re-exported here for training's use.
__all__ = [
    "MODEL_FILE", "STATE_FILE", "TOKENIZER_FILE", "OPTIMIZER_FILE", "CONFIG_FILE", "checkpoints_root",
    "checkpoint_path", "list_checkpoints", "latest_checkpoint", "resolve_checkpoint", "read_state",
    "save_checkpoint", "read_tensors", "prune_checkpoints", "rng_state", "set_rng_state", "optimizer_tensors",
    "load_optimizer_tensors",
]


# ---------------------------------------------------------------------- RNG state
def rng_state() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    json_part = {
        "python": [version, list(internal), gauss],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    tensors = {"rng::torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng::torch_cuda"] = torch.cuda.get_rng_state()
    return json_part, tensors


def set_rng_state(json_part: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    version, internal, gauss = json_part["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = json_part["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["rng::torch_cpu"])
    if "rng::torch_cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng::torch_cuda"])


# ---------------------------------------------------------------------- optimizer state
def optimizer_tensors(optimizer: torch.optim.Optimizer, names: dict[int, str]) -> dict[str, torch.Tensor]:
    """Adam's per-parameter state keyed by parameter name (``names`` maps id(param) -> name)."""
    out = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p)
            if not state:
                continue
            name = names[id(p)]
            for key, value in state.items():
                tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
                out[f"{name}::{key}"] = tensor.detach().cpu().contiguous()
    return out


def load_optimizer_tensors(optimizer: torch.optim.Optimizer, names: dict[int, str], tensors: dict[str, torch.Tensor], source: str) -> None:
    sd = optimizer.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    index = 0
    expected_names = set()
    for group in optimizer.param_groups:
        for p in group["params"]:
            name = names[id(p)]
            expected_names.add(name)
            entry = {key.split("::", 1)[1]: t for key, t in tensors.items() if key.split("::", 1)[0] == name}
            if entry:
                for key, t in entry.items():
                    if key != "step" and t.shape != p.shape:
                        raise ValueError(f"{source}: optimizer state {name}::{key} has shape {tuple(t.shape)}, parameter has {tuple(p.shape)}")
                state[index] = {k: (v.to(p.device) if k != "step" else v) for k, v in entry.items()}
            index += 1
    stored_names = {key.split("::", 1)[0] for key in tensors if not key.startswith("rng::")}
    unexpected = sorted(stored_names - expected_names)
    if unexpected:
        raise ValueError(f"{source}: optimizer state for unknown parameters {unexpected}")
    sd["state"] = state
    optimizer.load_state_dict(sd)


# ---------------------------------------------------------------------- save / load
def save_checkpoint(
    directory: str | Path,
    *,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, torch.Tensor],
    state: dict[str, Any],
    config_yaml: str,
    tokenizer: Any = None,
    extra_files: Optional[dict[str, Callable[[Path], Any]]] = None,
) -> Path:
    """Write one checkpoint directory atomically (temp dir + os.replace), with the user's umask.
    ``extra_files`` ({name: write(path)}) adds files of a subclassed trainer (e.g. bridges)."""
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model_state.items()}, str(tmp / MODEL_FILE),
                  metadata={"format": "sparse_lens.training"})
        save_file(optimizer_state, str(tmp / OPTIMIZER_FILE), metadata={"format": "sparse_lens.training"})
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
        (tmp / CONFIG_FILE).write_text(config_yaml)
        if tokenizer is not None:
            backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
            backend.save(str(tmp / TOKENIZER_FILE))
        for name, write in (extra_files or {}).items():
            write(tmp / name)
    return directory


def read_tensors(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    directory = Path(directory)
    out = []
    for name in (MODEL_FILE, OPTIMIZER_FILE):
        path = directory / name
        if not path.is_file():
            raise FileNotFoundError(f"resume: {directory} has no {name}")
        try:
            out.append(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as err:
            raise ValueError(f"resume: cannot read {path} ({err})") from err
    return out[0], out[1]


def prune_checkpoints(out_dir: str | Path, keep: int, protect: Optional[Path] = None) -> None:
    """Delete all but the ``keep`` most recent checkpoints (0 = keep all)."""
    if keep <= 0:
        return
    found = list_checkpoints(out_dir)
    for path in found[:-keep]:
        if protect is not None and path.resolve() == Path(protect).resolve():
            continue
        shutil.rmtree(path, ignore_errors=True)
