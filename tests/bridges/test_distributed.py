"""torchrun DDP (2 processes, gloo): a bridge run gives the same sparse model and bridges as one
process with the same global batch in the same two micro-batches."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from sparse_lens.bridges import train_bridges
from sparse_lens.bridges.bridge import BRIDGES_FILE
from sparse_lens.training.checkpoint import MODEL_FILE, latest_checkpoint
from sparse_lens.training.metrics import read_metrics

from .test_training import config, dense_dir  # noqa: F401 (fixture)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path, dense_dir):  # noqa: F811
    common = dict(train_steps=4, checkpoint_every=0, eval_every=0, bridges__eval_rows=0, batch_size=4)
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path / "ddp", dense_dir, **common)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "sparse_lens.cli", "bridges", "train", str(path), "--no-progress"]
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "completed at step 4" in proc.stdout
    assert train_bridges(config(tmp_path / "single", dense_dir, micro_batch_size=2, **common)).status == "completed"
    # metrics come from rank 0 alone: one record per logged step, as in the one-process run
    ddp_steps = [r["step"] for r in read_metrics(tmp_path / "ddp" / "run")]
    assert ddp_steps and ddp_steps == [r["step"] for r in read_metrics(tmp_path / "single" / "run")]
    for name in (MODEL_FILE, BRIDGES_FILE):
        a = load_file(str(latest_checkpoint(tmp_path / "ddp" / "run") / name))
        b = load_file(str(latest_checkpoint(tmp_path / "single" / "run") / name))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5, msg=f"{name}: {key}")
