"""Tests of the Vulkan runtime and backend on Mesa lavapipe, with hand-written SPIR-V.

The shaders in tests/shaders/*.spvasm follow the Argument ABI of docs/internals.md
and are assembled with spirv-as (and checked with spirv-val) at test time, so the
runtime is tested independently of the SPIR-V emitter.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from asyncwarp.backends.vulkan import runtime_vk
from asyncwarp.backends.vulkan.backend import (
    VulkanBackend,
    push_constant_layout,
    written_arrays,
)
from asyncwarp.backends.vulkan.runtime import (
    VulkanBuffer,
    VulkanError,
    VulkanRuntime,
    available,
    choose_subgroup,
    list_devices,
)
from asyncwarp.backends.vulkan.runtime_pipeline import find_entry_points, load_cache_data
from asyncwarp.core import ir
from asyncwarp.core.backend import BuildOptions, DeviceCaps
from asyncwarp.core.errors import BackendUnavailable, CompileError
from asyncwarp.core.types import Array, ArrayType, bool_, f32, f64, i32, i64, u32

SHADERS = Path(__file__).parent / "shaders"
REPO = Path(__file__).parent.parent
POISON_U32 = np.uint32(0xDEADBEEF)


@pytest.fixture(scope="session")
def spirv(tmp_path_factory):
    """assemble(name, local_size=None) -> SPIR-V bytes of tests/shaders/<name>.spvasm."""
    out = tmp_path_factory.mktemp("spirv")
    built: dict = {}

    def assemble(name: str, local_size: int | None = None) -> bytes:
        if (name, local_size) not in built:
            text = (SHADERS / f"{name}.spvasm").read_text()
            if local_size is not None:
                text, n = re.subn(r"LocalSize \d+ 1 1", f"LocalSize {local_size} 1 1", text)
                assert n == 1
            src, binary = out / f"{name}_{local_size}.spvasm", out / f"{name}_{local_size}.spv"
            src.write_text(text)
            subprocess.run(
                ["spirv-as", "--target-env", "vulkan1.2", str(src), "-o", str(binary)],
                check=True,
                capture_output=True,
            )
            subprocess.run(
                ["spirv-val", "--target-env", "vulkan1.2", str(binary)],
                check=True,
                capture_output=True,
            )
            built[name, local_size] = binary.read_bytes()
        return built[name, local_size]

    return assemble


@pytest.fixture(scope="module")
def rt():
    runtime = VulkanRuntime("lavapipe")
    yield runtime
    runtime.close()


@pytest.fixture(scope="module")
def vk_backend():
    # Not named `backend`: conftest parametrizes that name over the backends present.
    b = VulkanBackend(device="lavapipe")
    yield b
    b.close()


def axpb_kernel(warp_width: int = 32) -> ir.Kernel:
    """The IR signature of axpb.spvasm: y[i] = a*x[i] + (use_b ? f32(b) : 0) for i < n."""
    x, y = ir.Var("x", Array[f32]), ir.Var("y", Array[f32])
    a, use_b, b, n = ir.Var("a", f32), ir.Var("use_b", bool_), ir.Var("b", f64), ir.Var("n", u32)
    xi = ir.Var("xi", f32)
    zero = ir.Const(0, i32)
    body = [ir.Op(xi, "load", (x, zero)), ir.Op(None, "store", (y, zero, xi))]
    attrs = {
        "warp_width": warp_width,
        "subgroup": 8,
        "fold": warp_width // 8,
        "warps": 2,
        "block_size": 64,
    }
    return ir.Kernel("axpb", [x, y, a, use_b, b, n], body, attrs=attrs)


def axpb_reference(x, a, use_b, b):
    return (np.float32(a) * x + (np.float32(b) if use_b else np.float32(0))).astype(np.float32)


# ---------------------------------------------------------------- device and caps


def test_available_and_listing():
    usable, reason = available()
    assert usable, reason
    assert any("llvmpipe" in d for d in list_devices())
    assert available("lavapipe")[0] and VulkanBackend("lavapipe").available()[0]
    usable, reason = VulkanBackend("no-such-gpu").available()
    assert not usable and "no Vulkan device matches 'no-such-gpu'" in reason


def test_device_selection_by_name_and_index(rt):
    assert "llvmpipe" in rt.caps.name
    with VulkanRuntime("LLVMpipe") as by_name, VulkanRuntime(0) as by_index:
        assert by_name.caps.name == by_index.caps.name == rt.caps.name
    with pytest.raises(ValueError, match="no Vulkan device matches 'no-such-gpu'.*llvmpipe"):
        VulkanRuntime("no-such-gpu")
    with pytest.raises(ValueError, match="index 7 is out of range"):
        VulkanRuntime(7)
    with pytest.raises(TypeError, match="index or a name"):
        VulkanRuntime(1.5)


def test_caps_are_plausible_for_lavapipe(rt):
    caps = rt.caps
    assert caps.backend == "vulkan" and caps.vendor == "Mesa"
    assert "llvmpipe" in caps.driver
    assert caps.subgroup_size == 8 and caps.subgroup_sizes == (8,)
    assert caps.shared_memory_bytes == 32 * 1024
    assert caps.max_block_threads >= 256
    assert caps.int64 and caps.float64 and caps.int64_atomics and caps.timer
    assert caps.progress == {"lane": False, "warp": False, "block": False}
    extra = caps.extra
    assert extra["device_type"] == "cpu" and extra["direct_memory"]
    assert {"basic", "vote", "arithmetic", "ballot", "shuffle"} <= set(extra["subgroup_ops"])
    assert "compute" in extra["subgroup_stages"]
    assert extra["vulkan_memory_model"] and extra["vulkan_memory_model_device_scope"]
    assert extra["timestamps"] and extra["timestamp_period_ns"] > 0
    assert extra["timestamp_compute_and_graphics"] in (True, False)
    assert extra["max_push_constants_bytes"] >= 128


def _caps(size: int, sizes: tuple = (), control: bool = False) -> DeviceCaps:
    return DeviceCaps(
        "vulkan",
        "fake",
        subgroup_size=size,
        subgroup_size_control=control,
        subgroup_sizes=sizes or (size,),
    )


def test_choose_subgroup(rt, W):
    assert choose_subgroup(rt.caps, W) == 8  # lavapipe: H = 8, lanes are folded
    assert choose_subgroup(_caps(32), W) == 32  # NVIDIA: W = 64 folds onto 32
    assert choose_subgroup(_caps(64, (32, 64), control=True), W) == W  # AMD RDNA
    assert choose_subgroup(_caps(16, (8, 16, 32), control=True), W) == 32  # Intel
    assert choose_subgroup(_caps(64), W) == 64  # GCN wave64: H > W when W = 32
    with pytest.raises(ValueError, match="power of two"):
        choose_subgroup(rt.caps, W + 1)


# ---------------------------------------------------------------- kernels


@pytest.mark.parametrize("use_b", [True, False])
def test_axpb_through_backend(vk_backend, spirv, rng, W, use_b):
    n = 1000
    x = rng.standard_normal(n).astype(np.float32)
    x.flags.writeable = False  # only read by the kernel: read-only arrays are fine
    y = np.full(n, np.nan, np.float32)
    a, b = np.float32(rng.uniform(-3, 3)), rng.uniform(-3, 3)
    grid = -(-n // 64) + 1  # one block past the end: the kernel's bound check must hold
    kernel = axpb_kernel(W)
    options = BuildOptions(backend="vulkan", warp_width=W, subgroup=8)
    vk_backend.launch(spirv("axpb"), kernel, options, grid, [x, y, a, use_b, b, np.uint32(n)])
    np.testing.assert_allclose(y, axpb_reference(x, a, use_b, b), rtol=1e-6, atol=1e-6)


def _reduce_inputs(rng, count):
    x = rng.integers(0, 2**32, count, dtype=np.uint64).astype(np.uint32)  # sums wrap
    x64 = rng.integers(-(2**40), 2**40, count, dtype=np.int64)
    outputs = [
        np.full(count, POISON_U32),
        np.full(count, POISON_U32),
        np.full(count, -1, np.int64),
        np.full(2 * count, POISON_U32),
    ]
    return x, x64, outputs


def _check_reduce(x, x64, sums, scans, sums64, info):
    groups = x.reshape(-1, 8)  # lavapipe: subgroups are 8 consecutive invocations
    np.testing.assert_array_equal(sums, np.repeat(groups.sum(1, dtype=np.uint32), 8))
    np.testing.assert_array_equal(scans, np.cumsum(groups, 1, dtype=np.uint32).ravel())
    np.testing.assert_array_equal(sums64, np.repeat(x64.reshape(-1, 8).sum(1), 8))
    np.testing.assert_array_equal(info[0::2], 8)  # SubgroupSize
    np.testing.assert_array_equal(info[1::2], np.arange(len(x)) % 8)  # local invocation id


@pytest.mark.parametrize("block_size", [32, 64])
def test_subgroup_reduce_has_lavapipe_semantics(rt, spirv, rng, block_size):
    grid = 3
    x, x64, outputs = _reduce_inputs(rng, grid * block_size)
    pipeline = rt.pipeline(
        spirv("subgroup_reduce", block_size), num_buffers=6, subgroup_size=8, name="subgroup_reduce"
    )
    assert pipeline.required_subgroup_size == 8 and pipeline.full_subgroups
    buffers = [rt.to_device(a) for a in (x, x64, *outputs)]
    rt.dispatch(pipeline, grid, buffers)
    results = [buf.read(a.dtype) for buf, a in zip(buffers[2:], outputs, strict=True)]
    _check_reduce(x, x64, *results)


def test_shared_memory_reversal_with_barrier(rt, spirv, rng):
    x = rng.integers(0, 2**32, 5 * 64, dtype=np.uint64).astype(np.uint32)
    y = np.full_like(x, POISON_U32)
    pipeline = rt.pipeline(spirv("shared_reverse"), num_buffers=2, name="shared_reverse")
    bx, by = rt.to_device(x), rt.to_device(y)
    rt.dispatch(pipeline, 5, [bx, by])
    np.testing.assert_array_equal(by.read(np.uint32), x.reshape(5, 64)[:, ::-1].ravel())


def test_staging_path(spirv, rng):
    """Device-local buffers with staging copies (the discrete-GPU path), on lavapipe."""
    with VulkanRuntime("lavapipe", staging=True) as staged:
        x, x64, outputs = _reduce_inputs(rng, 64)
        pipeline = staged.pipeline(spirv("subgroup_reduce", 32), num_buffers=6, subgroup_size=8)
        buffers = [staged.to_device(a) for a in (x, x64, *outputs)]
        assert all(b.staged for b in buffers)
        staged.dispatch(pipeline, 2, buffers, readback=buffers[2:3])
        assert not buffers[2].device_dirty and buffers[3].device_dirty
        # Buffers not read back with the dispatch are copied back lazily.
        results = [buf.read(a.dtype) for buf, a in zip(buffers[2:], outputs, strict=True)]
        _check_reduce(x, x64, *results)
        # Through the backend, written arrays come back in the same submission.
        backend = VulkanBackend("lavapipe")
        backend._runtime = staged
        n = 300
        xs = rng.standard_normal(n).astype(np.float32)
        y = np.full(n, np.nan, np.float32)
        backend.launch(spirv("axpb"), axpb_kernel(), BuildOptions(), 5, [xs, y, 1.5, True, -2.0, n])
        np.testing.assert_allclose(y, axpb_reference(xs, 1.5, True, -2.0), rtol=1e-6)


def test_timing_returns_a_positive_duration(rt, vk_backend, spirv):
    pipeline = rt.pipeline(spirv("shared_reverse"), num_buffers=2)
    x = np.arange(64 * 64, dtype=np.uint32)
    bufs = [rt.to_device(x), rt.to_device(x)]
    assert rt.dispatch(pipeline, 64, bufs) is None
    elapsed = rt.dispatch(pipeline, 64, bufs, timing=True)
    assert isinstance(elapsed, int) and elapsed > 0
    y = np.full(128, np.nan, np.float32)
    ns = vk_backend.launch(
        spirv("axpb"),
        axpb_kernel(),
        BuildOptions(),
        2,
        [np.ones(128, np.float32), y, 2.0, False, 0.0, 128],
        timing=True,
    )
    assert ns > 0 and (y == 2).all()


def test_loop_iteration_limit_is_reported(rt, spirv):
    """lavapipe ends loops after 65535 iterations; caps.extra says so, and it is true."""
    pipeline = rt.pipeline(spirv("count_loop"), num_buffers=1, push_constant_size=4)
    out = rt.to_device(np.array([POISON_U32]))
    limit = rt.caps.extra.get("loop_iteration_limit")
    for n in (1000, 70000):
        rt.dispatch(pipeline, 1, [out], np.uint32(n).tobytes())
        assert out.read(np.uint32)[0] == (n if limit is None else min(n, limit))


# ---------------------------------------------------------------- argument checks


def _rejected(vk_backend, spirv, args, exc, match, grid=2):
    calls = []
    rt = vk_backend.runtime()
    real_dispatch, real_pipeline = rt.dispatch, rt.pipeline
    rt.dispatch = lambda *a, **k: calls.append("dispatch")
    rt.pipeline = lambda *a, **k: calls.append("pipeline")
    try:
        with pytest.raises(exc, match=match):
            vk_backend.launch(spirv("axpb"), axpb_kernel(), BuildOptions(), grid, args)
    finally:
        rt.dispatch, rt.pipeline = real_dispatch, real_pipeline
    assert calls == []  # rejected before any pipeline or dispatch


def test_wrong_arguments_are_rejected_before_launch(vk_backend, spirv):
    x = np.ones(64, np.float32)
    y = np.full(64, np.nan, np.float32)
    ok = [x, y, 2.0, True, 0.5, 64]

    def with_(i, v):
        return [v if j == i else a for j, a in enumerate(ok)]

    _rejected(vk_backend, spirv, ok[:5], TypeError, r"takes 6 arguments \(x, y, a, use_b, b, n")
    _rejected(vk_backend, spirv, with_(0, x.astype(np.float64)), TypeError, "dtype float32")
    _rejected(vk_backend, spirv, with_(0, list(x)), TypeError, "numpy array of float32")
    _rejected(vk_backend, spirv, with_(0, np.ones((8, 8), np.float32)), ValueError, "1-D")
    strided = np.ones(128, np.float32)[::2]
    _rejected(vk_backend, spirv, with_(0, strided), ValueError, "contiguous")
    read_only = y.copy()
    read_only.flags.writeable = False
    _rejected(vk_backend, spirv, with_(1, read_only), ValueError, "read-only, but the kernel")
    _rejected(vk_backend, spirv, with_(1, x[:]), ValueError, "'x' and 'y' .* overlap")
    _rejected(vk_backend, spirv, with_(2, "2.0"), TypeError, "'a' .* is f32, got str")
    _rejected(vk_backend, spirv, with_(3, 1), TypeError, "'use_b' .* is a bool")
    _rejected(vk_backend, spirv, with_(5, -1), ValueError, "outside 0..4294967295")
    _rejected(vk_backend, spirv, with_(5, 2**32), ValueError, "outside")
    _rejected(vk_backend, spirv, with_(5, 64.0), TypeError, "is u32, got float")
    _rejected(vk_backend, spirv, with_(5, True), TypeError, "got a bool")
    _rejected(vk_backend, spirv, ok, ValueError, "positive int", grid=0)
    assert np.isnan(y).all()


def test_runtime_rejects_bad_dispatches(rt, spirv):
    pipeline = rt.pipeline(spirv("axpb"), num_buffers=2, push_constant_size=24, name="axpb")
    bufs = [rt.buffer(256), rt.buffer(256)]
    with pytest.raises(ValueError, match="binds 2 buffers, got 1"):
        rt.dispatch(pipeline, 1, bufs[:1], bytes(24))
    with pytest.raises(ValueError, match="24 bytes of push constants, got 20"):
        rt.dispatch(pipeline, 1, bufs, bytes(20))
    with pytest.raises(ValueError, match="within 1..65535"):
        rt.dispatch(pipeline, 70000, bufs, bytes(24))
    with pytest.raises(ValueError, match="multiple of 4"):
        rt.pipeline(spirv("axpb"), num_buffers=2, push_constant_size=22)
    with pytest.raises(ValueError, match="subgroup size 32.*choose_subgroup"):
        rt.pipeline(spirv("axpb"), num_buffers=2, push_constant_size=24, subgroup_size=32)
    with pytest.raises(ValueError, match="not a SPIR-V module"):
        rt.pipeline(b"\0" * 64, num_buffers=0)
    with pytest.raises(ValueError, match="entry point 'nope'.*'main'"):
        rt.pipeline(spirv("axpb"), num_buffers=2, push_constant_size=24, entry="nope")
    with pytest.raises(ValueError, match="exceeds this device's maxStorageBufferRange"):
        rt.buffer(rt.limits.max_storage_buffer_range + 4)


def test_entry_points_and_local_size_are_parsed(spirv):
    (entry,) = find_entry_points(spirv("subgroup_reduce", 64))
    assert entry.name == "main" and entry.local_size == (64, 1, 1)


def test_push_constant_layout_is_std430():
    def params(*types):
        return [ir.Var(f"p{i}", t) for i, t in enumerate(types)]

    slots, size = push_constant_layout(params(Array[f32], f32, bool_, f64, u32))
    assert [(s.param.name, s.offset, s.format) for s in slots] == [
        ("p1", 0, "f"),
        ("p2", 4, "I"),
        ("p3", 8, "d"),
        ("p4", 16, "I"),
    ]
    assert size == 24
    slots, size = push_constant_layout(params(i32, i64, i32))
    assert [s.offset for s in slots] == [0, 8, 16] and size == 24
    assert push_constant_layout(params(Array[i32]))[1] == 0


def test_written_arrays_follows_copies():
    x, y, alias = ir.Var("x", Array[f32]), ir.Var("y", Array[f32]), ir.Var("t", Array[f32])
    v = ir.Var("v", f32)
    body = [
        ir.Op(v, "load", (x, ir.Const(0, i32))),
        ir.Op(alias, "copy", (y,)),
        ir.If(ir.Const(True, bool_), [ir.Op(None, "store", (alias, ir.Const(1, i32), v))], []),
    ]
    assert written_arrays(ir.Kernel("k", [x, y], body)) == {id(y)}


def test_compile_calls_the_emitter(vk_backend, monkeypatch):
    from asyncwarp.core import config

    # the fake module below is no SPIR-V: switch off the validation the test suite turns on
    monkeypatch.setattr(config, "_current", config.Config(validate_spirv=False))
    calls = []

    def fake_emit(kernel, target_env="vulkan1.2", *, shader_clock=False, subgroup_fences=False):
        calls.append((kernel.name, target_env, shader_clock, subgroup_fences))
        return b"spirv"

    fake = type(sys)("asyncwarp.backends.vulkan.emit")
    fake.emit_spirv = fake_emit
    monkeypatch.setitem(sys.modules, "asyncwarp.backends.vulkan.emit", fake)
    kernel = axpb_kernel()
    assert vk_backend.compile(kernel, BuildOptions(backend="vulkan", subgroup=8)) == b"spirv"
    assert calls == [("axpb", "vulkan1.2", True, True)]  # lavapipe: device clock, workaround
    kernel.attrs["subgroup"] = 32
    with pytest.raises(ValueError, match="build with subgroup=8"):
        vk_backend.compile(kernel, BuildOptions(backend="vulkan", subgroup=32))


def test_compile_rejects_blocks_the_device_cannot_run(vk_backend, monkeypatch):
    fake = type(sys)("asyncwarp.backends.vulkan.emit")
    fake.emit_spirv = lambda *a, **k: pytest.fail("emit_spirv called")
    monkeypatch.setitem(sys.modules, "asyncwarp.backends.vulkan.emit", fake)
    kernel = axpb_kernel()
    kernel.attrs["block_size"] = 2048
    with pytest.raises(CompileError, match="2048 invocations per block; .* allows 1024"):
        vk_backend.compile(kernel, BuildOptions(backend="vulkan", subgroup=8))
    kernel = axpb_kernel()
    loc = ir.Loc("kern.py", 12, 8, "    tile = aw.shared(aw.f64, 8192)")
    tile = ir.Var("tile", ArrayType(f64, "shared"))
    kernel.body.append(ir.Op(tile, "shared_alloc", (), {"n": 8192}, loc))
    with pytest.raises(CompileError, match=r"kern.py:12:8: .* 65536 bytes of block memory"):
        vk_backend.compile(kernel, BuildOptions(backend="vulkan", subgroup=8))


def test_backend_runs_the_emitted_spirv(vk_backend, rng, W):
    """Integration with emit.py: a hand-lowered saxpy (H = 8, `warps` subgroups a block)."""
    warps = 2
    block = warps * 8  # block_size = warps * min(W, H)
    y, x, a, n = (
        ir.Var("y", Array[f32]),
        ir.Var("x", Array[f32]),
        ir.Var("a", f32),
        ir.Var("n", i32),
    )
    b = ir.Builder()
    first = b.op(
        "add",
        b.op("mul", b.op("block_id"), ir.Const(block, i32)),
        b.op("mul", b.op("sg_id"), ir.Const(8, i32)),
    )
    i = b.op("add", first, b.op("sg_lane"))
    then = b.nested()
    xi = then.op("load", x, i, order="weak", scope="device")
    yi = then.op("load", y, i, order="weak", scope="device")
    then.op("store", y, i, then.op("add", then.op("mul", a, xi), yi), order="weak", scope="device")
    b.emit(ir.If(b.op("lt", i, n), then.block, []))
    attrs = {
        "warp_width": W,
        "subgroup": 8,
        "fold": W // 8,
        "warps": warps,
        "block_size": block,
        "progress": "cooperative",
        "executor": "block_on",
    }
    kernel = ir.Kernel("saxpy", [y, x, a, n], b.block, attrs=attrs)
    options = BuildOptions(backend="vulkan", warp_width=W, warps=warps, subgroup=8)
    spirv_module = vk_backend.compile(kernel, options)
    count = 777
    xs = rng.standard_normal(count).astype(np.float32)
    ys = rng.standard_normal(count).astype(np.float32)
    expected = np.float32(1.5) * xs + ys
    vk_backend.launch(spirv_module, kernel, options, -(-count // block), [ys, xs, 1.5, count])
    np.testing.assert_allclose(ys, expected, rtol=1e-6)


@pytest.mark.parametrize("warps", [1, 4, 32])  # on lavapipe 32 x 8: more subgroups than H
def test_block_all_over_many_rounds(vk_backend, rng, warps):
    """block_all with one barrier a call (two alternating sets of per-subgroup words):
    round r is false exactly when some invocation drew a zero, in every block."""
    H = vk_backend.caps().subgroup_size
    W = max(32, H)
    block, rounds = warps * H, 40
    picks, out = ir.Var("picks", Array[i32]), ir.Var("out", Array[i32])
    b = ir.Builder()
    inv = b.op("add", b.op("mul", b.op("sg_id"), ir.Const(H, i32)), b.op("sg_lane"))
    r = b.tmp(i32, "r")
    b.assign(r, ir.Const(0, i32))
    header = b.nested()
    more = header.op("lt", r, ir.Const(rounds, i32))
    body = b.nested()
    slot = body.op("add", body.op("mul", body.op("block_id"), ir.Const(rounds, i32)), r)
    mine = body.op("add", body.op("mul", slot, ir.Const(block, i32)), inv)
    every = body.op("block_all", body.op("ne", body.op("load", picks, mine), ir.Const(0, i32)))
    store = body.nested()
    store.op("store", out, slot, body.op("cast", every, type=i32), order="weak", scope="device")
    body.emit(ir.If(body.op("eq", inv, ir.Const(0, i32)), store.block, []))
    latch = b.nested()
    latch.assign(r, latch.op("add", r, ir.Const(1, i32)))
    b.emit(ir.Loop(header.block, more, body.block, latch.block))
    attrs = {"warp_width": W, "subgroup": H, "fold": max(1, W // H), "warps": warps,
             "block_size": block, "progress": "cooperative", "executor": "block_on"}  # fmt: skip
    kernel = ir.Kernel("block_all_rounds", [picks, out], b.block, attrs=attrs)
    options = BuildOptions(backend="vulkan", warp_width=W, warps=warps, subgroup=H)
    module = vk_backend.compile(kernel, options)
    grid = 3
    # mostly ones; some rounds get a single zero somewhere in the block
    drawn = (rng.random((grid, rounds, block)) > 0.16 / block).astype(np.int32)
    drawn[:, ::5, :] = 1
    drawn[:, 3::7, rng.integers(block)] = 0
    result = np.full(grid * rounds, -7, np.int32)
    vk_backend.launch(module, kernel, options, grid, [drawn.ravel(), result])
    np.testing.assert_array_equal(result, drawn.all(axis=2).ravel().astype(np.int32))


# ---------------------------------------------------------------- errors and lifetime


def test_vulkan_errors_name_the_call_result_and_kernel():
    vk = runtime_vk.load_vulkan()

    def fails():
        raise vk.VkErrorOutOfDeviceMemory

    with pytest.raises(VulkanError) as info:
        runtime_vk.vk_call("vkAllocateMemory", fails, kernel="saxpy")
    err = info.value
    assert isinstance(err, RuntimeError)
    assert (err.call, err.result, err.code) == (
        "vkAllocateMemory",
        "VK_ERROR_OUT_OF_DEVICE_MEMORY",
        -2,
    )
    assert str(err) == (
        "vkAllocateMemory failed with VK_ERROR_OUT_OF_DEVICE_MEMORY (-2) for kernel 'saxpy'"
    )


def test_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(runtime_vk, "_module", None)
    monkeypatch.setitem(sys.modules, "vulkan", None)
    with pytest.raises(BackendUnavailable, match=r"pip install asyncwarp\[vulkan\]"):
        runtime_vk.load_vulkan()


def test_validation_layer(spirv):
    """With the layer installed, a run is clean; without it, the error says what to install."""
    try:
        runtime = VulkanRuntime("lavapipe", validation=True)
    except BackendUnavailable as exc:
        assert "vulkan-validationlayers" in str(exc)
        return
    with runtime:
        backend = VulkanBackend("lavapipe")
        backend._runtime = runtime
        y = np.full(100, np.nan, np.float32)
        backend.launch(
            spirv("axpb"),
            axpb_kernel(),
            BuildOptions(),
            2,
            [np.ones(100, np.float32), y, 3.0, True, 1.0, 100],
        )
        assert (y == 4).all() and runtime.state.messages == []
        # A misuse reported by the layer surfaces as a VulkanError at the next operation.
        vk = runtime.vk
        info = vk.VkBufferCreateInfo(size=0, usage=vk.VK_BUFFER_USAGE_STORAGE_BUFFER_BIT)
        vk.vkDestroyBuffer(
            runtime.state.device, vk.vkCreateBuffer(runtime.state.device, info, None), None
        )
        with pytest.raises(VulkanError, match="validation errors.*VUID-VkBufferCreateInfo-size"):
            backend.launch(
                spirv("axpb"),
                axpb_kernel(),
                BuildOptions(),
                2,
                [np.ones(100, np.float32), y, 3.0, True, 1.0, 100],
            )


def _native_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def test_resources_are_released(spirv, tmp_path):
    threads = _native_threads()
    for i in range(8):
        runtime = VulkanRuntime("lavapipe", cache_dir=tmp_path)
        pipeline = runtime.pipeline(spirv("shared_reverse"), num_buffers=2)
        x = np.arange(64, dtype=np.uint32) * (i + 1)
        bufs = [runtime.to_device(x), runtime.buffer(x.nbytes)]
        runtime.dispatch(pipeline, 1, bufs)
        assert (bufs[1].read(np.uint32) == x[::-1]).all()
        bufs[0].close()
        runtime.close()
        runtime.close()  # idempotent
        assert runtime.closed and runtime.state.device is None and runtime.state.instance is None
        assert bufs[1].closed and pipeline.closed
        with pytest.raises(ValueError, match="closed"):
            bufs[1].read()
        with pytest.raises(ValueError, match="closed"):
            runtime.buffer(16)
    assert _native_threads() <= threads + 2
    # Garbage collection releases an unclosed runtime too.
    runtime = VulkanRuntime("lavapipe")
    state = runtime.state
    del runtime
    import gc

    gc.collect()
    assert state.device is None


def test_pipeline_cache_is_saved_and_reloaded(spirv, tmp_path):
    with VulkanRuntime("lavapipe", cache_dir=tmp_path) as first:
        first.pipeline(spirv("shared_reverse"), num_buffers=2)
        path = first.state.cache_path
        physical = first.physical
    assert path.exists() and load_cache_data(path, physical) == path.read_bytes()
    with VulkanRuntime("lavapipe", cache_dir=tmp_path) as second:
        assert second.pipeline(spirv("shared_reverse"), num_buffers=2).handle
    path.write_bytes(b"garbage" * 10)  # a damaged file is ignored, not fatal
    assert load_cache_data(path, physical) == b""
    with VulkanRuntime("lavapipe", cache_dir=tmp_path) as third:
        assert third.pipeline(spirv("shared_reverse"), num_buffers=2).handle


def test_concurrent_dispatches_are_serialised(rt, spirv):
    pipeline = rt.pipeline(spirv("shared_reverse"), num_buffers=2)
    errors = []

    def work(seed):
        try:
            x = np.random.default_rng(seed).integers(0, 1000, 128).astype(np.uint32)
            bufs = [rt.to_device(x), rt.to_device(np.full_like(x, POISON_U32))]
            for _ in range(5):
                rt.dispatch(pipeline, 2, bufs)
                assert (bufs[1].read(np.uint32) == x.reshape(2, 64)[:, ::-1].ravel()).all()
        except Exception as exc:  # surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


HUNG_KERNEL = """
import sys, numpy as np, time
sys.path.insert(0, {repo!r})
from asyncwarp.backends.vulkan.runtime import VulkanRuntime, VulkanTimeout, VulkanError
from asyncwarp.backends.vulkan.backend import VulkanBackend
from asyncwarp.core.errors import WatchdogTimeout
rt = VulkanRuntime("lavapipe", timeout_s=0.3)
pipeline = rt.pipeline(open({spv!r}, "rb").read(), num_buffers=1, name="spin")
flag = rt.to_device(np.zeros(3, np.uint32))
start = time.monotonic()
try:
    rt.dispatch(pipeline, 65535, [flag])
