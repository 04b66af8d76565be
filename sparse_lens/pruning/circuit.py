"""`Circuit`: the result of pruning one task — kept nodes, node means, losses, edges — applied to a
model as hooks, and saved as JSON + safetensors."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from sparse_lens.pruning.calibration import Calibration
from sparse_lens.pruning.discretize import count_nodes, fixed_mask_hooks
from sparse_lens.pruning.nodes import NODE_KINDS

FORMAT = "sparse_lens.circuit/1"


@dataclass
class Circuit:
    task: str
    target_loss: float
    masks: dict[str, Tensor]  # site -> bool [node shape]; True = kept
    means: dict[str, Tensor]  # site -> node means used for ablation
    calibration: Calibration = field(default_factory=Calibration)
    losses: dict[str, float] = field(default_factory=dict)
    edges: dict[str, int] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    # How pruning got here (for plots): "bisection" (every (k, loss) evaluated, chosen k, target,
    # "monotone") and "mask_training" (task loss and kept nodes per step); {} for older circuit files.
    diagnostics: dict[str, Any] = field(default_factory=dict)

    # ---------------------------------------------------------------- summaries
    @property
    def n_nodes(self) -> int:
        return count_nodes(self.masks)

    @property
    def n_edges(self) -> int:
        return int(self.edges.get("total", 0))

    def nodes_by_kind(self) -> dict[str, int]:
        """Kept nodes per ``"{kind}@L{layer}"``."""
        kinds = {template.split("{l}.")[1]: kind for kind, template in NODE_KINDS.items()}
        out = {}
        for name, m in self.masks.items():
            layer, local = name.split(".", 2)[1:]
            out[f"{kinds[local]}@L{layer}"] = int(m.sum())
        return out

    def kept_nodes(self) -> list[tuple[str, tuple[int, ...]]]:
        """(site, index) of every kept node."""
        return [(name, tuple(int(i) for i in idx)) for name, m in self.masks.items() for idx in m.nonzero()]

    # ---------------------------------------------------------------- hooks
    def hooks(self) -> list:
        """Hooks that keep the circuit and mean-ablate every other node (sufficiency setting)."""
        return fixed_mask_hooks(self.masks, self.means)

    def complement_hooks(self) -> list:
        """Hooks that mean-ablate only the circuit's nodes (necessity setting)."""
        return fixed_mask_hooks({k: ~m for k, m in self.masks.items()}, self.means)

    @contextmanager
    def applied(self, model) -> Iterator[Any]:
        """``with circuit.applied(model):`` runs the model with only the circuit intact."""
        with model.hooks(fwd_hooks=self.hooks()):
            yield model

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write ``path`` (JSON) and ``path.with_suffix('.safetensors')`` atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"mask/{k}": v.to(torch.uint8).contiguous() for k, v in self.masks.items()}
        tensors.update({f"mean/{k}": v.contiguous() for k, v in self.means.items()})
        meta = {
            "format": FORMAT,
            "task": self.task,
            "model": self.model,
            "target_loss": self.target_loss,
            "calibration": {"scale": self.calibration.scale, "shift": self.calibration.shift},
            "losses": self.losses,
            "edges": self.edges,
            "n_nodes": self.n_nodes,
            "n_edges": self.n_edges,
            "nodes_by_kind": self.nodes_by_kind(),
            "config": self.config,
            "diagnostics": self.diagnostics,
        }
        tensor_path = path.with_suffix(".safetensors")
        for target, writer in ((tensor_path, lambda p: save_file(tensors, p)),
                               (path, lambda p: Path(p).write_text(json.dumps(meta, indent=2) + "\n"))):
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            os.close(fd)
            try:
                writer(tmp)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Circuit":
        path = Path(path)
        tensor_path = path.with_suffix(".safetensors")
        for p in (path, tensor_path):
            if not p.is_file():
                raise FileNotFoundError(f"circuit: missing {p}")
        try:
            meta = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"{path}: not a sparse_lens circuit (format {FORMAT!r})")
        try:
            tensors = load_file(str(tensor_path))
        except Exception as err:
            raise ValueError(f"{tensor_path}: cannot read safetensors file ({err})") from err
        masks = {k[len("mask/"):]: v.bool() for k, v in tensors.items() if k.startswith("mask/")}
        means = {k[len("mean/"):]: v for k, v in tensors.items() if k.startswith("mean/")}
        if set(masks) != set(means):
            raise ValueError(f"{tensor_path}: masks and means cover different sites")
        return cls(
            task=meta["task"], target_loss=meta["target_loss"], masks=masks, means=means,
            calibration=Calibration(**meta["calibration"]), losses=meta["losses"], edges=meta["edges"],
            config=meta["config"], model=meta.get("model", ""), diagnostics=meta.get("diagnostics") or {},
        )
