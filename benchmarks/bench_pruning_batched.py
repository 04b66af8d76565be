"""Batched pruning runs against separate processes (issue 25 item 5): sweep rounds per hour.

One sweep (`run_sweep`, the same Optuna sampler seed, so the same suggestions) is run three ways on the
same model and task, in this process, one after another:
  - processes: each suggestion of a round in its own worker process (spawned once per sweep, each loads
    and holds its own copy of the model; torch threads split between them) — the default;
  - batched:   a round's mask trainings as one batched computation over the one loaded model
    (`prune_batched`), then each run's discretization, calibration and validation;
  - serial:    the suggestions one after another in this process (the baseline a single core gives).
Reports runs/hour for each and the ratio against processes, the trials' objectives (equal suggestions
must give equal circuits up to float summation order) and peak memory (this process's max RSS for the
in-process modes; the largest worker's for processes — every worker holds one).

Run:  .venv/bin/python benchmarks/bench_pruning_batched.py [--model python-sparse-tiny]
      [--task single_double_quote] [--parallel 4] [--rounds 1] [--steps 100] [--threads 2]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from sparse_lens.pruning import PruningConfig
from sparse_lens.pruning.runner import PruneJob, _cached_load
from sparse_lens.pruning.sweep import run_sweep


def rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="python-sparse-tiny")
    p.add_argument("--task", default="single_double_quote")
    p.add_argument("--parallel", type=int, default=4, help="suggestions per round")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--steps", type=int, default=100, help="mask-training steps per run")
    p.add_argument("--n-train", type=int, default=256)
    p.add_argument("--threads", type=int, default=2, help="torch threads in all (split between worker processes)")
    p.add_argument("--modes", nargs="+", default=["processes", "batched", "serial"])
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    job = PruneJob(args.model, args.task, n_train=args.n_train, n_fit=128, n_test=128)
    base = PruningConfig(steps=args.steps)
    t0 = time.perf_counter()
    _cached_load(job)  # the in-process modes load once (as a sweep's later rounds do)
    print(f"in-process load: {time.perf_counter() - t0:.1f}s, RSS {rss_mb(resource.RUSAGE_SELF):.0f} MB")
    runs = args.parallel * args.rounds
    results = {}
    for mode in args.modes:
        start = time.perf_counter()
        sweep = run_sweep(job, base, rounds=args.rounds, parallel=args.parallel, mode=mode,
                          study_name=f"bench-{mode}", seed=0)
        seconds = time.perf_counter() - start
        values = [t["value"] for t in sorted(sweep.trials, key=lambda t: t["number"])]
        results[mode] = seconds
        rss = rss_mb(resource.RUSAGE_CHILDREN if mode == "processes" else resource.RUSAGE_SELF)
        print(f"{mode}: {runs} runs in {seconds:.1f}s = {3600 * runs / seconds:.1f} runs/hour; "
              f"max RSS so far {rss:.0f} MB{' (largest worker)' if mode == 'processes' else ''}; edges {values}")
    if "processes" in results:
        for mode, seconds in results.items():
            print(f"{mode} / processes runs/hour: {results['processes'] / seconds:.2f}x")


if __name__ == "__main__":
    main()
