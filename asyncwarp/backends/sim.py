"""The `sim` backend: the reference interpreter behind the same interface as cuda and vulkan.

Its artefact is the lowered IR itself; launching runs it lane-exact on the CPU
(core.interpreter), writing numpy arrays in place.
"""

from __future__ import annotations

from ..core.backend import BuildOptions, DeviceCaps
from ..core.ir import print_kernel

SCHEDULERS = ("round_robin", "random", "unfair")


class SimBackend:
    name = "sim"

    def __init__(self, device=0, scheduler: str = "round_robin", seed: int = 0):
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}, not {scheduler!r}")
        self.device = device
        self.scheduler = scheduler
        self.seed = seed

    def available(self) -> tuple[bool, str]:
        return True, "the reference interpreter runs everywhere"

    def caps(self, device=0) -> DeviceCaps:
        fair = self.scheduler != "unfair"
        return DeviceCaps(
            backend="sim",
            name="asyncwarp reference interpreter",
            vendor="asyncwarp",
            driver=f"scheduler={self.scheduler}",
            subgroup_size=0,  # any H in 4..128: chosen per build (config.sim_subgroup or W)
            shared_memory_bytes=1 << 20,
            max_block_threads=1 << 16,
            # a subgroup runs both sides of a divergent branch one after the other, so
            # lanes of one subgroup never wait on each other; subgroups are scheduled
            # fairly unless the scheduler is "unfair"
            progress={"lane": False, "warp": fair, "block": fair},
            timer=True,
        )

    def subgroup_for(self, warp_width: int, pretend: int | None = None) -> int:
        return pretend or warp_width

    def compile(self, kernel, options: BuildOptions):
        return kernel

    def disassemble(self, artefact) -> str:
        return print_kernel(artefact)

    def launch(self, artefact, kernel, options: BuildOptions, grid: int, args: list,
               scheduler: str | None = None, seed: int | None = None):
        from ..core import interpreter

        return interpreter.run(
            artefact, grid, args,
            scheduler=scheduler or self.scheduler,
            seed=self.seed if seed is None else seed,
            # a kernel with its own watchdog (hidden report array) must be stopped by it,
            # not by the interpreter's clock bound
            watchdog_ns=0 if kernel.attrs.get("hidden_params") else options.watchdog_ns,
        )
