"""A dense model at matched pretraining loss (paper Sec. 3.1): validation loss on fixed rows, and the
choice of the checkpoint whose loss is closest to a target model's.

The paper compares the circuits of weight-sparse and dense models *of the same pretraining loss*.
"Same loss" needs the same rows: :func:`validation_rows` takes **``n_rows`` rows evenly spaced over
the packed validation split** of a model's pretraining data (rows 0, s, 2s, ... with stride
s = rows // n_rows; the corpus split by file, the model's own tokenizer, packed to n_ctx; validation
is never oversampled, so the rows do not depend on ``data.oversample``). Evenly spaced, not the
first rows: the split is packed file after file, so its first rows come from a handful of files
(on python-sparse-tiny the first 256 rows give 2.567, the first 1,024 2.931). The rows are a pure
function of the data config, and both models of a pair are scored on the same tensor
(:func:`validation_loss`: mean next-token cross-entropy over every position of every row, as the
trainer's ``val_loss``, whose rows are the first ``eval_batches × batch_size`` of the split).

:func:`pick_matched` chooses, among candidate checkpoints, the one whose validation loss is closest
to the target's and refuses when none is within the tolerance. By default only the *final*
checkpoint of each run is a candidate (a run that finished its own learning-rate schedule):
an early checkpoint of a long run is taken at a high learning rate and is not a trained model
(docs/pretrained.md, "python-dense-matched"). ``sparse-lens match-loss`` runs it and exports the
choice with a model card (:mod:`sparse_lens.training.recipes.matched_dense`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import torch
from jaxtyping import Int
from torch import Tensor

from sparse_lens.training.config import DataConfig

DEFAULT_ROWS = 1024  # 131,072 tokens at n_ctx 128
DEFAULT_TOLERANCE = 0.02  # nats; the "within 0.02"


@dataclass
class ValidationRows:
    """Rows of a data config's packed validation split and how they were chosen."""

    tokens: Int[Tensor, "rows n_ctx"]
    description: dict[str, Any] = field(default_factory=dict)  # what the card records


def model_data_config(directory: str | Path) -> DataConfig:
    """The pretraining data config of a model directory (``training.json``, as exported and shipped),
    a training run or one of its checkpoints (``state.json``), read with the model's own tokenizer
    (the path recorded at training time may be gone) and without oversampling (validation rows do
    not depend on it)."""
    from sparse_lens.model.checkpoint import resolve_pretrained
    from sparse_lens.model.run_checkpoints import is_training_output, read_state, resolve_checkpoint

    directory = resolve_pretrained(directory)
    if is_training_output(directory):
        ckpt = resolve_checkpoint(directory, "model")
        config = read_state(ckpt, "model")["config"]
        tokenizer = ckpt / "tokenizer.json"
    else:
        path = directory / "training.json"
        if not path.is_file():
            raise FileNotFoundError(f"model: {directory} has no training.json (its pretraining data is unknown); "
                                    "give the data config of the rows explicitly")
        config = json.loads(path.read_text()).get("config") or {}
        tokenizer = directory / "tokenizer.json"
    data = dict(config.get("data") or {})
    if not data:
        raise ValueError(f"model: {directory} records no pretraining data config")
    data["oversample"] = []
    if tokenizer.is_file():
        data["tokenizer_path"] = str(tokenizer)
    return DataConfig(**data)


