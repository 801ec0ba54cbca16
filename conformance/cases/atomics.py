"""Atomic cases: histograms, float sums, min/max, bitwise ops, exchange, CAS counters and locks.

Between them the cases use every memory order (relaxed, acquire, release,
acq_rel, seq_cst) and every scope (warp, block, device), on global and block
memory. Atomics return the old value; where the result is a set of tickets the
check is that they form a permutation.
"""

import numpy as np

import asyncwarp as aw

from ..case import CaseContext, case
from ._common import check_permutation, device_caps, global_lane, lanes

NBINS = 16


@aw.kernel
def global_histogram(keys: aw.Array[aw.i32], hist: aw.Array[aw.i32], n: aw.i32):
    i = global_lane()
    if i < n:
        aw.atomic_add(hist, keys[i] % NBINS, 1, order="relaxed", scope="device")


@case("atomics")
def histogram_i32_global(ctx: CaseContext) -> None:
    """atomic_add (relaxed, device scope) histogram in global memory across blocks and warps"""
    n = lanes(ctx, 4, 2) - 11
    keys = ctx.rng.integers(0, 1000, n).astype(np.int32)
    hist = np.zeros(NBINS, np.int32)  # the counters start at zero by definition
    ctx.run(global_histogram, 4, keys, hist, n, warps=2)
    ctx.expect_equal(hist, np.bincount(keys % NBINS, minlength=NBINS).astype(np.int32))


@aw.kernel
def shared_histogram(keys: aw.Array[aw.u32], hist: aw.Array[aw.u32]):
    local = aw.shared(aw.u32, NBINS)
    t = aw.warp_id() * aw.WARP + aw.lane()
    if t < NBINS:
        local[t] = 0
    aw.barrier()
    aw.atomic_add(local, keys[global_lane()] % NBINS, 1, scope="block")
    aw.barrier()
    if t < NBINS:
        aw.atomic_add(hist, t, local[t], order="relaxed", scope="device")


