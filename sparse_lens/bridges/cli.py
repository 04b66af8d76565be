"""``sparse-lens bridges``: train a weight-sparse model bridged to a frozen dense model, evaluate the
bridges, intervene through them.

Examples::

    sparse-lens bridges train python-bridged-tiny --out runs/bridged --max-steps 300 --num-threads 1
    sparse-lens bridges train python-bridged-tiny --out runs/bridged --resume        # continue
    sparse-lens bridges eval runs/bridged                    # per-site table + bridges_eval.png / .json
    sparse-lens bridges intervene runs/bridged --task single_double_quote

Exit status: 0 done, 130 interrupted (Ctrl-C; a checkpoint was saved), 1 a loss became NaN/inf (the
message names the term and site), 2 a mistake in the arguments or the configuration.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "bridges",
        help="bridges between a dense and a weight-sparse model: train, eval, intervene",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="bridges_command", metavar="COMMAND")
    p.set_defaults(func=lambda args: _help(p))

    t = sub.add_parser("train", help="train a sparse model jointly with bridges to a frozen dense model",
                       description="Train a weight-sparse model and its bridges to a frozen dense model (docs/bridges.md).")
    t.add_argument("config", help=f"CONFIG.yaml or a packaged config ({', '.join(list_configs())})")
    t.add_argument("--out", help="output directory (default: the config's out_dir)")
    t.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                   help="continue from the latest checkpoint in out_dir, or from CKPT; 'auto': resume if there is one")
    t.add_argument("--max-steps", type=int, help="total optimizer steps (the schedules span these steps)")
    t.add_argument("--stop-after", type=int, help="stop (with a checkpoint) after this many completed steps")
    t.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a config field, e.g. bridges.weights.kl_s2d=2 or optimizer.lr=1e-3 (VALUE is YAML)")
    t.add_argument("--dense", help="= --set bridges.dense=... (the frozen dense model: name or directory)")
    t.add_argument("--sparse-init", help="= --set bridges.sparse_init=... ('none': train the sparse model from scratch)")
    t.add_argument("--seed", type=int, help="= --set seed=... (default: the config's)")
    t.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where to train (default: the config's; 'auto' = cuda if available)")
    t.add_argument("--num-threads", type=int, help="torch threads per process (default: the config's, else torch's)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    t.set_defaults(func=run_train)

    e = sub.add_parser("eval", help="per-site NMSE, KL and hybrid losses of a bridged pair (table, plot, JSON)",
                       description="Evaluate bridges: per site NMSE both ways, KL both ways, the hybrids' next-token "
                                   "loss, against the dense and sparse models alone.")
    e.add_argument("run", help="a bridge training run, one of its checkpoints, a directory saved by BridgedPair.save, "
                   "or a shipped pair (python-bridged-tiny)")
    e.add_argument("--dense", help="the dense model (name or directory; default: the one the bridges record)")
    e.add_argument("--rows", type=int, default=64, help="validation rows to evaluate")
    e.add_argument("--batch-size", type=int, default=8, help="rows per forward pass")
    e.add_argument("--out", help="where to write bridges_eval.json / .png (default: RUN/bridges_eval)")
    e.add_argument("--no-plot", action="store_true", help="no PNG")
    e.add_argument("--num-threads", type=int, help="torch threads (default: torch's)")
    e.set_defaults(func=run_eval)

    i = sub.add_parser("intervene", help="flip a sparse node and measure the dense model through the bridge",
                       description="The App. A.4 experiment on a binary task: the sparse node that best separates the "
                                   "two classes (or --node) is set to the other class's mean at the last token; the "
                                   "change of the dense model's logit difference is reported with a random-node control.")
    i.add_argument("run", help="a bridge training run, checkpoint, BridgedPair.save directory, or a shipped pair (python-bridged-tiny)")
    i.add_argument("--dense", help="the dense model (default: the one the bridges record)")
    i.add_argument("--task", default="single_double_quote", help="a binary task (sparse-lens tasks list)")
    i.add_argument("--node", metavar="HOOK:INDEX", help="the node to flip, e.g. blocks.0.hook_attn_out:17 (default: chosen)")
    i.add_argument("--n-fit", type=int, default=100, help="train-split pairs to choose the node and the class means")
    i.add_argument("--n-test", type=int, default=100, help="test-split pairs to edit")
    i.add_argument("--random", type=int, default=20, help="random nodes for the control")
    i.add_argument("--seed", type=int, default=0, help="seed of the task pairs and of the random nodes")
    i.add_argument("--out", help="write the per-prompt result as JSON here")
    i.add_argument("--num-threads", type=int, help="torch threads (default: torch's)")
    i.set_defaults(func=run_intervene)
    return p


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def list_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def build_config(args: argparse.Namespace):
    from sparse_lens.bridges.config import BridgeTrainingConfig
    from sparse_lens.training.cli import _set_path, read_config_with_overrides

    data, overrides = read_config_with_overrides(args.config, args.set, CONFIG_DIR, "packaged bridge config")
    for flag, key in (("out", "out_dir"), ("dense", "bridges.dense"), ("seed", "seed"), ("device", "device"),
                      ("num_threads", "num_threads")):
        if getattr(args, flag) is not None:
            overrides.append((key, getattr(args, flag)))
    if args.sparse_init is not None:
        overrides.append(("bridges.sparse_init", None if args.sparse_init.lower() in ("none", "null") else args.sparse_init))
    if args.max_steps is not None:
        if args.max_steps < 1:
            raise ValueError(f"--max-steps: expected a positive integer, got {args.max_steps}")
        overrides += [("train_steps", args.max_steps), ("train_tokens", None)]
    if args.no_progress:
        overrides.append(("progress_bar", False))
    for key, value in overrides:
        _set_path(data, key, value)
    return BridgeTrainingConfig.from_dict(data)


def _errors(command: str):
    """Run a sub-command, reporting a mistake (ValueError / OSError) as one line, exit 2."""

    def wrap(func):
        def run(args: argparse.Namespace) -> int:
            try:
                return func(args)
            except (ValueError, OSError, KeyError) as err:
                message = err.args[0] if isinstance(err, KeyError) and err.args else err
                print(f"sparse-lens bridges {command}: error: {message}", file=sys.stderr)
                return 2

        return run

    return wrap


@_errors("train")
def run_train(args: argparse.Namespace) -> int:
    config = build_config(args)
    if args.print_config:
        print(config.to_yaml(), end="")
        return 0
    if args.stop_after is not None and args.stop_after < 1:
        raise ValueError(f"--stop-after: expected a positive integer, got {args.stop_after}")
    from sparse_lens.io import check_output_dir

    check_output_dir(Path(config.out_dir), "--out" if args.out else "out_dir")
    from sparse_lens.bridges.trainer import train_bridges
    from sparse_lens.training.cli import run_training

    return run_training(train_bridges, config, args, "sparse-lens bridges train")


def _load_pair(args: argparse.Namespace):
    import torch

    from sparse_lens.bridges.pair import BridgedPair

    if args.num_threads is not None:
        if args.num_threads < 1:
            raise ValueError(f"--num-threads: expected a positive integer, got {args.num_threads}")
        torch.set_num_threads(args.num_threads)
    from sparse_lens.bridges.pretrained import list_bridged_pairs, shipped_pair_dir

    if not Path(args.run).is_dir() and shipped_pair_dir(args.run) is None:
        raise FileNotFoundError(f"run: {args.run} is not a directory (expected a bridge run, checkpoint or saved pair) "
                                f"nor a shipped pair ({', '.join(list_bridged_pairs())})")
    dense = None
    if args.dense:
        from sparse_lens.model import HookedSparseTransformer

        dense = HookedSparseTransformer.from_pretrained(args.dense)
    return BridgedPair.load(args.run, dense=dense)


def _validation_rows(run: Path, pair: Any, rows: int):
    """The run's own validation split (its data config), or the default corpus's for a saved pair."""
    from sparse_lens.model.run_checkpoints import is_training_output, read_state, resolve_checkpoint
    from sparse_lens.training.config import DataConfig, _section
    from sparse_lens.training.data import load_token_data

    data_cfg, seed = DataConfig(), 0
    if is_training_output(run):
        state = read_state(resolve_checkpoint(run, "run"), "run")
        data_cfg = _section(DataConfig, dict(state["config"].get("data", {})), "data")
        seed = int(state["config"].get("seed", 0))
    data = load_token_data(data_cfg, pair.sparse.cfg.n_ctx, pair.sparse.cfg.d_vocab, seed)
    if data.validation.shape[0] == 0:
        raise ValueError("run: the validation split is empty")
    return data.validation[:rows], data.description


@_errors("eval")
def run_eval(args: argparse.Namespace) -> int:
    from sparse_lens.bridges.evaluate import evaluate_bridges
    from sparse_lens.io import atomic_write_json, check_output_dir

    for name in ("rows", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')}: expected a positive integer, got {getattr(args, name)}")
    run = Path(args.run)
    out = Path(args.out) if args.out else (run / "bridges_eval" if run.is_dir() else Path(f"{run.name}-bridges_eval"))
    check_output_dir(out, "--out")
    pair = _load_pair(args)
    rows, description = _validation_rows(run, pair, args.rows)
    result = evaluate_bridges(pair, rows, batch_size=args.batch_size)
    result.info.update(run=str(run), data=description.get("fingerprint"), dense=pair.dense.name)
    print(result.format_table())
    atomic_write_json(out / "bridges_eval.json", result.to_dict(), argument="--out")
    written = [out / "bridges_eval.json"]
    if not args.no_plot:
        written.append(result.plot(out / "bridges_eval.png", title=f"bridges: {run.name} (dense {pair.dense.name})"))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


@_errors("intervene")
def run_intervene(args: argparse.Namespace) -> int:
    from sparse_lens.bridges.intervene import Node, flip_study
    from sparse_lens.io import atomic_write_json

    for name in ("n_fit", "n_test"):
        if getattr(args, name) < 2:
            raise ValueError(f"--{name.replace('_', '-')}: expected at least 2 pairs, got {getattr(args, name)}")
    if args.random < 0:
        raise ValueError(f"--random: expected >= 0, got {args.random}")
    node = None
    if args.node:
        hook, _, index = args.node.rpartition(":")
        if not hook or not index.isdigit():
            raise ValueError(f"--node: expected HOOK:INDEX (e.g. blocks.0.hook_attn_out:17), got {args.node!r}")
        node = Node(hook, int(index))
    pair = _load_pair(args)
    study = flip_study(pair, task=args.task, n_fit=args.n_fit, n_test=args.n_test, node=node, n_random=args.random, seed=args.seed)
    print(study.format())
    if args.out:
        atomic_write_json(args.out, {**study.to_dict(), "summary": study.summary()}, argument="--out")
        print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - convenience
    parser = argparse.ArgumentParser(prog="sparse-lens")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
