"""`aw.explore`: run a kernel under many seeded random schedules to find ordering bugs.

Each schedule runs on the reference interpreter with fresh copies of the
inputs; a deadlock, a watchdog stop, an out-of-bounds access or a failed
`check` is recorded with the seed that reproduces it. Afterwards the arrays
passed in hold the results of the last schedule, as after a launch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import AsyncWarpError


@dataclass
class ScheduleFailure:
    seed: int
    error: str  # exception class name, or "check"
    message: str

    def __str__(self) -> str:
        return f"seed {self.seed}: {self.error}: {self.message}"


@dataclass
class ExploreReport:
    schedules: int
    seeds: list = field(default_factory=list)
    failures: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def __str__(self) -> str:
        head = f"{self.schedules} schedules, {len(self.failures)} failed"
        return "\n".join([head] + [f"  {f}" for f in self.failures])


def explore(kernel, grid, args, schedules: int = 100, seed: int = 0, *, warps: int | None = None,
            check=None, **options) -> ExploreReport:
    """Run `kernel[grid, warps](*args)` under `schedules` random schedules on the sim backend.

    `check(*arrays)` may return False (or raise AssertionError) to flag a wrong
    result. Build options (warp_width, progress, ...) pass through.
    """
    from ..backends.sim import SimBackend
    from .kernel import run_compiled

    if schedules < 1:
        raise ValueError(f"schedules must be >= 1, got {schedules}")
    launcher = kernel[grid] if warps is None else kernel[grid, warps]
    compiled, checked = launcher.prepare(list(args), backend="sim", **options)
    originals = [a.copy() if isinstance(a, np.ndarray) else a for a in checked]
    sim = SimBackend(scheduler="random")
    report = ExploreReport(schedules=schedules)
    run_args: list = []
    for s in range(seed, seed + schedules):
        report.seeds.append(s)
        run_args = [a.copy() if isinstance(a, np.ndarray) else a for a in originals]
        try:
            run_compiled(compiled, grid, run_args, sim, scheduler="random", seed=s)
            if check is not None and check(*run_args) is False:
                report.failures.append(ScheduleFailure(s, "check", "check() returned False"))
        except AssertionError as e:
            report.failures.append(ScheduleFailure(s, "check", str(e)))
        except (AsyncWarpError, IndexError) as e:
            report.failures.append(ScheduleFailure(s, type(e).__name__, str(e)))
    for user, last in zip(args, run_args, strict=True):
        if isinstance(user, np.ndarray):
            np.copyto(user, last)
    return report
