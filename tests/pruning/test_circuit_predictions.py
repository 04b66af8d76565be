"""The circuit predictions of the science issue: context dilution (bracket_counting at fixed list
lengths) and feature validation by replacement (`replace_node_with` a labeller of the input)."""

from __future__ import annotations

import ast
import io
import random
import tokenize
from contextlib import contextmanager

import pytest
import torch

from sparse_lens import HookedSparseTransformer
from sparse_lens.pruning.context_dilution import context_dilution, format_dilution
from sparse_lens.pruning.feature_replacement import (
    DOUBLE, OUTSIDE, SINGLE, quote_state_labeller, quote_states, replace_node_with, replacement_study,
)
from sparse_lens.tasks.brackets import bracket_counting_of_length
from sparse_lens.tasks.evaluate import evaluate_task
from sparse_lens.tasks.registry import get_task

SITE = "blocks.0.hook_attn_out"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return HookedSparseTransformer.from_pretrained("python-sparse-tiny")


def _lists(source: str) -> list[ast.List]:
    return [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.List)]


@pytest.mark.parametrize("n", [1, 5, 17])
def test_bracket_counting_of_length_fixes_the_open_lists_length(n):
    task = bracket_counting_of_length(n)
    rng = random.Random(n)
    for _ in range(20):
        pair = task.sample(rng)
        positive = _lists(pair.positive + "]]" + pair.positive_suffix)
        negative = _lists(pair.negative + "]" + pair.negative_suffix)
        # positive: [[e1, ..., en]] — an outer list holding only the inner one; negative: [e1, ..., en]
        assert any(len(l.elts) == 1 and isinstance(l.elts[0], ast.List) and len(l.elts[0].elts) == n for l in positive)
        assert any(len(l.elts) == n and not any(isinstance(e, ast.List) for e in l.elts) for l in negative)


@pytest.mark.parametrize("bad", [0, -3, True, 2.0, "4"])
def test_bracket_counting_of_length_rejects_bad_lengths(bad):
    with pytest.raises(ValueError, match="n_elements"):
        bracket_counting_of_length(bad)


def _reference_states(text_pieces: list[str]) -> list[int]:
    """Per piece: inside which string literal the text ends, from Python's own tokenizer."""
    text = "".join(text_pieces)
    spans = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.STRING:
            (row, col), (erow, ecol) = tok.start, tok.end
            lines = text.splitlines(keepends=True)
            start = sum(len(l) for l in lines[: row - 1]) + col
            end = sum(len(l) for l in lines[: erow - 1]) + ecol
            quote = tok.string.lstrip("rbuRBUfF")[0]
            spans.append((start, end, SINGLE if quote == "'" else DOUBLE))
    states, offset = [], 0
    for piece in text_pieces:
        offset += len(piece)
        states.append(next((kind for s, e, kind in spans if s + 1 <= offset <= e - 1), OUTSIDE))
    return states


def test_quote_states_agree_with_pythons_tokenizer(model):
    text = "x = 'it\\'s \"fine\"' + \"don't\"\ny = f(\"a\", 'b') + 'c'\nz = 3\n"
    ids = torch.tensor([model.tokenizer.encode(text, add_special_tokens=False)])
    pieces = [model.tokenizer.decode([i]) for i in ids[0].tolist()]
    assert "".join(pieces) == text
    got = quote_states(model.tokenizer, ids)[0].tolist()
    assert got == _reference_states(pieces)
    assert {SINGLE, DOUBLE, OUTSIDE} <= set(got)


def test_replace_node_with_writes_the_labellers_values_and_cleans_up(model):
    tokens = torch.tensor([model.tokenizer.encode("a = 'x' + \"y\"\n", add_special_tokens=False)])
    labeller = quote_state_labeller(model.tokenizer, single=5.0, double=-7.0, outside=0.5)
    expected = labeller(tokens)
    assert set(expected.unique().tolist()) == {5.0, -7.0, 0.5}
    with replace_node_with(model, (SITE, 3), labeller):
        _, cache = model.run_with_cache(tokens, names_filter=SITE)
    assert torch.equal(cache[SITE][..., 3], expected)
    assert not torch.equal(cache[SITE][..., 4], expected)
    _, clean = model.run_with_cache(tokens, names_filter=SITE)
    assert not torch.equal(clean[SITE][..., 3], expected)  # hooks gone
    with pytest.raises(RuntimeError, match="boom"):
        with replace_node_with(model, (SITE, 3), labeller):
            raise RuntimeError("boom")
    assert not model.hook_dict[SITE].fwd_hooks and not model.embed._forward_pre_hooks


def test_replace_node_with_rejects_bad_input(model):
    tokens = torch.tensor([[1, 2, 3]])
    with pytest.raises(ValueError, match="not a hook point"):
        with replace_node_with(model, ("blocks.9.nothing", 0), lambda t: t.float()):
            pass
    with pytest.raises(ValueError, match="labeller: returned shape"):
        with replace_node_with(model, (SITE, 0), lambda t: torch.zeros(5)):
            model(tokens)


def test_replacement_study_reports_each_condition(model):
    r = replacement_study(model, (SITE, 0), n_fit=8, n_test=8)
    assert r.n_pairs == 8 and r.single != r.double
    losses = [r.loss_clean, r.loss_replaced, r.loss_swapped, r.loss_mean_ablated]
    assert all(l == l and l >= 0 for l in losses)
    assert r.loss_replaced != r.loss_swapped  # the labeller reached the forward


