"""`TrainingConfig`: everything a pretraining run needs, as one YAML/JSON-serialisable dataclass.

Sections (each a dataclass, one per paper concept)::

    model:     SparseTransformerConfig fields (architecture, AbsTopK activation sparsity, and
               ``weight_sparsity`` = the target nonzero fraction of the sparse matrices; None = dense)
    data:      DataConfig       corpus / tokenizer / validation split
    optimizer: OptimizerConfig  Adam(eps=0.1) + manual weight decay + gradient RMS normalization + LR schedule
    sparsity:  SparsityConfig   annealing window, min nonzeros per neuron, which tensors are sparse
    (top level) run length, batch sizes, evaluation / checkpoint / logging cadence, out_dir, seed

Every value is validated by :meth:`TrainingConfig.validate` before any training starts; an invalid
value raises ``ValueError`` whose message starts with the dotted field name (``sparsity.min_nonzero_per_neuron: ...``).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from sparse_lens.model import SparseTransformerConfig

GRAD_NORM_MODES = ("normalize", "clip", "none")
LR_DECAYS = ("linear", "cosine", "constant")
MIN_NONZERO_MODES = ("neuron", "fan_in")
DATA_SOURCES = ("corpus", "tokens", "synthetic")


@dataclass
class DataConfig:
    """Where the tokens come from (see :mod:`sparse_lens.training.data`).

    source:
        ``corpus``     ``corpus`` loaded with ``sparse_lens.data.load_corpus`` ("default" = this machine's
                       standard library + site-packages .py files; "stdlib"; a directory; a file; a list),
                       split by file, tokenized with ``tokenizer_path`` and packed to n_ctx
        ``tokens``     a pre-packed ``.safetensors`` file (``paths[0]``) with ``train`` / ``validation`` int tensors
        ``synthetic``  random-but-learnable token streams (tests, benchmarks); no tokenizer
    """

    source: str = "corpus"
    corpus: Union[str, list[str]] = "default"
    paths: list[str] = field(default_factory=list)  # source "tokens": the token file
    val_fraction: float = 0.02  # fraction of *files* held out (split by a hash of the file name)
    tokenizer_path: Optional[str] = None  # tokenizer.json; None = the shipped tokenizer-python-2k; trained + saved here if missing
    vocab_size: int = 2048  # BPE vocabulary when a tokenizer has to be trained
    cache_dir: Optional[str] = None  # corpus / packed-token cache (None: $SPARSE_LENS_CACHE or ~/.cache/sparse_lens)
    max_files: Optional[int] = None  # keep the first N files (sorted by name), for quick runs
    synthetic_rows: int = 512  # source "synthetic": train rows (validation gets 1/8 of it)
    # source "corpus": extra training rows made of the code around a rare pattern (see
    # sparse_lens.data.excerpts), each a mapping {pattern: regex, repeat: N, context_chars: 400,
    # after_lines: 2}; the excerpts come from the train split only and are appended N times
    oversample: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class OptimizerConfig:
    """The authors' optimizer (paper Sec. 4 / their train script): Adam, not AdamW."""

    lr: float = 3e-3
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 0.1  # unusually large, as in the paper
    weight_decay: float = 0.1  # applied manually after the step: p -= weight_decay * lr * p (matrices only)
    grad_norm: str = "normalize"  # "normalize": grad /= (RMS + 1e-5) every step | "clip": only if RMS > grad_rms | "none"
    grad_rms: float = 1.0  # target RMS for "normalize", ceiling for "clip"
    warmup_fraction: float = 0.01
    lr_decay: str = "linear"  # after warmup: "linear" to 0 at the last step (authors) | "cosine" | "constant"
    min_lr_fraction: float = 0.0  # floor of the decay, as a fraction of lr
    sharkfin: bool = False  # LR x sqrt(target_L0 / current_L0) while the L0 anneals (authors' pfrac script: on)


@dataclass
class SparsityConfig:
    """Weight sparsity (paper Sec. 2). The target fraction itself is ``model.weight_sparsity``."""

    anneal_start: float = 0.01  # fraction of training where the kept fraction starts to fall from 1.0
    anneal_end: float = 0.5  # ... and reaches the target
    min_nonzero_per_neuron: int = 4  # j: never fewer than j nonzeros per neuron / attention channel (0 = off)
    min_nonzero_mode: str = "neuron"  # "neuron": fan-in AND fan-out of every MLP neuron and q/k/v/z channel (authors)
    #                                   "fan_in": fan-in of every output unit of every block matrix (incl. residual dims)
    sparse_embeddings: bool = True  # W_E (and W_pos if present)
    sparse_unembedding: bool = True  # W_U (with tied embeddings W_E is one matrix, governed by sparse_embeddings)
    sparse_biases: bool = True  # b_Q/b_K/b_V/b_O/b_in/b_out/b_U
    embed_bias_fraction_scale: float = 1.0  # embeddings/unembedding/biases keep min(1, scale x target); authors' script: 4


