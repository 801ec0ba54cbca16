"""The `vulkan` backend: SPIR-V from `emit.py`, run by `runtime.VulkanRuntime`.

Implements core.backend.Backend. Arguments are checked against the kernel's
parameters and laid out by the Argument ABI of docs/internals.md (arrays are
storage buffers at set 0, binding i; scalars one std430 push-constant block)
before anything reaches the device.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...core import ir
from ...core.backend import BuildOptions, DeviceCaps
from ...core.errors import BackendUnavailable, CompileError
from ...core.types import ArrayType, ScalarType
from .runtime import DEFAULT_TIMEOUT_S, VulkanBuffer, VulkanRuntime, available
from .runtime_caps import choose_subgroup

# struct format of each scalar type in the push-constant block; bool travels as a
# 32-bit uint (Argument ABI), since SPIR-V booleans have no memory layout.
_PUSH_FORMAT = {"bool": "I", "i32": "i", "u32": "I", "i64": "q", "u64": "Q", "f32": "f", "f64": "d"}
_INT_RANGE = {
    "i32": (-(2**31), 2**31 - 1),
    "u32": (0, 2**32 - 1),
    "i64": (-(2**63), 2**63 - 1),
    "u64": (0, 2**64 - 1),
}
# Ops that read an array operand without writing it (operand position 0).
_READ_ONLY_USES = {"load"}


@dataclass(frozen=True)
class PushSlot:
    """Where one scalar parameter lives in the push-constant block."""

    param: ir.Var
    offset: int
    format: str


def push_constant_layout(params: list[ir.Var]) -> tuple[list[PushSlot], int]:
    """std430 layout of the scalar parameters, in parameter order; (slots, block size).

    std430 places a scalar at a multiple of its size; the block's size is rounded up
    to its largest member alignment (GLSL 4.60, 7.6.2.2 rules 1 and 9).
    """
    slots, offset, align = [], 0, 4
    for p in params:
        if isinstance(p.type, ArrayType):
            continue
        fmt = _PUSH_FORMAT[p.type.name]
        size = struct.calcsize(fmt)
        offset = -(-offset // size) * size
        slots.append(PushSlot(p, offset, fmt))
        offset += size
        align = max(align, size)
    return slots, -(-offset // align) * align


def written_arrays(kernel: ir.Kernel) -> set[int]:
    """ids of the array parameters the kernel may write (any use but a load counts)."""
    roots = {p: p for p in kernel.params if isinstance(p.type, ArrayType)}
    ops = [s for s in kernel.walk() if isinstance(s, ir.Op)]
    changed = True
    while changed:  # follow copies of array values back to their parameter
        changed = False
        for op in ops:
            if (
                op.opcode == "copy"
                and op.dst is not None
                and op.dst not in roots
                and isinstance(op.args[0], ir.Var)
                and op.args[0] in roots
            ):
                roots[op.dst] = roots[op.args[0]]
                changed = True
    written: set[int] = set()
    for op in ops:
        for position, arg in enumerate(op.args):
            if not (isinstance(arg, ir.Var) and arg in roots):
                continue
            if op.opcode == "copy" or (op.opcode in _READ_ONLY_USES and position == 0):
                continue
            written.add(id(roots[arg]))
    return written


def _check_scalar(kernel: str, param: ir.Var, value: Any) -> Any:
    t: ScalarType = param.type
    where = f"argument {param.name!r} of kernel {kernel!r}"
    if t.is_bool:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{where} is a bool, got {type(value).__name__}")
        return int(bool(value))
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where} is {t}, got a bool")
    if t.is_int:
        if not isinstance(value, (int, np.integer)):
            raise TypeError(
                f"{where} is {t}, got {type(value).__name__} "
                f"(convert with int(...) if that is meant)"
            )
        lo, hi = _INT_RANGE[t.name]
        if not lo <= int(value) <= hi:
            raise ValueError(f"{where} is {t}; {int(value)} is outside {lo}..{hi}")
        return int(value)
    if not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{where} is {t}, got {type(value).__name__}")
    return float(t.dtype.type(value))  # round to f32 like the device will read it


def _check_array(kernel: str, param: ir.Var, value: Any, written: bool) -> None:
    elem: ScalarType = param.type.elem
    where = f"argument {param.name!r} of kernel {kernel!r}"
    if isinstance(value, VulkanBuffer):
        if value.nbytes % elem.nbytes:
            raise ValueError(
                f"{where} is a {elem} array; a buffer of {value.nbytes} bytes "
                f"is not a whole number of {elem.nbytes}-byte elements"
            )
        return
    if not isinstance(value, np.ndarray):
        raise TypeError(
            f"{where} must be a numpy array of {elem.dtype} (or a VulkanBuffer), "
            f"got {type(value).__name__}"
        )
    if value.dtype != elem.dtype:
        raise TypeError(
            f"{where} must have dtype {elem.dtype}, got {value.dtype} "
            f"(convert with .astype(np.{elem.dtype}))"
        )
    if value.ndim != 1:
        raise ValueError(f"{where} must be 1-D, got shape {value.shape} (pass .ravel())")
    if not value.flags.c_contiguous:
        raise ValueError(f"{where} must be contiguous (pass np.ascontiguousarray(...))")
    if written and not value.flags.writeable:
        raise ValueError(f"{where} is read-only, but the kernel writes it")


class VulkanBackend:
    """Compiles lowered IR to SPIR-V and runs it on one Vulkan device.

    device: index in the default order or a name substring ("lavapipe"); validation,
    cache_dir and timeout_s are passed to VulkanRuntime (core.config reads them from
    the environment). The device is opened on first use.
    """

    name = "vulkan"

    def __init__(
        self,
        device: int | str = 0,
        *,
        validation: bool = False,
        cache_dir: str | os.PathLike | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ):
        self.device = device
        self.validation = validation
        self.cache_dir = cache_dir
        self.timeout_s = timeout_s
        self._runtime: VulkanRuntime | None = None
        self._other_caps: dict[Any, DeviceCaps] = {}

    def available(self) -> tuple[bool, str]:
        """(usable, reason) for this backend's device; the reason says what to install."""
        return available(self.device)

    def runtime(self) -> VulkanRuntime:
        """The open runtime of this backend's device (opened on first call)."""
        if self._runtime is not None and self._runtime.state.hung:
            # A hung kernel left that device unusable (and deliberately leaked): later
            # launches, e.g. the next forward-progress probe, get a fresh one.
            self._runtime.close()
        if self._runtime is None or self._runtime.closed:
            usable, reason = available(self.device)
            if not usable:
                raise BackendUnavailable(f"the vulkan backend cannot run here: {reason}")
            self._runtime = VulkanRuntime(
                self.device,
                validation=self.validation,
                cache_dir=self.cache_dir,
                timeout_s=self.timeout_s,
            )
        return self._runtime

    def caps(self, device: int | str | None = None) -> DeviceCaps:
        """Capabilities of this backend's device, or of another one (probed once)."""
        if device is None or device == self.device:
            return self.runtime().caps
        if device not in self._other_caps:
            with VulkanRuntime(device, validation=self.validation) as rt:
                self._other_caps[device] = rt.caps
        return self._other_caps[device]

    def choose_subgroup(self, warp_width: int) -> int:
        """The subgroup size H to build kernels of warp width W for, on this device."""
        return choose_subgroup(self.caps(), warp_width)

    def compile(self, kernel: ir.Kernel, options: BuildOptions) -> bytes:
        """Lowered IR -> a SPIR-V module (bytes) for this backend's device."""
        from .emit import emit_spirv

        caps = self.caps()
        major, minor = (int(v) for v in caps.extra["api_version"].split(".")[:2])
        if (major, minor) < (1, 2):
            raise BackendUnavailable(
                f"{caps.name} supports Vulkan {major}.{minor}; asyncwarp's SPIR-V needs "
                "Vulkan 1.2 (update the driver)"
            )
        _check_block_limits(kernel, caps)
        subgroup = kernel.attrs.get("subgroup", options.subgroup)
        runnable = caps.subgroup_sizes if caps.subgroup_size_control else ()
        if subgroup != caps.subgroup_size and subgroup not in runnable:
            raise ValueError(
                f"kernel {kernel.name!r} is built for subgroup size {subgroup}, which "
                f"{caps.name} cannot run; build with subgroup="
                f"{choose_subgroup(caps, options.warp_width)} (VulkanBackend.choose_subgroup)"
            )
        # The emitter's `timer` needs the Device-scope clock (shaderDeviceClock), not
        # the subgroup one; caps.extra["subgroup_fences"] marks drivers that need
        # Subgroup-scope fences (see runtime_caps.probe).
        module = emit_spirv(
            kernel,
            target_env="vulkan1.2",
            shader_clock=bool(caps.extra.get("shader_device_clock")),
            subgroup_fences=bool(caps.extra.get("subgroup_fences")),
        )
        from ...core import config

        if config.current().validate_spirv:  # the test suite validates every module
            from .spirv_val import validate

            validate(module, "vulkan1.2")
        return module

    def launch(
        self,
        artefact: bytes,
        kernel: ir.Kernel,
        options: BuildOptions,
        grid: int,
        args: list,
        *,
        timing: bool = False,
        timeout_s: float | None = None,
    ) -> int | None:
        """Run `artefact` on `grid` blocks; numpy arrays are copied in and written back.

        Arguments are checked against `kernel.params` (TypeError/ValueError) before any
        device work. With `timing`, returns the kernel's duration in nanoseconds.
        """
        name = kernel.name
        if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or grid < 1:
            raise ValueError(f"grid of kernel {name!r} must be a positive int, not {grid!r}")
        params = kernel.params
        if len(args) != len(params):
            names = ", ".join(p.name for p in params)
            raise TypeError(
                f"kernel {name!r} takes {len(params)} arguments ({names}), got {len(args)}"
            )
        written = written_arrays(kernel)
        arrays = [
            (p, a) for p, a in zip(params, args, strict=True) if isinstance(p.type, ArrayType)
        ]
        for p, a in arrays:
            _check_array(name, p, a, id(p) in written)
        _check_overlaps(name, arrays, written)
        slots, push_size = push_constant_layout(params)
        push = bytearray(push_size)
        values = {id(p): a for p, a in zip(params, args, strict=True)}
        for slot in slots:
            struct.pack_into(
                "<" + slot.format,
                push,
                slot.offset,
                _check_scalar(name, slot.param, values[id(slot.param)]),
            )

        rt = self.runtime()
        too_big = [p.name for p, a in arrays if a.nbytes > rt.limits.max_storage_buffer_range]
        if too_big:
            raise ValueError(
                f"arrays {too_big} of kernel {name!r} exceed this device's "
                f"maxStorageBufferRange ({rt.limits.max_storage_buffer_range} B)"
            )
        pipeline = rt.pipeline(
            artefact,
            num_buffers=len(arrays),
            push_constant_size=push_size,
            subgroup_size=kernel.attrs.get("subgroup"),
            name=name,
        )
        block_size = kernel.attrs.get("block_size")
        if block_size is not None and pipeline.block_size not in (None, block_size):
            raise RuntimeError(
                f"SPIR-V of kernel {name!r} has LocalSize {pipeline.local_size}"
                f", but kernel.attrs['block_size'] is {block_size}"
            )
        return self._run(rt, pipeline, grid, arrays, written, bytes(push), timing, timeout_s)

    def _run(
        self,
        rt: VulkanRuntime,
        pipeline: Any,
        grid: int,
        arrays: list,
        written: set,
        push: bytes,
        timing: bool,
        timeout_s: float | None,
    ) -> int | None:
        temporary: dict[int, VulkanBuffer] = {}  # one buffer per distinct numpy array
        copy_back: list[tuple[np.ndarray, VulkanBuffer]] = []
        try:
            buffers = []
            for p, a in arrays:
                if isinstance(a, VulkanBuffer):
                    buffers.append(a)
                    continue
                if id(a) not in temporary:
                    temporary[id(a)] = rt.to_device(a)
                buf = temporary[id(a)]
                buffers.append(buf)
                if id(p) in written and all(arr is not a for arr, _ in copy_back):
                    copy_back.append((a, buf))
            elapsed = rt.dispatch(
                pipeline,
                grid,
                buffers,
                push,
                timing=timing,
                readback=[b for _, b in copy_back],
                timeout_s=timeout_s,
            )
            for a, buf in copy_back:
                buf.read(out=a)
            return elapsed
        finally:
            if not rt.state.hung:
                for buf in temporary.values():
                    buf.close()

    def close(self) -> None:
        """Close the device (buffers, pipelines, pipeline cache saved to cache_dir)."""
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None


