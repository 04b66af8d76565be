"""Pairs → padded token tensors, with the single-token checks.

Each pair gives two rows, positive then negative: ``[pos_0, neg_0, pos_1, neg_1, ...]``. Every row is
``<|endoftext|>`` (BOS, id 0 for our tokenizers) followed by the prompt's tokens, right-padded to the
batch's longest row; ``last`` is the index of each row's last real token, where a causal model's
logits predict the completion.

The answer of a row is the token the model meets next in running text: the first token after the
prompt's tokens in ``encode(prompt + completion + suffix)`` (the pair's ``*_suffix``; none given: just
``prompt + completion``, which must then be exactly ``encode(prompt) + [one token]``). The prompt's tokens
must be a prefix of that encoding, and the answer token must be the completion itself or the completion
fused with the start of the suffix — e.g. ``]]\n`` for ``"]]"`` followed by a line end under a tokenizer
whose closing brackets carry the newline, as in the paper's tokenizer (whose bracket task compares
``]]\n`` with ``]\n``). A row's alternative is the answer token of the pair's other row. Anything else
makes the task ill-posed under that tokenizer (the model would never see the answer as a token after
that prompt) and a ValueError names the task and the string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from sparse_lens.tasks.base import TaskPair

BOS_TOKEN = "<|endoftext|>"


def backend(tokenizer: Any) -> Any:
    """The `tokenizers.Tokenizer` behind `tokenizer` (itself, or a transformers fast tokenizer's
    ``backend_tokenizer``)."""
    inner = getattr(tokenizer, "backend_tokenizer", None)
    if inner is not None:
        return inner
    if hasattr(tokenizer, "encode_batch") and hasattr(tokenizer, "token_to_id"):
        return tokenizer
    raise TypeError(
        f"tokenizer: expected a tokenizers.Tokenizer or a transformers fast tokenizer, got {type(tokenizer).__name__}"
    )


@dataclass
class TokenizedPairs:
    """Rows of task sequences, two per pair (positive, negative)."""

    tokens: Tensor  # [rows, pos] int64, right-padded with BOS
    last: Tensor  # [rows] index of each row's last real token
    target: Tensor  # [rows] id of the row's own completion
    alternative: Tensor  # [rows] id of the other completion
    positive: Tensor  # [rows] bool, True for a pair's positive prompt

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    # Names used by `sparse_lens.pruning.TaskBatch`.
    @property
    def correct(self) -> Tensor:
        return self.target

    @property
    def incorrect(self) -> Tensor:
        return self.alternative

    def select(self, rows: Any) -> "TokenizedPairs":
        """A subset of rows, trimmed to its own longest row."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        width = int(self.last[rows].max()) + 1 if len(rows) else 0
        return TokenizedPairs(self.tokens[rows, :width], self.last[rows], self.target[rows], self.alternative[rows], self.positive[rows])

    def to(self, device: Any) -> "TokenizedPairs":
        return TokenizedPairs(*(t.to(device) for t in (self.tokens, self.last, self.target, self.alternative, self.positive)))


def _label(task_name: str) -> str:
    return f"task {task_name!r}" if task_name else "task"


def completion_id(tokenizer: Any, completion: str, task_name: str = "") -> int:
    """The id of `completion`, which must encode to exactly one token."""
    tok = backend(tokenizer)
    enc = tok.encode(completion, add_special_tokens=False)
    if len(enc.ids) != 1:
        raise ValueError(
            f"{_label(task_name)}: completion {completion!r} is {len(enc.ids)} tokens under this tokenizer "
            f"({enc.tokens}), not a single token"
        )
    return enc.ids[0]


def bos_id(tokenizer: Any) -> int:
    tok = backend(tokenizer)
    bos = tok.token_to_id(BOS_TOKEN)
    if bos is None:
        raise ValueError(f"tokenizer: has no {BOS_TOKEN} token to use as BOS")
    return int(bos)


