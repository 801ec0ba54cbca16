"""Benchmark 6: host overhead. Launching a cached asyncwarp kernel from Python against a
raw cuLaunchKernel of the same function and against CuPy, PyTorch and Triton
launching a comparable tiny kernel; and the cold compile, Python source to a
loaded module, against Triton's with an empty cache.

Every launch is followed by a stream synchronisation, since asyncwarp's launch
always waits for the kernel: the numbers are launch + sync round trips.
"""

from __future__ import annotations

import contextlib
import cProfile
import dataclasses
import io
import os
import pstats
import tempfile
import time
from pathlib import Path

import numpy as np

import asyncwarp as aw
from asyncwarp.backends.cuda import runtime
from asyncwarp.backends.cuda.ptx import block_size, entry_name
from asyncwarp.core import config

from . import kernels
from .harness import BenchResult, Context, Goal, Row, check_close
from .harness import ratio_of_times as ratio

NAME = "host_overhead"
TITLE = "6. host overhead: launch from Python, and cold compile"
A, B = np.float32(1.5), np.float32(-0.25)
N, WARPS = 4096, 4
ASYNCWARP = "asyncwarp kern[grid, warps](...)"
RAW = "raw cuLaunchKernel (cuda.bindings), same kernel"
COLD_AW = "asyncwarp cold: Python -> loaded module + 1 launch"
COLD_TRITON = "Triton cold (empty cache): -> loaded + 1 launch"
OTHERS = {
    "cupy": "CuPy ElementwiseKernel",
    "torch": "PyTorch torch.mul(out=)",
    "triton": "Triton @jit kernel",
}


def run(ctx: Context) -> BenchResult:
    result = BenchResult(
        NAME,
        TITLE,
        floor=("a launch + synchronisation through the driver: raw cuLaunchKernel is the floor"),
    )
    if ctx.target.backend != "cuda":
        result.skip("host overhead", "CUDA only (it compares CUDA launch paths)")
        return result
    launches(ctx, result)
    cold_compiles(ctx, result)
    return result


def per_launch_ms(call, sync, ctx: Context) -> list[float]:
    """Milliseconds per (call + sync), one value per batch of iterations."""
    iterations = ctx.pick(500, 200, 3)
    for _ in range(ctx.pick(50, 20, 1)):
        call()
        sync()
    batches = []
    for _ in range(ctx.pick(10, 5, 2)):
        start = time.perf_counter()
        for _ in range(iterations):
            call()
            sync()
        batches.append((time.perf_counter() - start) * 1e3 / iterations)
    return batches


