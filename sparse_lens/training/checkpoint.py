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
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
CONFIG_FILE = "config.yaml"
TOKENIZER_FILE = "tokenizer.json"
_STEP_RE = re.compile(r"^step_(\d+)$")


def checkpoints_root(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def checkpoint_path(out_dir: str | Path, step: int) -> Path:
    return checkpoints_root(out_dir) / f"step_{step:08d}"


def list_checkpoints(out_dir: str | Path) -> list[Path]:
    """Complete checkpoints under ``out_dir``, oldest first."""
    root = checkpoints_root(out_dir)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_RE.match(p.name)
        if m and p.is_dir() and (p / STATE_FILE).is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def latest_checkpoint(out_dir: str | Path) -> Optional[Path]:
    found = list_checkpoints(out_dir)
    return found[-1] if found else None


def resolve_checkpoint(path: str | Path, argument: str = "checkpoint") -> Path:
    """A run directory's latest checkpoint, or `path` itself (a checkpoint directory)."""
    path = Path(path)
    if checkpoints_root(path).is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise ValueError(f"{argument}: no checkpoint under {checkpoints_root(path)}")
        return latest
    return path


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
) -> Path:
    """Write one checkpoint directory atomically (temp dir + os.replace)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in model_state.items()}, str(tmp / MODEL_FILE),
                  metadata={"format": "sparse_lens.training"})
        save_file(optimizer_state, str(tmp / OPTIMIZER_FILE), metadata={"format": "sparse_lens.training"})
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
        (tmp / CONFIG_FILE).write_text(config_yaml)
        if tokenizer is not None:
            backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
            backend.save(str(tmp / TOKENIZER_FILE))
        for f in tmp.iterdir():  # flush file contents before the rename makes them visible
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if directory.exists():
            old = directory.parent / f".{directory.name}.old-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def read_state(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    path = directory / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"resume: {directory} is not a training checkpoint (no {STATE_FILE})")
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"resume: {path} is not valid JSON ({err})") from err
    if not isinstance(state, dict) or "step" not in state or "config" not in state:
        raise ValueError(f"resume: {path} is missing 'step' / 'config'")
    return state


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
