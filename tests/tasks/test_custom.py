"""User tasks: from a template function and from a JSONL file; registry rules; bad input."""

from __future__ import annotations

import json
import random

import pytest

from sparse_lens.tasks import (
    TaskPair, evaluate_task, get_task, load_tasks_jsonl, register_task, save_pairs_jsonl, split_of, task_names,
    unregister_task,
)  # fmt: skip


def list_or_tuple(rng: random.Random) -> TaskPair:
    name = rng.choice(["xs", "items", "values", "row", "data"])
    elems = ", ".join(str(rng.randint(0, 99)) for _ in range(rng.randint(1, 6)))
    return TaskPair(f"{name} = [{elems}", f"{name} = ({elems}", "]", ")", "\n", "\n")


def test_template_task(clean_registry, stand_in):
    task = register_task(
        "list_or_tuple", list_or_tuple, completions=("]", ")"), description="close a list or a tuple",
        grammar_sides=("positive", "negative"),
    )  # fmt: skip
    assert get_task("list_or_tuple") is task and "list_or_tuple" in task_names()
    assert task.decided_by == "grammar"
    train = task.generate(50, seed=0, split="train")
    test = task.generate(50, seed=0, split="test")
    assert train == task.generate(50, seed=0, split="train")
    assert not {p.positive for p in train} & {p.positive for p in test}
    for pair in test:
        task.validity_check(pair)
    result = evaluate_task(stand_in, "list_or_tuple", n_pairs=20)
    assert result.n_pairs == 20 and result.error is None
    with pytest.raises(ValueError, match="already registered"):
        register_task("list_or_tuple", list_or_tuple)
    register_task("list_or_tuple", list_or_tuple, overwrite=True)


def test_template_with_rule(clean_registry):
    def template(rng: random.Random) -> TaskPair:
        n = rng.randint(0, 10**6)
        return TaskPair(f"x = {n}\nx", f"y = {n}\ny", " +=", " -=", " 1\n", " 1\n")

    task = register_task("rule_task", template, rule=lambda program: "x +=" in program or "y -=" in program)
    assert task.decided_by == "meaning"
    assert task.problems(task.generate(1, seed=0)[0]) == []
    bad = register_task("rule_task_bad", template, rule=lambda program: True)
    assert bad.problems(bad.generate(1, seed=0)[0])  # both completions follow this rule: flagged


def test_template_errors(clean_registry):
    with pytest.raises(ValueError, match="built-in task"):
        register_task("bracket_counting", list_or_tuple)
    with pytest.raises(ValueError, match="template function"):
        register_task("no_template")
    with pytest.raises(TypeError, match="template must be a function"):
        register_task("not_callable", "oops")
    bad = register_task("wrong_completions", list_or_tuple, completions=("]", "}"))
    with pytest.raises(ValueError, match=r"task 'wrong_completions': pair completions"):
        bad.generate(3)
    same = register_task("same", lambda rng: TaskPair("a", "b", "x", "x"))
    with pytest.raises(ValueError, match="task 'same': both completions are 'x'"):
        same.generate(1)
    tiny = register_task("tiny_space", lambda rng: TaskPair(f"a{rng.randint(0, 3)}", "b", "]", ")"))
    with pytest.raises(RuntimeError, match="tiny_space"):
        tiny.generate(50)  # too few distinct pairs
    with pytest.raises(ValueError, match="cannot be removed"):
        unregister_task("var_if")


def _rows(n: int) -> list[dict]:
    return [
        {"name": "jl", "positive": f"v{i} = [{i}", "negative": f"v{i} = ({i}", "positive_completion": "]", "negative_completion": ")"}
        for i in range(n)
    ]


def test_jsonl_task(tmp_path, clean_registry, stand_in):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _rows(60)) + "\n")
    (task,) = load_tasks_jsonl(path)
    assert get_task("jl") is task and task.completions == ("]", ")")
    train, test = task.generate(1000, split="train"), task.generate(1000, split="test")
    assert len(train) + len(test) == 60 and train and test
    assert not {p.positive for p in train} & {p.positive for p in test}
    assert all(split_of(p.positive) == "test" for p in test)
    assert task.generate(5, seed=1, split="train") == task.generate(5, seed=1, split="train")
    assert task.generate(5, seed=1, split="train") != task.generate(5, seed=2, split="train")
    assert evaluate_task(stand_in, "jl", n_pairs=10).n_pairs == min(10, len(test))


def test_jsonl_explicit_splits_and_round_trip(tmp_path, clean_registry):
    pairs = [TaskPair(f"s = 'a{i}", f's = "a{i}', "'", '"', "\n", "\n") for i in range(6)]
    path = save_pairs_jsonl(tmp_path / "q.jsonl", pairs, name="quotes", split="test")
    (task,) = load_tasks_jsonl(path, register=False)
    assert task.generate(10, split="test") and task.generate(10, split="train") == []
    assert sorted(task.generate(10, split="test"), key=lambda p: p.positive) == pairs
    rows = [dict(pairs[0].to_dict(), split="train"), dict(pairs[0].to_dict(), split="test")]
    clash = tmp_path / "clash.jsonl"
    clash.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"clash.jsonl:2: a prompt of this test pair is also in the train split \(line 1\)"):
        load_tasks_jsonl(clash, register=False)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"bad.jsonl:2: not valid JSON"),
        ('["a", "b"]', r"bad.jsonl:2: expected a JSON object"),
        ('{"positive": "a", "negative": "b", "positive_completion": "x"}', r"bad.jsonl:2: missing field 'negative_completion'"),
        ('{"positive": "a", "negative": 3, "positive_completion": "x", "negative_completion": "y"}', r"bad.jsonl:2: field 'negative' must be a string"),
        ('{"positive": "a", "negative": "b", "positive_completion": "", "negative_completion": "y"}', r"bad.jsonl:2: field 'positive_completion' is empty"),
        ('{"positive": "a", "negative": "b", "positive_completion": "x", "negative_completion": "x"}', r"bad.jsonl:2: fields 'positive_completion' and 'negative_completion' are both"),
        ('{"positive": "a", "negative": "a", "positive_completion": "x", "negative_completion": "y"}', r"bad.jsonl:2: fields 'positive' and 'negative' are the same"),
        ('{"positive": "a", "negative": "b", "positive_completion": "x", "negative_completion": "y", "extra": 1}', r"bad.jsonl:2: unknown field\(s\) \['extra'\]"),
        ('{"positive": "a", "negative": "b", "positive_completion": "x", "negative_completion": "y", "split": "dev"}', r"bad.jsonl:2: field 'split' must be"),
    ],
)
def test_jsonl_bad_rows(tmp_path, line, message):
    good = json.dumps(_rows(1)[0])
    path = tmp_path / "bad.jsonl"
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(ValueError, match=message):
        load_tasks_jsonl(path, register=False)


def test_jsonl_missing_or_empty(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_tasks_jsonl(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="no pairs"):
        load_tasks_jsonl(empty)
