"""The authors' tokenizer format, a GPT-2 "data gym" pair (``encoder.json`` + ``vocab.bpe``), converted
once into a Hugging Face ``tokenizers.Tokenizer`` that encodes exactly as ``tiktoken`` does.

The authors (``openai/circuit_sparsity``, ``circuit_sparsity/tiktoken_ext/tinypython.py``) build their
2048-token BPE ``tinypython_2k`` with ``tiktoken.load.data_gym_to_mergeable_bpe_ranks``: the
``vocab.bpe`` merges (after a version header line) define each token's *rank*, which is its id;
``encoder.json`` (token string -> id, in GPT-2's byte-to-unicode alphabet) must agree with those ranks;
the text is split by :data:`TINYPYTHON_PATTERN` and ``<|endoftext|>`` = 2047 is the one special token.

tiktoken encodes a piece by (1) returning it whole if it is a token, else (2) repeatedly merging the
adjacent pair whose concatenation has the lowest rank. The Hugging Face BPE model does the same with
``ignore_merges=True`` (step 1) and a merge list holding, for every token, every split of it into two
tokens, ordered by the token's rank (step 2): any two adjacent pieces that concatenate to a token can
then merge, at that token's rank, as in tiktoken. The one case the orders could differ — two
*different* splits of the same token both mergeable at once, which tiktoken breaks by position — did
not occur in the equivalence tests (tests/model/test_data_gym_tokenizer.py). No network, no
``blobfile``, no ``tiktoken`` at run time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Optional, Union

ENCODER_FILE = "encoder.json"
MERGES_FILE = "vocab.bpe"
TOKENIZER_DIR_ENV = "TINYPYTHON_TOK_DIR"
# The authors' layout: <base>/models/<model>/ and <base>/tinypython/{encoder.json,vocab.bpe}.
AUTHORS_TOKENIZER_SUBDIR = "tinypython"
TINYPYTHON_NAME = "tinypython_2k"
TINYPYTHON_PATTERN = r"""[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
TINYPYTHON_SPECIAL_TOKENS: Mapping[str, int] = {"<|endoftext|>": 2047}
# Special tokens tiktoken drops from encoder.json before comparing it with the merges.
_IGNORED_ENCODER_SPECIALS = ("<|endoftext|>", "<|startoftext|>")


def byte_alphabet() -> list[str]:
    """GPT-2's byte-to-unicode characters in tiktoken's rank order: the printable bytes other than
    space stand for themselves, the other 68 bytes for chr(256), chr(257), ... in byte order. Rank r
    (0..255) is the r-th character of this list."""
    printable = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(len(others))]


