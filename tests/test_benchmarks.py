"""Smoke tests of the benchmark suite (benchmarks/): the runner end to end on lavapipe and on
a stand-in CUDA driver, its checks, its PTX and its prebuilt baselines. No timing asserts.

The stand-in driver implements the cuda.bindings calls the CUDA runtime and the
benchmarks make, keeping "device" memory in host numpy buffers; it runs asyncwarp
kernels (recognised by their PTX) on the reference interpreter and the CUDA C++
baselines as numpy functions, so the whole CUDA path of the runner runs here.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import itertools
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import asyncwarp as aw
from asyncwarp import backends
from asyncwarp.backends.cuda import ptxas
from asyncwarp.backends.cuda import runtime as cuda_runtime
from asyncwarp.core import config, interpreter
from asyncwarp.core.kernel import KernelFunction

# benchmarks/ is not an installed package: import it from the checkout, as
# `python -m benchmarks` does from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import BENCHMARKS, cubins, kernels, profile_launch  # noqa: E402
from benchmarks.__main__ import main  # noqa: E402
from benchmarks.harness import BenchResult, Goal, Row, check_close  # noqa: E402


@pytest.fixture
def cache_dir(tmp_path):
    """A private kernel cache for the run (restores the process configuration after)."""
    previous = {
        f.name: getattr(config.current(), f.name) for f in dataclasses.fields(config.Config)
    }
    aw.init(**{**previous, "cache_dir": tmp_path / "cache"})
    yield tmp_path / "cache"
    aw.init(**previous)


def run_suite(argv: list[str], out) -> tuple[int, dict, str]:
    code = main([*argv, "--out", str(out)])
    (json_path,) = out.glob("*.json")
    (text_path,) = out.glob("*.txt")
    return code, json.loads(json_path.read_text()), text_path.read_text()


def rows(record: dict, name: str) -> dict[str, dict]:
    (bench,) = [b for b in record["benchmarks"] if b["name"] == name]
    assert bench["error"] is None, bench["error"]
    return {r["label"]: r for r in bench["rows"]}


def ratios(record: dict, name: str) -> dict[str, dict]:
    (bench,) = [b for b in record["benchmarks"] if b["name"] == name]
    return {r["label"]: r for r in bench["ratios"]}


# ------------------------------------------------------------------ lavapipe


def test_runner_on_lavapipe(tmp_path, cache_dir):
    code, record, text = run_suite(["--backend", "vulkan"], tmp_path)
    assert code == 0, text
    assert record["summary"]["errors"] == [] and record["summary"]["checks_failed"] == []
    assert [b["name"] for b in record["benchmarks"]] == list(BENCHMARKS)
    assert record["meta"]["run"]["tier"] == "tiny"  # a CPU device always gets the smoke sizes
    pipeline = rows(record, "pipeline")
    assert {r["check"] for r in pipeline.values()} == {"ok"}
    assert all(r["metric"] > 0 and r["runs"] == 3 for r in pipeline.values())
    assert "stream / no-async affine" in ratios(record, "pipeline")
    awaits = ratios(record, "await_cost")
    assert len(awaits) == 4 and all(r["goal"] == "<= 1.1" for r in awaits.values())
    assert rows(record, "round_trip")["asyncwarp channels, cooperative"]["check"] == "ok"
    skipped = {b["name"]: b["skipped"] for b in record["benchmarks"]}
    assert skipped["host_overhead"] and skipped["backends"]
    for title in ("1. warp-specialised", "2. cost of an always-ready", "6. host overhead"):
        assert title in text
    assert (tmp_path / "vulkan-tiny-w32.png").exists() or "matplotlib" not in text


def test_runner_at_warp_width_64(tmp_path, cache_dir):
    code, record, text = run_suite(
        ["--backend", "vulkan", "--warp-width", "64", "--only", "pipeline,round_trip",
         "--commit", "abc1234"],
        tmp_path,
    )
    assert code == 0, text
    assert record["meta"]["run"]["warp_width"] == 64
    assert record["meta"]["run"]["git_commit"] == "abc1234" and "(abc1234)" in text
    assert {r["check"] for r in rows(record, "pipeline").values()} == {"ok"}
    assert {r["check"] for r in rows(record, "round_trip").values()} == {"ok"}


# ------------------------------------------------------------------ a stand-in CUDA driver


class FakeDriver(profile_launch.FakeDriver):
    """profile_launch's stand-in driver, made to run what it launches: PTX through the
    interpreter (the lowered IR of each compiled kernel, noted in `programs`), the CUDA
    C++ baselines' cubins through numpy (BASELINES), with events on the host clock."""

    def __init__(self, programs: dict[str, object]):
        super().__init__(record=False)
        self.programs = programs  # PTX text -> lowered IR, filled as kernels compile
        self.events: dict[int, float] = {}
        self.ids = itertools.count(1)
        self.launches: list[str] = []  # kernel names, in launch order
        attr = self.CUdevice_attribute
        self.attributes[attr.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT] = 4
        self.attributes[attr.CU_DEVICE_ATTRIBUTE_CLOCK_RATE] = 1980000  # kHz

    def view(self, ptr: int, dtype) -> np.ndarray:
        """The allocation holding `ptr`, from `ptr` to its end, as `dtype`."""
        for base, buf in self.memory.items():
            if base <= ptr < base + buf.size:
                rest = buf[ptr - base :]
                size = np.dtype(dtype).itemsize
                return rest[: rest.size // size * size].view(dtype)
        raise AssertionError(f"0x{ptr:x} is not fake device memory")

    def cuMemcpyDtoDAsync(self, dst, src, nbytes, stream):
        return self.cuMemcpyHtoDAsync(dst, src, nbytes, stream)

    def cuMemsetD32Async(self, ptr, bits, count, stream):
        self.view(int(ptr), np.uint32)[:count] = bits
        return self.ok

    # modules: a cubin (the baselines) is kept as its bytes, PTX as the base class does
    def cuModuleLoadData(self, image):
        if not bytes(image).startswith(b"\x7fELF"):
            return self.cuModuleLoadDataEx(image, 0, [], [])
        return self.CUresult.CUDA_SUCCESS, SimpleNamespace(image=bytes(image))

    def cuModuleGetFunction(self, module, name):
        if hasattr(module, "image"):
            return self.CUresult.CUDA_SUCCESS, SimpleNamespace(module=module, name=name.decode())
        return super().cuModuleGetFunction(module, name)

    def cuModuleUnload(self, module):
        return self.ok

    def cuFuncGetAttribute(self, attr, fn):
        return self.CUresult.CUDA_SUCCESS, 32

    def cuOccupancyMaxActiveBlocksPerMultiprocessor(self, fn, threads, shared):
        return self.CUresult.CUDA_SUCCESS, 1

    def _params(self, address: int, dtypes: list) -> list:
        slots = (ctypes.c_uint64 * len(dtypes)).from_address(address)
        return [
            self.view(ctypes.c_uint64.from_address(slot).value, elem)
            if is_array
            else np.frombuffer(ctypes.string_at(slot, np.dtype(elem).itemsize), elem)[0]
            for slot, (is_array, elem) in zip(slots, dtypes, strict=True)
        ]

    def cuLaunchKernel(self, fn, gx, gy, gz, bx, by, bz, shared, stream, params, extra=0):
        self.launches.append(fn.name)
        if hasattr(fn, "module"):  # a cubin: the CUDA C++ baselines
            BASELINES[fn.name](self, int(gx), params)
            return self.ok
        lowered = self.programs[fn.ptx]
        dtypes = [
            (hasattr(p.type, "elem"), (p.type.elem if hasattr(p.type, "elem") else p.type).dtype)
            for p in lowered.params
        ]
        interpreter.run(lowered, int(gx), self._params(params, dtypes))
        return self.ok

    # events: host clock, as the launches above run synchronously
    def cuEventCreate(self, flags):
        return self.CUresult.CUDA_SUCCESS, next(self.ids)

    def cuEventRecord(self, event, stream):
        self.events[event] = time.perf_counter()
        return self.ok

    def cuEventElapsedTime(self, start, end):
        return self.CUresult.CUDA_SUCCESS, (self.events[end] - self.events[start]) * 1e3

    def cuEventDestroy(self, event):
        return self.ok


def _affine_baseline(drv: FakeDriver, grid: int, params: int) -> None:
    y, x, a, b, n = drv._params(
        params,
        [
            (True, np.float32),
            (True, np.float32),
            (False, np.float32),
            (False, np.float32),
            (False, np.int32),
        ],
    )
    y[:n] = a * x[:n] + b


def _ping_pong_baseline(drv: FakeDriver, grid: int, params: int) -> None:
    out, rounds = drv._params(params, [(True, np.int32), (False, np.int32)])
    out[: grid * 32] = np.tile(np.arange(32, dtype=np.int32) + rounds, grid)


BASELINES = {
    "ws_mirror": _affine_baseline,
    "ws_cpasync": _affine_baseline,
    "mbar_ping_pong": _ping_pong_baseline,
}


@pytest.fixture
def fake_cuda(monkeypatch, cache_dir):
    """Route asyncwarp's CUDA backend, and so the benchmarks', to a FakeDriver."""
    programs: dict[str, object] = {}
    compile_ = KernelFunction.compile

    def compile_and_note(self, types_, options):
        compiled = compile_(self, types_, options)
        if isinstance(compiled.artefact, str):
            programs[compiled.artefact] = compiled.lowered
        return compiled

    drv = FakeDriver(programs)
    monkeypatch.setattr(KernelFunction, "compile", compile_and_note)
    monkeypatch.setattr(cuda_runtime, "_drv", drv)
    monkeypatch.setattr(cuda_runtime, "_devices", {})
    monkeypatch.setattr(backends, "_status", {})
    monkeypatch.setattr(backends, "_instances", {})
    return drv


def test_runner_on_a_stand_in_cuda_driver(tmp_path, fake_cuda):
    code, record, text = run_suite(["--backend", "cuda", "--tiny"], tmp_path)
    assert code == 0, text
    assert record["meta"]["device"]["device"] == "Fake H100"
    assert record["meta"]["device"]["sm_count"] == 4
    pipeline = rows(record, "pipeline")
    assert set(pipeline) >= {
        "cuMemcpyDtoD (same bytes)",
        "asyncwarp stream (channels carry slots)",
        "CUDA C++ mbarrier ring, plain loads (same design)",
        "CUDA C++ mbarrier ring, cp.async + float4",
    }
    assert {r["check"] for r in pipeline.values()} == {"ok"}
    assert pipeline["asyncwarp stream (channels carry slots)"]["extra"]["grid"] == 4  # 1 x 4 SMs
    assert set(ratios(record, "pipeline")) >= {
        "stream / copy (bandwidth)",
        "stream / hand-written, same design",
    }
    trips = rows(record, "round_trip")
    assert set(trips) == {
        "asyncwarp channels, independent",
        "asyncwarp channels, cooperative",
        "CUDA C++ mbarrier ping-pong",
    }
    assert len(ratios(record, "progress")) == 2
    host = rows(record, "host_overhead")
    assert host["asyncwarp kern[grid, warps](...)"]["check"] == "ok"
    assert host["asyncwarp kern[grid, warps](...)"]["extra"]["profile"]  # where the time goes
    assert host["raw cuLaunchKernel (cuda.bindings), same kernel"]["check"] == "ok"
    assert host["asyncwarp cold: Python -> loaded module + 1 launch"]["check"] == "ok"
    skipped = dict((s["what"], s["why"]) for b in record["benchmarks"] for s in b["skipped"])
    assert "not importable" in skipped["Triton @jit kernel"]
    assert "CPU" in skipped["Vulkan vs CUDA"]  # lavapipe is no match for a GPU
    assert {"ws_mirror", "ws_cpasync", "mbar_ping_pong"} <= set(fake_cuda.launches)


def test_a_wrong_result_fails_the_run(tmp_path, fake_cuda, monkeypatch):
    monkeypatch.setitem(BASELINES, "ws_mirror", lambda drv, grid, params: None)  # writes nothing
    code, record, _ = run_suite(["--backend", "cuda", "--tiny", "--only", "pipeline"], tmp_path)
    assert code == 1
    (failed,) = record["summary"]["checks_failed"]
    assert "plain loads" in failed and "nan" in failed


# ------------------------------------------------------------------ pieces


def test_check_close_and_goals():
    want = np.arange(10, dtype=np.float32)
    got = want.copy()
    assert check_close(got, want) == "ok"
    got[7] = np.nan  # the poison of an unwritten element
    assert check_close(got, want).startswith("1 of 10 elements wrong; first at 7")
    assert Goal(">=", 0.93).met(0.95) and not Goal("<=", 1.1).met(1.2)
    result = BenchResult("x", "x", rows=[Row("a", [1.0, 3.0, 2.0], check="ok")])
    assert result.rows[0].median_ms == 2.0 and result.checks_passed


KERNELS = {
    "stream": kernels.stream,
    "naive_stream": kernels.naive_stream,
    "affine": kernels.affine,
    "ping_pong": kernels.ping_pong,
    **{
        f"{name}_{step}": k
        for step, family in kernels.COMPUTE_KERNELS.items()
        for name, k in family.items()
    },
}


@pytest.mark.parametrize("name", sorted(KERNELS))
@pytest.mark.parametrize("progress", ["independent", "cooperative"])
def test_benchmark_kernels_assemble_for_sm_90(name, progress, W):
    kern = KERNELS[name]
    params = list(kern.signature.parameters.values())
    types = [kern.annotations[p.name] for p in params]
    options = {"warps": 4} if name == "affine" or "compute" in name else {}
    compiled = kern.specialize(
        *types, backend="cuda", arch="sm_90", warp_width=W, progress=progress, **options
    )
    assert ptxas.assemble(compiled.asm, "sm_90")


def test_prebuilt_baselines_match_their_sources():
    manifest = cubins.read_manifest()
    assert manifest["nvcc"] and set(manifest["cubins"]) == set(cubins.sources())
    for name, entry in manifest["cubins"].items():
        assert entry["source_sha256"] == cubins.source_hash(name), (
            f"baselines/{name}.cu changed: run `python -m benchmarks.cubins`"
        )
        image = (cubins.PREBUILT / f"{name}.{cubins.ARCH}.cubin").read_bytes()
        assert hashlib.sha256(image).hexdigest() == entry["cubin_sha256"]
        assert image.startswith(b"\x7fELF")


def test_baselines_compile_with_nvcc(tmp_path):
    nvcc = cubins.find_nvcc()
    if nvcc is None:
        pytest.skip("no nvcc on this machine (the prebuilt cubins are checked above)")
    for name in cubins.sources():
        out = tmp_path / f"{name}.cubin"
        cubins.compile_cubin(name, nvcc, out)
        assert out.read_bytes().startswith(b"\x7fELF")


def test_tuned_grid_picks_the_fastest_candidate_up_to_the_resident_grid():
    from benchmarks import pipeline
    from benchmarks.harness import Context

    target = SimpleNamespace(backend="cuda", caps=SimpleNamespace(extra={"sm_count": 10}))
    tried = []

    def launch_at(grid):
        grid = 240 if grid is None else grid  # 24 blocks per SM are resident at once
        tried.append(grid)
        # fastest at 20 blocks per SM, as the H100 stream kernels were
        return SimpleNamespace(grid=grid, time=lambda reps, warmup: [abs(grid - 200) + 1.0] * reps)

    ctx = Context(target, "quick")
    assert pipeline.tuned_grid(ctx, launch_at) == 200
    assert max(tried) == 240 and 320 not in tried  # 32 per SM is capped at the resident 24
    assert pipeline.tuned_grid(Context(target, "tiny"), launch_at) is None
    # Vulkan has no resident grid to stop at: every candidate is tried, with the SM count
    # the device reports, else the caller's, else there is nothing to tune
    tried.clear()
    vulkan = SimpleNamespace(backend="vulkan", caps=target.caps)
    assert pipeline.tuned_grid(Context(vulkan, "quick"), launch_at) == 200
    assert None not in tried and max(tried) == 320
    bare = SimpleNamespace(backend="vulkan", caps=SimpleNamespace(extra={}))
    assert pipeline.tuned_grid(Context(bare, "quick"), launch_at) is None
    assert pipeline.tuned_grid(Context(bare, "quick"), launch_at, sms=10) == 200