@case("atomics")
def histogram_u32_shared(ctx: CaseContext) -> None:
    """u32 histogram in block memory (block scope), merged into global memory after a barrier"""
    blocks, warps = 3, 2
    n = lanes(ctx, blocks, warps)
    keys = ctx.rng.integers(0, 2**32, n, dtype=np.uint32)
    keys[: n // 3] = 5  # a hot bin: heavy contention on one counter
    hist = np.full(NBINS, 1000, np.uint32)
    ctx.run(shared_histogram, blocks, keys, hist, warps=warps)
    want = np.bincount(keys % NBINS, minlength=NBINS).astype(np.uint32) + 1000
    ctx.expect_equal(hist, want)


@aw.kernel
def float_sums(x: aw.Array[aw.f32], keys: aw.Array[aw.i32], sums: aw.Array[aw.f32]):
    i = global_lane()
    aw.atomic_add(sums, keys[i], x[i])
    aw.atomic_add(sums, NBINS, x[i] * 0.5, order="acq_rel", scope="device")


@case("atomics")
def sum_f32(ctx: CaseContext) -> None:
    """f32 atomic_add per bin and into one total (order of additions varies: tolerance)"""
    n = lanes(ctx, 3, 2)
    x = ctx.rng.uniform(-1, 1, n).astype(np.float32)
    keys = ctx.rng.integers(0, NBINS, n).astype(np.int32)
    sums = ctx.rng.uniform(-1, 1, NBINS + 1).astype(np.float32)
    want = sums.astype(np.float64)
    np.add.at(want, keys, x.astype(np.float64))
    want[NBINS] += 0.5 * x.astype(np.float64).sum()
    ctx.run(float_sums, 3, x, keys, sums, warps=2)
    ctx.expect_close(sums, want, rtol=1e-5, atol=1e-4, what="f32 atomic sums")


@aw.kernel
def extremes(
    x: aw.Array[aw.i32],
    u: aw.Array[aw.u32],
    keys: aw.Array[aw.i32],
    imin: aw.Array[aw.i32],
    imax: aw.Array[aw.i32],
    umin: aw.Array[aw.u32],
    umax: aw.Array[aw.u32],
):
    i = global_lane()
    k = keys[i]
    aw.atomic_min(imin, k, x[i])
    aw.atomic_max(imax, k, x[i], order="release", scope="device")
    aw.atomic_min(umin, k, u[i], order="acquire")
    aw.atomic_max(umax, k, u[i], order="seq_cst", scope="device")


@case("atomics")
def min_max(ctx: CaseContext) -> None:
    """atomic_min/max on signed (negatives) and unsigned (above 2**31) values per bin"""
    n = lanes(ctx, 3, 2)
    x = ctx.rng.integers(-(2**31), 2**31, n, dtype=np.int64).astype(np.int32)
    u = ctx.rng.integers(0, 2**32, n, dtype=np.uint32)
    keys = ctx.rng.integers(0, NBINS, n).astype(np.int32)
    imin = np.full(NBINS, 2**31 - 1, np.int32)
    imax = np.full(NBINS, -(2**31), np.int32)
    umin = np.full(NBINS, 2**32 - 1, np.uint32)
    umax = np.zeros(NBINS, np.uint32)
    ctx.run(extremes, 3, x, u, keys, imin, imax, umin, umax, warps=2)
    want = [
        np.full(NBINS, v, dt)
        for v, dt in (
            (2**31 - 1, np.int32),
            (-(2**31), np.int32),
            (2**32 - 1, np.uint32),
            (0, np.uint32),
        )
    ]
    np.minimum.at(want[0], keys, x)
    np.maximum.at(want[1], keys, x)
    np.minimum.at(want[2], keys, u)
    np.maximum.at(want[3], keys, u)
    for got, ref, what in zip(
        (imin, imax, umin, umax), want, ("i32 min", "i32 max", "u32 min", "u32 max"), strict=True
    ):
        ctx.expect_equal(got, ref, what=what)


@aw.kernel
def bit_atomics(
    bits: aw.Array[aw.u32],
    keys: aw.Array[aw.i32],
    ands: aw.Array[aw.u32],
    ors: aw.Array[aw.u32],
    xors: aw.Array[aw.u32],
):
    i = global_lane()
    k = keys[i]
    aw.atomic_and(ands, k, bits[i] | aw.u32(0x0F0F0F0F), scope="device")
    aw.atomic_or(ors, k, bits[i] & aw.u32(0x00FF00FF))
    aw.atomic_xor(xors, k, bits[i], order="acq_rel")


@case("atomics")
def and_or_xor(ctx: CaseContext) -> None:
    """atomic_and/or/xor on u32 words from many lanes per word"""
    n = lanes(ctx, 2, 2)
    bits = ctx.rng.integers(0, 2**32, n, dtype=np.uint32)
    keys = ctx.rng.integers(0, NBINS, n).astype(np.int32)
    init = ctx.rng.integers(0, 2**32, 3 * NBINS, dtype=np.uint32)
    ands, ors, xors = (init[k * NBINS : (k + 1) * NBINS].copy() for k in range(3))
    want = [a.copy() for a in (ands, ors, xors)]
    np.bitwise_and.at(want[0], keys, bits | np.uint32(0x0F0F0F0F))
    np.bitwise_or.at(want[1], keys, bits & np.uint32(0x00FF00FF))
    np.bitwise_xor.at(want[2], keys, bits)
    ctx.run(bit_atomics, 2, bits, keys, ands, ors, xors, warps=2)
    for got, ref, what in zip((ands, ors, xors), want, ("and", "or", "xor"), strict=True):
        ctx.expect_equal(got, ref, what=what)


@aw.kernel
def exchanges(slot: aw.Array[aw.i64], olds: aw.Array[aw.i64]):
    i = global_lane()
    olds[i] = aw.atomic_exchange(slot, 0, aw.i64(i) + 1000000000000, order="seq_cst")


@case("atomics")
def exchange_chain(ctx: CaseContext) -> None:
    """atomic_exchange (seq_cst) on one i64 word: the old values and the final one are a chain"""
    n = lanes(ctx, 2, 2)
    if not device_caps(ctx).int64_atomics:
        ctx.skip("the device has no 64-bit atomics")
    init = np.array([-7], np.int64)
    slot, olds = init.copy(), ctx.poisoned(n, np.int64)
    ctx.run(exchanges, 2, slot, olds, warps=2)
    written = np.arange(n, dtype=np.int64) + 1000000000000
    # every value written is read back exactly once, by the next exchange or at the end
    ctx.expect_equal(
        np.sort(np.concatenate([olds, slot])),
        np.sort(np.concatenate([init, written])),
        what="exchanged values",
    )


@aw.kernel
def cas_counter(counter: aw.Array[aw.i32], tickets: aw.Array[aw.i32]):
    i = global_lane()
    done = False
    while not done:
        old = aw.load(counter, 0, order="relaxed")
        got = aw.atomic_cas(counter, 0, old, old + 1, order="acq_rel", scope="device")
        if got == old:
            tickets[i] = old
            done = True


@case("atomics")
def cas_increment(ctx: CaseContext) -> None:
    """lock-free increments with atomic_cas retry loops: tickets are a permutation"""
    n = lanes(ctx, 2, 2)
    counter, tickets = np.zeros(1, np.int32), ctx.poisoned(n, np.int32)
    ctx.run(cas_counter, 2, counter, tickets, warps=2)
    ctx.expect_equal(counter, np.array([n], np.int32), what="final counter")
    check_permutation(ctx, tickets, n, "CAS tickets")


@aw.kernel
def locked_sums(
    x: aw.Array[aw.i32],
    total: aw.Array[aw.i32],
    block_totals: aw.Array[aw.i32],
    glock: aw.Array[aw.i32],
):
    lock = aw.shared(aw.i32, 1)
    acc = aw.shared(aw.i32, 1)
    if aw.warp_id() == 0 and aw.lane() == 0:
        lock[0] = 0
        acc[0] = 0
    aw.barrier()
    i = global_lane()
    # the critical section sits inside the retry loop, so a lane that wins the
    # lock never waits for a lane of its own warp (no intra-warp progress needed)
    done = False
    while not done:
        if aw.atomic_cas(lock, 0, 0, 1, order="acquire", scope="block") == 0:
            acc[0] = acc[0] + x[i]
            aw.atomic_exchange(lock, 0, 0, order="release", scope="block")
            done = True
    done = False
    while not done:
        if aw.atomic_cas(glock, 0, 0, 1, order="acquire", scope="device") == 0:
            total[0] = total[0] + x[i]
            aw.store(glock, 0, 0, order="release", scope="device")
            done = True
    aw.barrier()
    if aw.warp_id() == 0 and aw.lane() == 0:
        block_totals[aw.block_id()] = acc[0]


@case("atomics")
def cas_lock(ctx: CaseContext) -> None:
    """spin locks by atomic_cas (acquire) and release stores, in block and global memory"""
    blocks, warps = 3, 2
    n = lanes(ctx, blocks, warps)
    x = ctx.rng.integers(-1000, 1000, n).astype(np.int32)
    total = np.array([123], np.int32)
    glock = np.zeros(1, np.int32)
    block_totals = ctx.poisoned(blocks, np.int32)
    ctx.run(locked_sums, blocks, x, total, block_totals, glock, warps=warps)
    ctx.expect_equal(total, np.array([123 + x.sum()], np.int32), what="global locked sum")
    ctx.expect_equal(
        block_totals,
        x.reshape(blocks, -1).sum(axis=1).astype(np.int32),
        what="per-block locked sums",
    )
    ctx.expect_equal(glock, np.zeros(1, np.int32), what="global lock released")


@aw.kernel
def warp_scope_counts(x: aw.Array[aw.i32], out: aw.Array[aw.i32], tickets: aw.Array[aw.i32]):
    counts = aw.shared(aw.i32, 8)
    w = aw.warp_id()
    if aw.lane() == 0:
        counts[w] = 0
    aw.warp_sync()
    # only the lanes of warp w touch counts[w]: warp scope suffices
    t = aw.atomic_add(counts, w, 1, order="relaxed", scope="warp")
    aw.atomic_add(counts, w, x[global_lane()] * 16, scope="warp")
    aw.warp_sync()
    tickets[global_lane()] = t % 16
    out[global_lane()] = aw.load(counts, w, order="acquire", scope="warp")


@case("atomics")
def warp_scope(ctx: CaseContext) -> None:
    """warp-scope atomics on a per-warp counter in block memory, ordered by warp_sync"""
    blocks, warps = 2, 3
    n = lanes(ctx, blocks, warps)
    x = ctx.rng.integers(0, 1000, n).astype(np.int32)
    out, tickets = ctx.poisoned(n, np.int32), ctx.poisoned(n, np.int32)
    ctx.run(warp_scope_counts, blocks, x, out, tickets, warps=warps)
    rows = x.reshape(-1, ctx.W)
    want = np.repeat(rows.sum(axis=1) * 16 + ctx.W, ctx.W).astype(np.int32)
    ctx.expect_equal(out, want, what="per-warp totals")
    for g, row in enumerate(tickets.reshape(-1, ctx.W)):
        # adds of x*16 leave a ticket's value mod 16 alone, so whatever the interleaving the
        # tickets mod 16 are the ranks 0..W-1 of the +1 adds, mod 16
        ctx.expect_equal(np.sort(row), np.sort(np.arange(ctx.W) % 16), what=f"warp {g} tickets")
