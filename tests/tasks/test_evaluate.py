"""Evaluation on a tiny random stand-in model and on a real tiny HookedSparseTransformer; the CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

from sparse_lens.tasks import (
    evaluate_pairs, evaluate_task, evaluate_tasks, format_results, get_task, model_logits, task_loss, tokenize_pairs,
)  # fmt: skip

from .conftest import StandInModel


def test_evaluate_task_on_stand_in(stand_in):
    result = evaluate_task(stand_in, "single_double_quote", n_pairs=40, seed=0, batch_size=16)
    assert result.task == "single_double_quote" and result.n_pairs == 40 and result.error is None
    assert math.isfinite(result.loss) and result.loss > 0
    assert 0.0 <= result.accuracy <= 1.0
    assert stand_in.calls == 5  # 80 sequences in batches of 16
    again = evaluate_task(stand_in, "single_double_quote", n_pairs=40, seed=0, batch_size=80)
    assert again.loss == pytest.approx(result.loss, rel=1e-5)  # batching does not matter


def test_reads_logits_at_each_rows_last_token(stand_in, tokenizer):
    """Batched (right-padded) evaluation equals evaluating each sequence alone, unpadded."""
    pairs = get_task("bracket_counting").generate(6, seed=1, split="test")
    batch = tokenize_pairs(pairs, tokenizer.tok)
    padded = model_logits(stand_in, batch, batch_size=12)
    for row in range(len(batch)):
        alone = stand_in(batch.tokens[row : row + 1, : int(batch.last[row]) + 1])[0, -1]
        assert torch.allclose(padded[row], alone, atol=1e-5)
    loss, acc = task_loss(padded, batch.target, batch.alternative)
    result = evaluate_pairs(stand_in, pairs, task_name="bracket_counting")
    assert result.loss == pytest.approx(float(loss), rel=1e-6) and result.accuracy == pytest.approx(float(acc))
    rows, _ = task_loss(padded, batch.target, batch.alternative, reduction="none")
    assert result.loss_positive == pytest.approx(float(rows[0::2].mean()), rel=1e-6)  # rows: pos_0, neg_0, pos_1, ...
    assert result.loss_negative == pytest.approx(float(rows[1::2].mean()), rel=1e-6)


def test_loss_stderr_is_over_pairs(stand_in, tokenizer):
    """The standard error is that of the per-pair losses, each pair evaluated on its own."""
    pairs = get_task("bracket_counting").generate(12, seed=2, split="test")
    result = evaluate_pairs(stand_in, pairs, task_name="bracket_counting")
    alone = torch.tensor([evaluate_pairs(stand_in, [p], task_name="bracket_counting").loss for p in pairs])
    assert result.loss == pytest.approx(float(alone.mean()), rel=1e-5)
    expected = float(alone.std(unbiased=True)) / math.sqrt(len(pairs))
    assert expected > 0 and result.loss_stderr == pytest.approx(expected, rel=1e-4)
    assert math.isnan(evaluate_pairs(stand_in, pairs[:1], task_name="bracket_counting").loss_stderr)
    table = format_results([result, result])
    assert f"{expected:.4f}" in table.splitlines()[2]
    assert f"{expected / math.sqrt(2):.4f}" in table.splitlines()[-1]  # two independent test sets


def test_a_model_that_knows_the_answer_gets_zero_loss(tokenizer):
    """A stand-in that puts a large logit on ':' after 'while True' and on newline after
    'return True' (it looks at the token 2 before the end) scores ~0 loss and accuracy 1."""
    tok = tokenizer.tok
    colon, newline = tok.token_to_id(":"), tok.encode("\n").ids[0]
    while_id = tok.encode(" while").ids[0]

    class Oracle(StandInModel):
        def forward(self, tokens):
            logits = torch.zeros(*tokens.shape, self.cfg.d_vocab)
            prev = torch.roll(tokens, 1, dims=1)  # token before each position
            logits[..., colon] = 20.0 * (prev == while_id)
            logits[..., newline] = 20.0 * (prev != while_id)
            return logits

    class Contrarian(Oracle):
        def forward(self, tokens):
            return -super().forward(tokens)

    result = evaluate_task(Oracle(tok), "while_return_true", n_pairs=30)
    assert result.accuracy == 1.0 and result.loss < 1e-6
    wrong = evaluate_task(Contrarian(tok), "while_return_true", n_pairs=30)
    assert wrong.accuracy == 0.0 and wrong.loss == pytest.approx(20.0, rel=1e-3)

    class AlwaysColon(StandInModel):  # right on the positive prompts (while True -> ':') only
        def forward(self, tokens):
            logits = torch.zeros(*tokens.shape, self.cfg.d_vocab)
            logits[..., colon] = 20.0
            return logits

    biased = evaluate_task(AlwaysColon(tok), "while_return_true", n_pairs=30)
    assert biased.loss_positive < 1e-6 and biased.loss_negative == pytest.approx(20.0, rel=1e-3)
    assert biased.loss == pytest.approx(10.0, rel=1e-3) and biased.accuracy == 0.5


def test_evaluate_tasks_table_and_errors(stand_in, tokenizer):
    results = evaluate_tasks(stand_in, ["var_swap", "with_as"], n_pairs=10)
    assert [r.task for r in results] == ["var_swap", "with_as"]
    table = format_results(results)
    assert "var_swap" in table and "with_as" in table and "mean" in table
    tiny_ctx = StandInModel(tokenizer.tok, n_ctx=4)
    failed = evaluate_tasks(tiny_ctx, ["with_as"], n_pairs=5)
    assert failed[0].error and math.isnan(failed[0].loss)
    assert "error in with_as" in format_results(failed)
    with pytest.raises(RuntimeError):
        evaluate_tasks(tiny_ctx, ["with_as"], n_pairs=5, raise_errors=True)


@pytest.fixture(scope="module")
def tiny_model(tokenizer):
    from sparse_lens.model import HookedSparseTransformer, SparseTransformerConfig

    cfg = SparseTransformerConfig(n_layers=1, d_model=16, n_ctx=256, d_vocab=2048, d_head=8, d_mlp=32, seed=0)
    model = HookedSparseTransformer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    model.set_tokenizer(tokenizer.tok)
    return model


def test_real_model_logit_positions_path(tiny_model):
    """HookedSparseTransformer's forward takes logit_positions: same numbers as full logits."""

    class FullLogits(torch.nn.Module):  # hides logit_positions
        def __init__(self, inner):
            super().__init__()
            self.inner, self.tokenizer, self.cfg = inner, inner.tokenizer, inner.cfg

        def forward(self, tokens):
            return self.inner(tokens)

    fast = evaluate_task(tiny_model, "set_or_string", n_pairs=12)
    slow = evaluate_task(FullLogits(tiny_model), "set_or_string", n_pairs=12)
    assert fast.loss == pytest.approx(slow.loss, rel=1e-4) and fast.accuracy == slow.accuracy


