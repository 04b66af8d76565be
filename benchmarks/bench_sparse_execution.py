"""Sparse execution of frozen weights vs dense (issue 25, items 1 and 6).

Two parts, each interleaving the variants in one process (these machines are shared and noisy) and
printing the median ratio dense time / variant time (> 1: the variant is faster):

  kernels   one weight product x [tokens, d] @ W [d, 4d] at d in --dims and L0 in --densities:
            dense ``x @ W`` vs the gather-sum (``sparse_matmul``, what "sparse" runs) vs torch CSR
            (``Wᵀ_csr @ xᵀ``, MKL) vs torch COO (``torch.sparse.mm``), each giving row-major
            [tokens, 4d] as the model needs (so each includes one 2-D transpose); the useful (nonzero) FLOP/s
            of the gather-sum next to the dense FLOP/s. This is what the "auto" rule rests on.
  checkpoint  a model of the authors' released shape (8 layers, d_model 2048, d_mlp 8192, 128 heads
            x 16, vocabulary 2048; weights at L0 1/1000, the bigram table dense): the size of its
            save_pretrained file vs the dense weights, and from_pretrained's time vs the former load
            (random init, then the weights copied over it), interleaved.
  masktrain a mask-training-like step on the authors' shape (as `checkpoint`, n_ctx 256): a learned
            sigmoid gate on every node of the 8 node hooks of every layer, forward with
            ``logit_positions`` (the last token), backward to the gates through the frozen model, an
            Adam step; --mt-batch sequences of --mt-pos tokens; steps/s "dense" vs "auto", interleaved.
  prune     one task's pruning (`PruneJob`: node means, mask training, bisection, calibration,
            held-out validation) on the authors' shape (as `checkpoint`, with the shipped 2,048-token
            tokenizer) for single_double_quote, whatever loss it reaches (random weights), with
            ``execution`` "dense" and then "auto" (not interleaved: minutes each): wall time of each
            and the ratio. Sized by --prune-steps / --prune-pairs / --prune-means-tokens (at the
            library's defaults, 400 steps of 128 sequences, it is hours here).
  forward   the whole frozen forward (attention, AbsTopK, unembedding included) of a model with
            d_model in --dims, d_mlp 4·d_model, d_head 16, d_vocab 2048, --layers layers, random
            weights at each L0 (every weight matrix but the bigram table), under torch.no_grad:
            execution "dense" vs "sparse" vs "auto"; and the bytes of the weights' sparse forms vs
            the dense matrices.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_sparse_execution.py [--part kernels|forward|checkpoint|masktrain|prune|all]
      [--dims 1024 2048] [--densities 16 64 256 1000] [--tokens 1024] [--repeats 5] [--no-abstopk]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from sparse_lens.model import HookedSparseTransformer, SparseTransformerConfig
from sparse_lens.model.execution import ExecutionPlan, plan_summary
from sparse_lens.model.sparse_linear import SparseMatrix, sparse_matmul


def interleaved(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds per variant, the variants run round-robin after one warm-up each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def sparse_weight(shape: tuple[int, ...], density: float, generator: torch.Generator) -> torch.Tensor:
    w = torch.randn(shape, generator=generator) * 0.02
    return w * (torch.rand(shape, generator=generator) < density)


def bench_kernels(dims: list[int], densities: list[int], tokens: int, repeats: int) -> None:
    g = torch.Generator().manual_seed(0)
    print(f"kernels: x [{tokens}, d] @ W [d, 4d]; ratio = dense time / variant time (median of {repeats})")
    print(f"{'d':>5} {'L0':>7} {'dense ms':>9} {'gather':>7} {'csr':>6} {'coo':>6} {'dense GF/s':>10} {'useful GF/s':>11}")
    for d in dims:
        x = torch.randn(tokens, d, generator=g)
        for inv in densities:
            W = sparse_weight((d, 4 * d), 1 / inv, g)
            form = SparseMatrix.from_dense(W)
            csr_t = W.T.contiguous().to_sparse_csr()
            coo_t = W.T.contiguous().to_sparse().coalesce()
            t = interleaved({
                "dense": lambda: x @ W,
                "gather": lambda: sparse_matmul(x, form),
                "csr": lambda: (csr_t @ x.T).T.contiguous(),  # rows, as the model needs them
                "coo": lambda: torch.sparse.mm(coo_t, x.T.contiguous()).T.contiguous(),
            }, repeats)
            dense_flops = 2 * tokens * d * 4 * d / t["dense"] / 1e9
            useful = 2 * tokens * form.w.nnz / t["gather"] / 1e9
            print(f"{d:>5} {'1/' + str(inv):>7} {t['dense'] * 1e3:>9.2f} {t['dense'] / t['gather']:>7.2f} "
                  f"{t['dense'] / t['csr']:>6.2f} {t['dense'] / t['coo']:>6.2f} {dense_flops:>10.1f} {useful:>11.2f}",
                  flush=True)


def sparse_model(d: int, density: float, layers: int, seed: int = 0, abstopk: bool = True) -> HookedSparseTransformer:
    cfg = SparseTransformerConfig(n_layers=layers, d_model=d, d_mlp=4 * d, n_ctx=256, d_vocab=2048, seed=seed,
                                  activation_sparsity=0.25 if abstopk else None)
    model = HookedSparseTransformer(cfg).requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.rsplit(".", 1)[-1] in ("W_E", "W_Q", "W_K", "W_V", "W_O", "W_in", "W_out", "W_U"):
                p.mul_(torch.rand(p.shape, generator=g) < density)
    return model.eval()


def form_bytes(model: HookedSparseTransformer) -> tuple[int, int]:
    """(bytes of the dense weight matrices, bytes of their sparse forms)."""
    dense = sparse = 0
    plan = ExecutionPlan("sparse")
    for module in model.modules():
        if hasattr(module, "uses_frozen_matmul"):
            for weight, matrix in module.frozen_matrices().values():
                dense += weight.numel() * weight.element_size()
                form = plan.sparse_form(weight, matrix)
                for csr in (form.t, form.w):
                    sparse += sum(t.numel() * t.element_size() for t in (csr.crow, csr.cols, csr.values))
    return dense, sparse


def bench_forward(dims: list[int], densities: list[int], tokens: int, layers: int, repeats: int,
                  abstopk: bool = True) -> None:
    pos = 256
    batch = max(1, tokens // pos)
    print(f"\nforward: {layers} layers, d_mlp 4d, d_vocab 2048, batch {batch} x {pos} tokens, no_grad, "
          f"AbsTopK {'1/4 at every node location' if abstopk else 'off'}; "
          f"ratio = dense time / mode time (median of {repeats})")
    print(f"{'d':>5} {'L0':>7} {'dense s':>8} {'sparse':>7} {'auto':>6} {'auto picks':>11} {'dense MB':>9} {'sparse MB':>10}")
    for d in dims:
        for inv in densities:
            model = sparse_model(d, 1 / inv, layers, abstopk=abstopk)
            tokens_ = torch.randint(0, 2048, (batch, pos), generator=torch.Generator().manual_seed(1))

            def run(mode: str):
                model.set_execution(mode)
                with torch.no_grad():
                    return model(tokens_)

            ref = run("dense")
            err = (run("sparse") - ref).abs().max().item()  # also builds the sparse forms, once
            t = interleaved({mode: (lambda mode=mode: run(mode)) for mode in ("dense", "sparse", "auto")}, repeats)
            model.set_execution("auto")
            picks = list(plan_summary(model).values())
            dense_b, sparse_b = form_bytes(model)
            print(f"{d:>5} {'1/' + str(inv):>7} {t['dense']:>8.3f} {t['dense'] / t['sparse']:>7.2f} "
                  f"{t['dense'] / t['auto']:>6.2f} {picks.count('sparse'):>4}/{len(picks):<6} "
                  f"{dense_b / 2**20:>9.1f} {sparse_b / 2**20:>10.2f}   (max |sparse - dense| logit {err:.1e})",
                  flush=True)


NODE_HOOKS = ("ln1.hook_normalized", "attn.hook_q", "attn.hook_k", "attn.hook_v", "hook_attn_out",
              "ln2.hook_normalized", "mlp.hook_post", "hook_mlp_out")


def authors_shape_model(density: float) -> HookedSparseTransformer:
    """8 layers, d_model 2048, d_mlp 8192, 128 heads x 16, vocabulary 2048, n_ctx 256; every weight
    matrix at `density`, the bigram table dense."""
    cfg = SparseTransformerConfig(n_layers=8, d_model=2048, d_mlp=8192, n_heads=128, d_head=16, n_ctx=256,
                                  d_vocab=2048, seed=0)
    model = HookedSparseTransformer(cfg)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.rsplit(".", 1)[-1] in ("W_E", "W_Q", "W_K", "W_V", "W_O", "W_in", "W_out", "W_U"):
                p.mul_(torch.rand(p.shape, generator=g) < density)
            elif name.endswith("W_bigram"):
                p.normal_(generator=g)
    return model


def bench_masktrain(batch: int, pos: int, repeats: int) -> None:
    model = authors_shape_model(1 / 1000).requires_grad_(False)
    cfg = model.cfg
    widths = {"attn.hook_q": cfg.n_heads, "attn.hook_k": cfg.n_heads, "attn.hook_v": cfg.n_heads,
              "mlp.hook_post": cfg.d_mlp}
    gates = {f"blocks.{l}.{h}": torch.zeros(widths.get(h, cfg.d_model), requires_grad=True)
             for l in range(cfg.n_layers) for h in NODE_HOOKS}
    optimizer = torch.optim.Adam(gates.values(), lr=1e-2)

    def gate_hook(x, hook):
        gate = torch.sigmoid(gates[hook.name])
        return x * (gate[:, None] if x.ndim == 4 else gate)  # q/k/v: one gate per head channel group

    g = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, cfg.d_vocab, (batch, pos), generator=g)
    last = torch.full((batch,), pos - 1)
    hooks = [(name, gate_hook) for name in gates]

    def step(mode: str) -> None:
        model.set_execution(mode)
        optimizer.zero_grad(set_to_none=True)
        logits = model.run_with_hooks(tokens, fwd_hooks=hooks, logit_positions=last)
        logits.logsumexp(-1).mean().backward()
        optimizer.step()

    t = interleaved({"dense": lambda: step("dense"), "auto": lambda: step("auto")}, repeats)
    print(f"\nmask-training step, authors' shape at L0 1/1000, {batch} x {pos} tokens: dense {1 / t['dense']:.3f} "
          f"steps/s, auto {1 / t['auto']:.3f} steps/s ({t['dense'] / t['auto']:.2f}x; median of {repeats})", flush=True)


def bench_prune(steps: int, pairs: int, means_tokens: int) -> None:
    from tokenizers import Tokenizer

    from sparse_lens.data import PRETRAINED_TOKENIZER
    from sparse_lens.pruning.config import PruningConfig
    from sparse_lens.pruning.runner import PruneJob

    model = authors_shape_model(1 / 1000)
    model.set_tokenizer(Tokenizer.from_file(str(PRETRAINED_TOKENIZER)))
    # random weights miss the target by far: never skip mask training (skip_above_target_factor 0)
    cfg = PruningConfig(steps=steps, batch_pairs=pairs, discretization="bisected", skip_above_target_factor=0)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(Path(tmp) / "authors-shape")
        del model
        seconds = {}
        for mode in ("dense", "auto"):
            job = PruneJob(model=str(Path(tmp) / "authors-shape"), task="single_double_quote", n_train=pairs, n_fit=pairs,
                           n_test=pairs, means_tokens=means_tokens, execution=mode)
            t0 = time.perf_counter()
            circuit = job(cfg)
            seconds[mode] = time.perf_counter() - t0
            print(f"prune, authors' shape at L0 1/1000, execution {mode}: {seconds[mode]:.0f} s ({steps} mask-training "
                  f"steps of {2 * pairs} sequences, {pairs} fit / {pairs} test pairs, means over {means_tokens} tokens); "
                  f"{circuit!r}", flush=True)
    print(f"prune: auto {seconds['dense'] / seconds['auto']:.2f}x faster than dense", flush=True)


def bench_checkpoint(repeats: int) -> None:
    from safetensors.torch import load_file

    from sparse_lens.model.checkpoint import WEIGHTS_FILE, expand_state_dict, load_state_dict_strict

    model = authors_shape_model(1 / 1000)
    n_params = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        model.save_pretrained(tmp)
        save_s = time.perf_counter() - t0
        size = (Path(tmp) / WEIGHTS_FILE).stat().st_size
        del model

        def former() -> None:  # what from_pretrained did before: random init, then the copy over it
            m = HookedSparseTransformer(SparseTransformerConfig.from_json(Path(tmp) / "config.json"))
            load_state_dict_strict(m, expand_state_dict(load_file(str(Path(tmp) / WEIGHTS_FILE))), source=tmp)

        t = interleaved({"from_pretrained": lambda: HookedSparseTransformer.from_pretrained(tmp), "former": former},
                        repeats)
    print(f"\ncheckpoint: authors' shape, {n_params / 1e6:.0f}M parameters at L0 1/1000 (bigram table dense): "
          f"file {size / 2**20:.1f} MiB vs {n_params * 4 / 2**20:.0f} MiB dense fp32; save {save_s:.1f} s; "
          f"from_pretrained {t['from_pretrained']:.1f} s vs former load {t['former']:.1f} s "
          f"({t['former'] / t['from_pretrained']:.2f}x; median of {repeats})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["kernels", "forward", "checkpoint", "masktrain", "prune", "all"], default="all",
                        help="all: every part but prune (which takes many minutes)")
    parser.add_argument("--prune-steps", type=int, default=10)
    parser.add_argument("--prune-pairs", type=int, default=16, help="pairs per mask-training step, and fit and test pairs")
    parser.add_argument("--prune-means-tokens", type=int, default=4096)
    parser.add_argument("--mt-batch", type=int, default=4)
    parser.add_argument("--mt-pos", type=int, default=64)
    parser.add_argument("--dims", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--densities", type=int, nargs="+", default=[16, 64, 256, 1000], help="1/L0 values")
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-abstopk", action="store_true", help="forward part: models without AbsTopK")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread")
    if args.part in ("kernels", "all"):
        bench_kernels(args.dims, args.densities, args.tokens, args.repeats)
    if args.part in ("forward", "all"):
        bench_forward(args.dims, args.densities, args.tokens, args.layers, args.repeats, abstopk=not args.no_abstopk)
    if args.part in ("masktrain", "all"):
        bench_masktrain(args.mt_batch, args.mt_pos, max(1, min(args.repeats, 3)))
    if args.part in ("checkpoint", "all"):
        bench_checkpoint(max(1, min(args.repeats, 3)))
    if args.part == "prune":
        bench_prune(args.prune_steps, args.prune_pairs, args.prune_means_tokens)


if __name__ == "__main__":
    main()
