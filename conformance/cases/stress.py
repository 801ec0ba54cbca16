"""Stress cases: many blocks, deep pipelines, many warps per block, many concurrent tasks.

Sizes scale with ctx.iterations, so the interpreter runs a tenth of what a
device runs; the checks are the same exact comparisons with numpy.
"""

import numpy as np

import asyncwarp as aw

from ..case import CaseContext, case
from ._common import check_permutation, lanes

MANY_WARPS = 16


@aw.func
async def produce(ch, x, first, ntiles):
    for t in range(ntiles):
        await ch.send(x[(first + t) * aw.WARP + aw.lane()])


@aw.func
async def consume(ch, y, first, ntiles):
    acc = 0
    for t in range(ntiles):
        v = await ch.recv()
        acc = acc + v
        y[(first + t) * aw.WARP + aw.lane()] = acc


@aw.kernel
async def running_sums(x: aw.Array[aw.i32], y: aw.Array[aw.i32], ntiles: aw.i32):
    ch = aw.Channel(aw.i32, 2)
    first = aw.block_id() * ntiles
    await aw.join(produce(ch, x, first, ntiles), consume(ch, y, first, ntiles))


@case("stress")
def many_blocks(ctx: CaseContext) -> None:
    """a producer/consumer pair in each of many blocks (channels live per block)"""
    blocks, ntiles = ctx.iterations(256), 3
    n = blocks * ntiles * ctx.W
    x = ctx.rng.integers(-1000, 1000, n).astype(np.int32)
    y = ctx.poisoned(n, np.int32)
    ctx.run(running_sums, blocks, x, y, ntiles)
    want = np.cumsum(x.reshape(blocks, ntiles, ctx.W), axis=1).astype(np.int32).ravel()
    ctx.expect_equal(y, want, what="per-block running sums")


@case("stress")
def deep_pipeline(ctx: CaseContext) -> None:
    """one pair pushes many tiles through a 2-slot channel (thousands of send/recv waits)"""
    blocks, ntiles = 1, ctx.iterations(400)
    n = blocks * ntiles * ctx.W
    x = ctx.rng.integers(-1000, 1000, n).astype(np.int32)
    y = ctx.poisoned(n, np.int32)
    ctx.run(running_sums, blocks, x, y, ntiles)
    want = np.cumsum(x.reshape(blocks, ntiles, ctx.W), axis=1).astype(np.int32).ravel()
    ctx.expect_equal(y, want, what="running sums through a deep pipeline")


@aw.kernel
def block_reduce(
    x: aw.Array[aw.f32], out: aw.Array[aw.f32], ranks: aw.Array[aw.i32], counter: aw.Array[aw.i32]
):
    partial = aw.shared(aw.f32, MANY_WARPS)
    w = aw.warp_id()
    i = aw.block_id() * aw.num_warps() * aw.WARP + w * aw.WARP + aw.lane()
    s = aw.warp_sum(x[i])
    if aw.lane() == 0:
        partial[w] = s
        ranks[aw.block_id() * aw.num_warps() + w] = aw.atomic_add(
            counter, aw.block_id(), 1, scope="block"
        )
    aw.barrier()
    if w == 0:
        v = 0.0
        if aw.lane() < aw.num_warps():
            v = partial[aw.lane()]
        total = aw.warp_sum(v)
        if aw.lane() == 0:
            out[aw.block_id()] = total


@case("stress")
def many_warps_per_block(ctx: CaseContext) -> None:
    """16 warps per block: warp sums combined through block memory after a barrier"""
    blocks = 3
    n = lanes(ctx, blocks, MANY_WARPS)
    x = ctx.rng.uniform(-1, 1, n).astype(np.float32)
    out = ctx.poisoned(blocks, np.float32)
    ranks = ctx.poisoned(blocks * MANY_WARPS, np.int32)
    counter = np.zeros(blocks, np.int32)
    ctx.run(block_reduce, blocks, x, out, ranks, counter, warps=MANY_WARPS)
    ctx.expect_close(
        out,
        x.reshape(blocks, -1).astype(np.float64).sum(axis=1),
        rtol=1e-5,
        atol=1e-4,
        what="block sums",
    )
    for b in range(blocks):
        check_permutation(
            ctx,
            ranks[b * MANY_WARPS : (b + 1) * MANY_WARPS],
            MANY_WARPS,
            f"block {b} warp arrival ranks",
        )


@aw.func
async def worker(ch, x, y, tasks, k):
    # each worker sends its tile to the collector, then waits its turn by a yield chain
    for _ in range(k % 3 + 1):
        await aw.yield_now()
    await ch.send(x[(aw.block_id() * tasks + k) * aw.WARP + aw.lane()] * (k + 1))


@aw.func
async def collector(ch, y, tasks):
    acc = 0
    for _ in range(tasks):
        v = await ch.recv()
        acc = acc + v
    y[aw.block_id() * aw.WARP + aw.lane()] = acc


@aw.kernel
async def fan_in(x: aw.Array[aw.i32], y: aw.Array[aw.i32]):
    ch = aw.Channel(aw.i32, 2)
    await aw.join(
        worker(ch, x, y, 7, 0),
        worker(ch, x, y, 7, 1),
        worker(ch, x, y, 7, 2),
        worker(ch, x, y, 7, 3),
        worker(ch, x, y, 7, 4),
        worker(ch, x, y, 7, 5),
        worker(ch, x, y, 7, 6),
        collector(ch, y, 7),
    )


@case("stress")
def many_tasks(ctx: CaseContext) -> None:
    """a join of eight tasks (eight warps): seven producers contend for one 2-slot channel"""
    blocks, tasks = 2, 7
    x = ctx.rng.integers(-1000, 1000, blocks * tasks * ctx.W).astype(np.int32)
    y = ctx.poisoned(blocks * ctx.W, np.int32)
    ctx.run(fan_in, blocks, x, y)
    weights = np.arange(1, tasks + 1)[None, :, None]
    want = (x.reshape(blocks, tasks, ctx.W) * weights).sum(axis=1).astype(np.int32)
    ctx.expect_equal(y, want.ravel(), what="sums of all producers' tiles")
