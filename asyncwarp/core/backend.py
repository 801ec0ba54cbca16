"""The interface every backend implements, and the records passed across it.

A backend is an emitter (lowered IR -> PTX text or SPIR-V words) plus a runtime
(buffers, load, launch, sync, timing). `BuildOptions` says what to build;
`DeviceCaps` is what the runtime probed and what codegen reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

PROGRESS_MODES = ("auto", "independent", "cooperative")
EXECUTORS = ("block_on", "static")


@dataclass(frozen=True)
class BuildOptions:
    """Everything a compiled kernel depends on besides its source and argument types."""

    backend: str = "sim"
    warp_width: int = 32  # W: logical lanes per warp
    warps: int | None = None  # logical warps per block; None: 1, or what a top-level join needs
    subgroup: int = 32  # H: physical lanes per hardware subgroup
    progress: str = "auto"  # resolved to independent/cooperative before lowering
    executor: str = "block_on"
    arch: str | None = None  # e.g. "sm_90" for CUDA, None elsewhere
    watchdog_ns: int = 0  # 0 = no watchdog
    # Loads a counter-form phase-barrier test makes before it answers "not yet"
    # (passes/lower_phase_barriers); None: that pass's default. 0 on devices that
    # bound a shader's loop iterations (Mesa lavapipe), where every spin costs budget.
    barrier_test_spins: int | None = None

    def key(self) -> tuple:
        return tuple(sorted(self.__dict__.items()))


@dataclass
class DeviceCaps:
    """What a device offers, probed by its runtime (Taichi's DeviceCapabilityConfig)."""

    backend: str
    name: str
    vendor: str = ""
    driver: str = ""
    subgroup_size: int = 32
    subgroup_size_control: bool = False  # can pin the subgroup size (Vulkan 1.3 / EXT)
    subgroup_sizes: tuple = ()  # min..max a pipeline may request, if known
    shared_memory_bytes: int = 48 * 1024
    max_block_threads: int = 1024
    int64: bool = True
    float64: bool = True
    int64_atomics: bool = True
    arch: str | None = None  # "sm_90"
    # forward-progress guarantees, by scope: lanes of a warp, warps of a block, blocks of a grid
    progress: dict = field(default_factory=lambda: {"lane": False, "warp": False, "block": False})
    timer: bool = False  # a device clock usable in kernels
    extra: dict = field(default_factory=dict)


class Backend(Protocol):
    """What kernel.py calls on a backend.

    Optional: `bind(compiled, grid) -> plan`, one CompiledKernel on one grid with all
    that does not depend on argument values resolved once; `plan(args)` launches on the
    values and waits, returning what `launch` would, or NotImplemented, with nothing
    launched, when a value needs `launch`'s full checks. Backends without it (sim,
    vulkan) are launched through `launch` every time.
    """

    name: str

    def available(self) -> tuple[bool, str]:
        """(usable, reason): the reason says what is missing and what to install."""

    def caps(self, device: int = 0) -> DeviceCaps: ...

    def compile(self, kernel, options: BuildOptions) -> Any:
        """Lowered IR -> the backend's artefact (PTX text, SPIR-V words, the IR itself)."""

    def launch(self, artefact, kernel, options: BuildOptions, grid: int, args: list) -> None:
        """Run the artefact on `grid` blocks; args are host values already checked."""