class _ZeroFirstAttention:
    """A stand-in circuit: `applied` zeroes layer 0's attention output."""

    @contextmanager
    def applied(self, model):
        with model.hooks(fwd_hooks=[(SITE, lambda act, hook: torch.zeros_like(act))]):
            yield model


def test_context_dilution_measures_each_length_with_and_without_the_circuit(model):
    points = context_dilution(model, lengths=[1, 12], circuit=_ZeroFirstAttention(), n_pairs=8)
    assert [p.n_elements for p in points] == [1, 12]
    for p in points:
        direct = evaluate_task(model, bracket_counting_of_length(p.n_elements), n_pairs=8)
        assert p.model.loss == pytest.approx(direct.loss) and p.model.task == f"bracket_counting[n={p.n_elements}]"
        assert p.circuit is not None and p.circuit.loss != pytest.approx(p.model.loss)
    table = format_dilution(points)
    assert table.count("\n") == 2 and "circuit" in table
    with pytest.raises(ValueError, match="lengths"):
        context_dilution(model, lengths=[0])


def _planted_quote_labeller(model):
    return quote_state_labeller(model.tokenizer, single=1.0, double=-1.0)


def test_rank_quote_nodes_puts_a_planted_quote_feature_first(model):
    from sparse_lens.pruning.feature_replacement import rank_quote_nodes

    nodes = [(SITE, (i,)) for i in range(6)]
    with replace_node_with(model, (SITE, (4,)), _planted_quote_labeller(model)):
        ranked = rank_quote_nodes(model, nodes, n_fit=8)
    assert [q.index for q in ranked][0] == (4,) and len(ranked) == 6
    assert ranked[0].single == pytest.approx(1.0) and ranked[0].double == pytest.approx(-1.0)
    assert ranked[0].separation > ranked[1].separation >= ranked[-1].separation
    with pytest.raises(ValueError, match="nodes"):
        rank_quote_nodes(model, [])


def test_replace_node_with_reaches_a_narrowed_last_block(model):
    """With ``logit_positions`` the last block runs only there: the labeller's value at that position."""
    from sparse_lens.tasks.tokenize import tokenize_pairs

    pairs = get_task("single_double_quote").generate(6, seed=0, split="test", tokenizer=model.tokenizer,
                                                     max_tokens=model.cfg.n_ctx)
    batch = tokenize_pairs(pairs, model.tokenizer, n_ctx=model.cfg.n_ctx)
    with replace_node_with(model, ("blocks.1.hook_attn_out", (3,)), _planted_quote_labeller(model)):
        full = model(batch.tokens)[torch.arange(len(batch.last)), batch.last]
        narrow = model(batch.tokens, logit_positions=batch.last)
    assert torch.allclose(narrow, full, atol=1e-4)


def _whole_model_circuit(model, task):
    """A circuit that keeps every node: with it applied the model is unchanged."""
    from sparse_lens.model.identity import weights_fingerprint
    from sparse_lens.pruning import Circuit
    from sparse_lens.pruning.nodes import node_sites

    sites = node_sites(model.cfg)
    return Circuit(task=task, target_loss=0.15, masks={s.name: torch.ones(s.shape, dtype=torch.bool) for s in sites},
                   means={s.name: torch.zeros(s.shape) for s in sites}, model="python-sparse-tiny",
                   model_fingerprint=weights_fingerprint(model))


def test_circuit_predictions_from_a_prune_directory(model, tmp_path):
    from sparse_lens.pruning.predictions import circuit_predictions, predictions_markdown

    for task in ("bracket_counting", "single_double_quote"):
        _whole_model_circuit(model, task).save(tmp_path / f"{task}.json")
    report = circuit_predictions(model, tmp_path, lengths=[1, 4], n_pairs=8, n_nodes=2, n_fit=8, n_test=16)
    points = report["dilution"]["points"]
    assert [p["n_elements"] for p in points] == [1, 4]
    for p in points:  # a circuit keeping every node is the model
        assert p["circuit"]["loss"] == pytest.approx(p["model"]["loss"], abs=1e-5)
    nodes = report["replacement"]["nodes"]
    assert len(nodes) == 2 and nodes[0]["separation"] >= nodes[1]["separation"]
    assert all(n["loss_clean"] == pytest.approx(evaluate_task(model, "single_double_quote", n_pairs=16).loss, abs=1e-5)
               for n in nodes)
    text = predictions_markdown(report)
    assert text.count(f"| `{SITE[:7]}") == 2 and "bracket_counting" in text
    no_circuits = circuit_predictions(model, None, lengths=[2], n_pairs=4)
    assert no_circuits["dilution"]["points"][0]["circuit"] is None and no_circuits["replacement"]["nodes"] == []
    assert "not measured" in predictions_markdown(no_circuits)


def test_predictions_command_writes_the_report_and_plot_draws_it(tmp_path, capsys):
    from sparse_lens.cli import main

    out = tmp_path / "predictions"
    assert main(["predictions", "python-sparse-tiny", "--lengths", "1", "2", "--pairs", "4", "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"predictions.json", "predictions.md"}
    assert main(["plot", str(out)]) == 0
    assert (out / "plots" / "context_dilution.png").stat().st_size > 10_000
    assert main(["predictions", "python-sparse-tiny", "--circuits", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "--circuits" in capsys.readouterr().err
