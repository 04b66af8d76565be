"""`BridgeTrainingConfig`: a pretraining config (:class:`~sparse_lens.training.TrainingConfig`) plus a
``bridges`` section — which dense model, where the sparse model starts, the loss weights.

Every pretraining field keeps its meaning: ``model`` is the sparse model's architecture (optional
when ``bridges.sparse_init`` names a pretrained model: its config is used), ``data`` the token
stream (its tokenizer must be the dense model's), ``optimizer`` / ``sparsity`` the authors' optimizer
and the weight-sparsity schedule (which acts on the sparse model only), and the run fields the same
cadence of evaluation, checkpoints and logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Union

from sparse_lens.bridges.losses import LossWeights
from sparse_lens.model import SparseTransformerConfig
from sparse_lens.training.config import TrainingConfig, _section

INITS = ("lstsq", "random")
AUTOCAST_DTYPES = ("bfloat16", "float16")


@dataclass
class BridgeConfig:
    """The ``bridges`` section.

    dense:         the frozen dense model: a shipped name or a directory (``from_pretrained``)
    sparse_init:   a pretrained sparse model to start from (name or directory), or None to train the
                   sparse model from scratch (``model`` section, random init)
    encoder_topk:  AbsTopK fraction of the encoders; "sparse" = the sparse model's activation_sparsity
    init:          "lstsq": each f_i / g_i starts as the ridge least-squares map between the two
                   models' residuals on ``init_rows`` training rows; "random": PyTorch's Linear init
    weights:       the loss weights (see :class:`~sparse_lens.bridges.losses.LossWeights`)
    kl_sites_per_step: None (every site, the written objective) or k: each step computes the two KL
                   terms at k sites drawn uniformly (seeded by seed and step) and scales their sum by
                   n_sites / k — an unbiased estimate that makes a step cheaper; evaluation and every
                   reported KL still use all sites, exactly
    eval_rows:     validation rows for the bridge metrics at every evaluation (0: none)
    autocast_dtype: None (float32) or "bfloat16"/"float16": forward passes under torch.autocast;
                   master weights, gradients and Adam state stay float32, KL and NMSE in float32
    freeze_bigram: keep the sparse model's dense bigram table (d_vocab² weights, the bulk of a small
                   model's bytes) as ``sparse_init`` left it: not trained, not in the optimizer, so a
                   shipped bridged model can store its other weights alone and take the table from
                   ``sparse_init`` (see sparse_lens/bridges/pretrained.py)
    """

    dense: str = "python-dense-tiny"
    sparse_init: Optional[str] = None
    encoder_topk: Union[float, None, str] = "sparse"
    init: str = "lstsq"
    init_rows: int = 64
    init_ridge: float = 1e-3
    weights: LossWeights = field(default_factory=LossWeights)
    kl_sites_per_step: Optional[int] = None
    eval_rows: int = 32
    autocast_dtype: Optional[str] = None
    freeze_bigram: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.weights, dict):
            self.weights = _section(LossWeights, self.weights, "bridges.weights")

    def validate(self) -> None:
        if not isinstance(self.dense, str) or not self.dense:
            raise ValueError(f"bridges.dense: expected the name or directory of the dense model, got {self.dense!r}")
        if self.sparse_init is not None and (not isinstance(self.sparse_init, str) or not self.sparse_init):
            raise ValueError(f"bridges.sparse_init: expected a model name or directory, or null, got {self.sparse_init!r}")
        topk = self.encoder_topk
        if topk != "sparse" and topk is not None and (isinstance(topk, bool) or not isinstance(topk, (int, float)) or not 0 < topk <= 1):
            raise ValueError(f"bridges.encoder_topk: expected 'sparse', a fraction in (0, 1] or null, got {topk!r}")
        if self.init not in INITS:
            raise ValueError(f"bridges.init: expected one of {INITS}, got {self.init!r}")
        for name in ("init_rows", "eval_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "init_rows" else 0):
                raise ValueError(f"bridges.{name}: expected {'a positive' if name == 'init_rows' else 'a non-negative'} integer, got {value!r}")
        if isinstance(self.init_ridge, bool) or not isinstance(self.init_ridge, (int, float)) or not self.init_ridge >= 0:
            raise ValueError(f"bridges.init_ridge: expected a number >= 0, got {self.init_ridge!r}")
        k = self.kl_sites_per_step
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(f"bridges.kl_sites_per_step: expected a positive integer or null, got {k!r}")
        if self.autocast_dtype is not None and self.autocast_dtype not in AUTOCAST_DTYPES:
            raise ValueError(f"bridges.autocast_dtype: expected null or one of {AUTOCAST_DTYPES}, got {self.autocast_dtype!r}")
        if not isinstance(self.freeze_bigram, bool):
            raise ValueError(f"bridges.freeze_bigram: expected true or false, got {self.freeze_bigram!r}")
        if self.freeze_bigram and self.sparse_init is None:
            raise ValueError("bridges.freeze_bigram: needs bridges.sparse_init (a table trained from scratch cannot stay frozen at zero)")
        self.weights.validate("bridges.weights.")


@dataclass
class BridgeTrainingConfig(TrainingConfig):
    bridges: BridgeConfig = field(default_factory=BridgeConfig)

    def __post_init__(self) -> None:
        if isinstance(self.bridges, dict):
            self.bridges = _section(BridgeConfig, self.bridges, "bridges")
        super().__post_init__()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BridgeTrainingConfig":
        """As TrainingConfig.from_dict; without a ``model`` section, the model config of
        ``bridges.sparse_init`` is used."""
        if not isinstance(data, dict):
            raise ValueError("config: expected a mapping of sections and fields")
        if "model" not in data:
            init = (data.get("bridges") or {}).get("sparse_init") if isinstance(data.get("bridges"), dict) else None
            if init is None:
                raise ValueError("model: missing section; give the sparse model's architecture or bridges.sparse_init")
            data = {**data, "model": pretrained_model_config(init)}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"config: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    def validate(self, world_size: int = 1) -> None:
        super().validate(world_size)
        self.bridges.validate()
        k, sites = self.bridges.kl_sites_per_step, 2 * self.model.n_layers
        if k is not None and k > sites:
            raise ValueError(f"bridges.kl_sites_per_step: {k} is more than the {sites} sites of a {self.model.n_layers}-layer model")


def pretrained_model_config(name_or_dir: str) -> dict[str, Any]:
    """The model config (as a dict) of a shipped model or a saved/run directory, without loading
    its weights."""
    import json

    from sparse_lens.model.checkpoint import resolve_pretrained
    from sparse_lens.model.run_checkpoints import is_training_output, read_state, resolve_checkpoint

    path = Path(name_or_dir)
    if path.is_dir() and is_training_output(path):
        state = read_state(resolve_checkpoint(path, "bridges.sparse_init"), "bridges.sparse_init")
        return dict(state["config"]["model"])
    try:
        directory = resolve_pretrained(name_or_dir)
    except (FileNotFoundError, ValueError) as err:
        raise ValueError(f"bridges.sparse_init: {err}") from err
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise ValueError(f"bridges.sparse_init: {directory} has no config.json (not a saved model)")
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"bridges.sparse_init: {path} is not valid JSON ({err})") from err
    config = SparseTransformerConfig.from_saved_dict(saved, source=str(path)).to_dict()
    config.pop("device", None)
    return config
