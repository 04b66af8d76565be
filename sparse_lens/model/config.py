"""`SparseTransformerConfig`: the architecture of a weight-sparse transformer (Gao et al. 2025, Sec. 1).

It subclasses TransformerLens's :class:`~transformer_lens.config.TransformerLensConfig`, so TL tools that
read ``cfg.n_layers``, ``cfg.normalization_type`` (``"RMS"``), ``cfg.uses_rms_norm`` … work unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import torch
from sparse_lens.model.tl_compat import TransformerLensConfig

# The paper's node locations where AbsTopK activation sparsity can act, named as in the authors' code
# (`afrac_loctypes`). The residual-stream locations are not nodes; the authors can sparsify them too.
NODE_LOCATIONS: tuple[str, ...] = (
    "attn_in",  # after ln1 (residual read by attention)
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_out",  # attention block output (residual write)
    "mlp_in",  # after ln2 (residual read by the MLP)
    "mlp_neuron",  # post-activation MLP neurons
    "mlp_out",  # MLP block output (residual write)
)
RESIDUAL_LOCATIONS: tuple[str, ...] = ("resid_post_attn", "resid_post_mlp")
SPARSITY_LOCATIONS: tuple[str, ...] = NODE_LOCATIONS + RESIDUAL_LOCATIONS

RMS_EPS = float(torch.finfo(torch.float32).eps)  # nn.RMSNorm(eps=None), as in the authors' code

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _dtype_from_any(value: Any) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    name = str(value).removeprefix("torch.")
    if name not in _DTYPES:
        raise ValueError(f"dtype: expected one of {sorted(_DTYPES)}, got {value!r}")
    return _DTYPES[name]


@dataclass(kw_only=True)
class SparseTransformerConfig(TransformerLensConfig):
    """Architecture of a :class:`~sparse_lens.model.HookedSparseTransformer`.

    Defaults follow the paper: RMSNorm, d_head=16, attention sinks, a dense bigram table on the
    logits, untied embeddings, no positional embeddings, AbsTopK (k = 1/4 of the dimension) at every
    node location.
    """

    n_layers: int
    d_model: int
    n_ctx: int
    d_vocab: int
    d_head: int = 16
    n_heads: int = -1  # -1: d_model // d_head
    d_mlp: Optional[int] = None  # None: 4 * d_model
    act_fn: str = "gelu"  # "gelu" (exact erf) | "relu"
    normalization_type: Optional[str] = "RMS"  # "RMS" | "LN"
    eps: float = RMS_EPS
    ln_bias: bool = False  # only with normalization_type="LN"
    residual_activation: str = "identity"  # "identity" | "relu", applied after each residual add
    positional_embeddings: bool = False
    bigram_table: bool = True
    attention_sink: bool = True
    tied_embeddings: bool = False
    use_bias: bool = True  # biases of the block's linear maps
    final_logits_bias: bool = True  # b_U
    activation_sparsity: Optional[float] = 0.25  # AbsTopK keeps int(frac * dim); None = off
    activation_sparsity_locations: tuple[str, ...] = NODE_LOCATIONS
    weight_sparsity: Optional[float] = None  # target nonzero fraction of sparse matrices (training)
    seed: Optional[int] = None
    dtype: torch.dtype = torch.float32
    device: Optional[str] = "cpu"
    default_prepend_bos: bool = True
    tokenizer_name: Optional[str] = None

    def __post_init__(self) -> None:
        self.dtype = _dtype_from_any(self.dtype)
        self.activation_sparsity_locations = tuple(self.activation_sparsity_locations)
        for name in ("n_layers", "d_model", "n_ctx", "d_vocab", "d_head"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if self.n_heads == -1:
            if self.d_model % self.d_head:
                raise ValueError(
                    f"n_heads: not given and d_model ({self.d_model}) is not a multiple of d_head ({self.d_head})"
                )
            self.n_heads = self.d_model // self.d_head
        if self.n_heads <= 0:
            raise ValueError(f"n_heads: expected a positive integer, got {self.n_heads!r}")
        if self.d_mlp is None:
            self.d_mlp = 4 * self.d_model
        if self.d_mlp <= 0:
            raise ValueError(f"d_mlp: expected a positive integer, got {self.d_mlp!r}")
        if self.act_fn not in ("gelu", "relu"):
            raise ValueError(f"act_fn: expected 'gelu' or 'relu', got {self.act_fn!r}")
        if self.normalization_type not in ("RMS", "LN"):
            raise ValueError(f"normalization_type: expected 'RMS' or 'LN', got {self.normalization_type!r}")
        if self.ln_bias and self.normalization_type != "LN":
            raise ValueError("ln_bias: RMSNorm has no bias; ln_bias=True needs normalization_type='LN'")
        if not self.eps > 0:
            raise ValueError(f"eps: expected > 0, got {self.eps!r}")
        if self.residual_activation not in ("identity", "relu"):
            raise ValueError(
                f"residual_activation: expected 'identity' or 'relu', got {self.residual_activation!r}"
            )
        if self.activation_sparsity is not None and not 0 < self.activation_sparsity <= 1:
            raise ValueError(
                f"activation_sparsity: expected a fraction in (0, 1] or None, got {self.activation_sparsity!r}"
            )
        unknown = [loc for loc in self.activation_sparsity_locations if loc not in SPARSITY_LOCATIONS]
        if unknown:
            raise ValueError(
                f"activation_sparsity_locations: unknown location(s) {unknown}; known: {list(SPARSITY_LOCATIONS)}"
            )
        if self.weight_sparsity is not None and not 0 < self.weight_sparsity <= 1:
            raise ValueError(
                f"weight_sparsity: expected a nonzero fraction in (0, 1] or None, got {self.weight_sparsity!r}"
            )
        # Fields TransformerLens tools read.
        self.uses_rms_norm = self.normalization_type == "RMS"
        self.final_rms = self.uses_rms_norm
        self.positional_embedding_type = "standard" if self.positional_embeddings else "none"
        self.attn_only = False
        self.gated_mlp = False
        # TransformerLens's optional hooks (use_attn_result and use_split_qkv_input are TL config
        # fields): runtime switches (model.set_use_attn_result etc.), not saved with the model.
        self.use_attn_in = False
        self.use_hook_mlp_in = False
        self.model_name = "HookedSparseTransformer"
        self.tokenizer_prepends_bos = False  # the model prepends BOS (default_prepend_bos), not the tokenizer
        self.original_architecture = "HookedSparseTransformer"
        self.d_vocab_out = self.d_vocab

    # ---- sparsity helpers -------------------------------------------------------------------
    def sparsity_at(self, location: str) -> Optional[float]:
        """The AbsTopK fraction at a location, or None if that location is dense."""
        if location not in SPARSITY_LOCATIONS:
            raise KeyError(f"unknown sparsity location {location!r}; known: {list(SPARSITY_LOCATIONS)}")
        if self.activation_sparsity is None or location not in self.activation_sparsity_locations:
            return None
        return self.activation_sparsity

    # ---- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the constructor fields (derived TL fields are recomputed on load)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if not f.init:
                continue
            value = getattr(self, f.name)
            if f.name not in _OWN_FIELDS:
                continue
            if isinstance(value, torch.dtype):
                value = str(value).removeprefix("torch.")
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any]) -> "SparseTransformerConfig":
        """A config from constructor fields; fields not given take the library's defaults (for
        configs a user writes). A config read back from a file goes through :meth:`from_saved_dict`."""
        unknown = sorted(set(config_dict) - _OWN_FIELDS)
        if unknown:
            raise ValueError(f"config: unknown field(s) {unknown}; known: {sorted(_OWN_FIELDS)}")
        return cls(**config_dict)

    def to_saved_dict(self) -> dict[str, Any]:
        """What ``config.json`` holds: the format version and every field that defines the model
        (``device``, where it runs, is not saved: ``from_pretrained(..., device=)`` chooses it)."""
        saved = {k: v for k, v in self.to_dict().items() if k not in _RUNTIME_FIELDS}
        return {FORMAT_VERSION_FIELD: FORMAT_VERSION, **saved}

    @classmethod
    def from_saved_dict(cls, data: dict[str, Any], source: str = "config", **overrides: Any) -> "SparseTransformerConfig":
        """A config read from a file (``config.json``, a training checkpoint): migrated from its format
        version to the current one, and every field that changes the computation must be there (a
        missing one is an error naming it, never the library default). ``overrides`` then replace
        fields (e.g. ``device``)."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object of config fields")
        fields_ = migrate_saved_config(data, source)
        fields_.update(overrides)
        try:
            return cls.from_dict(fields_)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{source}: {err}") from err

    def to_json(self, path: str | Path) -> None:
        from sparse_lens.io import atomic_write_text

        atomic_write_text(path, self.to_json_text(), argument="config")

    def to_json_text(self) -> str:
        return json.dumps(self.to_saved_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, path: str | Path, **overrides: Any) -> "SparseTransformerConfig":
        try:
            data = json.loads(Path(path).read_text()) if Path(path).stat().st_size else None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object of config fields")
        return cls.from_saved_dict(data, source=str(path), **overrides)

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"SparseTransformerConfig({body})"


