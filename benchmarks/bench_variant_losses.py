"""Batched variant losses (`sparse_lens.pruning.variant_losses`) against the previous way of running them.

Two workloads on one circuit (default: `python-sparse-tiny`'s quote circuit, pruned here with
`PruningConfig()` unless --circuit names a saved one):
  viewer ablations  every kept node ablated alone from the circuit and from the full model, on the
                    viewer's 32 held-out pairs (`ablation_losses`, what `sparse-lens view` computes)
  refinement batch  8 candidates "the circuit minus one unit" on refinement's 384 check pairs
                    (`candidate_losses`, one batched evaluation of `refine`)
Each is timed with the library's settings (length chunks of 16 rows, ~128 rows per forward, each
variant from its first changed stage) and with the previous ones (viewer: chunks of 64 rows, 1,024 rows
per forward; refinement: chunks of 32 rows, every candidate from the tokens), interleaved in this
process; reported: wall, user and system CPU seconds (large per-forward blocks cost system time:
page faults), the ratio, and the largest difference between the two results.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_variant_losses.py [--circuit FILE.json] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import torch

from sparse_lens.pruning import PruningConfig
from sparse_lens.pruning.circuit import Circuit
from sparse_lens.pruning.refinement import extra_check_pairs
from sparse_lens.pruning.runner import PruneJob, _cached_load
from sparse_lens.pruning.variant_losses import variant_losses
from sparse_lens.visualization.circuit_graph import kept_nodes
from sparse_lens.visualization.node_panel import ablation_losses
from sparse_lens.visualization.viewer import _task_batch


def clocked(fn):
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    out = fn()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return out, (time.perf_counter() - t0, r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime)


def concat(a, b):
    width = max(a.tokens.shape[1], b.tokens.shape[1])
    pad = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[1]))  # noqa: E731
    return type(a)(torch.cat([pad(a.tokens), pad(b.tokens)]),
                   *(torch.cat([getattr(a, f), getattr(b, f)]) for f in ("last", "target", "alternative", "positive")))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="python-sparse-tiny")
    p.add_argument("--task", default="single_double_quote")
    p.add_argument("--circuit", default=None, help="a saved circuit (.json) of --model; default: prune it here")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()

    job = PruneJob(args.model, args.task)
    circuit = Circuit.load(args.circuit) if args.circuit else job(PruningConfig())
    model, _, data = _cached_load(job)
    circuit.check_model(model)
    print(f"{args.model} {circuit.task}: {circuit.n_nodes} nodes, {circuit.n_edges} edges; "
          f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
    nodes = kept_nodes(model, circuit)
    view_batch = _task_batch(model, circuit.task, 32, 0, "bench")
    check = concat(data.fit, extra_check_pairs(data.fit, data.train, 384))
    base = dict(circuit.masks)
    units = [(n, i) for n, m in base.items() for i in m.reshape(-1).nonzero()[:, 0].tolist()]
    picked = [units[i] for i in torch.randperm(len(units), generator=torch.Generator().manual_seed(0))[:8].tolist()]
    candidates = []
    for name, i in picked:
        c = dict(base)
        c[name] = m = base[name].clone()
        m.view(-1)[i] = False
        candidates.append(c)

    workloads = {
        "viewer ablations": {
            "library": lambda: ablation_losses(model, circuit, view_batch, nodes),
            "previous": lambda: ablation_losses(model, circuit, view_batch, nodes, rows_per_forward=1024, rows_per_chunk=64),
        },
        "refinement batch": {
            "library": lambda: variant_losses(model, check, base, candidates, circuit.means)[1],
            "previous": lambda: variant_losses(model, check, base, candidates, circuit.means, rows_per_forward=256,
                                               rows_per_chunk=32, branch=False)[1],
        },
    }
    for name, variants in workloads.items():
        times = {k: [] for k in variants}
        results = {}
        for _ in range(args.repeats):
            for k, fn in variants.items():
                results[k], t = clocked(fn)
                times[k].append(t)
        lib, prev = results["library"], results["previous"]
        flat = lambda r: r["circuit_without"] + r["full_without"] if isinstance(r, dict) else r  # noqa: E731
        diff = max(abs(a - b) for a, b in zip(flat(lib), flat(prev)))
        med = {k: [statistics.median(t[j] for t in v) for j in range(3)] for k, v in times.items()}
        ratio = statistics.median(p[0] / l[0] for p, l in zip(times["previous"], times["library"]))
        print(f"\n{name} ({len(flat(lib))} losses; largest difference {diff:.2g})")
        for k, (wall, user, sys) in med.items():
            print(f"  {k:9s} wall {wall:7.1f} s   user {user:7.1f} s   system {sys:6.1f} s")
        print(f"  library is {ratio:.2f}x faster (median of {args.repeats} interleaved pairs)")


if __name__ == "__main__":
    main()
