"""Evaluating a bridged pair: per site, how well each bridge translates and what each hybrid costs.

Per site i (over held-out token rows):

* ``nmse_enc`` = NMSE(f_i(h_d), h_s) and ``nmse_dec`` = NMSE(g_i(h_s), h_d) (mean over batches);
* ``kl_d2s`` / ``kl_s2d`` = KL(y_d ‖ hybrid) for the dense→sparse and sparse→dense one-transition
  hybrids (exact, mean over tokens);
* ``loss_d2s`` / ``loss_s2d`` = the hybrids' next-token loss.

Baselines: the dense model alone (its loss; KL 0 by definition) and the sparse model alone (its loss
and KL(y_d ‖ y_s)) — the all-dense and all-sparse paths. A bridge "buys" the gap between the sparse
model alone and a hybrid: a d→s hybrid at site i whose KL is far below KL(y_d ‖ y_s) means the sparse
model's layers from i on reproduce the dense model's computation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import torch
from torch import Tensor

from sparse_lens.bridges.losses import kl_from_logits
from sparse_lens.bridges.pair import BridgedPair

PER_SITE = ("nmse_enc", "nmse_dec", "kl_d2s", "kl_s2d", "loss_d2s", "loss_s2d")
COLUMNS = {
    "nmse_enc": "NMSE f(h_d)→h_s",
    "nmse_dec": "NMSE g(h_s)→h_d",
    "kl_d2s": "KL d→s",
    "kl_s2d": "KL s→d",
    "loss_d2s": "loss d→s",
    "loss_s2d": "loss s→d",
}


@dataclass
class BridgeEvaluation:
    sites: list[str]
    per_site: dict[str, list[float]]  # metric -> one value per site
    dense_loss: float  # the dense model alone (the all-dense path)
    sparse_loss: float  # the sparse model alone (the all-sparse path)
    sparse_kl: float  # KL(y_d ‖ y_s): the sparse model alone against the dense one
    n_rows: int
    n_tokens: int
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BridgeEvaluation":
        return cls(**data)

    def format_table(self) -> str:
        """A plain-text table: one row per site, then the two baselines."""
        header = f"{'site':<26}" + "".join(f"{COLUMNS[m]:>17}" for m in PER_SITE)
        lines = [header, "-" * len(header)]
        for i, site in enumerate(self.sites):
            lines.append(f"{site:<26}" + "".join(f"{self.per_site[m][i]:>17.4f}" for m in PER_SITE))
        lines.append("-" * len(header))
        lines.append(f"{'dense alone':<26}" + f"{'':>17}{'':>17}{0.0:>17.4f}{0.0:>17.4f}{self.dense_loss:>17.4f}{self.dense_loss:>17.4f}")
        lines.append(f"{'sparse alone':<26}" + f"{'':>17}{'':>17}{self.sparse_kl:>17.4f}{self.sparse_kl:>17.4f}{self.sparse_loss:>17.4f}{self.sparse_loss:>17.4f}")
        lines.append(f"({self.n_rows} rows, {self.n_tokens} tokens; KL in nats per token, exact; NMSE = MSE / target variance)")
        return "\n".join(lines)

    def plot(self, path: str | Path, title: Optional[str] = None) -> Path:
        """Three panels over the sites: NMSE both ways, KL both ways (with the sparse-alone KL), and
        the hybrids' loss (with the dense-alone and sparse-alone losses). Written atomically (PNG)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from sparse_lens.io import atomic_write

        x = list(range(len(self.sites)))
        labels = [s.replace("blocks.", "L").replace(".hook_resid_", " ") for s in self.sites]
        fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), constrained_layout=True)
        hybrids = ("dense → sparse hybrid", "sparse → dense hybrid")
        panels = [  # (metrics, their labels, title, y label, (y, style, label) reference lines, from 0)
            (("nmse_enc", "nmse_dec"), ("f: dense → sparse", "g: sparse → dense"), "reconstruction (NMSE)",
             "MSE / target variance", [], True),
            (("kl_d2s", "kl_s2d"), hybrids, "KL(dense ‖ hybrid)", "nats / token",
             [(self.sparse_kl, ("gray", "--"), "sparse model alone")], True),
            (("loss_d2s", "loss_s2d"), hybrids, "next-token loss", "nats / token",
             [(self.dense_loss, ("black", ":"), "dense model alone"), (self.sparse_loss, ("gray", "--"), "sparse model alone")], False),
        ]
        for ax, (metrics, names, panel_title, ylabel, lines, from_zero) in zip(axes, panels):
            for metric, name, marker in zip(metrics, names, ("o-", "s-")):
                ax.plot(x, self.per_site[metric], marker, label=name)
            for y, (color, style), name in lines:
                ax.axhline(y, color=color, ls=style, label=name)
            ax.set_title(panel_title)
            ax.set_ylabel(ylabel)
            if from_zero:
                ax.set_ylim(bottom=0)
            ax.set_xticks(x, labels, rotation=30, ha="right")
            ax.set_xlabel("transition site")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        if title:
            fig.suptitle(title)
        path = Path(path)
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110), argument="plot")
        plt.close(fig)
        return path