def validation_rows(data: DataConfig, n_ctx: int, n_rows: int = DEFAULT_ROWS, d_vocab: int = 2**16) -> ValidationRows:
    """``n_rows`` rows evenly spaced over the packed validation split of ``data`` (every row if fewer)."""
    from sparse_lens.training.data import load_token_data

    if not isinstance(n_rows, int) or n_rows < 1:
        raise ValueError(f"rows: expected a positive number of validation rows, got {n_rows!r}")
    token_data = load_token_data(data, n_ctx, d_vocab, validation_only=True)
    total = int(token_data.validation.shape[0])
    stride = max(1, total // n_rows)
    tokens = token_data.validation[::stride][:n_rows].long()
    desc = {
        "split": "validation", "rows": int(tokens.shape[0]), "stride": stride, "split_rows": total, "n_ctx": int(n_ctx),
        "tokens": int(tokens.numel()), "corpus": data.corpus if data.source == "corpus" else data.source,
        "val_fraction": data.val_fraction, "tokenizer_hash": token_data.description.get("tokenizer_hash"),
        "rows_hash": _rows_hash(tokens),
    }
    return ValidationRows(tokens, desc)


def _rows_hash(tokens: Tensor) -> str:
    import hashlib

    return hashlib.sha256(tokens.to(torch.int64).contiguous().numpy().tobytes()).hexdigest()[:16]


@torch.no_grad()
def token_loss_sum(model: Any, rows: Int[Tensor, "rows n_ctx"], batch_size: int, device: Any = None) -> Tensor:
    """[sum of per-token next-token losses, number of tokens] over ``rows`` (float64), in chunks of
    ``batch_size`` rows; the model is left in the mode it was in."""
    total = torch.zeros(2, dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    try:
        for chunk in rows.split(max(int(batch_size), 1)):
            per_token = model(chunk.to(device) if device is not None else chunk, return_type="loss", loss_per_token=True)
            total[0] += per_token.double().sum().to(total.device)
            total[1] += per_token.numel()
    finally:
        model.train(was_training)
    return total


def validation_loss(model: Any, rows: "ValidationRows | Tensor", batch_size: int = 32) -> float:
    """Mean next-token cross-entropy (nats) of ``model`` over ``rows`` (a :class:`ValidationRows` or a
    token tensor), on the model's device."""
    tokens = rows.tokens if isinstance(rows, ValidationRows) else rows
    device = next(model.parameters()).device
    total = token_loss_sum(model, tokens, batch_size, device)
    return float(total[0] / total[1])


@dataclass
class Candidate:
    """One checkpoint considered for matching."""

    checkpoint: str
    step: int
    total_steps: Optional[int]
    tokens: Optional[int]
    final: bool  # the run's last step: its learning-rate schedule ran to the end
    val_loss: Optional[float] = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_candidates(runs: Iterable[str | Path], which: str = "final",
                   steps: Optional[tuple[int, int]] = None) -> list[Candidate]:
    """The checkpoints of training ``runs`` to consider: ``final`` (each run's checkpoint at its last
    step; a run that has not finished contributes none) or ``all`` (every kept checkpoint); with
    ``steps`` (first, last), only those with first ≤ step ≤ last (a long run scored near the target
    only: each candidate costs a pass over the validation rows)."""
    from sparse_lens.model.run_checkpoints import list_checkpoints, read_state

    if which not in ("final", "all"):
        raise ValueError(f"--checkpoints: expected 'final' or 'all', got {which!r}")
    found: list[Candidate] = []
    for run in runs:
        run = Path(run)
        checkpoints = list_checkpoints(run)
        if not checkpoints:
            raise ValueError(f"--runs: {run} holds no training checkpoint")
        for ckpt in checkpoints:
            state = read_state(ckpt, "--runs")
            total = state.get("total_steps")
            final = total is not None and int(state["step"]) >= int(total)
            in_range = steps is None or steps[0] <= int(state["step"]) <= steps[1]
            if (which == "all" or final) and in_range:
                found.append(Candidate(str(ckpt), int(state["step"]), total, state.get("tokens"), final))
    if not found and steps is not None:
        raise ValueError(f"--steps: no {'' if which == 'all' else 'final '}checkpoint of --runs has a step in "
                         f"{steps[0]}..{steps[1]}")
    if not found:
        raise ValueError("--runs: no run has finished its schedule (no final checkpoint); use --checkpoints all "
                         "to consider intermediate ones")
    return found


def pick_matched(candidates: Sequence[Candidate], target_loss: float, tolerance: float = DEFAULT_TOLERANCE) -> Candidate:
    """The candidate (with ``val_loss`` set) closest to ``target_loss``; ties go to the later
    (more trained) checkpoint. Raises ValueError when none is within ``tolerance``."""
    scored = [c for c in candidates if c.val_loss is not None]
    if not scored:
        raise ValueError("no candidate has a validation loss")
    best = min(scored, key=lambda c: (abs(c.val_loss - target_loss), -(c.tokens or c.step)))
    gap = abs(best.val_loss - target_loss)
    if gap > tolerance:
        raise ValueError(
            f"--tolerance: no checkpoint is within {tolerance} of the target validation loss {target_loss:.4f}; "
            f"the closest is {best.checkpoint} at {best.val_loss:.4f} ({gap:.4f} away): train a run whose budget "
            f"ends nearer the target")
    return best
