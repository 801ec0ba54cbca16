"""Warp specialisation: a producer warp streams tiles through a channel to a consumer warp.

`await aw.join(producer(...), consumer(...))` at the top of the kernel gives
each future its own warp; the channel lives in block memory.
"""

import numpy as np
from _common import report, setup

import asyncwarp as aw


@aw.func
async def producer(x: aw.Array[aw.f32], n: aw.i32, ch):
    for t in range(aw.block_id(), (n + aw.WARP - 1) // aw.WARP, aw.num_blocks()):
        i = t * aw.WARP + aw.lane()
        v = 0.0
        if i < n:
            v = x[i]
        await ch.send(v)


@aw.func
async def consumer(y: aw.Array[aw.f32], n: aw.i32, ch):
    for t in range(aw.block_id(), (n + aw.WARP - 1) // aw.WARP, aw.num_blocks()):
        v = await ch.recv()
        i = t * aw.WARP + aw.lane()
        if i < n:
            y[i] = aw.sqrt(v * v + 1.0)


@aw.kernel
async def pipeline(y: aw.Array[aw.f32], x: aw.Array[aw.f32], n: aw.i32):
    ch = aw.Channel(aw.f32, 4)
    await aw.join(producer(x, n, ch), consumer(y, n, ch))


if __name__ == "__main__":
    setup(__doc__)
    n = 5_000
    x = np.random.default_rng(4).standard_normal(n).astype(np.float32)
    y = np.full(n, np.nan, np.float32)
    pipeline[4](y, x, n)
    report("pipeline", np.allclose(y, np.sqrt(x * x + 1), rtol=1e-5))