except VulkanTimeout as exc:
    assert isinstance(exc, WatchdogTimeout) and isinstance(exc, RuntimeError)
    print("TIMEOUT", round(time.monotonic() - start, 1), exc)
try:
    rt.dispatch(pipeline, 1, [flag])
except VulkanError as exc:
    print("UNUSABLE", exc)
backend = VulkanBackend("lavapipe")
backend._runtime = rt
fresh = backend.runtime()  # a hung device is replaced, not reused
assert fresh is not rt and rt.closed and not fresh.state.hung
y = np.zeros(64, np.uint32)
fresh_pipeline = fresh.pipeline(open({rev!r}, "rb").read(), num_buffers=2)
bufs = [fresh.to_device(np.arange(64, dtype=np.uint32)), fresh.to_device(y)]
fresh.dispatch(fresh_pipeline, 1, bufs)
assert (bufs[1].read(np.uint32) == np.arange(64)[::-1]).all()
print("CLOSED")
"""


def test_hung_kernel_is_reported_not_waited_for(spirv, tmp_path):
    spv, rev = tmp_path / "spin.spv", tmp_path / "reverse.spv"
    spv.write_bytes(spirv("spin_forever"))
    rev.write_bytes(spirv("shared_reverse"))
    script = HUNG_KERNEL.format(repo=str(REPO), spv=str(spv), rev=str(rev))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "TIMEOUT" in done.stdout and "did not finish within 0.3 s" in done.stdout
    assert "kernel 'spin'" in done.stdout
    assert "UNUSABLE" in done.stdout and "hung" in done.stdout
    assert "CLOSED" in done.stdout


BLOCKED_EXIT = """
import atexit, sys, time, numpy as np
sys.path.insert(0, {repo!r})
from asyncwarp.backends.vulkan.runtime import VulkanRuntime, VulkanTimeout
atexit.register(time.sleep, 120)  # runs last: stands in for a driver that blocks exit
rt = VulkanRuntime("lavapipe", timeout_s=0.2, exit_grace_s=1)
pipeline = rt.pipeline(open({spv!r}, "rb").read(), num_buffers=1, name="spin")
try:
    rt.dispatch(pipeline, 65535, [rt.to_device(np.zeros(3, np.uint32))])
