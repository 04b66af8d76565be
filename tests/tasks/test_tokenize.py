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


@pytest.fixture(scope="module")
def eol_tokenizer():
    """A small tokenizer with our pre-tokenizer, whose closing brackets carry a following newline."""
    from sparse_lens.data.tokenizer import train_tokenizer

    texts = ["x = [[1, 2], [3, 4]]\ny = [a, b]\nz = f(x[0], y[1])\n" * 20]
    return train_tokenizer(texts, vocab_size=300, force_single=("]]\n", "]\n", "]]", "]"), line_end_closers=True)


def test_answer_fused_with_the_line_end(eol_tokenizer):
    """With a suffix, the answer is the token the model meets in running text: ``]]\\n``, not ``]]``."""
    tok = eol_tokenizer
    pair = TaskPair("x = [[1, 2", "x = [1, 2", "]]", "]", "\n", "\n")
    batch = tokenize_pairs([pair], tok, task_name="brackets")
    eol2, eol1 = tok.token_to_id("]]Ċ"), tok.token_to_id("]Ċ")
    assert batch.target.tolist() == [eol2, eol1] and batch.alternative.tolist() == [eol1, eol2]
    # Without a suffix the completion itself is the answer, as before.
    bare = tokenize_pairs([TaskPair("x = [[1, 2", "x = [1, 2", "]]", "]")], tok)
    assert bare.target.tolist() == [completion_id(tok, "]]"), completion_id(tok, "]")]
    # Followed by ", " the bracket is its own token again.
    mid = tokenize_pairs([TaskPair("x = [[1, 2", "x = [1, 2", "]]", "]", ", 3]", ", 3]")], tok)
    assert mid.target.tolist() == bare.target.tolist()


def test_answer_must_start_with_the_completion(eol_tokenizer, tokenizer):
    # "self.data" + "name": the running text fuses the completion into the prompt's last token.
    with pytest.raises(ValueError, match="completion 'name' does not tokenize as a separate token"):
        tokenize_pairs([TaskPair("self.data", "self.", "name", "value", " = 1\n", " = 1\n")], tokenizer.tok, task_name="t")
    # A pair whose two rows meet the same token does not contrast anything.
    with pytest.raises(ValueError, match="task 't': both prompts of a pair are answered by the same token"):
        tokenize_pairs([TaskPair("x = [1", "y = [2", "]", "]", "\n", "\n")], eol_tokenizer, task_name="t")
