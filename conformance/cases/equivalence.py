"""Executor equivalence: one async program under every progress mode and executor.

progress "cooperative" (polling rounds, nothing spins) must work on every
device; "independent" (waits spin in place) only where the device guarantees
forward progress at the scopes the program waits across. Every configuration
that runs must match numpy and the others exactly.
"""

from collections.abc import Callable

import numpy as np

import asyncwarp as aw

from ..case import CaseContext, case
from ._common import device_caps, global_lane, lanes

CONFIGS = (
    ("cooperative", "block_on"),
    ("cooperative", "static"),
    ("independent", "block_on"),
    ("independent", "static"),
)
NBUCKETS = 4


def run_everywhere(
    ctx: CaseContext,
    kern,
    needs: tuple[str, ...],
    launch: Callable[[str, str], tuple],
    check: Callable[[tuple, str], None],
) -> None:
    """Launch under every configuration, check each, and require identical results.

    `needs`: the progress scopes ("warp", "block") the program waits across;
    independent configurations run only where the device guarantees them. When
    the hardware subgroup is wider than W, several logical warps share one
    subgroup and cannot wait on each other whatever the device guarantees.
    """
    guaranteed = dict(device_caps(ctx).progress)
    built = kern.with_options(backend=ctx.backend, warp_width=ctx.W, device=ctx.device,
                              subgroup=ctx.subgroup)
    if built.build_options(progress="cooperative").subgroup > ctx.W:
        guaranteed["warp"] = False
    missing = [s for s in needs if not guaranteed.get(s)]
    results: dict[str, tuple] = {}
    for progress, executor in CONFIGS:
        if progress == "independent" and missing:
            continue
        name = f"{progress}/{executor}"
        out = launch(progress, executor)
        check(out, name)
        results[name] = out
    first_name, first = next(iter(results.items()))
    for name, out in results.items():
        for k, (a, b) in enumerate(zip(first, out, strict=True)):
            ctx.expect_equal(b, a, what=f"output {k}: {name} vs {first_name}")
    if missing:
        # the configurations that can run were compared; the report says what could not
        ctx.note(
            "independent",
            f"not run: the device does not guarantee forward progress between "
            f"{' or '.join(s + 's' for s in missing)}",
        )


# ------------------------------------------------------------------ a pipeline


@aw.func
async def load_stage(ch, x, ntiles):
    for t in range(ntiles):
        await ch.send(x[(aw.block_id() * ntiles + t) * aw.WARP + aw.lane()])


@aw.func
async def square_stage(inbox, outbox, ntiles):
    for _ in range(ntiles):
        v = await inbox.recv()
        await outbox.send(v * v - 1.0)


@aw.func
async def store_stage(ch, y, ntiles):
    for t in range(ntiles):
        y[(aw.block_id() * ntiles + t) * aw.WARP + aw.lane()] = await ch.recv()


@aw.kernel
async def three_stage(x: aw.Array[aw.f32], y: aw.Array[aw.f32], ntiles: aw.i32):
    a = aw.Channel(aw.f32, 2)
    b = aw.Channel(aw.f32, 1)
    await aw.join(load_stage(a, x, ntiles), square_stage(a, b, ntiles), store_stage(b, y, ntiles))


@case("equivalence")
def pipeline_all_executors(ctx: CaseContext) -> None:
    """a three-warp channel pipeline gives identical results under every executor"""
    blocks, ntiles = 2, 5
    x = ctx.rng.standard_normal(blocks * ntiles * ctx.W).astype(np.float32)

    def launch(progress, executor):
        y = ctx.poisoned(x.size, np.float32)
        ctx.run(three_stage, blocks, x, y, ntiles, progress=progress, executor=executor)
        return (y,)

    def check(out, name):
        ctx.expect_equal(out[0], x * x - np.float32(1), what=f"{name}: pipeline output")

    run_everywhere(ctx, three_stage, ("warp",), launch, check)


# ------------------------------------------------------------------ per-lane locks


