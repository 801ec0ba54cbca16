"""lower_async: futures -> state machines and executors, checked end to end on the interpreter.

Hand-built logical IR first (the pass's own contract), then kernels written as
`async def` source through the frontend. Every result is compared with a numpy
reference on random data, outputs poisoned first; independent and cooperative
progress must agree.
"""

import numpy as np
import pytest

import asyncwarp as aw
from asyncwarp.core import interpreter, ir, uniformity
from asyncwarp.core.errors import CompileError, DeadlockError
from asyncwarp.core.frontend import compile_function
from asyncwarp.core.passes.fold_lanes import fold_lanes
from asyncwarp.core.passes.lower_async import WatchdogWords, decode_watchdog, lower_async
from asyncwarp.core.types import ArrayType, bool_, from_dtype, i32, u32
from asyncwarp.core.verify import verify

PROGRESS = ("independent", "cooperative")
WEAK = {"order": "weak", "scope": "device"}  # attrs of plain indexing


def C(value, t=i32) -> ir.Const:
    return ir.Const(value, t)


def arr(name: str, t) -> ir.Var:
    return ir.Var(name, ArrayType(t, "global"))


def poisoned(n: int, dtype) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return np.full(n, np.nan, dtype=dt)
    return np.full(n, np.iinfo(dt).max - 0x1234, dtype=dt)


def run_lowered(
    kernel: ir.Kernel,
    grid: int,
    args: list,
    *,
    H: int | None = None,
    scheduler: str = "round_robin",
    seed: int = 0,
    **lower,
) -> ir.Kernel:
    """lower_async -> fold_lanes -> interpreter; returns the async-lowered kernel."""
    lowered = lower_async(kernel, **{"executor": "block_on", "warps": None, **lower})
    W = kernel.attrs["warp_width"]
    verify(lowered, "logical")
    folded = fold_lanes(lowered, H or W, lowered.attrs["warps"])
    verify(folded, "lowered")
    interpreter.run(folded, grid, args, scheduler=scheduler, seed=seed)
    return lowered


def has_async(kernel: ir.Kernel) -> bool:
    return any(isinstance(s, (ir.Suspend, ir.Join, ir.Select)) for s in kernel.walk())


def global_lane(b: ir.Builder, W: int) -> ir.Var:
    warp = b.op("add", b.op("mul", b.op("block_id"), b.op("num_warps")), b.op("warp_id"))
    return b.op("add", b.op("mul", warp, C(W)), b.op("lane"))


# ---------------------------------------------------------------- hand-built IR


def lock_kernel(W: int) -> ir.Kernel:
    """Each lane with a bucket >= 0 locks it in a divergent `until`, counts, unlocks."""
    locks, counts, buckets = arr("locks", u32), arr("counts", u32), arr("buckets", i32)
    b = ir.Builder()
    b.loc = ir.Loc("locks.py", 3)
    bucket = b.op("load", buckets, global_lane(b, W), **WEAK)
    wants = b.op("ge", bucket, C(0))
    tb = b.nested()
    pb = tb.nested()
    old = pb.op("atomic_cas", locks, bucket, C(0, u32), C(1, u32), order="acquire", scope="device")
    got = pb.op("eq", old, C(0, u32))
    tb.emit(ir.Suspend(pb.block, got, "until lock taken", ir.Loc("locks.py", 7)))
    count = tb.op("load", counts, bucket, **WEAK)
    tb.op("store", counts, bucket, tb.op("add", count, C(1, u32)), **WEAK)
    tb.op("atomic", locks, bucket, C(0, u32), op="exchange", order="release", scope="device")
    b.emit(ir.If(wants, tb.block, [], level=ir.DIVERGENT))
    return ir.Kernel("locks", [locks, counts, buckets], b.block, attrs={"warp_width": W})


@pytest.mark.parametrize("progress", PROGRESS)
@pytest.mark.parametrize("H", ["W", 8])
def test_divergent_await_per_lane_locks(W, progress, H):
    rng = np.random.default_rng(7 + W)
    grid, warps, nbuckets = 2, 2, 5
    buckets = rng.integers(-1, nbuckets, grid * warps * W).astype(np.int32)
    locks = np.zeros(nbuckets, np.uint32)
    counts = np.zeros(nbuckets, np.uint32)
    lowered = run_lowered(
        lock_kernel(W),
        grid,
        [locks, counts, buckets],
        progress=progress,
        warps=warps,
        H=W if H == "W" else H,
        scheduler="random",
        seed=W,
    )
    assert not has_async(lowered)
    assert lowered.attrs["wait_states"] == {1: "until lock taken at locks.py:7"}
    np.testing.assert_array_equal(counts, np.bincount(buckets[buckets >= 0], minlength=nbuckets))
    assert not locks.any()


