"""Session-wide test settings, applied before any test module is imported."""

import os

# Triton reads TRITON_INTERPRET when its kernels are defined (at import): set it before any test module
# (or the library, through one) imports triton, so the kernels run on the CPU under the interpreter
# whichever test file happens to import triton first.
os.environ.setdefault("TRITON_INTERPRET", "1")
