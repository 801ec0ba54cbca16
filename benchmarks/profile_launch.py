"""Profile the host side of a cached asyncwarp launch on CUDA (cProfile, by own time).

    python -m benchmarks.profile_launch [--launches N] [--fake-driver]

Prints the time per launch of `kern[grid, warps](...)` on device arrays (the bound
plan), of the full checking path every launch took before plans, of the bare driver
calls, and the cProfile table of the plan. --fake-driver runs on `FakeDriver`, a
stand-in for cuda.bindings.driver, so asyncwarp's own Python time shows without a GPU.
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import io
import pstats
import re
import time
from types import SimpleNamespace

import numpy as np

import asyncwarp as aw
from asyncwarp import backends
from asyncwarp.backends.cuda import runtime
from asyncwarp.core.kernel import Launcher


@aw.kernel
def scale(y: aw.Array[aw.f32], x: aw.Array[aw.f32], a: aw.f32, n: aw.i32):
    i = aw.block_id() * aw.WARP + aw.lane()
    if i < n:
        y[i] = a * x[i]


_PARAM = re.compile(r"\.param\s+\.[a-z]+(\d+)\s")


class FakeDriver:
    """The cuda.bindings.driver calls of asyncwarp's CUDA runtime, on host memory.

    Enums are cuda.bindings' own (importable without a driver). Device memory is host
    numpy buffers; kernels do not run. With record=True every launch is kept in
    `launches` with the bytes of each parameter, read where kernelParams points, with
    the sizes the PTX entry declares, as the driver reads them. `fail` and `fail_sync`
    hold CUresults that the next launches or stream synchronisations return.
    """

    def __init__(self, record: bool = True):
        from cuda.bindings import driver as real

        self.CUresult = real.CUresult
        self.CUdevice_attribute = real.CUdevice_attribute
        self.CUfunction_attribute = real.CUfunction_attribute
        self.CUjit_option = real.CUjit_option
        self.CUpointer_attribute = real.CUpointer_attribute
        self.ok = (real.CUresult.CUDA_SUCCESS,)
        self.record = record
        self.launches: list[SimpleNamespace] = []
        self.fail: list = []
        self.fail_sync: list = []
        self.calls: dict[str, int] = {}  # driver calls by name, besides launches
        self.memory: dict[int, np.ndarray] = {}
        attr = real.CUdevice_attribute
        self.attributes = {
            attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: 9,
            attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: 0,
            attr.CU_DEVICE_ATTRIBUTE_WARP_SIZE: 32,
            attr.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: 232448,
            attr.CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: 1024,
            attr.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: 132,
            attr.CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH: 1,
        }

    def _note(self, call: str):
        self.calls[call] = self.calls.get(call, 0) + 1
        return self.ok

    # errors, device, context, stream
    def cuGetErrorName(self, err):
        return self.CUresult.CUDA_SUCCESS, self.CUresult(err).name.encode()

    def cuGetErrorString(self, err):
        return self.CUresult.CUDA_SUCCESS, b"fake driver error"

    def cuInit(self, flags):
        return self.ok

    def cuDeviceGetCount(self):
        return self.CUresult.CUDA_SUCCESS, 1

    def cuDriverGetVersion(self):
        return self.CUresult.CUDA_SUCCESS, 13000

    def cuDeviceGet(self, ordinal):
        return self.CUresult.CUDA_SUCCESS, 100 + ordinal

    def cuDevicePrimaryCtxRetain(self, device):
        return self.CUresult.CUDA_SUCCESS, "context"

    def cuDeviceGetName(self, length, device):
        return self.CUresult.CUDA_SUCCESS, b"Fake H100\0".ljust(length, b"\0")

    def cuDeviceGetAttribute(self, attr, device):
        if attr not in self.attributes:  # as a driver answers for an unknown attribute
            return self.CUresult.CUDA_ERROR_INVALID_VALUE, 0
        return self.CUresult.CUDA_SUCCESS, self.attributes[attr]

    def cuCtxSetCurrent(self, context):
        return self._note("cuCtxSetCurrent")

    def cuCtxSynchronize(self):
        return self._note("cuCtxSynchronize")

    def cuStreamCreate(self, flags):
        return self.CUresult.CUDA_SUCCESS, "stream"

    def cuStreamSynchronize(self, stream):
        if self.fail_sync:
            return (self.fail_sync.pop(0),)
        return self.ok

    # memory: host buffers
    def cuMemAlloc(self, nbytes):
        buf = np.zeros(nbytes, np.uint8)
        self.memory[buf.ctypes.data] = buf
        return self.CUresult.CUDA_SUCCESS, buf.ctypes.data

    def cuMemFree(self, ptr):
        self.memory.pop(int(ptr), None)
        return self.ok

    def cuMemcpyHtoDAsync(self, dst, src, nbytes, stream):
        ctypes.memmove(int(dst), int(src), int(nbytes))
        return self.ok

    cuMemcpyDtoHAsync = cuMemcpyHtoDAsync

    def cuPointerGetAttribute(self, attr, ptr):
        return self.CUresult.CUDA_SUCCESS, 0  # every pointer lives on device 0

    # modules and launches
    def cuModuleLoadDataEx(self, image, count, options, values):
        return self.CUresult.CUDA_SUCCESS, SimpleNamespace(ptx=bytes(image).rstrip(b"\0").decode())

    def cuModuleGetFunction(self, module, name):
        entry = module.ptx.split(f".entry {name.decode()}(", 1)[1].split(")", 1)[0]
        sizes = [int(bits) // 8 for bits in _PARAM.findall(entry + "\n")]
        fn = SimpleNamespace(name=name.decode(), sizes=sizes, ptx=module.ptx)
        return self.CUresult.CUDA_SUCCESS, fn

    def cuFuncSetAttribute(self, fn, attr, value):
        return self.ok

    def cuOccupancyMaxActiveBlocksPerMultiprocessor(self, fn, threads, shared):
        return self.CUresult.CUDA_SUCCESS, 2

    def cuLaunchKernel(self, fn, gx, gy, gz, bx, by, bz, shared, stream, params, extra=0):
        return self._launch(
            "cuLaunchKernel", fn, (gx, gy, gz), (bx, by, bz), shared, stream, params
        )

    def cuLaunchCooperativeKernel(self, fn, gx, gy, gz, bx, by, bz, shared, stream, params):
        return self._launch(
            "cuLaunchCooperativeKernel", fn, (gx, gy, gz), (bx, by, bz), shared, stream, params
        )

    def _launch(self, call, fn, grid, threads, shared, stream, params):
        if self.record:
            slots = (ctypes.c_uint64 * len(fn.sizes)).from_address(params)
            values = [ctypes.string_at(s, n) for s, n in zip(slots, fn.sizes, strict=True)]
            self.launches.append(
                SimpleNamespace(
                    call=call,
                    fn=fn,
                    grid=grid,
                    threads=threads,
                    shared=shared,
                    stream=stream,
                    params=params,
                    values=values,
                )
            )
        if self.fail:
            return (self.fail.pop(0),)
        return self.ok


def install_fake_driver(record: bool = False) -> FakeDriver:
    """Route asyncwarp's CUDA backend to a new FakeDriver (for this process)."""
    drv = FakeDriver(record)
    runtime._drv = drv
    runtime._devices.clear()
    backends._status.clear()
    backends._instances.clear()
    return drv