def two_branch_join(W: int, split=None) -> ir.Kernel:
    """Top-level join: branch i stores i+1 into out[global lane] after a yield-like wait."""
    out = arr("out", i32)
    b = ir.Builder()
    b.loc = ir.Loc("join.py", 2)
    where = global_lane(b, W)
    branches = []
    for i in range(2):
        bb = b.nested()
        polled = bb.tmp(bool_, "polled")
        bb.assign(polled, ir.Const(False, bool_))
        pb = bb.nested()
        ready = pb.tmp(bool_, "ready")
        pb.assign(ready, polled)
        pb.assign(polled, ir.Const(True, bool_))
        bb.emit(ir.Suspend(pb.block, ready, "yield_now", ir.Loc("join.py", 5 + i)))
        bb.op("store", out, where, C(i + 1), **WEAK)
        branches.append(bb.block)
    join = ir.Join(branches, ir.Loc("join.py", 4))
    if split is not None:
        join.warps = split
    b.emit(join)
    return ir.Kernel("joined", [out], b.block, attrs={"warp_width": W})


@pytest.mark.parametrize("progress", PROGRESS)
def test_top_level_join_gives_each_branch_its_warps(W, progress):
    grid = 2
    out = poisoned(grid * 3 * W, np.int32)
    lowered = run_lowered(two_branch_join(W, split=(2, 1)), grid, [out], progress=progress)
    assert lowered.attrs["warps"] == 3
    assert lowered.attrs["progress"] == progress
    assert lowered.attrs["executor"] == "block_on"
    want = np.tile(np.repeat([1, 1, 2], W), grid)
    np.testing.assert_array_equal(out, want)


def test_join_warps_default_to_one_per_branch():
    lowered = lower_async(
        two_branch_join(32), progress="cooperative", executor="block_on", warps=None
    )
    assert lowered.attrs["warps"] == 2


