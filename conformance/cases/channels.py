"""Channel cases: one and many producers and consumers, capacity 1 and deep, close and drain.

A message is one value per lane. Messages are unique integers, so the host can
tell from what each consumer wrote which producer, tile and lane every value
came from: FIFO order per producer and exactly-once delivery are both checked.
"""

import numpy as np

import asyncwarp as aw

from ..case import CaseContext, case

MAX_TILES = 64  # per consumer: the size of its output region


@aw.func
async def send_tiles(ch, x, first: aw.i32, ntiles: aw.i32):
    for t in range(ntiles):
        await ch.send(x[(first + t) * aw.WARP + aw.lane()])


@aw.func
async def recv_tiles(ch, y, first: aw.i32, ntiles: aw.i32):
    for t in range(ntiles):
        v = await ch.recv()
        y[(first + t) * aw.WARP + aw.lane()] = v * 2 + 1


@aw.func
async def send_and_close(ch, x, first: aw.i32, ntiles: aw.i32):
    await send_tiles(ch, x, first, ntiles)
    ch.close()


@aw.func
async def drain(ch, y, counts, slot: aw.i32):
    # recv_ok reports (False, _) once the channel is closed and empty
    k = 0
    while True:
        ok, v = await ch.recv_ok()
        if not ok:
            break
        y[(slot * MAX_TILES + k) * aw.WARP + aw.lane()] = v
        k += 1
    if aw.lane() == 0:
        counts[slot] = k


@aw.kernel
async def spsc_f32(x: aw.Array[aw.f32], y: aw.Array[aw.f32], ntiles: aw.i32):
    ch = aw.Channel(aw.f32, 4)
    first = aw.block_id() * ntiles
    await aw.join(send_tiles(ch, x, first, ntiles), recv_tiles(ch, y, first, ntiles))


@aw.kernel
async def spsc_cap1(x: aw.Array[aw.i32], y: aw.Array[aw.i32], ntiles: aw.i32):
    ch = aw.Channel(aw.i32, 1)
    first = aw.block_id() * ntiles
    await aw.join(send_tiles(ch, x, first, ntiles), recv_tiles(ch, y, first, ntiles))


@aw.kernel
async def spsc_deep(x: aw.Array[aw.i32], y: aw.Array[aw.i32], ntiles: aw.i32):
    ch = aw.Channel(aw.i32, 16)
    first = aw.block_id() * ntiles
    await aw.join(send_tiles(ch, x, first, ntiles), recv_tiles(ch, y, first, ntiles))


def _spsc(ctx: CaseContext, kern, dtype, ntiles: int, blocks: int = 2) -> None:
    n = blocks * ntiles * ctx.W
    if np.dtype(dtype).kind == "f":
        x = ctx.rng.standard_normal(n).astype(dtype)
    else:
        x = ctx.rng.integers(-(2**20), 2**20, n).astype(dtype)
    y = ctx.poisoned(n, dtype)
    ctx.run(kern, blocks, x, y, ntiles)
    # tile t of the consumer is message t of the producer: FIFO, nothing lost or repeated
    ctx.expect_equal(y, x * dtype(2) + dtype(1), what="received tiles in order")


@case("channels")
def single_producer_consumer(ctx: CaseContext) -> None:
    """one producer warp, one consumer warp, f32 messages through a 4-slot channel, in order"""
    _spsc(ctx, spsc_f32, np.float32, ntiles=6)


@case("channels")
def capacity_one(ctx: CaseContext) -> None:
    """a 1-slot channel: every send waits for the previous message to be received"""
    _spsc(ctx, spsc_cap1, np.int32, ntiles=5)


@case("channels")
def deep_channel(ctx: CaseContext) -> None:
    """a 16-slot channel with more tiles than slots: the producer runs ahead, wraps the ring"""
    _spsc(ctx, spsc_deep, np.int32, ntiles=max(20, ctx.iterations(40)))


# ------------------------------------------------------------------ many to one, one to many


@aw.func
async def collect(ch, y, first: aw.i32, nmsgs: aw.i32):
    for k in range(nmsgs):
        v = await ch.recv()
        y[(first + k) * aw.WARP + aw.lane()] = v


@aw.kernel
async def three_producers(x: aw.Array[aw.i32], y: aw.Array[aw.i32], ntiles: aw.i32):
    ch = aw.Channel(aw.i32, 2)
    b = aw.block_id()
    await aw.join(
        send_tiles(ch, x, (3 * b + 0) * ntiles, ntiles),
        send_tiles(ch, x, (3 * b + 1) * ntiles, ntiles),
        send_tiles(ch, x, (3 * b + 2) * ntiles, ntiles),
        collect(ch, y, 3 * b * ntiles, 3 * ntiles),
    )


@aw.kernel
async def two_consumers(
    x: aw.Array[aw.i32], y: aw.Array[aw.i32], counts: aw.Array[aw.i32], ntiles: aw.i32
):
    ch = aw.Channel(aw.i32, 3)
    b = aw.block_id()
    await aw.join(
        send_and_close(ch, x, b * ntiles, ntiles),
        drain(ch, y, counts, 2 * b),
        drain(ch, y, counts, 2 * b + 1),
    )


