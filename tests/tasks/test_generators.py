"""Per-task tests, parametrized over the paper's 20 tasks: determinism, disjoint splits, balance,
single-token completions under the shipped tokenizer, validity (ast / rule), variety."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys

import pytest

from sparse_lens.tasks import PAPER_TASKS, get_task, split_of, task_names, tokenize_pairs

EXPECTED = [
    "single_double_quote", "bracket_counting", "set_or_string", "set_or_string_fixedvarname", "with_as",
    "with_open", "for_while", "else_elif", "if_ternary", "if_equals", "fstring_brace", "bracket_brace",
    "var_swap", "var_if", "indent_for", "while_return_true", "lambda_func", "enumerate_range",
    "final_kwarg", "class_init",
]  # fmt: skip

N = 150


@pytest.fixture(scope="module")
def generated():
    """{task: {split: pairs}}, generated once for the module."""
    return {name: {s: get_task(name).generate(N, seed=11, split=s) for s in ("train", "test")} for name in PAPER_TASKS}


def test_registry_has_the_papers_20_tasks():
    assert list(PAPER_TASKS) == EXPECTED
    assert task_names(builtin_only=True) == EXPECTED
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        get_task("nope")


@pytest.mark.parametrize("name", EXPECTED)
def test_deterministic_by_seed(name):
    task = get_task(name)
    a = task.generate(30, seed=5, split="train")
    b = task.generate(30, seed=5, split="train")
    c = task.generate(30, seed=6, split="train")
    assert a == b
    assert a != c
    assert task.generate(10, seed=5, split="train") == a[:10]  # a prefix: n does not reshuffle


def test_deterministic_across_processes():
    """No set iteration or str hashing leaks into generation: another PYTHONHASHSEED, same pairs."""
    code = (
        "import hashlib, json\n"
        "from sparse_lens.tasks import PAPER_TASKS, get_task\n"
        "h = hashlib.sha256()\n"
        "for n in PAPER_TASKS:\n"
        "    for p in get_task(n).generate(15, seed=2, split='test'):\n"
        "        h.update(json.dumps(p.to_dict(), sort_keys=True).encode())\n"
        "print(h.hexdigest())\n"
    )
    h = hashlib.sha256()
    for name in PAPER_TASKS:
        for p in get_task(name).generate(15, seed=2, split="test"):
            h.update(json.dumps(p.to_dict(), sort_keys=True).encode())
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == h.hexdigest()


@pytest.mark.parametrize("name", EXPECTED)
def test_splits_are_disjoint(name, generated):
    train, test = generated[name]["train"], generated[name]["test"]
    assert len(train) == len(test) == N
    train_prompts = {p for pair in train for p in (pair.positive, pair.negative)}
    test_prompts = {p for pair in test for p in (pair.positive, pair.negative)}
    assert not train_prompts & test_prompts
    assert len(train_prompts) == 2 * N  # no prompt repeats within a split either
    assert all(split_of(p) == "train" for p in train_prompts)
    assert all(split_of(p) == "test" for p in test_prompts)


@pytest.mark.parametrize("name", EXPECTED)
def test_balanced(name, generated):
    task = get_task(name)
    pairs = generated[name]["test"]
    for pair in pairs:
        (p_prompt, p_target, p_alt), (n_prompt, n_target, n_alt) = pair.sequences()
        assert p_target == n_alt and n_target == p_alt and p_target != n_target
        if task.completions is not None:
            assert (p_target, n_target) == task.completions
    counts: dict[str, int] = {}
    for pair in pairs:
        for _, target, _ in pair.sequences():
            counts[target] = counts.get(target, 0) + 1
    if task.completions is not None:
        assert counts == {task.completions[0]: len(pairs), task.completions[1]: len(pairs)}


@pytest.mark.parametrize("name", EXPECTED)
def test_single_token_completions(name, generated, tokenizer):
    task = get_task(name)
    pairs = generated[name]["test"]
    if not tokenizer.shipped and task.completions and any(len(tokenizer.tok.encode(c).ids) != 1 for c in task.completions):
        pytest.skip("the shipped tokenizer is missing and the stand-in's small vocabulary lacks this completion")
    batch = tokenize_pairs(pairs, tokenizer.tok, n_ctx=256, task_name=name)
    assert batch.tokens.shape[0] == 2 * len(pairs)
    for row, pair in enumerate(pairs):
        suffixes = [suffix or "" for _, _, suffix in pair.rows()]
        for k, ((_, target, alternative), suffix, other) in enumerate(zip(pair.sequences(), suffixes, suffixes[::-1])):
            # The answer is the completion, or the completion fused with the start of its suffix (``]]\n``).
            answer = tokenizer.tok.decode([int(batch.target[2 * row + k])])
            assert answer.startswith(target) and (target + suffix).startswith(answer), (answer, target)
            alt = tokenizer.tok.decode([int(batch.alternative[2 * row + k])])
            assert alt.startswith(alternative) and (alternative + other).startswith(alt), (alt, alternative)


@pytest.mark.parametrize("name", EXPECTED)
def test_validity(name, generated):
    """Grammar-decided: correct completion + suffix parses, the wrong one does not; meaning-decided:
    both parse and the task's rule tells them apart."""
    task = get_task(name)
    for pair in generated[name]["test"][:50]:
        assert task.problems(pair) == [], task.problems(pair)


