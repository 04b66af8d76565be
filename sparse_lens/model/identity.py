"""Which model an artifact belongs to: a name and a fingerprint of the weights.

Artifacts computed from one model (a pruned circuit, node means) record the model's name and
:func:`weights_fingerprint`; :func:`check_same_model` is the one rule for applying them: to another
model (another fingerprint) it is an error unless the caller passes ``strict=False``; an artifact
written before fingerprints were recorded applies with a warning that it cannot be checked.
"""

from __future__ import annotations

import hashlib
import warnings
from typing import Optional

import torch

FINGERPRINT_CHARS = 16


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A short sha256 of the model's state dict (names, dtypes, shapes and bytes), device-independent.

    Computed once and cached on the model until a tensor is replaced or modified in place (tracked
    through the tensors' version counters; writes through ``.data`` bypass them)."""
    state = model.state_dict()
    key = tuple((name, t.data_ptr(), t._version, t.dtype, tuple(t.shape)) for name, t in state.items())
    cached = getattr(model, "_weights_fingerprint", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{str(tensor.dtype).removeprefix('torch.')}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    fingerprint = digest.hexdigest()[:FINGERPRINT_CHARS]
    model._weights_fingerprint = (key, fingerprint)  # type: ignore[attr-defined]
    return fingerprint


def model_name(model: torch.nn.Module) -> str:
    """The name the model was loaded under (``cfg.model_name``: a shipped name or a directory)."""
    cfg = getattr(model, "cfg", None)
    return str(getattr(cfg, "model_name", "") or "")


def check_same_model(
    model: torch.nn.Module,
    *,
    what: str,
    recorded_name: str,
    recorded_fingerprint: Optional[str],
    strict: bool = True,
) -> None:
    """Raise a ValueError if the artifact ``what`` (recorded for ``recorded_name`` with weights
    ``recorded_fingerprint``) is applied to a model with other weights, unless ``strict=False``."""
    if recorded_fingerprint is None:
        if strict:
            warnings.warn(
                f"{what} records no model fingerprint (written by an older sparse_lens); it cannot be "
                f"checked that it belongs to this model (recorded model: {recorded_name or 'unknown'})",
                UserWarning,
                stacklevel=3,
            )
        return
    if not strict:
        return
    actual = weights_fingerprint(model)
    if actual != recorded_fingerprint:
        name = model_name(model)
        raise ValueError(
            f"{what} belongs to model {recorded_name or 'unknown'!r} (weights {recorded_fingerprint}), not to "
            f"this model ({name + ', ' if name else ''}weights {actual}); pass strict=False to apply it anyway"
        )
