"""The pass pipeline: logical IR from the frontend -> lowered IR for an emitter.

verify -> uniformity check -> lower_async (kernels with awaits) -> lower_f64_math
(Vulkan) -> lower_phase_barriers (all but CUDA sm_80+) -> fold_lanes -> verify.
With `verify_each` the verifier also runs between passes (tests do).
"""

from __future__ import annotations

from .. import ir
from ..backend import BuildOptions


def has_async(kernel: ir.Kernel) -> bool:
    return any(isinstance(s, (ir.Suspend, ir.Join, ir.Select)) for s in kernel.walk())


def native_phase_barriers(options: BuildOptions) -> bool:
    """Whether the target runs pbar_* ops itself: CUDA from sm_80 (mbarrier)."""
    if options.backend != "cuda":
        return False
    arch = options.arch or "sm_70"
    return int(arch.removeprefix("sm_").rstrip("a")) >= 80


def lower(
    kernel: ir.Kernel,
    options: BuildOptions,
    *,
    verify_each: bool = False,
    expand_f64_math: bool | None = None,
) -> ir.Kernel:
    """Run the passes for `options` (progress must already be resolved).

    `expand_f64_math` runs lower_f64_math (f64 exp/log/sin/cos/pow as plain
    arithmetic); None means only for Vulkan, whose GLSL.std.450 lacks them.
    """
    from .. import uniformity
    from ..verify import verify
    from .fold_lanes import fold_lanes

    if options.progress not in ("independent", "cooperative"):
        raise RuntimeError(f"progress must be resolved before lowering, got {options.progress!r}")
    verify(kernel, "logical")
    uniformity.check(kernel)
    warps = options.warps
    between = [f"{s.what} at {s.loc}" for s in kernel.walk()
               if isinstance(s, ir.Suspend) and s.scope == "device"]
    if between:  # launchers must make every block resident (core/ir.py Suspend.scope)
        kernel.attrs["waits_between_blocks"] = between
    if has_async(kernel):
        from .lower_async import lower_async

        kernel = lower_async(
            kernel,
            progress=options.progress,
            executor=options.executor,
            warps=options.warps,
            watchdog_ns=options.watchdog_ns,
        )
        warps = kernel.attrs.get("warps") or warps
        if verify_each:
            verify(kernel, "logical")
    if expand_f64_math is None:
        expand_f64_math = options.backend == "vulkan"
    if expand_f64_math:
        from .lower_math import lower_f64_math

        kernel = lower_f64_math(kernel)
        if verify_each:
            verify(kernel, "logical")
    from .lower_phase_barriers import lower_phase_barriers, uses_phase_barriers

    if uses_phase_barriers(kernel) and not native_phase_barriers(options):
        kernel = lower_phase_barriers(kernel, spins=options.barrier_test_spins)
        if verify_each:
            verify(kernel, "logical")
    kernel.attrs.setdefault("progress", options.progress)
    kernel.attrs.setdefault("executor", options.executor)
    lowered = fold_lanes(kernel, options.subgroup, warps or 1)
    verify(lowered, "lowered")
    return lowered
