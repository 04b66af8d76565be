"""sparse_lens.io: every write is atomic, takes the user's umask, and leaves nothing hidden behind."""

import os
import stat

import pytest

from sparse_lens.io import (
    atomic_directory,
    atomic_write,
    atomic_write_files,
    atomic_write_text,
    check_output_dir,
    current_umask,
)


@pytest.fixture
def umask():
    """Set the process umask for one test (and restore it)."""
    old = os.umask(0o022)
    os.umask(old)

    def set_(mask: int) -> None:
        os.umask(mask)

    yield set_
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_files_and_directories_take_the_umask(tmp_path, umask, mask):
    umask(mask)
    assert current_umask() == mask
    atomic_write_text(tmp_path / "a.txt", "x")
    atomic_write_files(tmp_path / "d", {"b.bin": lambda p: p.write_bytes(b"1")})
    with atomic_directory(tmp_path / "step") as tmp:
        (tmp / "c.json").write_text("{}")
        (tmp / "private").touch(mode=0o600)  # as safetensors' save_file creates its files
    assert mode(tmp_path / "step" / "private") == 0o666 & ~mask
    assert mode(tmp_path / "a.txt") == 0o666 & ~mask  # mkstemp alone gives 0600
    assert mode(tmp_path / "d" / "b.bin") == 0o666 & ~mask
    assert mode(tmp_path / "d") == 0o777 & ~mask
    assert mode(tmp_path / "step") == 0o777 & ~mask  # mkdtemp alone gives 0700
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "d", "step"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "old")

    def boom(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(tmp_path / "a.txt", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_files(tmp_path, {"a.txt": lambda p: p.write_text("new"), "b.txt": boom})
    with pytest.raises(OSError, match="disk full"):
        with atomic_directory(tmp_path / "a.txt.d") as tmp:
            boom(tmp / "x")
    assert (tmp_path / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_replacing_a_directory_whole_leaves_no_backup(tmp_path):
    for content in ("1", "2"):
        with atomic_directory(tmp_path / "step") as tmp:
            (tmp / "f").write_text(content)
    assert (tmp_path / "step" / "f").read_text() == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["step"]


def test_destinations_that_are_the_wrong_kind_are_refused(tmp_path):
    (tmp_path / "file").write_text("mine")
    (tmp_path / "dir").mkdir()
    with pytest.raises(IsADirectoryError, match="out: .*dir is a directory"):
        atomic_write_text(tmp_path / "dir", "x", argument="out")
    with pytest.raises(NotADirectoryError, match="--out: .*file is a file; expected a directory"):
        check_output_dir(tmp_path / "file", "--out")
    with pytest.raises(NotADirectoryError, match="--out: .*file is a file"):
        check_output_dir(tmp_path / "file" / "sub", "--out")
    with pytest.raises(NotADirectoryError, match="file is a file"):
        atomic_write_files(tmp_path / "file", {"a": lambda p: p.write_text("x")})
    assert (tmp_path / "file").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file"]


def test_check_output_dir_creates_nothing_and_guards_foreign_directories(tmp_path):
    check_output_dir(tmp_path / "new" / "deeper", "--out")
    assert not (tmp_path / "new").exists()
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    is_own = lambda d: (d / "config.json").is_file()  # noqa: E731
    with pytest.raises(FileExistsError, match="--to: .*notes is not empty and is not a saved model.*--overwrite"):
        check_output_dir(foreign, "--to", is_own=is_own, what="a saved model")
    check_output_dir(foreign, "--to", is_own=is_own, overwrite=True)
    (foreign / "config.json").write_text("{}")
    check_output_dir(foreign, "--to", is_own=is_own)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_destination(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="--out: cannot write to .*locked"):
            check_output_dir(locked / "run", "--out")
    finally:
        locked.chmod(0o700)
