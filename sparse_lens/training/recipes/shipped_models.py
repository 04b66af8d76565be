"""Train and export the shipped models ``python-sparse-tiny`` and ``python-dense-tiny``.

    python -m sparse_lens.training.recipes.shipped_models                 # both, one after the other
    python -m sparse_lens.training.recipes.shipped_models --parallel      # both at once, 1 thread each
    python -m sparse_lens.training.recipes.shipped_models --only python-sparse-tiny --export-only

Each model is ``sparse-lens train <config> --resume auto`` (so a re-run continues an interrupted run)
followed by ``sparse-lens train --export runs/<name> --to sparse_lens/pretrained/<name>``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from sparse_lens.training.cli import resolve_config_path

MODELS = ("python-sparse-tiny", "python-dense-tiny")
PRETRAINED = Path(__file__).resolve().parents[2] / "pretrained"


def train_command(name: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "sparse_lens.cli", "train", str(resolve_config_path(name)), "--resume", "auto", *extra]


def export_command(name: str, run_dir: str) -> list[str]:
    return [sys.executable, "-m", "sparse_lens.cli", "train", "--export", run_dir, "--to", str(PRETRAINED / name)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=MODELS, action="append", help="train only this model (repeatable)")
    ap.add_argument("--parallel", action="store_true", help="train the models at the same time, 1 thread each")
    ap.add_argument("--export-only", action="store_true", help="skip training; export the latest checkpoints")
    args = ap.parse_args(argv)
    names = args.only or list(MODELS)
    run_dirs = {name: f"runs/{name}" for name in names}
    if not args.export_only:
        extra = ["--num-threads", "1", "--no-progress"] if args.parallel and len(names) > 1 else []
        if args.parallel:
            procs = [subprocess.Popen(train_command(n, extra)) for n in names]
            codes = [p.wait() for p in procs]
        else:
            codes = [subprocess.call(train_command(n, extra)) for n in names]
        if any(codes):
            print(f"training failed or was interrupted: {dict(zip(names, codes))}", file=sys.stderr)
            return max(codes)
    for name in names:
        code = subprocess.call(export_command(name, run_dirs[name]))
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
