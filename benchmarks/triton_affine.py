"""The Triton kernel of the host-overhead benchmark, y = a*x + b; imported only where
Triton is installed. `fresh()` makes a new JITFunction (no in-memory cache)."""

from __future__ import annotations

import triton
import triton.language as tl

BLOCK = 1024


def affine_source(x_ptr, y_ptr, a, b, n, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = i < n
    x = tl.load(x_ptr + i, mask=mask)
    tl.store(y_ptr + i, a * x + b, mask=mask)


def fresh():
    """A JITFunction that has compiled nothing yet."""
    return triton.jit(affine_source)


affine = fresh()