except VulkanTimeout:
    print("TIMEOUT", flush=True)
"""


def test_exit_blocked_by_a_hung_kernel_is_ended(spirv, tmp_path):
    """NVIDIA's driver blocks process exit while a kernel runs; SIGALRM ends it."""
    spv = tmp_path / "spin.spv"
    spv.write_bytes(spirv("spin_forever"))
    script = BLOCKED_EXIT.format(repo=str(REPO), spv=str(spv))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert "TIMEOUT" in done.stdout
    assert done.returncode == -signal.SIGALRM, (done.returncode, done.stderr)
    assert "terminated (SIGALRM) if still running in 1 s" in done.stderr


def test_runs_with_one_lavapipe_thread():
    """LP_NUM_THREADS=1: workgroups run one after another; nothing may depend on threads."""
    env = dict(os.environ, LP_NUM_THREADS="1")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            __file__,
            "-k",
            "axpb or reduce or reversal or timing or staging or loop_iteration or emitted",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"\b1[0-9] passed", done.stdout), done.stdout[-500:]


def test_buffer_io_checks(rt):
    buf = rt.buffer(16)
    with pytest.raises(ValueError, match="cannot write 8 bytes into a buffer of 16"):
        buf.write(np.zeros(2, np.float32))
    data = np.array([1.5, -2.0, 3.25, 4.0], np.float32)
    buf.write(data)
    out = np.empty(4, np.float32)
    assert buf.read(out=out) is out and (out == data).all()
    assert (buf.read(np.float32) == data).all()
    with pytest.raises(ValueError, match="writeable C-contiguous"):
        buf.read(out=np.empty(3, np.float32))
    assert isinstance(buf, VulkanBuffer) and "16 bytes" in repr(buf)
