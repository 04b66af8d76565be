"""The 20 tasks under another tokenizer than ours: the authors' kind (a data-gym BPE split by their
tinypython_2k regex, <|endoftext|> = 2047). Answer tokens agree with tiktoken's encoding of the
running text; a task that cannot be posed under a tokenizer is reported by name, never dropped."""

import pytest

from sparse_lens.model import HookedSparseTransformer, SparseTransformerConfig
from sparse_lens.model.data_gym_tokenizer import TINYPYTHON_PATTERN, data_gym_tokenizer
from sparse_lens.tasks import evaluate_tasks, format_results, list_tasks, tokenize_pairs

from tests.model.data_gym_files import shipped_merges, write_data_gym

tiktoken = pytest.importorskip("tiktoken")
from tiktoken.load import data_gym_to_mergeable_bpe_ranks  # noqa: E402


@pytest.fixture(autouse=True)
def no_tiktoken_cache(monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")


def test_every_task_poses_with_the_answers_tiktoken_gives(tmp_path):
    directory = write_data_gym(tmp_path, shipped_merges())
    tok = data_gym_tokenizer(directory)
    ranks = data_gym_to_mergeable_bpe_ranks(str(directory / "vocab.bpe"), str(directory / "encoder.json"))
    enc = tiktoken.Encoding("tinypython_2k", pat_str=TINYPYTHON_PATTERN, mergeable_ranks=ranks,
                            special_tokens={"<|endoftext|>": 2047})
    assert len(list_tasks()) >= 20
    for task in list_tasks():
        pairs = task.generate(12, seed=3, split="test", max_chars=384, tokenizer=tok, max_tokens=128)
        batch = tokenize_pairs(pairs, tok, n_ctx=128, task_name=task.name)
        assert (batch.tokens[:, 0] == 2047).all()  # BOS is the tokenizer's <|endoftext|>, not id 0
        rows = [row for pair in pairs for row in pair.rows()]
        for i, (prompt, completion, suffix) in enumerate(rows):
            prompt_ids = enc.encode_ordinary(prompt)
            running = enc.encode_ordinary(prompt + completion + (suffix or ""))
            assert running[: len(prompt_ids)] == prompt_ids, task.name
            assert int(batch.target[i]) == running[len(prompt_ids)], (task.name, prompt[-30:], completion)
            assert batch.tokens[i, 1 : batch.last[i] + 1].tolist() == prompt_ids
            assert enc.decode([running[len(prompt_ids)]]).startswith(completion)
        assert (batch.target != batch.alternative).all()


def test_a_task_that_cannot_be_posed_is_reported_by_name(tmp_path):
    """A smaller BPE (the first 400 merges) splits some completions (e.g. ' elif', ']]'): those
    tasks come back with the reason, the others are evaluated."""
    n_merges = 400
    eot = 256 + n_merges
    tok = data_gym_tokenizer(write_data_gym(tmp_path, shipped_merges()[:n_merges], eot_id=eot),
                             special_tokens={"<|endoftext|>": eot})
    cfg = SparseTransformerConfig(n_layers=1, d_model=16, n_ctx=128, d_vocab=eot + 1, n_heads=2, d_head=8, d_mlp=32)
    model = HookedSparseTransformer(cfg, tokenizer=tok)
    results = evaluate_tasks(model, n_pairs=4)
    assert [r.task for r in results] == [t.name for t in list_tasks()]  # every task has a row
    failed = {r.task: r.error for r in results if r.error}
    assert {"bracket_counting", "else_elif"} <= set(failed)
    assert "single_double_quote" not in failed and len(failed) < len(results)
    for name, error in failed.items():
        assert f"task {name!r}" in error and "not a single token" in error
        assert f"error in {name}: " in format_results(results)
    for r in results:
        if not r.error:
            assert r.n_pairs == 4 and 0 < r.loss < 5