@aw.kernel
async def lane_locks(
    buckets: aw.Array[aw.i32],
    x: aw.Array[aw.i32],
    locks: aw.Array[aw.i32],
    sums: aw.Array[aw.i32],
    n: aw.i32,
):
    i = global_lane()
    if i < n:
        b = buckets[i]
        await aw.until(aw.atomic_cas(locks, b, 0, 1, order="acquire") == 0)
        sums[b] = sums[b] * 3 % 1000003 + x[i]
        aw.store(locks, b, 0, order="release")


@case("equivalence")
def lane_locks_all_executors(ctx: CaseContext) -> None:
    """divergent per-lane locks: the multiset of guarded updates is the same everywhere"""
    blocks, warps = 2, 2
    n = lanes(ctx, blocks, warps) - 3
    buckets = ctx.rng.integers(0, NBUCKETS, n).astype(np.int32)
    x = np.ones(n, np.int32)  # with x = 1 the order of updates cannot change the result

    def launch(progress, executor):
        locks = np.zeros(NBUCKETS, np.int32)
        sums = np.zeros(NBUCKETS, np.int32)
        ctx.run(
            lane_locks,
            blocks,
            buckets,
            x,
            locks,
            sums,
            n,
            warps=warps,
            progress=progress,
            executor=executor,
        )
        return sums, locks

    want = np.zeros(NBUCKETS, np.int64)
    for b in buckets.tolist():
        want[b] = (want[b] * 3 % 1000003) + 1

    def check(out, name):
        ctx.expect_equal(out[0], want.astype(np.int32), what=f"{name}: guarded sums")
        ctx.expect_equal(out[1], np.zeros(NBUCKETS, np.int32), what=f"{name}: locks free")

    # lane-divergent awaits are per-lane state machines in both modes: the lanes of a
    # warp never spin on each other, so only warps need forward progress
    run_everywhere(ctx, lane_locks, ("warp",), launch, check)


# ------------------------------------------------------------------ join and select


@aw.func
async def delayed(v, ns):
    await aw.sleep(ns)
    return v


@aw.func
async def gated(flags, k, v):
    await aw.until(aw.load(flags, k, order="acquire") != 0)
    return v * 2


@aw.kernel
async def join_select_mix(x: aw.Array[aw.i32], flags: aw.Array[aw.i32], out: aw.Array[aw.i32]):
    i = global_lane()
    v = x[i]
    k1, c = await aw.select(gated(flags, 0, v), delayed(-v, 300))
    k2, d = await aw.select(gated(flags, 1, v), delayed(-v, 300))
    acc = 0
    for r in range(3):
        # joins inside a loop: branches interleave on this warp (not a top-level join)
        a, b = await aw.join(delayed(v + r, 500), delayed(v - 1, 100))
        e, f = await aw.join(delayed(r, 50 * r), gated(flags, 1, v + r))
        acc += a * b + e * f
    out[i] = c + d * 7 + acc + k1 * 1000 + k2 * 10000


@case("equivalence")
def join_select_all_executors(ctx: CaseContext) -> None:
    """joins, selects with timeouts and a never-set flag: same winners under every executor"""
    n = lanes(ctx, 2, 2)
    x = ctx.rng.integers(-100, 100, n).astype(np.int32)
    flags = np.array([0, 1], np.int32)  # flags[0] never set: its select times out

    def launch(progress, executor):
        out = ctx.poisoned(n, np.int32)
        ctx.run(
            join_select_mix, 2, x, flags.copy(), out, warps=2, progress=progress, executor=executor
        )
        return (out,)

    acc = sum((x + r) * (x - 1) + r * 2 * (x + r) for r in range(3))
    want = -x + 2 * x * 7 + acc + 1 * 1000 + 0 * 10000

    def check(out, name):
        ctx.expect_equal(out[0], want.astype(np.int32), what=f"{name}: results")

    run_everywhere(ctx, join_select_mix, ("warp",), launch, check)


# ------------------------------------------------------------------ static mapping of nested joins


@aw.func
async def scale_row(x, y, who, row, factor):
    await aw.yield_now()
    k = row * aw.WARP + aw.lane()
    y[k] = x[k] * factor
    who[k] = aw.warp_id()


