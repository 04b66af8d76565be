"""The trainer's extension points (used by sparse_lens.bridges): extra metrics per micro-batch are
averaged and logged, extra checkpoint files are written atomically with the checkpoint."""

from __future__ import annotations

from pathlib import Path

from sparse_lens.training.checkpoint import latest_checkpoint
from sparse_lens.training.metrics import read_metrics
from sparse_lens.training.trainer import Trainer, mean_records


def test_mean_records_averages_scalars_and_dicts():
    out = mean_records([{"a": 1.0, "d": {"x": 2.0}}, {"a": 3.0, "d": {"x": 4.0, "y": 1.0}}, {}])
    assert out == {"a": 2.0, "d": {"x": 3.0, "y": 1.0}}
    assert mean_records([]) == {}


class _Extended(Trainer):
    def _batch_loss(self, chunk):
        loss, _ = super()._batch_loss(chunk)
        return loss, {"twice_loss": 2 * float(loss.detach()), "per_part": {"first": float(chunk[0, 0])}}

    def _checkpoint_files(self):
        step = self.step
        return {"extra.txt": lambda path: Path(path).write_text(f"step {step}\n")}

    def _evaluation_record(self):
        return {**super()._evaluation_record(), "val_extra": 1.5}


def test_subclass_metrics_and_checkpoint_files_are_written(tiny):
    cfg = tiny(train_steps=4, log_every=2, eval_every=2, checkpoint_every=2, micro_batch_size=4)
    trainer = _Extended(cfg)
    try:
        result = trainer.run()
    finally:
        trainer.close()
    records = read_metrics(cfg.out_dir)
    logged = [r for r in records if "loss" in r]
    assert logged and all(abs(r["twice_loss"] - 2 * r["loss"]) < 1e-4 for r in logged)
    assert all(set(r["per_part"]) == {"first"} for r in logged)
    assert all(r["val_extra"] == 1.5 for r in records if "val_loss" in r)
    assert (latest_checkpoint(cfg.out_dir) / "extra.txt").read_text() == f"step {result.step}\n"
