"""`train --export RUN --to DIR` keeps what DIR already holds, refuses a file, and writes with the
user's umask; checkpoints too."""

import os
import stat

import pytest

from sparse_lens.cli import main
from sparse_lens.model import HookedSparseTransformer, SparseTransformerConfig
from sparse_lens.training.checkpoint import checkpoint_path, save_checkpoint
from sparse_lens.training.trainer import export_checkpoint


@pytest.fixture
def run_dir(tmp_path):
    old = os.umask(0o022)
    try:
        model = HookedSparseTransformer(SparseTransformerConfig(n_layers=1, d_model=16, n_ctx=8, d_vocab=20, d_head=8))
        save_checkpoint(checkpoint_path(tmp_path / "run", 5), model_state=model.state_dict(), optimizer_state={},
                        state={"step": 5, "config": {"model": model.cfg.to_dict()}}, config_yaml="")
    finally:
        os.umask(old)
    return tmp_path / "run"


def test_checkpoints_take_the_umask(run_dir):
    step = checkpoint_path(run_dir, 5)
    assert stat.S_IMODE(step.stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in step.iterdir()} == {0o644}
    assert sorted(p.name for p in step.parent.iterdir()) == ["step_00000005"]


def test_export_keeps_the_users_files(tmp_path, run_dir, capsys):
    out = tmp_path / "exported"
    export_checkpoint(run_dir, out)
    (out / "notes.txt").write_text("my notes")
    assert main(["train", "--export", str(run_dir), "--to", str(out)]) == 0  # a saved model: replaced file by file
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "notes.txt", "training.json"]
    assert (out / "notes.txt").read_text() == "my notes"
    foreign = tmp_path / "analysis"
    foreign.mkdir()
    (foreign / "analysis.ipynb").write_text("{}")
    assert main(["train", "--export", str(run_dir), "--to", str(foreign)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["train", "--export", str(run_dir), "--to", str(foreign), "--overwrite"]) == 0
    assert (foreign / "analysis.ipynb").read_text() == "{}" and (foreign / "config.json").is_file()
    assert HookedSparseTransformer.from_pretrained(foreign).cfg.d_model == 16


def test_export_to_a_file_is_refused(tmp_path, run_dir, capsys):
    target = tmp_path / "model.bin"
    target.write_text("precious")
    assert main(["train", "--export", str(run_dir), "--to", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--to" in err and "is a file" in err
    assert target.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin", "run"]
