"""The CUDA target of the benchmarks: device arrays, prepared launches and event timing.

asyncwarp kernels are compiled through `kern.specialize` and launched here with
their arguments packed once (asyncwarp's own launch path re-checks and
synchronises on every call, which the host-overhead benchmark measures
separately). Hand-written baselines come in as cubins; copies as cuMemcpyDtoDAsync.
Every launch goes on the device's stream and is timed with CUDA events.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import numpy as np

from asyncwarp.backends.cuda import runtime
from asyncwarp.backends.cuda.ptx import block_size, dynamic_shared_bytes, entry_name
from asyncwarp.core.errors import BackendUnavailable

_SMI_FIELDS = (
    "name",
    "driver_version",
    "clocks.sm",
    "clocks.max.sm",
    "clocks.mem",
    "clocks.max.mem",
    "power.limit",
    "pstate",
    "temperature.gpu",
)
# Device attributes worth recording next to the timings (CUDA driver API names).
_ATTRIBUTES = (
    "CLOCK_RATE",
    "MEMORY_CLOCK_RATE",
    "GLOBAL_MEMORY_BUS_WIDTH",
    "L2_CACHE_SIZE",
    "MULTIPROCESSOR_COUNT",
    "MAX_SHARED_MEMORY_PER_MULTIPROCESSOR",
)


class CudaLaunch:
    """A kernel with its grid and packed parameters, ready to enqueue any number of times."""

    def __init__(
        self,
        target: CudaTarget,
        fn: Any,
        name: str,
        grid: int,
        threads: int,
        shared: int,
        params: np.ndarray,
        keep: Any,
        compiled=None,
    ):
        self.target, self.fn, self.name = target, fn, name
        self.compiled = compiled  # the asyncwarp CompiledKernel, None for a cubin
        self.grid, self.threads, self.shared = int(grid), int(threads), int(shared)
        self._params, self._keep = params, keep

    def enqueue(self) -> None:
        blocks, threads = (self.grid, 1, 1), (self.threads, 1, 1)
        result = self.target.drv.cuLaunchKernel(
            self.fn, *blocks, *threads, self.shared, self.target.stream, self._params.ctypes.data, 0
        )
        runtime.check(result, "cuLaunchKernel", self.name)

    def run(self) -> None:
        self.enqueue()
        self.target.synchronize(self.name)

    def time(self, reps: int, warmup: int) -> list[float]:
        return self.target.time(self.enqueue, reps, warmup, self.name)

    def registers(self) -> int:
        attr = self.target.drv.CUfunction_attribute.CU_FUNC_ATTRIBUTE_NUM_REGS
        return int(
            runtime.check(
                self.target.drv.cuFuncGetAttribute(attr, self.fn), "cuFuncGetAttribute", self.name
            )
        )


class CudaTarget:
    """One CUDA device as a benchmark target (BackendUnavailable where there is none)."""

    backend = "cuda"
    tiny = False
    max_buffer_bytes = 1 << 40  # no per-buffer limit below the device's memory

    def __init__(self, ordinal: int = 0):
        ok, reason = runtime.available(ordinal)
        if not ok:
            raise BackendUnavailable(f"the cuda backend cannot run here: {reason}")
        self.device = runtime.get_device(ordinal)
        self.drv = runtime.driver()
        self.stream = self.device.stream
        self.caps = self.device.caps
        self.name = self.caps.name

    # ------------------------------------------------------------ memory

    def upload(self, host: np.ndarray) -> runtime.DeviceArray:
        return runtime.to_device(host, self.device.ordinal)

    def empty(self, n: int, dtype, fill) -> runtime.DeviceArray:
        """A device array of n elements, every element `fill` (the poison)."""
        array = runtime.empty(n, dtype, self.device.ordinal)
        self.fill(array, fill)
        return array

    def fill(self, array: runtime.DeviceArray, value) -> None:
        """Set every element of a 4-byte array to `value` (cuMemsetD32: no host copy)."""
        if array.dtype.itemsize != 4:
            raise ValueError(f"fill takes arrays of 4-byte elements, not {array.dtype}")
        bits = int(np.array([value], dtype=array.dtype).view(np.uint32)[0])
        self.device.activate()
        runtime.check(
            self.drv.cuMemsetD32Async(array.ptr, bits, array.size, self.stream), "cuMemsetD32Async"
        )
        self.synchronize("cuMemsetD32Async")

    def download(self, array: runtime.DeviceArray) -> np.ndarray:
        return array.numpy()

    def synchronize(self, after: str = "") -> None:
        self.device.synchronize(after or "benchmark work")

    # ------------------------------------------------------------ kernels

    def prepare(
        self, kern, grid: int | None, args: list, *, warps: int | None = None, **options
    ) -> CudaLaunch:
        """Compile an asyncwarp kernel for this device and pack `args` (device arrays,
        numpy scalars); grid None: as many blocks as fit on the device at once."""
        compiled = kern.specialize(*args, backend="cuda", warps=warps, **options)
        if compiled.lowered.attrs.get("hidden_params"):
            raise ValueError(f"kernel {kern.name}: build it without a watchdog to time it")
        ptx, lowered = compiled.artefact, compiled.lowered
        name = entry_name(lowered)
        shared = dynamic_shared_bytes(ptx)
        fn = self.device.function(ptx, name, shared)
        packed = self.device.marshal(lowered, list(args))
        if packed.host:
            raise TypeError(f"kernel {kern.name}: pass device arrays, not numpy arrays")
        threads = block_size(lowered)
        grid = self.resident_grid(fn, threads, shared) if grid is None else grid
        params = packed.pointer_array()
        return CudaLaunch(self, fn, name, grid, threads, shared, params, packed, compiled)

    def load_cubin(self, image: bytes, name: str) -> Any:
        """The function `name` of a cubin image (modules stay loaded with the context)."""
        self.device.activate()
        module = runtime.check(self.drv.cuModuleLoadData(image), "cuModuleLoadData", name)
        return runtime.check(
            self.drv.cuModuleGetFunction(module, name.encode()), "cuModuleGetFunction", name
        )

    def prepare_function(
        self, fn: Any, name: str, grid: int | None, threads: int, args: list, shared: int = 0
    ) -> CudaLaunch:
        """Pack `args` (device arrays, numpy scalars) for a loaded function."""
        buffers = [
            np.array([a.ptr], dtype=np.uint64)
            if isinstance(a, runtime.DeviceArray)
            else np.array([a], dtype=np.asarray(a).dtype)
            for a in args
        ]
        params = np.array([b.ctypes.data for b in buffers], dtype=np.uint64)
        grid = self.resident_grid(fn, threads, shared) if grid is None else grid
        return CudaLaunch(self, fn, name, grid, threads, shared, params, buffers)

    def resident_grid(self, fn: Any, threads: int, shared: int) -> int:
        """Blocks that fit on the device at once: a persistent kernel's grid."""
        per_sm = runtime.check(
            self.drv.cuOccupancyMaxActiveBlocksPerMultiprocessor(fn, threads, shared),
            "cuOccupancyMaxActiveBlocksPerMultiprocessor",
        )
        return max(1, int(per_sm)) * self.caps.extra["sm_count"]

    def copy(self, dst: runtime.DeviceArray, src: runtime.DeviceArray) -> Callable[[], None]:
        """An enqueue function for a device-to-device copy of src into dst."""
        if dst.nbytes != src.nbytes:
            raise ValueError(f"copy of {src.nbytes} bytes into {dst.nbytes}")

        def enqueue() -> None:
            runtime.check(
                self.drv.cuMemcpyDtoDAsync(dst.ptr, src.ptr, src.nbytes, self.stream),
                "cuMemcpyDtoDAsync",
            )

        return enqueue

    # ------------------------------------------------------------ timing

    def time(
        self, enqueue: Callable[[], None], reps: int, warmup: int, what: str = ""
    ) -> list[float]:
        """Milliseconds of each of `reps` runs of `enqueue`, between CUDA events.

        The runs go back to back on one stream; each is bracketed by its own pair of
        events, so a run's time excludes host gaps before it.
        """
        drv = self.drv
        self.device.activate()
        for _ in range(warmup):
            enqueue()
        self.synchronize(f"warm-up of {what}")
        events = [runtime.check(drv.cuEventCreate(0), "cuEventCreate") for _ in range(2 * reps)]
        try:
            for i in range(reps):
                runtime.check(drv.cuEventRecord(events[2 * i], self.stream), "cuEventRecord")
                enqueue()
                runtime.check(drv.cuEventRecord(events[2 * i + 1], self.stream), "cuEventRecord")
            self.synchronize(f"timed runs of {what}")
            return [
                float(
                    runtime.check(
                        drv.cuEventElapsedTime(events[2 * i], events[2 * i + 1]),
                        "cuEventElapsedTime",
                    )
                )
                for i in range(reps)
            ]
        finally:
            for event in events:
                drv.cuEventDestroy(event)

    # ------------------------------------------------------------ description

    def info(self) -> dict:
        """Device, driver and clocks, for the report (nvidia-smi where it is installed)."""
        caps = self.caps
        out = {
            "backend": "cuda",
            "device": caps.name,
            "arch": caps.arch,
            "compute_capability": caps.extra.get("compute_capability"),
            "sm_count": caps.extra.get("sm_count"),
            "cuda_driver_api": caps.driver,
        }
        for name in _ATTRIBUTES:
            attr = getattr(self.drv.CUdevice_attribute, f"CU_DEVICE_ATTRIBUTE_{name}", None)
            if attr is None:
                continue
            err, value = self.drv.cuDeviceGetAttribute(attr, self.device.handle)
            if err == self.drv.CUresult.CUDA_SUCCESS:
                out[name.lower()] = int(value)
        out["nvidia_smi"] = nvidia_smi()
        return out


def nvidia_smi() -> dict | str:
    """The GPU's clocks, power limit and driver per nvidia-smi, or why they are missing."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "nvidia-smi not found"
    try:
        proc = subprocess.run(
            [smi, f"--query-gpu={','.join(_SMI_FIELDS)}", "--format=csv,noheader", "-i", "0"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"nvidia-smi failed: {err}"
    if proc.returncode != 0:
        return f"nvidia-smi failed: {proc.stderr.strip()}"
    values = [v.strip() for v in proc.stdout.strip().splitlines()[0].split(",")]
    return dict(zip(_SMI_FIELDS, values, strict=False))
