"""The `cuda` backend: ptx.py's emitter and runtime.py's driver runtime behind core.backend.Backend.

Compiling needs no GPU (PTX is text; `options.arch` or sm_70 when no device is
present); launching needs cuda-python and an NVIDIA driver.
"""

from __future__ import annotations

from ...core import ir
from ...core.backend import BuildOptions, DeviceCaps
from ...core.errors import BackendUnavailable
from . import runtime
from .ptx import emit_ptx

DEFAULT_ARCH = "sm_70"


class CudaBackend:
    """NVIDIA GPUs through PTX and cuda-python's driver API."""

    name = "cuda"

    def __init__(self, device: int | str = 0):
        self._available: tuple[bool, str] | None = None
        try:
            self.device = int(device)
        except (TypeError, ValueError):
            raise BackendUnavailable(
                f"the cuda backend selects devices by index, not {device!r}"
            ) from None

    def available(self) -> tuple[bool, str]:
        if self._available is None:  # probing loads the driver: once per backend
            self._available = runtime.available(self.device)
        return self._available

    def _runtime(self) -> runtime.CudaDevice:
        ok, reason = self.available()
        if not ok:
            raise BackendUnavailable(f"the cuda backend cannot run here: {reason}")
        return runtime.get_device(self.device)

    def caps(self, device: int | None = None) -> DeviceCaps:
        if device is not None and int(device) != self.device:
            return CudaBackend(device).caps()
        return self._runtime().caps

    def compile(self, kernel: ir.Kernel, options: BuildOptions) -> str:
        """Lowered IR -> PTX text for options.arch, else this device's, else sm_70."""
        arch = options.arch
        if arch is None:
            arch = self.caps().arch if self.available()[0] else DEFAULT_ARCH
        return emit_ptx(kernel, arch)

    def launch(
        self,
        artefact: str,
        kernel: ir.Kernel,
        options: BuildOptions,
        grid: int,
        args: list,
        *,
        timed: bool = False,
        cooperative: bool = False,
    ) -> float | None:
        """Run PTX `artefact` on `grid` blocks; timed=True returns the kernel time in ms.

        cooperative=True uses cuLaunchCooperativeKernel, after checking that the whole
        grid can be resident at once (needed when blocks wait on each other).
        """
        if not isinstance(artefact, str):
            raise TypeError(f"the cuda backend launches PTX text, got {type(artefact).__name__}")
        # A block that waits on another block needs that block to run: only a
        # cooperative launch guarantees every block is resident (it fails with a clear
        # error when the grid cannot be).
        cooperative = cooperative or bool(kernel.attrs.get("waits_between_blocks"))
        return self._runtime().launch(
            artefact, kernel, grid, args, timed=timed, cooperative=cooperative
        )

    def bind(self, compiled, grid: int) -> runtime.CudaLaunchPlan:
        """A launch plan of a compiled kernel on `grid` blocks (core.backend.Backend.bind).

        The function, block shape, shared memory and cooperative residency are resolved
        here; the plan packs argument values it can check exactly and declines the rest.
        """
        artefact, kernel = compiled.artefact, compiled.lowered
        if not isinstance(artefact, str):
            raise TypeError(f"the cuda backend launches PTX text, got {type(artefact).__name__}")
        if kernel.attrs.get("hidden_params"):
            raise ValueError(
                f"kernel {kernel.name} has hidden parameters: launch it with run_compiled"
            )
        cooperative = bool(kernel.attrs.get("waits_between_blocks"))  # as in launch()
        return runtime.CudaLaunchPlan(self._runtime(), artefact, kernel, grid, cooperative)


__all__ = ["CudaBackend"]
