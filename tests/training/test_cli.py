"""`sparse-lens train`: config + flags, Ctrl-C in a real process, resume, export, error exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sparse_lens.cli import main
from sparse_lens.model import HookedSparseTransformer
from sparse_lens.training.checkpoint import latest_checkpoint, read_state
from sparse_lens.training.metrics import read_metrics

from .conftest import tiny_dict


def _write(tmp_path: Path, **overrides) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tiny_dict(out_dir=str(tmp_path / "run"), **overrides)))
    return path


def test_cli_train_flags_resume_export(tmp_path, capsys):
    cfg = _write(tmp_path)
    assert main(["train", str(cfg), "--stop-after", "3", "--set", "optimizer.lr=0.02", "--no-progress"]) == 0
    state = read_state(latest_checkpoint(tmp_path / "run"))
    assert state["step"] == 3 and state["config"]["optimizer"]["lr"] == 0.02
    # resuming with a different lr is refused (exit 2, message names the field)
    assert main(["train", str(cfg), "--resume", "--no-progress"]) == 2
    assert "optimizer.lr" in capsys.readouterr().err
    assert main(["train", str(cfg), "--resume", "--set", "optimizer.lr=0.02", "--no-progress"]) == 0
    assert read_state(latest_checkpoint(tmp_path / "run"))["step"] == 12
    out = tmp_path / "exported"
    assert main(["train", "--export", str(tmp_path / "run"), "--to", str(out)]) == 0
    model = HookedSparseTransformer.from_pretrained(out)
    assert model.cfg.weight_sparsity == 0.125
    assert json.loads((out / "training.json").read_text())["step"] == 12


def test_cli_print_config_and_errors(tmp_path, capsys):
    cfg = _write(tmp_path)
    assert main(["train", str(cfg), "--dense", "--max-steps", "5", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["weight_sparsity"] is None and printed["model"]["activation_sparsity"] is None
    assert printed["train_steps"] == 5
    assert main(["train", str(cfg), "--weight-sparsity", "0"]) == 2
    assert "model.weight_sparsity" in capsys.readouterr().err
    assert main(["train", "no-such-config"]) == 2
    assert main(["train", "python-sparse-tiny", "--print-config"]) == 0  # packaged config by name


def test_ctrl_c_in_a_real_process_saves_and_exits_cleanly(tmp_path):
    cfg = _write(tmp_path, train_steps=100000, checkpoint_every=0, log_every=1, eval_every=0)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sparse_lens.cli", "train", str(cfg), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if metrics.exists() and sum(1 for _ in metrics.open()) >= 3:
            break
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err
    assert "interrupted after step" in out
    state = read_state(latest_checkpoint(tmp_path / "run"))
    last_logged = read_metrics(tmp_path / "run")[-1]["step"]
    assert state["step"] == last_logged >= 2
