"""Which model `sparse-lens prune` / `prune-compare` prune: a shipped name, a model directory or
training run, or a Python entry point ``package.module:attr`` naming a TransformerLens model object or
a function (called with no arguments) that returns one — e.g. a ``HookedTransformer`` or
``TransformerBridge`` built offline and given our tokenizer (docs/pruning.md, "Pruning a
TransformerLens model"). An existing path always wins over the entry-point reading of a name.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any, Optional

_ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def is_entry_point(spec: str) -> bool:
    """``package.module:attr`` (and no file or directory of that name)."""
    return bool(_ENTRY_POINT.match(str(spec))) and not Path(str(spec)).exists()


def resolve_entry_point(spec: str, argument: str = "model") -> Any:
    """The object ``package.module:attr`` names (imported from the working directory too, as
    ``python -m`` would); a clear ValueError naming ``argument`` if it cannot be imported."""
    module_name, _, attr = str(spec).partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"{argument}: cannot import module {module_name!r} of the entry point {spec!r} ({err})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{argument}: {spec!r}: {type(obj).__name__} {getattr(obj, '__name__', '')!r} has no "
                             f"attribute {part!r} (expected package.module:function or package.module:model)")
        obj = getattr(obj, part)
    return obj


def check_model_source(spec: str, argument: str = "model") -> None:
    """Everything about ``spec`` that can be checked without building the model."""
    if is_entry_point(spec):
        resolve_entry_point(spec, argument)
    else:
        from sparse_lens.model.checkpoint import resolve_pretrained

        resolve_pretrained(spec)


def load_model(spec: str, device: Optional[str] = None, argument: str = "model") -> Any:
    """The model ``spec`` names, on ``device`` (None: where it is; shipped models load on the CPU),
    checked for everything pruning needs (`sparse_lens.pruning.model_adapter`)."""
    import torch

    from sparse_lens.pruning.model_adapter import adapter_for

    if not is_entry_point(spec):
        from sparse_lens.model import HookedSparseTransformer

        return HookedSparseTransformer.from_pretrained(spec, **({"device": device} if device else {}))
    obj = resolve_entry_point(spec, argument)
    model = obj() if callable(obj) and not isinstance(obj, torch.nn.Module) else obj
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"{argument}: the entry point {spec!r} gave a {type(model).__name__}, expected a "
                         "TransformerLens model (HookedTransformer, TransformerBridge, HookedSparseTransformer) "
                         "or a function returning one")
    if device:
        model = model.to(device)
    try:
        adapter_for(model).backend_tokenizer()
    except (ValueError, TypeError) as err:
        raise ValueError(f"{argument}: {spec!r}: {str(err).removeprefix('model: ')}") from None
    return model.eval()