def _unique_messages(ctx: CaseContext, n: int) -> np.ndarray:
    return (ctx.rng.permutation(n) * 7 + 3).astype(np.int32)


def _origin(x: np.ndarray, values: np.ndarray, W: int) -> tuple[np.ndarray, np.ndarray]:
    """(tile, lane) of each received value in the sender's input x (-1 if not sent)."""
    where = {int(v): k for k, v in enumerate(x.tolist())}
    pos = np.array([where.get(int(v), -1) for v in values.ravel()]).reshape(values.shape)
    return np.where(pos >= 0, pos // W, -1), np.where(pos >= 0, pos % W, -1)


@case("channels")
def many_producers(ctx: CaseContext) -> None:
    """three producer warps into one channel: every message arrives once, per-producer FIFO"""
    blocks, ntiles = 2, 4
    n = blocks * 3 * ntiles * ctx.W
    x = _unique_messages(ctx, n)
    y = ctx.poisoned(n, np.int32)
    ctx.run(three_producers, blocks, x, y, ntiles)
    rows = y.reshape(-1, ctx.W)
    tile, lane = _origin(x, rows, ctx.W)
    ctx.expect(bool((tile >= 0).all()), "a consumer received a value nobody sent")
    ctx.expect_equal(
        lane, np.broadcast_to(np.arange(ctx.W), lane.shape), what="lane of each message value"
    )
    ctx.expect(bool((tile == tile[:, :1]).all()), "a message mixes lanes of different tiles")
    for b in range(blocks):
        got = tile[b * 3 * ntiles : (b + 1) * 3 * ntiles, 0]
        ctx.expect_equal(
            np.sort(got),
            np.arange(3 * ntiles) + b * 3 * ntiles,
            what=f"block {b}: each tile received exactly once",
        )
        for p in range(3):
            mine = got[(got - b * 3 * ntiles) // ntiles == p]
            ctx.expect(
                bool((np.diff(mine) > 0).all()),
                f"block {b}: producer {p}'s tiles arrived out of order: {mine}",
            )


@case("channels")
def many_consumers_close(ctx: CaseContext) -> None:
    """one producer, two consumers draining with recv_ok until close: each tile exactly once"""
    blocks, ntiles = 2, 7
    n = blocks * ntiles * ctx.W
    x = _unique_messages(ctx, n)
    y = ctx.poisoned(2 * blocks * MAX_TILES * ctx.W, np.int32)
    counts = ctx.poisoned(2 * blocks, np.int32)
    ctx.run(two_consumers, blocks, x, y, counts, ntiles)
    ctx.expect(bool(((counts >= 0) & (counts <= ntiles)).all()), f"consumer counts {counts}")
    regions = y.reshape(2 * blocks, MAX_TILES, ctx.W)
    for b in range(blocks):
        seen = []
        for c in (2 * b, 2 * b + 1):
            rows = regions[c, : counts[c]]
            tile, lane = _origin(x, rows, ctx.W)
            ctx.expect(bool((tile >= 0).all()), f"consumer {c} received a value nobody sent")
            ctx.expect_equal(
                lane, np.broadcast_to(np.arange(ctx.W), lane.shape), what=f"consumer {c}: lanes"
            )
            ctx.expect(
                bool((np.diff(tile[:, 0]) > 0).all()),
                f"consumer {c} saw tiles out of order: {tile[:, 0]}",
            )
            seen += tile[:, 0].tolist()
        ctx.expect_equal(
            np.sort(seen),
            np.arange(ntiles) + b * ntiles,
            what=f"block {b}: tiles delivered exactly once",
        )


@aw.kernel
async def close_then_drain(
    x: aw.Array[aw.f32], y: aw.Array[aw.f32], counts: aw.Array[aw.i32], ntiles: aw.i32
):
    ch = aw.Channel(aw.f32, 8)
    b = aw.block_id()
    # a single warp: it fills the channel, closes it, then drains what is left
    await send_and_close(ch, x, b * ntiles, ntiles)
    await drain(ch, y, counts, b)
    ok, v = await ch.recv_ok()
    if aw.lane() == 0 and ok:
        counts[b] = -1


@case("channels")
def close_and_drain(ctx: CaseContext) -> None:
    """messages sent before close() are still received; then recv_ok keeps reporting closed"""
    blocks, ntiles = 3, 6
    n = blocks * ntiles * ctx.W
    x = ctx.rng.standard_normal(n).astype(np.float32)
    y = ctx.poisoned(blocks * MAX_TILES * ctx.W, np.float32)
    counts = ctx.poisoned(blocks, np.int32)
    ctx.run(close_then_drain, blocks, x, y, counts, ntiles)
    ctx.expect_equal(counts, np.full(blocks, ntiles, np.int32), what="messages drained")
    got = y.reshape(blocks, MAX_TILES, ctx.W)[:, :ntiles].ravel()
    ctx.expect_equal(got, x, what="drained messages in order")
