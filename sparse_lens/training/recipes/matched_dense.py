"""``sparse-lens match-loss``: pick the checkpoint whose validation loss matches a target model's and
ship it with a model card (paper Sec. 3.1: dense and sparse circuits compared at the same
pretraining loss).

Both the target and every candidate are scored on the same rows: ``--rows`` rows evenly spaced over the
target's packed validation split (:mod:`sparse_lens.training.matching`). The candidate closest to
the target's loss is chosen; none within ``--tolerance`` is an error (exit 2, nothing written). With
``--to`` the choice is exported (``train --export``), then node means, task losses and the card are
written as for the other shipped models, the card recording both losses, the rows, the tokens and
the wall time.

Examples::

    sparse-lens train python-dense-matched            # a dense run with its own full, shorter schedule
    sparse-lens match-loss --target python-sparse-tiny --runs runs/python-dense-matched \\
        --to sparse_lens/pretrained/python-dense-matched
    sparse-lens match-loss --target python-sparse-small --runs runs/dense-a runs/dense-b   # report only
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from sparse_lens.cli import add_documented_parser, positive_float, positive_int

    p = add_documented_parser(subparsers, "match-loss", "pick (and ship) the checkpoint at a target model's validation loss",
                              __doc__, intro_paragraphs=2)
    p.add_argument("--target", default="python-sparse-tiny", help="the model whose validation loss to match (name or directory)")
    p.add_argument("--runs", nargs="+", required=True, metavar="RUN", help="training run directories whose checkpoints are candidates")
    p.add_argument("--checkpoints", choices=("final", "all"), default="final",
                   help="final: each run's last checkpoint only (a finished schedule); all: every kept checkpoint")
    p.add_argument("--steps", type=step_range, default=None, metavar="FIRST:LAST",
                   help="only checkpoints with FIRST <= step <= LAST (each candidate costs a pass over the rows)")
    p.add_argument("--tolerance", type=positive_float, default=0.02, help="largest accepted |loss - target loss| (nats)")
    p.add_argument("--rows", type=positive_int, default=1024, help="validation rows, evenly spaced over the split")
    p.add_argument("--batch-size", type=positive_int, default=32, help="rows per forward pass")
    p.add_argument("--to", type=Path, default=None, help="export the chosen checkpoint here with a model card (default: report only)")
    p.add_argument("--overwrite", action="store_true", help="let --to write into a non-empty directory that is not a saved model")
    p.set_defaults(func=run)
    return p


def step_range(text: str) -> tuple[int, int]:
    """``FIRST:LAST`` → (first, last), 0 ≤ first ≤ last."""
    first, sep, last = text.partition(":")
    try:
        bounds = (int(first), int(last)) if sep else None
    except ValueError:
        bounds = None
    if bounds is None or bounds[0] < 0 or bounds[0] > bounds[1]:
        raise argparse.ArgumentTypeError(f"expected FIRST:LAST with 0 <= FIRST <= LAST (steps), got {text!r}")
    return bounds


def run(args: argparse.Namespace) -> int:
    from sparse_lens.model import HookedSparseTransformer
    from sparse_lens.model.checkpoint import is_checkpoint_dir, resolve_pretrained
    from sparse_lens.training.matching import model_data_config, pick_matched, run_candidates, validation_loss, validation_rows

    target_dir = resolve_pretrained(args.target)
    candidates = run_candidates(args.runs, args.checkpoints, args.steps)
    if args.to is not None:
        from sparse_lens.io import check_output_dir

        check_output_dir(args.to, "--to", is_own=is_checkpoint_dir, what="a saved model (no config.json)", overwrite=args.overwrite)
    target = HookedSparseTransformer.from_pretrained(target_dir)
    rows = validation_rows(model_data_config(target_dir), int(target.cfg.n_ctx), args.rows)
    target_loss = validation_loss(target, rows, args.batch_size)
    print(f"target {args.target}: validation loss {target_loss:.4f} on {rows.description['rows']} validation rows "
          f"(every {rows.description['stride']}th, {rows.description['tokens']:,} tokens)")
    for cand in candidates:
        model = HookedSparseTransformer.from_pretrained(cand.checkpoint)
        _check_same_tokenizer(target, model, cand.checkpoint)
        cand.val_loss = validation_loss(model, rows, args.batch_size)
        print(f"  {cand.checkpoint}: step {cand.step}/{cand.total_steps}, {cand.tokens or 0:,} tokens, "
              f"{'final' if cand.final else 'intermediate'}, validation loss {cand.val_loss:.4f}")
        del model
    chosen = pick_matched(candidates, target_loss, args.tolerance)
    print(f"chosen: {chosen.checkpoint} ({chosen.val_loss:.4f}, {chosen.val_loss - target_loss:+.4f} from the target)")
    if args.to is None:
        return 0
    from sparse_lens.training.trainer import export_checkpoint

    export_checkpoint(chosen.checkpoint, args.to, overwrite=args.overwrite)
    match = {
        "target": str(args.target), "target_val_loss": target_loss, "val_loss": chosen.val_loss,
        "difference": chosen.val_loss - target_loss, "tolerance": args.tolerance, "rows": rows.description,
        "checkpoint": chosen.checkpoint, "checkpoints_considered": args.checkpoints,
        "candidates": [c.to_dict() for c in candidates],
    }
    write_card(args.to, match)
    return 0


def _check_same_tokenizer(target: Any, model: Any, name: str) -> None:
    from sparse_lens.data import encoding_hash

    hashes = [encoding_hash(m.backend_tokenizer) if getattr(m, "tokenizer", None) is not None else None for m in (target, model)]
    if hashes[0] != hashes[1]:
        raise ValueError(f"--runs: {name} uses another tokenizer than --target (hash {hashes[1]} vs {hashes[0]}): "
                         "losses on the same rows would not compare")


def write_card(directory: Path, match: dict[str, Any]) -> dict[str, Any]:
    """Node means, task losses and the card of the exported model (as for the other shipped models),
    plus the match: both losses, the rows, the candidates."""
    from sparse_lens.io import atomic_write_text
    from sparse_lens.training.recipes.shipped_models import finish

    directory = Path(directory)
    card = finish(directory, validation={"loss": match["val_loss"], "rows": match["rows"]})  # measured already
    card["matched"] = match
    readme = (directory / "README.md").read_text().replace(
        f"Reproduce with `python -m sparse_lens.training.recipes.shipped_models --only {directory.name}`",
        f"Reproduce with `sparse-lens train {directory.name}` then `sparse-lens match-loss --target {match['target']} "
        f"--runs runs/{directory.name} --to <dir>`", 1)
    atomic_write_text(directory / "card.json", json.dumps(card, indent=1) + "\n")
    atomic_write_text(directory / "README.md", readme + matched_markdown(match, card["training"]))
    return card


def matched_markdown(match: dict[str, Any], training: dict[str, Any]) -> str:
    rows = match["rows"]
    lines = [
        "", "## Matched pretraining loss", "",
        f"Matched to `{match['target']}` (paper Sec. 3.1: circuits compared at the same pretraining loss) with "
        f"`sparse-lens match-loss`, on the same rows for both models: {rows['rows']:,} rows evenly spaced over the "
        f"{rows['split_rows']:,} of the validation split (every {rows['stride']}th; {rows['tokens']:,} tokens, n_ctx {rows['n_ctx']}, "
        f"tokenizer {rows['tokenizer_hash']}, rows hash {rows['rows_hash']}).", "",
        "| model | validation loss |", "|---|---|",
        f"| `{match['target']}` (target) | {match['target_val_loss']:.4f} |",
        f"| this model | {match['val_loss']:.4f} ({match['difference']:+.4f}; tolerance {match['tolerance']}) |", "",
        f"Chosen from {len(match['candidates'])} candidate checkpoint(s) ({match['checkpoints_considered']}): "
        f"`{match['checkpoint']}`, step {training.get('step')} of {training.get('total_steps')}, "
        f"{training.get('tokens') or 0:,} tokens, {(training.get('elapsed_s') or 0) / 60:.1f} min of training.", "",
        "| checkpoint | step | tokens | final | validation loss |", "|---|---|---|---|---|",
    ]
    for c in match["candidates"]:
        loss = "—" if c["val_loss"] is None else f"{c['val_loss']:.4f}"
        lines.append(f"| `{c['checkpoint']}` | {c['step']} | {c['tokens'] or 0:,} | {'yes' if c['final'] else 'no'} | {loss} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    from sparse_lens.cli import main as cli_main

    return cli_main(["match-loss", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
