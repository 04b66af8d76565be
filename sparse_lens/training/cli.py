"""``sparse-lens train``: pretrain a weight-sparse (or dense) model, resume it, or export a checkpoint.

Examples::

    sparse-lens train sparse_lens/training/configs/python-sparse-tiny.yaml
    sparse-lens train python-sparse-tiny --out runs/try --max-steps 200          # packaged config by name
    sparse-lens train python-sparse-tiny --resume                                # latest checkpoint in out_dir
    sparse-lens train python-sparse-tiny --set optimizer.lr=0.01 --set sparsity.min_nonzero_per_neuron=2
    torchrun --nproc_per_node 2 -m sparse_lens.cli train python-sparse-tiny     # DDP (gloo on CPU, NCCL on GPU)
    sparse-lens train --export runs/python-sparse-tiny --to sparse_lens/pretrained/python-sparse-tiny

Exit status: 0 finished (or stopped by --stop-after), 130 interrupted (Ctrl-C; a checkpoint was
saved), 1 the loss diverged (NaN/inf), 2 a mistake in the arguments or the configuration (one line
on stderr naming it; --debug shows the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from sparse_lens.cli import positive_float, positive_int

    p = subparsers.add_parser(
        "train",
        help="pretrain a weight-sparse (or dense) transformer; resume; export",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("config", nargs="?", help="CONFIG.yaml, or the name of a packaged config "
                   f"({', '.join(list_configs())})")
    p.add_argument("--out", help="output directory (default: the config's out_dir)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                   help="continue from the latest checkpoint in out_dir, or from CKPT (a checkpoint or run directory); "
                        "'--resume auto' resumes if there is a checkpoint and starts fresh otherwise")
    p.add_argument("--allow-data-change", action="store_true",
                   help="with --resume: go on when the data differs from the checkpoint's (e.g. a 'corpus: default' run "
                        "on a machine with other package versions); recorded in the checkpoint's data_changes")
    p.add_argument("--max-steps", type=positive_int, help="total optimizer steps (overrides train_steps/train_tokens; the schedules span these steps)")
    p.add_argument("--stop-after", type=positive_int, help="stop (with a checkpoint) after this many completed steps, schedules unchanged")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override any config field, e.g. optimizer.lr=0.01 or model.n_layers=4 (VALUE is YAML; repeatable)")
    p.add_argument("--lr", type=positive_float, help="= --set optimizer.lr=... (default: the config's)")
    p.add_argument("--batch-size", type=positive_int, help="= --set batch_size=... (default: the config's)")
    p.add_argument("--weight-sparsity", help="target nonzero fraction, or 'none' for dense weights (default: the config's)")
    p.add_argument("--dense", action="store_true", help="dense baseline: no weight sparsity and no AbsTopK")
    p.add_argument("--seed", type=int, help="= --set seed=... (default: the config's)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where to train (default: the config's; 'auto' = cuda if available)")
    p.add_argument("--num-threads", type=positive_int, help="torch threads per process (default: the config's, else torch's)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument("--export", metavar="CKPT", help="export a checkpoint (or a run directory's latest) with save_pretrained")
    p.add_argument("--to", metavar="DIR", help="destination of --export (e.g. sparse_lens/pretrained/NAME): a new or empty "
                   "directory, or a saved model to replace (its other files are kept)")
    p.add_argument("--overwrite", action="store_true", help="let --export write into a non-empty DIR that is not a saved model "
                   "(its other files are kept)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    p.set_defaults(func=run)

    from sparse_lens.training.recipes import matched_dense

    matched_dense.add_parser(subparsers)
    return p


def list_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config_path(name: str, config_dir: Path = CONFIG_DIR, what: str = "packaged config") -> Path:
    path = Path(name)
    if path.is_file():
        return path
    packaged = config_dir / f"{name}.yaml"
    if packaged.is_file():
        return packaged
    packaged_names = sorted(p.stem for p in config_dir.glob("*.yaml"))
    raise FileNotFoundError(f"config: no file {name!r} and no {what} of that name (packaged: {packaged_names})")


def read_config_with_overrides(name: str, set_items: list[str], config_dir: Path = CONFIG_DIR,
                               what: str = "packaged config") -> tuple[dict, list[tuple[str, Any]]]:
    """The YAML mapping of a config file or packaged config, and the ``--set FIELD=VALUE`` overrides
    parsed (not yet applied: see :func:`_set_path`). Shared by ``sparse-lens train`` and
    ``sparse-lens bridges train``."""
    path = resolve_config_path(name, config_dir, what)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"config: {path} is not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(data, dict):
        raise ValueError(f"config: {path} must be a YAML mapping of sections and fields, got {type(data).__name__}")
    overrides: list[tuple[str, Any]] = []
    for item in set_items:
        if "=" not in item:
            raise ValueError(f"--set: expected FIELD=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            overrides.append((key.strip(), yaml.safe_load(value)))
        except yaml.YAMLError:
            raise ValueError(f"--set: {item!r}: VALUE is not valid YAML") from None
    return data, overrides


def build_config(args: argparse.Namespace):
    from sparse_lens.training.config import TrainingConfig

    if args.config is None:
        raise ValueError("config: give CONFIG.yaml or a packaged config name")
    data, overrides = read_config_with_overrides(args.config, args.set)
    if args.out:
        overrides.append(("out_dir", args.out))
    if args.max_steps is not None:
        overrides += [("train_steps", args.max_steps), ("train_tokens", None)]
    if args.lr is not None:
        overrides.append(("optimizer.lr", args.lr))
    if args.batch_size is not None:
        overrides.append(("batch_size", args.batch_size))
    if args.weight_sparsity is not None:
        try:
            ws = None if args.weight_sparsity.lower() in ("none", "null", "dense") else float(args.weight_sparsity)
        except ValueError:
            raise ValueError(f"--weight-sparsity: expected a fraction in (0, 1] or 'none', got {args.weight_sparsity!r}") from None
        overrides.append(("model.weight_sparsity", ws))
    if args.dense:
        overrides += [("model.weight_sparsity", None), ("model.activation_sparsity", None)]
    if args.seed is not None:
        overrides.append(("seed", args.seed))
    if args.device is not None:
        overrides.append(("device", args.device))
    if args.num_threads is not None:
        overrides.append(("num_threads", args.num_threads))
    if args.no_progress:
        overrides.append(("progress_bar", False))
    for key, value in overrides:
        _set_path(data, key, value)
    return TrainingConfig.from_dict(data)


def _set_path(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"--set: {dotted!r}: {part!r} is not a section")
    node[parts[-1]] = value


def run(args: argparse.Namespace) -> int:
    """Errors in the arguments (ValueError / OSError) are reported by ``sparse_lens.cli.main``: one
    line, exit 2."""
    from sparse_lens.io import check_output_dir

    if args.export:
        if not args.to:
            raise ValueError("--to: --export needs a destination directory")
        from sparse_lens.model.checkpoint import is_checkpoint_dir
        from sparse_lens.model.run_checkpoints import read_state, resolve_checkpoint

        if not Path(args.export).is_dir():
            raise FileNotFoundError(f"--export: {args.export} is not a directory (expected a training run or checkpoint)")
        read_state(resolve_checkpoint(args.export, "--export"), "--export")
        check_output_dir(Path(args.to), "--to", is_own=is_checkpoint_dir, what="a saved model (no config.json)",
                         overwrite=args.overwrite)
        from sparse_lens.training.trainer import export_checkpoint

        out = export_checkpoint(args.export, args.to, overwrite=args.overwrite)
        print(f"exported {args.export} -> {out}")
        return 0
    config = build_config(args)
    if args.print_config:
        print(config.to_yaml(), end="")
        return 0
    check_output_dir(Path(config.out_dir), "--out" if args.out else "out_dir")
    if config.device == "cuda":
        from sparse_lens.model.devices import check_device

        check_device("cuda", "--device" if args.device else "device")
    from sparse_lens.training.trainer import train

    return run_training(train, config, args, "sparse-lens train", allow_data_change=args.allow_data_change)


def run_training(train_fn: Any, config: Any, args: argparse.Namespace, command: str, **kwargs: Any) -> int:
    """Run ``train_fn(config, resume=, stop_after=, **kwargs)`` from the parsed ``--resume`` /
    ``--stop-after`` and turn the result into the exit status: 0 done, 130 interrupted, 1 diverged
    (one line on stderr). Rank 0 prints the one-line summary. Shared with ``sparse-lens bridges train``."""
    from sparse_lens.training.trainer import TrainingDiverged

    resume = "auto" if args.resume == "auto" else args.resume
    try:
        result = train_fn(config, resume=resume, stop_after=args.stop_after, **kwargs)
    except TrainingDiverged as err:
        print(f"{command}: error: {err}", file=sys.stderr)
        return 1
    if result.status == "interrupted":
        return 130
    if os.environ.get("RANK", "0") == "0":
        print(f"{result.status} at step {result.step}; loss {result.loss}; val_loss {result.val_loss}; checkpoint {result.checkpoint}")
    return 0
