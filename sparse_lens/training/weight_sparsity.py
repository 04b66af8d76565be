"""Weight sparsity by top-k magnitude projection (paper Sec. 2).

After every optimizer step each sparse tensor keeps only its k largest |w| (k = int(fraction * numel),
the same fraction for every block matrix) and every other entry is set to exactly zero.

**Minimum nonzeros per neuron (j).** No neuron or attention channel may be left with fewer than j
nonzero weights. The protected unit is the *hidden* unit a matrix reads into or writes out of,
following the authors' training code (their ``topk_neuronwise_dim``), in ``min_nonzero_mode="neuron"``:

=========  =======================  ==========================  ===================================
matrix     shape (ours)             protected unit              its j weights lie along
=========  =======================  ==========================  ===================================
W_Q/K/V    [n_heads, d_model, d_h]  q/k/v channel (head, c)     d_model  (fan-in)
W_O        [n_heads, d_h, d_model]  z channel (head, c)         d_model  (fan-out)
W_in       [d_model, d_mlp]         MLP neuron (column)         d_model  (fan-in)
W_out      [d_mlp, d_model]         MLP neuron (row)            d_model  (fan-out)
=========  =======================  ==========================  ===================================

So every MLP neuron keeps >= j inputs *and* >= j outputs, every q/k/v channel >= j inputs and every
value channel >= j outputs: none can die for lack of weights. Residual-stream dimensions are not
neurons and get no guarantee. ``min_nonzero_mode="fan_in"`` instead protects the fan-in of every
output unit of every block matrix (then W_O / W_out protect the d_model columns they write).
Embeddings, unembedding and biases get no per-neuron minimum (as in the authors' code).

**Exactly k.** The j protected entries of each unit are counted inside the k (they are given
priority, then the largest remaining |w| fill the budget), so a matrix keeps exactly k entries. Only
when j x (number of units) > k does the rule force more: then exactly the protected entries are kept
and the excess is reported as ``forced``. Ties at the threshold are broken deterministically (the
lowest flat indices win). A matrix that already has fewer than k nonzeros keeps them all (its
nonzero count is below k; zeros are never "kept" as nonzeros).

**Cost.** No index tensor of size k is built: the k-th largest |w| is found by selection (NumPy's
introselect on CPU — several times faster than ``torch.kthvalue``/``torch.topk`` there — and
``torch.kthvalue`` on GPU), the keep mask is one comparison, and the zeroing is one in-place
``masked_fill_``. The only indices built are the j x units of the per-neuron top-j (and, for ties at
the threshold, the tied positions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from sparse_lens.model import SparseTransformerConfig
from sparse_lens.training.config import SparsityConfig
from sparse_lens.training.schedule import anneal_progress, lerp_fraction

BLOCK_MATRICES = ("W_Q", "W_K", "W_V", "W_O", "W_in", "W_out")
EMBEDDINGS = ("W_E", "W_pos")
BIASES = ("b_Q", "b_K", "b_V", "b_O", "b_in", "b_out", "b_U")
DENSE_ALWAYS = ("W_bigram",)  # the bigram table is never sparse (paper Sec. 1.5)


@dataclass
class SparseTensorSpec:
    """One weight-sparse parameter and how its neurons are laid out."""

    name: str
    param: nn.Parameter
    kind: str  # "block" | "embedding" | "unembedding" | "bias"
    unit_view: Optional[tuple[int, ...]] = None  # reshape (a view) under which the fan lies on one dim
    fan_dim: Optional[int] = None

    @property
    def numel(self) -> int:
        return self.param.numel()

    @property
    def n_units(self) -> int:
        if self.unit_view is None:
            return 0
        return self.numel // self.unit_view[self.fan_dim]

    @property
    def fan(self) -> int:
        return 0 if self.unit_view is None else self.unit_view[self.fan_dim]


@dataclass
class ProjectionStats:
    k: int  # the budget int(fraction * numel)
    kept: int  # entries kept (k, or more when forced by min-j)
    forced: int  # kept - k when the min-j rule needs more than k entries (else 0)


def unit_layout(leaf: str, shape: tuple[int, ...], mode: str = "neuron") -> Optional[tuple[tuple[int, ...], int]]:
    """(view shape, fan dim) of a block matrix for the min-j rule, or None if it has none."""
    if leaf in ("W_Q", "W_K", "W_V"):  # [H, d_model, D]: channel (h, c), fan-in over d_model
        return tuple(shape), 1
    if leaf == "W_O":  # [H, D, d_model]
        H, D, d = shape
        return (H * D, d), (1 if mode == "neuron" else 0)
    if leaf == "W_in":  # [d_model, d_mlp]: neuron = column, fan-in over d_model
        return tuple(shape), 0
    if leaf == "W_out":  # [d_mlp, d_model]
        return tuple(shape), (1 if mode == "neuron" else 0)
    return None


def neuron_fan_sizes(cfg: SparseTransformerConfig, mode: str = "neuron") -> dict[str, int]:
    """How many weights each protected unit of each block matrix has (j must not exceed these)."""
    H, D, d, m = cfg.n_heads, cfg.d_head, cfg.d_model, cfg.d_mlp
    shapes = {"W_Q": (H, d, D), "W_K": (H, d, D), "W_V": (H, d, D), "W_O": (H, D, d), "W_in": (d, m), "W_out": (m, d)}
    out = {}
    for leaf, shape in shapes.items():
        view, fan_dim = unit_layout(leaf, shape, mode)  # type: ignore[misc]
        out[leaf] = view[fan_dim]
    return out


def sparse_tensor_specs(model: nn.Module, cfg: SparsityConfig) -> list[SparseTensorSpec]:
    """The parameters of a HookedSparseTransformer that are weight-sparse under ``cfg``."""
    specs = []
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in DENSE_ALWAYS:
            continue
        if leaf in BLOCK_MATRICES:
            layout = unit_layout(leaf, tuple(p.shape), cfg.min_nonzero_mode)
            view, fan_dim = layout if layout else (None, None)
            specs.append(SparseTensorSpec(name, p, "block", view, fan_dim))
        elif leaf in EMBEDDINGS and cfg.sparse_embeddings:
            specs.append(SparseTensorSpec(name, p, "embedding"))
        elif leaf == "W_U" and cfg.sparse_unembedding:
            specs.append(SparseTensorSpec(name, p, "unembedding"))
        elif leaf in BIASES and cfg.sparse_biases:
            specs.append(SparseTensorSpec(name, p, "bias"))
    return specs


def kth_largest(flat: Tensor, k: int) -> float:
    """The k-th largest value of a 1-D *non-negative* tensor (1 <= k <= numel), by selection.

    On CPU: ``numpy.partition`` (introselect), over the nonzero entries only when most are zero
    (introselect slows down ~20x on a mostly-zero array, which is what a projected matrix is).
    """
    n = flat.numel()
    if flat.device.type == "cpu":
        array = flat.numpy() if flat.dtype != torch.bfloat16 else flat.float().numpy()
        nonzero = int(np.count_nonzero(array))
        if nonzero < k:
            return 0.0
        if nonzero < n // 2:
            array = array[array != 0]
            n = array.size
        return float(np.partition(array, n - k)[n - k])
    return float(torch.kthvalue(flat.float(), n - k + 1).values)


@torch.no_grad()
def project_topk_(
    weight: Tensor,
    k: int,
    min_per_unit: int = 0,
    unit_view: Optional[tuple[int, ...]] = None,
    fan_dim: Optional[int] = None,
) -> ProjectionStats:
    """Zero all but the k largest-|w| entries of ``weight`` in place (see the module docstring).

    With ``min_per_unit`` = j > 0 and a ``unit_view``/``fan_dim``, the j largest |w| of every unit
    (every slice along ``fan_dim`` of ``weight.view(unit_view)``) are kept first.
    """
    n = weight.numel()
    if not 0 <= k:
        raise ValueError(f"k: expected >= 0, got {k}")
    if k >= n:
        return ProjectionStats(k=n, kept=n, forced=0)
    score = weight.detach().abs()
    if score.dtype not in (torch.float32, torch.float64):
        score = score.float()
    protected = 0
    if min_per_unit > 0 and unit_view is not None:
        view = score.view(unit_view)
        j = min(min_per_unit, view.shape[fan_dim])
        index = view.topk(j, dim=fan_dim, sorted=False).indices
        view.scatter_(fan_dim, index, float("inf"))
        protected = index.numel()
    flat = score.view(-1)
    if protected >= k:
        keep = torch.isinf(flat)
        kept = protected
    elif k == 0:
        keep = torch.zeros_like(flat, dtype=torch.bool)
        kept = 0
    else:
        threshold = kth_largest(flat, k)
        if threshold == 0.0:
            keep = flat > 0  # fewer than k nonzeros: keep them all
            kept = int(keep.sum())
        else:
            keep = flat >= threshold
            kept = int(keep.sum())
            if kept > k:  # ties at the threshold: drop the highest-index tied entries
                tied = torch.nonzero(flat == threshold).squeeze(1)
                keep[tied[k - kept:]] = False
                kept = k
    weight.view(-1).masked_fill_(~keep, 0)
    return ProjectionStats(k=k, kept=kept, forced=max(0, kept - k))


class WeightSparsifier:
    """Applies the annealed top-k projection to every sparse tensor of a model after each step."""

    def __init__(self, model: nn.Module, model_cfg: SparseTransformerConfig, cfg: SparsityConfig, total_steps: int):
        if model_cfg.weight_sparsity is None:
            raise ValueError("model.weight_sparsity: None means dense training; no sparsifier needed")
        self.cfg = cfg
        self.target = float(model_cfg.weight_sparsity)
        self.other_target = min(1.0, self.target * cfg.embed_bias_fraction_scale)
        self.total_steps = total_steps
        self.specs = sparse_tensor_specs(model, cfg)
        self.last_stats: dict[str, ProjectionStats] = {}

    # ------------------------------------------------------------------ schedule
    def progress(self, step: int) -> float:
        return anneal_progress(step, self.total_steps, self.cfg.anneal_start, self.cfg.anneal_end)

    def block_fraction(self, step: int) -> float:
        """Kept fraction of the block matrices after optimizer step ``step`` (0-based)."""
        return lerp_fraction(self.target, self.progress(step))

    def other_fraction(self, step: int) -> float:
        """Kept fraction of embeddings / unembedding / biases (same schedule, own target)."""
        return lerp_fraction(self.other_target, self.progress(step))

    def k_for(self, spec: SparseTensorSpec, step: int) -> int:
        fraction = self.block_fraction(step) if spec.kind == "block" else self.other_fraction(step)
        return min(spec.numel, int(fraction * spec.numel))

    # ------------------------------------------------------------------ projection
    @torch.no_grad()
    def project_(self, step: int) -> dict[str, ProjectionStats]:
        j = self.cfg.min_nonzero_per_neuron
        stats = {}
        for spec in self.specs:
            k = self.k_for(spec, step)
            if spec.kind == "block":
                stats[spec.name] = project_topk_(spec.param.data, k, j, spec.unit_view, spec.fan_dim)
            else:
                stats[spec.name] = project_topk_(spec.param.data, k)
        self.last_stats = stats
        return stats

    def forced_units(self, step: int) -> dict[str, int]:
        """Matrices where j x units exceeds k at ``step``: {name: entries kept beyond k}."""
        j = self.cfg.min_nonzero_per_neuron
        out = {}
        for spec in self.specs:
            if spec.kind == "block" and j:
                k = self.k_for(spec, step)
                need = min(j, spec.fan) * spec.n_units
                if k < spec.numel and need > k:
                    out[spec.name] = need - k
        return out

    @torch.no_grad()
    def nonzero_counts(self) -> dict[str, int]:
        return {spec.name: int(torch.count_nonzero(spec.param)) for spec in self.specs}

    @torch.no_grad()
    def min_nonzero_per_unit(self) -> dict[str, int]:
        """The smallest number of nonzeros any protected unit of each block matrix has."""
        out = {}
        for spec in self.specs:
            if spec.unit_view is not None:
                nz = (spec.param.detach().view(spec.unit_view) != 0).sum(dim=spec.fan_dim)
                out[spec.name] = int(nz.min())
        return out
