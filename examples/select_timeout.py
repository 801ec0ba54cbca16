"""`aw.select` with a timeout: receive a message or give up after a sleep.

The producer sends only a few messages; the consumer keeps receiving until a
receive loses the race against `aw.sleep`, counts what it got, and stops. A
receive that lost consumed nothing (select is cancel-safe for channels).
"""

import numpy as np
from _common import report, setup

import asyncwarp as aw


@aw.func
async def send_some(count: aw.i32, ch):
    for k in range(count):
        await ch.send(k + 1)


@aw.func
async def receive_until_quiet(out: aw.Array[aw.i32], ch):
    got = 0
    total = 0
    while True:
        which, v = await aw.select(ch.recv(), aw.sleep(200_000))
        if which == 1:
            break
        got += 1
        total += v
    out[2 * aw.block_id()] = got
    out[2 * aw.block_id() + 1] = total


@aw.kernel
async def quiet(out: aw.Array[aw.i32], count: aw.i32):
    ch = aw.Channel(aw.i32, 2)
    await aw.join(send_some(count, ch), receive_until_quiet(out, ch))


if __name__ == "__main__":
    setup(__doc__)
    blocks, count = 2, 5
    out = np.full(2 * blocks, -1, np.int32)
    quiet[blocks](out, count)
    want = np.tile([count, count * (count + 1) // 2], blocks)
    report("select_timeout", np.array_equal(out, want))
