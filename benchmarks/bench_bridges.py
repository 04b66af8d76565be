"""Speed of one bridge training step vs one plain weight-sparse training step (issue 19, item 9).

Shape: the shipped pair — python-sparse-tiny (2 layers, d_model 128, d_mlp 512, 8 heads x 16,
d_vocab 2048, AbsTopK 1/2 at 8 node locations, L0 1/4) bridged to python-dense-tiny (same shape,
dense), batch 16 x 128 tokens, the packaged config python-bridged-tiny (every loss term, every site,
exact KL; freeze_bigram as shipped).

Variants, interleaved in one process (the machine is shared and noisy), median over repeats:
  bridge   BridgeTrainer._train_step: the dense forward (no grad), the sparse forward, encoders and
           decoders at 4 sites, NMSE both ways, the batched d->s and s->d hybrid passes, exact KL at
           every site, backward through all of it, then the authors' optimizer over sparse model +
           bridges, top-k projection and weight decay
  bridge, 1 KL site   the same with kl_sites_per_step=1 (the training-only estimate: the two KL terms
           at one random site per step, scaled by 4; evaluation and reported KL stay exact)
  plain    Trainer._train_step of the sparse model alone (python-sparse-tiny's pretraining config,
           batch 16, L0 at its target): forward, LM loss, backward, the same optimizer steps
Both train on the same random token rows (no corpus load). The bridge step is then broken into
phases by running the pieces of BridgedPair.losses one at a time (forward phases timed with
autograd on, backward timed as one call) and by the trainer's own update timings; the 1-KL-site
step likewise, its site cycling through the 4 sites over the repeats (use a multiple of 4).

Run:  .venv/bin/python benchmarks/bench_bridges.py [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from sparse_lens.bridges.config import BridgeTrainingConfig
from sparse_lens.bridges.losses import kl_per_site, nmse
from sparse_lens.bridges.trainer import BridgeTrainer, as_bridge_config
from sparse_lens.training import Trainer
from sparse_lens.training.cli import resolve_config_path
from sparse_lens.training.data import TokenData

ROOT = Path(__file__).resolve().parents[1]
BRIDGE_CONFIG = ROOT / "sparse_lens" / "bridges" / "configs" / "python-bridged-tiny.yaml"
BATCH, N_CTX, D_VOCAB = 16, 128, 2048


def token_data(seed: int = 0) -> TokenData:
    g = torch.Generator().manual_seed(seed)
    return TokenData(train=torch.randint(0, D_VOCAB, (256, N_CTX), generator=g),
                     validation=torch.randint(0, D_VOCAB, (32, N_CTX), generator=g),
                     description={"source": "random", "fingerprint": f"random-{seed}"})


def bridge_trainer(out: str, data: TokenData, kl_sites: int | None = None) -> BridgeTrainer:
    cfg: BridgeTrainingConfig = as_bridge_config(BRIDGE_CONFIG)
    cfg.bridges.kl_sites_per_step = kl_sites
    cfg.out_dir, cfg.progress_bar, cfg.tensorboard = out, False, False
    cfg.eval_every, cfg.checkpoint_every, cfg.bridges.eval_rows, cfg.train_steps = 0, 0, 0, 10**6
    cfg.batch_size = BATCH
    return BridgeTrainer(cfg, data=data)


def plain_trainer(out: str, data: TokenData) -> Trainer:
    import yaml

    raw = yaml.safe_load(resolve_config_path("python-sparse-tiny").read_text())
    raw.update(out_dir=out, progress_bar=False, tensorboard=False, eval_every=0, checkpoint_every=0,
               train_steps=10**6, batch_size=BATCH, micro_batch_size=None)
    raw.pop("train_tokens", None)
    raw["sparsity"] = {**raw.get("sparsity", {}), "anneal_start": 0.0, "anneal_end": 0.0}  # L0 at its target
    from sparse_lens.training import TrainingConfig

    return Trainer(TrainingConfig.from_dict(raw), data=data)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bridge_phases(trainer: BridgeTrainer, tokens: torch.Tensor, kl_sites: list[int] | None = None) -> dict[str, float]:
    """The pieces of BridgedPair.losses (weights all 1; KL at ``kl_sites``, default every site), timed
    one by one, and backward."""
    pair = trainer.pair
    kl_sites = list(range(pair.n_sites)) if kl_sites is None else kl_sites
    times: dict[str, float] = {}
    clock = time.perf_counter
    t = clock()
    with torch.no_grad():
        dense_logits, h_dense = pair.dense.forward_with_sites(tokens)
    times["dense forward (no grad)"] = clock() - t
    t = clock()
    sparse_logits, h_sparse = pair.sparse_side.forward_with_sites(tokens)
    lm = pair.sparse_side.loss(sparse_logits, tokens)
    times["sparse forward + LM loss"] = clock() - t
    t = clock()
    enc = {i: pair.bridges.encode(i, h) for i, h in enumerate(h_dense)}
    dec = {i: pair.bridges.decode(i, h) for i, h in enumerate(h_sparse)}
    nm = sum(nmse(enc[i], h) for i, h in enumerate(h_sparse)) + sum(nmse(dec[i], h) for i, h in enumerate(h_dense))
    times["encoders, decoders, NMSE"] = clock() - t
    t = clock()
    d2s = pair.sparse_side.run_from_sites({i: enc[i] for i in kl_sites}, tokens)
    times["d->s hybrid pass (KL sites, batched)"] = clock() - t
    t = clock()
    s2d = pair.dense.run_from_sites({i: dec[i] for i in kl_sites}, tokens)
    times["s->d hybrid pass (KL sites, batched)"] = clock() - t
    t = clock()
    kl = kl_per_site(dense_logits, d2s).sum() + kl_per_site(dense_logits, s2d).sum()
    times["exact KL (2 per KL site)"] = clock() - t
    total = lm + nm + kl
    t = clock()
    total.backward()
    times["backward"] = clock() - t
    trainer.optimizer.zero_grad(set_to_none=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = token_data()
    with tempfile.TemporaryDirectory() as tmp:
        bridge = bridge_trainer(os.path.join(tmp, "bridge"), data)
        one_site = bridge_trainer(os.path.join(tmp, "one_site"), data, kl_sites=1)
        plain = plain_trainer(os.path.join(tmp, "plain"), data)
        variants = (("bridge", bridge), ("bridge, 1 KL site", one_site), ("plain", plain))
        for _, trainer in variants:  # warm-up
            trainer._train_step(0)
        samples: dict[str, list[float]] = {name: [] for name, _ in variants}
        updates: list[dict[str, float]] = []
        phases: list[dict[str, float]] = []
        one_phases: list[dict[str, float]] = []  # 1 KL site, cycling through the sites over the repeats
        tokens = data.train[:BATCH]
        for r in range(args.repeats):
            for name, trainer in variants:
                out: dict = {}
                samples[name].append(timed(lambda: out.update(trainer._train_step(r + 1))))
                if name == "bridge":
                    updates.append(out["times"])
            phases.append(bridge_phases(bridge, tokens))
            one_phases.append(bridge_phases(one_site, tokens, kl_sites=[r % bridge.pair.n_sites]))
        for _, trainer in variants:
            trainer.close()
    med = {k: statistics.median(v) for k, v in samples.items()}
    print(f"threads={args.threads} batch={BATCH}x{N_CTX} repeats={args.repeats} (medians; 1-min load average {os.getloadavg()[0]:.1f})")
    for name in samples:
        print(f"  {name:<18} {1000 * med[name]:8.1f} ms / step   best {1000 * min(samples[name]):8.1f} ms")
    for name in ("bridge", "bridge, 1 KL site"):
        print(f"ratio {name} / plain = {med[name] / med['plain']:.2f} median, "
              f"{min(samples[name]) / min(samples['plain']):.2f} best-of   (target <= 3)")
    for title, runs in (("bridge step (KL at all 4 sites)", phases),
                        ("bridge, 1 KL site (site = repeat mod 4)", one_phases)):
        print(f"{title}, by phase (medians; forward pieces timed separately, so the sum differs from the step):")
        keys = list(runs[0])
        total_fb = sum(statistics.median(p[k] for p in runs) for k in keys)
        for k in keys:
            v = statistics.median(p[k] for p in runs)
            print(f"  {k:<38} {1000 * v:8.1f} ms  {100 * v / total_fb:5.1f} %")
    for k in ("grad_norm", "adam", "projection", "weight_decay"):
        print(f"  update: {k:<30} {1000 * statistics.median(u[k] for u in updates):8.1f} ms")


if __name__ == "__main__":
    main()
