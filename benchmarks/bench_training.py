"""Speed of one weight-sparse training step vs a plain dense step (issue: training benchmark).

Shape: n_layers=2, d_model=128, d_mlp=512, n_heads=8 (d_head 16), n_ctx=128, d_vocab=2048, batch 16
(2048 tokens per step), weight sparsity L0 = 1/16 (the projection runs at the target every step).

Variants, measured interleaved in one process (these machines are noisy), median over repeats:
  sparse      the trainer's full step: AbsTopK 1/4 at all 8 node locations, gradient RMS
              normalization, Adam(eps=0.1), top-k projection with min 4 per neuron, manual weight decay
  dense       a plain dense step of the same shape: no activation sparsity, forward + backward +
              torch.optim.Adam defaults, nothing else
  weight-only the trainer's step with weight sparsity but no AbsTopK (isolates AbsTopK's cost)
  sparse, torch.topk AbsTopK   the sparse step with the model's abs_topk swapped (in this process only)
              for the straightforward one: threshold = torch.topk(|x|).values.amin, torch.where
              (the library's AbsTopK selects on integer bit patterns with numpy instead)
Target: sparse / dense <= 1.3. Also reported: tokens/s, the projection's share of the sparse step,
the phase breakdown, and peak memory (each variant in a fresh subprocess, RSS growth while training).

With --compile (issue 25, item 4: levers for a step faster than dense), two more variants, each
compiled once before timing (about a minute each): *dense, torch.compile* and *sparse, torch.compile*
(the trainer's step with its forward_model compiled; AbsTopK's selection is one custom operator).

Run:  .venv/bin/python benchmarks/bench_training.py [--repeats 11] [--steps 5] [--write] [--compile]
(--write puts the results under "## Training" in benchmarks/RESULTS.md, leaving other sections alone.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from sparse_lens.model import NODE_LOCATIONS, HookedSparseTransformer, SparseTransformerConfig
from sparse_lens.training import Trainer, TrainingConfig

SHAPE = dict(n_layers=2, d_model=128, d_mlp=512, d_head=16, n_heads=8, n_ctx=128, d_vocab=2048)
BATCH = 16
L0 = 1 / 16
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
COMMAND = "python benchmarks/bench_training.py --write"
TOPK = "sparse, torch.topk AbsTopK"


def make_trainer(out_dir: str, weight_sparse: bool = True, activation_sparse: bool = True) -> Trainer:
    cfg = TrainingConfig.from_dict(dict(
        model=dict(**SHAPE, seed=0, weight_sparsity=L0 if weight_sparse else None,
                   activation_sparsity=0.25 if activation_sparse else None,
                   activation_sparsity_locations=list(NODE_LOCATIONS)),
        data=dict(source="synthetic", synthetic_rows=256),
        sparsity=dict(anneal_start=0.0, anneal_end=0.0),  # at the target from the first step
        train_steps=10**6, batch_size=BATCH, eval_every=0, checkpoint_every=0, log_every=1000,
        tensorboard=False, progress_bar=False, out_dir=out_dir,
    ))
    trainer = Trainer(cfg)
    trainer._phase = "idle"
    return trainer


class DenseStep:
    """forward + backward + Adam, nothing else."""

    def __init__(self):
        cfg = SparseTransformerConfig(**SHAPE, seed=0, activation_sparsity=None)
        self.model = HookedSparseTransformer(cfg).train()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(0)
        self.tokens = torch.randint(0, SHAPE["d_vocab"], (BATCH, SHAPE["n_ctx"]), generator=g)

    def __call__(self, step: int) -> dict:
        loss = self.model(self.tokens, return_type="loss")
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return {}


def timed(fn, steps: int, start: int) -> tuple[float, dict]:
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    for i in range(steps):
        out = fn(start + i)
        for k, v in out.get("times", {}).items():
            phases[k] = phases.get(k, 0.0) + v
    total = (time.perf_counter() - t0) / steps
    return total, {k: v / steps for k, v in phases.items()}


def peak_memory(variant: str) -> float:
    """MB of peak-RSS growth over 5 steps of ``variant`` in a fresh process, measured from the RSS after
    building it (Linux: the peak counter VmHWM is reset through /proc/self/clear_refs)."""
    code = (
        "import sys, tempfile; sys.path.insert(0, %r); import bench_training as b;"
        "fn = b.variant_fn(%r, tempfile.mkdtemp()); fn(0);"
        "open('/proc/self/clear_refs', 'w').write('5'); base = b.rss_kb('VmRSS');"
        "[fn(i) for i in range(1, 6)];"
        "print((b.rss_kb('VmHWM') - base) / 1024)"
    ) % (str(Path(__file__).resolve().parent), variant)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        return float("nan")
    return float(out.stdout.strip().splitlines()[-1])


def rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def topk_abs_topk(x, k, use_triton=False):
    """AbsTopK with torch.topk for the threshold and autograd through torch.where (same output);
    ``use_triton`` is the library function's argument, ignored here (CPU)."""
    d = x.shape[-1]
    if k >= d:
        return x
    if k <= 0:
        return torch.zeros_like(x)
    magnitude = x.abs()
    threshold = magnitude.topk(k, dim=-1, sorted=False).values.amin(dim=-1, keepdim=True)
    return torch.where(magnitude >= threshold, x, torch.zeros((), dtype=x.dtype))


