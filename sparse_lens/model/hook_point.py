"""TransformerLens's HookPoint, plus a guard: a hook may replace the activation, but not its shape,
dtype or device."""

from __future__ import annotations

from torch import Tensor
from sparse_lens.model.tl_compat import HookPoint as _TLHookPoint


class HookPoint(_TLHookPoint):
    """A TL ``HookPoint`` that rejects a hook output of another shape, dtype or device than the
    activation (a silent broadcast or a cast would otherwise change the rest of the forward pass, or
    fail deep inside torch)."""

    def __call__(self, x: Tensor) -> Tensor:
        out = super().__call__(x)
        if out is not x and (
            not isinstance(out, Tensor) or out.shape != x.shape or out.dtype != x.dtype or out.device != x.device
        ):
            if isinstance(out, Tensor):
                got = f"a {str(out.dtype).removeprefix('torch.')} tensor of shape {tuple(out.shape)} on {out.device}"
            else:
                got = type(out).__name__
            raise ValueError(
                f"hook at {self.name!r} returned {got}; expected a tensor of shape {tuple(x.shape)}, dtype "
                f"{str(x.dtype).removeprefix('torch.')}, on {x.device}, like the activation (return None to leave it "
                "unchanged)"
            )
        return out
