"""Shipped bridged pairs: a sparse model + its bridges in ``sparse_lens/pretrained/<name>/``, loaded
offline by name with :func:`load_bridged_pair` (``BridgedPair.load(name)`` and the ``sparse-lens
bridges`` commands take the name too).

A shipped pair stores only what loading needs, compactly:

    bridged.json         format, the sparse model's config, the dense model's name, and the tensors
                         taken from another shipped model ("shared": {tensor: fingerprint}, from "base")
    sparse.safetensors   the sparse model's other weights (matrices at <= 25 % density as values +
                         indices, as save_pretrained stores them)
    bridges.safetensors  the encoders and decoders; bridges.json (Bridges.save: shapes, sites, and the
                         dense and sparse models' weights fingerprints)

The bigram table of a model trained with ``bridges.freeze_bigram`` is its ``sparse_init``'s, bit
for bit (d_vocab² floats, 16 MB at d_vocab 2048), so it is taken from that shipped model (its
fingerprint checked) instead of being stored twice. The tokenizer is the base model's.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sparse_lens.bridges.pair import BridgedPair
from sparse_lens.model import HookedSparseTransformer, SparseTransformerConfig

PAIR_FILE = "bridged.json"
SPARSE_FILE = "sparse.safetensors"
FORMAT = "sparse_lens.bridged_pair"


def tensor_fingerprint(tensor: torch.Tensor) -> str:
    t = tensor.detach().cpu().contiguous()
    return hashlib.sha256(t.numpy().tobytes() + str((tuple(t.shape), str(t.dtype))).encode()).hexdigest()[:16]


def list_bridged_pairs() -> list[str]:
    """Names of the bridged pairs shipped with the package."""
    from sparse_lens.model.checkpoint import PRETRAINED_DIR

    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / PAIR_FILE).is_file()) if PRETRAINED_DIR.is_dir() else []


def shipped_pair_dir(name_or_dir: str | Path) -> Optional[Path]:
    """The directory of a shipped pair (a name) or of a directory in this format; None otherwise."""
    from sparse_lens.model.checkpoint import PRETRAINED_DIR

    path = Path(name_or_dir)
    if path.is_dir():
        return path if (path / PAIR_FILE).is_file() else None
    candidate = PRETRAINED_DIR / str(name_or_dir)
    return candidate if (candidate / PAIR_FILE).is_file() else None


def save_shipped_pair(pair: BridgedPair, directory: str | Path, base: str, shared: Sequence[str] = ("bigram.W_bigram",),
                      info: Optional[dict[str, Any]] = None) -> Path:
    """Write ``pair`` in the shipped format. ``shared`` tensors must equal those of the shipped model
    ``base`` bit for bit (a ValueError otherwise) and are not stored. All files are written atomically
    together."""
    from sparse_lens.bridges.bridge import BRIDGES_FILE, BRIDGES_META
    from sparse_lens.io import atomic_write_files
    from sparse_lens.model.checkpoint import compact_state_dict

    base_state = HookedSparseTransformer.from_pretrained(base).state_dict()
    state = {k: v.detach().cpu() for k, v in pair.sparse.state_dict().items()}
    fingerprints = {}
    for key in shared:
        if key not in state or key not in base_state:
            raise ValueError(f"shared: {key!r} is not a tensor of both the sparse model and {base}")
        if not torch.equal(state[key], base_state[key].cpu()):
            raise ValueError(f"shared: {key!r} differs from {base}'s (train with bridges.freeze_bigram to keep it)")
        fingerprints[key] = tensor_fingerprint(state.pop(key))
    config = pair.sparse.cfg.to_dict()
    config.pop("device", None)
    meta = {"format": FORMAT, "version": 1, "sparse_config": config, "dense": pair.dense.name,
            "base": base, "shared": fingerprints, **({"info": info} if info else {})}
    compact = compact_state_dict(state)
    writers = pair.bridges.file_writers(pair.dense, pair.sparse_side)
    writers.update({
        PAIR_FILE: lambda path: path.write_text(json.dumps(meta, indent=1, sort_keys=True, default=str) + "\n"),
        SPARSE_FILE: lambda path: save_file(compact, str(path), metadata={"format": FORMAT}),
    })
    assert set(writers) == {PAIR_FILE, SPARSE_FILE, BRIDGES_FILE, BRIDGES_META}
    return atomic_write_files(directory, writers, argument="directory")


def load_bridged_pair(name_or_dir: str | Path, dense: Any = None, strict: bool = True) -> BridgedPair:
    """A shipped bridged pair by name (``list_bridged_pairs()``, e.g. ``"python-bridged-tiny"``), a
    directory in that format, or anything :meth:`BridgedPair.load` takes (a bridge run, checkpoint
    or ``BridgedPair.save`` directory). The dense model is ``dense`` or the shipped model the bridges
    record; the bridges' fingerprints of both models are checked unless ``strict=False``."""
    directory = shipped_pair_dir(name_or_dir)
    if directory is None:
        if not Path(name_or_dir).is_dir():
            raise FileNotFoundError(
                f"pair: {str(name_or_dir)!r} is neither a directory nor a shipped bridged pair; shipped: {list_bridged_pairs()}"
            )
        return BridgedPair.load(name_or_dir, dense=dense, strict=strict)
    sparse = _load_sparse(directory, str(name_or_dir))
    from sparse_lens.bridges.bridge import Bridges, read_metadata
    from sparse_lens.bridges.residual_models import as_residual_model

    if dense is None:
        recorded = read_metadata(directory)["dense"]
        dense = HookedSparseTransformer.from_pretrained(recorded["name"])
    dense_rm = as_residual_model(dense)
    bridges = Bridges.load(directory, dense=dense_rm, sparse=as_residual_model(sparse), strict=strict)
    return BridgedPair(dense_rm, sparse, bridges=bridges)


