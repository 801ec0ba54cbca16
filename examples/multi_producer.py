"""Three producer warps feed one consumer warp through a single channel."""

import numpy as np
from _common import report, setup

import asyncwarp as aw

PRODUCERS = 3


@aw.func
async def produce(base: aw.i32, count: aw.i32, ch):
    for k in range(count):
        await ch.send(base + k * aw.WARP + aw.lane())


@aw.func
async def consume(out: aw.Array[aw.i64], count: aw.i32, ch):
    total = aw.i64(0)
    for _ in range(count * PRODUCERS):
        v = await ch.recv()
        total += aw.i64(v)
    out[aw.block_id() * aw.WARP + aw.lane()] = total


@aw.kernel
async def fan_in(out: aw.Array[aw.i64], count: aw.i32):
    ch = aw.Channel(aw.i32, 2)
    await aw.join(produce(0, count, ch), produce(100_000, count, ch),
                  produce(200_000, count, ch), consume(out, count, ch))


if __name__ == "__main__":
    setup(__doc__)
    W = aw.core.config.current().warp_width
    blocks, count = 2, 10
    out = np.full(blocks * W, -1, np.int64)
    fan_in[blocks](out, count)
    lane = np.arange(W)
    want = sum(base + k * W + lane for base in (0, 100_000, 200_000) for k in range(count))
    report("multi_producer", np.array_equal(out, np.tile(want, blocks)))
