"""Byte-level BPE tokenizer for Python source, trained with HF ``tokenizers``.

``<|endoftext|>`` is id 0 (document separator and BOS). The pre-tokenizer keeps the tokens the
paper's tasks need distinct: one regex `Split` (isolated) runs before a regex-free `ByteLevel`:

- ``'''`` / ``\"\"\"`` are pre-tokens; any other ``'`` or ``"`` is alone (so no ``')``, ``('``, ``''``, ``'s``)
- runs of ``]`` are pre-tokens (so ``]`` and ``]]`` are tokens, never ``],`` or ``])``)
- ``)`` is alone (no ``):`` or ``),``); so is ``}`` unless a newline follows it
- ``line_end_closers`` (default on; the paper's convention): a ``]`` run or a ``}`` takes the one
  newline after it, so ``]\\n``, ``]]\\n`` and ``}\\n`` are tokens; the paper's bracket task compares
  ``]]\\n`` with ``]\\n``, which the corpus answers, while ``]]`` vs ``]`` it does not
  (``bracket_depth``). ``line_end_closers=False`` keeps closers alone (the first shipped tokenizer)
- any other ``\\n`` is alone (newline never fuses with indentation or with ``:``)
- identifiers include ``_`` and digits, with an optional leading space (`` range``, ``__init__``)
- numbers and other punctuation runs take an optional leading space (`` =``, `` ==``, `` +=``)
- remaining spaces/tabs: a run, leaving its last space to the word that follows (GPT-2 style)

BPE never merges across pre-tokens, so none of the above can fuse, whatever the corpus frequencies.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

EOT = "<|endoftext|>"
DEFAULT_VOCAB_SIZE = 2048

_CLOSERS = {
    False: r"|\]+|[)}]",  # closers alone
    True: r"|\]+\n?|\}\n?|\)",  # a ] run or a } carries the newline that follows it
}


def pre_tokenizer_pattern(line_end_closers: bool = True) -> str:
    """The regex of our `Split` pre-tokenizer; `line_end_closers` lets a closing ``]`` run or ``}``
    take the newline after it (``]]\\n``, ``]\\n``, ``}\\n``), as the paper's tokenizer does."""
    return (
        r"'''|\"\"\"|['\"]"
        + _CLOSERS[bool(line_end_closers)]
        + r"|\n"
        r"| ?[\p{L}_][\p{L}\p{N}_]*"
        r"| ?\p{N}+"
        r"| ?[^\s\p{L}\p{N}_'\"\])}]+"
        r"|[^\S\n]+(?!\S)|[^\S\n]+"
    )


PRE_TOKENIZER_PATTERN = pre_tokenizer_pattern()

TASK_TOKENS: tuple[str, ...] = (
    "'", '"', "]", "]]", "}", ")", ":", "\n",
    " =", " ==", " +=", "add", ".",
    " as", " in", " range", " enumerate", " else", " elif", " for", " while", " if",
    " lambda", " def", " True", "__init__",
)  # fmt: skip
LINE_END_CLOSER_TOKENS: tuple[str, ...] = ("]\n", "]]\n", "}\n")  # single tokens too with line_end_closers


def task_tokens(line_end_closers: bool = True) -> tuple[str, ...]:
    """The strings `check_task_tokens` requires to be single tokens under that pre-tokenizer."""
    return TASK_TOKENS + (LINE_END_CLOSER_TOKENS if line_end_closers else ())


def has_line_end_closers(tokenizer: Any) -> bool:
    """Whether `tokenizer`'s pre-tokenizer keeps ``]`` and a following newline together."""
    pre = tokenizer.pre_tokenizer
    return pre is not None and len(pre.pre_tokenize_str("]\n")) == 1


def build_pre_tokenizer(line_end_closers: bool = True) -> Any:
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pre_tokenizer_pattern(line_end_closers)), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def new_tokenizer(line_end_closers: bool = True) -> Any:
    """An untrained byte-level BPE tokenizer with our pre-tokenizer and decoder."""
    from tokenizers import Tokenizer, decoders, models

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = build_pre_tokenizer(line_end_closers)
    tok.decoder = decoders.ByteLevel()
    return tok


