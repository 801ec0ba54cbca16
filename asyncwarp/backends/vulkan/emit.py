"""Lowered IR -> a SPIR-V compute shader (Vulkan memory model, structured control flow).

`emit_spirv` is the Vulkan backend's emitter: it lays out the argument ABI of
docs/internals.md (storage buffers at set 0, one push-constant block), gives
every IR variable an OpVariable Function, and maps If/Loop/Break/Continue onto
SPIR-V structured control flow (spec 2.11). Ops are lowered by the tables in
emit_arith, emit_memory and emit_subgroup.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...core import ir
from ...core.errors import CompileError
from ...core.types import ArrayType, ScalarType, bool_, u32
from . import emit_arith, emit_memory, emit_subgroup
from .spirv import TARGET_ENVS, SpirvBuilder

HANDLERS = {**emit_arith.HANDLERS, **emit_memory.HANDLERS, **emit_subgroup.HANDLERS}

# Ops that must be gone after passes.pipeline.lower (docs/internals.md, "Lowered IR").
_LOGICAL_OPS = frozenset({
    "lane", "warp_id", "num_warps", "warp_sum", "warp_min", "warp_max", "warp_prefix_sum",
    "shuffle", "shuffle_xor", "ballot", "warp_any", "warp_all", "warp_sync",
})  # fmt: skip

_VECTOR_BUILTINS = frozenset({"WorkgroupId", "NumWorkgroups"})  # uvec3; we read .x


def emit_spirv(
    kernel: ir.Kernel,
    target_env: str = "vulkan1.2",
    *,
    shader_clock: bool = False,
    subgroup_fences: bool = False,
) -> bytes:
    """The SPIR-V binary of a lowered kernel; entry point "main".

    target_env "vulkan1.2" gives SPIR-V 1.5, "vulkan1.3" SPIR-V 1.6.
    shader_clock: the device has VK_KHR_shader_clock's shaderDeviceClock; `timer`
    reads the device clock. Without it `timer` is a per-invocation counter: no time,
    only monotone within an invocation.
    subgroup_fences: a driver workaround. Mesa lavapipe (seen on 22.3) runs a
    Workgroup- or Device-scope memory barrier in divergent control flow as a
    workgroup execution barrier, abandoning invocations that do not reach it. With
    this flag fences and acquire/release orderings are Subgroup-scope OpMemoryBarriers
    around relaxed atomics, which lavapipe runs correctly; on other drivers that
    would weaken block- and device-scope ordering, so leave it off there.
    """
    if target_env not in TARGET_ENVS:
        raise ValueError(f"target_env must be one of {', '.join(TARGET_ENVS)}, not {target_env!r}")
    return KernelEmitter(kernel, TARGET_ENVS[target_env], shader_clock, subgroup_fences).run()


@dataclass
class ArrayRef:
    """Where an array's elements live: a global variable and how elements are stored."""

    var: int  # the OpVariable id
    elem: ScalarType  # the IR element type
    storage_class: str  # "StorageBuffer" or "Workgroup"
    # The stored type: floats as same-width uints (so every atomic applies to them),
    # bool as u32 in shared memory; None for bool in buffers (8-bit, no IR type).
    raw: ScalarType | None
    raw_type: int  # SPIR-V type id of a stored element

    @property
    def is_buffer(self) -> bool:
        return self.storage_class == "StorageBuffer"


@dataclass
class _LoopContext:
    merge: int
    continue_target: int
    merge_reached: bool = False
    continue_reached: bool = False
    in_latch: bool = False


