"""``sparse-lens convert``: the authors' released checkpoint format, converted once into ours.

    sparse-lens convert AUTHORS_MODEL_DIR OUT_DIR [--tokenizer PATH | --no-tokenizer] [--overwrite]

Reads ``beeg_config.json`` + ``final_model.pt`` (``torch.load(weights_only=True)``) and the authors'
tokenizer (``--tokenizer``: a directory with ``encoder.json`` + ``vocab.bpe``, or a tokenizer.json; by
default found where the authors' code finds it), and writes ``save_pretrained``'s format into OUT_DIR:
config.json, model.safetensors (sparse matrices stored compactly) and tokenizer.json. Later loads
(``from_pretrained(OUT_DIR)``, ``sparse-lens tasks eval OUT_DIR``, ``sparse-lens prune OUT_DIR``)
read safetensors and never unpickle. The written model is reloaded and compared with the converted one.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "convert",
        help="convert a model in the authors' format (openai/circuit_sparsity) into ours, once",
        description="Convert AUTHORS_MODEL_DIR (beeg_config.json + final_model.pt, e.g. models/csp_yolo1) and its "
        "tokenizer into a save_pretrained directory OUT_DIR (config.json, model.safetensors, tokenizer.json).",
    )
    p.add_argument("model_dir", metavar="AUTHORS_MODEL_DIR", type=Path, help="directory with beeg_config.json and final_model.pt")
    p.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="where to write the converted model")
    tok = p.add_mutually_exclusive_group()
    tok.add_argument("--tokenizer", type=Path, default=None, metavar="PATH",
                     help="directory with the authors' encoder.json + vocab.bpe (tinypython_2k), or a tokenizer.json; "
                     "default: $TINYPYTHON_TOK_DIR, else <base>/tinypython beside <base>/models/<model>")
    tok.add_argument("--no-tokenizer", action="store_true", help="convert the weights only")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty OUT_DIR that is not a saved model")
    p.set_defaults(func=run)
    return p


def convert(model_dir: Path, out_dir: Path, tokenizer: Any = None, require_tokenizer: bool = True,
            overwrite: bool = False):
    """Load the authors' checkpoint in ``model_dir``, write it to ``out_dir`` with ``save_pretrained``,
    reload it and check the weights and tokenizer are identical. Returns the converted model."""
    import torch

    from sparse_lens.io import check_output_dir
    from sparse_lens.model.checkpoint import is_checkpoint_dir
    from sparse_lens.model.hooked_sparse_transformer import HookedSparseTransformer

    check_output_dir(out_dir, "OUT_DIR", is_own=is_checkpoint_dir, what="a saved model (no config.json)",
                     overwrite=overwrite)  # before loading a model of up to a few GB
    model = HookedSparseTransformer.from_circuit_sparsity(model_dir, tokenizer=tokenizer, require_tokenizer=require_tokenizer)
    model.save_pretrained(out_dir, overwrite=overwrite)
    reloaded = HookedSparseTransformer.from_pretrained(out_dir)
    ours, back = model.state_dict(), reloaded.state_dict()
    if ours.keys() != back.keys() or not all(torch.equal(ours[k], back[k]) for k in ours):
        raise RuntimeError(f"{out_dir}: the written weights do not read back identically")
    if (model.tokenizer is None) != (reloaded.tokenizer is None) or (
        model.tokenizer is not None and model.backend_tokenizer.to_str() != reloaded.backend_tokenizer.to_str()
    ):
        raise RuntimeError(f"{out_dir}: the written tokenizer does not read back identically")
    return model


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()  # bad input raises ValueError / OSError: one line from sparse_lens.cli.main
    model = convert(args.model_dir, args.out_dir, tokenizer=False if args.no_tokenizer else args.tokenizer,
                    require_tokenizer=not args.no_tokenizer, overwrite=args.overwrite)
    cfg = model.cfg
    n_params = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(p.count_nonzero()) for p in model.parameters())
    size = sum(f.stat().st_size for f in Path(args.out_dir).iterdir() if f.is_file())
    tok = f"tokenizer {model.tokenizer.name_or_path} ({len(model.tokenizer)} tokens)" if model.tokenizer is not None else "no tokenizer"
    print(f"converted {args.model_dir} -> {args.out_dir}: {cfg.n_layers} layers, d_model {cfg.d_model}, "
          f"{n_params:,} parameters ({nonzero / max(n_params, 1):.3f} nonzero), {tok}; "
          f"{size / 2**20:.1f} MiB written, {time.perf_counter() - start:.1f}s")
    return 0
