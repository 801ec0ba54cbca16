"""Every kernel of the examples, the demo, the conformance catalogue and the benchmarks
builds for every target: PTX assembled by ptxas for sm_70, sm_80 and sm_90, and SPIR-V
accepted by spirv-val, at W = 32 and 64, in both progress modes where it awaits.
Generic kernels (parameters without annotations) are built for every type list their
conformance cases launch them with.

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


def _annotated(kern) -> list | None:
    """The annotated parameter types, or None when a parameter takes its argument's type."""
    types = []
    for p in inspect.signature(kern.fn).parameters.values():
        ann = kern.annotations.get(p.name)
        if not isinstance(ann, (ArrayType, ScalarType)):
            return None
        types.append(ann)
    return types


_LAUNCHED: dict = {}


def _launched_types(name: str, kern) -> list:
    """Every parameter-type list a generic kernel is launched with by its module's cases.

    Runs the conformance cases of the kernel's module once on the interpreter and
    reads the specialisations from the kernel's compile cache (shared by its handles).
    """
    module = name.rsplit(".", 1)[0]
    if module not in _LAUNCHED:
        from conformance.case import REGISTRY, run_case

        for case in REGISTRY.values():
            if case.fn.__module__ == module:
                run_case(case, "sim", 32, "auto", scale=0.1)
        _LAUNCHED[module] = True
    return sorted({tuple(p.type for p in c.logical.params) for c in kern._cache.values()},
                  key=repr)


def _type_lists(name: str, kern) -> list:
    annotated = _annotated(kern)
    if annotated is not None:
        return [annotated]
    launched = _launched_types(name, kern)
    assert launched, f"{name}: generic kernel never launched by its module's cases"
    return [list(t) for t in launched]


def test_the_collection_is_not_empty():
    assert len(KERNELS) >= 90, sorted(KERNELS)
    assert any(k.startswith("examples/") for k in KERNELS)
    assert sum(_annotated(k) is not None for k in KERNELS.values()) >= 0.9 * len(KERNELS)


def _lowered(kern, types: list, W: int, subgroup: int, progress: str, backend: str):
    from asyncwarp.core.backend import BuildOptions
    from asyncwarp.core.frontend import compile_function

    logical = compile_function(kern.fn, types, warp_width=W)
    opts = {k: v for k, v in kern.options.items() if k in ("warps", "executor")}
    options = BuildOptions(backend=backend, warp_width=W, subgroup=subgroup,
                           progress=kern.options.get("progress", progress), **opts)
    return lower(logical, options)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_ptx_assembles_for_every_architecture(name, W):
    from asyncwarp.backends.cuda.ptx import emit_ptx

    kern = KERNELS[name]
    for types in _type_lists(name, kern):
        for progress in ("independent", "cooperative"):
            lowered = _lowered(kern, types, W, 32, progress, "cuda")
            for arch in ("sm_70", "sm_80", "sm_90"):
                assemble(emit_ptx(lowered, arch), nearest_target(arch))
            if not lowered.attrs.get("wait_states"):
                break  # no awaits: the progress mode changes nothing


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_spirv_validates_for_lavapipe_and_32_wide_subgroups(name, W):
    kern = KERNELS[name]
    for types in _type_lists(name, kern):
        for subgroup in (8, 32):
            lowered = _lowered(kern, types, W, subgroup, "cooperative", "vulkan")
            validate(emit_spirv(lowered, "vulkan1.2"), "vulkan1.2")
