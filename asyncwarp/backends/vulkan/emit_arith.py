"""SPIR-V lowering of the IR's pure ops: arithmetic, comparisons, logic, math and casts.

Semantics are core/ops.py's. Where SPIR-V leaves a case undefined (integer
division by zero, shifts by >= the width, out-of-range float->int conversion)
the lowering selects the defined answer explicitly instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...core import ir
from ...core.types import BY_NAME, ScalarType, bool_, i32, u32, u64

if TYPE_CHECKING:
    from .emit import KernelEmitter

# op -> (int opcode, float opcode); None where the op does not apply.
BINARY = {
    "add": ("OpIAdd", "OpFAdd"),
    "sub": ("OpISub", "OpFSub"),
    "mul": ("OpIMul", "OpFMul"),
    "div": (None, "OpFDiv"),
    "band": ("OpBitwiseAnd", None),
    "bor": ("OpBitwiseOr", None),
    "bxor": ("OpBitwiseXor", None),
}
# op -> (signed int, unsigned int, float, bool) opcode. Float ne is unordered so that
# NaN != NaN holds, as in Python; every other float comparison is ordered.
COMPARE = {
    "eq": ("OpIEqual", "OpIEqual", "OpFOrdEqual", "OpLogicalEqual"),
    "ne": ("OpINotEqual", "OpINotEqual", "OpFUnordNotEqual", "OpLogicalNotEqual"),
    "lt": ("OpSLessThan", "OpULessThan", "OpFOrdLessThan", None),
    "le": ("OpSLessThanEqual", "OpULessThanEqual", "OpFOrdLessThanEqual", None),
    "gt": ("OpSGreaterThan", "OpUGreaterThan", "OpFOrdGreaterThan", None),
    "ge": ("OpSGreaterThanEqual", "OpUGreaterThanEqual", "OpFOrdGreaterThanEqual", None),
}
# op -> GLSL.std.450 (signed, unsigned, float). NMin/NMax return the non-NaN operand
# (IEEE minNum), which is ops.py's float min/max.
MIN_MAX = {"min": ("SMin", "UMin", "NMin"), "max": ("SMax", "UMax", "NMax")}
MATH = {
    "sqrt": "Sqrt",
    "exp": "Exp",
    "log": "Log",
    "sin": "Sin",
    "cos": "Cos",
    "floor": "Floor",
    "ceil": "Ceil",
}
# GLSL.std.450 accepts 64-bit floats only for some instructions; the rest (Exp, Log,
# Sin, Cos, Pow) are 16/32-bit only (GLSL.std.450 spec, per instruction).
F64_MATH = frozenset({"sqrt", "floor", "ceil"})
_FLOAT_ROUNDED = frozenset({"OpFAdd", "OpFSub", "OpFMul", "OpFDiv"})


def unsigned_of(bits: int) -> ScalarType:
    return BY_NAME[f"u{bits}"]


def _kind(t: ScalarType) -> int:
    """Index into the (signed, unsigned, float, bool) opcode tuples."""
    if t.is_float:
        return 2
    if t.is_bool:
        return 3
    return 0 if t.is_signed else 1


def farith(e: KernelEmitter, opname: str, t: ScalarType, a: int, b: int) -> int:
    """A float add/sub/mul/div rounded on its own: NoContraction keeps the driver from
    fusing it into an FMA (ops.py: floats are IEEE round-to-nearest per operation)."""
    result = e.emit(opname, e.ty(t), a, b)
    e.b.decorate(result, "NoContraction")
    return result


def lower_binary(e: KernelEmitter, op: ir.Op) -> int:
    t = op.args[0].type
    a, b = (e.value(v) for v in op.args)
    int_op, float_op = BINARY[op.opcode]
    opname = float_op if t.is_float else int_op
    if opname is None:
        raise RuntimeError(f"{op.opcode} on {t} reached the emitter")
    if opname in _FLOAT_ROUNDED:
        return farith(e, opname, t, a, b)
    return e.emit(opname, e.ty(t), a, b)


def lower_min_max(e: KernelEmitter, op: ir.Op) -> int:
    t = op.args[0].type
    a, b = (e.value(v) for v in op.args)
    return e.glsl(t, MIN_MAX[op.opcode][_kind(t)], a, b)


def lower_floordiv_mod(e: KernelEmitter, op: ir.Op) -> int:
    t = op.args[0].type
    a, b = (e.value(v) for v in op.args)
    if t.is_float:
        # ops.py: floordiv = floor(a / b); mod = a - floor(a / b) * b.
        q = e.glsl(t, "Floor", farith(e, "OpFDiv", t, a, b))
        if op.opcode == "floordiv":
            return q
        return farith(e, "OpFSub", t, a, farith(e, "OpFMul", t, q, b))
    ty, boolean = e.ty(t), e.ty(bool_)
    k = ir.power_of_two(op.args[1])
    if k is not None:  # by a constant 2^k: floor division is a shift, the remainder a mask
        if op.opcode == "mod":
            return e.emit("OpBitwiseAnd", ty, a, e.const((1 << k) - 1, t))
        shift = "OpShiftRightArithmetic" if t.is_signed else "OpShiftRightLogical"
        return e.emit(shift, ty, a, e.const(k, t))
    zero, one = e.const(0, t), e.const(1, t)
    b_zero = e.emit("OpIEqual", boolean, b, zero)
    if not t.is_signed:
        safe = e.select(t, b_zero, one, b)  # OpUDiv/OpUMod by 0 is undefined
        q = e.emit("OpUDiv", ty, a, safe)
        if op.opcode == "floordiv":
            return e.select(t, b_zero, zero, q)
        # the remainder as a - q*b (wrapping arithmetic is defined everywhere), rather than
        # trusting each driver's OpUMod
        r = e.emit("OpISub", ty, a, e.emit("OpIMul", ty, q, safe))
        return e.select(t, b_zero, a, r)
    # OpSDiv/OpSRem are undefined for b == 0 and for MIN / -1; divide by 1 instead and
    # patch: a // -1 == -a (wrapping), a % -1 == 0.
    b_minus1 = e.emit("OpIEqual", boolean, b, e.const(-1, t))
    safe = e.select(t, e.emit("OpLogicalOr", boolean, b_zero, b_minus1), one, b)
    q = e.emit("OpSDiv", ty, a, safe)  # truncates toward zero
    # the truncated remainder (sign of a) as a - q*b: NVIDIA's Vulkan driver was measured
    # giving floor-division results that disagree with OpSRem's specified sign rule
    r = e.emit("OpISub", ty, a, e.emit("OpIMul", ty, q, safe))
    # Floor: when the remainder is non-zero and its sign differs from b's, step down.
    differ = e.emit(
        "OpLogicalNotEqual",
        boolean,
        e.emit("OpSLessThan", boolean, r, zero),
        e.emit("OpSLessThan", boolean, b, zero),
    )
    fix = e.emit("OpLogicalAnd", boolean, e.emit("OpINotEqual", boolean, r, zero), differ)
    if op.opcode == "floordiv":
        q = e.select(t, b_minus1, e.emit("OpSNegate", ty, a), q)
        q = e.select(t, fix, e.emit("OpISub", ty, q, one), q)
        return e.select(t, b_zero, zero, q)
    r = e.select(t, fix, e.emit("OpIAdd", ty, r, b), r)
    return e.select(t, b_zero, a, r)


def lower_pow(e: KernelEmitter, op: ir.Op) -> int:
    """GLSL Pow is undefined for x < 0, for x == 0 and y <= 0, and drivers differ on NaN
    (exp2(y * log2(x)) underneath): those cases are computed from |x| and patched to
    what numpy gives (a negative base is defined for integral y)."""
    t = op.args[0].type
    _check_f64_math(e, op, t)
    x, y = (e.value(v) for v in op.args)
    boolean = e.ty(bool_)
    zero, one, half = e.const(0.0, t), e.const(1.0, t), e.const(0.5, t)
    ax = e.glsl(t, "FAbs", x)
    p = e.glsl(t, "Pow", ax, y)
    x_zero = e.emit("OpFOrdEqual", boolean, ax, zero)
    y_negative = e.emit("OpFOrdLessThan", boolean, y, zero)
    p = e.select(t, x_zero, e.select(t, y_negative, e.const(float("inf"), t), zero), p)
    y_integral = e.emit("OpFOrdEqual", boolean, e.glsl(t, "Floor", y), y)
    half_y = farith(e, "OpFMul", t, y, half)
    half_y_fraction = e.emit("OpFOrdNotEqual", boolean, e.glsl(t, "Floor", half_y), half_y)
    y_odd = e.emit("OpLogicalAnd", boolean, y_integral, half_y_fraction)
    negative_base = e.select(t, y_odd, e.emit("OpFNegate", e.ty(t), p), p)
    negative_base = e.select(t, y_integral, negative_base, e.const(float("nan"), t))
    p = e.select(t, e.emit("OpFOrdLessThan", boolean, x, zero), negative_base, p)
    any_nan = e.emit(
        "OpLogicalOr", boolean, e.emit("OpIsNan", boolean, x), e.emit("OpIsNan", boolean, y)
    )
    p = e.select(t, any_nan, e.const(float("nan"), t), p)
    # x ** 0 == 1 and 1 ** y == 1, NaN included.
    trivial = e.emit(
        "OpLogicalOr",
        boolean,
        e.emit("OpFOrdEqual", boolean, y, zero),
        e.emit("OpFOrdEqual", boolean, x, one),
    )
    return e.select(t, trivial, one, p)


def _check_f64_math(e: KernelEmitter, op: ir.Op, t: ScalarType) -> None:
    if t.bits == 64 and op.opcode not in F64_MATH:
        raise e.fail(
            op,
            f"{op.opcode} on f64 is not available on Vulkan "
            f"(GLSL.std.450 has no 64-bit {op.opcode})",
            "cast the operand to aw.f32, or run on the cuda or sim backend",
        )


def lower_math(e: KernelEmitter, op: ir.Op) -> int:
    t = op.args[0].type
    _check_f64_math(e, op, t)
    return e.glsl(t, MATH[op.opcode], e.value(op.args[0]))


def lower_neg(e: KernelEmitter, op: ir.Op) -> int:
    t = op.args[0].type
    return e.emit("OpFNegate" if t.is_float else "OpSNegate", e.ty(t), e.value(op.args[0]))


def lower_abs(e: KernelEmitter, op: ir.Op) -> int:
    t = op.args[0].type
    a = e.value(op.args[0])
    if t.is_float:
        return e.glsl(t, "FAbs", a)
    if not t.is_signed:
        return a
    negative = e.emit("OpSLessThan", e.ty(bool_), a, e.const(0, t))
    return e.select(t, negative, e.emit("OpSNegate", e.ty(t), a), a)  # abs(MIN) wraps to MIN


def lower_popcount(e: KernelEmitter, op: ir.Op) -> int:
    t = op.args[0].type
    a = e.value(op.args[0])
    if t.bits == 32:
        return e.emit("OpBitCount", e.ty(i32), a)
    # Vulkan: OpBitCount's Base must be 32-bit (VUID-StandaloneSpirv-Base-04781).
    bits = e.emit("OpBitcast", e.ty(u64), a) if t.is_signed else a
    low = e.emit("OpUConvert", e.ty(u32), bits)
    high = e.emit(
        "OpUConvert", e.ty(u32), e.emit("OpShiftRightLogical", e.ty(u64), bits, e.const(32, u32))
    )
    count = e.ty(i32)
    return e.emit(
        "OpIAdd", count, e.emit("OpBitCount", count, low), e.emit("OpBitCount", count, high)
    )


def lower_bnot(e: KernelEmitter, op: ir.Op) -> int:
    return e.emit("OpNot", e.ty(op.args[0].type), e.value(op.args[0]))


def lower_shift(e: KernelEmitter, op: ir.Op) -> int:
    """Shift amounts >= the width are undefined in SPIR-V; ops.py clamps them. Amounts
    compare as unsigned, so a negative amount counts as too large."""
    t, amount_t = op.args[0].type, op.args[1].type
    a, amount = (e.value(v) for v in op.args)
    ty = e.ty(t)
    in_range = e.emit("OpULessThan", e.ty(bool_), amount, e.const(t.bits, amount_t))
    clamped = e.select(amount_t, in_range, amount, e.const(t.bits - 1, amount_t))
    if op.opcode == "shr" and t.is_signed:
        return e.emit("OpShiftRightArithmetic", ty, a, clamped)  # by bits-1: 0 or -1
    opname = "OpShiftLeftLogical" if op.opcode == "shl" else "OpShiftRightLogical"
    return e.select(t, in_range, e.emit(opname, ty, a, clamped), e.const(0, t))


def lower_compare(e: KernelEmitter, op: ir.Op) -> int:
    t = op.args[0].type
    a, b = (e.value(v) for v in op.args)
    opname = COMPARE[op.opcode][_kind(t)]
    if opname is None:  # ordering of bools: compare as 0/1
        a, b = (bool_to_number(e, x, u32) for x in (a, b))
        opname = COMPARE[op.opcode][1]
    return e.emit(opname, e.ty(bool_), a, b)


def lower_logic(e: KernelEmitter, op: ir.Op) -> int:
    opname = {"land": "OpLogicalAnd", "lor": "OpLogicalOr", "lnot": "OpLogicalNot"}[op.opcode]
    return e.emit(opname, e.ty(bool_), *(e.value(v) for v in op.args))


def lower_select(e: KernelEmitter, op: ir.Op) -> int:
    c, a, b = (e.value(v) for v in op.args)
    return e.select(op.args[1].type, c, a, b)


def lower_copy(e: KernelEmitter, op: ir.Op) -> int | None:
    if not isinstance(op.dst.type, ScalarType):
        return None  # array aliases are resolved when arrays are declared
    return e.value(op.args[0])


def lower_bitcast(e: KernelEmitter, op: ir.Op) -> int:
    # OpBitcast: "The component width of Operand must equal that of Result Type".
    return e.emit("OpBitcast", e.ty(op.dst.type), e.value(op.args[0]))


def bool_to_number(e: KernelEmitter, value: int, t: ScalarType) -> int:
    return e.select(t, value, e.const(1, t), e.const(0, t))


def lower_cast(e: KernelEmitter, op: ir.Op) -> int:
    return convert(e, e.value(op.args[0]), op.args[0].type, op.dst.type)


def convert(e: KernelEmitter, a: int, src: ScalarType, dst: ScalarType) -> int:
    """ops.py cast semantics from `src` to `dst` on the value id `a`."""
    if src == dst:
        return a
    if src.is_bool:
        return bool_to_number(e, a, dst)
    if dst.is_bool:
        zero = e.const(0, src)
        return e.emit("OpFUnordNotEqual" if src.is_float else "OpINotEqual", e.ty(bool_), a, zero)
    if src.is_float and dst.is_float:
        return e.emit("OpFConvert", e.ty(dst), a)
    if src.is_float:
        return float_to_int(e, a, src, dst)
    if dst.is_float:
        return e.emit("OpConvertSToF" if src.is_signed else "OpConvertUToF", e.ty(dst), a)
    return int_to_int(e, a, src, dst)


def int_to_int(e: KernelEmitter, a: int, src: ScalarType, dst: ScalarType) -> int:
    if src.bits == dst.bits:
        return e.emit("OpBitcast", e.ty(dst), a)
    if src.is_signed:
        return e.emit("OpSConvert", e.ty(dst), a)  # sign-extends or truncates
    # OpUConvert's result must be unsigned (spec: Signedness 0); reinterpret after.
    unsigned = unsigned_of(dst.bits)
    widened = e.emit("OpUConvert", e.ty(unsigned), a)
    return widened if unsigned == dst else e.emit("OpBitcast", e.ty(dst), widened)


def float_to_int(e: KernelEmitter, a: int, src: ScalarType, dst: ScalarType) -> int:
    """Truncate toward zero, saturate, NaN -> 0. OpConvertFToS/U are undefined when the
    truncated value does not fit, so only in-range values reach them. The limits are
    powers of two, exact in every float format."""
    boolean = e.ty(bool_)
    if dst.is_signed:
        low, high = -(2.0 ** (dst.bits - 1)), 2.0 ** (dst.bits - 1)
        lowest, highest = -(1 << (dst.bits - 1)), (1 << (dst.bits - 1)) - 1
    else:
        low, high = 0.0, 2.0**dst.bits
        lowest, highest = 0, (1 << dst.bits) - 1
    above = e.emit("OpFOrdGreaterThanEqual", boolean, a, e.const(high, src))
    below = e.emit("OpFOrdLessThanEqual", boolean, a, e.const(low, src))
    # Ordered comparisons are false for NaN: NaN converts 0.0, giving 0.
    inside = e.emit(
        "OpLogicalAnd",
        boolean,
        e.emit("OpFOrdGreaterThan", boolean, a, e.const(low, src)),
        e.emit("OpFOrdLessThan", boolean, a, e.const(high, src)),
    )
    safe = e.select(src, inside, a, e.const(0.0, src))
    converted = e.emit("OpConvertFToS" if dst.is_signed else "OpConvertFToU", e.ty(dst), safe)
    converted = e.select(dst, above, e.const(highest, dst), converted)
    return e.select(dst, below, e.const(lowest, dst), converted)


HANDLERS = {
    **dict.fromkeys(BINARY, lower_binary),
    **dict.fromkeys(MIN_MAX, lower_min_max),
    "floordiv": lower_floordiv_mod,
    "mod": lower_floordiv_mod,
    "pow": lower_pow,
    **dict.fromkeys(MATH, lower_math),
    "neg": lower_neg,
    "abs": lower_abs,
    "popcount": lower_popcount,
    "bnot": lower_bnot,
    "shl": lower_shift,
    "shr": lower_shift,
    **dict.fromkeys(COMPARE, lower_compare),
    "land": lower_logic,
    "lor": lower_logic,
    "lnot": lower_logic,
    "select": lower_select,
    "copy": lower_copy,
    "cast": lower_cast,
    "bitcast": lower_bitcast,
}
