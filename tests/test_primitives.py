"""aw.Channel, aw.Barrier, aw.Semaphore and aw.Event, from kernel source to the interpreter.

Each kernel goes frontend -> uniformity -> lower_async -> fold_lanes -> the
reference interpreter, with W in {32, 64} and both progress modes; results are
compared with numpy references on random data, outputs poisoned first.
"""

import inspect

import numpy as np
import pytest

import asyncwarp as aw
from asyncwarp.core import interpreter, ir, uniformity
from asyncwarp.core.errors import CompileError
from asyncwarp.core.frontend import compile_function
from asyncwarp.core.passes.fold_lanes import fold_lanes
from asyncwarp.core.passes.lower_async import lower_async
from asyncwarp.core.passes.lower_phase_barriers import lower_phase_barriers
from asyncwarp.core.types import ArrayType, from_dtype
from asyncwarp.core.verify import verify

PROGRESS = ("independent", "cooperative")


def poisoned(n: int, dtype) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return np.full(n, np.nan, dtype=dt)
    return np.full(n, np.iinfo(dt).max - 0x1234, dtype=dt)


def run_source(
    fn,
    grid: int,
    *args,
    W: int,
    progress: str,
    warps: int | None = None,
    H: int | None = None,
    scheduler: str = "round_robin",
    seed: int = 0,
    native_phase_barriers: bool = False,
):
    """compile_function -> uniformity.check -> lower_async -> lower_phase_barriers -> fold_lanes
    -> interpreter."""
    types = [
        ArrayType(from_dtype(a.dtype))
        if isinstance(a, np.ndarray)
        else from_dtype(np.asarray(a).dtype)
        for a in args
    ]
    k = compile_function(fn, types, warp_width=W)
    uniformity.check(k)
    lowered = lower_async(k, progress=progress, executor="block_on", warps=warps)
    if not native_phase_barriers:  # as the pipeline does for every target but CUDA sm_80+
        lowered = lower_phase_barriers(lowered)
    verify(lowered, "logical")
    folded = fold_lanes(lowered, H or W, lowered.attrs["warps"])
    verify(folded, "lowered")
    return interpreter.run(folded, grid, list(args), scheduler=scheduler, seed=seed)


def check_random_schedules(fn, want: np.ndarray, *args, seeds: int = 3, **run) -> None:
    """run_source(fn, 1 block, out, *args) under `seeds` random schedules; out == want."""
    for seed in range(seeds):
        out = poisoned(want.size, want.dtype)
        run_source(fn, 1, out, *args, scheduler="random", seed=seed, **run)
        np.testing.assert_array_equal(out, want.reshape(-1))


def line_of(fn, needle: str) -> int:
    lines, first = inspect.getsourcelines(fn)
    return first + next(k for k, text in enumerate(lines) if needle in text)


# ---------------------------------------------------------------- channels


@aw.func
async def send_all(ch, x: aw.Array[aw.i32], first: aw.i32, count: aw.i32):
    for m in range(first, first + count):
        await ch.send(x[m * aw.WARP + aw.lane()])


@aw.func
async def recv_all(ch, out: aw.Array[aw.i32], first: aw.i32, count: aw.i32):
    for m in range(first, first + count):
        out[m * aw.WARP + aw.lane()] = await ch.recv()


async def relay1(out: aw.Array[aw.i32], x: aw.Array[aw.i32], count: aw.i32):
    ch = aw.Channel(aw.i32, 1)
    await aw.join(send_all(ch, x, 0, count), recv_all(ch, out, 0, count))


async def relay8(out: aw.Array[aw.i32], x: aw.Array[aw.i32], count: aw.i32):
    ch = aw.Channel(aw.i32, 8)
    await aw.join(send_all(ch, x, 0, count), recv_all(ch, out, 0, count))


@pytest.mark.parametrize("progress", PROGRESS)
@pytest.mark.parametrize("kernel", [relay1, relay8], ids=["capacity1", "capacity8"])
def test_channel_single_producer_single_consumer_keeps_order(W, progress, kernel):
    rng = np.random.default_rng(W)
    count = 11
    x = rng.integers(-(10**6), 10**6, count * W).astype(np.int32)
    out = poisoned(count * W, np.int32)
    run_source(kernel, 1, out, x, np.int32(count), W=W, progress=progress)
    np.testing.assert_array_equal(out, x)


@aw.func
async def tally(ch, seen: aw.Array[aw.u32], count: aw.i32):
    for _ in range(count):
        v = await ch.recv()
        aw.atomic_add(seen, v, 1)


