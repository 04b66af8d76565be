"""Shared small corpus and tokenizer: 40 stdlib files, 20% validation, vocab 512."""

from __future__ import annotations

import pytest

from sparse_lens.data import iter_texts, load_corpus, train_tokenizer

N_FILES = 40
VAL_FRACTION = 0.2


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("sparse_lens_cache")


@pytest.fixture(scope="session")
def corpus(cache_dir):
    return load_corpus("stdlib", val_fraction=VAL_FRACTION, cache_dir=cache_dir, max_files=N_FILES)


@pytest.fixture(scope="session")
def texts(corpus):
    return list(iter_texts(corpus["train"])) + list(iter_texts(corpus["validation"]))


@pytest.fixture(scope="session")
def small_tokenizer(corpus):
    return train_tokenizer(iter_texts(corpus["train"]), vocab_size=512)
