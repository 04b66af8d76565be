"""`sparse-lens predictions MODEL [--circuits PRUNE_DIR] --out DIR`: the circuits' predictions, tested
(paper Sec. 4) — context dilution of bracket counting for the model and its circuit, and feature
validation by replacement on the quote circuit's most quote-type nodes. Writes predictions.json and
predictions.md into --out; `sparse-lens plot DIR` draws the dilution curves.

Example::

    sparse-lens prune python-sparse-tiny --task single_double_quote --task bracket_counting --out runs/demo
    sparse-lens predictions python-sparse-tiny --circuits runs/demo --out runs/demo/predictions
    sparse-lens plot runs/demo/predictions
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    from sparse_lens.cli import add_documented_parser, positive_int

    p = add_documented_parser(subparsers, "predictions",
                              "test the circuits' predictions: context dilution and feature replacement", __doc__)
    p.add_argument("model", metavar="MODEL", help="shipped model name, a save_pretrained directory or a training run")
    p.add_argument("--circuits", type=Path, default=None, metavar="PRUNE_DIR",
                   help="a `sparse-lens prune` output holding bracket_counting.json and/or single_double_quote.json")
    p.add_argument("--lengths", type=positive_int, nargs="+", default=None,
                   help="list lengths (elements) for context dilution (default: 1 2 4 8 12 16 24 32, "
                   "sparse_lens.pruning.context_dilution.DEFAULT_LENGTHS)")
    p.add_argument("--pairs", type=positive_int, default=64, help="test pairs per list length")
    p.add_argument("--nodes", type=positive_int, default=3, help="quote circuit nodes to replace (most quote-type first)")
    p.add_argument("--seed", type=int, default=0, help="seed of the pairs")
    p.add_argument("--out", type=Path, required=True, help="output directory (predictions.json, predictions.md)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from sparse_lens.io import atomic_write_json, atomic_write_text, check_output_dir, make_dirs
    from sparse_lens.pruning.model_source import check_model_source, load_model
    from sparse_lens.pruning.predictions import circuit_predictions, predictions_markdown

    check_model_source(args.model)
    if args.circuits is not None and not args.circuits.is_dir():
        raise FileNotFoundError(f"--circuits: {args.circuits} is not a directory (a `sparse-lens prune` output)")
    check_output_dir(args.out, argument="--out")
    model = load_model(args.model)
    from sparse_lens.pruning.context_dilution import DEFAULT_LENGTHS

    report = circuit_predictions(model, args.circuits, lengths=args.lengths or DEFAULT_LENGTHS, n_pairs=args.pairs,
                                 n_nodes=args.nodes, seed=args.seed, progress=True)
    markdown = predictions_markdown(report)
    make_dirs(args.out, argument="--out")
    atomic_write_json(args.out / "predictions.json", report, argument="--out", indent=2)
    atomic_write_text(args.out / "predictions.md", markdown, argument="--out")
    print(markdown)
    print(f"written: {args.out}/predictions.json, {args.out}/predictions.md (plot: sparse-lens plot {args.out})")
    return 0