async def many_to_many(seen: aw.Array[aw.u32], ids: aw.Array[aw.i32], count: aw.i32):
    ch = aw.Channel(aw.i32, 2)
    await aw.join(
        send_all(ch, ids, 0, count),
        send_all(ch, ids, count, count),
        send_all(ch, ids, 2 * count, count),
        tally(ch, seen, count + count // 2),
        tally(ch, seen, 3 * count - count - count // 2),
    )


@pytest.mark.parametrize("progress", PROGRESS)
def test_channel_three_producers_two_consumers_deliver_each_message_once(W, progress):
    rng = np.random.default_rng(3 * W)
    count = 4
    ids = rng.permutation(3 * count * W).astype(np.int32)  # every lane of every message unique
    seen = np.zeros(3 * count * W, np.uint32)
    run_source(
        many_to_many,
        2,
        seen,
        ids,
        np.int32(count),
        W=W,
        progress=progress,
        scheduler="random",
        seed=W,
    )
    np.testing.assert_array_equal(seen, np.full(seen.size, 2))  # once per block, 2 blocks


@aw.func
async def send_then_close(ch, x: aw.Array[aw.i32], count: aw.i32):
    for m in range(count):
        await ch.send(x[m * aw.WARP + aw.lane()])
    ch.close()


@aw.func
async def drain(ch, out: aw.Array[aw.i32]):
    got = 0
    total = 0
    while True:
        ok, v = await ch.recv_ok()
        if not ok:
            break
        got += 1
        total += v
    after = await ch.recv()  # closed and drained: completes with 0
    out[aw.lane()] = got
    out[aw.WARP + aw.lane()] = total
    out[2 * aw.WARP + aw.lane()] = after


async def closing(out: aw.Array[aw.i32], x: aw.Array[aw.i32], count: aw.i32):
    ch = aw.Channel(aw.i32, 3)
    await aw.join(send_then_close(ch, x, count), drain(ch, out))


@pytest.mark.parametrize("progress", PROGRESS)
def test_channel_close_lets_consumers_finish(W, progress):
    rng = np.random.default_rng(W + 5)
    count = 7
    x = rng.integers(1, 1000, count * W).astype(np.int32)
    out = poisoned(3 * W, np.int32)
    run_source(closing, 1, out, x, np.int32(count), W=W, progress=progress)
    want = np.concatenate([np.full(W, count), x.reshape(count, W).sum(0), np.zeros(W)])
    np.testing.assert_array_equal(out, want)


@aw.func
async def quiet_after(ns: aw.i32) -> aw.i32:
    await aw.sleep(ns)
    return -1


@aw.func
async def receive_until_quiet(ch, out: aw.Array[aw.i32]):
    got = 0
    total = 0
    while True:
        which, v = await aw.select(ch.recv(), quiet_after(20_000))
        if which == 1:
            break
        got += 1
        total += v
    out[aw.lane()] = got
    out[aw.WARP + aw.lane()] = total


@aw.func
async def trickle(ch, x: aw.Array[aw.i32], count: aw.i32):
    for m in range(count):
        await ch.send(x[m * aw.WARP + aw.lane()])
        await aw.sleep(200)


async def cancel_safe(out: aw.Array[aw.i32], x: aw.Array[aw.i32], count: aw.i32):
    ch = aw.Channel(aw.i32, 2)
    await aw.join(trickle(ch, x, count), receive_until_quiet(ch, out))


@pytest.mark.parametrize("progress", PROGRESS)
def test_select_recv_against_timeout_loses_no_message(W, progress):
    """Each lost race dropped a pending recv; had it consumed a message, the sum would differ."""
    rng = np.random.default_rng(W + 9)
    count = 5
    x = rng.integers(1, 1000, count * W).astype(np.int32)
    out = poisoned(2 * W, np.int32)
    run_source(cancel_safe, 1, out, x, np.int32(count), W=W, progress=progress)
    np.testing.assert_array_equal(out[:W], np.full(W, count))
    np.testing.assert_array_equal(out[W:], x.reshape(count, W).sum(0))


@pytest.mark.parametrize("progress", PROGRESS)
def test_channel_with_folded_lanes(progress):
    W, H = 64, 8
    x = np.random.default_rng(2).integers(-99, 99, 5 * W).astype(np.int32)
    out = poisoned(5 * W, np.int32)
    run_source(relay1, 1, out, x, np.int32(5), W=W, H=H, progress=progress)
    np.testing.assert_array_equal(out, x)


async def two_senders(out: aw.Array[aw.i32], x: aw.Array[aw.i32], count: aw.i32):
    ch = aw.Channel(aw.i32, 2)
    await aw.join(
        send_all(ch, x, 0, count), send_all(ch, x, count, count), recv_all(ch, out, 0, 2 * count)
    )


async def wide_sender(out: aw.Array[aw.i32], x: aw.Array[aw.i32], count: aw.i32):
    ch = aw.Channel(aw.i32, 2)
    await aw.join(send_all(ch, x, 0, count), recv_all(ch, out, 0, 2 * count), warps=(2, 1))


@aw.func
async def send_both_halves(ch, x: aw.Array[aw.i32], count: aw.i32):
    await aw.join(send_all(ch, x, 0, count), send_all(ch, x, count, count))


async def nested_senders(out: aw.Array[aw.i32], x: aw.Array[aw.i32], count: aw.i32):
    ch = aw.Channel(aw.i32, 2)
    await aw.join(send_both_halves(ch, x, count), recv_all(ch, out, 0, 2 * count))


@aw.func
async def count_down(n: aw.i32):
    for _ in range(n):
        await aw.yield_now()


@aw.func
async def send_beside_other_work(ch, x: aw.Array[aw.i32], count: aw.i32):
    await aw.join(send_all(ch, x, 0, count), count_down(count))


async def nested_one_sender(out: aw.Array[aw.i32], x: aw.Array[aw.i32], count: aw.i32):
    ch = aw.Channel(aw.i32, 2)
    await aw.join(send_beside_other_work(ch, x, count), recv_all(ch, out, 0, count))


async def send_after_join(out: aw.Array[aw.i32], x: aw.Array[aw.i32], count: aw.i32):
    ch = aw.Channel(aw.i32, 4)
    await aw.join(send_all(ch, x, 0, 1), recv_all(ch, out, 0, 1))
    await ch.send(x[aw.lane()])  # every warp of the kernel: two senders


def _uses_cas(fn) -> bool:
    types = list(inspect.get_annotations(fn, eval_str=True).values())
    return "atomic_cas" in ir.print_kernel(compile_function(fn, types, warp_width=32))


@pytest.mark.parametrize(
    "kernel, single",
    [
        (relay1, True),
        (relay8, True),
        (closing, True),
        (cancel_safe, True),  # a select's recv belongs to the task awaiting the select
        (nested_one_sender, True),  # one sending task inside a join nested in a one-warp task
        (many_to_many, False),
        (two_senders, False),
        (wide_sender, False),  # the sending task runs on two warps
        (nested_senders, False),  # two sending tasks share a warp
        (send_after_join, False),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_channel_protocol_follows_who_sends_and_receives(kernel, single):
    """One sending warp and one receiving warp: positions in registers, no CAS."""
    assert _uses_cas(kernel) is not single


@pytest.mark.parametrize("kernel", [two_senders, nested_senders, nested_one_sender])
@pytest.mark.parametrize("progress", PROGRESS)
def test_channel_protocols_under_random_schedules(W, progress, kernel):
    rng = np.random.default_rng(W + 17)
    count = 3
    halves = 1 if kernel is nested_one_sender else 2
    x = rng.permutation(halves * count * W).astype(np.int32)
    for seed in range(4):
        out = poisoned(halves * count * W, np.int32)
        run_source(
            kernel,
            1,
            out,
            x,
            np.int32(count),
            W=W,
            progress=progress,
            scheduler="random",
            seed=seed,
        )
        if halves == 1:
            np.testing.assert_array_equal(out, x)
        else:  # two senders interleave whole messages; each keeps its own order
            got = out.reshape(-1, W)
            assert sorted(map(tuple, got)) == sorted(map(tuple, x.reshape(-1, W)))
            for part in (x[: count * W], x[count * W :]):
                rows = [tuple(r) for r in part.reshape(-1, W)]
                order = [i for i, r in enumerate(map(tuple, got)) if r in rows]
                assert [tuple(got[i]) for i in order] == rows


@pytest.mark.parametrize("native", [False, True], ids=["emulated", "native"])
@pytest.mark.parametrize("progress", PROGRESS)
def test_single_warp_channel_under_random_schedules(W, progress, native):
    """Phase barriers as counters (Vulkan, sim) and as the interpreter runs mbarriers."""
    rng = np.random.default_rng(W + 23)
    count = 9
    x = rng.integers(-(10**6), 10**6, count * W).astype(np.int32)
    for seed in range(6):
        out = poisoned(count * W, np.int32)
        run_source(
            relay1 if seed % 2 else relay8,
            1,
            out,
            x,
            np.int32(count),
            W=W,
            progress=progress,
            scheduler="random",
            seed=seed,
            native_phase_barriers=native,
        )
        np.testing.assert_array_equal(out, x)


@aw.func
async def hand_back(tickets, returns, out: aw.Array[aw.i32], x: aw.Array[aw.i32], count: aw.i32):
    for m in range(count):
        t = await tickets.recv()  # a warp-uniform number, relayed back through `returns`
        out[m * aw.WARP + aw.lane()] = x[t * aw.WARP + aw.lane()]
        await returns.send(t + 1)


@aw.func
async def hand_out(tickets, returns, count: aw.i32, first: aw.i32):
    t = first
    for _ in range(count):
        await tickets.send(t)
        t = await returns.recv()


async def ticket_relay(out: aw.Array[aw.i32], x: aw.Array[aw.i32], count: aw.i32):
    tickets, returns = aw.Channel(aw.i32, 2), aw.Channel(aw.i32, 2)
    await aw.join(hand_out(tickets, returns, count, 0), hand_back(tickets, returns, out, x, count))


@aw.func
async def hand_out_lanes(tickets, returns, count: aw.i32, first: aw.i32):
    t = first + aw.lane() % 2  # differs between lanes: taints what comes back too
    for _ in range(count):
        await tickets.send(t)
        t = await returns.recv()


async def lane_ticket_relay(out: aw.Array[aw.i32], x: aw.Array[aw.i32], count: aw.i32):
    tickets, returns = aw.Channel(aw.i32, 2), aw.Channel(aw.i32, 2)
    await aw.join(
        hand_out_lanes(tickets, returns, count, 0), hand_back(tickets, returns, out, x, count)
    )


def _channel_words(fn, W: int = 32) -> list[int]:
    types = list(inspect.get_annotations(fn, eval_str=True).values())
    k = compile_function(fn, types, warp_width=W)
    return [
        s.attrs["n"]
        for s in k.walk()
        if isinstance(s, ir.Op) and s.opcode == "shared_alloc" and s.dst.name == "chan_data"
    ]


def test_warp_uniform_messages_take_one_word():
    """Slot numbers relayed between two one-warp tasks are warp-uniform on both channels;
    a lane-dependent value makes both channels carry W words (it comes back too)."""
    assert _channel_words(ticket_relay) == [2, 2]
    assert _channel_words(lane_ticket_relay) == [2 * 32, 2 * 32]
    assert _channel_words(relay1) == [32]  # x[...] per lane


@pytest.mark.parametrize("kernel", [ticket_relay, lane_ticket_relay])
@pytest.mark.parametrize("progress", PROGRESS)
@pytest.mark.parametrize("H", ["W", 8])
def test_relayed_tickets_under_random_schedules(W, progress, H, kernel):
    rng = np.random.default_rng(W + 31)
    count = 6
    x = rng.integers(-(10**6), 10**6, (count + 2) * W).astype(np.int32)
    rows = x.reshape(-1, W)
    if kernel is ticket_relay:  # message m is ticket m
        want = rows[:count]
    else:  # lanes alternate between tickets m and m + 1
        want = np.stack([np.where(np.arange(W) % 2, rows[m + 1], rows[m]) for m in range(count)])
    H = W if H == "W" else H
    check_random_schedules(kernel, want, x, np.int32(count), W=W, progress=progress, H=H)


def test_counter_tests_wait_a_bounded_while(W):
    """The counter form's test loads up to `spins` more times (a Loop per test); spins=0
    is a single load."""
    k = compile_function(
        relay1, [ArrayType(from_dtype(np.int32))] * 2 + [from_dtype(np.int32)], warp_width=W
    )
    uniformity.check(k)
    lowered = lower_async(k, progress="cooperative", executor="block_on", warps=None)

    def loops(kernel):
        return sum(isinstance(s, ir.Loop) for s in kernel.walk())

    tests = sum(isinstance(s, ir.Op) and s.opcode == "pbar_test" for s in lowered.walk())
    assert tests >= 2
    assert loops(lower_phase_barriers(lowered, spins=0)) == loops(lowered)
    assert loops(lower_phase_barriers(lowered, spins=3)) == loops(lowered) + tests
    with pytest.raises(ValueError, match="spins"):
        lower_phase_barriers(lowered, spins=-1)


def test_devices_that_bound_loops_build_without_spins(backend):
    """Mesa lavapipe stops a shader after 65,535 loop iterations in all: its kernels get
    no bounded waits (they would spend that budget); other devices get the default."""
    from asyncwarp import backends

    opts = aw.kernel(relay1).build_options(backend=backend)
    limited = backend == "vulkan" and backends.get("vulkan").caps().extra.get(
        "loop_iteration_limit"
    )
    assert opts.barrier_test_spins == (0 if limited else None)


# ---------------------------------------------------------------- Barrier


async def phases(out: aw.Array[aw.i32], x: aw.Array[aw.i32], rounds: aw.i32):
    bar = aw.Barrier(4)
    scratch = aw.shared(aw.i32, 4 * aw.WARP)
    me = aw.warp_id()
    acc = 0
    for r in range(rounds):
        scratch[me * aw.WARP + aw.lane()] = x[(r * 4 + me) * aw.WARP + aw.lane()]
        await bar.wait()  # everyone's write of round r is visible
        for w in range(4):
            acc += scratch[w * aw.WARP + aw.lane()] * (w + 1)
        await bar.wait()  # nobody overwrites scratch before everyone read it
    out[(aw.block_id() * 4 + me) * aw.WARP + aw.lane()] = acc


@pytest.mark.parametrize("progress", PROGRESS)
def test_barrier_orders_rounds_of_four_warps(W, progress):
    rng = np.random.default_rng(W + 2)
    rounds, grid = 3, 2
    x = rng.integers(-1000, 1000, rounds * 4 * W).astype(np.int32)
    out = poisoned(grid * 4 * W, np.int32)
    run_source(
        phases,
        grid,
        out,
        x,
        np.int32(rounds),
        W=W,
        progress=progress,
        warps=4,
        scheduler="random",
        seed=4,
    )
    per_round = x.reshape(rounds, 4, W) * np.arange(1, 5)[None, :, None]
    want = per_round.sum(axis=(0, 1))
    np.testing.assert_array_equal(out, np.tile(want, grid * 4))


# ---------------------------------------------------------------- Semaphore


async def limited(stats: aw.Array[aw.i32], holders: aw.Array[aw.i32], work: aw.Array[aw.i32]):
    sem = aw.Semaphore(2)
    for _ in range(work[aw.warp_id()]):
        await sem.acquire()
        if aw.lane() == 0:
            now = aw.atomic_add(holders, aw.block_id(), 1) + 1
            aw.atomic_max(stats, 2 * aw.block_id(), now)
            aw.atomic_add(stats, 2 * aw.block_id() + 1, 1)
        await aw.yield_now()
        await aw.yield_now()
        if aw.lane() == 0:
            aw.atomic_add(holders, aw.block_id(), -1)
        sem.release()


@pytest.mark.parametrize("progress", PROGRESS)
def test_semaphore_never_admits_more_than_its_permits(W, progress):
    rng = np.random.default_rng(W + 3)
    grid, warps = 2, 5
    work = rng.integers(1, 4, warps).astype(np.int32)
    stats = np.zeros(2 * grid, np.int32)
    holders = np.zeros(grid, np.int32)
    run_source(
        limited,
        grid,
        stats,
        holders,
        work,
        W=W,
        progress=progress,
        warps=warps,
        scheduler="random",
        seed=7,
    )
    most, acquisitions = stats[0::2], stats[1::2]
    np.testing.assert_array_equal(most, 2)  # the limit was reached and never passed
    np.testing.assert_array_equal(acquisitions, np.full(grid, work.sum()))
    np.testing.assert_array_equal(holders, 0)


# ---------------------------------------------------------------- Event


async def chain(out: aw.Array[aw.i32], x: aw.Array[aw.i32], ready: aw.Array[aw.u32]):
    b = aw.block_id()
    mine = aw.Event(ready, b)
    i = b * aw.WARP + aw.lane()
    if b == 0:
        out[i] = x[i]
    else:
        await aw.Event(ready, b - 1).wait()
        out[i] = out[i - aw.WARP] + x[i]
    aw.fence()
    mine.set()


@pytest.mark.parametrize("progress", PROGRESS)
def test_events_chain_blocks_in_order(W, progress):
    """Block b waits for block b-1's event: a running sum across blocks."""
    rng = np.random.default_rng(W + 4)
    grid = 4
    x = rng.integers(-100, 100, grid * W).astype(np.int32)
    out = poisoned(grid * W, np.int32)
    ready = np.zeros(grid, np.uint32)
    run_source(chain, grid, out, x, ready, W=W, progress=progress, scheduler="round_robin")
    np.testing.assert_array_equal(out, np.cumsum(x.reshape(grid, W), axis=0).ravel())
    np.testing.assert_array_equal(ready, 1)


async def peek(out: aw.Array[aw.i32], flags: aw.Array[aw.u32]):
    ev = aw.Event(flags, aw.lane() % 4)
    await aw.yield_now()
    out[aw.lane()] = 1 if ev.is_set() else 0


def test_event_is_set_reads_the_flag():
    W = 32
    flags = np.array([0, 1, 0, 7], np.uint32)
    out = poisoned(W, np.int32)
    run_source(peek, 1, out, flags, W=W, progress="cooperative")
    np.testing.assert_array_equal(out, (flags[np.arange(W) % 4] != 0).astype(np.int32))


# ---------------------------------------------------------------- errors


async def channel_in_branch(out: aw.Array[aw.i32]):
    if out[0] == 0:
        ch = aw.Channel(aw.i32, 2)
        await ch.send(1)


async def channel_after_await(out: aw.Array[aw.i32]):
    await aw.yield_now()
    sem = aw.Semaphore(1)
    await sem.acquire()


async def send_in_divergent_code(out: aw.Array[aw.i32]):
    ch = aw.Channel(aw.i32, 2)
    if aw.lane() < 3:
        await ch.send(1)


@pytest.mark.parametrize(
    "kernel, needle, message",
    [
        (channel_in_branch, "aw.Channel(", "must be created at the kernel's top level"),
        (channel_after_await, "aw.Semaphore(", "must be created before the kernel's first await"),
        (send_in_divergent_code, "ch.send", "must be reached by all lanes of a warp together"),
    ],
)
def test_misplaced_primitives_are_compile_errors_at_their_line(kernel, needle, message):
    with pytest.raises(CompileError, match=message) as e:
        run_source(kernel, 1, poisoned(4, np.int32), W=32, progress="cooperative")
    assert f"test_primitives.py:{line_of(kernel, needle)}:" in str(e.value)


def test_primitives_cannot_be_made_on_the_host():
    with pytest.raises(TypeError, match="inside @aw.kernel"):
        aw.Channel(aw.i32, 4)


# ---------------------------------------------------------------- every backend


def test_primitives_on_every_backend(run, backend, W):
    """Channels, barrier, semaphore and events through @aw.kernel on each backend present."""
    rng = np.random.default_rng(W + 31)
    count = 5
    x = rng.integers(-(10**6), 10**6, count * W).astype(np.int32)
    out = poisoned(count * W, np.int32)
    run(aw.kernel(relay1), 1, out, x, count)
    np.testing.assert_array_equal(out, x)

    ids = rng.permutation(3 * 2 * W).astype(np.int32)
    seen = np.zeros(ids.size, np.uint32)
    run(aw.kernel(many_to_many), 1, seen, ids, 2)
    np.testing.assert_array_equal(seen, 1)

    y = rng.integers(1, 1000, 4 * W).astype(np.int32)
    got = poisoned(3 * W, np.int32)
    run(aw.kernel(closing), 1, got, y, 4)
    np.testing.assert_array_equal(
        got[: 2 * W], np.concatenate([np.full(W, 4), y.reshape(4, W).sum(0)])
    )

    z = rng.integers(-1000, 1000, 2 * 4 * W).astype(np.int32)
    acc = poisoned(4 * W, np.int32)
    run(aw.kernel(phases), 1, acc, z, 2, warps=4)
    weights = np.arange(1, 5)[None, :, None]
    np.testing.assert_array_equal(acc, np.tile((z.reshape(2, 4, W) * weights).sum((0, 1)), 4))

    work = np.array([2, 1, 3, 1], np.int32)
    stats, holders = np.zeros(2, np.int32), np.zeros(1, np.int32)
    run(aw.kernel(limited), 1, stats, holders, work, warps=4)
    assert 1 <= stats[0] <= 2 and stats[1] == work.sum() and holders[0] == 0

    grid = 3
    v = rng.integers(-100, 100, grid * W).astype(np.int32)
    total, ready = poisoned(grid * W, np.int32), np.zeros(grid, np.uint32)
    run(aw.kernel(chain), grid, total, v, ready)
    np.testing.assert_array_equal(total, np.cumsum(v.reshape(grid, W), axis=0).ravel())
