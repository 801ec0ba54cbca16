"""The PTX emitter: lowered IR (docs/internals.md) -> one PTX module with one entry.

Every IR variable gets its own virtual register (PTX allows unlimited virtual
registers; ptxas allocates), structured control flow becomes labels and
`bra`, and each op is lowered through the tables of ptx_ops, ptx_math,
ptx_memory and ptx_subgroup. The module is annotated with the source line of
every op so that the PTX can be read next to the kernel.
"""

from __future__ import annotations

import itertools
import os
import re
from collections import Counter, defaultdict

from ...core import ir
from ...core.errors import CompileError
from ...core.ops import info
from ...core.types import ArrayType, ScalarType
from . import ptx_math, ptx_memory, ptx_ops, ptx_subgroup
from .ptx_ops import SUFFIX, immediate, reg_type

SUPPORTED_ARCHS = ("sm_70", "sm_75", "sm_80", "sm_86", "sm_89", "sm_90")
# PTX ISA 8.0 (CUDA 12.0) covers every supported target; a driver JIT-compiles
# PTX of its own CUDA version or older, so the lowest version that has all the
# features we emit keeps the most drivers able to load the module.
PTX_VERSION = {arch: "8.0" for arch in SUPPORTED_ARCHS}
# Shared memory a block may use, by architecture (CUDA C Programming Guide,
# "Technical Specifications per Compute Capability"). Up to 48 KiB may be
# static; more needs dynamic shared memory and an opt-in at launch.
STATIC_SHARED_LIMIT = 48 * 1024
SHARED_LIMIT = {
    "sm_70": 96 * 1024,
    "sm_75": 64 * 1024,
    "sm_80": 163 * 1024,
    "sm_86": 99 * 1024,
    "sm_89": 99 * 1024,
    "sm_90": 227 * 1024,
}
DYNAMIC_SHARED_SYMBOL = "aw_dynamic_smem"
_DYNAMIC_SHARED_NOTE = "// asyncwarp.dynamic_shared_bytes = "
SUBGROUP_WIDTH = 32  # an NVIDIA warp

# Values fixed for a thread's lifetime, read from special registers once at the entry
# into a register of their own: ptxas does not hoist a special-register read (S2R) out
# of a loop, and its latency of tens of cycles then sits in every iteration that needs
# it, such as each channel operation's slot address.
_FIXED = {
    "sg_lane": ("%aw_lane", ("mov.u32 {d}, %laneid",)),
    "sg_id": ("%aw_warp", ("mov.u32 {d}, %tid.x", "shr.u32 {d}, {d}, 5")),  # tid.x / 32
    "block_id": ("%aw_block", ("mov.u32 {d}, %ctaid.x",)),
    "num_blocks": ("%aw_blocks", ("mov.u32 {d}, %nctaid.x",)),
}
_SPECIALS = {
    "timer": ("mov.u64 {d}, %globaltimer",),  # nanoseconds (PTX ISA, special register %globaltimer)
}


# Loops whose header is at most this many plain ops are emitted rotated (PtxEmitter.loop).
ROTATED_HEADER_OPS = 4

_TEMP_PREFIX = {"pred": "%p", "b16": "%rs", "b32": "%r", "b64": "%rd", "f32": "%f", "f64": "%fd"}


def emit_ptx(kernel: ir.Kernel, arch: str = "sm_70") -> str:
    """A complete PTX module for a lowered kernel, targeting `arch` (sm_70 ... sm_90)."""
    return PtxEmitter(kernel, arch).emit()


