"""``sparse-lens train``: pretrain a weight-sparse (or dense) model, resume it, or export a checkpoint.

Examples::

    sparse-lens train sparse_lens/training/configs/python-sparse-tiny.yaml
    sparse-lens train python-sparse-tiny --out runs/try --max-steps 200          # packaged config by name
    sparse-lens train python-sparse-tiny --resume                                # latest checkpoint in out_dir
    sparse-lens train python-sparse-tiny --set optimizer.lr=0.01 --set sparsity.min_nonzero_per_neuron=2
    torchrun --nproc_per_node 2 -m sparse_lens.cli train python-sparse-tiny     # DDP (gloo on CPU, NCCL on GPU)
    sparse-lens train --export runs/python-sparse-tiny --to sparse_lens/pretrained/python-sparse-tiny

Exit status: 0 finished (or stopped by --stop-after), 130 interrupted (Ctrl-C; a checkpoint was
saved), 1 the loss diverged (NaN/inf), 2 invalid configuration.
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
    p = subparsers.add_parser(
        "train",
        help="pretrain a weight-sparse (or dense) transformer; resume; export",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", nargs="?", help="CONFIG.yaml, or the name of a packaged config "
                   f"({', '.join(list_configs())})")
    p.add_argument("--out", help="output directory (overrides out_dir)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                   help="continue from the latest checkpoint in out_dir, or from CKPT (a checkpoint or run directory); "
                        "'--resume auto' resumes if there is a checkpoint and starts fresh otherwise")
    p.add_argument("--max-steps", type=int, help="total optimizer steps (overrides train_steps/train_tokens; the schedules span these steps)")
    p.add_argument("--stop-after", type=int, help="stop (with a checkpoint) after this many completed steps, schedules unchanged")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override any config field, e.g. optimizer.lr=0.01 or model.n_layers=4 (VALUE is YAML)")
    p.add_argument("--lr", type=float, help="= --set optimizer.lr=...")
    p.add_argument("--batch-size", type=int, help="= --set batch_size=...")
    p.add_argument("--weight-sparsity", help="target nonzero fraction, or 'none' for dense weights")
    p.add_argument("--dense", action="store_true", help="dense baseline: no weight sparsity and no AbsTopK")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--num-threads", type=int)
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument("--export", metavar="CKPT", help="export a checkpoint (or a run directory's latest) with save_pretrained")
    p.add_argument("--to", metavar="DIR", help="destination of --export (e.g. sparse_lens/pretrained/NAME)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    p.set_defaults(func=run)
    return p


def list_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config_path(name: str) -> Path:
    path = Path(name)
    if path.is_file():
        return path
    packaged = CONFIG_DIR / f"{name}.yaml"
    if packaged.is_file():
        return packaged
    raise FileNotFoundError(f"config: no file {name!r} and no packaged config of that name (packaged: {list_configs()})")


def build_config(args: argparse.Namespace):
    from sparse_lens.training.config import TrainingConfig

    if args.config is None:
        raise ValueError("config: give CONFIG.yaml or a packaged config name")
    data = yaml.safe_load(resolve_config_path(args.config).read_text()) or {}
    overrides: list[tuple[str, Any]] = []
    for item in args.set:
        if "=" not in item:
            raise ValueError(f"--set: expected FIELD=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides.append((key.strip(), yaml.safe_load(value)))
    if args.out:
        overrides.append(("out_dir", args.out))
    if args.max_steps is not None:
        overrides += [("train_steps", args.max_steps), ("train_tokens", None)]
    if args.lr is not None:
        overrides.append(("optimizer.lr", args.lr))
    if args.batch_size is not None:
        overrides.append(("batch_size", args.batch_size))
    if args.weight_sparsity is not None:
        ws = None if args.weight_sparsity.lower() in ("none", "null", "dense") else float(args.weight_sparsity)
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
    from sparse_lens.training.trainer import TrainingDiverged, export_checkpoint, train

    try:
        if args.export:
            if not args.to:
                raise ValueError("--to: --export needs a destination directory")
            out = export_checkpoint(args.export, args.to)
            print(f"exported {args.export} -> {out}")
            return 0
        config = build_config(args)
        if args.print_config:
            print(config.to_yaml(), end="")
            return 0
        resume = "auto" if args.resume == "auto" else args.resume
        result = train(config, resume=resume, stop_after=args.stop_after)
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if result.status == "interrupted":
        return 130
    if os.environ.get("RANK", "0") == "0":
        print(f"{result.status} at step {result.step}; loss {result.loss}; val_loss {result.val_loss}; checkpoint {result.checkpoint}")
    return 0
