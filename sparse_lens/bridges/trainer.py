"""Training a weight-sparse model jointly with bridges to a frozen dense model.

`BridgeTrainer` is the pretraining :class:`~sparse_lens.training.Trainer` with its extension points
filled in, so a bridge run has everything a pretraining run has — the weight-sparsity schedule and
top-k projection (on the sparse model only), the authors' optimizer (Adam eps 0.1, gradient RMS
normalization and manual weight decay, over the sparse model *and* the bridges), the LR schedule,
the progress bar, metrics to JSONL and TensorBoard, atomic checkpoints, bit-identical resume, the
Ctrl-C checkpoint and torchrun DDP:

* the model is the sparse model (``bridges.sparse_init`` or a new one from ``model``);
* the trained module is a :class:`~sparse_lens.bridges.BridgedPair` (sparse model + bridges; DDP
  wraps it), so its loss is the weighted sum of App. A.3 and every term is logged per site;
* a checkpoint adds ``bridges.safetensors`` + ``bridges.json`` beside ``model.safetensors`` (the
  sparse model alone, so ``from_pretrained(run)`` and ``sparse-lens tasks eval run`` load it);
* each evaluation adds the bridge metrics on ``bridges.eval_rows`` validation rows.

Python API::

    from sparse_lens.bridges import train_bridges
    result = train_bridges("sparse_lens/bridges/configs/python-bridged-tiny.yaml")
    result = train_bridges(cfg, dense_model=tl_model)     # any TransformerLens dense model

CLI: ``sparse-lens bridges train CONFIG.yaml [--resume] [--out DIR] [--max-steps N] ...``.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any, Optional, Union

import torch

from sparse_lens.bridges.bridge import Bridges
from sparse_lens.bridges.config import BridgeTrainingConfig
from sparse_lens.bridges.pair import BridgedPair
from sparse_lens.model import HookedSparseTransformer, SparseTransformerConfig
from sparse_lens.training.data import TokenData
from sparse_lens.training.trainer import Trainer, TrainingDiverged, TrainResult

# Fields that may differ between bridges.sparse_init's config and the model section.
_MODEL_FREE_FIELDS = ("seed", "device", "tokenizer_name")


class BridgeTrainer(Trainer):
    """See the module docstring. ``dense_model``: a model object for the dense side (e.g. a
    TransformerLens model) instead of loading ``bridges.dense`` by name."""

    config: BridgeTrainingConfig

    def __init__(
        self,
        config: Union[BridgeTrainingConfig, dict, str, Path],
        *,
        resume: Union[bool, str, Path] = False,
        stop_after: Optional[int] = None,
        data: Optional[TokenData] = None,
        dense_model: Any = None,
    ):
        self._dense_model = dense_model
        self._first_bad: Optional[str] = None
        super().__init__(as_bridge_config(config), resume=resume, stop_after=stop_after, data=data)

    # ------------------------------------------------------------------ extension points
    def _build_model(self, model_cfg: SparseTransformerConfig, data: TokenData) -> HookedSparseTransformer:
        b = self.config.bridges
        device = self.ctx.device
        dense = self._dense_model if self._dense_model is not None else _load_model(b.dense, "bridges.dense")
        dense.to(device)
        if b.sparse_init is not None:
            sparse = _load_model(b.sparse_init, "bridges.sparse_init").to(device)
            _check_same_architecture(sparse.cfg, model_cfg, b.sparse_init)
            if data.tokenizer is not None:
                sparse.set_tokenizer(data.tokenizer)
        else:
            sparse = super()._build_model(model_cfg, data)
        if b.freeze_bigram:
            if not getattr(sparse.cfg, "bigram_table", False):
                raise ValueError("bridges.freeze_bigram: the sparse model has no bigram table")
            sparse.bigram.W_bigram.requires_grad_(False)  # out of the optimizer (Trainer takes requires_grad params)
        self.pair = BridgedPair(dense, sparse, encoder_topk=b.encoder_topk, seed=self.config.seed)
        if b.init == "lstsq" and self.resume_state is None:
            self._fit_bridges(data)
        return sparse

    def _trainable_module(self) -> torch.nn.Module:
        return self.pair

    def _batch_loss(self, chunk: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        b = self.config.bridges
        autocast = (torch.autocast(self.ctx.device.type, dtype=getattr(torch, b.autocast_dtype))
                    if b.autocast_dtype else nullcontext())
        kl_sites = None
        if b.kl_sites_per_step is not None:  # the same draw on every rank and micro-batch of a step
            g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self._step_index)
            kl_sites = sorted(torch.randperm(self.pair.n_sites, generator=g)[: b.kl_sites_per_step].tolist())
        with autocast:
            losses = self.forward_model(chunk, b.weights, kl_sites)
        if self._first_bad is None:
            self._first_bad = losses.first_nonfinite()
        return losses.total, losses.record()

    def _train_step(self, step: int) -> dict[str, Any]:
        self._first_bad = None
        self._step_index = step
        try:
            return super()._train_step(step)
        except TrainingDiverged as err:
            if self._first_bad is None:
                raise
            raise TrainingDiverged(f"{err}. Non-finite bridge loss term: {self._first_bad}") from None

    def _checkpoint_files(self) -> dict[str, Any]:
        return self.pair.bridges.file_writers(self.pair.dense, self.pair.sparse_side)

    def _load_checkpoint(self, directory: Path, state: dict[str, Any]) -> None:
        super()._load_checkpoint(directory, state)  # sparse model, optimizer (sparse + bridges), RNG
        saved = Bridges.load(directory, dense=self.pair.dense, sparse=self.pair.sparse_side)
        if saved.encoder_topk != self.pair.bridges.encoder_topk:
            raise ValueError(f"resume: {directory} has encoders with AbsTopK {saved.encoder_topk}, "
                             f"this run's are {self.pair.bridges.encoder_topk}")
        with torch.no_grad():
            self.pair.bridges.load_state_dict(saved.state_dict())  # same Parameter objects: the optimizer keeps them

    def _evaluation_record(self) -> dict[str, Any]:
        record = super()._evaluation_record()
        rows = self.config.bridges.eval_rows
        if rows and self.ctx.is_main:
            from sparse_lens.bridges.evaluate import evaluate_bridges

            result = evaluate_bridges(self.pair, self.data.validation[:rows], batch_size=max(1, min(self.micro, rows)))
            self.pair.train()
            record["val_dense_loss"] = result.dense_loss
            record["val_sparse_kl"] = result.sparse_kl
            for metric, values in result.per_site.items():
                record[f"val_{metric}"] = dict(zip(result.sites, values))
        return record

    # ------------------------------------------------------------------ helpers
    @torch.no_grad()
    def _fit_bridges(self, data: TokenData) -> None:
        """Least-squares initial bridges from ``init_rows`` training rows (a seeded draw)."""
        b = self.config.bridges
        g = torch.Generator().manual_seed(self.config.seed)
        rows = data.train[torch.randperm(data.train.shape[0], generator=g)[: b.init_rows]].to(self.ctx.device)
        h_dense: list[list[torch.Tensor]] = [[] for _ in range(self.pair.n_sites)]
        h_sparse: list[list[torch.Tensor]] = [[] for _ in range(self.pair.n_sites)]
        for chunk in rows.split(max(1, self.micro)):
            for side, store in ((self.pair.dense, h_dense), (self.pair.sparse_side, h_sparse)):
                _, residuals = side.forward_with_sites(chunk)
                for i, h in enumerate(residuals):
                    store[i].append(h.float())
        self.pair.bridges.fit_least_squares([torch.cat(h) for h in h_dense], [torch.cat(h) for h in h_sparse],
                                            ridge=b.init_ridge)


def as_bridge_config(config: Union[BridgeTrainingConfig, dict, str, Path]) -> BridgeTrainingConfig:
    if isinstance(config, BridgeTrainingConfig):
        return config
    if isinstance(config, dict):
        return BridgeTrainingConfig.from_dict(config)
    import json

    import yaml

    path = Path(config)
    if not path.is_file():
        raise FileNotFoundError(f"config: no file {path}")
    try:
        data = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        raise ValueError(f"config: {path} is not valid YAML/JSON ({err})") from err
    return BridgeTrainingConfig.from_dict(data or {})


def train_bridges(
    config: Union[BridgeTrainingConfig, dict, str, Path],
    *,
    resume: Union[bool, str, Path] = False,
    stop_after: Optional[int] = None,
    data: Optional[TokenData] = None,
    dense_model: Any = None,
) -> TrainResult:
    """Train (or continue training) a bridged sparse model; see :class:`BridgeTrainer`."""
    trainer = BridgeTrainer(config, resume=resume, stop_after=stop_after, data=data, dense_model=dense_model)
    try:
        return trainer.run()
    finally:
        trainer.close()


def _load_model(name_or_dir: str, argument: str) -> HookedSparseTransformer:
    try:
        return HookedSparseTransformer.from_pretrained(name_or_dir)
    except FileNotFoundError as err:
        raise ValueError(f"{argument}: {err}") from err


def _check_same_architecture(loaded: SparseTransformerConfig, wanted: SparseTransformerConfig, name: str) -> None:
    import json

    a, b = loaded.to_dict(), wanted.to_dict()
    same = lambda k: json.dumps(a.get(k), default=str) == json.dumps(b.get(k), default=str)  # noqa: E731
    diffs = [k for k in sorted(set(a) | set(b)) if k not in _MODEL_FREE_FIELDS and not same(k)]
    if diffs:
        shown = "; ".join(f"{k}: {a.get(k)!r} ({name}) != {b.get(k)!r} (model section)" for k in diffs[:6])
        raise ValueError(f"model: the model section differs from bridges.sparse_init — {shown}")
