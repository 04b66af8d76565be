"""The bridge losses (paper App. A.3) and their metrics.

For every site i, with h_d / h_s the dense / sparse residuals there, f_i / g_i the encoder / decoder
and y_d the dense model's logits:

    L_lm      = CE(y_s, next tokens)                                  the sparse model's own LM loss
    L_nmse    = Σ_i NMSE(f_i(h_d,i), h_s,i) + NMSE(g_i(h_s,i), h_d,i)
    L_kl,d→s  = Σ_i KL(y_d ‖ y_i^{d→s}),   y_i^{d→s} = sparse model from site i on f_i(h_d,i)
    L_kl,s→d  = Σ_i KL(y_d ‖ y_i^{s→d}),   y_i^{s→d} = dense model from site i on g_i(h_s,i)

    total     = w_lm L_lm + w_nmse L_nmse + w_d→s L_kl,d→s + w_s→d L_kl,s→d

**NMSE** (the paper does not define it): the mean squared error over every batch·position·dimension
entry, divided by the target's variance — the mean squared deviation of the target from its mean
over batch·position, taken per dimension and averaged over dimensions::

    NMSE(pred, target) = mean((pred − target)²) / mean((target − mean_rows(target))²)

i.e. the fraction of the target's variance left unexplained: 0 for a perfect map, 1 for predicting
the target's mean. It is unchanged when pred and target are both scaled by c ≠ 0 or both shifted by
one vector, so residual streams of different scales (a dense and a sparse model) weigh alike.

**KL** is exact: KL(y_d ‖ y) = Σ_v p_d(v) (log p_d(v) − log p(v)) over the whole vocabulary, in
float32, averaged over batch·position (every position predicts a next token).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from jaxtyping import Float
from torch import Tensor

NMSE_EPS = 1e-12  # floor of the variance (a constant target)


def nmse(pred: Float[Tensor, "... d"], target: Float[Tensor, "... d"]) -> Tensor:
    """Normalized MSE: MSE over all entries / the target's per-dimension variance (mean over dims)."""
    if pred.shape != target.shape:
        raise ValueError(f"nmse: pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    pred, target = pred.float(), target.float()
    flat = target.reshape(-1, target.shape[-1])
    variance = (flat - flat.mean(0, keepdim=True)).pow(2).mean()
    return (pred - target).pow(2).mean() / variance.clamp_min(NMSE_EPS)


def kl_from_logits(
    reference: Float[Tensor, "... pos vocab"], other: Float[Tensor, "... pos vocab"], reduce: bool = True
) -> Tensor:
    """Exact KL(softmax(reference) ‖ softmax(other)) per position, in float32; mean over every
    leading dimension unless ``reduce=False``."""
    if reference.shape[-1] != other.shape[-1]:
        raise ValueError(f"kl: vocabularies differ ({reference.shape[-1]} vs {other.shape[-1]})")
    log_p = reference.float().log_softmax(-1)
    log_q = other.float().log_softmax(-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)
    return kl.mean() if reduce else kl


def kl_per_site(
    reference: Float[Tensor, "batch pos vocab"], hybrids: Float[Tensor, "n_sites batch pos vocab"]
) -> Float[Tensor, " n_sites"]:
    """``kl_from_logits(reference, hybrids[i])`` for every i (the same exact formula, mean over
    batch·position), with the reference's log-probabilities and probabilities computed once."""
    if reference.shape != hybrids.shape[1:]:
        raise ValueError(f"kl: reference {tuple(reference.shape)} and hybrids {tuple(hybrids.shape)} do not match")
    log_p = reference.float().log_softmax(-1)
    p = log_p.exp()
    return torch.stack([(p * (log_p - y.float().log_softmax(-1))).sum(-1).mean() for y in hybrids])


@dataclass
class LossWeights:
    """Weights of the four bridge loss terms (paper App. A.3 gives the terms, not their weights).

    Default 1.0 each: the paper writes the objective as the plain sum of the pretraining loss and the
    bridge terms, and each term is already on a natural scale (nats for the LM loss and the KLs, a
    fraction of variance for NMSE), so the unweighted sum is the literal reading. A weight of 0
    skips that term's computation in training (evaluation always computes every term).
    """

    lm: float = 1.0
    nmse: float = 1.0
    kl_d2s: float = 1.0
    kl_s2d: float = 1.0

    def validate(self, prefix: str = "") -> None:
        for name in ("lm", "nmse", "kl_d2s", "kl_s2d"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{prefix}{name}: expected a finite weight >= 0, got {value!r}")
        if not any(getattr(self, n) for n in ("lm", "nmse", "kl_d2s", "kl_s2d")):
            raise ValueError(f"{prefix}: every loss weight is 0; nothing would be trained")


@dataclass
class BridgeLosses:
    """Every term of one batch. Per-site tensors are [n_sites] (None when the term was skipped)."""

    sites: list[str]
    total: Tensor
    lm: Optional[Tensor] = None
    nmse_enc: Optional[Tensor] = None  # NMSE(f_i(h_d), h_s)
    nmse_dec: Optional[Tensor] = None  # NMSE(g_i(h_s), h_d)
    kl_d2s: Optional[Tensor] = None  # KL(y_d ‖ y^{d→s}_i)
    kl_s2d: Optional[Tensor] = None  # KL(y_d ‖ y^{s→d}_i)
    kl_sites: Optional[list[int]] = None  # the sites of kl_d2s / kl_s2d when only some were computed
    extra: dict[str, Any] = field(default_factory=dict)

    PER_SITE = ("nmse_enc", "nmse_dec", "kl_d2s", "kl_s2d")

    def term_sites(self, name: str) -> list[str]:
        """The sites a per-site term's entries belong to."""
        if name.startswith("kl") and self.kl_sites is not None:
            return [self.sites[i] for i in self.kl_sites]
        return list(self.sites)

    def terms(self) -> dict[str, Tensor]:
        """{"lm": scalar, "nmse_enc": [n_sites], ...} for the terms that were computed."""
        out = {"lm": self.lm} if self.lm is not None else {}
        for name in self.PER_SITE:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def record(self) -> dict[str, Any]:
        """Floats for a metrics record: ``lm_loss``, ``bridge_loss`` (the weighted total) and per
        term a {site: value} dict plus its sum over sites (``<term>_sum``; for KL terms computed at a
        sample of sites, the scaled estimate the loss used)."""
        out: dict[str, Any] = {"bridge_loss": float(self.total.detach())}
        if self.lm is not None:
            out["lm_loss"] = float(self.lm.detach())
        for name in self.PER_SITE:
            value = getattr(self, name)
            if value is not None:
                values = value.detach().double().tolist()
                names = self.term_sites(name)
                out[name] = dict(zip(names, values))
                out[f"{name}_sum"] = float(sum(values)) * len(self.sites) / len(names)
        return out

    def first_nonfinite(self) -> Optional[str]:
        """'kl_s2d at blocks.1.hook_resid_mid (nan)' for the first non-finite term, else None."""
        if self.lm is not None and not torch.isfinite(self.lm):
            return f"lm (the sparse model's next-token loss) ({float(self.lm.detach())})"
        for name in self.PER_SITE:
            value = getattr(self, name)
            if value is None:
                continue
            bad = (~torch.isfinite(value.detach())).nonzero().flatten().tolist()
            if bad:
                return f"{name} at {self.term_sites(name)[bad[0]]} ({float(value[bad[0]].detach())})"
        if not torch.isfinite(self.total):
            return f"the weighted total ({float(self.total.detach())})"
        return None

    def check_finite(self) -> None:
        bad = self.first_nonfinite()
        if bad is not None:
            raise FloatingPointError(f"bridge loss is not finite: {bad}")
