"""The bridge modules (paper Sec. 3.3, App. A.3): one encoder and one decoder per site.

    encoder f_i(h_d) = AbsTopK_k( W_f h_d + b_f )    dense residual  [d_dense]  -> sparse residual [d_sparse]
    decoder g_i(h_s) = W_g h_s + b_g                   sparse residual [d_sparse] -> dense residual  [d_dense]

k = int(fraction · d_sparse), with the sparse model's AbsTopK fraction unless told otherwise (None: no
AbsTopK). Together f_i and g_i are a sparse autoencoder whose latent space is the sparse model's
residual stream (the paper's footnote).

Saved as ``bridges.safetensors`` (the weights) + ``bridges.json`` (shapes, sites, and which dense and
sparse models they belong to: name and weights fingerprint). Loading checks both models and refuses
bridges written for other weights (``strict=False`` applies them anyway).
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Optional

import torch
from jaxtyping import Float
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from sparse_lens.bridges.residual_models import ResidualModel
from sparse_lens.bridges.sites import Site, SiteMixin
from sparse_lens.model.abs_topk import AbsTopK

BRIDGES_FILE = "bridges.safetensors"
BRIDGES_META = "bridges.json"
FORMAT = "sparse_lens.bridges"
VERSION = 1


class Bridges(SiteMixin, nn.Module):
    """Encoders f_i (Linear + AbsTopK) and decoders g_i (Linear), one pair per site.

    Args:
        n_layers: depth of both models (2·n_layers sites).
        d_dense, d_sparse: residual widths.
        encoder_topk: AbsTopK fraction of the encoders' output (None: no AbsTopK).
        seed: initialization seed (PyTorch's Linear init: U(±1/sqrt(fan_in)) weights and biases).
    """

    def __init__(self, n_layers: int, d_dense: int, d_sparse: int, encoder_topk: Optional[float] = None,
                 seed: Optional[int] = None):
        super().__init__()
        for name, value in (("n_layers", n_layers), ("d_dense", d_dense), ("d_sparse", d_sparse)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if encoder_topk is not None and not (isinstance(encoder_topk, (int, float)) and 0 < encoder_topk <= 1):
            raise ValueError(f"encoder_topk: expected a fraction in (0, 1] or None, got {encoder_topk!r}")
        self.n_layers, self.d_dense, self.d_sparse = n_layers, d_dense, d_sparse
        self.encoder_topk = None if encoder_topk is None else float(encoder_topk)
        fork = torch.random.fork_rng() if seed is not None else nullcontext()
        with fork:
            if seed is not None:
                torch.manual_seed(seed)
            self.encoders = nn.ModuleList([nn.Linear(d_dense, d_sparse) for _ in range(2 * n_layers)])
            self.decoders = nn.ModuleList([nn.Linear(d_sparse, d_dense) for _ in range(2 * n_layers)])
        self.topk = AbsTopK(self.encoder_topk)

    def index(self, site: Site) -> int:
        return self.site_index(site)

    def encode(self, site: Site, h_dense: Float[Tensor, "... d_dense"]) -> Float[Tensor, "... d_sparse"]:
        """f_i: dense residual -> sparse residual (Linear, then AbsTopK)."""
        return self.topk(self.encoders[self.index(site)](h_dense))

    def decode(self, site: Site, h_sparse: Float[Tensor, "... d_sparse"]) -> Float[Tensor, "... d_dense"]:
        """g_i: sparse residual -> dense residual (Linear)."""
        return self.decoders[self.index(site)](h_sparse)

    def extra_repr(self) -> str:
        return f"sites={self.n_sites}, d_dense={self.d_dense}, d_sparse={self.d_sparse}, encoder_topk={self.encoder_topk}"

    # ---------------------------------------------------------------- initialization
    @torch.no_grad()
    def set_identity(self) -> "Bridges":
        """f_i = g_i = identity (same widths only): with identical models every hybrid is exact."""
        if self.d_dense != self.d_sparse:
            raise ValueError(f"set_identity: needs d_dense == d_sparse, got {self.d_dense} and {self.d_sparse}")
        for lin in (*self.encoders, *self.decoders):
            lin.weight.copy_(torch.eye(self.d_dense))
            lin.bias.zero_()
        return self

    @torch.no_grad()
    def fit_least_squares(self, h_dense: list[Tensor], h_sparse: list[Tensor], ridge: float = 1e-3) -> "Bridges":
        """Set every f_i and g_i to the ridge least-squares linear map between the residuals at site
        i (``h_dense[i]`` / ``h_sparse[i]``: [..., d]); AbsTopK is ignored by the fit. ``ridge`` is
        relative to the mean eigenvalue of the input covariance."""
        if len(h_dense) != self.n_sites or len(h_sparse) != self.n_sites:
            raise ValueError(f"fit_least_squares: expected {self.n_sites} residuals per model, got {len(h_dense)} and {len(h_sparse)}")
        for i in range(self.n_sites):
            x_d = h_dense[i].reshape(-1, self.d_dense).double()
            x_s = h_sparse[i].reshape(-1, self.d_sparse).double()
            for lin, x, y in ((self.encoders[i], x_d, x_s), (self.decoders[i], x_s, x_d)):
                w, b = _ridge_fit(x, y, ridge)
                lin.weight.copy_(w.to(lin.weight.dtype))
                lin.bias.copy_(b.to(lin.bias.dtype))
        return self

    # ---------------------------------------------------------------- persistence
    def metadata(self, dense: ResidualModel, sparse: ResidualModel) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "n_layers": self.n_layers, "d_dense": self.d_dense,
            "d_sparse": self.d_sparse, "encoder_topk": self.encoder_topk, "sites": self.sites,
            "dense": dense.describe(), "sparse": sparse.describe(),
        }

    def file_writers(self, dense: ResidualModel, sparse: ResidualModel) -> dict[str, Any]:
        """{file name: write(path)} for the two bridge files (for an atomic multi-file write)."""
        self.check_finite()
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        meta = self.metadata(dense, sparse)
        return {
            BRIDGES_FILE: lambda path: save_file(state, str(path), metadata={"format": FORMAT}),
            BRIDGES_META: lambda path: path.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n"),
        }

    def save(self, directory: str | Path, dense: ResidualModel, sparse: ResidualModel) -> Path:
        """Write bridges.safetensors + bridges.json into ``directory`` (each atomically; both or
        neither replaced)."""
        from sparse_lens.io import atomic_write_files

        return atomic_write_files(directory, self.file_writers(dense, sparse), argument="bridges directory")

    def check_finite(self) -> None:
        for name, p in self.named_parameters():
            if not torch.isfinite(p).all():
                raise ValueError(f"bridges: parameter {name} has non-finite values")

    @classmethod
    def load(cls, directory: str | Path, dense: Optional[ResidualModel] = None, sparse: Optional[ResidualModel] = None,
             strict: bool = True) -> "Bridges":
        """Read bridges written by :meth:`save` (or a bridge training checkpoint). With ``dense`` /
        ``sparse``, check that they are the models the bridges were trained for (shape always;
        weights fingerprint unless ``strict=False``)."""
        directory = Path(directory)
        meta = read_metadata(directory)
        weights_path = directory / BRIDGES_FILE
        if not weights_path.is_file():
            raise FileNotFoundError(f"bridges: {directory} has no {BRIDGES_FILE}")
        try:
            state = load_file(str(weights_path))
        except (SafetensorError, OSError, ValueError) as err:
            raise ValueError(f"bridges: cannot read {weights_path} ({err})") from err
        bridges = cls(int(meta["n_layers"]), int(meta["d_dense"]), int(meta["d_sparse"]), meta.get("encoder_topk"))
        expected = bridges.state_dict()
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or unexpected:
            raise ValueError(f"bridges: {weights_path} does not match {BRIDGES_META} (missing {missing[:4]}, unexpected {unexpected[:4]})")
        for key, value in state.items():
            if value.shape != expected[key].shape:
                raise ValueError(f"bridges: {weights_path}: {key} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}")
            if not torch.isfinite(value).all():
                raise ValueError(f"bridges: {weights_path}: {key} has non-finite values")
        bridges.load_state_dict(state)
        for role, model in (("dense", dense), ("sparse", sparse)):
            if model is not None:
                check_model_matches(meta, role, model, str(directory), strict=strict)
        return bridges


def read_metadata(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    path = directory / BRIDGES_META
    if not path.is_file():
        raise FileNotFoundError(f"bridges: {directory} has no {BRIDGES_META} (not a bridges directory or bridge checkpoint)")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"bridges: {path} is not valid JSON ({err})") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"bridges: {path} is not a sparse_lens bridges file (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if int(meta.get("version", 0)) > VERSION:
        raise ValueError(f"bridges: {path} has format version {meta.get('version')}; this sparse_lens reads up to {VERSION}")
    for key in ("n_layers", "d_dense", "d_sparse", "dense", "sparse"):
        if key not in meta:
            raise ValueError(f"bridges: {path} lacks {key!r}")
    return meta


def check_model_matches(meta: dict[str, Any], role: str, model: ResidualModel, source: str, strict: bool = True) -> None:
    """The ``role`` ("dense"/"sparse") model is the one the bridges in ``source`` were trained for."""
    from sparse_lens.model.identity import check_same_model

    recorded = meta[role]
    width = meta["d_dense" if role == "dense" else "d_sparse"]
    if model.n_layers != meta["n_layers"] or model.d_model != width:
        raise ValueError(
            f"bridges: {source} bridges a {role} model of {meta['n_layers']} layers x d_model {width} "
            f"({recorded.get('name') or 'unnamed'}); this {role} model has {model.n_layers} layers x d_model {model.d_model}"
        )
    check_same_model(model.module, what=f"bridges {source} ({role} side)", recorded_name=recorded.get("name", ""),
                     recorded_fingerprint=recorded.get("fingerprint"), strict=strict)


def _ridge_fit(x: Tensor, y: Tensor, ridge: float) -> tuple[Tensor, Tensor]:
    """W, b minimizing ||x W^T + b - y||^2 + λ ||W||^2 (x, y centred for W; λ = ridge · mean eigenvalue)."""
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    cov = xc.T @ xc / max(len(x), 1)
    lam = ridge * float(cov.diagonal().mean()) + 1e-12
    w = torch.linalg.solve(cov + lam * torch.eye(cov.shape[0], dtype=cov.dtype), xc.T @ yc / max(len(x), 1)).T
    return w, my - w @ mx
