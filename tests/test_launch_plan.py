"""Bound launch plans (CudaBackend.bind, CudaLaunchPlan) on a stand-in CUDA driver.

The stand-in (benchmarks/profile_launch.py's FakeDriver) records every launch with
the bytes of each parameter, read where kernelParams points: the plan must put there
exactly what the full path puts, decline (so the full path runs, with its errors)
whatever it cannot check exactly, and skip cuCtxSetCurrent once a thread made the
context current. The last test runs a plan on a real GPU.
"""

import gc
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import asyncwarp as aw
from asyncwarp import backends
from asyncwarp.backends.cuda import runtime
from asyncwarp.core import config
from asyncwarp.core.kernel import Launcher
from asyncwarp.core.types import SCALAR_TYPES

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.profile_launch import FakeDriver  # noqa: E402

GRID, WARPS = 3, 2
N = 64


@aw.kernel
def every_type(
    out: aw.Array[aw.f32],
    b: aw.bool_,
    i: aw.i32,
    u: aw.u32,
    l: aw.i64,
    ul: aw.u64,
    f: aw.f32,
    d: aw.f64,
    idx: aw.Array[aw.i64],
):
    if aw.lane() == 0:
        out[aw.block_id()] = f


@aw.kernel
def affine(y: aw.Array[aw.f32], x: aw.Array[aw.f32], a: aw.f32, b: aw.f32, n: aw.i32):
    i = (aw.block_id() * aw.num_warps() + aw.warp_id()) * aw.WARP + aw.lane()
    if i < n:
        y[i] = a * x[i] + b


@aw.kernel
async def chain(flags: aw.Array[aw.i32], out: aw.Array[aw.i32]):
    b = aw.block_id()
    if b > 0:
        await aw.Event(flags, b - 1).wait()
    out[b * aw.WARP + aw.lane()] = b
    aw.Event(flags, b).set()


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """asyncwarp's CUDA backend on a new FakeDriver, with a private configuration."""
    real = pytest.importorskip("cuda.bindings.driver", reason="cuda-python is not installed")
    drv = FakeDriver(record=True)
    assert drv.CUresult is real.CUresult
    monkeypatch.setattr(runtime, "_drv", drv)
    monkeypatch.setattr(runtime, "driver", lambda: drv)
    monkeypatch.setattr(runtime, "_devices", {})
    monkeypatch.setattr(runtime, "_active", threading.local())
    monkeypatch.setattr(backends, "_status", {})
    monkeypatch.setattr(backends, "_instances", {})
    monkeypatch.setattr(config, "_current", config.Config(cache_dir=tmp_path, disk_cache=False))
    # Device arrays of earlier tests, freed by a garbage collection in the middle of this
    # one, would activate their device through this driver: free them first, and ours here.
    gc.collect()
    yield drv
    gc.collect()


def cuda(kern):
    return kern.with_options(backend="cuda")  # a new handle: nothing bound yet


def plans_of(kern) -> list:
    return [plan for bound in kern._bound.values() for plan in bound.plans.values()]


def slot_bytes(value, t) -> bytes:
    """What the parameter slot of a `t` must hold for `value`, as numpy packs it."""
    if isinstance(value, runtime.DeviceArray):
        return np.array([value.ptr], np.uint64).tobytes()
    if t is aw.bool_:
        return np.array([1 if value else 0], np.uint32).tobytes()
    return np.array([value], t.dtype).tobytes()


def error_of(call) -> tuple[type, str]:
    with pytest.raises(Exception) as info:
        call()
    return type(info.value), str(info.value)


def every_type_args(scalars: dict):
    return [runtime.empty(N, np.float32), *scalars.values(), runtime.empty(N, np.int64)]


EVERY_TYPE = [aw.f32, aw.bool_, aw.i32, aw.u32, aw.i64, aw.u64, aw.f32, aw.f64, aw.i64]
CASES = {
    "python": {"b": True, "i": -7, "u": 7, "l": -(2**40), "ul": 2**63 + 5, "f": 1.1, "d": 1.1},
    "numpy": {
        "b": np.bool_(False),
        "i": np.int32(-(2**31)),
        "u": np.uint32(2**32 - 1),
        "l": np.int64(2**63 - 1),
        "ul": np.uint64(2**64 - 1),
        "f": np.float32(-0.0),
        "d": np.float64(np.pi),
    },
    "limits": {
        "b": False,
        "i": 2**31 - 1,
        "u": 0,
        "l": -(2**63),
        "ul": 2**64 - 1,
        "f": float("nan"),
        "d": float("inf"),
    },
}


