"""Every kernel of the examples, the demo, the conformance catalogue and the benchmarks
builds for every target: PTX assembled by ptxas for sm_70, sm_80 and sm_90, and SPIR-V
accepted by spirv-val, at W = 32 and 64, in both progress modes where it awaits.

ptxas and spirv-val are on this project's CI machine: these tests fail, not skip,
when they are missing.
"""

from __future__ import annotations

import importlib
import inspect
import pathlib
import sys

import pytest

import asyncwarp as aw
from asyncwarp.backends.cuda.ptxas import assemble, nearest_target
from asyncwarp.backends.vulkan.emit import emit_spirv
from asyncwarp.backends.vulkan.spirv_val import validate
from asyncwarp.core.passes.pipeline import lower
from asyncwarp.core.types import ArrayType, ScalarType

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODULES = ["asyncwarp.demo", "benchmarks.kernels"] + [
    f"conformance.cases.{p.stem}" for p in sorted((ROOT / "conformance/cases").glob("[a-z]*.py"))
]
EXAMPLES = sorted((ROOT / "examples").glob("[a-z]*.py"))


def _kernels():
    sys.path.insert(0, str(ROOT / "examples"))  # the examples import their _common helper
    found = {}
    for name in MODULES:
        module = importlib.import_module(name)
        found.update({f"{name}.{k}": v for k, v in vars(module).items()
                      if isinstance(v, aw.KernelFunction)})
    for path in EXAMPLES:
        module = importlib.import_module(path.stem)
        found.update({f"examples/{path.name}:{k}": v for k, v in vars(module).items()
                      if isinstance(v, aw.KernelFunction)})
    return found


KERNELS = _kernels()


def _types(kern) -> list | None:
    """The annotated parameter types, or None when a parameter takes its argument's type."""
    types = []
    for p in inspect.signature(kern.fn).parameters.values():
        ann = kern.annotations.get(p.name)
        if not isinstance(ann, (ArrayType, ScalarType)):
            return None
        types.append(ann)
    return types


def test_the_collection_is_not_empty():
    assert len(KERNELS) >= 90, sorted(KERNELS)
    assert any(k.startswith("examples/") for k in KERNELS)
    assert sum(_types(k) is not None for k in KERNELS.values()) >= 0.9 * len(KERNELS)


def _lowered(kern, W: int, subgroup: int, progress: str, backend: str):
    from asyncwarp.core.backend import BuildOptions
    from asyncwarp.core.frontend import compile_function

    types = _types(kern)
    if types is None:
        pytest.skip(f"{kern.name}: a parameter has no type annotation (types come from "
                    "the launch arguments)")
    logical = compile_function(kern.fn, types, warp_width=W)
    opts = {k: v for k, v in kern.options.items() if k in ("warps", "executor")}
    options = BuildOptions(backend=backend, warp_width=W, subgroup=subgroup,
                           progress=kern.options.get("progress", progress), **opts)
    return lower(logical, options)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_ptx_assembles_for_every_architecture(name, W):
    from asyncwarp.backends.cuda.ptx import emit_ptx

    kern = KERNELS[name]
    for progress in ("independent", "cooperative"):
        lowered = _lowered(kern, W, 32, progress, "cuda")
        for arch in ("sm_70", "sm_80", "sm_90"):
            assemble(emit_ptx(lowered, arch), nearest_target(arch))
        if not lowered.attrs.get("wait_states"):
            break  # no awaits: the progress mode changes nothing


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_spirv_validates_for_lavapipe_and_32_wide_subgroups(name, W):
    kern = KERNELS[name]
    for subgroup in (8, 32):
        lowered = _lowered(kern, W, subgroup, "cooperative", "vulkan")
        validate(emit_spirv(lowered, "vulkan1.2"), "vulkan1.2")