class WithTopkAbsTopK:
    """Run a step with the model's abs_topk swapped for ``topk_abs_topk`` (this benchmark only)."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, step):
        module = sys.modules["sparse_lens.model.abs_topk"]  # the package re-exports a function of that name
        original = module.abs_topk
        module.abs_topk = topk_abs_topk
        try:
            return self.fn(step)
        finally:
            module.abs_topk = original


COMPILED = ("dense, torch.compile", "sparse, torch.compile")


def variant_fn(name: str, out_dir: str):
    if name == "dense":
        return DenseStep()
    if name == COMPILED[0]:
        step = DenseStep()
        step.model = torch.compile(step.model)
        step.opt = torch.optim.Adam(step.model.parameters(), lr=1e-3)
        return step
    trainer = make_trainer(out_dir, weight_sparse=True, activation_sparse=(name != "weight-only"))
    if name == TOPK:
        return WithTopkAbsTopK(trainer._train_step)
    if name == COMPILED[1]:
        trainer.forward_model = torch.compile(trainer.forward_model)
    return trainer._train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--steps", type=int, default=5, help="steps per timing sample")
    parser.add_argument("--write", action="store_true", help="write the '## Training' section of benchmarks/RESULTS.md")
    parser.add_argument("--compile", action="store_true", help="also time the dense and sparse steps under torch.compile")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    tmp = tempfile.mkdtemp(prefix="bench_training-")
    from sparse_lens.model.abs_topk import abs_topk

    x = torch.randn(64, 512)
    assert torch.equal(abs_topk(x, 128), topk_abs_topk(x, 128))
    names = ("sparse", "dense", "weight-only", TOPK) + (COMPILED if args.compile else ())
    variants = {name: variant_fn(name, f"{tmp}/{name.replace(' ', '_')}") for name in names}
    for name, fn in variants.items():  # warm-up
        timed(fn, 3, 0)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    phases: dict[str, list[dict]] = {name: [] for name in variants}
    step = 3
    for _ in range(args.repeats):
        for name, fn in variants.items():
            t, ph = timed(fn, args.steps, step)
            samples[name].append(t)
            phases[name].append(ph)
        step += args.steps
    med = {name: statistics.median(v) for name, v in samples.items()}
    # per-sample ratios (interleaved, so each ratio compares neighbours in time)
    ratio = statistics.median(s / d for s, d in zip(samples["sparse"], samples["dense"]))
    ratio_w = statistics.median(w / d for w, d in zip(samples["weight-only"], samples["dense"]))
    ratio_f = statistics.median(w / d for w, d in zip(samples[TOPK], samples["dense"]))
    phase_med = {k: statistics.median(p[k] for p in phases["sparse"]) for k in phases["sparse"][0]}
    proj_share = statistics.median(p["projection"] / s for p, s in zip(phases["sparse"], samples["sparse"]))
    tokens = BATCH * SHAPE["n_ctx"]
    mem = {name: peak_memory(name) if name not in COMPILED else float("nan") for name in variants}

    lines = [
        f"| variant | ms / step | tokens/s | vs dense | peak RSS during a step (MB above steady state) |",
        f"|---|---|---|---|---|",
    ]
    ratios = {"sparse": ratio, "weight-only": ratio_w, "dense": 1.0, TOPK: ratio_f}
    for name in ("sparse", "weight-only", "dense", TOPK):
        r = ratios[name]
        lines.append(f"| {name} | {1000 * med[name]:.1f} | {tokens / med[name]:,.0f} | {r:.2f}x | {mem[name]:.0f} |")
    breakdown = ", ".join(f"{k.replace('_', ' ')} {1000 * v:.1f} ms" for k, v in phase_med.items())
    summary = {
        "sparse_over_dense": round(ratio, 3), "weight_only_over_dense": round(ratio_w, 3),
        "torch_topk_abstopk_over_dense": round(ratio_f, 3),
        "projection_share_of_sparse_step": round(proj_share, 4),
        "ms_per_step": {k: round(1000 * v, 2) for k, v in med.items()},
        "sparse_phases_ms": {k: round(1000 * v, 2) for k, v in phase_med.items()},
        "peak_memory_growth_mb": {k: round(v, 1) for k, v in mem.items()},
    }
    print("\n".join(lines))
    print(f"sparse step phases: {breakdown}")
    print(f"projection share of the sparse step: {100 * proj_share:.2f}%")
    print(f"ratio sparse/dense = {ratio:.3f} (target <= 1.3); weight-only/dense = {ratio_w:.3f}; "
          f"with torch.topk AbsTopK = {ratio_f:.3f}")
    if args.compile:
        for name in COMPILED:
            r = statistics.median(c / d for c, d in zip(samples[name], samples["dense"]))
            print(f"{name}: {1000 * med[name]:.1f} ms / step, {r:.3f}x the plain dense step")
            summary[name.replace(", ", "_").replace(".", "_") + "_over_dense"] = round(r, 3)
    print(json.dumps(summary))

    if args.write:
        env = (f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}, "
               f"{args.repeats} interleaved repeats x {args.steps} steps, medians; 1-min load average "
               f"{load_before:.1f} before / {os.getloadavg()[0]:.1f} after; {time.strftime('%Y-%m-%d')}")
        section = "\n".join([
            "## Training",
            "",
            f"Command: `{COMMAND}` ({env}).",
            "",
            f"Shape: n_layers 2, d_model 128, d_mlp 512, 8 heads x d_head 16, n_ctx 128, d_vocab 2048, batch 16 "
            f"({tokens} tokens/step), weight-sparsity L0 1/16 (projection at the target every step), AbsTopK 1/4 "
            "at all 8 node locations. *sparse* = the trainer's full step (AbsTopK, grad RMS normalization, "
            "Adam eps 0.1, top-k projection with min 4 per neuron, manual weight decay); *dense* = plain "
            "forward + backward + `torch.optim.Adam`, no activation sparsity; *weight-only* = the trainer's "
            "step without AbsTopK.",
            "",
            *lines,
            "",
            f"- sparse / dense = **{ratio:.2f}x** (target <= 1.3x).",
            f"- Projection share of the sparse step: **{100 * proj_share:.2f}%** "
            f"({1000 * phase_med['projection']:.2f} ms).",
            f"- Sparse step phases: {breakdown}.",
            f"- AbsTopK (the model's activation sparsity: a per-row threshold by `numpy.partition` on the "
            f"sign-cleared bit patterns of |x| (integer introselect, no index tensors, reused scratch buffers) "
            f"and multiplication by the boolean mask in a custom autograd function) accounts for "
            f"the sparse - weight-only gap: {1000 * (med['sparse'] - med['weight-only']):.1f} ms/step.",
            f"- *{TOPK}*: the same step with the straightforward AbsTopK (`torch.topk` values for the "
            f"threshold, autograd through `torch.where`; identical outputs): **{ratio_f:.2f}x** dense.",
            "",
        ])
        write_section(section)
        print(f"wrote the '## Training' section of {RESULTS}")


def write_section(section: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == "## Training"), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "".join(lines[:start]) + section + ("\n" + "".join(lines[end:]) if end < len(lines) else "")
    RESULTS.write_text(new)


if __name__ == "__main__":
    main()
