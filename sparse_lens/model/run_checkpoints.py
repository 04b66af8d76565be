"""Reading the model out of a `sparse-lens train` run: the layout of its checkpoints and the rule that
resolves a run directory or a checkpoint directory to its weights, model config and tokenizer.

The model package owns this rule (``from_pretrained`` loads runs, and the model package stands alone
below training); ``sparse_lens.training.checkpoint`` writes this layout and reads it through here::

    <run>/checkpoints/step_00001234/
        model.safetensors    model.state_dict() (dense tensors)
        state.json           step, tokens, ..., "config": the TrainingConfig, whose "model" section
                             is the model's SparseTransformerConfig
        tokenizer.json       the tokenizer, if any
        (optimizer.safetensors, config.yaml: training's own)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from sparse_lens.io import read_json_object

if TYPE_CHECKING:
    from sparse_lens.model.hooked_sparse_transformer import HookedSparseTransformer

CHECKPOINTS_DIR = "checkpoints"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.json"
TOKENIZER_FILE = "tokenizer.json"
_STEP_RE = re.compile(r"^step_(\d+)$")


def checkpoints_root(out_dir: str | Path) -> Path:
    return Path(out_dir) / CHECKPOINTS_DIR


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


def is_training_output(directory: str | Path) -> bool:
    """A run directory (``checkpoints/`` inside) or one of its checkpoints (``state.json``), as
    opposed to a ``save_pretrained`` directory (``config.json``)."""
    directory = Path(directory)
    if (directory / "config.json").is_file():
        return False
    return checkpoints_root(directory).is_dir() or (directory / STATE_FILE).is_file()


def resolve_checkpoint(path: str | Path, argument: str = "checkpoint") -> Path:
    """A run directory's latest checkpoint, or `path` itself (a checkpoint directory)."""
    path = Path(path)
    if checkpoints_root(path).is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise ValueError(f"{argument}: no checkpoint under {checkpoints_root(path)}")
        return latest
    return path


def read_state(directory: str | Path, argument: str = "resume") -> dict[str, Any]:
    """A checkpoint's ``state.json`` (must hold at least ``step`` and ``config``)."""
    directory = Path(directory)
    path = directory / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{argument}: {directory} is not a training checkpoint (no {STATE_FILE})")
    try:
        state = read_json_object(path, "a training checkpoint's state")
    except ValueError as err:
        raise ValueError(f"{argument}: {err}") from err
    if "step" not in state or "config" not in state:
        raise ValueError(f"{argument}: {path} is missing 'step' / 'config'")
    return state


def load_checkpoint_model(
    cls: type, path: str | Path, argument: str = "checkpoint", **overrides: Any
) -> tuple["HookedSparseTransformer", dict[str, Any]]:
    """The model of a training checkpoint (or of a run directory's latest checkpoint), with its
    tokenizer, and the checkpoint's state. ``overrides`` replace fields of the model config."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from sparse_lens.model.checkpoint import constructing_for_load, load_state_dict_strict
    from sparse_lens.model.config import SparseTransformerConfig

    directory = resolve_checkpoint(path, argument)
    state = read_state(directory, argument)
    config = state["config"]
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise ValueError(f"{argument}: {directory / STATE_FILE} has no 'config.model' section")
    source = f"{directory / STATE_FILE} config.model"
    model_cfg = SparseTransformerConfig.from_saved_dict({**config["model"], **overrides}, source=source)
    weights = directory / MODEL_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{argument}: {directory} has no {MODEL_FILE}")
    try:
        stored = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{weights}: cannot read safetensors file ({err})") from err
    with constructing_for_load():
        model = cls(model_cfg)
    load_state_dict_strict(model, stored, source=str(directory))
    tokenizer = directory / TOKENIZER_FILE
    if tokenizer.is_file():
        model.set_tokenizer(tokenizer)
    return model.eval(), state