def min_vocab_size() -> int:
    """256 byte tokens + the special token."""
    return 256 + 1


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    length: Optional[int] = None,
    show_progress: bool = False,
    force_single: Sequence[str] = (),
    line_end_closers: bool = True,
) -> Any:
    """Train a byte-level BPE ``tokenizers.Tokenizer`` on `texts`; ``<|endoftext|>`` gets id 0.

    Strings of `force_single` that BPE did not make single tokens become so through
    `force_single_tokens` (appended merges; the vocabulary size stays `vocab_size`).
    `line_end_closers`: see `pre_tokenizer_pattern`.
    """
    from tokenizers import pre_tokenizers, trainers

    if vocab_size < min_vocab_size():
        raise ValueError(
            f"vocab_size: {vocab_size} is too small; the 256-byte alphabet plus {EOT} needs at least {min_vocab_size()}"
        )
    tok = new_tokenizer(line_end_closers)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=length)
    if tok.token_to_id(EOT) != 0:
        raise RuntimeError(f"{EOT} is not id 0 after training")
    if force_single:
        tok = force_single_tokens(tok, force_single)
    return tok


def force_single_tokens(tokenizer: Any, strings: Sequence[str], keep_vocab_size: bool = True) -> Any:
    """Return a copy of `tokenizer` in which each string of `strings` encodes to one token.

    ``tokenizers`` trainers cannot force merges, so this edits the trained BPE model: for a string
    currently split into pieces t1..tn it appends the merges (t1, t2), (t1t2, t3), ... at the lowest
    priority. This is ordinary BPE (e.g. `` enumerated`` becomes `` enumerate`` + ``d``), unlike an
    added token, which would be cut out of the raw text before pre-tokenization. With
    `keep_vocab_size` the same number of the last-learned (rarest) merges is dropped first.
    Each string must be a single pre-token (e.g. `` enumerate``, not ``x = 1``).
    """
    import json

    from tokenizers import Tokenizer

    pre = tokenizer.pre_tokenizer
    needed: list[list[str]] = []
    for s in strings:
        parts = [p for p, _ in pre.pre_tokenize_str(s)]
        if len(parts) != 1:
            raise ValueError(f"force_single_tokens: {s!r} is {len(parts)} pre-tokens {parts}; BPE cannot merge across them")
        pieces = tokenizer.encode(s, add_special_tokens=False).tokens
        if len(pieces) > 1:
            needed.append(pieces)
    if not needed:
        return tokenizer
    js = json.loads(tokenizer.to_str())
    model = js["model"]
    vocab: dict[str, int] = model["vocab"]
    merges: list[Any] = [m.split(" ") if isinstance(m, str) else list(m) for m in model["merges"]]
    new_merges: list[list[str]] = []
    new_tokens: list[str] = []
    for pieces in needed:
        cur = pieces[0]
        for nxt in pieces[1:]:
            merged = cur + nxt
            if merged not in vocab and merged not in new_tokens:
                new_tokens.append(merged)
            new_merges.append([cur, nxt])
            cur = merged
    if keep_vocab_size:
        # Drop the last-learned merges whose token nothing else needs: not a piece of a string being
        # forced, not a token any of `strings` encodes to now (an earlier forcing), not an input of a merge.
        keep = {p for pieces in needed for p in pieces} | {t for pair in new_merges for t in pair}
        keep |= {t for s in strings for t in tokenizer.encode(s, add_special_tokens=False).tokens}
        for _ in new_tokens:
            used = keep | {t for x, y in merges for t in (x, y)}
            i = next((i for i in range(len(merges) - 1, -1, -1) if "".join(merges[i]) not in used), None)
            if i is None:
                raise ValueError(f"force_single_tokens: vocabulary too small to make {len(new_tokens)} more tokens")
            del vocab["".join(merges.pop(i))]
    merges += new_merges
    ordered = sorted(vocab, key=vocab.__getitem__) + new_tokens
    model["vocab"] = {t: i for i, t in enumerate(ordered)}
    model["merges"] = merges
    for added in js.get("added_tokens", []):
        added["id"] = model["vocab"][added["content"]]
    out_tok = Tokenizer.from_str(json.dumps(js))
    for s in strings:
        if len(out_tok.encode(s, add_special_tokens=False).ids) != 1:
            raise RuntimeError(f"force_single_tokens: {s!r} is still not a single token")
    return out_tok