def read_data_gym(directory: Union[str, Path]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The mergeable vocabulary (token string -> rank = id) and the merges of a data-gym pair, read
    and checked as ``tiktoken.load.data_gym_to_mergeable_bpe_ranks`` does (its check is an assert;
    here a ValueError names the file and the first disagreement)."""
    directory = Path(directory)
    encoder_path, merges_path = directory / ENCODER_FILE, directory / MERGES_FILE
    for path in (encoder_path, merges_path):
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer: {directory} has no {path.name} (expected a data-gym pair {ENCODER_FILE} + {MERGES_FILE})")
    try:
        lines = merges_path.read_bytes().decode("utf-8").split("\n")
    except UnicodeDecodeError as err:
        raise ValueError(f"{merges_path}: not UTF-8 ({err})") from err
    merges: list[tuple[str, str]] = []
    for number, line in enumerate(lines[1:-1], start=2):  # tiktoken: drop the header and the text after the last newline
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{merges_path}:{number}: expected two space-separated tokens, got {line!r}")
        merges.append((parts[0], parts[1]))
    alphabet = byte_alphabet()
    known = set(alphabet)
    ranks = {ch: r for r, ch in enumerate(alphabet)}
    for number, (left, right) in enumerate(merges, start=2):
        token = left + right
        if not set(token) <= known:
            raise ValueError(f"{merges_path}:{number}: {token!r} has characters outside GPT-2's byte alphabet")
        if token in ranks:
            raise ValueError(f"{merges_path}:{number}: the merge {left!r} + {right!r} makes {token!r}, already a token")
        ranks[token] = len(ranks)
    try:
        encoder = json.loads(encoder_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{encoder_path}: not valid JSON ({err})") from err
    if not isinstance(encoder, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in encoder.values()):
        raise ValueError(f"{encoder_path}: expected a JSON object mapping token strings to integer ids")
    encoder = {k: v for k, v in encoder.items() if k not in _IGNORED_ENCODER_SPECIALS}
    if encoder != ranks:
        missing = sorted(set(ranks) - set(encoder), key=ranks.__getitem__)[:3]
        extra = sorted(set(encoder) - set(ranks))[:3]
        wrong = sorted((t for t in set(encoder) & set(ranks) if encoder[t] != ranks[t]), key=ranks.__getitem__)[:3]
        raise ValueError(
            f"{encoder_path}: does not match {MERGES_FILE} (an id must be the token's merge rank: the 256 bytes, "
            f"then one token per merge); tokens missing {missing}, unknown {extra}, "
            f"with other ids {[(t, encoder[t], ranks[t]) for t in wrong]}"
        )
    return ranks, merges


def all_split_merges(ranks: Mapping[str, int]) -> list[tuple[str, str]]:
    """For every token, every split into two tokens, ordered by the token's rank (then by the ranks
    of the two halves): the merge list under which the Hugging Face BPE merges as tiktoken does."""
    out: list[tuple[int, int, int, str, str]] = []
    for token, rank in ranks.items():
        for i in range(1, len(token)):
            left, right = token[:i], token[i:]
            if left in ranks and right in ranks:
                out.append((rank, ranks[left], ranks[right], left, right))
    out.sort()
    return [(left, right) for *_, left, right in out]


def data_gym_tokenizer(
    directory: Union[str, Path],
    pattern: str = TINYPYTHON_PATTERN,
    special_tokens: Optional[Mapping[str, int]] = None,
):
    """A ``tokenizers.Tokenizer`` with exactly tiktoken's encoding of the data-gym pair in
    ``directory``, split by ``pattern`` (default: the authors' ``tinypython_2k`` regex), with
    ``special_tokens`` (default ``{"<|endoftext|>": 2047}``). Special tokens in the text are
    encoded as such (tiktoken's ``encode(text, allowed_special="all")``)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    ranks, _ = read_data_gym(directory)
    specials = dict(TINYPYTHON_SPECIAL_TOKENS if special_tokens is None else special_tokens)
    taken = {v: k for k, v in ranks.items()}
    for name, token_id in specials.items():
        if not isinstance(token_id, int) or token_id < 0 or token_id in taken or name in ranks:
            raise ValueError(
                f"tokenizer: special token {name!r} = {token_id!r} collides with the vocabulary of {directory} "
                f"({len(ranks)} tokens, ids 0..{len(ranks) - 1})"
            )
        taken[token_id] = name
    vocab = {**ranks, **specials}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=all_split_merges(ranks), ignore_merges=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])  # fmt: skip
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(name, special=True, normalized=False) for name in specials])
    return tokenizer


def vocab_size(tokenizer) -> int:
    """Largest id + 1 (the embedding rows a model needs for this tokenizer)."""
    return max(tokenizer.get_vocab(with_added_tokens=True).values()) + 1


def find_authors_tokenizer(model_dir: Union[str, Path]) -> Optional[Path]:
    """Where the authors' code would read ``tinypython_2k`` for a model in ``model_dir``:
    ``$TINYPYTHON_TOK_DIR`` if set (then it must hold the pair), else ``<base>/tinypython`` for a model
    in ``<base>/models/<name>`` (their layout). None if neither has the files."""
    env = os.environ.get(TOKENIZER_DIR_ENV)
    if env:
        path = Path(env).expanduser()
        missing = [name for name in (ENCODER_FILE, MERGES_FILE) if not (path / name).is_file()]
        if missing:
            raise FileNotFoundError(f"${TOKENIZER_DIR_ENV}={env}: no {' or '.join(missing)} there")
        return path
    model_dir = Path(model_dir).resolve()
    candidate = model_dir.parent.parent / AUTHORS_TOKENIZER_SUBDIR
    if model_dir.parent.name == "models" and all((candidate / n).is_file() for n in (ENCODER_FILE, MERGES_FILE)):
        return candidate
    return None