def _load_sparse(directory: Path, name: str) -> HookedSparseTransformer:
    from sparse_lens.model.checkpoint import constructing_for_load, expand_state_dict, load_state_dict_strict

    path = directory / PAIR_FILE
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"pair: {path} is not valid JSON ({err})") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"pair: {path} is not a shipped bridged pair (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    weights = directory / SPARSE_FILE
    try:
        state = expand_state_dict(load_file(str(weights)))
    except (SafetensorError, OSError, ValueError, FileNotFoundError) as err:
        raise ValueError(f"pair: cannot read {weights} ({err})") from err
    base = HookedSparseTransformer.from_pretrained(meta["base"])
    base_state = base.state_dict()
    for key, fingerprint in meta.get("shared", {}).items():
        if key not in base_state or tensor_fingerprint(base_state[key]) != fingerprint:
            raise ValueError(f"pair: {directory} takes {key!r} from {meta['base']}, whose {key!r} is not the one it was shipped with")
        state[key] = base_state[key].detach().cpu().clone()
    cfg = SparseTransformerConfig.from_dict(meta["sparse_config"])
    with constructing_for_load():
        sparse = HookedSparseTransformer(cfg)
    load_state_dict_strict(sparse, state, source=str(weights))
    if base.tokenizer is not None:
        from sparse_lens.model.checkpoint import resolve_pretrained

        sparse.set_tokenizer(resolve_pretrained(meta["base"]) / "tokenizer.json")
    sparse.cfg.model_name = name
    return sparse.eval()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m sparse_lens.bridges.pretrained RUN DIR --base python-sparse-tiny``: ship a bridge
    run's latest checkpoint (or a checkpoint) as a compact pair in DIR (its name: DIR's name)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("out")
    parser.add_argument("--base", default="python-sparse-tiny", help="the shipped model the shared tensors come from")
    args = parser.parse_args(argv)
    pair = BridgedPair.load(args.run)
    pair.sparse.cfg.model_name = Path(args.out).name
    print(f"wrote {save_shipped_pair(pair, args.out, base=args.base)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
