"""The pretraining corpus: real Python source found on this machine, split by file, cached as Arrow.

Sources (``source=`` of `list_corpus_files` / `load_corpus`, a string or a list of them):

- ``"stdlib"``         ``.py`` files of this Python's standard library (test dirs included,
                       ``site-packages`` excluded)
- ``"site-packages"``  ``.py`` files of the installed packages (``purelib``/``platlib`` of this venv)
- ``"default"``        both of the above: the corpus the shipped models were trained on
- a directory          its ``.py`` files, recursively
- a file               one document (``.py``, ``.txt`` or any UTF-8 text)
- a ``datasets`` dir   a dataset saved with ``save_to_disk`` that has a ``text`` column

Files larger than ``max_bytes`` (1 MB) and files that are not UTF-8 are skipped; identical files are
kept once (first in sorted order). Each document gets a machine-independent ``path`` such as
``stdlib/json/decoder.py`` or ``site-packages/numpy/core/numeric.py``; the train/validation split is a
hash of that path, so it does not depend on file order or on which other files exist.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

from sparse_lens.io import directory_mode

SourceLike = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]

MAX_BYTES = 1_000_000
VAL_FRACTION = 0.02
CORPUS_FORMAT_VERSION = 1
_SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__", ".git"}


@dataclass(frozen=True)
class CorpusFile:
    """One candidate document: where it is on disk and its machine-independent name."""

    path: Path
    name: str  # e.g. "stdlib/json/decoder.py"; used as the `path` column and for the split
    size: int
    mtime_ns: int


def default_cache_dir() -> Path:
    """``$SPARSE_LENS_CACHE`` or ``~/.cache/sparse_lens``."""
    return Path(os.environ.get("SPARSE_LENS_CACHE", "~/.cache/sparse_lens")).expanduser()


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def site_packages_dirs() -> list[Path]:
    """This interpreter's (venv's) site-packages directories, deduplicated."""
    paths = sysconfig.get_paths()
    out: list[Path] = []
    for key in ("purelib", "platlib"):
        p = Path(paths[key]).resolve()
        if p.is_dir() and p not in out:
            out.append(p)
    return out


def _walk_py(root: Path, prefix: str, skip_dirs: set[str]) -> list[CorpusFile]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs)
        for fn in filenames:
            if not fn.endswith(".py"):
                continue
            p = Path(dirpath) / fn
            try:
                st = p.stat()
            except OSError:  # broken symlink
                continue
            rel = p.relative_to(root).as_posix()
            files.append(CorpusFile(p, f"{prefix}/{rel}", st.st_size, st.st_mtime_ns))
    return files


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and (
        (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()
    )


def _as_list(source: SourceLike) -> list[Union[str, os.PathLike]]:
    if isinstance(source, (str, os.PathLike)):
        return [source]
    out = list(source)
    if not out:
        raise ValueError("source: empty list of sources")
    return out


def list_corpus_files(source: SourceLike = "default", max_bytes: int = MAX_BYTES) -> list[CorpusFile]:
    """The candidate files of `source` (no reading yet): sorted by name, too-large files dropped.

    Saved ``datasets`` directories are not expanded here (see `load_corpus`).
    """
    out: list[CorpusFile] = []
    for src in _as_list(source):
        s = os.fspath(src)
        if s in ("default", "stdlib+site-packages"):
            out += list_corpus_files(["stdlib", "site-packages"], max_bytes)
            continue
        if s == "stdlib":
            found = _walk_py(stdlib_dir(), "stdlib", _SKIP_DIRS)
        elif s == "site-packages":
            found = []
            for d in site_packages_dirs():
                found += _walk_py(d, "site-packages", {"__pycache__", ".git"})
        else:
            p = Path(s).expanduser()
            if not p.exists():
                raise FileNotFoundError(f"source: {s!r} does not exist (expected 'stdlib', 'site-packages', 'default', a directory, a file or a saved datasets directory)")
            if _is_saved_dataset(p):
                sts = [q.stat() for q in sorted(p.rglob("*")) if q.is_file()]
                size, mtime = sum(s.st_size for s in sts), max(s.st_mtime_ns for s in sts)
                found = [CorpusFile(p, f"dataset:{p.name}", 0, mtime * 1_000_003 + size)]
            elif p.is_dir():
                found = _walk_py(p, p.resolve().name, {"__pycache__", ".git"})
                if not found:
                    raise ValueError(f"source: no .py files found in {s!r}")
            else:
                st = p.stat()
                found = [CorpusFile(p, p.name, st.st_size, st.st_mtime_ns)]
        out += sorted(found, key=lambda f: f.name)
    out = [f for f in out if f.size <= max_bytes]
    if not out:
        raise ValueError(f"source: no .py files (of at most {max_bytes} bytes) found in {source!r}")
    return out


def default_corpus_files(max_bytes: int = MAX_BYTES) -> list[CorpusFile]:
    """The candidate files of the corpus used for the shipped models: stdlib + site-packages."""
    return list_corpus_files("default", max_bytes)


def is_validation(name: str, val_fraction: float = VAL_FRACTION) -> bool:
    """Deterministic split by file: the first 8 bytes of sha256(name) as a fraction of 2**64."""
    h = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")
    return h < val_fraction * 2**64


def read_documents(files: Iterable[CorpusFile]) -> tuple[list[str], list[str], dict[str, int]]:
    """Read files as UTF-8; skip undecodable files and exact duplicates (by content hash).

    Returns (texts, names, skipped counts)."""
    texts: list[str] = []
    names: list[str] = []
    seen: set[bytes] = set()
    skipped = {"non_utf8": 0, "duplicate": 0, "empty": 0}
    for f in files:
        if f.name.startswith("dataset:"):
            for text, name in _read_saved_dataset(f.path):
                digest = hashlib.sha256(text.encode("utf-8")).digest()
                if digest in seen:
                    skipped["duplicate"] += 1
                    continue
                seen.add(digest)
                texts.append(text)
                names.append(name)
            continue
        data = f.path.read_bytes()
        if not data.strip():
            skipped["empty"] += 1
            continue
        digest = hashlib.sha256(data).digest()
        if digest in seen:
            skipped["duplicate"] += 1
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            skipped["non_utf8"] += 1
            continue
        seen.add(digest)
        texts.append(text)
        names.append(f.name)
    return texts, names, skipped


def _read_saved_dataset(path: Path) -> Iterable[tuple[str, str]]:
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        ds = datasets.concatenate_datasets([ds[k] for k in sorted(ds)])
    if "text" not in ds.column_names:
        raise ValueError(f"source: dataset {str(path)!r} has no 'text' column (columns: {ds.column_names})")
    has_path = "path" in ds.column_names
    for i, row in enumerate(ds):
        name = f"dataset:{path.name}/{row['path'] if has_path else i}"
        yield row["text"], name


def corpus_key(files: Sequence[CorpusFile], val_fraction: float, max_files: Optional[int]) -> str:
    """Hash of the file list (names, locations, sizes, mtimes) and the split settings."""
    h = hashlib.sha256()
    h.update(json.dumps([CORPUS_FORMAT_VERSION, val_fraction, max_files]).encode())
    for f in files:
        h.update(f"{f.name}\0{f.path}\0{f.size}\0{f.mtime_ns}\n".encode("utf-8"))
    return h.hexdigest()[:20]


def load_corpus(
    source: SourceLike = "default",
    val_fraction: float = VAL_FRACTION,
    cache_dir: Optional[Union[str, os.PathLike]] = None,
    max_files: Optional[int] = None,
    max_bytes: int = MAX_BYTES,
) -> Any:
    """Load `source` as a ``datasets.DatasetDict`` with ``train`` / ``validation`` splits.

    Columns: ``text`` (file contents) and ``path`` (machine-independent name). The first call reads
    the files and writes Arrow files to ``cache_dir/corpus/<key>``; later calls with the same files
    (names, sizes, mtimes) load it from disk. Works with ``HF_DATASETS_OFFLINE=1``.
    ``max_files`` keeps the first N candidate files (sorted by name), for quick runs and tests.
    """
    import datasets

    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction: expected a value in [0, 1), got {val_fraction}")
    files = list_corpus_files(source, max_bytes)
    if max_files is not None:
        if max_files < 1:
            raise ValueError(f"max_files: expected a positive number, got {max_files}")
        files = files[:max_files]
    key = corpus_key(files, val_fraction, max_files)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / "corpus" / key
    if (target / "dataset_dict.json").is_file():
        return _load_cached(target)

    texts, names, skipped = read_documents(files)
    if not texts:
        raise ValueError(f"source: no readable UTF-8 documents in {source!r} (skipped: {skipped})")
    val = [is_validation(n, val_fraction) for n in names]
    splits = {}
    for split, want in (("train", False), ("validation", True)):
        idx = [i for i, v in enumerate(val) if v == want]
        splits[split] = datasets.Dataset.from_dict(
            {"text": [texts[i] for i in idx], "path": [names[i] for i in idx]},
            features=datasets.Features({"text": datasets.Value("string"), "path": datasets.Value("string")}),
        )
    # `datasets` cannot reload an empty split from disk: save the non-empty ones, recreate the rest
    dd = datasets.DatasetDict({k: v for k, v in splits.items() if len(v)})
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{key}-"))
    os.chmod(tmp, directory_mode())  # mkdtemp's 0700 -> the user's umask, like any directory
    bars = not datasets.utils.are_progress_bars_disabled()
    datasets.utils.disable_progress_bars()
    try:
        dd.save_to_disk(str(tmp))
        (tmp / "sparse_lens_corpus.json").write_text(
            json.dumps({"source": str(source), "files": len(files), "skipped": skipped, "key": key})
        )
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race: use its copy
            if not (target / "dataset_dict.json").is_file():
                raise
    finally:
        if bars:
            datasets.utils.enable_progress_bars()
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return _load_cached(target)


def _load_cached(target: Path) -> Any:
    import datasets

    dd = datasets.load_from_disk(str(target))
    features = datasets.Features({"text": datasets.Value("string"), "path": datasets.Value("string")})
    out = {}
    for split in ("train", "validation"):
        out[split] = dd[split] if split in dd else datasets.Dataset.from_dict({"text": [], "path": []}, features=features)
    return datasets.DatasetDict(out)


# ---------------------------------------------------------------------- statistics
TASK_PATTERNS: dict[str, str] = {
    "nested_list_close_eol": r"\]\][ \t]*,?[ \t]*$",
    "while_true": r"\bwhile True:",
    "return_true": r"\breturn True\b",
    "set_add": r"\.add\(",
    "plus_equals": r" \+= ",
    "for_in_range": r"\bfor \w+ in range\(",
    "for_in_enumerate": r"\bin enumerate\(",
    "elif": r"\belif\b",
    "else_colon": r"\belse:",
    "lambda": r"\blambda\b",
    "def_init": r"\bdef __init__\(",
    "single_quote_string": r"'[^'\n]*'",
    "double_quote_string": r'"[^"\n]*"',
}


def count_patterns(texts: Iterable[str], patterns: Optional[Mapping[str, str]] = None) -> dict[str, int]:
    """Occurrences of each regex (``re.MULTILINE``) summed over `texts`; default `TASK_PATTERNS`."""
    pats = TASK_PATTERNS if patterns is None else patterns
    compiled = {k: re.compile(v, re.MULTILINE) for k, v in pats.items()}
    counts = {k: 0 for k in compiled}
    for text in texts:
        for k, rx in compiled.items():
            counts[k] += sum(1 for _ in rx.finditer(text))
    return counts


def corpus_stats(texts: Sequence[str], tokenizer: Any = None, batch_size: int = 256) -> dict[str, float]:
    """Files, UTF-8 bytes, characters and, with a tokenizer, tokens and characters per token."""
    stats: dict[str, float] = {
        "files": len(texts),
        "bytes": sum(len(t.encode("utf-8")) for t in texts),
        "chars": sum(len(t) for t in texts),
    }
    if tokenizer is not None:
        from sparse_lens.data.tokenizer import encode_ids

        n = 0
        for i in range(0, len(texts), batch_size):
            n += sum(len(ids) for ids in encode_ids(tokenizer, list(texts[i : i + batch_size])))
        stats["tokens"] = n
        stats["chars_per_token"] = stats["chars"] / max(n, 1)
    return stats
