"""Memory cases: block memory with barriers and warp_sync, strided and wide accesses, large grids.

Block memory starts as garbage (the interpreter poisons it), so every value a
kernel reads from it must have been written and published by a barrier first.
"""

import numpy as np

import asyncwarp as aw

from ..case import CaseContext, case
from ._common import global_lane, lanes

MAX_WARPS = 4  # block memory is sized for up to this many warps per block
BIG = 1 << 40  # a module constant that needs 64 bits
NEAR_ONE = 1.0 + 1e-12  # distinguishable from 1.0 only in f64


@aw.kernel
def block_reverse(x: aw.Array[aw.f32], out: aw.Array[aw.f32]):
    buf = aw.shared(aw.f32, MAX_WARPS * aw.WARP)
    size = aw.num_warps() * aw.WARP
    t = aw.warp_id() * aw.WARP + aw.lane()
    base = aw.block_id() * size
    buf[t] = x[base + t]
    aw.barrier()
    out[base + t] = buf[size - 1 - t]


@case("memory")
def shared_reverse(ctx: CaseContext) -> None:
    """aw.shared + aw.barrier(): each block reverses its slice (every warp reads others' writes)"""
    blocks, warps = 3, MAX_WARPS
    n = lanes(ctx, blocks, warps)
    x = ctx.rng.standard_normal(n).astype(np.float32)
    out = ctx.poisoned(n, np.float32)
    ctx.run(block_reverse, blocks, x, out, warps=warps)
    ctx.expect_equal(out, x.reshape(blocks, -1)[:, ::-1].ravel(), what="reversed blocks")


@aw.kernel
def warp_rotation(x: aw.Array[aw.i32], out: aw.Array[aw.i32]):
    buf = aw.shared(aw.i32, MAX_WARPS * aw.WARP)
    nw = aw.num_warps()
    w = aw.warp_id()
    ln = aw.lane()
    base = aw.block_id() * nw * aw.WARP
    # phase 1: warp w publishes its slice; warp w reads warp w+1's slice backwards
    buf[w * aw.WARP + ln] = x[base + w * aw.WARP + ln]
    aw.barrier()
    a = buf[((w + 1) % nw) * aw.WARP + aw.WARP - 1 - ln]
    aw.barrier()
    # phase 2: the same memory is reused; the second barrier keeps phase-1 readers safe
    buf[w * aw.WARP + ln] = a * 2 + w
    aw.barrier()
    out[base + w * aw.WARP + ln] = buf[((w + nw - 1) % nw) * aw.WARP + ln] - a


@case("memory")
def shared_across_warps(ctx: CaseContext) -> None:
    """block memory exchanged between warps over two barrier-separated phases (reuse)"""
    blocks, warps = 2, MAX_WARPS
    n = lanes(ctx, blocks, warps)
    x = ctx.rng.integers(-(2**20), 2**20, n).astype(np.int32)
    out = ctx.poisoned(n, np.int32)
    ctx.run(warp_rotation, blocks, x, out, warps=warps)
    xs = x.reshape(blocks, warps, ctx.W)
    a = np.roll(xs, -1, axis=1)[:, :, ::-1]
    phase2 = a * 2 + np.arange(warps)[None, :, None]
    want = np.roll(phase2, 1, axis=1) - a
    ctx.expect_equal(out, want.astype(np.int32).ravel(), what="rotated slices")


@aw.kernel
def warp_exchange(x: aw.Array[aw.f64], shift: aw.i32, out: aw.Array[aw.f64]):
    buf = aw.shared(aw.f64, MAX_WARPS * aw.WARP)
    i = global_lane()
    base = aw.warp_id() * aw.WARP
    buf[base + aw.lane()] = x[i] * 0.5
    # the lanes of one warp meet: their block-memory writes are visible to each other
    aw.warp_sync()
    out[i] = buf[base + (aw.lane() + shift) % aw.WARP]


