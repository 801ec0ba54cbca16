"""Per-warp sums, maxima, inclusive prefix sums and ballots with the warp collectives."""

import numpy as np
from _common import report, setup

import asyncwarp as aw


@aw.kernel
def reduce_rows(x: aw.Array[aw.i32], sums: aw.Array[aw.i32], maxes: aw.Array[aw.i32],
                scan: aw.Array[aw.i32], odd_mask: aw.Array[aw.u64]):
    row = aw.block_id() * aw.num_warps() + aw.warp_id()
    i = row * aw.WARP + aw.lane()
    v = x[i]
    scan[i] = aw.warp_prefix_sum(v)
    s = aw.warp_sum(v)
    m = aw.warp_max(v)
    bits = aw.ballot(v % 2 != 0)
    if aw.lane() == 0:
        sums[row] = s
        maxes[row] = m
        odd_mask[row] = bits


if __name__ == "__main__":
    setup(__doc__)
    W = aw.core.config.current().warp_width
    rows, warps = 64, 2
    rng = np.random.default_rng(2)
    x = rng.integers(-1000, 1000, rows * W, dtype=np.int32)
    sums = np.full(rows, -1, np.int32)
    maxes = np.full(rows, -1, np.int32)
    scan = np.full(rows * W, -1, np.int32)
    odd = np.zeros(rows, np.uint64)
    reduce_rows[rows // warps, warps](x, sums, maxes, scan, odd)
    m = x.reshape(rows, W)
    want_odd = ((m % 2 != 0).astype(np.uint64) << np.arange(W, dtype=np.uint64)).sum(1)
    ok = (np.array_equal(sums, m.sum(1)) and np.array_equal(maxes, m.max(1))
          and np.array_equal(scan, np.cumsum(m, 1).ravel()) and np.array_equal(odd, want_odd))
    report("warp_reductions", ok)
