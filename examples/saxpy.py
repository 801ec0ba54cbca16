"""y = a*x + y over a grid of blocks: the kernel language's hello world."""

import numpy as np
from _common import report, setup

import asyncwarp as aw


@aw.kernel
def saxpy(y: aw.Array[aw.f32], x: aw.Array[aw.f32], a: aw.f32, n: aw.i32):
    i = (aw.block_id() * aw.num_warps() + aw.warp_id()) * aw.WARP + aw.lane()
    if i < n:
        y[i] = a * x[i] + y[i]


if __name__ == "__main__":
    setup(__doc__)
    n, warps = 10_000, 4
    rng = np.random.default_rng(1)
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    want = np.float32(2.5) * x + y
    W = aw.core.config.current().warp_width
    saxpy[(n + W * warps - 1) // (W * warps), warps](y, x, 2.5, n)
    report("saxpy", np.allclose(y, want, rtol=1e-6))
