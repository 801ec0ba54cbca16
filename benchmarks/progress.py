"""Benchmark 4: the progress modes on benchmark 1's kernels: cooperative (polling in rounds
with a block barrier between them, correct everywhere) against independent (each
warp waits in place, where the hardware guarantees warps progress).
"""

from __future__ import annotations

from asyncwarp.core.progress import guarantees

from . import kernels
from .harness import BenchResult, Context, Goal
from .harness import ratio_of_metrics as ratio
from .pipeline import floor_text, stream_data, time_stream_kernel

NAME = "progress"
TITLE = "4. progress modes: cooperative vs independent (benchmark 1's kernels)"
SUBJECTS = {"stream": kernels.stream, "README pipeline": kernels.naive_stream}


def run(ctx: Context) -> BenchResult:
    target = ctx.target
    data = stream_data(ctx)
    result = BenchResult(NAME, TITLE, floor=floor_text(data.bytes_moved))
    # Independent waits need warps of a block to progress on their own: NVIDIA GPUs
    # guarantee it and the interpreter's fair scheduler provides it; Vulkan promises
    # nothing (docs/async.md, Progress modes), so there only a conformance probe's
    # finding recorded for this device (core/progress.py) makes it safe.
    modes = ["cooperative"]
    if target.backend in ("cuda", "sim") or guarantees(target.caps).get("warp"):
        modes.insert(0, "independent")
    else:
        result.skip(
            "independent mode", f"{target.backend} guarantees no forward progress between warps"
        )
    for subject, kern in SUBJECTS.items():
        for mode in modes:
            result.rows.append(
                time_stream_kernel(
                    ctx,
                    f"{subject}, {mode}",
                    kern,
                    data,
                    grid="tuned",
                    warp_width=ctx.warp_width,
                    progress=mode,
                )
            )
        goal = Goal(">=", 0.85) if subject == "stream" else None
        ratio(
            result,
            f"{subject}: cooperative / independent (bandwidth)",
            f"{subject}, cooperative",
            f"{subject}, independent",
            goal,
        )
    return result