@pytest.mark.parametrize(
    "warps, split, message",
    [
        (3, None, "warps=(2, 1)"),
        (1, None, "launched with 1 warps"),
        (2, (2, 1), "runs on 3 warps"),
    ],
)
def test_join_warp_count_mismatch_is_a_compile_error(warps, split, message):
    with pytest.raises(CompileError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        lower_async(
            two_branch_join(32, split), progress="independent", executor="block_on", warps=warps
        )
    assert "join.py:4" in str(e.value)


def test_barrier_after_an_await_inside_a_branch_is_rejected():
    k = two_branch_join(32)
    k.body[-1].branches[0].append(ir.Op(None, "barrier", (), {}, ir.Loc("join.py", 9)))
    with pytest.raises(CompileError, match="aw.Barrier") as e:
        lower_async(k, progress="cooperative", executor="block_on", warps=None)
    assert "join.py:9" in str(e.value)


def test_rejects_unresolved_progress():
    with pytest.raises(ValueError, match="progress"):
        lower_async(two_branch_join(32), progress="auto", executor="block_on", warps=None)


# ---------------------------------------------------------------- watchdog


def stuck_kernel(W: int) -> ir.Kernel:
    """Warp 1 waits for flag[0], which nobody sets; warp 0 finishes."""
    flag, out = arr("flag", u32), arr("out", i32)
    b = ir.Builder()
    b.loc = ir.Loc("stuck.py", 2)
    where = global_lane(b, W)
    is_waiter = b.op("eq", b.op("warp_id"), C(1))
    tb = b.nested()
    pb = tb.nested()
    seen = pb.op("load", flag, C(0), order="acquire", scope="device")
    ready = pb.op("ne", seen, C(0, u32))
    tb.emit(ir.Suspend(pb.block, ready, "until flag[0] != 0", ir.Loc("stuck.py", 12)))
    b.emit(ir.If(is_waiter, tb.block, [], level=ir.WARP_UNIFORM))
    b.op("store", out, where, C(5), **WEAK)
    return ir.Kernel("stuck", [flag, out], b.block, attrs={"warp_width": W})


@pytest.mark.parametrize("progress", PROGRESS)
def test_watchdog_stops_the_kernel_and_names_the_pending_wait(W, progress):
    grid, warps = 2, 2
    flag = np.zeros(1, np.uint32)
    out = poisoned(grid * warps * W, np.int32)
    report = np.zeros(WatchdogWords(warps)(grid), np.uint32)
    lowered = run_lowered(
        stuck_kernel(W),
        grid,
        [flag, out, report],
        progress=progress,
        warps=warps,
        watchdog_ns=20_000,
    )
    assert lowered.attrs["hidden_params"] == [("__watchdog", WatchdogWords(warps), "u32")]
    assert lowered.params[-1].name == "__watchdog"
    pending = decode_watchdog(lowered, report, grid)
    assert pending == [
        f"block {blk} warp 1: until flag[0] != 0 at stuck.py:12" for blk in range(grid)
    ]
    # warp 0 finished its task; warp 1 stopped at the wait and never stored
    per_warp = out.reshape(grid, warps, W)
    np.testing.assert_array_equal(per_warp[:, 0], 5)
    assert (per_warp[:, 1] == poisoned(1, np.int32)[0]).all()


@pytest.mark.parametrize("progress", PROGRESS)
def test_watchdog_silent_when_the_kernel_finishes(W, progress):
    grid, warps = 2, 2
    flag = np.ones(1, np.uint32)
    out = poisoned(grid * warps * W, np.int32)
    report = np.zeros(WatchdogWords(warps)(grid), np.uint32)
    lowered = run_lowered(
        stuck_kernel(W),
        grid,
        [flag, out, report],
        progress=progress,
        warps=warps,
        watchdog_ns=1_000_000,
    )
    assert decode_watchdog(lowered, report, grid) is None
    np.testing.assert_array_equal(out, np.full(out.size, 5))


def test_decode_watchdog_layout():
    k = ir.Kernel("k", [], [], attrs={"warps": 2, "wait_states": {1: "until x at a.py:3"}})
    words = np.zeros(WatchdogWords(2)(3), np.uint32)
    assert decode_watchdog(k, words, 3) is None
    words[0] = 1
    words[1 + 2 * 2 + 1] = 1
    words[1 + 0 * 2 + 0] = 0xFFFFFFFF
    assert decode_watchdog(k, words, 3) == [
        "block 0 warp 0: pending (wait not recorded)",
        "block 2 warp 1: until x at a.py:3",
    ]


# ---------------------------------------------------------------- from async def source


def run_source(
    fn,
    grid: int,
    *args,
    W: int,
    progress: str,
    warps: int | None = None,
    executor: str = "block_on",
    H: int | None = None,
    scheduler: str = "round_robin",
    seed: int = 0,
    watchdog_ns: int = 0,
) -> ir.Kernel:
    """compile_function -> uniformity.check -> lower_async -> fold_lanes -> interpreter."""
    types = [
        ArrayType(from_dtype(a.dtype))
        if isinstance(a, np.ndarray)
        else from_dtype(np.asarray(a).dtype)
        for a in args
    ]
    k = compile_function(fn, types, warp_width=W)
    uniformity.check(k)
    lowered = lower_async(
        k, progress=progress, executor=executor, warps=warps, watchdog_ns=watchdog_ns
    )
    assert not has_async(lowered)
    extra = []
    if watchdog_ns:
        ((_, words, _),) = lowered.attrs["hidden_params"]
        extra = [np.zeros(words(grid), np.uint32)]
    verify(lowered, "logical")
    folded = fold_lanes(lowered, H or W, lowered.attrs["warps"])
    verify(folded, "lowered")
    interpreter.run(folded, grid, list(args) + extra, scheduler=scheduler, seed=seed)
    if watchdog_ns:
        lowered.watchdog_report = decode_watchdog(lowered, extra[0], grid)
    return lowered


@aw.func
def gid() -> aw.i32:
    return (aw.block_id() * aw.num_warps() + aw.warp_id()) * aw.WARP + aw.lane()


@aw.func
async def twice_later(x: aw.i32) -> aw.i32:
    await aw.yield_now()
    return x * 2


@aw.func
async def staged(x: aw.i32) -> aw.i32:
    a = await twice_later(x)
    if a > 40:  # lane-divergent early return between awaits
        return a + 1
    b = await twice_later(a)
    return b - 3


async def awaits_everywhere(out: aw.Array[aw.i32], x: aw.Array[aw.i32], n: aw.Array[aw.i32]):
    i = gid()
    v = x[i]
    await aw.yield_now()  # straight line
    if aw.warp_id() == 0:  # warp-uniform branch
        await aw.sleep(50)
        v += 1000
    if v % 3 == 0:  # lane-divergent branch
        await aw.yield_now()
        v = v * 2
    else:
        v = v - 1
    total = 0
    for k in range(n[i]):  # lane-divergent trip count
        await aw.yield_now()
        total += k
    for k in range(4):  # warp-uniform loop with a break after an await
        await aw.yield_now()
        if k == 2:
            break
        total += 100
    out[i] = v + total + await staged(x[i])


def awaits_everywhere_reference(x, n, W, warps, grid):
    warp = (np.arange(x.size) // W) % warps
    v = x + np.where(warp == 0, 1000, 0)
    v = np.where(v % 3 == 0, v * 2, v - 1)
    total = n * (n - 1) // 2 + 200
    a = x * 2
    staged = np.where(a > 40, a + 1, a * 2 - 3)
    return v + total + staged


@pytest.mark.parametrize("progress", PROGRESS)
def test_awaits_in_straight_code_branches_loops_and_nested_calls(W, progress):
    rng = np.random.default_rng(W)
    grid, warps = 2, 2
    size = grid * warps * W
    x = rng.integers(-50, 50, size).astype(np.int32)
    n = rng.integers(0, 5, size).astype(np.int32)
    out = poisoned(size, np.int32)
    run_source(
        awaits_everywhere,
        grid,
        out,
        x,
        n,
        W=W,
        progress=progress,
        warps=warps,
        scheduler="random",
        seed=3,
    )
    np.testing.assert_array_equal(out, awaits_everywhere_reference(x, n, W, warps, grid))


@pytest.mark.parametrize("progress", PROGRESS)
def test_folded_subgroups_give_the_same_results(progress):
    W, H = 64, 8
    rng = np.random.default_rng(11)
    x = rng.integers(-50, 50, 2 * W).astype(np.int32)
    n = rng.integers(0, 4, 2 * W).astype(np.int32)
    out = poisoned(2 * W, np.int32)
    run_source(awaits_everywhere, 1, out, x, n, W=W, H=H, progress=progress, warps=2)
    np.testing.assert_array_equal(out, awaits_everywhere_reference(x, n, W, 2, 1))


async def per_lane_locks(
    locks: aw.Array[aw.u32], counts: aw.Array[aw.u32], buckets: aw.Array[aw.i32]
):
    b = buckets[gid()]
    if b >= 0:
        await aw.until(aw.atomic_cas(locks, b, 0, 1, order="acquire") == 0)
        counts[b] = counts[b] + 1
        aw.atomic_exchange(locks, b, 0, order="release")


@pytest.mark.parametrize("progress", PROGRESS)
def test_lane_divergent_locks_from_source(W, progress):
    rng = np.random.default_rng(5 * W)
    grid, warps, nb = 2, 2, 6
    buckets = rng.integers(-1, nb, grid * warps * W).astype(np.int32)
    locks = np.zeros(nb, np.uint32)
    counts = np.zeros(nb, np.uint32)
    run_source(
        per_lane_locks,
        grid,
        locks,
        counts,
        buckets,
        W=W,
        progress=progress,
        warps=warps,
        scheduler="random",
        seed=1,
    )
    np.testing.assert_array_equal(counts, np.bincount(buckets[buckets >= 0], minlength=nb))


async def skips_and_returns(out: aw.Array[aw.i32], x: aw.Array[aw.i32]):
    i = gid()
    total = 0
    for k in range(6):  # warp-uniform loop
        if (x[i] + k) % 3 == 0:  # lane-divergent continue: the rest waits per lane
            continue
        await aw.yield_now()
        total += k
    if aw.warp_id() == 1:  # warp-uniform early return
        out[i] = total
        return
    if x[i] < 0:  # lane-divergent early return
        out[i] = -total
        return
    await aw.sleep(20)
    out[i] = total + 1000


@pytest.mark.parametrize("progress", PROGRESS)
def test_divergent_continue_and_early_returns_around_awaits(W, progress):
    rng = np.random.default_rng(W + 13)
    x = rng.integers(-20, 20, 2 * W).astype(np.int32)
    out = poisoned(2 * W, np.int32)
    run_source(skips_and_returns, 1, out, x, W=W, progress=progress, warps=2)
    k = np.arange(6)
    total = np.where((x[:, None] + k) % 3 == 0, 0, k).sum(1)
    warp = np.arange(2 * W) // W
    want = np.where(warp == 1, total, np.where(x < 0, -total, total + 1000))
    np.testing.assert_array_equal(out, want)


async def barrier_between_awaits(out: aw.Array[aw.i32], x: aw.Array[aw.i32]):
    board = aw.shared(aw.i32, 4 * aw.WARP)
    me = aw.warp_id() * aw.WARP + aw.lane()
    for _ in range(aw.warp_id() + 1):  # warps finish their first task at different times
        await aw.yield_now()
    board[me] = x[me] * 2
    aw.barrier()  # top level between awaits: every warp's task up to here is done
    await aw.yield_now()
    out[me] = board[(me + aw.WARP) % (4 * aw.WARP)]


@pytest.mark.parametrize("progress", PROGRESS)
def test_top_level_barrier_between_awaits(W, progress):
    x = np.random.default_rng(W + 17).integers(-99, 99, 4 * W).astype(np.int32)
    out = poisoned(4 * W, np.int32)
    run_source(
        barrier_between_awaits,
        1,
        out,
        x,
        W=W,
        progress=progress,
        warps=4,
        scheduler="random",
        seed=2,
    )
    np.testing.assert_array_equal(out, np.roll(x * 2, -W))


@aw.func
async def log_steps(
    log: aw.Array[aw.i32], cursor: aw.Array[aw.u32], tag: aw.i32, steps: aw.i32
) -> aw.i32:
    for s in range(steps):
        if aw.lane() == 0:
            slot = aw.atomic_add(cursor, 0, 1)
            log[slot] = tag * 10 + s
        await aw.yield_now()
    return tag


async def interleaved(log: aw.Array[aw.i32], cursor: aw.Array[aw.u32], res: aw.Array[aw.i32]):
    if aw.block_id() == 0:  # not a statement of the kernel body: one warp runs both branches
        a, b = await aw.join(log_steps(log, cursor, 1, 3), log_steps(log, cursor, 2, 2))
        res[aw.lane()] = a * 100 + b


@pytest.mark.parametrize("progress", PROGRESS)
def test_join_on_one_warp_interleaves_in_order_at_each_yield(W, progress):
    """A join that is not a statement of the kernel body interleaves on the warp."""
    log = poisoned(5, np.int32)
    cursor = np.zeros(1, np.uint32)
    res = poisoned(W, np.int32)
    run_source(interleaved, 1, log, cursor, res, W=W, progress=progress)
    np.testing.assert_array_equal(log, [10, 20, 11, 21, 12])
    np.testing.assert_array_equal(res, np.full(W, 102))


@aw.func
async def flag_value(flags: aw.Array[aw.i32], i: aw.i32) -> aw.i32:
    await aw.until(aw.load(flags, i, order="acquire") != 0)
    return flags[i]


@aw.func
async def timeout(ns: aw.i32) -> aw.i32:
    await aw.sleep(ns)
    return -1


async def selects(out: aw.Array[aw.i32], per_warp: aw.Array[aw.i32], per_lane: aw.Array[aw.i32]):
    i = gid()
    w = aw.block_id() * aw.num_warps() + aw.warp_id()
    first, a = await aw.select(flag_value(per_warp, w), timeout(3000))
    second, b = await aw.select(flag_value(per_lane, i), timeout(3000))
    third, c = await aw.select(timeout(0), flag_value(per_warp, w))  # both ready: first wins
    out[i] = first * 1000 + a + second * 100_000 + b * 10 + third * 7 + c


@pytest.mark.parametrize("progress", PROGRESS)
def test_select_first_ready_wins_and_a_timeout_wins_otherwise(W, progress):
    rng = np.random.default_rng(W + 1)
    grid, warps = 2, 2
    nw = grid * warps
    per_warp = np.where(rng.random(nw) < 0.5, 0, rng.integers(1, 99, nw)).astype(np.int32)
    per_warp[0], per_warp[1] = 0, 5  # both outcomes
    per_lane = rng.integers(1, 99, nw * W).astype(np.int32)
    per_lane[W + 3] = 0  # warp 1: one lane never ready, so the warp's select times out
    out = poisoned(nw * W, np.int32)
    run_source(selects, grid, out, per_warp, per_lane, W=W, progress=progress, warps=warps)
    warp_flag = np.repeat(per_warp, W)
    lane_ok = np.repeat((per_lane.reshape(nw, W) != 0).all(axis=1), W)
    first = np.where(warp_flag != 0, warp_flag, 1000 - 1)
    second = np.where(lane_ok, per_lane * 10, 100_000 - 10)
    np.testing.assert_array_equal(out, first + second - 1)


async def handshake(flag: aw.Array[aw.u32], out: aw.Array[aw.i32]):
    if aw.warp_id() == 0:
        await aw.until(aw.load(flag, 0, order="acquire") == 1)
        out[gid()] = 1
    else:
        await aw.yield_now()
        aw.store(flag, 0, 1, order="release")
        out[gid()] = 2


def source_line(fn, needle: str) -> int:
    import inspect

    lines, first = inspect.getsourcelines(fn)
    return first + next(k for k, text in enumerate(lines) if needle in text)


@pytest.mark.parametrize("progress", PROGRESS)
def test_unfair_scheduler_spin_deadlocks_in_independent_mode_only(progress):
    """Warp 0 spins on a flag warp 1 sets after its own await: no progress without rounds."""
    W = 32
    flag, out = np.zeros(1, np.uint32), poisoned(2 * W, np.int32)
    if progress == "independent":
        with pytest.raises(DeadlockError) as e:
            run_source(handshake, 1, flag, out, W=W, progress=progress, warps=2, scheduler="unfair")
        line = source_line(handshake, "await aw.until")
        assert 'until aw.load(flag, 0, order="acquire") == 1' in str(e.value)
        assert f"test_lower_async.py:{line}" in str(e.value)
    else:
        run_source(handshake, 1, flag, out, W=W, progress=progress, warps=2, scheduler="unfair")
        np.testing.assert_array_equal(out, np.repeat([1, 2], W))


async def never_set(flag: aw.Array[aw.u32], out: aw.Array[aw.i32]):
    if aw.warp_id() == 1:
        await aw.until(flag[0] == 1)
    out[gid()] = 5


@pytest.mark.parametrize("progress", PROGRESS)
def test_watchdog_from_source_names_the_wait_and_its_line(progress):
    W, grid = 32, 2
    flag, out = np.zeros(1, np.uint32), poisoned(grid * 2 * W, np.int32)
    lowered = run_source(
        never_set, grid, flag, out, W=W, progress=progress, warps=2, watchdog_ns=30_000
    )
    line = source_line(never_set, "await aw.until")
    assert lowered.watchdog_report == [
        f"block {b} warp 1: until flag[0] == 1 at test_lower_async.py:{line}" for b in range(grid)
    ]


@aw.func
async def part(buf: aw.Array[aw.i32], runs: aw.Array[aw.u32], slot: aw.i32, yields: aw.i32):
    for _ in range(yields):
        await aw.yield_now()
    buf[slot * aw.WARP + aw.lane()] = slot + 1
    if aw.lane() == 0:
        aw.atomic_add(runs, slot, 1)


@aw.func
async def pair(buf: aw.Array[aw.i32], runs: aw.Array[aw.u32], res: aw.Array[aw.i32]):
    await aw.join(part(buf, runs, 0, 1), part(buf, runs, 1, 3), warps=(1, 1))
    res[aw.warp_id() * aw.WARP + aw.lane()] = buf[aw.lane()] + buf[aw.WARP + aw.lane()]


@aw.func
async def solo(res: aw.Array[aw.i32]):
    await aw.yield_now()
    res[2 * aw.WARP + aw.lane()] = 7


async def specialised(buf: aw.Array[aw.i32], runs: aw.Array[aw.u32], res: aw.Array[aw.i32]):
    await aw.join(pair(buf, runs, res), solo(res), warps=(2, 1))


@pytest.mark.parametrize("executor", ["static", "block_on"])
@pytest.mark.parametrize("progress", PROGRESS)
def test_static_executor_maps_nested_joins_onto_warp_ranges(W, progress, executor):
    buf, res = poisoned(2 * W, np.int32), poisoned(3 * W, np.int32)
    runs = np.zeros(2, np.uint32)
    lowered = run_source(specialised, 1, buf, runs, res, W=W, progress=progress, executor=executor)
    assert lowered.attrs["warps"] == 3
    np.testing.assert_array_equal(res, np.repeat([3, 3, 7], W))
    # static: each part on its own warp; block_on: both warps of the range run both parts
    np.testing.assert_array_equal(runs, [1, 1] if executor == "static" else [2, 2])


@aw.func
async def lane_work(x: aw.Array[aw.i32], i: aw.i32) -> aw.i32:
    await aw.yield_now()
    return x[i] * 3


@aw.func
async def warp_work() -> aw.i32:
    await aw.yield_now()
    return aw.warp_id() + 40


@aw.func
async def sign_work(x: aw.Array[aw.i32], i: aw.i32) -> aw.bool_:
    await aw.yield_now()
    return x[i] > 0


async def results_everywhere(out: aw.Array[aw.i32], x: aw.Array[aw.i32]):
    i = aw.block_id() * aw.WARP + aw.lane()
    a, w, pos = await aw.join(lane_work(x, i), warp_work(), sign_work(x, i), warps=(2, 1, 1))
    k = 3 * ((aw.block_id() * aw.num_warps() + aw.warp_id()) * aw.WARP + aw.lane())
    out[k] = a
    out[k + 1] = w
    out[k + 2] = 1 if pos else 0


@pytest.mark.parametrize("progress", PROGRESS)
def test_join_results_reach_every_warp(W, progress):
    """The await's value after a warp-mapped join is the same on every warp of the block."""
    grid = 2
    x = np.random.default_rng(W + 23).integers(-9, 9, grid * W).astype(np.int32)
    out = poisoned(3 * grid * 4 * W, np.int32)
    run_source(results_everywhere, grid, out, x, W=W, progress=progress)
    got = out.reshape(grid, 4, W, 3)
    lanes = x.reshape(grid, 1, W)
    np.testing.assert_array_equal(got[..., 0], np.broadcast_to(lanes * 3, (grid, 4, W)))
    np.testing.assert_array_equal(got[..., 1], 42)  # branch 1 ran on warp 2
    np.testing.assert_array_equal(got[..., 2], np.broadcast_to(lanes > 0, (grid, 4, W)))


@aw.func
async def halves(x: aw.Array[aw.i32], out: aw.Array[aw.i32]):
    i = aw.block_id() * aw.WARP + aw.lane()
    a, b = await aw.join(lane_work(x, i), warp_work(), warps=(1, 1))
    out[(aw.block_id() * 3 + aw.warp_id()) * aw.WARP + aw.lane()] = a + b


async def nested_results(out: aw.Array[aw.i32], x: aw.Array[aw.i32]):
    await aw.join(halves(x, out), solo(out), warps=(2, 1))


@pytest.mark.parametrize("progress", PROGRESS)
def test_static_nested_join_results_reach_the_warps_of_its_range(W, progress):
    x = np.random.default_rng(W + 29).integers(-99, 99, W).astype(np.int32)
    out = poisoned(3 * W, np.int32)
    run_source(nested_results, 1, out, x, W=W, progress=progress, executor="static")
    np.testing.assert_array_equal(out[: 2 * W], np.tile(x * 3 + 41, 2))  # warp_work on warp 1


async def two_way(out: aw.Array[aw.i32]):
    await aw.join(solo(out), solo(out))


def test_launch_with_more_warps_than_the_join_suggests_a_split():
    with pytest.raises(CompileError, match=r"warps=\(2, 1\)") as e:
        run_source(two_way, 1, poisoned(96, np.int32), W=32, progress="cooperative", warps=3)
    assert f"test_lower_async.py:{source_line(two_way, 'aw.join')}" in str(e.value)


async def bad_static(buf: aw.Array[aw.i32], runs: aw.Array[aw.u32], res: aw.Array[aw.i32]):
    await aw.join(pair(buf, runs, res), solo(res), warps=(3, 1))


def test_static_nested_split_must_fill_its_range():
    with pytest.raises(CompileError, match="splits 2 warps, but this branch runs on 3"):
        run_source(
            bad_static,
            1,
            poisoned(64, np.int32),
            np.zeros(2, np.uint32),
            poisoned(96, np.int32),
            W=32,
            progress="cooperative",
            executor="static",
        )


# ---------------------------------------------------------------- every backend, ptxas


def test_async_kernels_on_every_backend(run, backend, W):
    """The same kernels through @aw.kernel on each backend present (progress "auto")."""
    rng = np.random.default_rng(W + 21)
    grid, warps = 2, 2
    size = grid * warps * W
    x = rng.integers(-50, 50, size).astype(np.int32)
    n = rng.integers(0, 4, size).astype(np.int32)
    out = poisoned(size, np.int32)
    run(aw.kernel(awaits_everywhere), grid, out, x, n, warps=warps)
    np.testing.assert_array_equal(out, awaits_everywhere_reference(x, n, W, warps, grid))

    buckets = rng.integers(-1, 5, size).astype(np.int32)
    locks, counts = np.zeros(5, np.uint32), np.zeros(5, np.uint32)
    run(aw.kernel(per_lane_locks), grid, locks, counts, buckets, warps=warps)
    np.testing.assert_array_equal(counts, np.bincount(buckets[buckets >= 0], minlength=5))

    buf, res, runs = poisoned(2 * W, np.int32), poisoned(3 * W, np.int32), np.zeros(2, np.uint32)
    run(aw.kernel(specialised), 1, buf, runs, res, executor="static")
    np.testing.assert_array_equal(res, np.repeat([3, 3, 7], W))
    np.testing.assert_array_equal(runs, [1, 1])


ASSEMBLED = [
    (awaits_everywhere, ["i32[]", "i32[]", "i32[]"], 2),
    (per_lane_locks, ["u32[]", "u32[]", "i32[]"], 2),
    (selects, ["i32[]", "i32[]", "i32[]"], 2),
    (specialised, ["i32[]", "u32[]", "i32[]"], None),
    (never_set, ["u32[]", "i32[]"], 2),
]


@pytest.mark.parametrize("progress", PROGRESS)
def test_lowered_kernels_assemble_with_ptxas(W, progress):
    from asyncwarp.backends.cuda import ptxas
    from asyncwarp.backends.cuda.ptx import emit_ptx
    from asyncwarp.core.backend import BuildOptions
    from asyncwarp.core.passes.pipeline import lower

    elems = {"i32[]": ArrayType(i32), "u32[]": ArrayType(u32)}
    target = ptxas.nearest_target("sm_70")
    for fn, types, warps in ASSEMBLED:
        for watchdog_ns in (0, 100_000):
            opts = BuildOptions(
                backend="cuda",
                warp_width=W,
                warps=warps,
                subgroup=32,
                progress=progress,
                executor="static",
                arch="sm_70",
                watchdog_ns=watchdog_ns,
            )
            k = compile_function(fn, [elems[t] for t in types], warp_width=W)
            ptxas.assemble(emit_ptx(lower(k, opts), "sm_70"), target)


async def counted_until(out: aw.Array[aw.i32], start: aw.i32, steps: aw.i32):
    acc = 0
    for s in range(steps):
        await aw.until(s + aw.lane() % 2 >= start)  # per lane, registers only
        acc += s
    out[gid()] = acc


def _suspend_loops(kernel: ir.Kernel) -> list[ir.Loop]:
    """Loops that poll and sleep: a spin re-tests its poll in the header."""
    return [
        s
        for s in kernel.walk()
        if isinstance(s, ir.Loop)
        and any(isinstance(o, ir.Op) and o.opcode == "sleep" for o in s.body)
    ]


@pytest.mark.parametrize("progress", PROGRESS)
def test_until_on_registers_is_tested_once_and_a_false_one_is_a_deadlock(W, progress):
    """A poll that reads only registers cannot change its answer, so the in-place form tests it
    once and never jumps back to it; the result is the same, and a wait that can never end is
    still the hang it was, which the interpreter reports as a deadlock naming the until."""
    steps = 6
    out = poisoned(2 * W, np.int32)
    lowered = run_source(
        counted_until, 1, out, np.int32(0), np.int32(steps), W=W, progress=progress, warps=2
    )
    np.testing.assert_array_equal(out, np.full(2 * W, sum(range(steps)), np.int32))
    if progress != "independent":
        return  # cooperative rounds have no in-place spin (the watchdog finds their hangs)
    spins = _suspend_loops(lowered)
    assert spins and all(s.cond is None and not s.header for s in spins)
    line = source_line(counted_until, "await aw.until")
    with pytest.raises(DeadlockError) as e:
        run_source(counted_until, 1, poisoned(2 * W, np.int32), np.int32(steps),
                   np.int32(steps), W=W, progress=progress, warps=2)
    assert f"until s + aw.lane() % 2 >= start at test_lower_async.py:{line}" in str(e.value)
