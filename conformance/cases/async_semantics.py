"""Async semantics: await order, nested async functions, awaits in branches, loops and
divergent lanes, join, select with timeouts and cancellation, sleep ordering.

Events are stamped with tickets from an atomic counter, so orderings are
checked from what the device did, not from assumptions about its scheduler.
"""

import numpy as np

import asyncwarp as aw

from ..case import CaseContext, case
from ._common import check_permutation, global_lane, global_warp, lanes

NBUCKETS = 8
LONG_NS = 20000
SHORT_NS = 200
STEPS = 3


@aw.func
async def square_later(v):
    await aw.yield_now()
    return v * v


@aw.func
async def polynomial(v):
    a = await square_later(v)
    b = await square_later(a + 1)
    return a + b, b - a


@aw.func
async def timeout(ns, value):
    await aw.sleep(ns)
    return value


@aw.func
async def ready_now(value):
    return value


@aw.func
async def wait_flag(flags, k):
    await aw.until(aw.load(flags, k, order="acquire") == 1)
    return aw.load(flags, k + 1, order="relaxed")


# ------------------------------------------------------------------ order and values


@aw.kernel
async def yield_order(
    x: aw.Array[aw.i32], log: aw.Array[aw.i32], seq: aw.Array[aw.i32], out: aw.Array[aw.i32]
):
    i = global_lane()
    v = x[i]
    log[3 * i] = aw.atomic_add(seq, 0, 1)
    await aw.yield_now()
    v = v * 2 + aw.lane()
    log[3 * i + 1] = aw.atomic_add(seq, 0, 1)
    await aw.yield_now()
    log[3 * i + 2] = aw.atomic_add(seq, 0, 1)
    out[i] = v - aw.warp_id()


