"""Benchmark 5: the same kernels through Vulkan and through CUDA on one GPU.

Each pair runs the same source with the same lowering (progress cooperative on
both, since Vulkan promises no forward progress between warps) and the same data,
so the ratio measures code generation and runtime. The stream runs on each backend
at the grid its short runs find fastest (pipeline.tuned_grid, the same candidates
of blocks per SM on both), as benchmark 1 does: the two compilers allocate
different register counts, so one grid can fit on one backend and leave a tail
on the other. The
auto-vs-auto rows show what a user gets by default (independent on CUDA).
"""

from __future__ import annotations

from asyncwarp.core.errors import BackendUnavailable

from . import kernels
from .await_cost import time_compute
from .harness import BenchResult, Context, Goal, ratio_of_metrics, ratio_of_times
from .pipeline import floor_text, stream_data, stream_size, time_stream_kernel
from .round_trip import time_ping_pong

NAME = "backends"
TITLE = "5. backends: the same kernels through Vulkan vs CUDA"
GOAL = Goal(">=", 0.85)  # Vulkan's speed relative to CUDA's


def run(ctx: Context) -> BenchResult:
    result = BenchResult(NAME, TITLE)
    try:
        cuda, vulkan = ctx.other("cuda"), ctx.other("vulkan")
    except BackendUnavailable as err:
        result.skip("Vulkan vs CUDA", f"needs both backends on this machine: {err}")
        return result
    if vulkan.tiny:
        result.skip("Vulkan vs CUDA", f"the Vulkan device is a CPU ({vulkan.name})")
        return result
    W = ctx.warp_width
    n = min(stream_size(ctx, cuda), stream_size(ctx, vulkan))
    on_cuda, on_vulkan = stream_data(ctx, cuda, n), stream_data(ctx, vulkan, n)
    result.floor = floor_text(on_cuda.bytes_moved) + " (stream)"
    for progress in ("cooperative", "auto"):
        c = time_stream_kernel(
            ctx,
            f"stream, CUDA, {progress}",
            kernels.stream,
            on_cuda,
            cuda,
            grid="tuned",
            warp_width=W,
            progress=progress,
        )
        v = time_stream_kernel(
            ctx,
            f"stream, Vulkan, {progress}",
            kernels.stream,
            on_vulkan,
            vulkan,
            grid="tuned",
            sms=cuda.caps.extra["sm_count"],  # where Vulkan does not report its own
            warp_width=W,
            progress=progress,
        )
        resolve_labels(c, v)
        result.rows += [c, v]
        ratio_of_metrics(
            result,
            f"stream, {progress}: Vulkan / CUDA (bandwidth)",
            v.label,
            c.label,
            GOAL if progress == "cooperative" else None,
        )

    until = kernels.COMPUTE_KERNELS[8]["until"]
    for progress in ("cooperative", "auto"):
        c = time_compute(ctx, f"await until, CUDA, {progress}", until, 8, cuda, progress=progress)
        v = time_compute(
            ctx, f"await until, Vulkan, {progress}", until, 8, vulkan, progress=progress
        )
        resolve_labels(c, v)
        result.rows += [c, v]
        ratio_of_times(
            result,
            f"await until, {progress}: Vulkan / CUDA speed",
            c.label,
            v.label,
            GOAL if progress == "cooperative" else None,
        )

    for progress in ("cooperative", "auto"):
        c = time_ping_pong(ctx, cuda, progress=progress)
        v = time_ping_pong(ctx, vulkan, progress=progress)
        c.label, v.label = f"ping-pong, CUDA, {progress}", f"ping-pong, Vulkan, {progress}"
        resolve_labels(c, v)
        result.rows += [c, v]
        ratio_of_times(
            result,
            f"ping-pong, {progress}: Vulkan / CUDA speed",
            c.label,
            v.label,
            GOAL if progress == "cooperative" else None,
        )
    return result


def resolve_labels(*rows) -> None:
    """Name the mode `auto` resolved to in the labels of rows built with progress="auto"."""
    for row in rows:
        if row.label.endswith(", auto"):
            row.label += f" ({row.extra['progress']})"