@dataclass
class TrainingConfig:
    model: SparseTransformerConfig
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    train_tokens: Optional[int] = None  # run length in tokens (steps = train_tokens // (batch_size * n_ctx))
    train_steps: Optional[int] = None  # or in steps (takes precedence)
    batch_size: int = 32  # global batch, in sequences of n_ctx tokens
    micro_batch_size: Optional[int] = None  # per-process forward/backward chunk (gradient accumulation); None = batch_size / world_size
    eval_every: int = 200  # steps; 0 = never (the final step is always evaluated)
    eval_batches: int = 8  # validation batches of batch_size sequences per evaluation
    checkpoint_every: int = 500  # steps; 0 = only at the end / on interrupt
    keep_checkpoints: int = 3  # most recent checkpoints kept (0 = all)
    log_every: int = 10  # steps between JSONL / TensorBoard records
    out_dir: str = "runs/train"
    seed: int = 0
    init_from: Optional[str] = None  # continued training: start from these weights (a shipped model, a model directory, a run or one of its checkpoints) instead of a random init; the architecture must match; optimizer and schedule start afresh
    device: str = "auto"  # "auto" (cuda if available, else cpu) | "cpu" | "cuda"
    num_threads: Optional[int] = None  # torch.set_num_threads per process (None: torch default)
    grad_reduce_dtype: str = "float32"  # DDP gradient all-reduce precision; "float64" makes the average (nearly) independent of the reduction order for > 2 processes, at twice the traffic
    tensorboard: bool = True
    progress_bar: bool = True

    # ------------------------------------------------------------------ construction
    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = _model_config(self.model)
        for name, cls in (("data", DataConfig), ("optimizer", OptimizerConfig), ("sparsity", SparsityConfig)):
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, _section(cls, value, name))
        self.optimizer.betas = tuple(self.optimizer.betas)  # type: ignore[assignment]
        self.data.paths = [str(p) for p in self.data.paths]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainingConfig":
        if not isinstance(data, dict):
            raise ValueError("config: expected a mapping of sections and fields")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"config: unknown field(s) {unknown}; known: {sorted(known)}")
        if "model" not in data:
            raise ValueError("model: missing section (the SparseTransformerConfig fields)")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, SparseTransformerConfig):
                value = value.to_dict()
            elif is_dataclass(value):
                value = asdict(value)
                value = {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
            out[f.name] = value
        return out

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainingConfig":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config: no file {path}")
        text = path.read_text()
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (yaml.YAMLError, json.JSONDecodeError) as err:
            raise ValueError(f"config: {path} is not valid YAML/JSON ({err})") from err
        return cls.from_dict(data or {})

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            from sparse_lens.io import atomic_write_text

            atomic_write_text(path, text)
        return text

    # ------------------------------------------------------------------ derived values
    @property
    def n_ctx(self) -> int:
        return self.model.n_ctx

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.model.n_ctx

    @property
    def total_steps(self) -> int:
        if self.train_steps is not None:
            return int(self.train_steps)
        assert self.train_tokens is not None
        return int(self.train_tokens) // self.tokens_per_step

    @property
    def sparse(self) -> bool:
        return self.model.weight_sparsity is not None

    def fingerprint_dict(self) -> dict[str, Any]:
        """The fields that must match for a checkpoint to be resumed (the run's math, not its bookkeeping)."""
        d = self.to_dict()
        for path in _RESUME_FREE_FIELDS:
            *sections, key = path.split(".")
            node = d
            for section in sections:
                node = node.get(section, {})
            node.pop(key, None)
        return d

    # ------------------------------------------------------------------ validation
    def validate(self, world_size: int = 1) -> None:
        """Raise ValueError naming the field for any value that cannot work. Cheap; no data access."""
        m, o, s, d = self.model, self.optimizer, self.sparsity, self.data
        if m.weight_sparsity is not None and not 0 < m.weight_sparsity <= 1:
            raise ValueError(f"model.weight_sparsity: expected a nonzero fraction in (0, 1] or None, got {m.weight_sparsity!r}")
        if self.train_steps is None and self.train_tokens is None:
            raise ValueError("train_steps: give train_steps or train_tokens")
        _positive_int(self, "batch_size")
        if self.train_steps is not None:
            _positive_int(self, "train_steps")
        elif self.total_steps < 1:
            raise ValueError(
                f"train_tokens: {self.train_tokens} tokens is less than one step of batch_size x n_ctx = {self.tokens_per_step}"
            )
        for name in ("eval_every", "checkpoint_every", "keep_checkpoints", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
        _positive_int(self, "eval_batches")
        if self.log_every == 0:
            raise ValueError("log_every: expected a positive integer, got 0")
        if self.batch_size % world_size:
            raise ValueError(f"batch_size: {self.batch_size} is not divisible by the number of processes ({world_size})")
        per_rank = self.batch_size // world_size
        if self.micro_batch_size is not None:
            _positive_int(self, "micro_batch_size")
            if per_rank % self.micro_batch_size:
                raise ValueError(
                    f"micro_batch_size: {self.micro_batch_size} does not divide the per-process batch "
                    f"({self.batch_size} / {world_size} processes = {per_rank})"
                )
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.grad_reduce_dtype not in ("float32", "float64"):
            raise ValueError(f"grad_reduce_dtype: expected 'float32' or 'float64', got {self.grad_reduce_dtype!r}")
        if self.num_threads is not None:
            _positive_int(self, "num_threads")
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from.strip()):
            raise ValueError(f"init_from: expected the path or name of a model to start from, got {self.init_from!r}")

        # optimizer
        if not (isinstance(o.lr, (int, float)) and math.isfinite(o.lr) and o.lr > 0):
            raise ValueError(f"optimizer.lr: expected a positive number, got {o.lr!r}")
        if len(o.betas) != 2 or not all(0 <= b < 1 for b in o.betas):
            raise ValueError(f"optimizer.betas: expected two numbers in [0, 1), got {o.betas!r}")
        if not o.eps > 0:
            raise ValueError(f"optimizer.eps: expected > 0, got {o.eps!r}")
        if not o.weight_decay >= 0:
            raise ValueError(f"optimizer.weight_decay: expected >= 0, got {o.weight_decay!r}")
        if o.grad_norm not in GRAD_NORM_MODES:
            raise ValueError(f"optimizer.grad_norm: expected one of {GRAD_NORM_MODES}, got {o.grad_norm!r}")
        if not o.grad_rms > 0:
            raise ValueError(f"optimizer.grad_rms: expected > 0, got {o.grad_rms!r}")
        if not 0 <= o.warmup_fraction < 1:
            raise ValueError(f"optimizer.warmup_fraction: expected a fraction in [0, 1), got {o.warmup_fraction!r}")
        if o.lr_decay not in LR_DECAYS:
            raise ValueError(f"optimizer.lr_decay: expected one of {LR_DECAYS}, got {o.lr_decay!r}")
        if not 0 <= o.min_lr_fraction <= 1:
            raise ValueError(f"optimizer.min_lr_fraction: expected a fraction in [0, 1], got {o.min_lr_fraction!r}")

        # sparsity
        if not 0 <= s.anneal_start <= 1:
            raise ValueError(f"sparsity.anneal_start: expected a fraction of training in [0, 1], got {s.anneal_start!r}")
        if not s.anneal_start <= s.anneal_end <= 1:
            raise ValueError(
                f"sparsity.anneal_end: expected a fraction in [anneal_start={s.anneal_start}, 1], got {s.anneal_end!r}"
            )
        j = s.min_nonzero_per_neuron
        if not isinstance(j, int) or isinstance(j, bool) or j < 0:
            raise ValueError(f"sparsity.min_nonzero_per_neuron: expected a non-negative integer, got {j!r}")
        if s.min_nonzero_mode not in MIN_NONZERO_MODES:
            raise ValueError(f"sparsity.min_nonzero_mode: expected one of {MIN_NONZERO_MODES}, got {s.min_nonzero_mode!r}")
        if not s.embed_bias_fraction_scale > 0:
            raise ValueError(f"sparsity.embed_bias_fraction_scale: expected > 0, got {s.embed_bias_fraction_scale!r}")
        if self.sparse and j > 0:
            from sparse_lens.training.weight_sparsity import neuron_fan_sizes

            for matrix, fan in neuron_fan_sizes(m, s.min_nonzero_mode).items():
                if j > fan:
                    raise ValueError(
                        f"sparsity.min_nonzero_per_neuron: j={j} is larger than the {fan} weights each neuron/channel "
                        f"of {matrix} has (min_nonzero_mode={s.min_nonzero_mode!r})"
                    )

        # data
        if d.source not in DATA_SOURCES:
            raise ValueError(f"data.source: expected one of {DATA_SOURCES}, got {d.source!r}")
        if d.source == "tokens" and not d.paths:
            raise ValueError("data.paths: source 'tokens' needs the path of a token file")
        if d.source == "corpus" and not d.corpus:
            raise ValueError("data.corpus: empty corpus — no source given")
        if not 0 < d.val_fraction < 1:
            raise ValueError(f"data.val_fraction: expected a fraction in (0, 1), got {d.val_fraction!r}")
        if not isinstance(d.vocab_size, int) or d.vocab_size < 257:
            raise ValueError(f"data.vocab_size: expected an integer >= 257 (byte-level BPE), got {d.vocab_size!r}")
        if d.source == "corpus" and d.vocab_size > m.d_vocab:
            raise ValueError(f"data.vocab_size: {d.vocab_size} exceeds model.d_vocab={m.d_vocab}")
        if d.max_files is not None and (not isinstance(d.max_files, int) or d.max_files < 1):
            raise ValueError(f"data.max_files: expected a positive integer or None, got {d.max_files!r}")
        _check_oversample(d)
        if d.source == "synthetic":
            if not isinstance(d.synthetic_rows, int) or d.synthetic_rows < 8:
                raise ValueError(f"data.synthetic_rows: expected an integer >= 8, got {d.synthetic_rows!r}")


