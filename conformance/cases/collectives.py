"""Warp collective cases at the context's W: reductions, scans, shuffles, ballots, any/all.

Every lane writes the collective's result, so a lane that did not receive the
warp-wide value fails; references reduce numpy rows of W lanes.
"""

import numpy as np

import asyncwarp as aw

from ..case import CaseContext, case
from ._common import global_lane, global_warp, lanes

BALLOT_PATTERNS = 6
XOR_MASKS = 6


def _rows(ctx: CaseContext, x: np.ndarray) -> np.ndarray:
    return x.reshape(-1, ctx.W)


def _per_lane(ctx: CaseContext, per_warp: np.ndarray) -> np.ndarray:
    """Broadcast one value per warp to its W lanes."""
    return np.repeat(per_warp, ctx.W)


# ------------------------------------------------------------------ reductions


@aw.kernel
def warp_reductions(x, out_sum, out_min, out_max):
    i = global_lane()
    v = x[i]
    out_sum[i] = aw.warp_sum(v)
    out_min[i] = aw.warp_min(v)
    out_max[i] = aw.warp_max(v)


def _register_reduction(dtype: str) -> None:
    def run(ctx: CaseContext) -> None:
        dt = np.dtype(dtype)
        n = lanes(ctx, 2, 2)
        if dt.kind == "f":
            x = ctx.rng.uniform(-1, 1, n).astype(dt)
        else:
            info = np.iinfo(dt)
            x = ctx.rng.integers(info.min, info.max, n, dtype=dt, endpoint=True)
            x[: ctx.W] = ctx.rng.integers(0, 5, ctx.W)  # one warp of small, repeated values
        outs = [ctx.poisoned(n, dt) for _ in range(3)]
        ctx.run(warp_reductions, 2, x, *outs, warps=2)
        rows = _rows(ctx, x)
        with np.errstate(all="ignore"):
            total = rows.sum(axis=1, dtype=dt)  # integer sums wrap, as on the device
        if dt.kind == "f":
            ctx.expect_close(outs[0], _per_lane(ctx, total), rtol=1e-5, atol=1e-5, what="warp_sum")
            ctx.expect(
                bool((outs[0].reshape(-1, ctx.W) == outs[0][:: ctx.W, None]).all()),
                "warp_sum: lanes of one warp received different f32 sums",
            )
        else:
            ctx.expect_equal(outs[0], _per_lane(ctx, total), what="warp_sum")
        ctx.expect_equal(outs[1], _per_lane(ctx, rows.min(axis=1)), what="warp_min")
        ctx.expect_equal(outs[2], _per_lane(ctx, rows.max(axis=1)), what="warp_max")

    run.__doc__ = f"warp_sum/min/max of {dtype} (integer sums wrap), every lane gets the result"
    case("collectives", f"reduce_{dtype}")(run)


for _dtype in ("int32", "uint32", "float32", "int64"):
    _register_reduction(_dtype)


@aw.kernel
def prefix_sums(x, out):
    i = global_lane()
    out[i] = aw.warp_prefix_sum(x[i])


@case("collectives")
def prefix_sum(ctx: CaseContext) -> None:
    """warp_prefix_sum is inclusive, for i32 (wrapping), u64 and f32"""
    n = lanes(ctx, 2, 2)
    for dtype in ("int32", "uint64", "float32"):
        dt = np.dtype(dtype)
        if dt.kind == "f":
            x = ctx.rng.uniform(-1, 1, n).astype(dt)
        else:
            info = np.iinfo(dt)
            x = ctx.rng.integers(info.min, info.max, n, dtype=dt, endpoint=True)
        out = ctx.poisoned(n, dt)
        ctx.run(prefix_sums, 2, x, out, warps=2)
        with np.errstate(all="ignore"):
            want = np.cumsum(_rows(ctx, x), axis=1, dtype=dt).ravel()
        if dt.kind == "f":
            ctx.expect_close(out, want, rtol=1e-5, atol=1e-5, what=f"{dtype} prefix sum")
        else:
            ctx.expect_equal(out, want, what=f"{dtype} prefix sum")


