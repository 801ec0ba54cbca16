"""The asyncwarp kernels the benchmarks time, written as a user of the public API would.

Streaming kernels compute y = a*x + b; the compute kernels run the same chain of
multiply-adds with and without always-ready awaits; `ping_pong` bounces a
message between two warps. Every kernel is W-generic (aw.WARP) and runs on
sim, CUDA and Vulkan.
"""

from __future__ import annotations

import asyncwarp as aw
from asyncwarp.demo import affine_pipeline

# Slots of block memory each producer/consumer pair of `stream` cycles through: the
# producer may run this many batches ahead of its consumer. Two are enough: the
# producer's next batch is in flight in its registers while it waits for a slot, and
# a smaller ring lets more blocks share an SM where the driver gives block memory a
# small carveout (NVIDIA's Vulkan driver; NOTES.md, sixth round). CUDA measured the
# same with 2, 3 and 4 slots.
STREAM_SLOTS = 2
# Values each lane moves per batch (a batch is BATCH tiles of W consecutive floats).
BATCH = 8


# ------------------------------------------------------------------ plain elementwise


@aw.kernel
def affine(y: aw.Array[aw.f32], x: aw.Array[aw.f32], a: aw.f32, b: aw.f32, n: aw.i32):
    """y = a*x + b, one element per lane, warp tiles strided over the grid (no async)."""
    stride = aw.num_blocks() * aw.num_warps()
    tiles = (n + aw.WARP - 1) // aw.WARP
    for t in range(aw.block_id() * aw.num_warps() + aw.warp_id(), tiles, stride):
        i = t * aw.WARP + aw.lane()
        if i < n:
            y[i] = a * x[i] + b


# ------------------------------------------------------------------ streaming pipeline
# A producer warp loads a batch of BATCH tiles into a slot of block memory and hands
# the slot to its consumer warp through the channel `full`; the consumer reads the
# batch, returns the slot through `free` and stores a*x + b. Channels carry slot
# numbers (one per message), so one channel operation moves BATCH * W values: the
# shape of a hand-written mbarrier ring, with the bookkeeping done by the channels.


@aw.func
def load_batch(x: aw.Array[aw.f32], i: aw.i32, last: aw.i32):
    # Clamping the index keeps the loads unconditional (no branch between them, so
    # all eight are in flight together); the consumer drops the clamped tail.
    return (
        x[min(i, last)],
        x[min(i + aw.WARP, last)],
        x[min(i + 2 * aw.WARP, last)],
        x[min(i + 3 * aw.WARP, last)],
        x[min(i + 4 * aw.WARP, last)],
        x[min(i + 5 * aw.WARP, last)],
        x[min(i + 6 * aw.WARP, last)],
        x[min(i + 7 * aw.WARP, last)],
    )


@aw.func
def put_batch(buf, o: aw.i32, v0, v1, v2, v3, v4, v5, v6, v7):
    buf[o] = v0
    buf[o + aw.WARP] = v1
    buf[o + 2 * aw.WARP] = v2
    buf[o + 3 * aw.WARP] = v3
    buf[o + 4 * aw.WARP] = v4
    buf[o + 5 * aw.WARP] = v5
    buf[o + 6 * aw.WARP] = v6
    buf[o + 7 * aw.WARP] = v7


@aw.func
def get_batch(buf, o: aw.i32):
    return (
        buf[o],
        buf[o + aw.WARP],
        buf[o + 2 * aw.WARP],
        buf[o + 3 * aw.WARP],
        buf[o + 4 * aw.WARP],
        buf[o + 5 * aw.WARP],
        buf[o + 6 * aw.WARP],
        buf[o + 7 * aw.WARP],
    )


@aw.func
def store_affine(y: aw.Array[aw.f32], i: aw.i32, n: aw.i32, v: aw.f32, a: aw.f32, b: aw.f32):
    if i < n:
        y[i] = a * v + b


@aw.func
def store_batch(y, i, n, a, b, v0, v1, v2, v3, v4, v5, v6, v7):
    store_affine(y, i, n, v0, a, b)
    store_affine(y, i + aw.WARP, n, v1, a, b)
    store_affine(y, i + 2 * aw.WARP, n, v2, a, b)
    store_affine(y, i + 3 * aw.WARP, n, v3, a, b)
    store_affine(y, i + 4 * aw.WARP, n, v4, a, b)
    store_affine(y, i + 5 * aw.WARP, n, v5, a, b)
    store_affine(y, i + 6 * aw.WARP, n, v6, a, b)
    store_affine(y, i + 7 * aw.WARP, n, v7, a, b)


@aw.func
async def produce(x: aw.Array[aw.f32], n: aw.i32, buf, full, free):
    chunk = BATCH * aw.WARP
    chunks = (n + chunk - 1) // chunk
    for c in range(aw.block_id(), chunks, aw.num_blocks()):
        # Loads first: they are in flight while the warp waits for a free slot.
        v0, v1, v2, v3, v4, v5, v6, v7 = load_batch(x, c * chunk + aw.lane(), n - 1)
        slot = await free.recv()
        put_batch(buf, slot * chunk + aw.lane(), v0, v1, v2, v3, v4, v5, v6, v7)
        await full.send(slot)


