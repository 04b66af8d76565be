"""Pairs → tensors: BOS, right padding to the batch's longest row, last index, single-token checks."""

from __future__ import annotations

import pytest
import torch

from sparse_lens.tasks import TaskPair, completion_id, get_task, tokenize_pairs


def test_layout(tokenizer):
    tok = tokenizer.tok
    pairs = [
        TaskPair('x = "ab', "x = 'ab", '"', "'"),
        TaskPair('name = "hello world', "name = 'hello world", '"', "'"),
    ]
    batch = tokenize_pairs(pairs, tok, n_ctx=64, task_name="q")
    prompts = [pairs[0].positive, pairs[0].negative, pairs[1].positive, pairs[1].negative]
    lengths = [len(tok.encode(p).ids) + 1 for p in prompts]
    assert batch.tokens.shape == (4, max(lengths))  # padded to the longest row, not to n_ctx
    assert batch.last.tolist() == [n - 1 for n in lengths]
    assert (batch.tokens[:, 0] == 0).all()  # BOS = <|endoftext|> = id 0
    for row, prompt in enumerate(prompts):
        assert batch.tokens[row, 1 : lengths[row]].tolist() == tok.encode(prompt).ids
        assert (batch.tokens[row, lengths[row]:] == 0).all()
    dq, sq = completion_id(tok, '"'), completion_id(tok, "'")
    assert batch.target.tolist() == [dq, sq, dq, sq]
    assert batch.alternative.tolist() == [sq, dq, sq, dq]
    assert batch.positive.tolist() == [True, False, True, False]
    assert batch.correct is batch.target and batch.incorrect is batch.alternative
    sub = batch.select(torch.tensor([0, 1]))
    assert sub.tokens.shape == (2, max(lengths[:2]))


def test_multi_token_completion_is_an_error(tokenizer):
    pair = TaskPair("x = 1\nif x", "x = 1\nx", " ==", " =")
    with pytest.raises(ValueError, match=r"task 'my_task': completion ' this_is_not_one_token' is \d+ tokens"):
        tokenize_pairs([TaskPair("a", "b", " this_is_not_one_token", " =")], tokenizer.tok, task_name="my_task")
    tokenize_pairs([pair], tokenizer.tok)  # fine


def test_completion_fusing_with_prompt_is_an_error(tokenizer):
    tok = tokenizer.tok
    word = "name"
    assert len(tok.encode(word).ids) == 1
    # "self.data" + "name" would tokenize as the identifier "dataname", not "data" + "name".
    pair = TaskPair("self.data", "self.other = 1\nself.", word, "value")
    with pytest.raises(ValueError, match="task 'fuse': completion 'name' does not tokenize as a separate token"):
        tokenize_pairs([pair], tok, task_name="fuse")


def test_too_long_for_n_ctx(tokenizer):
    pairs = get_task("bracket_counting").generate(5, seed=0, split="test")
    with pytest.raises(ValueError, match="task 'bracket_counting': a prompt is .* more than n_ctx=8"):
        tokenize_pairs(pairs, tokenizer.tok, n_ctx=8, task_name="bracket_counting")


def test_accepts_transformers_tokenizer(tokenizer):
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer.tok)
    pairs = get_task("while_return_true").generate(3, seed=0, split="test")
    a = tokenize_pairs(pairs, fast)
    b = tokenize_pairs(pairs, tokenizer.tok)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.target, b.target)


def test_bad_input(tokenizer):
    with pytest.raises(ValueError, match="no pairs"):
        tokenize_pairs([], tokenizer.tok)
    with pytest.raises(TypeError, match="tokenizer"):
        tokenize_pairs([TaskPair("a", "b", "c", "d")], object())
