"""The task loss against hand computation and against the authors' per-datapoint formula."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sparse_lens.tasks import logit_difference, task_loss


def test_loss_matches_hand_computation():
    # 4 rows (2 pairs), vocab 5. Row r: target t_r, alternative a_r.
    logits = torch.tensor([
        [0.0, 2.0, -1.0, 0.5, 0.0],
        [1.0, 0.0, 3.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 4.0, -2.0],
        [0.3, 0.0, 0.0, 0.0, 0.3],
    ])  # fmt: skip
    target = torch.tensor([1, 0, 4, 0])
    alternative = torch.tensor([2, 2, 3, 4])
    # d = z_t - z_a: 3, -2, -6, 0 ; loss_r = log(1 + exp(-d))
    d = [3.0, -2.0, -6.0, 0.0]
    expected = sum(math.log(1 + math.exp(-x)) for x in d) / 4
    loss, acc = task_loss(logits, target, alternative)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert acc.item() == pytest.approx(0.25)  # only row 0 is right; the tie (row 3) counts as wrong
    assert logit_difference(logits, target, alternative).tolist() == pytest.approx(d)
    per_row, correct = task_loss(logits, target, alternative, reduction="none")
    assert per_row.tolist() == pytest.approx([math.log(1 + math.exp(-x)) for x in d], rel=1e-6)
    assert correct.tolist() == [1.0, 0.0, 0.0, 0.0]
    pair_sum, _ = task_loss(logits, target, alternative, reduction="pair_sum")
    assert pair_sum.item() == pytest.approx(2 * expected, rel=1e-6)


def authors_loss(logits_pos: torch.Tensor, logits_neg: torch.Tensor, tokid: int, alt_tokid: int) -> torch.Tensor:
    """openai/circuit_sparsity's last_token_contrast_loss_fn (two_sided, alt_tokid given), per datapoint:
    logits are [pos, vocab] for the positive ("patched") and negative ("clean") sequences."""
    logps_patched = F.log_softmax(logits_pos[:, [tokid, alt_tokid]], dim=-1)
    logps_clean = F.log_softmax(logits_neg[:, [tokid, alt_tokid]], dim=-1)
    return -(logps_patched[-1, 0] + logps_clean[-1, 1])


def test_pair_sum_equals_the_authors_per_datapoint_loss():
    g = torch.Generator().manual_seed(0)
    n_pairs, pos, vocab = 6, 7, 11
    full = torch.randn(2 * n_pairs, pos, vocab, generator=g) * 3
    last = torch.randint(2, pos, (2 * n_pairs,), generator=g)
    tok = torch.randint(0, vocab, (n_pairs,), generator=g)
    alt = (tok + 1 + torch.randint(0, vocab - 1, (n_pairs,), generator=g)) % vocab
    target = torch.stack([tok, alt], 1).reshape(-1)  # positive row → tok, negative row → alt
    alternative = torch.stack([alt, tok], 1).reshape(-1)
    theirs = torch.stack([
        authors_loss(full[2 * i, : last[2 * i] + 1], full[2 * i + 1, : last[2 * i + 1] + 1], int(tok[i]), int(alt[i]))
        for i in range(n_pairs)
    ]).mean()  # fmt: skip
    ours_pair, _ = task_loss(full, target, alternative, last=last, reduction="pair_sum")
    ours_mean, _ = task_loss(full, target, alternative, last=last)
    assert ours_pair.item() == pytest.approx(theirs.item(), rel=1e-5)
    assert ours_mean.item() == pytest.approx(theirs.item() / 2, rel=1e-5)


def test_loss_is_differentiable_and_bounded():
    logits = torch.zeros(4, 3, requires_grad=True)
    loss, acc = task_loss(logits, torch.tensor([0, 1, 0, 1]), torch.tensor([1, 0, 1, 0]))
    assert loss.item() == pytest.approx(math.log(2))  # indifferent model
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert acc.item() == 0.0


def test_loss_bad_input():
    logits = torch.zeros(2, 5)
    t, a = torch.tensor([0, 1]), torch.tensor([1, 0])
    with pytest.raises(ValueError, match="last: required"):
        task_loss(torch.zeros(2, 3, 5), t, a)
    with pytest.raises(ValueError, match="target: expected shape"):
        task_loss(logits, torch.tensor([0]), a)
    with pytest.raises(ValueError, match="alternative: token ids"):
        task_loss(logits, t, torch.tensor([1, 9]))
    with pytest.raises(ValueError, match="reduction"):
        task_loss(logits, t, a, reduction="sum")
    with pytest.raises(ValueError, match="even number"):
        task_loss(torch.zeros(3, 5), torch.tensor([0, 1, 0]), torch.tensor([1, 0, 1]), reduction="pair_sum")
    with pytest.raises(ValueError, match="last: positions"):
        task_loss(torch.zeros(2, 3, 5), t, a, last=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="logits: expected"):
        task_loss(torch.zeros(5), t, a)
