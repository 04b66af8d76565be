"""What the plots read, with clear errors: a circuit's diagnostics (a `Circuit`, its JSON file, or the
diagnostics dict), a `prune-compare` report (`comparison.json`) and a trainer's `metrics.jsonl`."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from sparse_lens.io import read_json_object
from sparse_lens.pruning.circuit import FORMAT, Circuit

CircuitSource = Union[Circuit, str, Path, dict]


@dataclass
class CircuitInfo:
    """The parts of a circuit the pruning plots use."""

    task: str
    model: str
    target_loss: float
    n_nodes: int
    diagnostics: dict[str, Any]
    origin: str  # for error messages: the file, or "circuit"


def circuit_info(source: CircuitSource) -> CircuitInfo:
    """From a `Circuit`, a circuit JSON file (its tensors are not read), or a ``diagnostics`` dict."""
    if isinstance(source, Circuit):
        return CircuitInfo(source.task, source.model, source.target_loss, source.n_nodes, source.diagnostics,
                           f"circuit {source.task!r}")
    if isinstance(source, dict):
        bisection = source.get("bisection") or {}
        return CircuitInfo("", "", bisection.get("target", float("nan")), bisection.get("k") or 0, source,
                           "diagnostics")
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such circuit file")
    meta = read_json_object(path, "a sparse_lens circuit")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a sparse_lens circuit (format {FORMAT!r})")
    return CircuitInfo(meta.get("task", ""), meta.get("model", ""), meta.get("target_loss", float("nan")),
                       meta.get("n_nodes", 0), meta.get("diagnostics") or {}, str(path))


def require(info: CircuitInfo, part: str) -> dict[str, Any]:
    """``info.diagnostics[part]``, or a clear error saying why it is missing."""
    value = info.diagnostics.get(part)
    if value:
        return value
    if info.diagnostics.get("skipped"):
        why = "the task was skipped (the unpruned model has not learned it), so masks were never trained"
    elif not info.diagnostics:
        why = "it has no pruning diagnostics (saved before they were recorded: prune again)"
    else:
        why = f"its diagnostics have no {part!r} record"
    raise ValueError(f"{info.origin}: cannot plot the {part.replace('_', ' ')}: {why}")


def comparison_report(source: Union[dict, str, Path]) -> dict[str, Any]:
    """A `prune-compare` report: the dict, its ``comparison.json``, or the directory holding it."""
    if isinstance(source, dict):
        report, origin = source, "comparison"
    else:
        path = Path(source)
        if path.is_dir():
            path = path / "comparison.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file (expected prune-compare's comparison.json)")
        report = read_json_object(path, "a prune-compare report")
        origin = str(path)
    needed = ("task", "matched", "sparse_edges", "dense_edges")
    rows = report.get("tasks") if isinstance(report, dict) else None
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) and all(k in r for k in needed) for r in rows):
        raise ValueError(f"{origin}: expected a prune-compare report (comparison.json) with a non-empty 'tasks' "
                         f"list whose rows have {list(needed)}")
    return report


def metrics_records(source: Union[str, Path, list]) -> tuple[list[dict[str, Any]], str]:
    """The records of a trainer's ``metrics.jsonl`` (the file or its run directory) and a label for
    them. A line torn by a crash (the last one) is skipped; any other bad line is an error."""
    if isinstance(source, list):
        return source, "metrics"
    path = Path(source)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected a training run directory or its metrics.jsonl)")
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):
                break  # the last line, torn by a crash mid-write
            raise ValueError(f"{path}: line {number} is not JSON ({err})") from err
        if not isinstance(record, dict) or not isinstance(record.get("step"), (int, float)):
            raise ValueError(f"{path}: line {number} is not a metrics record (a JSON object with a 'step')")
        records.append(record)
    if not records:
        raise ValueError(f"{path}: no metrics records")
    return records, str(path.parent.name or path)


def series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the records that have a finite number under ``key``."""
    steps, values = [], []
    for r in records:
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            steps.append(float(r["step"]))
            values.append(float(v))
    return steps, values
