"""Synchronisation cases: aw.Barrier phases, aw.Semaphore limits, aw.Event between blocks.

Waits between blocks are ordered so that a lower block id never waits on a
higher one: devices dispatch blocks in order, so these cases need no forward
progress between blocks (lavapipe with one thread runs them to completion).
"""

import numpy as np

import asyncwarp as aw

from ..case import CaseContext, case
from ._common import global_lane, lanes

PHASE_WARPS = 4
SEM_WARPS = 6
SEM_LIMIT = 2
SEM_ROUNDS = 3


@aw.kernel
async def barrier_phases(x: aw.Array[aw.i32], out: aw.Array[aw.i32], rounds: aw.i32):
    bar = aw.Barrier(PHASE_WARPS)
    buf = aw.shared(aw.i32, PHASE_WARPS * aw.WARP)
    w = aw.warp_id()
    ln = aw.lane()
    base = aw.block_id() * PHASE_WARPS * aw.WARP
    v = x[base + w * aw.WARP + ln]
    for r in range(rounds):
        buf[w * aw.WARP + ln] = v
        await bar.wait()  # every warp's write of this round is visible after the wait
        v = v + buf[((w + 1) % PHASE_WARPS) * aw.WARP + (ln + r) % aw.WARP]
        await bar.wait()  # nobody overwrites buf before every warp has read it
    out[base + w * aw.WARP + ln] = v


@case("sync")
def barrier_rounds(ctx: CaseContext) -> None:
    """aw.Barrier(4) reused over several rounds of write / wait / read-neighbour / wait"""
    blocks, rounds = 2, 4
    n = lanes(ctx, blocks, PHASE_WARPS)
    x = ctx.rng.integers(-1000, 1000, n).astype(np.int32)
    out = ctx.poisoned(n, np.int32)
    ctx.run(barrier_phases, blocks, x, out, rounds, warps=PHASE_WARPS)
    v = x.reshape(blocks, PHASE_WARPS, ctx.W).astype(np.int64)
    for r in range(rounds):
        v = v + np.roll(np.roll(v, -1, axis=1), -r, axis=2)
    ctx.expect_equal(out, v.astype(np.int32).ravel())


@aw.func
async def stage_worker(bar, buf, x, out, role: aw.i32, rounds: aw.i32):
    ln = aw.lane()
    base = aw.block_id() * 2 * aw.WARP
    acc = x[base + role * aw.WARP + ln]
    for _ in range(rounds):
        buf[role * aw.WARP + ln] = acc
        await bar.wait()
        acc = acc * 2 - buf[(1 - role) * aw.WARP + aw.WARP - 1 - ln]
        await bar.wait()
    out[base + role * aw.WARP + ln] = acc


@aw.func
async def bystander(out, rounds: aw.i32):
    acc = 0
    for r in range(rounds * 3):
        await aw.yield_now()
        acc += r
    out[aw.num_blocks() * 2 * aw.WARP + aw.block_id() * aw.WARP + aw.lane()] = acc


@aw.kernel
async def barrier_subset(x: aw.Array[aw.i32], out: aw.Array[aw.i32], rounds: aw.i32):
    bar = aw.Barrier(2)
    buf = aw.shared(aw.i32, 2 * aw.WARP)
    await aw.join(
        stage_worker(bar, buf, x, out, 0, rounds),
        stage_worker(bar, buf, x, out, 1, rounds),
        bystander(out, rounds),
    )


@case("sync")
def barrier_two_of_three(ctx: CaseContext) -> None:
    """aw.Barrier(2) between two branches of a join while a third warp never waits on it"""
    blocks, rounds = 2, 3
    n = blocks * 2 * ctx.W
    x = ctx.rng.integers(-100, 100, n).astype(np.int32)
    out = ctx.poisoned(n + blocks * ctx.W, np.int32)
    ctx.run(barrier_subset, blocks, x, out, rounds)
    v = x.reshape(blocks, 2, ctx.W).astype(np.int64)
    for _ in range(rounds):
        v = v * 2 - v[:, ::-1, ::-1]
    ctx.expect_equal(out[:n], v.astype(np.int32).ravel(), what="workers")
    ctx.expect_equal(
        out[n:], np.full(blocks * ctx.W, sum(range(rounds * 3)), np.int32), what="bystander"
    )


@aw.kernel
async def limited(holders: aw.Array[aw.i32], peak: aw.Array[aw.i32], entries: aw.Array[aw.i32]):
    sem = aw.Semaphore(SEM_LIMIT)
    b = aw.block_id()
    for _ in range(SEM_ROUNDS):
        await sem.acquire()
        if aw.lane() == 0:
            h = aw.atomic_add(holders, b, 1, order="acq_rel") + 1
            aw.atomic_max(peak, b, h)
            aw.atomic_add(entries, b, 1)
        await aw.sleep(300)  # hold the permit a while, so other warps try to get in
        if aw.lane() == 0:
            aw.atomic_add(holders, b, -1, order="acq_rel")
        sem.release()


