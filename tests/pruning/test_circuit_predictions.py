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
