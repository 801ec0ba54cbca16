"""Benchmark 2: what an await that is always ready costs, against the same computation
without async.

Each element runs `steps` compute steps (a chain of multiply-adds); the async
kernels await before every step, either `aw.until(s >= ready_after)` with
ready_after = 0 (always ready, unknown to the compiler) or an async function that
never suspends. Two step sizes, 8 and 32 multiply-adds, show how the cost
amortises. The work is compute-bound and L2-resident on purpose: memory would
hide the await.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import kernels
from .harness import H100_FLOAT_OPS_PER_S, BenchResult, Context, Goal, Row, check_close, duration
from .harness import ratio_of_times as ratio

NAME = "await_cost"
TITLE = "2. cost of an always-ready await in a loop around a compute step"
A, B = np.float32(0.999), np.float32(0.001)  # v -> a*v + b stays finite for any step count
WARPS = 4
SAMPLE = 4096  # elements checked exactly against numpy (all are checked for the poison)
VARIANTS = {
    "sync": "no async",
    "until": "await aw.until(always true)",
    "ready_fn": "await async fn that never suspends",
}


def label(variant: str, step: int) -> str:
    return f"{VARIANTS[variant]}, {step} muladds/step"


@dataclass
class ComputeData:
    """Inputs of the compute kernels on one target, a poisoned output, a checked sample."""

    n: int
    muladds: int  # per element, at every step size
    x: np.ndarray
    sample: np.ndarray
    x_dev: object
    y_dev: object


def compute_data(ctx: Context, target=None) -> ComputeData:
    target = target or ctx.target
    key = ("compute", target.backend)
    if key not in ctx.shared:
        n = ctx.pick(1 << 22, 1 << 20, 2_000)
        x = ctx.rng("await x").standard_normal(n, dtype=np.float32)
        sample = np.unique(ctx.rng("await sample").integers(0, n, SAMPLE))
        muladds = ctx.pick(2048, 512, 64)  # a multiple of every step size
        ctx.shared[key] = ComputeData(
            n, muladds, x, sample, target.upload(x), target.empty(n, np.float32, np.nan)
        )
    return ctx.shared[key]


def time_compute(ctx: Context, label: str, kern, step: int, target=None, **options) -> Row:
    """Time one compute kernel (step multiply-adds per step) and check its output."""
    target = target or ctx.target
    data = compute_data(ctx, target)
    steps = data.muladds // step
    tiles = -(-data.n // ctx.warp_width)
    grid = -(-tiles // WARPS)  # one warp tile per warp: no grid-stride loop
    args = [data.y_dev, data.x_dev, A, B, np.int32(data.n), np.int32(steps), np.int32(0)]
    launch = target.prepare(kern, grid, args, warps=WARPS, warp_width=ctx.warp_width, **options)
    target.fill(data.y_dev, np.float32(np.nan))
    times = launch.time(ctx.reps, ctx.warmup)
    got = target.download(data.y_dev)
    check = check_close(
        got[data.sample], reference(data.x[data.sample], data.muladds), rtol=1e-5, atol=1e-6
    )
    if check == "ok" and not np.isfinite(got).all():
        check = f"{int(np.count_nonzero(~np.isfinite(got)))} elements not written"
    rate = data.n * data.muladds / (np.median(times) * 1e-3) / 1e9
    return Row(
        label,
        times,
        rate,
        "G muladd/s",
        check,
        {
            "n": data.n,
            "steps": steps,
            "grid": grid,
            "warps": WARPS,
            "warp_awaits": tiles * steps,
            "progress": launch.compiled.options.progress,
        },
    )


def run(ctx: Context) -> BenchResult:
    data = compute_data(ctx)
    instructions = 2 * data.n * data.muladds
    result = BenchResult(
        NAME,
        TITLE,
        floor=(
            f"{data.n * data.muladds / 1e9:.3g} G multiply-adds ({instructions / 1e9:.3g} G "
            "float instructions, no FMA contraction) per kernel: "
            f"{duration(instructions / H100_FLOAT_OPS_PER_S)} at the H100's "
            f"{H100_FLOAT_OPS_PER_S / 1e12:.1f} T float instructions/s "
            "(132 SMs x 128 lanes x 1.98 GHz)"
        ),
    )
    for step, family in kernels.COMPUTE_KERNELS.items():
        for variant, kern in family.items():
            result.rows.append(time_compute(ctx, label(variant, step), kern, step))
        sync = result.row(label("sync", step))
        for variant in ("until", "ready_fn"):
            r = ratio(
                result,
                f"{VARIANTS[variant]} / no async ({step} muladds/step)",
                label(variant, step),
                label("sync", step),
                Goal("<=", 1.1),
            )
            row = result.row(label(variant, step))
            extra_ns = (row.median_ms - sync.median_ms) * 1e6 / row.extra["warp_awaits"]
            row.extra["extra_ns_per_warp_await_amortised"] = extra_ns
            if r is not None:
                sign = "+" if extra_ns >= 0 else "-"
                r.note = f"{sign}{duration(abs(extra_ns) * 1e-9)} per warp-level await, amortised"
    return result


def reference(x: np.ndarray, muladds: int) -> np.ndarray:
    """The kernels' chain in float32: round after every multiply and every add."""
    v = x.astype(np.float32, copy=True)
    for _ in range(muladds):
        v = v * A + B
    return v
