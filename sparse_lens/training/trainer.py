"""The pretraining loop: weight-sparse (or dense) training of a HookedSparseTransformer.

One optimizer step (``Trainer._train_step``), in the authors' order:

1. LR for this step: warmup / decay, times the sharkfin factor if configured (``schedule.lr_at``).
2. Forward + backward over this process's share of the global batch (micro-batches accumulate);
   DDP averages gradients across processes.
3. One all-reduce of [loss, stop flag]; a non-finite loss stops training here (nothing is applied).
4. Gradients normalized to RMS 1 (or clipped, or left alone).
5. ``Adam.step()`` (eps 0.1, no built-in weight decay).
6. Top-k projection of every sparse tensor to this step's kept fraction (``WeightSparsifier``).
7. Manual weight decay ``p -= wd * lr * p`` on the matrices (bigram table excluded).

Python API::

    from sparse_lens.training import TrainingConfig, train
    result = train("sparse_lens/training/configs/python-sparse-tiny.yaml")   # or a TrainingConfig
    result = train(cfg, resume=True)                                        # continue from the latest checkpoint

CLI: ``sparse-lens train CONFIG.yaml [--resume [CKPT]] [--out DIR] [--max-steps N] [--export CKPT --to DIR]``.
"""

from __future__ import annotations

