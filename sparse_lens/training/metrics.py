"""Metrics: one JSON object per line in ``<out_dir>/metrics.jsonl`` and the same scalars in TensorBoard
(``<out_dir>/tensorboard``, via ``torch.utils.tensorboard.SummaryWriter``).

Record keys: ``step`` (optimizer steps completed), ``tokens``, ``loss``, ``val_loss`` (eval steps),
``lr``, ``grad_rms``, ``l0_target`` / ``l0_current`` (kept fraction of the block matrices),
``nnz`` ({matrix: actual nonzero count}), ``k`` ({matrix: budget}), ``nnz_total``, ``k_total``,
``forced_extra`` (entries kept beyond k by the min-j rule), ``tokens_per_s``, ``elapsed_s``,
``ms_per_step`` ({phase: ms}: forward_backward, grad_norm, adam, projection, weight_decay).
Dict-valued keys become TensorBoard tags ``nnz/<matrix>``.

On resume from step N, records after N are dropped from the JSONL and TensorBoard is told to purge
them (``purge_step=N+1``), so a resumed run's logs read as one run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional


class MetricsLogger:
    def __init__(self, out_dir: str | Path, *, enabled: bool = True, tensorboard: bool = True, resume_step: Optional[int] = None):
        self.enabled = enabled
        self.path = Path(out_dir) / "metrics.jsonl"
        self.writer = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            self._truncate_after(resume_step)
        elif self.path.exists():
            self.path.unlink()  # a fresh run starts a fresh log
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            kwargs = {"purge_step": resume_step + 1} if resume_step is not None else {}
            self.writer = SummaryWriter(str(Path(out_dir) / "tensorboard"), **kwargs)

    def _truncate_after(self, step: int) -> None:
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a crash
            if record.get("step", 0) <= step:
                kept.append(line)
        from sparse_lens.io import atomic_write_text

        atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record, default=_jsonable) + "\n")
        if self.writer is not None:
            step = int(record["step"])
            for key, value in record.items():
                if key == "step":
                    continue
                if isinstance(value, dict):
                    for sub, v in value.items():
                        if _is_number(v):
                            self.writer.add_scalar(f"{key}/{sub}", v, step)
                elif _is_number(value):
                    self.writer.add_scalar(key, value, step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl file (or of ``<dir>/metrics.jsonl``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)