# Fields (dotted paths) that may differ between a checkpoint and the run that resumes it (bookkeeping
# only). Where the tokenizer is read from is bookkeeping: what it is enters the data fingerprint
# (`tokenizer_hash`), which resume checks separately.
_RESUME_FREE_FIELDS = (
    "eval_every", "eval_batches", "checkpoint_every", "keep_checkpoints", "log_every", "out_dir",
    "tensorboard", "progress_bar", "num_threads", "micro_batch_size", "device", "data.tokenizer_path",
    "model.device",  # where the weights sit (the model's cfg.device follows .to()), not the run's math
)


def config_fingerprint(cfg: TrainingConfig) -> str:
    blob = json.dumps(cfg.fingerprint_dict(), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def config_differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Dotted paths where two (nested) config dicts differ."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, "<missing>"), b.get(key, "<missing>")
        path = f"{prefix}{key}"
        if isinstance(va, dict) and isinstance(vb, dict):
            out.extend(config_differences(va, vb, path + "."))
        elif _norm(va) != _norm(vb):
            out.append((path, va, vb))
    return out


OVERSAMPLE_DEFAULTS = {"context_chars": 400, "after_lines": 2}


def _check_oversample(d: DataConfig) -> None:
    if not isinstance(d.oversample, list):
        raise ValueError(f"data.oversample: expected a list of {{pattern, repeat}} mappings, got {d.oversample!r}")
    if d.oversample and d.source != "corpus":
        raise ValueError(f"data.oversample: only for source 'corpus', not {d.source!r}")
    from sparse_lens.data.excerpts import compile_pattern

    allowed = {"pattern", "repeat", *OVERSAMPLE_DEFAULTS}
    for i, spec in enumerate(d.oversample):
        name = f"data.oversample[{i}]"
        if not isinstance(spec, dict):
            raise ValueError(f"{name}: expected a mapping with 'pattern' and 'repeat', got {spec!r}")
        unknown = sorted(set(spec) - allowed)
        if unknown or "pattern" not in spec or "repeat" not in spec:
            raise ValueError(f"{name}: expected keys 'pattern', 'repeat' (and optionally {sorted(OVERSAMPLE_DEFAULTS)}), got {sorted(spec)}")
        try:
            compile_pattern(spec["pattern"])
        except ValueError as err:
            raise ValueError(f"{name}.{err}") from err
        for key, lowest in (("repeat", 1), ("context_chars", 0), ("after_lines", 0)):
            value = spec.get(key, OVERSAMPLE_DEFAULTS.get(key))
            if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
                kind = "a positive" if lowest else "a non-negative"
                raise ValueError(f"{name}.{key}: expected {kind} integer, got {value!r}")


def _norm(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _positive_int(obj: Any, name: str, prefix: str = "") -> None:
    value = getattr(obj, name)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{prefix}{name}: expected a positive integer, got {value!r}")


def _model_config(data: dict[str, Any]) -> SparseTransformerConfig:
    try:
        return SparseTransformerConfig.from_dict(dict(data))
    except (ValueError, TypeError) as err:
        raise ValueError(f"model.{err}") from err


def _section(cls: type, data: dict[str, Any], name: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{name}: unknown field(s) {unknown}; known: {sorted(known)}")
    return cls(**data)
