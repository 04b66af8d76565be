"""Context dilution: a prediction the bracket-counting circuit makes (paper Sec. 4; ../shared/paper).

The circuit reads nesting depth from an attention head that *averages* the ``[`` detectors over the
context, then thresholds that average. An average over more tokens is a smaller number, so the
circuit predicts its own failure: as the open list grows, the depth-2 signal after ``[[`` falls below
the threshold and the model answers ``]`` where ``]]`` is right. We test it by posing
``bracket_counting`` at fixed list lengths (`bracket_counting_of_length`: only the list's length
varies) and measuring the model — and, given a circuit, the model with only the circuit intact.

    points = context_dilution(model, lengths=(1, 2, 4, 8, 16, 24), circuit=circuit)
    print(format_dilution(points))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional, Sequence

from sparse_lens.tasks.brackets import bracket_counting_of_length
from sparse_lens.tasks.evaluate import TaskResult, evaluate_task

DEFAULT_LENGTHS = (1, 2, 4, 8, 12, 16, 24, 32)


@dataclass
class DilutionPoint:
    """Task results at one list length: for the model, and for its circuit when one was given."""

    n_elements: int
    model: TaskResult
    circuit: Optional[TaskResult] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def context_dilution(
    model: Any,
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    circuit: Any = None,
    n_pairs: int = 64,
    seed: int = 0,
    split: str = "test",
) -> list[DilutionPoint]:
    """``bracket_counting`` loss and accuracy of ``model`` (and of ``circuit`` applied to it) at each
    list length in ``lengths``; pairs whose prompt exceeds the model's context are not generated."""
    lengths = list(lengths)
    if not lengths or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in lengths):
        raise ValueError(f"lengths: expected a non-empty list of integers >= 1, got {lengths!r}")
    points = []
    for n in lengths:
        task = bracket_counting_of_length(n)
        full = evaluate_task(model, task, n_pairs=n_pairs, seed=seed, split=split)
        pruned = None
        if circuit is not None:
            with circuit.applied(model):
                pruned = evaluate_task(model, task, n_pairs=n_pairs, seed=seed, split=split)
        points.append(DilutionPoint(n, full, pruned))
    return points


def format_dilution(points: Sequence[DilutionPoint]) -> str:
    """A table: per list length, accuracy and the loss on each side (``]]`` prompts, ``]`` prompts)."""
    has_circuit = any(p.circuit is not None for p in points)
    head = f"{'elements':>8}  {'acc':>5}  {'loss ]]':>7}  {'loss ]':>7}"
    if has_circuit:
        head += f"  | circuit: {'acc':>5}  {'loss ]]':>7}  {'loss ]':>7}"
    lines = [head]
    for p in points:
        row = f"{p.n_elements:>8}  {_cells(p.model)}"
        if p.circuit is not None:
            row += f"  |          {_cells(p.circuit)}"
        lines.append(row)
    return "\n".join(lines)


def _cells(r: TaskResult) -> str:
    return f"{r.accuracy:>5.2f}  {r.loss_positive:>7.3f}  {r.loss_negative:>7.3f}"
