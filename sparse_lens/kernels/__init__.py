"""Triton kernels for GPU execution (issue 25): the sparse-weight × dense-activation product
(:mod:`.spmm`) and AbsTopK's selection (:mod:`.abs_topk`). Optional: without Triton installed the
model runs its torch kernels. On a machine without a GPU they run only under the interpreter
(``TRITON_INTERPRET=1``), which is how the tests check them."""

from __future__ import annotations

import functools
import importlib.util


@functools.cache
def triton_available() -> bool:
    """Whether Triton can be imported (the kernels still need a GPU, or TRITON_INTERPRET=1)."""
    return importlib.util.find_spec("triton") is not None
