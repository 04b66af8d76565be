"""L0 annealing, LR warmup/decay, sharkfin."""

from __future__ import annotations

import math

import pytest

from sparse_lens.training import OptimizerConfig, base_lr, l0_fraction, lr_at, sharkfin_factor
from sparse_lens.training.schedule import anneal_progress


def test_l0_anneal_values_at_0_1_50_100_percent():
    T, target = 1000, 1 / 16
    assert l0_fraction(0, T, target) == 1.0
    assert l0_fraction(10, T, target) == 1.0  # 1 %: annealing starts here
    assert l0_fraction(500, T, target) == target  # 50 %: target reached
    assert l0_fraction(1000, T, target) == target  # 100 %
    assert l0_fraction(999, T, target) == target
    # linear in between: halfway through the window, halfway between 1 and the target
    assert l0_fraction(255, T, target) == pytest.approx(1 + (target - 1) * 0.5)
    values = [l0_fraction(s, T, target) for s in range(T)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_anneal_window_degenerate():
    assert anneal_progress(0, 100, 0.0, 0.0) == 1.0
    assert anneal_progress(5, 100, 0.2, 0.2) == 0.0
    assert anneal_progress(20, 100, 0.2, 0.2) == 1.0


def test_lr_warmup_then_linear_decay_to_zero():
    cfg = OptimizerConfig(lr=1.0, warmup_fraction=0.01, lr_decay="linear")
    T = 1000
    assert base_lr(0, T, cfg) == pytest.approx(0.1)
    assert base_lr(9, T, cfg) == pytest.approx(1.0)
    assert base_lr(10, T, cfg) == pytest.approx(1.0)
    assert base_lr(505, T, cfg) == pytest.approx(0.5)
    assert base_lr(T, T, cfg) == 0.0
    assert base_lr(T - 1, T, cfg) == pytest.approx(1 / 990)


def test_lr_cosine_constant_and_floor():
    T = 100
    cos = OptimizerConfig(lr=2.0, warmup_fraction=0.0, lr_decay="cosine", min_lr_fraction=0.1)
    assert base_lr(0, T, cos) == pytest.approx(2.0)
    assert base_lr(50, T, cos) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))
    assert base_lr(100, T, cos) == pytest.approx(0.2)
    const = OptimizerConfig(lr=2.0, warmup_fraction=0.1, lr_decay="constant")
    assert base_lr(5, T, const) == pytest.approx(1.2)
    assert base_lr(90, T, const) == 2.0


def test_sharkfin():
    assert sharkfin_factor(1.0, 1 / 16) == pytest.approx(0.25)
    assert sharkfin_factor(1 / 16, 1 / 16) == 1.0
    on = OptimizerConfig(lr=1.0, warmup_fraction=0.0, lr_decay="constant", sharkfin=True)
    off = OptimizerConfig(lr=1.0, warmup_fraction=0.0, lr_decay="constant", sharkfin=False)
    T, target = 100, 1 / 64
    for step in (0, 10, 30, 50, 99):
        frac = l0_fraction(step, T, target)
        assert lr_at(step, T, on, frac, target) == pytest.approx(math.sqrt(target / frac))
        assert lr_at(step, T, off, frac, target) == 1.0
    # the fin: rises while L0 falls (1/sqrt(L0)), then decays with the base schedule
    fin = OptimizerConfig(lr=1.0, warmup_fraction=0.01, sharkfin=True)
    lrs = [lr_at(s, T, fin, l0_fraction(s, T, target), target) for s in range(T)]
    peak = max(range(T), key=lrs.__getitem__)
    assert peak == 50 and lrs[1] < lrs[peak] and lrs[-1] < lrs[peak]