@aw.func
async def two_rows(x, y, who, b):
    # with executor="static" each branch gets one of this branch's two warps;
    # with "block_on" both warps run both rows (the writes are idempotent)
    await aw.join(
        scale_row(x, y, who, 3 * b + 1, 2.0), scale_row(x, y, who, 3 * b + 2, -1.0), warps=(1, 1)
    )


@aw.kernel
async def nested_split(x: aw.Array[aw.f32], y: aw.Array[aw.f32], who: aw.Array[aw.i32]):
    b = aw.block_id()
    await aw.join(scale_row(x, y, who, 3 * b, 0.5), two_rows(x, y, who, b), warps=(1, 2))


@case("equivalence")
def static_vs_block_on(ctx: CaseContext) -> None:
    """a nested join with warps=: static maps it onto warps 1 and 2, block_on interleaves"""
    blocks = 2
    n = blocks * 3 * ctx.W
    x = ctx.rng.standard_normal(n).astype(np.float32)
    factors = np.tile(np.repeat(np.array([0.5, 2.0, -1.0], np.float32), ctx.W), blocks)

    def launch(progress, executor):
        y, who = ctx.poisoned(n, np.float32), ctx.poisoned(n, np.int32)
        ctx.run(nested_split, blocks, x, y, who, progress=progress, executor=executor)
        if executor == "static":
            ctx.expect_equal(
                who,
                np.tile(np.repeat(np.arange(3, dtype=np.int32), ctx.W), blocks),
                what=f"{progress}/static: warp of each row",
            )
        else:
            rows = who.reshape(blocks, 3, ctx.W)
            ctx.expect(
                bool((rows[:, 0] == 0).all() and np.isin(rows[:, 1:], (1, 2)).all()),
                f"{progress}/block_on: rows written by unexpected warps",
            )
        return (y,)

    def check(out, name):
        ctx.expect_equal(out[0], x * factors, what=f"{name}: rows")

    run_everywhere(ctx, nested_split, ("warp",), launch, check)


# ------------------------------------------------------------------ barrier and semaphore


@aw.kernel
async def phased_permits(x: aw.Array[aw.i32], out: aw.Array[aw.i32], peak: aw.Array[aw.i32]):
    bar = aw.Barrier(4)
    sem = aw.Semaphore(2)
    buf = aw.shared(aw.i32, 4 * aw.WARP)
    inside = aw.shared(aw.i32, 1)
    if aw.warp_id() == 0 and aw.lane() == 0:
        inside[0] = 0
    aw.barrier()
    w = aw.warp_id()
    i = global_lane()
    v = x[i]
    for r in range(3):
        await sem.acquire()
        if aw.lane() == 0:
            aw.atomic_max(peak, aw.block_id(), aw.atomic_add(inside, 0, 1, scope="block") + 1)
        await aw.yield_now()
        if aw.lane() == 0:
            aw.atomic_add(inside, 0, -1, scope="block")
        sem.release()
        buf[w * aw.WARP + aw.lane()] = v
        await bar.wait()
        v = v + buf[((w + r + 1) % 4) * aw.WARP + aw.lane()]
        await bar.wait()
    out[i] = v


@case("equivalence")
def barrier_semaphore_all_executors(ctx: CaseContext) -> None:
    """aw.Barrier rounds and aw.Semaphore(2) permits: same data and limits everywhere"""
    blocks, warps = 2, 4
    n = lanes(ctx, blocks, warps)
    x = ctx.rng.integers(-1000, 1000, n).astype(np.int32)

    def launch(progress, executor):
        out, peak = ctx.poisoned(n, np.int32), np.zeros(blocks, np.int32)
        ctx.run(
            phased_permits, blocks, x, out, peak, warps=warps, progress=progress, executor=executor
        )
        ctx.expect(
            bool(((peak >= 1) & (peak <= 2)).all()),
            f"{progress}/{executor}: semaphore peak holders {peak.tolist()}",
        )
        return (out,)

    v = x.reshape(blocks, warps, ctx.W).astype(np.int64)
    for r in range(3):
        v = v + np.roll(v, -(r + 1), axis=1)

    def check(out, name):
        ctx.expect_equal(out[0], v.astype(np.int32).ravel(), what=f"{name}: barrier rounds")

    run_everywhere(ctx, phased_permits, ("warp",), launch, check)