@aw.func
async def consume(y: aw.Array[aw.f32], a: aw.f32, b: aw.f32, n: aw.i32, buf, full, free):
    chunk = BATCH * aw.WARP
    chunks = (n + chunk - 1) // chunk
    for s in range(STREAM_SLOTS):  # every slot starts free
        await free.send(s)
    for c in range(aw.block_id(), chunks, aw.num_blocks()):
        slot = await full.recv()
        v0, v1, v2, v3, v4, v5, v6, v7 = get_batch(buf, slot * chunk + aw.lane())
        await free.send(slot)  # the values are in registers: the producer may refill
        store_batch(y, c * chunk + aw.lane(), n, a, b, v0, v1, v2, v3, v4, v5, v6, v7)


@aw.kernel
async def stream(y: aw.Array[aw.f32], x: aw.Array[aw.f32], a: aw.f32, b: aw.f32, n: aw.i32):
    """y = a*x + b through a producer warp and a consumer warp per block (2 warps)."""
    buf = aw.shared(aw.f32, STREAM_SLOTS * BATCH * aw.WARP)
    full = aw.Channel(aw.i32, STREAM_SLOTS)
    free = aw.Channel(aw.i32, STREAM_SLOTS)
    await aw.join(produce(x, n, buf, full, free), consume(y, a, b, n, buf, full, free))


# The README's pipeline: every message carries one value per lane (W floats).
naive_stream = affine_pipeline


# ------------------------------------------------------------------ await cost
# Three kernels with one signature and one result: a chain of multiply-adds per
# element, `steps` compute steps each. `compute_until` awaits, before every step, a
# future that is always ready (ready_after = 0, which the compiler cannot know);
# `compute_ready_fn` awaits an async function that never suspends. Their time over
# `compute_sync`'s is the cost of an await. The step is written out, not looped:
# ptxas does not unroll a counted loop of the PTX we emit, and the loop's own
# overhead would then hide part of the await's.


@aw.func
def muladds8(v: aw.f32, a: aw.f32, b: aw.f32):
    v = v * a + b
    v = v * a + b
    v = v * a + b
    v = v * a + b
    v = v * a + b
    v = v * a + b
    v = v * a + b
    return v * a + b


@aw.func
def muladds32(v: aw.f32, a: aw.f32, b: aw.f32):
    return muladds8(muladds8(muladds8(muladds8(v, a, b), a, b), a, b), a, b)


def compute_kernels(step) -> dict[str, aw.KernelFunction]:
    """The three await-cost kernels around one compute step (an @aw.func (v, a, b) -> v)."""

    @aw.func
    async def ready_step(v: aw.f32, a: aw.f32, b: aw.f32):
        return step(v, a, b)

    @aw.kernel
    def compute_sync(
        y: aw.Array[aw.f32],
        x: aw.Array[aw.f32],
        a: aw.f32,
        b: aw.f32,
        n: aw.i32,
        steps: aw.i32,
        ready_after: aw.i32,
    ):
        tiles = (n + aw.WARP - 1) // aw.WARP
        for t in range(
            aw.block_id() * aw.num_warps() + aw.warp_id(), tiles, aw.num_blocks() * aw.num_warps()
        ):
            i = t * aw.WARP + aw.lane()
            v = x[min(i, n - 1)]
            for _ in range(steps):
                v = step(v, a, b)
            if i < n:
                y[i] = v

    @aw.kernel
    async def compute_until(
        y: aw.Array[aw.f32],
        x: aw.Array[aw.f32],
        a: aw.f32,
        b: aw.f32,
        n: aw.i32,
        steps: aw.i32,
        ready_after: aw.i32,
    ):
        tiles = (n + aw.WARP - 1) // aw.WARP
        for t in range(
            aw.block_id() * aw.num_warps() + aw.warp_id(), tiles, aw.num_blocks() * aw.num_warps()
        ):
            i = t * aw.WARP + aw.lane()
            v = x[min(i, n - 1)]
            for s in range(steps):
                await aw.until(s >= ready_after)
                v = step(v, a, b)
            if i < n:
                y[i] = v

    @aw.kernel
    async def compute_ready_fn(
        y: aw.Array[aw.f32],
        x: aw.Array[aw.f32],
        a: aw.f32,
        b: aw.f32,
        n: aw.i32,
        steps: aw.i32,
        ready_after: aw.i32,
    ):
        tiles = (n + aw.WARP - 1) // aw.WARP
        for t in range(
            aw.block_id() * aw.num_warps() + aw.warp_id(), tiles, aw.num_blocks() * aw.num_warps()
        ):
            i = t * aw.WARP + aw.lane()
            v = x[min(i, n - 1)]
            for _ in range(steps):
                v = await ready_step(v, a, b)
            if i < n:
                y[i] = v

    return {"sync": compute_sync, "until": compute_until, "ready_fn": compute_ready_fn}


# Multiply-adds per compute step -> the three kernels.
COMPUTE_KERNELS = {8: compute_kernels(muladds8), 32: compute_kernels(muladds32)}


# ------------------------------------------------------------------ channel round trip


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
    """Two warps bounce a message `rounds` times through two one-slot channels."""
    to_pong = aw.Channel(aw.i32, 1)
    to_ping = aw.Channel(aw.i32, 1)
    await aw.join(ping(out, rounds, to_pong, to_ping), pong(rounds, to_pong, to_ping))


STREAM_KERNELS = {"stream": stream, "naive_stream": naive_stream}
