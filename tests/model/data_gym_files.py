"""Data-gym tokenizer pairs (``encoder.json`` + ``vocab.bpe``, the authors' format) made in the tests
from our shipped BPE's merges: the stand-in for the authors' ``tinypython_2k``, whose files cannot be
downloaded here."""

import json
import random
from pathlib import Path

from sparse_lens.model.checkpoint import PRETRAINED_DIR
from sparse_lens.model.data_gym_tokenizer import byte_alphabet

SHIPPED_TOKENIZER = PRETRAINED_DIR / "tokenizer-python-2k" / "tokenizer.json"


def shipped_merges() -> list[tuple[str, str]]:
    """The 1,791 merges of our shipped 2048-token BPE (256 bytes + 1,791 merges + <|endoftext|>)."""
    merges = json.loads(SHIPPED_TOKENIZER.read_text())["model"]["merges"]
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges]


def shuffled_merges(merges: list[tuple[str, str]], seed: int = 1, swaps: int = 600) -> list[tuple[str, str]]:
    """The merges with many nearby pairs of ranks exchanged: a valid data-gym vocabulary in which a
    token can rank before one of its halves, so that merging by the file's merge list (rather than
    by the ranks of all tokens, as tiktoken does) gives different ids."""
    rng = random.Random(seed)
    out = list(merges)
    for _ in range(swaps):
        i = rng.randrange(len(out))
        j = min(len(out) - 1, i + rng.randrange(1, 40))
        out[i], out[j] = out[j], out[i]
    return out


def write_data_gym(directory: Path, merges: list[tuple[str, str]], eot_id: int | None = 2047) -> Path:
    """Write ``encoder.json`` (ids = tiktoken's ranks: the 256 bytes in its order, then one token per
    merge; ``<|endoftext|>`` = ``eot_id`` unless None) and ``vocab.bpe`` (a version header, then one
    merge per line) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    encoder = {ch: i for i, ch in enumerate(byte_alphabet())}
    for left, right in merges:
        encoder[left + right] = len(encoder)
    if eot_id is not None:
        encoder["<|endoftext|>"] = eot_id
    (directory / "encoder.json").write_text(json.dumps(encoder), encoding="utf-8")
    (directory / "vocab.bpe").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    return directory
