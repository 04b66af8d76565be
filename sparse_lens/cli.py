"""`sparse-lens` command line: one sub-command per capability.

Each capability's sub-package owns its arguments through an ``add_parser(subparsers)`` function that
registers its sub-command and sets ``func`` (called with the parsed namespace, returns an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (module, description); each module defines add_parser(subparsers).
_COMMAND_MODULES = (
    "sparse_lens.training.cli",
    "sparse_lens.tasks.cli",
    "sparse_lens.pruning.cli",
    "sparse_lens.visualization.plot_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparse-lens", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for module_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue  # capability not built yet
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
