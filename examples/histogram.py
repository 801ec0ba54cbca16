"""A histogram: per-block counts in block memory, then atomics into global memory."""

import numpy as np
from _common import report, setup

import asyncwarp as aw

BINS = 64


@aw.kernel
def histogram(data: aw.Array[aw.u32], n: aw.i32, hist: aw.Array[aw.u32]):
    local = aw.shared(aw.u32, BINS)
    t = aw.warp_id() * aw.WARP + aw.lane()
    threads = aw.num_warps() * aw.WARP
    for b in range(t, BINS, threads):
        local[b] = 0
    aw.barrier()
    for i in range(aw.block_id() * threads + t, n, aw.num_blocks() * threads):
        aw.atomic_add(local, data[i] % BINS, 1, scope="block")
    aw.barrier()
    for b in range(t, BINS, threads):
        aw.atomic_add(hist, b, local[b])


if __name__ == "__main__":
    setup(__doc__)
    n = 20_000
    data = np.random.default_rng(3).integers(0, 1 << 30, n, dtype=np.uint32)
    hist = np.zeros(BINS, np.uint32)
    histogram[8, 4](data, n, hist)
    report("histogram", np.array_equal(hist, np.bincount(data % BINS, minlength=BINS)))
