"""Learned node masks, applied as hooks: ``x ↦ m·x + (1 − m)·mean`` at every node site.

One mask parameter τ per node, shared across prompts and positions (App. A.5). Optionally q and k
channels share one τ (the paper's footnote 17: "queries and keys should have used tied masks").
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn

from sparse_lens.pruning.heaviside import heaviside
from sparse_lens.pruning.nodes import NodeSite, node_sites

Hook = tuple[str, Callable]


def ablation_hook(mask: Tensor, mean: Tensor) -> Callable:
    """A forward hook that keeps the nodes where ``mask`` is 1 and mean-ablates the rest."""

    def hook(x: Tensor, hook=None) -> Tensor:
        m, mu = mask.to(x), mean.to(x)  # the activation's dtype and device (no-ops when they match)
        return x * m + (1 - m) * mu

    return hook


class NodeMasks(nn.Module):
    """τ parameters for every node; ``hooks()`` gives the TransformerLens hooks that apply them."""

    def __init__(self, cfg, means: dict[str, Tensor], tie_qk: bool = False, heaviside_temp: float = 1.0):
        super().__init__()
        self.sites: list[NodeSite] = node_sites(cfg)
        missing = [s.name for s in self.sites if s.name not in means]
        if missing:
            raise ValueError(f"means: missing node means for {missing}")
        self.tie_qk = tie_qk
        self.heaviside_temp = heaviside_temp
        self.tau = nn.ParameterDict()
        for s in self.sites:
            if not self._shares(s):
                self.tau[self._key(s.name)] = nn.Parameter(torch.zeros(s.shape, dtype=torch.float32))
        for s in self.sites:
            if tuple(means[s.name].shape) != s.shape:
                raise ValueError(f"means[{s.name!r}]: expected shape {s.shape}, got {tuple(means[s.name].shape)}")
        self.means = {s.name: means[s.name].detach() for s in self.sites}

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "/")

    def _shares(self, site: NodeSite) -> bool:
        return self.tie_qk and site.kind == "k"

    def tau_of(self, name: str) -> Tensor:
        if self.tie_qk and name.endswith("attn.hook_k"):
            name = name[: -len("hook_k")] + "hook_q"
        return self.tau[self._key(name)]

    @torch.no_grad()
    def init_(self, bias: float, scale: float, generator: Optional[torch.Generator] = None) -> None:
        """τ ~ N(bias, scale²), clamped to [-1, 1] (App. A.5)."""
        for p in self.tau.values():
            p.copy_(bias + scale * torch.randn(p.shape, generator=generator))
        self.clamp_()

    @torch.no_grad()
    def clamp_(self) -> None:
        for p in self.tau.values():
            p.clamp_(-1.0, 1.0)

    def mask(self, name: str) -> Tensor:
        """The binary mask at a site (with surrogate gradient)."""
        return heaviside(self.tau_of(name), self.heaviside_temp)

    def hooks(self) -> list[Hook]:
        """Hooks that apply the current masks (computed at call time, so they track τ)."""
        out = []
        for s in self.sites:
            mean = self.means[s.name]

            def hook(x: Tensor, hook=None, name=s.name, mean=mean) -> Tensor:
                m = self.mask(name).to(x)
                return x * m + (1 - m) * mean.to(x)

            out.append((s.name, hook))
        return out

    def expected_count(self) -> Tensor:
        """Number of kept nodes, differentiable through the surrogate (q and k count separately)."""
        return sum(self.mask(s.name).sum() for s in self.sites)

    @torch.no_grad()
    def scores(self) -> dict[str, Tensor]:
        """τ for every site (tied k reads q's τ), for ranking nodes."""
        return {s.name: self.tau_of(s.name).detach().clone() for s in self.sites}