def entry_name(kernel: ir.Kernel) -> str:
    """The `.entry` symbol of a kernel: its name, made a PTX identifier."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", kernel.name) or "kernel"
    return name if name[0].isalpha() else f"k_{name}"


def dynamic_shared_bytes(ptx: str) -> int:
    """Bytes of dynamic shared memory a module emitted here needs at launch (0: static only)."""
    at = ptx.find(_DYNAMIC_SHARED_NOTE)
    if at < 0:
        return 0
    return int(ptx[at + len(_DYNAMIC_SHARED_NOTE) :].split(None, 1)[0])


def block_size(kernel: ir.Kernel) -> int:
    """Threads per block: attrs.block_size, else one warp of 32 per logical warp."""
    return int(kernel.attrs.get("block_size") or kernel.attrs.get("warps", 1) * SUBGROUP_WIDTH)


def _ident(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name) or "v"


class SharedLayout:
    """Where each shared_alloc lives: one static array each, or one dynamic block."""

    def __init__(self, kernel: ir.Kernel, arch: str):
        self.allocs: list[tuple[ir.Var, int, int]] = []  # (array var, byte offset, bytes)
        seen: set[int] = set()
        offset = 0
        for s in kernel.walk():
            if not (isinstance(s, ir.Op) and s.opcode == "shared_alloc") or s.dst.id in seen:
                continue
            seen.add(s.dst.id)
            offset = (offset + 15) // 16 * 16
            nbytes = int(s.attrs["n"]) * s.dst.type.elem.nbytes
            self.allocs.append((s.dst, offset, nbytes))
            offset += nbytes
            if offset > SHARED_LIMIT[arch]:
                raise CompileError(
                    f"block memory of {offset} bytes exceeds the {SHARED_LIMIT[arch]} bytes "
                    f"a block can have on {arch}",
                    s.loc,
                    hint="use fewer or smaller shared arrays, or target a newer architecture",
                )
        self.total = offset
        self.dynamic = offset > STATIC_SHARED_LIMIT

    def symbol(self, var: ir.Var) -> str:
        # numbered by position, not by Var.id, so the same source gives the same PTX
        index = next(i for i, (v, _, _) in enumerate(self.allocs) if v is var)
        return f"smem_{_ident(var.name)}_{index}"


class PtxEmitter:
    """Emits one kernel; ptx_* modules call back into reg/operand/tmp/ins/label."""

    def __init__(self, kernel: ir.Kernel, arch: str = "sm_70"):
        if arch not in SUPPORTED_ARCHS:
            raise ValueError(
                f"unsupported CUDA architecture {arch!r}; supported: {', '.join(SUPPORTED_ARCHS)}"
            )
        subgroup = kernel.attrs.get("subgroup", SUBGROUP_WIDTH)
        if subgroup != SUBGROUP_WIDTH:
            raise ValueError(
                f"kernel {kernel.name} was lowered for a subgroup of {subgroup} "
                f"lanes; the CUDA backend needs subgroup=32 (an NVIDIA warp)"
            )
        self.kernel = kernel
        self.arch = arch
        self.sm = int(arch[3:])
        self.shared = SharedLayout(kernel, arch)
        self.lines: list[str] = []
        self._regs: dict[int, str] = {}
        self._declared: dict[str, list[str]] = defaultdict(list)  # reg type -> names
        self._temps: Counter = Counter()
        self._labels = itertools.count()
        self._loops: list[tuple[str, str]] = []  # (continue label, break label)
        self._fixed: dict[str, str] = {}  # _FIXED opcode -> its register, in order of use
        self._handlers = {
            **ptx_ops.PURE_HANDLERS,
            **ptx_math.MATH_HANDLERS,
            **ptx_memory.MEMORY_HANDLERS,
            **ptx_subgroup.SUBGROUP_HANDLERS,
        }

    # ------------------------------------------------------------ registers

    def reg(self, var: ir.Var) -> str:
        """The virtual register of an IR variable, declared on first use."""
        name = self._regs.get(var.id)
        if name is None:
            # numbered in order of first use, not by Var.id: builds are reproducible
            name = f"%{_ident(var.name)}_{len(self._regs)}"
            self._regs[var.id] = name
            self._declared[reg_type(var.type)].append(name)
        return name

    def fixed(self, opcode: str) -> str:
        """The register holding a value of _FIXED (sg_lane, sg_id, ...), read at the entry."""
        return self._fixed.setdefault(opcode, _FIXED[opcode][0])

    def tmp(self, cls: str) -> str:
        """A fresh temporary of class pred, b16, b32, b64, f32 or f64.

        Temporaries use nvcc's register names (%r7, %fd2); variables' names end in
        _<id>, so the two never collide.
        """
        n = self._temps[cls]
        self._temps[cls] += 1
        return f"{_TEMP_PREFIX[cls]}{n}"

    def tmp_for(self, t: ScalarType) -> str:
        return self.tmp(ptx_ops.TEMP_CLASS[t.name])

    def operand(self, v: ir.Value) -> str:
        """A source operand: the variable's register, or a literal (a register for bools)."""
        if isinstance(v, ir.Var):
            return self.reg(v)
        if v.type.is_bool:  # predicates have no literal form in guards
            p = self.tmp("pred")
            self.ins(f"mov.pred {p}, {1 if v.value else 0}")
            return p
        return immediate(v.value, v.type)

    def in_register(self, v: ir.Value) -> str:
        """The value in a register (shfl, vote and redux take no literal sources)."""
        if isinstance(v, ir.Var) or v.type.is_bool:
            return self.operand(v)
        r = self.tmp_for(v.type)
        self.ins(f"mov.{SUFFIX[v.type.name]} {r}, {immediate(v.value, v.type)}")
        return r

    def bool_to_u32(self, v: ir.Value) -> str:
        r = self.tmp("b32")
        self.ins(f"selp.u32 {r}, 1, 0, {self.operand(v)}")
        return r

    # ------------------------------------------------------------ text

    def ins(self, text: str) -> None:
        self.lines.append(f"\t{text};")

    def label(self, hint: str) -> str:
        return f"$L_{hint}_{next(self._labels)}"

    def place(self, label: str) -> None:
        self.lines.append(f"{label}:")

    def comment(self, stmt, text: str) -> None:
        loc = stmt.loc
        where = f"{os.path.basename(loc.file)}:{loc.line}" if loc.line else "<generated>"
        self.lines.append(f"\t// {where}: {text.strip()}")

    # ------------------------------------------------------------ statements

    def block(self, stmts: list) -> None:
        for s in stmts:
            if isinstance(s, ir.Op):
                self.op(s)
            elif isinstance(s, ir.If):
                self.if_(s)
            elif isinstance(s, ir.Loop):
                self.loop(s)
            elif isinstance(s, (ir.Break, ir.Continue)):
                if not self._loops:
                    raise RuntimeError(f"{type(s).__name__.lower()} outside a loop at {s.loc}")
                cont, brk = self._loops[-1]
                self.ins(f"bra {brk if isinstance(s, ir.Break) else cont}")
            else:
                raise RuntimeError(
                    f"{type(s).__name__} at {s.loc} reached the PTX emitter; async constructs "
                    "must be lowered first (core.passes.pipeline.lower)"
                )

    def if_(self, s: ir.If) -> None:
        self.comment(s, f"if {s.cond!r}")
        cond = self.operand(s.cond)
        end = self.label("endif")
        otherwise = self.label("else") if s.else_ else end
        self.ins(f"@!{cond} bra {otherwise}")
        self.block(s.then)
        if s.else_:
            self.ins(f"bra {end}")
            self.place(otherwise)
            self.block(s.else_)
        self.place(end)

    def loop(self, s: ir.Loop) -> None:
        self.comment(s, "loop")
        head, cont, end = self.label("loop"), self.label("latch"), self.label("endloop")
        # Break/Continue anywhere in the loop (header and latch too, as the interpreter
        # runs them) leave it or go on to the latch.
        self._loops.append((cont, end))
        self.place(head)
        self.block(s.header)
        if s.cond is not None:
            self.ins(f"@!{self.operand(s.cond)} bra {end}")
        # A short straight-line header is repeated at the bottom (loop rotation, as
        # nvcc emits loops): ptxas then keeps the loop's invariant loads out of it even
        # where the body has a side exit, such as an await's wait.
        rotate = (
            s.cond is not None
            and len(s.header) <= ROTATED_HEADER_OPS
            and all(isinstance(h, ir.Op) for h in s.header)
        )
        body = self.label("body") if rotate else None
        if rotate:
            self.place(body)
        self.block(s.body)
        self.place(cont)
        self.block(s.latch)
        if rotate:
            self.block(s.header)
            self.ins(f"@{self.operand(s.cond)} bra {body}")
        else:
            self.ins(f"bra {head}")
        self._loops.pop()
        self.place(end)

    def op(self, op: ir.Op) -> None:
        self.comment(op, ir.print_block([op], 0)[0])
        if op.opcode in _FIXED:
            self.ins(f"mov.u32 {self.reg(op.dst)}, {self.fixed(op.opcode)}")
            return
        special = _SPECIALS.get(op.opcode)
        if special is not None:
            t = self.tmp("b32") if len(special) > 1 else ""
            for line in special:
                self.ins(line.format(d=self.reg(op.dst), t=t))
            return
        handler = self._handlers.get(op.opcode)
        if handler is None:
            category = info(op.opcode).category  # RuntimeError for unknown opcodes
            raise RuntimeError(
                f"{op.opcode} ({category}) at {op.loc} is not part of lowered IR; run "
                "core.passes.fold_lanes before PTX emission"
            )
        handler(self, op)

    # ------------------------------------------------------------ module

    def _prologue(self, params: list[str]) -> list[str]:
        body, self.lines = self.lines, []
        for p, pname in zip(self.kernel.params, params, strict=True):
            t = p.type
            if isinstance(t, ArrayType):
                raw = self.tmp("b64")
                self.ins(f"ld.param.u64 {raw}, [{pname}]")
                self.ins(f"cvta.to.global.u64 {self.reg(p)}, {raw}")
            elif t.is_bool:
                raw = self.tmp("b32")
                self.ins(f"ld.param.u32 {raw}, [{pname}]")
                self.ins(f"setp.ne.u32 {self.reg(p)}, {raw}, 0")
            else:
                self.ins(f"ld.param.{SUFFIX[t.name]} {self.reg(p)}, [{pname}]")
        for opcode, reg in self._fixed.items():
            for line in _FIXED[opcode][1]:
                self.ins(line.format(d=reg))
        for var, offset, _ in self.shared.allocs:
            if self.shared.dynamic:
                self.ins(f"mov.u32 {self.reg(var)}, {DYNAMIC_SHARED_SYMBOL}")
                self.ins(f"add.u32 {self.reg(var)}, {self.reg(var)}, {offset}")
            else:
                self.ins(f"mov.u32 {self.reg(var)}, {self.shared.symbol(var)}")
        prologue, self.lines = self.lines, body
        return prologue

    def emit(self) -> str:
        k = self.kernel
        name = entry_name(k)
        self.block(k.body)
        params = [f"{name}_param_{i}" for i in range(len(k.params))]
        prologue = self._prologue(params)
        param_decls = []
        for p, pname in zip(k.params, params, strict=True):
            t = p.type
            ty = "u64" if isinstance(t, ArrayType) else "u32" if t.is_bool else SUFFIX[t.name]
            param_decls.append(f"\t.param .{ty} {pname}")
        where = f"{os.path.basename(k.loc.file)}:{k.loc.line}" if k.loc.line else "<built>"
        attrs = " ".join(
            f"{key}={k.attrs[key]}"
            for key in sorted(k.attrs)
            if isinstance(k.attrs[key], (int, str, bool))
        )
        out = [
            f"// asyncwarp PTX for kernel {k.name} ({where}), {self.arch}",
            f"// attrs: {attrs}",
            f"{_DYNAMIC_SHARED_NOTE}{self.shared.total if self.shared.dynamic else 0}",
            f".version {PTX_VERSION[self.arch]}",
            f".target {self.arch}",
            ".address_size 64",
            "",
        ]
        if self.shared.dynamic:
            out.append(f".extern .shared .align 16 .b8 {DYNAMIC_SHARED_SYMBOL}[];")
            out.append("")
        out.append(f".visible .entry {name}(")
        out.append(",\n".join(param_decls))
        out.append(f")\n.maxntid {block_size(k)}, 1, 1\n{{")
        for ty in sorted(self._declared):
            names = self._declared[ty]
            for i in range(0, len(names), 8):
                out.append(f"\t.reg .{ty} {', '.join(names[i : i + 8])};")
        if self._fixed:
            out.append(f"\t.reg .u32 {', '.join(self._fixed.values())};")
        for cls in sorted(self._temps):
            out.append(f"\t.reg .{cls} {_TEMP_PREFIX[cls]}<{self._temps[cls]}>;")
        if not self.shared.dynamic:
            for var, _, nbytes in self.shared.allocs:
                out.append(f"\t.shared .align 16 .b8 {self.shared.symbol(var)}[{max(nbytes, 1)}];")
        out.append("")
        out += prologue
        out += self.lines
        out.append("\tret;")
        out.append("}")
        return "\n".join(out) + "\n"


__all__ = [
    "emit_ptx",
    "entry_name",
    "dynamic_shared_bytes",
    "block_size",
    "PtxEmitter",
    "SUPPORTED_ARCHS",
    "SHARED_LIMIT",
    "STATIC_SHARED_LIMIT",
]
