"""Launch, argument checks, specialisation, the kernel cache, configuration and explore."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import poisoned

import asyncwarp as aw
from asyncwarp import backends
from asyncwarp.core import config
from asyncwarp.core.kernel import source_fingerprint

SCALE = 3


@aw.kernel
def scale_add(y: aw.Array[aw.f32], x: aw.Array[aw.f32], a: aw.f32, n: aw.i32):
    i = (aw.block_id() * aw.num_warps() + aw.warp_id()) * aw.WARP + aw.lane()
    if i < n:
        y[i] = a * x[i] + y[i] * SCALE


@aw.kernel
def untyped(out, x, k):
    i = aw.block_id() * aw.WARP + aw.lane()
    out[i] = x[i] * k


def test_launch_matches_numpy(run, W, rng):
    n, warps = 3 * W + 5, 2
    x = rng.standard_normal(n).astype(np.float32)
    y0 = rng.standard_normal(n).astype(np.float32)
    y = y0.copy()
    blocks = -(-n // (W * warps))
    run(scale_add, blocks, y, x, 1.5, n, warps=warps)
    np.testing.assert_allclose(y, np.float32(1.5) * x + y0 * SCALE, rtol=1e-5, atol=1e-6)


@aw.kernel
def by_powers_of_two(
    out32: aw.Array[aw.i32],
    outu: aw.Array[aw.u32],
    out64: aw.Array[aw.i64],
    x: aw.Array[aw.i32],
    u: aw.Array[aw.u32],
    w: aw.Array[aw.i64],
):
    i = aw.block_id() * aw.WARP + aw.lane()
    out32[5 * i] = x[i] // 8
    out32[5 * i + 1] = x[i] % 8
    out32[5 * i + 2] = x[i] // 1
    out32[5 * i + 3] = x[i] % 1
    out32[5 * i + 4] = x[i] % 7  # not a power of two: the general path
    outu[2 * i] = u[i] // 64
    outu[2 * i + 1] = u[i] % 64
    out64[2 * i] = w[i] // 1024
    out64[2 * i + 1] = w[i] % 1024


def test_floordiv_and_mod_by_constant_powers_of_two(run, W, rng):
    """Shifts and masks where the divisor is 2^k: Python's floor semantics, negatives too."""
    n = 2 * W
    x = rng.integers(-(2**31), 2**31, n, dtype=np.int64).astype(np.int32)
    x[:4] = [-1, -8, -9, 2**31 - 1]
    u = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    w = rng.integers(-(2**62), 2**62, n, dtype=np.int64)
    out32, outu, out64 = (
        poisoned(5 * n, np.int32),
        poisoned(2 * n, np.uint32),
        poisoned(2 * n, np.int64),
    )
    run(by_powers_of_two, 2, out32, outu, out64, x, u, w)
    want32 = np.stack([x // 8, x % 8, x // 1, x % 1, x % 7], axis=1).ravel()
    np.testing.assert_array_equal(out32, want32)
    np.testing.assert_array_equal(outu, np.stack([u // 64, u % 64], axis=1).ravel())
    np.testing.assert_array_equal(out64, np.stack([w // 1024, w % 1024], axis=1).ravel())


def test_unannotated_parameters_take_argument_types(run, W, rng):
    x = rng.integers(-1000, 1000, 2 * W).astype(np.int64)
    out = np.full(2 * W, -7, np.int64)
    run(untyped, 2, out, x, np.int64(3))
    np.testing.assert_array_equal(out, x * 3)


@pytest.mark.parametrize(
    "args, exc, fragment",
    [
        ((np.zeros(4, np.float64), np.zeros(4, np.float32), 1.0, 4), TypeError, "dtype float32"),
        ((np.zeros((2, 2), np.float32), np.zeros(4, np.float32), 1.0, 4), ValueError, "1-D"),
        ((np.zeros(4, np.float32), np.zeros(4, np.float32), 1.0), TypeError, "takes 4 argument"),
        ((np.zeros(4, np.float32), 3.0, 1.0, 4), TypeError, "must be an array of f32"),
        ((np.zeros(4, np.float32), np.zeros(4, np.float32), 1.0, 2**40), ValueError, "fit in i32"),
        ((np.zeros(4, np.float32), np.zeros(4, np.float32), 1.0, 4.5), TypeError, "integer"),
        ((np.zeros(4, np.float32), np.zeros(4, np.float32), np.zeros(1), 4), TypeError, "scalar"),
        ((np.zeros(8, np.float32)[::2], np.zeros(4, np.float32), 1.0, 4), ValueError, "contiguous"),
    ],
)
def test_bad_launch_arguments_fail_before_running(args, exc, fragment):
    with pytest.raises(exc, match=fragment):
        scale_add.with_options(backend="sim")[1](*args)


@pytest.mark.parametrize("shape", [0, -1, 1.5, (1, 0), (1, 2, 3), True])
def test_bad_launch_shape(shape):
    with pytest.raises((ValueError, TypeError)):
        scale_add[shape]


def test_calling_without_a_grid_explains():
    with pytest.raises(TypeError, match=r"scale_add\[blocks\]"):
        scale_add(1, 2, 3, 4)


def test_unknown_options_rejected():
    with pytest.raises(TypeError, match="unknown kernel option"):
        scale_add.with_options(warp=64)
    with pytest.raises(ValueError, match="progress"):
        aw.kernel(progress="eager")(lambda: None)


def test_specialize_gives_ir_and_ptx_without_a_gpu():
    c = scale_add.specialize(
        aw.Array[aw.f32],
        aw.Array[aw.f32],
        aw.f32,
        aw.i32,
        backend="cuda",
        arch="sm_90",
        warp_width=64,
    )
    assert c.ir.startswith("kernel scale_add(") and "warp_width=64" in c.ir.splitlines()[0]
    assert ".target sm_90" in c.asm and ".entry" in c.asm
    assert "sg_lane()" in c.lowered_ir and " lane()" not in c.lowered_ir
    assert c.options.subgroup == 32 and c.lowered.attrs["fold"] == 2


def test_same_source_builds_for_both_widths():
    a = scale_add.specialize(
        aw.Array[aw.f32], aw.Array[aw.f32], aw.f32, aw.i32, backend="sim", warp_width=32
    )
    b = scale_add.specialize(
        aw.Array[aw.f32], aw.Array[aw.f32], aw.f32, aw.i32, backend="sim", warp_width=64
    )
    assert a.logical.attrs["warp_width"] == 32 and b.logical.attrs["warp_width"] == 64


def test_memory_cache_hits_and_keys_on_types():
    k = scale_add.with_options(backend="sim")
    t = (aw.Array[aw.f32], aw.Array[aw.f32], aw.f32, aw.i32)
    assert k.specialize(*t) is k.specialize(*t)
    assert k.specialize(*t) is not k.specialize(*t, warp_width=64)


def test_disk_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "_current", config.Config(cache_dir=tmp_path))
    t = (aw.Array[aw.f32], aw.Array[aw.f32], aw.f32, aw.i32)

    def fresh():  # a new kernel object: an empty memory cache, so only the disk can hit
        return aw.kernel(scale_add.fn, backend="cuda", arch="sm_80")

    first = fresh().specialize(*t)
    files = list(tmp_path.glob("scale_add-*.pkl"))
    assert len(files) == 1
    again = fresh().specialize(*t)
    assert again is not first and again.asm == first.asm
    files[0].write_bytes(b"truncated")  # a damaged entry is rebuilt, never trusted
    rebuilt = fresh().specialize(*t)
    assert rebuilt.asm == first.asm and files[0].read_bytes() != b"truncated"


@aw.func
def _bump(v):
    return v + 1


@aw.func
def _bump_twice(v):
    return v + 2


def _reads_callee_and_constant(a):
    a[0] = _bump(a[0]) * SCALE


def test_fingerprint_follows_callees_and_constants():
    g = _reads_callee_and_constant.__globals__
    saved = g["SCALE"], g["_bump"]
    before = source_fingerprint(_reads_callee_and_constant)
    try:
        g["SCALE"] = SCALE + 1  # a module constant the kernel reads
        assert source_fingerprint(_reads_callee_and_constant) != before
        g["SCALE"] = SCALE - 1
        g["_bump"] = _bump_twice  # the same name now calls a different device function
        assert source_fingerprint(_reads_callee_and_constant) != before
    finally:
        g["SCALE"], g["_bump"] = saved
    assert source_fingerprint(_reads_callee_and_constant) == before


def test_env_configuration(monkeypatch):
    env = {
        "ASYNCWARP_BACKEND": "sim",
        "ASYNCWARP_WARP_WIDTH": "64",
        "ASYNCWARP_DEVICE": "lavapipe",
        "ASYNCWARP_PROGRESS": "cooperative",
    }
    cfg = config.from_env(env)
    assert (cfg.backend, cfg.warp_width, cfg.device, cfg.progress) == (
        "sim",
        64,
        "lavapipe",
        "cooperative",
    )
    with pytest.raises(ValueError, match="ASYNCWARP_WARP_WIDTH"):
        config.from_env({"ASYNCWARP_WARP_WIDTH": "48"})
    with pytest.raises(ValueError, match="ASYNCWARP_BACKEND"):
        config.from_env({"ASYNCWARP_BACKEND": "metal"})


def test_init_validates_and_sets_defaults(monkeypatch):
    monkeypatch.setattr(config, "_current", None)
    with pytest.raises(ValueError, match="32 or 64"):
        aw.init(warp_width=16)
    with pytest.raises(TypeError, match="unknown options"):
        aw.init(colour="blue")
    cfg = aw.init(backend="sim", warp_width=64)
    assert config.current() is cfg and cfg.warp_width == 64
    monkeypatch.setattr(config, "_current", None)


def test_missing_backend_explains(monkeypatch):
    monkeypatch.setitem(backends._status, ("cuda", 99), (False, "no NVIDIA driver (libcuda)"))
    with pytest.raises(aw.BackendUnavailable, match="no NVIDIA driver"):
        backends.get("cuda", 99)
    with pytest.raises(ValueError, match="unknown backend"):
        backends.get("metal")


@aw.kernel
async def racy_counter(counter: aw.Array[aw.i32]):
    # read-modify-write split by a yield: lost updates under some schedules
    v = aw.load(counter, 0)
    await aw.yield_now()
    if aw.lane() == 0:
        aw.store(counter, 0, v + 1)


def test_explore_finds_the_lost_update(W):
    counter = np.zeros(1, np.int32)
    report = aw.explore(
        racy_counter,
        1,
        [counter],
        schedules=12,
        seed=5,
        warps=3,
        warp_width=W,
        check=lambda c: bool(c[0] == 3),
    )
    assert report.schedules == 12 and report.seeds == list(range(5, 17))
    assert report.failures, "some schedule must interleave the read-modify-writes"
    assert all(f.error == "check" for f in report.failures)
    assert 1 <= counter[0] <= 3  # the last schedule's result is left in the array


def test_cli_info_and_demo():
    info = subprocess.run(
        [sys.executable, "-m", "asyncwarp", "info"], capture_output=True, text=True, timeout=120
    )
    assert info.returncode == 0, info.stderr
    assert "sim" in info.stdout and "ASYNCWARP_BACKEND" in info.stdout
    demo = subprocess.run(
        [sys.executable, "-m", "asyncwarp", "demo", "--backend", "sim", "--size", "3000"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "check against numpy: OK" in demo.stdout


def test_auto_progress_uses_known_facts_then_probes(tmp_path, monkeypatch):
    from asyncwarp.core import progress
    from asyncwarp.core.backend import DeviceCaps

    monkeypatch.setattr(config, "_current", config.Config(cache_dir=tmp_path))
    none = {"lane": False, "warp": False, "block": False}
    unknown = DeviceCaps(backend="vulkan", name="Some GPU", driver="1.0", progress=none)
    assert progress.guarantees(unknown)["warp"] is False  # nothing assumed
    progress.record(
        unknown,
        progress.from_report(
            {"W32/warp": True, "W64/warp": True, "W32/block": True, "W64/block": False}
        ),
    )
    found = progress.guarantees(unknown)
    assert found["warp"] is True and found["block"] is False  # every W must agree
    known = DeviceCaps(
        backend="vulkan", name="llvmpipe", driver="x", progress=none, extra={"progress_known": True}
    )
    progress.record(known, {"warp": True})
    assert progress.guarantees(known)["warp"] is False  # known facts beat a lucky probe
    k = scale_add.with_options(backend="sim")
    assert k._auto_progress("vulkan", 0, unknown, 32, 32) == "independent"
    assert k._auto_progress("vulkan", 0, unknown, 32, 64) == "cooperative"  # H > W
    assert k._auto_progress("vulkan", 0, known, 32, 32) == "cooperative"


@aw.kernel
async def event_chain(flags: aw.Array[aw.i32], out: aw.Array[aw.i32]):
    b = aw.block_id()
    if b > 0:
        before = aw.Event(flags, b - 1)
        await before.wait()
    out[b * aw.WARP + aw.lane()] = b
    mine = aw.Event(flags, b)
    mine.set()


def test_waits_between_blocks_are_recorded_for_launchers(run, W):
    c = event_chain.specialize(aw.Array[aw.i32], aw.Array[aw.i32], backend="sim", warp_width=W)
    (where,) = c.lowered.attrs["waits_between_blocks"]
    assert "test_kernel.py" in where
    assert (
        "waits_between_blocks"
        not in scale_add.specialize(
            aw.Array[aw.f32], aw.Array[aw.f32], aw.f32, aw.i32, backend="sim"
        ).lowered.attrs
    )
    blocks = 3
    flags = np.zeros(blocks, np.int32)
    out = np.full(blocks * W, -1, np.int32)
    run(event_chain, blocks, flags, out)
    np.testing.assert_array_equal(out, np.repeat(np.arange(blocks), W))
    np.testing.assert_array_equal(flags, np.ones(blocks, np.int32))


@aw.kernel
async def never_set(flags: aw.Array[aw.i32], out: aw.Array[aw.i32]):
    out[aw.block_id() * aw.WARP + aw.lane()] = 1
    await aw.until(aw.load(flags, 0, order="acquire") == 1)  # nothing ever sets it
    out[aw.block_id() * aw.WARP + aw.lane()] = 2


def test_watchdog_stops_a_stuck_kernel_and_names_the_wait(run, W):
    flags = np.zeros(1, np.int32)
    out = np.full(2 * W, -1, np.int32)
    with pytest.raises(aw.WatchdogTimeout) as info:
        run(never_set, 2, flags, out, watchdog_ns=2_000_000)
    message = str(info.value)
    assert "until" in message and "test_kernel.py" in message, message
    assert len(info.value.pending) == 2  # one stuck warp per block


def test_sm_count_comes_from_the_device(backend):
    """Persistent grids are sized from the SM count: CUDA's attribute, or on Vulkan the
    VK_NV_shader_sm_builtins property (absent elsewhere, e.g. on lavapipe)."""
    caps = backends.get(backend).caps()
    if backend == "sim":
        assert "sm_count" not in caps.extra
        return
    if backend == "cuda":
        assert caps.extra["sm_count"] > 0
        return
    runtime = backends.get(backend).runtime()
    reported = "VK_NV_shader_sm_builtins" in runtime.physical.extensions
    assert ("sm_count" in caps.extra) == reported
    if reported:
        assert caps.extra["sm_count"] > 0 and caps.extra["warps_per_sm"] >= 32
        if backends.available("cuda")[0]:
            assert caps.extra["sm_count"] == backends.get("cuda").caps().extra["sm_count"]