@case("async")
def await_order_yield(ctx: CaseContext) -> None:
    """code around `await aw.yield_now()` runs in program order; values live across awaits"""
    blocks, warps = 2, 2
    n = lanes(ctx, blocks, warps)
    x = ctx.rng.integers(-1000, 1000, n).astype(np.int32)
    log, out = ctx.poisoned(3 * n, np.int32), ctx.poisoned(n, np.int32)
    seq = np.zeros(1, np.int32)
    ctx.run(yield_order, blocks, x, log, seq, out, warps=warps)
    stamps = log.reshape(n, 3)
    check_permutation(ctx, log, 3 * n, "event tickets")
    ctx.expect(
        bool((np.diff(stamps, axis=1) > 0).all()),
        "a lane's events after an await were stamped before the events preceding it",
    )
    idx = np.arange(n)
    ctx.expect_equal(out, x * 2 + idx % ctx.W - (idx // ctx.W) % warps, what="values")


@aw.kernel
async def nested_calls(x: aw.Array[aw.i32], out: aw.Array[aw.i32]):
    i = global_lane()
    s, d = await polynomial(x[i])
    t = await square_later(s - d)
    out[2 * i] = s * 3 + d
    out[2 * i + 1] = t


@case("async")
def nested_async_values(ctx: CaseContext) -> None:
    """async @aw.func calling async @aw.func, returning values and tuples through awaits"""
    n = lanes(ctx, 2, 2)
    x = ctx.rng.integers(-30, 30, n).astype(np.int32)
    out = ctx.poisoned(2 * n, np.int32)
    ctx.run(nested_calls, 2, x, out, warps=2)
    a = x * x
    b = (a + 1) * (a + 1)
    s, d = a + b, b - a
    ctx.expect_equal(out, np.stack([s * 3 + d, (s - d) * (s - d)], axis=1).ravel())


@aw.kernel
async def branch_awaits(x: aw.Array[aw.i32], out: aw.Array[aw.i32]):
    i = global_lane()
    v = x[i]
    r = 0
    if v > 0:
        # lanes diverge: only these lanes suspend here
        await aw.yield_now()
        r = v + 1
    elif v < -50:
        r = await square_later(v)
    else:
        r = -v
    if aw.warp_id() == 1:
        # a warp-uniform branch with an await
        r = r + await square_later(aw.lane())
    out[i] = r


@case("async")
def await_in_branches(ctx: CaseContext) -> None:
    """awaits in lane-divergent if/elif/else arms and in a warp-uniform branch"""
    n = lanes(ctx, 2, 2)
    x = ctx.rng.integers(-100, 100, n).astype(np.int32)
    out = ctx.poisoned(n, np.int32)
    ctx.run(branch_awaits, 2, x, out, warps=2)
    r = np.where(x > 0, x + 1, np.where(x < -50, x * x, -x))
    idx = np.arange(n)
    r = r + np.where((idx // ctx.W) % 2 == 1, (idx % ctx.W) ** 2, 0)
    ctx.expect_equal(out, r.astype(np.int32))


@aw.kernel
async def loop_awaits(x: aw.Array[aw.i32], out: aw.Array[aw.i32], rounds: aw.i32):
    i = global_lane()
    acc = 0
    for k in range(x[i] % 6):
        # a lane-dependent trip count: each lane suspends a different number of times
        await aw.yield_now()
        acc += k + 1
    j = 0
    while j < rounds:
        acc = acc * 2 + await square_later(j)
        j += 1
    out[i] = acc


@case("async")
def await_in_loops(ctx: CaseContext) -> None:
    """awaits inside a for loop with divergent trip counts and a uniform while loop"""
    n = lanes(ctx, 2)
    rounds = 3
    x = ctx.rng.integers(0, 100, n).astype(np.int32)
    out = ctx.poisoned(n, np.int32)
    ctx.run(loop_awaits, 2, x, out, rounds)
    acc = np.array([sum(range(1, v % 6 + 1)) for v in x.tolist()], np.int64)
    for k in range(rounds):
        acc = acc * 2 + k * k
    ctx.expect_equal(out, acc.astype(np.int32))


@aw.kernel
async def bucket_locks(
    buckets: aw.Array[aw.i32],
    locks: aw.Array[aw.i32],
    counts: aw.Array[aw.i32],
    order: aw.Array[aw.i32],
    seq: aw.Array[aw.i32],
    n: aw.i32,
):
    i = global_lane()
    if i < n:
        # divergent context: every lane runs its own lock/unlock sequence, so a lane
        # holding a bucket's lock proceeds while a lane of the same warp still waits
        b = buckets[i]
        await aw.until(aw.atomic_cas(locks, b, 0, 1, order="acquire", scope="device") == 0)
        c = counts[b]
        order[i] = aw.atomic_add(seq, b, 1)
        counts[b] = c + 1
        aw.atomic_exchange(locks, b, 0, order="release", scope="device")


@case("async")
def divergent_lane_locks(ctx: CaseContext) -> None:
    """per-lane locks on random buckets with until(atomic_cas) in divergent lanes: no lost update"""
    blocks, warps = 2, 2
    total = lanes(ctx, blocks, warps)
    n = total - 5
    buckets = ctx.rng.integers(0, NBUCKETS, n).astype(np.int32)
    locks = np.zeros(NBUCKETS, np.int32)
    counts = np.zeros(NBUCKETS, np.int32)
    seq = np.zeros(NBUCKETS, np.int32)
    order = ctx.poisoned(n, np.int32)
    ctx.run(bucket_locks, blocks, buckets, locks, counts, order, seq, n, warps=warps)
    want = np.bincount(buckets, minlength=NBUCKETS).astype(np.int32)
    ctx.expect_equal(counts, want, what="locked counters")
    ctx.expect_equal(locks, np.zeros(NBUCKETS, np.int32), what="locks released")
    for b in range(NBUCKETS):
        check_permutation(ctx, order[buckets == b], int(want[b]), f"bucket {b} entry order")


# ------------------------------------------------------------------ join


@aw.func
async def producer_task(data, flags, x, i):
    v = await square_later(x[i])
    data[i] = v + 1
    aw.store(flags, i, 1, order="release")
    return aw.warp_id() + 7


@aw.func
async def consumer_task(data, flags, i):
    await aw.until(aw.load(flags, i, order="acquire") == 1)
    return data[i] * 2


@aw.kernel
async def join_results(
    x: aw.Array[aw.i32], data: aw.Array[aw.i32], flags: aw.Array[aw.i32], out: aw.Array[aw.i32]
):
    i = aw.block_id() * aw.WARP + aw.lane()
    w, v = await aw.join(producer_task(data, flags, x, i), consumer_task(data, flags, i))
    # after the join every branch has finished, and its result is the await's value on
    # every warp of the block (each warp writes its own copy of both results)
    k = (aw.warp_id() * aw.num_blocks() * aw.WARP + i) * 2
    out[k] = v
    out[k + 1] = w


@case("async")
def join_two_tasks(ctx: CaseContext) -> None:
    """top-level join(producer, consumer): consumer waits on the producer; results on all warps"""
    blocks = 3
    n = blocks * ctx.W
    x = ctx.rng.integers(-100, 100, n).astype(np.int32)
    data = ctx.poisoned(n, np.int32)
    flags = np.zeros(n, np.int32)
    out = ctx.poisoned(2 * 2 * n, np.int32)
    ctx.run(join_results, blocks, x, data, flags, out)
    ctx.expect_equal(data, x * x + 1, what="producer data")
    for warp in range(2):
        got = out[2 * n * warp : 2 * n * (warp + 1)]
        ctx.expect_equal(got[0::2], (x * x + 1) * 2, what=f"consumer result on warp {warp}")
        ctx.expect_equal(
            got[1::2],
            np.full(n, 7, np.int32),
            what=f"producer result on warp {warp} (branch 0 runs on warp 0)",
        )


@aw.func
async def stamp_after(seq, ns):
    await aw.sleep(ns)
    return aw.atomic_add(seq, global_warp(), 1)


@aw.kernel
async def nested_joins(
    x: aw.Array[aw.i32], out: aw.Array[aw.i32], log: aw.Array[aw.i32], seq: aw.Array[aw.i32]
):
    i = global_lane()
    v = x[i]
    acc = 0
    for r in range(2):
        # below the kernel's top level a join runs its branches interleaved on this warp
        a, b, c = await aw.join(square_later(v + r), square_later(v), ready_now(r))
        acc += a + b + c
        # two sleeps side by side on this warp; each stamps a per-warp sequence number
        fast, slow = await aw.join(stamp_after(seq, SHORT_NS), stamp_after(seq, LONG_NS))
        log[4 * i + 2 * r] = slow
        log[4 * i + 2 * r + 1] = fast
    out[i] = acc


@case("async")
def join_nested_results(ctx: CaseContext) -> None:
    """joins in a loop on one warp: results as a tuple, an immediately ready branch, sleeps"""
    n = lanes(ctx, 2, 2)
    x = ctx.rng.integers(-20, 20, n).astype(np.int32)
    out, log = ctx.poisoned(n, np.int32), ctx.poisoned(4 * n, np.int32)
    seq = np.zeros(n // ctx.W, np.int32)
    ctx.run(nested_joins, 2, x, out, log, seq, warps=2)
    want = x * x + x * x + (x + 1) * (x + 1) + x * x + 1
    ctx.expect_equal(out, want.astype(np.int32), what="join results")
    # Per warp: each round's join completes before the next round starts, so the 2W
    # stamps of round 0 are exactly 0..2W-1 and those of round 1 are 2W..4W-1. (Which
    # sleep stamps first is not checked: a host thread preempted between the two
    # branches' polls, as on a loaded CPU device, can let the long one finish first.)
    stamps = log.reshape(n // ctx.W, ctx.W, 2, 2)
    for r in range(2):
        got = np.sort(stamps[:, :, r, :].reshape(n // ctx.W, -1), axis=1)
        want = np.tile(np.arange(2 * r * ctx.W, 2 * (r + 1) * ctx.W), (n // ctx.W, 1))
        ctx.expect(
            bool((got == want).all()), f"round {r}: the sleeps' stamps are not the round's own"
        )
    ctx.expect_equal(seq, np.full(n // ctx.W, 4 * ctx.W, np.int32), what="stamp counts")


@aw.func
async def stepper(seq, log, slot):
    for s in range(STEPS):
        log[(slot * STEPS + s) * aw.WARP + aw.lane()] = aw.atomic_add(seq, global_warp(), 1)
        await aw.yield_now()


@aw.kernel
async def interleaved_steps(seq: aw.Array[aw.i32], log: aw.Array[aw.i32]):
    g = global_warp()
    for r in range(2):
        # below the top level both branches run on this warp, polled in order
        await aw.join(stepper(seq, log, (g * 2 + r) * 2), stepper(seq, log, (g * 2 + r) * 2 + 1))


@case("async")
def join_interleaving(ctx: CaseContext) -> None:
    """a join polls branches in order: steps separated by yield_now run a0 b0 a1 b1 a2 b2"""
    blocks, warps = 2, 2
    nwarps = blocks * warps
    seq = np.zeros(nwarps, np.int32)
    log = ctx.poisoned(nwarps * 2 * 2 * STEPS * ctx.W, np.int32)
    ctx.run(interleaved_steps, blocks, seq, log, warps=warps)
    ctx.expect_equal(seq, np.full(nwarps, 2 * 2 * STEPS * ctx.W, np.int32), what="steps run")
    stamps = log.reshape(nwarps, 2, 2, STEPS, ctx.W)
    # docs/async.md, Ordering: a ready branch runs to its next pending wait, then the next
    # branch is polled; yield_now is pending once, so the branches alternate step by step
    order = [(branch, step) for step in range(STEPS) for branch in range(2)]
    for g in range(nwarps):
        for r in range(2):
            t = stamps[g, r]
            ok = all(t[a].max() < t[b].min() for a, b in zip(order, order[1:], strict=False))
            ctx.expect(
                ok,
                f"warp {g} round {r}: steps did not alternate a0 b0 a1 b1 ...: "
                f"first stamps {[int(t[o].min()) for o in order]}",
            )


# ------------------------------------------------------------------ select


@aw.kernel
async def select_timeouts(flags: aw.Array[aw.i32], out: aw.Array[aw.i32]):
    i = global_lane()
    # nothing ever sets flags[0]: the sleep wins
    k1, v1 = await aw.select(wait_flag(flags, 0), timeout(SHORT_NS, -5))
    # a ready branch beats a long sleep, and is first in order anyway
    k2, v2 = await aw.select(timeout(LONG_NS, -6), ready_now(aw.lane()))
    # flags[2] is set before the kernel starts: the wait wins over the timeout
    k3, v3 = await aw.select(timeout(LONG_NS, -7), wait_flag(flags, 2))
    out[3 * i] = k1 * 100 + v1
    out[3 * i + 1] = k2 * 100 + v2
    out[3 * i + 2] = k3 * 100 + v3


@case("async")
def select_with_timeout(ctx: CaseContext) -> None:
    """aw.select(wait, sleep): the sleep wins when nothing comes, the wait when it is ready"""
    n = lanes(ctx, 2, 2)
    flags = np.array([0, 0, 1, 4321], np.int32)
    out = ctx.poisoned(3 * n, np.int32)
    ctx.run(select_timeouts, 2, flags, out, warps=2)
    lane = np.arange(n) % ctx.W
    want = np.stack([np.full(n, 100 - 5), 100 + lane, np.full(n, 100 + 4321)], axis=1)
    ctx.expect_equal(out, want.astype(np.int32).ravel())


@aw.func
async def recv_value(ch):
    v = await ch.recv()
    return v


@aw.kernel
async def select_cancel(x: aw.Array[aw.f32], out: aw.Array[aw.f32], idx: aw.Array[aw.i32]):
    ch = aw.Channel(aw.f32, 2)
    i = global_lane()
    await ch.send(x[i])
    # branch 0 is ready at once: the recv, ready too, loses and must consume nothing
    k1, v1 = await aw.select(ready_now(-1.0), recv_value(ch))
    v2 = await ch.recv()
    # the channel is now empty: the recv stays pending and the timeout wins
    k2, v3 = await aw.select(recv_value(ch), timeout(SHORT_NS, -2.0))
    await ch.send(x[i] * 3.0)
    k3, v4 = await aw.select(timeout(LONG_NS, -3.0), recv_value(ch))
    out[4 * i] = v1
    out[4 * i + 1] = v2
    out[4 * i + 2] = v3
    out[4 * i + 3] = v4
    idx[i] = k1 * 100 + k2 * 10 + k3


@case("async")
def select_cancel_safety(ctx: CaseContext) -> None:
    """a recv that loses a select consumed nothing: the message is still there afterwards"""
    blocks = 3  # one warp per block: each block's channel has a single user
    n = lanes(ctx, blocks)
    x = ctx.rng.standard_normal(n).astype(np.float32)
    out, idx = ctx.poisoned(4 * n, np.float32), ctx.poisoned(n, np.int32)
    ctx.run(select_cancel, blocks, x, out, idx)
    ctx.expect_equal(idx, np.full(n, 11, np.int32), what="select winners")
    rows = out.reshape(n, 4)
    ctx.expect_equal(rows[:, 0], np.full(n, -1.0, np.float32), what="ready branch value")
    # the first message was not lost: the next plain recv returns it, then the second
    ctx.expect_equal(rows[:, 1], x, what="the message a cancelled recv left behind")
    ctx.expect_equal(rows[:, 2], np.full(n, -2.0, np.float32), what="timeout value")
    ctx.expect_equal(rows[:, 3], x * np.float32(3), what="recv winning over a long timeout")


# ------------------------------------------------------------------ sleep and waits between warps


@aw.func
async def sleeper(seq, out, slot, ns):
    await aw.sleep(ns)
    out[slot * aw.WARP + aw.lane()] = aw.atomic_add(seq, aw.block_id(), 1)


@aw.kernel
async def sleep_race(seq: aw.Array[aw.i32], out: aw.Array[aw.i32]):
    b = aw.block_id()
    # the short sleeper is warp 0: devices that run a block's warps one after another
    # between barriers (lavapipe) poll it first in every round, so a host thread that is
    # preempted for longer than the long sleep cannot reorder the two
    await aw.join(sleeper(seq, out, 2 * b + 1, SHORT_NS), sleeper(seq, out, 2 * b, LONG_NS))


@case("async")
def sleep_ordering(ctx: CaseContext) -> None:
    """two warps (a top-level join) sleep 20 us and 0.2 us: the short sleeper finishes first"""
    blocks = 2
    seq = np.zeros(blocks, np.int32)
    out = ctx.poisoned(2 * blocks * ctx.W, np.int32)
    ctx.run(sleep_race, blocks, seq, out)
    ctx.expect_equal(seq, np.full(blocks, 2 * ctx.W, np.int32), what="every lane stamped")
    stamps = out.reshape(blocks, 2, ctx.W)
    slow, fast = stamps[:, 0], stamps[:, 1]
    ctx.expect(
        bool((fast.max(axis=1) < slow.min(axis=1)).all()),
        f"the {SHORT_NS} ns sleeper did not finish before the {LONG_NS} ns one",
    )


@aw.kernel
async def warp_handoff(x: aw.Array[aw.f32], flags: aw.Array[aw.i32], out: aw.Array[aw.f32]):
    i = aw.block_id() * aw.WARP + aw.lane()
    await aw.join(publish(x, flags, out, i), wait_and_read(flags, out, i))


@aw.func
async def publish(x, flags, out, i):
    await aw.yield_now()
    out[2 * i] = x[i] * 0.5
    aw.store(flags, i, 1, order="release", scope="device")


@aw.func
async def wait_and_read(flags, out, i):
    await aw.until(aw.load(flags, i, order="acquire", scope="device") != 0)
    out[2 * i + 1] = out[2 * i] + 1.0


@case("async")
def until_between_warps(ctx: CaseContext) -> None:
    """aw.until on a flag another warp releases: the waiter then sees the published data"""
    blocks = 3
    n = blocks * ctx.W
    x = ctx.rng.standard_normal(n).astype(np.float32)
    flags = np.zeros(n, np.int32)
    out = ctx.poisoned(2 * n, np.float32)
    ctx.run(warp_handoff, blocks, x, flags, out)
    half = x * np.float32(0.5)
    ctx.expect_equal(out, np.stack([half, half + np.float32(1)], axis=1).ravel())