def save_tokenizer(tokenizer: Any, out_dir: Union[str, os.PathLike]) -> Path:
    """Write ``out_dir/tokenizer.json`` (atomically) and return its path."""
    from sparse_lens.io import atomic_write

    return atomic_write(Path(out_dir) / "tokenizer.json", lambda tmp: tokenizer.save(str(tmp), pretty=True))


def load_tokenizer(path: Union[str, os.PathLike]) -> Any:
    """Load a ``tokenizer.json`` (or a directory holding one)."""
    from tokenizers import Tokenizer

    p = Path(path)
    if p.is_dir():
        p = p / "tokenizer.json"
    if not p.is_file():
        raise FileNotFoundError(f"tokenizer: no file {p}")
    return Tokenizer.from_file(str(p))


def tokenizer_hash(tokenizer: Any) -> str:
    """sha256 of the serialized tokenizer (first 16 hex digits)."""
    return hashlib.sha256(tokenizer.to_str().encode("utf-8")).hexdigest()[:16]


def encoding_hash(tokenizer: Any) -> str:
    """`tokenizer_hash` of the parts that decide token ids as this library encodes (`encode_ids`: no
    special tokens added): the post-processor is left out, since it only acts when special tokens are
    added. Two tokenizers with equal encoding hashes give the same ids for every text (the shipped
    tiny models' files carry a no-op ``TemplateProcessing`` that later saves do not)."""
    import json

    spec = json.loads(tokenizer.to_str())
    spec["post_processor"] = None
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def encode_ids(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text; a literal ``<|endoftext|>`` inside a text is encoded as plain text."""
    old = tokenizer.encode_special_tokens
    tokenizer.encode_special_tokens = True
    try:
        fast = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
        encs = fast(list(texts), add_special_tokens=False)
    finally:
        tokenizer.encode_special_tokens = old
    return [e.ids for e in encs]


def task_token_report(tokenizer: Any, strings: Sequence[str] = TASK_TOKENS) -> dict[str, list[str]]:
    """How each string is tokenized (list of token strings, byte-level alphabet)."""
    return {s: tokenizer.encode(s, add_special_tokens=False).tokens for s in strings}


def check_task_tokens(tokenizer: Any, strings: Sequence[str] = TASK_TOKENS) -> None:
    """Raise ValueError listing every string of `strings` that does not encode to exactly one token."""
    bad = {s: toks for s, toks in task_token_report(tokenizer, strings).items() if len(toks) != 1}
    if bad:
        lines = ", ".join(f"{s!r} -> {toks}" for s, toks in bad.items())
        raise ValueError(f"{len(bad)} task strings are not single tokens: {lines}")


def check_round_trip(tokenizer: Any, texts: Iterable[str]) -> None:
    """Raise ValueError if decode(encode(text)) != text for any text."""
    texts = list(texts)
    for text, ids in zip(texts, encode_ids(tokenizer, texts)):
        back = tokenizer.decode(ids, skip_special_tokens=False)
        if back != text:
            i = next((k for k, (a, b) in enumerate(zip(text, back)) if a != b), min(len(text), len(back)))
            raise ValueError(f"round trip differs at char {i}: {text[i:i + 40]!r} -> {back[i:i + 40]!r}")


def iter_texts(dataset: Any, batch_size: int = 1000) -> Iterator[str]:
    """The ``text`` column of a ``datasets.Dataset`` (or any iterable of strings), lazily."""
    if hasattr(dataset, "iter") and hasattr(dataset, "column_names"):
        for batch in dataset.iter(batch_size=batch_size):
            yield from batch["text"]
    else:
        yield from dataset