@torch.no_grad()
def evaluate_bridges(pair: BridgedPair, batches: Iterable[Tensor] | Tensor, batch_size: int = 8) -> BridgeEvaluation:
    """Every metric of the module docstring over ``batches`` (an iterable of [batch, pos] token
    tensors, or one [rows, pos] tensor cut into ``batch_size`` rows)."""
    if isinstance(batches, Tensor):
        if batches.ndim != 2 or batches.shape[0] == 0:
            raise ValueError(f"batches: expected token rows [rows, pos], got shape {tuple(batches.shape)}")
        batches = batches.split(batch_size)
    was_training = pair.sparse.training
    pair.sparse.eval()
    n = pair.n_sites
    sums = {m: torch.zeros(n, dtype=torch.float64) for m in PER_SITE}
    base = {"dense_loss": 0.0, "sparse_loss": 0.0, "sparse_kl": 0.0}
    rows = tokens_total = batches_seen = 0
    try:
        for tokens in batches:
            tokens = tokens.to(pair.sparse.W_E.device)
            out = pair.losses(tokens, compute_all=True, keep_logits=True)
            weight = tokens.shape[0] * tokens.shape[1]  # KL / loss: token-weighted means
            sums["nmse_enc"] += out.nmse_enc.double().cpu()
            sums["nmse_dec"] += out.nmse_dec.double().cpu()
            sums["kl_d2s"] += out.kl_d2s.double().cpu() * weight
            sums["kl_s2d"] += out.kl_s2d.double().cpu() * weight
            for name in ("d2s", "s2d"):
                sums[f"loss_{name}"] += torch.tensor([float(pair.sparse_side.loss(y, tokens)) for y in out.extra[name]],
                                                     dtype=torch.float64) * weight
            dense, sparse = out.extra["dense"], out.extra["sparse"]
            base["dense_loss"] += float(pair.sparse_side.loss(dense, tokens)) * weight
            base["sparse_loss"] += float(out.lm) * weight
            base["sparse_kl"] += float(kl_from_logits(dense, sparse)) * weight
            rows += tokens.shape[0]
            tokens_total += weight
            batches_seen += 1
    finally:
        pair.sparse.train(was_training)
    if not batches_seen:
        raise ValueError("batches: no token rows to evaluate")
    per_site = {}
    for m in PER_SITE:
        divisor = batches_seen if m.startswith("nmse") else tokens_total
        per_site[m] = [float(v) / divisor for v in sums[m]]
    result = BridgeEvaluation(
        sites=pair.sites, per_site=per_site, dense_loss=base["dense_loss"] / tokens_total,
        sparse_loss=base["sparse_loss"] / tokens_total, sparse_kl=base["sparse_kl"] / tokens_total,
        n_rows=rows, n_tokens=tokens_total,
    )
    bad = [m for m, values in per_site.items() if not all(math.isfinite(v) for v in values)]
    if bad:
        raise FloatingPointError(f"bridge evaluation: non-finite {bad}; the bridges or models hold non-finite values")
    return result