@case("sync")
def semaphore_max_holders(ctx: CaseContext) -> None:
    """aw.Semaphore(2) shared by 6 warps: never more than 2 holders (counted with atomic max)"""
    blocks = 2
    holders = np.zeros(blocks, np.int32)
    peak = np.zeros(blocks, np.int32)
    entries = np.zeros(blocks, np.int32)
    ctx.run(limited, blocks, holders, peak, entries, warps=SEM_WARPS)
    ctx.expect_equal(
        entries, np.full(blocks, SEM_WARPS * SEM_ROUNDS, np.int32), what="permits granted"
    )
    ctx.expect_equal(holders, np.zeros(blocks, np.int32), what="holders at the end")
    ctx.expect(
        bool(((peak >= 1) & (peak <= SEM_LIMIT)).all()),
        f"peak holders per block {peak.tolist()} (limit {SEM_LIMIT})",
    )
    ctx.note("peak_holders", peak.tolist())


@aw.kernel
async def semaphore_mutex(x: aw.Array[aw.i32], snapshots: aw.Array[aw.i32]):
    sem = aw.Semaphore(1)
    cell = aw.shared(aw.i32, aw.WARP)
    if aw.warp_id() == 0:
        cell[aw.lane()] = 0
    aw.barrier()
    i = global_lane()
    await sem.acquire()
    # a plain read-modify-write with an await inside: safe only under mutual exclusion
    v = cell[aw.lane()]
    await aw.yield_now()
    cell[aw.lane()] = v + x[i]
    snapshots[i] = v + x[i]
    sem.release()


@case("sync")
def semaphore_as_mutex(ctx: CaseContext) -> None:
    """aw.Semaphore(1) guards read / await / write on block memory: updates form one chain"""
    blocks, warps = 2, 4
    n = lanes(ctx, blocks, warps)
    x = ctx.rng.integers(1, 1000, n).astype(np.int32)
    snapshots = ctx.poisoned(n, np.int32)
    ctx.run(semaphore_mutex, blocks, x, snapshots, warps=warps)
    xs = x.reshape(blocks, warps, ctx.W)
    snaps = snapshots.reshape(blocks, warps, ctx.W)
    for b in range(blocks):
        # under mutual exclusion each warp's snapshot is the previous holder's plus its own x
        previous, left = np.zeros(ctx.W, np.int32), set(range(warps))
        while left:
            nxt = [w for w in left if np.array_equal(snaps[b, w] - xs[b, w], previous)]
            ctx.expect(
                len(nxt) == 1,
                f"block {b}: no single warp continues the chain of "
                f"guarded updates after {warps - len(left)} holders",
            )
            previous = snaps[b, nxt[0]]
            left.remove(nxt[0])
        ctx.expect_equal(previous, xs[b].sum(axis=0).astype(np.int32), what=f"block {b} total")


@aw.kernel
async def event_chain(
    x: aw.Array[aw.i32], flags: aw.Array[aw.i32], sums: aw.Array[aw.i32], seen: aw.Array[aw.i32]
):
    b = aw.block_id()
    ln = aw.lane()
    mine = aw.Event(flags, b)
    prev = aw.Event(flags, max(b - 1, 0))
    before = aw.i32(mine.is_set())
    acc = x[b * aw.WARP + ln]
    if b > 0:
        # block b waits on block b - 1 only: lower blocks never wait on higher ones
        await prev.wait()
        acc = acc + sums[(b - 1) * aw.WARP + ln]
    sums[b * aw.WARP + ln] = acc
    mine.set()
    seen[b * aw.WARP + ln] = before * 10 + aw.i32(mine.is_set())


@case("sync")
def event_between_blocks(ctx: CaseContext) -> None:
    """aw.Event chain: block b waits for block b-1's event, then reads its published sums"""
    blocks = 4
    n = blocks * ctx.W
    x = ctx.rng.integers(-1000, 1000, n).astype(np.int32)
    flags = np.zeros(blocks, np.int32)
    sums, seen = ctx.poisoned(n, np.int32), ctx.poisoned(n, np.int32)
    ctx.run(event_chain, blocks, x, flags, sums, seen)
    ctx.expect_equal(
        sums,
        np.cumsum(x.reshape(blocks, ctx.W), axis=0).astype(np.int32).ravel(),
        what="prefix sums across blocks",
    )
    ctx.expect_equal(seen, np.ones(n, np.int32), what="is_set() before and after set()")
    ctx.expect(bool((flags != 0).all()), f"event flags after the kernel: {flags.tolist()}")


@aw.kernel
async def event_broadcast(
    x: aw.Array[aw.f32], data: aw.Array[aw.f32], flags: aw.Array[aw.i32], out: aw.Array[aw.f32]
):
    ready = aw.Event(flags, 0)
    b = aw.block_id()
    ln = aw.lane()
    if b == 0:
        data[ln] = x[ln] * 3.0
        ready.set()  # release: the data stores above are visible to whoever sees the event
    else:
        await ready.wait()
        out[(b - 1) * aw.WARP + ln] = data[(ln + b) % aw.WARP] - 1.0


@case("sync")
def event_one_to_many(ctx: CaseContext) -> None:
    """block 0 publishes data and sets an aw.Event; every other block waits, then reads it"""
    blocks = 5
    x = ctx.rng.standard_normal(ctx.W).astype(np.float32)
    data = ctx.poisoned(ctx.W, np.float32)
    flags = np.zeros(1, np.int32)
    out = ctx.poisoned((blocks - 1) * ctx.W, np.float32)
    ctx.run(event_broadcast, blocks, x, data, flags, out)
    published = x * np.float32(3)
    want = np.concatenate([np.roll(published, -b) - np.float32(1) for b in range(1, blocks)])
    ctx.expect_equal(out, want, what="data read after the event")