class KernelEmitter:
    """Emits one kernel; op handlers (emit_*.py) call back into its helpers."""

    def __init__(
        self, kernel: ir.Kernel, version: tuple[int, int], shader_clock: bool, subgroup_fences: bool
    ):
        self.kernel = kernel
        attrs = kernel.attrs
        for key in ("subgroup", "block_size"):
            if key not in attrs:
                raise RuntimeError(
                    f"kernel {kernel.name!r} is not lowered: attrs lacks {key!r} "
                    "(run passes.pipeline.lower first)"
                )
        self.subgroup = int(attrs["subgroup"])
        self.block_size = int(attrs["block_size"])
        if self.subgroup & (self.subgroup - 1) or not 1 <= self.subgroup <= 128:
            raise RuntimeError(f"subgroup size {self.subgroup} is not a power of two in 1..128")
        self.shader_clock = shader_clock
        self.subgroup_fences = subgroup_fences
        self.b = SpirvBuilder(version)
        self.interface: dict[int, None] = {}  # global variables used, for OpEntryPoint
        self.vars: dict[ir.Var, int] = {}  # scalar variable -> its OpVariable
        self.arrays: dict[ir.Var, ArrayRef] = {}
        self.cache: dict = {}  # lazily declared globals, keyed by what they are
        self._loops: list[_LoopContext] = []
        self.open = False  # whether a block is open (False after a terminator)
        self.fn = 0  # the entry point's function id
        self._line: tuple | None = None

    # ------------------------------------------------------------ driver

    def run(self) -> bytes:
        b = self.b
        b.require_capability("Shader")
        b.require_capability("VulkanMemoryModel")
        b.op("OpMemoryModel", "Logical", "Vulkan", section="memory_model")
        void = b.type_void()
        self.fn = b.begin_function(void, b.type_function(void))
        b.name(self.fn, "main")
        self.open = True  # begin_function opened the entry block
        self._declare_arrays()
        self._declare_variables()
        self._load_scalar_params()
        self.emit_block(self.kernel.body)
        if self.open:
            self.terminate("OpReturn")
        b.end_function()
        b.op("OpEntryPoint", "GLCompute", self.fn, "main", *self.interface, section="entry_points")
        b.op(
            "OpExecutionMode",
            self.fn,
            "LocalSize",
            self.block_size,
            1,
            1,
            section="execution_modes",
        )
        return b.to_bytes()

    # ------------------------------------------------------------ types and values

    def ty(self, t: ScalarType) -> int:
        if t.is_bool:
            return self.b.type_bool()
        if t.is_float:
            return self.b.type_float(t.bits)
        return self.b.type_int(t.bits, t.is_signed)

    def const(self, value, t: ScalarType) -> int:
        if t.is_bool:
            return self.b.const_bool(bool(value))
        if t.is_float:
            return self.b.const_float(self.ty(t), float(value), t.bits)
        try:
            return self.b.const_int(self.ty(t), int(value), t.bits)
        except ValueError:
            raise RuntimeError(f"constant {value} does not fit in {t}") from None

    def value(self, v: ir.Value) -> int:
        """The id of an operand's current value (a fresh OpLoad for variables)."""
        if isinstance(v, ir.Const):
            return self.const(v.value, v.type)
        if isinstance(v, ir.Var):
            if isinstance(v.type, ArrayType):
                raise RuntimeError(f"array {v!r} used as a scalar value")
            return self.b.op("OpLoad", self.ty(v.type), self.vars[v])
        raise RuntimeError(f"not an IR value: {v!r}")

    def assign(self, var: ir.Var, value_id: int) -> None:
        self.b.op("OpStore", self.vars[var], value_id)

    def emit(self, opname: str, *operands) -> int | None:
        return self.b.op(opname, *operands)

    def glsl(self, t: ScalarType, name: str, *operands: int) -> int:
        return self.b.ext_inst(self.ty(t), "GLSL.std.450", name, *operands)

    def select(self, t: ScalarType, cond: int, if_true: int, if_false: int) -> int:
        return self.b.op("OpSelect", self.ty(t), cond, if_true, if_false)

    def scope(self, name: str) -> int:
        """A Scope operand (an id of a u32 constant). Device scope under the Vulkan memory
        model needs VulkanMemoryModelDeviceScope (Vulkan env rule on Scope operands)."""
        if name == "Device":
            self.b.require_capability("VulkanMemoryModelDeviceScope")
        return self.const(self.b.enumerant("Scope", name).value, u32)

    def semantics(self, *names: str) -> int:
        return self.const(self.b.bits("MemorySemantics", *names), u32)

    def local(self, t_id: int, name: str = "", initializer: int | None = None) -> int:
        ptr = self.b.type_pointer("Function", t_id)
        var = self.b.local_variable(ptr, initializer)
        if name:
            self.b.name(var, name)
        return var

    def global_var(self, key, storage_class: str, t_id: int, name: str) -> int:
        """A module-scope variable, declared once per key and listed in the interface."""
        if key not in self.cache:
            var = self.b.global_variable(self.b.type_pointer(storage_class, t_id), storage_class)
            self.b.name(var, name)
            self.cache[key] = var
            self.interface[var] = None
        return self.cache[key]

    def builtin(self, name: str) -> int:
        """The value of an integer compute builtin (x component for vectors), as u32.

        Loaded once, in the entry block (the value never changes), as the PTX emitter
        reads its special registers once: a read at each use can sit in a loop."""
        key = ("builtin value", name)
        if key not in self.cache:
            uint = self.ty(u32)
            vector = name in _VECTOR_BUILTINS
            t_id = self.b.type_vector(uint, 3) if vector else uint
            var = self.global_var(("builtin", name), "Input", t_id, name)
            self.b.decorate(var, "BuiltIn", name)
            loaded = self.b.entry_op("OpLoad", t_id, var)
            if vector:
                loaded = self.b.entry_op("OpCompositeExtract", uint, loaded, 0)
            self.cache[key] = loaded
        return self.cache[key]

    # ------------------------------------------------------------ arrays, params, variables

    def array(self, v: ir.Var) -> ArrayRef:
        try:
            return self.arrays[v]
        except KeyError:
            raise RuntimeError(f"{v!r} is not a kernel array, a shared array or an alias") from None

    def storage_of(self, elem: ScalarType, storage_class: str) -> tuple[ScalarType | None, int]:
        """(raw IR type or None for 8-bit, SPIR-V element type) of an array element in memory."""
        if elem.is_bool and storage_class == "StorageBuffer":
            # numpy bools are bytes: 8-bit storage (VK_KHR_8bit_storage, core in 1.2).
            self.b.require_capability("StorageBuffer8BitAccess")
            return None, self.b.type_int(8, False)
        if elem.is_bool:
            return u32, self.ty(u32)
        if elem.is_float:
            raw = emit_arith.unsigned_of(elem.bits)
            return raw, self.ty(raw)
        return elem, self.ty(elem)

    def _declare_arrays(self) -> None:
        b = self.b
        binding = 0
        for p in self.kernel.params:
            if not isinstance(p.type, ArrayType):
                continue
            raw, raw_type = self.storage_of(p.type.elem, "StorageBuffer")
            runtime_array = b.type_runtime_array(raw_type)
            block = b.type_struct([runtime_array])
            if ("block", block) not in self.cache:
                self.cache[("block", block)] = True
                # std430 layout of `struct { T data[]; }` (Vulkan spec, "Offset and
                # Stride Assignment").
                b.decorate(runtime_array, "ArrayStride", max(p.type.elem.bits // 8, 1))
                b.member_decorate(block, 0, "Offset", 0)
                b.decorate(block, "Block")
            var = self.global_var(("param", p), "StorageBuffer", block, p.name)
            b.decorate(var, "DescriptorSet", 0)
            b.decorate(var, "Binding", binding)
            binding += 1
            self.arrays[p] = ArrayRef(var, p.type.elem, "StorageBuffer", raw, raw_type)
        for stmt in self.kernel.walk():  # program order: aliases follow their sources
            if not isinstance(stmt, ir.Op) or not isinstance(
                getattr(stmt.dst, "type", None), ArrayType
            ):
                continue
            if stmt.opcode == "shared_alloc":
                self._declare_shared(stmt)
            elif stmt.opcode == "copy" and isinstance(stmt.args[0], ir.Var):
                source = self.array(stmt.args[0])
                if self.arrays.setdefault(stmt.dst, source) is not source:
                    raise CompileError(
                        f"array variable {stmt.dst.name!r} refers to more than one array",
                        stmt.loc,
                        "give each array its own name (SPIR-V logical addressing has no pointers)",
                    )
            else:
                raise RuntimeError(f"op {stmt.opcode!r} cannot produce an array")

    def _declare_shared(self, op: ir.Op) -> None:
        n = int(op.attrs.get("n", 0))
        if n <= 0:
            raise CompileError(f"shared array size must be a positive constant, not {n}", op.loc)
        elem = op.dst.type.elem
        raw, raw_type = self.storage_of(elem, "Workgroup")
        # Workgroup arrays carry no explicit layout (Vulkan: no ArrayStride there).
        var = self.global_var(
            ("shared", op), "Workgroup", self.b.type_array(raw_type, n), op.dst.name
        )
        self.arrays[op.dst] = ArrayRef(var, elem, "Workgroup", raw, raw_type)

    def _declare_variables(self) -> None:
        for stmt in self.kernel.walk():
            values = []
            if isinstance(stmt, ir.Op):
                values = [stmt.dst, *stmt.args]
            elif isinstance(stmt, (ir.If, ir.Loop)):
                values = [stmt.cond]
            elif isinstance(stmt, (ir.Suspend, ir.Join, ir.Select)):
                raise RuntimeError(
                    f"{type(stmt).__name__} in lowered IR at {stmt.loc}: "
                    "run passes.lower_async first"
                )
            for v in values:
                if isinstance(v, ir.Var) and isinstance(v.type, ScalarType) and v not in self.vars:
                    self.vars[v] = self._variable(v)
        for p in self.kernel.params:
            if isinstance(p.type, ScalarType) and p not in self.vars:
                self.vars[p] = self._variable(p)

    def _variable(self, v: ir.Var) -> int:
        # Zero-initialised, as the interpreter's variables are: a path that reads a
        # variable before writing it gives the same result on every backend.
        t = self.ty(v.type)
        return self.local(t, v.name, self.b.const_null(t))

    def _load_scalar_params(self) -> None:
        """Copy push constants into the parameters' variables (the body may reassign them)."""
        scalars = [p for p in self.kernel.params if isinstance(p.type, ScalarType)]
        if not scalars:
            return
        b = self.b
        member_types, offsets, offset = [], [], 0
        for p in scalars:
            stored = u32 if p.type.is_bool else p.type  # bool crosses the ABI as a 32-bit uint
            size = stored.nbytes
            offset = -(-offset // size) * size  # std430: scalars align to their size
            member_types.append(stored)
            offsets.append(offset)
            offset += size
        block = b.type_struct([self.ty(t) for t in member_types])
        for i, (p, off) in enumerate(zip(scalars, offsets, strict=True)):
            b.member_decorate(block, i, "Offset", off)
            b.member_name(block, i, p.name)
        b.decorate(block, "Block")
        pc = self.global_var("push_constants", "PushConstant", block, "params")
        for i, (p, stored) in enumerate(zip(scalars, member_types, strict=True)):
            ptr_type = b.type_pointer("PushConstant", self.ty(stored))
            ptr = self.emit("OpAccessChain", ptr_type, pc, self.const(i, u32))
            loaded = self.emit("OpLoad", self.ty(stored), ptr)
            if p.type.is_bool:
                loaded = self.emit("OpINotEqual", self.ty(bool_), loaded, self.const(0, u32))
            self.assign(p, loaded)

    # ------------------------------------------------------------ blocks and control flow

    def label(self, label: int) -> None:
        if self.open:
            raise RuntimeError("new block while the previous one is still open")
        self.b.op("OpLabel", result=label)
        self.open = True
        self._line = None  # OpLine scope ends with its block (spec 3.32.2)

    def terminate(self, opname: str, *operands) -> None:
        if not self.open:
            raise RuntimeError(f"{opname} in an unreachable position")
        self.b.op(opname, *operands)
        self.open = False

    def branch(self, target: int) -> None:
        self.terminate("OpBranch", target)

    def emit_block(self, stmts: list) -> None:
        for stmt in stmts:
            if not self.open:
                return  # code after break/continue: unreachable, emit nothing
            if isinstance(stmt, ir.Op):
                self.emit_op(stmt)
            elif isinstance(stmt, ir.If):
                self.emit_if(stmt)
            elif isinstance(stmt, ir.Loop):
                self.emit_loop(stmt)
            elif isinstance(stmt, (ir.Break, ir.Continue)):
                self.emit_jump(stmt)
            else:
                raise RuntimeError(f"{type(stmt).__name__} in lowered IR at {stmt.loc}")

    def emit_if(self, stmt: ir.If) -> None:
        """OpSelectionMerge + OpBranchConditional; an arm that breaks or continues leaves
        the selection directly (allowed: a break/continue of the innermost loop)."""
        if not stmt.then and not stmt.else_:
            return
        cond = self.value(stmt.cond)
        merge = self.b.new_id()
        then_label = self.b.new_id() if stmt.then else merge
        else_label = self.b.new_id() if stmt.else_ else merge
        self.b.op("OpSelectionMerge", merge, "None")
        self.terminate("OpBranchConditional", cond, then_label, else_label)
        merge_reached = merge in (then_label, else_label)
        for label, arm in ((then_label, stmt.then), (else_label, stmt.else_)):
            if not arm:
                continue
            self.label(label)
            self.emit_block(arm)
            if self.open:
                self.branch(merge)
                merge_reached = True
        self.label(merge)
        if not merge_reached:
            self.terminate("OpUnreachable")  # both arms left the loop: nothing follows

    def emit_loop(self, stmt: ir.Loop) -> None:
        """header: OpLoopMerge; header code; exit test; body; continue target = latch;
        back edge. The only back edge comes from the continue construct (spec 2.11)."""
        b = self.b
        header, merge, continue_target = b.new_id(), b.new_id(), b.new_id()
        self.branch(header)
        self.label(header)
        b.op("OpLoopMerge", merge, continue_target, "None")
        top = b.new_id()
        self.branch(top)
        self.label(top)
        loop = _LoopContext(merge, continue_target)
        self._loops.append(loop)
        self.emit_block(stmt.header)
        if self.open and stmt.cond is not None:
            body = b.new_id()
            self.terminate("OpBranchConditional", self.value(stmt.cond), body, merge)
            loop.merge_reached = True
            self.label(body)
        self.emit_block(stmt.body)
        if self.open:
            self.branch(continue_target)
            loop.continue_reached = True
        loop.in_latch = True
        self.label(continue_target)
        if loop.continue_reached:
            self.emit_block(stmt.latch)
        self.branch(header)
        self._loops.pop()
        self.label(merge)
        if not loop.merge_reached:
            self.terminate("OpUnreachable")  # a loop without exit: nothing follows

    def emit_jump(self, stmt: ir.Break | ir.Continue) -> None:
        kind = "break" if isinstance(stmt, ir.Break) else "continue"
        if not self._loops:
            raise CompileError(f"{kind} outside a loop", stmt.loc)
        loop = self._loops[-1]
        if loop.in_latch:
            # The continue construct may only leave through its back edge (spec 2.11).
            raise CompileError(
                f"{kind} in a loop's latch (the step of a for loop) is not supported", stmt.loc
            )
        if kind == "break":
            loop.merge_reached = True
            self.branch(loop.merge)
        else:
            loop.continue_reached = True
            self.branch(loop.continue_target)

    # ------------------------------------------------------------ ops

    def emit_op(self, op: ir.Op) -> None:
        if op.opcode in _LOGICAL_OPS:
            raise RuntimeError(
                f"logical op {op.opcode!r} at {op.loc} in lowered IR: run passes.fold_lanes first"
            )
        handler = HANDLERS.get(op.opcode)
        if handler is None:
            raise RuntimeError(f"no SPIR-V lowering for IR op {op.opcode!r}")
        self._debug_line(op.loc)
        result = handler(self, op)
        if op.dst is not None and isinstance(op.dst.type, ScalarType):
            if result is None:
                raise RuntimeError(f"lowering of {op.opcode!r} produced no value")
            self.assign(op.dst, result)

    def _debug_line(self, loc: ir.Loc) -> None:
        if not loc.line or (loc.file, loc.line) == self._line:
            return
        self._line = (loc.file, loc.line)
        self.b.op("OpLine", self.b.string(loc.file), loc.line, loc.col)

    def fail(self, op: ir.Op, message: str, hint: str = "") -> CompileError:
        return CompileError(message, op.loc, hint)
