"""Hyperparameter search for pruning, in place of CARBS (App. A.5): Optuna, rounds of parallel
suggestions with batch ask/tell, seeded at the paper's Table 2 centers.

The objective is the circuit's size (edges) at the target loss; a run that cannot reach the target
scores ``UNREACHABLE``. The runs of a round execute in parallel worker processes (``mode="processes"``,
each holding its own copy of the model), one after another (``"serial"``), or as one batched mask
training over the shared frozen model (``"batched"``: `prune_batched`, issue 25 item 5); the study can
live in shared storage (an Optuna journal file or an RDB URL) so several machines can join one sweep.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Optional

import optuna

from sparse_lens.pruning.circuit import Circuit
from sparse_lens.pruning.config import SWEEP_MODES, PruningConfig

UNREACHABLE = 1e12

# (low, high, log) ranges around the Table 2 centers: one decade either side unless bounded.
SEARCH_SPACE: dict[str, tuple[float, float, bool]] = {
    "k_coef": (1e-5, 1e-3, True),
    "init_noise_scale": (1e-3, 1e-1, True),
    "init_noise_bias": (1e-2, 1.0, True),
    "wd": (1e-4, 1e-2, True),
    "lr": (3e-4, 3e-2, True),
    "inv_beta2": (5e-3, 0.5, True),
    "lr_warmup_frac": (0.0, 0.2, False),
    "heaviside_temp": (0.1, 10.0, True),
}


def make_storage(storage: Optional[str]):
    """None (in memory), a journal file path, or an RDB URL such as ``sqlite:///sweep.db``."""
    if storage is None:
        return None
    if "://" in storage:
        return storage
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(storage))


def objective_of(circuit: Circuit) -> float:
    return float(circuit.n_edges) if circuit.losses.get("reachable", 0.0) else UNREACHABLE


@dataclass
class SweepResult:
    best: Optional[Circuit]
    best_config: dict[str, Any]
    trials: list[dict[str, Any]]


def _suggest(trial: optuna.Trial) -> dict[str, float]:
    return {name: trial.suggest_float(name, lo, hi, log=log) for name, (lo, hi, log) in SEARCH_SPACE.items()}


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_sweep(
    run_one: Callable[[PruningConfig], Circuit],
    base: PruningConfig,
    rounds: int = 32,
    parallel: int = 8,
    storage: Optional[str] = None,
    study_name: str = "sparse_lens_pruning",
    seed: int = 0,
    mode: str = "processes",
) -> SweepResult:
    """``rounds`` × ``parallel`` pruning runs. ``run_one`` must be picklable (a module-level function
    or a dataclass instance) for ``mode="processes"``, and have a ``run_batch(configs) -> circuits``
    method (as `PruneJob` does) for ``mode="batched"``."""
    if rounds <= 0 or parallel <= 0:
        raise ValueError(f"rounds and parallel must be positive, got rounds={rounds}, parallel={parallel}")
    if mode not in SWEEP_MODES:
        raise ValueError(f"mode: expected one of {', '.join(SWEEP_MODES)}, got {mode!r}")
    if mode == "batched" and not callable(getattr(run_one, "run_batch", None)):
        raise ValueError(f"mode='batched': run_one must have a run_batch(configs) method (e.g. a PruneJob), "
                         f"got {type(run_one).__name__}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=min(parallel, 8))
    study = optuna.create_study(
        study_name=study_name, storage=make_storage(storage), sampler=sampler, direction="minimize", load_if_exists=True
    )
    if not study.trials:
        study.enqueue_trial({name: getattr(base, name) for name in SEARCH_SPACE})
    best: Optional[Circuit] = None
    best_value = math.inf
    executor = None
    if mode == "processes" and parallel > 1:
        threads = max(1, (os.cpu_count() or 1) // parallel)
        executor = ProcessPoolExecutor(parallel, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=(threads,))
    try:
        for _ in range(rounds):
            trials = [study.ask() for _ in range(parallel)]
            configs = [base.replace(**_suggest(t), seed=base.seed + t.number) for t in trials]
            if mode == "batched":
                circuits = list(run_one.run_batch(configs))
            elif executor is not None:
                circuits = list(executor.map(run_one, configs))
            else:
                circuits = [run_one(c) for c in configs]
            for trial, circuit in zip(trials, circuits):
                value = objective_of(circuit)
                trial.set_user_attr("n_nodes", circuit.n_nodes)
                trial.set_user_attr("fit_loss", circuit.losses.get("fit_loss"))
                study.tell(trial, value)
                if value < best_value:
                    best, best_value = circuit, value
    finally:
        if executor is not None:
            executor.shutdown()
    trials = [
        {"number": t.number, "value": t.value, "params": t.params, **t.user_attrs}
        for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
    ]
    return SweepResult(best, best.config if best else {}, trials)