def _answer_token(
    tok: Any, prompt: str, completion: str, suffix: Optional[str], ids: list[int], ext: list[int], task_name: str
) -> int:
    """The token that follows `prompt` in the running text `ext` (see the module docstring)."""
    answer = ext[len(ids)] if len(ext) > len(ids) and ext[: len(ids)] == ids else None
    text = tok.decode([answer], skip_special_tokens=False) if answer is not None else ""
    fused = suffix is not None and text.startswith(completion) and (completion + suffix).startswith(text)
    if answer is None or not (text == completion or fused) or (suffix is None and len(ext) != len(ids) + 1):
        pieces = [tok.id_to_token(i) for i in ext[max(0, len(ids) - 3) : len(ids) + 2]]
        raise ValueError(
            f"{_label(task_name)}: completion {completion!r} does not tokenize as a separate token after its "
            f"prompt (prompt ends {prompt[-40:]!r}; the running text has tokens {pieces} there)"
        )
    return answer


def tokenize_pairs(
    pairs: Sequence[TaskPair],
    tokenizer: Any,
    n_ctx: Optional[int] = None,
    task_name: str = "",
) -> TokenizedPairs:
    """Tokenize pairs into a batch (see the module docstring). Raises ValueError naming the task if a
    completion is not a single separate token, or a prompt with BOS is longer than `n_ctx`."""
    if not pairs:
        raise ValueError(f"{_label(task_name)}: no pairs to tokenize")
    tok = backend(tokenizer)
    bos = bos_id(tok)
    rows = [row for pair in pairs for row in pair.rows()]  # (prompt, completion, suffix)
    for c in {c for _, c, _ in rows}:
        completion_id(tok, c, task_name)  # each completion alone must be one token
    encoded = [e.ids for e in tok.encode_batch([p for p, _, _ in rows], add_special_tokens=False)]
    running = [e.ids for e in tok.encode_batch([p + c + (s or "") for p, c, s in rows], add_special_tokens=False)]
    answers: list[int] = []
    for (prompt, completion, suffix), ids, ext in zip(rows, encoded, running):
        answers.append(_answer_token(tok, prompt, completion, suffix, ids, ext, task_name))
        if n_ctx is not None and len(ids) + 1 > n_ctx:
            raise ValueError(
                f"{_label(task_name)}: a prompt is {len(ids) + 1} tokens with BOS, more than n_ctx={n_ctx} "
                f"(prompt starts {prompt[:60]!r}); generate shorter pairs (max_chars / max_tokens)"
            )
    alternatives = [answers[i ^ 1] for i in range(len(answers))]  # rows come in (positive, negative) pairs
    for i in range(0, len(answers), 2):
        if answers[i] == answers[i + 1]:
            raise ValueError(
                f"{_label(task_name)}: both prompts of a pair are answered by the same token "
                f"{tok.id_to_token(answers[i])!r} (positive ends {rows[i][0][-40:]!r}); the pair does not contrast"
            )
    width = max(len(ids) for ids in encoded) + 1
    tokens = torch.full((len(rows), width), bos, dtype=torch.long)
    last = torch.empty(len(rows), dtype=torch.long)
    for row, ids in enumerate(encoded):
        tokens[row, 1 : len(ids) + 1] = torch.tensor(ids, dtype=torch.long)
        last[row] = len(ids)
    return TokenizedPairs(
        tokens=tokens,
        last=last,
        target=torch.tensor(answers, dtype=torch.long),
        alternative=torch.tensor(alternatives, dtype=torch.long),
        positive=torch.tensor([i % 2 == 0 for i in range(len(rows))], dtype=torch.bool),
    )


def check_completions(pairs: Sequence[TaskPair], tokenizer: Any, task_name: str = "") -> None:
    """Raise ValueError unless every completion of `pairs` is a single separate token after its prompt."""
    tokenize_pairs(pairs, tokenizer, task_name=task_name)
