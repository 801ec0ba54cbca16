"""Resumable tasks (core.passes.lower_async_resume): a task's polls run its own structured code.

Most awaits below pend at least once (yield_now, sleep, a channel the other warp
fills), so a poll stops at a point and the next one resumes there: inside nested
loops, after `continue` and `break`, in both branches of an `if`, in a
lane-divergent branch and at a join. Some are ready at once, so a fresh pass of
an outer loop also reaches an inner loop and pends inside it. Results are
compared with the same code run as plain Python, under random schedules, in
both progress modes (independent is the in-place form, the control), with the
flat state machine as a second control.
"""

import numpy as np
import pytest
from test_primitives import check_random_schedules

import asyncwarp as aw
from asyncwarp.core import ir
from asyncwarp.core.passes import lower_async_resume

PROGRESS = ("independent", "cooperative")


def shapes_reference(x: np.ndarray, n: int) -> np.ndarray:
    acc = x.astype(np.int64).copy()
    for i in range(n):
        if i % 4 == 1:
            continue
        acc = acc * 3 + i
        if i % 5 == 3:
            acc = acc + 7
        else:
            acc = acc - 1
        j = 0
        while True:
            j += 1
            if j >= i % 3 + 1:
                break
            acc = acc ^ j
        acc = np.where(x % 2 == 0, acc + 5, acc)
        a, b = acc + 1, acc * 2
        acc = a + b
        if i == 9:
            break
    return (acc + 11).astype(np.int32)


@aw.func
async def plus_one(v: aw.i32):
    await aw.yield_now()
    return v + 1


@aw.func
async def times_two(v: aw.i32):
    await aw.sleep(50)
    return v * 2


async def shapes(out: aw.Array[aw.i32], x: aw.Array[aw.i32], n: aw.i32):
    lane = aw.lane()
    acc = x[lane]
    for i in range(n):
        if i % 4 == 1:
            continue
        # ready at once on most steps, so a fresh pass of this loop reaches the inner
        # loop below and pends there (then nothing after the inner loop may run)
        await aw.until(i < n)
        acc = acc * 3 + i
        if i % 5 == 3:
            await aw.yield_now()
            acc = acc + 7
        else:
            await aw.until(acc != 0 or i >= 0)
            acc = acc - 1
        j = 0
        while True:
            await aw.yield_now()
            j += 1
            if j >= i % 3 + 1:
                break
            acc = acc ^ j
        if x[lane] % 2 == 0:  # lane-divergent: a per-lane machine inside the loop
            await aw.sleep(30)
            acc = acc + 5
        a, b = await aw.join(plus_one(acc), times_two(acc))
        acc = a + b
        if i == 9:
            break
    await aw.yield_now()
    out[lane] = acc + 11


def relay_reference(x: np.ndarray, count: int, W: int) -> np.ndarray:
    rows = x.reshape(count, W).astype(np.int64)
    out = np.zeros_like(rows)
    total = np.zeros(W, np.int64)
    for m in range(count):
        if m % 3 == 2:
            total = total - rows[m]
            continue
        total = total + rows[m]
        out[m] = total
    return out.reshape(-1).astype(np.int32)


@aw.func
async def feed(ch, x: aw.Array[aw.i32], count: aw.i32):
    for m in range(count):
        await ch.send(x[m * aw.WARP + aw.lane()])


@aw.func
async def running_sums(ch, out: aw.Array[aw.i32], count: aw.i32):
    total = 0
    m = 0
    while m < count:
        v = await ch.recv()
        m += 1
        if (m - 1) % 3 == 2:
            total = total - v
            out[(m - 1) * aw.WARP + aw.lane()] = 0
            continue
        total = total + v
        out[(m - 1) * aw.WARP + aw.lane()] = total


async def relay(out: aw.Array[aw.i32], x: aw.Array[aw.i32], count: aw.i32):
    ch = aw.Channel(aw.i32, 2)
    await aw.join(feed(ch, x, count), running_sums(ch, out, count))


@aw.func
async def countdown(v: aw.i32):
    await aw.yield_now()
    return v - 1


async def await_in_condition(out: aw.Array[aw.i32], x: aw.Array[aw.i32], n: aw.i32):
    v = x[aw.lane()] % n
    k = 0
    while (await countdown(v)) > 0:  # the await decides whether the loop goes on
        v = v - 1
        k += 1
    out[aw.lane()] = k


@pytest.fixture(params=["resumable", "flat"])
def form(request, monkeypatch):
    if request.param == "flat":
        monkeypatch.setattr(lower_async_resume, "MAX_POINTS", -1)
    return request.param


@pytest.mark.parametrize("progress", PROGRESS)
@pytest.mark.parametrize("H", ["W", 8])
def test_awaits_in_nested_loops_branches_and_joins(W, progress, H, form):
    rng = np.random.default_rng(W + 5)
    x = rng.integers(-1000, 1000, W).astype(np.int32)
    n = 12
    H = W if H == "W" else H
    want = shapes_reference(x, n)
    check_random_schedules(shapes, want, x, np.int32(n), W=W, progress=progress, H=H)


@pytest.mark.parametrize("progress", PROGRESS)
def test_channel_waits_resume_inside_a_while_loop_with_continue(W, progress, form):
    rng = np.random.default_rng(W + 9)
    count = 7
    x = rng.integers(-50, 50, count * W).astype(np.int32)
    want = relay_reference(x, count, W)
    check_random_schedules(relay, want, x, np.int32(count), W=W, progress=progress)


def _lowered_text(fn, W: int, progress: str) -> str:
    from asyncwarp.core import uniformity
    from asyncwarp.core.frontend import compile_function
    from asyncwarp.core.passes.lower_async import lower_async
    from asyncwarp.core.types import ArrayType, i32

    k = compile_function(fn, [ArrayType(i32), ArrayType(i32), i32], warp_width=W)
    uniformity.check(k)
    return ir.print_kernel(lower_async(k, progress=progress, executor="block_on", warps=None))


def test_cooperative_tasks_keep_their_loops(form):
    """The resumable form keeps the task's loops (the flat form has only dispatch loops)."""
    text = _lowered_text(shapes, 32, "cooperative")
    assert ("%task_point" in text) is (form == "resumable")


@pytest.mark.parametrize("progress", PROGRESS)
def test_await_in_a_while_condition(W, progress, form):
    rng = np.random.default_rng(W + 13)
    x = rng.integers(0, 1000, W).astype(np.int32)
    n = 6
    want = np.maximum(x % n - 1, 0).astype(np.int32)
    check_random_schedules(await_in_condition, want, x, np.int32(n), W=W, progress=progress)
