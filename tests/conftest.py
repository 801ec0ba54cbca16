"""Shared fixtures: the backends present on this machine and the warp widths.

`backend` is parametrized over every backend that works here (sim always;
vulkan where a Vulkan device exists, e.g. lavapipe; cuda with an NVIDIA
driver). ASYNCWARP_TEST_BACKENDS=vulkan,cuda restricts the set. Tests that
launch on a device backend carry the `device` marker.
"""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest

# Every SPIR-V module any test compiles through the Vulkan backend goes through
# spirv-val (set before asyncwarp reads its configuration; subprocesses inherit it).
os.environ.setdefault("ASYNCWARP_VALIDATE_SPIRV", "1")

import asyncwarp as aw
from asyncwarp import backends

WARP_WIDTHS = (32, 64)


def _backends_present() -> list[str]:
    wanted = os.environ.get("ASYNCWARP_TEST_BACKENDS")
    names = wanted.split(",") if wanted else ["sim", "vulkan", "cuda"]
    present = []
    for name in names:
        ok, reason = backends.available(name.strip())
        if ok:
            present.append(name.strip())
        elif wanted:
            raise pytest.UsageError(f"ASYNCWARP_TEST_BACKENDS asks for {name}: {reason}")
    return present


BACKENDS = _backends_present()


def pytest_configure(config):
    config.addinivalue_line("markers", "device: launches on a device backend (vulkan/cuda)")


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize(
            "backend",
            [pytest.param(b, marks=[pytest.mark.device] if b != "sim" else []) for b in BACKENDS],
        )
    if "W" in metafunc.fixturenames:
        metafunc.parametrize("W", WARP_WIDTHS)


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name: reproducible, different per test."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)


def poisoned(n, dtype):
    """An output array filled with a value no correct kernel writes by accident."""
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return np.full(n, np.nan, dtype=dt)
    if dt.kind == "u":
        return np.full(n, np.iinfo(dt).max - 0x1234, dtype=dt)
    return np.full(n, np.iinfo(dt).min + 0x1234, dtype=dt)


@pytest.fixture
def run(backend, W):
    """`run(kern, grid, *args, warps=None)`: launch on this test's backend and width."""

    def _run(kern, grid, *args, warps=None, **options):
        k = kern.with_options(backend=backend, warp_width=W, **options)
        launcher = k[grid] if warps is None else k[grid, warps]
        return launcher(*args)

    return _run


__all__ = ["aw", "poisoned", "BACKENDS"]