# ------------------------------------------------------------------ what lands in the slots


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_scalar_type_and_pointer_lands_in_its_slot(fake, case):
    kern = cuda(every_type)
    args = every_type_args(CASES[case])
    kern[GRID, WARPS](*args)  # the first launch takes the full path, then binds
    (plan,) = plans_of(kern)
    assert isinstance(plan, runtime.CudaLaunchPlan)
    kern[GRID, WARPS](*args)
    full, planned = fake.launches
    want = [slot_bytes(v, t) for v, t in zip(args, EVERY_TYPE, strict=True)]
    assert planned.values == want
    assert full.values == want  # the same bytes as the full path
    device = runtime.get_device()
    assert planned.call == "cuLaunchKernel"
    assert planned.fn.name == "every_type" and planned.fn is full.fn
    assert planned.grid == (GRID, 1, 1) and planned.threads == (WARPS * 32, 1, 1)
    assert planned.shared == 0 and planned.stream is device.stream
    assert planned.params == plan._pointers.ctypes.data  # made once, per plan


def test_the_plan_packs_each_launch_afresh(fake):
    kern = cuda(affine)
    x, y = runtime.empty(N, np.float32), runtime.empty(N, np.float32)
    for k in range(4):
        kern[GRID, WARPS](y, x, np.float32(k), 0.5 * k, k)
    assert isinstance(plans_of(kern)[0], runtime.CudaLaunchPlan)
    for k, launch in enumerate(fake.launches):
        assert launch.values == [
            slot_bytes(y, None),
            slot_bytes(x, None),
            slot_bytes(np.float32(k), aw.f32),
            slot_bytes(0.5 * k, aw.f32),
            slot_bytes(k, aw.i32),
        ]