def test_cli_eval(tiny_model, tmp_path, capsys, clean_registry):
    from sparse_lens.cli import main

    model_dir = tmp_path / "tiny"
    tiny_model.save_pretrained(model_dir)
    pairs_file = tmp_path / "mine.jsonl"
    rows = [
        {"positive": f"x{i} = [1, {i}", "negative": f"x{i} = (1, {i}", "positive_completion": "]", "negative_completion": ")"}
        for i in range(40)
    ]
    pairs_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main([
        "tasks", "eval", str(model_dir), "--task", "single_double_quote", "--task", "mine", "--n-pairs", "8",
        "--tasks-file", str(pairs_file),
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert lines["task"] == ["task", "loss", "±", "stderr", "accuracy", "pairs"]
    assert lines["single_double_quote"][4] == "8"
    assert 0 < int(lines["mine"][4]) <= 8  # the test half of the file's 40 pairs, capped at 8
    float(lines["mine"][1]), float(lines["mine"][2])
    code = main(["tasks", "eval", str(model_dir), "--task", "with_as", "--n-pairs", "4", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data[0]["task"] == "with_as" and data[0]["n_pairs"] == 4


def test_cli_list_and_show(capsys):
    from sparse_lens.cli import main

    assert main(["tasks", "list"]) == 0
    out = capsys.readouterr().out
    assert "bracket_counting" in out and "class_init" in out and "meaning" in out
    assert main(["tasks", "show", "var_swap", "-n", "1"]) == 0
    assert "pair 0 positive" in capsys.readouterr().out
