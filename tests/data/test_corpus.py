from __future__ import annotations

import os
import random
import time

import pytest

import sparse_lens.data.corpus as corpus_mod
from sparse_lens.data.corpus import stdlib_dir
from sparse_lens.data import count_patterns, corpus_stats, is_validation, list_corpus_files, load_corpus

from .conftest import N_FILES, VAL_FRACTION

PINNED_VAL = [31, 75, 76, 81, 86, 112, 137, 139, 148, 153, 160, 195]


def test_split_is_a_function_of_the_name_only():
    names = [f"stdlib/pkg{i}/mod{i}.py" for i in range(5000)]
    val = {n for n in names if is_validation(n, 0.02)}
    shuffled = names[:]
    random.Random(0).shuffle(shuffled)
    assert {n for n in shuffled if is_validation(n, 0.02)} == val
    assert 0.01 < len(val) / len(names) < 0.03
    assert not any(is_validation(n, 0.0) for n in names)


def test_split_pinned_values():
    # a regression pin: changing the hash would silently reshuffle every split
    vals = [i for i in range(200) if is_validation(f"stdlib/m{i}.py", 0.05)]
    assert vals == PINNED_VAL


def test_train_validation_disjoint_and_complete(corpus):
    train, val = set(corpus["train"]["path"]), set(corpus["validation"]["path"])
    assert train and val and not (train & val)
    assert all(is_validation(p, VAL_FRACTION) for p in val)
    assert not any(is_validation(p, VAL_FRACTION) for p in train)
    files = list_corpus_files("stdlib")[:N_FILES]
    assert train | val <= {f.name for f in files}
    assert corpus["train"].column_names == ["text", "path"]
    assert all(p.startswith("stdlib/") for p in train)


def test_stdlib_excludes_site_packages():
    names = [f.name for f in list_corpus_files("stdlib")]
    assert names == sorted(names)
    assert not any("site-packages" in n for n in names)
    if (stdlib_dir() / "test").is_dir():  # test dirs are included when the Python ships them
        assert any(n.startswith("stdlib/test/") for n in names)


def test_second_load_is_a_cache_hit(corpus, cache_dir, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("files were read again")

    monkeypatch.setattr(corpus_mod, "read_documents", boom)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    t = time.perf_counter()
    again = load_corpus("stdlib", val_fraction=VAL_FRACTION, cache_dir=cache_dir, max_files=N_FILES)
    assert time.perf_counter() - t < 5
    assert again["train"]["path"] == corpus["train"]["path"]
    assert again["validation"]["text"] == corpus["validation"]["text"]


def test_directory_source_dedupe_skip_and_invalidation(tmp_path):
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "a.py").write_text("x = 1\n")
    (src / "pkg" / "b.py").write_text("x = 1\n")  # duplicate of a.py
    (src / "pkg" / "c.py").write_text("def f():\n    return 'c'\n")
    (src / "latin1.py").write_bytes("s = 'caf\xe9'\n".encode("latin-1"))  # not UTF-8
    (src / "big.py").write_text("#" * 2000)
    (src / "notes.txt").write_text("not python")
    cache = tmp_path / "cache"
    dd = load_corpus(src, val_fraction=0.0, cache_dir=cache, max_bytes=1000)
    assert dd["train"]["path"] == ["src/a.py", "src/pkg/c.py"]
    assert len(dd["validation"]) == 0
    # modifying a file changes the key: the cache is rebuilt
    (src / "pkg" / "c.py").write_text("def f():\n    return 'changed'\n")
    st = os.stat(src / "pkg" / "c.py")
    os.utime(src / "pkg" / "c.py", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    dd2 = load_corpus(src, val_fraction=0.0, cache_dir=cache, max_bytes=1000)
    assert "changed" in dd2["train"]["text"][1]
    assert len(list((cache / "corpus").iterdir())) == 2


def test_text_file_and_saved_dataset_sources(tmp_path):
    import datasets

    doc = tmp_path / "doc.txt"
    doc.write_text("print('hello')\n")
    saved = tmp_path / "saved"
    datasets.Dataset.from_dict({"text": ["a = 1\n", "b = 2\n"]}).save_to_disk(str(saved))
    dd = load_corpus([doc, saved], val_fraction=0.0, cache_dir=tmp_path / "cache")
    assert dd["train"]["path"] == ["doc.txt", "dataset:saved/0", "dataset:saved/1"]
    assert dd["train"]["text"][2] == "b = 2\n"


def test_bad_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_corpus(tmp_path / "nope", cache_dir=tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("no python here")
    with pytest.raises(ValueError, match="no .py files"):
        load_corpus(empty, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="val_fraction"):
        load_corpus("stdlib", val_fraction=1.5, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="max_files"):
        load_corpus("stdlib", max_files=0, cache_dir=tmp_path)


def test_count_patterns_and_stats(small_tokenizer):
    texts = ["x = [[1, 2],\n     [3]]\nwhile True:\n    s.add(1)\n    n += 1\n    return True\n", "y = 'a' + \"b\"\n"]
    c = count_patterns(texts)
    assert c["nested_list_close_eol"] == 1
    assert c["while_true"] == 1 and c["return_true"] == 1 and c["set_add"] == 1 and c["plus_equals"] == 1
    assert c["single_quote_string"] == 1 and c["double_quote_string"] == 1
    assert count_patterns(texts, {"x": r"\bx\b"}) == {"x": 1}
    s = corpus_stats(texts, small_tokenizer)
    assert s["files"] == 2 and s["bytes"] == sum(len(t) for t in texts)
    assert 0 < s["tokens"] <= s["bytes"] and s["chars_per_token"] == pytest.approx(s["chars"] / s["tokens"])