@pytest.mark.parametrize("t", SCALAR_TYPES, ids=str)
def test_scalar_limits_match_numpy(fake, t):
    """Each type's extreme values and a middling one, alone in a kernel, both paths."""
    if t is aw.bool_:
        values = [True, False, np.bool_(True)]
    elif t.is_int:
        lo, hi = t.limits
        values = [lo, hi, (lo + hi) // 2, t.dtype.type(hi)]
    else:
        values = [1e-30, -3.5, float("inf"), t.dtype.type(2.5)]

    @aw.kernel
    def one(out: aw.Array[aw.i32], v: t):
        out[0] = 1

    kern = cuda(one)
    out = runtime.empty(4, np.int32)
    for v in values:
        kern[1](out, v)
    assert isinstance(plans_of(kern)[0], runtime.CudaLaunchPlan)
    got = [launch.values[1] for launch in fake.launches]
    assert got == [slot_bytes(v, t) for v in values]


# ------------------------------------------------------------------ declined: the full path


def two_kernels(fake):
    """A handle with a bound plan, and a fresh handle whose next launch is the full path."""
    kern = cuda(affine)
    x, y = runtime.empty(N, np.float32), runtime.empty(N, np.float32)
    kern[GRID, WARPS](y, x, np.float32(1), np.float32(2), np.int32(N))
    assert isinstance(plans_of(kern)[0], runtime.CudaLaunchPlan)
    fake.launches.clear()
    return kern, cuda(affine), x, y


def foreign_device():
    return type("OtherDevice", (), {"ordinal": 1})()


BAD = {
    "wrong dtype": lambda x, y: (y, runtime.empty(N, np.float64), 1.0, 2.0, N),
    "2-D host array": lambda x, y: (y, np.zeros((2, N), np.float32), 1.0, 2.0, N),
    "2-D device array": lambda x, y: (y, _reshaped(x), 1.0, 2.0, N),
    "other device": lambda x, y: (y, _moved(x), 1.0, 2.0, N),
    "int out of range": lambda x, y: (y, x, 1.0, 2.0, 2**31),
    "numpy int out of range": lambda x, y: (y, x, 1.0, 2.0, np.int64(2**40)),
    "str for f32": lambda x, y: (y, x, "1.0", 2.0, N),
    "float for i32": lambda x, y: (y, x, 1.0, 2.0, 3.5),
    "bool for i32": lambda x, y: (y, x, 1.0, 2.0, True),
    "scalar for array": lambda x, y: (y, 1.0, 1.0, 2.0, N),
    "list for array": lambda x, y: (y, [1.0] * N, 1.0, 2.0, N),
    "too few": lambda x, y: (y, x, 1.0, 2.0),
    "too many": lambda x, y: (y, x, 1.0, 2.0, N, N),
}


def _reshaped(x):
    view = runtime.DeviceArray(N, np.float32, x.device)
    view.shape = (2, N // 2)
    return view


def _moved(x):
    view = runtime.DeviceArray(N, np.float32, x.device)
    view.device = foreign_device()
    return view


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_arguments_raise_what_the_full_path_raises(fake, case):
    kern, fresh, x, y = two_kernels(fake)
    args = BAD[case](x, y)
    want = error_of(lambda: fresh[GRID, WARPS](*args))
    got = error_of(lambda: kern[GRID, WARPS](*args))
    assert got == want
    assert fake.launches == []  # nothing reached the device


def test_error_texts_are_the_pinned_ones(fake):
    kern, _, x, y = two_kernels(fake)
    with pytest.raises(TypeError, match=r"affine\(\) argument 'x' must have dtype float32"):
        kern[GRID, WARPS](y, runtime.empty(N, np.float64), 1.0, 2.0, N)
    with pytest.raises(ValueError, match="does not fit in i32"):
        kern[GRID, WARPS](y, x, 1.0, 2.0, 2**31)
    with pytest.raises(ValueError, match="must be 1-D"):
        kern[GRID, WARPS](y, np.zeros((2, N), np.float32), 1.0, 2.0, N)
    with pytest.raises(TypeError, match="must be a number"):
        kern[GRID, WARPS](y, x, "1.0", 2.0, N)


ACCEPTED = {
    # the full path converts these; the plan leaves them to it
    "numpy f64 for f32": (lambda x, y: (y, x, np.float64(1.5), 2.0, N), 2, np.float32(1.5)),
    "int for f32": (lambda x, y: (y, x, 3, 2.0, N), 2, np.float32(3)),
    "numpy i64 for i32": (lambda x, y: (y, x, 1.0, 2.0, np.int64(N)), 4, np.int32(N)),
    "numpy u32 for i32": (lambda x, y: (y, x, 1.0, 2.0, np.uint32(N)), 4, np.int32(N)),
}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_convertible_values_take_the_full_path(fake, case):
    kern, fresh, x, y = two_kernels(fake)
    make, slot, value = ACCEPTED[case]
    kern[GRID, WARPS](*make(x, y))
    fresh[GRID, WARPS](*make(x, y))
    planned, full = fake.launches
    assert planned.values == full.values
    assert planned.values[slot] == value.tobytes()


def test_host_arrays_are_staged_by_the_full_path(fake):
    kern, _, x, y = two_kernels(fake)
    host = np.arange(N, dtype=np.float32)
    out = np.full(N, np.nan, np.float32)
    kern[GRID, WARPS](out, host, 1.0, 2.0, N)
    (launch,) = fake.launches
    staged = int(np.frombuffer(launch.values[1], np.uint64)[0])
    assert staged not in (0, host.ctypes.data, x.ptr)  # a device copy, freed afterwards
    assert staged not in fake.memory
    assert np.isnan(out).all()  # copied in and back (kernels do not run on the stand-in)


def test_other_producers_arrays_take_the_full_path(fake):
    class Foreign:  # only the interface, as CuPy or numba expose it
        def __init__(self, a):
            self.a = a
            self.__cuda_array_interface__ = a.__cuda_array_interface__

    kern, _, x, y = two_kernels(fake)
    before = fake.calls.get("cuCtxSynchronize", 0)
    kern[GRID, WARPS](Foreign(y), Foreign(x), 1.0, 2.0, N)
    (launch,) = fake.launches
    assert launch.values[:2] == [slot_bytes(y, None), slot_bytes(x, None)]
    assert fake.calls["cuCtxSynchronize"] == before + 1  # their pending writes land first


# ------------------------------------------------------------------ driver errors


def test_launch_failure_names_the_call_and_kernel(fake):
    kern, fresh, x, y = two_kernels(fake)
    args = (y, x, 1.0, 2.0, N)
    fresh[GRID, WARPS](*args)  # bind the fresh handle too; then both fail alike
    failed = fake.CUresult.CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES
    fake.fail = [failed]
    with pytest.raises(runtime.CudaError) as planned:
        kern[GRID, WARPS](*args)
    assert str(planned.value) == (
        "cuLaunchKernel failed (kernel affine): CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES: "
        "fake driver error"
    )
    assert planned.value.call == "cuLaunchKernel" and planned.value.kernel == "affine"
    fake.fail = [failed]
    with pytest.raises(runtime.CudaError) as full:
        Launcher(fresh, GRID, WARPS)._launch(args)
    assert str(full.value) == str(planned.value)


def test_a_fault_reported_by_the_synchronisation_carries_the_hint(fake):
    kern, fresh, x, y = two_kernels(fake)
    args = (y, x, 1.0, 2.0, N)
    fake.fail_sync = [fake.CUresult.CUDA_ERROR_ILLEGAL_ADDRESS]
    with pytest.raises(runtime.CudaError) as planned:
        kern[GRID, WARPS](*args)
    fake.fail_sync = [fake.CUresult.CUDA_ERROR_ILLEGAL_ADDRESS]
    with pytest.raises(runtime.CudaError) as full:
        Launcher(fresh, GRID, WARPS)._launch(args)
    assert str(planned.value) == str(full.value)
    assert "cuStreamSynchronize after the launch failed (kernel affine)" in str(planned.value)
    assert "faulted on the GPU" in str(planned.value)


# ------------------------------------------------------------------ context activation


def test_the_context_is_made_current_once_per_thread(fake):
    kern, _, x, y = two_kernels(fake)
    args = (y, x, 1.0, 2.0, N)
    before = fake.calls["cuCtxSetCurrent"]
    for _ in range(5):
        kern[GRID, WARPS](*args)
    assert fake.calls["cuCtxSetCurrent"] == before  # this thread activated it already

    def elsewhere():
        for _ in range(3):
            kern[GRID, WARPS](*args)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert fake.calls["cuCtxSetCurrent"] == before + 1  # once, in the new thread
    assert len(fake.launches) == 8


@pytest.mark.parametrize(
    "stale",
    ["CUDA_ERROR_INVALID_CONTEXT", "CUDA_ERROR_INVALID_HANDLE", "CUDA_ERROR_CONTEXT_IS_DESTROYED"],
)
def test_a_launch_under_another_context_reactivates_and_retries_once(fake, stale):
    kern, _, x, y = two_kernels(fake)
    args = (y, x, 1.0, 2.0, N)
    before = fake.calls["cuCtxSetCurrent"]
    fake.fail = [getattr(fake.CUresult, stale)]
    kern[GRID, WARPS](*args)
    assert fake.calls["cuCtxSetCurrent"] == before + 1
    first, retry = fake.launches
    assert first.values == retry.values
    fake.fail = [getattr(fake.CUresult, stale)] * 2  # still failing: reported, not retried again
    with pytest.raises(
        runtime.CudaError, match=f"cuLaunchKernel failed \\(kernel affine\\): {stale}"
    ):
        kern[GRID, WARPS](*args)
    assert len(fake.launches) == 4 and fake.calls["cuCtxSetCurrent"] == before + 2


def test_other_launch_errors_are_not_retried(fake):
    kern, _, x, y = two_kernels(fake)
    before = fake.calls["cuCtxSetCurrent"]
    fake.fail = [fake.CUresult.CUDA_ERROR_LAUNCH_FAILED]
    with pytest.raises(runtime.CudaError, match="CUDA_ERROR_LAUNCH_FAILED"):
        kern[GRID, WARPS](y, x, 1.0, 2.0, N)
    assert len(fake.launches) == 1 and fake.calls["cuCtxSetCurrent"] == before


# ------------------------------------------------------------------ plans and launchers


def test_concurrent_launches_of_one_plan_keep_their_own_values(fake):
    kern, _, x, y = two_kernels(fake)
    launches = 200

    def worker(k):
        for _ in range(launches):
            kern[GRID, WARPS](y, x, float(k), np.float32(-k), k)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fake.launches) == 4 * launches
    for launch in fake.launches:
        k = int(np.frombuffer(launch.values[4], np.int32)[0])
        assert launch.values[2:4] == [slot_bytes(float(k), aw.f32), slot_bytes(-k, aw.f32)]


def test_cooperative_kernels_bind_a_cooperative_launch(fake):
    kern = cuda(chain)
    flags, out = runtime.empty(4, np.int32), runtime.empty(4 * 32, np.int32)
    kern[4](flags, out)
    kern[4](flags, out)
    assert isinstance(plans_of(kern)[0], runtime.CudaLaunchPlan)
    assert [launch.call for launch in fake.launches] == ["cuLaunchCooperativeKernel"] * 2
    big = 2 * 132 + 1  # FakeDriver: 2 blocks per multiprocessor, 132 of them
    with pytest.raises(ValueError, match="launch at most 264 blocks"):
        kern[big](flags, out)
    (bound,) = kern._bound.values()
    with pytest.raises(ValueError, match="launch at most 264 blocks"):
        backends.get("cuda").bind(bound.compiled, big)  # binding checks residency too


def test_watchdog_kernels_keep_run_compiled(fake):
    kern = chain.with_options(backend="cuda", watchdog_ns=10**9)
    flags, out = runtime.empty(4, np.int32), runtime.empty(4 * 32, np.int32)
    kern[4](flags, out)
    kern[4](flags, out)
    (plan,) = plans_of(kern)
    assert not isinstance(plan, runtime.CudaLaunchPlan)  # the hidden report array needs it
    assert plan.__name__ == "checked_plan"
    assert len(fake.launches) == 2 and len(fake.launches[1].values) == 3


def test_a_new_configuration_binds_anew(fake, tmp_path):
    kern, _, x, y = two_kernels(fake)
    args = (y, x, 1.0, 2.0, N)
    kern[GRID, WARPS](*args)
    config._current = config.Config(cache_dir=tmp_path, disk_cache=False)  # as aw.init does
    kern[GRID, WARPS](*args)
    kern[GRID, WARPS](*args)
    assert len(kern._bound) == 2 and len(plans_of(kern)) == 2
    other = kern[GRID + 1, WARPS]
    other(*args)
    other(*args)
    assert len(plans_of(kern)) == 3
    assert [launch.grid[0] for launch in fake.launches] == [GRID] * 3 + [GRID + 1] * 2


def test_launchers_are_cached_for_exact_ints_only(fake):
    kern = cuda(affine)
    assert kern[4, 2] is kern[4, 2] and kern[4] is kern[4] and kern[4] is not kern[4, 2]
    kern[1]
    for bad in (True, 1.0, (1, True), (1.0, 2), 0, -1, (1, 0)):
        with pytest.raises(ValueError, match="must be a positive int"):
            kern[bad]
    assert kern[np.int64(4), 2].grid == 4  # valid, only not cached
    with pytest.raises(TypeError, match="takes blocks or"):
        kern[1, 2, 3]


def test_sim_kernels_launch_through_a_checked_plan():
    kern = affine.with_options(backend="sim")
    x = np.arange(N, dtype=np.float32)
    for a in (1.0, 2.0):
        y = np.full(N, np.nan, np.float32)
        kern[2, 1](y, x, a, 0.5, N)
        np.testing.assert_array_equal(y, a * x + 0.5)
    (plan,) = plans_of(kern)
    assert plan.__name__ == "checked_plan"
    want = error_of(lambda: affine.with_options(backend="sim")[2, 1](y, x.astype(int), 1.0, 0.5, N))
    assert error_of(lambda: kern[2, 1](y, x.astype(int), 1.0, 0.5, N)) == want


# ------------------------------------------------------------------ cost, printed


def test_print_python_time_per_fake_launch(fake):
    """Not asserted: `pytest -s` shows what a launch costs in Python, before and with plans."""
    fake.record = False
    kern = cuda(affine)
    x, y = runtime.empty(N, np.float32), runtime.empty(N, np.float32)
    args = (y, x, np.float32(1.5), np.float32(-0.25), np.int32(N))  # benchmark 6's kinds
    kern[GRID, WARPS](*args)

    def per_launch(call, launches=2000):
        call()
        start = time.perf_counter()
        for _ in range(launches):
            call()
        return (time.perf_counter() - start) / launches * 1e6

    full = per_launch(lambda: Launcher(kern, GRID, WARPS)._launch(args))
    planned = per_launch(lambda: kern[GRID, WARPS](*args))
    print(
        f"\nPython time per fake launch: full path {full:.1f} us, "
        f"bound plan {planned:.1f} us ({full / planned:.0f}x)"
    )


# ------------------------------------------------------------------ on a GPU


@pytest.mark.device
def test_a_plan_computes_what_numpy_does_on_the_gpu(rng):
    ok, why = runtime.available()
    if not ok:
        pytest.skip(why)
    kern = cuda(affine)
    n = 1000
    x = rng.standard_normal(n).astype(np.float32)
    xd, yd = runtime.to_device(x), runtime.to_device(np.full(n, np.nan, np.float32))
    grid = -(-n // (WARPS * 32))
    for a, b in ((np.float32(1.5), np.float32(-0.25)), (2.0, 0.5), (np.float32(-3), 7.0)):
        kern[grid, WARPS](yd, xd, a, b, np.int32(n))
        want = np.float32(a) * x + np.float32(b)
        np.testing.assert_allclose(yd.numpy(), want, rtol=1e-6, atol=1e-6)  # fma or not
    assert isinstance(plans_of(kern)[0], runtime.CudaLaunchPlan)
    host = np.full(n, np.nan, np.float32)  # declined by the plan: staged by the full path
    kern[grid, WARPS](host, xd, 2.0, 1.0, n)
    np.testing.assert_allclose(host, np.float32(2) * x + np.float32(1), rtol=1e-6, atol=1e-6)
