"""`Circuit`: the result of pruning one task — kept nodes, node means, losses, edges — applied to a
model as hooks, and saved as JSON + safetensors."""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from sparse_lens.io import atomic_write
from sparse_lens.model.identity import check_same_model
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
    # sha256 prefix of the weights of the model pruned (`sparse_lens.model.identity`); None = unknown
    # (a circuit file written before it was recorded).
    model_fingerprint: Optional[str] = None

    def __repr__(self) -> str:
        fp = self.model_fingerprint or "unknown"
        losses = "".join(f", {label} {self.losses[key]:.3f}" for key, label in (
            ("fit_loss", "fit loss"), ("test_sufficiency_loss", "held-out sufficiency"),
            ("test_necessity_loss", "held-out necessity")) if isinstance(self.losses.get(key), (int, float)))
        return (f"Circuit(task={self.task!r}, model={self.model or 'unknown'!r} (weights {fp}), "
                f"{self.n_nodes} nodes, {self.n_edges} edges, target loss {self.target_loss}{losses})")

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

    def check_model(self, model, strict: bool = True) -> None:
        """A ValueError if ``model`` is not the model this circuit was pruned on (its weights differ),
        unless ``strict=False``."""
        check_same_model(model, what=f"circuit {self.task!r}", recorded_name=self.model,
                         recorded_fingerprint=self.model_fingerprint, strict=strict)

    @contextmanager
    def applied(self, model, strict: bool = True) -> Iterator[Any]:
        """``with circuit.applied(model):`` runs the model with only the circuit intact. Applying a
        circuit to another model than the one pruned is an error unless ``strict=False``."""
        self.check_model(model, strict)
        with model.hooks(fwd_hooks=self.hooks()):
            yield model

    # ---------------------------------------------------------------- viewing
    def to_html(self, path: str | Path, model=None, **export: Any) -> Path:
        """Write the interactive circuit viewer to ``path``: one self-contained HTML file that opens
        from ``file://`` with no network. ``model``: the model pruned (default: loaded by the name
        recorded in ``self.model``); ``export``: `sparse_lens.visualization.export_circuit_view`'s
        options (``n_pairs``, ``n_windows``, ``progress``, ...)."""
        from sparse_lens.visualization.viewer import write_circuit_html  # lazily: pruning sits below visualization

        return write_circuit_html(self, path, model=model, **export)

    def show(self, model=None, height: int = 900, **export: Any):
        """The same viewer inline in Jupyter (displayed at once); outside IPython, returns an object
        whose ``_repr_html_`` is the view."""
        from sparse_lens.visualization.viewer import show_circuit

        return show_circuit(self, model, height=height, **export)

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write ``path`` (JSON) and ``path.with_suffix('.safetensors')``, each atomically."""
        path = Path(path)
        tensors = {f"mask/{k}": v.to(torch.uint8).cpu().contiguous() for k, v in self.masks.items()}
        tensors.update({f"mean/{k}": v.cpu().contiguous() for k, v in self.means.items()})
        meta = {
            "format": FORMAT,
            "task": self.task,
            "model": self.model,
            "model_fingerprint": self.model_fingerprint,
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
        atomic_write(tensor_path, lambda tmp: save_file(tensors, str(tmp)), argument="circuit")
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(meta, indent=2) + "\n"), argument="circuit")
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
        if meta.get("model_fingerprint") is None:
            warnings.warn(f"{path}: the circuit records no model fingerprint (written by an older sparse_lens): "
                          "its model is unknown and cannot be checked when it is applied", UserWarning, stacklevel=2)
        return cls(
            task=meta["task"], target_loss=meta["target_loss"], masks=masks, means=means,
            calibration=Calibration(**meta["calibration"]), losses=meta["losses"], edges=meta["edges"],
            config=meta["config"], model=meta.get("model", ""), diagnostics=meta.get("diagnostics") or {},
            model_fingerprint=meta.get("model_fingerprint"),
        )
