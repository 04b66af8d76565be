"""TransformerLens's HookPoint, plus a guard: a hook may replace the activation, but not its shape."""

from __future__ import annotations

from torch import Tensor
from transformer_lens.hook_points import HookPoint as _TLHookPoint


class HookPoint(_TLHookPoint):
    """A TL ``HookPoint`` that rejects a hook output of the wrong shape (a silent broadcast would
    otherwise corrupt the rest of the forward pass)."""

    def __call__(self, x: Tensor) -> Tensor:
        out = super().__call__(x)
        if out is not x and (not isinstance(out, Tensor) or out.shape != x.shape):
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"hook at {self.name!r} returned {got}; expected a tensor of shape {tuple(x.shape)} "
                "(return None to leave the activation unchanged)"
            )
        return out
