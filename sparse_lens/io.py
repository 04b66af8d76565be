"""Reading JSON files with clear errors; writing files and directories: atomically, with the permissions the user's umask gives.

Every file the library writes goes through :func:`atomic_write` (a temporary file beside the
destination, flushed, given the mode ``0o666 & ~umask`` like a file any other tool creates, then
moved into place with ``os.replace``): a crash leaves the old file or the new one, never half of one,
and no file is readable only by its owner because ``mkstemp`` made it so. Directories the library
owns outright (a training checkpoint ``step_*``) are built in a temporary directory and moved into
place with :func:`atomic_directory`. Destinations given by a user are checked, before any work, by
:func:`check_output_dir`.

This module imports nothing heavy (no torch): every layer, and the command line, uses it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

__all__ = [
    "atomic_directory",
    "atomic_write",
    "atomic_write_files",
    "atomic_write_json",
    "atomic_write_text",
    "check_output_dir",
    "current_umask",
    "directory_mode",
    "file_mode",
    "make_dirs",
    "read_json_object",
]

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux: /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # elsewhere the only way to read it is to set it (and set it back)
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets from ``open()``: ``0o666 & ~umask``."""
    return 0o666 & ~current_umask()


def directory_mode() -> int:
    """The mode a new directory gets from ``mkdir``: ``0o777 & ~umask``."""
    return 0o777 & ~current_umask()


def make_dirs(directory: str | Path, argument: str = "output directory") -> Path:
    """``mkdir -p`` with a clear error where a path component is a file."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next((p for p in (directory, *directory.parents) if p.exists() and not p.is_dir()), directory)
        raise NotADirectoryError(f"{argument}: {blocking} is a file, not a directory") from None
    return directory


def atomic_write(path: str | Path, write: Callable[[Path], Any], argument: str = "output") -> Path:
    """Create or replace the file ``path`` atomically: ``write(tmp)`` fills a temporary file beside it.

    The file gets the user's umask permissions; parent directories are created as needed; on any
    error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{argument}: {path} is a directory; expected a file path")
    make_dirs(path.parent, argument)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        _fsync(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str, argument: str = "output") -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), argument)


def atomic_write_json(path: str | Path, payload: Any, argument: str = "output", **dumps_kwargs: Any) -> Path:
    """Write ``payload`` as JSON (indent 2 unless told otherwise, a final newline) atomically."""
    dumps_kwargs.setdefault("indent", 2)
    return atomic_write_text(path, json.dumps(payload, **dumps_kwargs) + "\n", argument)


def read_json_object(path: str | Path, expected: str) -> dict[str, Any]:
    """The JSON object in ``path``; a ValueError naming the file when it is not valid UTF-8 JSON or not
    an object (``expected`` says what it should hold, e.g. "a training checkpoint's state")."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object ({expected}), got {type(value).__name__}")
    return value


def atomic_write_files(
    directory: str | Path,
    writers: Mapping[str, Callable[[Path], Any]],
    remove: Sequence[str] = (),
    argument: str = "output directory",
) -> Path:
    """Write several files into ``directory`` (created if needed), each atomically.

    All temporary files are written first, then moved into place one after the other, so a failed
    write changes nothing. Other files in the directory are left alone, except the names in
    ``remove`` (files of the same artifact that the new version does not have).
    """
    directory = make_dirs(directory, argument)
    staged: list[tuple[Path, Path]] = []
    try:
        for name, write in writers.items():
            target = directory / name
            if target.is_dir():
                raise IsADirectoryError(f"{argument}: {target} is a directory; expected a file")
            fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
            os.close(fd)
            staged.append((Path(tmp_name), target))
            write(Path(tmp_name))
            _fsync(Path(tmp_name))
            os.chmod(tmp_name, file_mode())
        for tmp, target in staged:
            os.replace(tmp, target)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for name in remove:
        stale = directory / name
        if stale.is_file() and name not in writers:
            stale.unlink()
    return directory


@contextmanager
def atomic_directory(directory: str | Path) -> Iterator[Path]:
    """``with atomic_directory(d) as tmp:`` fill ``tmp``; on success it becomes ``d`` (a directory the
    library owns outright, replaced whole if it exists), with the user's umask permissions. On error
    nothing is left behind and ``d`` is unchanged."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} is a file, not a directory")
    make_dirs(directory.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        os.chmod(tmp, directory_mode())
        yield tmp
        fmode, dmode = file_mode(), directory_mode()
        for f in tmp.rglob("*"):  # flush before the rename makes them visible; writers such as
            if f.is_file():  # safetensors create files 0600: give every file the umask's mode
                _fsync(f)
                os.chmod(f, fmode)
            elif f.is_dir():
                os.chmod(f, dmode)
        if directory.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
            os.replace(directory, old / directory.name)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_output_dir(
    directory: str | Path,
    argument: str = "output directory",
    *,
    is_own: Optional[Callable[[Path], bool]] = None,
    what: str = "an output directory",
    overwrite: bool = False,
) -> Path:
    """Check, before any work and without creating anything, that ``directory`` can receive output.

    Refuses a path that is a file (or lies under one), a directory that cannot be written, and, when
    ``is_own`` is given, a non-empty directory for which ``is_own(directory)`` is false (it holds
    something else: writing into it needs ``overwrite=True``, and even then other files are kept).
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{argument}: {directory} is a file; expected a directory")
    existing = next((p for p in (directory, *directory.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise NotADirectoryError(f"{argument}: {existing} is a file, so {directory} cannot be a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"{argument}: cannot write to {existing} (permission denied)")
    if (
        is_own is not None
        and not overwrite
        and directory.is_dir()
        and any(directory.iterdir())
        and not is_own(directory)
    ):
        raise FileExistsError(
            f"{argument}: {directory} is not empty and is not {what}; choose a new or empty directory, "
            "or pass overwrite=True (--overwrite) to write into it (its other files are left alone)"
        )
    return directory


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
