"""Ping-pong between two warps over a pair of channels: each round trip adds one."""

import numpy as np
from _common import report, setup

import asyncwarp as aw


@aw.func
async def ping(out: aw.Array[aw.i32], rounds: aw.i32, to_pong, to_ping):
    v = aw.lane()
    for _ in range(rounds):
        await to_pong.send(v)
        v = await to_ping.recv()
    out[aw.block_id() * aw.WARP + aw.lane()] = v


@aw.func
async def pong(rounds: aw.i32, to_pong, to_ping):
    for _ in range(rounds):
        v = await to_pong.recv()
        await to_ping.send(v + 1)


@aw.kernel
async def ping_pong(out: aw.Array[aw.i32], rounds: aw.i32):
    to_pong = aw.Channel(aw.i32, 1)
    to_ping = aw.Channel(aw.i32, 1)
    await aw.join(ping(out, rounds, to_pong, to_ping), pong(rounds, to_pong, to_ping))


if __name__ == "__main__":
    setup(__doc__)
    W = aw.core.config.current().warp_width
    blocks, rounds = 3, 25
    out = np.full(blocks * W, -1, np.int32)
    ping_pong[blocks](out, rounds)
    report("ping_pong", np.array_equal(out, np.tile(np.arange(W) + rounds, blocks)))
