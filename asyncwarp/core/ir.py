"""The backend-neutral IR: typed variables, ops, structured control flow.

The frontend produces it, passes rewrite it, and the emitters and the reference
interpreter consume it. Variables may be assigned more than once (it is not
SSA); control flow is structured (`If`, `Loop` with `Break`/`Continue`), which
maps directly onto SPIR-V's structured control flow and onto PTX branches.
`print_kernel` gives the textual form that golden tests and `kernel.ir()` show.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

from .types import ArrayType, ScalarType, Type

# Uniformity levels, filled in by core.uniformity: how many lanes agree on a
# value or take a branch together.
BLOCK_UNIFORM = 0  # every lane of the block (constants, params, block_id)
WARP_UNIFORM = 1  # every lane of one logical warp (warp_id, collectives' results)
DIVERGENT = 2  # may differ from lane to lane
LEVEL_NAMES = {BLOCK_UNIFORM: "block-uniform", WARP_UNIFORM: "warp-uniform", DIVERGENT: "divergent"}


@dataclass(frozen=True)
class Loc:
    """A source location; `text` is the source line, for carets in error messages."""

    file: str
    line: int
    col: int = 0
    text: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


NO_LOC = Loc("<unknown>", 0)

_ids = itertools.count()


class Var:
    """A typed variable. Identity is the object; `name` is for printing only."""

    __slots__ = ("name", "type", "id")

    def __init__(self, name: str, type: Type):
        self.name = name
        self.type = type
        self.id = next(_ids)

    def __repr__(self) -> str:
        return f"%{self.name}"


@dataclass(frozen=True)
class Const:
    """A compile-time constant of a scalar type (value is a Python bool/int/float)."""

    value: bool | int | float
    type: ScalarType

    def __repr__(self) -> str:
        if self.type.is_bool:
            return "true" if self.value else "false"
        return f"{self.value!r}:{self.type}"


Value = Var | Const


@dataclass(eq=False)
class Op:
    """`dst = opcode(args) {attrs}`; dst is None for ops without a result.

    The opcodes, their operand types and categories are listed in core.ops.
    """

    dst: Var | None
    opcode: str
    args: tuple
    attrs: dict = field(default_factory=dict)
    loc: Loc = NO_LOC


def power_of_two(value) -> int | None:
    """k when `value` is an integer constant 2^k (k >= 0), else None (emitters turn
    // and % by such constants into shifts and masks)."""
    if isinstance(value, Const) and not value.type.is_float and not value.type.is_bool:
        v = int(value.value)
        if v > 0 and v & (v - 1) == 0:
            return v.bit_length() - 1
    return None


@dataclass(eq=False)
class If:
    cond: Value
    then: list
    else_: list
    loc: Loc = NO_LOC
    level: int | None = None  # uniformity of the condition, set by analysis


@dataclass(eq=False)
class Loop:
    """`while True: header; if not cond: break; body; latch`.

    `Continue` in body jumps to latch; `Break` leaves the loop. cond None means
    no exit test (exit only through Break).
    """

    header: list
    cond: Value | None
    body: list
    latch: list
    loc: Loc = NO_LOC
    level: int | None = None  # uniformity of the loop's exits, set by analysis


@dataclass(eq=False)
class Break:
    loc: Loc = NO_LOC


@dataclass(eq=False)
class Continue:
    loc: Loc = NO_LOC


# ---- async constructs (before core.passes lower them to state machines) ----


@dataclass(eq=False)
class Suspend:
    """A leaf suspension point: run `poll` (which sets the bool `ready`) until ready.

    Every awaitable primitive (until, sleep, yield, channel send/recv, barrier
    and semaphore waits) is a Suspend whose poll block tries the operation.
    `what` describes the wait for deadlock and watchdog reports.
    """

    poll: list
    ready: Var
    what: str
    loc: Loc = NO_LOC
    level: int | None = None
    # "device" when the wait may depend on another block (aw.Event): such kernels
    # need every block resident at once (a cooperative launch on CUDA)
    scope: str = "block"


@dataclass(eq=False)
class Join:
    """Run the branch blocks concurrently; done when every branch is done.

    `warps` optionally gives each branch's warp count when the join is mapped onto
    warps (warp specialisation); None means one warp each.
    """

    branches: list
    loc: Loc = NO_LOC
    level: int | None = None
    warps: tuple | None = None


@dataclass(eq=False)
class Select:
    """Run the branches until the first completes; its index goes to `index`."""

    branches: list
    index: Var
    loc: Loc = NO_LOC
    level: int | None = None


Stmt = Op | If | Loop | Break | Continue | Suspend | Join | Select


@dataclass(eq=False)
class Kernel:
    """One entry point. `attrs` carries build facts (warp_width, warps, subgroup, ...)."""

    name: str
    params: list
    body: list
    loc: Loc = NO_LOC
    attrs: dict = field(default_factory=dict)

    def walk(self) -> Iterator[Stmt]:
        yield from walk(self.body)


def child_blocks(stmt: Stmt) -> list[list]:
    """The nested statement lists of a statement, in program order."""
    if isinstance(stmt, If):
        return [stmt.then, stmt.else_]
    if isinstance(stmt, Loop):
        return [stmt.header, stmt.body, stmt.latch]
    if isinstance(stmt, Suspend):
        return [stmt.poll]
    if isinstance(stmt, (Join, Select)):
        return list(stmt.branches)
    return []


def walk(block: list) -> Iterator[Stmt]:
    """Every statement of a block, pre-order, nested ones included."""
    for stmt in block:
        yield stmt
        for child in child_blocks(stmt):
            yield from walk(child)


class Builder:
    """Appends statements to a current block; used by the frontend, passes and tests.

    >>> b = Builder(); x = b.op("add", a, Const(1, i32))  # returns the new Var
    """

    def __init__(self, block: list | None = None):
        self.block = [] if block is None else block
        self.loc = NO_LOC
        self._names = itertools.count()

    def tmp(self, type: Type, hint: str = "t") -> Var:
        return Var(f"{hint}{next(self._names)}", type)

    def emit(self, stmt: Stmt) -> Stmt:
        self.block.append(stmt)
        return stmt

    def op(self, opcode: str, *args: Value, type: Type | None = None, dst: Var | None = None,
           **attrs) -> Var | None:
        """Append an op; its result type comes from core.ops unless `type` or `dst` is given."""
        from .ops import result_type

        if dst is None:
            rtype = type if type is not None else result_type(opcode, args, attrs)
            if rtype is not None:
                dst = self.tmp(rtype)
        self.emit(Op(dst, opcode, tuple(args), attrs, self.loc))
        return dst

    def assign(self, dst: Var, value: Value) -> None:
        self.emit(Op(dst, "copy", (value,), {}, self.loc))

    def nested(self) -> Builder:
        """A builder for a fresh block that shares this one's name counter and loc."""
        b = Builder([])
        b._names = self._names
        b.loc = self.loc
        return b


# ---------------------------------------------------------------- printer


def _fmt_value(v: Value) -> str:
    return repr(v)


def _fmt_attrs(attrs: dict) -> str:
    if not attrs:
        return ""
    return " {" + ", ".join(f"{k}={v}" for k, v in sorted(attrs.items())) + "}"


def _lvl(level: int | None) -> str:
    return "" if level is None else f" [{LEVEL_NAMES[level]}]"


def print_block(block: list, indent: int = 1) -> list[str]:
    pad = "  " * indent
    out: list[str] = []
    for s in block:
        if isinstance(s, Op):
            args = ", ".join(_fmt_value(a) for a in s.args)
            lhs = f"{s.dst!r}: {s.dst.type} = " if s.dst is not None else ""
            out.append(f"{pad}{lhs}{s.opcode}({args}){_fmt_attrs(s.attrs)}")
        elif isinstance(s, If):
            out.append(f"{pad}if {_fmt_value(s.cond)}{_lvl(s.level)} {{")
            out += print_block(s.then, indent + 1)
            if s.else_:
                out.append(f"{pad}}} else {{")
                out += print_block(s.else_, indent + 1)
            out.append(f"{pad}}}")
        elif isinstance(s, Loop):
            out.append(f"{pad}loop{_lvl(s.level)} {{")
            if s.header:
                out.append(f"{pad}  header {{")
                out += print_block(s.header, indent + 2)
                out.append(f"{pad}  }}")
            if s.cond is not None:
                out.append(f"{pad}  while {_fmt_value(s.cond)}")
            out += print_block(s.body, indent + 1)
            if s.latch:
                out.append(f"{pad}  latch {{")
                out += print_block(s.latch, indent + 2)
                out.append(f"{pad}  }}")
            out.append(f"{pad}}}")
        elif isinstance(s, Break):
            out.append(f"{pad}break")
        elif isinstance(s, Continue):
            out.append(f"{pad}continue")
        elif isinstance(s, Suspend):
            out.append(f"{pad}suspend {s.what!r} until {s.ready!r}{_lvl(s.level)} {{")
            out += print_block(s.poll, indent + 1)
            out.append(f"{pad}}}")
        elif isinstance(s, (Join, Select)):
            head = "join" if isinstance(s, Join) else f"{s.index!r} = select"
            if isinstance(s, Join) and s.warps:
                head += f" warps={s.warps}"
            out.append(f"{pad}{head}{_lvl(s.level)} {{")
            for i, br in enumerate(s.branches):
                out.append(f"{pad}  branch {i} {{")
                out += print_block(br, indent + 2)
                out.append(f"{pad}  }}")
            out.append(f"{pad}}}")
        else:  # pragma: no cover - verifier rejects unknown statements first
            raise RuntimeError(f"unknown IR statement {s!r}")
    return out


def print_kernel(k: Kernel) -> str:
    params = ", ".join(f"{p!r}: {p.type}" for p in k.params)
    attrs = _fmt_attrs(k.attrs)
    lines = [f"kernel {k.name}({params}){attrs} {{"]
    lines += print_block(k.body)
    lines.append("}")
    return "\n".join(lines) + "\n"


__all__ = [
    "ArrayType", "ScalarType", "Loc", "NO_LOC", "Var", "Const", "Value", "Op", "If", "Loop",
    "Break", "Continue", "Suspend", "Join", "Select", "Stmt", "Kernel", "Builder", "walk",
    "child_blocks", "print_kernel", "print_block", "BLOCK_UNIFORM", "WARP_UNIFORM", "DIVERGENT",
]