# ------------------------------------------------------------------ shuffles


@aw.kernel
def shuffles(x, src: aw.Array[aw.i32], out, out_bcast):
    i = global_lane()
    v = x[i]
    out[i] = aw.shuffle(v, src[i])
    out_bcast[i] = aw.shuffle(v, aw.WARP - 1) + aw.shuffle(v, 0)


@case("collectives")
def shuffle_random_sources(ctx: CaseContext) -> None:
    """shuffle from random source lanes (sources >= W wrap mod W), and broadcasts, i32 and f64"""
    n = lanes(ctx, 2, 2)
    src = ctx.rng.integers(0, 2 * ctx.W, n).astype(np.int32)
    lane_base = (np.arange(n) // ctx.W) * ctx.W
    for dtype in ("int32", "float64"):
        dt = np.dtype(dtype)
        x = (
            ctx.rng.integers(-(2**30), 2**30, n) if dt.kind == "i" else ctx.rng.standard_normal(n)
        ).astype(dt)
        out, bcast = ctx.poisoned(n, dt), ctx.poisoned(n, dt)
        ctx.run(shuffles, 2, x, src, out, bcast, warps=2)
        ctx.expect_equal(out, x[lane_base + src % ctx.W], what=f"{dtype} shuffle")
        rows = _rows(ctx, x)
        ctx.expect_equal(bcast, _per_lane(ctx, rows[:, -1] + rows[:, 0]), what=f"{dtype} broadcast")


@aw.kernel
def xor_shuffles(x: aw.Array[aw.u32], masks: aw.Array[aw.i32], out: aw.Array[aw.u32]):
    i = global_lane()
    n = aw.num_blocks() * aw.num_warps() * aw.WARP
    v = x[i]
    for k in range(XOR_MASKS):
        # the mask is loaded at a uniform index, so the collective stays warp-uniform
        out[k * n + i] = aw.shuffle_xor(v, masks[k])


@case("collectives")
def shuffle_xor_masks(ctx: CaseContext) -> None:
    """shuffle_xor with masks 1, 2, 5, W-1, W/2 and W+3 (lane ^ mask wraps mod W)"""
    n = lanes(ctx, 2, 2)
    masks = np.array([1, 2, 5, ctx.W - 1, ctx.W // 2, ctx.W + 3], dtype=np.int32)
    x = ctx.rng.integers(0, 2**32, n, dtype=np.uint32)
    out = ctx.poisoned(XOR_MASKS * n, np.uint32)
    ctx.run(xor_shuffles, 2, x, masks, out, warps=2)
    idx = np.arange(n)
    base, lane = idx - idx % ctx.W, idx % ctx.W
    want = np.concatenate([x[base + (lane ^ m) % ctx.W] for m in masks])
    ctx.expect_equal(out, want, what="shuffle_xor")


# ------------------------------------------------------------------ ballots and votes


@aw.kernel
def ballots(x: aw.Array[aw.f32], single: aw.i32, out: aw.Array[aw.u64]):
    i = global_lane()
    n = aw.num_blocks() * aw.num_warps() * aw.WARP
    ln = aw.lane()
    out[i] = aw.ballot(ln % 3 == 0)
    out[n + i] = aw.ballot(ln == single)
    out[2 * n + i] = aw.ballot(True)
    out[3 * n + i] = aw.ballot(x[i] > 10.0)
    out[4 * n + i] = aw.ballot(x[i] > 0.3)
    out[5 * n + i] = aw.ballot(ln == aw.WARP - 1 or ln == 0)


def _mask(bits: np.ndarray) -> np.ndarray:
    """u64 ballot masks of rows of bools (bit i = lane i)."""
    weights = np.left_shift(np.uint64(1), np.arange(bits.shape[1], dtype=np.uint64))
    return (bits.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)


@case("collectives")
def ballot_patterns(ctx: CaseContext) -> None:
    """ballot of every third lane, one lane, all, none, random data, first+last lane (u64 mask)"""
    n = lanes(ctx, 2, 2)
    single = int(ctx.rng.integers(0, ctx.W))
    x = ctx.rng.uniform(0, 1, n).astype(np.float32)
    out = ctx.poisoned(BALLOT_PATTERNS * n, np.uint64)
    ctx.run(ballots, 2, x, single, out, warps=2)
    lane = np.arange(ctx.W)
    warps = n // ctx.W
    patterns = [
        np.tile(lane % 3 == 0, (warps, 1)),
        np.tile(lane == single, (warps, 1)),
        np.ones((warps, ctx.W), bool),
        np.zeros((warps, ctx.W), bool),
        _rows(ctx, x > np.float32(0.3)),
        np.tile((lane == 0) | (lane == ctx.W - 1), (warps, 1)),
    ]
    names = ["every third", "single", "all", "none", "random", "first+last"]
    for k, (bits, name) in enumerate(zip(patterns, names, strict=True)):
        ctx.expect_equal(
            out[k * n : (k + 1) * n], _per_lane(ctx, _mask(bits)), what=f"ballot {name}"
        )


@aw.kernel
def votes(x: aw.Array[aw.i32], out: aw.Array[aw.i32]):
    i = global_lane()
    v = x[i]
    r = aw.i32(aw.warp_any(v > 0)) | (aw.i32(aw.warp_all(v > 0)) << 1)
    r = r | (aw.i32(aw.warp_any(v < 0)) << 2) | (aw.i32(aw.warp_all(v >= 0)) << 3)
    out[i] = r


@case("collectives")
def any_all(ctx: CaseContext) -> None:
    """warp_any/warp_all over warps with none, one, all-but-one and all lanes set"""
    warps = 4
    n = lanes(ctx, 1, warps)
    rows = np.zeros((warps, ctx.W), np.int32)
    one, skip = ctx.rng.integers(0, ctx.W, 2)
    rows[1, one] = 7
    rows[2, :] = ctx.rng.integers(1, 100, ctx.W)
    rows[2, skip] = -3
    rows[3, :] = ctx.rng.integers(1, 100, ctx.W)
    out = ctx.poisoned(n, np.int32)
    ctx.run(votes, 1, rows.ravel(), out, warps=warps)
    want = (
        (rows > 0).any(1) * 1
        | (rows > 0).all(1) * 2
        | (rows < 0).any(1) * 4
        | (rows >= 0).all(1) * 8
    ).astype(np.int32)
    ctx.expect_equal(out, _per_lane(ctx, want), what="any/all")


# ------------------------------------------------------------------ collectives in control flow


@aw.kernel
def uniform_loops(
    x: aw.Array[aw.f32], rounds: aw.i32, out: aw.Array[aw.f32], trips: aw.Array[aw.i32]
):
    i = global_lane()
    n = aw.num_blocks() * aw.num_warps() * aw.WARP
    acc = 0.0
    for k in range(rounds):
        acc += aw.warp_max(x[k * n + i]) - x[k * n + i]
    out[i] = acc
    # a loop whose exit is a collective is warp-uniform: every lane leaves together
    v = x[i] * 8.0
    t = 0
    while aw.warp_any(v > 1.0):
        v = v * 0.5
        t += 1
    trips[i] = t


@case("collectives")
def collectives_in_uniform_loops(ctx: CaseContext) -> None:
    """warp_max in a for loop with a run-time trip count; a while loop exited by warp_any"""
    n = lanes(ctx, 2, 2)
    rounds = 5
    x = ctx.rng.uniform(0, 1, rounds * n).astype(np.float32)
    # per-warp scales make the while loop's trip count differ between warps
    x[:n] *= np.repeat(ctx.rng.choice([0.05, 0.3, 1.0, 4.0], n // ctx.W), ctx.W).astype(np.float32)
    out, trips = ctx.poisoned(n, np.float32), ctx.poisoned(n, np.int32)
    ctx.run(uniform_loops, 2, x, rounds, out, trips, warps=2)
    parts = x.reshape(rounds, n)
    want = sum(np.repeat(_rows(ctx, p).max(axis=1), ctx.W) - p for p in parts)
    ctx.expect_close(out, want, rtol=1e-6, atol=1e-6, what="loop of warp_max")
    want_trips = []
    for row in _rows(ctx, x[:n] * np.float32(8)):
        t = 0
        while (row > 1).any():
            row = row * np.float32(0.5)
            t += 1
        want_trips.append(t)
    ctx.expect_equal(
        trips, _per_lane(ctx, np.array(want_trips, np.int32)), what="warp_any loop trip counts"
    )


@aw.kernel
def warp_roles(x: aw.Array[aw.i32], out: aw.Array[aw.i32]):
    i = global_lane()
    v = x[i]
    w = aw.warp_id()
    r = 0
    if w % 3 == 0:
        r = aw.warp_sum(v)
    elif w % 3 == 1:
        r = aw.warp_max(v) - aw.shuffle(v, w)
    else:
        r = aw.warp_prefix_sum(v) + aw.shuffle_xor(v, 1)
    out[i] = r + aw.warp_min(v) * aw.num_warps()
    if aw.warp_id() == 1:
        out[i] = aw.warp_prefix_sum(v) - global_warp()


@case("collectives")
def warp_id_branches(ctx: CaseContext) -> None:
    """several warps per block take warp_id-based branches, each with its own collectives"""
    warps = 5
    n = lanes(ctx, 2, warps)
    x = ctx.rng.integers(-1000, 1000, n).astype(np.int32)
    out = ctx.poisoned(n, np.int32)
    ctx.run(warp_roles, 2, x, out, warps=warps)
    want = []
    for g, row in enumerate(_rows(ctx, x)):
        w = g % warps
        lane = np.arange(ctx.W)
        if w == 1:
            want.append(np.cumsum(row) - g)
            continue
        if w % 3 == 0:
            r = np.full(ctx.W, row.sum())
        elif w % 3 == 1:
            r = np.full(ctx.W, row.max() - row[w])
        else:
            r = np.cumsum(row) + row[lane ^ 1]
        want.append(r + row.min() * warps)
    ctx.expect_equal(out, np.concatenate(want).astype(np.int32), what="per-warp roles")


@aw.kernel
def after_divergence(x: aw.Array[aw.i32], cut: aw.i32, out: aw.Array[aw.i32]):
    i = global_lane()
    v = x[i]
    if aw.lane() < cut:
        v = v * 3
        for k in range(aw.lane() % 4):
            v = v + k
    else:
        v = -v
    # the lanes reconverge after the divergent if: collectives are allowed again
    out[i] = aw.warp_sum(v) + aw.shuffle(v, aw.lane() + 1)


@case("collectives")
def collectives_after_divergence(ctx: CaseContext) -> None:
    """lanes diverge (if on lane, loop with lane-dependent trips) then reconverge for warp_sum"""
    n = lanes(ctx, 2)
    cut = int(ctx.rng.integers(1, ctx.W))
    x = ctx.rng.integers(-1000, 1000, n).astype(np.int32)
    out = ctx.poisoned(n, np.int32)
    ctx.run(after_divergence, 2, x, cut, out)
    lane = np.arange(n) % ctx.W
    extra = np.array([sum(range(ln % 4)) for ln in lane])
    v = np.where(lane < cut, x * 3 + extra, -x).astype(np.int32)
    rows = _rows(ctx, v)
    lane_w = np.arange(ctx.W)
    want = (rows.sum(axis=1)[:, None] + rows[:, (lane_w + 1) % ctx.W]).astype(np.int32)
    ctx.expect_equal(out, want.ravel(), what="collectives after divergence")
