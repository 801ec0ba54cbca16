"""PTX tables and the lowering of pure IR ops: arithmetic, comparisons, casts, shifts.

Each pure opcode maps to a PTX template per type class; the few whose IR
semantics (core/ops.py) need more than one instruction -- Python floor
division and remainder, clamped 64-bit shift amounts, bool selects -- are
short sequences here. Transcendentals live in ptx_math.py.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ...core import ir
from ...core.errors import CompileError
from ...core.types import ArrayType, ScalarType

if TYPE_CHECKING:  # pragma: no cover
    from .ptx import PtxEmitter

# PTX instruction type of each scalar type (PTX ISA, "Fundamental Types").
SUFFIX = {
    "bool": "pred",
    "i32": "s32",
    "u32": "u32",
    "i64": "s64",
    "u64": "u64",
    "f32": "f32",
    "f64": "f64",
}
# Register class of a temporary holding a value of the type. Bit-size registers are
# operand-compatible with every instruction type of the same size (PTX ISA,
# "Operand Type Information").
TEMP_CLASS = {
    "bool": "pred",
    "i32": "b32",
    "u32": "b32",
    "i64": "b64",
    "u64": "b64",
    "f32": "f32",
    "f64": "f64",
}
# Memory access type of an element: bool arrays hold one byte per element.
MEM_SUFFIX = {**SUFFIX, "bool": "u8"}


def reg_type(t) -> str:
    """The `.reg` type declared for a variable of IR type t (arrays hold addresses)."""
    if isinstance(t, ArrayType):
        return "u64" if t.space == "global" else "u32"
    return SUFFIX[t.name]


def bits(t: ScalarType) -> str:
    return f"b{t.bits}"


def signed(t: ScalarType) -> str:
    return f"s{t.bits}"


def immediate(value, t: ScalarType) -> str:
    """A PTX literal of type t (PTX ISA, "Constants"): hex bit patterns for floats."""
    if t.is_bool:
        return "1" if value else "0"
    if t.is_float:
        if t.bits == 32:
            return f"0f{struct.unpack('>I', struct.pack('>f', float(value)))[0]:08X}"
        return f"0d{struct.unpack('>Q', struct.pack('>d', float(value)))[0]:016X}"
    v = int(value) & ((1 << t.bits) - 1)
    if t.is_signed and v >= 1 << (t.bits - 1):
        v -= 1 << t.bits
    return f"{v}U" if v >= 1 << 63 else str(v)


def type_class(t: ScalarType) -> tuple[str, ...]:
    """Keys a template table is searched with, most specific first."""
    if t.is_bool:
        return ("bool",)
    if t.is_float:
        return ("float",)
    return ("sint" if t.is_signed else "uint", "int")


# ---------------------------------------------------------------- templates
# {t}: the type's suffix, {b}: its bit-size suffix, {s}: the signed suffix of its size.
# Float add/sub/mul carry .rn so ptxas never contracts them into an fma, which
# would round differently from the interpreter (PTX ISA, floating-point "add": "add
# with an explicit rounding modifier is not contracted").
BINARY = {
    "add": {"int": "add.{t}", "float": "add.rn.{t}"},
    "sub": {"int": "sub.{t}", "float": "sub.rn.{t}"},
    "mul": {"int": "mul.lo.{t}", "float": "mul.rn.{t}"},
    "div": {"float": "div.rn.{t}"},
    # min/max.f32/f64 return the non-NaN operand when one is NaN: IEEE minNum.
    "min": {"int": "min.{t}", "float": "min.{t}"},
    "max": {"int": "max.{t}", "float": "max.{t}"},
    "band": {"int": "and.{b}"},
    "bor": {"int": "or.{b}"},
    "bxor": {"int": "xor.{b}"},
    "land": {"bool": "and.pred"},
    "lor": {"bool": "or.pred"},
}
UNARY = {
    "neg": {"int": "neg.{s}", "float": "neg.{t}"},  # integer neg wraps
    "abs": {"sint": "abs.{t}", "uint": "mov.{b}", "float": "abs.{t}"},
    "sqrt": {"float": "sqrt.rn.{t}"},  # IEEE correctly rounded
    "floor": {"float": "cvt.rmi.{t}.{t}"},
    "ceil": {"float": "cvt.rpi.{t}.{t}"},
    "bnot": {"int": "not.{b}"},
    "popcount": {"int": "popc.{b}"},  # result .u32, held in the i32 destination
    "lnot": {"bool": "not.pred"},
    "copy": {"bool": "mov.pred", "int": "mov.{b}", "float": "mov.{t}"},
}
# Float `ne` is the unordered compare, so NaN != x holds as in Python; the
# others are ordered and false on NaN.
COMPARE = {
    "eq": {"int": "eq", "float": "eq"},
    "ne": {"int": "ne", "float": "neu"},
    "lt": {"int": "lt", "float": "lt"},
    "le": {"int": "le", "float": "le"},
    "gt": {"int": "gt", "float": "gt"},
    "ge": {"int": "ge", "float": "ge"},
}
# cast, by (source kind, destination kind). Float -> integer uses cvt.rzi, which
# clamps to the destination range by default (PTX ISA, "cvt": "For
# float-to-integer conversions, the result is clamped to the destination range
# by default, i.e, .sat is redundant"). NaN needs its own select: the ISA does
# not define its result, and an H100 gives 0 only for f32 -> 32-bit (f64 -> s32
# and f32 -> s64 give INT_MIN, measured), where core/ops.py asks for 0.
CAST = {
    ("int", "int"): "cvt.{dt}.{st} {d}, {a}",
    ("int", "float"): "cvt.rn.{dt}.{st} {d}, {a}",
    ("float", "int"): "cvt.rzi.{dt}.{st} {d}, {a}",
    ("float", "float"): "cvt{rnd}.{dt}.{st} {d}, {a}",
    ("int", "bool"): "setp.ne.{st} {d}, {a}, 0",
    ("float", "bool"): "setp.neu.{st} {d}, {a}, {zero}",
    ("bool", "int"): "selp.{dt} {d}, 1, 0, {a}",
    ("bool", "float"): "selp.{dt} {d}, {one}, {zero}, {a}",
}


def template(table: dict, opcode: str, t: ScalarType, loc) -> str:
    """The PTX instruction of `opcode` on t; CompileError where the IR does not define it."""
    entry = table[opcode]
    for key in type_class(t):
        if key in entry:
            return entry[key].format(t=SUFFIX[t.name], b=bits(t), s=signed(t) if t.is_int else "")
    raise CompileError(f"{opcode} is not defined on {t} values", loc)


def _kind(t: ScalarType) -> str:
    return "bool" if t.is_bool else "float" if t.is_float else "int"


# ---------------------------------------------------------------- handlers


def lower_binary(e: PtxEmitter, op: ir.Op) -> None:
    a, b = op.args
    ins = template(BINARY, op.opcode, a.type, op.loc)
    e.ins(f"{ins} {e.reg(op.dst)}, {e.operand(a)}, {e.operand(b)}")


def lower_unary(e: PtxEmitter, op: ir.Op) -> None:
    (a,) = op.args
    if isinstance(a.type, ArrayType):  # an array alias: copy the address
        e.ins(f"mov.{reg_type(a.type)} {e.reg(op.dst)}, {e.operand(a)}")
        return
    ins = template(UNARY, op.opcode, a.type, op.loc)
    e.ins(f"{ins} {e.reg(op.dst)}, {e.operand(a)}")


def lower_compare(e: PtxEmitter, op: ir.Op) -> None:
    a, b = op.args
    t = a.type
    if t.is_bool:  # compare as 0/1 integers: False < True, as in Python
        a_val, b_val = (e.bool_to_u32(x) for x in (a, b))
        e.ins(f"setp.{COMPARE[op.opcode]['int']}.u32 {e.reg(op.dst)}, {a_val}, {b_val}")
        return
    cmp = COMPARE[op.opcode]["float" if t.is_float else "int"]
    e.ins(f"setp.{cmp}.{SUFFIX[t.name]} {e.reg(op.dst)}, {e.operand(a)}, {e.operand(b)}")


def lower_select(e: PtxEmitter, op: ir.Op) -> None:
    c, a, b = op.args
    d, t = e.reg(op.dst), op.dst.type
    if isinstance(t, ScalarType) and t.is_bool:
        # selp has no .pred form: d = (c & a) | (!c & b), written last so d may alias.
        cv, av, bv = e.operand(c), e.operand(a), e.operand(b)
        on, off = e.tmp("pred"), e.tmp("pred")
        e.ins(f"and.pred {on}, {cv}, {av}")
        e.ins(f"not.pred {off}, {cv}")
        e.ins(f"and.pred {off}, {off}, {bv}")
        e.ins(f"or.pred {d}, {on}, {off}")
        return
    ty = reg_type(t) if isinstance(t, ArrayType) else SUFFIX[t.name]
    e.ins(f"selp.{ty} {d}, {e.operand(a)}, {e.operand(b)}, {e.operand(c)}")


def lower_cast(e: PtxEmitter, op: ir.Op) -> None:
    (a,) = op.args
    st, dt = a.type, op.dst.type
    d = e.reg(op.dst)
    if st == dt:
        e.ins(f"{template(UNARY, 'copy', st, op.loc)} {d}, {e.operand(a)}")
        return
    kinds = (_kind(st), _kind(dt))
    rule = CAST[kinds]
    if kinds == ("float", "int"):
        nan = e.tmp("pred")
        e.ins(f"setp.nan.{SUFFIX[st.name]} {nan}, {e.operand(a)}, {e.operand(a)}")
        e.ins(rule.format(d=d, a=e.operand(a), st=SUFFIX[st.name], dt=SUFFIX[dt.name]))
        e.ins(f"@{nan} mov.{bits(dt)} {d}, 0")
        return
    # Widening f32 -> f64 is exact and takes no rounding modifier; narrowing rounds.
    rnd = ".rn" if st.is_float and dt.is_float and dt.bits < st.bits else ""
    float_side = st if st.is_float else dt  # the type of a 0.0 / 1.0 literal, if any
    e.ins(
        rule.format(
            d=d,
            a=e.operand(a),
            st=SUFFIX[st.name],
            dt=SUFFIX[dt.name],
            rnd=rnd,
            zero=immediate(0.0, float_side) if float_side.is_float else "0",
            one=immediate(1.0, dt) if dt.is_float else "1",
        )
    )


def lower_bitcast(e: PtxEmitter, op: ir.Op) -> None:
    """Reinterpret the bits: a mov between registers of one size ("mov" takes .b32/.b64
    operands of any type of that size, PTX ISA "Operand Type Information")."""
    (a,) = op.args
    e.ins(f"mov.{bits(op.dst.type)} {e.reg(op.dst)}, {e.operand(a)}")


def lower_shift(e: PtxEmitter, op: ir.Op) -> None:
    """shl/shr with the amount clamped to the width (core/ops.py).

    PTX clamps 32-bit amounts itself: "Shift amounts greater than the register
    width N are clamped to N" (PTX ISA, "shl" and "shr"). The amount is
    read as unsigned, so a negative amount counts as a huge one. A 64-bit amount
    is clamped here before it is narrowed to the .u32 operand PTX takes.
    """
    a, b = op.args
    t = a.type
    if isinstance(b, ir.Const):
        amount = str(min(int(b.value) & ((1 << t.bits) - 1), t.bits))
    elif b.type.bits == 32:
        amount = e.operand(b)
    else:
        wide, amount = e.tmp("b64"), e.tmp("b32")
        e.ins(f"min.u64 {wide}, {e.operand(b)}, 64")
        e.ins(f"cvt.u32.u64 {amount}, {wide}")
    if op.opcode == "shl":
        ins = f"shl.{bits(t)}"
    else:  # arithmetic for signed types, logical for unsigned
        ins = f"shr.{SUFFIX[t.name]}"
    e.ins(f"{ins} {e.reg(op.dst)}, {e.operand(a)}, {amount}")


def lower_divmod(e: PtxEmitter, op: ir.Op) -> None:
    """Python floor division and remainder (core/ops.py).

    PTX div/rem truncate toward zero and leave division by zero unspecified
    (PTX ISA, integer "div"). The divisor is replaced by 1 where it is 0 (result 0 /
    a) or -1 (result -a / 0, so INT_MIN // -1 wraps instead of trapping); the
    truncated quotient is then floored where the remainder's sign differs from
    the divisor's.
    """
    a, b = op.args
    t = op.dst.type
    d = e.reg(op.dst)
    av, bv = e.operand(a), e.operand(b)
    ty = SUFFIX[t.name]
    if t.is_float:  # floordiv = floor(a / b); mod = a - floor(a / b) * b
        q = e.tmp("f32" if t.bits == 32 else "f64")
        e.ins(f"div.rn.{ty} {q}, {av}, {bv}")
        if op.opcode == "floordiv":
            e.ins(f"cvt.rmi.{ty}.{ty} {d}, {q}")
            return
        e.ins(f"cvt.rmi.{ty}.{ty} {q}, {q}")
        e.ins(f"mul.rn.{ty} {q}, {q}, {bv}")
        e.ins(f"sub.rn.{ty} {d}, {av}, {q}")
        return
    k = ir.power_of_two(b)
    if k is not None:  # by a constant 2^k: floor division is a shift, the remainder a mask
        if op.opcode == "floordiv":
            e.ins(f"shr.{ty} {d}, {av}, {k}")
        else:
            e.ins(f"and.{bits(t)} {d}, {av}, {(1 << k) - 1}")
        return
    cls = TEMP_CLASS[t.name]
    by_zero = e.tmp("pred")
    e.ins(f"setp.eq.{ty} {by_zero}, {bv}, 0")
    if t.is_signed:
        by_minus_one, unsafe = e.tmp("pred"), e.tmp("pred")
        e.ins(f"setp.eq.{ty} {by_minus_one}, {bv}, -1")
        e.ins(f"or.pred {unsafe}, {by_zero}, {by_minus_one}")
    else:
        unsafe = by_zero
    divisor = e.tmp(cls)
    e.ins(f"selp.{ty} {divisor}, 1, {bv}, {unsafe}")
    if not t.is_signed:
        r = e.tmp(cls)
        if op.opcode == "floordiv":
            e.ins(f"div.{ty} {r}, {av}, {divisor}")
            e.ins(f"selp.{ty} {d}, 0, {r}, {by_zero}")
        else:
            e.ins(f"rem.{ty} {r}, {av}, {divisor}")
            e.ins(f"selp.{ty} {d}, {av}, {r}, {by_zero}")
        return
    r, sign, fix, nonzero = e.tmp(cls), e.tmp(cls), e.tmp("pred"), e.tmp("pred")
    e.ins(f"rem.{ty} {r}, {av}, {divisor}")
    e.ins(f"xor.{bits(t)} {sign}, {r}, {divisor}")  # negative iff the signs differ
    e.ins(f"setp.lt.{ty} {fix}, {sign}, 0")
    e.ins(f"setp.ne.{ty} {nonzero}, {r}, 0")
    e.ins(f"and.pred {fix}, {fix}, {nonzero}")
    if op.opcode == "floordiv":
        q = e.tmp(cls)
        e.ins(f"div.{ty} {q}, {av}, {divisor}")
        e.ins(f"@{fix} sub.{ty} {q}, {q}, 1")
        e.ins(f"@{by_minus_one} neg.{ty} {q}, {av}")
        e.ins(f"selp.{ty} {d}, 0, {q}, {by_zero}")
    else:
        e.ins(f"@{fix} add.{ty} {r}, {r}, {divisor}")
        e.ins(f"selp.{ty} {d}, {av}, {r}, {by_zero}")


PURE_HANDLERS = {
    **{name: lower_binary for name in BINARY},
    **{name: lower_unary for name in UNARY},
    **{name: lower_compare for name in COMPARE},
    "select": lower_select,
    "cast": lower_cast,
    "bitcast": lower_bitcast,
    "shl": lower_shift,
    "shr": lower_shift,
    "floordiv": lower_divmod,
    "mod": lower_divmod,
}