def _check_overlaps(kernel: str, arrays: list, written: set) -> None:
    """Distinct numpy arguments that overlap would be copied apart: reject if one is written.

    (The same array passed twice is fine: it is bound as one buffer.)
    """
    numpy_args = [(p, a) for p, a in arrays if isinstance(a, np.ndarray)]
    for i, (p, a) in enumerate(numpy_args):
        for q, b in numpy_args[i + 1 :]:
            if a is not b and (id(p) in written or id(q) in written) and np.may_share_memory(a, b):
                raise ValueError(
                    f"arguments {p.name!r} and {q.name!r} of kernel {kernel!r} "
                    "overlap in memory; pass separate arrays"
                )


def _check_block_limits(kernel: ir.Kernel, caps: DeviceCaps) -> None:
    """CompileError if a block needs more invocations or block memory than the device has."""
    block_size = kernel.attrs.get("block_size", 0)
    if block_size > caps.max_block_threads:
        raise CompileError(
            f"kernel {kernel.name!r} runs {block_size} invocations per block; {caps.name} "
            f"allows {caps.max_block_threads}",
            kernel.loc,
            "use fewer warps per block",
        )
    total, last = 0, None
    for op in kernel.walk():
        if isinstance(op, ir.Op) and op.opcode == "shared_alloc":
            # Block-memory booleans are stored as 32-bit words (SPIR-V bools have no
            # memory layout), so count them as 4 bytes.
            elem = op.dst.type.elem
            total += int(op.attrs["n"]) * (4 if elem.is_bool else elem.nbytes)
            last = op
    if total > caps.shared_memory_bytes:
        raise CompileError(
            f"kernel {kernel.name!r} uses {total} bytes of block memory; {caps.name} has "
            f"{caps.shared_memory_bytes}",
            last.loc,
            "use smaller block arrays or fewer warps",
        )
