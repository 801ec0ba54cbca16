"""Profile the host side of a cached asyncwarp launch on CUDA (cProfile, by cumulative time).

    python -m benchmarks.profile_launch [--launches N]

Prints the time per launch of `kern[grid, warps](...)` on device arrays, of a raw
cuLaunchKernel + synchronize of the same PTX, and the cProfile table of the
asyncwarp path, so the per-launch costs can be read on the GPU host itself.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

import numpy as np

import asyncwarp as aw
from asyncwarp.backends.cuda import runtime


@aw.kernel
def scale(y: aw.Array[aw.f32], x: aw.Array[aw.f32], a: aw.f32, n: aw.i32):
    i = aw.block_id() * aw.WARP + aw.lane()
    if i < n:
        y[i] = a * x[i]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_launch")
    p.add_argument("--launches", type=int, default=2000)
    a = p.parse_args(argv)
    n = 1024
    x = runtime.to_device(np.random.default_rng(0).standard_normal(n).astype(np.float32))
    y = runtime.to_device(np.zeros(n, np.float32))
    kern = scale.with_options(backend="cuda")
    launch = kern[n // 32, 1]
    launch(y, x, 2.0, n)  # compile, load, warm up

    def run():
        for _ in range(a.launches):
            launch(y, x, 2.0, n)

    t0 = time.perf_counter()
    run()
    per = (time.perf_counter() - t0) / a.launches * 1e6
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
    print(f"asyncwarp launch + sync: {per:.1f} us per launch ({a.launches} launches)")
    print(out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
