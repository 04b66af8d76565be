"""sparse-lens view CIRCUIT.json [--out FILE]: write a circuit's interactive viewer, one HTML file.

The file holds everything (scripts, styles, data) and opens from file:// with no network and no
server. The circuit's model is loaded by the name the circuit records (--model overrides it); the
node panel's numbers (ablations, contexts, task pairs, attention) are computed now, once.

Examples::

    sparse-lens view runs/demo/single_double_quote.json                 # -> runs/demo/single_double_quote.html
    sparse-lens view runs/demo/bracket_counting.json --out /tmp/brackets.html
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_viewer_options(p: argparse.ArgumentParser, pairs_help: str) -> None:
    """The options of the node panel's data (view and report): task pairs, pretraining windows, progress."""
    from sparse_lens.cli import positive_int

    p.add_argument("--pairs", type=positive_int, default=32, help=pairs_help)
    p.add_argument("--windows", type=positive_int, default=256,
                   help="pretraining windows (64 tokens each) for the top/bottom contexts")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_parser(subparsers) -> argparse.ArgumentParser:
    from sparse_lens.cli import add_documented_parser

    p = add_documented_parser(subparsers, "view", "write a circuit's interactive viewer (one self-contained HTML file)",
                              __doc__, intro_paragraphs=2)
    p.add_argument("circuit", type=Path, help="a circuit file written by 'sparse-lens prune' (CIRCUIT.json, "
                                              "with CIRCUIT.safetensors beside it)")
    p.add_argument("--out", type=Path, default=None, help="the HTML file to write (default: CIRCUIT with .html)")
    p.add_argument("--model", default=None, help="the model the circuit was pruned on (default: the name it records)")
    add_viewer_options(p, "held-out task pairs for the node panel")
    p.add_argument("--seed", type=int, default=0, help="seed of the task pairs")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    circuit_path: Path = args.circuit
    if circuit_path.suffix != ".json":
        raise ValueError(f"CIRCUIT: expected the circuit's .json file, got {circuit_path}")
    out: Path = args.out or circuit_path.with_suffix(".html")
    if out.is_dir():
        raise IsADirectoryError(f"--out: {out} is a directory; expected an .html file path")

    from sparse_lens.pruning.circuit import Circuit
    from sparse_lens.visualization.viewer import write_circuit_html

    circuit = Circuit.load(circuit_path)  # names the file and what is wrong with it
    model = None
    if args.model is not None:
        from sparse_lens.model import HookedSparseTransformer

        model = HookedSparseTransformer.from_pretrained(args.model)
    path = write_circuit_html(circuit, out, model=model, n_pairs=args.pairs, n_windows=args.windows, seed=args.seed,
                              source=str(circuit_path), progress=not args.no_progress)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): open it in a browser (works offline)", file=sys.stdout)
    return 0