import math
import random
import signal
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from sparse_lens.model import HookedSparseTransformer, SparseTransformerConfig
from sparse_lens.training import checkpoint as ckpt
from sparse_lens.training.config import TrainingConfig, config_differences, config_fingerprint
from sparse_lens.training.data import TokenData, batch_sampler, load_token_data
from sparse_lens.training.distributed import DistContext, all_reduce_sum, barrier, setup, teardown, wrap_ddp
from sparse_lens.training.metrics import MetricsLogger
from sparse_lens.training.optimizer import apply_weight_decay_, build_optimizer, decay_parameters, normalize_gradients_, set_lr
from sparse_lens.training.schedule import lr_at
from sparse_lens.training.weight_sparsity import WeightSparsifier


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; nothing from that step was applied or saved."""


@dataclass
class TrainResult:
    status: str  # "completed" | "interrupted" | "stopped" (stop_after reached)
    step: int  # optimizer steps completed
    checkpoint: Optional[Path]
    loss: Optional[float]  # last training loss
    val_loss: Optional[float]  # last validation loss
    out_dir: Path


class Trainer:
    """Build everything for a run (validating the config first), then :meth:`run` it.

    Args:
        config: a TrainingConfig, a dict, or a path to a YAML/JSON config.
        resume: False; True (latest checkpoint under ``out_dir``, error if none); "auto" (latest if
            any, else start fresh); or a checkpoint directory.
        stop_after: stop (with a checkpoint) once this many steps are completed, without changing the
            schedule, which always spans ``config.total_steps``.
        data: pre-built :class:`TokenData` (skips loading ``config.data``).
        allow_data_change: resume even when the data differs from the checkpoint's (its fingerprint
            changed: e.g. a ``corpus: default`` run resumed on a machine whose site-packages hold other
            package versions). The run goes on with the new data, from a batch order that is the same
            function of (seed, step) over it, so the resume is no longer bit-identical; each change is
            recorded in the checkpoint's ``data_changes`` (step, old and new fingerprint) and printed.
    """

    def __init__(
        self,
        config: Union[TrainingConfig, dict, str, Path],
        *,
        resume: Union[bool, str, Path] = False,
        stop_after: Optional[int] = None,
        data: Optional[TokenData] = None,
        allow_data_change: bool = False,
    ):
        self.config = cfg = _as_config(config)
        self.allow_data_change = allow_data_change
        self.data_changes: list[dict[str, Any]] = []
        self.ctx: DistContext = setup(cfg.device)
        self._threads_before = torch.get_num_threads()
        try:
            self._build(resume, stop_after, data)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ setup
    def _build(self, resume, stop_after, data) -> None:
        cfg, ctx = self.config, self.ctx
        cfg.validate(ctx.world_size)
        self._threads_before = torch.get_num_threads()
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.out_dir = Path(cfg.out_dir)
        self.total_steps = cfg.total_steps
        if stop_after is not None and stop_after < 0:
            raise ValueError(f"stop_after: expected >= 0, got {stop_after}")
        self.stop_after = stop_after

        # resume: check the checkpoint's config before touching data or weights
        self.resume_dir = self._resolve_resume(resume)
        if self.resume_dir is None and ckpt.list_checkpoints(self.out_dir):
            raise ValueError(
                f"out_dir: {self.out_dir} already holds checkpoints; resume them (--resume / resume=True) or "
                "choose another out_dir (--out)"
            )
        self.resume_state = None
        if self.resume_dir is not None:
            self.resume_state = ckpt.read_state(self.resume_dir)
            diffs = config_differences(_saved_fingerprint(self.resume_state, type(cfg)), cfg.fingerprint_dict())
            if diffs:
                shown = "; ".join(f"{p}: {a!r} (checkpoint) != {b!r} (now)" for p, a, b in diffs[:8])
                raise ValueError(f"resume: checkpoint {self.resume_dir} was written with a different config — {shown}")

        _seed_everything(cfg.seed)

        # data (rank 0 builds caches/tokenizer first)
        if data is None:
            if ctx.is_main:
                data = load_token_data(cfg.data, cfg.n_ctx, cfg.model.d_vocab, cfg.seed)
            barrier(ctx)
            if not ctx.is_main:
                data = load_token_data(cfg.data, cfg.n_ctx, cfg.model.d_vocab, cfg.seed)
        self.data = data
        if data.train.shape[1] != cfg.n_ctx or data.validation.shape[1] != cfg.n_ctx:
            raise ValueError(f"model.n_ctx: the data rows have {data.train.shape[1]} tokens, the model expects {cfg.n_ctx}")
        if data.validation.shape[0] == 0:
            raise ValueError("data.val_fraction: the validation split is empty")
        if self.resume_state is not None:
            self.data_changes = list(self.resume_state.get("data_changes", []))
            saved, now = self.resume_state.get("data", {}).get("fingerprint"), data.description.get("fingerprint")
            if saved is not None and saved != now:
                if not self.allow_data_change:
                    raise ValueError(
                        f"resume: data differs from checkpoint {self.resume_dir} (fingerprint {saved} != {now}); "
                        "pass allow_data_change=True (--allow-data-change) to go on with the new data"
                    )
                change = {"step": int(self.resume_state["step"]), "from": saved, "to": now,
                          "from_train_tokens": self.resume_state.get("data", {}).get("train_tokens"),
                          "to_train_tokens": data.description.get("train_tokens")}
                self.data_changes.append(change)
                if ctx.is_main:
                    print(f"resume: the data changed at step {change['step']} (fingerprint {saved} -> {now}; "
                          f"train tokens {change['from_train_tokens']} -> {change['to_train_tokens']}): going on "
                          "with the new data (--allow-data-change)", file=sys.stderr)
        self.sampler = batch_sampler(data.train, cfg.batch_size, cfg.seed, ctx.rank, ctx.world_size)
        self.per_rank = cfg.batch_size // ctx.world_size
        self.micro = cfg.micro_batch_size or self.per_rank

        # model, sparsifier, optimizer
        model_cfg = cfg.model
        if model_cfg.seed is None:
            model_cfg = type(cfg.model).from_dict({**cfg.model.to_dict(), "seed": cfg.seed})
        self.model = self._build_model(model_cfg, data)
        self.model.train()
        trainable = self._trainable_module()
        self.params = [p for p in trainable.parameters() if p.requires_grad]
        self.param_names = {id(p): n for n, p in trainable.named_parameters()}
        self.decay_params = decay_parameters(trainable)
        self.sparsifier = WeightSparsifier(self.model, cfg.model, cfg.sparsity, self.total_steps) if cfg.sparse else None
        self.optimizer = build_optimizer(self.params, cfg.optimizer, ctx.device)

        self._stop_requested = False
        self._phase = "idle"
        self.step = 0
        self.tokens_seen = 0
        self.last_val_loss: Optional[float] = None
        self.last_checkpoint: Optional[Path] = None
        self.elapsed = 0.0
        if self.resume_state is not None:
            self._load_checkpoint(self.resume_dir, self.resume_state)
        else:
            if cfg.init_from:
                self._initialize_from(cfg.init_from)
            if self.sparsifier is not None:
                self.sparsifier.project_(0)  # the fraction "before" step 0 (1.0 unless the anneal starts at 0)
        self.forward_model = wrap_ddp(trainable, ctx, cfg.grad_reduce_dtype)

    # ------------------------------------------------------------------ extension points
    # A subclass (sparse_lens.bridges.BridgeTrainer) trains more than the model with the same loop.
    def _build_model(self, model_cfg: SparseTransformerConfig, data: TokenData) -> HookedSparseTransformer:
        """The model being trained: weight sparsity, the validation loss and model.safetensors act on it."""
        model = HookedSparseTransformer(model_cfg).to(self.ctx.device)
        if data.tokenizer is not None:
            model.set_tokenizer(data.tokenizer)
        return model

    def _trainable_module(self) -> torch.nn.Module:
        """The module whose parameters the optimizer updates and DDP averages (optimizer state is saved
        under its parameter names): the model itself."""
        return self.model

    def _batch_loss(self, chunk: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """(the loss to backpropagate, extra metrics to log) of one micro-batch, through forward_model."""
        return self.forward_model(chunk, return_type="loss"), {}

    def _checkpoint_files(self) -> dict[str, Any]:
        """Extra files written into each checkpoint: {file name: write(path)}."""
        return {}

    def _evaluation_record(self) -> dict[str, Any]:
        """What an evaluation logs: the validation loss."""
        return {"val_loss": self.evaluate()}

    def _resolve_resume(self, resume) -> Optional[Path]:
        if resume is False or resume is None:
            return None
        if resume is True or resume == "auto":
            latest = ckpt.latest_checkpoint(self.out_dir)
            if latest is None and resume is True:
                raise ValueError(f"resume: no checkpoint under {ckpt.checkpoints_root(self.out_dir)}")
            return latest
        path = ckpt.resolve_checkpoint(resume, "resume")
        if not path.is_dir():
            raise ValueError(f"resume: {path} is not a checkpoint directory")
        return path

    def _initialize_from(self, source: str) -> None:
        """Continued training: copy the weights of ``source`` (a shipped model, a model directory, a run
        or a checkpoint) into the freshly built model. Everything but the sparsity fractions and
        bookkeeping fields of the architecture must match; the optimizer and the schedules start afresh."""
        from sparse_lens.model.checkpoint import load_state_dict_strict

        try:
            donor = HookedSparseTransformer.from_pretrained(source, device="cpu")
        except (FileNotFoundError, NotADirectoryError, ValueError) as err:
            raise ValueError(f"init_from: cannot load {source!r} ({err})") from err
        theirs, ours = donor.cfg.to_dict(), self.model.cfg.to_dict()
        differ = [k for k in sorted(set(theirs) | set(ours)) if k not in _INIT_FREE_FIELDS and theirs.get(k) != ours.get(k)]
        if differ:
            shown = "; ".join(f"{k}: {theirs.get(k)!r} ({source}) != {ours.get(k)!r} (model)" for k in differ[:8])
            raise ValueError(f"init_from: {source} has another architecture — {shown}")
        load_state_dict_strict(self.model, donor.state_dict(), source=f"init_from {source}")

    # ------------------------------------------------------------------ checkpoints
    def _load_checkpoint(self, directory: Path, state: dict[str, Any]) -> None:
        model_state, opt_tensors = ckpt.read_tensors(directory)
        from sparse_lens.model.checkpoint import load_state_dict_strict

        load_state_dict_strict(self.model, model_state, source=str(directory / ckpt.MODEL_FILE))
        ckpt.load_optimizer_tensors(self.optimizer, self.param_names, opt_tensors, str(directory / ckpt.OPTIMIZER_FILE))
        ckpt.set_rng_state(state["rng"], {k: v for k, v in opt_tensors.items() if k.startswith("rng::")})
        self.step = int(state["step"])
        self.tokens_seen = int(state["tokens"])
        self.last_val_loss = state.get("val_loss")
        self.elapsed = float(state.get("elapsed_s", 0.0))
        self.last_checkpoint = directory
        if self.step > self.total_steps:
            raise ValueError(f"resume: checkpoint is at step {self.step}, beyond train_steps={self.total_steps}")

    def save_checkpoint(self, extra: Optional[dict[str, Any]] = None) -> Optional[Path]:
        """Write a checkpoint of the completed steps (rank 0; other ranks wait)."""
        path = None
        if self.ctx.is_main:
            rng_json, rng_tensors = ckpt.rng_state()
            opt_tensors = ckpt.optimizer_tensors(self.optimizer, self.param_names)
            opt_tensors.update(rng_tensors)
            state = {
                "step": self.step,
                "tokens": self.tokens_seen,
                "total_steps": self.total_steps,
                "val_loss": self.last_val_loss,
                "elapsed_s": self.elapsed,
                "world_size": self.ctx.world_size,
                "config": self.config.to_dict(),
                "fingerprint": config_fingerprint(self.config),
                "fingerprint_config": self.config.fingerprint_dict(),
                "data": self.data.description,
                "data_step": self.step,  # the batch sampler is a function of (seed, step)
                "data_changes": self.data_changes,  # resumes that went on with other data (allow_data_change)
                "rng": rng_json,
                "torch_version": torch.__version__,
            }
            if self.sparsifier is not None:
                state["l0_current"] = self.sparsifier.block_fraction(max(self.step - 1, 0))
                state["nnz"] = self.sparsifier.nonzero_counts()
            state.update(extra or {})
            path = ckpt.save_checkpoint(
                ckpt.checkpoint_path(self.out_dir, self.step),
                model_state=self.model.state_dict(),
                optimizer_state=opt_tensors,
                state=state,
                config_yaml=self.config.to_yaml(),
                tokenizer=self.data.tokenizer,
                extra_files=self._checkpoint_files(),
            )
            ckpt.prune_checkpoints(self.out_dir, self.config.keep_checkpoints, protect=path)
        barrier(self.ctx)
        self.last_checkpoint = path if path is not None else ckpt.checkpoint_path(self.out_dir, self.step)
        return self.last_checkpoint

    # ------------------------------------------------------------------ one step
    def _train_step(self, step: int) -> dict[str, Any]:
        cfg, ctx = self.config, self.ctx
        fraction = self.sparsifier.block_fraction(step) if self.sparsifier else 1.0
        target = self.sparsifier.target if self.sparsifier else 1.0
        lr = lr_at(step, self.total_steps, cfg.optimizer, fraction, target)
        set_lr(self.optimizer, lr)
        self.optimizer.zero_grad(set_to_none=True)

        clock = time.perf_counter
        t0 = clock()
        rows = torch.from_numpy(self.sampler.indices(step))
        batch = self.data.train[rows].to(ctx.device, non_blocking=True)
        chunks = batch.split(self.micro)
        loss_sum = torch.zeros((), dtype=torch.float64, device=ctx.device)
        metrics: list[dict[str, Any]] = []
        self._phase = "backward"
        for i, chunk in enumerate(chunks):
            sync = i == len(chunks) - 1 or not ctx.enabled
            with nullcontext() if sync else self.forward_model.no_sync():
                loss, chunk_metrics = self._batch_loss(chunk)
                (loss / len(chunks) if len(chunks) > 1 else loss).backward()
            loss_sum += loss.detach().double()
            metrics.append(chunk_metrics)

        stop_flag = 1.0 if self._stop_requested else 0.0  # read late: a Ctrl-C during this step stops after it
        shared = torch.stack([loss_sum / len(chunks), torch.tensor(stop_flag, dtype=torch.float64, device=ctx.device)])
        all_reduce_sum(shared, ctx)
        mean_loss = float(shared[0]) / ctx.world_size
        if not math.isfinite(mean_loss):
            last = str(self.last_checkpoint) if self.last_checkpoint else "none (no checkpoint written yet)"
            raise TrainingDiverged(
                f"loss is {mean_loss} at step {step + 1} (optimizer step index {step}); training stopped before "
                f"applying it. Last good checkpoint: {last}"
            )

        self._phase = "update"
        t1 = clock()
        grad_rms = normalize_gradients_(self.params, cfg.optimizer.grad_norm, cfg.optimizer.grad_rms)
        t2 = clock()
        self.optimizer.step()
        t3 = clock()
        stats = self.sparsifier.project_(step) if self.sparsifier else {}
        t4 = clock()
        apply_weight_decay_(self.decay_params, cfg.optimizer.weight_decay, lr)
        t5 = clock()
        self._phase = "idle"
        times = {"forward_backward": t1 - t0, "grad_norm": t2 - t1, "adam": t3 - t2, "projection": t4 - t3, "weight_decay": t5 - t4}
        return {"loss": mean_loss, "lr": lr, "grad_rms": grad_rms, "l0_current": fraction,
                "stats": stats, "stop": float(shared[1]) > 0, "times": times, "metrics": mean_records(metrics)}

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self) -> float:
        cfg, ctx = self.config, self.ctx
        from sparse_lens.training.matching import token_loss_sum

        rows = self.data.validation[: cfg.eval_batches * cfg.batch_size]
        total = token_loss_sum(self.model, rows[ctx.rank :: ctx.world_size], self.micro, ctx.device)
        all_reduce_sum(total, ctx)
        self.last_val_loss = float(total[0] / total[1])
        return self.last_val_loss

    # ------------------------------------------------------------------ loop
    def run(self) -> TrainResult:
        cfg, ctx = self.config, self.ctx
        logger = MetricsLogger(
            self.out_dir, enabled=ctx.is_main, tensorboard=cfg.tensorboard,
            resume_step=self.step if self.resume_state is not None else None,
        )
        if ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            cfg.to_yaml(self.out_dir / "config.yaml")
        pbar = None
        if ctx.is_main and cfg.progress_bar:
            from tqdm.auto import tqdm

            pbar = tqdm(total=self.total_steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        restore = self._install_signal_handlers()
        end = self.total_steps if self.stop_after is None else min(self.total_steps, self.stop_after)
        status, last_loss = "completed", None
        window: dict[str, Any] = {"loss": 0.0, "n": 0, "time": 0.0, "tokens": 0, "ms": {}, "metrics": []}
        try:
            if self.step == 0 and self.resume_state is None:
                evaluation = self._evaluation_record()  # collective under DDP: every rank calls it
                logger.log({"step": 0, "tokens": 0, **evaluation, **self._sparsity_record(0)})
            while self.step < end:
                step = self.step
                t0 = time.perf_counter()
                out = self._train_step(step)
                dt = time.perf_counter() - t0
                self.step += 1
                self.tokens_seen += cfg.tokens_per_step
                self.elapsed += dt
                last_loss = out["loss"]
                window["loss"] += out["loss"]
                window["n"] += 1
                window["time"] += dt
                window["tokens"] += cfg.tokens_per_step
                for key, value in out["times"].items():
                    window["ms"][key] = window["ms"].get(key, 0.0) + 1000 * value
                if out["metrics"]:
                    window["metrics"].append(out["metrics"])
                if pbar is not None:
                    pbar.update(1)

                record: dict[str, Any] = {}
                if self.step % cfg.log_every == 0 or self.step == end or out["stop"]:
                    record = {
                        "step": self.step, "tokens": self.tokens_seen,
                        "loss": window["loss"] / window["n"], "lr": out["lr"], "grad_rms": out["grad_rms"],
                        "tokens_per_s": window["tokens"] / max(window["time"], 1e-9), "elapsed_s": self.elapsed,
                        "ms_per_step": {k: v / window["n"] for k, v in window["ms"].items()},
                        **self._sparsity_record(step, out["stats"]),
                        **mean_records(window["metrics"]),
                    }
                    window = {"loss": 0.0, "n": 0, "time": 0.0, "tokens": 0, "ms": {}, "metrics": []}
                if (cfg.eval_every and self.step % cfg.eval_every == 0) or self.step == self.total_steps:
                    record.setdefault("step", self.step)
                    record.setdefault("tokens", self.tokens_seen)
                    record.update(self._evaluation_record())
                if record:
                    logger.log(record)
                    if pbar is not None:
                        pbar.set_postfix(self._postfix(record), refresh=False)
                if out["stop"]:
                    status = "interrupted"
                    break
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step != end:
                    self.save_checkpoint({"loss": last_loss})
            if status == "completed" and self.step < self.total_steps:
                status = "stopped"
            if self.last_checkpoint is None or self.last_checkpoint.name != f"step_{self.step:08d}":
                self.save_checkpoint({"loss": last_loss, "status": status})
        except KeyboardInterrupt:
            # A hard interrupt (second Ctrl-C, or no handler in this thread): save only if no update was half-applied.
            status = "interrupted"
            if self._phase in ("idle", "backward"):
                self.save_checkpoint({"loss": last_loss, "status": status})
            elif pbar is not None:
                pbar.write(f"interrupted during an update at step {self.step + 1}; not saved. Last checkpoint: {self.last_checkpoint}")
        finally:
            restore()
            if pbar is not None:
                pbar.close()
            logger.close()
        if status == "interrupted" and ctx.is_main:
            print(f"interrupted after step {self.step}; checkpoint: {self.last_checkpoint} "
                  f"(continue with --resume)", flush=True)
        return TrainResult(status, self.step, self.last_checkpoint, last_loss, self.last_val_loss, self.out_dir)

    def close(self) -> None:
        teardown(self.ctx)
        torch.set_num_threads(self._threads_before)

    # ------------------------------------------------------------------ helpers
    def _sparsity_record(self, step: int, stats: Optional[dict] = None) -> dict[str, Any]:
        if self.sparsifier is None:
            return {}
        sp = self.sparsifier
        nnz = sp.nonzero_counts()
        ks = {spec.name: sp.k_for(spec, step) for spec in sp.specs}
        forced = sum(s.forced for s in (stats or {}).values())
        return {
            "l0_target": sp.target, "l0_current": sp.block_fraction(step),
            "nnz_total": sum(nnz.values()), "k_total": sum(ks.values()), "forced_extra": forced,
            "nnz": nnz, "k": ks,
        }

    @staticmethod
    def _postfix(record: dict[str, Any]) -> dict[str, str]:
        out = {}
        for key, fmt in (("loss", "{:.3f}"), ("val_loss", "{:.3f}"), ("lr", "{:.2e}"), ("l0_current", "{:.3f}"), ("tokens_per_s", "{:.0f}")):
            if key in record:
                out[key.replace("tokens_per_s", "tok/s").replace("l0_current", "L0")] = fmt.format(record[key])
        return out

    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def handler(signum, frame):
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True
            if self.ctx.is_main:
                print(f"\n{signal.Signals(signum).name}: finishing step {self.step + 1}, then saving a checkpoint "
                      "(press Ctrl-C again to abort now)", flush=True)

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

        def restore():
            for sig, old in previous.items():
                signal.signal(sig, old)

        return restore


# ---------------------------------------------------------------------- functional API
def train(
    config: Union[TrainingConfig, dict, str, Path],
    *,
    resume: Union[bool, str, Path] = False,
    stop_after: Optional[int] = None,
    data: Optional[TokenData] = None,
    allow_data_change: bool = False,
) -> TrainResult:
    """Train (or continue training) a model; see :class:`Trainer`."""
    trainer = Trainer(config, resume=resume, stop_after=stop_after, data=data, allow_data_change=allow_data_change)
    try:
        return trainer.run()
    finally:
        trainer.close()


def load_checkpoint_model(
    checkpoint_dir: Union[str, Path], model_class: type = HookedSparseTransformer, **overrides: Any
) -> HookedSparseTransformer:
    """The model of a training checkpoint (or of a run directory's latest checkpoint), with its tokenizer.
    `overrides` replace fields of the model config (as in ``from_pretrained``). The reading rule is the
    model package's (``sparse_lens.model.run_checkpoints``)."""
    from sparse_lens.model.run_checkpoints import load_checkpoint_model as read_model

    model, state = read_model(model_class, checkpoint_dir, argument="checkpoint", **overrides)
    model._training_state = state  # type: ignore[attr-defined]
    return model


def export_checkpoint(checkpoint_dir: Union[str, Path], to: Union[str, Path], overwrite: bool = False) -> Path:
    """Write a checkpoint's model with ``save_pretrained`` (config.json, model.safetensors,
    tokenizer.json) plus ``training.json`` (steps, tokens, losses, the training config), each file
    atomically. ``to`` follows ``save_pretrained``'s rule: a new, empty or saved-model directory (its
    other files kept); anything else non-empty needs ``overwrite=True``; a file is refused."""
    from sparse_lens.io import atomic_write_json, check_output_dir
    from sparse_lens.model.checkpoint import is_checkpoint_dir

    to = Path(to)
    check_output_dir(to, "--to", is_own=is_checkpoint_dir, what="a saved model (no config.json)", overwrite=overwrite)
    model = load_checkpoint_model(checkpoint_dir)
    state = model._training_state  # type: ignore[attr-defined]
    model.save_pretrained(to, overwrite=overwrite)
    summary = {k: state.get(k) for k in ("step", "total_steps", "tokens", "val_loss", "loss", "l0_current", "nnz", "elapsed_s", "world_size", "torch_version")}
    summary["config"] = state["config"]
    summary["data"] = state.get("data")
    summary["data_changes"] = state.get("data_changes") or []  # resumes on other data (--allow-data-change)
    atomic_write_json(to / "training.json", summary, argument="--to", indent=1, sort_keys=True)
    return to


# ---------------------------------------------------------------------- utilities
def _as_config(config: Union[TrainingConfig, dict, str, Path]) -> TrainingConfig:
    if isinstance(config, TrainingConfig):
        return config
    if isinstance(config, dict):
        return TrainingConfig.from_dict(config)
    return TrainingConfig.from_yaml(config)


def mean_records(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean of metric records key by key (dict values: per sub-key); keys missing from a record
    average over the records that have them."""
    sums: dict[str, Any] = {}
    counts: dict[str, Any] = {}
    for record in records:
        for key, value in record.items():
            if isinstance(value, dict):
                sub_sums, sub_counts = sums.setdefault(key, {}), counts.setdefault(key, {})
                for sub, v in value.items():
                    sub_sums[sub] = sub_sums.get(sub, 0.0) + float(v)
                    sub_counts[sub] = sub_counts.get(sub, 0) + 1
            else:
                sums[key] = sums.get(key, 0.0) + float(value)
                counts[key] = counts.get(key, 0) + 1
    return {key: ({sub: v / counts[key][sub] for sub, v in value.items()} if isinstance(value, dict) else value / counts[key])
            for key, value in sums.items()}


# Model-config fields that may differ between init_from's model and the one trained from it.
_INIT_FREE_FIELDS = frozenset(
    {"seed", "device", "dtype", "model_name", "tokenizer_name", "weight_sparsity", "activation_sparsity"}
)


def _saved_fingerprint(state: dict[str, Any], config_class: type = TrainingConfig) -> dict[str, Any]:
    """The checkpoint's config as the current code reads it (fields added since get their defaults)."""
    try:
        return config_class.from_dict(state["config"]).fingerprint_dict()
    except (ValueError, TypeError) as err:
        raise ValueError(f"resume: the checkpoint's config is not valid for this version ({err})") from err


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