@case("memory")
def warp_sync_exchange(ctx: CaseContext) -> None:
    """lanes exchange f64 through block memory ordered by aw.warp_sync() (no block barrier)"""
    blocks, warps = 2, 3
    n = lanes(ctx, blocks, warps)
    shift = int(ctx.rng.integers(1, ctx.W))
    x = ctx.rng.standard_normal(n)
    out = ctx.poisoned(n, np.float64)
    ctx.run(warp_exchange, blocks, x, shift, out, warps=warps)
    rows = (x * 0.5).reshape(-1, ctx.W)
    ctx.expect_equal(out, np.roll(rows, -shift, axis=1).ravel(), what="warp exchange")


@aw.kernel
def strided_copy(
    x: aw.Array[aw.f32], out: aw.Array[aw.f32], n: aw.i32, stride: aw.i32, offset: aw.i32
):
    i = global_lane()
    if i < n:
        out[i * stride + offset] = x[(n - 1 - i) * (stride + 1)]


@case("memory")
def strided_access(ctx: CaseContext) -> None:
    """non-unit strides on reads and writes; elements between the strides stay untouched"""
    n = lanes(ctx, 2, 2) - 3
    stride, offset = 3, 1
    x = ctx.rng.standard_normal(n * (stride + 1)).astype(np.float32)
    out = ctx.poisoned(n * stride + offset, np.float32)
    ctx.run(strided_copy, 2, x, out, n, stride, offset, warps=2)
    want = np.full(out.shape, np.nan, np.float32)
    want[offset::stride] = x[:: stride + 1][::-1]
    ctx.expect_equal(out[offset::stride], want[offset::stride], what="strided elements")
    untouched = np.ones(out.shape, bool)
    untouched[offset::stride] = False
    ctx.expect(bool(np.isnan(out[untouched]).all()), "elements between strides were written")


@aw.kernel
def wide_values(
    k: aw.Array[aw.i64],
    u: aw.Array[aw.u64],
    d: aw.Array[aw.f64],
    ok: aw.Array[aw.i64],
    ou: aw.Array[aw.u64],
    od: aw.Array[aw.f64],
):
    i = global_lane()
    ok[i] = k[i] * 3 + BIG - aw.i64(i)
    ou[i] = (u[i] >> 7) ^ (u[i] << 13)
    od[i] = d[i] * NEAR_ONE + aw.f64(k[i])


@case("memory")
def wide_types(ctx: CaseContext) -> None:
    """i64/u64/f64 arrays: values beyond 32 bits and f64 precision survive loads and stores"""
    n = lanes(ctx, 2, 2)
    k = ctx.rng.integers(-(2**60), 2**60, n, dtype=np.int64)
    u = ctx.rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    d = ctx.rng.standard_normal(n) * 1e6
    ok_, ou, od = ctx.poisoned(n, np.int64), ctx.poisoned(n, np.uint64), ctx.poisoned(n, np.float64)
    ctx.run(wide_values, 2, k, u, d, ok_, ou, od, warps=2)
    with np.errstate(all="ignore"):
        ctx.expect_equal(ok_, k * 3 + BIG - np.arange(n, dtype=np.int64), what="i64")
        ctx.expect_equal(ou, (u >> np.uint64(7)) ^ (u << np.uint64(13)), what="u64")
    ctx.expect_equal(od, d * NEAR_ONE + k.astype(np.float64), what="f64")


@aw.kernel
def grid_stride(x: aw.Array[aw.f32], out: aw.Array[aw.f32], n: aw.i32):
    total = aw.num_blocks() * aw.num_warps() * aw.WARP
    for j in range(global_lane(), n, total):
        out[j] = x[j] * 2.0 + aw.f32(aw.block_id())


@case("memory")
def large_grid(ctx: CaseContext) -> None:
    """many blocks with a grid-stride loop over more elements than lanes"""
    blocks = 48
    n = lanes(ctx, blocks) * 2 + 17
    x = ctx.rng.standard_normal(n).astype(np.float32)
    out = ctx.poisoned(n, np.float32)
    ctx.run(grid_stride, blocks, x, out, n)
    block_of = (np.arange(n) % lanes(ctx, blocks)) // ctx.W
    ctx.expect_equal(out, x * np.float32(2) + block_of.astype(np.float32), what="grid stride")
