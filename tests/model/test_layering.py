"""The model package stands alone below training, tasks and pruning: importing it, and loading a
training run through it, imports none of them."""

import subprocess
import sys
from pathlib import Path

import torch

from sparse_lens.model import HookedSparseTransformer

from .conftest import make_model

ROOT = Path(__file__).resolve().parents[2]
HIGHER = ("sparse_lens.training", "sparse_lens.tasks", "sparse_lens.pruning", "sparse_lens.visualization", "sparse_lens.bridges")


def run_isolated(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_importing_the_model_package_imports_no_higher_layer():
    out = run_isolated(
        "import sys, sparse_lens.model, sparse_lens.model.checkpoint, sparse_lens.model.run_checkpoints\n"
        "from sparse_lens.model import HookedSparseTransformer\n"
        f"print(sorted(m for m in sys.modules if m.startswith({HIGHER!r})))"
    )
    assert out.strip() == "[]"


def test_a_training_checkpoint_loads_without_the_training_package(tmp_path):
    from sparse_lens.training.checkpoint import checkpoint_path, save_checkpoint

    model = make_model()
    save_checkpoint(checkpoint_path(tmp_path / "run", 7), model_state=model.state_dict(), optimizer_state={},
                    state={"step": 7, "config": {"model": model.cfg.to_dict()}}, config_yaml="")
    out = run_isolated(
        "import sys, torch\n"
        "from sparse_lens.model import HookedSparseTransformer\n"
        f"m = HookedSparseTransformer.from_pretrained({str(tmp_path / 'run')!r})\n"
        "print(m._training_state['step'], sorted(x for x in sys.modules if x.startswith('sparse_lens.training')))"
    )
    assert out.split() == ["7", "[]"]
    loaded = HookedSparseTransformer.from_pretrained(tmp_path / "run")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
