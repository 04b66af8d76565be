"""The shipped bridged pair python-bridged-tiny: loads offline by name with its bridges, is stored
compactly, and its trained bridges beat the pair it started from (python-sparse-tiny with
least-squares bridges) on held-out text."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sparse_lens.bridges import BridgedPair, list_bridged_pairs, load_bridged_pair
from sparse_lens.bridges.bridge import Bridges
from sparse_lens.bridges.pretrained import PAIR_FILE, shipped_pair_dir
from sparse_lens.model import HookedSparseTransformer

NAME = "python-bridged-tiny"
# Held-out Python: this library's own bridge sources (the training corpus is the standard library and
# the installed packages), tokenized into rows of 128 tokens: 8 rows to fit the baseline's bridges, 8 to test.
SOURCES = sorted((Path(__file__).resolve().parents[2] / "sparse_lens" / "bridges").glob("*.py"))


@pytest.fixture(scope="module")
def pair() -> BridgedPair:
    torch.set_num_threads(1)
    return load_bridged_pair(NAME)


@pytest.fixture(scope="module")
def rows(pair) -> tuple[torch.Tensor, torch.Tensor]:
    ids: list[int] = []
    for path in SOURCES:
        ids += pair.sparse.tokenizer.encode(path.read_text(), add_special_tokens=False)
    tokens = torch.tensor(ids[: 16 * 128]).view(16, 128)
    return tokens[:8], tokens[8:]


def test_loads_by_name_with_its_bridges_and_is_compact(pair):
    assert NAME in list_bridged_pairs()
    assert pair.dense.name == "python-dense-tiny" and pair.sparse.cfg.model_name == NAME
    assert pair.sparse.tokenizer is not None and pair.sparse.cfg.weight_sparsity == 0.25
    assert BridgedPair.load(NAME).bridges.state_dict().keys() == pair.bridges.state_dict().keys()
    directory = shipped_pair_dir(NAME)
    assert (directory / PAIR_FILE).is_file()
    stored = sum(p.stat().st_size for p in directory.iterdir())
    assert stored < 4_000_000, f"{directory} holds {stored} bytes"


def test_trained_bridges_beat_the_starting_point_at_every_site(pair, rows):
    fit, test = rows
    start = HookedSparseTransformer.from_pretrained("python-sparse-tiny")
    baseline = BridgedPair(HookedSparseTransformer.from_pretrained("python-dense-tiny"), start)
    with torch.no_grad():
        h_dense = baseline.dense.forward_with_sites(fit)[1]
        h_sparse = baseline.sparse_side.forward_with_sites(fit)[1]
        baseline.bridges.fit_least_squares(h_dense, h_sparse, ridge=1e-3)  # the run's initial bridges
        trained = pair.losses(test, compute_all=True).kl_d2s
        untrained = baseline.losses(test, compute_all=True).kl_d2s
    assert torch.isfinite(trained).all()
    assert (trained < untrained).all(), f"KL d->s per site: trained {trained.tolist()} vs starting point {untrained.tolist()}"


def test_a_bridge_file_for_other_weights_is_refused(pair, tmp_path):
    other = HookedSparseTransformer.from_pretrained("python-sparse-tiny")
    with pytest.raises(ValueError, match="belongs to model"):
        Bridges.load(shipped_pair_dir(NAME), dense=pair.dense, sparse=BridgedPair(pair.dense, other).sparse_side)


def test_unknown_names_and_a_changed_base_are_refused(tmp_path):
    import json
    import shutil

    with pytest.raises(FileNotFoundError, match="python-bridged-tiny"):
        load_bridged_pair("no-such-pair")  # the message lists the shipped pairs
    copy = tmp_path / "pair"
    shutil.copytree(shipped_pair_dir(NAME), copy)
    meta = json.loads((copy / PAIR_FILE).read_text())
    meta["shared"]["bigram.W_bigram"] = "0" * 16
    (copy / PAIR_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="bigram.W_bigram.*not the one it was shipped with"):
        load_bridged_pair(copy)
