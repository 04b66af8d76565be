"""save_pretrained never deletes what it did not write, refuses a file or a foreign directory, and
writes with the user's umask."""

import os
import stat

import pytest
import torch

from sparse_lens.model import HookedSparseTransformer

from .conftest import make_model


def listing(path):
    return sorted(p.name for p in path.iterdir())


def test_saving_into_a_checkpoint_keeps_the_users_files(tmp_path):
    out = tmp_path / "m"
    make_model().save_pretrained(out)
    (out / "notes.txt").write_text("my notes")
    (out / "analysis.ipynb").write_text("{}")
    second = make_model(seed=1)
    with torch.no_grad():
        second.embed.W_E.add_(1)
    second.save_pretrained(out)
    assert (out / "notes.txt").read_text() == "my notes" and (out / "analysis.ipynb").read_text() == "{}"
    assert torch.equal(HookedSparseTransformer.from_pretrained(out).embed.W_E, second.embed.W_E)
    assert listing(out) == ["analysis.ipynb", "config.json", "model.safetensors", "notes.txt"]
    assert listing(tmp_path) == ["m"]  # no hidden .m.old-* / .m.tmp-* beside it


def test_a_foreign_non_empty_directory_needs_overwrite(tmp_path):
    out = tmp_path / "project"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    with pytest.raises(FileExistsError, match="project is not empty and is not a saved model.*overwrite=True"):
        make_model().save_pretrained(out)
    assert listing(out) == ["notes.txt"]
    make_model().save_pretrained(out, overwrite=True)
    assert listing(out) == ["config.json", "model.safetensors", "notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    make_model().save_pretrained(empty)  # an empty directory is fine


def test_a_file_destination_is_refused_and_left_alone(tmp_path):
    target = tmp_path / "model.bin"
    target.write_text("precious")
    with pytest.raises(NotADirectoryError, match="save_pretrained: .*model.bin is a file; expected a directory"):
        make_model().save_pretrained(target)
    assert target.read_text() == "precious"
    assert listing(tmp_path) == ["model.bin"]


def test_saved_files_take_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        make_model().save_pretrained(tmp_path / "m")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "m").iterdir()}
    assert modes == {"config.json": 0o644, "model.safetensors": 0o644}
    assert stat.S_IMODE((tmp_path / "m").stat().st_mode) == 0o755


def test_a_stale_tokenizer_is_removed(tmp_path):
    out = tmp_path / "m"
    make_model().save_pretrained(out)
    (out / "tokenizer.json").write_text("{}")  # as if an earlier model with a tokenizer had been saved here
    make_model().save_pretrained(out)  # this one has none
    assert not (out / "tokenizer.json").exists()
