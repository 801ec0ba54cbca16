"""Benchmark 1: a warp-specialised streaming pipeline, y = a*x + b, against a
device-to-device copy of the same bytes and hand-written CUDA C++ mbarrier pipelines.

Bandwidth counts the bytes the work must move: n floats read plus n written.
The inputs (and the helpers that time a stream kernel) are shared with the
progress and backend benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import kernels
from .cubins import BaselineUnavailable
from .cubins import load as load_cubin
from .harness import (
    H100_COPY_BYTES_PER_S,
    BenchResult,
    Context,
    Goal,
    Row,
    affine_reference,
    check_close,
    duration,
)
from .harness import ratio_of_metrics as ratio

NAME = "pipeline"
TITLE = "1. warp-specialised streaming pipeline, y = a*x + b"
A, B = np.float32(1.5), np.float32(-0.25)
POISON = np.float32(np.nan)
# Floats of the tiny tier: not a multiple of a batch (BATCH * W), so the tails run.
TINY_N = 16_484
# (kernel in baselines/ws_pipeline.cu, threads per block, row label)
HAND_WRITTEN = (
    ("ws_mirror", 64, "CUDA C++ mbarrier ring, plain loads (same design)"),
    ("ws_cpasync", 96, "CUDA C++ mbarrier ring, cp.async + float4"),
)
STREAM = "asyncwarp stream (channels carry slots)"
NAIVE = "asyncwarp README pipeline (channel carries values)"
PLAIN = "asyncwarp affine, no async"
COPY = "cuMemcpyDtoD (same bytes)"


@dataclass
class StreamData:
    """x on the device and its host copy, a poisoned y, and the reference a*x + b."""

    n: int
    x: np.ndarray
    want: np.ndarray
    x_dev: Any
    y_dev: Any

    @property
    def bytes_moved(self) -> int:
        return 2 * self.n * 4


def stream_size(ctx: Context, target) -> int:
    """Floats of the stream benchmarks on `target`: 2^28 (1 GiB each way) at full size."""
    n = TINY_N if ctx.tier == "tiny" else ctx.pick(1 << 28, 1 << 26, TINY_N)
    # A device may bind less than 1 GiB per buffer (Vulkan's maxStorageBufferRange).
    return min(n, target.max_buffer_bytes // 4 // 1024 * 1024)


def stream_data(ctx: Context, target=None, n: int | None = None) -> StreamData:
    """The stream inputs on `target` (default: the run's), made once per target and size."""
    target = target or ctx.target
    n = stream_size(ctx, target) if n is None else n
    key = ("stream", target.backend, n)
    if key not in ctx.shared:
        x = ctx.rng("stream x").standard_normal(n, dtype=np.float32)
        want = affine_reference(x, A, B)
        y_dev = target.empty(n, np.float32, POISON)
        ctx.shared[key] = StreamData(n, x, want, target.upload(x), y_dev)
    return ctx.shared[key]


# Blocks per SM tried for each persistent kernel of benchmark 1 on CUDA (asyncwarp's and
# the hand-written ones alike); each is then timed at its fastest grid.
BLOCKS_PER_SM = (8, 12, 16, 20, 24, 32)


def device_sms(target) -> int | None:
    """The target's SM count: CUDA's attribute, or Vulkan's VK_NV_shader_sm_builtins; else None."""
    caps = getattr(target, "caps", None)
    return caps.extra.get("sm_count") if caps is not None else None


def tuned_grid(ctx: Context, launch_at, target=None, sms: int | None = None) -> int | None:
    """The grid, of BLOCKS_PER_SM x SMs, whose short run is fastest; `launch_at(grid)` prepares
    a launch. On CUDA the grid stops at what is resident at once (launch_at(None)); Vulkan
    has no occupancy query, so every candidate is tried. The SMs are the device's own
    (device_sms), else `sms` from the caller (benchmark 5 passes the CUDA device's). None
    where there is nothing to tune (the tiny tier, or no SM count)."""
    target = target or ctx.target
    if ctx.tier == "tiny":
        return None
    sms = device_sms(target) or sms
    if not sms:
        return None
    if target.backend == "cuda":
        resident = launch_at(None).grid
        grids = sorted({min(per_sm * sms, resident) for per_sm in BLOCKS_PER_SM})
    else:
        grids = [per_sm * sms for per_sm in BLOCKS_PER_SM]
    times = {g: float(np.median(launch_at(g).time(ctx.pick(5, 3, 1), 1))) for g in grids}
    return min(times, key=times.get)


def default_grid(ctx: Context, target=None) -> int:
    """Blocks for a persistent kernel where no occupancy query exists (Vulkan, sim): 16 per
    SM where the SM count is known, else the H100's 132 SMs are assumed."""
    sms = device_sms(target or ctx.target) or 132
    return ctx.pick(sms * 16, sms * 16, 4)


def time_stream_kernel(
    ctx: Context,
    label: str,
    kern,
    data: StreamData,
    target=None,
    grid: int | str | None = None,
    sms: int | None = None,
    **options,
) -> Row:
    """Time one asyncwarp stream kernel (y, x, a, b, n) on `target`, then check y.

    grid None: the resident grid on CUDA, default_grid elsewhere; "tuned": tuned_grid
    (with `sms` for a target that reports no SM count)."""
    target = target or ctx.target
    args = [data.y_dev, data.x_dev, A, B, np.int32(data.n)]
    if grid == "tuned":
        grid = tuned_grid(ctx, lambda g: target.prepare(kern, g, args, **options), target, sms)
    if grid is None and target.backend != "cuda":
        grid = default_grid(ctx, target)
    launch = target.prepare(kern, grid, args, **options)
    row = time_and_check(ctx, label, launch.time, data, target)
    row.extra.update(
        grid=launch.grid,
        progress=launch.compiled.options.progress,
        warps=launch.compiled.lowered.attrs.get("warps"),
    )
    if target.backend == "cuda":
        row.extra["registers"] = launch.registers()
    return row


def time_and_check(
    ctx: Context, label: str, timer, data: StreamData, target, want: np.ndarray | None = None
) -> Row:
    """Poison y, time `timer(reps, warmup)`, check y against `want` (default a*x + b)."""
    target.fill(data.y_dev, POISON)
    times = timer(ctx.reps, ctx.warmup)
    check = check_close(target.download(data.y_dev), data.want if want is None else want)
    gbps = data.bytes_moved / (np.median(times) * 1e-3) / 1e9
    return Row(label, times, gbps, "GB/s", check, {"n": data.n})


def run(ctx: Context) -> BenchResult:
    target = ctx.target
    data = stream_data(ctx)
    result = BenchResult(NAME, TITLE, floor=floor_text(data.bytes_moved))
    if target.backend == "cuda":
        copy = target.copy(data.y_dev, data.x_dev)
        result.rows.append(
            time_and_check(
                ctx,
                COPY,
                lambda reps, warmup: target.time(copy, reps, warmup, "copy"),
                data,
                target,
                want=data.x,
            )
        )
    else:
        result.skip(COPY, "CUDA only; the no-async kernel is this backend's baseline")
    # CUDA: every kernel runs at the grid its short runs found fastest (tuned_grid)
    grid = "tuned" if target.backend == "cuda" else None
    W = ctx.warp_width
    result.rows.append(
        time_stream_kernel(ctx, STREAM, kernels.stream, data, grid=grid, warp_width=W)
    )
    result.rows.append(
        time_stream_kernel(ctx, NAIVE, kernels.naive_stream, data, grid=grid, warp_width=W)
    )
    result.rows.append(
        time_stream_kernel(ctx, PLAIN, kernels.affine, data, grid=grid, warps=4, warp_width=W)
    )
    if target.backend == "cuda":
        add_hand_written(ctx, result, data)
    else:
        result.skip("CUDA C++ baselines", "CUDA only")
    ratio(result, "stream / copy (bandwidth)", STREAM, COPY, Goal(">=", 0.93))
    ratio(result, "stream / hand-written, same design", STREAM, HAND_WRITTEN[0][2], Goal(">=", 1.0))
    ratio(
        result,
        "stream / hand-written, cp.async",
        STREAM,
        HAND_WRITTEN[1][2],
        note="the stronger hand-written design; no goal",
    )
    ratio(result, "README pipeline / copy", NAIVE, COPY)
    ratio(result, "no-async affine / copy", PLAIN, COPY)
    if target.backend != "cuda":
        ratio(result, "stream / no-async affine", STREAM, PLAIN)
    return result


def add_hand_written(ctx: Context, result: BenchResult, data: StreamData) -> None:
    target = ctx.target
    if data.n % 4:
        result.skip("CUDA C++ baselines", "ws_cpasync needs n to be a multiple of 4")
        return
    try:
        image, origin = load_cubin("ws_pipeline")
    except BaselineUnavailable as err:
        result.skip("CUDA C++ baselines", str(err))
        return
    for name, threads, label in HAND_WRITTEN:
        fn = target.load_cubin(image, name)
        args = [data.y_dev, data.x_dev, A, B, np.int32(data.n)]

        def launch_at(g, fn=fn, name=name, threads=threads, args=args):
            return target.prepare_function(fn, name, g, threads, args)

        launch = launch_at(tuned_grid(ctx, launch_at))
        # nvcc contracts a*x + b into one FMA, a rounding apart from numpy's mul + add:
        # within check_close's default tolerance.
        row = time_and_check(ctx, label, launch.time, data, target)
        row.extra.update(grid=launch.grid, registers=launch.registers(), cubin=origin)
        result.rows.append(row)


def floor_text(bytes_moved: int) -> str:
    """The stream benchmarks' floor: their bytes at the H100's measured copy rate."""
    at_copy_rate = duration(bytes_moved / H100_COPY_BYTES_PER_S)
    return (
        f"{bytes_moved / 2**20:.4g} MiB read + written: {at_copy_rate} at the H100's "
        f"measured copy rate of ~{H100_COPY_BYTES_PER_S / 1e12:.1f} TB/s"
    )
