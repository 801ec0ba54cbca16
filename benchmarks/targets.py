"""Benchmark targets: one device behind one interface (upload, poisoned outputs, prepared
launches, timing), so each benchmark is written once for CUDA, Vulkan and sim.

CUDA lives in target_cuda.py. Vulkan launches go through the backend's
`launch(..., timing=True)` (timestamp queries around the dispatch); sim times
the interpreter with the host clock, which only smoke-tests the harness.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from asyncwarp import backends
from asyncwarp.core.errors import BackendUnavailable

BACKENDS = ("cuda", "vulkan", "sim")


def open_target(backend: str, device: int | str = 0):
    """The target for `backend` ("cuda", "vulkan" or "sim"); BackendUnavailable says why not."""
    if backend == "cuda":
        from .target_cuda import CudaTarget

        return CudaTarget(int(device))
    if backend == "vulkan":
        return VulkanTarget(device)
    if backend == "sim":
        return SimTarget()
    raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")


class HostLaunch:
    """A compiled kernel with its arguments, launched through an asyncwarp backend object.

    Each run is synchronous. `time` returns milliseconds per run: the device's
    timestamps where the backend measures them (Vulkan), else the host clock (sim).
    """

    def __init__(self, target, compiled, grid: int, args: list):
        self.target, self.compiled, self.grid = target, compiled, int(grid)
        self.name = compiled.name
        self._args = args

    def _launch(self, **kw):
        c = self.compiled
        backend = self.target.backend_obj
        return backend.launch(c.artefact, c.lowered, c.options, self.grid, list(self._args), **kw)

    def run(self) -> None:
        self._launch()

    def time(self, reps: int, warmup: int) -> list[float]:
        for _ in range(warmup):
            self._launch()
        times = []
        for _ in range(reps):
            start = time.perf_counter_ns()
            returned = self._launch(**self.target.timing_kw)
            host_ns = time.perf_counter_ns() - start
            # Vulkan returns the dispatch's ns from timestamp queries (None where the
            # queue has none); sim returns run statistics, timed by the host clock.
            device_ns = returned if self.target.timing_kw else None
            times.append((device_ns if device_ns is not None else host_ns) / 1e6)
        return times


@dataclass
class VkArray:
    """A Vulkan storage buffer holding `n` elements of `dtype`."""

    buffer: Any
    dtype: np.dtype
    n: int

    @property
    def shape(self) -> tuple[int]:
        return (self.n,)

    @property
    def nbytes(self) -> int:
        return self.n * self.dtype.itemsize


class VulkanTarget:
    """One Vulkan device; `tiny` on CPU devices (lavapipe), where only a smoke run fits."""

    backend = "vulkan"
    timing_kw = {"timing": True}

    def __init__(self, device: int | str = 0):
        self.backend_obj = backends.get("vulkan", device)
        self.runtime = self.backend_obj.runtime()
        self.caps = self.runtime.caps
        self.name = self.caps.name
        self.tiny = self.caps.extra.get("device_type") == "cpu"
        self.max_buffer_bytes = int(self.runtime.limits.max_storage_buffer_range)

    def upload(self, host: np.ndarray) -> VkArray:
        host = np.ascontiguousarray(host)
        return VkArray(self.runtime.to_device(host), host.dtype, host.size)

    def empty(self, n: int, dtype, fill) -> VkArray:
        dtype = np.dtype(dtype)
        array = VkArray(self.runtime.buffer(n * dtype.itemsize), dtype, n)
        self.fill(array, fill)
        return array

    def fill(self, array: VkArray, value) -> None:
        array.buffer.write(np.full(array.n, value, dtype=array.dtype))

    def download(self, array: VkArray) -> np.ndarray:
        return array.buffer.read(array.dtype)

    def prepare(
        self, kern, grid: int, args: list, *, warps: int | None = None, **options
    ) -> HostLaunch:
        compiled = kern.specialize(*args, backend="vulkan", warps=warps, **options)
        raw = [a.buffer if isinstance(a, VkArray) else a for a in args]
        return HostLaunch(self, compiled, grid, raw)

    def info(self) -> dict:
        caps = self.caps
        return {
            "backend": "vulkan",
            "device": caps.name,
            "vendor": caps.vendor,
            "driver": caps.driver,
            "api_version": caps.extra.get("api_version"),
            "device_type": caps.extra.get("device_type"),
            "subgroup_size": caps.subgroup_size,
            "timestamps": caps.extra.get("timestamps"),
            "max_storage_buffer_range": self.max_buffer_bytes,
            "sm_count": caps.extra.get("sm_count"),
        }


class SimTarget:
    """The reference interpreter: numpy arrays, host-clock times (a harness smoke run)."""

    backend = "sim"
    tiny = True
    timing_kw: dict = {}
    name = "asyncwarp reference interpreter"
    max_buffer_bytes = 1 << 40

    def __init__(self):
        self.backend_obj = backends.get("sim")

    def upload(self, host: np.ndarray) -> np.ndarray:
        return np.array(host, copy=True)

    def empty(self, n: int, dtype, fill) -> np.ndarray:
        return np.full(n, fill, dtype=dtype)

    def fill(self, array: np.ndarray, value) -> None:
        array.fill(value)

    def download(self, array: np.ndarray) -> np.ndarray:
        return array.copy()

    def prepare(
        self, kern, grid: int, args: list, *, warps: int | None = None, **options
    ) -> HostLaunch:
        compiled = kern.specialize(*args, backend="sim", warps=warps, **options)
        return HostLaunch(self, compiled, grid, list(args))

    def info(self) -> dict:
        return {"backend": "sim", "device": self.name, "note": "times are the interpreter's"}


def availability(backend: str) -> tuple[bool, str]:
    """(usable, reason) for a benchmark target, without opening it twice."""
    try:
        ok, reason = backends.available(backend)
    except BackendUnavailable as err:
        return False, str(err)
    return ok, reason