def per_launch_us(call, launches: int) -> float:
    start = time.perf_counter()
    for _ in range(launches):
        call()
    return (time.perf_counter() - start) / launches * 1e6


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_launch")
    p.add_argument("--launches", type=int, default=2000)
    p.add_argument(
        "--fake-driver",
        action="store_true",
        help="launch on a stand-in driver: asyncwarp's own Python time, no GPU needed",
    )
    a = p.parse_args(argv)
    if a.fake_driver:
        install_fake_driver()
    drv = runtime.driver()
    n, warps = 1024, 1
    grid = n // 32
    x = runtime.to_device(np.random.default_rng(0).standard_normal(n).astype(np.float32))
    y = runtime.to_device(np.zeros(n, np.float32))
    args = (y, x, np.float32(2.0), np.int32(n))  # benchmark 6's kinds of argument
    kern = scale.with_options(backend="cuda")
    kern[grid, warps](*args)  # compile, load, bind the plan

    def plan():
        kern[grid, warps](*args)

    def full():  # every launch before plans: validate kern[...], check, marshal, launch
        Launcher(kern, grid, warps)._launch(args)

    ((compiled, plans),) = [(b.compiled, b.plans) for b in kern._bound.values()]
    device = runtime.get_device()
    fn = device.function(compiled.artefact, runtime.entry_name(compiled.lowered))
    threads = runtime.block_size(compiled.lowered)
    slots = np.array([y.ptr, x.ptr, 0, 0], np.uint64)
    slots[2:3].view(np.float32)[0], slots[3:4].view(np.int32)[0] = 2.0, n
    pointers = np.array([slots.ctypes.data + 8 * i for i in range(4)], np.uint64)
    launch = (fn, grid, 1, 1, threads, 1, 1, 0, device.stream, pointers.ctypes.data, 0)

    def raw():  # the floor: the two driver calls alone
        drv.cuLaunchKernel(*launch)
        drv.cuStreamSynchronize(device.stream)

    runtime.check(drv.cuLaunchKernel(*launch), "cuLaunchKernel")
    # Rounds of each in turn, the first a warm-up, the best of each kept: clocks and
    # caches drift over a run, and one call's order must not favour it.
    per_round = max(a.launches // 5, 1)
    times = dict.fromkeys(("plan", "full", "raw"), float("inf"))
    for round_ in range(6):
        for call in (plan, full, raw):
            t = per_launch_us(call, per_round)
            if round_:
                times[call.__name__] = min(times[call.__name__], t)
    profiler = cProfile.Profile()
    profiler.enable()
    per_launch_us(plan, a.launches)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
    where = "fake driver (no GPU)" if a.fake_driver else runtime.get_device().caps.name
    print(f"{where}, best of 5 rounds of {per_round} launches, us per launch + sync:")
    print(f"  asyncwarp kern[grid, warps](...), bound plan: {times['plan']:8.2f}")
    print(f"  asyncwarp full checking path (before plans):  {times['full']:8.2f}")
    print(f"  raw cuLaunchKernel + cuStreamSynchronize:     {times['raw']:8.2f}")
    print(f"  plan - raw (asyncwarp's own Python):          {times['plan'] - times['raw']:8.2f}")
    print(f"plan in use: {', '.join(type(p).__name__ for p in plans.values())}")
    print(out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
