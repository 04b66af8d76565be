"""2 processes (torchrun, gloo on 127.0.0.1) give the same weights as 1 process with the same global batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
import yaml

from sparse_lens.training import TrainingConfig, train

from .conftest import final_weights, tiny_dict


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("reduce_dtype", ["float32", "float64"])
def test_two_process_gloo_ddp_matches_one_process(tmp_path, reduce_dtype):
    common = dict(train_steps=8, checkpoint_every=0, eval_every=4, num_threads=1, grad_reduce_dtype=reduce_dtype,
                  sparsity__anneal_start=0.0, sparsity__anneal_end=0.5)  # masks change every step
    ddp_cfg = tiny_dict(out_dir=str(tmp_path / "ddp"), **common)
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(ddp_cfg))
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        "-m", "sparse_lens.cli", "train", str(path), "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "completed at step 8" in proc.stdout

    # one process, the same global batch of 8 split into the same two halves (micro-batches of 4)
    single = TrainingConfig.from_dict(tiny_dict(out_dir=str(tmp_path / "single"), micro_batch_size=4, **common))
    assert train(single).status == "completed"

    a, b = final_weights(tmp_path / "ddp"), final_weights(tmp_path / "single")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name] != 0, b[name] != 0), f"sparsity mask of {name} differs"
        assert torch.equal(a[name], b[name]), f"{name}: max diff {(a[name] - b[name]).abs().max()}"
    assert int((a["blocks.1.mlp.W_in"] != 0).sum()) == 32 * 64 // 8  # at the target fraction 1/8