@pytest.mark.parametrize("name", EXPECTED)
def test_validity_check_rejects_swapped_answers(name, generated):
    """The check can fail: with the completions (or the prompts) exchanged, every pair is flagged."""
    task = get_task(name)
    for pair in generated[name]["test"][:20]:
        swapped = dataclasses.replace(
            pair, positive_completion=pair.negative_completion, negative_completion=pair.positive_completion,
            positive_suffix=pair.negative_suffix, negative_suffix=pair.positive_suffix,
        )  # fmt: skip
        assert task.problems(swapped)
        assert task.problems(dataclasses.replace(pair, positive=pair.negative, negative=pair.positive))
        with pytest.raises(ValueError, match=name):
            task.validity_check(swapped)


@pytest.mark.parametrize("name", EXPECTED)
def test_varied_and_bounded(name, generated):
    pairs = generated[name]["train"]
    lengths = [len(p.positive) for p in pairs]
    assert max(lengths) <= 400  # DEFAULT_MAX_CHARS
    assert max(lengths) - min(lengths) > 100  # distractor code varies the length
    assert len({"\n".join(p.positive.splitlines()[-3:]) for p in pairs}) > N // 3  # the code around the cue varies
    long = get_task(name).generate(20, seed=1, split="test", max_chars=900)
    assert max(len(p.positive) for p in long) > 400


@pytest.mark.parametrize("name", EXPECTED)
def test_max_tokens_filter(name, tokenizer):
    task = get_task(name)
    if not tokenizer.shipped:
        pytest.skip("needs the shipped tokenizer")
    pairs = task.generate(40, seed=3, split="test", max_chars=1200, tokenizer=tokenizer.tok, max_tokens=128)
    batch = tokenize_pairs(pairs, tokenizer.tok, n_ctx=128, task_name=name)
    assert int(batch.last.max()) + 1 <= 128


def test_generate_errors():
    task = get_task("bracket_counting")
    with pytest.raises(ValueError, match="split"):
        task.generate(3, split="validation")
    with pytest.raises(ValueError, match="n:"):
        task.generate(-1)
    with pytest.raises(RuntimeError, match="bracket_counting"):
        task.generate(3, max_chars=5)  # nothing fits
    with pytest.raises(ValueError, match="tokenizer and max_tokens"):
        task.generate(3, max_tokens=10)


@pytest.fixture(scope="module")
def other_closers_tokenizer(tokenizer):
    """The shipped tokenizer with the other pre-tokenizer: closing ] runs and } alone if the shipped
    one gives them their line end (the paper's convention), and the other way round."""
    from tokenizers import Tokenizer

    from sparse_lens.data import build_pre_tokenizer, force_single_tokens, has_line_end_closers, task_tokens

    flag = not has_line_end_closers(tokenizer.tok)
    tok = Tokenizer.from_str(tokenizer.tok.to_str())
    tok.pre_tokenizer = build_pre_tokenizer(line_end_closers=flag)
    return force_single_tokens(tok, task_tokens(line_end_closers=flag))


@pytest.mark.parametrize("name", EXPECTED)
def test_tasks_under_either_closer_convention(name, generated, tokenizer, other_closers_tokenizer):
    """Every task is well-posed whether closers carry the newline (as in the paper's tokenizer) or not;
    only the bracket tasks' answers change: the line-closing tokens, or the closers alone."""
    from sparse_lens.data import has_line_end_closers

    if not tokenizer.shipped:
        pytest.skip("needs the shipped tokenizer")
    pairs = generated[name]["test"][:50]
    answers = {}
    for tok in (tokenizer.tok, other_closers_tokenizer):
        ids = tokenize_pairs(pairs, tok, task_name=name).target
        answers[has_line_end_closers(tok)] = [tok.decode([int(i)]) for i in ids]
    if name == "bracket_counting":
        assert set(answers[True]) == {"]]\n", "]\n"} and set(answers[False]) == {"]]", "]"}
    elif name == "bracket_brace":
        assert set(answers[True]) == {"]\n", "}\n"} and set(answers[False]) == {"]", "}"}
    else:  # no other answer is a closer at a line end
        assert answers[True] == answers[False]