def launches(ctx: Context, result: BenchResult) -> None:
    target = ctx.target
    x = ctx.rng("launch x").standard_normal(N, dtype=np.float32)
    x_dev, y_dev = target.upload(x), target.empty(N, np.float32, np.nan)
    grid = -(-N // (WARPS * ctx.warp_width))
    kern = kernels.affine.with_options(backend="cuda", warp_width=ctx.warp_width)
    args = (y_dev, x_dev, A, B, np.int32(N))
    want = (A * x + B).astype(np.float32)

    def add(label: str, times: list[float], got: np.ndarray, expect: np.ndarray) -> None:
        result.rows.append(
            Row(label, times, float(np.median(times)) * 1e3, "µs/launch", check_close(got, expect))
        )

    def no_sync() -> None:  # asyncwarp's launch returns after the kernel finished
        pass

    target.fill(y_dev, np.nan)
    add(
        ASYNCWARP,
        per_launch_ms(lambda: kern[grid, WARPS](*args), no_sync, ctx),
        target.download(y_dev),
        want,
    )
    result.rows[-1].extra["profile"] = profile(lambda: kern[grid, WARPS](*args), ctx)

    raw = target.prepare(kernels.affine, grid, list(args), warps=WARPS, warp_width=ctx.warp_width)
    target.fill(y_dev, np.nan)
    add(RAW, per_launch_ms(raw.enqueue, target.synchronize, ctx), target.download(y_dev), want)
    ratio(result, "asyncwarp / raw cuLaunchKernel", ASYNCWARP, RAW, Goal("<=", 1.5))

    for name, label in OTHERS.items():
        try:
            times, got, expect = OTHER_LAUNCHES[name](ctx, x)
        except ImportError as err:
            result.skip(label, f"{name} is not importable here: {err}")
            continue
        except Exception as err:  # another project's failure is reported, not fatal
            result.skip(label, f"{name} failed: {type(err).__name__}: {err}")
            continue
        add(label, times, got, expect)
        ratio(result, f"asyncwarp / {name}", ASYNCWARP, label, Goal("<=", 1.0))


def profile(call, ctx: Context, top: int = 8) -> list[str]:
    """The functions where asyncwarp's launch spends its host time (cProfile, by own time)."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(ctx.pick(200, 100, 2)):
        call()
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    lines = [line.strip() for line in text.getvalue().splitlines()]
    start = next((i for i, line in enumerate(lines) if line.startswith("ncalls")), 0)
    return [line for line in lines[start:] if line]


def _cupy(ctx: Context, x: np.ndarray):
    import cupy

    k = cupy.ElementwiseKernel(
        "float32 x, float32 a, float32 b", "float32 y", "y = a * x + b", "asyncwarp_bench_affine"
    )
    xd, yd = cupy.asarray(x), cupy.full(x.size, np.nan, dtype=cupy.float32)
    stream = cupy.cuda.get_current_stream()
    times = per_launch_ms(lambda: k(xd, A, B, yd), stream.synchronize, ctx)
    return times, cupy.asnumpy(yd), (A * x + B).astype(np.float32)


def _torch(ctx: Context, x: np.ndarray):
    import torch

    xd = torch.from_numpy(x).cuda()
    yd = torch.full_like(xd, float("nan"))
    times = per_launch_ms(lambda: torch.mul(xd, float(A), out=yd), torch.cuda.synchronize, ctx)
    return times, yd.cpu().numpy(), (x * A).astype(np.float32)


def _triton(ctx: Context, x: np.ndarray):
    import torch

    from . import triton_affine

    xd = torch.from_numpy(x).cuda()
    yd = torch.full_like(xd, float("nan"))
    grid = (-(-x.size // triton_affine.BLOCK),)

    def call() -> None:
        triton_affine.affine[grid](xd, yd, float(A), float(B), x.size, BLOCK=triton_affine.BLOCK)

    times = per_launch_ms(call, torch.cuda.synchronize, ctx)
    return times, yd.cpu().numpy(), (A * x + B).astype(np.float32)


OTHER_LAUNCHES = {"cupy": _cupy, "torch": _torch, "triton": _triton}


# ------------------------------------------------------------------ cold compile


@contextlib.contextmanager
def disk_cache_off():
    """asyncwarp without its on-disk kernel cache, restoring the configuration after."""
    previous = {
        f.name: getattr(config.current(), f.name) for f in dataclasses.fields(config.Config)
    }
    aw.init(**{**previous, "disk_cache": False})
    try:
        yield
    finally:
        aw.init(**previous)


def cold_asyncwarp(ctx: Context, y_dev, x_dev) -> float:
    """ms from a fresh kernel handle to a finished first launch (PTX JIT included)."""
    target = ctx.target
    drv = target.drv
    start = time.perf_counter()
    fresh = aw.kernel(kernels.affine.fn)  # a new handle: nothing compiled in memory
    args = [y_dev, x_dev, A, B, np.int32(N)]
    compiled = fresh.specialize(*args, backend="cuda", warps=WARPS, warp_width=ctx.warp_width)
    name = entry_name(compiled.lowered)
    # Loaded here, not through CudaDevice.function, whose module cache would make
    # every trial after the first a cache hit.
    module = runtime.check(
        drv.cuModuleLoadData(compiled.artefact.encode() + b"\0"), "cuModuleLoadData (PTX JIT)", name
    )
    try:
        fn = runtime.check(drv.cuModuleGetFunction(module, name.encode()), "cuModuleGetFunction")
        grid = -(-N // (WARPS * ctx.warp_width))
        launch = target.prepare_function(fn, name, grid, block_size(compiled.lowered), args)
        launch.run()
        return (time.perf_counter() - start) * 1e3
    finally:
        drv.cuModuleUnload(module)


def cold_triton(x: np.ndarray) -> float:
    """ms from a fresh Triton JITFunction, with an empty cache directory, to a finished launch."""
    import torch

    from . import triton_affine

    xd = torch.from_numpy(x).cuda()
    yd = torch.empty_like(xd)
    grid = (-(-x.size // triton_affine.BLOCK),)
    previous = os.environ.get("TRITON_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="asyncwarp-bench-triton-") as cache:
        os.environ["TRITON_CACHE_DIR"] = cache
        try:
            torch.cuda.synchronize()
            start = time.perf_counter()
            triton_affine.fresh()[grid](
                xd, yd, float(A), float(B), x.size, BLOCK=triton_affine.BLOCK
            )
            torch.cuda.synchronize()
            elapsed = (time.perf_counter() - start) * 1e3
            if not any(Path(cache).iterdir()):
                raise RuntimeError("Triton ignored TRITON_CACHE_DIR: its compile was not cold")
            return elapsed
        finally:
            if previous is None:
                os.environ.pop("TRITON_CACHE_DIR", None)
            else:
                os.environ["TRITON_CACHE_DIR"] = previous


def cold_compiles(ctx: Context, result: BenchResult) -> None:
    target = ctx.target
    x = ctx.rng("cold x").standard_normal(N, dtype=np.float32)
    x_dev, y_dev = target.upload(x), target.empty(N, np.float32, np.nan)
    trials = ctx.pick(5, 3, 2)
    with disk_cache_off():
        cold_asyncwarp(ctx, y_dev, x_dev)  # warm-up: imports and the compiler's build id
        times = [cold_asyncwarp(ctx, y_dev, x_dev) for _ in range(trials)]
    check = check_close(target.download(y_dev), (A * x + B).astype(np.float32))
    result.rows.append(
        Row(
            COLD_AW,
            times,
            float(np.median(times)),
            "ms",
            check,
            {"trials": trials, "disk_cache": False},
        )
    )
    try:
        cold_triton(x)  # warm-up: Triton's own imports and its driver helpers
        times = [cold_triton(x) for _ in range(trials)]
    except ImportError as err:
        result.skip(COLD_TRITON, f"triton (with torch) is not importable here: {err}")
        return
    except Exception as err:  # another project's failure is reported, not fatal
        result.skip(COLD_TRITON, f"triton failed: {type(err).__name__}: {err}")
        return
    result.rows.append(
        Row(COLD_TRITON, times, float(np.median(times)), "ms", None, {"trials": trials})
    )
    ratio(result, "cold compile: asyncwarp / Triton", COLD_AW, COLD_TRITON, Goal("<=", 0.5))