_OWN_FIELDS = frozenset(
    {
        "n_layers", "d_model", "n_ctx", "d_vocab", "d_head", "n_heads", "d_mlp", "act_fn",
        "normalization_type", "eps", "ln_bias", "residual_activation", "positional_embeddings",
        "bigram_table", "attention_sink", "tied_embeddings", "use_bias", "final_logits_bias",
        "activation_sparsity", "activation_sparsity_locations", "weight_sparsity", "seed", "dtype",
        "device", "default_prepend_bos", "tokenizer_name",
    }
)

# ---- saved format ------------------------------------------------------------------------------
# Version 1: the fields of `to_dict` with no version field (sparse_lens 0.1 before versioning).
# Version 2: adds FORMAT_VERSION_FIELD; `device` is no longer saved (where a model runs is chosen when
# it is loaded); every field that changes the computation is required.
FORMAT_VERSION_FIELD = "format_version"
FORMAT_VERSION = 2
_RUNTIME_FIELDS = frozenset({"device"})
# Fields a saved config may omit: bookkeeping that does not change what the model computes.
_OPTIONAL_SAVED_FIELDS = frozenset({"seed", "weight_sparsity", "tokenizer_name"}) | _RUNTIME_FIELDS
REQUIRED_SAVED_FIELDS = _OWN_FIELDS - _OPTIONAL_SAVED_FIELDS


def _migrate_v1(fields_: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2: the same fields; the saved `device` is dropped (version 1 ignored it: the
    weights were loaded on the CPU whatever it said)."""
    fields_.pop("device", None)
    return fields_


_MIGRATIONS = {1: _migrate_v1}  # version -> function to version + 1


def migrate_saved_config(data: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """The constructor fields of a saved config of any known format version, in the current format;
    a field that changes the computation and is missing is an error naming it."""
    fields_ = dict(data)
    version = fields_.pop(FORMAT_VERSION_FIELD, 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{source}: {FORMAT_VERSION_FIELD}: expected a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{source}: {FORMAT_VERSION_FIELD} {version} was written by a newer sparse_lens "
            f"(this one reads versions 1 to {FORMAT_VERSION}); upgrade sparse_lens"
        )
    while version < FORMAT_VERSION:
        fields_ = _MIGRATIONS[version](fields_)
        version += 1
    missing = sorted(REQUIRED_SAVED_FIELDS - set(fields_))
    if missing:
        raise ValueError(
            f"{source}: missing field(s) {missing}; a saved config must give every field that changes "
            "the computation (the library's defaults are not necessarily the model's)"
        )
    return fields_
