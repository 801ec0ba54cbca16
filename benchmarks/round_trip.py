"""Benchmark 3: a channel round trip between two warps (ping-pong, many rounds) against
a hand-written mbarrier ping-pong in CUDA C++; time per round trip.

One block, so the time is the latency of the hand-off, not a throughput; a
round trip is two messages of one value per lane.
"""

from __future__ import annotations

import numpy as np

from . import kernels
from .cubins import BaselineUnavailable
from .cubins import load as load_cubin
from .harness import BenchResult, Context, Goal, Row, check_close
from .harness import ratio_of_times as ratio

NAME = "round_trip"
TITLE = "3. channel round trip between two warps (ping-pong)"
ASYNC = "asyncwarp channels, {progress}"
MBARRIER = "CUDA C++ mbarrier ping-pong"


POISON = np.int32(-0x21524111)  # 0xDEADBEEF: never lane + rounds


def rounds_for(ctx: Context) -> int:
    return ctx.pick(20_000, 5_000, 20)


def time_ping_pong(ctx: Context, target=None, **options) -> Row:
    """Time asyncwarp's ping-pong on one block; the row is labelled with its progress mode."""
    target = target or ctx.target
    rounds = rounds_for(ctx)
    out = target.empty(ctx.warp_width, np.int32, POISON)
    launch = target.prepare(
        kernels.ping_pong, 1, [out, np.int32(rounds)], warp_width=ctx.warp_width, **options
    )
    label = ASYNC.format(progress=launch.compiled.options.progress)
    row = measure(ctx, label, launch, out, rounds, target)
    row.extra["progress"] = launch.compiled.options.progress
    return row


def measure(ctx: Context, label: str, launch, out, rounds: int, target) -> Row:
    want = np.arange(ctx.warp_width, dtype=np.int32) + rounds
    target.fill(out, POISON)
    times = launch.time(ctx.reps, ctx.warmup)
    check = check_close(target.download(out), want)
    per_trip_ns = np.median(times) * 1e6 / rounds
    return Row(label, times, per_trip_ns, "ns/round trip", check, {"rounds": rounds})


def run(ctx: Context) -> BenchResult:
    target = ctx.target
    rounds = rounds_for(ctx)
    result = BenchResult(
        NAME,
        TITLE,
        floor=(
            f"{rounds} round trips, one block; the floor is the hardware's hand-off latency "
            "through block memory (tens of ns), which the mbarrier version approaches"
        ),
    )
    modes = ["auto", "cooperative"] if target.backend == "cuda" else ["auto"]
    for progress in modes:
        result.rows.append(time_ping_pong(ctx, progress=progress))
    if target.backend != "cuda":
        result.skip(MBARRIER, "CUDA only")
    elif ctx.warp_width != 32:
        result.skip(MBARRIER, "the hand-written kernel is written for 32-lane warps")
    else:
        try:
            image, origin = load_cubin("ping_pong")
        except BaselineUnavailable as err:
            result.skip(MBARRIER, str(err))
        else:
            fn = target.load_cubin(image, "mbar_ping_pong")
            out = target.empty(ctx.warp_width, np.int32, POISON)
            launch = target.prepare_function(fn, "mbar_ping_pong", 1, 64, [out, np.int32(rounds)])
            result.rows.append(measure(ctx, MBARRIER, launch, out, rounds, target))
            result.rows[-1].extra["cubin"] = origin
    first = result.rows[0].label
    ratio(result, f"{first} / mbarrier (time per round trip)", first, MBARRIER, Goal("<=", 1.5))
    for row in result.rows[1:]:
        if row.label != MBARRIER:  # the other mode, for information
            ratio(result, f"{row.label} / mbarrier (time per round trip)", row.label, MBARRIER)
    return result
